"""The Forest IR itself: invariants, read-only arrays, input checking, pickling, the CLI."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import treeslim
from treeslim import Forest, InvalidForestError
from treeslim.cli import main
from treeslim.ir import TreeArrays


def stump(feature=0, threshold=0.5, left=-1.0, right=1.0, default_left=True, tree_class=0):
    return TreeArrays(
        split_index=np.array([feature, -1, -1]),
        threshold=np.array([threshold, 0.0, 0.0]),
        cleft=np.array([1, -1, -1]),
        cright=np.array([2, -1, -1]),
        default_left=np.array([default_left, False, False]),
        leaf_value=np.array([0.0, left, right]),
        tree_class=tree_class,
    )


def small_forest(**header):
    kw = dict(num_feature=2, task="regression", comparison="<", feature_dtype="float64")
    kw.update(header)
    return Forest.from_trees([stump(0, 0.5), stump(1, -1.0, 2.0, 3.0, False)], **kw)


def test_semantics_of_comparisons_and_nan():
    lt = small_forest()
    le = small_forest(comparison="<=")
    X = np.array([[0.5, -1.0], [0.4999, -1.5], [np.nan, np.nan], [np.inf, -np.inf]])
    np.testing.assert_array_equal(lt.predict(X), [1 + 3, -1 + 2, -1 + 3, 1 + 2])
    np.testing.assert_array_equal(le.predict(X), [-1 + 2, -1 + 2, -1 + 3, 1 + 2])
    np.testing.assert_array_equal(lt.apply(X)[:, 0], [2, 1, 1, 2])


def test_float32_rounding_of_inputs():
    t = 0.1  # float64 threshold; 0.1 rounds to a float32 above it
    f64 = small_forest(comparison="<=").replace(
        threshold=np.where(small_forest().split_index >= 0, t, 0.0)
    )
    f32 = f64.replace(feature_dtype="float32")
    X = np.array([[0.1, 0.1]])
    assert f64.predict(X)[0] == -1 + 2  # 0.1 <= 0.1
    assert f32.predict(X)[0] == 1 + 3  # float32(0.1) > 0.1


def test_sizes_and_properties():
    f = small_forest()
    assert (f.n_trees, f.n_nodes, f.n_leaves, f.max_depth, f.num_feature) == (2, 6, 4, 1, 2)
    assert f.task == "regression" and f.link == "identity"
    np.testing.assert_array_equal(f.tree_depths, [1, 1])
    assert "n_trees=2" in repr(f)


def test_arrays_are_read_only_and_pickle_keeps_them_so():
    f = small_forest()
    with pytest.raises(ValueError, match="read-only"):
        f.leaf_value[1, 0] = 5.0
    with pytest.raises(AttributeError):
        f.num_feature = 3  # type: ignore[misc]
    g = pickle.loads(pickle.dumps(f))
    with pytest.raises(ValueError, match="read-only"):
        g.threshold[0] = 1.0
    X = np.random.default_rng(0).normal(size=(20, 2))
    np.testing.assert_array_equal(g.predict(X), f.predict(X))


def test_canonical_reordering_and_cycles():
    # children before parents: the builder renumbers breadth-first
    tree = TreeArrays(
        split_index=np.array([-1, -1, 0]),
        threshold=np.array([0.0, 0.0, 0.0]),
        cleft=np.array([-1, -1, 0]),
        cright=np.array([-1, -1, 1]),
        default_left=np.array([False, False, True]),
        leaf_value=np.array([5.0, 7.0, 0.0]),
    )
    bad_root = TreeArrays(**{**tree.__dict__, "split_index": np.array([0, -1, 0])})
    with pytest.raises(InvalidForestError, match="Tree 0"):
        Forest.from_trees([bad_root], num_feature=1, task="regression")
    # reordered: root must be node 0, so move it first
    tree = TreeArrays(
        split_index=np.array([0, -1, 0, -1, -1]),
        threshold=np.array([0.0, 0.0, 1.0, 0.0, 0.0]),
        cleft=np.array([4, -1, 3, -1, -1]),
        cright=np.array([2, -1, 1, -1, -1]),
        default_left=np.zeros(5, bool),
        leaf_value=np.array([0.0, 3.0, 0.0, 2.0, 1.0]),
    )
    f = Forest.from_trees([tree], num_feature=1, task="regression")
    np.testing.assert_array_equal(f.predict(np.array([[-1.0], [0.5], [2.0]])), [1.0, 2.0, 3.0])
    cyc = TreeArrays(**{**tree.__dict__, "cleft": np.array([4, -1, 0, -1, -1])})
    with pytest.raises(InvalidForestError, match="reached twice"):
        Forest.from_trees([cyc], num_feature=1, task="regression")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(task="clustering"), "task must be one of"),
        (dict(postprocessor="tanh"), "postprocessor must be"),
        (dict(comparison=">"), "comparison must be"),
        (dict(num_feature=1), r"Tree 1, node 0: split_index 1 is not a feature"),
        (dict(base_score=np.array([np.nan])), "base_score must be finite"),
        (dict(base_score=np.zeros(2)), "base_score has shape"),
        (dict(feature_names=("a",)), "1 feature_names for num_feature=2"),
        (dict(task="multiclass", num_class=1), "num_class >= 2"),
        (dict(tree_class=np.array([0, 1])), "Tree 1: tree_class 1 is not an output"),
        (dict(cleft=np.array([1, -1, -1, 7, -1, -1])), "Tree 1, node 0: cleft 7 must point"),
        (dict(cleft=np.array([1, -1, -1, 5, -1, -1])), "Tree 1, node 1: has 0 parents"),
        (dict(threshold=np.array([np.nan, 0, 0, 0, 0, 0])), "Tree 0, node 0: threshold is NaN"),
        (dict(leaf_value=np.array([0, np.inf, 0, 0, 0, 0.0])), "Tree 0, node 1: leaf value"),
        (dict(tree_offsets=np.array([0, 3, 7])), "tree_offsets must rise"),
    ],
)
def test_validate_names_the_fault(change, match):
    with pytest.raises(InvalidForestError, match=match):
        small_forest().replace(**change)


def test_input_checks():
    f = small_forest(feature_names=("a", "b"))
    with pytest.raises(ValueError, match="X has 3 features, but this model expects 2"):
        f.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="numeric"):
        f.predict([["x", "y"]])
    with pytest.raises(ValueError, match="2-D"):
        f.predict(np.zeros((2, 2, 2)))
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match="Sparse input"):
        f.predict(scipy_sparse.csr_matrix(np.zeros((2, 2))))
    # one row as a 1-D array
    assert f.predict(np.array([0.0, 0.0])).shape == (1,)


def test_dataframe_names_are_checked():
    pd = pytest.importorskip("pandas")
    f = small_forest(feature_names=("a", "b"))
    X = pd.DataFrame({"a": [0.0, 1.0], "b": [0.0, 1.0]})
    np.testing.assert_array_equal(f.predict(X), f.predict(X.to_numpy()))
    with pytest.raises(ValueError, match="another order"):
        f.predict(X[["b", "a"]])
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        f.predict(X.rename(columns={"b": "c"}))
    with pytest.raises(ValueError, match="non-numeric columns"):
        f.predict(pd.DataFrame({"a": ["x", "y"], "b": [0.0, 1.0]}))
    nullable = pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [0.0, 1.0]})
    assert np.isfinite(f.predict(nullable)).all()


def test_from_model_refuses_unknown_objects():
    with pytest.raises(treeslim.UnsupportedModelError, match=r"Cannot convert a builtins\.dict"):
        treeslim.from_model({})
    from sklearn.linear_model import LinearRegression

    with pytest.raises(treeslim.UnsupportedModelError, match="LinearRegression"):
        treeslim.from_model(LinearRegression())


def test_load_refuses_pickles_and_garbage(tmp_path):
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(treeslim.ModelFormatError, match="never loaded"):
        treeslim.load(path)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(treeslim.ModelFormatError, match="empty"):
        treeslim.load(empty)


def test_cli_inspect(tmp_path, capsys):
    xgb = pytest.importorskip("xgboost")
    X = np.random.default_rng(0).normal(size=(200, 3))
    b = xgb.train({"max_depth": 3}, xgb.DMatrix(X, X[:, 0]), 4)
    path = tmp_path / "m.json"
    b.save_model(path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "reg:squarederror" in out and "trees" in out and "xgboost_json" in out
    assert main(["inspect", str(path), "--json"]) == 0
    assert '"trees": 4' in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["inspect", str(bad)]) == 2
    assert "error" in capsys.readouterr().err
