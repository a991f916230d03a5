"""Canonical node order for one tree: children after their parents, no unreachable nodes."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.errors import InvalidForestError
from treeslim.ir._tree import TreeArrays

__all__ = ["canonical"]


def canonical(tree: TreeArrays, t_idx: int) -> TreeArrays:
    """Renumber a tree breadth-first when a child does not come after its parent."""
    si = np.asarray(tree.split_index)
    cl = np.asarray(tree.cleft)
    cr = np.asarray(tree.cright)
    n = len(si)
    if n == 0:
        raise InvalidForestError(f"Tree {t_idx} has no nodes.")
    for name in ("threshold", "cleft", "cright", "default_left"):
        if len(getattr(tree, name)) != n:
            raise InvalidForestError(
                f"Tree {t_idx}: {name} has {len(getattr(tree, name))} entries, split_index has {n}."
            )
    internal = np.flatnonzero(si >= 0)
    for name, child in (("cleft", cl), ("cright", cr)):
        bad = internal[(child[internal] < 0) | (child[internal] >= n)]
        if len(bad):
            raise InvalidForestError(
                f"Tree {t_idx}, node {int(bad[0])}: {name} {int(child[bad[0]])} is out of range"
                f" [0, {n})."
            )
    ordered = bool(np.all(cl[internal] > internal) and np.all(cr[internal] > internal))
    if ordered and n == 2 * len(internal) + 1:
        counts = np.bincount(np.concatenate([cl[internal], cr[internal]]), minlength=n)
        if counts[0] == 0 and np.all(counts[1:] == 1):
            return tree
    order: list[int] = []
    seen = np.zeros(n, dtype=bool)
    frontier = np.array([0])
    while len(frontier):
        if seen[frontier].any() or len(np.unique(frontier)) != len(frontier):
            raise InvalidForestError(
                f"Tree {t_idx}: a node is reached twice (cycle or shared child)."
            )
        seen[frontier] = True
        order.extend(frontier.tolist())
        inner = frontier[si[frontier] >= 0]
        frontier = np.stack([cl[inner], cr[inner]], axis=1).ravel()
    perm = np.asarray(order)
    new_id = np.full(n, -1, dtype=np.int64)
    new_id[perm] = np.arange(len(perm))

    def take(a: NDArray[Any] | None) -> NDArray[Any] | None:
        return None if a is None else np.asarray(a)[perm]

    leaf = si[perm] < 0
    return TreeArrays(
        split_index=si[perm],
        threshold=np.asarray(tree.threshold)[perm],
        cleft=np.where(leaf, -1, new_id[cl[perm]]),
        cright=np.where(leaf, -1, new_id[cr[perm]]),
        default_left=np.asarray(tree.default_left)[perm],
        leaf_value=np.asarray(tree.leaf_value).reshape(n, -1)[perm],
        tree_class=tree.tree_class,
        sum_hess=take(tree.sum_hess),
        data_count=take(tree.data_count),
        gain=take(tree.gain),
        cat_index=take(tree.cat_index),
    )
