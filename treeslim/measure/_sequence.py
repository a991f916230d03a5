"""The chain of proposals the fixed-sequence test certifies (:mod:`treeslim.measure._certify`),
chosen before the certification rows are read: which proposals, in which order."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["pass_chance", "sequence_order"]


def pass_chance(
    loss: float, se: float, *, max_loss: float, confidence: float, margin: float
) -> float:
    """The chance, judged before the certification rows are seen, that a proposal passes
    certification: its certification loss is taken as normal around the judged ``loss``, with
    the judged error ``se`` and the certification's own (``se`` scaled by ``margin / z``, the
    square root of judge over certification rows) combined, and it passes when that loss plus
    ``z`` certification errors fits ``max_loss`` (``z`` the one-sided quantile at
    ``confidence``). A proposal with identical predictions on the judge rows (``se == 0``)
    passes for sure when its loss fits."""
    from scipy.stats import norm

    z = float(norm.ppf(confidence))
    s_cert = se * margin / z
    spread = math.hypot(se, s_cert)
    room = max_loss - loss - z * s_cert
    if spread == 0.0:
        return 1.0 if room >= 0 else 0.0
    return float(norm.cdf(room / spread))


def sequence_order(
    sizes: Sequence[Any],
    losses: Sequence[float],
    ses: Sequence[float],
    *,
    original: float,
    max_loss: float,
    confidence: float,
    margin: float,
) -> list[int]:
    """The proposals to certify, in order, chosen before the certification rows are seen: of the
    chains from larger to smaller (``sizes`` compared as given, numbers or tuples whose first
    element is the size paid for), the one with the largest expected log size reduction
    against ``original``, each proposal passing with :func:`pass_chance` (judged ``losses``
    and standard errors ``ses``, independently).

    The fixed-sequence test stops at the first failure, so every proposal in the chain risks
    ending it: a noisy proposal (large standard error) in front of better bets costs more than
    it can bring, and is left out. A larger proposal only goes first when passing it leaves
    smaller ones to gain from. Every proposal the chain certifies before its first failure is
    certified at once, so the caller returns the smallest of them. Which proposals are left
    out changes the power of the test, never its level.

    Examples
    --------
    A sure bet (identical predictions, loss 0), then a likely one; the noisy proposal of 60
    would end the chain half the time and is left out:

    >>> sequence_order([100, 60, 30], [0.0, -0.004, 0.001], [0.0, 0.006, 0.001],
    ...                original=200, max_loss=0.005, confidence=0.95, margin=1.645)
    [0, 2]
    """
    n = len(sizes)
    by_size = sorted(range(n), key=lambda i: (sizes[i], -losses[i]), reverse=True)
    first = [float(s[0] if isinstance(s, tuple) else s) for s in (sizes[i] for i in by_size)]
    value = [math.log(original / max(s, 1e-300)) for s in first]
    chance = [pass_chance(losses[i], ses[i], max_loss=max_loss, confidence=confidence,
                          margin=margin) for i in by_size]  # fmt: skip
    # gain[a]: the expected further log reduction once position a has passed (a == n: start)
    gain, step = [0.0] * (n + 1), [-1] * (n + 1)
    for a in [*range(n - 1, -1, -1), n]:
        here = 0.0 if a == n else value[a]
        for b in reversed(range(a + 1 if a < n else 0, n)):  # among equal gains, fewer steps
            g = chance[b] * (value[b] - here + gain[b])
            if g > gain[a] + 1e-12:
                gain[a], step[a] = g, b
    chain, at = [], step[n]
    while at >= 0:
        chain.append(by_size[at])
        at = step[at]
    return chain
