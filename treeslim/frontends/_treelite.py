"""Treelite frontend: ``treelite.Model`` objects and Treelite (v4) checkpoint files.

Trees are read through Treelite's field accessors, which hand over the model's own arrays (exact,
no JSON round trip through ``dump_as_json``). Treelite keeps one comparison operator per node, the
Forest one for all: ``>`` / ``>=`` nodes become ``<=`` / ``<`` with their children (and default
side) swapped, and ``<`` / ``<=`` convert into each other exactly by moving the threshold one
float64 ulp. A float32-threshold model becomes a float32 forest, since Treelite rounds inputs to its
threshold type. Checkpoint bytes are checked in full before Treelite sees them: Treelite 4.8
segfaults or hangs on some corrupt checkpoints.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from treeslim.errors import InvalidForestError, ModelFormatError, UnsupportedModelError
from treeslim.formats import check_feature_count
from treeslim.ir import Forest, TreeArrays

__all__ = [
    "forest_from_treelite",
    "forest_from_treelite_checkpoint",
    "looks_like_treelite_checkpoint",
]

_TASKS = {0: "binary", 1: "regression", 2: "multiclass", 3: "ranking"}
_POSTS = {
    "identity": "identity",
    "identity_multiclass": "identity",
    "sigmoid": "sigmoid",
    "multiclass_ova": "sigmoid",
    "softmax": "softmax",
    "exponential": "exponential",
}
_EQ, _LT, _LE, _GT, _GE = 1, 2, 3, 4, 5
_FLOAT = {2: np.float32, 3: np.float64}  # Treelite TypeInfo codes
_HEADER_FIELDS = (
    "threshold_type num_feature task_type average_tree_output num_target num_class"
    " leaf_vector_shape target_id class_id postprocessor sigmoid_alpha base_scores attributes"
).split()
# a tree in a checkpoint: name:dtype:length (n = one per node, * = any, ? = none or one per node)
_TREE_LAYOUT = (
    "node_type:i1:n cleft:i4:n cright:i4:n split_index:i4:n default_left:u1:n leaf_value:R:n"
    " threshold:R:n cmp:i1:n category_list_right_child:u1:n leaf_vector:R:* leaf_vector_begin:u8:n"
    " leaf_vector_end:u8:n category_list:u4:* category_list_begin:u8:n category_list_end:u8:n"
    " data_count:u8:? data_count_present:u1:? sum_hess:f8:? sum_hess_present:u1:? gain:f8:?"
    " gain_present:u1:?"
).split()
_TREE_FIELDS = [entry.split(":")[0] for entry in _TREE_LAYOUT if "category" not in entry]


def _one(h: dict[str, Any], key: str) -> int:
    return int(np.asarray(h[key]).ravel()[0])


def _header(h: dict[str, Any], n_trees: int) -> tuple[dict[str, Any], np.ndarray, int]:
    """Forest header fields, per-tree classes and leaf width from Treelite's header."""
    task_code = _one(h, "task_type")
    if task_code == 4:
        raise UnsupportedModelError(
            "Treelite isolation-forest models are not supported: treeslim holds classifiers,"
            " regressors and rankers."
        )
    if task_code not in _TASKS or _one(h, "threshold_type") not in _FLOAT:
        raise ModelFormatError(f"unknown task_type {task_code} or threshold_type.")
    task = _TASKS[task_code]
    if _one(h, "num_target") != 1:
        raise UnsupportedModelError(
            f"This Treelite model has {_one(h, 'num_target')} targets; treeslim holds one: split it"
            " into one model per target."
        )
    num_class, shape = np.asarray(h["num_class"]), np.asarray(h["leaf_vector_shape"])
    if num_class.size != 1 or shape.size != 2 or shape[0] != 1:
        raise ModelFormatError(
            f"num_class {num_class} / leaf_vector_shape {shape} do not fit one target."
        )
    k, width = int(num_class[0]), int(shape[1])
    if (task == "multiclass") != (k > 1) or k < 1 or width not in (1, k):
        raise ModelFormatError(f"task {task} with num_class {k} and leaf width {width}.")
    class_id = np.asarray(h["class_id"], dtype=np.int64)
    if class_id.shape != (n_trees,) or np.asarray(h["target_id"]).shape != (n_trees,):
        raise ModelFormatError(f"class_id / target_id do not have one entry per tree ({n_trees}).")
    if width > 1 or task != "multiclass":
        ok = np.isin(class_id, (-1,) if width > 1 else (-1, 0))
        tree_class = np.full(n_trees, -1 if width > 1 else 0)
    else:
        ok, tree_class = (class_id >= 0) & (class_id < k), class_id
    if not ok.all():
        t = int(np.flatnonzero(~ok)[0])
        raise UnsupportedModelError(
            f"Treelite tree {t} has class_id {int(class_id[t])}, which treeslim cannot map to one"
            f" of {k} outputs with leaf width {width}."
        )
    post = str(h["postprocessor"])
    if post not in _POSTS or (_POSTS[post] == "softmax" and k == 1):
        raise UnsupportedModelError(
            f"Treelite postprocessor {post!r} is not supported for task {task}; treeslim supports"
            f" {sorted(_POSTS)}."
        )
    base = np.asarray(h["base_scores"], dtype=np.float64)
    if base.size != k:
        raise ModelFormatError(f"{base.size} base_scores for {k} outputs.")
    header = {
        "task": task,
        "num_feature": _one(h, "num_feature"),
        "num_class": k,
        "base_score": base,
        "postprocessor": _POSTS[post],
        "sigmoid_alpha": float(np.asarray(h["sigmoid_alpha"]).ravel()[0]),
        "average": bool(_one(h, "average_tree_output")),
        "feature_dtype": "float32" if _one(h, "threshold_type") == 2 else "float64",
        "source": {"library": "treelite", "postprocessor": post, "task_type": task_code},
    }
    _apply_attributes(header, str(h.get("attributes") or ""))
    return header, tree_class, width


def _apply_attributes(header: dict[str, Any], text: str) -> None:
    """Restore what :func:`treeslim.to_treelite` stored in the model's attributes."""
    try:
        meta = json.loads(text).get("treeslim") if text.strip() else None
    except (ValueError, AttributeError):
        return
    if not isinstance(meta, dict):
        return
    if meta.get("feature_dtype") in ("float32", "float64") and header["feature_dtype"] == "float64":
        header["feature_dtype"] = meta["feature_dtype"]
    names = meta.get("feature_names")
    if isinstance(names, list) and len(names) == header["num_feature"]:
        header["feature_names"] = tuple(str(n) for n in names)
    if isinstance(meta.get("source"), dict):
        header["source"] = {**meta["source"], "via": "treelite"}


def _comparison(trees: list[dict[str, Any]]) -> str:
    ops = np.concatenate([t["cmp"][t["node_type"] == 1] for t in trees])
    if np.any(ops == _EQ):
        raise UnsupportedModelError(
            "This Treelite model tests x == threshold; treeslim holds <, <=, > and >= splits only."
        )
    return "<" if np.count_nonzero(np.isin(ops, (_LT, _GE))) > ops.size / 2 else "<="


def _tree(t: dict[str, Any], idx: int, tree_class: int, width: int, comparison: str) -> TreeArrays:
    nt = np.asarray(t["node_type"])
    n = nt.size
    for key in (
        "cleft",
        "cright",
        "split_index",
        "default_left",
        "leaf_value",
        "threshold",
        "cmp",
        "leaf_vector_begin",
        "leaf_vector_end",
    ):
        if np.asarray(t[key]).shape != (n,):
            raise ModelFormatError(
                f"tree {idx}: {key} has {np.asarray(t[key]).size} entries for {n} nodes."
            )
    if np.any(nt == 2):
        node = int(np.flatnonzero(nt == 2)[0])
        raise UnsupportedModelError(
            f"Treelite tree {idx}, node {node} is a categorical split on feature"
            f" {int(t['split_index'][node])}; treeslim holds numerical splits only: one-hot or"
            " ordinal-encode that feature and retrain."
        )
    if np.any((nt != 0) & (nt != 1)):
        raise ModelFormatError(f"tree {idx}: unknown node types {np.unique(nt).tolist()}.")
    inner, leaf = nt == 1, nt == 0
    thr = np.asarray(t["threshold"], dtype=np.float64).copy()
    cmp = np.asarray(t["cmp"], dtype=np.int64).copy()
    left, right = np.asarray(t["cleft"], np.int64), np.asarray(t["cright"], np.int64)
    dleft = np.asarray(t["default_left"]).astype(bool)
    nan = inner & np.isnan(thr)
    thr[nan], cmp[nan] = -np.inf, _LT  # every comparison with NaN is false: always right
    # x > t  <=>  not x <= t, and x >= t  <=>  not x < t: swap the children and the default side
    flip = inner & np.isin(cmp, (_GT, _GE))
    cmp[flip] = np.where(cmp[flip] == _GT, _LE, _LT)
    other = _LE if comparison == "<" else _LT
    conv = inner & (cmp == other)
    # x <= t <=> x < next(t) and x < t <=> x <= prev(t); at t = +inf (for <=) or -inf (for <) the
    # test is constant on non-NaN inputs, which the opposite infinity with swapped children keeps
    edge = conv & (thr == (np.inf if other == _LE else -np.inf))
    thr[conv & ~edge] = np.nextafter(thr[conv & ~edge], np.inf if other == _LE else -np.inf)
    thr[edge] = -thr[edge]
    flip ^= edge
    left, right = np.where(flip, right, left), np.where(flip, left, right)
    dleft = np.where(flip, ~dleft, dleft)
    leaf_value = _leaf_values(t, leaf, width, idx)
    return TreeArrays(
        split_index=np.where(inner, t["split_index"], -1),
        threshold=np.where(inner, thr, 0.0),
        cleft=np.where(inner, left, -1),
        cright=np.where(inner, right, -1),
        default_left=dleft & inner,
        leaf_value=leaf_value,
        tree_class=tree_class,
        **_stats(t, inner, n),
    )


def _leaf_values(t: dict[str, Any], leaf: np.ndarray, width: int, idx: int) -> np.ndarray:
    begin = np.asarray(t["leaf_vector_begin"], dtype=np.int64)
    end = np.asarray(t["leaf_vector_end"], dtype=np.int64)
    vec = np.asarray(t["leaf_vector"], dtype=np.float64)
    size = np.where(leaf, end - begin, 0)
    if np.any((size != 0) & (size != width)) or np.any(leaf & ((begin < 0) | (end > vec.size))):
        raise ModelFormatError(f"tree {idx}: leaf vectors do not hold {width} values each.")
    if width > 1 and np.any(leaf & (size == 0)):
        raise ModelFormatError(f"tree {idx}: a leaf has no vector of {width} class values.")
    out = np.zeros((leaf.size, width))
    out[:, 0] = np.asarray(t["leaf_value"], dtype=np.float64)
    has = size > 0
    out[has] = vec[begin[has, None] + np.arange(width)]
    return out


def _stats(t: dict[str, Any], inner: np.ndarray, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, target in (("data_count", "data_count"), ("sum_hess", "sum_hess")):
        values, present = np.asarray(t[key]), np.asarray(t[f"{key}_present"])
        out[target] = (
            values.astype(np.float64)
            if (values.shape == (n,) and present.shape == (n,) and present.all())
            else None
        )
    gain, present = np.asarray(t["gain"]), np.asarray(t["gain_present"])
    ok = gain.shape == (n,) and present.shape == (n,) and bool(present[inner].all())
    out["gain"] = np.where(inner, gain, 0.0).astype(np.float64) if ok else None
    return out


def _build(header_fields: dict[str, Any], trees: list[dict[str, Any]]) -> Forest:
    header, tree_class, width = _header(header_fields, len(trees))
    if not trees:
        raise UnsupportedModelError("This Treelite model has no trees.")
    comparison = _comparison(trees)
    built = [_tree(t, i, int(tree_class[i]), width, comparison) for i, t in enumerate(trees)]
    n_used = max((int(np.max(t.split_index)) + 1 for t in built), default=0)
    check_feature_count(header["num_feature"], n_used, field="num_feature", where="header")
    return Forest.from_trees(built, comparison=comparison, **header)


def forest_from_treelite(model: Any) -> Forest:
    """Build a Forest from a ``treelite.Model``.

    Parameters
    ----------
    model : treelite.Model

    Returns
    -------
    Forest
        Predicting what ``treelite.gtil.predict(model, X)`` predicts (squeezed to (n,) for one
        output). A float32-threshold model gives a float32 forest (GTIL rounds inputs to float32);
        a model made by :func:`treeslim.to_treelite` gets its forest's ``feature_dtype``,
        ``feature_names`` and ``source`` back from the model's attributes.

    Raises
    ------
    UnsupportedModelError
        For categorical or ``==`` splits, several targets, isolation forests, postprocessors
        other than identity / sigmoid / softmax / exponential / multiclass_ova.
    ModelFormatError
        For a model whose arrays are inconsistent.
    """
    try:
        acc = model.get_header_accessor()
        h = {key: acc.get_field(key) for key in _HEADER_FIELDS}
        trees = []
        for i in range(int(model.num_tree)):
            tacc = model.get_tree_accessor(i)
            trees.append({key: np.array(tacc.get_field(key), copy=True) for key in _TREE_FIELDS})
        return _build(h, trees)
    except UnicodeDecodeError as exc:
        raise ModelFormatError(f"Treelite model: a text field is not UTF-8 ({exc}).") from exc
    except (ModelFormatError, InvalidForestError) as exc:
        raise ModelFormatError(f"Treelite model: {exc}") from exc


# ---------------------------------------------------------------- checkpoint bytes (v4 format)
class _Reader:
    """Bounds-checked reader of Treelite's serialized stream."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, nbytes: int, what: str) -> memoryview:
        if nbytes < 0 or self.pos + nbytes > len(self.data):
            raise ModelFormatError(f"truncated or corrupt at byte {self.pos} (reading {what}).")
        out = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return out

    def scalar(self, fmt: str, what: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def array(self, dtype: Any, what: str) -> np.ndarray:
        n = self.scalar("Q", what)
        size = np.dtype(dtype).itemsize
        if n > (len(self.data) - self.pos) // size:
            raise ModelFormatError(f"{what} claims {n} entries, more than the data left.")
        return np.frombuffer(self.take(n * size, what), dtype=np.dtype(dtype).newbyteorder("<"))

    def text(self, what: str) -> str:
        try:
            return self.array(np.uint8, what).tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"{what} is not UTF-8 text ({exc}).") from None

    def flag(self, what: str) -> int:
        v = self.scalar("B", what)
        if v > 1:
            raise ModelFormatError(f"{what} is {v}, not a boolean.")
        return int(v)

    def skip_optional_fields(self, what: str) -> None:
        count = self.scalar("i", what)
        if count < 0:
            raise ModelFormatError(f"{what}: negative count {count}.")
        for _ in range(count):
            self.array(np.uint8, f"{what} name")
            nbytes = self.scalar("Q", what) * self.scalar("Q", what)
            self.take(nbytes if nbytes <= len(self.data) else -1, what)


def _parse_tree(r: _Reader, idx: int, real: Any) -> dict[str, Any]:
    n = r.scalar("i", f"tree {idx} num_nodes")
    if n < 1:
        raise ModelFormatError(f"tree {idx} has {n} nodes.")
    r.flag(f"tree {idx} has_categorical_split")
    t: dict[str, Any] = {}
    for entry in _TREE_LAYOUT:
        key, dtype, length = entry.split(":")
        a = r.array(real if dtype == "R" else np.dtype(dtype), f"tree {idx} {key}")
        if (length == "n" and a.size != n) or (length == "?" and a.size not in (0, n)):
            raise ModelFormatError(f"tree {idx}: {key} has {a.size} entries for {n} nodes.")
        t[key] = a
    inner = t["node_type"] != 0
    for key in ("cleft", "cright"):
        bad = inner & ((t[key] < 0) | (t[key] >= n))
        if bad.any():
            raise ModelFormatError(f"tree {idx}, node {int(np.argmax(bad))}: {key} out of range.")
    for key in ("leaf_vector", "category_list"):
        b, e, size = t[f"{key}_begin"], t[f"{key}_end"], t[key].size
        if np.any(b > e) or np.any(e > size):
            raise ModelFormatError(f"tree {idx}: {key} ranges exceed its {size} entries.")
    r.skip_optional_fields(f"tree {idx} optional fields")
    r.skip_optional_fields(f"tree {idx} optional node fields")
    return t


def _parse_checkpoint(data: bytes) -> None:
    """Walk the whole checkpoint, checking every length and index Treelite would trust."""
    r = _Reader(data)
    major = r.scalar("i", "version")
    r.take(8, "version")
    if major != 4:
        raise ModelFormatError(f"Treelite checkpoint version {major}.x; treeslim reads 4.x.")
    ttype, ltype = r.scalar("B", "threshold_type"), r.scalar("B", "leaf_output_type")
    if ttype not in _FLOAT or ltype != ttype:
        raise ModelFormatError(f"threshold / leaf types {ttype} / {ltype} are not float32/64.")
    num_tree = r.scalar("Q", "num_tree")
    if num_tree > len(data) // 100:  # every tree takes well over 100 bytes
        raise ModelFormatError(f"num_tree {num_tree} does not fit in {len(data)} bytes.")
    r.scalar("i", "num_feature")
    r.scalar("B", "task_type")
    r.flag("average_tree_output")
    num_target = r.scalar("i", "num_target")
    header = {
        key: r.array(np.int32, key)
        for key in ("num_class", "leaf_vector_shape", "target_id", "class_id")
    }
    if (
        num_target < 1
        or header["num_class"].size != num_target
        or header["leaf_vector_shape"].size != 2
        or any(header[key].size != num_tree for key in ("target_id", "class_id"))
    ):
        raise ModelFormatError("header arrays do not match num_target / num_tree.")
    r.text("postprocessor")
    r.take(8, "sigmoid_alpha / ratio_c")
    r.array(np.float64, "base_scores")
    r.text("attributes")
    r.skip_optional_fields("model optional fields")
    real = _FLOAT[ttype]
    for i in range(num_tree):
        _parse_tree(r, i, real)
    if r.pos != len(data):
        raise ModelFormatError(f"{len(data) - r.pos} unexpected bytes after the last tree.")


def looks_like_treelite_checkpoint(data: bytes) -> bool:
    """Whether ``data`` starts like a Treelite 4.x checkpoint (``Model.serialize``)."""
    if len(data) < 22:
        return False
    major, minor, patch, ttype, ltype = struct.unpack("<iiiBB", bytes(data[:14]))
    return major == 4 and 0 <= minor < 1000 and 0 <= patch < 1000 and ttype == ltype in _FLOAT


def forest_from_treelite_checkpoint(data: bytes, name: str = "<bytes>") -> Forest:
    """Build a Forest from Treelite checkpoint bytes (``treelite.Model.serialize_bytes``).

    The bytes are validated in full first, so corrupt or truncated input raises
    :class:`~treeslim.ModelFormatError` naming ``name`` instead of crashing Treelite.
    """
    import treelite
    from treelite.core import TreeliteError

    try:
        _parse_checkpoint(bytes(data))
        model = treelite.Model.deserialize_bytes(bytes(data))
    except ModelFormatError as exc:
        raise ModelFormatError(f"{name}: not a valid Treelite checkpoint: {exc}") from exc
    except TreeliteError as exc:
        raise ModelFormatError(f"{name}: Treelite could not read the checkpoint: {exc}") from exc
    try:
        return forest_from_treelite(model)
    except ModelFormatError as exc:
        raise ModelFormatError(f"{name}: {exc}") from exc
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{name}: {exc}") from exc
