"""Oracle tests for the XGBoost frontend and backend: XGBoost's own predictions are the truth."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from hypothesis import given
from oracle import as_f32, assert_close, oracle_rows, rows

import treeslim
from treeslim.frontends import forest_from_xgboost

xgb = pytest.importorskip("xgboost")

OBJECTIVES = [
    ("binary:logistic", {}),
    ("binary:logitraw", {}),
    ("reg:squarederror", {}),
    ("reg:logistic", {}),
    ("count:poisson", {}),
    ("multi:softprob", {"num_class": 3}),
    ("multi:softmax", {"num_class": 3}),
    ("rank:ndcg", {}),
    ("rank:pairwise", {}),
]
PROB = {"binary:logistic", "multi:softprob", "reg:logistic"}


def _data(seed=0, n=600, d=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[rng.random(X.shape) < 0.08] = np.nan
    score = np.nan_to_num(X[:, 0]) + 0.5 * np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    return X, score


@functools.cache
def booster(objective, booster_kind="gbtree"):
    X, score = _data()
    params = dict(dict(OBJECTIVES)[objective])
    qid = None
    if objective.startswith(("binary", "reg:logistic")):
        y = (score > 0).astype(np.float32)
    elif objective.startswith("multi"):
        y = np.digitize(score, [-0.5, 0.5]).astype(np.float32)
    elif objective == "count:poisson":
        y = np.round(np.exp(0.5 * score)).astype(np.float32)
    elif objective.startswith("rank"):
        y = np.digitize(score, [-0.5, 0.5]).astype(np.float32)
        qid = np.repeat(np.arange(30), 20)
    else:
        y = (3 * score + 10).astype(np.float32)
    params.update(objective=objective, max_depth=4, eta=0.3, booster=booster_kind, seed=0)
    if booster_kind == "dart":
        params.update(rate_drop=0.3, skip_drop=0.0)
    return xgb.train(params, xgb.DMatrix(X, y, qid=qid), num_boost_round=15)


def _native(b, X, margin=False):
    return b.inplace_predict(X, predict_type="margin" if margin else "value")


@pytest.mark.parametrize("booster_kind", ["gbtree", "dart"])
@pytest.mark.parametrize("objective", [o for o, _ in OBJECTIVES])
def test_oracle_adversarial_rows(objective, booster_kind):
    b = booster(objective, booster_kind)
    forest = forest_from_xgboost(b)
    X = oracle_rows(forest, 400, seed=1)
    assert_close(forest.predict(X), _native(b, X), prob=objective in PROB, what=objective)
    assert_close(forest.predict_margin(X), _native(b, X, margin=True), what=objective)


@pytest.mark.parametrize("objective", ["binary:logistic", "multi:softprob", "reg:squarederror"])
def test_oracle_hypothesis(objective):
    b = booster(objective)
    forest = forest_from_xgboost(b)

    @given(rows(forest))
    def check(X):
        assert_close(forest.predict_margin(X), _native(b, X, margin=True))
        assert_close(forest.predict(X), _native(b, X), prob=objective in PROB)

    check()


def test_apply_matches_pred_leaf():
    b = booster("reg:squarederror")
    forest = forest_from_xgboost(b)
    X = oracle_rows(forest, 200, seed=3, specials=False)
    leaves = b.predict(xgb.DMatrix(as_f32(X)), pred_leaf=True)
    np.testing.assert_array_equal(forest.apply(X), leaves)


def test_sklearn_wrappers_and_best_iteration():
    X, score = _data(1)
    y = (score > 0).astype(int)
    clf = xgb.XGBClassifier(
        n_estimators=40, max_depth=3, early_stopping_rounds=3, eval_metric="logloss"
    )
    clf.fit(X[:400], y[:400], eval_set=[(X[400:], y[400:])], verbose=False)
    forest = treeslim.from_model(clf)
    assert forest.n_trees == clf.best_iteration + 1
    Xt = oracle_rows(forest, 300, seed=2)
    assert_close(forest.predict(Xt), clf.predict_proba(Xt)[:, 1], prob=True)

    reg = xgb.XGBRegressor(n_estimators=10, max_depth=3).fit(X, score)
    assert_close(treeslim.from_model(reg).predict(Xt), reg.predict(Xt))

    rnk = xgb.XGBRanker(n_estimators=10, max_depth=3)
    rnk.fit(X, np.digitize(score, [0.0]), qid=np.repeat(np.arange(30), 20))
    assert treeslim.from_model(rnk).task == "ranking"
    assert_close(treeslim.from_model(rnk).predict(Xt), rnk.predict(Xt))

    rf = xgb.XGBRFClassifier(n_estimators=8, max_depth=3).fit(X, y)
    assert_close(treeslim.from_model(rf).predict(Xt), rf.predict_proba(Xt)[:, 1], prob=True)


@pytest.mark.parametrize("fmt", ["json", "ubj"])
def test_load_files(tmp_path, fmt):
    b = booster("multi:softprob")
    path = tmp_path / f"model.{fmt}"
    b.save_model(path)
    forest = treeslim.load(path)
    X = oracle_rows(forest, 200)
    assert_close(forest.predict(X), _native(b, X), prob=True)


@pytest.mark.parametrize("objective", [o for o, _ in OBJECTIVES])
def test_roundtrip_is_identical(objective, tmp_path):
    b = booster(objective)
    forest = forest_from_xgboost(b)
    path = tmp_path / "out.json"
    b2 = treeslim.to_xgboost(forest, path)
    X = as_f32(oracle_rows(forest, 300, seed=4))
    np.testing.assert_array_equal(_native(b2, X, margin=True), _native(b, X, margin=True))
    np.testing.assert_array_equal(_native(xgb.Booster(model_file=path), X), _native(b, X))


def test_to_xgboost_from_le_forest_is_exact_on_float32():
    # a forest with "<=" and float64 thresholds: the export must shift thresholds exactly
    b = booster("reg:squarederror")
    f = forest_from_xgboost(b)
    inner = f.split_index >= 0
    t = np.where(inner, f.threshold + 1e-9 * np.abs(f.threshold), 0.0)
    le = f.replace(
        threshold=t, comparison="<=", feature_dtype="float64", base_score=np.array([0.123456789])
    )
    X = as_f32(oracle_rows(le, 400, seed=5)).astype(np.float64)
    assert_close(_native(treeslim.to_xgboost(le), as_f32(X), margin=True), le.predict_margin(X))


def test_unsupported_categorical():
    rng = np.random.default_rng(0)
    import pandas as pd

    X = pd.DataFrame({"a": pd.Categorical(rng.integers(0, 4, 200)), "b": rng.normal(size=200)})
    y = (X["a"].cat.codes > 1).astype(int)
    clf = xgb.XGBClassifier(n_estimators=3, enable_categorical=True, tree_method="hist").fit(X, y)
    with pytest.raises(treeslim.UnsupportedModelError, match="categorical feature 0"):
        treeslim.from_model(clf)


def test_unsupported_gblinear_and_objective():
    X, score = _data()
    b = xgb.train({"booster": "gblinear"}, xgb.DMatrix(np.nan_to_num(X), score), 3)
    with pytest.raises(treeslim.UnsupportedModelError, match="gblinear"):
        forest_from_xgboost(b)
    b = xgb.train(
        {"objective": "reg:quantileerror", "quantile_alpha": [0.1, 0.9]}, xgb.DMatrix(X, score), 3
    )
    with pytest.raises(treeslim.UnsupportedModelError, match="several targets"):
        forest_from_xgboost(b)


def test_corrupt_and_truncated_files(tmp_path):
    b = booster("binary:logistic")
    good = bytes(b.save_raw("json"))
    for i, data in enumerate([good[: len(good) // 2], good.replace(b'"learner"', b'"lerner"')]):
        path = tmp_path / f"bad{i}.json"
        path.write_bytes(data)
        with pytest.raises(treeslim.ModelFormatError, match=f"bad{i}.json"):
            treeslim.load(path)
    ubj = bytes(b.save_raw("ubj"))
    path = tmp_path / "bad.ubj"
    path.write_bytes(ubj[: len(ubj) // 3])
    with pytest.raises(treeslim.ModelFormatError, match="truncated"):
        treeslim.load(path)
    doc = json.loads(good)
    doc["learner"]["gradient_booster"]["model"]["trees"][0]["left_children"][0] = 10**6
    path = tmp_path / "oob.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(treeslim.InvalidForestError, match="Tree 0, node 0"):
        treeslim.load(path)


def test_ubjson_fuzz_never_crashes():
    ubj = bytes(booster("reg:squarederror").save_raw("ubj"))
    rng = np.random.default_rng(0)
    for _ in range(200):
        data = bytearray(ubj[: rng.integers(1, len(ubj))])
        for pos in rng.integers(0, len(data), size=3):
            data[pos] = rng.integers(0, 256)
        try:
            treeslim.frontends.forest_from_xgboost_bytes(bytes(data))
        except treeslim.TreeSlimError:
            pass


def test_to_xgboost_with_infinite_thresholds():
    # LightGBM writes +-inf thresholds (e.g. on adult); XGBoost's JSON cannot hold them
    b = booster("reg:squarederror")
    f = forest_from_xgboost(b)
    inner = np.flatnonzero(f.split_index >= 0)
    thr = f.threshold.copy()
    thr[inner[:2]] = [np.inf, -np.inf]
    g = f.replace(threshold=thr)
    X = as_f32(oracle_rows(g, 300, seed=6))
    X[np.abs(X) >= np.finfo(np.float32).max] = 0.0  # only +-FLT_MAX and +-inf may differ
    assert_close(_native(treeslim.to_xgboost(g), X, margin=True), g.predict_margin(X))


@pytest.mark.parametrize(("lib", "task"), __import__("models").ALL)
def test_to_xgboost_from_every_library(lib, task):
    """LightGBM and scikit-learn trees number their nodes differently from XGBoost, whose
    predictor wants a right child right after its left sibling: the export re-lays them out."""
    from models import model as fitted

    forest = treeslim.from_model(fitted(lib, task)[0])
    X = as_f32(oracle_rows(forest, 400, seed=9))
    X[np.isinf(X)] = np.nan  # XGBoost's DMatrix refuses inf; inplace_predict takes it
    assert_close(
        _native(treeslim.to_xgboost(forest), X, margin=True),
        forest.predict_margin(X),
        what=f"{lib} {task}",
    )
