"""Categorical splits: category sets as bitsets, the one routing rule, and input encoding.

A categorical node holds an index into the forest's table ``cat_bitsets`` (shape
``(n_sets, n_words)``, uint32, bit ``c & 31`` of word ``c >> 5`` set when category code ``c`` is in
the set). Every frontend normalises its library's split so that **members go left**: XGBoost, whose
members go right, has its children swapped on import (and back on export). A row's value ``x``
(already rounded to the forest's ``feature_dtype``) is routed:

1. ``x`` NaN: to the node's ``default_left`` side;
2. ``x`` a valid code: ``x >= 0`` (``category_rule`` ``"xgboost"`` and ``"sklearn"``, as XGBoost
   and Treelite) or ``x > -1`` (``"lightgbm"``, whose ``static_cast<int>`` truncates -0.5 to code 0),
   and below the bitset's width: its code is ``trunc(x)``; left when that bit is set;
3. everything else (negative, fractional below the valid range, codes beyond the set, ±inf, huge):
   right, the non-member side. LightGBM sends NaN and negatives right; XGBoost sends invalid and
   unseen codes to its non-member side, which after the swap is the right.

Inputs: numeric arrays hold category codes, except under the ``"sklearn"`` rule, whose
``HistGradientBoosting*`` models encode raw values with an ``OrdinalEncoder`` (an exact match in
the training categories gives the code, anything else is NaN and so follows ``default_left``).
DataFrame columns of ``category`` (or object / string) dtype are encoded by value with the
category list the library stored at training (``feature_categories``), not with the DataFrame's
own order; values unseen in training become NaN (LightGBM, scikit-learn) or raise (XGBoost 3.1+,
which refuses them too).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from treeslim.ir._forest import Forest

__all__ = [
    "CATEGORY_RULES",
    "bitset_table",
    "categorical_features",
    "code_twin",
    "codes_of",
    "snap_codes",
    "with_categories_of",
    "encode_dataframe",
    "encode_values",
    "member",
]

CATEGORY_RULES = ("xgboost", "lightgbm", "sklearn")
#: The widest category code a set may hold (XGBoost's own limit is 2**24).
MAX_CATEGORY = 1 << 24


def bitset_table(sets: Sequence[Iterable[int]]) -> NDArray[np.uint32]:
    """Pack category-code sets into one ``(n_sets, n_words)`` uint32 table (at least one word)."""
    arrays = [np.unique(np.asarray(list(s), dtype=np.int64)) for s in sets]
    top = max((int(a[-1]) for a in arrays if len(a)), default=0)
    if any(len(a) and a[0] < 0 for a in arrays) or top >= MAX_CATEGORY:
        raise ValueError(f"category codes must lie in [0, {MAX_CATEGORY}).")
    table = np.zeros((len(arrays), top // 32 + 1), dtype=np.uint32)
    for i, a in enumerate(arrays):
        np.bitwise_or.at(table[i], a >> 5, (np.uint32(1) << (a & 31).astype(np.uint32)))
    return table


def codes_of(bits: NDArray[np.uint32]) -> NDArray[np.int64]:
    """The category codes set in one bitset row, ascending."""
    words = np.asarray(bits, dtype=np.uint32)
    flags = (words[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    return np.flatnonzero(flags.ravel()).astype(np.int64)


def member(
    x: NDArray[np.float64], sets: NDArray[np.intp], table: NDArray[np.uint32], rule: str
) -> NDArray[np.bool_]:
    """Whether each value ``x[i]`` is a code in set ``sets[i]`` of ``table`` (NaN: False)."""
    width = table.shape[1] * 32
    with np.errstate(invalid="ignore"):
        valid = (x > -1.0) if rule == "lightgbm" else (x >= 0.0)
        valid &= x < width
    code = np.where(valid, x, 0.0).astype(np.int64)
    bit = (table[sets, code >> 5] >> (code & 31).astype(np.uint32)) & 1
    return valid & bit.astype(bool)


def _lookup(values: NDArray[Any], categories: Sequence[Any]) -> NDArray[np.float64]:
    """Codes of ``values`` in ``categories`` by exact match (``1 == 1.0``); NaN where absent."""
    if values.dtype.kind in "biuf":
        try:
            cats = np.asarray(categories, dtype=np.float64)
        except (TypeError, ValueError):
            cats = None
        if cats is not None and cats.ndim == 1:
            order = np.argsort(cats, kind="stable")
            ranked = cats[order]
            pos = np.clip(np.searchsorted(ranked, values), 0, max(len(ranked) - 1, 0))
            hit = (ranked[pos] == values) if len(ranked) else np.zeros(len(values), dtype=bool)
            return np.where(hit, order[pos] if len(ranked) else 0, np.nan).astype(np.float64)
    index = {c: i for i, c in enumerate(categories)}
    found = np.fromiter((index.get(v, -1) for v in values.tolist()), np.int64, len(values))
    return np.where(found >= 0, found, np.nan).astype(np.float64)


def encode_values(
    arr: NDArray[np.float64], feature_categories: Sequence[Sequence[Any] | None]
) -> NDArray[np.float64]:
    """Under the ``"sklearn"`` rule: replace numeric category values by their codes (NaN if unseen)."""
    out = arr.copy()
    for j, cats in enumerate(feature_categories):
        if cats is not None:
            out[:, j] = _lookup(arr[:, j], cats)
    return out


def _name(names: Sequence[str] | None, j: int) -> str:
    return f"feature {j} ({names[j]!r})" if names is not None else f"feature {j}"


def encode_dataframe(
    X: Any, feature_categories: Sequence[Sequence[Any] | None] | None, rule: str
) -> NDArray[np.float64]:
    """A DataFrame as float64 codes: category / object columns encoded as the source library does."""
    cols = []
    names = [str(c) for c in X.columns]
    cats_all = feature_categories or [None] * X.shape[1]
    if len(cats_all) != X.shape[1]:
        cats_all = [None] * X.shape[1]  # the feature-count check reports the mismatch
    for j, cats in enumerate(cats_all):
        col = X.iloc[:, j]
        dtype = col.dtype
        is_cat = getattr(dtype, "name", "") == "category"
        textual = not is_cat and getattr(dtype, "kind", "O") not in "biuf"
        if not is_cat and not textual:
            values = col.to_numpy(dtype=np.float64, na_value=np.nan)
            cols.append(_lookup(values, cats) if cats is not None and rule == "sklearn" else values)
            continue
        if cats is None:
            if is_cat:
                codes = col.cat.codes.to_numpy().astype(np.float64)
                codes[codes < 0] = np.nan
                cols.append(codes)
                continue
            raise ValueError(
                f"X column {_name(names, j)} holds {dtype} values, but the model has no category"
                " list for it (it was trained on numbers): pass the numeric codes it was trained on."
            )
        raw = col.astype(object).to_numpy()
        present = ~col.isna().to_numpy()
        codes = np.full(len(raw), np.nan)
        codes[present] = _lookup(raw[present], cats)
        unseen = present & np.isnan(codes)
        if unseen.any() and rule == "xgboost":
            example = raw[np.flatnonzero(unseen)[0]]
            raise ValueError(
                f"X column {_name(names, j)} holds the category {example!r}, which the model did"
                " not see in training (XGBoost refuses it too): map it to a known category or NaN."
            )
        cols.append(codes)
    if not cols:
        return np.empty((len(X), 0))
    return np.column_stack(cols).astype(np.float64, copy=False)


def categorical_features(forest: Forest) -> list[int]:
    """The features ``forest`` splits by category, ascending."""
    if forest.cat_index is None:
        return []
    return sorted(int(j) for j in np.unique(forest.split_index[forest.cat_index >= 0]))


def code_twin(forest: Forest) -> Forest:
    """``forest`` taking category codes as input (no category lists to look values up in): what
    the code that encoded its rows once (:func:`treeslim.ir.check_X`) must score them with."""
    if forest.feature_categories is None and forest.category_rule != "sklearn":
        return forest
    rule = "xgboost" if forest.category_rule == "sklearn" else forest.category_rule
    return forest.replace(feature_categories=None, category_rule=rule)


def with_categories_of(forest: Forest, teacher: Forest) -> Forest:
    """``forest``, fitted on the codes of ``teacher``'s inputs, taking inputs as ``teacher`` does
    (its category lists and rule); unchanged when ``teacher`` has neither category splits nor
    lists."""
    if teacher.cat_index is None and teacher.feature_categories is None:
        return forest
    if (forest.category_rule, forest.feature_categories) == (
        teacher.category_rule,
        teacher.feature_categories,
    ):
        return forest
    return forest.replace(
        category_rule=teacher.category_rule, feature_categories=teacher.feature_categories
    )


def snap_codes(block: NDArray[np.float64], features: Sequence[int], rule: str) -> None:
    """In place: generated values of categorical ``features`` become the codes they route as
    (``trunc``), or NaN where no code (negative, infinite): valid training input for students
    that split by category, labelled by the teacher exactly as before for every valid code."""
    for j in features:
        x = block[:, j]
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(x) & ((x > -1.0) if rule == "lightgbm" else (x >= 0.0))
        block[:, j] = np.where(valid, np.trunc(np.where(valid, x, 0.0)), np.nan)
