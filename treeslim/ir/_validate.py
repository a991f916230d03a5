"""The invariants of a :class:`~treeslim.Forest`, checked in one place.

:func:`validate` runs on every Forest built (frontends, passes, file readers), so a broken Forest
never reaches a predictor; its errors name the tree and node at fault.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from treeslim.errors import InvalidForestError
from treeslim.ir._categories import CATEGORY_RULES, MAX_CATEGORY

if TYPE_CHECKING:
    from treeslim.ir._forest import Forest

__all__ = ["POSTPROCESSORS", "TASKS", "validate"]

TASKS = ("regression", "binary", "multiclass", "ranking")
POSTPROCESSORS = ("identity", "sigmoid", "softmax", "exponential", "argmax")


def _fail(msg: str) -> None:
    raise InvalidForestError(msg)


def _node_tree(forest: Forest, node: int) -> tuple[int, int]:
    t = int(np.searchsorted(forest.tree_offsets, node, side="right") - 1)
    return t, node - int(forest.tree_offsets[t])


def validate(forest: Forest) -> Forest:
    """Check every invariant of ``forest``; raise :class:`InvalidForestError` naming the fault.

    Returns the forest, so ``validate(f).predict(X)`` chains.
    """
    _check_header(forest)
    _check_shapes(forest)
    _check_nodes(forest)
    _check_categorical(forest)
    return forest


def _check_header(f: Forest) -> None:
    """The scalar fields: task, link, comparison, precision, feature and class counts."""
    if f.task not in TASKS:
        _fail(f"task must be one of {TASKS}; got {f.task!r}.")
    if f.postprocessor not in POSTPROCESSORS:
        _fail(f"postprocessor must be one of {POSTPROCESSORS}; got {f.postprocessor!r}.")
    if f.comparison not in ("<", "<="):
        _fail(f"comparison must be '<' or '<='; got {f.comparison!r}.")
    if f.feature_dtype not in ("float32", "float64"):
        _fail(f"feature_dtype must be 'float32' or 'float64'; got {f.feature_dtype!r}.")
    if f.margin_dtype not in ("float32", "float64"):
        _fail(f"margin_dtype must be 'float32' or 'float64'; got {f.margin_dtype!r}.")
    if f.margin_dtype == "float32" and f.average:
        _fail("margin_dtype='float32' is XGBoost's summation; averaged forests sum in float64.")
    if f.num_feature < 1:
        _fail(f"num_feature must be >= 1; got {f.num_feature}.")
    if f.task == "multiclass" and f.num_class < 2:
        _fail(f"A multiclass forest needs num_class >= 2; got {f.num_class}.")
    if f.task != "multiclass" and f.num_class != 1:
        _fail(f"num_class must be 1 for task {f.task!r}; got {f.num_class}.")
    if f.feature_names is not None and len(f.feature_names) != f.num_feature:
        _fail(f"{len(f.feature_names)} feature_names for num_feature={f.num_feature}.")


def _check_shapes(f: Forest) -> None:
    """Array shapes, tree boundaries and each tree's output."""
    n = len(f.split_index)
    for name in ("threshold", "cleft", "cright", "default_left"):
        if getattr(f, name).shape != (n,):
            _fail(f"{name} has shape {getattr(f, name).shape}; expected ({n},).")
    for name in f.STAT_FIELDS:
        a = getattr(f, name)
        if a is not None and a.shape != (n,):
            _fail(f"{name} has shape {a.shape}; expected ({n},).")
    if f.leaf_value.ndim != 2 or f.leaf_value.shape[0] != n:
        _fail(f"leaf_value has shape {f.leaf_value.shape}; expected ({n}, leaf_width).")
    width = f.leaf_value.shape[1]
    if width not in (1, f.n_outputs):
        _fail(f"leaf_width {width} must be 1 or n_outputs={f.n_outputs}.")
    if f.base_score.shape != (f.n_outputs,):
        _fail(f"base_score has shape {f.base_score.shape}; expected ({f.n_outputs},).")
    if not np.all(np.isfinite(f.base_score)):
        _fail(f"base_score must be finite; got {f.base_score}.")
    off = f.tree_offsets
    if off.ndim != 1 or len(off) < 2 or off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 1):
        _fail(f"tree_offsets must rise strictly from 0 to n_nodes={n}; got {off[:5]}...")
    n_trees = len(off) - 1
    if f.tree_class.shape != (n_trees,):
        _fail(f"tree_class has shape {f.tree_class.shape}; expected ({n_trees},).")
    if width == 1:
        bad = np.flatnonzero((f.tree_class < 0) | (f.tree_class >= f.n_outputs))
        if len(bad):
            _fail(
                f"Tree {int(bad[0])}: tree_class {int(f.tree_class[bad[0]])} is not an output"
                f" index in [0, {f.n_outputs})."
            )
    if f.average and width == 1 and f.n_outputs > 1:
        counts = np.bincount(f.tree_class, minlength=f.n_outputs)
        if len(set(counts.tolist())) != 1:
            _fail(
                "An averaged multiclass forest needs the same number of trees for every class;"
                f" got {counts.tolist()}."
            )


def _check_nodes(f: Forest) -> None:
    """Every node: features in range, thresholds set, children later in the same tree, one
    parent per non-root node, finite leaves."""
    n, off = len(f.split_index), f.tree_offsets
    n_trees = len(off) - 1
    leaf = f.split_index < 0
    internal = np.flatnonzero(~leaf)
    bad = internal[f.split_index[internal] >= f.num_feature]
    if len(bad):
        t, i = _node_tree(f, int(bad[0]))
        _fail(
            f"Tree {t}, node {i}: split_index {int(f.split_index[bad[0]])} is not a feature in"
            f" [0, {f.num_feature})."
        )
    bad = internal[np.isnan(f.threshold[internal])]
    if len(bad):
        t, i = _node_tree(f, int(bad[0]))
        _fail(f"Tree {t}, node {i}: threshold is NaN.")
    tree_of = np.repeat(np.arange(n_trees), np.diff(off))
    hi = off[tree_of + 1]
    for name in ("cleft", "cright"):
        child = getattr(f, name)[internal]
        bad = internal[(child <= internal) | (child >= hi[internal])]
        if len(bad):
            t, i = _node_tree(f, int(bad[0]))
            _fail(
                f"Tree {t}, node {i}: {name} {int(getattr(f, name)[bad[0]])} must point to a later"
                f" node of the same tree."
            )
    bad = np.flatnonzero(leaf & ((f.cleft != -1) | (f.cright != -1)))
    if len(bad):
        t, i = _node_tree(f, int(bad[0]))
        _fail(f"Tree {t}, node {i}: a leaf must have cleft == cright == -1.")
    parents = np.bincount(np.concatenate([f.cleft[internal], f.cright[internal]]), minlength=n)
    roots = np.zeros(n, dtype=bool)
    roots[off[:-1]] = True
    bad = np.flatnonzero(parents != ~roots)
    if len(bad):
        t, i = _node_tree(f, int(bad[0]))
        what = "a root has a parent" if roots[bad[0]] else f"has {int(parents[bad[0]])} parents"
        _fail(f"Tree {t}, node {i}: {what}; every non-root node needs exactly one.")
    bad_leaf = np.flatnonzero(leaf & ~np.all(np.isfinite(f.leaf_value), axis=1))
    if len(bad_leaf):
        t, i = _node_tree(f, int(bad_leaf[0]))
        _fail(f"Tree {t}, node {i}: leaf value is not finite.")


def _check_categorical(f: Forest) -> None:
    """Categorical nodes point at a category set; the sets and category lists are well formed."""
    if f.category_rule not in CATEGORY_RULES:
        _fail(f"category_rule must be one of {CATEGORY_RULES}; got {f.category_rule!r}.")
    if f.feature_categories is not None and len(f.feature_categories) != f.num_feature:
        _fail(f"{len(f.feature_categories)} feature_categories for num_feature={f.num_feature}.")
    if f.cat_index is None:
        return
    n = len(f.split_index)
    if f.cat_index.shape != (n,):
        _fail(f"cat_index has shape {f.cat_index.shape}; expected ({n},).")
    table = f.cat_bitsets
    if table is None or table.ndim != 2 or table.shape[1] < 1:
        _fail("A forest with categorical nodes needs cat_bitsets of shape (n_sets, n_words >= 1).")
    assert table is not None
    if table.shape[1] * 32 > MAX_CATEGORY:
        _fail(f"cat_bitsets has {table.shape[1]} words; category codes stop at {MAX_CATEGORY}.")
    bad = np.flatnonzero((f.cat_index >= table.shape[0]) | (f.cat_index < -1))
    if len(bad):
        t, i = _node_tree(f, int(bad[0]))
        _fail(f"Tree {t}, node {i}: cat_index {int(f.cat_index[bad[0]])} is not a category set.")
    bad = np.flatnonzero((f.cat_index >= 0) & (f.split_index < 0))
    if len(bad):
        t, i = _node_tree(f, int(bad[0]))
        _fail(f"Tree {t}, node {i}: a leaf cannot be a categorical split.")
