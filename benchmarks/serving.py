"""Serving paths side by side: the same compressed model scored the ways a service can load it.

Paths: treeslim's Python ``CompiledForest`` (the per-query call of a Python service), the compiled
library's C ABI called from a C program (``benchmarks/c/abi_bench.c``: a service not written in
Python; the library of ``treeslim.compile``'s default engine, ``benchmarks/engines.py`` compares
the engines), ONNX Runtime on ``treeslim.to_onnx`` (when onnx and onnxruntime are installed), and the
native library loading the exported model (XGBoost ``inplace_predict``, LightGBM
``Booster.predict``). Every path is checked against ``Forest.predict`` on 2,000 rows with NaN
before it is timed, and marked if it disagrees. One thread everywhere. Measures: one row (p50 /
p99 per call, a different row each call), one query (a call scoring 200 rows, p50), and a batch
(rows/s over 100k rows).

    python benchmarks/serving.py [--quick] [--out benchmarks/results/serving.md]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
from common import machine, print_and_write, serving_rows

import treeslim
from treeslim.measure import measure_single_row

HERE = os.path.dirname(os.path.abspath(__file__))


def train(lib: str, n_trees: int, X: np.ndarray, y: np.ndarray):
    if lib == "xgboost":
        import xgboost as xgb

        return xgb.XGBClassifier(n_estimators=n_trees, max_depth=6, n_jobs=2, random_state=0).fit(
            X, y
        )
    import lightgbm as lgb

    return lgb.LGBMClassifier(
        n_estimators=n_trees, num_leaves=63, n_jobs=2, random_state=0, verbose=-1
    ).fit(X, y)


def p50_of(fn, batches) -> float:
    for b in batches[:5]:
        fn(b)
    times = []
    for b in batches:
        t0 = time.perf_counter_ns()
        fn(b)
        times.append(time.perf_counter_ns() - t0)
    return float(np.percentile(times, 50) / 1e3)


def rows_per_s(fn, X) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn(X)
        best = min(best, time.perf_counter() - t0)
    return len(X) / best


def python_paths(lib, model, forest, compiled):
    """name -> predict(rows) returning probabilities of class 1."""
    paths = {"treeslim CompiledForest (Python)": lambda Z: compiled.predict(Z, nthread=1)}
    if lib == "xgboost":
        booster = treeslim.to_xgboost(forest)
        booster.set_param({"nthread": 1})
        paths["XGBoost inplace_predict (exported)"] = lambda Z: booster.inplace_predict(
            np.atleast_2d(Z)
        )
    else:
        booster = treeslim.to_lightgbm(forest)
        paths["LightGBM Booster.predict (exported)"] = lambda Z: booster.predict(
            np.atleast_2d(Z), num_threads=1
        )
    try:
        import onnxruntime as ort

        proto = treeslim.to_onnx(forest)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, treeslim.TreeSlimError):
        return paths
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    out_name = sess.get_outputs()[-1].name
    paths["ONNX Runtime (to_onnx)"] = lambda Z: sess.run(
        [out_name], {sess.get_inputs()[0].name: np.atleast_2d(Z).astype(np.float32)}
    )[0]
    return paths


def c_abi(compiled, X: np.ndarray, query: int, calls: int, tmp: str) -> dict | None:
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = os.path.join(tmp, "abi_bench")
    src = os.path.join(HERE, "c", "abi_bench.c")
    subprocess.run([cc, "-O2", "-o", exe, src, "-ldl"], check=True)
    lib, _ = compiled.save(tmp, name="model")
    rows = os.path.join(tmp, "rows.f64")
    np.ascontiguousarray(X, dtype=np.float64).tofile(rows)
    run = subprocess.run([exe, str(lib), rows, str(len(X)), str(query), str(calls)],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(run.stdout)


def bench(lib: str, n_trees: int, X, y, X_big, check, query: int, calls: int) -> list[str]:
    model = train(lib, n_trees, X, y)
    forest = treeslim.from_model(model)
    compiled = treeslim.compile(forest, verbose=0, nthread=1)
    want = forest.predict(check)
    name = f"{lib} {n_trees} trees"
    lines = []
    for path, fn in python_paths(lib, model, forest, compiled).items():
        got = np.asarray(fn(check), dtype=np.float64).reshape(len(check), -1)[:, -1]
        ok = np.allclose(got, want, rtol=0, atol=1e-6)
        row = measure_single_row(fn, X_big[:calls], n_calls=calls)
        q50 = p50_of(fn, [X_big[i : i + query] for i in range(0, calls * 2, query)][:100])
        rps = rows_per_s(fn, X_big)
        lines.append(f"| {name} | {path} | {row[0]:.1f} | {row[1]:.1f} | {q50:,.0f} "
                     f"| {q50 / query:.2f} | {rps / 1e3:,.0f}k | {'yes' if ok else 'NO'} |")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        c = c_abi(compiled, X_big, query, calls, tmp)
        if c is not None:
            got = compiled.predict_rowwise(check)
            ok = np.allclose(got, want, rtol=0, atol=1e-6)
            lines.append(
                f"| {name} | C ABI from C (treeslim_predict, {compiled.engine} engine)"
                f" | {c['row_p50_us']:.1f} "
                f"| {c['row_p99_us']:.1f} | {c['query_p50_us']:,.0f} "
                f"| {c['query_p50_us'] / query:.2f} | {c['batch_rows_per_s'] / 1e3:,.0f}k "
                f"| {'yes' if ok else 'NO'} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100-tree models, fewer calls")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "serving.md"))
    args = parser.parse_args()
    X, y, X_big, check, n_trees, calls = serving_rows(args.quick)
    lines = [
        machine() + "; one thread",
        "",
        "| model | path | 1 row p50 µs | 1 row p99 µs | 200-row query µs | µs/row | batch rows/s |"
        " exact |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for lib in ("xgboost", "lightgbm"):
        lines += bench(lib, n_trees, X, y, X_big, check, 200, calls)
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
