"""The C kernel's SIMD batch walk (AVX-512, built where the CPU has it) against the portable walk
(the same source built with ``-DTS_NO_SIMD``) and the native libraries.

Both must give the same sums bit for bit: the SIMD walk changes how rows go through a tree, not
where they end nor the order their leaves are added in (per row, tree order; XGBoost's float32
sum stays XGBoost's). Rows are adversarial (NaN, +-inf, thresholds and their neighbours, huge
values, -0.0) and the row counts hit every remainder of the 16- and 8-row lanes and the
128-row blocks. The padded tops (ts_pack) are tried at several depths, including none (every step
in the gather phase) and the per-call tops of ``ts_margin_*``.
"""

from __future__ import annotations

import numpy as np
import pytest
from models import data, model
from oracle import native_predict, native_rows, oracle_rows

import treeslim
from treeslim.runtime import KernelForest
from treeslim.runtime import _kernel as K

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")

COUNTS = (1, 7, 8, 9, 15, 16, 17, 200, 1000)
#: (full, part) of the padded tops: the default, none at all, shallow, deep (levels gathered
#: from the top's tables), and the tops ts_margin_* finds per call (-1)
PACKS = [None, (0, 0), (3, 2), (10, 10), (-1, -1)]


def _simd() -> bool:
    return bool(K.kernel(portable=False).ts_kernel_simd())


needs_simd = pytest.mark.skipif(not _simd(), reason="this CPU's kernel build has no SIMD walk")


def adversarial(forest, n, seed=0):
    """float64 rows: oracle rows (thresholds, neighbours, specials) with NaN, +-inf, huge values,
    -0.0 and denormals planted."""
    rng = np.random.default_rng(seed)
    X = oracle_rows(forest, n, seed=seed)
    special = np.array([np.nan, np.inf, -np.inf, 1e300, -1e300, 3.4e38, -3.4e38, 1e-45, -0.0, 0.0])
    pick = rng.random(X.shape) < 0.06
    X[pick] = rng.choice(special, int(pick.sum()))
    return X


@pytest.fixture(scope="module")
def big_models():
    """Models deep enough for every phase: XGBoost depth 6 (padded tops) and depth 10 (deeper
    than the tops), LightGBM with 63 leaves (leaf-wise: the gather phase), all tasks."""
    out = {}
    for task in ("binary", "multiclass", "regression", "ranking"):
        X, y, qid = data(task, n=3000, d=12, seed=3)
        kw = dict(n_estimators=30, n_jobs=1, random_state=0)
        if task == "ranking":
            out[("xgboost-6", task)] = xgb.XGBRanker(max_depth=6, **kw).fit(X, y, qid=qid)
            out[("lightgbm-63", task)] = lgb.LGBMRanker(
                num_leaves=63, min_child_samples=3, verbose=-1, **kw
            ).fit(X, y, group=np.bincount(qid))
            continue
        xcls = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
        lcls = lgb.LGBMRegressor if task == "regression" else lgb.LGBMClassifier
        out[("xgboost-6", task)] = xcls(max_depth=6, **kw).fit(X, y)
        out[("lightgbm-63", task)] = lcls(num_leaves=63, min_child_samples=3, verbose=-1, **kw).fit(
            X, y
        )
        if task == "binary":
            out[("xgboost-10", task)] = xcls(max_depth=10, **kw).fit(X, y)
    return out


def _sums(kf, X, n):
    """The batch kernel's raw sums of the first n rows (the blocked kernel even for n <= 8)."""
    return kf.raw_sum(kf.prepare(X[:n]))


def _same_as_portable(forest, X, pack_levels=None):
    simd = KernelForest(forest, pack_levels=pack_levels)
    assert simd.simd == (_simd() and forest.cat_index is None)
    port = KernelForest(forest, portable=True)
    assert not port.simd
    for n in COUNTS:
        np.testing.assert_array_equal(_sums(simd, X, n), _sums(port, X, n), err_msg=f"{n} rows")
    np.testing.assert_array_equal(simd.margin(X), port.margin(X))
    return simd


def test_portable_build_is_its_own_library():
    port = K.kernel(portable=True)
    assert port.ts_kernel_simd() == 0
    assert K.kernel(portable=True) is port  # cached
    assert K.kernel(portable=False) is not port


def test_environment_asks_for_the_portable_build(monkeypatch):
    forest = treeslim.from_model(model("xgboost", "binary")[0])
    monkeypatch.setenv("TREESLIM_KERNEL_PORTABLE", "1")
    assert not KernelForest(forest).simd
    monkeypatch.setenv("TREESLIM_KERNEL_PORTABLE", "0")
    assert KernelForest(forest).simd == _simd()


@needs_simd
@pytest.mark.parametrize("pack_levels", PACKS, ids=str)
@pytest.mark.parametrize(
    "key",
    [("xgboost-6", t) for t in ("binary", "multiclass", "regression", "ranking")]
    + [("xgboost-10", "binary")]
    + [("lightgbm-63", t) for t in ("binary", "multiclass", "regression", "ranking")],
    ids=lambda k: "-".join(k),
)
def test_simd_equals_portable_and_native(big_models, key, pack_levels):
    native = big_models[key]
    forest = treeslim.from_model(native)
    X = native_rows(native, adversarial(forest, 1000, seed=5))
    kf = _same_as_portable(forest, X, pack_levels)
    assert kf.simd and (kf._pack is None) == (pack_levels == (-1, -1))
    # the native library's raw scores, bit for bit: XGBoost's float32 sum, LightGBM's float64 one
    want = native_predict(native, X, margin=True).reshape(len(X), -1)
    if key[0].startswith("xgboost"):
        assert forest.margin_dtype == "float32"
    for n in COUNTS:
        got = kf.margin_prepared(kf.prepare(X[:n]))
        np.testing.assert_array_equal(got, want[:n], err_msg=f"{key} {n} rows")
        if n > kf._row_walk_max:
            continue
        np.testing.assert_array_equal(_sums(kf, X, n), kf.rows_raw_sum(kf.prepare(X[:n])))
    np.testing.assert_array_equal(
        kf.leaves(X[:300]), KernelForest(forest, portable=True).leaves(X[:300])
    )
    _one_rows_same(forest, X, pack_levels)


def _one_rows_same(forest, X, pack_levels=None):
    """The one-row call (trees in lanes where every tree fits its padded top) sums what the
    portable one-row walk and the batch kernel sum."""
    kf = KernelForest(forest, pack_levels=pack_levels)
    port = KernelForest(forest, portable=True)
    if not kf.single_output:
        return
    Xc = kf.prepare(X[:80])
    got = [kf.row_raw_sum(Xc[i].tobytes()) for i in range(len(Xc))]
    assert got == [port.row_raw_sum(Xc[i].tobytes()) for i in range(len(Xc))]
    assert got == kf.raw_sum(Xc)[:, 0].tolist()


@needs_simd
@pytest.mark.parametrize("lib", ["sklearn-forest", "sklearn-gb", "sklearn-hgb", "lightgbm"])
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_small_models_of_every_library(lib, task):
    """Every layout the frontends make: float32 rows compared with "<=" (scikit-learn), vector
    leaves (random forest multiclass), averaging, float64 rows (histogram gradient boosting)."""
    native = model(lib, task)[0]
    forest = treeslim.from_model(native)
    X = native_rows(native, adversarial(forest, 1000, seed=9))
    for pack_levels in PACKS:
        _same_as_portable(forest, X, pack_levels)
        _one_rows_same(forest, X, pack_levels)
    np.testing.assert_array_equal(
        KernelForest(forest).leaves(X), KernelForest(forest, portable=True).leaves(X)
    )


@needs_simd
def test_float32_sum_of_leaf_values_that_are_not_float32():
    """A float32 sum (TS_ADD32: the float64 sum of the two rounded to float32) whose leaf values
    are not float32 values: the one-row walk cannot add in float32 arithmetic there."""
    native = model("sklearn-gb", "regression")[0]
    forest = treeslim.from_model(native).replace(margin_dtype="float32")
    assert not np.array_equal(forest.leaf_value.astype(np.float32), forest.leaf_value)
    X = adversarial(forest, 500, seed=12)
    for pack_levels in PACKS:
        _same_as_portable(forest, X, pack_levels)
        _one_rows_same(forest, X, pack_levels)


@needs_simd
@pytest.mark.parametrize("comparison", ["<", "<="])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_comparisons_in_both_precisions(big_models, comparison, dtype):
    """The four compiled compares (>= and > on float and double lanes), against the reference
    predictor too: rows exactly at thresholds go one way under "<" and the other under "<="."""
    native = big_models[("lightgbm-63", "regression")]
    forest = treeslim.from_model(native).replace(comparison=comparison, feature_dtype=dtype)
    X = adversarial(forest, 1000, seed=4)
    for pack_levels in PACKS:
        kf = _same_as_portable(forest, X, pack_levels)
    # (the reference predictor sums in another order: equal up to the last bits)
    np.testing.assert_allclose(kf.margin(X)[:, 0], forest.predict_margin(X), rtol=1e-12)


@needs_simd
def test_categorical_forests_take_the_portable_walk():
    from catmodels import categorical_forest, categorical_rows

    for rule, dtype in (("xgboost", "float32"), ("lightgbm", "float64")):
        forest = categorical_forest(seed=2, rule=rule, feature_dtype=dtype, depth=6)
        X = categorical_rows(forest, 500, seed=2)
        kf = KernelForest(forest)
        assert not kf.simd and kf._pack is None
        _same_as_portable(forest, X)
        np.testing.assert_allclose(kf.margin(X)[:, 0], forest.predict_margin(X), rtol=1e-12)


@needs_simd
def test_batches_split_over_threads_sum_the_same(big_models):
    native = big_models[("lightgbm-63", "binary")]
    forest = treeslim.from_model(native)
    X = adversarial(forest, 3000, seed=6)
    kf = KernelForest(forest)
    np.testing.assert_array_equal(kf.margin(X, nthread=3), kf.margin(X, nthread=1))


def test_portable_walk_equals_the_reference_predictor(big_models):
    """The portable walk (CPUs without AVX-512, and the SIMD tests' yardstick) on its own."""
    for key in (("xgboost-6", "multiclass"), ("lightgbm-63", "binary")):
        native = big_models[key]
        forest = treeslim.from_model(native)
        X = native_rows(native, adversarial(forest, 400, seed=8))
        kf = KernelForest(forest, portable=True)
        want = native_predict(native, X, margin=True).reshape(len(X), -1)
        np.testing.assert_array_equal(kf.margin(X), want)


@needs_simd
@pytest.mark.parametrize("kind", ["regression", "multiclass"])
def test_deep_unbalanced_trees(kind):
    """Fully grown scikit-learn trees (depth 20 and more: float rows through the gather phase,
    vector leaves for the multiclass forest)."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestRegressor

    X, y, _ = data(kind, n=3000, d=8, seed=5)
    X = np.nan_to_num(X)
    est = (
        RandomForestRegressor(n_estimators=6, random_state=0, n_jobs=1)
        if kind == "regression"
        else ExtraTreesClassifier(n_estimators=6, random_state=0, n_jobs=1)
    )
    forest = treeslim.from_model(est.fit(X, y))
    assert forest.tree_depths.max() > 15
    X = native_rows(est, adversarial(forest, 1000, seed=13))
    for pack_levels in PACKS:
        _same_as_portable(forest, X, pack_levels)
        _one_rows_same(forest, X, pack_levels)
    np.testing.assert_array_equal(
        KernelForest(forest).leaves(X), KernelForest(forest, portable=True).leaves(X)
    )
