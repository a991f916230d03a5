"""Compression passes over the :class:`~treeslim.nn.MLP` IR: pruning, quantization, low rank.

Every pass is a pure function ``MLP -> MLP`` with keyword-only options; the input is never
modified (its arrays are read-only). Training passes (fine-tuning with masks kept, quantization-aware
fine-tuning, distillation) live in :mod:`treeslim.nn._train`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.nn._mlp import MLP, Layer

__all__ = ["low_rank", "prune_neurons", "prune_weights", "quantize_weights", "sparse_layer"]


def _fraction(name: str, value: Any, *, upper_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and 0 <= value < 1 if upper_open else 0 < value <= 1
    if not ok or isinstance(value, bool):
        interval = "[0, 1)" if upper_open else "(0, 1]"
        raise ValueError(f"The {name!r} parameter must be a float in {interval}. Got {value!r}.")
    return float(value)


def sparse_layer(
    weight: NDArray[np.float64], mask: NDArray[np.bool_], bias: ArrayLike, dtype: Any = np.float64
) -> Layer:
    """A CSR layer holding the entries of ``weight`` (n_in, n_out) where ``mask`` is true."""
    wt, mt = weight.T, mask.T
    rows, cols = np.nonzero(mt)  # row-major: sorted indices within each output channel
    indptr = np.zeros(wt.shape[0] + 1, dtype=np.int32)
    np.cumsum(mt.sum(axis=1), out=indptr[1:])
    return Layer(
        np.asarray(bias, dtype=np.float64),
        data=wt[rows, cols].astype(dtype),
        indices=cols.astype(np.int32),
        indptr=indptr,
        n_in=weight.shape[0],
    )


def _float_dtype(layer: Layer) -> Any:
    return np.float32 if layer.precision == "float32" else np.float64


def prune_weights(
    mlp: MLP,
    *,
    sparsity: float,
    scope: str = "global",
) -> MLP:
    """Magnitude pruning: keep the largest weights, store every layer as CSR (float values).

    Parameters
    ----------
    mlp : MLP
    sparsity : float in [0, 1)
        Share of weights (biases excluded) set to zero, counted over the dense shapes.
    scope : {"global", "layer"}, default="global"
        One magnitude threshold over all layers, or the same sparsity in every layer.

    Returns
    -------
    MLP
        Low-rank layers are refused; int8 / fp16 layers come back dequantized (quantize after).

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer, prune_weights
    >>> mlp = MLP((Layer(np.zeros(2), weight=np.arange(1.0, 7.0).reshape(3, 2)),))
    >>> pruned = prune_weights(mlp, sparsity=0.5)
    >>> pruned.layers[0].kind, pruned.layers[0].dense().tolist()
    ('sparse', [[0.0, 0.0], [0.0, 4.0], [5.0, 6.0]])
    """
    sparsity = _fraction("sparsity", sparsity)
    if scope not in ("global", "layer"):
        raise ValueError(f"The 'scope' parameter must be 'global' or 'layer'. Got {scope!r}.")
    for i, layer in enumerate(mlp.layers):
        if layer.kind == "lowrank":
            raise ValueError(f"layer {i} is low-rank: prune the weights before low_rank.")
    dense = [layer.dense() for layer in mlp.layers]
    masks = [layer.mask() for layer in mlp.layers]
    if scope == "global":
        mags = np.concatenate([np.abs(w[m]) for w, m in zip(dense, masks, strict=True)])
        total = sum(w.size for w in dense)
        n_keep = max(1, round(total * (1.0 - sparsity)))
        thr = np.sort(mags)[::-1][min(n_keep, len(mags)) - 1] if len(mags) else 0.0
        keeps = [m & (np.abs(w) >= thr) & (w != 0) for w, m in zip(dense, masks, strict=True)]
    else:
        keeps = []
        for w, m in zip(dense, masks, strict=True):
            n_keep = max(1, round(w.size * (1.0 - sparsity)))
            order = np.argsort(-np.where(m, np.abs(w), -1.0), axis=None, kind="stable")
            keep = np.zeros(w.size, dtype=bool)
            keep[order[:n_keep]] = True
            keeps.append(keep.reshape(w.shape) & m & (w != 0))
    layers = tuple(
        sparse_layer(w, k, layer.bias, _float_dtype(layer))
        for w, k, layer in zip(dense, keeps, mlp.layers, strict=True)
    )
    note = f"prune_weights(sparsity={sparsity:g}, scope={scope})"
    return mlp.replace(layers=layers, source={**mlp.source, "passes": [*_passes(mlp), note]})


def _passes(mlp: MLP) -> list[str]:
    return list(mlp.source.get("passes", []))


def prune_neurons(
    mlp: MLP,
    X: ArrayLike | None = None,
    *,
    fraction: float | Sequence[float] = 0.5,
) -> MLP:
    """Structured pruning: remove whole hidden neurons, so the weight matrices really shrink.

    A neuron's score is the size of what it passes on: the standard deviation of its activation on
    ``X`` (or, without data, the norm of its incoming weights) times the norm of its outgoing
    weights. The lowest-scoring neurons are removed; with ``X`` each removed neuron's mean
    activation is folded into the next layer's bias (exact for neurons that are constant on X,
    such as dead ReLUs).

    Parameters
    ----------
    mlp : MLP
    X : array-like of shape (n_samples, n_features), optional
        Calibration rows.
    fraction : float or sequence of float, default=0.5
        Share of the neurons of each hidden layer (or one share per hidden layer) to remove; at
        least one neuron always stays.

    Returns
    -------
    MLP
        With dense float layers (sparse / quantized layers are densified and dequantized).

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer, prune_neurons
    >>> w1 = np.array([[1.0, 0.01, 2.0]]); w2 = np.array([[1.0], [1.0], [1.0]])
    >>> mlp = MLP((Layer(np.zeros(3), weight=w1), Layer(np.zeros(1), weight=w2)))
    >>> prune_neurons(mlp, fraction=0.34).hidden_sizes
    (2,)
    """
    hidden = len(mlp.layers) - 1
    fracs = [fraction] * hidden if isinstance(fraction, (int, float)) else list(fraction)
    if len(fracs) != hidden:
        raise ValueError(
            f"The 'fraction' parameter needs one value per hidden layer ({hidden}); got {len(fracs)}."
        )
    fracs = [_fraction("fraction", f) for f in fracs]
    acts = mlp.forward(X)[1:-1] if X is not None else None  # hidden outputs, activated
    weights = [layer.dense() for layer in mlp.layers]
    biases = [np.array(layer.bias, dtype=np.float64) for layer in mlp.layers]
    for i in range(hidden):
        w_in, w_out = weights[i], weights[i + 1]
        out_norm = np.linalg.norm(w_out, axis=1)
        if acts is not None:
            strength = acts[i].std(axis=0)  # the mean is folded into the next bias
        else:
            strength = np.linalg.norm(w_in, axis=0)
        score = strength * out_norm
        n = w_in.shape[1]
        n_drop = min(n - 1, int(np.floor(fracs[i] * n)))
        drop = np.sort(np.argsort(score, kind="stable")[:n_drop])
        keep = np.setdiff1d(np.arange(n), drop)
        if acts is not None and len(drop):
            biases[i + 1] = biases[i + 1] + acts[i][:, drop].mean(axis=0) @ w_out[drop]
            acts[i] = acts[i][:, keep]
        weights[i] = w_in[:, keep]
        biases[i] = biases[i][keep]
        weights[i + 1] = w_out[keep]
    layers = tuple(Layer(b, weight=w) for w, b in zip(weights, biases, strict=True))
    note = f"prune_neurons(fraction={fracs})"
    return mlp.replace(layers=layers, source={**mlp.source, "passes": [*_passes(mlp), note]})


def _int8(values: NDArray[np.float64], scale: NDArray[np.float64]) -> NDArray[np.int8]:
    return np.clip(np.rint(values / scale), -127, 127).astype(np.int8)


def _scales(w: NDArray[np.float64], per_channel: bool) -> NDArray[np.float64]:
    amax = np.abs(w).max(axis=0) if per_channel else np.full(w.shape[1], np.abs(w).max())
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    if scale.min() >= np.finfo(np.float16).tiny and scale.max() <= 1e4:  # fp16 normal range
        return scale.astype(np.float16).astype(np.float64)  # stored in 2 bytes, exactly
    return np.maximum(scale.astype(np.float32), np.finfo(np.float32).tiny).astype(np.float64)


def _narrow_bias(bias: NDArray[np.float64], bits: int) -> NDArray[np.float64]:
    """Biases of compressed layers: float16 next to int8 / fp16 weights, else float32."""
    if bits <= 16 and np.abs(bias).max() < 6e4:
        return bias.astype(np.float16).astype(np.float64)
    return bias.astype(np.float32).astype(np.float64)


def quantize_weights(
    mlp: MLP,
    X: ArrayLike | None = None,
    *,
    bits: int = 8,
    per_channel: bool = True,
    activations: bool = False,
    bias_correction: bool = True,
    act_percentile: float = 99.99,
    layers: Sequence[int] | None = None,
) -> MLP:
    """Post-training weight quantization: int8 (symmetric, per output channel), fp16 or float32.

    Parameters
    ----------
    mlp : MLP
    X : array-like of shape (n_samples, n_features), optional
        Calibration rows: with them the expected error each layer's rounding adds to its outputs
        is removed from its bias (``bias_correction``), and ``activations=True`` can calibrate
        the int8 input scale of every layer (``act_percentile`` of |input| / 127).
    bits : {8, 16, 32}, default=8
        int8 with float scales, IEEE half or single precision. Sparse layers keep their pattern;
        low-rank factors are cast for 16 / 32 and left as they are for 8.
    per_channel : bool, default=True
        One scale per output channel (else one per layer) for int8.
    activations : bool, default=False
        Quantize every int8 layer's input to int8 too, so it runs with int32 accumulation.
    act_percentile : float, default=99.99
        The input scale covers this percentile of |input| on ``X`` (larger values saturate at
        +-127): a few outliers then cost little resolution. 100 takes the maximum.
    bias_correction : bool, default=True
        Only used with ``X``.
    layers : sequence of int, optional
        Quantize only these layers (default: all).

    Returns
    -------
    MLP

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer, quantize_weights
    >>> mlp = MLP((Layer(np.zeros(2), weight=[[0.5, -1.0], [0.25, 2.0]]),))
    >>> q = quantize_weights(mlp, bits=8)
    >>> q.layers[0].weight.tolist(), q.layers[0].scale.round(5).tolist()
    ([[127, -64], [64, 127]], [0.00394, 0.01575])
    >>> q.layers[0].scale.tolist() == q.layers[0].scale.astype(np.float16).tolist()  # 2 bytes each
    True
    """
    if bits not in (8, 16, 32) or isinstance(bits, bool):
        raise ValueError(f"The 'bits' parameter must be 8, 16 or 32. Got {bits!r}.")
    if not 0 < act_percentile <= 100:
        raise ValueError(
            f"The 'act_percentile' parameter must be in (0, 100]. Got {act_percentile!r}."
        )
    if activations and X is None:
        raise ValueError("activations=True needs calibration rows X to set the int8 input scales.")
    inputs = mlp.forward(X)[:-1] if X is not None else None
    chosen = set(range(len(mlp.layers)) if layers is None else layers)
    new_layers: list[Layer] = []
    for i, layer in enumerate(mlp.layers):
        if i not in chosen:
            new_layers.append(layer)
            continue
        if layer.kind == "lowrank":
            if bits == 8:
                new_layers.append(layer)
            else:
                dt = np.float16 if bits == 16 else np.float32
                uv = (np.asarray(layer.u).astype(dt), np.asarray(layer.v).astype(dt))
                new_layers.append(Layer(layer.bias, u=uv[0], v=uv[1]))
            continue
        w = layer.dense()
        mask = layer.mask()
        scale = _scales(w, per_channel)
        if bits == 8:
            wq = _int8(w, scale) * scale
        else:
            wq = w.astype(np.float16 if bits == 16 else np.float32).astype(np.float64)
        bias = np.array(layer.bias, dtype=np.float64)
        if inputs is not None and bias_correction:
            bias = bias + inputs[i].mean(axis=0) @ (w - wq)
        bias = _narrow_bias(bias, bits)
        act = None
        if activations and bits == 8 and inputs is not None:
            amax = float(np.percentile(np.abs(inputs[i]), act_percentile))
            act = amax / 127.0 if amax > 0 else 1.0
        if bits == 8:
            if layer.kind == "sparse":
                new = sparse_layer(w, mask, bias)
                vals = _int8(
                    np.asarray(new.data), np.repeat(scale, np.diff(np.asarray(new.indptr)))
                )
                new = Layer(
                    bias,
                    data=vals,
                    indices=new.indices,
                    indptr=new.indptr,
                    n_in=new.n_in,
                    scale=scale,
                    act_scale=act,
                )
            else:
                new = Layer(bias, weight=_int8(w, scale), scale=scale, act_scale=act)
        else:
            dt = np.float16 if bits == 16 else np.float32
            if layer.kind == "sparse":
                new = sparse_layer(w, mask, bias, dt)
            else:
                new = Layer(bias, weight=w.astype(dt))
        new_layers.append(new)
    note = f"quantize_weights(bits={bits}, per_channel={per_channel}, activations={activations})"
    return mlp.replace(
        layers=tuple(new_layers), source={**mlp.source, "passes": [*_passes(mlp), note]}
    )


def low_rank(mlp: MLP, *, energy: float = 0.9) -> MLP:
    """Factor dense float layers by truncated SVD, ``W ~ (U_r S_r) V_r``, where it saves.

    The rank ``r`` of each layer is the smallest that keeps ``energy`` of the squared singular
    values; a layer is factored only when ``r < m n / (m + n)`` (so the two factors hold fewer
    numbers than the matrix). Sparse and quantized layers are left as they are.

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer, low_rank
    >>> w = np.outer(np.arange(1.0, 9.0), np.ones(6))  # rank 1
    >>> mlp = MLP((Layer(np.zeros(6), weight=w),))
    >>> f = low_rank(mlp, energy=0.99).layers[0]
    >>> f.kind, f.u.shape, bool(np.allclose(f.dense(), w))
    ('lowrank', (8, 1), True)
    """
    energy = _fraction("energy", energy, upper_open=False)
    layers = []
    for layer in mlp.layers:
        if layer.kind != "dense" or layer.precision not in ("float64", "float32"):
            layers.append(layer)
            continue
        w = layer.dense()
        m, n = w.shape
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        power = np.cumsum(s**2)
        total = power[-1] if power[-1] > 0 else 1.0
        r = max(1, int(np.searchsorted(power / total, energy - 1e-12) + 1))
        if r < m * n / (m + n):
            dt = _float_dtype(layer)
            layers.append(Layer(layer.bias, u=(u[:, :r] * s[:r]).astype(dt), v=vt[:r].astype(dt)))
        else:
            layers.append(layer)
    note = f"low_rank(energy={energy:g})"
    return mlp.replace(layers=tuple(layers), source={**mlp.source, "passes": [*_passes(mlp), note]})
