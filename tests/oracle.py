"""Shared test helpers: adversarial rows and the tolerance every oracle test uses.

Rows mix ordinary values with the classic traps: values exactly equal to split thresholds and their
float32/float64 neighbours (``<`` vs ``<=``, float32 vs float64), NaN, +-inf, values beyond float32
range, zeros of both signs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 1e300, -1e300, 3.4028235e38]


def feature_thresholds(forest, j):
    """Distinct thresholds of feature ``j`` with their float32 and float64 neighbours."""
    t = forest.threshold[(forest.split_index == j)]
    t = np.unique(t[np.isfinite(t)])
    if t.size == 0:
        return np.array([0.0])
    t32 = t.astype(np.float32)
    near = [
        t,
        np.nextafter(t, np.inf),
        np.nextafter(t, -np.inf),
        t32.astype(np.float64),
        np.nextafter(t32, np.float32(np.inf)).astype(np.float64),
        np.nextafter(t32, np.float32(-np.inf)).astype(np.float64),
    ]
    return np.unique(np.concatenate(near))


def oracle_rows(forest, n=300, seed=0, specials=True):
    """Rows (n, num_feature) float64: a third at thresholds, some specials, the rest random."""
    rng = np.random.default_rng(seed)
    d = forest.num_feature
    X = rng.normal(0.0, 2.0, size=(n, d))
    for j in range(d):
        thr = feature_thresholds(forest, j)
        mask = rng.random(n) < 0.4
        X[mask, j] = rng.choice(thr, size=int(mask.sum()))
        if specials:
            smask = rng.random(n) < 0.1
            X[smask, j] = rng.choice(SPECIALS, size=int(smask.sum()))
    return X


@st.composite
def rows(draw, forest, max_rows=20, specials=True):
    """Hypothesis strategy: a (k, num_feature) float64 array of adversarial rows."""
    k = draw(st.integers(1, max_rows))
    cols = []
    for j in range(forest.num_feature):
        pool = [float(v) for v in feature_thresholds(forest, j)[:200]]
        choices = [st.sampled_from(pool), st.floats(-1e3, 1e3, width=32)]
        if specials:
            choices.append(st.sampled_from(SPECIALS))
        cols.append(draw(hnp.arrays(np.float64, (k,), elements=st.one_of(*choices))))
    return np.stack(cols, axis=1)


def assert_close(actual, expected, *, prob=False, what=""):
    """Float32-rounding tolerance: 1e-6 absolute on probabilities, 1e-6 relative on margins."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if prob:
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6, err_msg=what)
    else:
        scale = max(1.0, float(np.nanmax(np.abs(expected))) if expected.size else 1.0)
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-6 * scale, err_msg=what)


def as_f32(X):
    """``X`` rounded to float32 (values beyond float32 range become inf, silently)."""
    with np.errstate(over="ignore"):
        return np.asarray(X).astype(np.float32)
