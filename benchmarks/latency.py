"""Scoring engines side by side: treeslim against the strongest exact engines a user would pick.

Models (500 trees, as in ../shared/ANCHORS.md): XGBoost binary (depth 6) and LightGBM binary
(63 leaves) on ``make_classification(50_000, 50)``, and an XGBoost ranker (depth 6) on
``mslr_web_sample`` (136 features; synthetic rows of that width when the data is absent).

Engines, all in this process and this run: treeslim ``CompiledForest`` (Python) and the compiled
library's C ABI called from C (``benchmarks/c/abi_bench.c``); the native library (XGBoost
``inplace_predict``, LightGBM ``Booster.predict``); pylignum (interpreter and compiled trees);
oneDAL through daal4py; lleaves (LightGBM); ONNX Runtime on ``treeslim.to_onnx``. A missing
package is skipped and named. Before timing, every engine's predictions are compared with the
native library's own predictions on 2,000 rows with NaN and values at split thresholds: "bit-identical", "exact"
(within 1e-6, relative for scores above 1) or "WRONG" (max difference shown).

Measures: one row (p50 µs per call, a different row each call), one query (p50 µs of a call
scoring 200 rows; also µs per row), and a batch (rows/s over 100k rows, best of 3), at 1 and 2
threads where the engine takes a thread count.

    python benchmarks/latency.py [--quick] [--out benchmarks/results/latency.md]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
from common import machine, ranking_rows

import treeslim
from treeslim.measure import measure_single_row

HERE = os.path.dirname(os.path.abspath(__file__))
QUERY = 200
SKIPPED: list[str] = []  # peers that could not run, and why


def models(quick: bool):
    """(label, native model, native library, float32 training-like rows) for each benchmark."""
    import lightgbm as lgb
    import xgboost as xgb
    from sklearn.datasets import make_classification

    n_trees = 100 if quick else 500
    X, y = make_classification(50_000, 50, n_informative=20, random_state=0)
    X = X.astype(np.float32)
    out = [
        (f"XGBoost binary {n_trees}x6", xgb.XGBClassifier(n_estimators=n_trees, max_depth=6,
                                                          n_jobs=2, random_state=0).fit(X, y),
         "xgboost", X),
        (f"LightGBM binary {n_trees}x63 leaves", lgb.LGBMClassifier(
            n_estimators=n_trees, num_leaves=63, n_jobs=2, random_state=0, verbose=-1).fit(X, y),
         "lightgbm", X),
    ]  # fmt: skip
    if quick:
        return out
    Xr, yr, qid = ranking_rows()
    ranker = xgb.XGBRanker(n_estimators=n_trees, max_depth=6, n_jobs=2, random_state=0)
    out.append((f"XGBoost ranker {n_trees}x6, 136 features", ranker.fit(Xr, yr, qid=qid),
                "xgboost", Xr))  # fmt: skip
    return out


def adversarial(forest, X: np.ndarray, n: int = 2000) -> np.ndarray:
    """Rows of X with NaN and split thresholds planted (no inf: XGBoost refuses it)."""
    rng = np.random.default_rng(1)
    R = X[rng.integers(0, len(X), n)].astype(np.float64)
    R[rng.random(R.shape) < 0.05] = np.nan
    inner = forest.split_index >= 0
    for j in range(R.shape[1]):
        t = forest.threshold[inner & (forest.split_index == j)]
        if t.size:
            m = rng.random(n) < 0.2
            R[m, j] = rng.choice(t.astype(np.float32), int(m.sum()))
    return R


def engines(name, model, lib, forest, compiled, tmp):
    """engine -> (predict(rows, nthread) -> predictions of class 1 / scores, takes threads?)."""
    out = {}
    out["treeslim CompiledForest"] = (lambda Z, t: compiled.predict(Z, nthread=t), True)
    if lib == "xgboost":
        booster = model.get_booster()
        per_thread = {t: booster.copy() for t in (1, 2)}  # set_param per call would be timed
        for t, b in per_thread.items():
            b.set_param({"nthread": t})
        out["XGBoost inplace_predict"] = (
            lambda Z, t: per_thread[t].inplace_predict(np.atleast_2d(Z).astype(np.float32)), True)  # fmt: skip
        path = os.path.join(tmp, "model.json")
        booster.save_model(path)
    else:
        booster = model.booster_
        out["LightGBM Booster.predict"] = (
            lambda Z, t: booster.predict(np.atleast_2d(Z), num_threads=t), True)  # fmt: skip
        path = os.path.join(tmp, "model.txt")
        booster.save_model(path)
    if importlib.util.find_spec("lignum"):
        import lignum

        interp = lignum.load(path)
        out["pylignum interpreter"] = (lambda Z, t: interp.predict(np.atleast_2d(Z), n_jobs=t),
                                       True)  # fmt: skip
        comp = lignum.load(path)
        comp.compile()
        out["pylignum compiled"] = (lambda Z, t: comp.predict(np.atleast_2d(Z), n_jobs=t), True)
    if importlib.util.find_spec("daal4py"):
        import daal4py

        try:  # daal4py 2024.7 cannot read XGBoost >= 3's configuration (base_score as a list)
            dmodel = daal4py.mb.convert_model(booster)
        except (ValueError, TypeError) as exc:
            SKIPPED.append(
                f"oneDAL (daal4py {importlib.metadata.version('daal4py')}) on {name}: {exc}"
            )
        else:
            classifier = forest.task in ("binary", "multiclass")

            def dal(Z, t):
                daal4py.daalinit(t)
                Z = np.atleast_2d(Z)
                return dmodel.predict_proba(Z)[:, 1] if classifier else dmodel.predict(Z)

            out["oneDAL (daal4py)"] = (dal, True)
    if lib == "lightgbm" and importlib.util.find_spec("lleaves"):
        import lleaves

        ll = lleaves.Model(model_file=path)
        try:  # lleaves 1.3 needs an llvmlite older than the one pip may resolve
            ll.compile(cache=os.path.join(tmp, "lleaves.so"))
        except (AttributeError, ImportError, RuntimeError) as exc:
            SKIPPED.append(f"lleaves on {name}: {type(exc).__name__}: {exc}")
        else:
            out["lleaves"] = (lambda Z, t: ll.predict(np.atleast_2d(Z), n_jobs=t), True)
    if importlib.util.find_spec("onnxruntime") and importlib.util.find_spec("onnx"):
        import onnxruntime as ort

        sessions = {}
        proto = treeslim.to_onnx(forest).SerializeToString()
        for t in (1, 2):
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = t
            opts.inter_op_num_threads = 1
            sessions[t] = ort.InferenceSession(proto, opts, providers=["CPUExecutionProvider"])
        out["ONNX Runtime (to_onnx)"] = (
            lambda Z, t: sessions[t].run(["prediction"],
                                         {"X": np.atleast_2d(Z).astype(np.float32)})[0], True)  # fmt: skip
    return out


def native_predict(model, lib, X):
    """The training library's own predictions (probability of class 1, or scores)."""
    if lib == "xgboost":
        X = X.astype(np.float32)
    return model.predict_proba(X)[:, 1] if hasattr(model, "predict_proba") else model.predict(X)


def verdict(got, want) -> str:
    got = np.asarray(got, dtype=np.float64).reshape(len(want), -1)[:, -1]
    if np.array_equal(got, want):
        return "bit-identical"
    d = float(np.nanmax(np.abs(got - want)))
    scale = max(1.0, float(np.nanmax(np.abs(want))))  # raw scores: float32 rounding is relative
    return f"exact ({d:.0e})" if d <= 1e-6 * scale else f"WRONG ({d:.1e})"


def p50_query(fn, X, t) -> float:
    batches = [X[i : i + QUERY] for i in range(0, 60 * QUERY, QUERY)]
    for b in batches[:5]:
        fn(b, t)
    times = []
    for b in batches:
        t0 = time.perf_counter_ns()
        fn(b, t)
        times.append(time.perf_counter_ns() - t0)
    return float(np.percentile(times, 50) / 1e3)


def rows_per_s(fn, X, t) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn(X, t)
        best = min(best, time.perf_counter() - t0)
    return len(X) / best


def c_abi(compiled, X, tmp, calls):
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        return None
    exe = os.path.join(tmp, "abi_bench")
    subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "c", "abi_bench.c"), "-ldl"],
                   check=True)  # fmt: skip
    lib, _ = compiled.save(tmp, name="model")
    rows = os.path.join(tmp, "rows.f64")
    np.ascontiguousarray(X, dtype=np.float64).tofile(rows)
    run = subprocess.run([exe, str(lib), rows, str(len(X)), str(QUERY), str(calls)],
                         check=True, capture_output=True, text=True)  # fmt: skip
    return json.loads(run.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="100-tree models, two models")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args()
    calls = 500 if args.quick else 2000
    lines = [
        f"Machine: {machine()}",
        "",
        "| model | engine | exact? | 1 row p50 µs | 200-row query µs (µs/row) | batch rows/s"
        " 1 thr | query µs 2 thr | batch rows/s 2 thr |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    compile_times = []
    for label, model, lib, X in models(args.quick):
        forest = treeslim.from_model(model)
        t0 = time.perf_counter()
        compiled = treeslim.compile(forest, cache=False, verbose=0)
        compile_times.append(
            f"{label}: treeslim.compile {time.perf_counter() - t0:.1f} s"
            " (cache off; the model-independent kernel object already built)"
        )
        rng = np.random.default_rng(0)
        big = X[rng.integers(0, len(X), 100_000)].astype(np.float64)
        check = adversarial(forest, X)
        want = native_predict(model, lib, check)
        with tempfile.TemporaryDirectory() as tmp:
            for name, (fn, _threads) in engines(label, model, lib, forest, compiled, tmp).items():
                exact = verdict(fn(check, 1), want)
                row = measure_single_row(lambda r, fn=fn: fn(r, 1), big[:calls], n_calls=calls)[0]
                q1, q2 = p50_query(fn, big, 1), p50_query(fn, big, 2)
                b1, b2 = rows_per_s(fn, big, 1), rows_per_s(fn, big, 2)
                lines.append(f"| {label} | {name} | {exact} | {row:.1f} | {q1:,.0f} "
                             f"({q1 / QUERY:.2f}) | {b1 / 1e3:,.0f}k | {q2:,.0f} "
                             f"| {b2 / 1e3:,.0f}k |")  # fmt: skip
                print(lines[-1], flush=True)
            native = treeslim.compile(forest, cache=False, verbose=0, march="native")
            for lib_, what in ((compiled, "portable target"), (native, "march=native")):
                c = c_abi(lib_, big, tmp, calls)
                if c is None:
                    continue
                exact = verdict(lib_.predict_rowwise(check), want)
                lines.append(f"| {label} | treeslim C ABI from C (kernel library, {what}) "
                             f"| {exact} | {c['row_p50_us']:.1f} | {c['query_p50_us']:,.0f} "
                             f"({c['query_p50_us'] / QUERY:.2f}) "
                             f"| {c['batch_rows_per_s'] / 1e3:,.0f}k | - | - |")  # fmt: skip
                print(lines[-1], flush=True)
    lines += ["", *[f"- {c}" for c in compile_times], *[f"- skipped: {m}" for m in SKIPPED]]
    text = "\n".join(lines)
    print(text)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
