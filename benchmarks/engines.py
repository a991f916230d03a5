"""The two engines of a compiled model side by side: TL2cgen's generated C (``engine="tl2cgen"``)
and treeslim's kernel over the model's embedded arrays (``engine="kernel"``, the default, built for
the compiler's default target and, opt-in, ``march="native"``).

Measured interleaved in one process, round after round (the machine may be shared and noisy; each
figure is the median over rounds): compile time with the cache off (the kernel engine both "cold",
its engine object not yet cached, and "warm"); the C ABI called from C (``benchmarks/c/abi_bench.c``:
one row p50 / p99, one 200-row query, rows/s over a 100k batch, one thread); and the Python
``CompiledForest`` on one thread (a TL2cgen library's CompiledForest scores with treeslim's
per-machine kernel, built with ``-march=native``). Every library is checked against
``Forest.predict`` first. Models as in ``serving.py``: 500 trees, XGBoost depth 6, LightGBM 63
leaves, 50 features.

    python benchmarks/engines.py [--quick] [--rounds 3] [--out benchmarks/results/engines.md]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
from common import machine, print_and_write, serving_rows
from serving import c_abi, p50_of, rows_per_s, train

import treeslim
from treeslim.measure import measure_single_row

HERE = os.path.dirname(os.path.abspath(__file__))
BUILDS = {  # name -> compile options
    "tl2cgen": {"engine": "tl2cgen"},
    "kernel": {"engine": "kernel"},
    "kernel, march=native": {"engine": "kernel", "march": "native"},
}


def compile_seconds(forest, options: dict, cold: bool) -> float:
    """One compile with the cache off, in a fresh cache folder when ``cold`` (for the kernel
    engine: its engine object is compiled too)."""
    old = os.environ.get("TREESLIM_CACHE_DIR")
    tmp = tempfile.mkdtemp(prefix="treeslim-bench-cache-") if cold else None
    if tmp:
        os.environ["TREESLIM_CACHE_DIR"] = tmp
    try:
        t0 = time.perf_counter()
        treeslim.compile(forest, cache=False, verbose=0, **options)
        return time.perf_counter() - t0
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is None:
                del os.environ["TREESLIM_CACHE_DIR"]
            else:
                os.environ["TREESLIM_CACHE_DIR"] = old


def median(values: list[float]) -> float:
    return float(np.median(values))


def bench(lib: str, n_trees: int, X, y, X_big, check, rounds: int, calls: int) -> list[str]:
    forest = treeslim.from_model(train(lib, n_trees, X, y))
    name = f"{lib} {n_trees} trees"
    compiled = {b: treeslim.compile(forest, verbose=0, nthread=1, **o) for b, o in BUILDS.items()}
    want = forest.predict(check)
    exact = {}
    for b, c in compiled.items():
        exact[b] = np.allclose(c.predict_rowwise(check), want, rtol=0, atol=1e-6) and np.allclose(
            c.predict(check), want, rtol=0, atol=1e-6
        )
    times: dict[str, list[float]] = {}
    c_runs: dict[str, list[dict]] = {b: [] for b in BUILDS}
    py_runs: dict[str, list[tuple[float, float, float, float]]] = {"tl2cgen": [], "kernel": []}
    queries = [X_big[i : i + 200] for i in range(0, calls * 2, 200)][:100]
    for r in range(rounds):
        order = list(BUILDS) if r % 2 == 0 else list(BUILDS)[::-1]
        for b in order:  # compile (cache off)
            opts = BUILDS[b]
            if opts["engine"] == "kernel":
                times.setdefault(f"{b} (cold)", []).append(compile_seconds(forest, opts, True))
                times.setdefault(f"{b} (warm)", []).append(compile_seconds(forest, opts, False))
            else:
                times.setdefault(b, []).append(compile_seconds(forest, opts, False))
        for b in order:  # the C ABI from C
            with tempfile.TemporaryDirectory() as tmp:
                res = c_abi(compiled[b], X_big, 200, calls, tmp)
            if res is not None:
                c_runs[b].append(res)
        for b in order:  # CompiledForest from Python
            if b not in py_runs:
                continue
            c = compiled[b]
            fn = lambda Z, c=c: c.predict(Z, nthread=1)  # noqa: E731
            row = measure_single_row(fn, X_big[:calls], n_calls=calls)
            py_runs[b].append((row[0], row[1], p50_of(fn, queries), rows_per_s(fn, X_big)))
    lines = [f"| {name} | compile (cache off), {b} | {median(v):.2f} s | | | | |"
             for b, v in times.items()]  # fmt: skip
    for b, runs in c_runs.items():
        if not runs:
            continue
        row50 = median([x["row_p50_us"] for x in runs])
        row99 = median([x["row_p99_us"] for x in runs])
        q50 = median([x["query_p50_us"] for x in runs])
        rps = median([x["batch_rows_per_s"] for x in runs])
        lines.append(f"| {name} | C ABI from C, {b} | {row50:.1f} µs | {row99:.1f} µs "
                     f"| {q50:,.0f} µs | {rps / 1e3:,.0f}k | {'yes' if exact[b] else 'NO'} |")  # fmt: skip
    for b, runs in py_runs.items():
        a = np.median(np.array(runs), axis=0)
        lines.append(f"| {name} | CompiledForest (Python), {b} | {a[0]:.1f} µs | {a[1]:.1f} µs "
                     f"| {a[2]:,.0f} µs | {a[3] / 1e3:,.0f}k | {'yes' if exact[b] else 'NO'} |")  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100-tree models, fewer calls")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "engines.md"))
    args = parser.parse_args()
    X, y, X_big, check, n_trees, calls = serving_rows(args.quick)
    lines = [
        machine() + f"; one thread; median of {args.rounds} interleaved rounds",
        "",
        "| model | what | time / 1 row p50 | 1 row p99 | 200-row query | batch rows/s | exact |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for lib in ("xgboost", "lightgbm"):
        lines += bench(lib, n_trees, X, y, X_big, check, args.rounds, calls)
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
