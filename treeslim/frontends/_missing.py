"""One more missing value: rewrite XGBoost trees so that rows holding it take every default side.

XGBoost told ``missing=m`` (a number) treats an input equal to ``m`` (both in float32) exactly as
NaN: at every node, numerical or categorical, it goes to the default child. A Forest's only
missing value is NaN, so the trees are rewritten. Where ``m`` already goes to the default side
(``m < threshold`` and ``default_left``, or the reverse) nothing changes. Where it does not, the
node is replaced by two tests on the same feature, ``x < m`` and ``x < nextafter(m)``, which
cut the values below ``m``, ``m`` itself and those above it: ``m`` (and NaN) go to the default
child, the two other intervals to copies of the original node. Each copy, and every subtree under
it, carries what the path has proved about each feature (an interval of float32 values, and
whether the value may still be missing), so nodes whose outcome is then known are dropped and a
feature is cut at ``m`` at most once on any path. Copies can still double a subtree per feature
whose first split disagrees; :func:`route_value_as_missing` refuses when the forest would grow
beyond ``max_growth`` times its size. Node statistics of copied nodes are copied with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.errors import UnsupportedModelError
from treeslim.ir import TreeArrays, codes_of

__all__ = ["route_value_as_missing"]

_F32 = np.float32
_INF = math.inf
# per feature: non-missing values lie in [lo, hi] (float32 values); may the value be missing?
_State = dict[int, tuple[float, float, bool]]
_FULL = (-_INF, _INF, True)
_FIELDS = ("split_index", "threshold", "default_left", "leaf_value", "cat_index",
           "sum_hess", "data_count", "gain")  # fmt: skip


def _step(v: float, up: bool) -> float:
    return float(np.nextafter(_F32(v), _F32(_INF if up else -_INF)))


def _left_max(t: float) -> float:
    """The largest float32 ``x`` with ``x < t`` (``-inf`` when none but ``-inf`` itself)."""
    t32 = float(_F32(t))
    return t32 if t32 < t else _step(t32, up=False)


class _Rewriter:
    """Rebuilds one tree depth-first, so parents keep coming before their children."""

    def __init__(self, tree: TreeArrays, m: float, table: NDArray[np.uint32] | None) -> None:
        self.tree = tree
        self.m = m
        self.si = np.asarray(tree.split_index)
        self.thr = np.asarray(tree.threshold, dtype=np.float64)
        self.cl = np.asarray(tree.cleft)
        self.cr = np.asarray(tree.cright)
        self.dl = np.asarray(tree.default_left, dtype=bool)
        n = len(self.si)
        self.cat = np.full(n, -1) if tree.cat_index is None else np.asarray(tree.cat_index)
        self.m_left = np.where(self.si >= 0, m < self.thr, False)
        for node in np.flatnonzero(self.cat >= 0):
            self.m_left[node] = self._member(table, int(self.cat[node]))
        self.src = {k: None if getattr(tree, k, None) is None else np.asarray(getattr(tree, k))
                    for k in _FIELDS}  # fmt: skip
        self.src["cat_index"] = self.cat
        self.rows: list[dict[str, Any]] = []
        self.children: list[list[int]] = []

    def _member(self, table: NDArray[np.uint32] | None, row: int) -> bool:
        """Whether ``m`` is a code in set ``row`` (the ``"xgboost"`` rule)."""
        if table is None or not (0 <= self.m < 32 * table.shape[1]):
            return False
        return int(self.m) in set(codes_of(table[row]).tolist())

    def needed(self) -> bool:
        inner = self.si >= 0
        return bool(np.any(inner & (self.m_left != self.dl)))

    def _emit(self, node: int, **override: Any) -> int:
        row = {k: (None if a is None else a[node]) for k, a in self.src.items()}
        row.update(override)
        self.rows.append(row)
        self.children.append([-1, -1])
        return len(self.rows) - 1

    def _test(self, node: int, threshold: float, default_left: bool) -> int:
        """A new numerical test ``x < threshold`` on ``node``'s feature."""
        return self._emit(node, threshold=threshold, default_left=default_left, cat_index=-1)

    def build(self, node: int, state: _State) -> int:
        f = int(self.si[node])
        if f < 0:
            return self._emit(node)
        lo, hi, miss = state.get(f, _FULL)
        d = bool(self.dl[node])
        if self.cat[node] >= 0:
            go_l = go_r = lo <= hi
            lt, rt = hi, lo
        else:
            t = float(self.thr[node])
            lt = _left_max(t)
            rt = _step(lt, up=True)
            go_l = lo <= hi and lo <= lt and t > -_INF
            go_r = lo <= hi and hi >= rt
        reach_l, reach_r = go_l or (miss and d), go_r or (miss and not d)
        left_state = {**state, f: (lo, min(hi, lt), miss and d)}
        right_state = {**state, f: (max(lo, rt), hi, miss and not d)}
        if not reach_r:
            return self.build(int(self.cl[node]), left_state)
        if not reach_l:
            return self.build(int(self.cr[node]), right_state)
        if miss and bool(self.m_left[node]) != d:
            return self._cut_at_m(node, state, f, lo, hi)
        new = self._emit(node)
        self.children[new] = [
            self.build(int(self.cl[node]), left_state),
            self.build(int(self.cr[node]), right_state),
        ]
        return new

    def _cut_at_m(self, node: int, state: _State, f: int, lo: float, hi: float) -> int:
        """``node`` where ``m`` and NaN part ways: test ``x < m`` and ``x < next(m)`` first."""
        m = self.m
        below = (lo, min(hi, _step(m, up=False)), False)
        above = (max(lo, _step(m, up=True)), hi, False)
        has_below = m > -_INF and below[0] <= below[1]
        has_above = m < _INF and above[0] <= above[1]
        default = int(self.cl[node] if self.dl[node] else self.cr[node])
        as_missing = {**state, f: (_INF, -_INF, True)}
        if not has_below and not has_above:
            return self.build(default, as_missing)
        first = None
        if has_below:
            first = self._test(node, m, default_left=False)  # NaN on, to the x >= m side
            self.children[first][0] = self.build(node, {**state, f: below})
        second = None
        if has_above:
            second = self._test(node, _step(m, up=True), default_left=True)
            self.children[second][0] = self.build(default, as_missing)
            self.children[second][1] = self.build(node, {**state, f: above})
        if first is None:
            assert second is not None
            return second
        self.children[first][1] = second if second is not None else self.build(default, as_missing)
        return first

    def tree_arrays(self) -> TreeArrays:
        cols = {k: [r[k] for r in self.rows] for k in _FIELDS}
        kids = np.asarray(self.children, dtype=np.int64).reshape(-1, 2)
        stats = {k: None if self.src[k] is None else np.asarray(cols[k], dtype=np.float64)
                 for k in ("sum_hess", "data_count", "gain")}  # fmt: skip
        cat = np.asarray(cols["cat_index"], dtype=np.int64)
        return TreeArrays(
            split_index=np.asarray(cols["split_index"], dtype=np.int64),
            threshold=np.asarray(cols["threshold"], dtype=np.float64),
            cleft=kids[:, 0],
            cright=kids[:, 1],
            default_left=np.asarray(cols["default_left"], dtype=bool),
            leaf_value=np.asarray(cols["leaf_value"], dtype=np.float64),
            tree_class=self.tree.tree_class,
            cat_index=None if self.tree.cat_index is None and np.all(cat < 0) else cat,
            **stats,
        )


def route_value_as_missing(
    trees: Sequence[TreeArrays],
    value: float,
    table: NDArray[np.uint32] | None,
    *,
    max_growth: float = 8.0,
) -> list[TreeArrays]:
    """Trees that send an input equal to ``value`` (in float32) where they send NaN.

    The trees follow XGBoost's semantics (``x < threshold`` on float32 inputs, categorical nodes
    under the ``"xgboost"`` rule with sets in ``table``). Trees in which ``value`` already goes to
    the default side everywhere come back unchanged. Raises
    :class:`~treeslim.errors.UnsupportedModelError` when the rewritten trees would hold more than
    ``max_growth`` times the nodes.
    """
    m = float(_F32(value))
    if math.isnan(m):
        return list(trees)
    out: list[TreeArrays] = []
    before = sum(len(t.split_index) for t in trees)
    after = 0
    for t_idx, tree in enumerate(trees):
        rewriter = _Rewriter(tree, m, table)
        if not rewriter.needed():
            out.append(tree)
        else:
            try:
                rewriter.build(0, {})
            except RecursionError:
                raise UnsupportedModelError(
                    f"XGBoost tree {t_idx} is too deep to rewrite for missing={value!r}."
                    f" {_ADVICE.format(m=value)}"
                ) from None
            out.append(rewriter.tree_arrays())
        after += len(out[-1].split_index)
        if after > max_growth * before:
            raise UnsupportedModelError(
                f"missing={value!r}: XGBoost sends {value!r} to each node's default side, and"
                f" rewriting the trees so that a Forest does too would grow them more than"
                f" {max_growth:g}-fold (past {after:,} nodes by tree {t_idx}, from {before:,})."
                f" {_ADVICE.format(m=value)}"
            )
    return out


_ADVICE = (
    "XGBoost predicts the same for NaN: replace the value in the rows you score and compress"
    " (X = np.where(X == {m!r}, np.nan, X)) and convert the model without missing=."
)
