"""Distillation benchmark: small students distilled from a 500-tree teacher vs trained from scratch.

For every dataset of ``common.DATASETS`` (60/20/20 split; the student sees the training split plus
generated rows, the test split judges): a LightGBM teacher of 500 trees, then students of several
sizes (LightGBM boosters, one decision tree, a small MLP), each fitted twice: by
:func:`treeslim.distill` on the teacher's soft targets, and from scratch on the labels only. The
table gives both test metrics, the student's fidelity to the teacher on the test rows (agreement
of the predicted class for classifiers; R^2 against the teacher's scores for regression, centred
within each query for ranking) and the distillation time. A last line measures peak RSS in fresh
subprocesses while 1M rows are generated and labelled in 64k-row chunks vs in one chunk.

    python benchmarks/distillation.py [--quick] [--data DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from common import DATASETS, default_data_dir, load, machine, split, train

import treeslim
from treeslim.measure import default_metric, evaluate

HERE = os.path.dirname(os.path.abspath(__file__))


def students(task: str, quick: bool) -> list[tuple[str, str, dict]]:
    """(label, kind, params): kind lightgbm / tree / mlp."""
    out = [
        ("LightGBM 10x7", "lightgbm", {"n_estimators": 10, "num_leaves": 7}),
        ("LightGBM 30x15", "lightgbm", {"n_estimators": 30, "num_leaves": 15}),
        ("LightGBM 50x31", "lightgbm", {"n_estimators": 50, "num_leaves": 31}),
        ("tree 255 leaves", "tree", {"max_leaf_nodes": 255, "min_samples_leaf": 5}),
        ("MLP 64", "mlp", {"hidden_layer_sizes": (64,), "max_iter": 40}),
    ]
    return out[1:3] + out[3:] if quick else out


def make(kind: str, params: dict, task: str, distilled: bool):
    """The estimator: a regressor for distillation, else the task's own estimator."""
    clf = task in ("binary", "multiclass") and not distilled
    if kind == "lightgbm":
        import lightgbm as lgb

        lr = min(0.5, 0.1 * np.sqrt(500 / params["n_estimators"]))  # few trees: larger steps
        if task == "multiclass":
            lr = 0.1  # LightGBM's softmax boosting diverges at the larger steps
        kw = dict(params, learning_rate=lr, verbose=-1, n_jobs=2, random_state=0)
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
        mean, std = np.nanmean(X, 0), np.nanstd(X, 0) + 1e-12
        Z, Zte = np.nan_to_num((X - mean) / std), np.nan_to_num((Xte - mean) / std)
        est.fit(Z, y)
        from treeslim.nn import from_sklearn

        model = from_sklearn(est)
        if task == "binary":
            return model, est.predict_proba(Zte)[:, 1], None
        if task == "multiclass":
            return model, est.predict_proba(Zte), None
        return model, est.predict(Zte), est.predict(Zte)
    if task == "ranking" and kind == "lightgbm":
        order = np.argsort(qid, kind="stable")
        est.fit(X[order], y[order], group=np.unique(qid[order], return_counts=True)[1])
    else:
        est.fit(np.nan_to_num(X) if kind == "tree" and task == "ranking" else X, y)
    forest = treeslim.from_model(est)
    return forest, forest.predict(Xte), forest.predict_margin(Xte)


def run_dataset(
    path: str, quick: bool, augment: str, temperature: float, alpha: float
) -> list[dict]:
    name = os.path.basename(path)[:-4]
    X, y, qid, task = load(path)
    tr, _, te = split(len(y), qid)
    if quick and len(tr) > 4000:
        pick = np.random.default_rng(0).permutation(np.unique(qid[tr]) if qid is not None else tr)
        tr = np.sort(pick[:4000]) if qid is None else tr[np.isin(qid[tr], pick[:150])]
    q_tr = None if qid is None else qid[tr]
    q_te = None if qid is None else qid[te]
    t0 = time.perf_counter()
    teacher = treeslim.from_model(
        train("lightgbm", task, X[tr], y[tr], q_tr, 500, depth=5, lr_scale=0.5)
    )
    t_teacher = time.perf_counter() - t0
    metric = default_metric(task)
    t_pred = teacher.predict(X[te])
    t_margin = teacher.predict_margin(X[te])
    t_metric = evaluate(task, y[te], t_pred, qid=q_te)[metric]
    n_syn = min(5 * len(tr), 20_000 if quick else 80_000)
    rows = []
    for label, kind, params in students(task, quick):
        Xs = np.nan_to_num(X) if kind == "mlp" else X
        t0 = time.perf_counter()
        student = treeslim.distill(
            teacher, Xs[tr], y[tr], student=make(kind, params, task, distilled=True),
            n_synthetic=n_syn, augment=augment, temperature=temperature, alpha=alpha, qid=q_tr,
            random_state=0,
        )  # fmt: skip
        t_distill = time.perf_counter() - t0
        s_pred = student.predict(Xs[te])
        s_margin = student.predict_margin(Xs[te])
        d_metric = evaluate(task, y[te], s_pred, qid=q_te)[metric]
        _, sc_pred, _ = scratch(kind, params, task, X[tr], y[tr], q_tr, X[te])
        sc_metric = evaluate(task, y[te], sc_pred, qid=q_te)[metric]
        rows.append({
            "dataset": name, "task": task, "metric": metric, "teacher_nodes": teacher.n_nodes,
            "teacher_metric": t_metric, "teacher_seconds": t_teacher, "student": label,
            "student_size": size(student), "size_unit": "params" if kind == "mlp" else "nodes",
            "distilled_metric": d_metric, "scratch_metric": sc_metric,
            "fidelity": fidelity(task, s_pred, t_pred, s_margin, t_margin, q_te),
            "seconds": t_distill, "n_train": len(tr), "n_synthetic": n_syn,
        })  # fmt: skip
        r = rows[-1]
        print(
            f"{name:20s} {label:16s} {r['student_size']:>7d} distilled {d_metric:.4f} scratch"
            f" {sc_metric:.4f} teacher {t_metric:.4f} fid {r['fidelity']:.3f} {t_distill:.1f}s",
            flush=True,
        )
    return rows


_RSS_CHILD = r"""
import resource, sys, numpy as np, treeslim
from treeslim.distill import training_set
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


def fmt(rows: list[dict], rss: str, args) -> str:
    lines = [
        "# Distillation: distilled student vs the same student trained from scratch",
        "",
        f"Machine: {machine()}",
        "",
        f"Teacher: LightGBM, 500 trees x 31 leaves (per class for multiclass), learning rate 0.05,"
        f" trained on the 60% train split. LightGBM students (distilled and scratch alike) use a"
        f" learning rate of min(0.5, 0.1 sqrt(500 / trees)), 0.1 for multiclass (LightGBM's"
        f" softmax boosting diverges at larger steps). Students: `treeslim.distill(augment={args.augment!r},"
        f" temperature={args.temperature}, alpha={args.alpha})` on the train split plus min(5 x train, "
        f"{'20k' if args.quick else '80k'}) generated rows; scratch: the same estimator"
        " (classifier / ranker) on the labels only. Metric on the 20% test split. Fidelity:"
        " agreement of the predicted class (classification), R^2 against the teacher's scores"
        " (regression; centred per query for ranking). Size: nodes (MLP: parameters);"
        " multiclass boosted students have one booster per class. Time: distill() total.",
        "",
        "| dataset | metric | teacher nodes | teacher | student | size | x smaller | distilled |"
        " scratch | fidelity | time s |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        better = "**" if r["distilled_metric"] > r["scratch_metric"] else ""
        sign = -1.0 if r["metric"] in ("rmse", "logloss") else 1.0
        better = "**" if sign * (r["distilled_metric"] - r["scratch_metric"]) > 0 else ""
        lines.append(
            f"| {r['dataset']} | {r['metric']} | {r['teacher_nodes']:,} |"
            f" {r['teacher_metric']:.4f} | {r['student']} | {r['student_size']:,}"
            f"{' p' if r['size_unit'] == 'params' else ''} |"
            f" {r['teacher_nodes'] / r['student_size']:.0f} | {better}{r['distilled_metric']:.4f}"
            f"{better} | {r['scratch_metric']:.4f} | {r['fidelity']:.3f} | {r['seconds']:.1f} |"
        )
    lines += ["", rss, ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4k training rows, fewer students")
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--augment", default="munge")
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--alpha", type=float, default=0.0)
    ap.add_argument("--no-rss", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    for name in args.datasets.split(","):
        rows += run_dataset(os.path.join(args.data, name + ".npz"), args.quick, args.augment,
                            args.temperature, args.alpha)  # fmt: skip
    rss = "" if args.no_rss else rss_line(args.data)
    print(rss)
    default = "distillation-quick.md" if args.quick else "distillation.md"
    out = args.out or os.path.join(HERE, "results", default)
    with open(out, "w") as fh:
        fh.write(fmt(rows, rss, args))
    with open(out[:-3] + ".json", "w") as fh:
        json.dump(rows, fh, indent=1)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
