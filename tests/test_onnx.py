"""Oracle tests of the ONNX backend: ONNX Runtime runs every export.

Three truths, on float32 rows built to hit every boundary (each node's threshold and its float32
neighbours, NaN, +-inf, +-FLT_MAX, huge values, reached through the node's own path):

* the path: a probe forest with the same trees, one output per tree and each leaf's value its node
  id, so ONNX Runtime's margins are the leaves reached, compared exactly with ``Forest.apply``;
* the Forest's margins and predictions, within float32 rounding of the leaves and their sum;
* the native library's own predictions (the Forest is only an oracle because it matches them).
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from oracle import SPECIALS, as_f32, feature_thresholds, oracle_rows

import treeslim
from treeslim import Forest, UnsupportedModelError
from treeslim._utils import float32_thresholds
from treeslim.cli import main
from treeslim.ir import TreeArrays

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

# sklearn's finiteness check sums rows of +-3e38 entries and warns about the inf - inf it meets
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

F32 = np.float32
FLT_MAX = float(np.finfo(F32).max)
#: Float32 margins are within this many times (|base score| + sum of |leaf values| reached).
REL = 1e-6


def run(model, X):
    """``(margin, prediction)`` of an ONNX model (ModelProto, bytes or path) under ONNX Runtime."""
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    margin, prediction = session.run(["margin", "prediction"], {"X": np.asarray(X, dtype=F32)})
    return margin, prediction


# ---------------------------------------------------------------------------- rows and probes
def node_rows(forest, seed=0):
    """Float32 rows that reach every internal node and put its feature on the node's boundary.

    For each node: a random row, moved along the node's own path (each ancestor's feature set to
    the nearest float32 on the side the path takes, or NaN if only NaN goes there), then that node's feature set to each of the
    threshold, its float64 and float32 neighbours, the exact float32 boundary values, NaN, +-inf.
    """
    rng = np.random.default_rng(seed)
    cmp = forest.comparison
    with np.errstate(over="ignore"):
        lo = float32_thresholds(forest.threshold, "<=")  # last float32 with x <= t
        hi = float32_thresholds(forest.threshold, "<")  # first float32 with x >= t
        last_left = np.where(cmp == "<=", lo, np.nextafter(hi, F32(-np.inf)))
        first_right = np.where(cmp == "<=", np.nextafter(lo, F32(np.inf)), hi)
    parent = np.full(forest.n_nodes, -1)
    inner = np.flatnonzero(forest.split_index >= 0)
    parent[forest.cleft[inner]] = inner
    parent[forest.cright[inner]] = inner
    rows = []
    for v in inner:
        row = rng.normal(0.0, 2.0, forest.num_feature).astype(F32)
        path = []
        node = v
        while parent[node] >= 0:
            path.append((parent[node], forest.cleft[parent[node]] == node))
            node = parent[node]
        for a, left in reversed(path):
            value = last_left[a] if left else first_right[a]
            with np.errstate(over="ignore"):
                goes_left = value < forest.threshold[a] or (
                    cmp == "<=" and value == forest.threshold[a]
                )
            if goes_left != left:  # only NaN goes that way (a threshold at +-inf)
                value = np.nan
            row[forest.split_index[a]] = value
        t = forest.threshold[v]
        values = [t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), lo[v], hi[v]]
        values += [last_left[v], first_right[v], np.nan, np.inf, -np.inf]
        for value in values:
            r = row.copy()
            r[forest.split_index[v]] = as_f32(value)
            rows.append(r)
    return np.asarray(rows, dtype=F32).reshape(-1, forest.num_feature)


def adversarial_rows(forest, n=300, seed=0):
    """Node rows, oracle rows, every threshold neighbour and special value in every column."""
    d = forest.num_feature
    specials = as_f32([*SPECIALS, FLT_MAX, -FLT_MAX, 1e-45, -1e-45, 1e-38])
    with np.errstate(over="ignore"):  # thresholds beyond float32 range have no float32 neighbours
        thresholds = [as_f32(feature_thresholds(forest, j)) for j in range(d)]
        random = as_f32(oracle_rows(forest, n, seed=seed))
    columns = [np.concatenate([t, specials]) for t in thresholds]
    m = max(len(c) for c in columns)
    cycled = np.stack([np.resize(c, m) for c in columns], axis=1)
    parts = [node_rows(forest, seed), random, cycled]
    return np.concatenate(parts).astype(F32)


def leaf_probe(forest):
    """The same trees with one output per tree and each leaf's value its node id in the tree."""
    n_trees = forest.n_trees
    tree_of = np.repeat(np.arange(n_trees), np.diff(forest.tree_offsets))
    local = np.arange(forest.n_nodes) - forest.tree_offsets[tree_of]
    k = max(2, n_trees)
    return forest.replace(
        task="multiclass",
        num_class=k,
        tree_class=np.arange(n_trees),
        leaf_value=local.astype(np.float64).reshape(-1, 1),
        base_score=np.zeros(k),
        postprocessor="identity",
        average=False,
    )


def assert_same_paths(forest, X):
    """ONNX Runtime reaches the leaf the Forest reaches, in every tree, for every row."""
    margin, _ = run(treeslim.to_onnx(leaf_probe(forest)), X)
    reached = margin[:, : forest.n_trees].astype(np.int64)
    expected = forest.apply(X)
    bad = np.argwhere(reached != expected)
    assert len(bad) == 0, (
        f"{len(bad)} (row, tree) pairs differ; first: row {X[bad[0][0]].tolist()}, tree"
        f" {bad[0][1]}: ONNX leaf {reached[tuple(bad[0])]}, Forest leaf {expected[tuple(bad[0])]}"
    )


def margin_bound(forest, X):
    """REL x (|base| + sum of |leaf values| reached): float32 rounding of leaves and sums."""
    absolute = forest.replace(
        leaf_value=np.abs(forest.leaf_value), base_score=np.abs(forest.base_score)
    )
    return REL * absolute.predict_margin(X).reshape(len(X), -1)


def check_margins(forest, margin, X, expected=None, factor=1.0, what=""):
    """``margin`` (N, k) within ``margin_bound`` of ``expected`` (the Forest's by default);
    returns the largest difference relative to the bound."""
    if expected is None:
        expected = forest.predict_margin(X)
    expected = np.asarray(expected, dtype=np.float64).reshape(len(X), -1)
    assert margin.shape == expected.shape, what
    diff = np.abs(margin.astype(np.float64) - expected)
    bound = factor * margin_bound(forest, X)
    worst = np.unravel_index(np.argmax(diff - bound), diff.shape)
    assert np.all(diff <= bound), (
        f"{what}: margin differs by {diff[worst]:.3g} > {bound[worst]:.3g} at row {worst[0]}"
    )
    return float(diff.max())


def check_predictions(forest, prediction, X, expected, margin_tol, what=""):
    """Predictions from margins within ``margin_tol``: probabilities to 1e-6 plus what the link
    makes of the margin tolerance, values (identity, exp) relatively."""
    expected = np.asarray(expected, dtype=np.float64)
    assert prediction.shape == expected.shape, f"{what}: {prediction.shape} != {expected.shape}"
    post = forest.postprocessor
    if post == "argmax":
        np.testing.assert_array_equal(prediction, expected, err_msg=what)
        return
    tol = margin_tol.reshape(len(X), -1).max(axis=1)
    tol = tol.reshape((-1,) + (1,) * (expected.ndim - 1))
    if post in ("sigmoid", "softmax"):
        tol = 1e-6 + forest.sigmoid_alpha * tol
    elif post == "exponential":
        tol = (2 * tol + 1e-6) * np.abs(expected)
    diff = np.abs(prediction - expected)
    assert np.all(diff <= tol), f"{what}: prediction differs by {diff.max():.3g}"


# ---------------------------------------------------------------------------- synthetic edges
EDGE_THRESHOLDS = [
    np.inf, -np.inf, FLT_MAX, -FLT_MAX, 1e300, -1e300, 1e30, 0.0, -0.0, 1 / 3, -2.5,
    1e-45, 1e-40, 2.0**-150, -1e-320, float(np.nextafter(F32(1.5), F32(2))) + 2.0**-40,
]  # fmt: skip


def edge_forest(comparison, feature_dtype):
    """Stumps on each edge threshold (NaN left and right), a deep chain, and a lone leaf."""
    trees = []
    for i, t in enumerate(EDGE_THRESHOLDS):
        for default_left in (True, False):
            trees.append(
                TreeArrays(
                    split_index=np.array([i % 3, -1, -1]),
                    threshold=np.array([t, 0.0, 0.0]),
                    cleft=np.array([1, -1, -1]),
                    cright=np.array([2, -1, -1]),
                    default_left=np.array([default_left, False, False]),
                    leaf_value=np.array([0.0, 1.0, 2.0]),
                )
            )
    chain = sorted(t for t in EDGE_THRESHOLDS if np.isfinite(t))  # x <= t0 ? leaf : (x <= t1 ...
    n = 2 * len(chain) + 1
    split = np.full(n, -1)
    split[0 : 2 * len(chain) : 2] = 0
    cleft = np.where(split >= 0, np.arange(n) + 1, -1)
    cright = np.where(split >= 0, np.arange(n) + 2, -1)
    thr = np.zeros(n)
    thr[0 : 2 * len(chain) : 2] = chain
    default = np.zeros(n, dtype=bool)
    default[0 : 2 * len(chain) : 4] = True
    trees.append(TreeArrays(split, thr, cleft, cright, default, np.arange(n, dtype=np.float64)))
    trees.append(TreeArrays(*(np.array([v]) for v in (-1, 0.0, -1, -1, False, 7.0))))
    return Forest.from_trees(
        trees,
        num_feature=3,
        task="regression",
        base_score=np.array([0.5]),
        comparison=comparison,
        feature_dtype=feature_dtype,
    )


@pytest.mark.parametrize("feature_dtype", ["float32", "float64"])
@pytest.mark.parametrize("comparison", ["<", "<="])
def test_edge_thresholds_take_the_forests_path(comparison, feature_dtype):
    forest = edge_forest(comparison, feature_dtype)
    X = adversarial_rows(forest)
    values = np.unique(X[~np.isnan(X)])
    X = np.concatenate([X, np.repeat(values[:, None], 3, axis=1)])  # every value in every column
    assert_same_paths(forest, X)
    margin, prediction = run(treeslim.to_onnx(forest), X)
    np.testing.assert_array_equal(margin[:, 0], forest.predict_margin(X))  # small integer sums
    np.testing.assert_array_equal(prediction, forest.predict(X))


# ---------------------------------------------------------------------------- real models
def _data(task, n=600, d=5, seed=0, nan=0.06):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(F32)
    X[:, 3] = np.round(X[:, 3], 1)  # repeated values: thresholds between ties
    if nan:
        X[rng.random(X.shape) < nan] = np.nan
    z = np.nan_to_num(X)
    s = z[:, 0] + 0.7 * z[:, 1] * z[:, 2] - 0.5 * z[:, 3] + 0.3 * rng.normal(size=n)
    if task == "binary":
        return X, (s > 0).astype(int)
    if task == "multiclass":
        return X, np.digitize(s, [-0.6, 0.6])
    if task == "ranking":
        return X, np.digitize(s, [-0.5, 0.5])
    if task == "count":
        return X, rng.poisson(np.exp(0.4 * np.clip(s, -3, 3)))
    return X, 3.0 * s + 10.0


def _xgboost(objective):
    xgb = pytest.importorskip("xgboost")
    task = {"binary": "binary", "multi": "multiclass", "count": "count", "rank": "ranking"}
    X, y = _data(task.get(objective.split(":")[0], "regression"))
    params = {"objective": objective, "max_depth": 4, "eta": 0.3, "seed": 0, "nthread": 1}
    if objective.startswith("multi"):
        params["num_class"] = 3
    qid = np.repeat(np.arange(len(X) // 20), 20) if objective.startswith("rank") else None
    rounds = 12 if objective.startswith("multi") else 25  # 25 to 36 trees
    booster = xgb.train(params, xgb.DMatrix(X, y, qid=qid), num_boost_round=rounds)

    def native(R):
        return booster.inplace_predict(R), booster.inplace_predict(R, predict_type="margin")

    return booster, native


def _lightgbm(objective):
    lgb = pytest.importorskip("lightgbm")
    task = {"lambdarank": "ranking"}.get(objective, objective)
    X, y = _data(task)
    params = {"objective": objective, "num_leaves": 15, "min_data_in_leaf": 5, "seed": 0}
    params.update(verbose=-1, num_threads=1)
    if objective == "multiclass":
        params["num_class"] = 3
    group = np.full(len(X) // 20, 20) if objective == "lambdarank" else None
    booster = lgb.train(params, lgb.Dataset(X, y, group=group), num_boost_round=20)

    def native(R):
        return booster.predict(R), booster.predict(R, raw_score=True)

    return booster, native


def _sklearn(name, task):
    from sklearn import ensemble

    kw = {"random_state": 0}
    make = {
        "rf": lambda: ensemble.RandomForestClassifier(n_estimators=20, max_depth=6, n_jobs=1, **kw),
        "gbr": lambda: ensemble.GradientBoostingRegressor(n_estimators=30, max_depth=3, **kw),
        "gbc-exp": lambda: ensemble.GradientBoostingClassifier(
            n_estimators=20, max_depth=3, loss="exponential", **kw
        ),
        "hgb": lambda: ensemble.HistGradientBoostingClassifier(max_iter=20, max_depth=4, **kw),
    }[name]
    X, y = _data(task, nan=0.0 if name.startswith("gb") else 0.06)
    model = make().fit(X, y)

    def native(R):
        R = R.copy()
        if name != "hgb":  # CART ensembles reject inf, gradient boosting also NaN
            R[np.isinf(R)] = np.sign(R[np.isinf(R)]) * F32(3e38)
        if name.startswith("gb"):
            R[np.isnan(R)] = 0.25
        if hasattr(model, "predict_proba"):
            p = model.predict_proba(R)
            p = p[:, 1] if p.shape[1] == 2 else p
        else:
            p = model.predict(R)
        margin = model.decision_function(R) if hasattr(model, "decision_function") else None
        return R, p, margin

    return model, native


MODELS = {
    **{f"xgboost-{o}": functools.partial(_xgboost, o) for o in (
        "binary:logistic", "multi:softprob", "multi:softmax", "reg:squarederror",
        "count:poisson", "rank:pairwise")},
    **{f"lightgbm-{o}": functools.partial(_lightgbm, o)
       for o in ("binary", "multiclass", "regression", "lambdarank")},
    "sklearn-rf-binary": functools.partial(_sklearn, "rf", "binary"),
    "sklearn-rf-multiclass": functools.partial(_sklearn, "rf", "multiclass"),
    "sklearn-gbr": functools.partial(_sklearn, "gbr", "regression"),
    "sklearn-gbc-exponential": functools.partial(_sklearn, "gbc-exp", "binary"),
    "sklearn-hgb-binary": functools.partial(_sklearn, "hgb", "binary"),
    "sklearn-hgb-multiclass": functools.partial(_sklearn, "hgb", "multiclass"),
}  # fmt: skip


@functools.cache
def fitted(case):
    model, native = MODELS[case]()
    forest = treeslim.from_model(model)
    return model, native, forest, adversarial_rows(forest)


@pytest.mark.parametrize("case", sorted(MODELS))
def test_real_models_take_the_forests_path(case):
    _, _, forest, X = fitted(case)
    assert 20 <= forest.n_trees <= 60, forest.n_trees
    assert_same_paths(forest, X)


@pytest.mark.parametrize("case", sorted(MODELS))
def test_real_models_match_forest_and_library(case):
    _, native, forest, X = fitted(case)
    margin, prediction = run(treeslim.to_onnx(forest), X)
    assert margin.dtype == prediction.dtype == F32
    check_margins(forest, margin, X, what=f"{case} vs Forest")
    tol = margin_bound(forest, X)
    check_predictions(forest, prediction, X, forest.predict(X), tol, f"{case} vs Forest")

    if case.startswith("sklearn"):  # the rows sklearn accepts, the same rows to ONNX Runtime
        X, expected, expected_margin = native(X)
        margin, prediction = run(treeslim.to_onnx(forest), X)
        tol = margin_bound(forest, X)
    else:
        expected, expected_margin = native(X)
    check_predictions(forest, prediction, X, expected, 2 * tol, f"{case} vs library")
    if expected_margin is not None:
        check_margins(forest, margin, X, expected_margin, factor=2.0, what=f"{case} vs library")


# ---------------------------------------------------------------------------- file, errors
def test_path_writes_a_loadable_file(tmp_path):
    model, _, forest, X = fitted("lightgbm-multiclass")
    path = tmp_path / "model.onnx"
    returned = treeslim.to_onnx(forest, path)
    assert path.read_bytes() == returned.SerializeToString()
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    margin, prediction = run(str(path), X[:50])
    assert (margin.shape, prediction.shape) == ((50, 3), (50, 3))
    np.testing.assert_allclose(prediction, model.predict(X[:50]), rtol=0, atol=1e-6)
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["task"] == "multiclass" and meta["postprocessor"] == "softmax"


@pytest.mark.parametrize(
    ("case", "shape"),
    [("xgboost-binary:logistic", (7,)), ("xgboost-multi:softmax", (7,)),
     ("sklearn-rf-multiclass", (7, 3)), ("lightgbm-lambdarank", (7,))],
)  # fmt: skip
def test_output_shapes_follow_forest_predict(case, shape):
    _, _, forest, X = fitted(case)
    margin, prediction = run(treeslim.to_onnx(forest), X[:7])
    assert margin.shape == (7, forest.n_outputs)
    assert prediction.shape == shape == forest.predict(X[:7]).shape
    margin, prediction = run(treeslim.to_onnx(forest), X[:0])
    assert margin.shape[0] == prediction.shape[0] == 0


def test_only_forests_are_exported():
    model, _, _, _ = fitted("xgboost-binary:logistic")
    with pytest.raises(TypeError, match=r"takes a treeslim.Forest; got Booster.*from_model"):
        treeslim.to_onnx(model)


def test_values_beyond_float32_raise():
    forest = edge_forest("<=", "float64")
    big = forest.leaf_value.copy()
    big[forest.tree_offsets[3] + 2] = 1e39
    with pytest.raises(UnsupportedModelError, match=r"Tree 3, node 2: leaf value \[1e\+39\]"):
        treeslim.to_onnx(forest.replace(leaf_value=big))
    with pytest.raises(UnsupportedModelError, match=r"base_score \[-1e\+40\] is beyond float32"):
        treeslim.to_onnx(forest.replace(base_score=np.array([-1e40])))


# ---------------------------------------------------------------------------- command line
def _native_file(fmt, path, X):
    """Predictions of an exported file, read back by the library it was written for."""
    if fmt == "onnx":
        return run(str(path), X)[1]
    if fmt == "xgboost":
        xgb = pytest.importorskip("xgboost")
        return xgb.Booster(model_file=str(path)).inplace_predict(X)
    if fmt == "lightgbm":
        lgb = pytest.importorskip("lightgbm")
        return lgb.Booster(model_file=str(path)).predict(X)
    import treelite

    out = treelite.gtil.predict(treelite.Model.deserialize(str(path)), X.astype(np.float64))
    out = out.reshape(len(X), -1)
    return out[:, 0] if out.shape[1] == 1 else out


@pytest.mark.parametrize("fmt", ["onnx", "xgboost", "lightgbm", "treelite"])
@pytest.mark.parametrize("case", ["xgboost-binary:logistic", "lightgbm-multiclass"])
def test_cli_export_predicts_what_the_source_predicts(case, fmt, tmp_path, capsys):
    model, native, _, X = fitted(case)
    source = tmp_path / ("model.json" if case.startswith("xgboost") else "model.txt")
    model.save_model(str(source))
    out = tmp_path / ("exported" + {"xgboost": ".json", "lightgbm": ".txt"}.get(fmt, "." + fmt))
    assert main(["export", str(source), "--format", fmt, "-o", str(out)]) == 0
    assert f"wrote {out} ({fmt} format" in capsys.readouterr().out
    expected, _ = native(X)
    got = _native_file(fmt, out, X)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, err_msg=f"{case} -> {fmt}")


def test_cli_export_errors(tmp_path, capsys):
    model, _, _, _ = fitted("xgboost-multi:softmax")
    source = tmp_path / "softmax.json"
    model.save_model(str(source))
    out = tmp_path / "out.bin"
    assert main(["export", str(source), "--format", "treelite", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("treeslim export: error:") and "'argmax'" in err
    assert not out.exists()
    missing = str(tmp_path / "missing.json")
    assert main(["export", missing, "--format", "onnx", "-o", str(out)]) == 2
    assert "missing.json" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(source), "--format", "pmml", "-o", str(out)])
