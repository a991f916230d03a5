"""LightGBM frontend and backend: oracle tests against lightgbm itself, round trips, bad input."""

from __future__ import annotations

import os
import re
import sys
import time

import fuzz
import lightgbm as lgb
import models
import numpy as np
import pytest
import xgboost as xgb
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import SPECIALS, assert_close, oracle_rows, rows

import treeslim
from treeslim import Forest, ModelFormatError, UnsupportedModelError
from treeslim.backends import forest_to_lightgbm_text, to_lightgbm
from treeslim.formats import ZERO_THRESHOLD
from treeslim.frontends import forest_from_lightgbm, forest_from_lightgbm_text, forest_from_xgboost
from treeslim.ir import TreeArrays

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 4))
X_NAN = np.where(RNG.random(X.shape) < 0.15, np.nan, X)
Y = X[:, 0] + X[:, 1] ** 2 + 0.1 * RNG.normal(size=300)
ONE = {"verbose": -1, "num_threads": 1}  # the test machine is small and shared
OBJECTIVES = (
    "regression regression_l1 huber fair quantile mape poisson gamma tweedie cross_entropy binary"
    " multiclass lambdarank rank_xendcg"
).split()


def train(objective="regression", data=X, rounds=8, **params):
    params = dict(ONE, objective=objective, num_leaves=7, min_data_in_leaf=5) | params
    label, kw = Y, {}
    if objective in ("poisson", "gamma", "tweedie"):
        label = np.exp(Y / 3)
    elif objective in ("binary", "cross_entropy", "cross_entropy_lambda"):
        label = (Y > 1).astype(float)
    elif objective == "multiclass":
        label, params["num_class"] = np.digitize(Y, [0.0, 1.5]), 3
    elif objective in ("lambdarank", "rank_xendcg"):
        label, kw["group"] = np.digitize(Y, [0.0, 1.0, 2.0]), [100, 100, 100]
    return lgb.train(params, lgb.Dataset(data, label, **kw), num_boost_round=rounds)


def check_oracle(forest, booster, R, *, rf=False):
    prob = forest.postprocessor in ("sigmoid", "softmax")
    assert_close(forest.predict(R), booster.predict(R), prob=prob, what="predict")
    scale = booster.current_iteration() if rf else 1  # LightGBM's raw score of rf is the sum
    assert_close(forest.predict_margin(R) * scale, booster.predict(R, raw_score=True), what="raw")
    if forest.source.get("library") == "lightgbm":  # same leaves (LightGBM numbers leaves apart)
        inner = (np.diff(forest.tree_offsets) - 1) // 2
        leaves = booster.predict(R, pred_leaf=True).reshape(len(R), -1)
        np.testing.assert_array_equal(forest.apply(R) - inner, leaves)


# ---------------------------------------------------------------- frontend oracle
@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.parametrize("nan", [False, True], ids=["dense", "nan"])
def test_objectives_match_lightgbm(objective, nan):
    booster = train(objective, X_NAN if nan else X)
    forest = forest_from_lightgbm(booster)
    line = next(ln for ln in booster.model_to_string().splitlines() if ln.startswith("objective="))
    assert forest.source == {"library": "lightgbm", "objective": line[10:], "boosting": "gbdt"}
    assert (forest.comparison, forest.feature_dtype) == ("<=", "float64")
    assert not forest.base_score.any() and forest.n_trees == booster.num_trees()
    check_oracle(forest, booster, oracle_rows(forest, 400, seed=1))


@pytest.mark.parametrize("boosting", ["dart", "rf"])
@pytest.mark.parametrize("objective", ["regression", "binary", "multiclass", "poisson"])
@pytest.mark.parametrize("nan", [False, True], ids=["dense", "nan"])
def test_boosting_types_match_lightgbm(boosting, objective, nan):
    extra = {"bagging_freq": 1, "bagging_fraction": 0.6} if boosting == "rf" else {}
    booster = train(objective, X_NAN if nan else X, boosting=boosting, **extra)
    forest = forest_from_lightgbm(booster)
    assert forest.average == (boosting == "rf") and forest.source["boosting"] == boosting
    check_oracle(forest, booster, oracle_rows(forest, 400, seed=2), rf=boosting == "rf")


NAN_BINARY = train("binary", X_NAN, rounds=10)
NAN_FOREST = forest_from_lightgbm(NAN_BINARY)


@given(rows(NAN_FOREST))
def test_hypothesis_rows_match_lightgbm(R):
    check_oracle(NAN_FOREST, NAN_BINARY, R)


def test_missing_type_none_reads_nan_as_zero():
    booster = train("regression", X_NAN, use_missing=False)
    text = booster.model_to_string()
    assert "decision_type=2 " in text and "decision_type=10" not in text
    forest = forest_from_lightgbm_text(text)
    R = oracle_rows(forest, 300, seed=3)
    check_oracle(forest, booster, R)
    leaves = booster.predict(R, pred_leaf=True)
    inner = (np.diff(forest.tree_offsets) - 1) // 2
    np.testing.assert_array_equal(forest.apply(np.nan_to_num(R, nan=0.0)) - inner, leaves)


def one_tree_text(threshold, decision_type, left="-1", right="-2", leaves="1 2"):
    head = "tree\nnum_class=1\nlabel_index=0\nmax_feature_idx=0\nfeature_names=f0\n"
    n = len(leaves.split())
    return head + (
        f"feature_infos=none\n\nTree=0\nnum_leaves={n}\nnum_cat=0\nsplit_feature={'0 ' * (n - 1)}\n"
        f"threshold={threshold}\ndecision_type={decision_type}\nleft_child={left}\n"
        f"right_child={right}\nleaf_value={leaves}\n\nend of trees\n"
    )


def test_nodes_in_any_order():
    """LightGBM accepts a child numbered before its parent; from_trees reorders."""
    text = one_tree_text("0 -2 -1", "10 8 10", left="2 -1 1", right="-4 -2 -3", leaves="1 2 3 4")
    forest, booster = forest_from_lightgbm_text(text), lgb.Booster(model_str=text)
    R = np.array([[-3.0], [-2.0], [-1.5], [-1.0], [-0.5], [0.0], [1.0], [np.nan]])
    np.testing.assert_array_equal(forest.predict(R), booster.predict(R))
    assert forest.tree(0).cleft.tolist() == [1, 3, -1, 5, -1, -1, -1]  # breadth-first


@pytest.mark.parametrize("t", [ZERO_THRESHOLD, -ZERO_THRESHOLD, 0.0, -0.0, 1e-36, -1e-36, 5e-324])
@pytest.mark.parametrize("decision_type", [2, 10, 8])
def test_zero_band_matches_lightgbm(t, decision_type):
    """LightGBM's predictor reads |x| <= 1e-35 as 0.0; thresholds in that band are moved."""
    text = one_tree_text(repr(t), decision_type)
    forest, booster = forest_from_lightgbm_text(text), lgb.Booster(model_str=text)
    z = ZERO_THRESHOLD
    xs = [0.0, -0.0, z, -z, 1e-36, -1e-36, 5e-324, -5e-324, 1e-35, -1e-35, np.nan, *SPECIALS]
    xs += [np.nextafter(z, 1), np.nextafter(-z, -1), t, np.nextafter(t, 1), np.nextafter(t, -1)]
    R = np.array(xs)[:, None]
    np.testing.assert_array_equal(forest.predict(R), booster.predict(R))


def test_single_leaf_trees():
    booster = train("regression", min_data_in_leaf=1000, rounds=3)
    forest = forest_from_lightgbm(booster)
    assert forest.n_nodes == forest.n_trees == booster.num_trees()
    check_oracle(forest, booster, X_NAN)
    label = (Y > 1).astype(int)
    label[:3] = 2  # a rare class whose trees cannot split
    params = dict(ONE, objective="multiclass", num_class=3, min_sum_hessian_in_leaf=3)
    mixed = lgb.train(params, lgb.Dataset(X_NAN, label), 3)
    forest = forest_from_lightgbm(mixed)
    assert np.diff(forest.tree_offsets)[2::3].tolist() == [1, 1, 1]
    assert np.all(np.diff(forest.tree_offsets)[0::3] > 1)
    check_oracle(forest, mixed, oracle_rows(forest, 200))


def test_sigmoid_alpha_and_stats():
    booster = train("binary", X_NAN, sigmoid=2.5)
    forest = forest_from_lightgbm(booster)
    assert forest.sigmoid_alpha == 2.5
    check_oracle(forest, booster, oracle_rows(forest, 200, seed=4))
    root = forest.tree_offsets[0]
    assert forest.data_count[root] == len(X) and forest.gain[root] > 0
    leaves = forest.split_index < 0
    assert np.all(forest.gain[leaves] == 0)
    first = slice(forest.tree_offsets[0], forest.tree_offsets[1])
    assert forest.data_count[first][leaves[first]].sum() == len(X)


@pytest.mark.filterwarnings("ignore:The argument 'eval_set' is deprecated")
def test_sklearn_wrappers_and_early_stopping():
    noise = RNG.normal(size=300)
    model = lgb.LGBMRegressor(n_estimators=60, learning_rate=0.5, num_leaves=7, **ONE)
    stop = [lgb.early_stopping(2, verbose=False)]
    model.fit(X[:200], noise[:200], eval_set=[(X[200:], noise[200:])], callbacks=stop)
    assert 0 < model.best_iteration_ < 60
    forest = treeslim.from_model(model)
    assert forest.n_trees == model.best_iteration_
    assert_close(forest.predict(X_NAN), model.predict(X_NAN))
    clf = lgb.LGBMClassifier(n_estimators=5, num_leaves=5, **ONE).fit(X, Y > 1)
    assert_close(treeslim.from_model(clf).predict(X_NAN), clf.predict_proba(X_NAN)[:, 1], prob=True)
    rnk = lgb.LGBMRanker(n_estimators=5, num_leaves=5, **ONE)
    rnk.fit(X, np.digitize(Y, [0.0, 1.0]), group=[150, 150])
    forest = treeslim.from_model(rnk)
    assert forest.task == "ranking"
    assert_close(forest.predict(X_NAN), rnk.predict(X_NAN))
    with pytest.raises(ValueError, match="fit"):
        forest_from_lightgbm(lgb.LGBMRegressor())


def test_feature_names_and_load(tmp_path):
    booster = lgb.train(ONE, lgb.Dataset(X, Y, feature_name=["Tree", "b", "c", "d"]), 3)
    forest = forest_from_lightgbm(booster)
    assert forest.feature_names == ("Tree", "b", "c", "d")
    assert to_lightgbm(forest).feature_name() == ["Tree", "b", "c", "d"]
    spaced = forest.replace(feature_names=("a b", "c", "d", "e"))  # not writable in model text
    assert to_lightgbm(spaced).feature_name() == [f"Column_{j}" for j in range(4)]
    assert forest_from_lightgbm(train()).feature_names is None  # Column_0... are no names
    path = tmp_path / "model.txt"
    booster.save_model(path)
    assert_close(treeslim.load(path).predict(X_NAN), booster.predict(X_NAN))


def test_parse_speed():
    rng = np.random.default_rng(0)
    trees = [random_tree(rng, 10, 63, 1, 0) for _ in range(500)]
    forest = Forest.from_trees(trees, num_feature=10, task="regression", comparison="<=")
    text = forest_to_lightgbm_text(forest)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        forest_from_lightgbm_text(text)
        times.append(time.perf_counter() - start)
    assert min(times) < 0.5, f"parsing 500 trees of 63 leaves took {min(times):.2f} s"


# ---------------------------------------------------------------- unsupported and corrupt input
def test_linear_trees_raise():
    """Categorical splits and zero_as_missing: tests/test_categorical_lightgbm.py."""
    lin = train("regression", linear_tree=True, rounds=2)
    with pytest.raises(UnsupportedModelError, match=r"tree 0 is a linear tree.*linear_tree=False"):
        forest_from_lightgbm(lin)


@pytest.mark.parametrize(
    ("objective", "match"),
    [
        ("multiclassova", "multiclassova.*supported: .*binary"),
        ("cross_entropy_lambda", "not supported"),
        ("reg_sqrt", "reg_sqrt=False"),
    ],
)
def test_unsupported_objectives_raise(objective, match):
    if objective == "reg_sqrt":
        booster = train("regression", reg_sqrt=True, rounds=2)
    elif objective == "multiclassova":
        params = dict(ONE, objective=objective, num_class=3)
        booster = lgb.train(params, lgb.Dataset(X, np.digitize(Y, [0.0, 1.5])), 2)
    else:
        booster = train(objective, rounds=2)
    with pytest.raises(UnsupportedModelError, match=match):
        forest_from_lightgbm(booster)


def test_custom_objective_is_raw_scores():
    def fobj(preds, data):
        return preds - data.get_label(), np.ones_like(preds)

    booster = lgb.train(dict(ONE, objective=fobj), lgb.Dataset(X, Y), 3)
    forest = forest_from_lightgbm(booster)
    assert forest.postprocessor == "identity" and forest.source["objective"] is None
    check_oracle(forest, booster, X_NAN)


SMALL_TEXT = train("multiclass", X_NAN, rounds=2, num_leaves=4).model_to_string()


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        ("version=v4", "", None),
        ("^tree", "xgboost", "first line is not 'tree'"),
        ("end of trees", "", "truncated"),
        ("max_feature_idx=3", "max_feature_idx=x", "max_feature"),
        ("threshold=", "threshold=abc ", "tree 0: cannot read 'threshold'"),
        ("left_child=", "left_child=7 ", r"tree 0: 'left_child' has \d+ values, expected \d+"),
        (r"right_child=-?\d+", "right_child=-9", "tree 0, node 0: right_child -9 points outside"),
        (r"split_feature=\d+", "split_feature=9", "tree 0, node 0: split_feature 9 is not in"),
        ("Tree=1", "Tree=7", "expected 'Tree=1'"),
        ("num_leaves=", "num_leaves=x", "num_leaves"),
        (r"decision_type=\d+", "decision_type=12", "tree 0, node 0: unknown missing type"),
        ("leaf_value=[^\n]*", "leaf_value=", "tree 0: 'leaf_value' has 0 values"),
        ("num_cat=0", "num_cat=x", "num_cat"),
        ("num_class=3", "num_class=2", "does not fit num_class=2"),
    ],
)
def test_corrupt_text_raises(old, new, match):
    text = re.sub(old, new, SMALL_TEXT, count=1, flags=re.M)
    assert text != SMALL_TEXT
    if match is None:  # harmless edit: still parses
        forest_from_lightgbm_text(text)
        return
    with pytest.raises(ModelFormatError, match=match):
        forest_from_lightgbm_text(text)


def test_truncated_text_raises_model_format_error():
    end = SMALL_TEXT.index("end of trees")
    for cut in range(0, end, 7):
        with pytest.raises(ModelFormatError):
            forest_from_lightgbm_text(SMALL_TEXT[:cut])


@pytest.mark.slow  # TREESLIM_FUZZ_N mutants per kind (default: the small form)
@pytest.mark.parametrize("objective", ["multiclass", "binary", "regression"])
def test_fuzzed_text_parses_or_fails_cleanly(objective):
    """Numbers replaced by extreme values, lines dropped or doubled, bytes flipped: each mutant
    parses (and validates, and predicts) or raises a TreeSlimError, within the time and memory
    bounds of the fuzz harness; both outcomes occur."""
    text = train(objective, X_NAN, rounds=2, num_leaves=4).model_to_string().encode()
    rng = np.random.default_rng(0)
    parse = treeslim.frontends.from_bytes
    fuzz.fuzz(parse, fuzz.text_mutations(text, rng), what=f"{objective} text")
    head = text[: text.index(b"Tree=0")]  # the header, where the counts are
    heads = (m + text[len(head) :] for m in fuzz.text_mutations(head, rng))
    fuzz.fuzz(parse, heads, what=f"{objective} header")
    fuzz.fuzz(parse, fuzz.byte_mutations(text, rng), what=f"{objective} bytes")


def test_a_feature_count_the_trees_do_not_use_is_refused(tmp_path):
    """The issue's file: max_feature_idx edited to 200,000,000, trees untouched. LightGBM itself
    refuses it (feature_names has 6 entries); so does treeslim, at once, naming the field."""
    m, _ = models.lightgbm_model("regression")
    text = m.booster_.model_to_string()
    big = re.sub(r"^max_feature_idx=\d+$", "max_feature_idx=200000000", text, flags=re.M)
    with pytest.raises(lgb.basic.LightGBMError, match="Wrong size of feature_names"):
        lgb.Booster(model_str=big)
    path = tmp_path / "big.txt"
    path.write_text(big)
    t0 = time.perf_counter()
    match = "max_feature_idx=200000000 declares 200,000,001 features, but feature_names lists 6"
    with pytest.raises(ModelFormatError, match=match):
        treeslim.load(path)
    from treeslim.cli import main

    assert main(["compile", str(path), "-o", str(tmp_path / "big.so")]) == 2
    assert time.perf_counter() - t0 < 5.0
    assert not (tmp_path / "big.so").exists()


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (r"^feature_names=.*$", "", "no feature_names line"),
        (r"^feature_infos=.*$", "", "no feature_infos line"),
        (
            r"^feature_infos=\S+ ",
            "feature_infos=",
            "declares 4 features, but feature_infos lists 3",
        ),
        (r"^feature_names=", "feature_names=extra ", "feature_names lists 5"),
        (r"^num_class=1$", "num_class=5", "num_class=5, but objective 'regression' has one output"),
    ],
)
def test_header_counts_are_checked(old, new, match):
    text = re.sub(old, new, train("regression").model_to_string(), count=1, flags=re.M)
    with pytest.raises(ModelFormatError, match=match):
        forest_from_lightgbm_text(text)


def test_unused_features_are_bounded(monkeypatch):
    """Consistent names and infos, but far more features than the trees split on."""
    text = train("regression").model_to_string()
    wide = 4 + 11
    names = " ".join(f"f{j}" for j in range(wide))
    text = re.sub(r"^max_feature_idx=3$", f"max_feature_idx={wide - 1}", text, flags=re.M)
    text = re.sub(r"^feature_names=.*$", f"feature_names={names}", text, flags=re.M)
    text = re.sub(r"^feature_infos=.*$", "feature_infos=" + " ".join(["none"] * wide), text,
                  flags=re.M)  # fmt: skip
    assert forest_from_lightgbm_text(text).num_feature == wide  # LightGBM predicts on 15 columns
    monkeypatch.setattr(treeslim.formats._limits, "MAX_UNUSED_FEATURES", 10)
    with pytest.raises(ModelFormatError, match="max_feature_idx declares 15 features, but the trees"
                                               " split on none beyond feature 1"):  # fmt: skip
        forest_from_lightgbm_text(text)


# ---------------------------------------------------------------- export
RF = {"boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.6}
ROUND_TRIPS = [(o, {}) for o in "regression multiclass quantile poisson lambdarank".split()]
ROUND_TRIPS += [("binary", {"sigmoid": 0.7}), ("multiclass", RF), ("binary", {"boosting": "dart"})]


@pytest.mark.parametrize(("objective", "params"), ROUND_TRIPS)
def test_lightgbm_round_trip_is_identical(objective, params):
    booster = train(objective, X_NAN, **params)
    forest = forest_from_lightgbm(booster)
    exported = to_lightgbm(forest)
    R = oracle_rows(forest, 400, seed=5)
    for raw in (False, True):
        np.testing.assert_array_equal(exported.predict(R, raw), booster.predict(R, raw))
    again = forest_from_lightgbm(exported)
    assert again.source == forest.source and again.task == forest.task
    for name in ("split_index", "threshold", "cleft", "default_left", "leaf_value", "gain"):
        np.testing.assert_array_equal(getattr(again, name), getattr(forest, name), err_msg=name)


XGB = "binary:logistic reg:squarederror multi:softprob count:poisson rank:pairwise binary:logitraw"
XGB_CASES = [(o, {}) for o in (*XGB.split(), "reg:logistic")]
XGB_CASES.append(("reg:squarederror", {"booster": "dart", "rate_drop": 0.3}))


@pytest.mark.parametrize(("objective", "params"), XGB_CASES)
def test_xgboost_forest_exports_exactly(objective, params):
    label = np.digitize(Y, [0.0, 1.5]) if objective.startswith(("multi", "rank")) else Y
    label = (Y > 1) if objective.startswith(("bin", "reg:log")) else label
    label = np.exp(Y / 3) if objective == "count:poisson" else label
    dtrain = xgb.DMatrix(X_NAN, label=label.astype(float))
    if objective.startswith("rank"):
        dtrain.set_group([150, 150])
    extra = {"num_class": 3} if objective.startswith("multi") else {}
    booster = xgb.train(
        dict(objective=objective, max_depth=3, nthread=1, **extra, **params), dtrain, 6
    )
    forest = forest_from_xgboost(booster)
    exported = to_lightgbm(forest)
    R = oracle_rows(forest, 400, seed=6)
    prob = forest.postprocessor in ("sigmoid", "softmax")
    with np.errstate(over="ignore"):
        R_as_32 = R.astype(np.float32).astype(np.float64)
    for rows_ in (R_as_32, R):  # float32 rows: what XGBoost sees
        assert_close(exported.predict(rows_), forest.predict(rows_), prob=prob, what=objective)
    with np.errstate(over="ignore"):
        R32 = R.astype(np.float32)
    R32 = R32[~np.isinf(R32).any(axis=1)]  # XGBoost refuses infinite inputs
    expected = booster.predict(xgb.DMatrix(R32))
    assert_close(exported.predict(R32.astype(np.float64)), expected, prob=prob, what="vs xgb")


def test_argmax_cannot_be_exported():
    dtrain = xgb.DMatrix(X, label=np.digitize(Y, [0.0, 1.5]))
    booster = xgb.train(dict(objective="multi:softmax", num_class=3, nthread=1), dtrain, 2)
    with pytest.raises(UnsupportedModelError, match=r"replace\(postprocessor='softmax'\)"):
        to_lightgbm(forest_from_xgboost(booster))


def random_tree(rng, d, n_leaves, width, tree_class):
    split, thr, cl, cr, dl = [-1], [0.0], [-1], [-1], [False]
    pool = np.concatenate([rng.normal(size=8), rng.normal(size=8).astype(np.float32), [0.5, 1, -2]])
    leaves = [0]
    while len(leaves) < n_leaves:
        i = leaves.pop(int(rng.integers(len(leaves))))
        split[i], thr[i], dl[i] = int(rng.integers(d)), float(rng.choice(pool)), rng.random() < 0.5
        cl[i], cr[i] = len(split), len(split) + 1
        for _ in range(2):
            leaves.append(len(split))
            split.append(-1), thr.append(0.0), cl.append(-1), cr.append(-1), dl.append(False)
    n = len(split)
    arrays = [np.array(a) for a in (split, thr, cl, cr, dl)]
    return TreeArrays(*arrays, rng.normal(size=(n, width)), tree_class=tree_class)


@settings(max_examples=30)
@given(st.integers(0, 2**16), st.sampled_from([1, 3]), st.lists(st.booleans(), min_size=6))
def test_hand_built_forests_export_exactly(seed, k, flags):
    """Vector leaves, averaging, base scores, both comparisons and dtypes, every link."""
    vector, average, base, strict, float32, link_on = flags[:6]
    vector, comparison, dtype = (
        vector and k > 1,
        "<" if strict else "<=",
        "float32" if float32 else "float64",
    )
    rng = np.random.default_rng(seed)
    n_trees = int(rng.integers(1, 6)) * (1 if vector else k) + (0 if vector or average else 1)
    classes = [-1 if vector else t % k for t in range(n_trees)]
    trees = [random_tree(rng, 3, int(rng.integers(1, 9)), k if vector else 1, c) for c in classes]
    task = "multiclass" if k > 1 else str(rng.choice(["regression", "binary", "ranking"]))
    reg_link = "sigmoid" if rng.random() < 0.5 else "exponential"
    link = {"multiclass": "softmax", "binary": "sigmoid", "regression": reg_link}.get(task)
    post = link if link_on and link else "identity"
    base_score = rng.normal(size=k) if base else np.zeros(k)
    header = dict(num_feature=3, task=task, num_class=k, average=average, comparison=comparison)
    header |= dict(feature_dtype=dtype, base_score=base_score, postprocessor=post)
    forest = Forest.from_trees(trees, **header, sigmoid_alpha=float(rng.choice([1.0, 0.5])))
    booster = to_lightgbm(forest)
    R = oracle_rows(forest, 200, seed=seed)
    prob = forest.postprocessor in ("sigmoid", "softmax")
    assert_close(booster.predict(R), forest.predict(R), prob=prob, what=repr(forest))
    back = forest_from_lightgbm(booster)
    assert back.postprocessor == forest.postprocessor and back.average == forest.average
    assert_close(back.predict(R), forest.predict(R), prob=prob, what="re-imported")


def stump(threshold, left, right, default_left):
    n, dl = np.array([0, -1, -1]), np.array([default_left, False, False])
    children = (np.array([1, -1, -1]), np.array([2, -1, -1]))
    return TreeArrays(n, np.array([threshold, 0, 0]), *children, dl, np.array([0.0, left, right]))


@pytest.mark.parametrize("comparison", ["<", "<="])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_threshold_boundaries_are_exact(comparison, dtype):
    """Stumps with right leaves 2**i: a sum tells exactly which stumps sent a row right."""
    rng = np.random.default_rng(7)
    m32 = float(np.finfo(np.float32).max)
    edges = [0.5, -3.0, m32, -m32, np.nextafter(m32, 0), 3.5e38, -3.5e38, 1e300, np.inf, 1e-20]
    t = np.concatenate([rng.normal(size=12), rng.normal(size=12).astype(np.float32), edges])
    t = np.append(t, -np.inf) if comparison == "<=" else t
    trees = [stump(v, 0.0, 2.0**i, i % 2 == 0) for i, v in enumerate(t)]
    header = dict(num_feature=1, task="regression", comparison=comparison, feature_dtype=dtype)
    forest = Forest.from_trees(trees, **header)
    with np.errstate(over="ignore"):
        t32 = t.astype(np.float32)
        up, down = np.nextafter(t32, np.float32(np.inf)), np.nextafter(t32, np.float32(-np.inf))
    mids = [t32 / 2 + up / 2, t32 / 2 + down / 2]  # float32 rounding ties
    near = [np.nextafter(v, w) for v in mids for w in (np.inf, -np.inf)]
    xs = np.concatenate([t, t32, up, down, *mids, *near, [m32 + 2.0**103], SPECIALS])
    xs = np.concatenate([xs, -xs])[:, None]
    np.testing.assert_array_equal(to_lightgbm(forest).predict(xs), forest.predict(xs))


@pytest.mark.parametrize(
    ("task", "post", "alpha", "line"),
    [
        ("binary", "sigmoid", 0.5, "binary sigmoid:0.5"),
        ("regression", "sigmoid", 1.0, "cross_entropy"),
        ("regression", "sigmoid", 2.0, "binary sigmoid:2.0"),
        ("regression", "exponential", 1, "poisson"),
        ("ranking", "identity", 1, "lambdarank"),
        ("binary", "identity", 1, None),
        ("multiclass", "softmax", 1, "multiclass num_class:3"),
        ("multiclass", "identity", 1, None),
    ],
)
def test_objective_lines(task, post, alpha, line):
    rng = np.random.default_rng(3)
    k = 3 if task == "multiclass" else 1
    trees = [random_tree(rng, 3, 5, 1, c % k) for c in range(6)]
    header = dict(num_feature=3, task=task, num_class=k, postprocessor=post, sigmoid_alpha=alpha)
    forest = Forest.from_trees(trees, **header, base_score=np.full(k, 0.25))
    text = forest_to_lightgbm_text(forest)
    assert ("objective=" not in text) if line is None else (f"objective={line}\n" in text)
    R = oracle_rows(forest, 100)
    assert_close(lgb.Booster(model_str=text).predict(R), forest.predict(R), prob=post != "identity")


def test_random_forest_classifier_shape_exports():
    """scikit-learn's forests: averaged class distributions in float32, no link."""
    rng = np.random.default_rng(2)
    trees = [random_tree(rng, 3, 6, 3, -1) for _ in range(4)]
    header = dict(num_feature=3, task="multiclass", num_class=3, average=True, comparison="<=")
    forest = Forest.from_trees(trees, **header, feature_dtype="float32", base_score=np.zeros(3))
    text = forest_to_lightgbm_text(forest)
    assert "\naverage_output\n" in text and "objective=" not in text
    booster, R = lgb.Booster(model_str=text), oracle_rows(forest, 200)
    assert booster.num_trees() == 12
    assert_close(booster.predict(R), forest.predict(R))


def test_unequal_class_tree_counts_are_padded():
    rng = np.random.default_rng(1)
    trees = [random_tree(rng, 3, 4, 1, c) for c in (0, 0, 0, 2, 1, 0)]
    header = dict(num_feature=3, task="multiclass", num_class=3, base_score=[0.5, -1.0, 2.0])
    forest = Forest.from_trees(trees, **header)
    booster = to_lightgbm(forest)
    assert booster.num_trees() == 12  # 4 iterations of 3 classes
    R = oracle_rows(forest, 200)
    assert_close(booster.predict(R), forest.predict(R))


def test_to_lightgbm_writes_file_atomically(tmp_path, monkeypatch):
    forest = forest_from_lightgbm(train("binary", X_NAN, rounds=3))
    path = tmp_path / "out.txt"
    booster = treeslim.to_lightgbm(forest, path)
    assert os.listdir(tmp_path) == ["out.txt"]
    assert path.read_text() == forest_to_lightgbm_text(forest)
    np.testing.assert_array_equal(
        lgb.Booster(model_file=path).predict(X_NAN), booster.predict(X_NAN)
    )
    path.write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        to_lightgbm(forest, path)
    assert os.listdir(tmp_path) == ["out.txt"] and path.read_text() == "old"


def test_missing_lightgbm_names_the_extra(monkeypatch):
    forest = forest_from_lightgbm(train(rounds=1))
    monkeypatch.setitem(sys.modules, "lightgbm", None)
    with pytest.raises(
        treeslim.MissingDependencyError, match=r"pip install 'treeslim\[lightgbm\]'"
    ):
        to_lightgbm(forest)
