"""Scale: compress() on 1 vs 2 Dask workers, and peak memory as the calibration set grows.

1. Time of ``treeslim.compress`` for one model and one in-memory calibration set, its candidates
   run by joblib (loky, ``n_jobs`` 1 and 2) and by the joblib Dask backend on a ``LocalCluster``
   of 1 and 2 single-threaded worker processes, with the same ``random_state`` (so the same
   model: checked).
2. Peak memory of ``compress`` on dask-array calibration sets of growing size (default 1e5, 1e6,
   5e6 rows x 20 features), generated chunk by chunk on the workers (never materialised on the
   client): the peak RSS of the client process and the largest peak RSS of a worker, each size in
   a fresh process. The search samples ``max_rows`` rows; the original and compressed models are
   then scored on every row, chunk by chunk, on the workers.

    python benchmarks/scale.py [--quick] [--out benchmarks/results/scale.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from common import machine

N_FEATURES = 20
CHUNK = 250_000


def _labels(block, seed: int = 7):
    """A fixed non-linear rule of the features plus noise: the same for a row in any chunk."""
    w = np.random.default_rng(seed).normal(size=block.shape[1])
    z = block @ w + np.sin(3 * block[:, 0]) * 2 + block[:, 1] * block[:, 2]
    noise = np.sin(block[:, 3] * 1e3)  # deterministic per row, looks like noise
    return (z + noise > 0).astype(np.int32)


def teacher(n_trees: int = 200):
    import xgboost as xgb

    X = np.random.default_rng(0).normal(size=(20_000, N_FEATURES))
    return xgb.XGBClassifier(n_estimators=n_trees, max_depth=6, n_jobs=2, random_state=0).fit(
        X, _labels(X)
    )


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_run(n_rows: int, max_rows: int) -> dict:
    """One size, in this (fresh) process: peak RSS of the client and of the workers."""
    import dask.array as da
    import joblib
    from dask.distributed import Client, LocalCluster

    import treeslim

    model = teacher()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0",
                     memory_limit="6GiB") as cluster,
        Client(cluster) as client,
    ):  # fmt: skip
        X = da.random.RandomState(1).normal(size=(n_rows, N_FEATURES), chunks=(CHUNK, N_FEATURES))
        y = X.map_blocks(_labels, drop_axis=1, dtype=np.int32)
        base = peak_mb()
        t0 = time.perf_counter()
        with joblib.parallel_config(backend="dask"):
            slim = treeslim.compress(model, X, y, max_loss=0.005, random_state=0,
                                     max_rows=max_rows, verbose=0)  # fmt: skip
        secs = time.perf_counter() - t0
        workers = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        full = {e["name"].split(" ")[0]: e["auc"] for e in slim.report_.entries if "rows" in e}
        if not full:  # no more rows than max_rows: the search saw them all, as did the report
            full = {e["name"]: e["auc"] for e in slim.report_.entries[:2]}
    return {
        "rows": n_rows,
        "seconds": secs,
        "client_peak_mb": peak_mb(),
        "client_before_mb": base,
        "worker_peak_mb": max(workers.values()),
        "nodes": slim.forest_.n_nodes,
        "teacher_nodes": slim.teacher_.n_nodes,
        "auc_original": full.get("original"),
        "auc_compressed": full.get("compressed"),
    }


def timing_runs(n_rows: int) -> list[dict]:
    import joblib
    from dask.distributed import Client, LocalCluster

    import treeslim

    model = teacher()
    X = np.random.default_rng(2).normal(size=(n_rows, N_FEATURES))
    y = _labels(X)
    out, ref = [], None
    kw = dict(max_loss=0.005, random_state=0, verbose=0)
    for backend, workers in (("loky", 1), ("loky", 2), ("dask", 1), ("dask", 2)):
        t0 = time.perf_counter()
        if backend == "loky":
            slim = treeslim.compress(model, X, y, n_jobs=workers, **kw)
        else:
            with (
                LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=":0")
                as cluster,
                Client(cluster),
                joblib.parallel_config(backend="dask"),
            ):  # fmt: skip
                t0 = time.perf_counter()  # cluster start-up not counted
                slim = treeslim.compress(model, X, y, **kw)
        secs = time.perf_counter() - t0
        leaves = slim.forest_.leaf_value
        ref = leaves if ref is None else ref
        out.append({"backend": backend, "workers": workers, "seconds": secs,
                    "nodes": slim.forest_.n_nodes,
                    "same_model": bool(np.array_equal(leaves, ref))})  # fmt: skip
        print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1e5 and 1e6 rows only")
    parser.add_argument("--out", default=None)
    parser.add_argument("--max-rows", type=int, default=50_000)
    parser.add_argument("--part", choices=["timing", "memory", "both"], default="both")
    parser.add_argument("--memory-run", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run is not None:
        print(json.dumps(memory_run(args.memory_run, args.max_rows)))
        return
    lines = [f"Machine: {machine()}.", "", "Teacher: XGBoost 200 trees, depth 6, 20 features.", ""]
    runs = timing_runs(20_000 if args.quick else 50_000) if args.part != "memory" else []
    if runs:
        lines += ["| backend | workers | compress s | speed-up | nodes | same model |",
                  "|---|---:|---:|---:|---:|---|"]  # fmt: skip
    base = {r["backend"]: r["seconds"] for r in runs if r["workers"] == 1}
    for r in runs:
        lines.append(f"| {r['backend']} | {r['workers']} | {r['seconds']:.1f} |"
                     f" {base[r['backend']] / r['seconds']:.2f}x | {r['nodes']:,} |"
                     f" {r['same_model']} |")  # fmt: skip
    if args.part != "timing":
        lines += ["", f"Dask-array calibration sets (chunks of {CHUNK:,} rows, 2 workers, the search"
                  f" samples {args.max_rows:,} rows):", "",
                  "| rows | compress s | client peak RSS MB | worker peak RSS MB | nodes |"
                  " AUC original | AUC compressed (all rows) |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    sizes = [100_000, 1_000_000] if args.quick else [100_000, 1_000_000, 5_000_000]
    if args.part == "timing":
        sizes = []
    for n in sizes:
        here = os.path.abspath(__file__)
        proc = subprocess.run([sys.executable, here, "--memory-run", str(n), "--max-rows",
                               str(args.max_rows)], capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        lines.append(f"| {n:,} | {r['seconds']:.1f} | {r['client_peak_mb']:.0f} |"
                     f" {r['worker_peak_mb']:.0f} | {r['nodes']:,} | {r['auc_original']:.4f} |"
                     f" {r['auc_compressed']:.4f} |")  # fmt: skip
        print(lines[-1], flush=True)
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
