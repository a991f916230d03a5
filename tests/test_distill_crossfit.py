"""Cross-fitted settings search of :func:`treeslim.distill`: held-out rows new to the teacher
that guided the student (a known answer with a teacher that memorises noise), what is reported,
determinism, the teachers that cannot be refitted, refits of early-stopped, ranking, categorical
and DataFrame teachers. Generated rows on the data's support are tested in ``test_augment.py``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from models import data, model

import treeslim
from treeslim.distillation import distill
from treeslim.distillation._choose import held_out_folds
from treeslim.distillation._crossfit import fold_teachers, refit_template, teacher_rows


def _noise(n=600, n_test=500, seed=0):
    """Pure-noise binary labels: nothing to learn, so any held-out gain is a leak."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + n_test, 4))
    y = rng.integers(0, 2, n + n_test)
    return X[:n], y[:n], X[n:], y[n:]


def _scores(rep):
    labels = next(c["score"] for c in rep["candidates"] if c["loss"] == "labels")
    top = max(c["score"] for c in rep["candidates"] if c["loss"] != "labels")
    return labels, top


def _lgb(**kw):
    import lightgbm as lgb

    return lgb.LGBMRegressor(**{"n_estimators": 6, "num_leaves": 7, "verbose": -1, "n_jobs": 1,
                                **kw})  # fmt: skip


def test_crossfit_sees_held_out_rows_as_new_where_holdout_is_fooled():
    """A forest of fully grown trees memorises its noise labels, and generated rows next to a
    held-out row carry that row's label through it. Held-out rows the teacher saw then rate
    distillation well above plain training (the leak); cross-fitted, the teacher that labels a
    fold never saw its held-out rows, distillation rates like plain training (AUC about 0.5),
    plain training is kept, and on fresh rows the student is exactly the one from scratch.
    (Planted bugs: fold teachers fitted on all rows instead of the fitting rows: the cross-fitted
    search rated distillation 0.108 above plain training and chose jitter; no second look: a
    distilled student was chosen.)"""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.tree import DecisionTreeClassifier

    X, y, Xt, yt = _noise()
    teacher = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    student = DecisionTreeClassifier(max_depth=5, random_state=0)
    fooled = distill(teacher, X, y, student=student, teacher_saw_rows=False, random_state=0)
    honest = distill(teacher, X, y, student=student, random_state=0)
    rf, rh = fooled.source["distill"], honest.source["distill"]
    assert (rf["selection"], rh["selection"]) == ("holdout", "crossfit")
    labels, top = _scores(rf)
    assert top > labels + 0.08 and rf["loss"] != "labels"  # the leak
    assert roc_auc_score(yt, fooled.predict(Xt)) < top - 0.05  # what it promised, not kept
    labels, top = _scores(rh)
    assert top < labels + 0.05 and abs(labels - 0.5) < 0.05
    assert rh["loss"] == "labels"
    # the search's five folds still let the best of a dozen candidates past plain
    # training by a standard error; the second look, on ten fresh folds, does not
    assert rh["confirmation"] is not None and not rh["confirmation"]["kept"]
    assert rh["teacher_refits"] == 15
    scratch = DecisionTreeClassifier(max_depth=5, random_state=0).fit(X, y)
    np.testing.assert_array_equal(honest.predict(Xt), scratch.predict_proba(Xt)[:, 1])
    assert not hasattr(student, "tree_")  # the user's student is not fitted


def test_fold_teachers_never_see_their_held_out_rows():
    """Each fold's teacher is the clone fitted on the fitting rows: a fully grown tree repeats
    the labels of the rows it was fitted on and not those of its held-out rows."""
    from sklearn.tree import DecisionTreeClassifier

    X, y, _, _ = _noise(400)
    teacher = DecisionTreeClassifier(random_state=0).fit(X, y)
    f = treeslim.from_model(teacher)
    folds = held_out_folds(len(X), None, seed=0)
    guides = fold_teachers(refit_template(teacher), f, X, y, None, folds)
    assert guides is not None and len(guides) == len(folds) == 5
    for (fit, held), g in zip(folds, guides, strict=True):
        assert np.array_equal(g.predict(X[fit]) > 0.5, y[fit] == 1)  # memorised
        agree = np.mean((g.predict(X[held]) > 0.5) == (y[held] == 1))
        assert 0.35 < agree < 0.65  # unseen noise: a coin flip
    assert np.array_equal(f.predict(X) > 0.5, y == 1)  # the real teacher is untouched


def test_crossfit_report_and_determinism():
    m, X = model("lightgbm", "binary")
    _, y, _ = data("binary")
    kw = dict(student=_lgb(), random_state=4)
    a, b = distill(m, X, y, **kw), distill(m, X, y, **kw)
    ra = a.source["distill"]
    assert ra == b.source["distill"]
    np.testing.assert_array_equal(a.predict_margin(X), b.predict_margin(X))
    assert ra["selection"] == "crossfit" and ra["teacher_refits"] in (5, 15)  # 15: confirmed
    assert ra["teacher_rows"] == 500
    other = distill(m, X, y, **{**kw, "random_state": 5}).source["distill"]
    assert other["candidates"] != ra["candidates"]  # the seed moves the folds
    # without labels the search scores closeness to the real teacher: no refits
    nolab = distill(m, X, **kw).source["distill"]
    assert (nolab["selection"], nolab["teacher_refits"]) == ("holdout", 0)
    fixed = distill(m, X, y, student=_lgb(), n_synthetic=0, temperature=1.0, alpha=0.0,
                    loss="squared", augment="none").source["distill"]  # fmt: skip
    assert (fixed["selection"], fixed["teacher_refits"]) == ("none", 0)


def test_teachers_that_cannot_be_refitted_warn_unless_the_rows_are_new():
    m, X = model("lightgbm", "binary")
    _, y, _ = data("binary")
    for teacher in (m.booster_, treeslim.from_model(m)):
        with pytest.warns(UserWarning, match=r"cannot be\s+refitted.*can favour distillation"):
            s = distill(teacher, X, y, student=_lgb(), random_state=0)
        assert s.source["distill"]["selection"] == "holdout"
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # other libraries may warn otherwise
            s = distill(teacher, X, y, student=_lgb(), teacher_saw_rows=False, random_state=0)
        assert s.source["distill"]["selection"] == "holdout"
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # other libraries may warn otherwise
            distill(teacher, X, student=_lgb(), random_state=0)  # no labels: nothing to favour
    with pytest.raises(ValueError, match="The 'teacher_saw_rows' parameter of distill must be"):
        distill(m, X, y, student=_lgb(), teacher_saw_rows="yes")


def test_a_teacher_trained_on_many_more_rows_is_not_refitted_unless_told():
    """X a sample of the teacher's training rows: clones fitted on part of the sample would be
    much weaker than the teacher, so held-out rows judge, unless teacher_saw_rows=True."""
    m, X = model("xgboost", "binary")
    _, y, _ = data("binary")
    assert teacher_rows(treeslim.from_model(m)) == pytest.approx(500, rel=1e-6)  # hessians
    rep = distill(m, X[:200], y[:200], student=_lgb(), random_state=0).source["distill"]
    assert (rep["selection"], rep["teacher_rows"]) == ("holdout", 500)
    assert rep["loss"] != "labels" and rep["confirmation"] is None  # no second look here
    rep = distill(m, X[:200], y[:200], student=_lgb(), teacher_saw_rows=True,
                  random_state=0).source["distill"]  # fmt: skip
    assert rep["selection"] == "crossfit"
    rep = distill(m, X[:400], y[:400], student=_lgb(), random_state=0).source["distill"]
    assert rep["selection"] == "crossfit"  # 500 <= 1.5 * 400


def test_early_stopped_teacher_is_refitted_at_its_rounds_without_an_eval_set():
    import lightgbm as lgb
    import xgboost as xgb

    X, y, _ = data("binary")
    xm = xgb.XGBClassifier(n_estimators=200, max_depth=3, learning_rate=0.3,
                           early_stopping_rounds=3, n_jobs=1, random_state=0)  # fmt: skip
    xm.fit(X[:350], y[:350], eval_set=[(X[350:], y[350:])], verbose=False)
    assert xm.best_iteration < 199
    t = refit_template(xm)
    assert t.early_stopping_rounds is None and t.n_estimators == xm.best_iteration + 1
    assert xm.early_stopping_rounds == 3  # the user's model is untouched
    rep = distill(xm, X[:350], y[:350], student=_lgb(), random_state=0).source["distill"]
    assert rep["selection"] == "crossfit"
    lm = lgb.LGBMClassifier(n_estimators=200, learning_rate=0.3, verbose=-1, n_jobs=1)
    lm.fit(X[:350], y[:350], eval_set=[(X[350:], y[350:])],
           callbacks=[lgb.early_stopping(3, verbose=False)])  # fmt: skip
    assert 0 < lm.best_iteration_ < 200
    assert refit_template(lm).n_estimators == lm.best_iteration_
    from sklearn.ensemble import HistGradientBoostingRegressor

    hm = HistGradientBoostingRegressor(max_iter=300, early_stopping=True, n_iter_no_change=3,
                                       random_state=0).fit(X, data("regression")[1])  # fmt: skip
    assert hm.n_iter_ < 300
    t = refit_template(hm)
    assert (t.early_stopping, t.max_iter) == (False, hm.n_iter_)


@pytest.mark.parametrize("lib", ["lightgbm", "xgboost"])
def test_ranking_teacher_is_refitted_with_its_queries(lib):
    m, _ = model(lib, "ranking")
    X, y, qid = data("ranking", n=800, seed=1)  # 40 queries: fewer than 30 are not searched
    s = distill(m, X, y, student=_lgb(), qid=qid, teacher_saw_rows=True, random_state=0)
    rep = s.source["distill"]
    assert rep["selection"] == "crossfit" and rep["metric"] == "ndcg@10"
    f = treeslim.from_model(m)
    folds = held_out_folds(len(X), qid, seed=0)
    guides = fold_teachers(refit_template(m), f, X, y, qid, folds)
    assert guides is not None and all(g.task == "ranking" for g in guides)
    # each fold teacher learned from its fitting queries: it ranks them better than chance
    from treeslim.measure import evaluate

    fit, _ = folds[0]
    ndcg = evaluate("ranking", y[fit], guides[0].predict(X[fit]), qid=qid[fit])["ndcg@10"]
    shuffled = evaluate("ranking", y[fit], np.random.default_rng(0).permutation(
        guides[0].predict(X[fit])), qid=qid[fit])["ndcg@10"]  # fmt: skip
    assert ndcg > shuffled + 0.05


def test_categorical_dataframe_teacher_is_refitted_on_the_dataframe():
    """A LightGBM teacher trained on a DataFrame with a category column is refitted on the
    DataFrame's rows (categories kept), and a numpy-coded one is told its categorical column."""
    pd = pytest.importorskip("pandas")
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    n = 800
    city = rng.integers(0, 12, n)
    x = rng.normal(size=n)
    effect = rng.normal(size=12) * 2
    y = (rng.random(n) < 1 / (1 + np.exp(-(effect[city] + x)))).astype(int)
    names = [f"c{i}" for i in range(12)]
    df = pd.DataFrame({"city": pd.Categorical([names[c] for c in city], categories=names),
                       "x": x})  # fmt: skip
    kw = dict(n_estimators=30, num_leaves=7, verbose=-1, n_jobs=1, min_data_per_group=5,
              cat_smooth=1.0, random_state=0)  # fmt: skip
    for X, fit_kw in ((df, {}), (np.column_stack([city, x]).astype(float),
                                 {"categorical_feature": [0]})):  # fmt: skip
        teacher = lgb.LGBMClassifier(**kw).fit(X, y, **fit_kw)
        f = treeslim.from_model(teacher)
        assert f.n_categorical_splits > 0
        folds = held_out_folds(n, None, seed=0)
        guides = fold_teachers(refit_template(teacher), treeslim.ir.code_twin(f), X, y, None,
                               folds)  # fmt: skip
        assert guides is not None
        assert all(g.n_categorical_splits > 0 for g in guides)  # still split by category
        s = distill(teacher, X, y, student=_lgb(), random_state=0)
        assert s.source["distill"]["selection"] == "crossfit"
        assert s.feature_categories == f.feature_categories
        np.testing.assert_allclose(s.predict(X[:50] if isinstance(X, np.ndarray) else X.iloc[:50]),
                                   s.predict(np.column_stack([city, x])[:50]), atol=1e-12)  # fmt: skip


def test_a_refit_missing_a_class_falls_back_to_held_out_rows_with_a_warning():
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.tree import DecisionTreeClassifier

    X, _, _ = data("multiclass")
    X = np.nan_to_num(X)
    y = (X[:, 0] > 0).astype(int)
    y[7] = 2  # one row of the third class: some fitting parts lack it
    teacher = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="a class missing from the part"):
        s = distill(teacher, X, y, student=DecisionTreeClassifier(max_depth=3), random_state=0)
    assert s.source["distill"]["selection"] == "holdout"


def test_confirmation_is_the_corrected_resampled_t_test():
    """Known answers: ten folds whose held-out parts are a ninth of their fitting parts, gains of
    standard deviation 0.01. The corrected standard error is sqrt((1/10 + 1/9) * 1e-4) and the
    bound subtracts t(0.95, 9) = 1.8331 of it. A mean gain of 0.006 is 1.9 plain standard errors
    (kept by a plain t-test) but not above 0 once fold overlap is accounted for. (Planted bug:
    the plain 1/k variance keeps it.)"""
    from treeslim.distillation._choose import TOL, confirm_gain

    folds = [(np.arange(900), np.arange(100))] * 10
    z = np.array([1.0, -1.0] * 5)
    z = z / np.std(z, ddof=1)  # mean 0, sample standard deviation 1
    se = np.sqrt((0.1 + 1 / 9) * 1e-4)
    got = confirm_gain(0.01 + 0.01 * z, folds)
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["lower_bound"] == pytest.approx(0.01 - 1.8331129 * se, rel=1e-6)
    assert got["kept"]
    got = confirm_gain(0.006 + 0.01 * z, folds)
    assert 0.006 > 1.8331129 * 0.01 / np.sqrt(10) and not got["kept"]
    assert not confirm_gain(np.full(10, TOL / 2), folds)["kept"]  # no spread, but below TOL
    assert confirm_gain(np.full(10, 2 * TOL), folds)["kept"]
    one = confirm_gain(np.array([2 * TOL]), folds[:1])  # one 20% holdout: the mean against TOL
    assert one["kept"] and one["se"] == 0.0
    assert not confirm_gain(np.array([0.01, -np.inf]), folds[:2])["kept"]


def test_beats_asks_the_noise_margin_only_when_told():
    from treeslim.distillation._choose import TOL, beats

    z = np.array([-1.5, -0.5, 0.0, 0.5, 1.5])
    base = np.full(5, 0.7)
    noisy = base + 0.004 + 0.03 * z  # mean gain 0.004, standard error 0.0075
    assert beats(noisy, base, margin=False) and not beats(noisy, base, margin=True)
    steady = base + 0.004 + 0.001 * z  # standard error 0.00025: above both
    assert beats(steady, base, margin=True) and beats(steady, base, margin=False)
    small = base + TOL / 2  # below TOL either way
    assert not beats(small, base, margin=False) and not beats(small, base, margin=True)
    lost = np.array([0.9, -np.inf, 0.9, 0.9, 0.9])  # a fold that could not be scored
    assert not beats(lost, base, margin=False) and beats(base, lost, margin=True)


def test_plain_training_must_score_higher_to_replace_a_teacher_that_knows_more(monkeypatch):
    """The last comparison, distilled winner against plain training, asks the noise margin only
    of a teacher trained on about the given rows; one trained on many more rows wins ties."""
    from treeslim.distillation import _choose

    calls = []
    real = _choose.beats

    def spy(top, incumbent, *, margin):
        calls.append(margin)
        return real(top, incumbent, margin=margin)

    monkeypatch.setattr(_choose, "beats", spy)
    m, X = model("xgboost", "binary")
    _, y, _ = data("binary")
    distill(m, X[:200], y[:200], student=_lgb(), random_state=0)  # trained on 500 rows
    assert calls.count(False) == 1  # the comparison with plain training, and only it
    calls.clear()
    distill(m, X[:400], y[:400], student=_lgb(), random_state=0)  # about these rows: crossfit
    assert False not in calls
