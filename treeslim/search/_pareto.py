"""The Pareto front of a compression search: size, scoring time per row and quality together.

A candidate is on the front when no other candidate is at least as good on all three (fewer or
equal nodes, less or equal time per row, equal or better metric) and strictly better on one.

Time is measured, not modelled: ``row_us`` is the time per row of treeslim's C kernel
(:class:`~treeslim.runtime.KernelForest`) on one thread over a block of up to 256 calibration
rows, best of five. A single-row call costs a fixed overhead (a few microseconds through
:func:`treeslim.compile`'s ctypes path, more through Python) plus this traversal time, so
``row_us`` orders candidates by the part of single-row latency that compression changes; the
overhead itself is measured for the chosen model by :func:`treeslim.report`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.runtime import KernelForest
from treeslim.search._candidate import Candidate

__all__ = ["annotate_front", "pareto_mask", "time_per_row"]


def pareto_mask(points: ArrayLike) -> NDArray[np.bool_]:
    """Which rows of ``points`` (n, k), all objectives to minimise, no other row dominates.

    Examples
    --------
    >>> pareto_mask([[1, 3], [2, 2], [3, 3], [1, 3]]).tolist()
    [True, True, False, True]
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"points must be 2-D (n_points, n_objectives); got shape {p.shape}.")
    le = (p[:, None, :] <= p[None, :, :]).all(axis=2)  # le[i, j]: i at least as good as j
    lt = (p[:, None, :] < p[None, :, :]).any(axis=2)
    dominated: NDArray[np.bool_] = np.asarray((le & lt).any(axis=0))
    return ~dominated


def time_per_row(forest: Any, rows: ArrayLike, *, repeat: int = 5) -> float:
    """Microseconds per row of the C kernel on one thread over ``rows``, best of ``repeat``."""
    kernel = KernelForest(forest)
    Xc = kernel.prepare(rows)
    kernel.margin_prepared(Xc, 1)  # warm-up
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        kernel.margin_prepared(Xc, 1)
        best = min(best, time.perf_counter() - t0)
    return best / max(len(Xc), 1) * 1e6


def annotate_front(
    candidates: Sequence[Candidate], rows: ArrayLike, *, higher_is_better: bool
) -> None:
    """Set ``row_us`` (:func:`time_per_row`) and ``pareto`` (on the front or not) of every
    candidate of a search; they are updated in place."""
    X = np.ascontiguousarray(np.asarray(rows, dtype=np.float64)[:256])
    for c in candidates:
        if c.row_us is None:
            c.row_us = time_per_row(c.forest, X)
    sign = -1.0 if higher_is_better else 1.0
    pts = [[c.nodes, float(c.row_us or 0.0), sign * c.score] for c in candidates]
    if pts:
        for c, on in zip(candidates, pareto_mask(pts), strict=True):
            c.pareto = bool(on)
