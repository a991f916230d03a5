"""The Slim* estimators and compress(): sklearn's contract, pipelines, search results."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest
from models import data, model
from oracle import oracle_rows
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import treeslim
from treeslim import compress
from treeslim.estimators import SlimClassifier, SlimRanker, SlimRegressor
from treeslim.measure import evaluate


@parametrize_with_checks(
    [
        SlimClassifier(n_synthetic=200, random_state=0),
        SlimRegressor(n_synthetic=200, random_state=0),
        SlimRanker(n_synthetic=200, random_state=0),
    ]
)
@pytest.mark.filterwarnings("ignore::treeslim.InsufficientDataWarning")  # the checks' tiny sets
def test_sklearn_contract(estimator, check):
    check(estimator)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_compress_fitted_xgboost(task):
    import xgboost as xgb

    X, y, _ = data(task, n=2000)
    cls = xgb.XGBRegressor if task == "regression" else xgb.XGBClassifier
    m = cls(n_estimators=60, max_depth=4, learning_rate=0.1, n_jobs=1, random_state=0).fit(X, y)
    budget = 0.03 if task == "multiclass" else 0.01  # 800 rows certify accuracy coarsely
    slim = compress(m, X, y, max_loss=budget, random_state=0)
    assert isinstance(slim, SlimRegressor if task == "regression" else SlimClassifier)
    teacher = treeslim.from_model(m)
    assert slim.forest_.n_nodes < teacher.n_nodes
    metric = slim.search_.metric
    got = evaluate(task, y, slim.forest_.predict(X))[metric]
    assert slim.search_.teacher_metric - got <= budget + 1e-12
    cert = slim.search_.certificate
    assert cert.certified and cert.loss_bound <= budget and cert.rows >= 700
    assert "compressed" in slim.report_.to_text()
    booster = slim.export()
    assert type(booster).__name__ == "Booster"  # an XGBoost model stays an XGBoost model
    got = booster.inplace_predict(X, predict_type="margin")  # the compressed model, not m
    np.testing.assert_allclose(got, slim.forest_.predict_margin(X), rtol=1e-5, atol=1e-5)


def test_max_loss_zero_is_exact():
    m, X = model("lightgbm", "binary")
    _, y, _ = data("binary")
    slim = compress(m, X, y, max_loss=0.0)
    Z = oracle_rows(slim.forest_, 300)
    np.testing.assert_allclose(
        slim.forest_.predict_margin(Z), treeslim.from_model(m).predict_margin(Z), rtol=1e-12
    )


@pytest.mark.filterwarnings("ignore::treeslim.InsufficientDataWarning")  # 500 rows, 25 queries
def test_ranker_and_pipeline_and_pickle(tmp_path):
    m, X = model("lightgbm", "ranking")
    _, y, qid = data("ranking")
    slim = compress(m, X, y, qid=qid, max_loss=0.02, random_state=0)
    assert isinstance(slim, SlimRanker) and slim.forest_.task == "ranking"

    Xc, yc, _ = data("binary")
    Xc = np.nan_to_num(Xc)
    pipe = make_pipeline(StandardScaler(), SlimClassifier(n_synthetic=500, random_state=0))
    pipe.fit(Xc, yc)
    assert pipe.score(Xc, yc) > 0.8
    path = tmp_path / "pipe.joblib"
    joblib.dump(pipe, path)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(Xc), pipe.predict_proba(Xc))

    grid = GridSearchCV(
        SlimClassifier(n_synthetic=300, random_state=0), {"max_loss": [0.0, 0.02]}, cv=2
    ).fit(Xc, yc)
    assert grid.best_params_["max_loss"] in (0.0, 0.02)


def interleave(qid):
    """A row order that deals the queries out like cards (first row of each query, then the
    second, ...), keeping each query's own rows in order: a stable sort by qid undoes it."""
    rank = np.arange(len(qid)) - np.searchsorted(qid, qid)  # position within the (sorted) query
    return np.lexsort((qid, rank))


def _same_fit(a, b):
    np.testing.assert_array_equal(a.forest_.leaf_value, b.forest_.leaf_value)
    np.testing.assert_array_equal(a.forest_.threshold, b.forest_.threshold)
    np.testing.assert_array_equal(a.teacher_.leaf_value, b.teacher_.leaf_value)


@pytest.mark.parametrize("inner", ["default", "xgboost", "lightgbm"])
def test_ranker_takes_queries_in_any_order(inner):
    """Interleaved qids give the fit of the same rows sorted by query, whatever the inner model
    wants: nothing (the default, a regressor of the relevance), ``qid`` (XGBRanker, which needs
    grouped rows) or ``group`` sizes (LGBMRanker); ``group=`` works as LightGBM users write it."""
    import lightgbm as lgb
    import xgboost as xgb

    X, y, qid = data("ranking", n=400)
    est = {
        "default": None,
        "xgboost": xgb.XGBRanker(n_estimators=8, max_depth=3, n_jobs=1, random_state=0),
        "lightgbm": lgb.LGBMRanker(n_estimators=8, num_leaves=7, n_jobs=1, verbose=-1,
                                   random_state=0),
    }[inner]  # fmt: skip
    kw = dict(random_state=0, verbose=0, n_synthetic=300, distill=False)
    ranked = SlimRanker(est, **kw).fit(X, y, qid=qid)
    order = interleave(qid)
    assert not np.all(np.diff(qid[order]) >= 0)  # the queries really are interleaved
    mixed = SlimRanker(est, **kw).fit(X[order], y[order], qid=qid[order])
    _same_fit(mixed, ranked)
    np.testing.assert_array_equal(mixed.predict(X[order]), ranked.predict(X)[order])
    grouped = SlimRanker(est, **kw).fit(X, y, group=np.bincount(qid))
    _same_fit(grouped, ranked)
    assert ranked.teacher_.task == "ranking" and ranked.search_.metric == "ndcg@10"
    if inner == "default":
        assert type(ranked.model_).__name__ == "HistGradientBoostingRegressor"


def test_ranker_default_and_one_query():
    """The documented default works without extra dependencies; without qid (as scikit-learn's
    tools call fit) all rows are one query."""
    X, y, _ = data("ranking", n=300)
    kw = dict(random_state=0, verbose=0, n_synthetic=200, distill=False)
    one = SlimRanker(**kw).fit(X, y)
    _same_fit(one, SlimRanker(**kw).fit(X, y, qid=np.full(len(X), 7)))
    assert one.score(X, y) > 0.3  # R^2 of the relevance: a pointwise ranker
    with pytest.raises(ValueError, match="needs a ranker or a regressor with an identity link"):
        SlimRanker(model("xgboost", "binary")[0], **kw).fit(X, y)
    from sklearn.ensemble import HistGradientBoostingRegressor  # fit() takes no qid: none given

    hgb = SlimRanker(HistGradientBoostingRegressor(max_iter=10), **kw)
    assert hgb.fit(X, y, qid=np.arange(len(X)) // 10).predict(X).shape == (len(X),)


def test_wrong_length_qid_and_group_name_both_lengths():
    m, X = model("lightgbm", "ranking")
    _, y, qid = data("ranking")
    short = "qid must have one entry per row: X has 500 rows, qid has 495 entries"
    with pytest.raises(ValueError, match=short):
        SlimRanker(m, verbose=0).fit(X, y, qid=qid[:-5])
    with pytest.raises(ValueError, match=short):
        compress(m, X, y, qid=qid[:-5], verbose=0)
    with pytest.raises(ValueError, match=short):
        treeslim.search.search(treeslim.from_model(m), X, y, qid=qid[:-5], verbose=0)
    with pytest.raises(ValueError, match=short):
        evaluate("ranking", y, m.predict(X), qid=qid[:-5])
    with pytest.raises(ValueError, match="X has 500 rows, qid has 505 entries"):
        treeslim.refit_leaves(treeslim.from_model(m), X, y, task_loss=True,
                              qid=np.concatenate([qid, qid[:5]]))  # fmt: skip
    with pytest.raises(ValueError, match=short):
        treeslim.distill(m, X, student=treeslim.distillation.parse_student("lightgbm"),
                         qid=qid[:-5])  # fmt: skip
    with pytest.raises(ValueError, match=r"X has 500 rows, qid has shape \(500, 1\)"):
        compress(m, X, y, qid=qid[:, None], verbose=0)
    with pytest.raises(ValueError, match="X has 500 rows, group sums to 480"):
        SlimRanker(m, verbose=0).fit(X, y, group=[20] * 24)
    with pytest.raises(ValueError, match="qid or group"):
        SlimRanker(m, verbose=0).fit(X, y, qid=qid, group=[20] * 25)
    with pytest.raises(ValueError, match="group must be a 1-D array of query sizes"):
        SlimRanker(m, verbose=0).fit(X, y, group=[250.5, 249.5])


def test_compress_pipeline_keeps_preprocessing():
    from sklearn.ensemble import RandomForestClassifier

    X, y, _ = data("binary", n=2000)  # 800 rows set aside certify 0.02
    X = np.nan_to_num(X)
    rf = RandomForestClassifier(n_estimators=30, max_depth=5, random_state=0)
    pipe = Pipeline([("scale", StandardScaler()), ("rf", rf)]).fit(X, y)
    out = compress(pipe, X, y, max_loss=0.02, random_state=0)
    assert isinstance(out, Pipeline) and out.steps[0][1] is pipe.steps[0][1]
    assert isinstance(out[-1], SlimClassifier)
    assert out[-1].forest_.n_nodes < treeslim.from_model(pipe[-1]).n_nodes
    assert (out.predict(X) == y).mean() > 0.8


def test_bad_parameters():
    X, y, _ = data("binary")
    with pytest.raises(ValueError, match="'max_loss' parameter of SlimClassifier"):
        SlimClassifier(max_loss=-1).fit(X, y)
    with pytest.raises(ValueError, match="Unknown metric"):
        SlimClassifier(metric="f1", n_synthetic=100).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        SlimClassifier().fit(X, np.zeros(len(X)))


def test_compress_with_bits_and_cli(tmp_path, capsys):
    from treeslim.cli import main

    m, X = model("lightgbm", "regression")
    _, y, _ = data("regression")
    # 500 rows certify an R^2 budget of ~0.1, not 0.02: this test needs a model that compresses
    slim = compress(m, X, y, max_loss=0.1, random_state=0, bits=8)
    steps = [" > ".join(c["steps"]) for c in slim.search_.candidates]
    assert any("quantize_leaves(bits=8)" in s for s in steps)
    leaves = slim.forest_.leaf_value[slim.forest_.split_index < 0]
    if "quantize_leaves" in str(slim.forest_.source.get("passes")):
        assert len(np.unique(leaves)) <= 256
    path = tmp_path / "m.txt"
    m.booster_.save_model(path)
    npz = tmp_path / "cal.npz"
    np.savez(npz, X=X, y=y)
    out = tmp_path / "small.txt"
    code = main(
        [
            "compress",
            str(path),
            "--data",
            str(npz),
            "--max-loss",
            "0.1",
            "--bits",
            "8",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    small = treeslim.load(out)  # a LightGBM model stays a LightGBM model
    assert small.source["library"] == "lightgbm"
    assert small.n_nodes == slim.forest_.n_nodes < treeslim.from_model(m).n_nodes
    np.testing.assert_allclose(small.predict(X), slim.forest_.predict(X), rtol=1e-12)
    assert (tmp_path / "small.txt.report.json").exists()
    front = json.loads((tmp_path / "small.txt.pareto.json").read_text())["entries"]
    assert front and all(e["pareto"] for e in front)
    assert any(e["chosen"] for e in front) or not any(e.get("chosen") for e in slim.report_.entries)
    assert (tmp_path / "small.txt.pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "wrote" in capsys.readouterr().out


def test_paired_standard_error():
    from treeslim.measure import paired_se as _paired_se

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.6 + rng.random(400) * 0.4, 0, 1)
    assert _paired_se("binary", y, None, "auc", p, p.copy(), 0) == 0.0
    noisy = np.clip(p + rng.normal(0, 0.3, 400), 0, 1)
    se = _paired_se("binary", y, None, "auc", p, noisy, 0)
    assert 0.0 < se < 0.1
    qid = np.repeat(np.arange(20), 20)
    assert _paired_se("ranking", y, qid, "ndcg@10", p, noisy, 0) > 0.0


def test_search_is_independent_of_n_jobs_and_finds_the_smallest():
    """The bisection rounds are fixed, so 1 and 2 workers return the same model; the chosen one
    is the smallest certified candidate, and every proposal kept its margin on the judge rows."""
    import xgboost as xgb

    from treeslim.search import search

    X, y, _ = data("binary", n=3000)
    m = xgb.XGBClassifier(n_estimators=40, max_depth=4, n_jobs=1, random_state=0).fit(X, y)
    teacher = treeslim.from_model(m)
    kw = dict(max_loss=0.01, random_state=0, verbose=0, n_synthetic=1000)
    a = search(teacher, X, y, n_jobs=1, **kw)
    b = search(teacher, X, y, n_jobs=2, **kw)
    np.testing.assert_array_equal(a.forest.leaf_value, b.forest.leaf_value)
    assert [c["steps"] for c in a.candidates] == [c["steps"] for c in b.candidates]
    certified = [c for c in a.candidates if c.certificate and c.certificate.certified]
    assert a.forest.n_nodes == min(c["nodes"] for c in certified) < teacher.n_nodes
    assert any(not c["accepted"] for c in a.candidates)  # the search went below the budget
    for c in a.candidates[1:]:
        if c["accepted"]:
            assert a.teacher_metric - c["score"] + c["loss_se"] <= 0.01 + 1e-12
    _assert_budgets_follow_the_milder_one(a, teacher.n_trees)


def _assert_budgets_follow_the_milder_one(result, n_trees):
    """Node budgets (none, 3/4, 1/2, 1/4) are only tried on tree counts where the milder one did
    not fail (a failure with a pass at fewer trees is noise)."""
    import re

    tried = []  # (budget rank, trees, accepted) in the order they were run
    for c in result.candidates[1:]:
        steps = " ".join(c["steps"])
        if "distill" in steps:
            continue
        k = re.search(r"select_trees\(n_trees=(\d+)\)", steps)
        f = re.search(r"prune_nodes\(fraction=([\d.]+)\)", steps)
        rank = (None, 0.75, 0.5, 0.25).index(float(f.group(1)) if f else None)
        tried.append((rank, int(k.group(1)) if k else n_trees, c["accepted"]))
    assert any(rank > 0 for rank, _, _ in tried)
    for rank, k, _ in tried:
        if rank == 0:
            continue
        milder = [(kk, ok) for r, kk, ok in tried if r == rank - 1]
        for k_fail in (kk for kk, ok in milder if not ok and kk >= k):
            assert any(ok and kk < k_fail for kk, ok in milder), (rank, k, milder)


def test_bisection_probes():
    from treeslim.search._search import _bisection_probes

    assert _bisection_probes(0, 13) == [4, 9]
    assert _bisection_probes(-1, 13) == [4, 8]
    assert _bisection_probes(4, 6) == [5]
    assert _bisection_probes(4, 5) == []


def test_progress_bar_only_on_a_terminal():
    import io

    from treeslim._utils import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, verbose, drawn in [
        (io.StringIO(), 1, False),
        (Tty(), 1, True),
        (Tty(), 0, False),
        (io.StringIO(), 2, True),
    ]:
        with Progress(2, "search", verbose=verbose, stream=stream) as bar:
            bar.update(note="first")
            bar.add(1)
            bar.update(2, note="last")
        text = stream.getvalue()
        assert bool(text) is drawn
        if drawn:
            assert "search [" in text and "3/3" in text and "last" in text and text.endswith("\n")


def test_pareto_front_of_the_search():
    from treeslim.search import pareto_mask

    m, X = model("xgboost", "binary")
    _, y, _ = data("binary")
    slim = compress(m, X, y, max_loss=0.01, random_state=0, verbose=0)
    cands = slim.search_.candidates
    assert all(c["row_us"] > 0 for c in cands)
    front = slim.search_.front
    assert front == sorted(front, key=lambda c: c["nodes"]) and len(front) >= 1
    pts = np.array([[c["nodes"], c["row_us"], -c["score"]] for c in cands])
    for c, p in zip(cands, pts):
        dominated = ((pts <= p).all(axis=1) & (pts < p).any(axis=1)).any()
        assert c["pareto"] is (not dominated)
    assert sum(c["chosen"] for c in cands) == 1
    fig = slim.report_.plot()
    assert fig.axes[0].get_legend() is not None
    assert pareto_mask([[1, 1], [1, 1]]).tolist() == [True, True]  # ties do not dominate
    with pytest.raises(ValueError, match="2-D"):
        pareto_mask([1, 2, 3])
    with pytest.raises(ValueError, match="no entries"):
        treeslim.Report().plot()


def test_search_tries_distilled_students_where_they_can_win():
    from sklearn.ensemble import RandomForestRegressor

    from treeslim.search import search

    rng = np.random.default_rng(0)
    X = rng.normal(size=(1500, 4))
    y = X[:, 0] + 0.5 * X[:, 1] + 0.05 * rng.normal(size=1500)
    rf = RandomForestRegressor(n_estimators=30, min_samples_leaf=2, random_state=0).fit(X, y)
    teacher = treeslim.from_model(rf)
    kw = dict(max_loss=0.02, random_state=0, n_synthetic=1000, verbose=0)
    res = search(teacher, X, y, **kw)
    students = [c for c in res.candidates if c["steps"][0].startswith("distill(")]
    assert students  # the pruned forests are still large: small students are worth a try
    assert all(c["forest"].n_trees <= 100 and c["forest"].max_depth <= 6 for c in students)
    assert res.forest.n_nodes == min(c["nodes"] for c in res.candidates if c["accepted"])
    off = search(teacher, X, y, distill=False, **kw)
    assert not any(c["steps"][0].startswith("distill(") for c in off.candidates)


def test_student_bisection_finds_the_smallest_passing_student_in_few_rounds():
    """The bisection logic over the real student grid of a real teacher: with acceptance falling
    off at a size, it finds the smallest accepted student; when the largest fails it stops after
    one round."""
    from sklearn.ensemble import RandomForestRegressor

    from treeslim.search import SearchResult
    from treeslim.search import _bisect as S
    from treeslim.search._candidate import Candidate

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    rf = RandomForestRegressor(n_estimators=40, max_depth=8, random_state=0).fit(X, X[:, 0])
    teacher = treeslim.from_model(rf)
    plans = S._student_plans(teacher, teacher.n_nodes)
    sizes = [S._student_nodes(teacher, p.n_trees, p.depth) for p in plans]
    assert len(plans) >= 6 and sizes == sorted(sizes, reverse=True)

    class Runner:  # accepts a student when it has at least `need` nodes
        def __init__(self, need):
            self.teacher, self.need, self.rounds, self.tried = teacher, need, 0, []
            self.result = SearchResult(teacher, 0.0, "r2")
            self.result.candidates.append(Candidate(["exact_passes"], teacher, 0.0, accepted=True))

        def __call__(self, round_):
            self.rounds += 1
            out = []
            for p in round_:
                n = S._student_nodes(teacher, p.n_trees, p.depth)
                self.tried.append(n)
                out.append(Candidate([f"distill({n})"], teacher, 0.0, accepted=n >= self.need))
            return out

    for k in range(len(sizes)):
        run = Runner(sizes[k])
        S._bisect_students(run)
        assert min(n for n in run.tried if n >= sizes[k]) == sizes[k]
        assert k == len(sizes) - 1 or sizes[k + 1] in run.tried  # the next smaller one failed
        assert len(run.tried) < len(sizes) and run.rounds <= 4
    run = Runner(sizes[0] + 1)  # even the largest fails: one round, nothing smaller
    S._bisect_students(run)
    assert run.rounds == 1 and sizes[0] in run.tried
