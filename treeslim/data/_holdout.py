"""Splitting calibration rows: the part candidates are fitted on, the part they are judged on
while the search proposes them, and the part that certifies the loss budget and is never seen
while proposing (whole queries for ranking)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import check_qid

__all__ = ["calibration_split", "holdout"]


def _judged(n: int, qid: Any, fraction: float, rng: np.random.Generator) -> NDArray[np.bool_]:
    """A random ``fraction`` of ``n`` rows (whole queries when ``qid`` is given)."""
    if qid is None:
        return rng.random(n) < fraction
    q = check_qid(qid, n)
    ids = np.unique(q)
    return np.isin(q, ids[rng.random(len(ids)) < fraction])


def holdout(
    n: int, qid: Any, fraction: float, random_state: int | None
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(fit rows, judge rows): a random ``fraction`` of rows (whole queries) to judge on; every
    row for both below 200 rows."""
    every = np.arange(n)
    if not 0 <= fraction < 1:
        raise ValueError(f"holdout must be in [0, 1); got {fraction}.")
    if fraction == 0 or n < 200:
        return every, every
    judge = _judged(n, qid, fraction, np.random.default_rng(random_state))
    if judge.all() or not judge.any():
        return every, every
    return every[~judge], every[judge]


def calibration_split(
    n: int, qid: Any, *, certify: float, holdout_fraction: float, random_state: int | None
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp]]:
    """(fit rows, judge rows, certification rows) of ``n`` calibration rows.

    A random share ``certify`` of the rows (of the queries, for ranking) is set aside first: no
    candidate is fitted, judged or chosen on it, so it can certify the loss of whichever
    candidate the search proposes. The rest is split by :func:`holdout` (``holdout_fraction``).
    ``certify=0`` certifies on nothing (an empty array).
    """
    if not 0 <= certify < 1:
        raise ValueError(f"certify must be in [0, 1); got {certify}.")
    every = np.arange(n)
    rng = np.random.default_rng(None if random_state is None else [random_state, 1])
    cert = _judged(n, qid, certify, rng) if certify > 0 else np.zeros(n, dtype=bool)
    rest = every[~cert]
    fit, judge = holdout(len(rest), None if qid is None else np.asarray(qid)[rest],
                         holdout_fraction, random_state)  # fmt: skip
    return rest[fit], rest[judge], every[cert]
