"""Distillation: train a small MLP to mimic any fitted model (an MLP, a tree ensemble, anything
with ``predict_proba`` / ``predict``), on the teacher's soft targets and optionally its hidden
representation, with the trainer of :mod:`treeslim.nn._train`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from treeslim.nn._mlp import HIDDEN_ACTIVATIONS, MLP, Layer
from treeslim.nn._teacher import teacher_margins
from treeslim.nn._train import _check_train, _net, _soft, _targets, _to_mlp, _train

__all__ = ["distill_mlp"]


def distill_mlp(
    teacher: Any,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    hidden_layer_sizes: Sequence[int] = (32,),
    activation: str = "relu",
    temperature: float = 2.0,
    alpha: float = 0.0,
    hint_weight: float = 0.0,
    epochs: int = 50,
    learning_rate: float = 5e-3,
    batch_size: int = 128,
    l2: float = 1e-4,
    standardize: bool = True,
    random_state: int | None = None,
) -> MLP:
    """Train a small MLP to mimic any teacher (an MLP, a tree ensemble, any fitted model).

    The student learns the teacher's soft targets at ``temperature`` (its margins for regression),
    mixed with the hard labels ``y`` by ``alpha``. With ``hint_weight > 0`` and an MLP teacher,
    the student's last hidden layer is also pulled toward the teacher's through a learned linear
    projection. With ``standardize`` the student trains on standardized inputs (and, for
    regression, standardized targets) and the scalings are folded into its first (and last)
    layer, so it takes ``X`` as it comes and outputs values on the teacher's scale.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from treeslim.nn import distill_mlp
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> rf = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    >>> student = distill_mlp(rf, X, hidden_layer_sizes=(8,), epochs=20, random_state=0)
    >>> bool(((student.predict(X) > 0.5) == rf.predict(X)).mean() > 0.9)
    True
    """

    Xa = _check_train(X, epochs, batch_size, learning_rate)
    if activation not in HIDDEN_ACTIVATIONS:
        raise ValueError(f"activation must be one of {HIDDEN_ACTIVATIONS}; got {activation!r}.")
    sizes = [int(h) for h in hidden_layer_sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"hidden_layer_sizes must be positive ints; got {hidden_layer_sizes!r}.")
    task, margins, classes, hidden = teacher_margins(teacher, Xa)
    if hint_weight > 0 and hidden is None:
        raise ValueError("hint_weight > 0 needs an MLP teacher with at least one hidden layer.")
    rng = np.random.default_rng(random_state)
    d = Xa.shape[1]
    mu, sd = (Xa.mean(axis=0), Xa.std(axis=0)) if standardize else (np.zeros(d), np.ones(d))
    sd = np.where(sd > 0, sd, 1.0)
    Z = (Xa - mu) / sd
    dims = [Xa.shape[1], *sizes, margins.shape[1]]
    layers = []
    for n_in, n_out in itertools.pairwise(dims):
        bound = np.sqrt(6.0 / (n_in + n_out))
        layers.append(
            Layer(
                rng.uniform(-bound, bound, n_out), weight=rng.uniform(-bound, bound, (n_in, n_out))
            )
        )
    student = MLP(tuple(layers), activation=activation, task=task, classes=classes)
    hard = _targets(student, y) if y is not None else None
    # regression targets standardized too (per output), folded back into the last layer below:
    # margins of scale 1,000 otherwise leave the network far off in its epochs
    t_mu, t_sd = np.zeros(margins.shape[1]), np.ones(margins.shape[1])
    if task == "regression" and standardize:
        t_mu, t_sd = margins.mean(axis=0), margins.std(axis=0)
        t_sd = np.where(t_sd > 0, t_sd, 1.0)
        margins = (margins - t_mu) / t_sd
        hard = None if hard is None else (hard - t_mu) / t_sd
    net = _net(student)
    _train(
        net,
        Z,
        task,
        activation,
        hard=hard,
        soft=_soft(task, margins, temperature),
        temperature=temperature,
        alpha=alpha if hard is not None else 0.0,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        l2=l2,
        rng=rng,
        hint=(hidden, hint_weight) if hint_weight > 0 and hidden is not None else None,
    )
    first = net[0]
    first["b"] = first["b"] - (mu / sd) @ first["W"]
    first["W"] = first["W"] / sd.reshape(-1, 1)
    last = net[-1]
    last["b"] = last["b"] * t_sd + t_mu
    last["W"] = last["W"] * t_sd.reshape(1, -1)
    note = f"distill_mlp(hidden={tuple(sizes)}, T={temperature:g}, hint={hint_weight:g})"
    return _to_mlp(net, student.replace(source={"library": "treeslim", "passes": []}), Xa, note)
