"""How a LightGBM node decides, in IR terms: missing types, the zero band, category sets.

LightGBM's C++ ``Tree::NumericalDecision`` reads NaN as 0.0 unless the node's missing type is
*NaN*, sends ``|x| <= kZeroThreshold`` to the default side under missing type *Zero*, and
otherwise goes left when ``x <= threshold``; its predictor also reads every input with
``|x| <= kZeroThreshold`` as 0.0. ``Tree::CategoricalDecision`` sends NaN and everything whose
``static_cast<int>`` is negative right, whatever the missing type, and goes left when that integer
is in the node's bitset, which is the IR's ``"lightgbm"`` category rule with ``default_left=False``.
A DataFrame's ``category`` columns are encoded with the ``pandas_categorical`` lists the model
text carries (see :func:`treeslim.formats.pandas_columns` for which features they belong to).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from treeslim.errors import ModelFormatError, UnsupportedModelError
from treeslim.formats import ZERO_THRESHOLD, pandas_columns, read_pandas_categorical
from treeslim.ir import TreeArrays

__all__ = [
    "category_table",
    "decisions",
    "feature_categories",
    "move_off_zero_band",
    "split_zero_nodes",
]

_MAX_WORDS = (1 << 24) // 32  # the IR's widest category set (codes below 2**24)


def move_off_zero_band(thr: np.ndarray) -> np.ndarray:
    """Thresholds equivalent to ``thr`` once inputs with ``|x| <= kZeroThreshold`` read as 0."""
    z = ZERO_THRESHOLD
    band = (thr >= -z) & (thr < z)
    below = np.nextafter(-z, -np.inf)  # left iff x < -z
    return np.where(band, np.where(thr >= 0.0, z, below), thr)


def decisions(thr: np.ndarray, dtype: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thresholds and NaN sides reproducing ``NumericalDecision`` for each missing type, and
    which nodes need :func:`split_zero_nodes`.

    NaN type: NaN goes to the default side. None: NaN is read as 0.0 and compared. Zero: NaN is
    read as 0.0 and zeros go to the default side, which one threshold expresses when zeros compare
    to that side anyway or the threshold lies in the zero band; the other nodes are flagged.
    """
    z = ZERO_THRESHOLD
    missing = (dtype >> 2) & 3
    dleft = (dtype & 2) != 0
    moved = move_off_zero_band(thr)
    default_left = np.where(missing == 2, dleft, thr >= 0.0)
    zero = (missing == 1) & (dtype & 1 == 0)
    band = (thr >= -z) & (thr < z)
    moved = np.where(zero & band, np.where(dleft, z, np.nextafter(-z, -np.inf)), moved)
    default_left = np.where(zero, dleft, default_left)
    return moved, default_left, zero & ~band & ((thr >= z) != dleft)


def split_zero_nodes(tree: TreeArrays, flagged: np.ndarray, t: int) -> TreeArrays:
    """``tree`` with each flagged node (missing type Zero, zeros sent against its threshold ``u``)
    replaced by three comparisons on its feature, its subtrees ``L`` and ``R`` copied once:
    ``x < -z`` (NaN on) then ``x <= z`` (NaN left) then ``x <= u``, routing the four intervals
    ``L R L R`` when ``u >= z`` (zeros right), or ``x <= u``, ``x < -z``, ``x <= z`` (NaN left)
    when ``u < -z`` (zeros left). Refused when the copies would grow the tree more than 16-fold.
    """
    z, below = ZERO_THRESHOLD, float(np.nextafter(-ZERO_THRESHOLD, -np.inf))
    n = len(tree.split_index)
    src: list[int] = []  # the original node each new node copies
    thr: list[float] = []
    nan_left: list[bool] = []
    left: list[int] = []
    right: list[int] = []
    stack: list[tuple[int, int, int]] = [(0, -1, 0)]  # (original node, new parent, side)

    def new(old: int, u: float, dl: bool) -> int:
        src.append(old)
        thr.append(u)
        nan_left.append(dl)
        left.append(-1)
        right.append(-1)
        return len(src) - 1

    def link(parent: int, side: int, child: int) -> None:
        if parent >= 0:
            (right if side else left)[parent] = child

    while stack:
        old, parent, side = stack.pop()
        u, dl = float(tree.threshold[old]), bool(tree.default_left[old])
        if len(src) > 16 * n:
            raise UnsupportedModelError(
                f"LightGBM tree {t} treats zero as missing (zero_as_missing=True) at"
                f" {int(flagged.sum())} nodes whose zeros go against their thresholds; treeslim"
                f" would copy subtrees to grow it beyond {16 * n:,} nodes: retrain with"
                " zero_as_missing=False (encode missing values as NaN)."
            )
        kids = [int(tree.cleft[old]), int(tree.cright[old])]
        if tree.split_index[old] < 0 or not flagged[old]:
            i = new(old, u, dl)
            link(parent, side, i)
            if tree.split_index[old] >= 0:
                stack += [(kids[1], i, 1), (kids[0], i, 0)]
            continue
        steps = (
            [(below, False), (z, True), (u, False)]
            if u >= z
            else [(u, False), (below, False), (z, True)]
        )
        p, q, m = (new(old, a, b) for a, b in steps)
        link(parent, side, p)
        link(p, 1, q)
        link(q, 1, m)
        stack += [(kids[1], m, 1), (kids[0], m, 0), (kids[1], q, 0), (kids[0], p, 0)]
    idx = np.asarray(src)

    def take(a: Any) -> Any:
        return None if a is None else np.asarray(a)[idx]

    return TreeArrays(
        split_index=take(tree.split_index), threshold=np.asarray(thr), cleft=np.asarray(left),
        cright=np.asarray(right), default_left=np.asarray(nan_left),
        leaf_value=take(tree.leaf_value), tree_class=tree.tree_class, sum_hess=take(tree.sum_hess),
        data_count=take(tree.data_count), gain=take(tree.gain), cat_index=take(tree.cat_index),
    )  # fmt: skip


def category_table(
    nodes: np.ndarray,
    thr: np.ndarray,
    tin: np.ndarray,
    per_tree: list[tuple[np.ndarray, np.ndarray]],
    at: Callable[[int], str],
) -> np.ndarray:
    """The category set of each categorical node in ``nodes`` as one row of a uint32 table.

    A categorical node's threshold indexes its tree's ``cat_boundaries`` (``per_tree[t][0]``); the
    ``cat_threshold`` words (``per_tree[t][1]``) between two boundaries are its bitset.
    """
    rows = []
    for i in nodes.tolist():
        bounds, words = per_tree[int(tin[i])]
        k = thr[i]
        if not (k == np.floor(k) and 0 <= k < len(bounds) - 1):
            raise ModelFormatError(
                f"LightGBM model text: {at(i).removeprefix('LightGBM ')} has categorical"
                f" threshold {float(k)!r}, which is not one"
                f" of its tree's {max(len(bounds) - 1, 0)} category sets (num_cat)."
            )
        rows.append(np.trim_zeros(words[bounds[int(k)] : bounds[int(k) + 1]], "b"))
        if len(rows[-1]) > _MAX_WORDS:
            raise UnsupportedModelError(
                f"{at(i)} is a categorical split on codes up to {32 * len(rows[-1]) - 1:,};"
                f" treeslim holds category codes below {32 * _MAX_WORDS:,}: re-code the"
                " categories with smaller integers and retrain."
            )
    table = np.zeros((len(rows), max([1, *map(len, rows)])), dtype=np.uint32)
    for r, w in enumerate(rows):
        table[r, : len(w)] = w
    return table


def feature_categories(
    text: str, infos: list[str], names: list[str] | None
) -> tuple[tuple[Any, ...] | None, ...] | None:
    """Per feature, the category list of ``pandas_categorical`` that encodes it (or None)."""
    lists = read_pandas_categorical(text)
    if lists is None:
        return None
    columns = pandas_columns(infos, lists)
    if columns is None:
        categorical = [names[j] if names else j for j, i in enumerate(infos) if i[0] not in "[n"]
        raise UnsupportedModelError(
            f"LightGBM model: its pandas_categorical line holds {len(lists)} category lists, but"
            f" treeslim cannot tell which features they belong to (categorical: {categorical}):"
            " set booster.pandas_categorical = None (or delete that last line of the model text)"
            " and predict on category codes: df[col].cat.set_categories(training_categories)"
            ".cat.codes, with -1 replaced by NaN."
        )
    out: list[tuple[Any, ...] | None] = [None] * len(infos)
    for j, cats in zip(columns, lists, strict=True):
        out[j] = tuple(cats)
    return tuple(out)
