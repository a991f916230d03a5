"""Compression benchmark: treeslim.compress against same-size baselines on the real datasets.

For each dataset in ../shared/data (see its README) and each teacher (XGBoost 500 trees depth 6,
LightGBM 500 trees 63 leaves, RandomForest 300 trees): train on the train split, compress on a
calibration split with ``max_loss``, and report on the test split (never seen by the search):
nodes and bytes before/after, test metric before/after, time, and three baselines of the same
size: the first k trees, a random k trees (k = the compressed model's tree count), and a model of
k trees and the teacher's depth trained from scratch.

    python benchmarks/compression.py [--quick] [--data ../shared/data] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import (
    DATASETS,
    categorical_columns,
    cpu_between,
    cpu_seconds,
    default_data_dir,
    load,
    machine,
    split,
    train,
    train_categorical,
)

import treeslim
from treeslim import compress
from treeslim.measure import default_metric, evaluate, format_sizes


def first_k(forest, k: int, random_state=None):
    """The first (or, with a seed, a random) k trees of each output, as a Forest."""
    per = forest.n_outputs if forest.leaf_width == 1 else 1
    groups = np.arange(forest.n_trees) // per
    n_groups = groups.max() + 1
    keep_groups = np.arange(min(n_groups, max(1, k // per)))
    if random_state is not None:
        rng = np.random.default_rng(random_state)
        keep_groups = np.sort(rng.choice(n_groups, size=len(keep_groups), replace=False))
    trees = [forest.tree(t) for t in np.flatnonzero(np.isin(groups, keep_groups))]
    return treeslim.Forest.from_trees(trees, **forest.header())


def score(forest_or_model, X, y, qid, task, metric):
    f = treeslim.from_model(forest_or_model)
    return evaluate(task, y, f.predict(X), qid=qid)[metric]


def run(name: str, path: str, kind: str, quick: bool, max_loss: float) -> dict:
    X, y, qid, task = load(path)
    if quick and len(X) > 20_000:
        keep = np.arange(20_000) if qid is None else np.flatnonzero(qid <= np.unique(qid)[200])
        X, y, qid = X[keep], y[keep], None if qid is None else qid[keep]
    tr, ca, te = split(len(X), qid)

    def q(idx):
        return None if qid is None else qid[idx]

    n_trees = {"rf": 300}.get(kind, 500) // (5 if quick else 1)
    depth = {"rf": 12}.get(kind, 6)
    Xf = (lambda idx: np.nan_to_num(X[idx])) if kind == "rf" else (lambda idx: X[idx])
    cat_idx = categorical_columns(path) if kind.endswith("-cat") else None

    def fit(rounds, lr_scale=1.0):
        if cat_idx is not None:  # a teacher splitting the dataset's categorical columns by category
            return train_categorical(kind[:-4], task, Xf(tr), y[tr], cat_idx, rounds, depth,
                                     lr_scale=lr_scale)  # fmt: skip
        return train(kind, task, Xf(tr), y[tr], q(tr), rounds, depth, lr_scale=lr_scale)

    t0 = time.perf_counter()
    teacher_model = fit(n_trees)
    teacher = treeslim.from_model(teacher_model)
    train_s = time.perf_counter() - t0
    metric = default_metric(task)
    t0, c0 = time.perf_counter(), cpu_seconds()
    slim = compress(
        teacher, Xf(ca), y[ca], qid=q(ca), max_loss=max_loss, random_state=0, n_jobs=2, verbose=0
    )
    comp_s = time.perf_counter() - t0
    comp_cpu = cpu_between(c0, cpu_seconds())
    small = slim.forest_
    print(f"# {name} {kind}: {teacher.n_nodes:,} -> {small.n_nodes:,} nodes in {comp_s:.0f} s",
          flush=True)  # fmt: skip
    # equal size: the most leading trees whose node count does not exceed the compressed model's
    sizes = np.cumsum(np.diff(teacher.tree_offsets))
    k = max(1, int(np.searchsorted(sizes, small.n_nodes, side="right")))
    # from scratch: k trees (k / classes boosting rounds when every class has its own trees),
    # learning rate scaled up by teacher rounds / rounds (capped at 0.5); with the teacher's own
    # rate it would just be the first k trees again
    per = teacher.n_outputs if teacher.leaf_width == 1 else 1
    rounds = max(1, k // per)
    scale = teacher.n_trees / per / rounds if kind != "rf" else 1.0
    scratch = treeslim.from_model(fit(rounds, scale))
    row = {
        "dataset": name,
        "teacher": kind,
        "task": task,
        "metric": metric,
        "nodes_before": teacher.n_nodes,
        "nodes_after": small.n_nodes,
        "trees_before": teacher.n_trees,
        "trees_after": small.n_trees,
        "k_equal_size": k,
        "bytes_before": format_sizes(teacher).get("xgboost_ubj"),
        "bytes_after": format_sizes(small).get("xgboost_ubj"),
        "test_before": score(teacher, Xf(te), y[te], q(te), task, metric),
        "test_after": score(small, Xf(te), y[te], q(te), task, metric),
        "first_k": score(first_k(teacher, k), Xf(te), y[te], q(te), task, metric),
        "random_k": score(first_k(teacher, k, 0), Xf(te), y[te], q(te), task, metric),
        "scratch_k": score(scratch, Xf(te), y[te], q(te), task, metric),
        "scratch_nodes": scratch.n_nodes,
        "compress_s": comp_s,
        "compress_cpu_s": comp_cpu,
        "train_s": train_s,
    }
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=default_data_dir())
    parser.add_argument("--quick", action="store_true", help="small models, 3 datasets, 2 teachers")
    parser.add_argument("--max-loss", type=float, default=0.005)
    parser.add_argument("--out", default=None,
                        help="markdown table, rewritten after every row (default: results/"
                        "compression.md, or compression-quick.md with --quick; a run on a subset"
                        " writes only with --out)")  # fmt: skip
    parser.add_argument("--datasets", default=None, help="comma-separated subset of datasets")
    parser.add_argument("--teachers", default=None,
                        help="comma-separated: xgboost,lightgbm,rf; categorical teachers"
                        " xgboost-cat,lightgbm-cat,hgb-cat run on the datasets with cat_idx")  # fmt: skip
    args = parser.parse_args()
    names = ["credit_default", "california_housing", "mq2008"] if args.quick else DATASETS
    kinds = ["xgboost", "lightgbm"] if args.quick else ["xgboost", "lightgbm", "rf"]
    if args.datasets:
        names = args.datasets.split(",")
    if args.teachers:
        kinds = args.teachers.split(",")
    if args.out is None and not (args.datasets or args.teachers):
        here = os.path.dirname(os.path.abspath(__file__))
        args.out = os.path.join(here, "results",
                                "compression-quick.md" if args.quick else "compression.md")  # fmt: skip
    lines = [
        f"Machine: {machine()}; compress(n_jobs=2).",
        "",
        f"max_loss={args.max_loss}; metric: AUC (binary), accuracy (multiclass), R^2 "
        "(regression), NDCG@10 (ranking); all on the test split.",
        "",
        "| dataset | teacher | nodes before → after (x) | trees after | test before | after |"
        " first-k | random-k | scratch-k | k | compress s | cpu s |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        path = os.path.join(args.data, f"{name}.npz")
        if not os.path.exists(path):
            print(f"skip {name}: {path} not found")
            continue
        cats = ["xgboost-cat", "lightgbm-cat", "hgb-cat"] if categorical_columns(path) else []
        for kind in [*kinds, *(c for c in cats if not args.teachers)]:
            if kind.endswith("-cat") and not categorical_columns(path):
                continue
            r = run(name, path, kind, args.quick, args.max_loss)
            ratio = r["nodes_before"] / max(1, r["nodes_after"])
            lines.append(
                f"| {name} | {kind} | {r['nodes_before']:,} → {r['nodes_after']:,} ({ratio:.1f}x)"
                f" | {r['trees_after']} | {r['test_before']:.4f} | {r['test_after']:.4f} |"
                f" {r['first_k']:.4f} | {r['random_k']:.4f} | {r['scratch_k']:.4f} |"
                f" {r['k_equal_size']} | {r['compress_s']:.0f} | {r['compress_cpu_s']:.0f} |"
            )
            print(lines[-1], flush=True)
            if args.out:
                with open(args.out, "w") as fh:
                    fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
