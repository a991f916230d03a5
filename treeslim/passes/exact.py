"""Exact passes: make a forest smaller without changing any prediction, on any input.

Every pass here predicts what its input predicts on every row, NaN and +-inf included (up to the
order in which floating-point leaf values are summed). :func:`collapse_identical_splits` replaces a
split whose two subtrees are the same by one copy of them, :func:`fold_constant_trees` moves trees
that are a single leaf into ``base_score``, and :func:`exact_passes` runs them, together with
:func:`~treeslim.passes.prune_unreachable`, until nothing changes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..forest import Forest, TreeArrays
from .quantize import prune_unreachable

__all__ = ["collapse_identical_splits", "exact_passes", "fold_constant_trees"]

_STATS = ("sum_hess", "data_count", "gain")


def record(forest: Forest, entry: dict[str, Any]) -> dict[str, Any]:
    """``forest.source`` with ``entry`` appended to its ``passes`` list (a new dict)."""
    source = dict(forest.source)
    source["passes"] = [*source.get("passes", []), entry]
    return source


def _collapse_tree(f: Forest, t: int) -> TreeArrays | None:
    """Tree ``t`` with every split over two identical subtrees replaced by one copy, or None."""
    lo, hi = int(f.tree_offsets[t]), int(f.tree_offsets[t + 1])
    si, thr, dl, cl, cr = f.split_index, f.threshold, f.default_left, f.cleft, f.cright
    key = np.empty(hi - lo, dtype=np.int64)
    rep = np.arange(lo, hi)  # the node standing for each node after collapsing
    interned: dict[tuple[Any, ...], int] = {}
    merged: dict[int, tuple[int, int]] = {}  # node -> its two (identical) children
    for node in range(hi - 1, lo - 1, -1):  # children come after parents: bottom-up
        if si[node] < 0:
            k: tuple[Any, ...] = ("L", *f.leaf_value[node].tolist())
        else:
            kl, kr = int(key[cl[node] - lo]), int(key[cr[node] - lo])
            if kl == kr:
                key[node - lo] = kl
                rep[node - lo] = rep[cl[node] - lo]
                merged[node] = (int(cl[node]), int(cr[node]))
                continue
            k = (int(si[node]), float(thr[node]), bool(dl[node]), kl, kr)
        key[node - lo] = interned.setdefault(k, len(interned))
    if not merged:
        return None
    # Statistics of a kept copy become the sums over every copy it stands for.
    stats = {s: None if getattr(f, s) is None else getattr(f, s)[lo:hi].copy() for s in _STATS}
    for node in sorted(merged, reverse=True):  # bottom-up: inner merges are summed first
        a, b = (rep[c - lo] for c in merged[node])
        pairs = [(a, b)]
        while pairs:
            x, y = pairs.pop()
            for s in ("sum_hess", "data_count"):
                arr = stats[s]
                if arr is not None:
                    arr[x - lo] += arr[y - lo]
            if si[x] >= 0:
                pairs += [(int(rep[cl[x] - lo]), int(rep[cl[y] - lo]))]
                pairs += [(int(rep[cr[x] - lo]), int(rep[cr[y] - lo]))]
    order: list[int] = []
    stack = [int(rep[0])]
    while stack:
        node = stack.pop()
        order.append(node)
        if si[node] >= 0:
            stack += [int(rep[cr[node] - lo]), int(rep[cl[node] - lo])]
    idx = np.asarray(order)
    new = np.full(hi - lo, -1, dtype=np.int64)
    new[idx - lo] = np.arange(len(idx))
    inner = si[idx] >= 0
    left = np.where(inner, new[rep[np.where(inner, cl[idx], lo) - lo] - lo], -1)
    right = np.where(inner, new[rep[np.where(inner, cr[idx], lo) - lo] - lo], -1)
    return TreeArrays(
        split_index=si[idx],
        threshold=thr[idx],
        cleft=left,
        cright=right,
        default_left=dl[idx],
        leaf_value=f.leaf_value[idx],
        tree_class=int(f.tree_class[t]),
        **{s: None if a is None else a[idx - lo] for s, a in stats.items()},
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
    new = [_collapse_tree(forest, t) for t in range(forest.n_trees)]
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

    The passes are :func:`collapse_identical_splits`, :func:`~treeslim.passes.prune_unreachable`
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
    per = forest.n_trees if forest.leaf_width > 1 else forest.n_trees // forest.n_outputs
    return np.full(forest.n_trees, 1.0 / per)
