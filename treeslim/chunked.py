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

__all__ = ["evaluate_chunked", "is_dask", "predict_chunked", "sample_rows"]

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def is_dask(obj: Any) -> bool:
    """True for dask collections (arrays, dataframes, series), without importing dask."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(obj, "dask")


def _as_dask_array(obj: Any) -> Any:
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

        Xd = _as_dask_array(X) if is_dask(X) else da.from_array(np.asarray(X))
        n = int(Xd.shape[0])
        yd = _as_dask_array(y) if is_dask(y) else da.from_array(np.asarray(y))
        yd = yd.rechunk((Xd.chunks[0],))
        qd = None
        if qid is not None:
            qd = _as_dask_array(qid) if is_dask(qid) else da.from_array(np.asarray(qid))
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
    if n <= max_rows:
        return Xa, np.asarray(y), None if qid is None else np.asarray(qid), n
    keep = _keep(n, qid, max_rows / n, seed)
    return Xa[keep], np.asarray(y)[keep], None if qid is None else np.asarray(qid)[keep], n


_LAST_KERNEL: tuple[Any, Any] = (None, None)  # (forest, its kernel), replaced as one tuple


def _kernel_of(forest: Any) -> Any:
    """The kernel of ``forest``, built once for consecutive chunks of the same forest (safe across
    threads: the cache is one tuple, read and replaced whole)."""
    global _LAST_KERNEL
    from ._kernel import KernelForest

    cached, kernel = _LAST_KERNEL
    if cached is not forest:
        kernel = KernelForest(forest)
        _LAST_KERNEL = (forest, kernel)
    return kernel


def _predict_block(block: NDArray[Any], forest: Any) -> NDArray[np.float64]:
    from ._predict import apply_postprocessor

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

        Xd = _as_dask_array(X).rechunk({1: -1})
        shared = dask.delayed(forest, pure=True)
        probe = _predict_block(np.zeros((1, Xd.shape[1])), forest)
        k = probe.shape[1] if probe.ndim == 2 else 0
        out = Xd.map_blocks(
            _predict_block,
            shared,
            dtype=np.float64,
            drop_axis=None if k else 1,
            chunks=(Xd.chunks[0], (k,)) if k else (Xd.chunks[0],),
        )
        return np.asarray(out.compute())
    Xa = np.asarray(X)
    parts = [
        _predict_block(np.asarray(Xa[i : i + chunk_rows], dtype=np.float64), forest)
        for i in range(0, len(Xa), chunk_rows)
    ]
    return np.concatenate(parts) if parts else np.asarray(forest.predict(Xa))


_BINS = 1 << 16  # probability bins of the streamed AUC


def _block_stats(
    block: NDArray[Any], yb: NDArray[Any], forest: Any, classes: Any
) -> NDArray[np.float64]:
    """Mergeable sums of one chunk: what :func:`evaluate_chunked` needs, whatever the rows."""
    p = _predict_block(np.asarray(block, dtype=np.float64), forest)
    y = np.asarray(yb)
    if classes is not None:
        y = np.searchsorted(classes, y)
    n = float(len(y))
    if forest.task == "binary":
        pos = y == 1
        idx = np.minimum((p * _BINS).astype(np.int64), _BINS - 1)
        q = np.clip(p, 1e-15, 1 - 1e-15)
        ll = -np.sum(np.where(pos, np.log(q), np.log1p(-q)))
        hist = np.concatenate([np.bincount(idx[pos], minlength=_BINS),
                               np.bincount(idx[~pos], minlength=_BINS)])  # fmt: skip
        return np.concatenate([hist, [np.sum((p >= 0.5) == pos), ll, n]]).astype(np.float64)
    if forest.task == "multiclass":
        if p.ndim == 1:
            return np.array([np.sum(p == y), np.nan, n])
        q = np.clip(p, 1e-15, 1.0)
        q = q / q.sum(axis=1, keepdims=True)
        ll = -np.sum(np.log(q[np.arange(len(y)), y]))
        return np.array([np.sum(p.argmax(axis=1) == y), ll, n])
    y = y.astype(np.float64)
    return np.array([n, y.sum(), (y**2).sum(), ((p - y) ** 2).sum()])


def _stats_to_metrics(task: str, s: NDArray[np.float64]) -> dict[str, float]:
    if task == "binary":
        pos, neg = s[:_BINS], s[_BINS : 2 * _BINS]
        correct, ll, n = s[2 * _BINS :]
        below = np.cumsum(neg) - neg  # negatives in lower bins
        npos, nneg = pos.sum(), neg.sum()
        auc = float((pos * below).sum() + 0.5 * (pos * neg).sum()) / (npos * nneg)
        return {"auc": auc if npos and nneg else float("nan"), "accuracy": correct / n,
                "logloss": ll / n}  # fmt: skip
    if task == "multiclass":
        correct, ll, n = s
        out = {"accuracy": float(correct / n)}
        if np.isfinite(ll):
            out["logloss"] = float(ll / n)
        return out
    n, sy, syy, sse = s
    sst = syy - sy * sy / n
    return {"rmse": float(np.sqrt(sse / n)), "r2": float(1 - sse / sst) if sst > 0 else 0.0}


def evaluate_chunked(
    forest: Any, X: Any, y: Any, *, classes: Any = None, chunk_rows: int = 65_536
) -> dict[str, float]:
    """:func:`treeslim.metrics.evaluate` of ``forest`` on every row, with memory bounded by a chunk.

    Each chunk (on the Dask cluster for dask input) is reduced to mergeable sums; only those come
    back, so client memory does not grow with the rows. AUC is computed from predicted
    probabilities binned 65,536 ways (ties within a bin count one half: within about 1e-5 of the
    exact value); accuracy, log-loss, RMSE and R^2 are exact. ``classes`` maps labels to class
    indices. Ranking (per-query NDCG) is not streamed: use :func:`predict_chunked`.
    """
    if forest.task == "ranking":
        raise ValueError(
            "evaluate_chunked: ranking metrics need whole queries; use predict_chunked."
        )
    cls = None if classes is None else np.asarray(classes)
    if is_dask(X) or is_dask(y):
        import dask
        import dask.array as da

        Xd = (_as_dask_array(X) if is_dask(X) else da.from_array(np.asarray(X))).rechunk({1: -1})
        yd = _as_dask_array(y) if is_dask(y) else da.from_array(np.asarray(y))
        yd = yd.rechunk((Xd.chunks[0],))
        shared = dask.delayed(forest, pure=True)
        parts = [dask.delayed(_block_stats)(xb, yb, shared, cls)
                 for xb, yb in zip(Xd.to_delayed().ravel(), yd.to_delayed().ravel(), strict=True)]  # fmt: skip
        while len(parts) > 1:  # pairwise tree reduction on the cluster
            parts = [dask.delayed(np.add)(*parts[i : i + 2]) if i + 1 < len(parts) else parts[i]
                     for i in range(0, len(parts), 2)]  # fmt: skip
        total = np.asarray(parts[0].compute())
    else:
        Xa, ya = np.asarray(X), np.asarray(y)
        from functools import reduce

        total = reduce(
            np.add,
            (_block_stats(Xa[i : i + chunk_rows], ya[i : i + chunk_rows], forest, cls)
             for i in range(0, len(Xa), chunk_rows)),
        )  # fmt: skip
    return _stats_to_metrics(forest.task, total)
