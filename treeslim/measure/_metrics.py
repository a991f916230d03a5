"""Task metrics and fidelity, computed the same way for every model and every step.

Binary: AUC, accuracy, log-loss; multiclass: accuracy, log-loss; regression: RMSE, R^2;
ranking: NDCG@10 averaged over query groups (LightGBM's convention: a query with no relevant
document scores 1). Fidelity compares a model with a reference on the same rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim._utils import check_qid
from treeslim.ir import Forest, apply_postprocessor, predict_margin

__all__ = [
    "default_metric",
    "evaluate",
    "fidelity",
    "ndcg_at_k",
    "ndcg_per_query",
    "quantization_error",
]

_DEFAULT = {"binary": "auc", "multiclass": "accuracy", "regression": "r2", "ranking": "ndcg@10"}
HIGHER_IS_BETTER = {
    "auc": True,
    "accuracy": True,
    "logloss": False,
    "rmse": False,
    "r2": True,
    "ndcg@10": True,
}


def default_metric(task: str) -> str:
    """The metric a task is judged by unless the caller says otherwise."""
    return _DEFAULT[task]


def _groups(qid: ArrayLike, n: int) -> list[NDArray[np.intp]]:
    q = check_qid(qid, n)
    order = np.argsort(q, kind="stable")
    cuts = np.flatnonzero(np.diff(q[order])) + 1
    return np.split(order, cuts)


def ndcg_per_query(
    y: ArrayLike, score: ArrayLike, qid: ArrayLike, k: int = 10
) -> NDArray[np.float64]:
    """NDCG@k of every query group (in sorted query-id order), gain ``2**rel - 1``, discount
    ``log2(rank + 1)``; a query with no relevant document scores 1."""
    y = np.asarray(y, dtype=np.float64)
    score = np.asarray(score, dtype=np.float64)
    values = []
    for idx in _groups(qid, len(y)):
        rel = y[idx]
        top = idx[np.argsort(-score[idx], kind="stable")][:k]
        disc = 1.0 / np.log2(np.arange(2, len(top) + 2))
        dcg = float(((2.0 ** y[top] - 1.0) * disc).sum())
        ideal = np.sort(rel)[::-1][:k]
        idcg = float(((2.0**ideal - 1.0) * disc[: len(ideal)]).sum())
        values.append(dcg / idcg if idcg > 0 else 1.0)
    return np.asarray(values, dtype=np.float64)


def ndcg_at_k(y: ArrayLike, score: ArrayLike, qid: ArrayLike, k: int = 10) -> float:
    """Mean NDCG@k over query groups (:func:`ndcg_per_query`)."""
    values = ndcg_per_query(y, score, qid, k)
    return float(np.mean(values)) if len(values) else float("nan")


def evaluate(
    task: str, y: ArrayLike, pred: NDArray[np.float64], *, qid: ArrayLike | None = None
) -> dict[str, float]:
    """Quality metrics of predictions ``pred`` (as :meth:`Forest.predict` gives them) on ``y``."""
    from sklearn import metrics as skm

    y = np.asarray(y)
    pred = np.asarray(pred, dtype=np.float64)
    if len(y) != len(pred):
        raise ValueError(f"y has {len(y)} rows but the predictions have {len(pred)}.")
    out: dict[str, float] = {}
    if task == "binary":
        p = np.clip(pred, 1e-15, 1 - 1e-15)
        out["auc"] = float(skm.roc_auc_score(y, pred)) if len(np.unique(y)) == 2 else float("nan")
        out["accuracy"] = float(np.mean((pred >= 0.5) == (y == 1)))
        out["logloss"] = float(skm.log_loss(y, p, labels=[0, 1]))
    elif task == "multiclass":
        if pred.ndim == 1:  # class indices (XGBoost multi:softmax)
            out["accuracy"] = float(np.mean(pred == y))
        else:
            out["accuracy"] = float(np.mean(pred.argmax(axis=1) == y))
            p = np.clip(pred, 1e-15, 1.0)
            p = p / p.sum(axis=1, keepdims=True)
            out["logloss"] = float(skm.log_loss(y, p, labels=np.arange(pred.shape[1])))
    elif task == "regression":
        out["rmse"] = float(np.sqrt(np.mean((pred - y) ** 2)))
        out["r2"] = float(skm.r2_score(y, pred))
    elif task == "ranking":
        if qid is None:
            raise ValueError("Ranking metrics need qid (the query of each row).")
        out["ndcg@10"] = ndcg_at_k(y, pred, qid, 10)
    else:
        raise ValueError(f"Unknown task {task!r}.")
    return out


def fidelity(
    task: str,
    pred: NDArray[np.float64],
    margin: NDArray[np.float64],
    ref_pred: NDArray[np.float64],
    ref_margin: NDArray[np.float64],
) -> dict[str, Any]:
    """Agreement with a reference model on the same rows.

    ``agreement``: same predicted class (classification), else the share of rows whose margin is
    within 1e-6 (relative) of the reference's. ``max_abs_delta_margin``: the largest difference.
    """
    margin = np.asarray(margin, dtype=np.float64)
    ref_margin = np.asarray(ref_margin, dtype=np.float64)
    delta = np.abs(margin - ref_margin)
    if task == "binary":
        agree = np.mean((pred >= 0.5) == (ref_pred >= 0.5))
    elif task == "multiclass":
        a = pred if pred.ndim == 1 else pred.argmax(axis=1)
        b = ref_pred if ref_pred.ndim == 1 else ref_pred.argmax(axis=1)
        agree = np.mean(a == b)
    else:
        tol = 1e-6 * np.maximum(1.0, np.abs(ref_margin))
        agree = np.mean(delta <= tol)
    return {
        "agreement": float(agree),
        "max_abs_delta_margin": float(delta.max()) if delta.size else 0.0,
    }


def quantization_error(original: Forest, quantized: Forest, X: ArrayLike) -> dict[str, float]:
    """What a lossy pass cost on rows ``X``: margin differences and prediction agreement.

    Returns
    -------
    dict
        ``max_abs_delta_margin``, ``mean_abs_delta_margin`` and ``agreement`` (the share of rows
        with the same predicted class for classifiers, else with a margin within 1e-6 relative; see
        :func:`fidelity`).
    """
    m0, m1 = predict_margin(original, X), predict_margin(quantized, X)
    out = fidelity(
        original.task, apply_postprocessor(quantized, m1), m1, apply_postprocessor(original, m0), m0
    )
    out["mean_abs_delta_margin"] = float(np.mean(np.abs(m1 - m0))) if m0.size else 0.0
    return out
