"""Generated rows: MUNGE, leaf-box and jitter samplers (swap / bootstrap are in test_passes.py)."""

from __future__ import annotations

import numpy as np
import pytest
from models import data, model

import treeslim
from treeslim.data import generate_rows, iter_generated_rows, sampler
from treeslim.ir import Forest, TreeArrays

METHODS = ["munge", "jitter", "leaf-box", "swap"]


def _setup(lib="xgboost", task="binary"):
    m, X = model(lib, task)
    return treeslim.from_model(m), X


@pytest.mark.parametrize("method", METHODS)
def test_chunked_generation_equals_one_shot_and_is_deterministic(method):
    f, X = _setup()
    _, _, qid = data("ranking")
    for q in (None, qid):
        kw = dict(method=method, forest=f, qid=q, random_state=11)
        full = generate_rows(X, 9000, **kw)
        assert np.array_equal(full, generate_rows(X, 9000, **kw), equal_nan=True)
        for chunk in (1, 997, 4096, 5000, 20000):
            if chunk == 1:  # a short stream, one row at a time
                head = generate_rows(X, 50, **kw)
                parts = list(iter_generated_rows(X, 50, chunk_size=1, **kw))
                assert np.array_equal(np.concatenate(parts), head, equal_nan=True)
                continue
            parts = list(iter_generated_rows(X, 9000, chunk_size=chunk, **kw))
            assert max(len(p) for p in parts) <= chunk
            assert np.array_equal(np.concatenate(parts), full, equal_nan=True)
        other = generate_rows(X, 9000, **{**kw, "random_state": 12})
        assert not np.array_equal(full, other, equal_nan=True)


def _one_tree(lib):
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.tree import DecisionTreeRegressor

    X, y, _ = data("regression", n=800)
    if lib == "xgboost":
        est = xgb.XGBRegressor(n_estimators=1, max_depth=7, n_jobs=1).fit(X, y)
    elif lib == "lightgbm":
        est = lgb.LGBMRegressor(n_estimators=1, num_leaves=63, min_child_samples=2,
                                verbose=-1).fit(X, y)  # fmt: skip
    else:
        est = DecisionTreeRegressor(max_depth=8).fit(X, y)
    return treeslim.from_model(est), X


@pytest.mark.parametrize("lib", ["xgboost", "lightgbm", "sklearn"])
def test_leaf_box_rows_stay_in_their_leaf(lib):
    f, X = _one_tree(lib)
    rows, base = sampler(X, method="leaf-box", forest=f).block(0, 4096, 3)
    assert np.array_equal(f.apply(rows), f.apply(X[base]))
    moved = (rows != X[base]) & ~np.isnan(rows)
    assert moved.mean() > 0.3  # the box's features really are redrawn


@pytest.mark.parametrize("comparison", ["<", "<="])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_leaf_box_respects_strict_sides_at_thresholds(comparison, dtype):
    # a chain of splits on one feature with adjacent thresholds on the input grid (off-grid by a
    # quarter step for float32): each middle leaf holds one or two representable values, and a
    # value one step off lands in the neighbouring leaf
    if dtype == "float32":
        g = np.float32(0.1) + np.arange(-3, 6, dtype=np.float32) * np.spacing(np.float32(0.1))
        grid = g.astype(np.float64)
        thr = grid[3:6] + 0.25 * float(np.spacing(np.float32(0.1)))
    else:
        grid = 0.1 + np.arange(-3, 6) * np.spacing(0.1)
        thr = grid[3:6]
    tree = TreeArrays(
        split_index=np.array([0, -1, 0, -1, 0, -1, -1]),
        threshold=np.array([thr[0], 0, thr[1], 0, thr[2], 0, 0]),
        cleft=np.array([1, -1, 3, -1, 5, -1, -1]),
        cright=np.array([2, -1, 4, -1, 6, -1, -1]),
        default_left=np.zeros(7, dtype=bool),
        leaf_value=np.arange(7.0),
    )
    f = Forest.from_trees([tree], num_feature=1, task="regression", comparison=comparison,
                          feature_dtype=dtype)  # fmt: skip
    X = np.concatenate([np.linspace(0.0, 0.2, 41), grid])[:, None]
    rows, base = sampler(X, method="leaf-box", forest=f).block(0, 4096, 0)
    assert np.array_equal(f.apply(rows), f.apply(X[base]))
    if dtype == "float32":
        assert np.array_equal(rows.astype(np.float32).astype(np.float64), rows)


def test_munge_moves_toward_the_nearest_neighbour():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=300), rng.integers(0, 4, 300).astype(float)])
    X[::17, 0] = np.nan
    rows, base = sampler(X, method="munge", swap_prob=1.0, noise=0.0).block(0, 2000, 1)
    smp = sampler(X, method="munge")
    nb = smp.neighbour
    assert nb is not None and np.all(nb != np.arange(300))
    assert np.array_equal(rows, X[nb[base]], equal_nan=True)  # noise 0, p 1: the neighbour
    rows, base = sampler(X, method="munge", swap_prob=0.0).block(0, 2000, 1)
    assert np.array_equal(rows, X[base], equal_nan=True)
    rows, base = smp.block(0, 4000, 2)
    assert set(np.unique(rows[:, 1])) <= {0.0, 1.0, 2.0, 3.0}  # discrete: values are swapped
    # continuous: drawn around the neighbour with sd |x - x_nn|, so within a few of those
    e, nbv = X[base, 0], X[nb[base], 0]
    ok = np.isfinite(e) & np.isfinite(nbv)
    assert np.all(np.abs(rows[ok, 0] - nbv[ok]) <= 8 * np.abs(e[ok] - nbv[ok]) + 1e-12)
    assert np.isnan(rows[:, 0]).any()  # missing values are kept / copied, never invented


def test_generation_with_qid_stays_in_the_query():
    X, _, qid = data("ranking")
    for method in ("swap", "munge"):
        smp = sampler(X, method=method, qid=qid, noise=0.0, swap_prob=1.0)
        rows, base = smp.block(0, 3000, 4)
        for j in range(X.shape[1]):
            for r in range(0, 3000, 50):
                pool = X[qid == qid[base[r]], j]
                assert np.isnan(rows[r, j]) or rows[r, j] in pool


def test_jitter_scale():
    rng = np.random.default_rng(1)
    X = rng.normal(0, 5.0, size=(2000, 2))
    rows, base = sampler(X, method="jitter", noise=0.1).block(0, 4096, 0)
    assert 0.4 < np.std(rows - X[base]) < 0.6


def test_generation_errors_name_the_parameter():
    f, X = _setup()
    cases = [
        (dict(method="smote"), "The 'method' parameter of generate_rows must be one of"),
        (dict(method="munge", noise=-1.0), "The 'noise' parameter of generate_rows"),
        (dict(method="munge", swap_prob=2.0), "The 'swap_prob' parameter of generate_rows"),
        (dict(method="leaf-box"), "The 'forest' parameter of generate_rows is required"),
        (dict(method="munge", qid=np.zeros(3)), "qid must have one entry per row"),
        (dict(method="munge", random_state="a"), "The 'random_state' parameter"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            generate_rows(X, 10, **kw)
    with pytest.raises(ValueError, match="X has 3 features but the forest expects 6"):
        generate_rows(X[:, :3], 10, method="leaf-box", forest=f)


@pytest.mark.parametrize("method", ["munge", "jitter", "leaf-box"])
def test_generated_rows_stay_on_the_data_support(method):
    """Values stay within each feature's observed [min, max], integer-valued features (with
    more values than MUNGE / jitter treat as discrete) stay integers, and leaf-box rows stay in
    their leaf. (Planted bugs: no clipping: at noise 3 MUNGE put 7% and jitter 59% of the
    bounded feature outside [0, 1]; no rounding: integer features took fractions; leaf-box
    drawing integer features as reals: fractions there too; leaf-box keeping integer features
    unchanged: no new integer values.)"""
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(0)
    n = 400
    X = np.column_stack([
        rng.uniform(0.0, 1.0, n),                 # bounded continuous
        rng.integers(0, 500, n).astype(float),    # integers, too many values to be discrete
        rng.integers(0, 3, n).astype(float),      # discrete
        np.exp(rng.normal(size=n)),               # skewed, positive
    ])  # fmt: skip
    X[::13, 1] = np.nan
    y = X[:, 0] + np.nan_to_num(X[:, 1]) / 100 + X[:, 2] + np.log(X[:, 3])
    f = treeslim.from_model(DecisionTreeRegressor(max_depth=8, random_state=0).fit(
        np.nan_to_num(X, nan=-1.0), y))  # fmt: skip
    noise = None if method == "leaf-box" else 3.0
    rows, base = sampler(X, method=method, forest=f, noise=noise).block(0, 4096, 1)
    lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    inside = np.isnan(rows) | ((rows >= lo) & (rows <= hi))
    assert inside.all(), inside.mean(axis=0)
    for j in (1, 2):
        v = rows[:, j][np.isfinite(rows[:, j])]
        assert np.array_equal(v, np.round(v)), j
    new = ~np.isin(rows[:, 1], X[:, 1]) & np.isfinite(rows[:, 1])
    assert new.mean() > 0.05  # integer values are generated, not only copied
    assert np.mean(rows[:, 0] != X[base, 0]) > 0.3  # and continuous ones move
    if method == "leaf-box":
        assert np.array_equal(f.apply(rows), f.apply(X[base]))
    full = generate_rows(X, 9000, method=method, forest=f, noise=noise, random_state=2)
    parts = list(iter_generated_rows(X, 9000, method=method, forest=f, noise=noise,
                                     random_state=2, chunk_size=1000))  # fmt: skip
    assert np.array_equal(np.concatenate(parts), full, equal_nan=True)
