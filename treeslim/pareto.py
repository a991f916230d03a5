"""The Pareto front of a compression search: size, single-row latency and quality together.

A candidate is on the front when no other candidate is at least as good on all three (fewer or
equal nodes, lower or equal single-row p50, equal or better metric) and strictly better on one.
Latency is measured, not modelled: every candidate scores the same rows one call per row through
treeslim's C kernel (:class:`~treeslim._kernel.KernelForest`), the same path the reports use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["annotate_front", "pareto_mask"]


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


def annotate_front(
    candidates: Sequence[dict[str, Any]],
    rows: ArrayLike,
    *,
    higher_is_better: bool,
    n_calls: int = 300,
) -> None:
    """Add ``p50_us`` (single-row latency) and ``pareto`` (on the front or not) to every candidate.

    ``candidates`` are the dicts :func:`~treeslim.compress.search` records (``forest``, ``nodes``,
    ``score``); they are updated in place. ``rows`` are scored one per call, ``n_calls`` calls
    after warm-up.
    """
    from ._kernel import KernelForest
    from .report import measure_single_row

    X = np.ascontiguousarray(np.asarray(rows, dtype=np.float64)[:n_calls])
    for c in candidates:
        if "p50_us" not in c:
            kernel = KernelForest(c["forest"])

            def one(row: NDArray[Any], k: KernelForest = kernel) -> Any:
                return k.margin_prepared(row[None, :], 1)

            c["p50_us"], c["p99_us"] = measure_single_row(
                one, kernel.prepare(X), n_calls=n_calls, warmup=min(50, n_calls)
            )
    sign = -1.0 if higher_is_better else 1.0
    pts = [[c["nodes"], c["p50_us"], sign * c["score"]] for c in candidates]
    if pts:
        for c, on in zip(candidates, pareto_mask(pts), strict=True):
            c["pareto"] = bool(on)
