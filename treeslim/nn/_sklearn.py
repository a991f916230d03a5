"""Between scikit-learn's `MLPClassifier` / `MLPRegressor` and the :class:`~treeslim.nn.MLP` IR.

:func:`from_sklearn` reads a fitted estimator's ``coefs_`` / ``intercepts_`` exactly (float64
stays float64, so the IR predicts what scikit-learn predicts); :func:`to_sklearn` builds a fitted
estimator back from any MLP, compressed layers dequantized and densified.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from treeslim._utils import unwrap
from treeslim.errors import UnsupportedModelError
from treeslim.nn._mlp import MLP, Layer

__all__ = ["from_sklearn", "to_sklearn"]


def from_sklearn(est: Any) -> MLP:
    """Convert a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor`` into an :class:`MLP`.

    Parameters
    ----------
    est : MLPClassifier or MLPRegressor
        Fitted; a ``FrozenEstimator`` around one, or an :class:`MLP` (returned as it is), also work.

    Returns
    -------
    MLP

    Raises
    ------
    UnsupportedModelError
        For other models, multilabel classifiers, or a model that is not fitted.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.neural_network import MLPClassifier
    >>> from treeslim.nn import from_sklearn
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> X = (X - X.mean(0)) / X.std(0)
    >>> clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, y)
    >>> mlp = from_sklearn(clf)
    >>> mlp.task, mlp.hidden_sizes
    ('binary', (8,))
    >>> bool(abs(mlp.predict(X) - clf.predict_proba(X)[:, 1]).max() < 1e-12)
    True
    """
    est = unwrap(est)
    if isinstance(est, MLP):
        return est
    name = f"{type(est).__module__}.{type(est).__qualname__}"
    kinds = {c.__name__ for c in type(est).__mro__ if c.__module__.startswith("sklearn.")}
    if not kinds & {"MLPClassifier", "MLPRegressor"}:
        raise UnsupportedModelError(
            f"Cannot convert a {name}: treeslim.nn reads scikit-learn MLPClassifier and"
            " MLPRegressor (use treeslim.from_model for tree ensembles)."
        )
    if not hasattr(est, "coefs_"):
        raise UnsupportedModelError(f"{name} is not fitted: call fit before converting it.")
    out = est.out_activation_
    if "MLPClassifier" in kinds:
        if out == "logistic" and len(est.coefs_[-1][0]) > 1:
            raise UnsupportedModelError(
                f"{name} is a multilabel classifier (logistic output on"
                f" {est.coefs_[-1].shape[1]} labels): treeslim.nn supports binary and multiclass"
                " classifiers only."
            )
        task = "binary" if out == "logistic" else "multiclass"
        classes = np.asarray(est.classes_)
    elif out != "identity":
        raise UnsupportedModelError(
            f"{name}: output activation {out!r} (loss={getattr(est, 'loss', '?')!r}) is not"
            " supported; treeslim.nn reads squared-error regressors (identity output)."
        )
    else:
        task, classes = "regression", None
    if est.activation not in ("relu", "tanh", "logistic", "identity"):
        raise UnsupportedModelError(f"{name}: hidden activation {est.activation!r} is unknown.")
    layers = tuple(
        Layer(np.asarray(b, dtype=np.float64), weight=np.asarray(w, dtype=np.float64))
        for w, b in zip(est.coefs_, est.intercepts_, strict=True)
    )
    names = getattr(est, "feature_names_in_", None)
    return MLP(
        layers,
        activation=est.activation,
        task=task,
        classes=classes,
        feature_names=None if names is None else tuple(str(n) for n in names),
        source={"library": "sklearn", "class": type(est).__name__},
    )


def to_sklearn(mlp: MLP) -> Any:
    """A fitted ``MLPClassifier`` / ``MLPRegressor`` that predicts what ``mlp`` predicts with its
    weights dequantized (int8, fp16) and densified (sparse, low-rank).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> from treeslim.nn import from_sklearn, to_sklearn
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(50, 3)); y = X.sum(1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=300, random_state=0).fit(X, y)
    >>> back = to_sklearn(from_sklearn(reg))
    >>> bool(abs(back.predict(X) - reg.predict(X)).max() < 1e-12)
    True
    """
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.preprocessing import LabelBinarizer

    sizes = mlp.hidden_sizes
    est: Any
    if mlp.task == "regression":
        est = MLPRegressor(hidden_layer_sizes=sizes, activation=mlp.activation)
    else:
        est = MLPClassifier(hidden_layer_sizes=sizes, activation=mlp.activation)
        classes = mlp.classes
        if classes is None:
            classes = np.arange(2 if mlp.task == "binary" else mlp.n_outputs)
        est.classes_ = np.asarray(classes)
        est._label_binarizer = LabelBinarizer().fit(est.classes_)
    est.coefs_ = [layer.dense() for layer in mlp.layers]
    est.intercepts_ = [np.array(layer.bias, dtype=np.float64) for layer in mlp.layers]
    est.n_features_in_ = mlp.num_feature
    if mlp.feature_names is not None:
        est.feature_names_in_ = np.asarray(mlp.feature_names, dtype=object)
    est.n_layers_ = len(mlp.layers) + 1
    est.n_outputs_ = mlp.n_outputs
    est.out_activation_ = mlp.out_activation
    est.n_iter_ = 0
    est.t_ = 0
    est.loss_ = float("nan")
    est.best_loss_ = None
    est.loss_curve_ = []
    return est
