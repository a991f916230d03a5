"""The least-squares side of tree selection: which columns (trees) fit a target best, in what
order, and with what weights. Every column is one tree's output on the calibration rows; ``A``
and ``b`` arrive centred (intercepts are fitted apart)."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import lapack

__all__ = ["greedy", "greedy_path", "lasso_order", "ls_weights", "order_columns", "prefix_weights"]


def greedy(A: NDArray[np.float64], b: NDArray[np.float64], k: int) -> list[int]:
    """Orthogonal least squares: the ``k`` columns of centred ``A`` that best fit centred ``b``."""
    return greedy_path(A, b, k)[0]


def greedy_path(
    A: NDArray[np.float64], b: NDArray[np.float64], k: int
) -> tuple[list[int], NDArray[np.float64], NDArray[np.float64]]:
    """:func:`greedy`'s columns ``chosen`` and the least-squares fit of every prefix of them:
    ``(chosen, U, beta)`` with ``U`` (m x m, upper triangular) the orthonormal directions in the
    chosen columns' coordinates and ``beta = A.T b`` along them, so the weights of the first
    ``j`` columns are ``beta[:j] @ U[:j, :j]`` (:func:`prefix_weights`).

    Each step adds the column whose residual (after projecting out the chosen ones) explains the
    most of the current residual. The work happens in column space, on the Gram matrix
    ``G = A.T A`` (one BLAS-3 product): the ``m``-th orthonormal direction is ``q_m = A u_m``,
    so ``A.T q_m = G u_m`` and ``b . q_m = (A.T b) . u_m``; Gram-Schmidt runs twice on ``u``.
    """
    G = A.T @ A
    corr0 = A.T @ b
    corr = corr0.copy()  # A.T @ (current residual)
    norms = np.diag(G).copy()  # squared norms of the columns' parts orthogonal to the chosen
    floor = 1e-10 * max(float(norms.max(initial=0.0)), 1e-300)
    p = A.shape[1]
    k = min(k, p)
    U = np.zeros((k, p))  # q_m = A @ U[m]
    C = np.zeros((k, p))  # A.T @ q_m
    chosen: list[int] = []
    while len(chosen) < k:
        score = np.where(norms > floor, corr**2 / np.maximum(norms, floor), -1.0)
        score[chosen] = -1.0
        j = int(np.argmax(score))
        if score[j] < 0:
            break  # every remaining column is (numerically) spanned by the chosen ones
        m = len(chosen)
        u = np.zeros(p)
        u[j] = 1.0
        for _ in range(2):  # Gram-Schmidt twice: stays orthogonal in floating point
            u -= (C[:m] @ u) @ U[:m]
        c = G @ u
        nq2 = float(u @ c)
        if nq2 <= floor:
            norms[j] = 0.0
            continue
        nq = math.sqrt(nq2)
        u /= nq
        c /= nq
        norms -= c**2
        corr -= float(corr0 @ u) * c
        U[m], C[m] = u, c
        chosen.append(j)
    m = len(chosen)
    Uc = U[:m][:, chosen]
    c0 = corr0[chosen]
    # each coefficient from its own prefix only, so a shorter path gives bit-identical ones
    beta = np.array([Uc[i, : i + 1] @ c0[: i + 1] for i in range(m)])
    return chosen, Uc, beta


def prefix_weights(
    U: NDArray[np.float64], beta: NDArray[np.float64], j: int
) -> NDArray[np.float64]:
    """Least-squares weights of the first ``j`` columns :func:`greedy_path` chose."""
    return np.asarray(beta[:j] @ U[:j, :j], dtype=np.float64)


def lasso_order(A: NDArray[np.float64], b: NDArray[np.float64], k: int) -> list[int]:
    """The first ``k`` columns to become non-zero on the non-negative lasso path (LARS), in the
    order they enter it."""
    from sklearn.linear_model import lars_path_gram

    gram = A.T @ A
    _, _, coefs = lars_path_gram(
        A.T @ b, gram, n_samples=A.shape[0], max_iter=4 * A.shape[1], method="lasso",
        positive=True,
    )  # fmt: skip
    coefs = np.asarray(coefs).reshape(A.shape[1], -1)
    active = coefs != 0
    entered = np.flatnonzero(active.any(axis=1))
    # order of entry on the path (ties: larger coefficient first), so every k is a prefix
    first = active[entered].argmax(axis=1)
    at_entry = coefs[entered, first]
    return entered[np.lexsort((-at_entry, first))][:k].tolist()


def ls_weights(
    A: NDArray[np.float64], b: NDArray[np.float64], cols: list[int], positive: bool
) -> NDArray[np.float64]:
    """Least-squares weights of the chosen (centred) columns; minimum change from 1 if not unique."""
    sub = A[:, cols]
    if positive:
        from scipy.optimize import nnls

        return np.asarray(nnls(sub, b)[0], dtype=np.float64)
    rhs = b - sub.sum(axis=1)
    # The chosen columns are independent (forward selection skips spanned ones), so the normal
    # equations are solved by Cholesky, ~10x faster than an SVD of the tall matrix; when they
    # are ill-conditioned (reciprocal condition < 1e-10), the SVD's minimum-norm solution.
    gram = sub.T @ sub
    factor, info = lapack.dpotrf(gram)
    if info == 0:
        rcond, info = lapack.dpocon(factor, np.abs(gram).sum(axis=0).max())
        if info == 0 and rcond > 1e-10:
            delta = lapack.dpotrs(factor, sub.T @ rhs)[0]
            return np.asarray(1.0 + delta, dtype=np.float64)
    delta = np.linalg.lstsq(sub, rhs, rcond=None)[0]
    return np.asarray(1.0 + delta, dtype=np.float64)


def order_columns(A: NDArray[np.float64], b: NDArray[np.float64], k: int, method: str) -> list[int]:
    return greedy(A, b, k) if method == "greedy" else lasso_order(A, b, k)
