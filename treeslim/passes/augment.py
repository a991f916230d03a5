"""Synthetic calibration rows: more data to measure and refit a compressed forest on.

Refitting a pruned forest toward its teacher needs rows that cover where the teacher is used. The
few labelled calibration rows are not enough (a refit overfits them), but the teacher can label as
many rows as we like, so :func:`generate_rows` makes them from the real rows by swapping feature
values between rows: marginals are kept, the joint structure is loosened. Rows are made in fixed
blocks, each from its own random stream, so the output depends only on ``random_state`` and
:func:`iter_generated_rows` can hand them out chunk by chunk with memory O(chunk).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["generate_rows", "iter_generated_rows"]

_BLOCK = 4096  # rows per random stream: fixes the output whatever the chunk size
_METHODS = ("swap", "bootstrap")


def _check(
    X: ArrayLike, n_rows: Any, method: Any, swap_prob: Any, chunk_size: Any
) -> NDArray[np.float64]:
    arr = np.asarray(X, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(
            f"X must be 2-D of shape (n_samples, n_features) with at least one row; got shape"
            f" {arr.shape}."
        )
    if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
        raise ValueError(
            f"The 'n_rows' parameter of generate_rows must be an int >= 0. Got {n_rows!r} instead."
        )
    if method not in _METHODS:
        raise ValueError(
            f"The 'method' parameter of generate_rows must be one of {_METHODS}. Got {method!r}"
            " instead."
        )
    if not isinstance(swap_prob, (int, float)) or not 0.0 <= swap_prob <= 1.0:
        raise ValueError(
            "The 'swap_prob' parameter of generate_rows must be a float in [0, 1]. Got"
            f" {swap_prob!r} instead."
        )
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise ValueError(
            f"The 'chunk_size' parameter of generate_rows must be an int >= 1. Got {chunk_size!r}"
            " instead."
        )
    return arr


def _seed(random_state: Any) -> int:
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise ValueError(
        "The 'random_state' parameter of generate_rows must be None, an int or a"
        f" numpy.random.Generator. Got {random_state!r} instead."
    )


def _block(
    X: NDArray[np.float64], b: int, n: int, seed: int, method: str, swap_prob: float
) -> NDArray[np.float64]:
    """Rows ``b * _BLOCK`` to ``b * _BLOCK + n`` of the generated stream."""
    rng = np.random.default_rng([seed, b])
    m, d = X.shape
    base = rng.integers(m, size=n)
    if method == "bootstrap" or swap_prob == 0.0:
        return X[base]
    donor = rng.integers(m, size=(n, d))
    if swap_prob < 1.0:
        donor = np.where(rng.random((n, d)) < swap_prob, donor, base[:, None])
    return X[donor, np.arange(d)]


def iter_generated_rows(
    X: ArrayLike,
    n_rows: int,
    *,
    method: str = "swap",
    swap_prob: float = 1.0,
    random_state: int | np.random.Generator | None = None,
    chunk_size: int = 16384,
) -> Iterator[NDArray[np.float64]]:
    """The rows of :func:`generate_rows`, as consecutive chunks of at most ``chunk_size`` rows.

    Parameters and output are those of :func:`generate_rows`; concatenating the chunks gives its
    result for every ``chunk_size``.

    Yields
    ------
    ndarray of shape (chunk, n_features), float64
    """
    arr = _check(X, n_rows, method, swap_prob, chunk_size)
    seed = _seed(random_state)
    cache: tuple[int, NDArray[np.float64]] | None = None
    for start in range(0, int(n_rows), int(chunk_size)):
        stop = min(int(n_rows), start + int(chunk_size))
        parts = []
        for b in range(start // _BLOCK, (stop - 1) // _BLOCK + 1):
            if cache is None or cache[0] != b:
                size = min(_BLOCK, int(n_rows) - b * _BLOCK)
                cache = (b, _block(arr, b, size, seed, method, float(swap_prob)))
            lo = max(start, b * _BLOCK) - b * _BLOCK
            hi = min(stop, (b + 1) * _BLOCK) - b * _BLOCK
            parts.append(cache[1][lo:hi])
        yield np.concatenate(parts)


def generate_rows(
    X: ArrayLike,
    n_rows: int,
    *,
    method: str = "swap",
    swap_prob: float = 1.0,
    random_state: int | np.random.Generator | None = None,
    chunk_size: int = 16384,
) -> NDArray[np.float64]:
    """Synthetic rows made from the real rows ``X`` by swapping feature values between rows.

    With ``method="swap"`` each generated row starts as a copy of a random real row, and each of its
    features is, with probability ``swap_prob``, replaced by the same feature of another random
    real row. ``swap_prob=1`` is a feature-wise bootstrap (every marginal kept, features
    independent); smaller values keep more of each row's joint structure. ``method="bootstrap"``
    copies whole rows. Missing values (NaN) are copied like any other value.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Real rows.
    n_rows : int
        Number of rows to generate.
    method : {"swap", "bootstrap"}, default="swap"
    swap_prob : float in [0, 1], default=1.0
        Probability that a feature is taken from another row than the row's base row.
    random_state : int, numpy.random.Generator or None, default=None
        Seed; the same seed gives the same rows.
    chunk_size : int, default=16384
        Rows made at a time; working memory beyond the output is O(chunk_size * n_features). It
        does not change the rows.

    Returns
    -------
    ndarray of shape (n_rows, n_features), float64

    Examples
    --------
    >>> import numpy as np
    >>> X = np.arange(12.0).reshape(4, 3)
    >>> G = generate_rows(X, 5, random_state=0)
    >>> G.shape, bool(np.all(np.isin(G[:, 1], X[:, 1])))
    ((5, 3), True)
    """
    arr = _check(X, n_rows, method, swap_prob, chunk_size)
    out = np.empty((int(n_rows), arr.shape[1]))
    start = 0
    for chunk in iter_generated_rows(
        arr,
        n_rows,
        method=method,
        swap_prob=swap_prob,
        random_state=random_state,
        chunk_size=chunk_size,
    ):
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    return out
