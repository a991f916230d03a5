"""Categorical forests after import: the .tslim file, the passes, the CLI.

The oracle is the reference predictor (``Forest.predict``), which the frontend tests check against
each library's own predictions; the forests here are random (tests/catmodels.py) so every rule,
both precisions and wide sets are covered.
"""

from __future__ import annotations

import json
import zlib

import fuzz
import numpy as np
import pytest
from catmodels import categorical_forest, categorical_rows

import treeslim
from treeslim.formats import HEADER as _HEADER
from treeslim.formats import dump_tslim_bytes, load_tslim_bytes

FORESTS = [
    ("xgboost", "binary", "float32"),
    ("lightgbm", "multiclass", "float64"),
    ("sklearn", "regression", "float64"),
]


def _forest(rule, task, dtype, **kw):
    f = categorical_forest(seed=5, rule=rule, task=task, feature_dtype=dtype, **kw)
    if rule == "sklearn":  # raw values 10, 20, ... encode to codes 0, 1, ...
        cats = tuple(float(10 * (c + 1)) for c in range(100))
        f = f.replace(feature_categories=(cats, None, cats, None))
    return f


def _rows(f):
    X = categorical_rows(f)
    if f.category_rule == "sklearn":
        X[:, [0, 2]] = np.where(np.isfinite(X[:, [0, 2]]), X[:, [0, 2]] * 10 + 10, X[:, [0, 2]])
    return X


@pytest.mark.parametrize(("rule", "task", "dtype"), FORESTS)
def test_tslim_round_trip_is_exact(rule, task, dtype):
    f = _forest(rule, task, dtype)
    X = _rows(f)
    back = load_tslim_bytes(dump_tslim_bytes(f))
    assert back.n_categorical_splits == f.n_categorical_splits
    assert back.category_rule == rule and back.feature_categories == f.feature_categories
    np.testing.assert_array_equal(back.predict_margin(X), f.predict_margin(X))
    # the sets the forest no longer uses are not stored
    unused = f.replace(
        cat_bitsets=np.vstack([f.cat_bitsets, np.ones((50, f.cat_bitsets.shape[1]))])
    )
    assert len(dump_tslim_bytes(unused)) == len(dump_tslim_bytes(f))


def test_tslim_numerical_files_are_unchanged_by_the_categorical_flag():
    f = _forest("xgboost", "binary", "float32")
    numeric = f.replace(cat_index=None)
    data = dump_tslim_bytes(numeric)
    assert _HEADER.unpack_from(data)[2] == 0  # no flags: readable by the previous version
    assert load_tslim_bytes(data).cat_index is None


def test_fuzzed_categorical_payloads_fail_cleanly():
    f = _forest("lightgbm", "binary", "float64")
    data = dump_tslim_bytes(f)
    flags = _HEADER.unpack_from(data)[2]
    payload = data[_HEADER.size :]

    def frame(p):
        return _HEADER.pack(b"TSLIM", 1, flags, len(p), zlib.crc32(p)) + p

    mutants = (frame(bad) for bad in fuzz.byte_mutations(payload, np.random.default_rng(2)))
    fuzz.fuzz(load_tslim_bytes, mutants, what="categorical payload bytes")


@pytest.mark.parametrize(("rule", "task", "dtype"), FORESTS)
def test_save_and_load_through_the_public_api(tmp_path, rule, task, dtype):
    f = _forest(rule, task, dtype)
    path = tmp_path / "m.tslim"
    treeslim.save(f, path)
    np.testing.assert_array_equal(treeslim.load(path).predict(_rows(f)), f.predict(_rows(f)))


@pytest.mark.parametrize(("rule", "task", "dtype"), FORESTS)
def test_exact_passes_are_exact_on_categorical_forests(rule, task, dtype):
    from treeslim.passes import collapse_identical_splits, exact_passes, prune_unreachable

    f = _forest(rule, task, dtype, n_trees=30, depth=5)
    X = _rows(f)
    want = f.predict_margin(X)
    for step in (prune_unreachable, collapse_identical_splits, exact_passes):
        g = step(f)
        np.testing.assert_allclose(g.predict_margin(X), want, rtol=0, atol=1e-12)
        assert g.n_categorical_splits > 0


def test_collapse_keeps_splits_whose_sets_differ():
    from treeslim.ir import TreeArrays, bitset_table
    from treeslim.passes import collapse_identical_splits

    # root on x1; both children split x0 by category, with different sets over equal leaves
    def tree(sets):
        return TreeArrays(
            split_index=np.array([1, 0, 0, -1, -1, -1, -1]),
            threshold=np.zeros(7), cleft=np.array([1, 3, 5, -1, -1, -1, -1]),
            cright=np.array([2, 4, 6, -1, -1, -1, -1]), default_left=np.zeros(7, dtype=bool),
            leaf_value=np.array([0, 0, 0, 1.0, 2.0, 1.0, 2.0]), cat_index=np.array(sets),
        )  # fmt: skip

    table = bitset_table([[1], [2]])
    head = dict(num_feature=2, task="regression", cat_bitsets=table)
    differ = treeslim.Forest.from_trees([tree([-1, 0, 1, -1, -1, -1, -1])], **head)
    same = treeslim.Forest.from_trees([tree([-1, 0, 0, -1, -1, -1, -1])], **head)
    assert collapse_identical_splits(differ).n_nodes == 7  # planted: ignore the set -> 3 nodes
    assert collapse_identical_splits(same).n_nodes == 3


def test_lossy_passes_leave_category_sets_alone():
    from treeslim.passes import prune_nodes, quantize_thresholds, refit_leaves, select_trees

    f = _forest("lightgbm", "binary", "float64", n_trees=40, depth=5)
    X = _rows(f)
    q = quantize_thresholds(f, X, bits=1)
    assert q.n_categorical_splits > 0
    for g in (q, select_trees(f, X, n_trees=10), prune_nodes(f, X, max_nodes=f.n_nodes // 2),
              refit_leaves(select_trees(f, X, n_trees=10), X, f.predict(X) > 0.5, task_loss=True)):  # fmt: skip
        inner = np.flatnonzero(g.is_categorical)
        assert len(inner)
        sets = {tuple(g.category_set(i)) for i in inner}
        assert sets <= {tuple(f.category_set(i)) for i in np.flatnonzero(f.is_categorical)}
        # what every pass predicts is what the kernel (used inside the passes) predicts
        from treeslim.runtime import KernelForest

        np.testing.assert_allclose(KernelForest(g).margin(X)[:, 0], g.predict_margin(X), atol=1e-12)


def test_onnx_refuses_categorical_splits_naming_the_feature():
    pytest.importorskip("onnx")
    f = _forest("xgboost", "binary", "float32").replace(feature_names=("colour", "a", "b", "c"))
    with pytest.raises(treeslim.UnsupportedModelError, match=r"by category.*treeslim\.compile"):
        treeslim.to_onnx(f)


def test_cli_inspect_counts_categorical_splits(tmp_path, capsys):
    from treeslim.cli import main

    f = _forest("lightgbm", "binary", "float64")
    path = tmp_path / "m.tslim"
    treeslim.save(f, path)
    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["categorical_splits"] == f.n_categorical_splits > 0
    assert info["bytes"]["tslim"] > 0


def _frame_case(rule="lightgbm", n=3000):
    pd = pytest.importorskip("pandas")
    f = categorical_forest(seed=2, rule=rule, task="binary", feature_dtype="float64", n_trees=40,
                           depth=5)  # fmt: skip
    names = [f"c{i}" for i in range(100)]
    f = f.replace(feature_categories=(tuple(names), None, tuple(names), None),
                  feature_names=("shop", "x1", "city", "x3"))  # fmt: skip
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 100, size=(n, 2))
    X = rng.normal(size=(n, 4))
    X[:, [0, 2]] = codes
    order = list(rng.permutation(names))  # another category order than the model's
    df = pd.DataFrame({
        "shop": pd.Categorical([names[c] for c in codes[:, 0]], categories=order),
        "x1": X[:, 1], "city": pd.Categorical([names[c] for c in codes[:, 1]]), "x3": X[:, 3],
    })  # fmt: skip
    twin = f.replace(
        feature_categories=None, category_rule="xgboost" if rule == "sklearn" else rule
    )
    y = (rng.random(n) < twin.predict(X)).astype(int)
    return f, df, X, y


def test_slim_classifier_in_a_pipeline_takes_a_category_dataframe():
    from sklearn.pipeline import Pipeline

    from treeslim import SlimClassifier

    f, df, X, y = _frame_case()
    pipe = Pipeline([("slim", SlimClassifier(f, max_loss=0.02, random_state=0, verbose=0))])
    pipe.fit(df, y)
    slim = pipe.named_steps["slim"]
    assert slim.forest_.feature_categories == f.feature_categories
    # the DataFrame, its codes as numbers, and the forest itself all agree
    p = pipe.predict_proba(df)[:, 1]
    np.testing.assert_allclose(p, slim.forest_.predict(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(p, slim.forest_.predict(df), rtol=0, atol=1e-12)
    np.testing.assert_allclose(slim.teacher_.predict(df), f.predict(X), rtol=0, atol=1e-12)
    assert slim.forest_.n_nodes < f.n_nodes


def test_compress_takes_a_category_dataframe_under_the_sklearn_rule():
    f, df, X, y = _frame_case(rule="sklearn")
    # under the sklearn rule, numpy inputs are category *values*: strings cannot be, so numpy
    # rows hold NaN there; the DataFrame is the way in
    est = treeslim.compress(f, df, y, max_loss=0.02, random_state=0, verbose=0)
    p = est.predict_proba(df)[:, 1]
    np.testing.assert_allclose(p, est.forest_.predict(df), rtol=0, atol=1e-12)
    # the code twin of the compressed forest scores the codes the same
    twin = est.forest_.replace(feature_categories=None, category_rule="xgboost")
    np.testing.assert_allclose(twin.predict(X), p, rtol=0, atol=1e-12)
    assert est.report_.entries[1]["nodes"] < f.n_nodes


def _native_margin(kind, model, X):
    if kind == "xgboost":
        import xgboost as xgb

        return model.predict(xgb.DMatrix(X.astype(np.float32)), output_margin=True)
    if kind == "lightgbm":
        return model.predict(X, raw_score=True)
    import treelite

    return treelite.gtil.predict(model, X, pred_margin=True, nthread=1)


@pytest.mark.parametrize(
    ("kind", "rule", "dtype"),
    [("xgboost", "xgboost", "float32"), ("lightgbm", "lightgbm", "float64"),
     ("treelite", "xgboost", "float64"), ("lightgbm", "xgboost", "float64"),
     ("xgboost", "lightgbm", "float32")],
)  # fmt: skip
def test_every_export_of_a_categorical_forest_is_exact_or_refused(kind, rule, dtype):
    """No export may silently drop or misroute a category set: the native library's own
    predictions of the exported model equal the forest's, or the export refuses."""
    f = _forest(rule, "binary", dtype)
    X = _rows(f)
    X = X[np.all(np.isfinite(X) | np.isnan(X), axis=1)]
    export = {"xgboost": treeslim.to_xgboost, "lightgbm": treeslim.to_lightgbm,
              "treelite": treeslim.to_treelite}[kind]  # fmt: skip
    try:
        model = export(f)
    except treeslim.UnsupportedModelError as exc:
        assert "categor" in str(exc)
        return
    got = np.asarray(_native_margin(kind, model, X), dtype=np.float64).reshape(len(X), -1)[:, 0]
    np.testing.assert_allclose(got, f.predict_margin(X), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("lib", ["sklearn", "lightgbm", "xgboost"])
def test_compress_a_native_categorical_model_on_a_dataframe(lib):
    """The three everyday flows, end to end: a model trained on a DataFrame with a category
    column, compressed on a DataFrame, scored on one whose categories come in another order."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    cities = [f"city{i}" for i in range(25)]
    effect = dict(zip(cities, rng.normal(size=len(cities)), strict=True))

    def frame(n, order):
        c = rng.choice(cities, n)
        x = rng.normal(size=n)
        logit = np.array([effect[v] for v in c]) + x
        y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
        return pd.DataFrame({"city": pd.Categorical(c, categories=order), "x": x}), y

    df, y = frame(2000, cities)
    test, _ = frame(500, cities[::-1])
    if lib == "sklearn":
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(max_iter=30, categorical_features="from_dtype")
    elif lib == "lightgbm":
        lgb = pytest.importorskip("lightgbm")
        model = lgb.LGBMClassifier(n_estimators=30, verbose=-1)
    else:
        model = pytest.importorskip("xgboost").XGBClassifier(
            n_estimators=30, enable_categorical=True, max_cat_to_onehot=1
        )
    model.fit(df, y)
    est = treeslim.compress(model, df, y, max_loss=0.05, random_state=0, verbose=0)
    native = model.predict_proba(test)[:, 1]
    np.testing.assert_allclose(est.teacher_.predict(test), native, rtol=1e-6, atol=1e-6)
    assert est.teacher_.n_categorical_splits > 0
    np.testing.assert_allclose(est.predict_proba(test)[:, 1], est.forest_.predict(test), atol=1e-12)
    assert est.forest_.feature_categories == est.teacher_.feature_categories


def _hgb_teacher_numeric_categories():
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(3)
    values = np.array([5.0, 10.0, 20.0, 40.0, 80.0, 160.0])
    X = np.column_stack([rng.choice(values, 3000), rng.normal(size=3000)])
    effect = dict(zip(values, [0.0, 3.0, -2.0, 1.0, 4.0, -1.0], strict=True))
    y = np.array([effect[v] for v in X[:, 0]]) + X[:, 1]
    model = HistGradientBoostingRegressor(max_iter=40, categorical_features=[0]).fit(X, y)
    return model, X


@pytest.mark.parametrize("student_lib", ["lightgbm", "xgboost", "sklearn"])
def test_distilled_students_of_a_categorical_teacher(student_lib):
    """Students learn on category codes: LightGBM / XGBoost students split them by category,
    generated rows hold valid codes, and the student takes raw inputs as the teacher does."""
    model, X = _hgb_teacher_numeric_categories()
    teacher = treeslim.from_model(model)
    assert teacher.category_rule == "sklearn" and teacher.n_categorical_splits > 0
    if student_lib == "lightgbm":
        student = pytest.importorskip("lightgbm").LGBMRegressor(n_estimators=20, verbose=-1)
    elif student_lib == "xgboost":
        student = pytest.importorskip("xgboost").XGBRegressor(n_estimators=20, max_depth=4)
    else:
        from sklearn.tree import DecisionTreeRegressor

        student = DecisionTreeRegressor(max_depth=6)
    small = treeslim.distill(teacher, X, student=student, n_synthetic=3000, augment="munge",
                             temperature=1.0, alpha=0.0, loss="squared", random_state=0)  # fmt: skip
    assert small.feature_categories == teacher.feature_categories
    assert small.category_rule == "sklearn"  # raw values are encoded as the teacher encodes them
    if student_lib != "sklearn":
        assert small.n_categorical_splits > 0
    # the student learned the teacher: close on the raw training rows (planted bug: the student
    # trained on raw values but scored through the encoding gives r2 far below)
    t, s = teacher.predict(X), small.predict(X)
    assert 1 - np.mean((t - s) ** 2) / np.var(t) > 0.9
    # unseen raw values are missing for both, as in HistGradientBoosting
    odd = np.array([[7.0, 0.0], [-1.0, 0.0], [np.nan, 0.0]])
    np.testing.assert_allclose(teacher.predict(odd), model.predict(odd), rtol=1e-6, atol=1e-6)
    assert np.ptp(small.predict(odd)) < 1e-9
