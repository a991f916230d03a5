"""Distillation benchmark: small students distilled from a 500-tree teacher vs trained from scratch.

For every dataset of ``common.DATASETS`` (60/20/20 split, the test split judges) a LightGBM
teacher of 500 trees is trained on the whole training split. Then, in two settings, students of
several sizes (LightGBM boosters 10x7, 30x15, 50x31, one tree of 255 leaves, an MLP of 64) are
fitted twice on the same rows: by :func:`treeslim.distill` (settings chosen on held-out rows of
those rows, see ``treeslim.distillation._choose``; the teacher is passed as its LightGBM
estimator, so the search is cross-fitted where the teacher was trained on about the student's
rows, see ``treeslim.distillation._crossfit``; ``--forest-teacher`` passes the Forest instead)
and from scratch on the labels only:

- **equal**: the student gets the teacher's training split;
- **small**: the student gets 1,000 (and 5,000) random rows of it (whole queries for ranking),
  the compression-time case where the teacher was trained on more data than the user holds.

The table gives both test metrics, their difference, the settings distill chose and the
distillation time; a summary counts, per setting and student, the datasets where distilled beats
scratch and the worst difference. ``--quick`` runs a reduced form (fewer datasets and students,
a training split of at most 4,000 rows for teacher and equal-data students, 1,000-row small
data, at most 5,000 test rows).

    python benchmarks/distillation.py [--quick] [--data DIR] [--datasets a,b] [--students ...]
        [--small 1000,5000] [--no-equal] [--forest-teacher] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from common import DATASETS, default_data_dir, load, machine, split, train

import treeslim
from treeslim.measure import HIGHER_IS_BETTER, default_metric, evaluate

HERE = os.path.dirname(os.path.abspath(__file__))


STUDENTS = [
    ("LightGBM 10x7", "lightgbm", {"n_estimators": 10, "num_leaves": 7}),
    ("LightGBM 30x15", "lightgbm", {"n_estimators": 30, "num_leaves": 15}),
    ("LightGBM 50x31", "lightgbm", {"n_estimators": 50, "num_leaves": 31}),
    ("tree 255 leaves", "tree", {"max_leaf_nodes": 255, "min_samples_leaf": 5}),
    ("MLP 64", "mlp", {"hidden_layer_sizes": (64,), "max_iter": 40}),
]
QUICK_DATASETS = (
    "adult,credit_default,higgs_lgbm_example,california_housing,bike_sharing_hourly,mq2008"
)
QUICK_STUDENTS = "LightGBM 10x7,LightGBM 30x15,tree 255 leaves"


def make(kind: str, params: dict, task: str, distilled: bool):
    """The estimator: a regressor for distillation, else the task's own estimator."""
    clf = task in ("binary", "multiclass") and not distilled
    if kind == "lightgbm":
        import lightgbm as lgb

        lr = min(0.5, 0.1 * np.sqrt(500 / params["n_estimators"]))  # few trees: larger steps
        if task == "multiclass":
            lr = 0.1  # LightGBM's softmax boosting diverges at the larger steps
        kw = dict(params, learning_rate=lr, verbose=-1, n_jobs=1, random_state=0)
        if task == "ranking" and not distilled:
            return lgb.LGBMRanker(**kw)
        return lgb.LGBMClassifier(**kw) if clf else lgb.LGBMRegressor(**kw)
    if kind == "tree":
        from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

        return (DecisionTreeClassifier if clf else DecisionTreeRegressor)(**params, random_state=0)
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    kw = dict(params, early_stopping=True, random_state=0)
    return MLPClassifier(**kw) if clf else MLPRegressor(**kw)


def size(model) -> int:
    return int(model.n_params) if hasattr(model, "n_params") else int(model.n_nodes)


def fidelity(task, s_pred, t_pred, s_margin, t_margin, qid) -> float:
    if task == "binary":
        return float(np.mean((s_pred >= 0.5) == (t_pred >= 0.5)))
    if task == "multiclass":
        return float(np.mean(s_pred.argmax(1) == t_pred.argmax(1)))
    a, b = np.ravel(s_margin).astype(float), np.ravel(t_margin).astype(float)
    if task == "ranking":
        _, code = np.unique(qid, return_inverse=True)
        cnt = np.bincount(code)
        a = a - (np.bincount(code, a) / cnt)[code]
        b = b - (np.bincount(code, b) / cnt)[code]
    return float(1.0 - np.sum((a - b) ** 2) / np.sum((b - b.mean()) ** 2))


def scratch(kind, params, task, X, y, qid, Xte):
    """A student of the same size trained on labels only; predictions like Forest.predict."""
    est = make(kind, params, task, distilled=False)
    if kind == "mlp":
        mean, std = np.nanmean(X, 0), np.nanstd(X, 0)
        std = np.where(std > 0, std, 1.0)  # as distill scales its students' inputs
        Z, Zte = np.nan_to_num((X - mean) / std), np.nan_to_num((Xte - mean) / std)
        if task == "binary":
            return est.fit(Z, y).predict_proba(Zte)[:, 1]
        if task == "multiclass":
            return est.fit(Z, y).predict_proba(Zte)
        # regression and ranking scores: standardized targets, as distill fits its students
        y_mean, y_std = float(np.mean(y)), float(np.std(y)) or 1.0
        return est.fit(Z, (y - y_mean) / y_std).predict(Zte) * y_std + y_mean
    if task == "ranking" and kind == "lightgbm":
        order = np.argsort(qid, kind="stable")
        est.fit(X[order], y[order], group=np.unique(qid[order], return_counts=True)[1])
    else:
        est.fit(X, y)
    return treeslim.from_model(est).predict(Xte)


def subsample(idx, qid, n_rows, seed=0):
    """About ``n_rows`` random rows of ``idx`` (whole queries for ranking), sorted."""
    rng = np.random.default_rng(seed)
    if qid is None:
        return np.sort(rng.permutation(idx)[:n_rows])
    queries = rng.permutation(np.unique(qid[idx]))
    sizes = np.array([np.sum(qid[idx] == q) for q in queries])
    keep = queries[: int(np.searchsorted(np.cumsum(sizes), n_rows)) + 1]
    return idx[np.isin(qid[idx], keep)]


def run_dataset(path: str, args) -> list[dict]:
    name = os.path.basename(path)[:-4]
    X, y, qid, task = load(path)
    tr, _, te = split(len(y), qid)
    if args.quick:  # the teacher too is trained on the reduced training split
        tr = subsample(tr, qid, args.equal_rows)
    if args.quick and len(te) > 5000:
        te = subsample(te, qid, 5000, seed=1)
    t0 = time.perf_counter()
    estimator = train("lightgbm", task, X[tr], y[tr], None if qid is None else qid[tr], 500,
                      depth=5, lr_scale=0.5, n_jobs=1)  # fmt: skip
    teacher = treeslim.from_model(estimator)
    # distill gets the estimator, so it can cross-fit the settings search (refit the teacher
    # without each held-out fold); --forest-teacher gives it the Forest (held-out selection)
    given = teacher if args.forest_teacher else estimator
    t_teacher = time.perf_counter() - t0
    metric = default_metric(task)
    q_te = None if qid is None else qid[te]
    t_metric = evaluate(task, y[te], teacher.predict(X[te]), qid=q_te)[metric]
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    settings = [] if args.no_equal else [("equal", tr)]
    settings += [(f"small {n}", subsample(tr, qid, n)) for n in args.small
                 if n < len(tr)]  # fmt: skip
    chosen = [s for s in STUDENTS if s[0] in args.students.split(",")]
    rows = []
    for setting, idx in settings:
        q = None if qid is None else qid[idx]
        for label, kind, params in chosen:
            Xs = np.nan_to_num(X) if kind == "mlp" else X
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # --forest-teacher: held-out rows
                student = treeslim.distill(
                    given, Xs[idx], y[idx], student=make(kind, params, task, distilled=False),
                    qid=q, random_state=0,
                )  # fmt: skip
            t_distill = time.perf_counter() - t0
            d_metric = evaluate(task, y[te], student.predict(Xs[te]), qid=q_te)[metric]
            sc_metric = evaluate(task, y[te], scratch(kind, params, task, Xs[idx], y[idx], q, Xs[te]),
                                 qid=q_te)[metric]  # fmt: skip
            rep = student.source["distill"]
            pick = (f"{rep['loss']} a={rep['alpha']:g} T={rep['temperature']:g}"
                    f" {rep['augment']} {rep['n_synthetic']}"
                    f" [{rep.get('selection', 'holdout')}]")  # fmt: skip
            rows.append({
                "dataset": name, "task": task, "metric": metric, "setting": setting,
                "teacher_metric": t_metric, "teacher_seconds": t_teacher, "student": label,
                "student_size": size(student), "size_unit": "params" if kind == "mlp" else "nodes",
                "distilled_metric": d_metric, "scratch_metric": sc_metric,
                "gain": sign * (d_metric - sc_metric), "chosen": pick, "seconds": t_distill,
                "n_rows": len(idx), "n_candidates": len(rep["candidates"]),
                "confirmation": rep.get("confirmation"),
            })  # fmt: skip
            print(
                f"{name:18s} {setting:10s} {label:16s} distilled {d_metric:.4f} scratch"
                f" {sc_metric:.4f} teacher {t_metric:.4f} [{pick}] {t_distill:.1f}s",
                flush=True,
            )
    return rows


_RSS_CHILD = r"""
import resource, sys, numpy as np, treeslim
from treeslim.distillation import training_set
teacher = treeslim.load(sys.argv[1]); X = np.load(sys.argv[2])
chunk = int(sys.argv[3])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows, U, _ = training_set(teacher, X, n_synthetic=1_000_000, augment="munge", random_state=0,
                          chunk_size=chunk)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base, peak, rows.nbytes + U.nbytes)
"""


def rss_line(data_dir: str) -> str:
    """Peak RSS of generating + labelling 1M MUNGE rows, in 64k chunks vs one chunk."""
    X, y, qid, task = load(os.path.join(data_dir, "higgs_lgbm_example.npz"))
    teacher = treeslim.from_model(train("lightgbm", task, X, y, qid, 500, depth=5))
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        model, data = os.path.join(tmp, "t.tslim"), os.path.join(tmp, "X.npy")
        treeslim.save(teacher, model)
        np.save(data, X)
        for chunk in (65536, 1_000_000):
            res = subprocess.run(
                [sys.executable, "-c", _RSS_CHILD, model, data, str(chunk)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            base, peak, nbytes = (int(v) for v in res.stdout.split())
            out.append((chunk, base / 1024, peak / 1024, nbytes / 2**20))
    (c1, b1, p1, n1), (c2, _, p2, _) = out
    return (
        f"Peak RSS generating + labelling 1M MUNGE rows (higgs, 28 features, LightGBM 500-tree"
        f" teacher; the output arrays take {n1:.0f} MiB; fresh process, {b1:.0f} MiB after"
        f" imports): {p1:.0f} MiB in {c1:,}-row chunks, {p2:.0f} MiB in one {c2:,}-row chunk."
    )


def summary(rows: list[dict]) -> list[str]:
    """Per setting and student: datasets won by distillation, and the worst difference."""
    out = [
        "| setting | student | distilled better | worst gain | mean gain |",
        "|---|---|---:|---:|---:|",
    ]
    keys = sorted({(r["setting"], r["student"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for setting, student in keys:
        g = np.array(
            [r["gain"] for r in rows if (r["setting"], r["student"]) == (setting, student)]
        )
        out.append(f"| {setting} | {student} | {int((g > 0).sum())} of {len(g)} | {g.min():+.4f} |"
                   f" {g.mean():+.4f} |")  # fmt: skip
    return out


def fmt(rows: list[dict], rss: str, command: str) -> str:
    lines = [
        "# Distillation: distilled student vs the same student trained from scratch",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}. Shared with 3-4 other jobs while it ran: times are indicative.",
        "",
        "Teacher: LightGBM, 500 trees x 31 leaves (per class for multiclass), learning rate 0.05,"
        " trained on the 60% train split. Students get the train split (equal) or a random"
        " 1,000 / 5,000 rows of it (small; whole queries for ranking). Distilled:"
        " `treeslim.distill(teacher, X, y, student=..., random_state=0)` with every setting at"
        " 'auto' (chosen: loss, alpha, temperature, generated rows, their number). Scratch: the same"
        " estimator (classifier / ranker) on the same rows' labels. LightGBM students use a learning"
        " rate of min(0.5, 0.1 sqrt(500 / trees)), 0.1 for multiclass. Metric on the 20% test split."
        " Gain: distilled minus scratch (sign flipped for losses).",
        "",
        *summary(rows),
        "",
        "| setting | dataset | metric | teacher | student | size | rows | distilled | scratch |"
        " gain | chosen (loss alpha T augment n_synthetic [selection]) | time s |",
        "|---|---|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['dataset']} | {r['metric']} | {r['teacher_metric']:.4f} |"
            f" {r['student']} | {r['student_size']:,}{' p' if r['size_unit'] == 'params' else ''} |"
            f" {r['n_rows']:,} | {r['distilled_metric']:.4f} | {r['scratch_metric']:.4f} |"
            f" {r['gain']:+.4f} | {r['chosen']} | {r['seconds']:.1f} |"
        )
    lines += ["", rss, ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="reduced form (see the docstring)")
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("--datasets", default=None)
    ap.add_argument("--students", default=None, help="comma-separated labels of STUDENTS")
    ap.add_argument("--small", default=None, help="small-data sizes, e.g. 1000,5000")
    ap.add_argument("--equal-rows", type=int, default=4000, help="equal-data rows with --quick")
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--no-equal", action="store_true", help="only the small-data settings")
    ap.add_argument(
        "--forest-teacher",
        action="store_true",
        help="give distill the teacher as a Forest (no cross-fitting), as before",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.datasets = args.datasets or (QUICK_DATASETS if args.quick else ",".join(DATASETS))
    args.students = args.students or (QUICK_STUDENTS if args.quick else
                                      ",".join(s[0] for s in STUDENTS))  # fmt: skip
    args.small = [
        int(v) for v in (args.small or ("1000" if args.quick else "1000,5000")).split(",")
    ]
    rows = []
    for name in args.datasets.split(","):
        rows += run_dataset(os.path.join(args.data, name + ".npz"), args)
    rss = "" if args.no_rss or args.quick else rss_line(args.data)
    print("\n".join(summary(rows)))
    default = "distillation-quick.md" if args.quick else "distillation.md"
    out = args.out or os.path.join(HERE, "results", default)
    command = "python benchmarks/distillation.py " + " ".join(sys.argv[1:])
    with open(out, "w") as fh:
        fh.write(fmt(rows, rss, command.strip()))
    with open(out[:-3] + ".json", "w") as fh:
        json.dump(rows, fh, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
