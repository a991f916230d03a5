"""``slim.export()``: the compressed forest in the inner model's own library, checked through that
library's predictor (XGBoost, LightGBM, Treelite's GTIL for scikit-learn) for every task.

Each case compresses hard enough that the compressed forest predicts differently from the teacher,
so an export of the teacher (or of anything but ``slim.forest_``) fails here.
"""

from __future__ import annotations

import functools

import lightgbm as lgb
import numpy as np
import pytest
import treelite
import xgboost as xgb
from models import data, model
from oracle import as_f32, assert_close, native_predict, oracle_rows

import treeslim
from treeslim.estimators import SlimRanker

CASES = [
    *[(lib, task) for lib in ("xgboost", "lightgbm") for task in
      ("binary", "multiclass", "regression", "ranking")],
    *[("sklearn-hgb", task) for task in ("binary", "multiclass", "regression")],
    ("sklearn-forest", "multiclass"),
    ("default", "ranking"),  # SlimRanker() fits a HistGradientBoostingRegressor on relevance
]  # fmt: skip
EXPORTED = {"xgboost": xgb.Booster, "lightgbm": lgb.Booster}
SUFFIX = {"xgboost": ".json", "lightgbm": ".txt"}


@functools.cache
def slim_of(lib, task):
    # enough calibration rows (200 queries for ranking) for the budget to be certified: a model
    # that stays the teacher could not show an export of the teacher
    X, y, qid = data(task, n=4000, seed=1)
    kw = dict(max_loss=0.1, random_state=0, verbose=0)
    if lib == "default":
        return SlimRanker(**kw).fit(X, y, qid=qid)
    q = qid if task == "ranking" else None
    return treeslim.compress(model(lib, task)[0], X, y, qid=q, **kw)


def _load(lib, path):
    if lib == "xgboost":
        return xgb.Booster(model_file=str(path))
    if lib == "lightgbm":
        return lgb.Booster(model_file=str(path))
    return treelite.Model.deserialize(str(path))


def _rows(forest, lib):
    X = oracle_rows(forest, 300, seed=5)
    if forest.feature_dtype == "float32":  # what GTIL and XGBoost compare: float32 inputs
        X = as_f32(X).astype(np.float64)
    if lib not in EXPORTED:  # GTIL compares float64 rows with float64 thresholds as they are
        X[np.isinf(X)] = np.nan
    return X


@pytest.mark.parametrize(("lib", "task"), CASES)
def test_export_predicts_like_the_compressed_forest_not_the_teacher(lib, task, tmp_path):
    slim = slim_of(lib, task)
    forest, teacher = slim.forest_, slim.teacher_
    assert forest.n_nodes < teacher.n_nodes
    X = _rows(forest, lib)
    prob = forest.postprocessor in ("sigmoid", "softmax")
    path = tmp_path / f"model{SUFFIX.get(lib, '.tl')}"
    exported = slim.export(path)
    assert isinstance(exported, EXPORTED.get(lib, treelite.Model))
    for what, native in (("returned", exported), ("file", _load(lib, path))):
        margin = native_predict(native, X, margin=True)
        assert_close(margin, forest.predict_margin(X), what=f"{lib} {task} {what} margin")
        got = native_predict(native, X)
        assert_close(got, forest.predict(X), prob=prob, what=f"{lib} {task} {what}")
        # ... and not like the teacher: exporting the teacher would fail the lines above
        assert np.abs(margin - teacher.predict_margin(X)).max() > 1e-3
    back = treeslim.from_model(exported)
    assert (back.n_trees, back.n_nodes) == (forest.n_trees, forest.n_nodes)
    assert back.task in (forest.task, "regression")  # Treelite has no ranking task of its own
