"""Calibration data larger than memory: ``dask.array`` / ``dask.dataframe`` (or big numpy) input.

:func:`~treeslim.compress` never needs every calibration row in memory at once. It draws a
bounded random sample of rows for the search (:func:`sample_rows`), chunk by chunk on the Dask
cluster, and afterwards scores the teacher and the chosen model on *all* rows, again chunk by
chunk (:func:`predict_chunked`); only one prediction per row comes back to the client.

The sample does not depend on how the array is chunked: whether a row is kept is decided by a
hash (SplitMix64) of its global index and the seed (of its query id for ranking, so queries stay
whole), so a numpy array and any dask chunking of it give the same sample, hence the same model.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import check_qid, is_dask
from treeslim.ir import apply_postprocessor
from treeslim.runtime import KernelForest

__all__ = ["as_dask_array", "predict_block", "predict_chunked", "sample_rows"]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def as_dask_array(obj: Any) -> Any:
    """A dask array of a dask array, DataFrame or Series (rows in order, lengths known)."""
    if hasattr(obj, "to_dask_array"):  # dask DataFrame / Series
        return obj.to_dask_array(lengths=True)
    return obj


def _uniform(keys: NDArray[Any], seed: int) -> NDArray[np.float64]:
    """A uniform [0, 1) number per integer key: SplitMix64 of key + seed (wrapping uint64)."""
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(seed % 2**64) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def _keep(n: int, qid: Any, fraction: float, seed: int, offset: int = 0) -> NDArray[np.bool_]:
    if qid is not None:
        q = np.asarray(qid)
        keys = q.astype(np.int64) if np.issubdtype(q.dtype, np.integer) else np.unique(
            q, return_inverse=True)[1]  # fmt: skip
        return _uniform(np.asarray(keys), seed) < fraction
    return _uniform(np.arange(offset, offset + n), seed) < fraction


def sample_rows(
    X: Any,
    y: Any,
    qid: Any = None,
    *,
    max_rows: int = 200_000,
    random_state: int | None = None,
) -> tuple[NDArray[np.float64], NDArray[Any], NDArray[Any] | None, int]:
    """About ``max_rows`` rows of ``(X, y, qid)`` drawn at random, as numpy; and the total rows.

    ``X`` may be a numpy array, a ``dask.array`` or a ``dask.dataframe``; with dask, rows are
    picked chunk by chunk where they live and only the sample is gathered. All rows come back
    when there are at most ``max_rows``. For ranking (``qid``), whole queries are kept.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(20.0).reshape(10, 2)
    >>> Xs, ys, _, n = sample_rows(X, np.arange(10), max_rows=5, random_state=0)
    >>> n, len(Xs) < 10, bool((Xs[:, 0] == 2 * ys).all())
    (10, True, True)
    """
    seed = 0 if random_state is None else int(random_state)
    if is_dask(X) or is_dask(y) or is_dask(qid):
        import dask
        import dask.array as da

        Xd = as_dask_array(X) if is_dask(X) else da.from_array(np.asarray(X))
        n = int(Xd.shape[0])
        yd = as_dask_array(y) if is_dask(y) else da.from_array(np.asarray(y))
        yd = yd.rechunk((Xd.chunks[0],))
        qd = None
        if qid is not None:
            qd = as_dask_array(qid) if is_dask(qid) else da.from_array(np.asarray(qid))
            if not np.isnan(qd.shape[0]) and qd.shape[0] != n:
                check_qid(np.broadcast_to(0, int(qd.shape[0])), n)  # the numpy error
            qd = qd.rechunk((Xd.chunks[0],))
        frac = min(1.0, max_rows / max(n, 1))
        if qd is not None:
            mask = qd.map_blocks(lambda q: _keep(len(q), q, frac, seed), dtype=bool)
        else:
            starts = np.concatenate([[0], np.cumsum(Xd.chunks[0])[:-1]])
            mask = da.concatenate(
                [
                    da.from_delayed(
                        dask.delayed(_keep)(int(c), None, frac, seed, int(s)), (int(c),), bool
                    )
                    for c, s in zip(Xd.chunks[0], starts, strict=True)
                ]
            )
        parts = [Xd[mask], yd[mask]] + ([qd[mask]] if qd is not None else [])
        got = dask.compute(*parts)
        Xs = np.asarray(got[0], dtype=np.float64)
        return Xs, np.asarray(got[1]), (np.asarray(got[2]) if qd is not None else None), n
    Xa = np.asarray(X, dtype=np.float64)
    n = len(Xa)
    qid = None if qid is None else check_qid(qid, n)
    if n <= max_rows:
        return Xa, np.asarray(y), None if qid is None else np.asarray(qid), n
    keep = _keep(n, qid, max_rows / n, seed)
    return Xa[keep], np.asarray(y)[keep], None if qid is None else np.asarray(qid)[keep], n


_LAST_KERNEL: tuple[Any, Any] = (None, None)  # (forest, its kernel), replaced as one tuple


def _kernel_of(forest: Any) -> Any:
    """The kernel of ``forest``, built once for consecutive chunks of the same forest (safe across
    threads: the cache is one tuple, read and replaced whole)."""
    global _LAST_KERNEL

    cached, kernel = _LAST_KERNEL
    if cached is not forest:
        kernel = KernelForest(forest)
        _LAST_KERNEL = (forest, kernel)
    return kernel


def predict_block(block: NDArray[Any], forest: Any) -> NDArray[np.float64]:
    """``forest.predict`` of one in-memory chunk, through the C kernel (built once per forest)."""
    margin = _kernel_of(forest).margin(block, 1)
    if margin.shape[1] == 1:
        margin = margin[:, 0]  # one output: shape (n,), as Forest.predict_margin gives it
    return np.asarray(apply_postprocessor(forest, margin), dtype=np.float64)


def predict_chunked(forest: Any, X: Any, *, chunk_rows: int = 65_536) -> NDArray[np.float64]:
    """``forest.predict(X)`` chunk by chunk: on the Dask cluster for dask input, else locally.

    Only the predictions are gathered (one value per row, or one per class), so the rows of a
    dask ``X`` never come to the client.
    """
    if is_dask(X):
        import dask

        Xd = as_dask_array(X).rechunk({1: -1})
        shared = dask.delayed(forest, pure=True)
        probe = predict_block(np.zeros((1, Xd.shape[1])), forest)
        k = probe.shape[1] if probe.ndim == 2 else 0
        out = Xd.map_blocks(
            predict_block,
            shared,
            dtype=np.float64,
            drop_axis=None if k else 1,
            chunks=(Xd.chunks[0], (k,)) if k else (Xd.chunks[0],),
        )
        return np.asarray(out.compute())
    Xa = np.asarray(X)
    parts = [
        predict_block(np.asarray(Xa[i : i + chunk_rows], dtype=np.float64), forest)
        for i in range(0, len(Xa), chunk_rows)
    ]
    return np.concatenate(parts) if parts else np.asarray(forest.predict(Xa))
