"""The ``.tslim`` file of an :class:`~treeslim.nn.MLP`: every weight stored at its real width.

Layout (little-endian): the same 20-byte header as the forest format but the magic ``b"TSLNN"``
(so :func:`treeslim.load` tells the two apart by content), format version (``u8``), flags
(``u16``: bit 0 = the payload is zlib-deflated, set when that makes it smaller), payload length
(``u64``) and ``zlib.crc32`` of the stored payload (``u32``). The payload is a ``u32`` length
plus a compact JSON header (task, activation, classes, feature
names, source, and per layer its form, sizes and dtypes), then per layer the raw arrays:

* dense: the weights in their dtype (float64 / float32 / float16 / int8), row-major;
* sparse: the positions, as a bitmask over the (n_out, n_in) grid or as per-channel counts plus
  column indices in the narrowest unsigned width, whichever is smaller, then the values;
* low-rank: ``u`` then ``v``;
* int8 layers: one scale per output channel; then the bias; both in the narrowest of float16 /
  float32 / float64 that holds them exactly (:func:`~treeslim.nn.quantize_weights` rounds them to
  float16 next to int8 / fp16 weights).

Loading gives back the same arrays, so predictions are bit-identical. A corrupt, truncated or
foreign file raises :class:`~treeslim.ModelFormatError`; sizes are checked against the bytes left
before anything is allocated.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import write_atomic
from treeslim.errors import ModelFormatError
from treeslim.formats import pack_container, unpack_container
from treeslim.nn._mlp import MLP, Layer

__all__ = ["MAGIC", "dump_mlp_bytes", "load_mlp_bytes", "save_mlp"]

MAGIC = b"TSLNN"
VERSION = 1
_DTYPES = {"float64": "<f8", "float32": "<f4", "float16": "<f2", "int8": "i1"}
_MAX_DIM = 1 << 24
_FLOATS = ("float16", "float32", "float64")
_DEFLATED = 1  # flag: the JSON header and the arrays after it are zlib-deflated


def _narrowest(a: NDArray[Any]) -> str:
    """The narrowest float dtype that holds every value of ``a`` exactly."""
    a = np.asarray(a, dtype=np.float64)
    with np.errstate(over="ignore"):
        for name in ("float16", "float32"):
            if np.array_equal(a.astype(name).astype(np.float64), a):
                return name
    return "float64"


def _index_width(n: int) -> str:
    return "u1" if n <= 1 << 8 else "u2" if n <= 1 << 16 else "<u4"


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _layer_blocks(layer: Layer) -> tuple[dict[str, Any], list[bytes]]:
    meta: dict[str, Any] = {"kind": layer.kind, "n_in": layer.n_in, "n_out": layer.n_out}
    blocks: list[bytes] = []
    dt = _DTYPES[layer.precision]
    meta["dtype"] = layer.precision
    if layer.kind == "dense":
        blocks.append(np.asarray(layer.weight).astype(dt).tobytes())
    elif layer.kind == "lowrank":
        meta["rank"] = int(np.asarray(layer.u).shape[1])
        blocks += [
            np.asarray(layer.u).astype(dt).tobytes(),
            np.asarray(layer.v).astype(dt).tobytes(),
        ]
    else:
        ind, ptr = np.asarray(layer.indices), np.asarray(layer.indptr)
        nnz = len(ind)
        meta["nnz"] = nnz
        counts_w = _index_width(layer.n_in)  # a channel holds at most n_in entries
        idx_w = _index_width(layer.n_in - 1)
        by_mask = (layer.n_out * layer.n_in + 7) // 8
        by_index = layer.n_out * np.dtype(counts_w).itemsize + nnz * np.dtype(idx_w).itemsize
        if by_mask <= by_index:
            meta["index"] = "mask"
            grid = np.zeros((layer.n_out, layer.n_in), dtype=np.uint8)
            rows = np.repeat(np.arange(layer.n_out), np.diff(ptr))
            grid[rows, ind] = 1
            blocks.append(np.packbits(grid.ravel(), bitorder="little").tobytes())
        else:
            meta["index"] = "list"
            blocks.append(np.diff(ptr).astype(counts_w).tobytes())
            blocks.append(ind.astype(idx_w).tobytes())
        blocks.append(np.asarray(layer.data).astype(dt).tobytes())
    if layer.scale is not None:
        meta["scale"] = _narrowest(layer.scale)
        blocks.append(np.asarray(layer.scale).astype(_DTYPES[meta["scale"]]).tobytes())
    if layer.act_scale is not None:
        meta["act_scale"] = layer.act_scale
    meta["bias"] = _narrowest(layer.bias)
    blocks.append(layer.bias.astype(_DTYPES[meta["bias"]]).tobytes())
    return meta, blocks


def dump_mlp_bytes(mlp: MLP) -> bytes:
    """The ``.tslim`` bytes of ``mlp`` (see the module docstring for the layout).

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer
    >>> from treeslim.nn._format import dump_mlp_bytes, load_mlp_bytes
    >>> mlp = MLP((Layer(np.zeros(2, np.float32), weight=np.ones((3, 2), np.float32)),))
    >>> data = dump_mlp_bytes(mlp)
    >>> data[:5], bool((load_mlp_bytes(data).predict(np.ones((1, 3))) == 3).all())
    (b'TSLNN', True)
    """
    metas, blocks = [], []
    for layer in mlp.layers:
        meta, raw = _layer_blocks(layer)
        metas.append(meta)
        blocks += raw
    header = {
        "task": mlp.task,
        "activation": mlp.activation,
        "classes": None if mlp.classes is None else [_plain(c) for c in mlp.classes],
        "feature_names": None if mlp.feature_names is None else list(mlp.feature_names),
        "source": mlp.source,
        "layers": metas,
    }
    text = json.dumps(header, separators=(",", ":"), default=_plain).encode()
    body = struct.pack("<I", len(text)) + text + b"".join(blocks)
    packed = zlib.compress(body, 9)
    flags, payload = (_DEFLATED, packed) if len(packed) < len(body) else (0, body)
    return pack_container(MAGIC, VERSION, flags, payload)


def save_mlp(mlp: MLP, path: str | os.PathLike[str]) -> None:
    """Write ``mlp`` to ``path`` as ``.tslim``, atomically; read it back with :func:`treeslim.load`."""
    write_atomic(path, dump_mlp_bytes(mlp))


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or n > len(self.data) - self.pos:
            raise ModelFormatError(
                f"{what} needs {n} bytes but only {len(self.data) - self.pos} are left (truncated"
                " or corrupt file)."
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def array(self, n: int, dtype: str, what: str) -> NDArray[Any]:
        raw = np.frombuffer(self.take(n * np.dtype(dtype).itemsize, what), dtype=dtype)
        return raw.astype(raw.dtype.newbyteorder("="))  # native order, a writable copy


def _dim(meta: dict[str, Any], key: str, where: str) -> int:
    v = meta.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 < v <= _MAX_DIM:
        raise ModelFormatError(f"{where}: {key} must be an int in [1, {_MAX_DIM}]; got {v!r}.")
    return v


def _read_layer(c: _Cursor, meta: Any, i: int) -> Layer:
    where = f"layer {i}"
    if not isinstance(meta, dict):
        raise ModelFormatError(f"{where}: header entry is not an object.")
    n_in, n_out = _dim(meta, "n_in", where), _dim(meta, "n_out", where)
    prec, kind = meta.get("dtype"), meta.get("kind")
    if prec not in _DTYPES or kind not in ("dense", "sparse", "lowrank"):
        raise ModelFormatError(f"{where}: unknown form {kind!r} / dtype {prec!r}.")
    dt = _DTYPES[prec]
    fields: dict[str, Any] = {}
    if kind == "dense":
        fields["weight"] = c.array(n_in * n_out, dt, f"{where} weights").reshape(n_in, n_out)
    elif kind == "lowrank":
        r = _dim(meta, "rank", where)
        fields["u"] = c.array(n_in * r, dt, f"{where} u").reshape(n_in, r)
        fields["v"] = c.array(r * n_out, dt, f"{where} v").reshape(r, n_out)
    else:
        nnz = meta.get("nnz")
        if not isinstance(nnz, int) or not 0 <= nnz <= n_in * n_out:
            raise ModelFormatError(f"{where}: nnz must be an int in [0, {n_in * n_out}].")
        if meta.get("index") == "mask":
            bits = np.unpackbits(
                np.frombuffer(c.take((n_in * n_out + 7) // 8, f"{where} mask"), np.uint8),
                bitorder="little",
            )[: n_in * n_out].reshape(n_out, n_in)
            rows, cols = np.nonzero(bits)
            counts = np.bincount(rows, minlength=n_out)
        elif meta.get("index") == "list":
            counts = c.array(n_out, _index_width(n_in), f"{where} counts").astype(np.int64)
            cols = c.array(nnz, _index_width(n_in - 1), f"{where} indices").astype(np.int64)
        else:
            raise ModelFormatError(f"{where}: unknown index encoding {meta.get('index')!r}.")
        if len(cols) != nnz or int(counts.sum()) != nnz:
            raise ModelFormatError(f"{where}: the index holds {len(cols)} entries, nnz says {nnz}.")
        fields["indices"] = cols
        fields["indptr"] = np.concatenate([[0], np.cumsum(counts)])
        fields["n_in"] = n_in
        fields["data"] = c.array(nnz, dt, f"{where} values")
    if prec == "int8":
        if meta.get("scale") not in _FLOATS:
            raise ModelFormatError(f"{where}: unknown scale dtype {meta.get('scale')!r}.")
        scale = c.array(n_out, _DTYPES[meta["scale"]], f"{where} scales")
        fields["scale"] = scale.astype(np.float64)
    act = meta.get("act_scale")
    if act is not None and not isinstance(act, (int, float)):
        raise ModelFormatError(f"{where}: act_scale must be a number.")
    fields["act_scale"] = act
    if meta.get("bias") not in _FLOATS:
        raise ModelFormatError(f"{where}: unknown bias dtype {meta.get('bias')!r}.")
    bias = c.array(n_out, _DTYPES[meta["bias"]], f"{where} bias").astype(np.float64)
    return Layer(bias, **fields)


def load_mlp_bytes(data: bytes, name: str = "<bytes>") -> MLP:
    """Read an MLP from ``.tslim`` bytes written by :func:`dump_mlp_bytes`."""
    flags, payload = unpack_container(
        bytes(data),
        magic=MAGIC,
        version=VERSION,
        known_flags=_DEFLATED,
        kind="MLP .tslim",
        article="an",
        name=name,
    )
    if flags & _DEFLATED:
        inflater = zlib.decompressobj()
        try:  # bounded: deflate expands at most ~1032x
            payload = inflater.decompress(payload, 1032 * len(payload) + 1024)
        except zlib.error as exc:
            raise ModelFormatError(f"{name}: corrupt deflated payload ({exc}).") from None
        if not inflater.eof or inflater.unused_data or inflater.unconsumed_tail:
            raise ModelFormatError(f"{name}: corrupt deflated payload (bad length).")
    try:
        c = _Cursor(payload)
        (size,) = struct.unpack("<I", c.take(4, "header length"))
        head = json.loads(c.take(size, "header").decode("utf-8"))
        if not isinstance(head, dict) or not isinstance(head.get("layers"), list):
            raise ModelFormatError("the header is not an object with a list of layers.")
        layers = tuple(_read_layer(c, m, i) for i, m in enumerate(head["layers"]))
        if c.pos != len(payload):
            raise ModelFormatError(f"{len(payload) - c.pos} bytes left over after the last layer.")
        classes = head.get("classes")
        source = head.get("source")
        return MLP(
            layers,
            activation=head.get("activation"),  # type: ignore[arg-type]
            task=head.get("task"),  # type: ignore[arg-type]
            classes=None if classes is None else np.asarray(classes),
            feature_names=head.get("feature_names"),
            source=source if isinstance(source, dict) else {},
        )
    except ModelFormatError as exc:
        raise ModelFormatError(f"{name}: {exc}") from None
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, OverflowError) as exc:
        raise ModelFormatError(f"{name}: corrupt MLP file ({exc}).") from None
