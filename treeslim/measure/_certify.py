"""The loss certificate: an upper confidence bound of a compressed model's loss on new data, and
the fixed-sequence test that certifies many candidates at once without a multiplicity correction.

One rule, used by the tree search and the MLP search alike. The search proposes candidates on one
part of the calibration rows; the certification rows (:func:`treeslim.data.calibration_split`)
are never seen while proposing. The proposed candidates are ordered before the certification rows
are looked at (:func:`~treeslim.measure.sequence_order`: largest first, leaving out the proposals likelier to end
the sequence than to pay off), and tested in that order at
level ``1 - confidence`` each, stopping at the first that fails (:func:`certify_in_sequence`).
Since the order is fixed in advance, the chance that *any* certified candidate's true loss
exceeds ``max_loss`` is at most ``1 - confidence`` (fixed-sequence testing, as in "learn then
test"), so the smallest certified one may be returned.

The bound of one candidate (:func:`loss_bound`) is on the paired difference, teacher minus
candidate, of the metric on the certification rows, assuming rows (whole queries for ranking) are
i.i.d. draws from the distribution future data comes from:

- accuracy: exact and conservative, no approximation. The loss is at most the share of rows
  only the teacher gets right (the rows only the candidate gets right are not credited), and
  that share gets a one-sided Clopper-Pearson bound at level ``alpha``.
- every other metric (AUC, R^2, RMSE, log-loss, NDCG@10): bootstrap over rows (whole queries
  for ranking), ``loss + t * se`` or the bootstrap quantile, whichever is larger. This is
  approximate: it is a large-sample bound, looser in truth than it looks for a few dozen units.
- always at least the resolution of the rows, ``-ln(alpha) / n`` for ``n`` rows (queries):
  a model that is worse than the teacher on fewer than that share of units cannot be told,
  from ``n`` units, from one that never is (the "rule of three" at 95%). Below 30 rows,
  20 queries, or 10 rows of either class for AUC, nothing but an exact model is certified.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.measure._metrics import HIGHER_IS_BETTER, evaluate, ndcg_per_query

__all__ = [
    "Certificate",
    "cannot_certify_message",
    "certificate_fields",
    "certify_in_sequence",
    "exact_certificate",
    "loss_bound",
    "paired_se",
    "proposal_margin",
    "smallest_budget",
]

MIN_ROWS = 30  # fewer certification rows certify nothing but an exact model
MIN_QUERIES = 20
MIN_CLASS = 10  # rows of the rarer class, for AUC
N_BOOT = 500


@dataclasses.dataclass(frozen=True)
class Certificate:
    """What the certification rows say about a model's loss on new data.

    ``loss_bound`` is an upper bound of the loss (teacher's metric minus the model's, on new
    data from the calibration rows' distribution) at ``confidence``; ``certified`` is
    ``loss_bound <= max_loss``. ``method`` says how the bound was computed, ``rows`` and
    ``queries`` (ranking) how many certification units it rests on, ``loss`` is the loss on
    them, ``smallest_budget`` the smallest budget these rows can certify at all.
    """

    max_loss: float
    confidence: float
    loss_bound: float
    method: str
    rows: int
    queries: int | None
    certified: bool
    loss: float = 0.0
    smallest_budget: float = 0.0
    metric: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON reports)."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        units = f"{self.rows:,} rows" + (
            f", {self.queries:,} queries" if self.queries is not None else ""
        )
        verdict = "certified" if self.certified else "NOT certified"
        return (
            f"{self.metric} loss <= {self.loss_bound:.4g} with {self.confidence:.0%} confidence "
            f"(budget {self.max_loss:g}: {verdict}; {self.method}; {units})"
        )


def certificate_fields(cert: Certificate | None) -> dict[str, Any]:
    """A report entry's certificate columns; none for a model certification never reached."""
    if cert is None:
        return {}
    return {
        "loss_bound": cert.loss_bound,
        "confidence": cert.confidence,
        "certified": cert.certified,
        "certified_rows": cert.rows,
        "certified_queries": cert.queries,
        "certificate": cert.method,
    }


def cannot_certify_message(
    max_loss: float, metric: str, confidence: float, n_rows: int, cert_y: Any, cert_qid: Any,
    fallback: str,
) -> str:  # fmt: skip
    """What the small-data warning (or error) says: the smallest budget these rows can certify,
    what was asked, and what is returned instead (``fallback``)."""
    floor = smallest_budget(metric, cert_y, cert_qid, confidence)
    rows, queries, _ = _units(np.asarray(cert_y), cert_qid)
    units = f"{rows:,} rows" + ("" if queries is None else f", {queries:,} queries")
    can = (
        "no loss budget but 0"
        if math.isinf(floor)
        else f"a loss budget ({metric}) of {floor:.4g} or more"
    )
    return (
        f"These {n_rows:,} calibration rows ({units} set aside to certify) can certify {can} at "
        f"{confidence:.0%} confidence; max_loss={max_loss:g} cannot be certified, so only what "
        f"can be certified is returned: {fallback}. Give more calibration rows or a larger "
        f"max_loss."
    )


def _units(y: Any, qid: Any) -> tuple[int, int | None, int]:
    """(rows, queries or None, independent units: queries for ranking, rows otherwise)."""
    rows = len(y)
    if qid is None:
        return rows, None, rows
    queries = len(np.unique(np.asarray(qid)))
    return rows, queries, queries


def smallest_budget(metric: str, y: ArrayLike, qid: ArrayLike | None, confidence: float) -> float:
    """The smallest ``max_loss`` that certification rows ``(y, qid)`` can certify at
    ``confidence`` for a model that is not exact: ``-ln(1 - confidence) / n`` for ``n`` rows
    (queries), ``inf`` when there are too few to certify anything.

    Examples
    --------
    >>> round(smallest_budget("r2", [0.0] * 1000, None, 0.95), 4)
    0.003
    """
    yv = np.asarray(y)
    _, _, units = _units(yv, qid)
    if units < (MIN_ROWS if qid is None else MIN_QUERIES):
        return math.inf
    if metric == "auc" and min(int((yv == 1).sum()), int((yv != 1).sum())) < MIN_CLASS:
        return math.inf
    return -math.log(1.0 - confidence) / units


def _correct(task: str, y: NDArray[Any], pred: NDArray[np.float64]) -> NDArray[np.bool_]:
    if task == "binary":
        out: NDArray[np.bool_] = (pred >= 0.5) == (y == 1)
        return out
    return np.asarray((pred if pred.ndim == 1 else pred.argmax(axis=1)) == y)


def _accuracy_bound(
    task: str, y: NDArray[Any], ref: NDArray[np.float64], pred: NDArray[np.float64], alpha: float
) -> tuple[float, float]:
    """(loss, exact upper bound) of the accuracy difference: the loss is at most the share of
    rows only the teacher gets right, bounded by Clopper-Pearson at ``alpha``."""
    from scipy.stats import beta

    a, c_ = _correct(task, y, ref), _correct(task, y, pred)
    n = len(y)
    b, c = int((a & ~c_).sum()), int((~a & c_).sum())
    return (b - c) / n, 1.0 if b == n else float(beta.ppf(1 - alpha, b + 1, n - b))


def _weighted_auc(
    y: NDArray[Any], score: NDArray[np.float64], W: NDArray[np.float64]
) -> NDArray[np.float64]:
    """AUC under every row of bootstrap weights ``W`` (n_boot, n), ties counted as one half."""
    from scipy import sparse

    levels, inv = np.unique(score, return_inverse=True)
    onehot = sparse.csr_matrix((np.ones(len(y)), (np.arange(len(y)), inv)),
                               shape=(len(y), len(levels)))  # fmt: skip
    pos = y == 1
    P = np.asarray((W * pos) @ onehot)
    N = np.asarray((W * ~pos) @ onehot)
    below = np.cumsum(N, axis=1) - N
    with np.errstate(invalid="ignore", divide="ignore"):
        out: NDArray[np.float64] = (P * (below + 0.5 * N)).sum(axis=1) / (
            P.sum(axis=1) * N.sum(axis=1)
        )
    return out


def _draws(
    task: str,
    metric: str,
    y: NDArray[Any],
    qid: Any,
    ref: NDArray[np.float64],
    pred: NDArray[np.float64],
    rng: np.random.Generator,
    n_boot: int = N_BOOT,
) -> tuple[float, NDArray[np.float64]]:
    """(loss, bootstrap draws of the loss): resampled rows, whole queries for ranking."""
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    if task == "ranking":
        d = ndcg_per_query(y, ref, qid) - ndcg_per_query(y, pred, qid)
        W = rng.multinomial(len(d), np.full(len(d), 1.0 / len(d)), size=n_boot) / len(d)
        return float(d.mean()), W @ d
    n = len(y)
    W = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    if metric == "auc":
        W1 = np.vstack([np.ones(n), W])  # the rows as they are, then the resamples
        d = _weighted_auc(y, ref, W1) - _weighted_auc(y, pred, W1)
        return float(d[0]), d[1:]
    if metric in ("r2", "rmse") and y.ndim == 1:
        yf = y.astype(np.float64)
        er, ep = (ref - yf) ** 2, (pred - yf) ** 2
        if metric == "rmse":
            draws = np.sqrt(W @ ep / n) - np.sqrt(W @ er / n)
            return float(np.sqrt(ep.mean()) - np.sqrt(er.mean())), draws
        sst = W @ (yf**2) - (W @ yf) ** 2 / n
        with np.errstate(invalid="ignore", divide="ignore"):
            draws = (W @ ep - W @ er) / sst
        return float((ep.sum() - er.sum()) / ((yf - yf.mean()) ** 2).sum()), draws
    if metric == "accuracy":  # a resample's accuracy is the weighted share of correct rows
        d = _correct(task, y, ref).astype(np.float64) - _correct(task, y, pred)
        return float(d.mean()), W @ d / n
    loss = sign * (_metric(task, metric, y, ref) - _metric(task, metric, y, pred))
    out = []
    for w in W:  # any other metric: recomputed on each resample
        idx = np.repeat(np.arange(n), w.astype(np.intp))
        out.append(sign * (_metric(task, metric, y[idx], ref[idx])
                           - _metric(task, metric, y[idx], pred[idx])))  # fmt: skip
    return loss, np.asarray(out, dtype=np.float64)


def _metric(task: str, metric: str, y: Any, pred: Any, qid: Any = None) -> float:
    return float(evaluate(task, y, pred, qid=qid).get(metric, float("nan")))


def loss_bound(
    task: str,
    metric: str,
    y: ArrayLike,
    qid: ArrayLike | None,
    ref: ArrayLike,
    pred: ArrayLike,
    *,
    confidence: float = 0.95,
    random_state: int | None = None,
) -> tuple[float, float, str]:
    """(loss, upper bound of the loss on new data at ``confidence``, method) of predictions
    ``pred`` against the reference ``ref`` on certification rows ``(y, qid)``.

    The loss is the reference's metric minus the candidate's (sign flipped for metrics where
    lower is better). See the module docstring for the bound of each metric.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.arange(200) % 2
    >>> loss, bound, method = loss_bound("binary", "accuracy", y, None, y * 0.9, y * 0.9)
    >>> loss, round(bound, 3), method
    (0.0, 0.015, 'exact (Clopper-Pearson over rows)')
    """
    yv = np.asarray(y)
    r = np.asarray(ref, dtype=np.float64)
    p = np.asarray(pred, dtype=np.float64)
    floor = smallest_budget(metric, yv, qid, confidence)
    alpha = 1.0 - confidence
    units = "queries" if qid is not None else "rows"
    if not math.isfinite(floor):
        sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
        loss = sign * (_metric(task, metric, yv, r, qid) - _metric(task, metric, yv, p, qid))
        return loss, math.inf, f"too few {units} to certify"
    if metric == "accuracy":
        loss, bound = _accuracy_bound(task, yv, r, p, alpha)
        return loss, max(bound, floor), f"exact (Clopper-Pearson over {units})"
    from scipy.stats import t

    rng = np.random.default_rng(random_state)
    loss, draws = _draws(task, metric, yv, qid, r, p, rng)
    draws = draws[np.isfinite(draws)]
    n_units = _units(yv, qid)[2]
    if len(draws) < 2:
        return loss, math.inf, f"bootstrap over {units} (failed)"
    se = float(np.std(draws, ddof=1))
    bound = max(loss + float(t.ppf(confidence, n_units - 1)) * se,
                float(np.quantile(draws, confidence)))  # fmt: skip
    return loss, max(bound, floor), f"bootstrap over {units}"


def exact_certificate(
    metric: str, max_loss: float, confidence: float, y: ArrayLike, qid: ArrayLike | None
) -> Certificate:
    """The certificate of a model with the teacher's predictions on every input (the exact
    passes): loss 0, by construction rather than by measurement."""
    rows, queries, _ = _units(np.asarray(y), qid)
    return Certificate(max_loss, confidence, 0.0, "exact passes (identical predictions)", rows,
                       queries, True, 0.0, smallest_budget(metric, y, qid, confidence),
                       metric)  # fmt: skip


def certify_in_sequence(
    preds: Iterable[ArrayLike],
    *,
    task: str,
    metric: str,
    y: ArrayLike,
    qid: ArrayLike | None,
    ref: ArrayLike,
    max_loss: float,
    confidence: float = 0.95,
    random_state: int | None = None,
) -> list[Certificate]:
    """Certificates of the candidates' predictions ``preds`` (in the order fixed before the
    certification rows were looked at), up to and including the first that fails.

    Every candidate is tested at level ``1 - confidence``; stopping at the first failure keeps
    the chance that any certified candidate exceeds ``max_loss`` at most ``1 - confidence``.
    ``preds`` is consumed lazily: candidates after the first failure are never predicted.
    """
    yv = np.asarray(y)
    rows, queries, _ = _units(yv, qid)
    floor = smallest_budget(metric, yv, qid, confidence)
    out = []
    for p in preds:
        loss, bound, method = loss_bound(task, metric, yv, qid, ref, p, confidence=confidence,
                                         random_state=random_state)  # fmt: skip
        cert = Certificate(max_loss, confidence, bound, method, rows, queries,
                           bound <= max_loss, loss, floor, metric)  # fmt: skip
        out.append(cert)
        if not cert.certified:
            break
    return out


def proposal_margin(confidence: float, judge_units: int, cert_units: int) -> float:
    """Standard errors (of the paired difference on the judge rows) a proposal's loss should stay
    clear of the budget by: the one-sided normal quantile at ``confidence``, scaled from
    ``judge_units`` to the ``cert_units`` the certification will see (the bound it will add)."""
    from scipy.stats import norm

    return float(norm.ppf(confidence)) * math.sqrt(judge_units / max(cert_units, 1))


def paired_se(
    task: str,
    y: Any,
    qid: Any,
    metric: str,
    ref: NDArray[np.float64],
    pred: NDArray[np.float64],
    random_state: int | None,
    n_boot: int = 200,
) -> float:
    """Bootstrap standard error of the metric difference between two models on the same rows
    (whole queries resampled for ranking).

    The searches propose a candidate for certification when its loss on the judge rows plus
    :func:`proposal_margin` of these standard errors fits the budget: a candidate likely to pass,
    not a promise (only the certification rows make one).
    """
    if np.array_equal(ref, pred):
        return 0.0
    yv = np.asarray(y)
    if task == "binary" and len(np.unique(yv)) < 2:
        return 0.0
    rng = np.random.default_rng(random_state)
    _, draws = _draws(task, metric, yv, qid, np.asarray(ref, dtype=np.float64),
                      np.asarray(pred, dtype=np.float64), rng, n_boot)  # fmt: skip
    draws = draws[np.isfinite(draws)]
    return float(np.std(draws)) if len(draws) > 1 else 0.0
