"""Splitting calibration rows into the part candidates are fitted on and the part they are judged
on (whole queries for ranking)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import check_qid

__all__ = ["holdout"]


def holdout(
    n: int, qid: Any, fraction: float, random_state: int | None
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(fit rows, judge rows): a random ``fraction`` of rows (whole queries) to judge on."""
    every = np.arange(n)
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout must be in [0, 1); got {fraction}.")
    if fraction == 0 or n < 200:
        return every, every
    rng = np.random.default_rng(random_state)
    if qid is None:
        judge = rng.random(n) < fraction
    else:
        q = check_qid(qid, n)
        ids = np.unique(q)
        judge = np.isin(q, ids[rng.random(len(ids)) < fraction])
    if judge.all() or not judge.any():
        return every, every
    return every[~judge], every[judge]
