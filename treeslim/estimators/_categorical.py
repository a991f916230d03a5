"""DataFrames with category columns in the Slim estimators.

The compression search works on numbers, so a DataFrame whose ``category`` (or text) columns a
model splits by category is encoded once, as the model's library encodes it at predict time
(:func:`treeslim.ir.check_X`), into a numeric DataFrame of category codes with the same columns.
The search then runs on those codes with the *code twin* of the teacher
(:func:`treeslim.ir.code_twin`), and the compressed forest gets the teacher's category lists back
(:func:`treeslim.ir.with_categories_of`), so it takes the user's DataFrames, and numpy rows,
exactly as the original model does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from treeslim.ir import Forest, check_X

__all__ = ["encode_frame", "has_category_columns"]


def has_category_columns(X: Any) -> bool:
    """Whether ``X`` is a DataFrame with a column that is not plain numbers."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is None or not hasattr(X, "columns"):
        return False
    return any(
        getattr(dt, "name", "") == "category" or getattr(dt, "kind", "O") not in "biuf"
        for dt in dtypes
    )


def encode_frame(forest: Forest, X: Any) -> Any:
    """``X`` as a float64 DataFrame of the codes ``forest`` routes (same columns and index)."""
    codes = check_X(forest, X)
    return X.__class__(np.asarray(codes, dtype=np.float64), columns=X.columns, index=X.index)
