"""Node pruning: collapse the internal nodes whose subtrees matter least on calibration data.

Collapsing node ``v`` replaces its subtree by one leaf holding the data-weighted mean of the
subtree's outputs ``o`` over the rows reaching ``v``. With the other trees fixed, the squared error
to ``target_margin`` on those rows grows from ``sum |r|^2`` to ``sum |o + r - mean|^2`` (``r``: the
residual of the whole forest). That is cost-complexity pruning measured on data:
:func:`prune_nodes` collapses the weakest link (least error added per node removed) first, across
all trees, with a priority queue, until the forest fits the node budget. Interactions between trees
are caught by measuring again in a few rounds; the leaf values are left for
:func:`~treeslim.passes.refit_leaves` to fit jointly."""

from __future__ import annotations

import heapq
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.ir import Forest
from treeslim.passes._exact import record, tree_scale
from treeslim.passes._select import check_count, teacher_margin
from treeslim.runtime import KernelForest

__all__ = ["prune_nodes"]

_CHUNK_ELEMS = 1 << 20


def _node_sums(
    f: Forest, Xc: NDArray[Any], target: NDArray[np.float64]
) -> tuple[NDArray[np.float64], ...]:
    """Per node, over the rows reaching it: count, sums of o and z (n, width), of |z|^2, |r|^2.

    Only leaves are reached here (:func:`_up` fills the rest). A leaf's output ``o`` is the same
    for every row reaching it, so the sums over its rows need only the count and the sums of
    ``r`` and ``|r|^2``: ``sum z = cnt o + sum r``, ``sum |z|^2 = cnt |o|^2 + 2 o . sum r +
    sum |r|^2`` (three weighted counts per leaf instead of five).
    """
    kernel = KernelForest(f)
    n_nodes, width = f.n_nodes, f.leaf_width
    scale = tree_scale(f)
    cnt = np.zeros(n_nodes)
    sr = np.zeros((n_nodes, width))
    srr = np.zeros(n_nodes)
    step = max(1, _CHUNK_ELEMS // f.n_trees)
    for start in range(0, Xc.shape[0], step):
        rows = Xc[start : start + step]
        flat = kernel.leaves(rows).ravel()  # (b * T,), row-major
        r = target[start : start + step] - kernel.margin(rows)  # (b, n_outputs)
        cnt += np.bincount(flat, minlength=n_nodes)
        if width > 1:  # every tree adds to every output: the same r for all trees of a row
            for c in range(width):
                sr[:, c] += np.bincount(flat, np.repeat(r[:, c], f.n_trees), n_nodes)
            srr += np.bincount(flat, np.repeat((r * r).sum(axis=1), f.n_trees), n_nodes)
        else:  # tree t adds to output tree_class[t]
            sr[:, 0] += np.bincount(flat, r[:, f.tree_class].ravel(), n_nodes)
            srr += np.bincount(flat, (r * r)[:, f.tree_class].ravel(), n_nodes)
    o = f.leaf_value * np.repeat(scale, np.diff(f.tree_offsets))[:, None]  # (n_nodes, width)
    so = cnt[:, None] * o
    sz = so + sr
    szz = (cnt * (o * o).sum(axis=1)) + 2.0 * (o * sr).sum(axis=1) + srr
    return cnt, so, sz, szz, srr


def _up(f: Forest, *arrays: NDArray[np.float64]) -> None:
    """Fill internal nodes with the sums of their children, bottom-up by depth (in place)."""
    depth = f.node_depth
    inner = f.split_index >= 0
    for d in range(f.max_depth - 1, -1, -1):
        nodes = np.flatnonzero(inner & (depth == d))
        for a in arrays:
            a[nodes] = a[f.cleft[nodes]] + a[f.cright[nodes]]


def _prune_round(f: Forest, Xc: NDArray[Any], target: NDArray[np.float64], goal: int) -> Forest:
    """Collapse weakest links of ``f`` until it has at most ``goal`` nodes."""
    cnt, so, sz, szz, srr = _node_sums(f, Xc, target)
    n = f.n_nodes
    leaf = f.split_index < 0
    scale = np.repeat(tree_scale(f), np.diff(f.tree_offsets))
    # Fallback value where no row arrives: the leaves' mean weighted by training cover.
    cover = f.sum_hess if f.sum_hess is not None else f.data_count
    fw = np.where(leaf, 1.0 if cover is None else np.maximum(cover, 0.0), 0.0)
    fv = fw[:, None] * f.leaf_value * scale[:, None]
    ones = leaf.astype(np.float64)
    uv = f.leaf_value * scale[:, None]
    _up(f, cnt, so, sz, szz, srr, fw, fv, ones, uv)
    sizes = np.ones(n)
    for d in range(f.max_depth - 1, -1, -1):  # nodes in each subtree
        nodes = np.flatnonzero(~leaf & (f.node_depth == d))
        sizes[nodes] = 1 + sizes[f.cleft[nodes]] + sizes[f.cright[nodes]]
    with np.errstate(invalid="ignore", divide="ignore"):
        fallback = np.where((fw > 0)[:, None], fv / fw[:, None], uv / ones[:, None])
        value = np.where((cnt > 0)[:, None], so / cnt[:, None], fallback)
    # sum over the rows of |z - value|^2: the error once v is a leaf holding value
    collapse_err = szz - 2.0 * (value * sz).sum(axis=1) + cnt * (value * value).sum(axis=1)
    sub_err = srr.copy()  # current error of the rows in each subtree
    parent = np.full(n, -1, dtype=np.int64)
    inner = np.flatnonzero(~leaf)
    parent[f.cleft[inner]] = inner
    parent[f.cright[inner]] = inner

    def link(v: int) -> float:
        return float(collapse_err[v] - sub_err[v]) / float(sizes[v] - 1)

    version = np.zeros(n, dtype=np.int64)
    heap = [(link(int(v)), int(v), 0) for v in inner]
    heapq.heapify(heap)
    collapsed = np.zeros(n, dtype=bool)
    gone = np.zeros(n, dtype=bool)
    n_now = n
    while n_now > goal and heap:
        _, v, ver = heapq.heappop(heap)
        if gone[v] or collapsed[v] or ver != version[v]:
            continue
        collapsed[v] = True
        removed = int(sizes[v]) - 1
        delta = collapse_err[v] - sub_err[v]
        n_now -= removed
        stack = [int(f.cleft[v]), int(f.cright[v])]
        while stack:
            u = stack.pop()
            if not gone[u]:
                gone[u] = True
                if not leaf[u] and not collapsed[u]:
                    stack += [int(f.cleft[u]), int(f.cright[u])]
        a = int(parent[v])
        while a >= 0:
            sizes[a] -= removed
            sub_err[a] += delta
            version[a] += 1
            heapq.heappush(heap, (link(a), a, int(version[a])))
            a = int(parent[a])
    return _rebuild(f, collapsed, gone, value / scale[:, None])


def _rebuild(
    f: Forest, collapsed: NDArray[np.bool_], gone: NDArray[np.bool_], value: NDArray[np.float64]
) -> Forest:
    """``f`` without the ``gone`` nodes, ``collapsed`` nodes turned into leaves holding ``value``."""
    k = ~gone
    new_id = np.cumsum(k) - 1
    leaf = (f.split_index < 0) | collapsed

    def kids(child: NDArray[np.int32]) -> NDArray[np.int64]:
        return np.where(leaf[k], -1, new_id[np.where(leaf, 0, child)][k])

    counts = np.add.reduceat(k.astype(np.int64), f.tree_offsets[:-1])
    stats: dict[str, Any] = {}
    for name in ("sum_hess", "data_count", "gain"):
        a = getattr(f, name)
        if a is not None:
            stats[name] = np.where(collapsed, 0.0, a)[k] if name == "gain" else a[k]
    lv = np.where(collapsed[:, None], value, f.leaf_value)
    return f.replace(
        split_index=np.where(leaf, -1, f.split_index)[k],
        threshold=np.where(leaf, 0.0, f.threshold)[k],
        cleft=kids(f.cleft),
        cright=kids(f.cright),
        default_left=np.where(leaf, False, f.default_left)[k],
        leaf_value=np.where(leaf[:, None], lv, 0.0)[k],
        tree_offsets=np.concatenate([[0], np.cumsum(counts)]),
        cat_index=None if f.cat_index is None else np.where(leaf, -1, f.cat_index)[k],
        **stats,
    )


def prune_nodes(
    forest: Forest,
    X: ArrayLike,
    *,
    target_margin: ArrayLike | None = None,
    max_nodes: int | None = None,
    fraction: float | None = None,
    n_rounds: int = 4,
) -> Forest:
    """Collapse internal nodes into leaves, cheapest first, until the forest fits a node budget.

    The cost of collapsing node ``v`` is the increase of the squared error to ``target_margin`` on
    the rows of ``X`` when ``v``'s subtree becomes one leaf whose value is the mean of the
    subtree's outputs over the rows reaching ``v``. Nodes no row reaches cost nothing and take the
    mean of their leaves weighted by ``sum_hess`` (or ``data_count``, or equally). Nodes go in order
    of cost per node removed (weakest link first), across all trees; the costs are measured again
    on the partly pruned forest ``n_rounds`` times. Refit the leaves afterwards
    (:func:`~treeslim.passes.refit_leaves`) to win back most of the loss.

    Parameters
    ----------
    forest : Forest
    X : array-like of shape (n_samples, n_features)
        Calibration rows.
    target_margin : array-like of shape (n_samples,) or (n_samples, n_outputs), optional
        Margins to stay close to; by default ``forest``'s own.
    max_nodes : int, optional
        Node budget over all trees (at least one node per tree).
    fraction : float in (0, 1], optional
        Budget as a share of ``forest.n_nodes``; give exactly one of ``max_nodes``, ``fraction``.
    n_rounds : int, default=4
        Re-measurements of the costs on the partly pruned forest.

    Returns
    -------
    Forest
        At most ``max_nodes`` nodes, same trees and ``base_score``.

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim import Forest
    >>> f = Forest(split_index=[0, 0, -1, -1, -1], threshold=[0.0, -1.0, 0, 0, 0],
    ...            cleft=[1, 3, -1, -1, -1], cright=[2, 4, -1, -1, -1],
    ...            default_left=[True] * 5, leaf_value=[0, 0, 5.0, -1.01, -1.0],
    ...            tree_offsets=[0, 5], tree_class=[0], num_feature=1, task="regression")
    >>> g = prune_nodes(f, np.linspace(-3, 3, 60)[:, None], max_nodes=3)
    >>> g.n_nodes, g.leaf_value[g.split_index < 0, 0].round(3).tolist()
    (3, [-1.007, 5.0])
    """
    if (max_nodes is None) == (fraction is None):
        raise ValueError("prune_nodes needs exactly one of max_nodes and fraction.")
    if fraction is not None:
        if (
            not isinstance(fraction, (int, float))
            or isinstance(fraction, bool)
            or not (0.0 < fraction <= 1.0)
        ):
            raise ValueError(
                f"The 'fraction' parameter of prune_nodes must be a float in (0, 1]. Got"
                f" {fraction!r} instead."
            )
        budget = math.ceil(fraction * forest.n_nodes)
    else:
        budget = check_count(max_nodes, "max_nodes", "prune_nodes")
    rounds = check_count(n_rounds, "n_rounds", "prune_nodes")
    if budget < forest.n_trees:
        raise ValueError(
            f"A node budget of {budget} is below the {forest.n_trees} trees of this forest (each"
            " keeps at least its root); drop trees first with select_trees."
        )
    _, Xc, target = teacher_margin(forest, X, target_margin)
    f = forest
    for left in range(rounds, 0, -1):
        if f.n_nodes <= budget:
            break
        goal = f.n_nodes - math.ceil((f.n_nodes - budget) / left)
        f = _prune_round(f, Xc, target, goal)
    if f.n_nodes == forest.n_nodes:
        return forest
    return f.replace(
        source=record(forest, {"name": "prune_nodes", "lossy": True, "nodes_before":
                               forest.n_nodes, "nodes_after": f.n_nodes, "rows": len(Xc)}),
    )  # fmt: skip
