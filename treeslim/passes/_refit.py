"""Leaf refitting: re-estimate every leaf value of a forest jointly on calibration rows.

The margin of a forest is linear in its leaf values: on rows ``X`` it is ``base_score + M v`` with
``M`` the sparse (n_rows, n_leaves) indicator of the leaf each row reaches in each tree. After
trees or nodes are removed, :func:`refit_leaves` wins accuracy back by solving for ``v`` again:
ridge least squares toward a teacher's margins (distillation, what works best on real data), or
Newton steps on the task's own loss when labels are given. Each linear system is solved by
conjugate gradients with a Jacobi preconditioner; the structure of the forest does not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim._utils import check_qid
from treeslim.ir import Forest
from treeslim.passes._exact import record, tree_scale
from treeslim.passes._select import check_count, check_target, teacher_margin

__all__ = ["refit_leaves"]

Loss = Callable[[NDArray[np.float64]], tuple[float, NDArray[np.float64], NDArray[np.float64]]]
LossAt = Callable[[NDArray[np.float64]], Loss]  # the loss to use from these margins on


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)))


def _labels(forest: Forest, y: ArrayLike, n: int) -> NDArray[np.float64]:
    arr = np.asarray(y, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per row of X; got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError("y must be finite; it holds NaN or inf.")
    if forest.task == "binary" and not np.all((arr == 0) | (arr == 1)):
        raise ValueError("y of a binary forest must hold 0 / 1 labels.")
    k = forest.num_class
    if forest.task == "multiclass" and not np.all((arr == np.round(arr)) & (arr >= 0) & (arr < k)):
        raise ValueError(f"y of a multiclass forest must hold class indices 0..{k - 1}.")
    return arr


def _ranking_loss(y: NDArray[np.float64], qid: ArrayLike, w: NDArray[np.float64]) -> LossAt:
    """LambdaMART: pairwise logistic loss within queries, each pair weighted by the NDCG change
    of swapping it at the margins the loss is taken at."""
    n = len(y)
    q = check_qid(qid, n)
    order = np.argsort(q, kind="stable")
    groups = [g for g in np.split(order, np.flatnonzero(np.diff(q[order])) + 1) if len(g) > 1]

    def at(margin: NDArray[np.float64]) -> Loss:
        first, second, weight = [], [], []
        for idx in groups:
            rel, s = y[idx], margin[idx, 0]
            gain = 2.0**rel - 1.0
            rank = np.empty(len(idx), dtype=np.intp)
            rank[np.argsort(-s, kind="stable")] = np.arange(len(idx))
            disc = 1.0 / np.log2(rank + 2.0)
            idcg = float((np.sort(gain)[::-1] / np.log2(np.arange(len(idx)) + 2.0)).sum())
            if idcg <= 0:
                continue
            i, j = np.nonzero(rel[:, None] > rel[None, :])
            delta = np.abs((gain[i] - gain[j]) * (disc[i] - disc[j])) / idcg
            first.append(idx[i])
            second.append(idx[j])
            weight.append(delta * 0.5 * (w[idx[i]] + w[idx[j]]))
        I = np.concatenate(first) if first else np.zeros(0, dtype=np.intp)
        J = np.concatenate(second) if second else np.zeros(0, dtype=np.intp)
        W = np.concatenate(weight) if weight else np.zeros(0)

        def pairwise(m: NDArray[np.float64]) -> tuple[float, Any, Any]:
            d = m[I, 0] - m[J, 0]
            rho = _sigmoid(-d)
            grad = np.bincount(J, W * rho, n) - np.bincount(I, W * rho, n)
            hw = W * rho * (1.0 - rho)
            hess = np.bincount(I, hw, n) + np.bincount(J, hw, n)
            return float(np.sum(W * np.logaddexp(0.0, -d))), grad[:, None], hess[:, None]

        return pairwise

    return at


def _task_loss(
    forest: Forest,
    y: NDArray[np.float64],
    w: NDArray[np.float64],
    qid: ArrayLike | None,
    soft: NDArray[np.float64] | None = None,
) -> LossAt:
    """The task's loss in margin space, as a function of the margins it is taken at; ``soft``
    (n, n_outputs) replaces the one-hot labels by a teacher's probabilities."""
    task, post, a = forest.task, forest.postprocessor, forest.sigmoid_alpha
    k = forest.n_outputs
    if soft is not None:
        onehot = soft
    else:
        onehot = np.eye(k)[y.astype(np.intp)] if task == "multiclass" else y[:, None]
    wc = w[:, None]
    if task == "ranking":
        if qid is None:
            raise ValueError("Ranking with task_loss=True needs qid (the query of each row).")
        return _ranking_loss(y, qid, w)
    fixed: Loss | None = None
    if post == "identity":
        fixed = _squared(onehot, w)
    if post == "sigmoid" and task in ("binary", "multiclass"):

        def logistic(m: NDArray[np.float64]) -> tuple[float, Any, Any]:
            z = a * m
            p = _sigmoid(z)
            value = float(np.sum(wc * (np.logaddexp(0.0, z) - onehot * z)))
            return value, wc * a * (p - onehot), wc * a * a * p * (1.0 - p)

        fixed = logistic
    if post in ("softmax", "argmax") and task == "multiclass":

        def softmax(m: NDArray[np.float64]) -> tuple[float, Any, Any]:
            z = m - m.max(axis=1, keepdims=True)
            lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
            p = np.exp(z - lse)
            value = float(np.sum(wc * (lse - (onehot * z).sum(axis=1, keepdims=True))))
            return value, wc * (p - onehot), wc * p * (1.0 - p)

        fixed = softmax
    if post == "exponential" and task == "regression":

        def poisson(m: NDArray[np.float64]) -> tuple[float, Any, Any]:
            mu = np.exp(np.minimum(m, 700.0))
            return float(np.sum(wc * (mu - onehot * m))), wc * (mu - onehot), wc * mu

        fixed = poisson
    if fixed is None:
        raise ValueError(
            f"refit_leaves has no task loss for task={task!r} with postprocessor={post!r}; refit"
            " toward a teacher instead (target_margin=...)."
        )
    found = fixed
    return lambda margin: found


def _teacher_proba(forest: Forest, t: NDArray[np.float64]) -> NDArray[np.float64]:
    """The probabilities a classifier's link gives to margins ``t`` (n, n_outputs)."""
    post = forest.postprocessor
    if forest.task == "multiclass" and post in ("softmax", "argmax"):
        z = t - t.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True))
    if forest.task in ("binary", "multiclass") and post == "sigmoid":
        return _sigmoid(forest.sigmoid_alpha * t)
    raise ValueError(
        f"teacher_loss='cross_entropy' needs a classifier with a softmax or sigmoid link; this"
        f" forest has task={forest.task!r}, postprocessor={post!r}. Use teacher_loss='squared'."
    )


def _squared(target: NDArray[np.float64], w: NDArray[np.float64]) -> Loss:
    wc = w[:, None]

    def squared(m: NDArray[np.float64]) -> tuple[float, Any, Any]:
        r = m - target
        return 0.5 * float(np.sum(wc * r * r)), wc * r, np.broadcast_to(wc, r.shape)

    return squared


Design = tuple[Any, NDArray[np.intp], list[int]]


def _designs(forest: Forest, leaves: NDArray[np.int64]) -> list[Design]:
    """Per group of outputs sharing trees: (sparse design (n, L), global node ids of its L
    leaves, the outputs it serves, which are also its leaf_value columns for vector leaves).

    Vector leaves give one design for every output; one output per tree gives one per class.
    A class without trees gets an empty design (L = 0).
    """
    from scipy import sparse

    n = leaves.shape[0]
    scale = tree_scale(forest)

    def design(members: NDArray[np.intp]) -> tuple[Any, NDArray[np.intp]]:
        sub = leaves[:, members]
        reached = np.zeros(forest.n_nodes, dtype=bool)
        reached[sub] = True
        ids = np.flatnonzero(reached)  # sorted, as np.unique(sub) but without sorting
        cols = (np.cumsum(reached, dtype=np.int32) - 1)[sub].ravel()
        data = np.broadcast_to(scale[members], sub.shape).ravel()
        indptr = np.arange(n + 1, dtype=np.int64) * len(members)
        return sparse.csr_matrix((data, cols, indptr), shape=(n, len(ids))), ids

    if forest.leaf_width > 1:
        return [(*design(np.arange(forest.n_trees)), list(range(forest.n_outputs)))]
    return [(*design(np.flatnonzero(forest.tree_class == c)), [c]) for c in range(forest.n_outputs)]


def _solve(
    M: Any, H: NDArray[np.float64], rhs: NDArray[np.float64], l2: float, maxiter: int
) -> NDArray[np.float64]:
    """Column ``j`` of ``X`` solves ``(M.T diag(H[:, j]) M + l2 I) x = rhs[:, j]``.

    Conjugate gradients with a Jacobi preconditioner, all columns in lockstep, so the design is
    read once per iteration for every output; a column stops when its residual falls to 1e-7
    of its right-hand side.
    """
    MT = M.T.tocsr()
    diag = np.asarray(M.multiply(M).T @ H) + l2
    inv = 1.0 / np.maximum(diag, 1e-12 * max(float(diag.max(initial=0.0)), 1e-300))
    X = np.zeros_like(rhs)
    R = rhs.copy()
    Z = inv * R
    P = Z.copy()
    rz = np.einsum("ij,ij->j", R, Z)
    stop = 1e-7 * np.linalg.norm(rhs, axis=0)
    for _ in range(maxiter):
        active = np.linalg.norm(R, axis=0) > stop
        if not active.any():
            break
        AP = MT @ (H * (M @ P)) + l2 * P
        pap = np.einsum("ij,ij->j", P, AP)
        ok = active & (pap > 0)
        alpha = np.where(ok, rz / np.where(ok, pap, 1.0), 0.0)
        X += alpha * P
        R -= alpha * AP
        Z = inv * R
        rz_new = np.einsum("ij,ij->j", R, Z)
        ok = active & (rz > 0)
        P = Z + np.where(ok, rz_new / np.where(ok, rz, 1.0), 0.0) * P
        rz = rz_new
    return X


def _check_refit_args(
    l2: Any, y: Any, target_margin: Any, task_loss: bool, teacher_loss: str
) -> None:
    """The combinations of targets and losses refit_leaves accepts."""
    if not isinstance(l2, (int, float)) or isinstance(l2, bool) or not l2 >= 0:
        raise ValueError(f"The 'l2' parameter of refit_leaves must be a float >= 0. Got {l2!r}.")
    if target_margin is not None and (task_loss or y is not None):
        raise ValueError(
            "refit_leaves fits either a teacher's target_margin or labels y; got both. Pass"
            " target_margin alone (distillation) or y with task_loss=True."
        )
    if target_margin is None and y is None:
        raise ValueError(
            "refit_leaves needs target_margin (the teacher's margins on X) or labels y."
        )
    if teacher_loss not in ("squared", "cross_entropy"):
        raise ValueError(
            "The 'teacher_loss' parameter of refit_leaves must be 'squared' or 'cross_entropy'."
            f" Got {teacher_loss!r} instead."
        )
    if teacher_loss != "squared" and target_margin is None:
        raise ValueError(
            f"teacher_loss={teacher_loss!r} applies to a teacher's target_margin; with labels y"
            " use task_loss=True."
        )


def _newton(
    forest: Forest,
    designs: Any,
    margin: NDArray[np.float64],
    loss_at: LossAt,
    l2: float,
    n_newton: int,
    n_cg: int,
) -> NDArray[np.float64]:
    """Leaf values after up to ``n_newton`` Newton steps on ``loss_at`` plus the ridge penalty
    toward the current values, each step halved until the objective does not rise."""
    v0 = forest.leaf_value.copy()
    v = v0.copy()
    for _ in range(n_newton):
        fn = loss_at(margin)
        value, g, h = fn(margin)
        value += 0.5 * l2 * float(np.sum((v - v0) ** 2))
        step = np.zeros_like(v)
        dm = np.zeros_like(margin)
        for M, ids, outs in designs:
            if not len(ids):
                continue
            cols = np.ix_(ids, np.asarray(outs if forest.leaf_width > 1 else [0], dtype=np.intp))
            rhs = -(M.T @ g[:, outs]) - l2 * (v[cols] - v0[cols])
            step[cols] = _solve(M, np.asarray(h[:, outs], dtype=np.float64), rhs, l2, n_cg)
            dm[:, outs] = M @ step[cols]
        eta = 1.0
        for _ in range(30):  # step halving until the objective does not rise
            new_v = v + eta * step
            new_value = fn(margin + eta * dm)[0] + 0.5 * l2 * float(np.sum((new_v - v0) ** 2))
            if new_value <= value:
                break
            eta *= 0.5
        else:
            break
        v, margin = new_v, margin + eta * dm
        if value - new_value <= 1e-9 * max(abs(value), 1e-300):
            break
    return v


def refit_leaves(
    forest: Forest,
    X: ArrayLike,
    y: ArrayLike | None = None,
    *,
    target_margin: ArrayLike | None = None,
    task_loss: bool = False,
    l2: float = 1e-3,
    qid: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    max_newton: int = 8,
    max_cg: int = 100,
    teacher_loss: str = "squared",
) -> Forest:
    """Re-estimate all leaf values jointly on ``X``; the trees' structure stays as it is.

    With ``target_margin`` (a teacher's margins on ``X``) the leaves solve the ridge least squares
    problem ``min sum_i w_i ||m_i - t_i||^2 + l2 ||v - v0||^2`` (``v0``: the current leaf values),
    one system per output. With labels ``y`` and ``task_loss=True`` they take Newton steps, with
    step halving, on the task's loss in margin space: logistic for sigmoid links, softmax
    cross-entropy (per-class diagonal Hessian) for multiclass, Poisson for exponential links,
    squared error for identity links (regression, and forests whose margins are probabilities),
    and for ranking the LambdaMART loss: pairwise logistic within each query of ``qid``, pairs
    weighted by their NDCG change. ``base_score`` is kept.

    Parameters
    ----------
    forest : Forest
    X : array-like of shape (n_samples, n_features)
        Calibration rows.
    y : array-like of shape (n_samples,), optional
        Labels: 0/1, class indices, targets or relevance grades, as the task has them.
    target_margin : array-like of shape (n_samples,) or (n_samples, n_outputs), optional
        The teacher's margins on ``X``; excludes ``task_loss``.
    task_loss : bool, default=False
        Fit ``y`` with the task's loss; if False, ``y`` is fitted by squared error in margin space
        (regression with an identity link only).
    l2 : float, default=1e-3
        Ridge penalty on the change of each leaf value, in units of (weighted) rows.
    qid : array-like of shape (n_samples,), optional
        Query of each row (ranking with ``task_loss=True``).
    sample_weight : array-like of shape (n_samples,), optional
        Row weights (normalized to mean 1).
    max_newton : int, default=8
        Newton steps on a task loss (one suffices for squared error).
    max_cg : int, default=100
        Conjugate gradient iterations per linear system.
    teacher_loss : {"squared", "cross_entropy"}, default="squared"
        How leaves fit ``target_margin``: squared error on the margins, or (classifiers with a
        softmax or sigmoid link) Newton steps on the cross-entropy to the teacher's
        probabilities, which spends no effort on the margins of classes a row is far from.

    Returns
    -------
    Forest
        Same trees and ``base_score``, new leaf values.

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim import Forest
    >>> f = Forest(split_index=[0, -1, -1], threshold=[0.0, 0, 0], cleft=[1, -1, -1],
    ...            cright=[2, -1, -1], default_left=[True, False, False],
    ...            leaf_value=[0, 0.0, 0.0], tree_offsets=[0, 3], tree_class=[0],
    ...            num_feature=1, task="regression")
    >>> X = np.array([[-1.0], [1.0]])
    >>> refit_leaves(f, X, target_margin=[-2.0, 3.0]).predict_margin(X).round(2)
    array([-2.,  3.])
    """
    _check_refit_args(l2, y, target_margin, task_loss, teacher_loss)
    n_newton = check_count(max_newton, "max_newton", "refit_leaves")
    n_cg = check_count(max_cg, "max_cg", "refit_leaves")
    kernel, Xc, margin = teacher_margin(forest, X, None)
    n = Xc.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"sample_weight must hold {n} finite non-negative weights, not all 0.")
    w = w * (n / w.sum())
    loss_at: LossAt
    if target_margin is not None and teacher_loss == "cross_entropy":
        loss_at = _task_loss(forest, np.zeros(n), w, None,
                             soft=_teacher_proba(forest, check_target(forest, target_margin, n)))  # fmt: skip
    elif target_margin is not None:
        squared = _squared(check_target(forest, target_margin, n), w)
        loss_at, n_newton = (lambda margin: squared), 1
    elif y is not None:
        labels = _labels(forest, y, n)
        if task_loss:
            loss_at = _task_loss(forest, labels, w, qid)
        elif forest.task == "regression" and forest.postprocessor == "identity":
            squared = _squared(labels[:, None], w)
            loss_at, n_newton = (lambda margin: squared), 1
        else:
            raise ValueError(
                f"Squared error between margins and labels only makes sense for regression with"
                f" an identity link; for task={forest.task!r} pass task_loss=True or a teacher's"
                " target_margin."
            )
    v = _newton(forest, _designs(forest, kernel.leaves(Xc)), margin, loss_at, l2, n_newton, n_cg)
    leaf = forest.split_index < 0
    v = np.where(leaf[:, None], v, 0.0)
    mode = "task_loss" if task_loss else "labels"
    if target_margin is not None:
        mode = "teacher" if teacher_loss == "squared" else "teacher_cross_entropy"
    return forest.replace(
        leaf_value=v,
        source=record(forest, {"name": "refit_leaves", "lossy": True, "fit": mode, "l2": l2,
                               "rows": n}),
    )  # fmt: skip
