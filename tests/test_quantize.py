"""Quantization passes: they shrink what they say, report their error, and pruning stays exact."""

from __future__ import annotations

import importlib.util

import models
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import oracle_rows, rows

import treeslim
from treeslim import Forest
from treeslim.formats import dump_tslim_bytes
from treeslim.ir import TreeArrays
from treeslim.measure import quantization_error
from treeslim.passes import prune_unreachable, quantize_leaves, quantize_thresholds
from treeslim.passes._quantize import _float32_equivalent, _snap

HAVE_SKLEARN_FRONTEND = importlib.util.find_spec("treeslim.frontends._sklearn") is not None
BOOSTED = [(lib, task) for lib, task in models.ALL if lib in ("xgboost", "lightgbm")]


def forest_of(lib, task):
    model, X = models.model(lib, task)
    return treeslim.from_model(model), X


def distinct_per_feature(forest):
    inner = forest.split_index >= 0
    return {
        int(j): len(np.unique(forest.threshold[inner & (forest.split_index == j)]))
        for j in np.unique(forest.split_index[inner])
    }


def stump_chain(dl_root, dl_inner, comparison="<"):
    """x0 vs 1 at the root, x0 vs 2 on its left: the inner split is implied for non-NaN x."""
    return Forest(
        split_index=[0, 0, -1, -1, -1], threshold=[1.0, 2.0, 0, 0, 0], cleft=[1, 3, -1, -1, -1],
        cright=[2, 4, -1, -1, -1], default_left=[dl_root, dl_inner, False, False, False],
        leaf_value=[0, 0, 3.0, 1.0, 2.0], tree_offsets=[0, 5], tree_class=[0], num_feature=1,
        task="regression", comparison=comparison,
    )  # fmt: skip


def random_forest(seed, comparison, dtype, n_trees=3):
    """Trees over 2 features with thresholds from a small set, so implied splits are common."""
    rng = np.random.default_rng(seed)
    cuts = [-np.inf, -1.0, 0.0, 0.5, 1.0, 1.0 + 2**-30, 2.0, np.inf]

    def grow(depth, nodes):
        i = len(nodes)
        nodes.append(None)
        if depth < 5 and rng.random() < 0.8 - 0.1 * depth:
            left = grow(depth + 1, nodes)
            right = grow(depth + 1, nodes)
            nodes[i] = (int(rng.integers(2)), float(rng.choice(cuts)), bool(rng.integers(2)),
                        left, right, 0.0)  # fmt: skip
        else:
            nodes[i] = (-1, 0.0, False, -1, -1, float(rng.integers(3)))
        return i

    trees = []
    for _ in range(n_trees):
        nodes = []
        grow(0, nodes)
        si, thr, dl, cl, cr, lv = (np.array(c) for c in zip(*nodes, strict=True))
        trees.append(TreeArrays(si, thr, cl, cr, dl, lv))
    return Forest.from_trees(
        trees, num_feature=2, task="regression", comparison=comparison, feature_dtype=dtype
    )


# ------------------------------------------------------------------------------ prune_unreachable
@pytest.mark.parametrize(
    ("dl_root", "dl_inner", "n_nodes"),
    [
        (True, True, 3),  # NaN reaches the inner split and goes left like every other value
        (True, False, 5),  # NaN reaches it and goes right: the split must stay
        (False, False, 3),  # NaN never reaches it
    ],
)
@pytest.mark.parametrize("comparison", ["<", "<="])
def test_prune_drops_implied_splits_only_when_nan_agrees(dl_root, dl_inner, n_nodes, comparison):
    f = stump_chain(dl_root, dl_inner, comparison)
    p = prune_unreachable(f)
    assert p.n_nodes == n_nodes
    X = np.array([[np.nan], [0.0], [1.0], [1.5], [2.0], [3.0], [-np.inf], [np.inf]])
    np.testing.assert_array_equal(p.predict_margin(X), f.predict_margin(X))
    if n_nodes < 5:
        assert p.source["passes"][-1] == {
            "name": "prune_unreachable", "lossy": False, "nodes_before": 5, "nodes_after": 3,
        }  # fmt: skip
    else:
        assert p is f


def test_prune_follows_nan_down_the_right_branch_too():
    """x0 vs 2 at the root, x0 vs 1 on its right: implied right; NaN goes left at the root."""
    f = Forest(
        split_index=[0, -1, 0, -1, -1], threshold=[2.0, 0, 1.0, 0, 0], cleft=[1, -1, 3, -1, -1],
        cright=[2, -1, 4, -1, -1], default_left=[True, False, True, False, False],
        leaf_value=[0, 3.0, 0, 1.0, 2.0], tree_offsets=[0, 5], tree_class=[0], num_feature=1,
        task="regression",
    )  # fmt: skip
    p = prune_unreachable(f)
    assert p.n_nodes == 3
    X = np.array([[np.nan], [0.0], [1.0], [1.5], [2.0], [3.0], [-np.inf], [np.inf]])
    np.testing.assert_array_equal(p.predict_margin(X), f.predict_margin(X))


@pytest.mark.parametrize(
    ("comparison", "cut", "default_left", "n_nodes"),
    [
        ("<", np.inf, False, 3),  # x = inf goes right: the split stays
        ("<=", -np.inf, True, 3),  # x = -inf goes left: the split stays
        ("<", -np.inf, False, 1),  # nothing is < -inf: every value goes right, NaN too
        ("<=", np.inf, True, 1),  # everything is <= inf
        ("<=", np.inf, False, 3),  # ... but NaN goes right
    ],
)
def test_prune_of_infinite_thresholds(comparison, cut, default_left, n_nodes):
    f = Forest(
        split_index=[0, -1, -1], threshold=[cut, 0, 0], cleft=[1, -1, -1], cright=[2, -1, -1],
        default_left=[default_left, False, False], leaf_value=[0, 1.0, 2.0], tree_offsets=[0, 3],
        tree_class=[0], num_feature=1, task="regression", comparison=comparison,
    )  # fmt: skip
    p = prune_unreachable(f)
    assert p.n_nodes == n_nodes
    X = np.array([[np.nan], [0.0], [-np.inf], [np.inf], [1e300]])
    np.testing.assert_array_equal(p.predict_margin(X), f.predict_margin(X))


def test_prune_merges_identical_subtrees():
    f = Forest(
        split_index=[1, 0, 0, -1, -1, -1, -1], threshold=[5.0, 1.0, 1.0, 0, 0, 0, 0],
        cleft=[1, 3, 5, -1, -1, -1, -1], cright=[2, 4, 6, -1, -1, -1, -1],
        default_left=[False, True, True, False, False, False, False],
        leaf_value=[0, 0, 0, 1.0, 2.0, 1.0, 2.0], tree_offsets=[0, 7], tree_class=[0],
        num_feature=2, task="regression",
    )  # fmt: skip
    p = prune_unreachable(f)
    assert p.n_nodes == 3 and p.split_index[0] == 0
    X = oracle_rows(f, 200)
    np.testing.assert_array_equal(p.predict_margin(X), f.predict_margin(X))


@given(
    seed=st.integers(0, 2**32 - 1),
    comparison=st.sampled_from(["<", "<="]),
    dtype=st.sampled_from(["float32", "float64"]),
    data=st.data(),
)
def test_prune_is_exact_on_hypothesis_rows(seed, comparison, dtype, data):
    f = random_forest(seed, comparison, dtype)
    p = prune_unreachable(f)
    assert p.n_nodes <= f.n_nodes
    R = data.draw(rows(f, max_rows=30))
    np.testing.assert_array_equal(p.predict_margin(R), f.predict_margin(R))
    assert prune_unreachable(p) is p  # one call removes everything it can


def test_prune_removes_nodes_of_random_forests():
    removed = [random_forest(s, "<", "float64").n_nodes - prune_unreachable(
        random_forest(s, "<", "float64")).n_nodes for s in range(10)]  # fmt: skip
    assert sum(removed) > 10


@pytest.mark.parametrize(("lib", "task"), [("xgboost", "binary"), ("lightgbm", "multiclass")])
@given(data=st.data())
def test_prune_is_exact_on_real_models_with_coarse_thresholds(lib, task, data):
    forest, _ = forest_of(lib, task)
    coarse = forest.replace(threshold=np.round(forest.threshold * 2) / 2)
    p = prune_unreachable(coarse)
    assert p.n_nodes < coarse.n_nodes
    R = data.draw(rows(coarse))
    np.testing.assert_array_equal(p.predict_margin(R), coarse.predict_margin(R))


# ------------------------------------------------------------------------------ thresholds
def test_float32_equivalent_decides_every_float32_like_the_original():
    rng = np.random.default_rng(0)
    t = np.concatenate([rng.normal(size=300), [1e300, -1e300, 1e-320, 0.0, np.inf, -np.inf]])
    with np.errstate(over="ignore"):
        x = np.concatenate([rng.normal(size=3000), t]).astype(np.float32)
    x = np.unique(np.concatenate([x, np.nextafter(x, np.float32(np.inf)),
                                  np.nextafter(x, np.float32(-np.inf))]))  # fmt: skip
    x64 = x.astype(np.float64)[:, None]
    for strict in (True, False):
        t32 = _float32_equivalent(t, strict)
        assert np.array_equal(t32.astype(np.float32).astype(np.float64), t32)
        decide = (lambda a, b: a < b) if strict else (lambda a, b: a <= b)
        np.testing.assert_array_equal(decide(x64, t32[None]), decide(x64, t[None]))


@pytest.mark.parametrize(("lib", "task"), BOOSTED)
def test_calibrated_snapping_beats_nearest_on_the_calibration_rows(lib, task):
    forest, X = forest_of(lib, task)
    cal = quantization_error(forest, quantize_thresholds(forest, X, bits=2), X)
    raw = quantization_error(forest, quantize_thresholds(forest, bits=2), X)
    assert cal["mean_abs_delta_margin"] < raw["mean_abs_delta_margin"]


def test_snap_prefers_the_grid_point_changing_fewest_rows():
    grid = np.array([0.0, 10.0])
    t = np.array([4.0])
    assert _snap(t, grid, None, True)[0] == 0.0  # nearest
    assert _snap(t, grid, np.array([1.0, 2.0, 3.0, 11.0]), True)[0] == 10.0  # 0 rows change
    assert _snap(t, grid, np.array([5.0, 6.0, 7.0, 11.0]), True)[0] == 0.0


@pytest.mark.parametrize(("lib", "task"), BOOSTED)
def test_quantize_thresholds_limits_distinct_thresholds(lib, task):
    forest, X = forest_of(lib, task)
    for calib in (X, None):
        q = quantize_thresholds(forest, calib, bits=2)
        assert max(distinct_per_feature(q).values()) <= 4
        assert q.n_nodes <= forest.n_nodes and q.sum_hess is None
        rec = q.source["passes"][-1]
        assert rec["lossy"] and rec["bits"] == 2 and rec["calibrated"] is (calib is not None)
        assert rec["distinct_after"] < rec["distinct_before"] and rec["nodes_after"] == q.n_nodes
        err = quantization_error(forest, q, X)
        assert err["max_abs_delta_margin"] > 0 and 0 < err["agreement"] <= 1
    assert len(dump_tslim_bytes(q)) < len(dump_tslim_bytes(forest))


def test_float32_forests_keep_their_predictions_when_nothing_is_snapped():
    lgbm, _ = forest_of("lightgbm", "regression")  # float64 thresholds, "<="
    forest = lgbm.replace(feature_dtype="float32")  # as scikit-learn forests are
    q = quantize_thresholds(forest, bits=16)
    assert q.source["passes"][-1]["features_snapped"] == 0
    R = oracle_rows(forest, 400)
    np.testing.assert_array_equal(q.predict_margin(R), forest.predict_margin(R))
    assert len(dump_tslim_bytes(q)) < len(dump_tslim_bytes(forest))  # float32 tables


# ------------------------------------------------------------------------------ leaves
@pytest.mark.parametrize(("lib", "task"), BOOSTED)
@pytest.mark.parametrize("method", ["uniform", "kmeans"])
def test_quantize_leaves_limits_distinct_values(lib, task, method):
    forest, X = forest_of(lib, task)
    q = quantize_leaves(forest, bits=3, method=method)
    leaf = q.split_index < 0
    tree_of = np.repeat(np.arange(q.n_trees), np.diff(q.tree_offsets))
    for c in range(q.n_outputs):
        assert len(np.unique(q.leaf_value[leaf & (q.tree_class[tree_of] == c)])) <= 8
    shared = quantize_leaves(forest, bits=3, method=method, per_class=False)
    assert len(np.unique(shared.leaf_value[leaf])) <= 8
    np.testing.assert_array_equal(q.split_index, forest.split_index)
    rec = q.source["passes"][-1]
    assert rec["lossy"] and rec["method"] == method and rec["distinct_after"] <= 8 * q.n_outputs
    err = quantization_error(forest, q, X)["mean_abs_delta_margin"]
    assert 0 < err < 0.5 * np.ptp(forest.predict_margin(X))
    assert len(dump_tslim_bytes(q)) < len(dump_tslim_bytes(forest))


def test_kmeans_beats_uniform_and_few_values_stay_exact():
    forest, _ = forest_of("lightgbm", "regression")
    leaf = forest.split_index < 0

    def leaf_mse(q):
        return float(np.mean((q.leaf_value[leaf] - forest.leaf_value[leaf]) ** 2))

    uni = quantize_leaves(forest, bits=3, method="uniform")
    km = quantize_leaves(forest, bits=3, method="kmeans")
    assert leaf_mse(km) < leaf_mse(uni)
    exact = quantize_leaves(forest, bits=16)
    np.testing.assert_array_equal(exact.leaf_value, forest.leaf_value)


@pytest.mark.parametrize(
    ("lib", "task", "per_class"),
    [("xgboost", "regression", True), ("lightgbm", "multiclass", True),
     ("lightgbm", "multiclass", False)],
)  # fmt: skip
def test_refit_reduces_the_error(lib, task, per_class):
    forest, X = forest_of(lib, task)
    target = forest.predict_margin(X)
    plain = quantize_leaves(forest, bits=3, per_class=per_class)
    refit = quantize_leaves(forest, bits=3, per_class=per_class, X=X, y_margin=target)
    rec = refit.source["passes"][-1]["refit"]
    assert rec["mse_after"] < 0.8 * rec["mse_before"]
    # the pass measures in float64; an XGBoost forest sums its margins in float32
    np.testing.assert_allclose(
        rec["mse_before"], np.mean((plain.predict_margin(X) - target) ** 2), rtol=1e-5
    )
    e_plain = quantization_error(forest, plain, X)["mean_abs_delta_margin"]
    e_refit = quantization_error(forest, refit, X)["mean_abs_delta_margin"]
    assert e_refit < e_plain
    n_books = forest.n_outputs if per_class else 1
    assert len(np.unique(refit.leaf_value[refit.split_index < 0])) <= 8 * n_books


@pytest.mark.skipif(not HAVE_SKLEARN_FRONTEND, reason="no sklearn frontend")
def test_refit_with_vector_leaves_and_averaging():
    forest, X = forest_of("sklearn-forest", "multiclass")
    assert forest.average and forest.leaf_width > 1
    refit = quantize_leaves(forest, bits=2, method="kmeans", X=X, y_margin=forest.predict_margin(X))
    rec = refit.source["passes"][-1]["refit"]
    assert rec["mse_after"] < rec["mse_before"]


def test_quantization_error_has_the_known_answer():
    """One tree with leaves -1, 0.2, 3 quantized to 1 bit: the uniform codebook is {-1, 3} and
    0.2 rounds to -1 (1.2 away, against 2.8), which turns class 1 into class 0."""
    f = Forest(split_index=[0, -1, 0, -1, -1], threshold=[0.0, 0, 1.0, 0, 0],
               cleft=[1, -1, 3, -1, -1], cright=[2, -1, 4, -1, -1],
               default_left=[True, False, True, False, False], leaf_value=[0, -1.0, 0, 0.2, 3.0],
               tree_offsets=[0, 5], tree_class=[0], num_feature=1, task="binary",
               postprocessor="sigmoid")  # fmt: skip
    q = quantize_leaves(f, bits=1)
    assert sorted(q.leaf_value[q.split_index < 0, 0]) == [-1.0, -1.0, 3.0]
    X = np.array([[-1.0], [0.5], [0.5], [2.0], [np.nan]])  # NaN goes left: leaf -1
    err = quantization_error(f, q, X)
    assert err["max_abs_delta_margin"] == pytest.approx(1.2)
    assert err["mean_abs_delta_margin"] == pytest.approx(2 * 1.2 / 5)
    assert err["agreement"] == pytest.approx(3 / 5)
    reg = f.replace(task="regression", postprocessor="identity")  # agreement: same margin
    assert quantization_error(reg, quantize_leaves(reg, bits=1), X)["agreement"] == 0.6
    assert quantization_error(f, f, X) == {
        "agreement": 1.0, "max_abs_delta_margin": 0.0, "mean_abs_delta_margin": 0.0,
    }  # fmt: skip


def test_quantization_error_measures_a_real_quantization():
    """A 2-bit leaf quantization of a multiclass model, checked against the margins themselves."""
    forest, X = forest_of("xgboost", "multiclass")
    q = quantize_leaves(forest, bits=2)
    m0, m1 = forest.predict_margin(X), q.predict_margin(X)
    err = quantization_error(forest, q, X)
    assert err["max_abs_delta_margin"] == pytest.approx(np.abs(m1 - m0).max())
    assert err["mean_abs_delta_margin"] == pytest.approx(np.abs(m1 - m0).mean())
    assert err["agreement"] == pytest.approx(np.mean(m0.argmax(axis=1) == m1.argmax(axis=1)))
    assert 0.01 < err["mean_abs_delta_margin"] and 0.5 < err["agreement"] < 1.0


# ------------------------------------------------------------------------------ bad arguments
def test_bad_arguments_raise():
    forest, X = forest_of("xgboost", "binary")
    with pytest.raises(ValueError, match=r"'bits' parameter of quantize_thresholds must be an int"
                                         r" in the range \[1, 16\]. Got 0 instead"):  # fmt: skip
        quantize_thresholds(forest, bits=0)
    with pytest.raises(ValueError, match=r"'bits' parameter of quantize_leaves .* Got True"):
        quantize_leaves(forest, bits=True)
    with pytest.raises(ValueError, match="'method' parameter of quantize_leaves must be 'uniform'"):
        quantize_leaves(forest, method="median")
    with pytest.raises(ValueError, match="only with both X and y_margin"):
        quantize_leaves(forest, X=X)
    for bad in (np.zeros((500, 2)), np.zeros(499), np.zeros(1000)):
        with pytest.raises(ValueError, match=r"y_margin must have shape \(500,\) or \(500, 1\)"):
            quantize_leaves(forest, X=X, y_margin=bad)
    with pytest.raises(ValueError, match=r"for X of 0 rows \(n >= 1\)"):
        quantize_leaves(forest, X=X[:0], y_margin=np.zeros(0))
    multi, Xm = forest_of("xgboost", "multiclass")
    with pytest.raises(ValueError, match=r"shape \(500,\) or \(500, 3\) .* got \(500,\)"):
        quantize_leaves(multi, X=Xm, y_margin=np.zeros(500))
    with pytest.raises(ValueError, match="X has 2 features, but this model expects 6"):
        quantize_thresholds(forest, X[:, :2])


@pytest.mark.parametrize("lib", ["xgboost", "lightgbm"])
def test_quantized_forests_go_through_every_backend(lib, tmp_path):
    """A quantized Forest is a Forest: compiled, XGBoost, LightGBM and .tslim all agree with it."""
    from models import model as fitted
    from oracle import as_f32, assert_close, oracle_rows

    import treeslim

    m, X = fitted(lib, "binary")
    forest = treeslim.from_model(m)
    q = quantize_thresholds(
        quantize_leaves(forest, bits=4, method="kmeans"), np.nan_to_num(X), bits=4
    )
    Z = as_f32(oracle_rows(q, 300, seed=3)).astype(np.float64)
    expect = q.predict_margin(Z)
    assert_close(treeslim.compile(q).predict_margin(Z), expect, what="compiled")
    assert_close(
        treeslim.to_xgboost(q).inplace_predict(Z, predict_type="margin"), expect, what="xgboost"
    )
    assert_close(treeslim.to_lightgbm(q).predict(Z, raw_score=True), expect, what="lightgbm")
    path = tmp_path / "q.tslim"
    treeslim.save(q, path)
    np.testing.assert_array_equal(treeslim.load(path).predict_margin(Z), expect)
