"""LightGBM backend: write any :class:`~treeslim.Forest` as LightGBM model text and load it.

LightGBM compares float64 inputs with ``x <= threshold`` and sends NaN to a per-node default side
(missing type NaN), so every Forest maps onto it: ``<`` thresholds become the largest double below,
and float32 forests (XGBoost, scikit-learn) get the float64 boundary of the set of inputs that round
to the left side, which is exact for every float64 input. Vector leaves are expanded into one tree
per class, base scores are folded into the leaves, and trees are interleaved by class, padded with
zero trees where classes have fewer trees. The one inexact corner is LightGBM's own: its predictor
reads inputs with ``|x| <= 1e-35`` as 0.0.

Categorical nodes are written as LightGBM categorical splits (members left, NaN right) when
LightGBM routes them exactly as the Forest does: ``default_left=False``, float64 inputs, and for
rules other than ``"lightgbm"`` no category 0 (LightGBM truncates -0.5 to code 0); other
categorical forests are refused. ``feature_categories`` become the ``pandas_categorical`` line, so
DataFrames with ``category`` columns are encoded as before.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from treeslim._utils import require, write_atomic
from treeslim.errors import UnsupportedModelError
from treeslim.formats import dump_pandas_categorical, parse_objective
from treeslim.ir import Forest

__all__ = ["forest_to_lightgbm_text", "to_lightgbm"]

_MAX32 = float(np.finfo(np.float32).max)
_HALF_ULP_MAX32 = 2.0**103  # half the gap between the largest float32 and 2**128


def _fmt(values: Any) -> str:
    return " ".join(map(repr, np.asarray(values, dtype=np.float64).tolist()))


def _ints(values: Any) -> str:
    return " ".join(map(str, np.rint(np.asarray(values, dtype=np.float64)).astype(np.int64)))


def lightgbm_thresholds(forest: Forest) -> np.ndarray:
    """Thresholds ``t'`` with ``x <= t'`` (float64 ``x``) deciding as ``forest`` does at each node.

    For float32 forests ``x`` is rounded to float32 first, so the boundary is the midpoint between
    the last float32 that goes left and the next one, on the side the tie rounds to.
    """
    t = forest.threshold
    strict = forest.comparison == "<"
    if forest.feature_dtype == "float64":
        return np.nextafter(t, -np.inf) if strict else t.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        t32 = t.astype(np.float32)
        below = (t32.astype(np.float64) > t) | (strict & (t32.astype(np.float64) == t))
        q = np.where(below, np.nextafter(t32, np.float32(-np.inf)), t32)  # last float32 going left
        q64 = q.astype(np.float64)
        m = q64 / 2 + np.nextafter(q, np.float32(np.inf)).astype(np.float64) / 2  # exact
        m = np.where(q64 == _MAX32, _MAX32 + _HALF_ULP_MAX32, m)
        m = np.where(q64 == -np.inf, -(_MAX32 + _HALF_ULP_MAX32), m)
        tie_to_q = m.astype(np.float32) == q
    return np.where(tie_to_q, m, np.nextafter(m, -np.inf))


def _objective_line(forest: Forest) -> str | None:
    post, k = forest.postprocessor, forest.n_outputs
    src = forest.source.get("objective") if forest.source.get("library") == "lightgbm" else None
    if src:
        try:
            task, src_post, alpha = parse_objective(src, forest.num_class)
        except (UnsupportedModelError, ValueError):
            task = ""
        same_alpha = post != "sigmoid" or alpha == forest.sigmoid_alpha
        if (task, src_post) == (forest.task, post) and same_alpha:
            return str(src)
    if post == "argmax":
        raise UnsupportedModelError(
            "LightGBM cannot predict class indices (postprocessor='argmax', XGBoost"
            " multi:softmax); export forest.replace(postprocessor='softmax') and take the argmax"
            " of its probabilities."
        )
    if post == "softmax" and k > 1:
        return f"multiclass num_class:{k}"
    if post == "sigmoid" and k == 1:
        alpha = forest.sigmoid_alpha
        if forest.task == "regression" and alpha == 1.0:
            return "cross_entropy"
        return f"binary sigmoid:{alpha!r}"
    if post == "exponential" and k == 1:
        return "poisson"
    if post == "identity":
        if k == 1 and forest.task == "regression":
            return "regression"
        if k == 1 and forest.task == "ranking":
            return "lambdarank"
        return None  # no objective: LightGBM predicts the raw scores
    raise UnsupportedModelError(
        f"LightGBM has no objective applying {post!r} to {k} output(s); supported: sigmoid and"
        " exponential on one output, softmax on several, identity."
    )


def _tree_text(forest: Forest, t: int, column: int, shift: float, thr: np.ndarray) -> list[str]:
    """The ``Tree=`` block body of Forest tree ``t`` (leaf column ``column``, plus ``shift``)."""
    lo, hi = int(forest.tree_offsets[t]), int(forest.tree_offsets[t + 1])
    split = forest.split_index[lo:hi]
    leaf = split < 0
    values = forest.leaf_value[lo:hi, column][leaf] + shift
    inner = ~leaf  # a lone leaf gets empty split lines, as LightGBM writes it
    ids = np.where(leaf, ~(np.cumsum(leaf) - 1), np.cumsum(inner) - 1)  # LightGBM child codes
    left = ids[forest.cleft[lo:hi][inner] - lo]
    right = ids[forest.cright[lo:hi][inner] - lo]
    decision = np.where(forest.default_left[lo:hi][inner], 10, 8)  # missing type NaN (+ left)
    threshold = thr[lo:hi][inner]
    no_sets = np.full(int(inner.sum()), -1, dtype=np.int32)
    sets = no_sets if forest.cat_index is None else forest.cat_index[lo:hi][inner]
    cat = np.flatnonzero(sets >= 0)
    lines = [f"num_leaves={int(leaf.sum())}", f"num_cat={len(cat)}"]
    if len(cat):  # threshold = index of the node's bitset; decision type: categorical, NaN right
        assert forest.cat_bitsets is not None
        words = [np.trim_zeros(forest.cat_bitsets[k], "b") for k in sets[cat]]
        words = [w if len(w) else np.zeros(1, dtype=np.uint32) for w in words]
        threshold, decision = threshold.copy(), decision.copy()
        threshold[cat], decision[cat] = np.arange(len(cat)), 1
        bounds = np.concatenate([[0], np.cumsum([len(w) for w in words])])
        lines += [
            f"cat_boundaries={' '.join(map(str, bounds.tolist()))}",
            f"cat_threshold={' '.join(map(str, np.concatenate(words).tolist()))}",
        ]
    lines += [
        f"split_feature={' '.join(map(str, split[inner].tolist()))}",
        f"threshold={_fmt(threshold)}",
        f"decision_type={' '.join(map(str, decision.tolist()))}",
        f"left_child={' '.join(map(str, left.tolist()))}",
        f"right_child={' '.join(map(str, right.tolist()))}",
        f"leaf_value={_fmt(values)}",
    ]
    if forest.gain is not None:
        lines.append(f"split_gain={_fmt(forest.gain[lo:hi][inner])}")
    for stat, name, fmt in (("sum_hess", "weight", _fmt), ("data_count", "count", _ints)):
        a = getattr(forest, stat)
        if a is not None:
            lines += [
                f"leaf_{name}={fmt(a[lo:hi][leaf])}",
                f"internal_{name}={fmt(a[lo:hi][inner])}",
            ]
    return [*lines, "is_linear=0", "shrinkage=1"]


def _check_categories(forest: Forest) -> None:
    """Refuse categorical nodes LightGBM's ``CategoricalDecision`` would route otherwise: it
    reads float64 inputs, truncates any value above -1 to a code, and sends NaN right."""
    if forest.cat_index is None:
        return
    assert forest.cat_bitsets is not None
    for node in np.flatnonzero(forest.cat_index >= 0).tolist():
        t = int(np.searchsorted(forest.tree_offsets, node, side="right") - 1)
        j = int(forest.split_index[node])
        name = f" ({forest.feature_names[j]!r})" if forest.feature_names else ""
        at = f"Tree {t}, node {node - int(forest.tree_offsets[t])} on feature {j}{name}"
        problem = None
        if forest.feature_dtype == "float32" or forest.category_rule == "sklearn":
            problem = (
                f"is a categorical split of a {forest.feature_dtype} model with category rule"
                f" {forest.category_rule!r}: it reads 2.9999999 as category 3 (rounded to float32"
                " or matched to a category value), LightGBM truncates it to 2"
            )
        elif forest.default_left[node]:
            problem = "sends NaN to its categories' side, LightGBM always to the other side"
        elif (
            forest.category_rule != "lightgbm" and forest.cat_bitsets[forest.cat_index[node], 0] & 1
        ):
            problem = (
                "holds category 0, which LightGBM also gives to -0.5 (it truncates values above"
                f" -1), while rule {forest.category_rule!r} reads negative values as no category"
            )
        if problem:
            raise UnsupportedModelError(
                f"{at} {problem}, so LightGBM cannot predict this forest exactly: export it with"
                " to_xgboost or to_treelite, or compile it."
            )


def _iterations(forest: Forest) -> list[list[tuple[int, int] | None]]:
    """Per boosting iteration and output: (Forest tree, leaf column), or None for a zero tree."""
    k = forest.n_outputs
    if forest.leaf_width > 1:
        return [[(t, c) for c in range(k)] for t in range(forest.n_trees)]
    per_class = [np.flatnonzero(forest.tree_class == c).tolist() for c in range(k)]
    n_iter = max(1, *map(len, per_class))
    return [
        [(per_class[c][i], 0) if i < len(per_class[c]) else None for c in range(k)]
        for i in range(n_iter)
    ]


def _feature_names(forest: Forest) -> list[str]:
    names = list(forest.feature_names or [])
    ok = names and all(n and not any(ch.isspace() for ch in n) for n in names)
    return names if ok else [f"Column_{j}" for j in range(forest.num_feature)]


def forest_to_lightgbm_text(forest: Forest) -> str:
    """LightGBM model text predicting what ``forest`` predicts.

    Parameters
    ----------
    forest : Forest
        From any source; ``postprocessor='argmax'`` cannot be expressed.

    Returns
    -------
    str
        Text for ``lightgbm.Booster(model_str=...)`` or a ``.txt`` model file.

    Raises
    ------
    UnsupportedModelError
        For a postprocessor LightGBM has no objective for, and categorical nodes LightGBM would
        route otherwise (NaN to the members' side, float32 or ``"sklearn"`` category rules, code 0
        under the ``"xgboost"`` rule).
    """
    objective = _objective_line(forest)
    _check_categories(forest)
    k = forest.n_outputs
    thr = lightgbm_thresholds(forest)
    iterations = _iterations(forest)
    blocks: list[str] = []
    for i, iteration in enumerate(iterations):
        for c, member in enumerate(iteration):
            shift = float(forest.base_score[c]) if forest.average or i == 0 else 0.0
            if member is None:
                body = [
                    "num_leaves=1",
                    "num_cat=0",
                    f"leaf_value={shift!r}",
                    "is_linear=0",
                    "shrinkage=1",
                ]
            else:
                body = _tree_text(forest, member[0], member[1], shift, thr)
            blocks.append("\n".join([f"Tree={len(blocks)}", *body]) + "\n\n")
    # features with a category list: pandas_categorical in order, and their codes as feature_infos
    cats = forest.feature_categories or (None,) * forest.num_feature
    lists = [list(c) for c in cats if c is not None]
    infos = ["none" if not c else ":".join(map(str, range(len(c)))) for c in cats]
    lib = forest.source.get("library")
    boosting = forest.source.get("boosting") if lib == "lightgbm" else None
    boosting = boosting or ("rf" if forest.average else "gbdt")
    header = [
        "tree",
        "version=v4",
        f"num_class={k}",
        f"num_tree_per_iteration={k}",
        "label_index=0",
        f"max_feature_idx={forest.num_feature - 1}",
        *([f"objective={objective}"] if objective else []),
        *(["average_output"] if forest.average else []),
        f"feature_names={' '.join(_feature_names(forest))}",
        f"feature_infos={' '.join(infos)}",
    ]
    tail = f"end of trees\n\nparameters:\n[boosting: {boosting}]\nend of parameters\n"
    if lists:  # LightGBM's Python package reads it as the text's last line
        tail += f"\n{dump_pandas_categorical(lists)}\n"
    return "\n".join(header) + "\n\n" + "".join(blocks) + "\n" + tail


def to_lightgbm(forest: Forest, path: str | os.PathLike[str] | None = None) -> Any:
    """A ``lightgbm.Booster`` predicting what ``forest`` predicts.

    Parameters
    ----------
    forest : Forest
    path : str or path-like, optional
        Also write the model text there (atomically: a temporary file, then a rename).

    Returns
    -------
    lightgbm.Booster
        ``booster.predict(X)`` equals ``forest.predict(X)``.

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim import Forest
    >>> from treeslim.ir import TreeArrays
    >>> stump = TreeArrays(split_index=np.array([0, -1, -1]), threshold=np.array([0.5, 0, 0]),
    ...     cleft=np.array([1, -1, -1]), cright=np.array([2, -1, -1]),
    ...     default_left=np.array([True, False, False]), leaf_value=np.array([0.0, -1.0, 1.0]))
    >>> forest = Forest.from_trees([stump], num_feature=1, task="regression", comparison="<")
    >>> booster = to_lightgbm(forest)
    >>> booster.predict(np.array([[0.5], [0.4], [np.nan]])).tolist()
    [1.0, -1.0, -1.0]
    """
    lgb: Any = require("lightgbm", "lightgbm")
    text = forest_to_lightgbm_text(forest)
    booster = lgb.Booster(model_str=text)
    if path is not None:
        write_atomic(path, text)
    return booster
