"""Oracle tests for the XGBoost frontend and backend: XGBoost's own predictions are the truth."""

from __future__ import annotations

import functools
import json

import fuzz
import numpy as np
import pytest
from hypothesis import given
from oracle import as_f32, assert_close, oracle_rows, rows

import treeslim
from treeslim.frontends import (
    forest_from_xgboost,
    forest_from_xgboost_bytes,
    forest_from_xgboost_dict,
)

xgb = pytest.importorskip("xgboost")

OBJECTIVES = [
    ("binary:logistic", {}),
    ("binary:logitraw", {}),
    ("reg:squarederror", {}),
    ("reg:squaredlogerror", {}),
    ("reg:pseudohubererror", {}),
    ("reg:absoluteerror", {}),
    ("reg:quantileerror", {"quantile_alpha": 0.7}),
    ("reg:logistic", {}),
    ("count:poisson", {}),
    ("reg:gamma", {}),
    ("reg:tweedie", {"tweedie_variance_power": 1.4}),
    ("multi:softprob", {"num_class": 3}),
    ("multi:softmax", {"num_class": 3}),
    ("rank:ndcg", {}),
    ("rank:pairwise", {}),
    ("rank:map", {}),
]
POSITIVE = {"count:poisson", "reg:gamma", "reg:tweedie", "reg:squaredlogerror"}
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
    elif objective in POSITIVE:
        y = np.exp(0.5 * score).astype(np.float32)
    elif objective.startswith("rank"):
        cuts = [0.0] if objective == "rank:map" else [-0.5, 0.5]  # MAP takes 0/1 relevance
        y = np.digitize(score, cuts).astype(np.float32)
        qid = np.repeat(np.arange(30), 20)
    else:
        y = (3 * score + 10).astype(np.float32)
    params.update(objective=objective, max_depth=4, eta=0.3, booster=booster_kind, seed=0)
    if booster_kind == "dart":
        params.update(rate_drop=0.3, skip_drop=0.0)
    return xgb.train(params, xgb.DMatrix(X, y, qid=qid), num_boost_round=15)


def _native(b, X, margin=False):
    return b.inplace_predict(X, predict_type="margin" if margin else "value")


def test_every_accepted_objective_is_compared_with_xgboost():
    """The frontend's objective table and the objectives trained here are the same set."""
    from treeslim.formats import OBJECTIVES as ACCEPTED

    assert {o for o, _ in OBJECTIVES} == set(ACCEPTED)


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


FUZZ_SEEDS = ["binary:logistic", "multi:softprob", "reg:squarederror"]


@functools.cache
def small_booster(objective):
    """A few shallow trees: mutations then hit the header as often as the node tables."""
    X, score = _data()
    y = np.digitize(score, [-0.5, 0.5]) if objective.startswith("multi") else score > 0
    params = dict(dict(OBJECTIVES)[objective], objective=objective, max_depth=3, seed=0)
    return xgb.train(params, xgb.DMatrix(X, y.astype(np.float32)), num_boost_round=3)


@pytest.mark.slow  # TREESLIM_FUZZ_N mutants per kind (default: the small form)
@pytest.mark.parametrize("objective", FUZZ_SEEDS)
def test_fuzzed_json_documents_parse_or_fail_cleanly(objective):
    """Mutated documents and JSON text: each parses (and validates, and predicts) or raises a
    TreeSlimError, within the time and memory bounds; both outcomes occur."""
    text = bytes(small_booster(objective).save_raw("json"))
    doc = json.loads(text)
    rng = np.random.default_rng(1)
    docs = (json.dumps(d).encode() for d in fuzz.doc_mutations(doc, rng))
    fuzz.fuzz(forest_from_xgboost_bytes, docs, what=f"{objective} documents")
    fuzz.fuzz(forest_from_xgboost_bytes, fuzz.text_mutations(text, rng), what=f"{objective} text")


@pytest.mark.slow  # TREESLIM_FUZZ_N mutants per kind (default: the small form)
@pytest.mark.parametrize("objective", FUZZ_SEEDS)
def test_fuzzed_ubjson_parses_or_fails_cleanly(objective):
    ubj = bytes(small_booster(objective).save_raw("ubj"))
    doc = treeslim.formats.decode_ubjson(ubj)
    assert fuzz.encode_ubjson(doc) and forest_from_xgboost_bytes(fuzz.encode_ubjson(doc))
    rng = np.random.default_rng(2)
    docs = (fuzz.encode_ubjson(d) for d in fuzz.doc_mutations(doc, rng))
    fuzz.fuzz(forest_from_xgboost_bytes, docs, what=f"{objective} UBJSON documents")
    fuzz.fuzz(forest_from_xgboost_bytes, fuzz.byte_mutations(ubj, rng), what=f"{objective} bytes")


def _edited(objective, edit):
    doc = json.loads(bytes(booster(objective).save_raw("json")))
    edit(doc["learner"])
    return json.dumps(doc).encode()


def _params(learner, **kw):
    learner["learner_model_param"].update(kw)


def _gbtree(learner):
    return learner["gradient_booster"]["model"]


@pytest.mark.parametrize(
    ("objective", "edit", "match"),
    [
        ("binary:logistic", lambda L: _params(L, num_feature="200000001"),
         "num_feature declares 200,000,001 features, but the trees split on none beyond"),
        ("binary:logistic", lambda L: _params(L, num_feature="2"),
         "num_feature declares 2 features, but the trees split on feature 5"),
        ("binary:logistic", lambda L: _params(L, num_feature="x"), "num_feature is not a count"),
        ("binary:logistic", lambda L: L["learner_model_param"].pop("num_feature"),
         "has no num_feature"),
        ("binary:logistic", lambda L: L.update(feature_names=["a", "b"]),
         "num_feature declares 6 features, but feature_names lists 2"),
        ("binary:logistic", lambda L: _params(L, num_class="3"),
         "num_class=3, but objective 'binary:logistic' has one output"),
        ("multi:softprob", lambda L: _params(L, num_class="1000000000"),
         "num_class=1000000000 and 45 trees"),
        ("multi:softprob", lambda L: _params(L, num_class="-3"), "num_class is not a count"),
        ("reg:squarederror", lambda L: _gbtree(L)["gbtree_model_param"].update(num_trees="99"),
         "num_trees=99, but 15 trees"),
        ("reg:squarederror", lambda L: _gbtree(L)["tree_info"].pop(), "15 trees but 14 tree_info"),
        ("reg:squarederror", lambda L: _gbtree(L)["trees"][0]["tree_param"].update(
            num_nodes="10000000000000"), "for 10000000000000 nodes"),
        ("reg:squarederror", lambda L: _gbtree(L)["trees"][0]["sum_hessian"].pop(),
         "tree 0 'sum_hessian' has"),
        ("reg:squarederror", lambda L: _gbtree(L)["trees"][0].update(split_indices="oops"),
         "split_indices. holds values that are not integers"),
        ("binary:logistic", lambda L: _params(L, base_score="[1.5E0]"),
         r"base_score \[1.5\] has no finite margin under objective 'binary:logistic'"),
        ("reg:squarederror", lambda L: L["gradient_booster"].pop("model"),
         r"corrupt document \(KeyError: 'model'\)"),
    ],
)  # fmt: skip
def test_header_counts_are_checked_against_the_trees(objective, edit, match):
    with pytest.raises(treeslim.ModelFormatError, match=match):
        forest_from_xgboost_bytes(_edited(objective, edit))


def test_dart_weights_and_iteration_pointers_are_checked():
    doc = json.loads(bytes(booster("reg:squarederror", "dart").save_raw("json")))
    doc["learner"]["gradient_booster"]["weight_drop"].pop()
    with pytest.raises(treeslim.ModelFormatError, match="14 weight_drop entries for 15 trees"):
        forest_from_xgboost_bytes(json.dumps(doc).encode())
    doc = json.loads(bytes(booster("reg:squarederror").save_raw("json")))
    doc["learner"]["gradient_booster"]["model"]["iteration_indptr"][3] = 10**6
    with pytest.raises(treeslim.ModelFormatError, match="iteration_indptr does not rise"):
        forest_from_xgboost_dict(doc, n_iterations=5)
    # a feature count within the bound is kept: XGBoost itself wants rows that wide
    doc = json.loads(bytes(booster("reg:squarederror").save_raw("json")))
    doc["learner"]["learner_model_param"]["num_feature"] = "1000"
    assert forest_from_xgboost_dict(doc).num_feature == 1000


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


def test_a_missing_value_other_than_nan_is_read_exactly():
    """XGBoost sends a value equal to ``missing`` where it sends NaN; the trees are rewritten so
    that the Forest does too (more on this in test_categorical_xgboost.py)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = -999.0
    y = (np.where(X[:, 0] == -999.0, 1.0, X[:, 0]) + X[:, 1] > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3, missing=-999.0).fit(X, y)
    forest = treeslim.from_model(model)
    assert_close(forest.predict(X), model.predict_proba(X)[:, 1], prob=True)
    # the Booster does not know its missing value: without missing= it would mispredict
    plain = treeslim.from_model(model.get_booster())
    assert np.abs(plain.predict(X) - forest.predict(X)).max() > 0.01
    assert_close(plain.predict(np.where(X == -999.0, np.nan, X)), forest.predict(X), prob=True)


def test_a_saved_model_is_loaded_with_its_missing_value(tmp_path):
    """A saved XGBoost file does not hold ``missing``: ``treeslim.load(path, missing=...)`` gives
    what XGBoost predicts when scoring with that value; other formats refuse the argument."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 4)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = -999.0
    y = (np.where(X[:, 0] == -999.0, 1.0, X[:, 0]) + X[:, 1] > 0).astype(int)
    model = xgb.XGBClassifier(n_estimators=10, max_depth=3, missing=-999.0).fit(X, y)
    for suffix in ("json", "ubj"):
        path = tmp_path / f"m.{suffix}"
        model.get_booster().save_model(path)
        forest = treeslim.load(path, missing=-999.0)
        want = model.get_booster().inplace_predict(X, missing=-999.0)
        assert_close(forest.predict(X), want, prob=True)
        assert np.abs(treeslim.load(path).predict(X) - want).max() > 0.01
    treeslim.save(forest, tmp_path / "m.tslim")
    with pytest.raises(treeslim.UnsupportedModelError, match="XGBoost JSON / UBJSON models only"):
        treeslim.load(tmp_path / "m.tslim", missing=-999.0)
