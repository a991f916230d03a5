"""The loss budget: the certification split, the bound, the fixed-sequence test, the certificate
of compress() and its small-data warning (treeslim.measure._certify, treeslim.search)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import treeslim
from treeslim.data import calibration_split
from treeslim.measure import (
    loss_bound,
    paired_se,
    pass_chance,
    sequence_order,
    smallest_budget,
)
from treeslim.search import search


def _binary(n, seed=0, d=6):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    s = X[:, 0] + 0.8 * X[:, 1] * X[:, 2] + 0.5 * np.sin(3 * X[:, 3]) + 0.6 * rng.normal(size=n)
    return X, (s > 0).astype(int)


@pytest.fixture(scope="module")
def xgb_binary():
    import xgboost as xgb

    X, y = _binary(6000)
    m = xgb.XGBClassifier(n_estimators=60, max_depth=4, n_jobs=1, random_state=0)
    return m.fit(X[:3000], y[:3000]), X[3000:], y[3000:]


def test_calibration_split_sets_whole_queries_aside():
    fit, judge, cert = calibration_split(1000, None, certify=0.4, holdout_fraction=0.3,
                                         random_state=0)  # fmt: skip
    assert not set(cert) & (set(fit) | set(judge)) and not set(fit) & set(judge)
    assert len(fit) + len(judge) + len(cert) == 1000 and 350 < len(cert) < 450
    qid = np.repeat(np.arange(100), 10)
    fit, judge, cert = calibration_split(1000, qid, certify=0.4, holdout_fraction=0.3,
                                         random_state=1)  # fmt: skip
    parts = [set(qid[p]) for p in (fit, judge, cert)]
    assert not parts[2] & (parts[0] | parts[1]) and not parts[0] & parts[1]
    with pytest.raises(ValueError, match="certify must be in"):
        calibration_split(10, None, certify=1.0, holdout_fraction=0.3, random_state=0)


def test_smallest_budget_counts_rows_queries_and_classes():
    y = np.arange(1000) % 2
    assert smallest_budget("auc", y, None, 0.95) == pytest.approx(np.log(20) / 1000)
    assert smallest_budget("auc", y[:20], None, 0.95) == np.inf  # too few rows
    assert smallest_budget("auc", (np.arange(1000) < 5).astype(int), None, 0.95) == np.inf
    qid = np.repeat(np.arange(10), 100)  # 1,000 rows but 10 queries: too few
    assert smallest_budget("ndcg@10", y, qid, 0.95) == np.inf
    qid = np.repeat(np.arange(50), 20)
    assert smallest_budget("ndcg@10", y, qid, 0.95) == pytest.approx(np.log(20) / 50)


def _expected_log_reduction(chain, sizes, chances, original):
    """Brute force: the expected log reduction of certifying ``chain`` in order, stopping at
    the first failure and keeping the smallest passed (independent passes)."""
    total, alive, best = 0.0, 1.0, original
    for i in chain:
        passed = alive * chances[i]
        total += passed * (np.log(original / min(best, sizes[i])) - np.log(original / best))
        best, alive = min(best, sizes[i]), passed
    return total


def test_sequence_order_is_the_best_chain_largest_first():
    rng = np.random.default_rng(0)
    kw = dict(max_loss=0.005, confidence=0.95, margin=1.3)
    for _ in range(60):
        n = int(rng.integers(1, 8))
        sizes = [float(v) for v in rng.choice(np.arange(10, 1000), n, replace=False)]
        losses = rng.uniform(-0.004, 0.004, n)
        ses = rng.choice([0.0, 0.0005, 0.002, 0.006], n)
        chain = sequence_order(sizes, losses, ses, original=2000.0, **kw)
        assert all(sizes[a] > sizes[b] for a, b in itertools.pairwise(chain))
        chances = [pass_chance(lo, se, **kw) for lo, se in zip(losses, ses, strict=True)]
        got = _expected_log_reduction(chain, sizes, chances, 2000.0)
        best = max(
            _expected_log_reduction(sorted(sub, key=lambda i: -sizes[i]), sizes, chances, 2000.0)
            for r in range(n + 1) for sub in itertools.combinations(range(n), r)
        )  # fmt: skip
        assert got == pytest.approx(best, abs=1e-12)


def test_sequence_order_leaves_out_a_proposal_likelier_to_end_the_chain():
    kw = dict(original=200, max_loss=0.005, confidence=0.95, margin=1.645)
    # identical predictions (loss 0, no error) pass for sure: nothing larger is worth the risk
    assert sequence_order([100, 60, 30], [0.0, -0.004, 0.0], [0.0, 0.006, 0.0], **kw) == [2]
    # a noisy large proposal would end the chain about half the time
    assert sequence_order([100, 60, 30], [0.0, -0.004, 0.001], [0.0, 0.006, 0.001], **kw) == [0, 2]
    # the same size paid for (the first element of a tuple): only the likelier one is worth a step
    assert sequence_order([(5, 2), (5, 1)], [0.001, 0.0], [0.001, 0.001], **kw) == [1]
    assert sequence_order([], [], [], **kw) == []


def test_pass_chance():
    kw = dict(max_loss=0.005, confidence=0.95, margin=1.645)
    assert pass_chance(0.0, 0.0, **kw) == 1.0 and pass_chance(0.006, 0.0, **kw) == 0.0
    chances = [pass_chance(0.001, se, **kw) for se in (0.0005, 0.001, 0.002, 0.004)]
    assert chances == sorted(chances, reverse=True) and 0.0 < chances[-1] < 0.5 < chances[0]
    # judged loss at the edge of what certification accepts: a coin flip
    assert pass_chance(0.005 - 1.645 * 0.001, 0.001, **kw) == pytest.approx(0.5)


def test_the_bound_holds_where_one_standard_error_did_not():
    """A candidate whose true AUC loss (0.025) exceeds the budget (0.02), judged on 400 fresh
    rows at a time: the old rule (loss + one bootstrap standard error) accepts it in about one
    draw in six; the certified bound at 95% in at most about one in twenty."""
    rng = np.random.default_rng(0)
    n_pop = 200_000
    y = rng.integers(0, 2, n_pop)
    ref = y + rng.normal(0, 0.9, n_pop)
    cand = ref + rng.normal(0, 0.55, n_pop)  # noisier: loses AUC
    from sklearn.metrics import roc_auc_score

    true = roc_auc_score(y, ref) - roc_auc_score(y, cand)
    budget = true - 0.003
    old = new = 0
    draws = 100
    for i in range(draws):
        idx = rng.integers(0, n_pop, 400)
        loss, bound, method = loss_bound("binary", "auc", y[idx], None, ref[idx], cand[idx],
                                         random_state=i)  # fmt: skip
        se = paired_se("binary", y[idx], None, "auc", ref[idx], cand[idx], i)
        old += loss + se <= budget
        new += bound <= budget
    assert method == "bootstrap over rows"
    assert old / draws >= 0.1  # 15 of 100 here
    assert new / draws <= 0.07  # 4 of 100 here


def test_accuracy_bound_is_exact_and_conservative():
    y = np.zeros(1000, dtype=int)
    ref = np.zeros(1000)  # binary probabilities: all right
    pred = ref.copy()
    pred[:4] = 0.9  # 4 rows only the teacher gets right
    loss, bound, method = loss_bound("binary", "accuracy", y, None, ref, pred)
    from scipy.stats import beta

    assert loss == 0.004 and bound == pytest.approx(beta.ppf(0.95, 5, 996))
    assert method.startswith("exact")


def test_every_candidate_failing_returns_the_exact_passes(xgb_binary):
    """No candidate is both proposed and certified (a budget just above what the rows can
    certify at all): the result is the exact passes, certified by construction."""
    m, X, y = xgb_binary
    teacher = treeslim.from_model(m)
    res = search(teacher, X, y, max_loss=0.0031, random_state=0, verbose=0, distill=False,
                 n_synthetic=1000)  # fmt: skip
    assert len(res.candidates) > 5
    assert not any(c.certificate and c.certificate.certified for c in res.candidates[1:])
    assert res.forest is res.candidates[0].forest and res.candidates[0].chosen
    assert res.certificate.method.startswith("exact passes") and res.certificate.loss_bound == 0
    Z = np.random.default_rng(1).normal(size=(300, X.shape[1]))
    np.testing.assert_allclose(res.forest.predict_margin(Z), teacher.predict_margin(Z),
                               rtol=1e-12)  # fmt: skip


def test_certificate_fields_in_the_result_report_and_cli(xgb_binary, tmp_path, capsys):
    from treeslim.cli import main

    m, X, y = xgb_binary
    slim = treeslim.compress(m, X, y, max_loss=0.01, confidence=0.9, random_state=0,
                             verbose=0, n_synthetic=1000)  # fmt: skip
    cert = slim.search_.certificate
    assert isinstance(cert, treeslim.Certificate)
    assert cert.certified and cert.loss_bound <= 0.01 and cert.confidence == 0.9
    assert cert.max_loss == 0.01 and cert.metric == "auc" and cert.queries is None
    assert 0.35 * len(X) < cert.rows < 0.45 * len(X)  # the rows set aside, and only those
    assert cert.method == "bootstrap over rows" and cert.smallest_budget < 0.01
    assert slim.forest_.n_nodes < slim.teacher_.n_nodes
    chosen = slim.search_.chosen
    assert chosen.certificate is cert and chosen.accepted
    certified = [c for c in slim.search_.candidates if c.certificate and c.certificate.certified]
    assert slim.forest_.n_nodes == min(c.nodes for c in certified)
    entry = slim.report_[1]
    assert entry["loss_bound"] == cert.loss_bound and entry["certified_rows"] == cert.rows
    assert entry["certified"] and entry["confidence"] == 0.9
    with pytest.raises(ValueError, match="'confidence' parameter of SlimClassifier"):
        treeslim.SlimClassifier(m, confidence=1.5).fit(X, y)
    with pytest.raises(ValueError, match="'objective' parameter of SlimClassifier"):
        treeslim.SlimClassifier(m, objective="watts").fit(X, y)

    path, npz = tmp_path / "m.json", tmp_path / "cal.npz"
    m.get_booster().save_model(path)
    np.savez(npz, X=X[:60], y=y[:60])  # too few rows: the exact passes and their certificate
    argv = ["compress", str(path), "--data", str(npz), "--max-loss", "0.01", "--verbose", "0",
            "--objective", "bytes", "-o", str(tmp_path / "small.json")]  # fmt: skip
    with pytest.warns(treeslim.InsufficientDataWarning):
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "certificate: auc loss <= 0 with 95% confidence (budget 0.01: certified" in out
    assert "exact passes" in out and "rows)" in out


def test_small_calibration_sets_warn_and_strict_raises(xgb_binary):
    m, X, y = xgb_binary
    with pytest.warns(treeslim.InsufficientDataWarning, match="can certify no loss budget but 0"):
        slim = treeslim.compress(m, X[:50], y[:50], max_loss=0.005, verbose=0)
    assert slim.forest_.n_nodes == treeslim.exact_passes(slim.teacher_).n_nodes
    assert slim.search_.certificate.loss_bound == 0.0 and len(slim.search_.candidates) == 1
    with pytest.warns(treeslim.InsufficientDataWarning,
                      match=r"loss budget \(auc\) of 0\.00\d+ or more"):  # fmt: skip
        treeslim.compress(m, X[:1000], y[:1000], max_loss=0.005, verbose=0)
    with pytest.raises(treeslim.InsufficientDataError, match=r"max_loss=0\.005 cannot be"):
        treeslim.compress(m, X[:1000], y[:1000], max_loss=0.005, strict=True, verbose=0)


def test_ranking_certifies_by_query():
    """Ranking certifies on whole queries: the certificate counts queries, the bound resamples
    them, and 800 rows in 16 certification queries cannot certify anything."""
    import lightgbm as lgb

    rng = np.random.default_rng(0)
    n_q, per = 200, 10
    X = rng.normal(size=(n_q * per, 5))
    rel = np.digitize(X[:, 0] + 0.5 * X[:, 1] + 0.3 * rng.normal(size=len(X)), [-0.5, 0.7])
    qid = np.repeat(np.arange(n_q), per)
    m = lgb.LGBMRanker(n_estimators=40, num_leaves=15, verbose=-1, random_state=0)
    m.fit(X, rel, group=np.full(n_q, per))
    slim = treeslim.compress(m, X, rel, qid=qid, max_loss=0.1, random_state=0, verbose=0,
                             n_synthetic=500)  # fmt: skip
    cert = slim.search_.certificate
    assert (
        cert.queries is not None and 60 <= cert.queries <= 100 and cert.rows == per * cert.queries
    )
    tested = [c.certificate for c in slim.search_.candidates[1:] if c.certificate]
    assert tested and all(c.method == "bootstrap over queries" for c in tested)
    assert cert.smallest_budget == pytest.approx(np.log(20) / cert.queries)
    few = np.repeat(np.arange(25), 80)  # 2,000 rows, 25 queries: ~10 set aside
    with pytest.warns(treeslim.InsufficientDataWarning, match="no loss budget but 0"):
        treeslim.compress(m, X, rel, qid=few, max_loss=0.1, verbose=0)
