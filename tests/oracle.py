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
    with np.errstate(over="ignore"):  # thresholds beyond float32 range (fuzzed files) -> inf
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


def native_rows(model, X):
    """``X`` with what ``model``'s own library refuses at predict time replaced.

    XGBoost and LightGBM take every row (XGBoost's inplace_predict takes inf, and rounds to
    float32 itself). scikit-learn's CART-based estimators reject inf and values beyond float32
    range (replaced by +-3e38), gradient boosting also NaN (replaced by 0.25); histogram gradient
    boosting takes every row as is.
    """
    name = type(model).__name__
    if type(model).__module__.split(".")[0] != "sklearn" or name.startswith("Hist"):
        return X
    X = np.array(X, dtype=np.float64)
    with np.errstate(over="ignore"):
        too_big = ~np.isfinite(X.astype(np.float32)) & ~np.isnan(X)
    X[too_big] = np.sign(X[too_big]) * 3.0e38
    if name.startswith("Gradient"):
        X[np.isnan(X)] = 0.25
    return X


def native_predict(model, X, *, margin=False):
    """What ``model``'s own library predicts on ``X``, shaped like :meth:`Forest.predict`:
    (n,) for one output, (n, k) for k classes; ``margin=True`` for raw scores.

    Takes XGBoost Boosters and wrappers (``inplace_predict``), LightGBM Boosters and wrappers
    (``Booster.predict``), treelite Models (GTIL), and scikit-learn estimators (``predict_proba``
    with the class-1 column for binary, else ``predict``; margins from ``decision_function`` or
    ``_raw_predict``: ask only where :func:`has_native_margin`).
    """
    lib = type(model).__module__.split(".")[0]
    if lib == "xgboost":
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        kind = "margin" if margin else "value"
        return np.asarray(booster.inplace_predict(X, predict_type=kind), dtype=np.float64)
    if lib == "lightgbm":
        booster = getattr(model, "booster_", model)
        return np.asarray(booster.predict(X, raw_score=margin), dtype=np.float64)
    if lib == "treelite":
        import treelite

        out = treelite.gtil.predict(model, X, pred_margin=margin, nthread=1)
        out = out.reshape(len(X), -1)
        return out[:, 0] if out.shape[1] == 1 else out
    if margin:
        if hasattr(model, "decision_function"):
            return model.decision_function(X)
        if type(model).__name__.startswith("Gradient"):  # takes validated float32 input
            X = np.asarray(X, dtype=np.float32)
        return model._raw_predict(X).ravel()
    if hasattr(model, "predict_proba"):
        p = model.predict_proba(X)
        return p[:, 1] if p.shape[1] == 2 else p
    return model.predict(X)


def has_native_margin(model):
    """Whether :func:`native_predict` can give ``model``'s raw scores (random forests have none)."""
    lib = type(model).__module__.split(".")[0]
    return lib != "sklearn" or hasattr(model, "decision_function") or hasattr(model, "_raw_predict")
