"""Scoring latency and throughput: treeslim's CompiledForest against the native runtimes.

One run, the same models and rows for every runtime. Models: XGBoost and LightGBM binary
classifiers with 100 and 500 trees at depth 6 and 8 (LightGBM: 63 / 255 leaves, max_depth 6 / 8)
on ``make_classification(50_000, 50)`` in float32, as in ../shared/ANCHORS.md. For each runtime:
single-row p50 / p99 in microseconds (one Python call per row; "same" repeats one row, "distinct"
scores a different row each call) and batch rows/s on 100k rows at 1 and 2 threads.

    python benchmarks/latency.py [--quick] [--out benchmarks/results/latency.md]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from common import machine

import treeslim
from treeslim.measure import measure_batch, measure_single_row


def train(lib: str, n_trees: int, depth: int, X: np.ndarray, y: np.ndarray):
    if lib == "xgboost":
        import xgboost as xgb

        return xgb.XGBClassifier(
            n_estimators=n_trees, max_depth=depth, n_jobs=2, random_state=0
        ).fit(X, y)
    import lightgbm as lgb

    return lgb.LGBMClassifier(
        n_estimators=n_trees,
        num_leaves=2**depth - 1,
        max_depth=depth,
        n_jobs=2,
        random_state=0,
        verbose=-1,
    ).fit(X, y)


def runtimes(lib, model, compiled, tl2_predictor, nthread):
    """name -> scorer of rows (1-D row or 2-D batch) with ``nthread`` threads, set up once."""
    import tl2cgen

    out = {}
    if lib == "xgboost":
        import xgboost as xgb

        booster = model.get_booster().copy()
        booster.set_param({"nthread": nthread})
        out["xgboost predict(DMatrix)"] = lambda X: booster.predict(
            xgb.DMatrix(np.atleast_2d(X), nthread=nthread)
        )
        out["xgboost inplace_predict"] = lambda X: booster.inplace_predict(np.atleast_2d(X))
    else:
        booster = model.booster_
        out["lightgbm Booster.predict"] = lambda X: booster.predict(
            np.atleast_2d(X), num_threads=nthread
        )
    out["tl2cgen.Predictor"] = lambda X: tl2_predictor[nthread].predict(
        tl2cgen.DMatrix(np.atleast_2d(X))
    )
    out["treeslim CompiledForest"] = lambda X: compiled.predict(X, nthread=nthread)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one small model, fewer calls")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args()

    import tl2cgen
    from sklearn.datasets import make_classification

    X, y = make_classification(50_000, 50, n_informative=20, random_state=0)
    X = X.astype(np.float32)
    Xb = np.ascontiguousarray(np.tile(X, (2, 1))[:100_000])
    rows = np.ascontiguousarray(X[:2000])
    configs = (
        [("xgboost", 100, 6)]
        if args.quick
        else [(lib, n, d) for lib in ("xgboost", "lightgbm") for n in (100, 500) for d in (6, 8)]
    )
    n_calls = 300 if args.quick else 2000
    lines = [
        f"Machine: {machine()}",
        "",
        "| model | runtime | same p50 | same p99 | distinct p50 | distinct p99 | batch 1 thr |"
        " batch 2 thr |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    compile_times = []
    for lib, n_trees, depth in configs:
        model = train(lib, n_trees, depth, X, y)
        forest = treeslim.from_model(model)
        t0 = time.perf_counter()
        compiled = treeslim.compile(forest, cache=False, nthread=2)
        compile_s = time.perf_counter() - t0
        compile_times.append(
            f"{lib} {n_trees} trees depth {depth}: {compile_s:.1f} s ({forest.n_nodes} nodes)"
        )
        tl2_predictor = {n: tl2cgen.Predictor(str(compiled.libpath), nthread=n) for n in (1, 2)}
        label = f"{lib} {n_trees}x{depth}"
        results = {}
        one = runtimes(lib, model, compiled, tl2_predictor, 1)
        two = runtimes(lib, model, compiled, tl2_predictor, 2)
        for name, fn in one.items():
            same = np.repeat(rows[:1], n_calls, axis=0)
            sp50, sp99 = measure_single_row(fn, same, n_calls=n_calls)
            dp50, dp99 = measure_single_row(fn, rows, n_calls=n_calls)
            b1 = measure_batch(fn, Xb, repeat=2)
            b2 = measure_batch(two[name], Xb, repeat=2)
            results[name] = (sp50, sp99, dp50, dp99, b1, b2)
            lines.append(
                f"| {label} | {name} | {sp50:.1f} | {sp99:.1f} | {dp50:.1f} | {dp99:.1f} |"
                f" {b1 / 1e3:,.0f}k | {b2 / 1e3:,.0f}k |"
            )
            print(lines[-1], flush=True)
        ours = results["treeslim CompiledForest"]
        for name, r in results.items():
            if name != "treeslim CompiledForest":
                lines.append(
                    f"| {label} | ratio vs {name} | {r[0] / ours[0]:.1f}x | | {r[2] / ours[2]:.1f}x"
                    f" | | {ours[4] / r[4]:.2f}x | {ours[5] / r[5]:.2f}x |"
                )
    lines += ["", "Compile times (treeslim.compile, 2 threads, cache off):", ""]
    lines += [f"- {c}" for c in compile_times]
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
