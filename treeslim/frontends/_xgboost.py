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

from treeslim.errors import ModelFormatError, TreeSlimError, UnsupportedModelError
from treeslim.formats import (
    OBJECTIVES,
    base_score_to_margin,
    check_feature_count,
    decode_categories,
    decode_ubjson,
    parse_base_score,
)
from treeslim.frontends._missing import route_value_as_missing
from treeslim.ir import Forest, TreeArrays, bitset_table

__all__ = ["forest_from_xgboost", "forest_from_xgboost_bytes", "forest_from_xgboost_dict"]


def _arr(tree: dict[str, Any], key: str, dtype: Any, n: int, t_idx: int) -> np.ndarray:
    if key not in tree:
        raise ModelFormatError(f"XGBoost model: tree {t_idx} has no {key!r}.")
    raw = np.asarray(tree[key])
    if np.issubdtype(dtype, np.integer) and raw.dtype.kind not in "iub":
        whole = raw.dtype.kind == "f" and np.all(np.isfinite(raw) & (raw == np.round(raw)))
        if not whole or (raw.size and np.abs(raw).max() >= 2**62):
            raise ModelFormatError(
                f"XGBoost model: tree {t_idx} {key!r} holds values that are not integers."
            )
    with np.errstate(over="ignore", invalid="ignore"):  # 1e308 in a float32 table reads as inf
        a = raw.astype(dtype)
    if a.shape != (n,):
        raise ModelFormatError(
            f"XGBoost model: tree {t_idx} {key!r} has {a.size} entries for {n} nodes."
        )
    return a


def _category_sets(
    tree: dict[str, Any], t_idx: int, split_type: np.ndarray, split: np.ndarray
) -> dict[int, np.ndarray]:
    """Node -> the category codes XGBoost sends right (``categories_*`` cut per node)."""
    n = len(split_type)
    nodes = np.asarray(tree.get("categories_nodes", []), dtype=np.int64).ravel()
    segments = np.asarray(tree.get("categories_segments", []), dtype=np.int64).ravel()
    sizes = np.asarray(tree.get("categories_sizes", []), dtype=np.int64).ravel()
    codes = np.asarray(tree.get("categories", []), dtype=np.int64).ravel()
    if not len(nodes) == len(segments) == len(sizes):
        raise ModelFormatError(
            f"XGBoost model: tree {t_idx} has {len(nodes)} categories_nodes, {len(segments)}"
            f" categories_segments and {len(sizes)} categories_sizes."
        )
    if np.any((nodes < 0) | (nodes >= n)) or np.any(split_type[nodes] != 1):
        raise ModelFormatError(
            f"XGBoost model: tree {t_idx} lists categories for a node that is not a categorical"
            " split."
        )
    if np.any((segments < 0) | (sizes < 0) | (segments + sizes > len(codes))):
        raise ModelFormatError(
            f"XGBoost model: tree {t_idx} categories_segments / categories_sizes run past its"
            f" {len(codes)} categories."
        )
    missing = np.setdiff1d(np.flatnonzero(split_type == 1), nodes)
    if len(missing):
        raise ModelFormatError(
            f"XGBoost model: tree {t_idx}, node {int(missing[0])} is a categorical split on"
            f" feature {int(split[missing[0]])} with no category set."
        )
    return {int(v): codes[a : a + k] for v, a, k in zip(nodes, segments, sizes, strict=True)}


def _tree(
    tree: dict[str, Any], t_idx: int, tree_class: int, scale: float, sets: list[np.ndarray]
) -> TreeArrays:
    """One tree; categorical nodes get their children swapped (the IR's members go left) and
    their category sets appended to ``sets``."""
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
    if n < 1:
        raise ModelFormatError(f"XGBoost model: tree {t_idx} has num_nodes={n}.")
    left = _arr(tree, "left_children", np.int64, n, t_idx)
    right = _arr(tree, "right_children", np.int64, n, t_idx)
    cond = _arr(tree, "split_conditions", np.float32, n, t_idx).astype(np.float64)
    leaf = left == -1
    split = _arr(tree, "split_indices", np.int64, n, t_idx)
    default_left = _arr(tree, "default_left", np.int64, n, t_idx).astype(bool)
    split_type = np.zeros(n, dtype=np.int64)
    if "split_type" in tree:
        split_type = np.where(leaf, 0, _arr(tree, "split_type", np.int64, n, t_idx))
    if np.any((split_type != 0) & (split_type != 1)):
        raise ModelFormatError(f"XGBoost model: tree {t_idx} has a split_type other than 0 / 1.")
    cat_index = None
    if np.any(split_type == 1):
        cat_index = np.full(n, -1, dtype=np.int64)
        for node, codes in sorted(_category_sets(tree, t_idx, split_type, split).items()):
            cat_index[node] = len(sets)
            sets.append(codes)
        cat = split_type == 1  # XGBoost sends members right: swap so they go left
        left, right = np.where(cat, right, left), np.where(cat, left, right)
        default_left = np.where(cat, ~default_left, default_left)
        cond = np.where(cat, 0.0, cond)
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
        default_left=default_left,
        leaf_value=value,
        tree_class=tree_class,
        sum_hess=_arr(tree, "sum_hessian", np.float64, n, t_idx) if "sum_hessian" in tree else None,
        gain=_arr(tree, "loss_changes", np.float64, n, t_idx) if "loss_changes" in tree else None,
        cat_index=cat_index,
    )


def _count(params: dict[str, Any], key: str, default: int, where: str) -> int:
    """An integer field of the model's header (XGBoost stores them as strings)."""
    if default < 0 and key not in params:
        raise ModelFormatError(f"XGBoost model: {where} has no {key}.")
    value = params.get(key, default)
    try:
        number = float(value if not isinstance(value, str) else value.strip() or default)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number == int(number) and 0 <= number < 2**31):
        raise ModelFormatError(f"XGBoost model: {where}.{key} is not a count: {value!r:.40}.")
    return int(number)


def _check_header(
    learner: dict[str, Any], gbtree: dict[str, Any], task: str, objective: str, n_trees: int
) -> tuple[int, int]:
    """``(num_feature, num_class)``, each checked against what the trees and names hold."""
    params = learner["learner_model_param"]
    num_feature = _count(params, "num_feature", -1, "learner_model_param")
    num_class = _count(params, "num_class", 0, "learner_model_param")
    if num_feature < 1:
        raise ModelFormatError(f"XGBoost model: num_feature={num_feature}.")
    for key in ("feature_names", "feature_types"):
        listed = learner.get(key)
        if listed is not None and not isinstance(listed, (list, np.ndarray)):
            raise ModelFormatError(f"XGBoost model: {key} is not a list.")
        if listed is not None and len(listed) not in (0, num_feature):
            raise ModelFormatError(
                f"XGBoost model: num_feature declares {num_feature:,} features, but {key} lists"
                f" {len(listed):,}."
            )
    if task == "multiclass" and not 2 <= num_class <= n_trees:
        raise ModelFormatError(
            f"XGBoost {objective} model with num_class={num_class} and {n_trees} trees (each"
            " class needs at least one tree)."
        )
    if task != "multiclass" and num_class > 1:
        raise ModelFormatError(
            f"XGBoost model: num_class={num_class}, but objective {objective!r} has one output."
        )
    tree_param = gbtree.get("gbtree_model_param", {})
    if isinstance(tree_param, dict) and "num_trees" in tree_param:
        declared = _count(tree_param, "num_trees", 0, "gbtree_model_param")
        if declared != n_trees:
            raise ModelFormatError(
                f"XGBoost model: gbtree_model_param.num_trees={declared}, but {n_trees} trees."
            )
    return num_feature, num_class


def _first_iterations(gbtree: dict[str, Any], n_trees: int, n_iterations: int) -> int:
    """How many trees the first ``n_iterations`` boosting rounds hold (``iteration_indptr``)."""
    indptr = np.asarray(gbtree.get("iteration_indptr", []), dtype=np.int64)
    if len(indptr) <= n_iterations:
        return n_trees
    if indptr[0] != 0 or indptr[-1] != n_trees or np.any(np.diff(indptr) < 0):
        raise ModelFormatError(
            f"XGBoost model: iteration_indptr does not rise from 0 to the {n_trees} trees."
        )
    return int(indptr[n_iterations])


def forest_from_xgboost_dict(
    model: dict[str, Any], *, n_iterations: int | None = None, missing: float | None = None
) -> Forest:
    """Build a Forest from XGBoost's model schema (the parsed JSON / UBJSON document).

    ``n_iterations`` keeps only the first boosting rounds (an early-stopped model's best ones).
    Header counts are checked against the trees: ``num_feature`` against ``feature_names`` /
    ``feature_types`` and the highest split feature (at most
    :data:`~treeslim.formats.MAX_UNUSED_FEATURES` beyond it), ``num_class`` against the objective
    and the tree count, ``num_trees`` / ``tree_info`` / ``iteration_indptr`` / ``weight_drop``
    against the trees; a document that breaks any of them raises :class:`ModelFormatError`.
    Categorical splits keep their category sets (children swapped: see
    :mod:`treeslim.ir._categories`) and the category lists XGBoost 3.1+ stores. ``missing`` is
    the value XGBoost was told to treat as missing (besides NaN); the trees are rewritten so
    that it is (see :func:`route_value_as_missing`).
    """
    try:
        return _forest_from_dict(model, n_iterations, missing)
    except TreeSlimError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise ModelFormatError(
            f"XGBoost model: corrupt document ({type(exc).__name__}: {exc})."
        ) from None


def _forest_from_dict(
    model: dict[str, Any], n_iterations: int | None, missing: float | None
) -> Forest:
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
    if _count(params, "num_target", 1, "learner_model_param") > 1:
        raise UnsupportedModelError(
            "This XGBoost model has several targets (multi-output regression or several"
            " quantiles); treeslim supports one target: train one model per target."
        )
    trees = gbtree.get("trees", [])
    tree_info = np.asarray(gbtree.get("tree_info", []), dtype=np.int64)
    if not isinstance(trees, list) or tree_info.shape != (len(trees),):
        raise ModelFormatError(
            f"XGBoost model: {len(trees)} trees but {tree_info.size} tree_info entries."
        )
    if not trees:
        raise UnsupportedModelError("This XGBoost model has no trees (it was never trained).")
    if weights is not None and len(weights) not in (0, len(trees)):
        raise ModelFormatError(
            f"XGBoost DART model: {len(weights)} weight_drop entries for {len(trees)} trees."
        )
    num_feature, num_class = _check_header(learner, gbtree, task, objective, len(trees))
    if n_iterations is not None:
        keep = _first_iterations(gbtree, len(trees), n_iterations)
        trees, tree_info = trees[:keep], tree_info[:keep]
    n_outputs = num_class if task == "multiclass" else 1
    sets: list[np.ndarray] = []
    with np.errstate(over="ignore", invalid="ignore"):  # float32 reads: inf / NaN, then checked
        built = [
            _tree(
                t,
                i,
                int(tree_info[i]) if n_outputs > 1 else 0,
                1.0 if weights is None or len(weights) == 0 else float(weights[i]),
                sets,
            )
            for i, t in enumerate(trees)
        ]
    n_used = max((int(t.split_index.max()) + 1 for t in built), default=0)
    check_feature_count(num_feature, n_used, field="num_feature", where="XGBoost model")
    raw_base = parse_base_score(params.get("base_score", "0.5"))
    base = base_score_to_margin(raw_base, base_how)
    if not np.all(np.isfinite(base)):
        raise ModelFormatError(
            f"XGBoost model: base_score {raw_base.tolist()} has no finite margin under objective"
            f" {objective!r}."
        )
    if base.size == 1 and n_outputs > 1:
        base = np.repeat(base, n_outputs)
    if base.size != n_outputs:
        raise ModelFormatError(
            f"XGBoost model: base_score has {base.size} values for {n_outputs} outputs."
        )
    names = list(learner.get("feature_names", []) or [])
    names = names if len(names) == num_feature else []
    table = bitset_table(sets) if sets else None
    if missing is not None and not math.isnan(missing):
        built = route_value_as_missing(built, missing, table)
    return Forest.from_trees(
        built,
        cat_bitsets=table,
        category_rule="xgboost",
        feature_categories=decode_categories(gbtree.get("cats"), num_feature, names),
        num_feature=num_feature,
        task=task,
        num_class=num_class if task == "multiclass" else 1,
        base_score=base,
        postprocessor=post,
        average=False,
        comparison="<",
        feature_dtype="float32",
        margin_dtype="float32",
        feature_names=tuple(names) if names else None,
        source={
            "library": "xgboost",
            "objective": objective,
            "booster": kind,
            "base_score_raw": str(params.get("base_score", "0.5")).strip("[]"),
        },
    )


def forest_from_xgboost_bytes(data: bytes, *, missing: float | None = None) -> Forest:
    """Parse an XGBoost JSON or UBJSON model document (``missing`` as for
    :func:`forest_from_xgboost_dict`)."""
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
    return forest_from_xgboost_dict(doc, missing=missing)


def _wrapper_missing(model: Any, missing: float | None) -> float | None:
    """The ``missing`` of a scikit-learn wrapper, checked against the one the caller passed."""
    own = model.get_params().get("missing", math.nan)
    own = math.nan if own is None else float(own)
    if missing is not None and not (missing == own or (math.isnan(missing) and math.isnan(own))):
        raise ValueError(
            f"from_model(..., missing={missing!r}) disagrees with {type(model).__name__}"
            f"(missing={own!r}), which its own predict uses: leave missing= out."
        )
    return own


def forest_from_xgboost(obj: Any, *, missing: float | None = None) -> Forest:
    """Build a Forest from an ``xgboost.Booster`` or an ``XGBModel`` (classifier, regressor, ranker).

    For the scikit-learn wrappers an early-stopped model keeps its best iteration, as its own
    ``predict`` does (a Booster keeps every tree, as ``Booster.predict`` does), and their
    ``missing`` parameter is read. A Booster does not store ``missing`` (it is an argument of
    each ``DMatrix`` / ``inplace_predict``): pass the value scored with as ``missing=``. Rows
    holding it then predict as XGBoost predicts them (as if missing) at every node; the trees
    grow where that value and NaN go to different sides (:func:`route_value_as_missing`).
    """
    n_iter = None
    booster = obj
    if hasattr(obj, "get_booster"):
        missing = _wrapper_missing(obj, missing)
        booster = obj.get_booster()
        try:
            best = obj.best_iteration
        except AttributeError:
            best = None
        if best is not None:
            n_iter = int(best) + 1
    raw = booster.save_raw(raw_format="ubj")
    doc = decode_ubjson(bytes(raw))
    forest = forest_from_xgboost_dict(doc, n_iterations=n_iter, missing=missing)
    if forest.feature_names is None and getattr(booster, "feature_names", None):
        names = tuple(booster.feature_names)
        if len(names) == forest.num_feature:
            forest = forest.replace(feature_names=names)
    return forest
