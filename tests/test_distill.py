"""Distillation: soft targets, student import (oracle against the student library), determinism,
errors, the dask path and the CLI. Generated-row samplers are tested in ``test_augment.py``."""

from __future__ import annotations

import numpy as np
import pytest
from models import data, model
from oracle import assert_close

import treeslim
from treeslim import UnsupportedModelError
from treeslim.distillation import (
    SoftTargets,
    distill,
    distill_candidate,
    fit_student,
    parse_student,
    training_set,
)

TASKS = ["binary", "multiclass", "regression", "ranking"]


def _lgb(**kw):
    import lightgbm as lgb

    return lgb.LGBMRegressor(
        **{"n_estimators": 8, "num_leaves": 7, "verbose": -1, "n_jobs": 1, **kw}
    )


def _teacher(task, lib="lightgbm"):
    m, X = model(lib, task)
    _, y, qid = data(task)
    return m, treeslim.from_model(m), X, y, (qid if task == "ranking" else None)


# ---------------------------------------------------------------------------- soft targets
def test_soft_targets_reproduce_teacher_margins_at_alpha_zero():
    for task in TASKS:
        _, f, X, _y, qid = _teacher(task)
        z = f.predict_margin(X).reshape(len(X), -1)
        code = None if qid is None else np.unique(qid, return_inverse=True)[1]
        for T in (1.0, 2.5):
            u = SoftTargets(f, T, 0.0, None, qid, z).targets(z, qcode=code) * T
            want = z
            if task == "multiclass":
                want = z - z.mean(axis=1, keepdims=True)
            if task == "ranking":
                want = z - (np.bincount(code, z[:, 0]) / np.bincount(code))[code][:, None]
            np.testing.assert_allclose(u, want, atol=1e-6, err_msg=f"{task} T={T}")


def test_soft_targets_cap_saturated_margins_and_mix_labels():
    _, f, _X, _y, _ = _teacher("binary")
    z = np.array([[-40.0], [0.3], [40.0]])
    for T in (0.5, 1.0, 2.0):
        u = SoftTargets(f, T, 0.0, None, None, z).targets(z) * T
        cap = T * np.log((1 - 1e-6) / 1e-6)
        np.testing.assert_allclose(u[:, 0], [-cap, 0.3, cap], rtol=1e-6)
    lab = SoftTargets(f, 1.0, 1.0, np.array([0, 1, 1]), None, z)
    np.testing.assert_allclose(lab.targets(z, y=np.array([0, 1, 1]))[:, 0], [-13.8155, 13.8155, 13.8155], rtol=1e-4)  # fmt: skip
    half = SoftTargets(f, 1.0, 0.5, np.array([1]), None, np.zeros((1, 1)))
    # p = 0.5 * 0.5 + 0.5 * 1 = 0.75
    np.testing.assert_allclose(half.targets(np.zeros((1, 1)), y=np.array([1])), np.log(3.0))


# ---------------------------------------------------------------------------- oracle: import
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", ["lightgbm", "xgboost", "tree", "forest", "hgb"])
def test_student_forest_equals_library_predictions_times_temperature(task, kind):
    import xgboost as xgb
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.tree import DecisionTreeRegressor

    _, f, X, _, _ = _teacher(task)
    k = f.n_outputs
    rng = np.random.default_rng(0)
    U = rng.normal(size=(len(X), k)) + np.nan_to_num(X[:, :1])
    student = {
        "lightgbm": _lgb(),
        "xgboost": xgb.XGBRegressor(n_estimators=6, max_depth=3, n_jobs=1),
        "tree": DecisionTreeRegressor(max_depth=4),
        "forest": RandomForestRegressor(n_estimators=4, max_depth=3, n_jobs=1),
        "hgb": HistGradientBoostingRegressor(max_iter=5, max_depth=3),
    }[kind]
    T = 1.7
    fit = fit_student(f, student, X, U, temperature=T, seed=3)
    out = fit.model
    assert (out.task, out.num_class, out.postprocessor) == (f.task, f.num_class, f.postprocessor)
    lib = np.column_stack([e.predict(X) for e in fit.estimators])
    if len(fit.estimators) == 1 and k > 1:
        lib = fit.estimators[0].predict(X)
    assert_close(out.predict_margin(X).reshape(len(X), -1), T * lib.reshape(len(X), -1),
                 what=f"{kind} {task}")  # fmt: skip
    assert student.get_params().get("random_state") is None  # the template is not touched
    multi_output = kind in ("tree", "forest")
    assert len(fit.estimators) == (1 if multi_output else k)
    assert out.leaf_width == (k if multi_output else 1)


def test_distilled_forest_exports_to_its_library():
    import xgboost as xgb

    m, _f, X, _y, _ = _teacher("multiclass", "xgboost")
    for student in (_lgb(), xgb.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1)):
        s = distill(m, X, student=student, n_synthetic=500, random_state=0)
        if s.source["library"] == "lightgbm":
            back = treeslim.to_lightgbm(s).predict(X)
        else:
            back = treeslim.to_xgboost(s).predict(xgb.DMatrix(X))
        assert_close(back, s.predict(X), prob=True, what=s.source["library"])


# ---------------------------------------------------------------------------- distill
def test_distill_mimics_teacher_on_every_task():
    from sklearn.tree import DecisionTreeRegressor

    for task in TASKS:
        m, f, X, _y, qid = _teacher(task)
        s = distill(m, X, student=DecisionTreeRegressor(max_depth=6), n_synthetic=5000,
                    qid=qid, random_state=0)  # fmt: skip
        assert s.task == f.task and s.n_trees == 1 and s.max_depth <= 6
        a, b = s.predict_margin(X).ravel(), f.predict_margin(X).ravel()
        if task == "multiclass":
            agree = np.mean(s.predict(X).argmax(1) == f.predict(X).argmax(1))
            assert agree > 0.85, agree
            continue
        if task == "ranking":
            code = np.unique(qid, return_inverse=True)[1]
            b = b - (np.bincount(code, b) / np.bincount(code))[code]
        r2 = 1 - np.sum((a - b) ** 2) / np.sum((b - b.mean()) ** 2)
        assert r2 > 0.8, (task, r2)


@pytest.mark.parametrize("augment", ["munge", "leaf-box", "jitter", "swap", "none"])
def test_distill_is_deterministic_with_random_state(augment):
    m, _f, X, y, _ = _teacher("binary")
    kw = dict(student=_lgb(subsample=0.7, subsample_freq=1), n_synthetic=3000, augment=augment)
    a = distill(m, X, y, alpha=0.2, random_state=5, **kw)
    b = distill(m, X, y, alpha=0.2, random_state=5, **kw)
    c = distill(m, X, y, alpha=0.2, random_state=6, **kw)
    assert np.array_equal(a.leaf_value, b.leaf_value) and np.array_equal(a.threshold, b.threshold)
    assert not np.array_equal(a.predict_margin(X), c.predict_margin(X))


def test_training_set_real_rows_first_and_generated_rows_stay_in_query():
    _, f, X, _y, qid = _teacher("ranking")
    rows, U, q = training_set(f, X, n_synthetic=2000, augment="munge", qid=qid, random_state=0)
    assert rows.shape == (len(X) + 2000, X.shape[1]) and U.shape == (len(X) + 2000, 1)
    np.testing.assert_array_equal(rows[: len(X)], X)
    assert set(np.unique(q[len(X) :])) <= set(np.unique(qid))
    # targets of generated rows: teacher scores centred by their query's real-row mean
    z = f.predict_margin(rows[len(X) :])
    code = np.unique(qid, return_inverse=True)[1]
    qmean = np.bincount(code, f.predict_margin(X)) / np.bincount(code)
    gq = np.searchsorted(np.unique(qid), q[len(X) :])
    np.testing.assert_allclose(U[len(X) :, 0], z - qmean[gq], atol=1e-9)


def test_training_set_chunked_equals_one_shot():
    _, f, X, _, _ = _teacher("multiclass", "xgboost")
    one = training_set(f, X, n_synthetic=9000, augment="leaf-box", random_state=2,
                       chunk_size=9000)  # fmt: skip
    for chunk in (1000, 4096, 5000):
        other = training_set(f, X, n_synthetic=9000, augment="leaf-box", random_state=2,
                             chunk_size=chunk)  # fmt: skip
        np.testing.assert_array_equal(one[0], other[0])
        np.testing.assert_array_equal(one[1], other[1])
    assert one[0].dtype == np.float32  # the XGBoost teacher's input precision


def test_distill_mlp_student_folds_scaler_and_temperature():
    pytest.importorskip("treeslim.nn")
    from sklearn.neural_network import MLPClassifier

    m, f, X, _y, _ = _teacher("binary")
    Xf = np.nan_to_num(X)
    spec = MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, random_state=0)
    U = SoftTargets(f, 2.0, 0.0, None, None, f.predict_margin(Xf)[:, None]).targets(
        f.predict_margin(Xf)[:, None]
    )
    fit = fit_student(f, spec, Xf, U, temperature=2.0, seed=0)
    mlp, est = fit.model, fit.estimators[0]
    assert mlp.task == "binary" and mlp.num_feature == X.shape[1]
    np.testing.assert_allclose(mlp.predict_margin(Xf), est.predict(Xf), rtol=1e-9, atol=1e-9)
    # the folded network on raw rows fits the targets it was trained on (standardized rows)
    learned = mlp.predict_margin(Xf) / 2.0
    r2 = 1 - np.mean((learned - U[:, 0]) ** 2) / np.var(U[:, 0])
    assert r2 > 0.5, r2
    s = distill(m, Xf, student=spec, n_synthetic=1000, temperature=2.0, random_state=0)
    assert np.mean((s.predict(Xf) > 0.5) == (f.predict(Xf) > 0.5)) > 0.85


def test_distill_candidate_for_compress():
    for lib in ("lightgbm", "xgboost", "sklearn-hgb"):
        for task in ("binary", "multiclass", "ranking"):
            if task == "ranking" and lib == "sklearn-hgb":
                continue  # scikit-learn has no ranker
            _, f, X, _, _ = _teacher(task, lib)
            s = distill_candidate(f, X, f.predict_margin(X), n_trees=4, depth=3, random_state=0)
            assert s.n_trees == 4 * f.n_outputs and s.max_depth <= 3
            assert s.task == f.task and s.postprocessor == f.postprocessor
            if task == "ranking":  # scores fitted as they are, not centred per query
                r = np.corrcoef(s.predict_margin(X), f.predict_margin(X))[0, 1]
                assert r > 0.5
    with pytest.raises(ValueError, match="The 'depth' parameter of distill_candidate"):
        distill_candidate(f, X, f.predict_margin(X), n_trees=4, depth=0)
    with pytest.raises(ValueError, match="The 'library' parameter of distill_candidate"):
        distill_candidate(f, X, f.predict_margin(X), n_trees=4, depth=2, library="catboost")


# ---------------------------------------------------------------------------- errors
def test_distill_errors_name_the_parameter():
    from sklearn.linear_model import LinearRegression
    from sklearn.tree import DecisionTreeRegressor

    m, _f, X, y, _ = _teacher("binary")
    st = DecisionTreeRegressor(max_depth=2)
    cases = [
        (dict(temperature=0), r"The 'temperature' parameter of distill must be a float > 0\. Got 0"),
        (dict(temperature="hot"), "The 'temperature' parameter"),
        (dict(alpha=1.5), r"The 'alpha' parameter of distill must be a float in \[0, 1\]"),
        (dict(augment="smote"), "The 'augment' parameter of distill must be one of"),
        (dict(n_synthetic=-1), "The 'n_synthetic' parameter of distill must be an int >= 0"),
        (dict(random_state="x"), "The 'random_state' parameter of distill"),
    ]  # fmt: skip
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            distill(m, X, student=st, **kw)
    with pytest.raises(ValueError, match="y \\(the true labels\\) is needed"):
        distill(m, X, student=st, alpha=0.5)
    with pytest.raises(ValueError, match="y must have shape"):
        distill(m, X, y[:10], student=st, alpha=0.5)
    with pytest.raises(ValueError, match="must be an estimator instance"):
        distill(m, X, student=DecisionTreeRegressor)
    with pytest.raises(UnsupportedModelError, match="The 'student' parameter of distill"):
        distill(m, X, student=LinearRegression())
    with pytest.raises(ValueError, match="X has no rows"):
        distill(m, X[:0], student=st)
    rm, _, RX, _, _ = _teacher("ranking")
    with pytest.raises(ValueError, match="ranking teacher needs qid"):
        distill(rm, RX, student=st)


def test_parse_student():
    import lightgbm as lgb
    from sklearn.neural_network import MLPRegressor

    s = parse_student("lightgbm:n_estimators=50,num_leaves=15,objective=huber")
    assert isinstance(s, lgb.LGBMRegressor)
    assert (s.n_estimators, s.num_leaves, s.objective) == (50, 15, "huber")
    mlp = parse_student("mlp:hidden_layer_sizes=(32,16),activation=tanh")
    assert isinstance(mlp, MLPRegressor) and mlp.hidden_layer_sizes == (32, 16)
    assert parse_student("sklearn-forest").n_estimators == 100
    with pytest.raises(ValueError, match="must start with one of"):
        parse_student("catboost:depth=3")
    with pytest.raises(ValueError, match="bad 'key=value' item"):
        parse_student("lightgbm:n_estimators")
    with pytest.raises(ValueError, match="has no parameter"):
        parse_student("sklearn-tree:num_leaves=3")


# ---------------------------------------------------------------------------- dask
def test_dask_cluster_gives_the_local_training_set():
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    _, f, X, _, _ = _teacher("multiclass")
    local = training_set(f, X, n_synthetic=6000, augment="munge", random_state=1,
                         chunk_size=2500)  # fmt: skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:  # fmt: skip
        with distributed.Client(cluster) as client:
            lazy = da.from_array(X, chunks=(120, 3))
            remote = training_set(f, lazy, n_synthetic=6000, augment="munge", random_state=1,
                                  chunk_size=2500)  # fmt: skip
            assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_array_equal(local[0], remote[0])
    np.testing.assert_array_equal(local[1], remote[1])


# ---------------------------------------------------------------------------- CLI
def test_cli_distill_writes_student_library_format(tmp_path, capsys):
    import lightgbm as lgb

    from treeslim.cli import main

    m, _f, X, y, _ = _teacher("binary", "xgboost")
    src = tmp_path / "teacher.json"
    m.save_model(src)
    before = src.read_bytes()
    np.savez(tmp_path / "d.npz", X=X, y=y)
    out = tmp_path / "s.txt"
    argv = ["distill", str(src), "--data", str(tmp_path / "d.npz"), "--student",
            "lightgbm:n_estimators=12,num_leaves=7,verbose=-1", "-o", str(out), "--alpha", "0.1"]  # fmt: skip
    assert main(argv) == 0
    assert "lightgbm format" in capsys.readouterr().out
    assert src.read_bytes() == before
    s = treeslim.load(out)
    assert s.n_trees == 12 and s.task == "binary"
    assert_close(lgb.Booster(model_file=str(out)).predict(X), s.predict(X), prob=True)
    assert (tmp_path / "s.txt.report.json").exists()
    tree_out = tmp_path / "tree.tslim"
    argv[5:8] = ["sklearn-tree:max_depth=3", "-o", str(tree_out)]
    assert main(argv) == 0 and treeslim.load(tree_out).max_depth <= 3
    argv[5] = "sklearn-tree:depth=3"
    assert main(argv) == 2
    assert "has no parameter" in capsys.readouterr().err
