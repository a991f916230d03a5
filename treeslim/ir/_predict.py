"""The reference predictor: vectorised numpy traversal of a :class:`~treeslim.Forest`.

This is the oracle every backend and pass is tested against, so it follows the native libraries'
semantics to the bit: inputs rounded to the forest's ``feature_dtype`` before comparing, ``<`` or
``<=`` as the forest says, NaN to the default side. Rows are processed in blocks, all trees at once,
one tree level per step (leaves loop onto themselves, so every row walks ``max_depth`` steps).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from treeslim.ir._categories import encode_dataframe, encode_values, member

if TYPE_CHECKING:
    from treeslim.ir._forest import Forest

__all__ = ["apply_postprocessor", "check_X", "leaf_nodes", "predict_margin"]

_BLOCK_ELEMS = 1 << 16  # rows x trees per block: keeps the working set in cache


def _is_dataframe(X: Any) -> bool:
    return hasattr(X, "columns") and hasattr(X, "dtypes") and hasattr(X, "to_numpy")


def check_X(forest: Forest, X: Any, dtype: Any = np.float64) -> NDArray[Any]:
    """Validate ``X`` against ``forest``; return it C-ordered, rounded as the model rounds inputs.

    The result has ``dtype`` (float64 by default; float32 only for float32 models, for which it is
    exact). A 1-D array is taken as one row. DataFrame ``category`` / text columns become the codes
    the source library would use (see :mod:`treeslim.ir._categories`). Raises ``ValueError`` for a
    wrong feature count, non-numeric data, unseen categories where the library refuses them or
    mismatched DataFrame column names, ``TypeError`` for sparse matrices.
    """
    names: list[str] | None = None
    rule = getattr(forest, "category_rule", "xgboost")
    categories = getattr(forest, "feature_categories", None)
    if _is_dataframe(X):
        names = [str(c) for c in X.columns]
        _check_names(forest, names)
        bad = [str(c) for c, dt in zip(X.columns, X.dtypes, strict=True) if not _numeric_dtype(dt)]
        if categories is None and not bad:
            X = X.to_numpy(dtype=np.float64, na_value=np.nan)
        elif categories is None and getattr(forest, "cat_index", None) is None:
            raise ValueError(
                f"X has non-numeric columns {bad[:5]}, but this model has no categorical features:"
                " encode them as the numbers it was trained on."
            )
        elif X.shape[1] == forest.num_feature:
            X = encode_dataframe(X, categories, rule)
            categories = None  # encoded already
        else:
            X = np.empty((len(X), X.shape[1]))  # only its shape is reported below
    elif hasattr(X, "tocsr") and hasattr(X, "nnz"):
        raise TypeError(
            "Sparse input is not supported: the libraries disagree on what an absent entry means."
            " Convert with X.toarray() (absent = 0) or fill missing entries with NaN first."
        )
    try:
        arr = np.asarray(X)
        if arr.dtype.kind not in "biuf":
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be numeric (convertible to float64): {exc}") from None
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise ValueError(f"X must be 2-D of shape (n_samples, n_features); got {arr.ndim}-D input.")
    if arr.shape[1] != forest.num_feature:
        raise ValueError(
            f"X has {arr.shape[1]} features, but this model expects {forest.num_feature} features."
        )
    if categories is not None and rule == "sklearn":
        arr = encode_values(np.asarray(arr, dtype=np.float64), categories)
    if forest.feature_dtype == "float32":
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float32, copy=False)
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_names(forest: Forest, names: list[str]) -> None:
    if forest.feature_names is None or len(names) != forest.num_feature:
        return
    expected = list(forest.feature_names)
    if names != expected and not all(n.isdigit() for n in names):
        missing = [n for n in expected if n not in names][:5]
        unexpected = [n for n in names if n not in expected][:5]
        detail = (
            "same names in another order"
            if not missing and not unexpected
            else f"missing {missing}, unexpected {unexpected}"
        )
        raise ValueError(
            f"The feature names of X do not match those the model was trained with ({detail})."
        )


def _numeric_dtype(dt: Any) -> bool:
    kind = getattr(dt, "kind", None)
    if kind is None:
        kind = np.dtype(getattr(dt, "numpy_dtype", object)).kind
    return kind in "biuf"


class _Tables:
    """Traversal arrays: leaves loop onto themselves so every step is branch-free."""

    def __init__(self, forest: Forest) -> None:
        n = forest.n_nodes
        leaf = forest.split_index < 0
        ids = np.arange(n, dtype=np.int64)
        self.feat = np.where(leaf, 0, forest.split_index).astype(np.intp)
        self.thr = np.where(leaf, 0.0, forest.threshold)
        children = np.empty((n, 2), dtype=np.intp)
        children[:, 0] = np.where(leaf, ids, forest.cleft)
        children[:, 1] = np.where(leaf, ids, forest.cright)
        self.children = children.ravel()
        self.nan_right = (~forest.default_left).astype(np.intp)
        self.strict = forest.comparison == "<"
        self.roots = forest.tree_offsets[:-1].astype(np.intp)
        self.depth = forest.max_depth
        self.cat = None if forest.cat_index is None else forest.cat_index.astype(np.intp)
        self.bitsets = forest.cat_bitsets
        self.rule = forest.category_rule


def _tables(forest: Forest) -> _Tables:
    tables = forest.__dict__.get("_tables")
    if tables is None:
        tables = _Tables(forest)
        forest.__dict__["_tables"] = tables  # a cache, not a field: the Forest stays frozen
    return tables


def _leaf_blocks(forest: Forest, X: NDArray[np.float64]) -> Iterator[tuple[int, NDArray[np.intp]]]:
    tb = _tables(forest)
    n, d = X.shape
    n_trees = len(tb.roots)
    block = max(1, _BLOCK_ELEMS // n_trees)
    flat = X.ravel()
    for start in range(0, n, block):
        stop = min(n, start + block)
        b = stop - start
        rowbase = (np.arange(start, stop, dtype=np.intp) * d)[:, None]
        node = np.broadcast_to(tb.roots, (b, n_trees)).copy()
        has_nan = bool(np.isnan(flat[start * d : stop * d]).any())
        for _ in range(tb.depth):
            x = flat[rowbase + tb.feat[node]]
            t = tb.thr[node]
            go_right = (x >= t) if tb.strict else (x > t)
            if tb.cat is not None:
                sets = tb.cat[node]
                cat = sets >= 0
                if cat.any():
                    assert tb.bitsets is not None
                    go_right[cat] = ~member(x[cat], sets[cat], tb.bitsets, tb.rule)
            if has_nan:
                nan = np.isnan(x)
                go_right = np.where(nan, tb.nan_right[node], go_right)
            node = tb.children[2 * node + go_right]
        yield start, node


def leaf_nodes(forest: Forest, X: Any) -> NDArray[np.intp]:
    """Global index of the leaf each row reaches in each tree, shape (n_samples, n_trees)."""
    X = check_X(forest, X)
    out = np.empty((X.shape[0], forest.n_trees), dtype=np.intp)
    for start, node in _leaf_blocks(forest, X):
        out[start : start + len(node)] = node
    return out


def margin_from_leaves(forest: Forest, leaves: NDArray[np.intp]) -> NDArray[np.float64]:
    """Margins (n, n_outputs) from leaf indices (n, n_trees): the sum / mean of leaf values."""
    k = forest.n_outputs
    lv = forest.leaf_value
    if forest.margin_dtype == "float32":
        return _float32_margin(forest, leaves)
    if forest.leaf_width == 1:
        vals = lv[leaves, 0]
        if k == 1:
            margin = vals.sum(axis=1, keepdims=True)
        else:
            onehot = np.zeros((forest.n_trees, k))
            onehot[np.arange(forest.n_trees), forest.tree_class] = 1.0
            margin = vals @ onehot
    else:
        margin = lv[leaves].sum(axis=1)
    if forest.average:
        margin /= forest.trees_per_output
    margin += forest.base_score
    return margin


def _float32_margin(forest: Forest, leaves: NDArray[np.intp]) -> NDArray[np.float64]:
    """XGBoost's sum: float32, base score first, then every tree in order.

    ``np.add.accumulate`` adds along a row strictly left to right in float32 (no pairwise
    summation), so each output's running sum is rounded after every tree, as in C.
    """
    n = leaves.shape[0]
    base = forest.base_score.astype(np.float32)
    vals = forest.leaf_value.astype(np.float32)
    if forest.leaf_width != 1:
        seq = np.concatenate([np.broadcast_to(base, (n, 1, len(base))), vals[leaves]], axis=1)
        return np.add.accumulate(seq, axis=1)[:, -1].astype(np.float64)
    out = np.empty((n, forest.n_outputs))
    for o in range(forest.n_outputs):
        cols = np.flatnonzero(forest.tree_class == o)
        seq = np.empty((n, len(cols) + 1), dtype=np.float32)
        seq[:, 0] = base[o]
        seq[:, 1:] = vals[leaves[:, cols], 0]
        out[:, o] = np.add.accumulate(seq, axis=1)[:, -1]
    return out


def predict_margin(forest: Forest, X: Any) -> NDArray[np.float64]:
    """Margins of ``forest`` on ``X``: shape (n,) for one output, (n, n_outputs) otherwise."""
    X = check_X(forest, X)
    out = np.empty((X.shape[0], forest.n_outputs))
    for start, node in _leaf_blocks(forest, X):
        out[start : start + len(node)] = margin_from_leaves(forest, node)
    return out[:, 0] if forest.n_outputs == 1 else out


def apply_postprocessor(forest: Forest, margin: NDArray[np.float64]) -> NDArray[np.float64]:
    """Map margins to predictions with the forest's link function."""
    post = forest.postprocessor
    if post == "identity":
        return margin
    if post == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-forest.sigmoid_alpha * margin))
    if post == "exponential":
        with np.errstate(over="ignore"):
            return np.exp(margin)
    if post == "softmax":
        z = margin - margin.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    if post == "argmax":
        return margin.argmax(axis=1).astype(np.float64)
    raise ValueError(f"unknown postprocessor {post!r}")  # validate() makes this unreachable
