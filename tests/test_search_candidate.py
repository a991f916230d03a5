"""A search candidate keeps its leaf refit only where the judge rows say it helps
(treeslim.search._candidate.build_candidate), so it never scores below the plain selection."""

from __future__ import annotations

import numpy as np
import pytest

import treeslim
from treeslim.passes import exact_passes, prune_nodes, refit_leaves, select_trees
from treeslim.runtime import KernelForest
from treeslim.search._candidate import _REFIT_CG, Plan, build_candidate, score


@pytest.fixture(scope="module")
def regressor():
    import xgboost as xgb

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 5))
    y = X[:, 0] + np.sin(2 * X[:, 1]) + X[:, 2] * X[:, 3] + 0.5 * rng.normal(size=4000)
    m = xgb.XGBRegressor(n_estimators=100, max_depth=6, n_jobs=1).fit(X[:2000], y[:2000])
    return treeslim.from_model(m), X, y


# (fitting rows, trees kept, node fraction, whether the refit should win): many leaves on few
# fitting rows overfit the refit; two trees on many rows gain from it
CASES = [(300, 20, 0.5, False), (2000, 2, None, True)]


@pytest.mark.parametrize(("n_fit", "k", "fraction", "refit_wins"), CASES)
def test_candidate_is_the_better_of_refit_and_plain(regressor, n_fit, k, fraction, refit_wins):
    teacher, X, y = regressor
    X_fit = X[2000 : 2000 + n_fit]
    target = KernelForest(teacher).margin(X_fit)
    judge = (X[3000:], y[3000:], None)
    c = build_candidate(Plan(k, fraction), teacher, X_fit, target, judge, "r2", 0)
    assert c is not None
    # the two variants, built here independently of the search
    f = select_trees(teacher, X_fit, n_trees=k, target_margin=target)
    if fraction is not None:
        f = prune_nodes(f, X_fit, target_margin=target, fraction=fraction)
    plain = score(exact_passes(f), *judge, "r2")
    refit = score(exact_passes(refit_leaves(f, X_fit, target_margin=target, max_cg=_REFIT_CG)),
                  *judge, "r2")  # fmt: skip
    assert (refit > plain) is refit_wins and abs(refit - plain) > 0.01  # the case is decisive
    assert c.score == pytest.approx(max(plain, refit), abs=1e-12)
    assert c.score == pytest.approx(score(c.forest, *judge, "r2"), abs=1e-12)  # the forest's own
    assert ("refit_leaves(target=teacher)" in c.steps) is refit_wins


def test_search_picks_the_variant_likeliest_to_certify(regressor):
    """The search's pick is the lowest judged loss plus ``se_factor`` standard errors, not the
    best score: known answers on candidates whose errors are set, then the wiring through the
    search's worker function with a factor that reverses the score's choice. (Planted bug: the
    worker chose by score; caught.)"""
    from treeslim.search._candidate import Candidate
    from treeslim.search._search import _Boxed, _Budget, _indexed

    teacher, X, y = regressor
    judge = (X[3000:], y[3000:], None)
    ref = teacher.predict(judge[0])
    base = score(teacher, *judge, "r2")
    budget = _Budget(judge, "r2", base, ref, 0.005, 0, se_factor=2.0)
    a = Candidate(["a"], teacher, base - 0.001, loss_se=0.003)  # loss 0.001 + 2 * 0.003
    b = Candidate(["b"], teacher, base - 0.004, loss_se=0.001)  # loss 0.004 + 2 * 0.001
    assert budget.likeliest([a, b]) is b and budget.likeliest([b, a]) is b
    budget.se_factor = 0.5
    assert budget.likeliest([a, b]) is a
    # through the worker: 20 of 100 trees pruned to half, fitted on 300 rows, where the plain
    # variant scores better (test above) and the refit has the larger error
    X_fit = X[2000:2300]
    target = KernelForest(teacher).margin(X_fit)
    budget.se_factor = -1e6  # prefers the larger error: the refit, against the score
    _, c = _indexed(0, Plan(20, 0.5), teacher, X_fit, target, budget, _Boxed(None))
    assert c is not None and "refit_leaves(target=teacher)" in c.steps
    budget.se_factor = 1.0
    _, c = _indexed(0, Plan(20, 0.5), teacher, X_fit, target, budget, _Boxed(None))
    assert c is not None and "refit_leaves(target=teacher)" not in c.steps
