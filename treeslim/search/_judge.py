"""How candidates are judged: the paired bootstrap standard error of a metric difference.

The search fits candidates on one part of the calibration rows and judges them on the other
(:func:`treeslim.data.holdout`); a candidate's loss must fit the budget even after adding one standard error
of the paired difference (:func:`paired_se`), so picking the smallest of many candidates does not
favour those whose loss happens to look small on the judge rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.measure import evaluate

__all__ = ["paired_se"]


def paired_se(
    task: str,
    y: Any,
    qid: Any,
    metric: str,
    ref: NDArray[np.float64],
    pred: NDArray[np.float64],
    random_state: int | None,
    n_boot: int = 30,
) -> float:
    """Bootstrap standard error of the metric difference between two models on the same rows.

    Picking the smallest of many candidates on a finite judge set favours the ones whose loss
    happens to look small there; requiring loss + one standard error within the budget guards
    against that. Rows are resampled (whole queries for ranking).
    """
    if np.array_equal(ref, pred):
        return 0.0
    rng = np.random.default_rng(random_state)
    n = len(y)
    if qid is not None:
        q = np.asarray(qid)
        groups = [np.flatnonzero(q == g) for g in np.unique(q)]
    diffs = []
    for _ in range(n_boot):
        if qid is None:
            idx = rng.integers(0, n, n)
            qb = None
        else:
            pick = rng.integers(0, len(groups), len(groups))
            idx = np.concatenate([groups[g] for g in pick])
            qb = np.repeat(np.arange(len(pick)), [len(groups[g]) for g in pick])
        yb = y[idx]
        if task == "binary" and len(np.unique(yb)) < 2:
            continue
        a = evaluate(task, yb, ref[idx], qid=qb)[metric]
        c = evaluate(task, yb, pred[idx], qid=qb)[metric]
        diffs.append(a - c)
    return float(np.std(diffs)) if len(diffs) > 1 else 0.0
