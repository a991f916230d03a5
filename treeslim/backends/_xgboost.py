"""XGBoost backend: write a :class:`~treeslim.Forest` as an XGBoost JSON model and load it.

XGBoost rounds inputs to float32 and tests ``x < threshold`` with float32 thresholds. A forest that
tests ``x <= t`` (LightGBM, scikit-learn) is rewritten exactly for float32 inputs: ``x <= t`` holds
for a float32 ``x`` iff ``x < t'`` with ``t'`` the next float32 above the largest float32 not above
``t``. Leaf values become float32 (XGBoost's own precision); averaged forests get their leaves
scaled; class-vector leaves are split into one tree per class; a base score the format cannot hold
is folded into the first tree of each output.

Categorical splits are written back as XGBoost's (children swapped again: XGBoost sends members
right) with the stored category lists, so DataFrames are encoded as before. A forest read from
LightGBM is exported only when XGBoost routes it the same (no set holds code 0, which LightGBM also
gives to inputs in (-1, 0)); one from scikit-learn, which encodes numeric inputs by category value,
is refused.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from treeslim._utils import float32_strict_thresholds, require, write_atomic
from treeslim.errors import UnsupportedModelError
from treeslim.formats import (
    MARGIN_TO_BASE,
    base_score_to_margin,
    encode_categories,
    parse_base_score,
)
from treeslim.ir import Forest

__all__ = ["booster_from_json", "forest_to_xgboost_json", "to_xgboost"]

_REG = {"reg_loss_param": {"scale_pos_weight": "1"}}
_RANK = {
    "lambdarank_param": {
        "lambdarank_bias_norm": "1",
        "lambdarank_normalization": "1",
        "lambdarank_num_pair_per_sample": "4294967295",
        "lambdarank_pair_method": "topk",
        "lambdarank_score_normalization": "1",
        "lambdarank_unbiased": "0",
        "ndcg_exp_gain": "1",
    }
}
# objective -> (extra params, base_score from margin)
_OBJECTIVE_PARAMS: dict[str, dict[str, Any]] = {
    "binary:logistic": _REG,
    "binary:logitraw": _REG,
    "reg:logistic": _REG,
    "reg:squarederror": _REG,
    "count:poisson": {"poisson_regression_param": {"max_delta_step": "0.699999988"}},
    "rank:ndcg": _RANK,
    "rank:pairwise": _RANK,
    "rank:map": _RANK,
}


def _objective(forest: Forest) -> str:
    src = forest.source.get("objective") if forest.source.get("library") == "xgboost" else None
    post, task = forest.postprocessor, forest.task
    if post == "softmax":
        return "multi:softprob"
    if post == "argmax":
        return "multi:softmax"
    if post == "sigmoid":
        return "binary:logistic" if task == "binary" else "reg:logistic"
    if post == "exponential":
        return "count:poisson"
    if task == "ranking":
        return src if src in ("rank:ndcg", "rank:pairwise", "rank:map") else "rank:ndcg"
    if task == "binary" and src == "binary:logitraw":
        return "binary:logitraw"
    return "reg:squarederror"


def _base_score(forest: Forest, how: str | None) -> tuple[str, np.ndarray]:
    """XGBoost's base_score string and what remains to fold into trees, per output."""
    base = forest.base_score
    raw = forest.source.get("base_score_raw")
    if raw is not None and forest.source.get("library") == "xgboost":
        back = base_score_to_margin(parse_base_score(raw), how or "identity")
        if back.size == 1 and np.all(back[0] == base):
            return str(raw), np.zeros_like(base)
    if base.size == 1 or np.all(base == base[0]):
        b = float(base[0])
        if how == "logit" and abs(b) < 30:
            return repr(float(1.0 / (1.0 + np.exp(-b)))), np.zeros_like(base)
        if how == "log" and abs(b) < 80:
            return repr(float(np.exp(b))), np.zeros_like(base)
        if how is None:
            return repr(b), np.zeros_like(base)
    neutral = {"logit": "0.5", "log": "1.0", None: "0.0"}[how]
    return neutral, base.copy()


def _expanded_trees(forest: Forest) -> list[tuple[int, int]]:
    """(tree index, output) pairs: one XGBoost tree per pair."""
    if forest.leaf_width == 1:
        return [(t, int(forest.tree_class[t])) for t in range(forest.n_trees)]
    return [(t, k) for t in range(forest.n_trees) for k in range(forest.leaf_width)]


def _check_categories(forest: Forest) -> None:
    """Refuse categorical splits XGBoost would route differently (see the module docstring)."""
    if forest.cat_index is None:
        return
    assert forest.cat_bitsets is not None
    nodes = np.flatnonzero(forest.cat_index >= 0)
    empty = ~forest.cat_bitsets[forest.cat_index[nodes]].any(axis=1)
    if empty.any():
        nodes = nodes[empty]
        why = "its category set is empty, which XGBoost's format cannot hold"
    elif forest.category_rule == "xgboost":
        return
    elif forest.category_rule == "lightgbm":
        holds_zero = (forest.cat_bitsets[forest.cat_index[nodes], 0] & 1).astype(bool)
        if not holds_zero.any():
            return
        nodes = nodes[holds_zero]
        why = (
            "its set holds category 0, which LightGBM also gives to inputs in (-1, 0) and"
            " XGBoost does not"
        )
    else:
        why = (
            "scikit-learn encodes numeric inputs by their category values, XGBoost takes them"
            " as codes"
        )
    node = int(nodes[0])
    t = int(np.searchsorted(forest.tree_offsets, node, side="right") - 1)
    j = int(forest.split_index[node])
    name = f" ({forest.feature_names[j]!r})" if forest.feature_names else ""
    instead = {"lightgbm": "to_lightgbm", "sklearn": "treeslim.compile"}.get(
        forest.category_rule, "a pass that drops the split"
    )
    raise UnsupportedModelError(
        f"to_xgboost: tree {t}, node {node - int(forest.tree_offsets[t])} splits on categorical"
        f" feature {j}{name} under the {forest.category_rule!r} category rule, and {why}: the"
        f" XGBoost model would mispredict. Export with {instead} instead, or retrain in XGBoost."
    )


def _tree_doc(
    forest: Forest, t: int, value: np.ndarray, thr32: np.ndarray, i: int
) -> dict[str, Any]:
    """XGBoost's JSON for tree ``t``, its leaves set to ``value``
    (indexed by global node id); categorical nodes send members right again."""
    lo, hi = int(forest.tree_offsets[t]), int(forest.tree_offsets[t + 1])
    n = hi - lo
    at = lo + _sibling_order(forest, lo, hi)  # node ids in XGBoost's layout
    inv = np.empty(n, dtype=np.int64)  # this tree's node ids: global id - lo
    inv[at - lo] = np.arange(n)
    leaf = forest.split_index[at] < 0
    value32 = value[at].astype(np.float32)
    cat = forest.is_categorical[at]
    left = np.where(leaf, -1, inv[np.maximum(forest.cleft[at], lo) - lo])
    right = np.where(leaf, -1, inv[np.maximum(forest.cright[at], lo) - lo])
    left, right = np.where(cat, right, left), np.where(cat, left, right)
    parents = np.full(n, 2147483647, dtype=np.int64)
    inner = np.flatnonzero(~leaf)
    parents[left[inner]] = inner
    parents[right[inner]] = inner
    cond = np.where(leaf, value32, np.where(cat, 0.0, thr32[at]))
    hess = forest.sum_hess if forest.sum_hess is not None else forest.data_count
    cat_nodes = np.flatnonzero(cat)
    sets = [forest.category_set(int(at[k])).tolist() for k in cat_nodes]
    return {
        "base_weights": _f32_list(np.where(leaf, value32, 0.0)),
        "categories": [c for s in sets for c in s],
        "categories_nodes": cat_nodes.tolist(),
        "categories_segments": np.cumsum([0] + [len(s) for s in sets])[:-1].tolist(),
        "categories_sizes": [len(s) for s in sets],
        "default_left": (forest.default_left[at] != cat).astype(int).tolist(),
        "id": i,
        "left_children": left.tolist(),
        "loss_changes": (np.zeros(n) if forest.gain is None else forest.gain[at]).tolist(),
        "parents": parents.tolist(),
        "right_children": right.tolist(),
        "split_conditions": _f32_list(cond),
        "split_indices": np.where(leaf, 0, forest.split_index[at]).tolist(),
        "split_type": cat.astype(int).tolist(),
        "sum_hessian": (np.ones(n) if hess is None else hess[at]).tolist(),
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(forest.num_feature),
            "num_nodes": str(n),
            "size_leaf_vector": "1",
        },
    }


def _trees_doc(
    forest: Forest, fold: np.ndarray
) -> tuple[list[dict[str, Any]], list[tuple[int, int]]]:
    """Every tree's JSON, with the base score left in ``fold`` added to the leaves."""
    # XGBoost's JSON holds no infinities: +-inf thresholds become +-FLT_MAX, which decides every
    # finite input the same way except +-FLT_MAX itself (and -inf at a -inf threshold)
    big = np.finfo(np.float32).max
    thr32 = np.clip(float32_strict_thresholds(forest.threshold, forest.comparison), -big, big)
    pairs = _expanded_trees(forest)
    scale = 1.0 / forest.trees_per_output if forest.average else 1.0
    folded = np.zeros(len(fold), dtype=bool)
    trees = []
    for i, (t, out) in enumerate(pairs):
        value = forest.leaf_value[:, 0 if forest.leaf_width == 1 else out]
        if fold[out] != 0.0 and (forest.average or not folded[out]):
            value = value + fold[out]  # averaged: every tree carries it, so the mean does
            folded[out] = True
        trees.append(_tree_doc(forest, t, value * scale, thr32, i))
    return trees, pairs


def _feature_types(forest: Forest) -> list[str]:
    """``"c"`` for features with categorical splits or stored categories, else ``"float"``."""
    cat = np.zeros(forest.num_feature, dtype=bool)
    cat[forest.split_index[forest.is_categorical]] = True
    for j, cats in enumerate(forest.feature_categories or ()):
        cat[j] |= cats is not None
    if not cat.any() and not forest.feature_names:
        return []
    return ["c" if c else "float" for c in cat]


def forest_to_xgboost_json(forest: Forest) -> dict[str, Any]:
    """XGBoost's JSON model document for ``forest``."""
    _check_categories(forest)
    if forest.sigmoid_alpha != 1.0 and forest.postprocessor == "sigmoid":
        alpha = forest.sigmoid_alpha
        forest = forest.replace(
            leaf_value=forest.leaf_value * alpha,
            base_score=forest.base_score * alpha,
            sigmoid_alpha=1.0,
        )
    objective = _objective(forest)
    base_str, fold = _base_score(forest, MARGIN_TO_BASE.get(forest.postprocessor))
    trees, pairs = _trees_doc(forest, fold)
    k = forest.n_outputs
    multi = forest.task == "multiclass"
    identity_multi = multi and objective == "reg:squarederror"
    obj_doc: dict[str, Any] = {"name": objective}
    if objective.startswith("multi:"):
        obj_doc["softmax_multiclass_param"] = {"num_class": str(k)}
    else:
        obj_doc.update(_OBJECTIVE_PARAMS.get(objective, _REG))
    try:
        cats = encode_categories(forest.feature_categories, forest.num_feature)
    except ValueError as exc:
        raise UnsupportedModelError(f"to_xgboost: {exc}") from None
    return {
        "learner": {
            "attributes": {},
            "feature_names": list(forest.feature_names) if forest.feature_names else [],
            "feature_types": _feature_types(forest),
            "gradient_booster": {
                "model": {
                    "cats": cats,
                    "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(len(trees))},
                    "iteration_indptr": _iteration_indptr(pairs, k),
                    "tree_info": [p[1] for p in pairs],
                    "trees": trees,
                },
                "name": "gbtree",
            },
            "learner_model_param": {
                "base_score": base_str
                if not identity_multi
                else "[" + ",".join([base_str] * k) + "]",
                "boost_from_average": "1",
                "num_class": str(k) if multi and not identity_multi else "0",
                "num_feature": str(forest.num_feature),
                "num_target": str(k) if identity_multi else "1",
            },
            "objective": obj_doc,
        },
        "version": [3, 0, 0],
    }


def _sibling_order(forest: Forest, lo: int, hi: int) -> np.ndarray:
    """Local node ids of tree ``[lo, hi)`` in XGBoost's layout: a right child right after its
    left sibling (XGBoost's predictor steps to ``left + !decision``), where at categorical
    nodes XGBoost's left is the IR's right; the tree's own order when it already is so."""
    leaf = forest.split_index[lo:hi] < 0
    cat = forest.is_categorical[lo:hi]
    left = np.where(cat, forest.cright[lo:hi], forest.cleft[lo:hi]) - lo
    right = np.where(cat, forest.cleft[lo:hi], forest.cright[lo:hi]) - lo
    if np.all(right[~leaf] == left[~leaf] + 1):
        return np.arange(hi - lo)
    order = [0]
    k = 0
    while k < len(order):
        node = order[k]
        if not leaf[node]:
            order.extend((int(left[node]), int(right[node])))
        k += 1
    return np.asarray(order)


def _f32_list(values: np.ndarray) -> list[float]:
    """Float32 values as the doubles whose repr is their shortest float32 decimal.

    XGBoost's JSON reader turns a long decimal (the double repr of a float32, 17 digits) into a
    float32 one unit in the last place off now and then, which moves a threshold; the short form
    is what XGBoost writes itself and reads back exactly.
    """
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32)]


def _iteration_indptr(pairs: list[tuple[int, int]], k: int) -> list[int]:
    """Boosting rounds: consecutive runs of trees covering each output once, else one per tree."""
    outs = [p[1] for p in pairs]
    if (
        k > 1
        and len(outs) % k == 0
        and all(sorted(outs[i : i + k]) == list(range(k)) for i in range(0, len(outs), k))
    ):
        return list(range(0, len(outs) + 1, k))
    return list(range(len(outs) + 1))


def booster_from_json(text: bytes) -> Any:
    """An ``xgboost.Booster`` loaded from XGBoost JSON bytes (:func:`forest_to_xgboost_json`)."""
    xgb: Any = require("xgboost", "xgboost")
    try:
        return xgb.Booster(model_file=bytearray(text))
    except xgb.core.XGBoostError as exc:  # pragma: no cover - would be a bug in this module
        raise UnsupportedModelError(f"XGBoost refused the exported model: {exc}") from exc


def to_xgboost(forest: Forest, path: str | os.PathLike[str] | None = None) -> Any:
    """Export ``forest`` as an ``xgboost.Booster`` that predicts what the forest predicts.

    Exact for float32 inputs (XGBoost rounds every input to float32). With ``path``, the model is
    also written there as XGBoost JSON, atomically.

    Parameters
    ----------
    forest : Forest
    path : path-like, optional
        Where to write the JSON model (``.json``; ``.ubj`` writes UBJSON through XGBoost).

    Returns
    -------
    xgboost.Booster
    """
    text = json.dumps(forest_to_xgboost_json(forest), allow_nan=False).encode()
    booster = booster_from_json(text)
    if path is not None:
        path = os.fspath(path)
        if path.endswith(".ubj"):
            payload = bytes(booster.save_raw(raw_format="ubj"))
        else:
            payload = text
        write_atomic(path, payload)
    return booster
