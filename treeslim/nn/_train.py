"""Training passes: fine-tuning that keeps each layer's compressed form and quantization-aware
fine-tuning (distillation into a small MLP, :func:`treeslim.nn.distill_mlp`, uses the same trainer).

One small numpy trainer (mini-batch Adam, backpropagation written out) serves all three. A layer is
trained in the form it is stored in: a sparse layer's pruned entries stay exactly zero (gradient
and weights masked after every step), a low-rank layer trains its two factors, and int8 / fp16
layers are trained through fake quantization (the forward pass uses the rounded weights, the
gradient passes straight through to a float copy) and are quantized again at the end.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim._utils import class_codes
from treeslim.nn._mlp import MLP, Layer, link
from treeslim.nn._passes import _passes, _scales, quantize_weights, sparse_layer
from treeslim.nn._teacher import teacher_margins

__all__ = ["fine_tune", "qat_fine_tune"]

Arr = NDArray[np.float64]


def _net(mlp: MLP) -> list[dict[str, Any]]:
    net = []
    for layer in mlp.layers:
        p: dict[str, Any] = {"b": np.array(layer.bias, dtype=np.float64), "kind": layer.kind}
        if layer.kind == "lowrank":
            p["U"] = np.array(layer.u, dtype=np.float64)
            p["V"] = np.array(layer.v, dtype=np.float64)
        else:
            p["W"] = layer.dense()
            p["mask"] = layer.mask() if layer.kind == "sparse" else None
        prec = layer.precision
        p["quant"] = prec if prec in ("int8", "float16") else None
        p["dtype"] = np.float32 if prec == "float32" else np.float64
        p["per_channel"] = layer.scale is None or not np.all(layer.scale == layer.scale[0])
        p["act"] = layer.act_scale is not None
        net.append(p)
    return net


def _eff(p: dict[str, Any]) -> Arr:
    """The weights the forward pass uses (fake-quantized for int8 / fp16 layers)."""
    w: Arr = p["W"]
    if p["quant"] == "int8":
        s = _scales(w, p["per_channel"])
        return np.clip(np.rint(w / s), -127, 127) * s
    if p["quant"] == "float16":
        return w.astype(np.float16).astype(np.float64)
    return w


def _act(name: str, z: Arr) -> Arr:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "logistic":
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    return z


def _dact(name: str, h: Arr) -> Arr:
    if name == "relu":
        return (h > 0).astype(np.float64)
    if name == "tanh":
        return 1.0 - h**2
    if name == "logistic":
        return h * (1.0 - h)
    return np.ones_like(h)


def _forward(net: list[dict[str, Any]], x: Arr, activation: str) -> list[Arr]:
    hs = [x]
    for i, p in enumerate(net):
        if p["kind"] == "lowrank":
            p["_xu"] = x @ p["U"]
            z = p["_xu"] @ p["V"] + p["b"]
        else:
            p["_w"] = _eff(p)
            z = x @ p["_w"] + p["b"]
        x = _act(activation, z) if i < len(net) - 1 else z
        hs.append(x)
    return hs


def _backward(
    net: list[dict[str, Any]], hs: list[Arr], dz: Arr, activation: str, extra: Arr | None
) -> list[dict[str, Arr]]:
    grads: list[dict[str, Arr]] = [{} for _ in net]
    for i in range(len(net) - 1, -1, -1):
        p, x = net[i], hs[i]
        g = grads[i]
        g["b"] = dz.sum(axis=0)
        if p["kind"] == "lowrank":
            g["V"] = p["_xu"].T @ dz
            dxu = dz @ p["V"].T
            g["U"] = x.T @ dxu
            dx = dxu @ p["U"].T
        else:
            g["W"] = x.T @ dz  # straight-through: d(fake_quant(W))/dW taken as 1
            if p["mask"] is not None:
                g["W"] *= p["mask"]
            dx = dz @ p["_w"].T
        if i == 0:
            break
        if extra is not None and i == len(net) - 1:
            dx = dx + extra
        dz = dx * _dact(activation, hs[i])
    return grads


class _Adam:
    def __init__(self, lr: float) -> None:
        self.lr, self.t = lr, 0
        self.m: dict[tuple[int, str], Arr] = {}
        self.v: dict[tuple[int, str], Arr] = {}

    def step(self, key: tuple[int, str], param: Arr, grad: Arr) -> None:
        m = self.m.setdefault(key, np.zeros_like(param))
        v = self.v.setdefault(key, np.zeros_like(param))
        m *= 0.9
        m += 0.1 * grad
        v *= 0.999
        v += 0.001 * grad**2
        mhat = m / (1 - 0.9**self.t)
        vhat = v / (1 - 0.999**self.t)
        param -= self.lr * mhat / (np.sqrt(vhat) + 1e-8)


def _soft(task: str, z: Arr, temperature: float) -> Arr:
    return z if task == "regression" else link(task, z / temperature)


def _train(
    net: list[dict[str, Any]],
    X: Arr,
    task: str,
    activation: str,
    *,
    hard: Arr | None,
    soft: Arr | None,
    temperature: float,
    alpha: float,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    l2: float,
    rng: np.random.Generator,
    hint: tuple[Arr, float] | None = None,
) -> None:
    n = len(X)
    opt = _Adam(learning_rate)
    proj = None
    if hint is not None:
        d_s, d_t = net[-1]["W" if "W" in net[-1] else "U"].shape[0], hint[0].shape[1]
        proj = rng.normal(scale=1.0 / np.sqrt(d_s), size=(d_s, d_t))
    for _ in range(epochs):
        order = rng.permutation(n)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            hs = _forward(net, X[idx], activation)
            z = hs[-1]
            dz = np.zeros_like(z)
            if hard is not None and alpha > 0:
                dz += alpha * (z - hard[idx] if task == "regression" else link(task, z) - hard[idx])
            if soft is not None and alpha < 1:
                dz += (1 - alpha) * (
                    z - soft[idx]
                    if task == "regression"
                    else temperature * (_soft(task, z, temperature) - soft[idx])
                )
            dz /= len(idx)
            opt.t += 1
            extra = None
            if hint is not None and proj is not None:
                h = hs[-2]
                diff = (h @ proj - hint[0][idx]) * (hint[1] / (len(idx) * proj.shape[1]))
                extra = diff @ proj.T
                opt.step((-1, "P"), proj, h.T @ diff)
            grads = _backward(net, hs, dz, activation, extra)
            for i, (p, g) in enumerate(zip(net, grads, strict=True)):
                for key, grad in g.items():
                    if key != "b" and l2 > 0:
                        grad = grad + (l2 / n) * p[key]
                        if key == "W" and p["mask"] is not None:
                            grad *= p["mask"]
                    opt.step((i, key), p[key], grad)
                if p.get("mask") is not None:
                    p["W"] *= p["mask"]


def _to_mlp(net: list[dict[str, Any]], mlp: MLP, X: Arr, note: str) -> MLP:
    layers = []
    for p in net:
        dt = p["dtype"]
        if p["kind"] == "lowrank":
            layers.append(Layer(p["b"], u=p["U"].astype(dt), v=p["V"].astype(dt)))
        elif p["mask"] is not None:
            layers.append(sparse_layer(p["W"], p["mask"], p["b"], dt))
        else:
            layers.append(Layer(p["b"], weight=p["W"].astype(dt)))
    out = mlp.replace(layers=tuple(layers), source={**mlp.source, "passes": [*_passes(mlp), note]})
    for quant, bits in (("int8", 8), ("float16", 16)):
        idx = [i for i, p in enumerate(net) if p["quant"] == quant]
        if idx:
            per_channel = all(net[i]["per_channel"] for i in idx)
            act = bits == 8 and any(net[i]["act"] for i in idx)
            out = quantize_weights(
                out,
                X if act else None,
                bits=bits,
                per_channel=per_channel,
                activations=act,
                bias_correction=False,
                layers=idx,
            )
    return out


def _targets(mlp: MLP, y: ArrayLike) -> Arr:
    """Training targets from labels / values: 0/1 column, one-hot rows or float values."""
    y = np.asarray(y)
    if mlp.task == "regression":
        t = y.astype(np.float64)
        return t.reshape(len(t), -1)
    classes = mlp.classes if mlp.classes is not None else np.arange(max(2, mlp.n_outputs))
    codes = class_codes(classes, y)
    if mlp.task == "binary":
        return codes.reshape(-1, 1).astype(np.float64)
    return np.eye(len(classes))[codes]


def _check_train(X: ArrayLike, epochs: int, batch_size: int, learning_rate: float) -> Arr:
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim != 2 or len(Xa) == 0:
        raise ValueError(f"X must be 2-D with at least one row; got shape {Xa.shape}.")
    if not np.all(np.isfinite(Xa)):
        raise ValueError("X has NaN or infinite values: impute them before training an MLP.")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"The {name!r} parameter must be an int >= 1. Got {value!r}.")
    if not learning_rate > 0:
        raise ValueError(f"The 'learning_rate' parameter must be > 0. Got {learning_rate!r}.")
    return Xa


def fine_tune(
    mlp: MLP,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    teacher: Any = None,
    temperature: float = 1.0,
    alpha: float | None = None,
    epochs: int = 10,
    learning_rate: float = 1e-3,
    batch_size: int = 128,
    l2: float = 1e-4,
    random_state: int | None = None,
) -> MLP:
    """Train ``mlp`` a little more, every layer in its own form (masks kept, quantization-aware).

    Parameters
    ----------
    mlp : MLP
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), optional
        Labels (classifier) or targets (regression).
    teacher : model, optional
        Soft targets: an MLP, a scikit-learn MLP or any model with ``predict_proba`` / that
        :func:`treeslim.from_model` reads (e.g. the uncompressed network).
    temperature : float, default=1.0
        Softens the teacher's outputs (classification).
    alpha : float, optional
        Weight of the hard-label loss against the teacher's (default: 1 with ``y`` alone, 0 with
        ``teacher`` alone, 0.5 with both).
    epochs, learning_rate, batch_size, l2, random_state
        Mini-batch Adam; ``l2`` as scikit-learn's ``alpha``.

    Returns
    -------
    MLP

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer, fine_tune
    >>> X = np.random.default_rng(0).normal(size=(64, 2)); y = X @ [1.0, -2.0]
    >>> mlp = MLP((Layer([0.0], weight=[[0.5], [0.0]]),))
    >>> err = lambda m: float(np.mean((m.predict(X) - y) ** 2))
    >>> err(fine_tune(mlp, X, y, epochs=50, learning_rate=0.05, random_state=0)) < err(mlp)
    True
    """
    Xa = _check_train(X, epochs, batch_size, learning_rate)
    if y is None and teacher is None:
        raise ValueError("fine_tune needs labels y, a teacher, or both.")
    hard = _targets(mlp, y) if y is not None else None
    soft = None
    if teacher is not None:
        _, margins, _, _ = teacher_margins(teacher, Xa)
        soft = _soft(mlp.task, margins, temperature)
    a = alpha if alpha is not None else (1.0 if soft is None else 0.0 if hard is None else 0.5)
    net = _net(mlp)
    _train(
        net,
        Xa,
        mlp.task,
        mlp.activation,
        hard=hard,
        soft=soft,
        temperature=temperature,
        alpha=a,
        epochs=epochs,
        learning_rate=learning_rate,
        batch_size=batch_size,
        l2=l2,
        rng=np.random.default_rng(random_state),
    )
    return _to_mlp(net, mlp, Xa, f"fine_tune(epochs={epochs})")


def qat_fine_tune(
    mlp: MLP,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    bits: int = 8,
    per_channel: bool = True,
    activations: bool = False,
    **kwargs: Any,
) -> MLP:
    """Quantize (:func:`quantize_weights` on ``X``) and fine-tune with fake-quantized weights.

    For when post-training quantization loses too much; ``kwargs`` go to :func:`fine_tune`.

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer, qat_fine_tune
    >>> X = np.random.default_rng(0).normal(size=(64, 2)); y = X @ [1.0, -2.0]
    >>> q = qat_fine_tune(MLP((Layer([0.0], weight=[[0.5], [0.0]]),)), X, y, epochs=2)
    >>> q.layers[0].precision
    'int8'
    """
    q = quantize_weights(mlp, X, bits=bits, per_channel=per_channel, activations=activations)
    return fine_tune(q, X, y, **kwargs)
