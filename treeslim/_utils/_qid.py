"""Query ids of ranking data, checked the one way every estimator, pass and metric does it."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["check_qid", "group_to_qid"]


def check_qid(qid: Any, n_rows: int) -> NDArray[Any]:
    """``qid`` as a 1-D array with one query id per row; a ``ValueError`` names both lengths.

    Examples
    --------
    >>> check_qid([0, 0, 1], 3).tolist()
    [0, 0, 1]
    >>> check_qid([0, 0, 1], 4)
    Traceback (most recent call last):
    ...
    ValueError: qid must have one entry per row: X has 4 rows, qid has 3 entries.
    """
    q = np.asarray(qid)
    if q.ndim != 1:
        raise ValueError(
            f"qid must have one entry per row: X has {n_rows} rows, qid has shape {q.shape}."
        )
    if len(q) != n_rows:
        raise ValueError(
            f"qid must have one entry per row: X has {n_rows} rows, qid has {len(q)} entries."
        )
    return q


def group_to_qid(group: Any, n_rows: int) -> NDArray[np.intp]:
    """Query ids from LightGBM-style ``group`` sizes (consecutive rows, one size per query).

    Examples
    --------
    >>> group_to_qid([2, 1], 3).tolist()
    [0, 0, 1]
    >>> group_to_qid([2, 2], 3)
    Traceback (most recent call last):
    ...
    ValueError: group sizes must add up to the rows of X: X has 3 rows, group sums to 4.
    """
    g = np.asarray(group)
    if g.ndim != 1 or not np.issubdtype(g.dtype, np.integer) or np.any(g < 0):
        raise ValueError(f"group must be a 1-D array of query sizes (ints >= 0); got {g!r:.60}.")
    if int(g.sum()) != n_rows:
        raise ValueError(
            "group sizes must add up to the rows of X:"
            f" X has {n_rows} rows, group sums to {int(g.sum())}."
        )
    return np.repeat(np.arange(len(g), dtype=np.intp), g)
