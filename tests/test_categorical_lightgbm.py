"""LightGBM categorical splits and missing-value settings: oracle tests against lightgbm itself
(numpy codes and pandas ``category`` columns), round trips through ``to_lightgbm``, refusals."""

from __future__ import annotations

import re

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from oracle import assert_close

from treeslim import Forest, ModelFormatError, UnsupportedModelError
from treeslim.backends import forest_to_lightgbm_text, to_lightgbm
from treeslim.frontends import forest_from_lightgbm, forest_from_lightgbm_text
from treeslim.ir import TreeArrays, bitset_table

ONE = {"verbose": -1, "num_threads": 1}
# categorical models that split finely: every category may form its own group
CAT = {"min_data_per_group": 1, "cat_smooth": 1.0, "max_cat_to_onehot": 1, "cat_l2": 1.0}
TASKS = ["regression", "binary", "multiclass", "lambdarank"]
N = 600
ODD = [np.nan, -1.0, -0.5, -1e-40, 1e-40, -0.0, 0.5, 3.7, 31.5, 32.0, 64.0, 2.0**31, 1e10,
       np.inf, -np.inf, -2.0**31]  # fmt: skip


def labels(task, score, rng):
    if task == "binary":
        return (score > np.median(score)).astype(float), {}
    if task == "multiclass":
        return np.digitize(score, np.quantile(score, [0.33, 0.66])), {"num_class": 3}
    if task == "lambdarank":
        return np.digitize(score, np.quantile(score, [0.5, 0.8])), {}
    return score + 0.1 * rng.normal(size=len(score)), {}


def data(seed=0, n_cats=(7, 40), n=N):
    """Two categorical columns (codes) around one numerical column, and a score of all three."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n_cats[0], n)
    b = rng.integers(0, n_cats[1], n)
    x = rng.normal(size=n)
    X = np.column_stack([a, x, b]).astype(float)
    X[rng.random(n) < 0.05, 0] = np.nan
    score = np.sin(a * 1.7) + x + np.cos(b * 0.9) * (b % 3)
    return X, score, rng


def train(task, X, score, rng, rounds=6, categorical=(0, 2), **params):
    y, extra = labels(task, score, rng)
    kw = {"group": [len(X) // 4] * 4} if task == "lambdarank" else {}
    params = ONE | CAT | {"objective": task, "num_leaves": 8} | extra | params
    ds = lgb.Dataset(X, y, categorical_feature=list(categorical), **kw)
    return lgb.train(params, ds, num_boost_round=rounds)


def odd_rows(X, cat_cols, n_codes, n=400, seed=1):
    """Rows taking every code 0..n_codes+1 and every value of ODD in the categorical columns."""
    rng = np.random.default_rng(seed)
    R = X[rng.integers(0, len(X), n)].copy()
    pool = np.concatenate([np.arange(n_codes + 2, dtype=float), ODD])
    for j in cat_cols:
        R[:, j] = np.resize(rng.permutation(pool), n)
    R[rng.random(n) < 0.05, 1] = np.nan
    return R


def check(forest, booster, R, leaves=True):
    """Predictions, raw scores and leaves equal LightGBM's own."""
    prob = forest.postprocessor in ("sigmoid", "softmax")
    assert_close(forest.predict(R), booster.predict(R), prob=prob, what="predict")
    assert_close(forest.predict_margin(R), booster.predict(R, raw_score=True), what="raw")
    if leaves and not isinstance(R, pd.DataFrame):
        inner = (np.diff(forest.tree_offsets) - 1) // 2
        leaves = booster.predict(R, pred_leaf=True).reshape(len(R), -1)
        np.testing.assert_array_equal(forest.apply(R) - inner, leaves)


# ---------------------------------------------------------------- numpy codes
@pytest.mark.parametrize("task", TASKS)
def test_categorical_codes_match_lightgbm(task):
    X, score, rng = data()
    booster = train(task, X, score, rng)
    forest = forest_from_lightgbm(booster)
    assert forest.n_categorical_splits > 0 and forest.category_rule == "lightgbm"
    assert not forest.default_left[forest.is_categorical].any()
    assert forest.feature_categories is None  # trained on numpy: no pandas_categorical
    check(forest, booster, odd_rows(X, [0, 2], 40))


def test_many_categories_purely_categorical():
    """150 categories: bitsets of five words, sets of many members, codes beyond every set."""
    rng = np.random.default_rng(3)
    X = rng.integers(0, 150, (2000, 2)).astype(float)
    score = np.sin(X[:, 0] * 0.37) + (X[:, 1] % 7 == 3)
    booster = train("regression", X, score, rng, rounds=8, categorical=(0, 1),
                    max_cat_threshold=128, num_leaves=16)  # fmt: skip
    forest = forest_from_lightgbm(booster)
    assert forest.is_categorical[forest.split_index >= 0].all()
    assert forest.cat_bitsets.shape[1] >= 4
    assert max(len(forest.category_set(i)) for i in np.flatnonzero(forest.is_categorical)) > 32
    check(forest, booster, odd_rows(X, [0, 1], 150, n=800))


def test_use_missing_false_nan_goes_right_at_categorical_nodes():
    X, score, rng = data(seed=4)
    booster = train("regression", X, score, rng, use_missing=False)
    assert re.search(r"^decision_type=.*\b1\b", booster.model_to_string(), re.M)
    forest = forest_from_lightgbm(booster)
    check(forest, booster, odd_rows(X, [0, 2], 40))


# ---------------------------------------------------------------- pandas category columns
def frame(X, rng, order=None, extra=()):
    cats_a = [f"a{i}" for i in range(7)]
    cats_b = [f"b{i}" for i in range(40)]

    def col(codes, cats, new):
        values = np.array([cats[int(c)] if c == c else None for c in codes], dtype=object)
        unseen = rng.random(len(values)) < (0.1 if extra else 0.0)
        values[unseen] = extra[0] if extra else None
        categories = list(cats) + list(extra)
        if order is not None:
            categories = [categories[i] for i in order(len(categories))]
        return pd.Categorical(values, categories=categories)

    return pd.DataFrame({"a": col(X[:, 0], cats_a, extra), "x": X[:, 1],
                         "b": col(X[:, 2], cats_b, extra)})  # fmt: skip


@pytest.mark.parametrize("task", TASKS)
def test_pandas_categories_match_lightgbm(task):
    X, score, rng = data(seed=5)
    df = frame(X, rng)
    y, extra = labels(task, score, rng)
    kw = {"group": [N // 4] * 4} if task == "lambdarank" else {}
    params = ONE | CAT | {"objective": task, "num_leaves": 8} | extra
    booster = lgb.train(params, lgb.Dataset(df, y, **kw), num_boost_round=6)
    forest = forest_from_lightgbm(booster)
    assert forest.feature_names == ("a", "x", "b") and forest.n_categorical_splits > 0
    assert forest.feature_categories[0][:2] == ("a0", "a1") and forest.feature_categories[1] is None
    # categories listed in another order, unseen categories, missing values
    other = frame(X[::-1], rng, order=lambda k: np.random.default_rng(k).permutation(k),
                  extra=("zz",))  # fmt: skip
    check(forest, booster, other)
    check(forest, booster, df)


def test_ordered_categorical_is_encoded_but_split_numerically():
    """An ordered pandas Categorical is encoded with pandas_categorical but split numerically."""
    X, score, rng = data(seed=6)
    df = frame(X, rng)
    df["size"] = pd.Categorical(rng.choice(["s", "m", "l"], N), ["s", "m", "l"], ordered=True)
    booster = lgb.train(ONE | CAT | {"num_leaves": 8}, lgb.Dataset(df, score + df["size"].cat.codes),
                        num_boost_round=6)  # fmt: skip
    forest = forest_from_lightgbm(booster)
    assert forest.feature_categories[3] == ("s", "m", "l")
    assert not forest.is_categorical[forest.split_index == 3].any()
    shuffled = df.assign(size=df["size"].cat.reorder_categories(["l", "s", "m"]))
    check(forest, booster, shuffled)


def test_unclear_pandas_categorical_is_refused():
    X, score, rng = data(seed=7)
    booster = train("regression", X, score, rng)
    text = booster.model_to_string().replace(
        "pandas_categorical:null", 'pandas_categorical:[["u"]]'
    )
    with pytest.raises(UnsupportedModelError, match=r"1 category lists.*pandas_categorical = None"):
        forest_from_lightgbm_text(text)


# ---------------------------------------------------------------- round trips through to_lightgbm
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_round_trip_to_lightgbm(task):
    X, score, rng = data(seed=8)
    df = frame(X, rng)
    y, extra = labels(task, score, rng)
    booster = lgb.train(ONE | CAT | {"objective": task} | extra, lgb.Dataset(df, y), 5)
    forest = forest_from_lightgbm(booster)
    text = forest_to_lightgbm_text(forest)
    back = lgb.Booster(model_str=text)
    assert back.pandas_categorical == booster.pandas_categorical
    R = odd_rows(X, [0, 2], 40)
    other = frame(X[::-1], rng, order=lambda k: np.arange(k)[::-1], extra=("zz",))
    for inputs in (R, other):
        np.testing.assert_array_equal(back.predict(inputs), booster.predict(inputs))
    again = forest_from_lightgbm_text(text)
    assert again.feature_categories == forest.feature_categories
    np.testing.assert_array_equal(again.predict(other), forest.predict(other))
    np.testing.assert_array_equal(to_lightgbm(again).predict(R), booster.predict(R))


def stump(rule, codes, default_left=False, feature_dtype="float64"):
    tree = TreeArrays(
        split_index=np.array([0, -1, -1]), threshold=np.zeros(3), cleft=np.array([1, -1, -1]),
        cright=np.array([2, -1, -1]), default_left=np.array([default_left, False, False]),
        leaf_value=np.array([0.0, 1.0, 2.0]), cat_index=np.array([0, -1, -1]),
    )  # fmt: skip
    return Forest.from_trees(
        [tree], num_feature=1, task="regression", category_rule=rule,
        cat_bitsets=bitset_table([codes]), feature_dtype=feature_dtype, feature_names=("colour",),
    )  # fmt: skip


def test_other_rules_export_only_when_exact():
    R = np.array([[v] for v in [*ODD, *range(70)]])
    ok = stump("xgboost", [1, 5, 33, 64])  # no code 0: -0.5 is no member either way
    np.testing.assert_array_equal(to_lightgbm(ok).predict(R), ok.predict(R))
    cases = [
        (stump("xgboost", [0, 5]), "category 0, which LightGBM also gives to -0.5"),
        (stump("lightgbm", [5], default_left=True), "sends NaN to its categories' side"),
        (stump("xgboost", [5], feature_dtype="float32"), "reads 2.9999999 as category 3"),
        (stump("sklearn", [5]), "rule 'sklearn'"),
    ]
    for forest, match in cases:
        with pytest.raises(UnsupportedModelError, match=r"Tree 0, node 0 on feature 0 \('colour'"):
            to_lightgbm(forest)
        with pytest.raises(UnsupportedModelError, match=match):
            to_lightgbm(forest)


# ---------------------------------------------------------------- zero_as_missing
def chain(decision_types, thresholds, feature="0"):
    """One tree: internal node i sends the right side to leaf i+1, the left to node i+1."""
    k = len(decision_types)
    head = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\n"
    left = [str(i + 1) for i in range(k - 1)] + ["-1"]
    return head + (
        "max_feature_idx=0\nobjective=regression\nfeature_names=f0\nfeature_infos=none\n\n"
        f"Tree=0\nnum_leaves={k + 1}\nnum_cat=0\nsplit_feature={' '.join([feature] * k)}\n"
        f"threshold={' '.join(map(repr, thresholds))}\n"
        f"decision_type={' '.join(map(str, decision_types))}\nleft_child={' '.join(left)}\n"
        f"right_child={' '.join(str(-i - 2) for i in range(k))}\n"
        f"leaf_value={' '.join(str(i + 1) for i in range(k + 1))}\n"
        "is_linear=0\nshrinkage=1\n\nend of trees\n"
    )


ZERO_ROWS = np.array([[v] for v in [0.0, -0.0, 1e-40, -1e-40, 1e-35, -1e-35, 2e-35, -2e-35,
                                    np.nan, 1.5, 2.0, -3.0, 1e-36, np.inf, -np.inf, 0.7, -0.7,
                                    -1.5, 3.0, 5.0, -5.0]])  # fmt: skip
# missing type Zero is decision type 4, +2 when zeros (and NaN) go left
ZERO_NODES = {
    "left-above": [(6, 1.5)], "right-below": [(4, -1.5)], "right-band": [(4, 0.0)],
    "left-band": [(6, 0.0)], "left-band-neg": [(6, -1e-36)], "right-band-pos": [(4, 5e-36)],
    "right-above": [(4, 1.5)], "left-below": [(6, -1.5)],  # split in three, subtrees copied
    "nested": [(4, 3.0), (6, -1.5), (4, 0.5), (6, -0.5), (10, 0.2)],
}  # fmt: skip


@pytest.mark.parametrize("nodes", ZERO_NODES.values(), ids=ZERO_NODES.keys())
def test_zero_as_missing_matches_lightgbm(nodes):
    text = chain(*zip(*nodes))
    forest = forest_from_lightgbm_text(text)
    R = ZERO_ROWS.repeat(1, axis=1)
    np.testing.assert_array_equal(forest.predict(R), lgb.Booster(model_str=text).predict(R))


def test_zero_as_missing_growth_is_bounded():
    text = chain([4] * 12, [float(i + 1) for i in range(12)])
    with pytest.raises(UnsupportedModelError, match=r"tree 0 treats zero as missing .* at 12 node"
                       r"s.*beyond 400 nodes: retrain with zero_as_missing=False"):  # fmt: skip
        forest_from_lightgbm_text(text)


@pytest.mark.parametrize("task", ["regression", "binary"])
def test_zero_as_missing_model_matches_lightgbm(task):
    rng = np.random.default_rng(9)
    X = np.where(rng.random((800, 3)) < 0.3, 0.0, rng.normal(size=(800, 3)))
    X[rng.random(X.shape) < 0.1] = np.nan
    score = np.nan_to_num(X[:, 0]) + (X[:, 1] == 0) - np.nan_to_num(X[:, 2]) ** 2
    y, _ = labels(task, score, rng)
    params = ONE | {"objective": task, "zero_as_missing": True, "num_leaves": 12}
    booster = lgb.train(params, lgb.Dataset(X, y), 8)
    forest = forest_from_lightgbm(booster)
    assert forest.n_nodes > sum(2 * t["num_leaves"] - 1 for t in booster.dump_model()["tree_info"])
    R = np.concatenate([X[:200], ZERO_ROWS.repeat(3, axis=1), np.full((3, 3), 1e-40)])
    check(forest, booster, R, leaves=False)


# ---------------------------------------------------------------- corrupt categorical text
@pytest.mark.parametrize(
    ("old", "new", "match"),
    [
        (r"cat_boundaries=0 ", "cat_boundaries=1 ", "cat_boundaries must rise from 0"),
        (r"cat_threshold=\d+", "cat_threshold=-4", "outside the uint32 range"),
        (r"cat_threshold=[^\n]*", "cat_threshold=1", "'cat_threshold' has 1 values"),
        (r"num_cat=[1-9]\d*", "num_cat=-1", "num_cat < 0"),
    ],
)
def test_corrupt_categorical_text_raises(old, new, match):
    X, score, rng = data(seed=10)
    text = train("regression", X, score, rng, rounds=2).model_to_string()
    bad = re.sub(old, new, text, count=1)
    assert bad != text
    with pytest.raises(ModelFormatError, match=match):
        forest_from_lightgbm_text(bad)


def test_categorical_threshold_out_of_range_raises():
    X, score, rng = data(seed=11)
    text = train("regression", X, score, rng, rounds=1).model_to_string()
    block = text[text.index("Tree=0") : text.index("end of trees")]
    kinds = re.search(r"^decision_type=(.*)$", block, re.M)[1].split()
    thr = re.search(r"^threshold=(.*)$", block, re.M)[1].split()
    node = next(i for i, d in enumerate(kinds) if int(d) & 1)
    thr[node] = "9"
    bad = text.replace(re.search(r"^threshold=.*$", block, re.M)[0], "threshold=" + " ".join(thr))
    with pytest.raises(
        ModelFormatError,
        match=rf"text: tree 0, node {node} on feature 2 has categorical threshold 9.0",
    ):
        forest_from_lightgbm_text(bad)
