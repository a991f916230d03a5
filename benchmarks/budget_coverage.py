"""How often a bound of the paired loss falls below the true loss: the measurement behind the
choice of treeslim's certificate (benchmarks/results/budget.md).

A LightGBM teacher (200 rounds) is trained on a third of a dataset; its first k rounds are the
"compressed" candidate. The other two thirds are the population: the true loss is measured on
all of it, then certification sets of n rows (whole queries for ranking) are drawn from it with
replacement, 200 times, and each rule's bound is compared with the true loss ("miss": bound below
it; a 95% bound should miss at most 5% of the time).

    python benchmarks/budget_coverage.py adult     # AUC; also: mq2008 (NDCG@10), california (R^2)
"""

from __future__ import annotations

import sys

import lightgbm as lgb
import numpy as np
from common import default_data_dir, load
from scipy.stats import t

from treeslim.measure import _certify as C
from treeslim.measure import evaluate


def rules(task, metric, y, q, ref, pred, rng):
    loss, d = C._draws(task, metric, y, q, ref, pred, rng)
    d = d[np.isfinite(d)]
    n = len(np.unique(q)) if q is not None else len(y)
    se = d.std(ddof=1)
    out = {
        "old (loss+1se)": loss + se,
        "z": loss + 1.645 * se,
        "t": loss + t.ppf(0.95, n - 1) * se,
        "percentile": np.quantile(d, 0.95),
    }
    out["max(t,perc)"] = max(out["t"], out["percentile"])
    out["chosen: +floor"] = max(out["max(t,perc)"], -np.log(0.05) / n)
    return out


def run(name, metric, ks, sizes, reps=200):
    X, y, qid, task = load(f"{default_data_dir()}/{name}.npz")
    rng = np.random.default_rng(0)
    if qid is None:
        perm = rng.permutation(len(y))
        tr, pool = perm[: len(y) // 3], perm[len(y) // 3 :]
    else:
        uq = np.unique(qid)
        rng.shuffle(uq)
        inside = np.isin(qid, uq[: len(uq) // 3])
        tr, pool = np.flatnonzero(inside), np.flatnonzero(~inside)
    if task == "ranking":
        counts = np.unique(qid[tr], return_counts=True)[1]
        m = lgb.LGBMRanker(n_estimators=200, verbose=-1).fit(X[tr], y[tr], group=counts)
    elif task == "binary":
        m = lgb.LGBMClassifier(n_estimators=200, verbose=-1).fit(X[tr], y[tr])
    else:
        m = lgb.LGBMRegressor(n_estimators=200, verbose=-1).fit(X[tr], y[tr])

    def predict(k, idx):
        if task == "binary":
            return m.predict_proba(X[idx], num_iteration=k)[:, 1]
        return m.predict(X[idx], num_iteration=k)

    yp, qp = y[pool], (None if qid is None else qid[pool])
    ref_all = predict(200, pool)
    for k in ks:
        cand_all = predict(k, pool)
        true = (evaluate(task, yp, ref_all, qid=qp)[metric]
                - evaluate(task, yp, cand_all, qid=qp)[metric])  # fmt: skip
        for n in sizes:
            hits: dict[str, list[tuple[bool, float]]] = {}
            for _ in range(reps):
                if qp is None:
                    idx, qb = rng.integers(0, len(yp), n), None
                else:
                    pick = rng.choice(np.unique(qp), n, replace=True)
                    rows = [np.flatnonzero(qp == g) for g in pick]
                    idx = np.concatenate(rows)
                    qb = np.repeat(np.arange(n), [len(r) for r in rows])
                out = rules(task, metric, yp[idx], qb, ref_all[idx], cand_all[idx], rng)
                for key, v in out.items():
                    hits.setdefault(key, []).append((v < true, v))
            print(f"{name} k={k} true={true:.4f} n={n}: " + "  ".join(
                f"{key} miss={np.mean([h[0] for h in v]):.3f} med={np.median([h[1] for h in v]):.4f}"
                for key, v in hits.items()), flush=True)  # fmt: skip


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "adult"
    if which == "adult":
        run("adult", "auc", [20, 60], [100, 400, 2000])
    elif which == "mq2008":
        run("mq2008", "ndcg@10", [10, 40], [30, 80, 200])
    elif which == "california":
        run("california_housing", "r2", [60, 120], [100, 400, 2000])
