"""Categorical splits from scikit-learn's HistGradientBoosting and Treelite, through to_treelite and
the TL2cgen compile: oracle tests against HGB's own predict / predict_proba / decision_function,
GTIL, and the compiled library, on adversarial rows (every category in and out of each set, unseen
values, negatives, NaN, fractions, huge values)."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import treelite
from sklearn.ensemble import HistGradientBoostingClassifier as HGBC
from sklearn.ensemble import HistGradientBoostingRegressor as HGBR
from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

import treeslim
from treeslim import Forest, UnsupportedModelError
from treeslim.backends import to_treelite
from treeslim.frontends import forest_from_sklearn, forest_from_treelite
from treeslim.ir import TreeArrays, bitset_table, check_X

#: Values thrown at categorical columns besides the categories themselves (HGB refuses +-inf).
ODD = [np.nan, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 3.7, 7.0, 255.0, 256.0, 2.0**31, 1e10]
LEVELS = {1: [5.0, 10.0, 20.0, 40.0, 80.0], 3: [1.0, 2.0, 3.0]}


@functools.cache
def numeric_data() -> tuple[np.ndarray, np.ndarray]:
    """Two categorical columns (1 and 3, values that are not codes) between numerical ones."""
    rng = np.random.default_rng(0)
    n = 600
    X = rng.normal(size=(n, 4))
    for j, levels in LEVELS.items():
        X[:, j] = rng.choice(levels, n)
    X[rng.random(n) < 0.05, 1] = np.nan
    y = X[:, 0] + 2.0 * np.isin(X[:, 1], [10.0, 40.0]) - 1.5 * (X[:, 3] == 2.0) + 0.3 * X[:, 2]
    return X, y


def adversarial(X: np.ndarray, cols: list[int]) -> np.ndarray:
    """Rows of ``X`` with each categorical column set to every category and every odd value."""
    values = sorted({*np.unique(X[:, cols][~np.isnan(X[:, cols])]).tolist()}) + ODD
    rows = []
    for i, v in enumerate(values):
        for j in cols:
            row = X[i % len(X)].copy()
            row[j] = v
            row[[c for c in cols if c != j]] = values[(i * 7 + 3) % len(values)]
            rows.append(row)
    return np.vstack([np.array(rows), X[:50]])


def _fit(kind: str, **kw):
    X, y = numeric_data()
    common = {"max_iter": 6, "max_depth": 4, "random_state": 0, **kw}
    if kind == "regression":
        return HGBR(**common).fit(X, y)
    if kind == "binary":
        return HGBC(**common).fit(X, (y > 0.5).astype(int))
    return HGBC(**common).fit(X, np.digitize(y, [-0.5, 0.5, 1.5]))


def assert_matches_hgb(model, forest: Forest, X) -> None:
    np.testing.assert_allclose(forest.predict_margin(X), model._raw_predict(X).squeeze(), 0, 1e-12)
    if isinstance(model, HGBR):
        np.testing.assert_allclose(forest.predict(X), model.predict(X), rtol=1e-12, atol=1e-12)
        return
    proba = model.predict_proba(X)
    expected = proba[:, 1] if proba.shape[1] == 2 else proba
    np.testing.assert_allclose(forest.predict(X), expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(forest.predict_margin(X), model.decision_function(X), 0, 1e-12)


@pytest.mark.parametrize("kind", ["regression", "binary", "multiclass"])
@pytest.mark.parametrize("spec", ["indices", "mask"])
def test_hgb_numpy_categories(kind: str, spec: str) -> None:
    cats = [1, 3] if spec == "indices" else np.array([False, True, False, True])
    model = _fit(kind, categorical_features=cats)
    forest = forest_from_sklearn(model)
    assert forest.category_rule == "sklearn" and forest.n_categorical_splits > 0
    assert forest.feature_categories == (None, tuple(LEVELS[1]), None, tuple(LEVELS[3]))
    # the trees read the encoder's output (categorical columns first): mapped back to X's order
    assert set(forest.split_index[forest.is_categorical].tolist()) <= {1, 3}
    X, _ = numeric_data()
    assert_matches_hgb(model, forest, adversarial(X, [1, 3]))


def test_hgb_unseen_values_take_the_missing_side() -> None:
    model = _fit("regression", categorical_features=[1, 3])
    forest = forest_from_sklearn(model)
    X, _ = numeric_data()
    rows = np.repeat(X[:5], 4, axis=0)
    rows[0::4, 1], rows[1::4, 1], rows[2::4, 1], rows[3::4, 1] = np.nan, 7.0, np.inf, -np.inf
    out = forest.predict(rows).reshape(5, 4)
    assert np.array_equal(out, np.repeat(out[:, :1], 4, axis=1))  # unseen / inf = missing
    np.testing.assert_allclose(out[:, 0], model.predict(rows[0::4]), rtol=1e-12)


def _frame(n: int, seed: int, order: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "num": rng.normal(size=n),
            "color": pd.Categorical(rng.choice(["red", "green", "blue", "grey"], n), order),
            "size": rng.normal(size=n),
            "shape": pd.Categorical(rng.choice(["round", "square"], n), ["square", "round"]),
        }
    )


@pytest.mark.parametrize("spec", ["from_dtype", "names"])
def test_hgb_dataframe_categories(spec: str) -> None:
    df = _frame(500, 1, ["red", "green", "blue", "grey"])
    y = df.num + 2.0 * df.color.isin(["green", "grey"]) - (df["shape"] == "round") > 0.4
    cats = "from_dtype" if spec == "from_dtype" else ["color", "shape"]
    model = HGBC(max_iter=6, max_depth=4, categorical_features=cats).fit(df, y)
    forest = forest_from_sklearn(model)
    assert forest.feature_names == ("num", "color", "size", "shape")
    assert forest.feature_categories[1] == ("blue", "green", "grey", "red")  # the encoder's order
    test = _frame(60, 2, ["grey", "blue", "purple", "green", "red"])  # another order, one unseen
    test.loc[::7, "color"] = "purple"
    test.loc[::5, "color"] = np.nan
    test.loc[::9, "shape"] = np.nan
    assert_matches_hgb(model, forest, test)


def test_hgb_planted_column_order_bug_is_caught(monkeypatch) -> None:
    """Reading the trees' features as the user's columns (forgetting the encoder's reordering)
    must fail the oracle comparison."""
    import treeslim.frontends._sklearn as sk

    real = sk._hgb_columns

    def unmapped(obj, name, n):
        return np.arange(n), real(obj, name, n)[1]

    model = _fit("regression", categorical_features=[1, 3])
    X, _ = numeric_data()
    monkeypatch.setattr(sk, "_hgb_columns", unmapped)
    with pytest.raises((AssertionError, ValueError)):
        assert_matches_hgb(model, forest_from_sklearn(model), adversarial(X, [1, 3]))


# ------------------------------------------------------------------ Treelite
def _one_tree_regressor(num_feature, threshold_type, base_score):
    """A Treelite builder for one regression tree (the categorical tests add its nodes)."""
    return ModelBuilder(
        threshold_type=threshold_type,
        leaf_output_type=threshold_type,
        metadata=Metadata(num_feature=num_feature, task_type="kRegressor",
                          average_tree_output=False, num_target=1, num_class=[1],
                          leaf_vector_shape=(1, 1)),
        tree_annotation=TreeAnnotation(num_tree=1, target_id=[0], class_id=[0]),
        postprocessor=PostProcessorFunc(name="identity"),
        base_scores=[base_score],
    )  # fmt: skip


def _stump_model(threshold_type: str, right_child: bool) -> treelite.Model:
    """Category lists on features 0 and 2 (codes beyond 64, both child conventions), a threshold
    on feature 1."""
    b = _one_tree_regressor(3, threshold_type, 0.5)
    b.start_tree()
    b.start_node(0)
    b.categorical_test(0, default_left=False, category_list=[1, 100, 200],
                       category_list_right_child=right_child, left_child_key=1, right_child_key=2)  # fmt: skip
    b.end_node()
    b.start_node(1)
    b.numerical_test(1, 0.5, default_left=False, opname="<", left_child_key=3, right_child_key=4)
    b.end_node()
    b.start_node(2)
    b.categorical_test(2, default_left=True, category_list=[0, 5],
                       category_list_right_child=not right_child, left_child_key=5, right_child_key=6)  # fmt: skip
    b.end_node()
    for key in (3, 4, 5, 6):
        b.start_node(key)
        b.leaf(float(key))
        b.end_node()
    b.end_tree()
    return b.commit()


GRID = np.array(
    [0, 1, 2, 5, 6, 100, 200, 201, 255, 256, np.nan, -1, -0.5, -0.0, 0.5, 3.7, 100.9, 5.5,
     2**24, 2**24 + 2, 2**31, 2**32 - 1, 2**32, 2**32 + 1, 1e10, np.inf, -np.inf,
     np.frombuffer((0x40000000FFFFFFFF).to_bytes(8, "little"))[0]]
)  # fmt: skip
# the last value (2.0000005, code 2) has the low word -1 that TL2cgen reads as "missing" in a double
GRID_ROWS = np.array(np.meshgrid(GRID, GRID)).reshape(2, -1).T[:, [0, 1, 1]]
GRID_ROWS[:, 1] = GRID_ROWS[::-1, 1]


def _gtil(model, X, margin: bool = True) -> np.ndarray:
    out = treelite.gtil.predict(model, X, pred_margin=margin, nthread=1)
    out = out.reshape(len(X), -1)
    return out[:, 0] if out.shape[1] == 1 else out


@pytest.mark.parametrize("threshold_type", ["float64", "float32"])
@pytest.mark.parametrize("right_child", [False, True])
def test_treelite_category_lists_match_gtil(threshold_type: str, right_child: bool) -> None:
    model = _stump_model(threshold_type, right_child)
    forest = forest_from_treelite(model)
    assert forest.category_rule == "xgboost" and forest.n_categorical_splits == 2
    assert np.array_equal(forest.predict(GRID_ROWS), _gtil(model, GRID_ROWS))
    # members go left in the Forest, whichever side Treelite kept them on
    assert forest.category_set(0).tolist() == [1, 100, 200]


def test_treelite_from_xgboost_categorical() -> None:
    xgb = pytest.importorskip("xgboost")
    rng = np.random.default_rng(3)
    X = np.column_stack([rng.integers(0, 40, 500), rng.normal(size=500)]).astype(float)
    y = np.isin(X[:, 0], [3, 7, 11, 30]) + X[:, 1]
    dtrain = xgb.DMatrix(X, y, feature_types=["c", "q"], enable_categorical=True)
    params = {"max_depth": 3, "max_cat_to_onehot": 1, "nthread": 1}
    booster = xgb.train(params, dtrain, 4)
    model = treelite.frontend.from_xgboost(booster)
    forest = forest_from_treelite(model)
    assert forest.n_categorical_splits > 0
    rows = np.column_stack([np.repeat(GRID, 3), np.tile([-1.0, 0.0, np.nan], len(GRID))])
    rows = np.vstack([rows, X[:100], np.c_[np.arange(45.0), np.zeros(45)]])
    np.testing.assert_allclose(forest.predict(rows), _gtil(model, rows), rtol=1e-6, atol=1e-6)


def test_treelite_refuses_huge_codes() -> None:
    b = _one_tree_regressor(1, "float64", 0.0)
    b.start_tree()
    b.start_node(0)
    b.categorical_test(0, default_left=True, category_list=[3, 2**25],
                       category_list_right_child=False, left_child_key=1, right_child_key=2)  # fmt: skip
    b.end_node()
    for key in (1, 2):
        b.start_node(key)
        b.leaf(float(key))
        b.end_node()
    b.end_tree()
    with pytest.raises(UnsupportedModelError, match=r"tree 0, node 0 \(feature 0\).*33554432"):
        forest_from_treelite(b.commit())


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_treelite_round_trip_of_hgb(kind: str) -> None:
    model = _fit(kind, categorical_features=[1, 3])
    forest = forest_from_sklearn(model)
    tl = to_treelite(forest)
    back = forest_from_treelite(tl)
    assert back.category_rule == "sklearn" and back.feature_categories == forest.feature_categories
    X, _ = numeric_data()
    rows = adversarial(X, [1, 3])
    assert np.array_equal(back.predict_margin(rows), forest.predict_margin(rows))
    # GTIL reads codes: the forest's own encoding of the rows
    np.testing.assert_allclose(
        _gtil(tl, check_X(forest, rows)), forest.predict_margin(rows), rtol=1e-12, atol=1e-12
    )


# ------------------------------------------------------------------ TL2cgen compile
def _lightgbm_rule_forest() -> Forest:
    """A hand-made "lightgbm"-rule forest: x in (-1, 0) is code 0 there, not for Treelite."""
    tree = TreeArrays(
        split_index=np.array([0, 1, -1, -1, -1]),
        threshold=np.array([0.0, 0.25, 0, 0, 0]),
        cleft=np.array([1, 3, -1, -1, -1]),
        cright=np.array([2, 4, -1, -1, -1]),
        default_left=np.array([True, True, False, False, False]),
        leaf_value=np.array([0.0, 0.0, 1.0, 2.0, 3.0]),
        cat_index=np.array([0, -1, -1, -1, -1]),
    )
    return Forest.from_trees(
        [tree], task="regression", num_feature=2, comparison="<=", category_rule="lightgbm",
        cat_bitsets=bitset_table([[0, 3, 70]]),
    )  # fmt: skip


def _compiled(cache: dict, key: str, forest: Forest, engine: str = "kernel"):
    if (key, engine) not in cache:
        cache[key, engine] = treeslim.compile(forest, verbose=0, engine=engine)
    return cache[key, engine]


@pytest.mark.parametrize("engine", ["kernel", "tl2cgen"])
@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_compiled_hgb_predicts_like_the_library(compiled_cache, kind: str, engine: str) -> None:
    model = _fit(kind, categorical_features=[1, 3], max_iter=3, max_depth=3)
    forest = forest_from_sklearn(model)
    compiled = _compiled(compiled_cache, f"hgb-{kind}", forest, engine)
    X, _ = numeric_data()
    rows = adversarial(X, [1, 3])
    assert np.array_equal(compiled.predict_margin(rows), forest.predict_margin(rows))
    assert np.array_equal(compiled.predict_rowwise(rows, margin=True), forest.predict_margin(rows))
    np.testing.assert_allclose(
        compiled.predict_margin(rows), model.decision_function(rows), 0, 1e-12
    )
    info = compiled.info["categorical"]
    assert info["1"] == {"index": 1, "rule": "sklearn", "categories": LEVELS[1]}


@pytest.mark.parametrize("engine", ["kernel", "tl2cgen"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_compiled_category_rules_on_odd_values(compiled_cache, dtype, engine) -> None:
    """Codes, negatives, (-1, 0) (code 0 under LightGBM's rule), fractions, huge, inf, NaN: the
    compiled library, one row at a time and in batches, routes them as the Forest does."""
    rows = GRID_ROWS.astype(dtype)
    two = rows[:, [0, 2]]  # the LightGBM-rule forest has two features
    for key, forest in (
        ("treelite-xgb", forest_from_treelite(_stump_model("float32", True))),
        ("lightgbm-rule", _lightgbm_rule_forest()),
    ):
        rows = rows if forest.num_feature == 3 else two
        compiled = _compiled(compiled_cache, key, forest, engine)
        expected = forest.predict(rows)
        assert np.array_equal(compiled.predict(rows), expected), key
        assert np.array_equal(compiled.predict_rowwise(rows), expected), key
        one = [compiled.predict(r)[0] for r in rows]
        assert np.array_equal(one, expected), key
    assert _lightgbm_rule_forest().predict(np.array([[-0.5, 0.0]]))[0] == 2.0  # code 0: member


def test_tl2cgen_refuses_a_feature_split_both_ways_the_kernel_compiles_it() -> None:
    tree = TreeArrays(
        split_index=np.array([0, 0, -1, -1, -1]),
        threshold=np.array([0.0, 0.5, 0, 0, 0]),
        cleft=np.array([1, 3, -1, -1, -1]),
        cright=np.array([2, 4, -1, -1, -1]),
        default_left=np.zeros(5, dtype=bool),
        leaf_value=np.arange(5.0),
        cat_index=np.array([0, -1, -1, -1, -1]),
    )
    forest = Forest.from_trees(
        [tree], task="regression", num_feature=1, cat_bitsets=bitset_table([[1]]),
        feature_names=("f",),
    )  # fmt: skip
    with pytest.raises(UnsupportedModelError, match=r"Tree 0, node 1 .*feature 0 \('f'\)"):
        treeslim.compile(forest, cache=False, verbose=0, engine="tl2cgen")
    compiled = treeslim.compile(forest, cache=False, verbose=0)  # the kernel reads it both ways
    rows = np.array([[v] for v in (np.nan, -1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, np.inf)])
    assert np.array_equal(compiled.predict_rowwise(rows), forest.predict(rows))
    assert np.array_equal([compiled.predict(r)[0] for r in rows], forest.predict(rows))
