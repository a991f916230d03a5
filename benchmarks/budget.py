"""Loss budget benchmark: how often the compressed model's loss on *test* data exceeds max_loss.

For each dataset in ../shared/data, each teacher library (XGBoost, LightGBM, RandomForest) and
each seed: draw a sample of ``--rows`` rows (whole queries for ranking), split it 50/25/25 into
train / calibration / test, train the teacher on train, ``treeslim.compress(max_loss=...,
confidence=...)`` on the calibration rows only, and measure the loss (teacher's test metric minus
the compressed model's) on the test rows, which neither saw. Then the same with the calibration
rows cut to 50, 200 and 1,000 rows, at the default budget and at 0.05, to show the small-data
warning and the certificate. Reports the share of runs whose test loss exceeds max_loss (the
promise: at most 1 - confidence), the median node reduction and the time per run.

    python benchmarks/budget.py --quick          # 2 datasets, 1 seed, small samples: minutes
    python benchmarks/budget.py                  # 9 datasets x 3 teachers x 5 seeds: hours
    python benchmarks/budget.py --datasets adult mq2008 --seeds 2 --rows 8000 --trees 150
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np
from common import DATASETS, default_data_dir, load, machine, train

import treeslim
from treeslim.errors import InsufficientDataWarning
from treeslim.measure import HIGHER_IS_BETTER, evaluate

TEACHERS = ("xgboost", "lightgbm", "rf")
SMALL = (50, 200, 1000)


def _first_queries(qid, rows_idx, rows: int, rng) -> np.ndarray:
    """Rows of randomly ordered whole queries of ``rows_idx``, until about ``rows`` rows."""
    q = qid[rows_idx]
    ids, counts = np.unique(q, return_counts=True)
    order = rng.permutation(len(ids))
    n = max(1, int(np.searchsorted(np.cumsum(counts[order]), rows)) + 1)
    return rows_idx[np.isin(q, ids[order[:n]])]


def sample_split(n: int, qid, rows: int, seed: int):
    """Train / calibration / test index arrays (50/25/25) of a sample of about ``rows`` rows,
    whole queries for ranking."""
    rng = np.random.default_rng(seed)
    if qid is None:
        idx = rng.permutation(n)[:rows]
        a, b = len(idx) // 2, 3 * len(idx) // 4
        return np.sort(idx[:a]), np.sort(idx[a:b]), np.sort(idx[b:])
    idx = _first_queries(qid, np.arange(n), rows, rng)
    ids = rng.permutation(np.unique(qid[idx]))
    a, b = len(ids) // 2, 3 * len(ids) // 4
    return [idx[np.isin(qid[idx], p)] for p in (ids[:a], ids[a:b], ids[b:])]


def metric_of(forest, X, y, qid, task, metric):
    return evaluate(task, y, forest.predict(X), qid=qid)[metric]


def one(teacher, X, y, qid, parts, task, max_loss, confidence, seed, cal_rows=None):
    """Compress on the calibration part (cut to ``cal_rows``), judge on the test part."""
    _, ca, te = parts
    if cal_rows is not None:
        rng = np.random.default_rng(seed + 7)
        ca = (np.sort(rng.permutation(ca)[:cal_rows]) if qid is None
              else _first_queries(qid, ca, cal_rows, rng))  # fmt: skip
    q = (lambda i: None) if qid is None else (lambda i: qid[i])
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsufficientDataWarning)
        slim = treeslim.compress(teacher, X[ca], y[ca], qid=q(ca), max_loss=max_loss,
                                 confidence=confidence, random_state=seed, verbose=0,
                                 n_jobs=1)  # fmt: skip
    seconds = time.perf_counter() - t0
    teacher_f, small = slim.teacher_, slim.forest_
    # the promise is about the metric the search certified (an RF on a ranking set is a
    # regressor: R^2, not NDCG)
    metric, task = slim.search_.metric, teacher_f.task
    qt = q(te) if task == "ranking" else None
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    test_loss = sign * (metric_of(teacher_f, X[te], y[te], qt, task, metric)
                        - metric_of(small, X[te], y[te], qt, task, metric))  # fmt: skip
    cert = slim.search_.certificate
    return {
        "cal_rows": len(ca),
        "max_loss": max_loss,
        "nodes_before": teacher_f.n_nodes,
        "nodes_after": small.n_nodes,
        "reduction": teacher_f.n_nodes / max(small.n_nodes, 1),
        "test_loss": float(test_loss),
        "exceeded": bool(test_loss > max_loss),
        "warned": any(issubclass(w.category, InsufficientDataWarning) for w in caught),
        "loss_bound": cert.loss_bound,
        "certified_rows": cert.rows,
        "certified_queries": cert.queries,
        "smallest_budget": cert.smallest_budget,
        "method": cert.method,
        "seconds": seconds,
        "metric": metric,
    }


def summary(paths: list[str]) -> str:
    """Markdown tables of one or more result files: the main runs by dataset, then the small
    calibration sets."""
    rows = [json.loads(line) for p in paths for line in open(p) if line.strip()]
    main_runs = [r for r in rows if not r["small"]]
    lines = ["| dataset | teacher | runs | cal rows | certified on | test loss > max_loss | "
             "median reduction | median test loss | median bound | s / run |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    keys = sorted({(r["dataset"], r["teacher"]) for r in main_runs})
    for d, t in keys:
        rs = [r for r in main_runs if (r["dataset"], r["teacher"]) == (d, t)]
        q = rs[0]["certified_queries"]
        on = f"{rs[0]['certified_rows']:,} rows" + ("" if q is None else f" / {q} queries")
        warned = sum(r["warned"] for r in rs)
        lines.append(
            f"| {d} | {t} | {len(rs)} | {rs[0]['cal_rows']:,} | {on} | "
            f"{sum(r['exceeded'] for r in rs)} | "
            f"{np.median([r['reduction'] for r in rs]):.1f}x"
            + (f" ({warned} warned)" if warned else "")
            + f" | {np.median([r['test_loss'] for r in rs]):+.4f} | "
            f"{np.median([r['loss_bound'] for r in rs]):.4f} | "
            f"{np.median([r['seconds'] for r in rs]):.0f} |"
        )
    n = len(main_runs)
    if n:
        lines.append(
            f"\n**All {n} runs:** test loss above max_loss in "
            f"{sum(r['exceeded'] for r in main_runs)} ({np.mean([r['exceeded'] for r in main_runs]):.1%}); "
            f"median node reduction {np.median([r['reduction'] for r in main_runs]):.1f}x; "
            f"median {np.median([r['seconds'] for r in main_runs]):.0f} s per run; "
            f"{sum(r['warned'] for r in main_runs)} warned that the rows cannot certify the budget."
        )
    small = [r for r in rows if r["small"]]
    if small:
        lines += ["", "| requested cal rows | max_loss | runs | warned | certified on (median rows) | "
                  "smallest budget (median) | test loss > max_loss | median reduction |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for want in SMALL:
            for b in sorted({r["max_loss"] for r in small}):
                rs = [
                    r
                    for r in small
                    if r["max_loss"] == b and abs(r["cal_rows"] - want) <= want * 0.3
                ]
                if not rs:
                    continue
                sb = np.median([r["smallest_budget"] for r in rs])
                lines.append(
                    f"| {want:,} | {b:g} | {len(rs)} | {sum(r['warned'] for r in rs)} | "
                    f"{np.median([r['certified_rows'] for r in rs]):.0f} | "
                    f"{'none but 0' if not np.isfinite(sb) else f'{sb:.3f}'} | "
                    f"{sum(r['exceeded'] for r in rs)} | "
                    f"{np.median([r['reduction'] for r in rs]):.1f}x |"
                )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 datasets, 1 seed, small samples")
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("--datasets", nargs="*", default=None)
    ap.add_argument("--teachers", nargs="*", default=list(TEACHERS))
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rows", type=int, default=20_000, help="rows sampled per run")
    ap.add_argument("--trees", type=int, default=300, help="boosting rounds (RF: 2/3 of it)")
    ap.add_argument("--max-loss", type=float, default=0.005)
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--no-small", action="store_true", help="skip the 50/200/1000-row runs")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results",
                                                  "budget.jsonl"))  # fmt: skip
    ap.add_argument("--summary", nargs="*", default=None, help="print tables of result files")
    args = ap.parse_args()
    if args.summary:
        print(summary(args.summary))
        return
    if args.quick:
        args.datasets = args.datasets or ["adult", "mq2008"]
        args.seeds, args.rows, args.trees = 1, min(args.rows, 12_000), min(args.trees, 100)
    names = args.datasets or DATASETS
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    print(machine(), flush=True)
    with open(args.out, "a") as out:
        for name in names:
            X, y, qid, task = load(os.path.join(args.data, f"{name}.npz"))
            for kind in args.teachers:
                for seed in range(args.seeds):
                    parts = sample_split(len(X), qid, args.rows, seed)
                    tr = parts[0]
                    Xk = np.nan_to_num(X) if kind == "rf" else X
                    n_trees = args.trees * 2 // 3 if kind == "rf" else args.trees
                    depth = 12 if kind == "rf" else 6
                    teacher = train(kind, task, Xk[tr], y[tr], None if qid is None else qid[tr],
                                    n_trees, depth, n_jobs=2)  # fmt: skip
                    runs = [(None, args.max_loss)]
                    if not args.no_small and seed == 0:
                        runs += [(n, b) for n in SMALL for b in (args.max_loss, 0.05)]
                    for cal_rows, budget in runs:
                        row = one(teacher, Xk, y, qid, parts, task, budget, args.confidence,
                                  seed, cal_rows)  # fmt: skip
                        row.update(dataset=name, teacher=kind, seed=seed, task=task,
                                   small=cal_rows is not None)  # fmt: skip
                        out.write(json.dumps(row) + "\n")
                        out.flush()
                        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
