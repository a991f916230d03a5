"""Distillation: soft targets, each task's loss (known answers, oracles against the student
library), the settings search (plain training on the labels among the candidates, whole queries,
determinism), errors, the dask path and the CLI. Generated-row samplers are tested in
``test_augment.py``."""

from __future__ import annotations

import warnings

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
from treeslim.distillation._choose import Setting, _tunable, fit_setting, held_out_folds
from treeslim.distillation._losses import fit_soft, grades

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
        s = distill(m, X, student=student, n_synthetic=500, augment="munge", random_state=0)
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
                    augment="munge", qid=qid, random_state=0)  # fmt: skip
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
    kw = dict(
        student=_lgb(subsample=0.7, subsample_freq=1),
        n_synthetic=3000,
        augment=augment,
        temperature=1.0,
        loss="squared",
    )
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
    s = distill(
        m,
        Xf,
        student=spec,
        n_synthetic=1000,
        augment="munge",
        temperature=2.0,
        loss="squared",
        random_state=0,
    )
    assert np.mean((s.predict(Xf) > 0.5) == (f.predict(Xf) > 0.5)) > 0.85


def test_mlp_regressor_student_is_fitted_on_standardized_targets():
    """An MLPRegressor student learns standardized targets, and the scaling is folded into its
    last layer exactly: the network equals one fitted on standardized rows and targets, mapped
    back. On targets of scale 1,000 (as bike rentals are) forty epochs then fit well, where the
    raw targets leave the same network far off. (Planted bug: no target scaling; caught.)"""
    from sklearn.neural_network import MLPRegressor

    from treeslim.distillation._students import fit_scaled_mlp, standardized

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 4)) * [1.0, 10.0, 0.1, 5.0] + [0.0, 100.0, 3.0, -20.0]
    Z, _, _ = standardized(X)
    signal = np.sin(Z[:, 0]) + Z[:, 1] * Z[:, 2] + 0.5 * Z[:, 3]
    y = 2000.0 + 400.0 * signal
    spec = dict(hidden_layer_sizes=(16,), max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at 40 epochs
        est = MLPRegressor(**spec)
        fit_scaled_mlp(est, X, y)
        ref = MLPRegressor(**spec).fit(Z, (y - y.mean()) / y.std())
        raw = MLPRegressor(**spec).fit(Z, y)
    np.testing.assert_allclose(est.predict(X), ref.predict(Z) * y.std() + y.mean(), rtol=1e-9)

    def r2(pred):
        return 1 - np.mean((pred - y) ** 2) / np.var(y)

    assert r2(est.predict(X)) > 0.6 and r2(raw.predict(Z)) < 0.0
    # two outputs: each column scaled on its own
    Y = np.column_stack([y, -0.001 * y])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est2 = MLPRegressor(**spec)
        fit_scaled_mlp(est2, X, Y)
    assert r2(est2.predict(X)[:, 0]) > 0.6
    np.testing.assert_allclose(est2.predict(X)[:, 1].mean(), Y[:, 1].mean(), rtol=0.05)


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
    # compress's students: cross-entropy for classifiers where the library allows it
    for task, want in (("binary", "cross_entropy"), ("multiclass", "cross_entropy"),
                       ("regression", "squared")):  # fmt: skip
        _, f, X, _, _ = _teacher(task)
        z = f.predict_margin(X)
        auto = distill_candidate(f, X, z, n_trees=3, depth=2, loss="auto", random_state=0)
        same = distill_candidate(f, X, z, n_trees=3, depth=2, loss=want, random_state=0)
        np.testing.assert_array_equal(auto.predict_margin(X), same.predict_margin(X))
    other = distill_candidate(f, X, z, n_trees=3, depth=2, random_state=0)  # default: squared
    assert np.array_equal(other.predict_margin(X), same.predict_margin(X))
    _, f, X, _, _ = _teacher("binary")
    z = f.predict_margin(X)
    ce = distill_candidate(f, X, z, n_trees=3, depth=2, loss="auto", random_state=0)
    assert not np.allclose(ce.predict_margin(X), distill_candidate(
        f, X, z, n_trees=3, depth=2, random_state=0).predict_margin(X))  # fmt: skip
    with pytest.raises(ValueError, match="The 'depth' parameter of distill_candidate"):
        distill_candidate(f, X, f.predict_margin(X), n_trees=4, depth=0)
    with pytest.raises(ValueError, match="The 'library' parameter of distill_candidate"):
        distill_candidate(f, X, f.predict_margin(X), n_trees=4, depth=2, library="catboost")


# ---------------------------------------------------------------------------- losses
def _constant_students():
    """Students that can only learn one constant: their fit is the loss's optimal constant."""
    import xgboost as xgb
    from sklearn.tree import DecisionTreeRegressor

    return [
        _lgb(n_estimators=1, min_child_samples=10**6),
        xgb.XGBRegressor(n_estimators=1, max_depth=1, min_child_weight=1e9, n_jobs=1),
        DecisionTreeRegressor(max_depth=1, min_samples_leaf=10**6),
    ]


@pytest.mark.parametrize("student", _constant_students(), ids=["lightgbm", "xgboost", "tree"])
def test_binary_losses_known_answer(student):
    # half the rows p = 0.5, half p = 0.99: cross-entropy's best constant is logit(mean p) =
    # logit(0.745) = 1.0714, least squares on logits gives mean logit(p) = 2.2976; margins are
    # T / sigmoid_alpha times that (the teacher's own margin scale)
    _, f, X, _, _ = _teacher("binary")
    s, T = f.sigmoid_alpha, 2.0
    p = np.where(np.arange(len(X)) % 2 == 0, 0.5, 0.99)
    U = (np.log(p) - np.log1p(-p))[:, None] / s
    want = {"cross_entropy": np.log(0.745 / 0.255), "squared": np.mean(np.log(p / (1 - p)))}
    for loss, logit in want.items():
        out = fit_soft(f, student, X, U, loss=loss, temperature=T, seed=0).model
        assert out.task == "binary" and out.postprocessor == f.postprocessor
        np.testing.assert_allclose(out.predict_margin(X), T / s * logit, rtol=2e-5, err_msg=loss)


@pytest.mark.parametrize("student", _constant_students(), ids=["lightgbm", "xgboost", "tree"])
def test_multiclass_cross_entropy_is_one_vs_rest_known_answer(student):
    _, f, X, _, _ = _teacher("multiclass")
    P = np.where((np.arange(len(X)) % 2 == 0)[:, None], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8])
    U = np.log(P) - np.log(P).mean(axis=1, keepdims=True)  # the softmax teacher's targets
    T = 1.5
    out = fit_soft(f, student, X, U, loss="cross_entropy", temperature=T, seed=0).model
    mean = np.array([0.4, 0.15, 0.45])
    logit = np.log(mean / (1 - mean))
    if type(student).__name__.startswith("DecisionTree"):  # one multi-output tree: log p
        logit = np.log(mean)
    np.testing.assert_allclose(out.predict_margin(X), np.tile(T * logit, (len(X), 1)), rtol=2e-5)
    sq = fit_soft(f, student, X, U, loss="squared", temperature=T, seed=0).model
    np.testing.assert_allclose(sq.predict_margin(X)[0], T * U.mean(axis=0), atol=2e-5)


def test_regression_is_least_squares_on_blended_targets():
    # least squares' best constant is the mean target: (1 - alpha) mean(z) + alpha mean(y)
    _, f, X, y, _ = _teacher("regression")
    rows, U, _ = training_set(f, X, y, n_synthetic=0, augment="none", alpha=0.3, random_state=0)
    z = f.predict_margin(X)
    for student in _constant_students():
        out = fit_soft(f, student, rows, U, loss="squared", temperature=1.0, seed=0).model
        np.testing.assert_allclose(out.predict_margin(X), 0.7 * z.mean() + 0.3 * y.mean(),
                                   rtol=1e-5)  # fmt: skip
    with pytest.raises(ValueError, match="The 'loss' parameter of distill must be one of"):
        fit_soft(f, _lgb(), rows, U, loss="cross_entropy", temperature=1.0, seed=0)


def test_grades_cut_centred_scores_at_fixed_quantiles():
    u = np.arange(100.0)
    g = grades(u)
    assert np.bincount(g).tolist() == [50, 30, 15, 5]  # cuts at 0.5, 0.8, 0.95
    assert np.all(np.diff(g) >= 0)


@pytest.mark.parametrize("lib", ["lightgbm", "xgboost"])
def test_ranking_student_is_a_ranker_on_teacher_grades_within_each_query(lib):
    import lightgbm as lgb
    import xgboost as xgb

    _, f, X, _, qid = _teacher("ranking")
    rows, U, q = training_set(f, X, n_synthetic=1500, augment="munge", qid=qid, random_state=0)
    student = _lgb(n_estimators=6) if lib == "lightgbm" else xgb.XGBRegressor(
        n_estimators=6, max_depth=3, n_jobs=1)  # fmt: skip
    fit = fit_soft(f, student, rows, U, loss="pairwise", temperature=1.0, seed=0, qid=q)
    # oracle: the library's ranker fitted by hand on the grades, grouped by query
    code = np.unique(q, return_inverse=True)[1]
    order = np.argsort(code, kind="stable")
    g = grades(U[order, 0])
    if lib == "lightgbm":
        ref = lgb.LGBMRanker(n_estimators=6, num_leaves=7, verbose=-1, n_jobs=1, random_state=0,
                             objective="lambdarank")  # fmt: skip
        ref.fit(rows[order], g, group=np.bincount(code[order]))
        assert fit.estimators[0].objective == "lambdarank"
    else:
        ref = xgb.XGBRanker(n_estimators=6, max_depth=3, n_jobs=1, random_state=0,
                            objective="rank:pairwise")  # fmt: skip
        ref.fit(rows[order], g, qid=code[order])
    assert_close(fit.model.predict_margin(X), ref.predict(X), what=lib)
    assert fit.model.task == "ranking"
    # the queries matter: the same rows in other groups give another student
    shuffled = np.random.default_rng(0).permutation(q)
    other = fit_soft(f, student, rows, U, loss="pairwise", temperature=1.0, seed=0, qid=shuffled)
    assert not np.allclose(other.model.predict_margin(X), fit.model.predict_margin(X))


# ---------------------------------------------------------------------------- settings search
def test_search_includes_plain_training_and_picks_it_when_the_teacher_misleads():
    import lightgbm as lgb

    _, _f, X, y, _ = _teacher("binary")
    # a teacher trained on the flipped labels misleads: plain training must win
    noise = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, verbose=-1, n_jobs=1,
                               random_state=0).fit(X, 1 - y)  # fmt: skip
    student = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, learning_rate=0.2, verbose=-1,
                                 n_jobs=1, random_state=0)  # fmt: skip
    s = distill(noise, X, y, student=student, n_synthetic=0, temperature=1.0, random_state=0)
    rep = s.source["distill"]
    assert rep["searched"] and "labels" in {c["loss"] for c in rep["candidates"]}
    assert (rep["loss"], rep["alpha"], rep["n_synthetic"]) == ("labels", 1.0, 0)
    assert rep["student_params"] == {}  # set by the user: not tuned
    plain = lgb.LGBMClassifier(**student.get_params()).fit(X, y)
    assert_close(s.predict(X), plain.predict_proba(X)[:, 1], prob=True)
    assert student.get_params()["random_state"] == 0 and not hasattr(student, "booster_")


def test_search_distills_when_the_teacher_knows_more_than_few_labels():
    from sklearn.tree import DecisionTreeClassifier

    m, _f, X, y, _ = _teacher("binary")
    s = distill(m, X[:150], y[:150], student=DecisionTreeClassifier(max_depth=3),
                random_state=0)  # fmt: skip
    rep = s.source["distill"]
    labels = next(c["score"] for c in rep["candidates"] if c["loss"] == "labels")
    picked = max(c["score"] for c in rep["candidates"])
    assert rep["loss"] != "labels" and picked > labels + 0.001
    assert {"squared", "cross_entropy"} <= {c["loss"] for c in rep["candidates"]}
    assert {"munge", "leaf-box", "jitter"} <= {c["augment"] for c in rep["candidates"]}


def test_search_is_deterministic_and_reports_the_chosen_settings(tmp_path):
    f = _teacher("ranking")[1]
    X, y, qid = data("ranking", n=800, seed=1)  # 40 queries: fewer than 30 are not searched
    kw = dict(student=_lgb(n_estimators=5), qid=qid, random_state=3)
    a, b = distill(f, X, y, **kw), distill(f, X, y, **kw)
    assert a.source["distill"] == b.source["distill"]
    assert np.array_equal(a.predict_margin(X), b.predict_margin(X))
    rep = a.source["distill"]
    assert {"pairwise", "squared", "labels"} == {c["loss"] for c in rep["candidates"]}
    assert set(rep) >= {"loss", "alpha", "temperature", "augment", "n_synthetic", "metric"}
    assert rep["metric"] == "ndcg@10"
    treeslim.save(a, tmp_path / "s.tslim")  # the report is stored with the model
    assert treeslim.load(tmp_path / "s.tslim").source["distill"] == rep


def test_student_left_at_defaults_gets_learning_rate_and_rounds_tried():
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.tree import DecisionTreeRegressor

    assert _tunable(lgb.LGBMRegressor()) == [("learning_rate", 0.3), ("n_estimators", 50)]
    assert _tunable(xgb.XGBClassifier()) == [("learning_rate", 0.1), ("n_estimators", 50)]
    assert _tunable(lgb.LGBMRegressor(n_estimators=30, learning_rate=0.05)) == []
    assert _tunable(DecisionTreeRegressor()) == []
    _, f, X, y, _ = _teacher("binary")
    s = Setting("squared", params=(("n_estimators", 3),))
    fitted = fit_setting(f, _lgb(), X, y, None, s, seed=0)
    assert fitted.n_trees == 3


def test_held_out_rows_are_whole_queries():
    qid = np.repeat(np.arange(40), 7)
    folds = held_out_folds(len(qid), qid, seed=0)
    assert len(folds) == 5
    for fit, held in folds:
        assert not set(qid[fit]) & set(qid[held]) and len(fit) + len(held) == len(qid)
    assert sorted(np.concatenate([h for _, h in folds]).tolist()) == list(range(len(qid)))
    assert len(held_out_folds(6000, None, seed=0)) == 3
    assert len(held_out_folds(30000, None, seed=0)) == 1  # one 20% holdout on large data


def test_fixed_settings_are_not_searched():
    _, _f, X, y, _ = _teacher("binary")
    m, _, _, _, _ = _teacher("binary")
    s = distill(m, X, y, student=_lgb(), n_synthetic=500, augment="jitter", temperature=2.0,
                alpha=0.2, loss="cross_entropy", random_state=0)  # fmt: skip
    rep = s.source["distill"]
    assert not rep["searched"] and rep["candidates"] == []
    assert (rep["loss"], rep["alpha"], rep["temperature"], rep["augment"], rep["n_synthetic"]) == (
        "cross_entropy", 0.2, 2.0, "jitter", 500)  # fmt: skip


def test_too_few_queries_or_rows_take_the_defaults_unsearched():
    """Fewer than 30 queries (ranking) or rows: held-out scores are noise, so the defaults
    (least squares on the teacher alone, ten MUNGE rows per real row) are used as they are."""
    _, f, X, y, qid = _teacher("ranking")  # 25 queries of 20 rows: 500 rows
    rep = distill(f, X, y, student=_lgb(), qid=qid, random_state=0).source["distill"]
    assert not rep["searched"] and rep["candidates"] == []
    assert (rep["loss"], rep["alpha"], rep["augment"], rep["n_synthetic"]) == (
        "squared", 0.0, "munge", 5000)  # fmt: skip
    halves = 2 * qid + (np.arange(len(qid)) % 20 >= 10)  # the same rows as 50 queries of 10
    rep = distill(f, X, y, student=_lgb(), qid=halves, random_state=0).source["distill"]
    assert rep["searched"] and rep["candidates"]
    _, fb, Xb, yb, _ = _teacher("binary")
    assert not distill(fb, Xb[:29], yb[:29], student=_lgb(), random_state=0).source["distill"][
        "searched"]  # fmt: skip
    assert distill(fb, Xb[:30], yb[:30], student=_lgb(), random_state=0).source["distill"][
        "searched"]  # fmt: skip


# ---------------------------------------------------------------------------- errors
def test_distill_errors_name_the_parameter():
    from sklearn.linear_model import LinearRegression
    from sklearn.tree import DecisionTreeRegressor

    m, _f, X, y, _ = _teacher("binary")
    st = DecisionTreeRegressor(max_depth=2)
    cases = [
        (dict(temperature=0), r"The 'temperature' parameter of distill must be a float > 0 or 'auto'\. Got 0"),
        (dict(loss="hinge"), "The 'loss' parameter of distill must be one of"),
        (dict(loss="pairwise"), r"The 'loss' parameter of distill must be one of \['squared', 'cross_entropy'\]"),
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


def test_dask_input_gives_the_numpy_search_and_student():
    da = pytest.importorskip("dask.array")
    m, _f, X, y, _ = _teacher("binary")
    st = _lgb(n_estimators=5)
    a = distill(m, X, y, student=st, random_state=0)
    b = distill(m, da.from_array(X, chunks=(100, 6)), da.from_array(y, chunks=100), student=st,
                random_state=0)  # fmt: skip
    assert a.source["distill"] == b.source["distill"]
    np.testing.assert_array_equal(a.predict_margin(X), b.predict_margin(X))


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
            "lightgbm:n_estimators=12,num_leaves=7,verbose=-1", "-o", str(out), "--alpha", "0.1",
            "--loss", "squared", "--temperature", "1", "--augment", "munge"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "lightgbm format" in printed and "settings: loss=squared, alpha=0.1" in printed
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
    # searched: a model file cannot be refitted, so the held-out rows judge, with a warning
    # unless the rows are new to the teacher
    searched = [*argv[:5], "sklearn-tree:max_depth=3", "-o", str(tree_out)]
    with pytest.warns(UserWarning, match="cannot be\\s+refitted"):
        assert main(searched) == 0
    assert "selection=holdout" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert main([*searched, "--teacher-saw-rows", "no"]) == 0


@pytest.mark.parametrize(("leaves", "want"), [(8, 10_000), (2_000, 20_000)])
def test_generated_rows_are_sized_by_capacity_with_a_floor(leaves, want):
    """Ten generated rows per leaf, never fewer than 10,000 (below that a small student's fit
    to the teacher depends on where the few rows fall), then three times as many."""
    from sklearn.tree import DecisionTreeRegressor

    m, _ = model("lightgbm", "regression")
    X, y, _ = data("regression", n=2000, seed=1)
    s = distill(m, X, y, student=DecisionTreeRegressor(max_leaf_nodes=leaves, random_state=0),
                random_state=0)  # fmt: skip
    sizes = {c["n_synthetic"] for c in s.source["distill"]["candidates"] if c["n_synthetic"]}
    assert min(sizes) == want and sizes <= {want, 3 * want}
