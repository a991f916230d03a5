"""Row samplers behind :func:`~treeslim.passes.generate_rows`: state computed once, blocks on demand.

A :class:`Sampler` holds what a generation method needs from the real rows (nearest neighbours for
MUNGE, feature scales for jitter, the teacher's leaf boxes for leaf-box sampling, query groups for
ranking) and makes block ``b`` of the generated stream from its own random stream
``default_rng([seed, b])``. Every block depends only on the seed and its index, never on how the
stream is cut into chunks, and the state is bounded by the number of real rows (and of teacher
nodes), not by the number of rows generated.

Methods: ``swap`` (feature values from other rows), ``bootstrap`` (whole rows), ``munge``
(Bucila, Caruana & Niculescu-Mizil, 2006: each feature, with probability ``swap_prob``, is drawn
from a normal centred on the nearest neighbour's value with standard deviation
``noise * |x - x_nn|``; discrete features take the neighbour's value), ``jitter`` (Gaussian noise
of ``noise`` times each feature's standard deviation) and ``leaf-box`` (a real row whose features
tested on its path through one random tree of the teacher are redrawn uniformly inside that leaf's
box, strictly on the side each split sends them, at the teacher's input precision).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import check_qid, float32_strict_thresholds
from treeslim.runtime import KernelForest

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = ["Sampler", "make_sampler"]

_MAX_DISCRETE = 32  # an integer-valued feature with at most this many values is discrete


@dataclasses.dataclass(frozen=True)
class _Groups:
    """Query groups: ``order[start[g]:start[g] + size[g]]`` are the rows of group ``code[i]``."""

    code: NDArray[np.intp]
    order: NDArray[np.intp]
    start: NDArray[np.intp]
    size: NDArray[np.intp]

    def draw(self, rng: np.random.Generator, base: NDArray[np.intp], d: int) -> NDArray[np.intp]:
        """Donor rows (n, d) from the group of each base row."""
        g = self.code[base][:, None]
        return self.order[self.start[g] + rng.integers(self.size[g], size=(len(base), d))]


@dataclasses.dataclass(frozen=True)
class _Boxes:
    """For every leaf of the teacher the split edges on its path (``edge`` holds node ids).

    ``edge[leaf_row, k]`` is the k-th node below the root on the leaf's path (-1 past its
    depth); the edge into node ``v`` bounds feature ``feat[v]`` to ``[lo[v], hi[v]]`` (values
    already at the teacher's input precision).
    """

    forest: Forest
    leaf_row: NDArray[np.intp]  # global node id -> row of ``edge`` (-1 for internal nodes)
    edge: NDArray[np.intp]
    feat: NDArray[np.intp]
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    data_lo: NDArray[np.float64]
    data_hi: NDArray[np.float64]
    integer: NDArray[np.bool_]


@dataclasses.dataclass(frozen=True)
class _Support:
    """Each feature's observed range (infinite values count, NaN does not) and whether all its
    observed values are integers: where generated values must stay."""

    low: NDArray[np.float64]
    high: NDArray[np.float64]
    integer: NDArray[np.bool_]

    def __call__(self, rows: NDArray[np.float64]) -> NDArray[np.float64]:
        """``rows`` clipped to the range, integer features rounded (NaN kept)."""
        out = np.clip(rows, self.low, self.high)
        return np.where(self.integer, np.round(out), out)


@dataclasses.dataclass(frozen=True)
class Sampler:
    """What one generation method needs from the real rows, prepared once."""

    X: NDArray[np.float64]
    method: str
    swap_prob: float
    noise: float
    groups: _Groups | None = None
    neighbour: NDArray[np.intp] | None = None
    discrete: NDArray[np.bool_] | None = None
    scale: NDArray[np.float64] | None = None
    boxes: _Boxes | None = None
    support: _Support | None = None

    def block(self, b: int, n: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Rows of block ``b`` (``n`` of them) and the real row each started from."""
        rng = np.random.default_rng([seed, b])
        X = self.X
        m, d = X.shape
        base = rng.integers(m, size=n)
        if self.method == "bootstrap":
            return X[base], base
        if self.method == "swap":
            if self.swap_prob == 0.0:
                return X[base], base
            if self.groups is None:
                donor = rng.integers(m, size=(n, d))
            else:
                donor = self.groups.draw(rng, base, d)
            if self.swap_prob < 1.0:
                donor = np.where(rng.random((n, d)) < self.swap_prob, donor, base[:, None])
            return X[donor, np.arange(d)], base
        if self.method == "munge":
            assert self.support is not None
            return self.support(self._munge(rng, base)), base
        if self.method == "jitter":
            assert self.scale is not None and self.discrete is not None and self.support is not None
            out = X[base] + self.noise * self.scale * rng.standard_normal((n, d))
            return self.support(np.where(self.discrete, X[base], out)), base
        return self._leaf_box(rng, base), base

    def _munge(self, rng: np.random.Generator, base: NDArray[np.intp]) -> NDArray[np.float64]:
        assert self.neighbour is not None and self.discrete is not None
        n, d = len(base), self.X.shape[1]
        e, f = self.X[base], self.X[self.neighbour[base]]
        take = rng.random((n, d)) < self.swap_prob
        with np.errstate(invalid="ignore"):
            sd = np.nan_to_num(self.noise * np.abs(e - f), nan=0.0, posinf=0.0)
        value = np.where(self.discrete, f, f + sd * rng.standard_normal((n, d)))
        return np.where(take, value, e)

    def _leaf_box(self, rng: np.random.Generator, base: NDArray[np.intp]) -> NDArray[np.float64]:
        box = self.boxes
        assert box is not None
        n, d = len(base), self.X.shape[1]
        out = self.X[base].copy()
        leaves = KernelForest(box.forest).leaves(out)
        tree = rng.integers(leaves.shape[1], size=n)
        edges = box.edge[box.leaf_row[leaves[np.arange(n), tree]]]  # (n, depth)
        u = rng.random((n, d))  # one draw per cell, used or not: fixed stream layout
        rows, k = np.nonzero(edges >= 0)
        node = edges[rows, k]
        lo = np.full((n, d), -np.inf)
        hi = np.full((n, d), np.inf)
        np.maximum.at(lo, (rows, box.feat[node]), box.lo[node])
        np.minimum.at(hi, (rows, box.feat[node]), box.hi[node])
        bounded = np.isfinite(lo) | np.isfinite(hi)
        # a box empty or outside the observed range is reached only through NaN: keep the row
        ok = bounded & (np.maximum(lo, box.data_lo) <= np.minimum(hi, box.data_hi))
        a = np.clip(box.data_lo, lo, hi)
        c = np.clip(box.data_hi, lo, hi)
        with np.errstate(invalid="ignore", over="ignore"):
            x = a + u * (c - a)
            if box.forest.feature_dtype == "float32":
                x = x.astype(np.float32).astype(np.float64)
            x = np.clip(x, lo, hi)
            # integer features: an integer drawn uniformly from those in the box, from the same
            # uniform draw; a box holding none keeps the base row's value (an integer in it)
            first, last = np.ceil(a), np.floor(c)
            k = np.minimum(first + np.floor(u * (last - first + 1.0)), last)
        whole = box.integer & (first <= last)
        x = np.where(whole, k, x)
        ok = ok & (~box.integer | whole)
        return np.where(ok, x, out)


def _groups(qid: Any, m: int) -> _Groups:
    q = check_qid(qid, m)
    _, code = np.unique(q, return_inverse=True)
    code = code.astype(np.intp)
    order = np.argsort(code, kind="stable").astype(np.intp)
    size = np.bincount(code).astype(np.intp)
    start = (np.cumsum(size) - size).astype(np.intp)
    return _Groups(code=code, order=order, start=start, size=size)


def _discrete(X: NDArray[np.float64]) -> NDArray[np.bool_]:
    out = np.zeros(X.shape[1], dtype=bool)
    for j in range(X.shape[1]):
        col = X[:, j][np.isfinite(X[:, j])]
        values = np.unique(col)
        out[j] = len(values) <= _MAX_DISCRETE and bool(np.all(values == np.round(values)))
    return out


def _support(X: NDArray[np.float64]) -> _Support:
    """Observed range and integer-valuedness of every feature of the real rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: no bounds
        low = np.nan_to_num(np.nanmin(X, axis=0), nan=-np.inf, posinf=np.inf, neginf=-np.inf)
        high = np.nan_to_num(np.nanmax(X, axis=0), nan=np.inf, posinf=np.inf, neginf=-np.inf)
    finite = np.isfinite(X)
    with np.errstate(invalid="ignore"):
        whole = (X == np.round(X)) | ~finite
    integer = whole.all(axis=0) & finite.any(axis=0)
    return _Support(low=low, high=high, integer=integer)


def _neighbours(X: NDArray[np.float64], groups: _Groups | None) -> NDArray[np.intp]:
    """Nearest other real row of each real row, on standardized features with NaN indicators.

    With query groups, a neighbour comes from the row's own query (a row alone in its query is
    its own neighbour).
    """
    from sklearn.neighbors import NearestNeighbors

    m = X.shape[0]
    if m < 2:
        return np.zeros(m, dtype=np.intp)
    finite = np.where(np.isfinite(X), X, np.nan)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(finite, axis=0))
        std = np.nan_to_num(np.nanstd(finite, axis=0))
    Z = np.nan_to_num((finite - mean) / np.where(std > 0, std, 1.0))
    missing = np.isnan(finite)
    cols = [Z, missing[:, missing.any(axis=0)].astype(np.float64)]
    if groups is not None:  # queries far apart: neighbours never cross them
        spread = 10.0 * (np.abs(Z).max(initial=0.0) + 1.0) * np.sqrt(Z.shape[1] + 1.0)
        cols.append(groups.code[:, None] * spread)
    F = np.hstack(cols)
    _, idx = NearestNeighbors(n_neighbors=2).fit(F).kneighbors(F)
    nb = np.where(idx[:, 0] == np.arange(m), idx[:, 1], idx[:, 0]).astype(np.intp)
    if groups is not None:
        nb = np.where(groups.code[nb] == groups.code, nb, np.arange(m))
    return nb


def _side_bounds(forest: Forest) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per internal node: the largest input going left and the smallest going right."""
    t = forest.threshold
    if forest.feature_dtype == "float32":
        s = float32_strict_thresholds(t, forest.comparison)  # left iff x < s
        left = np.nextafter(s, np.float32(-np.inf)).astype(np.float64)
        return left, s.astype(np.float64)
    if forest.comparison == "<":
        return np.nextafter(t, -np.inf), t.copy()
    return t.copy(), np.nextafter(t, np.inf)


def _boxes(forest: Forest, X: NDArray[np.float64]) -> _Boxes:
    n = forest.n_nodes
    inner = np.flatnonzero(forest.split_index >= 0)
    parent = np.full(n, -1, dtype=np.intp)
    parent[forest.cleft[inner]] = inner
    parent[forest.cright[inner]] = inner
    left_max, right_min = _side_bounds(forest)
    feat = np.zeros(n, dtype=np.intp)
    lo = np.full(n, -np.inf)
    hi = np.full(n, np.inf)
    for side, child in (("left", forest.cleft[inner]), ("right", forest.cright[inner])):
        feat[child] = forest.split_index[inner]
        if side == "left":
            hi[child] = left_max[inner]
        else:
            lo[child] = right_min[inner]
    leaves = np.flatnonzero(forest.split_index < 0)
    depth = forest.node_depth[leaves]
    edge = np.full((len(leaves), max(1, int(depth.max(initial=0)))), -1, dtype=np.intp)
    cur = leaves.copy()
    for k in range(edge.shape[1]):
        alive = parent[cur] >= 0
        edge[alive, k] = cur[alive]
        cur = np.where(alive, parent[cur], cur)
    leaf_row = np.full(n, -1, dtype=np.intp)
    leaf_row[leaves] = np.arange(len(leaves))
    finite = np.where(np.isfinite(X), X, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        data_lo = np.nan_to_num(np.nanmin(finite, axis=0))
        data_hi = np.nan_to_num(np.nanmax(finite, axis=0))
    integer = _support(X).integer
    return _Boxes(forest, leaf_row, edge, feat, lo, hi, data_lo, data_hi, integer)


def make_sampler(
    X: NDArray[np.float64],
    method: str,
    *,
    swap_prob: float,
    noise: float,
    forest: Forest | None = None,
    qid: Any = None,
) -> Sampler:
    """Prepare ``method`` on the real rows ``X`` (already checked, float64)."""
    groups = None if qid is None else _groups(qid, X.shape[0])
    kw: dict[str, Any] = {}
    if method in ("munge", "jitter"):
        kw["discrete"] = _discrete(X)
        kw["support"] = _support(X)
    if method == "munge":
        kw["neighbour"] = _neighbours(X, groups)
    if method == "jitter":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            kw["scale"] = np.nan_to_num(np.nanstd(np.where(np.isfinite(X), X, np.nan), axis=0))
    if method == "leaf-box":
        if forest is None:
            raise ValueError(
                "The 'forest' parameter of generate_rows is required with method='leaf-box'"
                " (the teacher whose leaf boxes are sampled)."
            )
        if forest.num_feature != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features but the forest expects {forest.num_feature}."
            )
        kw["boxes"] = _boxes(forest, X)
    return Sampler(X, method, float(swap_prob), float(noise), groups=groups, **kw)
