"""Treelite frontend: ``treelite.Model`` objects and Treelite (v4) checkpoint files.

Trees are read through Treelite's field accessors, which hand over the model's own arrays (exact,
no JSON round trip through ``dump_as_json``). Treelite keeps one comparison operator per node, the
Forest one for all: ``>`` / ``>=`` nodes become ``<=`` / ``<`` with their children (and default
side) swapped, and ``<`` / ``<=`` convert into each other exactly by moving the threshold one
float64 ulp. A float32-threshold model becomes a float32 forest, since Treelite rounds inputs to its
threshold type. Categorical nodes (category lists) keep their sets with members on the left (a
``category_list_right_child`` node has its children and default side swapped) under the
``"xgboost"`` rule, which is Treelite's: negative or unrepresentable values are no member, any other
value is the code ``uint32(x)``. Checkpoint bytes are checked in full before Treelite sees them
(:mod:`treeslim.frontends._treelite_checkpoint`).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from treeslim.errors import InvalidForestError, ModelFormatError, UnsupportedModelError
from treeslim.formats import check_feature_count
from treeslim.frontends._treelite_checkpoint import (
    FLOAT_TYPES,
    TREE_LAYOUT,
    looks_like_treelite_checkpoint,
    parse_checkpoint,
)
from treeslim.ir import Forest, TreeArrays, bitset_table

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
_MAX_CODE = 1 << 24  # category codes a Forest holds (treeslim.ir's MAX_CATEGORY)
_HEADER_FIELDS = (
    "threshold_type num_feature task_type average_tree_output num_target num_class"
    " leaf_vector_shape target_id class_id postprocessor sigmoid_alpha base_scores attributes"
).split()
_TREE_FIELDS = [entry.split(":")[0] for entry in TREE_LAYOUT]


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
    if task_code not in _TASKS or _one(h, "threshold_type") not in FLOAT_TYPES:
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
    if meta.get("category_rule") in ("lightgbm", "sklearn"):
        header["category_rule"] = meta["category_rule"]
    if meta.get("margin_dtype") == "float32" and not header.get("average"):
        header["margin_dtype"] = "float32"
    cats = meta.get("feature_categories")
    if isinstance(cats, list) and len(cats) == header["num_feature"]:
        ok = all(c is None or isinstance(c, list) for c in cats)
        header["feature_categories"] = (
            tuple(None if c is None else tuple(c) for c in cats) if ok else None
        )


def _comparison(trees: list[dict[str, Any]]) -> str:
    ops = np.concatenate([t["cmp"][t["node_type"] == 1] for t in trees])
    if np.any(ops == _EQ):
        raise UnsupportedModelError(
            "This Treelite model tests x == threshold; treeslim holds <, <=, > and >= splits only."
        )
    return "<" if np.count_nonzero(np.isin(ops, (_LT, _GE))) > ops.size / 2 else "<="


def _tree(
    t: dict[str, Any], idx: int, tree_class: int, width: int, comparison: str, sets: list[Any]
) -> TreeArrays:
    nt = np.asarray(t["node_type"])
    n = nt.size
    for key in ("cleft", "cright", "split_index", "default_left", "leaf_value", "threshold",
                "cmp", "leaf_vector_begin", "leaf_vector_end", "category_list_right_child"):  # fmt: skip
        if np.asarray(t[key]).shape != (n,):
            raise ModelFormatError(
                f"tree {idx}: {key} has {np.asarray(t[key]).size} entries for {n} nodes."
            )
    if np.any((nt < 0) | (nt > 2)):
        raise ModelFormatError(f"tree {idx}: unknown node types {np.unique(nt).tolist()}.")
    inner, leaf, cat = nt == 1, nt == 0, nt == 2
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
    # members go left in the Forest: a category_list_right_child node swaps its children
    flip |= cat & np.asarray(t["category_list_right_child"]).astype(bool)
    dleft = np.where(flip, ~dleft, dleft)
    left, right = np.where(flip, right, left), np.where(flip, left, right)
    split = ~leaf
    return TreeArrays(
        split_index=np.where(split, t["split_index"], -1),
        threshold=np.where(inner, thr, 0.0),
        cleft=np.where(split, left, -1),
        cright=np.where(split, right, -1),
        default_left=dleft & split,
        leaf_value=_leaf_values(t, leaf, width, idx),
        tree_class=tree_class,
        cat_index=_category_sets(t, cat, idx, sets),
        **_stats(t, split, n),
    )


def _category_sets(t: dict[str, Any], cat: np.ndarray, idx: int, sets: list[Any]) -> np.ndarray:
    """Append each categorical node's category list to ``sets``; the node's index there."""
    out = np.full(cat.size, -1, dtype=np.int64)
    begin, end = t["category_list_begin"], t["category_list_end"]
    codes = np.asarray(t["category_list"], dtype=np.int64)
    for node in np.flatnonzero(cat).tolist():
        b, e = int(begin[node]), int(end[node])
        if not 0 <= b <= e <= codes.size:
            raise ModelFormatError(f"tree {idx}, node {node}: category_list range out of bounds.")
        if np.any(codes[b:e] >= _MAX_CODE):
            raise UnsupportedModelError(
                f"Treelite tree {idx}, node {node} (feature {int(t['split_index'][node])}) tests"
                f" category {int(codes[b:e].max())}; treeslim holds codes below {_MAX_CODE}:"
                " re-encode that feature's categories as small integers and retrain."
            )
        out[node] = len(sets)
        sets.append(codes[b:e])
    return out


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
    sets: list[Any] = []
    built = [_tree(t, i, int(tree_class[i]), width, comparison, sets) for i, t in enumerate(trees)]
    n_used = max((int(np.max(t.split_index)) + 1 for t in built), default=0)
    check_feature_count(header["num_feature"], n_used, field="num_feature", where="header")
    if sets:
        header["cat_bitsets"] = bitset_table(sets)
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
        ``feature_names``, ``source``, ``category_rule`` and ``feature_categories`` back from the
        model's attributes (and so predicts what that forest predicted, where GTIL needs inputs
        prepared as :func:`treeslim.to_treelite` says).

    Raises
    ------
    UnsupportedModelError
        For ``==`` splits, category codes of 2**24 or more, several targets, isolation forests,
        postprocessors other than identity / sigmoid / softmax / exponential / multiclass_ova.
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


def forest_from_treelite_checkpoint(data: bytes, name: str = "<bytes>") -> Forest:
    """Build a Forest from Treelite checkpoint bytes (``treelite.Model.serialize_bytes``).

    The bytes are validated in full first, so corrupt or truncated input raises
    :class:`~treeslim.ModelFormatError` naming ``name`` instead of crashing Treelite.
    """
    import treelite
    from treelite.core import TreeliteError

    try:
        parse_checkpoint(bytes(data))
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
