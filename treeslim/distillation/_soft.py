"""Soft targets for distillation: what a student regresses, from the teacher's margins.

The student regresses ``u`` and its margin is ``temperature * u``. How ``u`` is made depends on
the teacher's link (Hinton, Vinyals & Dean, 2015, for the tempered softmax):

- sigmoid (binary, one-vs-rest): ``p = (1 - alpha) * sigmoid(a z / T) + alpha * y`` with ``a``
  the teacher's ``sigmoid_alpha``; ``u = logit(clip(p, eps, 1 - eps)) / a``.
- softmax: ``p = (1 - alpha) * softmax(z / T) + alpha * onehot(y)``; ``u = log(clip(p, eps))``
  centred over the classes (softmax ignores a common shift, so only differences are fitted).
- ranking: scores centred within each query by the real rows' mean,
  ``u = ((1 - alpha) * (z - mean_q z) + alpha * s * (y - mean_q y)) / T`` with ``s`` putting the
  labels on the teacher's score scale (ratio of the centred standard deviations).
- anything else (regression, probability-leaf forests): ``u = ((1 - alpha) * z + alpha * y) / T``,
  ``y`` taken to margin space through the link (``log y`` for an exponential link).

With ``alpha = 0`` and no clipping ``T * u`` is the teacher's margin (centred for softmax and
ranking), so ``T`` does not bias the student; for sigmoid / softmax teachers it sets how far
confident margins are kept: ``|T * u| <= T * log((1 - eps) / eps)`` (about 13.8 T), so a small
``T`` flattens saturated margins, which otherwise dominate a squared loss while changing no
prediction. For regression and ranking ``T`` only scales the targets. ``alpha`` blends the true
labels into the real rows' targets only (generated rows have none).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.ir import Forest

__all__ = ["EPS", "SoftTargets"]

EPS = 1e-6


def _logit(p: NDArray[np.float64]) -> NDArray[np.float64]:
    p = np.clip(p, EPS, 1.0 - EPS)
    return np.asarray(np.log(p) - np.log1p(-p))


class SoftTargets:
    """Turns teacher margins (and labels of real rows) into student targets ``u`` (n, K)."""

    def __init__(
        self,
        teacher: Forest,
        temperature: float,
        alpha: float,
        y: NDArray[Any] | None,
        qid: NDArray[Any] | None,
        margin: NDArray[np.float64],
    ) -> None:
        self.teacher = teacher
        self.T = float(temperature)
        self.alpha = float(alpha)
        self.kind = self.kind_of(teacher)
        self.qmean: NDArray[np.float64] | None = None
        self.label_scale = 1.0
        if self.kind == "ranking":
            if qid is None:
                raise ValueError("Distilling a ranking teacher needs qid (the query of each row).")
            _, code = np.unique(np.asarray(qid), return_inverse=True)
            size = np.bincount(code)
            self.qmean = np.bincount(code, margin[:, 0], len(size)) / size
            if y is not None and self.alpha > 0:
                ymean = np.bincount(code, y, len(size)) / size
                sz = np.std(margin[:, 0] - self.qmean[code])
                sy = np.std(y - ymean[code])
                self.label_scale = float(sz / sy) if sy > 0 else 0.0
                self.ymean = ymean

    @staticmethod
    def kind_of(teacher: Forest) -> str:
        """sigmoid, softmax, ranking or linear: how ``teacher``'s margins become targets."""
        post = teacher.postprocessor
        if teacher.task == "ranking":
            return "ranking"
        if post == "sigmoid" and teacher.task in ("binary", "multiclass"):
            return "sigmoid"
        if post in ("softmax", "argmax"):
            return "softmax"
        return "linear"

    def onehot(self, y: Any) -> NDArray[np.float64]:
        k = self.teacher.n_outputs
        if self.teacher.task == "multiclass":
            return np.asarray(np.eye(k)[np.asarray(y, dtype=np.intp)])
        return np.asarray(y, dtype=np.float64).reshape(-1, 1)

    def targets(
        self,
        margin: NDArray[np.float64],
        *,
        y: NDArray[Any] | None = None,
        qcode: NDArray[np.intp] | None = None,
    ) -> NDArray[np.float64]:
        """``u`` for rows with teacher margins ``margin`` (n, K); ``y`` only for real rows;
        ``qcode`` the index of each row's query among the real rows' sorted query ids."""
        T, a = self.T, (self.alpha if y is not None else 0.0)
        if self.kind == "sigmoid":
            s = self.teacher.sigmoid_alpha
            p = 0.5 * (1.0 + np.tanh(0.5 * s * margin / T))
            if a:
                p = (1.0 - a) * p + a * self.onehot(y)
            return _logit(p) / s
        if self.kind == "softmax":
            z = margin / T
            logp = z - z.max(axis=1, keepdims=True)
            logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
            if a:
                mixed = (1.0 - a) * np.exp(logp) + a * self.onehot(y)
                logp = np.log(np.maximum(mixed, EPS))
            return np.asarray(logp - logp.mean(axis=1, keepdims=True))
        if self.kind == "ranking":
            assert self.qmean is not None and qcode is not None
            u = margin[:, 0] - self.qmean[qcode]
            if a:
                yc = np.asarray(y, dtype=np.float64) - self.ymean[qcode]
                u = (1.0 - a) * u + a * self.label_scale * yc
            return np.asarray(u[:, None] / T)
        u = margin
        if a:
            yy = self.onehot(y)
            if self.teacher.postprocessor == "exponential":
                yy = np.log(np.maximum(yy, EPS))
            elif self.teacher.postprocessor == "sigmoid":
                yy = _logit(yy) / self.teacher.sigmoid_alpha
            u = (1.0 - a) * margin + a * yy
        return np.asarray(u / T)
