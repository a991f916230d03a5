"""The `MLP` IR: a small dense network as a tuple of `Layer` objects, validated, with a numpy
predictor that runs every layer in the form it is stored in.

A :class:`Layer` is one affine map ``z = x @ W + b`` held in one of these forms:

* ``dense``: ``weight`` of shape (n_in, n_out), float64 / float32 (float), float16 (fp16) or int8
  with a per-output-channel ``scale`` (``W = weight * scale``);
* ``sparse``: CSR over output channels (``data``, ``indices`` into the inputs, ``indptr`` of length
  n_out + 1), ``data`` float or int8 with ``scale``;
* ``lowrank``: two thin matrices ``u`` (n_in, r) and ``v`` (r, n_out), ``W = u @ v``.

int8 layers run one of two paths. Without ``act_scale`` the float activations are multiplied by the
int8 weights (cast per call) and the per-channel scale is applied to the result. With ``act_scale``
(calibrated on data by :func:`treeslim.nn.quantize_weights`) the activations are quantized to int8
too, ``x_q = clip(rint(x / act_scale), -127, 127)``, the products are accumulated in int32 and the
result is rescaled by ``act_scale * scale``. Hidden layers share one activation (relu, tanh,
logistic, identity); the output link is softmax (multiclass), logistic (binary) or identity
(regression, one or more outputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from treeslim.errors import InvalidForestError, TreeSlimError
from treeslim.ir import check_X

__all__ = ["MLP", "InvalidMLPError", "Layer", "validate_mlp"]

HIDDEN_ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
_LINKS = {"binary": "logistic", "multiclass": "softmax", "regression": "identity"}
_FLOAT = (np.float64, np.float32)


class InvalidMLPError(InvalidForestError):
    """An :class:`MLP` or one of its layers breaks an invariant (the message names the layer)."""


def _ro(a: Any, dtype: Any = None) -> Any:
    if a is None:
        return None
    arr = np.array(a, dtype=dtype, copy=True, order="C")  # one layout: bit-identical math
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Layer:
    """One affine map ``z = x @ W + b``; see the module docstring for the storage forms.

    Arrays are copied and made read-only on construction, so no pass can edit a layer in place.
    """

    bias: NDArray[np.float64]
    weight: NDArray[Any] | None = None
    data: NDArray[Any] | None = None
    indices: NDArray[np.int32] | None = None
    indptr: NDArray[np.int32] | None = None
    n_in: int = 0
    u: NDArray[Any] | None = None
    v: NDArray[Any] | None = None
    scale: NDArray[np.float64] | None = None
    act_scale: float | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "bias", _ro(self.bias, np.float64))
        for name in ("weight", "data", "u", "v"):
            set_(self, name, _ro(getattr(self, name)))
        set_(self, "indices", _ro(self.indices, np.int32))
        set_(self, "indptr", _ro(self.indptr, np.int32))
        set_(self, "scale", _ro(self.scale, np.float64))
        if self.weight is not None:
            set_(self, "n_in", int(self.weight.shape[0]))
        elif self.u is not None:
            set_(self, "n_in", int(self.u.shape[0]))
        if self.act_scale is not None:
            set_(self, "act_scale", float(self.act_scale))

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickling keeps the arrays read-only (and drops no field)."""
        for value in state.values():
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
        self.__dict__.update(state)

    @property
    def kind(self) -> str:
        """``"dense"``, ``"sparse"`` or ``"lowrank"``."""
        if self.u is not None:
            return "lowrank"
        return "sparse" if self.data is not None else "dense"

    @property
    def n_out(self) -> int:
        return int(self.bias.shape[0])

    @property
    def stored(self) -> NDArray[Any]:
        """The array holding the weight values (its dtype says float, fp16 or int8)."""
        arr = self.weight if self.kind == "dense" else self.data
        if arr is None:  # lowrank
            return cast(NDArray[Any], self.u)
        return arr

    @property
    def precision(self) -> str:
        """``"float64"``, ``"float32"``, ``"float16"`` or ``"int8"``."""
        return str(self.stored.dtype)

    @property
    def n_params(self) -> int:
        """Stored weight values plus biases."""
        if self.kind == "lowrank":
            return int(cast(Any, self.u).size + cast(Any, self.v).size + self.n_out)
        return int(self.stored.size + self.n_out)

    def dense(self) -> NDArray[np.float64]:
        """The effective weight matrix (n_in, n_out) in float64 (dequantized, densified)."""
        if self.kind == "lowrank":
            return np.asarray(self.u, np.float64) @ np.asarray(self.v, np.float64)
        if self.kind == "sparse":
            w = np.zeros((self.n_out, self.n_in))
            rows = np.repeat(np.arange(self.n_out), np.diff(cast(Any, self.indptr)))
            w[rows, cast(Any, self.indices)] = self._values()
            return w.T.copy()
        w = np.array(self.weight, dtype=np.float64)  # a writable copy
        return w * self.scale if self.scale is not None else w

    def mask(self) -> NDArray[np.bool_]:
        """Which entries of :meth:`dense` are stored (all of them unless the layer is sparse)."""
        if self.kind != "sparse":
            return np.ones((self.n_in, self.n_out), dtype=bool)
        m = np.zeros((self.n_out, self.n_in), dtype=bool)
        rows = np.repeat(np.arange(self.n_out), np.diff(cast(Any, self.indptr)))
        m[rows, cast(Any, self.indices)] = True
        return m.T.copy()

    def _values(self) -> NDArray[np.float64]:
        vals = np.asarray(self.data, dtype=np.float64)
        if self.scale is None:
            return vals
        rows = np.repeat(np.arange(self.n_out), np.diff(cast(Any, self.indptr)))
        return vals * self.scale[rows]

    def apply(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """``x @ W + b`` computed in the stored form; ``x`` of shape (n, n_in)."""
        cache = self.__dict__.setdefault("_cache", {})
        if self.kind == "lowrank":
            z = (x @ cast(Any, self.u).astype(np.float64, copy=False)) @ cast(Any, self.v).astype(
                np.float64, copy=False
            )
            return z + self.bias
        int_path = self.act_scale is not None and self.precision == "int8"
        if int_path:
            xq = np.clip(np.rint(x / cast(float, self.act_scale)), -127, 127).astype(np.int8)
            operand: NDArray[Any] = xq.astype(np.int32)
            wdtype: Any = np.int32
        else:
            operand = x
            wdtype = np.float64
        if self.kind == "sparse":
            mat = cache.get(wdtype)
            if mat is None:
                from scipy.sparse import csr_matrix

                mat = csr_matrix(
                    (
                        cast(Any, self.data).astype(wdtype),
                        cast(Any, self.indices),
                        cast(Any, self.indptr),
                    ),
                    shape=(self.n_out, self.n_in),
                )
                cache[wdtype] = mat  # the CSR arrays as scipy wants them, built once
            z = np.asarray((mat @ operand.T).T)
        else:
            z = operand @ cast(Any, self.weight).astype(wdtype, copy=False)
        if int_path:
            if z.dtype != np.int32:  # keep the int32 accumulator honest
                raise TreeSlimError(f"int8 layer accumulated in {z.dtype}, expected int32.")
            return z * (cast(float, self.act_scale) * cast(Any, self.scale)) + self.bias
        if self.scale is not None:
            z = z * self.scale
        return z + self.bias


def _activate(name: str, z: NDArray[np.float64]) -> NDArray[np.float64]:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "logistic":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-z))
    return z


@dataclass(frozen=True, eq=False)
class MLP:
    """A multi-layer perceptron: the IR the ``treeslim.nn`` passes read and write.

    Parameters
    ----------
    layers : tuple of Layer
        Affine maps from the input to the output, in order.
    activation : {"relu", "tanh", "logistic", "identity"}
        Applied after every layer but the last.
    task : {"binary", "multiclass", "regression"}
        Decides the output link: logistic, softmax, identity.
    classes : array-like, optional
        Class labels of a classifier, in output order.
    feature_names : tuple of str, optional
    source : dict
        Where the model came from (library, class, notes of the passes run).

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer
    >>> mlp = MLP((Layer(np.zeros(3), weight=np.ones((2, 3))), Layer(np.zeros(1), weight=np.ones((3, 1)))),
    ...           activation="relu", task="regression")
    >>> mlp.predict(np.array([[1.0, -2.0], [1.0, 1.0]]))
    array([0., 6.])
    """

    layers: tuple[Layer, ...]
    activation: str = "relu"
    task: str = "regression"
    classes: NDArray[Any] | None = None
    feature_names: tuple[str, ...] | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.classes is not None:
            object.__setattr__(self, "classes", _ro(self.classes))
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(str(n) for n in self.feature_names))
        validate_mlp(self)

    # -- header ---------------------------------------------------------------------------------
    @property
    def num_feature(self) -> int:
        return self.layers[0].n_in

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_out

    @property
    def out_activation(self) -> str:
        return _LINKS[self.task]

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return tuple(layer.n_out for layer in self.layers[:-1])

    @property
    def n_params(self) -> int:
        """Stored weight values and biases over all layers."""
        return sum(layer.n_params for layer in self.layers)

    feature_dtype = "float64"  # read by treeslim.ir.check_X

    def replace(self, **changes: Any) -> MLP:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # -- prediction -----------------------------------------------------------------------------
    def forward(self, X: Any) -> list[NDArray[np.float64]]:
        """Inputs of every layer plus the final margin: ``[x, h1, ..., margin]`` (checked X)."""
        x = check_X(cast(Any, self), X)
        outs = [x]
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer.apply(x)
            if i < last:
                x = _activate(self.activation, x)
            outs.append(x)
        return outs

    def predict_margin(self, X: Any) -> NDArray[np.float64]:
        """Pre-link outputs: shape (n,) for one output, (n, n_outputs) otherwise."""
        z = self.forward(X)[-1]
        return z[:, 0] if self.n_outputs == 1 else z

    def predict(self, X: Any) -> NDArray[np.float64]:
        """Probabilities (of class 1, shape (n,), when binary; (n, n_classes) when multiclass)
        for classifiers; values for regression."""
        z = self.predict_margin(X)
        return link(self.task, z)


def link(task: str, z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map margins to predictions with the task's output link."""
    if task == "binary":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-z))
    if task == "multiclass":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def _check_layer(i: int, layer: Layer) -> None:
    where = f"layer {i}"

    def bad(msg: str) -> InvalidMLPError:
        return InvalidMLPError(f"{where}: {msg}")

    if layer.bias.ndim != 1 or layer.n_out < 1:
        raise bad(f"bias must be 1-D and non-empty; got shape {layer.bias.shape}.")
    forms = [layer.weight is not None, layer.data is not None, layer.u is not None]
    if sum(forms) != 1:
        raise bad("exactly one of weight (dense), data (sparse) or u/v (lowrank) must be set.")
    if layer.n_in < 1:
        raise bad(f"n_in must be >= 1; got {layer.n_in}.")
    stored = layer.stored
    if stored.dtype not in (np.float64, np.float32, np.float16, np.int8):
        raise bad(f"weights must be float64/32/16 or int8; got {stored.dtype}.")
    quant = stored.dtype == np.int8
    if quant != (layer.scale is not None):
        raise bad("int8 weights need a per-channel scale, and only int8 weights have one.")
    if layer.scale is not None and (
        layer.scale.shape != (layer.n_out,)
        or not np.all(np.isfinite(layer.scale))
        or np.any(layer.scale <= 0)
    ):
        raise bad(f"scale must be {layer.n_out} finite positive values.")
    if layer.act_scale is not None and (not quant or not (0 < layer.act_scale < np.inf)):
        raise bad("act_scale must be a finite positive number, set on int8 layers only.")
    if layer.kind == "dense" and stored.shape != (layer.n_in, layer.n_out):
        raise bad(f"weight has shape {stored.shape}, expected ({layer.n_in}, {layer.n_out}).")
    if layer.kind == "lowrank":
        u, v = cast(Any, layer.u), layer.v
        if v is None or u.ndim != 2 or v.ndim != 2 or u.shape[1] != v.shape[0] or u.shape[1] < 1:
            raise bad("lowrank factors must be u (n_in, r) and v (r, n_out) with r >= 1.")
        if v.shape[1] != layer.n_out or v.dtype != u.dtype or quant:
            raise bad(f"v must have {layer.n_out} columns and u's float dtype.")
    if layer.kind == "sparse":
        ind, ptr = layer.indices, layer.indptr
        if ind is None or ptr is None or stored.ndim != 1 or ind.shape != stored.shape:
            raise bad("sparse layers need 1-D data and indices of equal length, and indptr.")
        if ptr.shape != (layer.n_out + 1,) or ptr[0] != 0 or ptr[-1] != len(ind):
            raise bad(f"indptr must have {layer.n_out + 1} entries from 0 to nnz={len(ind)}.")
        if np.any(np.diff(ptr) < 0) or (len(ind) and (ind.min() < 0 or ind.max() >= layer.n_in)):
            raise bad(f"indptr must not decrease and indices must lie in [0, {layer.n_in}).")
        for j in range(layer.n_out):
            row = ind[ptr[j] : ptr[j + 1]]
            if np.any(np.diff(row) <= 0):
                raise bad(f"indices of output channel {j} must be sorted and unique.")
    if stored.dtype.kind == "f" and not np.all(np.isfinite(stored)):
        raise bad("weights must be finite.")
    if layer.v is not None and not np.all(np.isfinite(layer.v)):
        raise bad("weights must be finite.")
    if not np.all(np.isfinite(layer.bias)):
        raise bad("bias must be finite.")


def validate_mlp(mlp: MLP) -> None:
    """Check every invariant of ``mlp``; raise :class:`InvalidMLPError` naming the layer at fault."""
    if not mlp.layers or not all(isinstance(layer, Layer) for layer in mlp.layers):
        raise InvalidMLPError("an MLP needs at least one Layer (layers must be Layer objects).")
    if mlp.activation not in HIDDEN_ACTIVATIONS:
        raise InvalidMLPError(
            f"activation must be one of {HIDDEN_ACTIVATIONS}; got {mlp.activation!r}."
        )
    if mlp.task not in _LINKS:
        raise InvalidMLPError(f"task must be one of {tuple(_LINKS)}; got {mlp.task!r}.")
    for i, layer in enumerate(mlp.layers):
        _check_layer(i, layer)
        if i and layer.n_in != mlp.layers[i - 1].n_out:
            raise InvalidMLPError(
                f"layer {i}: takes {layer.n_in} inputs but layer {i - 1} gives {mlp.layers[i - 1].n_out}."
            )
    k = mlp.n_outputs
    if mlp.task == "binary" and k != 1:
        raise InvalidMLPError(f"a binary MLP has 1 output; the last layer has {k}.")
    if mlp.task == "multiclass" and k < 3:
        raise InvalidMLPError(f"a multiclass MLP has >= 3 outputs; the last layer has {k}.")
    if mlp.classes is not None:
        want = 2 if mlp.task == "binary" else k
        if mlp.task == "regression" or mlp.classes.shape != (want,):
            raise InvalidMLPError(f"classes must hold {want} labels for a {mlp.task} MLP.")
    if mlp.feature_names is not None and len(mlp.feature_names) != mlp.num_feature:
        raise InvalidMLPError(
            f"feature_names has {len(mlp.feature_names)} names for {mlp.num_feature} features."
        )
