"""The ``.tslim`` format: a compact, versioned, checksummed binary file of one :class:`Forest`.

Every field is stored at its real width, so the structure quantization passes leave in a Forest
(few distinct thresholds, few distinct leaf values) turns into bytes saved:

* a 20-byte header: magic ``b"TSLIM"``, format version (``u8``), flags (``u16``), payload length
  (``u64``) and the ``zlib.crc32`` of the payload (``u32``), all little-endian;
* a compact JSON object with the scalar fields (task, num_class, base_score, postprocessor,
  sigmoid_alpha, average, comparison, feature_dtype, feature_names, source, counts);
* a bitstream: each tree in preorder as one bit per node (internal / leaf), from which the child
  links and the tree boundaries are rebuilt; ``tree_class`` bit-packed; each split's feature as an
  index into the sorted list of features the forest uses (``ceil(log2(n_used))`` bits); for every
  used feature a sorted table of its distinct thresholds (float32 when every value is float32-exact,
  else float64) and each split's index into it (``ceil(log2(table size))`` bits); ``default_left``
  as one bit per split; leaf values as a codebook plus bit-packed codes (at most ``2**16`` distinct
  values, and only when it is smaller) or raw float32 / float64;
* with flag bit 3, the categorical splits: which splits are categorical (one bit each), each one's
  category set as an index into a table of the distinct sets the forest uses, and that table as
  raw little-endian uint32 bitset words (``category_rule`` and ``feature_categories`` are in the
  JSON object).

Loading is exactly lossless: the same arrays up to node order (nodes come back in preorder), so
predictions are bit-identical. Node statistics (``sum_hess``, ``data_count``, ``gain``) are *not*
stored unless ``stats=True``. A corrupt, truncated or foreign file raises :class:`ModelFormatError`;
every count is checked against the bytes left before anything is allocated, and ``num_feature``
against the features the trees split on (see :func:`~treeslim.formats.check_feature_count`).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import write_atomic
from treeslim.errors import ModelFormatError
from treeslim.formats._bits import BitReader, BitWriter, bitlen
from treeslim.formats._container import pack_container, unpack_container
from treeslim.formats._limits import check_feature_count
from treeslim.ir import Forest, validate

__all__ = ["dump_tslim_bytes", "load_tslim_bytes", "save_tslim"]

MAGIC = b"TSLIM"
VERSION = 1
_STATS = Forest.STAT_FIELDS  # flag bits 0, 1, 2
_CATEGORICAL = 1 << 3
_KNOWN_FLAGS = 0b1111
_MAX_CODEBOOK = 2**16


# ---------------------------------------------------------------------------------------- writing
def _preorder(forest: Forest) -> NDArray[np.intp]:
    """Permutation putting every tree's nodes in preorder (old index of each new position)."""
    n = forest.n_nodes
    depth = forest.node_depth
    internal = forest.split_index >= 0
    cl, cr = forest.cleft.astype(np.intp), forest.cright.astype(np.intp)
    by_depth = np.argsort(depth, kind="stable")
    cuts = np.searchsorted(depth[by_depth], np.arange(forest.max_depth + 2))
    levels = [by_depth[cuts[d] : cuts[d + 1]] for d in range(forest.max_depth + 1)]
    levels = [lv[internal[lv]] for lv in levels]
    size = np.ones(n, dtype=np.intp)
    for nodes in reversed(levels):
        size[nodes] = 1 + size[cl[nodes]] + size[cr[nodes]]
    pos = np.empty(n, dtype=np.intp)
    pos[forest.tree_offsets[:-1]] = forest.tree_offsets[:-1]
    for nodes in levels:
        pos[cl[nodes]] = pos[nodes] + 1
        pos[cr[nodes]] = pos[nodes] + 1 + size[cl[nodes]]
    perm = np.empty(n, dtype=np.intp)
    perm[pos] = np.arange(n)
    return perm


def _f32_exact(values: NDArray[np.float64]) -> bool:
    with np.errstate(over="ignore"):
        back = values.astype(np.float32).astype(np.float64)
    return bool(np.array_equal(back.view(np.uint64), values.view(np.uint64)))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise ModelFormatError(
        f"Cannot store a {type(obj).__name__} of Forest.source in a .tslim file: source values"
        " must be JSON-serializable."
    )


def _write_splits(
    w: BitWriter, feats: NDArray[np.int32], thr: NDArray[np.float64], default_left: NDArray[Any]
) -> None:
    """Used features, split feature codes, per-feature threshold tables and indices."""
    used, codes = np.unique(feats, return_inverse=True)
    w.uints([len(used)])
    w.uints(used)
    w.uints(codes, bitlen(len(used) - 1))
    tables, indices = [], []
    for j in range(len(used)):
        uniq, inv = np.unique(thr[codes == j].view(np.uint64), return_inverse=True)
        vals = uniq.view(np.float64)
        order = np.argsort(vals, kind="stable")  # by value; -0.0 and 0.0 both kept
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        tables.append(vals[order])
        indices.append(rank[inv.ravel()])
    f64 = [not _f32_exact(t) for t in tables]
    w.uints([len(t) for t in tables])
    w.bits(np.array(f64))
    for table, idx in zip(tables, indices, strict=True):
        w.uints(idx, bitlen(len(table) - 1))
    w.bits(default_left)
    for dtype, wide in (("<f4", False), ("<f8", True)):
        block = [t for t, f in zip(tables, f64, strict=True) if f == wide]
        w.raw(b"".join(t.astype(dtype).tobytes() for t in block))


def _write_leaves(w: BitWriter, vals: NDArray[np.float64]) -> None:
    """Mode (2 bits): 0/1 codebook float32/float64, 2/3 raw float32/float64."""
    f32 = _f32_exact(vals)
    vbytes = 4 if f32 else 8
    uniq, codes = np.unique(vals.view(np.uint64), return_inverse=True)
    k = len(uniq)
    book_bits = 8 * vbytes * k + vals.size * bitlen(k - 1) + 48
    if 2 <= k <= _MAX_CODEBOOK and book_bits < 8 * vbytes * vals.size:  # codes take >= 1 bit
        w.uints([0 if f32 else 1], 2)
        w.uints([k])
        w.uints(codes, bitlen(k - 1))
        vals = uniq.view(np.float64)
    else:
        w.uints([2 if f32 else 3], 2)
    w.raw(vals.astype("<f4" if f32 else "<f8").tobytes())


def _write_categories(w: BitWriter, sets: NDArray[np.int32], table: NDArray[np.uint32]) -> None:
    """Which splits are categorical, their set indices, and the table of the sets they use."""
    is_cat = sets >= 0
    used, codes = np.unique(sets[is_cat], return_inverse=True)
    words = table[used]
    nonzero = np.flatnonzero(words.any(axis=0))
    n_words = int(nonzero[-1]) + 1 if len(nonzero) else 1
    w.uints([len(used), n_words])
    w.bits(is_cat)
    w.uints(codes.ravel(), bitlen(len(used) - 1))
    w.raw(np.ascontiguousarray(words[:, :n_words]).astype("<u4").tobytes())


def _read_categories(r: BitReader, n_internal: int) -> tuple[Any, Any]:
    """Per split, its set index (-1 when numerical), and the bitset table."""
    n_sets, n_words = (int(v) for v in r.uints(2, "category table shape"))
    if not 1 <= n_sets <= n_internal or not 1 <= n_words <= 1 << 19:
        raise ModelFormatError(f"a category table of {n_sets} x {n_words} words is out of range.")
    is_cat = r.bits(n_internal, "categorical split flags").astype(bool)
    n_cat = int(is_cat.sum())
    codes = r.uints(n_cat, "category set indices", bitlen(n_sets - 1))
    if n_cat == 0 or codes.max() >= n_sets:
        raise ModelFormatError("a category set index is out of range.")
    words = r.raw(4 * n_sets * n_words, "category bitsets")
    table = np.frombuffer(words, dtype="<u4").astype(np.uint32).reshape(n_sets, n_words)
    sets = np.full(n_internal, -1, dtype=np.int64)
    sets[is_cat] = codes
    return sets, table


def dump_tslim_bytes(forest: Forest, *, stats: bool = False) -> bytes:
    """Serialize ``forest`` to ``.tslim`` bytes.

    Parameters
    ----------
    forest : Forest
    stats : bool, default False
        Also store the node statistics (``sum_hess``, ``data_count``, ``gain``) that the forest has,
        as raw float64. They are not needed to predict and are left out by default.

    Returns
    -------
    bytes

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim import Forest
    >>> from treeslim.formats import dump_tslim_bytes, load_tslim_bytes
    >>> f = Forest(split_index=[0, -1, -1], threshold=[0.5, 0, 0], cleft=[1, -1, -1],
    ...            cright=[2, -1, -1], default_left=[True, False, False],
    ...            leaf_value=[0.0, -1.0, 1.0], tree_offsets=[0, 3], tree_class=[0],
    ...            num_feature=1, task="regression")
    >>> data = dump_tslim_bytes(f)
    >>> data[:5], len(data) < 300
    (b'TSLIM', True)
    >>> load_tslim_bytes(data).predict_margin(np.array([[0.0], [1.0], [np.nan]])).tolist()
    [-1.0, 1.0, -1.0]
    """
    perm = _preorder(forest)
    si = forest.split_index[perm]
    internal = si >= 0
    skip = ("base_score", "feature_names", "cat_bitsets")
    defaults = {"category_rule": "xgboost", "feature_categories": None, "margin_dtype": "float64"}
    meta = {
        k: v
        for k, v in forest.header().items()
        if k not in skip and not (k in defaults and v == defaults[k])  # older readers' files
    }
    meta.update(
        base_score=forest.base_score.tolist(),
        feature_names=None if forest.feature_names is None else list(forest.feature_names),
        n_trees=forest.n_trees,
        n_nodes=forest.n_nodes,
        leaf_width=forest.leaf_width,
    )
    head = json.dumps(meta, separators=(",", ":"), default=_json_default).encode()
    w = BitWriter()
    w.raw(struct.pack("<I", len(head)) + head)
    w.bits(internal)
    w.uints(forest.tree_class.astype(np.int64) + 1)
    if internal.any():
        dl = forest.default_left[perm][internal]
        _write_splits(w, si[internal], forest.threshold[perm][internal], dl)
    _write_leaves(w, forest.leaf_value[perm][~internal].ravel())
    flags = 0
    if forest.cat_index is not None and forest.cat_bitsets is not None:
        flags |= _CATEGORICAL
        _write_categories(w, forest.cat_index[perm][internal], forest.cat_bitsets)
    for bit, name in enumerate(_STATS):
        value = getattr(forest, name)
        if stats and value is not None:
            flags |= 1 << bit
            w.raw(value[perm].astype("<f8").tobytes())
    return pack_container(MAGIC, VERSION, flags, w.getvalue())


def save_tslim(forest: Forest, path: str | os.PathLike[str], *, stats: bool = False) -> None:
    """Write ``forest`` to ``path`` as ``.tslim`` (atomically: a failed write loses nothing).

    See :func:`dump_tslim_bytes`; read it back with :func:`treeslim.load`.
    """
    write_atomic(path, dump_tslim_bytes(forest, stats=stats))


# ---------------------------------------------------------------------------------------- reading
_META_TYPES: dict[str, Any] = {
    "num_feature": int, "task": str, "num_class": int, "base_score": list,
    "postprocessor": str, "sigmoid_alpha": (int, float), "average": bool, "comparison": str,
    "feature_dtype": str, "feature_names": (list, type(None)), "source": dict, "n_trees": int,
    "n_nodes": int, "leaf_width": int,
}  # fmt: skip
_OPTIONAL_META: dict[str, Any] = {
    "category_rule": str, "feature_categories": (list, type(None)), "margin_dtype": str,
}  # fmt: skip


def _read_meta(r: BitReader) -> dict[str, Any]:
    (size,) = struct.unpack("<I", r.raw(4, "header length"))
    try:
        meta = json.loads(r.raw(size, "JSON header").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFormatError(f"the JSON header is corrupt ({exc}).") from None
    if not isinstance(meta, dict):
        raise ModelFormatError("the JSON header is not an object.")
    for key, types in _META_TYPES.items():
        value = meta.get(key)
        if not isinstance(value, types) or (types is int and isinstance(value, bool)):
            raise ModelFormatError(f"the JSON header has a bad or missing {key!r}: {value!r:.60}.")
    for key, types in _OPTIONAL_META.items():
        if key in meta and not isinstance(meta[key], types):
            raise ModelFormatError(f"the JSON header has a bad {key!r}: {meta[key]!r:.60}.")
    for key in ("num_feature", "num_class", "n_trees", "n_nodes", "leaf_width"):
        if not 1 <= meta[key] < 2**31:
            raise ModelFormatError(f"the JSON header's {key!r} is out of range: {meta[key]}.")
    if len(meta["base_score"]) != (meta["num_class"] if meta["task"] == "multiclass" else 1):
        raise ModelFormatError("base_score does not have one entry per output.")
    if meta["leaf_width"] not in (1, len(meta["base_score"])):
        raise ModelFormatError(f"leaf_width {meta['leaf_width']} is not 1 or the output count.")
    return meta


def _read_structure(r: BitReader, n: int, n_trees: int) -> tuple[Any, ...]:
    """Tree offsets, internal mask and child links from the preorder bits."""
    internal = r.bits(n, "tree structure").astype(bool)
    level = np.concatenate([[0], np.cumsum(np.where(internal, 1, -1))])
    if level[-1] != -n_trees or level[:-1].min() <= -n_trees:
        raise ModelFormatError(f"the tree structure does not make {n_trees} complete trees.")
    run_min = np.minimum.accumulate(level)
    ends = np.flatnonzero(level[1:] < run_min[:-1]) + 1
    offsets = np.concatenate([[0], ends]).astype(np.int64)
    before = level[:-1]
    order = np.argsort(before, kind="stable")
    same = before[order[:-1]] == before[order[1:]]
    nxt = np.full(n, -1, dtype=np.int64)
    nxt[order[:-1][same]] = order[1:][same]
    ids = np.arange(n, dtype=np.int64)
    cleft = np.where(internal, ids + 1, -1)
    cright = np.where(internal, nxt, -1)
    return offsets, internal, cleft, cright


def _read_thresholds(r: BitReader, n_internal: int, num_feature: int) -> tuple[Any, Any, Any]:
    """split_index and threshold of the internal nodes, and their default_left bits."""
    (n_used,) = r.uints(1, "feature count")
    if not 1 <= n_used <= n_internal or (n_internal == 0 and n_used):
        raise ModelFormatError(f"{n_used} used features for {n_internal} splits.")
    used = r.uints(n_used, "used features")
    if used[-1] >= num_feature or np.any(np.diff(used) <= 0):
        raise ModelFormatError(f"the used feature list is not increasing in [0, {num_feature}).")
    codes = r.uints(n_internal, "split features", bitlen(n_used - 1))
    if codes.max() >= n_used:
        raise ModelFormatError("a split's feature code is out of range.")
    counts = np.bincount(codes, minlength=n_used)
    sizes = r.uints(n_used, "table sizes")
    if np.any(sizes < 1) or np.any(sizes > counts):
        raise ModelFormatError("a threshold table size does not match its splits.")
    f64 = r.bits(n_used, "table types").astype(bool)
    idx = np.empty(n_internal, dtype=np.int64)
    members = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    for j in range(n_used):
        k = r.uints(int(counts[j]), "threshold indices", bitlen(int(sizes[j]) - 1))
        if k.max() >= sizes[j]:
            raise ModelFormatError(f"a threshold index of feature {used[j]} is out of range.")
        idx[members[starts[j] : starts[j + 1]]] = k
    default_left = r.bits(n_internal, "default_left").astype(bool)
    blocks = {
        "<f4": r.floats(int(sizes[~f64].sum()), "<f4", "float32 thresholds"),
        "<f8": r.floats(int(sizes[f64].sum()), "<f8", "float64 thresholds"),
    }
    tables, taken = [], {"<f4": 0, "<f8": 0}
    for j in range(n_used):
        key = "<f8" if f64[j] else "<f4"
        tables.append(blocks[key][taken[key] : taken[key] + sizes[j]])
        taken[key] += int(sizes[j])
    table_start = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    threshold = np.concatenate(tables)[table_start[codes] + idx]
    return used[codes], threshold, default_left


def _read_leaves(r: BitReader, n_vals: int) -> NDArray[np.float64]:
    (mode,) = r.uints(1, "leaf mode", 2)
    dtype = "<f4" if mode in (0, 2) else "<f8"
    if mode >= 2:
        return r.floats(n_vals, dtype, "leaf values")
    (k,) = r.uints(1, "codebook size")
    if not 2 <= k <= min(_MAX_CODEBOOK, n_vals):
        raise ModelFormatError(f"codebook size {k} is out of range for {n_vals} leaf values.")
    codes = r.uints(n_vals, "leaf codes", bitlen(k - 1))
    if codes.max() >= k:
        raise ModelFormatError("a leaf code is out of range.")
    return r.floats(int(k), dtype, "codebook")[codes]


def _decode(payload: bytes, flags: int) -> Forest:
    r = BitReader(payload)
    meta = _read_meta(r)
    n, width = meta["n_nodes"], meta["leaf_width"]
    offsets, internal, cleft, cright = _read_structure(r, n, meta["n_trees"])
    n_trees = len(offsets) - 1
    tree_class: Any = r.uints(n_trees, "tree_class") - 1
    n_internal = int(internal.sum())
    split_index = np.full(n, -1, dtype=np.int64)
    threshold = np.zeros(n)
    default_left = np.zeros(n, dtype=bool)
    if n_internal:
        feats, thr, dl = _read_thresholds(r, n_internal, meta["num_feature"])
        split_index[internal], threshold[internal], default_left[internal] = feats, thr, dl
    n_used = int(split_index.max()) + 1
    check_feature_count(meta["num_feature"], n_used, field="num_feature", where="the JSON header")
    values = _read_leaves(r, (n - n_internal) * width)  # checks the bytes before allocating
    leaf_value = np.zeros((n, width))
    leaf_value[~internal] = values.reshape(-1, width)
    categorical: dict[str, Any] = {}
    if flags & _CATEGORICAL:
        sets, table = _read_categories(r, n_internal)
        cat_index = np.full(n, -1, dtype=np.int64)
        cat_index[internal] = sets
        categorical = {"cat_index": cat_index, "cat_bitsets": table}
    stats: dict[str, Any] = {
        name: r.floats(n, "<f8", name) if flags >> bit & 1 else None
        for bit, name in enumerate(_STATS)
    }
    r.finish()
    header = {k: meta[k] for k in _META_TYPES if k not in ("n_trees", "n_nodes", "leaf_width")}
    header.update({k: meta[k] for k in _OPTIONAL_META if k in meta})
    forest = Forest(
        split_index=split_index, threshold=threshold, cleft=cleft, cright=cright,
        default_left=default_left, leaf_value=leaf_value, tree_offsets=offsets,
        tree_class=tree_class, **header, **categorical, **stats,
    )  # fmt: skip
    return validate(forest)


def load_tslim_bytes(data: bytes, name: str = "<bytes>") -> Forest:
    """Read a Forest from ``.tslim`` bytes (what :func:`dump_tslim_bytes` wrote).

    Parameters
    ----------
    data : bytes
    name : str, default "<bytes>"
        Used in error messages (the file name when reading a file).

    Returns
    -------
    Forest
        With its nodes in preorder; it predicts bit-identically to the forest that was saved.

    Raises
    ------
    ModelFormatError
        When the data is not a ``.tslim`` file, comes from a newer format version, is truncated, or
        fails its checksum or any consistency check.
    """
    flags, payload = unpack_container(
        bytes(data),
        magic=MAGIC,
        version=VERSION,
        known_flags=_KNOWN_FLAGS,
        kind=".tslim",
        name=name,
    )
    try:
        return _decode(payload, flags)
    except (ValueError, IndexError, TypeError, KeyError, OverflowError, struct.error) as exc:
        raise ModelFormatError(f"{name}: corrupt .tslim file: {exc}") from None  # incl. ours
