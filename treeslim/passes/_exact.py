"""Exact passes: make a forest smaller without changing any prediction, on any input.

Every pass here predicts what its input predicts on every row, NaN and +-inf included (up to the
order in which floating-point leaf values are summed). :func:`collapse_identical_splits` replaces a
split whose two subtrees are the same by one copy of them, :func:`fold_constant_trees` moves trees
that are a single leaf into ``base_score``, and :func:`exact_passes` runs them, together with
:func:`prune_unreachable`, until nothing changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.ir import Forest, TreeArrays

__all__ = ["collapse_identical_splits", "exact_passes", "fold_constant_trees", "prune_unreachable"]


def record(forest: Forest, entry: dict[str, Any]) -> dict[str, Any]:
    """``forest.source`` with ``entry`` appended to its ``passes`` list (a new dict)."""
    source = dict(forest.source)
    source["passes"] = [*source.get("passes", []), entry]
    return source


def _collapse_tree(tree: TreeArrays) -> TreeArrays | None:
    """``tree`` (local indices, canonical order) with every split over two identical subtrees
    replaced by one copy, or None when there is none. Statistics of a kept copy become the sums
    over every copy it stands for."""
    si, thr, dl = np.asarray(tree.split_index), np.asarray(tree.threshold), tree.default_left
    cl, cr = np.asarray(tree.cleft), np.asarray(tree.cright)
    n = len(si)
    cats = np.full(n, -1) if tree.cat_index is None else np.asarray(tree.cat_index)
    lv = np.asarray(tree.leaf_value).reshape(n, -1)
    key = np.empty(n, dtype=np.int64)
    rep = np.arange(n)  # the node standing for each node after collapsing
    interned: dict[tuple[Any, ...], int] = {}
    merged: dict[int, tuple[int, int]] = {}  # node -> its two (identical) children
    for node in range(n - 1, -1, -1):  # children come after parents: bottom-up
        if si[node] < 0:
            k: tuple[Any, ...] = ("L", *lv[node].tolist())
        else:
            kl, kr = int(key[cl[node]]), int(key[cr[node]])
            if kl == kr:
                key[node] = kl
                rep[node] = rep[cl[node]]
                merged[node] = (int(cl[node]), int(cr[node]))
                continue
            # a category set is named by its row in the forest's table: equal rows, equal sets
            k = (int(si[node]), float(thr[node]), bool(dl[node]), int(cats[node]), kl, kr)
        key[node] = interned.setdefault(k, len(interned))
    if not merged:
        return None
    stats = {
        s: None if getattr(tree, s) is None else np.array(getattr(tree, s), dtype=np.float64)
        for s in Forest.STAT_FIELDS
    }
    for node in sorted(merged, reverse=True):  # bottom-up: inner merges are summed first
        pairs = [(int(rep[merged[node][0]]), int(rep[merged[node][1]]))]
        while pairs:
            x, y = pairs.pop()
            for s in ("sum_hess", "data_count"):
                arr = stats[s]
                if arr is not None:
                    arr[x] += arr[y]
            if si[x] >= 0:
                pairs += [(int(rep[cl[x]]), int(rep[cl[y]])), (int(rep[cr[x]]), int(rep[cr[y]]))]
    order: list[int] = []
    stack = [int(rep[0])]
    while stack:
        node = stack.pop()
        order.append(node)
        if si[node] >= 0:
            stack += [int(rep[cr[node]]), int(rep[cl[node]])]
    idx = np.asarray(order)
    new = np.full(n, -1, dtype=np.int64)
    new[idx] = np.arange(len(idx))
    inner = si[idx] >= 0
    return TreeArrays(
        split_index=si[idx],
        threshold=thr[idx],
        cleft=np.where(inner, new[rep[np.where(inner, cl[idx], 0)]], -1),
        cright=np.where(inner, new[rep[np.where(inner, cr[idx], 0)]], -1),
        default_left=np.asarray(dl)[idx],
        leaf_value=lv[idx],
        tree_class=tree.tree_class,
        cat_index=None if tree.cat_index is None else np.where(inner, cats[idx], -1),
        **{s: None if a is None else a[idx] for s, a in stats.items()},
    )


def collapse_identical_splits(forest: Forest) -> Forest:
    """Replace every split whose two subtrees are identical by one copy of the subtree.

    Subtrees are identical when they have the same splits (feature, threshold, default side) and
    the same leaf values, compared exactly. The walk is bottom-up, so collapses cascade: a split
    over two subtrees that become identical after their own collapses goes too. ``sum_hess`` and
    ``data_count`` of the kept copy become the sums over both copies.

    Parameters
    ----------
    forest : Forest

    Returns
    -------
    Forest
        Predicting exactly what ``forest`` predicts; ``forest`` itself when nothing collapses.

    Examples
    --------
    >>> from treeslim import Forest
    >>> f = Forest(split_index=[0, -1, -1], threshold=[1.0, 0, 0], cleft=[1, -1, -1],
    ...            cright=[2, -1, -1], default_left=[True, False, False],
    ...            leaf_value=[0, 2.0, 2.0], tree_offsets=[0, 3], tree_class=[0],
    ...            num_feature=1, task="regression")
    >>> collapse_identical_splits(f).n_nodes
    1
    """
    new = [_collapse_tree(forest.tree(t)) for t in range(forest.n_trees)]
    if all(t is None for t in new):
        return forest
    trees = [forest.tree(t) if tree is None else tree for t, tree in enumerate(new)]
    n_after = sum(len(t.split_index) for t in trees)
    header = forest.header()
    header["source"] = record(
        forest,
        {"name": "collapse_identical_splits", "lossy": False, "nodes_before": forest.n_nodes,
         "nodes_after": n_after},
    )  # fmt: skip
    return Forest.from_trees(trees, **header)


def _decided_removed(f: Forest, t: int) -> TreeArrays:
    """Tree ``t`` (local indices, no statistics) without the splits its ancestors decide."""
    lo0 = int(f.tree_offsets[t])
    si, thr, dl = f.split_index, f.threshold, f.default_left
    cl, cr = f.cleft, f.cright
    strict = f.comparison == "<"
    # Non-NaN values reaching a node lie in [lo, hi) for "<", (lo, hi] for "<="; None = unbounded.
    start = (-np.inf, None, True) if strict else (None, np.inf, True)
    bounds: dict[int, tuple[Any, Any, bool]] = {}
    left: dict[int, int] = {}
    right: dict[int, int] = {}

    cats = f.cat_index  # None: no categorical splits anywhere

    def categorical(node: int) -> bool:
        return cats is not None and bool(cats[node] >= 0)

    def walk(node: int) -> int:
        while si[node] >= 0 and not categorical(node):
            j, cut = int(si[node]), float(thr[node])
            lo, hi, nan_ok = bounds.get(j, start)
            all_left = hi is not None and hi <= cut
            all_right = lo is not None and cut <= lo
            if not (all_left or all_right):
                break
            go_left = bool(dl[node]) if all_left and all_right else all_left
            if nan_ok and bool(dl[node]) != go_left:
                break  # NaN still reaches this split and goes the other way: keep it
            node = int(cl[node] if go_left else cr[node])
        if si[node] < 0:
            return node
        if categorical(node):  # a category set says nothing about the numeric bounds: keep them
            left[node] = walk(int(cl[node]))
            right[node] = walk(int(cr[node]))
            return node
        j, cut, d = int(si[node]), float(thr[node]), bool(dl[node])
        saved = bounds.get(j)
        lo, hi, nan_ok = saved or start
        bounds[j] = (lo, cut if hi is None else min(hi, cut), nan_ok and d)
        left[node] = walk(int(cl[node]))
        bounds[j] = (cut if lo is None else max(lo, cut), hi, nan_ok and not d)
        right[node] = walk(int(cr[node]))
        if saved is None:
            del bounds[j]
        else:
            bounds[j] = saved
        return node

    root = walk(lo0)
    order: list[int] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        if si[node] >= 0:
            stack += [right[node], left[node]]
    new = {old: i for i, old in enumerate(order)}
    idx = np.asarray(order)
    inner = si[idx] >= 0
    return TreeArrays(
        split_index=si[idx],
        threshold=thr[idx],
        cleft=np.array([new[left[o]] if si[o] >= 0 else -1 for o in order], dtype=np.int64),
        cright=np.array([new[right[o]] if si[o] >= 0 else -1 for o in order], dtype=np.int64),
        default_left=dl[idx] & inner,
        leaf_value=f.leaf_value[idx],
        tree_class=int(f.tree_class[t]),
        cat_index=None if cats is None else np.where(inner, cats[idx], -1),
    )


def prune_unreachable(forest: Forest) -> Forest:
    """Remove splits that no input can take both ways; exact on every input, NaN included.

    A split on feature ``j`` is dropped (replaced by the child every row takes) when the splits on
    ``j`` above it already decide it for every non-NaN value *and* NaN either cannot reach it or is
    sent the same way by its ``default_left``. A split whose two subtrees are identical is replaced
    by one of them. Node statistics are dropped when anything is removed.

    Parameters
    ----------
    forest : Forest

    Returns
    -------
    Forest
        Predicting exactly what ``forest`` predicts; ``forest`` itself when nothing was removed.

    Examples
    --------
    >>> from treeslim import Forest
    >>> f = Forest(split_index=[0, 0, -1, -1, -1], threshold=[1.0, 2.0, 0, 0, 0],
    ...            cleft=[1, 3, -1, -1, -1], cright=[2, 4, -1, -1, -1],
    ...            default_left=[True, True, False, False, False],
    ...            leaf_value=[0, 0, 3.0, 1.0, 2.0], tree_offsets=[0, 5], tree_class=[0],
    ...            num_feature=1, task="regression")
    >>> prune_unreachable(f).n_nodes  # x < 1 implies x < 2
    3
    """
    trees = []
    for t in range(forest.n_trees):
        tree = _decided_removed(forest, t)
        trees.append(_collapse_tree(tree) or tree)
    n_after = sum(len(t.split_index) for t in trees)
    if n_after == forest.n_nodes:
        return forest
    entry = {"name": "prune_unreachable", "lossy": False, "nodes_before": forest.n_nodes,
             "nodes_after": n_after}  # fmt: skip
    header = forest.header()
    header["source"] = record(forest, entry)
    return Forest.from_trees(trees, **header)


def fold_constant_trees(forest: Forest) -> Forest:
    """Drop trees that are a single leaf and add their values to ``base_score``.

    Every output keeps at least one tree: when all trees of an output are constant, the first
    stays and carries their sum. Averaged forests (``average=True``) are returned unchanged, since
    dropping a tree changes the divisor of the mean.

    Parameters
    ----------
    forest : Forest

    Returns
    -------
    Forest
        Predicting what ``forest`` predicts; ``forest`` itself when nothing folds.

    Examples
    --------
    >>> from treeslim import Forest
    >>> f = Forest(split_index=[0, -1, -1, -1], threshold=[1.0, 0, 0, 0], cleft=[1, -1, -1, -1],
    ...            cright=[2, -1, -1, -1], default_left=[True, False, False, False],
    ...            leaf_value=[0, 1.0, 2.0, 0.5], tree_offsets=[0, 3, 4], tree_class=[0, 0],
    ...            num_feature=1, task="regression")
    >>> g = fold_constant_trees(f)
    >>> g.n_trees, float(g.base_score[0])
    (1, 0.5)
    """
    if forest.average:
        return forest
    roots = forest.tree_offsets[:-1]
    constant = forest.split_index[roots] < 0
    if not constant.any():
        return forest
    k = forest.n_outputs
    vector = forest.leaf_width > 1
    # Trees "owning" each output: all trees for vector leaves, else the trees of that class.
    groups = [np.arange(forest.n_trees)] if vector else [
        np.flatnonzero(forest.tree_class == c) for c in range(k)
    ]  # fmt: skip
    base = forest.base_score.copy()
    leaf_value = forest.leaf_value.copy()
    keep = np.ones(forest.n_trees, dtype=bool)
    for c, members in enumerate(groups):
        const = members[constant[members]]
        if not len(const):
            continue
        values = forest.leaf_value[roots[const]]  # (m, leaf_width)
        if len(const) == len(members):  # every tree constant: the first carries the sum
            leaf_value[roots[const[0]]] = values.sum(axis=0)
            keep[const[1:]] = False
        elif vector:
            base += values.sum(axis=0)
            keep[const] = False
        else:
            base[c] += values[:, 0].sum()
            keep[const] = False
    if keep.all():
        return forest
    lv = forest.replace(leaf_value=leaf_value)
    trees = [lv.tree(int(t)) for t in np.flatnonzero(keep)]
    header = forest.header()
    header["base_score"] = base
    header["source"] = record(
        forest,
        {"name": "fold_constant_trees", "lossy": False, "trees_before": forest.n_trees,
         "trees_after": len(trees)},
    )  # fmt: skip
    return Forest.from_trees(trees, **header)


def exact_passes(forest: Forest, *, max_rounds: int = 10) -> Forest:
    """Run every exact pass until the forest stops shrinking.

    The passes are :func:`collapse_identical_splits`, :func:`prune_unreachable`
    (splits decided by their ancestors) and :func:`fold_constant_trees`; each can expose work for
    the others, so they repeat until neither nodes nor trees change (at most ``max_rounds`` times).

    Parameters
    ----------
    forest : Forest
    max_rounds : int, default=10
        Upper bound on the rounds through all passes.

    Returns
    -------
    Forest
        Predicting what ``forest`` predicts on every input.

    Examples
    --------
    >>> from treeslim import Forest
    >>> f = Forest(split_index=[0, 0, -1, -1, -1], threshold=[1.0, 2.0, 0, 0, 0],
    ...            cleft=[1, 3, -1, -1, -1], cright=[2, 4, -1, -1, -1],
    ...            default_left=[True, True, False, False, False],
    ...            leaf_value=[0, 0, 1.0, 1.0, 1.0], tree_offsets=[0, 5], tree_class=[0],
    ...            num_feature=1, task="regression")
    >>> exact_passes(f).n_nodes
    1
    """
    if isinstance(max_rounds, bool) or not isinstance(max_rounds, int) or max_rounds < 1:
        raise ValueError(
            f"The 'max_rounds' parameter of exact_passes must be an int >= 1. Got {max_rounds!r}"
            " instead."
        )
    for _ in range(max_rounds):
        size = (forest.n_trees, forest.n_nodes)
        forest = fold_constant_trees(prune_unreachable(collapse_identical_splits(forest)))
        if (forest.n_trees, forest.n_nodes) == size:
            break
    return forest


def tree_scale(forest: Forest) -> NDArray[np.float64]:
    """What each tree's leaf values are multiplied by in the margin: 1, or 1/trees per output."""
    if not forest.average:
        return np.ones(forest.n_trees)
    return np.full(forest.n_trees, 1.0 / forest.trees_per_output)
