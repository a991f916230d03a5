"""A/B of treeslim's C kernel: a baseline kernel source (e.g. main's) against this tree's, and
pylignum, interleaved in one process on one thread.

Models (500 trees, as benchmarks/latency.py trains them): XGBoost binary depth 6 and LightGBM
binary 63 leaves on ``make_classification(50_000, 50)`` float32, and an XGBoost ranker depth 6 on
``mslr_web_sample`` (136 features). Each engine scores what ``CompiledForest.predict`` scores
(probabilities / scores) from float64 rows, as latency.py feeds them: one row (p50 µs of calls
on different rows), a 200-row query (p50 µs), a 100k-row batch (rows/s, best of 3). Rounds
alternate the engines; the table gives each measure's median over the rounds.

    python benchmarks/kernel_ab.py --baseline /work/main/treeslim/runtime/csrc/forest_kernel.c \
        [--models /tmp/kab] [--rounds 5]

``--models DIR`` reuses xgb.json / lgb.txt / rank.json and X.npy / Xr.npy saved there (training
the three models takes minutes on two cores); without it they are trained and saved to DIR.
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import importlib.util
import os
import subprocess
import time

import numpy as np

import treeslim
from treeslim.backends.tl2cgen._compiled import _link1
from treeslim.ir import apply_postprocessor
from treeslim.runtime import KernelForest
from treeslim.runtime import _kernel as K

QUERY = 200


def train(folder: str) -> None:
    import lightgbm as lgb
    import xgboost as xgb
    from common import ranking_rows
    from sklearn.datasets import make_classification

    os.makedirs(folder, exist_ok=True)
    X, y = make_classification(50_000, 50, n_informative=20, random_state=0)
    X = X.astype(np.float32)
    np.save(os.path.join(folder, "X.npy"), X)
    xgb.XGBClassifier(n_estimators=500, max_depth=6, n_jobs=2, random_state=0).fit(
        X, y).get_booster().save_model(os.path.join(folder, "xgb.json"))  # fmt: skip
    lgb.LGBMClassifier(n_estimators=500, num_leaves=63, n_jobs=2, random_state=0, verbose=-1).fit(
        X, y
    ).booster_.save_model(os.path.join(folder, "lgb.txt"))
    Xr, yr, qid = ranking_rows()
    np.save(os.path.join(folder, "Xr.npy"), Xr)
    xgb.XGBRanker(n_estimators=500, max_depth=6, n_jobs=2, random_state=0).fit(
        Xr, yr, qid=qid).get_booster().save_model(os.path.join(folder, "rank.json"))  # fmt: skip


def load_models(folder: str):
    import lightgbm as lgb
    import xgboost as xgb

    X, Xr = np.load(os.path.join(folder, "X.npy")), np.load(os.path.join(folder, "Xr.npy"))
    out = []
    for label, file, rows in (("XGBoost binary 500x6", "xgb.json", X),
                              ("LightGBM binary 500x63", "lgb.txt", X),
                              ("XGBoost ranker 500x6, 136 f", "rank.json", Xr)):  # fmt: skip
        path = os.path.join(folder, file)
        booster = lgb.Booster(model_file=path) if file.endswith(".txt") else xgb.Booster(
            model_file=path)  # fmt: skip
        out.append((label, path, booster, rows))
    return out


def build_kernel(source: str, extra: list[str]) -> ctypes.CDLL:
    """A kernel library from a source file, with _load_kernel's flags (plus ``extra``)."""
    data = open(source, "rb").read()
    key = hashlib.sha256(data + " ".join(extra).encode()).hexdigest()[:12]
    out = os.path.join("/tmp", f"treeslim-ab-{key}.so")
    if not os.path.exists(out):
        subprocess.run(["gcc", "-O3", "-march=native", "-fPIC", "-shared", "-std=c99", *extra,
                        source, "-o", out, "-lm"], check=True)  # fmt: skip
    return ctypes.CDLL(out)


def kernel_with(lib: ctypes.CDLL | None, forest) -> KernelForest:
    """A KernelForest whose C calls go to ``lib`` (None: this tree's kernel)."""
    kf = KernelForest(forest)
    if lib is None:
        return kf
    kf._pack = None  # the baseline's own batch call
    ref = K.kernel()
    sfx = "float" if kf.dtype == np.float32 else "double"
    for attr, name in (("_margin", "ts_margin"), ("_leaves", "ts_leaves"), ("_rows", "ts_rows"),
                       ("_row1", "ts_row1")):  # fmt: skip
        fn = getattr(lib, f"{name}_{sfx}")
        want = getattr(ref, f"{name}_{sfx}")
        fn.argtypes, fn.restype = want.argtypes, want.restype
        setattr(kf, attr, fn)
    return kf


def treeslim_engine(kf: KernelForest):
    forest = kf.forest

    def predict(Z):
        if Z.shape[0] == 1:  # CompiledForest._one_row
            return np.array([_link1(forest, kf.row_margin(Z.astype(kf.dtype).tobytes()))])
        out = kf.margin_prepared(kf.prepare(Z), 1)
        return apply_postprocessor(forest, out[:, 0] if forest.n_outputs == 1 else out)

    return predict


def one_row(fn, big, calls=2000) -> float:
    rows = [big[i : i + 1] for i in range(calls)]
    for r in rows[:50]:
        fn(r)
    t = []
    for r in rows:
        t0 = time.perf_counter_ns()
        fn(r)
        t.append(time.perf_counter_ns() - t0)
    return float(np.median(t) / 1e3)


def query(fn, big, n=60) -> float:
    batches = [big[i : i + QUERY] for i in range(0, n * QUERY, QUERY)]
    for b in batches[:5]:
        fn(b)
    t = []
    for b in batches:
        t0 = time.perf_counter_ns()
        fn(b)
        t.append(time.perf_counter_ns() - t0)
    return float(np.median(t) / 1e3)


def batch(fn, big) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn(big)
        best = min(best, time.perf_counter() - t0)
    return len(big) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--baseline", help="kernel source to compare against")
    ap.add_argument("--baseline-flags", default="", help="extra gcc flags for the baseline")
    ap.add_argument("--models", default="/tmp/kab")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default="", help="substring of the model labels to run")
    ap.add_argument("--no-lignum", action="store_true")
    ap.add_argument("--variants", action="store_true", help="also this kernel without its pack")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(args.models, "lgb.txt")):
        train(args.models)
    base = build_kernel(args.baseline, args.baseline_flags.split()) if args.baseline else None
    for label, path, booster, X in load_models(args.models):
        if args.only not in label:
            continue
        forest = treeslim.from_model(booster)
        rng = np.random.default_rng(0)
        big = X[rng.integers(0, len(X), 100_000)].astype(np.float64)
        engines = {"treeslim new": treeslim_engine(kernel_with(None, forest))}
        if args.variants:
            nopack = kernel_with(None, forest)
            nopack._pack = None
            engines["treeslim new, ts_margin (no pack)"] = treeslim_engine(nopack)
        if base is not None:
            engines["treeslim baseline"] = treeslim_engine(kernel_with(base, forest))
        if not args.no_lignum and importlib.util.find_spec("lignum"):
            import lignum

            lm = lignum.load(path)
            engines["pylignum interpreter"] = lambda Z, lm=lm: lm.predict(Z, n_jobs=1)
            lc = lignum.load(path)
            lc.compile()
            engines["pylignum compiled"] = lambda Z, lc=lc: lc.predict(Z, n_jobs=1)
        check = big[:1000].copy()
        check[rng.random(check.shape) < 0.05] = np.nan
        ref = engines["treeslim new"](check)
        for name, fn in engines.items():
            got = np.asarray(fn(check)).reshape(ref.shape)
            d = float(np.max(np.abs(got - ref)))
            if d > 1e-6:
                print(f"  ! {name} differs from treeslim new by {d:.2e}")
        res: dict[str, list[tuple[float, float, float]]] = {k: [] for k in engines}
        for _ in range(args.rounds):
            for name, fn in engines.items():
                res[name].append((one_row(fn, big), query(fn, big), batch(fn, big)))
        print(f"\n{label}: median of {args.rounds} rounds, one thread")
        print(f"| engine | 1 row µs | {QUERY}-row query µs (µs/row) | batch rows/s |")
        print("|---|---:|---:|---:|")
        for name, rows in res.items():
            a = np.median(np.array(rows), axis=0)
            print(
                f"| {name} | {a[0]:.1f} | {a[1]:,.0f} ({a[1] / QUERY:.2f}) | {a[2] / 1e3:,.0f}k |"
            )


if __name__ == "__main__":
    main()
