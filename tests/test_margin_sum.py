"""XGBoost's float32 summation (``margin_dtype="float32"``): margins equal XGBoost's to the bit.

XGBoost starts each output at its float32 base score and adds the trees' float32 leaf values in
tree order; the reference predictor, the batch kernel, its small-batch path and the one-row walk
must all do exactly that, and the float64 sum of other forests must stay as it was.
"""

from __future__ import annotations

import numpy as np
import pytest

import treeslim
from treeslim.runtime import KernelForest

xgb = pytest.importorskip("xgboost")


def _rows(n=1500, d=8, seed=1):
    X = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    X[::7, 3] = np.nan
    return X


@pytest.mark.parametrize("kind", ["regression", "multiclass"])
def test_float32_sums_are_bit_identical_to_xgboost(kind):
    rng = np.random.default_rng(0)
    X = _rows(3000, seed=0)
    if kind == "regression":
        y = X[:, 0] + X[:, 1] * np.nan_to_num(X[:, 3]) + rng.normal(size=len(X))
        model = xgb.XGBRegressor(n_estimators=200, max_depth=6, learning_rate=0.1, n_jobs=1)
    else:
        y = rng.integers(0, 3, len(X))
        model = xgb.XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1)
    model.fit(X, y)
    forest = treeslim.from_model(model).replace(margin_dtype="float32")
    Xt = _rows()
    native = model.get_booster().predict(xgb.DMatrix(Xt), output_margin=True)
    native = native.reshape(len(Xt), -1).astype(np.float64)
    kf = KernelForest(forest)
    ref = forest.predict_margin(Xt).reshape(len(Xt), -1)
    np.testing.assert_array_equal(ref, native)
    np.testing.assert_array_equal(kf.margin(Xt), native)
    np.testing.assert_array_equal(kf.margin(Xt[:3]), native[:3])  # the row walk
    if kind == "regression":
        assert [kf.row_margin(Xt[i].tobytes()) for i in range(20)] == native[:20, 0].tolist()
        # the float64 sum (every other forest) differs from XGBoost in the last bits
        f64 = forest.replace(margin_dtype="float64")
        assert not np.array_equal(f64.predict_margin(Xt), native[:, 0])


def test_float32_sum_survives_tslim_and_refuses_averaging():
    X = _rows(500)
    model = xgb.XGBRegressor(n_estimators=20, max_depth=3, n_jobs=1).fit(X, np.nan_to_num(X[:, 0]))
    forest = treeslim.from_model(model).replace(margin_dtype="float32")
    back = treeslim.formats.load_tslim_bytes(treeslim.formats.dump_tslim_bytes(forest))
    assert back.margin_dtype == "float32"
    np.testing.assert_array_equal(back.predict_margin(X), forest.predict_margin(X))
    with pytest.raises(treeslim.InvalidForestError, match="averaged"):
        forest.replace(average=True)
