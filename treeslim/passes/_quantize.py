"""Quantization passes: snap thresholds and leaf values to a few distinct values (lossy).

Each pass is a pure function ``Forest -> Forest``. The result still holds float64 values, now drawn
from a small set; the ``.tslim`` format (:mod:`treeslim.formats`) finds that structure and stores each
split's threshold as an index into a per-feature table and each leaf as a code into a codebook, so
fewer distinct values means fewer bytes. Every pass appends a record of what it did (``lossy``,
distinct values before / after, nodes removed, refit loss) to ``forest.source["passes"]``;
:func:`quantization_error` measures what it cost on data.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.ir import Forest, check_X, leaf_nodes
from treeslim.passes._exact import prune_unreachable, record

__all__ = ["quantize_leaves", "quantize_thresholds"]


def _check_bits(bits: Any, fn: str) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16:
        raise ValueError(
            f"The 'bits' parameter of {fn} must be an int in the range [1, 16]. Got {bits!r}"
            " instead."
        )
    return int(bits)


# ------------------------------------------------------------------------------ thresholds
def _float32_equivalent(t: NDArray[np.float64], strict: bool) -> NDArray[np.float64]:
    """The float32 threshold making the same decision as ``t`` on every float32 input."""
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    if strict:  # x < t  <=>  x < (smallest float32 >= t)
        t32 = np.where(t32 < t, np.nextafter(t32, np.float32(np.inf)), t32)
    else:  # x <= t  <=>  x <= (largest float32 <= t)
        t32 = np.where(t32 > t, np.nextafter(t32, np.float32(-np.inf)), t32)
    return t32.astype(np.float64)


def _snap(t: NDArray[np.float64], grid: NDArray[np.float64], col: Any, strict: bool) -> Any:
    """Each threshold moved to a grid point: the neighbour that changes the decision of the fewest
    calibration values ``col`` (sorted), the nearer one on a tie or without data."""
    i = np.searchsorted(grid, t)
    below = grid[np.maximum(i - 1, 0)]
    above = grid[np.minimum(i, len(grid) - 1)]
    pick_above = np.abs(above - t) < np.abs(t - below)
    if col is not None and len(col):
        side: Literal["left", "right"] = "left" if strict else "right"
        r = np.searchsorted(col, t, side)
        cost_below = r - np.searchsorted(col, below, side)
        cost_above = np.searchsorted(col, above, side) - r
        pick_above = np.where(cost_above == cost_below, pick_above, cost_above < cost_below)
    return np.where(pick_above, above, below)


def _snap_feature(t: Any, col: Any, k: int, strict: bool) -> NDArray[np.float64]:
    """Thresholds ``t`` of one feature snapped to at most ``k`` values (see quantize_thresholds)."""
    grid = np.unique(np.quantile(t, np.linspace(0, 1, k), method="inverted_cdf"))
    snapped = _snap(t, grid, col, strict)
    if col is None or not len(col):
        return snapped
    side: Literal["left", "right"] = "left" if strict else "right"
    rank = np.searchsorted(col, t, side).astype(np.float64)  # calibration rows left of each split
    centres, code = _kmeans_1d(rank, k)
    members = [np.flatnonzero(code == c) for c in range(len(centres))]
    grid = np.unique([t[m[np.argmin(np.abs(rank[m] - centres[c]))]]
                      for c, m in enumerate(members) if len(m)])  # fmt: skip
    other = _snap(t, grid, col, strict)
    changed = [np.abs(np.searchsorted(col, s, side) - rank).sum() for s in (snapped, other)]
    return other if changed[1] < changed[0] else snapped


def quantize_thresholds(forest: Forest, X: ArrayLike | None = None, *, bits: int = 8) -> Forest:
    """Lossy: give every feature at most ``2**bits`` distinct thresholds, then prune.

    Features with more distinct thresholds get a grid of at most ``2**bits`` of their thresholds.
    Without ``X``: the quantiles of the feature's thresholds (one per split), each threshold moved
    to the nearest grid point. With calibration rows ``X`` (rounded to ``feature_dtype``), each
    threshold moves to the grid point below or above it that changes the decision of the fewest
    calibration rows, and two grids are tried: those quantiles, and a 1-D k-means of the thresholds'
    ranks in the column ``X[:, j]`` (grid points spread by rows, not by value); the one changing
    fewer decisions in total is kept. Splits made unreachable are then removed
    (:func:`prune_unreachable`). For ``feature_dtype="float32"`` thresholds are first replaced by
    the float32 value deciding every float32 input the same way (exact). Node statistics are
    dropped.

    Parameters
    ----------
    forest : Forest
    X : array-like of shape (n_samples, n_features), optional
        Calibration rows.
    bits : int, default 8
        At most ``2**bits`` distinct thresholds per feature, in the range [1, 16].

    Returns
    -------
    Forest
        ``source["passes"][-1]`` records ``lossy``, ``bits``, the features snapped, distinct
        thresholds and nodes before / after.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> import treeslim
    >>> X, y = load_diabetes(return_X_y=True)
    >>> f = treeslim.from_model(RandomForestRegressor(5, max_depth=6, random_state=0).fit(X, y))
    >>> q = quantize_thresholds(f, X, bits=3)
    >>> max(len(set(q.threshold[q.split_index == j])) for j in range(10)) <= 8
    True
    """
    bits = _check_bits(bits, "quantize_thresholds")
    k = 2**bits
    strict = forest.comparison == "<"
    Xc = None if X is None else check_X(forest, X)
    inner = (forest.split_index >= 0) & ~forest.is_categorical  # category sets stay as they are
    thr = forest.threshold.copy()
    if forest.feature_dtype == "float32":
        thr[inner] = _float32_equivalent(thr[inner], strict)
    snapped = []
    for j in np.unique(forest.split_index[inner]):
        nodes = inner & (forest.split_index == j)
        t = thr[nodes]
        if len(np.unique(t)) <= k:
            continue
        col = None if Xc is None else np.sort(Xc[:, j][~np.isnan(Xc[:, j])])
        thr[nodes] = _snap_feature(t, col, k, strict)
        snapped.append(int(j))
    entry = {
        "name": "quantize_thresholds", "lossy": True, "bits": bits, "calibrated": X is not None,
        "features_snapped": len(snapped), "distinct_before": _n_distinct(forest, forest.threshold),
        "distinct_after": _n_distinct(forest, thr), "nodes_before": forest.n_nodes,
    }  # fmt: skip
    q = forest.replace(threshold=thr, sum_hess=None, data_count=None, gain=None)
    q = prune_unreachable(q)
    entry["nodes_after"] = q.n_nodes
    return q.replace(source=record(forest, entry))


def _n_distinct(forest: Forest, thr: NDArray[np.float64]) -> int:
    inner = forest.split_index >= 0
    pairs = np.stack([forest.split_index[inner].astype(np.float64), thr[inner]], axis=1)
    return len(np.unique(pairs, axis=0))


# ------------------------------------------------------------------------------ leaves
def _kmeans_1d(v: NDArray[np.float64], k: int, iters: int = 100) -> tuple[Any, Any]:
    """Lloyd's algorithm in 1-D from centroids at the quantiles of ``v``; (codebook, codes)."""
    u, w = np.unique(v, return_counts=True)
    c = np.unique(np.quantile(v, (np.arange(k) + 0.5) / k))
    assign = None
    for _ in range(iters):
        new = np.searchsorted((c[1:] + c[:-1]) / 2, u)
        if assign is not None and np.array_equal(new, assign):
            break
        assign = new
        cnt = np.bincount(assign, w, len(c))
        c = np.where(cnt > 0, np.bincount(assign, w * u, len(c)) / np.maximum(cnt, 1), c)
    return c, np.searchsorted((c[1:] + c[:-1]) / 2, v)


def _leaf_groups(forest: Forest, per_class: bool) -> list[tuple[NDArray[np.intp], int | None]]:
    """(leaf nodes, column or None for all columns) sharing one codebook."""
    leaves = np.flatnonzero(forest.split_index < 0)
    if not per_class or forest.n_outputs == 1:
        return [(leaves, None)]
    if forest.leaf_width > 1:
        return [(leaves, c) for c in range(forest.leaf_width)]
    tree_of = np.repeat(np.arange(forest.n_trees), np.diff(forest.tree_offsets))
    cls = forest.tree_class[tree_of[leaves]]
    return [(leaves[cls == c], 0) for c in range(forest.n_outputs) if np.any(cls == c)]


def _least_squares(A: Any, b: NDArray[np.float64]) -> NDArray[np.float64]:
    """Minimum-norm least-squares solution of ``A x = b`` (dense when small, else LSQR)."""
    from scipy.sparse.linalg import lsqr

    if A.shape[0] * A.shape[1] <= 20_000_000:
        return np.linalg.lstsq(A.toarray(), b, rcond=None)[0]
    return lsqr(A, b, atol=1e-10, btol=1e-10, iter_lim=1000)[0]


def _refit(
    forest: Forest, codes: NDArray[np.int64], book: NDArray[np.float64], X: Any, y_margin: Any
) -> tuple[NDArray[np.float64], dict[str, float]]:
    """Least-squares codebook for fixed codes: margin ~= base + scale * (counts of codes) @ book."""
    from scipy import sparse

    leaves = leaf_nodes(forest, X)  # (n, n_trees)
    n, k_out = leaves.shape[0], forest.n_outputs
    target = np.asarray(y_margin, dtype=np.float64)
    shapes = [(n, k_out), (n,)] if k_out == 1 else [(n, k_out)]
    if n == 0 or target.shape not in shapes:
        raise ValueError(
            f"y_margin must have shape ({n},) or ({n}, {k_out}) for X of {n} rows (n >= 1); got"
            f" {target.shape}."
        )
    target = target.reshape(n, k_out)
    rows_of = np.arange(n)[:, None] * k_out
    if forest.leaf_width == 1:
        rows, cols = rows_of + forest.tree_class[None, :], codes[leaves, 0]
    else:
        rows = np.repeat(rows_of[:, :, None] + np.arange(k_out), forest.n_trees, axis=1)
        cols = codes[leaves]
    scale = 1.0
    if forest.average:
        scale /= forest.trees_per_output
    A = sparse.csr_matrix(
        (np.full(rows.size, scale), (rows.ravel(), cols.ravel())), shape=(n * k_out, len(book))
    )
    resid = (target - forest.base_score).ravel() - A @ book
    blocks = [np.arange(o, n * k_out, k_out) for o in range(k_out)]
    used = [np.unique(A[b].indices) for b in blocks]
    if sum(map(len, used)) != len(np.unique(np.concatenate(used))):  # codebooks shared by outputs
        blocks, used = [np.arange(n * k_out)], [np.arange(len(book))]
    delta = np.zeros(len(book))
    for rows_b, cols_b in zip(blocks, used, strict=True):
        if len(cols_b):
            delta[cols_b] = _least_squares(A[rows_b][:, cols_b], resid[rows_b])
    new = (book + delta).astype(np.float32).astype(np.float64)
    before = float(np.mean(resid**2))
    after = float(np.mean((resid - A @ (new - book)) ** 2))
    if not after < before:
        new, after = book, before
    return new, {"mse_before": before, "mse_after": after}


def quantize_leaves(
    forest: Forest,
    *,
    bits: int = 8,
    method: Literal["uniform", "kmeans"] = "uniform",
    per_class: bool = True,
    X: ArrayLike | None = None,
    y_margin: ArrayLike | None = None,
) -> Forest:
    """Lossy: draw every leaf value from a codebook of at most ``2**bits`` values.

    ``"uniform"``: ``2**bits`` evenly spaced levels from the smallest to the largest leaf value,
    each value rounded to the nearest. ``"kmeans"``: 1-D k-means (Lloyd's algorithm from centroids
    at the quantiles, deterministic). With ``per_class`` a multiclass forest gets one codebook per
    output class. A group with no more distinct values than levels is kept exactly. Codebook values
    are rounded to float32. With calibration rows ``X`` and target margins ``y_margin`` (e.g. the
    original model's ``predict_margin(X)``) the codebook is then refit by least squares with every
    leaf's code fixed, so the squared margin error on ``X`` shrinks (never grows).

    Parameters
    ----------
    forest : Forest
    bits : int, default 8
        Codebook size ``2**bits`` per group, in the range [1, 16].
    method : {"uniform", "kmeans"}, default "uniform"
    per_class : bool, default True
    X : array-like of shape (n_samples, n_features), optional
    y_margin : array-like of shape (n_samples,) or (n_samples, n_outputs), optional

    Returns
    -------
    Forest
        The same trees with new leaf values; ``source["passes"][-1]`` records ``lossy``, ``bits``,
        ``method``, distinct leaf values before / after and, with a refit, ``mse_before`` /
        ``mse_after`` (mean squared margin error on ``X`` before and after the refit).

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.ensemble import GradientBoostingRegressor
    >>> import treeslim
    >>> X, y = load_diabetes(return_X_y=True)
    >>> f = treeslim.from_model(GradientBoostingRegressor(random_state=0).fit(X, y))
    >>> q = quantize_leaves(f, bits=4, method="kmeans")
    >>> len(set(q.leaf_value[q.split_index < 0, 0]))
    16
    """
    bits = _check_bits(bits, "quantize_leaves")
    if method not in ("uniform", "kmeans"):
        raise ValueError(
            f"The 'method' parameter of quantize_leaves must be 'uniform' or 'kmeans'. Got"
            f" {method!r} instead."
        )
    if (X is None) != (y_margin is None):
        raise ValueError("quantize_leaves refits the codebook only with both X and y_margin.")
    k = 2**bits
    lv = forest.leaf_value
    codes = np.full(lv.shape, -1, dtype=np.int64)
    books: list[NDArray[np.float64]] = []
    n_book = 0
    for nodes, col in _leaf_groups(forest, per_class):
        cols = slice(None) if col is None else slice(col, col + 1)
        v = lv[nodes, cols].ravel()
        if len(np.unique(v)) <= k:
            book, code = np.unique(v, return_inverse=True)
        elif method == "uniform":
            lo, hi = float(v.min()), float(v.max())
            book = lo + (hi - lo) * np.arange(k) / (k - 1)
            code = np.rint((v - lo) / (hi - lo) * (k - 1)).astype(np.int64)
            book = book.astype(np.float32).astype(np.float64)
        else:
            book, code = _kmeans_1d(v, k)
            book = book.astype(np.float32).astype(np.float64)
        codes[nodes, cols] = (code + n_book).reshape(len(nodes), -1)
        books.append(book)
        n_book += len(book)
    book = np.concatenate(books)
    entry: dict[str, Any] = {
        "name": "quantize_leaves", "lossy": True, "bits": bits, "method": method,
        "per_class": per_class, "distinct_before": len(np.unique(lv[forest.split_index < 0])),
    }  # fmt: skip
    if X is not None:
        book, entry["refit"] = _refit(forest, codes, book, X, y_margin)
    new_lv = np.where(codes >= 0, book[np.maximum(codes, 0)], 0.0)
    entry["distinct_after"] = len(np.unique(new_lv[forest.split_index < 0]))
    return forest.replace(leaf_value=new_lv, source=record(forest, entry))
