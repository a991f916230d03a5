"""The IR's categorical splits: the routing rule, category sets, DataFrame encoding, validation.

The per-library rules are checked against the libraries themselves in the frontend tests; here a
scalar restatement of the documented rule is the oracle for the vectorised reference predictor.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from catmodels import categorical_forest, categorical_rows

from treeslim import Forest
from treeslim.errors import InvalidForestError
from treeslim.ir import TreeArrays, bitset_table, codes_of, leaf_nodes
from treeslim.runtime import KernelForest

VALUES = [-2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, 3.0, 3.99, 40.0, 41.0, 63.0, 64.0, 95.0,
          2.0**31, 1e10, math.inf, -math.inf, math.nan]  # fmt: skip
SET = {0, 1, 3, 40}


def _forest(rule: str, default_left: bool = True, **header: object) -> Forest:
    # root: categorical on feature 0; left child: numeric x1 < 0.5; three leaves
    tree = TreeArrays(
        split_index=np.array([0, 1, -1, -1, -1]),
        threshold=np.array([0.0, 0.5, 0, 0, 0]),
        cleft=np.array([1, 3, -1, -1, -1]),
        cright=np.array([2, 4, -1, -1, -1]),
        default_left=np.array([default_left, False, False, False, False]),
        leaf_value=np.array([0.0, 0.0, 5.0, 1.0, 2.0]),
        cat_index=np.array([0, -1, -1, -1, -1]),
    )
    return Forest.from_trees(
        [tree], num_feature=2, task="regression", category_rule=rule,
        cat_bitsets=bitset_table([SET]), **header,
    )  # fmt: skip


def _expected(x: float, rule: str, default_left: bool) -> float:
    if math.isnan(x):
        left = default_left
    else:
        valid = (x > -1 if rule == "lightgbm" else x >= 0) and x < 64
        left = valid and int(x) in SET
    return 1.0 if left else 5.0  # x1 = 0 < 0.5 -> leaf 1.0 on the left


@pytest.mark.parametrize("rule", ["xgboost", "lightgbm"])
@pytest.mark.parametrize("default_left", [True, False])
def test_reference_predictor_follows_the_rule(rule: str, default_left: bool) -> None:
    f = _forest(rule, default_left)
    X = np.column_stack([VALUES, np.zeros(len(VALUES))])
    got = f.predict(X)
    want = [_expected(x, rule, default_left) for x in VALUES]
    np.testing.assert_array_equal(got, want)
    assert f.n_categorical_splits == 1
    assert f.category_set(0).tolist() == sorted(SET)


def test_bitset_round_trip_and_limits() -> None:
    sets = [[], [0], [31, 32, 1000], list(range(70))]
    table = bitset_table(sets)
    assert table.dtype == np.uint32 and table.shape == (4, 1000 // 32 + 1)
    assert [codes_of(row).tolist() for row in table] == [sorted(s) for s in sets]
    with pytest.raises(ValueError, match="category codes"):
        bitset_table([[-1]])


def test_validate_rejects_bad_categorical_nodes() -> None:
    f = _forest("xgboost")
    with pytest.raises(InvalidForestError, match="not a category set"):
        f.replace(cat_index=np.array([3, -1, -1, -1, -1]))
    with pytest.raises(InvalidForestError, match="leaf cannot be a categorical"):
        f.replace(cat_index=np.array([0, -1, 0, -1, -1]))
    with pytest.raises(InvalidForestError, match="category_rule"):
        f.replace(category_rule="catboost")
    with pytest.raises(InvalidForestError, match="feature_categories"):
        f.replace(feature_categories=(("a",),))


def test_tree_round_trip_and_pickle_keep_the_sets() -> None:
    f = _forest("lightgbm", feature_categories=(("a", "b", "c", "d"), None))
    again = Forest.from_trees([f.tree(0)], **f.header())
    X = np.column_stack([VALUES, np.zeros(len(VALUES))])
    np.testing.assert_array_equal(again.predict(X), f.predict(X))
    loaded = pickle.loads(pickle.dumps(f))
    np.testing.assert_array_equal(loaded.predict(X), f.predict(X))
    assert loaded.feature_categories == (("a", "b", "c", "d"), None)


def test_dataframe_categories_are_encoded_by_the_stored_list() -> None:
    pd = pytest.importorskip("pandas")
    cats = ("a", "b", "c", "d")  # codes 0..3; the set {0, 1, 3} -> a, b, d go left
    names = ("colour", "x")
    f = _forest("lightgbm", feature_categories=(cats, None), feature_names=names)
    values = ["d", "c", "b", "a", None, "zz"]
    # the DataFrame's own category order differs from training's; "zz" was never seen
    df = pd.DataFrame({"colour": pd.Categorical(values, categories=["zz", "d", "c", "b", "a"]),
                       "x": np.zeros(len(values))})  # fmt: skip
    np.testing.assert_array_equal(f.predict(df), [1.0, 5.0, 1.0, 1.0, 1.0, 1.0])
    # unseen and missing values become NaN -> default side (left here; right when not default)
    g = _forest("lightgbm", default_left=False, feature_categories=(cats, None),
                feature_names=names)  # fmt: skip
    np.testing.assert_array_equal(g.predict(df), [1.0, 5.0, 1.0, 1.0, 5.0, 5.0])
    # plain strings are encoded the same way
    df_text = df.astype({"colour": object})
    np.testing.assert_array_equal(g.predict(df_text), g.predict(df))


def test_xgboost_rule_refuses_unseen_categories_naming_the_feature() -> None:
    pd = pytest.importorskip("pandas")
    f = _forest("xgboost", feature_categories=(("a", "b"), None), feature_names=("colour", "x"))
    df = pd.DataFrame({"colour": pd.Categorical(["a", "q"]), "x": [0.0, 0.0]})
    with pytest.raises(ValueError, match=r"colour.*'q'"):
        f.predict(df)


def test_sklearn_rule_encodes_numeric_values() -> None:
    # HistGradientBoosting encodes raw category values: 10 -> code 0, 20 -> 1, 30 -> 2, 40 -> 3
    f = _forest("sklearn", feature_categories=((10.0, 20.0, 30.0, 40.0), None))
    X = np.array([[10.0, 0], [20, 0], [30, 0], [40, 0], [0, 0], [1, 0], [25, 0], [np.nan, 0]])
    # set {0, 1, 3}: 10, 20, 40 go left; 30 right; unseen values and NaN: default side (left)
    np.testing.assert_array_equal(f.predict(X), [1.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_numeric_dataframe_into_numeric_model_still_refuses_text() -> None:
    pd = pytest.importorskip("pandas")
    f = Forest(split_index=[0, -1, -1], threshold=[0.5, 0, 0], cleft=[1, -1, -1],
               cright=[2, -1, -1], default_left=[True, False, False], leaf_value=[0, 1.0, 2.0],
               tree_offsets=[0, 3], tree_class=[0], num_feature=1, task="regression")  # fmt: skip
    with pytest.raises(ValueError, match="no categorical features"):
        f.predict(pd.DataFrame({"a": ["x", "y"]}))


@pytest.mark.parametrize("rule", ["xgboost", "lightgbm"])
@pytest.mark.parametrize(("task", "dtype"), [("binary", "float32"), ("multiclass", "float64")])
@pytest.mark.parametrize("depth", [4, 12])  # 12: unbalanced trees, the kernel's compacted walk
def test_kernel_matches_the_reference_on_categorical_forests(rule, task, dtype, depth) -> None:
    f = categorical_forest(seed=3, rule=rule, task=task, feature_dtype=dtype, depth=depth,
                           stop=0.2 if depth == 4 else 0.4)  # fmt: skip
    assert f.n_categorical_splits > 5
    X = categorical_rows(f)
    kf = KernelForest(f)
    want = f.predict_margin(X).reshape(len(X), -1)
    np.testing.assert_array_equal(kf.leaves(X), leaf_nodes(f, X))
    np.testing.assert_allclose(kf.margin(X), want, rtol=0, atol=1e-12)  # summation order only
    for n in (1, 3):  # the small-batch paths
        np.testing.assert_allclose(kf.margin(X[:n]), want[:n], rtol=0, atol=1e-12)
