"""Exact threshold conversions between float64 and float32 and between ``<`` and ``<=``.

Every backend that stores thresholds at float32 needs the same fact: for float32 inputs ``x``,
``x <= t`` holds iff ``x <= t'`` with ``t'`` the largest float32 not above ``t``, and ``x < t``
holds iff ``x < t'`` with ``t'`` the smallest float32 not below ``t``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["float32_thresholds", "float32_strict_thresholds"]

_INF32 = np.float32(np.inf)


def float32_thresholds(threshold: NDArray[Any], comparison: str) -> NDArray[np.float32]:
    """Float32 thresholds deciding every float32 input as ``threshold`` does, same comparison."""
    t = np.asarray(threshold, dtype=np.float64)
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
    back = t32.astype(np.float64)
    if comparison == "<=":
        out = np.where(back > t, np.nextafter(t32, -_INF32), t32)
    else:
        out = np.where(back < t, np.nextafter(t32, _INF32), t32)
    return out.astype(np.float32)


def float32_strict_thresholds(threshold: NDArray[Any], comparison: str) -> NDArray[np.float32]:
    """Float32 thresholds ``t'`` with ``x < t'`` equal to the original test for float32 ``x``.

    From ``<=`` this is the float32 just above the largest float32 not above ``t`` (kept at
    ``+inf`` when that is ``+inf``, where only ``x = +inf`` can differ).
    """
    t32 = float32_thresholds(threshold, comparison)
    if comparison == "<=":
        t32 = np.where(np.isposinf(t32), t32, np.nextafter(t32, _INF32))
    return t32.astype(np.float32)
