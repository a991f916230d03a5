"""The student's training set: real rows and rows generated from them, labelled by the teacher.

The teacher labels the real rows and rows generated from them (MUNGE, leaf-box sampling or
jitter, see :func:`~treeslim.passes.generate_rows`) with soft targets
(:mod:`treeslim.distillation._soft`), optionally blended with the true labels of the real rows.
Rows are generated and labelled chunk by chunk with the C kernel, so working memory stays flat
beyond the training set itself; with a ``dask.array`` ``X`` the labelling and generation run as
dask tasks (on a cluster when a ``dask.distributed`` client is active).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim._utils import check_qid, is_dask
from treeslim.data import sampler, sampler_chunks, sampler_rows, seed_of
from treeslim.distillation._soft import SoftTargets
from treeslim.ir import Forest, categorical_features, snap_codes
from treeslim.runtime import KernelForest

__all__ = ["training_set"]

_CHUNK = 65536  # generated rows labelled at a time


def _label_block(block: NDArray[Any], teacher: Forest) -> NDArray[np.float64]:
    return KernelForest(teacher).margin(block)


def _generated_block(
    smp: Any, start: int, stop: int, n_rows: int, seed: int, cats: tuple[list[int], str]
) -> Any:
    g, b = sampler_rows(smp, start, stop, n_rows, seed)
    snap_codes(g, *cats)
    return g, b


def training_set(
    teacher: Forest,
    X: Any,
    y: ArrayLike | None = None,
    *,
    n_synthetic: int,
    augment: str,
    temperature: float = 1.0,
    alpha: float = 0.0,
    qid: ArrayLike | None = None,
    random_state: int | np.random.Generator | None = None,
    chunk_size: int = _CHUNK,
) -> tuple[NDArray[Any], NDArray[np.float64], NDArray[Any] | None]:
    """The student's training rows, soft targets ``u`` (n, K) and queries: real rows first.

    Arguments are those of :func:`distill` (checked there). Rows are stored at the teacher's
    input precision. With a ``dask.array`` ``X``, labels and generated rows are computed as dask
    tasks, one per chunk, and give the same result as a numpy ``X``.
    """

    kernel = KernelForest(teacher)
    lazy = is_dask(X)
    Xr = kernel.prepare(np.asarray(X.compute()) if lazy else X)
    cats = (categorical_features(teacher), teacher.category_rule)
    if cats[0]:  # a copy: prepare may hand back the caller's own array
        Xr = Xr.copy()
        snap_codes(Xr, *cats)
    n, d = Xr.shape
    if n == 0:
        raise ValueError("X has no rows: distill needs at least one real row.")
    yv: Any = y
    yr = None if yv is None else np.asarray(yv.compute() if is_dask(yv) else yv)
    if yr is not None and yr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per row of X; got {yr.shape}.")
    qv: Any = qid
    q = None if qv is None else check_qid(qv.compute() if is_dask(qv) else qv, n)
    if teacher.task == "ranking" and q is None:
        raise ValueError("Distilling a ranking teacher needs qid (the query of each row).")
    seed = seed_of(random_state, "distill")
    if lazy:
        margin = np.asarray(
            X.rechunk({1: -1})
            .map_blocks(
                _label_block, teacher, dtype=np.float64, chunks=(X.chunks[0], (teacher.n_outputs,))
            )
            .compute()
        )
    else:
        margin = kernel.margin_prepared(Xr)
    soft = SoftTargets(teacher, temperature, alpha, yr, q if teacher.task == "ranking" else None,
                       margin)  # fmt: skip
    qcode = None if q is None else np.unique(q, return_inverse=True)[1].astype(np.intp)
    rows = np.empty((n + n_synthetic, d), dtype=Xr.dtype)
    U = np.empty((n + n_synthetic, teacher.n_outputs))
    rows[:n] = Xr
    U[:n] = soft.targets(margin, y=yr if alpha > 0 else None, qcode=qcode)
    q_all = None if q is None else np.empty(n + n_synthetic, dtype=q.dtype)
    if q_all is not None:
        q_all[:n] = q
    if n_synthetic == 0:
        return rows, U, q_all
    method = {"none": "bootstrap"}.get(augment, augment)
    smp = sampler(Xr.astype(np.float64), method=method, forest=teacher, qid=q)
    step = max(1, min(int(chunk_size), n_synthetic))
    if lazy:
        import dask
        import dask.array as da

        shared = dask.delayed(smp, pure=True)
        parts = [
            dask.delayed(_generated_block, nout=2, pure=True)(
                shared, s, min(n_synthetic, s + step), n_synthetic, seed, cats
            )
            for s in range(0, n_synthetic, step)
        ]
        sizes = [min(n_synthetic, s + step) - s for s in range(0, n_synthetic, step)]
        G = da.concatenate(
            [da.from_delayed(p[0], (m, d), np.float64) for p, m in zip(parts, sizes, strict=True)]
        )
        B = da.concatenate(
            [da.from_delayed(p[1], (m,), np.intp) for p, m in zip(parts, sizes, strict=True)]
        )
        M = G.map_blocks(_label_block, teacher, dtype=np.float64,
                         chunks=(G.chunks[0], (teacher.n_outputs,)))  # fmt: skip
        g, b, m = dask.compute(G, B, M)
        rows[n:] = g
        U[n:] = soft.targets(np.asarray(m), qcode=None if qcode is None else qcode[b])
        if q_all is not None:
            q_all[n:] = q[b]  # type: ignore[index]
        return rows, U, q_all
    at = n
    for g, b in sampler_chunks(smp, n_synthetic, seed, step):
        gc = kernel.prepare(g)
        snap_codes(gc, *cats)
        rows[at : at + len(g)] = gc
        m = kernel.margin_prepared(gc)
        U[at : at + len(g)] = soft.targets(m, qcode=None if qcode is None else qcode[b])
        if q_all is not None:
            q_all[at : at + len(g)] = q[b]  # type: ignore[index]
        at += len(g)
    return rows, U, q_all
