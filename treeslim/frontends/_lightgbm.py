"""LightGBM frontend: Boosters, the scikit-learn wrappers, and LightGBM's model text format.

The model text is parsed directly (numpy for the numeric arrays), so a model file can be inspected
without lightgbm installed. Decisions follow LightGBM's C++ ``NumericalDecision`` on float64 inputs
(``x <= threshold``), including two quirks kept exact here: with missing type *None* NaN is read as
0.0, and LightGBM's predictor reads every input with ``|x| <= 1e-35`` (``kZeroThreshold``) as 0.0,
so thresholds inside that band are moved to its edge. Missing type *Zero* (``zero_as_missing``)
sends zeros and NaN to the default side; where that is against the threshold, the node becomes
three comparisons and its two subtrees are copied once (``apply`` then numbers leaves unlike
LightGBM). Categorical splits (``num_cat``, ``cat_boundaries``, ``cat_threshold``) become IR
category sets under the ``"lightgbm"`` rule, the ``pandas_categorical`` lists the
``feature_categories`` (see :mod:`._lightgbm_splits`). Init scores are already folded into the
trees (with ``boosting='rf'`` into every tree). A model trained with a custom objective (no
objective line) predicts its raw scores, so it is read with the identity link. For rf models
LightGBM's ``raw_score=True`` is the *sum* of the trees while ``predict`` averages first; the Forest
(``average=True``) follows ``predict``, so its margin is ``raw_score / n_iterations``.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from treeslim.errors import InvalidForestError, ModelFormatError, UnsupportedModelError
from treeslim.formats import check_feature_count, parse_objective
from treeslim.frontends._lightgbm_splits import (
    category_table,
    decisions,
    feature_categories,
    split_zero_nodes,
)
from treeslim.ir import Forest, TreeArrays

__all__ = ["forest_from_lightgbm", "forest_from_lightgbm_text"]


def _fail(msg: str) -> ModelFormatError:
    return ModelFormatError(f"LightGBM model text: {msg}")


def _column(blocks: list[dict[str, str]], key: str, counts: np.ndarray, dtype: Any) -> np.ndarray:
    """The numbers of ``key`` over all trees, concatenated (tree ``t`` holds ``counts[t]``)."""
    parts = []
    for t, (block, count) in enumerate(zip(blocks, counts, strict=True)):
        if count and key not in block:
            raise _fail(f"tree {t} has no {key!r} line (truncated or corrupt model?).")
        parts.append(block.get(key, "").strip() if count else "")
    joined = " ".join(p for p in parts if p)
    try:  # fromstring parses in C, and correctly rounded; whitespace-only input must not reach it
        arr = np.fromstring(joined, dtype=dtype, sep=" ") if joined else np.empty(0, dtype)
    except ValueError:
        arr = None
    if arr is not None and arr.size == int(counts.sum()):
        return arr
    for t, (part, count) in enumerate(
        zip(parts, counts, strict=True)
    ):  # slow path: name the faulty tree
        tokens = part.split()
        try:
            np.array(tokens, dtype=dtype)
        except (ValueError, OverflowError) as exc:
            raise _fail(f"tree {t}: cannot read {key!r} ({exc}).") from None
        if len(tokens) != count:
            raise _fail(f"tree {t}: {key!r} has {len(tokens)} values, expected {int(count)}.")
    raise _fail(f"cannot read {key!r}.")  # pragma: no cover - the loop above names the fault


def _optional(blocks: list[dict[str, str]], key: str, counts: np.ndarray) -> np.ndarray | None:
    if any(c and not b.get(key, "").strip() for b, c in zip(blocks, counts, strict=True)):
        return None
    return _column(blocks, key, counts, np.float64)


def _flag(block: dict[str, str], key: str, t: int) -> int:
    try:
        return int(block.get(key, "0") or 0)
    except ValueError:
        raise _fail(f"tree {t}: cannot read {key}={block[key]!r}.") from None


def _key_values(lines: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        key, sep, value = line.partition("=")
        out[key.strip()] = value.strip() if sep else ""
    return out


def _check_feature_lines(header: dict[str, str], num_feature: int) -> list[str]:
    """The feature names; like LightGBM, refuse a header whose ``feature_names`` and
    ``feature_infos`` lines do not hold one entry per feature of ``max_feature_idx``."""
    lines = {}
    for key in ("feature_names", "feature_infos"):
        if key not in header:
            raise _fail(f"the header has no {key} line (LightGBM cannot load such a model either).")
        lines[key] = header[key].split()
        if len(lines[key]) != num_feature:
            raise _fail(
                f"max_feature_idx={num_feature - 1} declares {num_feature:,} features, but"
                f" {key} lists {len(lines[key]):,}."
            )
    return lines["feature_names"]


def _check_missing_types(blocks: list[dict[str, str]], dtype: np.ndarray, where: Any) -> None:
    for t, block in enumerate(blocks):
        _flag(block, "num_cat", t)  # readable in every tree, as LightGBM requires
    if np.any((dtype >> 2) & 3 == 3):
        t, node = where(int(np.flatnonzero((dtype >> 2) & 3 == 3)[0]))
        raise _fail(f"tree {t}, node {node}: unknown missing type in its decision_type.")


def _category_table(
    blocks: list[dict[str, str]], nodes: np.ndarray, thr: np.ndarray, tin: np.ndarray, at: Any
) -> np.ndarray:
    """Read ``num_cat`` / ``cat_boundaries`` / ``cat_threshold`` and build the categorical
    nodes' category table (see :func:`category_table`)."""
    num_cat = np.array([_flag(b, "num_cat", t) for t, b in enumerate(blocks)], dtype=np.int64)
    if np.any(num_cat < 0):
        raise _fail(f"tree {int(np.argmax(num_cat < 0))} has num_cat < 0.")
    n_bounds = np.where(num_cat > 0, num_cat + 1, 0)
    bounds = _column(blocks, "cat_boundaries", n_bounds, np.int64)
    b_off = np.concatenate([[0], np.cumsum(n_bounds)])
    n_words = np.zeros(len(blocks), dtype=np.int64)
    for t in np.flatnonzero(num_cat):
        b = bounds[b_off[t] : b_off[t + 1]]
        if b[0] != 0 or np.any(np.diff(b) < 0):
            raise _fail(f"tree {t}: cat_boundaries must rise from 0; got {b[:8].tolist()}.")
        n_words[t] = b[-1]
    words = _column(blocks, "cat_threshold", n_words, np.int64)
    if np.any((words < 0) | (words >= 1 << 32)):
        raise _fail("cat_threshold holds a value outside the uint32 range.")
    per_tree = [
        (bounds[b_off[t] : b_off[t + 1]], words[w0 : w0 + n_words[t]])
        for t, w0 in enumerate(np.cumsum(n_words) - n_words)
    ]
    return category_table(nodes, thr, tin, per_tree, at)


def _trees(
    blocks: list[dict[str, str]], num_feature: int, names: list[str] | None
) -> tuple[dict[str, Any], np.ndarray, np.ndarray | None]:
    """Global node arrays of all trees (each tree: its internal nodes, then its leaves), and the
    category table of the categorical nodes (None without any)."""
    for t, block in enumerate(blocks):
        if _flag(block, "is_linear", t):
            raise UnsupportedModelError(
                f"LightGBM tree {t} is a linear tree (a linear model in each leaf); treeslim holds"
                " constant leaves only: retrain with linear_tree=False."
            )
    n_trees = len(blocks)
    leaves = _column(blocks, "num_leaves", np.ones(n_trees, dtype=np.int64), np.int64)
    if np.any(leaves < 1):
        raise _fail(f"tree {int(np.argmax(leaves < 1))} has num_leaves < 1.")
    leaf_value = _column(blocks, "leaf_value", leaves, np.float64)  # checks num_leaves first
    inner = leaves - 1
    node_off = np.concatenate([[0], np.cumsum(2 * leaves - 1)])
    tin = np.repeat(np.arange(n_trees), inner)  # tree of each internal node
    tlf = np.repeat(np.arange(n_trees), leaves)
    local_i = np.arange(len(tin)) - np.repeat(np.cumsum(inner) - inner, inner)
    local_l = np.arange(len(tlf)) - np.repeat(np.cumsum(leaves) - leaves, leaves)
    ipos = node_off[tin] + local_i
    lpos = node_off[tlf] + inner[tlf] + local_l

    def where(i: int) -> tuple[int, int]:
        return int(tin[i]), int(local_i[i])

    def at(i: int) -> str:
        j = int(feat[i])
        name = f" ({names[j]!r})" if names else ""
        return f"LightGBM tree {tin[i]}, node {local_i[i]} on feature {j}{name}"

    feat = _column(blocks, "split_feature", inner, np.int64)
    bad = np.flatnonzero((feat < 0) | (feat >= num_feature))
    if len(bad):
        t, node = where(int(bad[0]))
        raise _fail(
            f"tree {t}, node {node}: split_feature {int(feat[bad[0]])} is not in"
            f" [0, {num_feature})."
        )
    n_used = int(feat.max()) + 1 if feat.size else 0
    check_feature_count(num_feature, n_used, field="max_feature_idx", where="LightGBM model text")
    dtype = _column(blocks, "decision_type", inner, np.int64)
    _check_missing_types(blocks, dtype, where)
    thr = _column(blocks, "threshold", inner, np.float64)
    cat = (dtype & 1) != 0
    numeric_thr, default_left, zero_split = decisions(thr, dtype)
    n = int(node_off[-1])
    f: dict[str, Any] = {
        "split_index": np.full(n, -1, dtype=np.int64),
        "threshold": np.zeros(n),
        "cleft": np.full(n, -1, dtype=np.int64),
        "cright": np.full(n, -1, dtype=np.int64),
        "default_left": np.zeros(n, dtype=bool),
        "leaf_value": np.zeros(n),
    }
    f["split_index"][ipos] = feat
    f["threshold"][ipos] = np.where(cat, 0.0, numeric_thr)
    f["zero_split"] = np.zeros(n, dtype=bool)
    f["zero_split"][ipos] = zero_split
    f["default_left"][ipos] = default_left & ~cat  # categorical: NaN and negatives go right
    table = None
    if cat.any():
        table = _category_table(blocks, np.flatnonzero(cat), thr, tin, at)
        f["cat_index"] = np.full(n, -1, dtype=np.int64)
        f["cat_index"][ipos[cat]] = np.arange(len(table))
    for key, name in (("left_child", "cleft"), ("right_child", "cright")):
        c = _column(blocks, key, inner, np.int64)
        bad = np.flatnonzero((c >= inner[tin]) | (c < -leaves[tin]))
        if len(bad):
            t, node = where(int(bad[0]))
            raise _fail(f"tree {t}, node {node}: {key} {int(c[bad[0]])} points outside the tree.")
        f[name][ipos] = node_off[tin] + np.where(c >= 0, c, inner[tin] + ~c)
    f["leaf_value"][lpos] = leaf_value
    for name, ikey, lkey in (
        ("sum_hess", "internal_weight", "leaf_weight"),
        ("data_count", "internal_count", "leaf_count"),
        ("gain", "split_gain", None),
    ):
        a = _optional(blocks, ikey, inner)
        b = _optional(blocks, lkey, leaves) if lkey else np.zeros(len(lpos))
        f[name] = None
        if a is not None and b is not None:
            f[name] = np.zeros(n)
            f[name][ipos], f[name][lpos] = a, b
    return f, node_off, table


def _per_tree(f: dict[str, Any], node_off: np.ndarray, tree_class: np.ndarray) -> list[TreeArrays]:
    """Split global arrays into TreeArrays; from_trees puts odd node orders in canonical order."""
    out = []
    for t in range(len(node_off) - 1):
        lo, hi = int(node_off[t]), int(node_off[t + 1])
        s: dict[str, Any] = {k: (None if v is None else v[lo:hi]) for k, v in f.items()}
        leaf = s["split_index"] < 0
        s["cleft"] = np.where(leaf, -1, s["cleft"] - lo)
        s["cright"] = np.where(leaf, -1, s["cright"] - lo)
        out.append(TreeArrays(**s, tree_class=int(tree_class[t])))
    return out


def forest_from_lightgbm_text(text: str) -> Forest:
    """Parse LightGBM's model text format (``Booster.model_to_string()`` / ``save_model``).

    Parameters
    ----------
    text : str
        The whole model text.

    Returns
    -------
    Forest
        Float64 inputs compared with ``<=``; predicts what ``booster.predict`` does.

    Raises
    ------
    ModelFormatError
        For text that is not a LightGBM model, or is truncated or corrupt; also when the header's
        counts do not fit: ``feature_names`` / ``feature_infos`` not one per feature of
        ``max_feature_idx`` (LightGBM refuses those too), ``num_class`` other than 1 for a
        one-output objective, or more than
        :data:`~treeslim.formats.MAX_UNUSED_FEATURES` features beyond the highest split feature.
    UnsupportedModelError
        For linear trees, unsupported objectives, ``zero_as_missing`` trees that would grow more
        than 16-fold (see above), category codes beyond 2**24, and a
        ``pandas_categorical`` line whose lists cannot be matched to features.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str; got {type(text).__name__}.")
    lines = text.splitlines()
    if not lines or lines[0].strip() != "tree":
        raise _fail("not a LightGBM model (the first line is not 'tree').")
    try:
        end = lines.index("end of trees")
    except ValueError:
        raise _fail("no 'end of trees' line: the model text is truncated.") from None
    starts = [i for i, line in enumerate(lines[:end]) if line.startswith("Tree=")]
    if not starts:
        raise _fail("no tree before 'end of trees'.")
    header = _key_values([ln for ln in lines[1 : starts[0]] if ln.strip()])
    try:
        num_class = int(header["num_class"])
        per_iter = int(header.get("num_tree_per_iteration", num_class))
        num_feature = int(header["max_feature_idx"]) + 1
    except (KeyError, ValueError) as exc:
        raise _fail(f"the header lacks a valid num_class / max_feature_idx ({exc}).") from None
    if num_class < 1 or num_feature < 1:
        raise _fail(f"num_class={num_class}, max_feature_idx={num_feature - 1}.")
    objective = header.get("objective")
    task, post, alpha = parse_objective(objective, num_class)
    n_outputs = num_class if task == "multiclass" else 1
    declared = dict(t.partition(":")[::2] for t in (objective or "").split()[1:])
    if per_iter != n_outputs or declared.get("num_class", str(num_class)) != str(num_class):
        raise _fail(
            f"objective {objective!r} does not fit num_class={num_class} and"
            f" num_tree_per_iteration={per_iter}."
        )
    if task != "multiclass" and num_class != 1:
        raise _fail(f"num_class={num_class}, but objective {objective!r} has one output.")
    names: list[str] | None = _check_feature_lines(header, num_feature)
    if names is not None and all(n == f"Column_{j}" for j, n in enumerate(names)):
        names = None  # LightGBM's default names
    bounds = [*starts, end]
    blocks = []
    for t in range(len(starts)):
        if lines[bounds[t]].strip() != f"Tree={t}":
            raise _fail(f"expected 'Tree={t}', found {lines[bounds[t]].strip()!r}.")
        blocks.append(_key_values(lines[bounds[t] + 1 : bounds[t + 1]]))
    if len(blocks) % n_outputs:
        raise _fail(f"{len(blocks)} trees is not a multiple of num_tree_per_iteration={per_iter}.")
    fields, node_off, table = _trees(blocks, num_feature, names)
    categories = feature_categories(text, header["feature_infos"].split(), names)
    tree_class = (np.arange(len(blocks)) % n_outputs).astype(np.int32)
    average = "average_output" in header
    params = dict(re.findall(r"^\[(\w+): ([^\]\n]*)\]$", text[text.find("\nparameters:") :], re.M))
    header_fields: dict[str, Any] = dict(
        num_feature=num_feature,
        task=task,
        num_class=num_class if task == "multiclass" else 1,
        base_score=np.zeros(n_outputs),
        postprocessor=post,
        sigmoid_alpha=alpha,
        average=average,
        comparison="<=",
        feature_dtype="float64",
        feature_names=None if names is None else tuple(names),
        cat_bitsets=table,
        feature_categories=categories,
        source={
            "library": "lightgbm",
            "objective": objective,
            "boosting": params.get("boosting", "rf" if average else "gbdt"),
        },
    )
    if table is not None or categories is not None:
        header_fields["category_rule"] = "lightgbm"
    zero_split = fields.pop("zero_split")
    if not zero_split.any():
        try:
            return Forest(**fields, tree_offsets=node_off, tree_class=tree_class, **header_fields)
        except InvalidForestError:  # a hand-written model may number its nodes in another order
            pass
    trees = _per_tree(fields, node_off, tree_class)
    for tz in np.flatnonzero(np.add.reduceat(zero_split, node_off[:-1])).tolist():
        flagged = zero_split[node_off[tz] : node_off[tz + 1]]
        trees[tz] = split_zero_nodes(trees[tz], flagged, tz)
    try:
        return Forest.from_trees(trees, **header_fields)
    except InvalidForestError as exc:
        raise _fail(f"the trees are corrupt: {exc}") from exc


def forest_from_lightgbm(obj: Any) -> Forest:
    """Build a Forest from a ``lightgbm.Booster`` or an ``LGBMModel`` (classifier, regressor...).

    For the scikit-learn wrappers an early-stopped model keeps its best iteration, as its own
    ``predict`` does.

    Examples
    --------
    >>> import numpy as np, lightgbm
    >>> X = np.random.default_rng(0).normal(size=(200, 3))
    >>> model = lightgbm.LGBMRegressor(n_estimators=5, num_leaves=4, verbose=-1).fit(X, X[:, 0])
    >>> forest = forest_from_lightgbm(model)
    >>> forest.n_trees, forest.comparison
    (5, '<=')
    >>> bool(np.abs(forest.predict(X) - model.predict(X)).max() < 1e-12)
    True
    """
    booster = obj
    num_iteration: int | None = None
    if hasattr(type(obj), "booster_"):  # LGBMModel; raises LGBMNotFittedError when not fitted
        booster = obj.booster_
        best = getattr(obj, "best_iteration_", None)
        if best:
            num_iteration = int(best)
    if not hasattr(booster, "model_to_string"):
        raise UnsupportedModelError(
            f"Cannot read a {type(obj).__name__}: expected a lightgbm.Booster or LGBMModel."
        )
    return forest_from_lightgbm_text(booster.model_to_string(num_iteration=num_iteration))
