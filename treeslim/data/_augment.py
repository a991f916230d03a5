"""Synthetic rows: more data to refit a compressed forest on, or to distill a teacher into.

Refitting a pruned forest toward its teacher, or training a student to mimic it, needs rows that
cover where the teacher is used. The few labelled rows are not enough (a refit overfits them), but
the teacher can label as many rows as we like, so :func:`generate_rows` makes them from the real
rows: by swapping feature values between rows, MUNGE (Bucila et al., 2006), Gaussian jitter, or
sampling inside the teacher's leaf boxes (the samplers live in :mod:`treeslim.data._munge`). Rows
are made in fixed blocks, each from its own random stream, so the output depends only on
``random_state`` and :func:`iter_generated_rows` can hand them out chunk by chunk with memory
O(chunk).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.data._munge import Sampler, make_sampler

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = ["generate_rows", "iter_generated_rows"]

_BLOCK = 4096  # rows per random stream: fixes the output whatever the chunk size
_METHODS = ("swap", "bootstrap", "munge", "jitter", "leaf-box")
_DEFAULT_SWAP = {"munge": 0.5}
_DEFAULT_NOISE = {"munge": 1.0, "jitter": 0.1}


def _real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _check(
    X: ArrayLike, n_rows: Any, method: Any, swap_prob: Any, chunk_size: Any, noise: Any = None
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
    if swap_prob is not None and (not _real(swap_prob) or not 0.0 <= swap_prob <= 1.0):
        raise ValueError(
            "The 'swap_prob' parameter of generate_rows must be a float in [0, 1]. Got"
            f" {swap_prob!r} instead."
        )
    if noise is not None and (not _real(noise) or not 0.0 <= noise < np.inf):
        raise ValueError(
            f"The 'noise' parameter of generate_rows must be a float >= 0. Got {noise!r} instead."
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


def seed_of(random_state: Any, fn: str = "generate_rows") -> int:
    """One int seed from ``random_state`` (an int, a Generator, or None for fresh entropy)."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        return int(random_state)
    raise ValueError(
        f"The 'random_state' parameter of {fn} must be None, an int or a"
        f" numpy.random.Generator. Got {random_state!r} instead."
    )


def sampler(
    X: ArrayLike,
    *,
    method: str = "swap",
    swap_prob: float | None = None,
    noise: float | None = None,
    forest: Forest | None = None,
    qid: ArrayLike | None = None,
) -> Sampler:
    """The prepared :class:`~treeslim.data.Sampler` of ``method`` on the real rows ``X``."""
    arr = _check(X, 0, method, swap_prob, 1, noise)
    return make_sampler(
        arr,
        method,
        swap_prob=_DEFAULT_SWAP.get(method, 1.0) if swap_prob is None else float(swap_prob),
        noise=_DEFAULT_NOISE.get(method, 0.0) if noise is None else float(noise),
        forest=forest,
        qid=qid,
    )


def sampler_rows(
    smp: Sampler, start: int, stop: int, n_rows: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Rows ``start:stop`` of a stream of ``n_rows`` generated rows, with their base rows."""
    rows, bases = [], []
    for b in range(start // _BLOCK, (stop - 1) // _BLOCK + 1):
        block, base = smp.block(b, min(_BLOCK, n_rows - b * _BLOCK), seed)
        lo = max(start, b * _BLOCK) - b * _BLOCK
        hi = min(stop, (b + 1) * _BLOCK) - b * _BLOCK
        rows.append(block[lo:hi])
        bases.append(base[lo:hi])
    return np.concatenate(rows), np.concatenate(bases)


def sampler_chunks(
    smp: Sampler, n_rows: int, seed: int, chunk_size: int
) -> Iterator[tuple[NDArray[np.float64], NDArray[np.intp]]]:
    """Consecutive chunks of the generated stream with the real row each generated row came from.

    A block cut by a chunk boundary is made once and kept for the next chunk.
    """
    cache: tuple[int, tuple[NDArray[np.float64], NDArray[np.intp]]] | None = None
    for start in range(0, int(n_rows), int(chunk_size)):
        stop = min(int(n_rows), start + int(chunk_size))
        rows, bases = [], []
        for b in range(start // _BLOCK, (stop - 1) // _BLOCK + 1):
            if cache is None or cache[0] != b:
                cache = (b, smp.block(b, min(_BLOCK, int(n_rows) - b * _BLOCK), seed))
            lo = max(start, b * _BLOCK) - b * _BLOCK
            hi = min(stop, (b + 1) * _BLOCK) - b * _BLOCK
            rows.append(cache[1][0][lo:hi])
            bases.append(cache[1][1][lo:hi])
        yield np.concatenate(rows), np.concatenate(bases)


def iter_generated_rows(
    X: ArrayLike,
    n_rows: int,
    *,
    method: str = "swap",
    swap_prob: float | None = None,
    noise: float | None = None,
    forest: Forest | None = None,
    qid: ArrayLike | None = None,
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
    _check(X, n_rows, method, swap_prob, chunk_size, noise)
    smp = sampler(X, method=method, swap_prob=swap_prob, noise=noise, forest=forest, qid=qid)
    for rows, _ in sampler_chunks(smp, n_rows, seed_of(random_state), chunk_size):
        yield rows


def generate_rows(
    X: ArrayLike,
    n_rows: int,
    *,
    method: str = "swap",
    swap_prob: float | None = None,
    noise: float | None = None,
    forest: Forest | None = None,
    qid: ArrayLike | None = None,
    random_state: int | np.random.Generator | None = None,
    chunk_size: int = 16384,
) -> NDArray[np.float64]:
    """Synthetic rows made from the real rows ``X``.

    Every generated row starts as a copy of a random real row (its base row), then:

    - ``"swap"``: each feature is, with probability ``swap_prob``, replaced by the same feature of
      another random real row. ``swap_prob=1`` is a feature-wise bootstrap (every marginal kept,
      features independent); smaller values keep more of each row's joint structure.
    - ``"bootstrap"``: nothing (whole real rows).
    - ``"munge"`` (Bucila, Caruana & Niculescu-Mizil, 2006): each feature, with probability
      ``swap_prob`` (default 0.5), is drawn from a normal centred on the base row's nearest
      neighbour's value with standard deviation ``noise * |x - x_nn|`` (default ``noise=1``, the
      paper's local variance ``1/s``). Discrete features (integer values, at most 32 distinct)
      take the neighbour's value. Neighbours are found once among the real rows, on standardized
      features with NaN imputed by the mean plus one missing-indicator column per feature with
      NaN.
    - ``"jitter"``: continuous features get Gaussian noise of ``noise`` (default 0.1) times the
      feature's standard deviation.
    - ``"leaf-box"``: the features tested on the base row's path through one random tree of
      ``forest`` are redrawn uniformly inside that leaf's box (intersected with the range of the
      real values), strictly on the side of each split the path takes, at the forest's input
      precision, so the row stays in that leaf.

    MUNGE, jitter and leaf-box values stay within each feature's observed [min, max] and are
    integers for features whose observed values all are (counts, codes). Missing values (NaN) of
    the base row stay missing unless a feature is redrawn. With ``qid``
    (ranking), swaps and neighbours come from the base row's own query, so a generated row
    belongs to its base row's query.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Real rows.
    n_rows : int
        Number of rows to generate.
    method : {"swap", "bootstrap", "munge", "jitter", "leaf-box"}, default="swap"
    swap_prob : float in [0, 1], optional
        ``"swap"``: probability that a feature comes from another row (default 1);
        ``"munge"``: probability that a feature moves to the neighbour's (default 0.5).
    noise : float >= 0, optional
        Noise scale of ``"munge"`` and ``"jitter"`` (see above).
    forest : Forest, optional
        The teacher whose leaf boxes ``"leaf-box"`` samples (required there).
    qid : array-like of shape (n_samples,), optional
        Query id of each real row: generated rows stay within their base row's query.
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
    arr = _check(X, n_rows, method, swap_prob, chunk_size, noise)
    out = np.empty((int(n_rows), arr.shape[1]))
    start = 0
    for chunk in iter_generated_rows(
        arr,
        n_rows,
        method=method,
        swap_prob=swap_prob,
        noise=noise,
        forest=forest,
        qid=qid,
        random_state=random_state,
        chunk_size=chunk_size,
    ):
        out[start : start + len(chunk)] = chunk
        start += len(chunk)
    return out
