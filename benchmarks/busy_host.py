"""Scoring on a busy host: the default thread count against ``nthread=1``, with every core free
and with every core held by another process (one spinning process per core, as on a server
running several workers per core).

Model: XGBoost 500 trees, depth 6, 50 features (``make_classification``). Calls: one 200-row
query (a ranking service's candidates) and one 10k-row batch through ``CompiledForest.predict``;
p50 over repeated calls. The claim: the default is never much slower than ``nthread=1``.

    python benchmarks/busy_host.py [--out benchmarks/results/busy_host.md]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
from common import machine, print_and_write

import treeslim


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def _p50_us(fn, X, reps: int) -> float:
    for _ in range(5):
        fn(X)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(X)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out", default=os.path.join(os.path.dirname(__file__), "results", "busy_host.md")
    )
    args = parser.parse_args()
    import xgboost as xgb
    from sklearn.datasets import make_classification

    X, y = make_classification(20_000, 50, n_informative=20, random_state=0)
    X = X.astype(np.float32)
    model = xgb.XGBClassifier(n_estimators=500, max_depth=6, n_jobs=2, random_state=0).fit(X, y)
    compiled = treeslim.compile(model, verbose=0)
    rows = X.astype(np.float64)
    lines = [
        machine() + f"; default nthread = {compiled.nthread} (all cores)",
        "",
        "| host | call | default µs | nthread=1 µs | default / nthread=1 |",
        "|---|---|---:|---:|---:|",
    ]
    for host in ("quiet", "busy (every core held)"):
        stop = mp.Event()
        hogs = []
        if host != "quiet":
            hogs = [mp.Process(target=_spin, args=(stop,)) for _ in range(os.cpu_count() or 1)]
            for h in hogs:
                h.start()
            time.sleep(0.5)
        for call, batch, reps in (
            ("200-row query", rows[:200], 300),
            ("10k batch", rows[:10_000], 30),
        ):
            default = _p50_us(lambda Z: compiled.predict(Z), batch, reps)
            single = _p50_us(lambda Z: compiled.predict(Z, nthread=1), batch, reps)
            lines.append(f"| {host} | {call} | {default:,.0f} | {single:,.0f} "
                         f"| {default / single:.2f} |")  # fmt: skip
        stop.set()
        for h in hogs:
            h.join()
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
