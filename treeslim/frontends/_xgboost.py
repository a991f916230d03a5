"""XGBoost frontend: Boosters, the scikit-learn wrappers, and JSON / UBJSON model files.

Reads XGBoost's own model schema (``learner`` / ``gradient_booster`` / ``trees``) directly, so a
model file can be inspected without xgboost installed. XGBoost compares float32 inputs with float32
thresholds using ``<`` and stores ``base_score`` in the objective's output space; both are kept
exact here.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from treeslim.errors import ModelFormatError, UnsupportedModelError
from treeslim.formats import OBJECTIVES, base_score_to_margin, decode_ubjson, parse_base_score
from treeslim.ir import Forest, TreeArrays

__all__ = ["forest_from_xgboost", "forest_from_xgboost_bytes", "forest_from_xgboost_dict"]


def _arr(tree: dict[str, Any], key: str, dtype: Any, n: int, t_idx: int) -> np.ndarray:
    if key not in tree:
        raise ModelFormatError(f"XGBoost model: tree {t_idx} has no {key!r}.")
    a = np.asarray(tree[key], dtype=dtype)
    if a.shape != (n,):
        raise ModelFormatError(
            f"XGBoost model: tree {t_idx} {key!r} has {a.size} entries for {n} nodes."
        )
    return a


def _tree(tree: dict[str, Any], t_idx: int, tree_class: int, scale: float) -> TreeArrays:
    param = tree.get("tree_param", {})
    try:
        n = int(param["num_nodes"])
        width = int(param.get("size_leaf_vector", 1) or 1)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFormatError(f"XGBoost model: tree {t_idx} has no valid tree_param.") from exc
    if width > 1:
        raise UnsupportedModelError(
            f"XGBoost tree {t_idx} has vector leaves (multi_strategy='multi_output_tree'); treeslim"
            " supports one output per tree: retrain with multi_strategy='one_output_per_tree'."
        )
    split_type = np.asarray(tree.get("split_type", np.zeros(n)), dtype=np.int64)
    if np.any(split_type != 0):
        node = int(np.flatnonzero(split_type != 0)[0])
        feat = int(np.asarray(tree["split_indices"])[node])
        raise UnsupportedModelError(
            f"XGBoost tree {t_idx}, node {node} splits on categorical feature {feat}; treeslim"
            " holds numerical splits only: one-hot or ordinal-encode that feature and retrain"
            " with enable_categorical=False."
        )
    left = _arr(tree, "left_children", np.int64, n, t_idx)
    right = _arr(tree, "right_children", np.int64, n, t_idx)
    cond = _arr(tree, "split_conditions", np.float32, n, t_idx).astype(np.float64)
    leaf = left == -1
    split = _arr(tree, "split_indices", np.int64, n, t_idx)
    value = np.where(leaf, cond * scale, 0.0)
    if scale != 1.0:  # DART: XGBoost scales leaf outputs in float32
        value = np.where(
            leaf, (cond.astype(np.float32) * np.float32(scale)).astype(np.float64), 0.0
        )
    return TreeArrays(
        split_index=np.where(leaf, -1, split),
        threshold=np.where(leaf, 0.0, cond),
        cleft=left,
        cright=right,
        default_left=_arr(tree, "default_left", np.int64, n, t_idx).astype(bool),
        leaf_value=value,
        tree_class=tree_class,
        sum_hess=np.asarray(tree["sum_hessian"], dtype=np.float64)
        if "sum_hessian" in tree
        else None,
        gain=np.asarray(tree["loss_changes"], dtype=np.float64) if "loss_changes" in tree else None,
    )


def forest_from_xgboost_dict(model: dict[str, Any], *, n_iterations: int | None = None) -> Forest:
    """Build a Forest from XGBoost's model schema (the parsed JSON / UBJSON document).

    ``n_iterations`` keeps only the first boosting rounds (an early-stopped model's best ones).
    """
    try:
        learner = model["learner"]
        params = learner["learner_model_param"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
    except (KeyError, TypeError) as exc:
        raise ModelFormatError(
            "Not an XGBoost model: the document lacks learner / learner_model_param / objective /"
            f" gradient_booster ({exc})."
        ) from exc
    if objective not in OBJECTIVES:
        raise UnsupportedModelError(
            f"XGBoost objective {objective!r} is not supported; supported: {sorted(OBJECTIVES)}."
        )
    task, post, base_how = OBJECTIVES[objective]
    kind = booster.get("name")
    weights: np.ndarray | None = None
    if kind == "gbtree":
        gbtree = booster["model"]
    elif kind == "dart":
        gbtree = booster["gbtree"]["model"]
        weights = np.asarray(booster.get("weight_drop", []), dtype=np.float64)
    else:
        raise UnsupportedModelError(
            f"XGBoost booster {kind!r} is not a tree model; treeslim compresses booster='gbtree'"
            " or 'dart'."
        )
    if int(params.get("num_target", 1) or 1) > 1:
        raise UnsupportedModelError(
            "This XGBoost model has several targets (multi-output regression or several"
            " quantiles); treeslim supports one target: train one model per target."
        )
    num_feature = int(params["num_feature"])
    num_class = int(params.get("num_class", 0) or 0)
    trees = gbtree.get("trees", [])
    tree_info = np.asarray(gbtree.get("tree_info", []), dtype=np.int64)
    if len(tree_info) != len(trees):
        raise ModelFormatError(
            f"XGBoost model: {len(trees)} trees but {len(tree_info)} tree_info entries."
        )
    if n_iterations is not None:
        indptr = np.asarray(gbtree.get("iteration_indptr", []), dtype=np.int64)
        if len(indptr) > n_iterations:
            keep = int(indptr[n_iterations])
            trees, tree_info = trees[:keep], tree_info[:keep]
    if not trees:
        raise UnsupportedModelError("This XGBoost model has no trees (it was never trained).")
    n_outputs = num_class if task == "multiclass" else 1
    if task == "multiclass" and num_class < 2:
        raise ModelFormatError(f"XGBoost {objective} model with num_class={num_class}.")
    built = [
        _tree(
            t,
            i,
            int(tree_info[i]) if n_outputs > 1 else 0,
            1.0 if weights is None or len(weights) == 0 else float(weights[i]),
        )
        for i, t in enumerate(trees)
    ]
    base = base_score_to_margin(parse_base_score(params.get("base_score", "0.5")), base_how)
    if base.size == 1 and n_outputs > 1:
        base = np.repeat(base, n_outputs)
    if base.size != n_outputs:
        raise ModelFormatError(
            f"XGBoost model: base_score has {base.size} values for {n_outputs} outputs."
        )
    names = list(learner.get("feature_names", []) or [])
    return Forest.from_trees(
        built,
        num_feature=num_feature,
        task=task,
        num_class=num_class if task == "multiclass" else 1,
        base_score=base,
        postprocessor=post,
        average=False,
        comparison="<",
        feature_dtype="float32",
        feature_names=tuple(names) if len(names) == num_feature else None,
        source={
            "library": "xgboost",
            "objective": objective,
            "booster": kind,
            "base_score_raw": str(params.get("base_score", "0.5")).strip("[]"),
        },
    )


def forest_from_xgboost_bytes(data: bytes) -> Forest:
    """Parse an XGBoost JSON or UBJSON model document."""
    stripped = bytes(data[:64]).lstrip()
    if stripped.startswith(b'{"'):
        try:
            doc = json.loads(bytes(data))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"Corrupt XGBoost JSON model: {exc}") from exc
    elif stripped.startswith(b"{"):
        doc = decode_ubjson(data)
    else:
        raise ModelFormatError("Not an XGBoost JSON / UBJSON model (no leading '{').")
    if not isinstance(doc, dict):
        raise ModelFormatError("Not an XGBoost model: the document is not an object.")
    return forest_from_xgboost_dict(doc)


def forest_from_xgboost(obj: Any) -> Forest:
    """Build a Forest from an ``xgboost.Booster`` or an ``XGBModel`` (classifier, regressor, ranker).

    For the scikit-learn wrappers an early-stopped model keeps its best iteration, as its own
    ``predict`` does.
    """
    n_iter = None
    booster = obj
    if hasattr(obj, "get_booster"):
        booster = obj.get_booster()
        try:
            best = obj.best_iteration
        except AttributeError:
            best = None
        if best is not None:
            n_iter = int(best) + 1
    raw = booster.save_raw(raw_format="ubj")
    doc = decode_ubjson(bytes(raw))
    forest = forest_from_xgboost_dict(doc, n_iterations=n_iter)
    if forest.feature_names is None and getattr(booster, "feature_names", None):
        names = tuple(booster.feature_names)
        if len(names) == forest.num_feature:
            forest = forest.replace(feature_names=names)
    if not math.isfinite(float(forest.base_score.sum())):
        raise UnsupportedModelError("XGBoost base_score maps to an infinite margin.")
    return forest
