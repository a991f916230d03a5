"""A small mutation check of the core: plant each of a list of bugs in a copy of the package, run
the tests that guard that code, and list the mutants no test killed (the survivors).

    python benchmarks/mutations.py [--only NAME ...] [--timeout 600]

Each mutation is (name, file, original text, mutated text, tests). The copy lives in a temporary
folder and is imported through PYTHONPATH, so the working tree is never modified. Exit code 1 when
a mutant survives.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MUTATIONS = [
    ("export writes the teacher", "treeslim/estimators/_trees.py",
     "return to_xgboost(self.forest_, path)", "return to_xgboost(self.teacher_, path)",
     ["tests/test_export.py"]),
    ("refit takes half a step", "treeslim/passes/_refit.py", "eta = 1.0", "eta = 0.5",
     ["tests/test_passes.py"]),
    ("refit ignores the ridge", "treeslim/passes/_refit.py", "l2 * (v[cols] - v0[cols])",
     "0.0 * (v[cols] - v0[cols])", ["tests/test_passes.py"]),
    ("select keeps the last trees", "treeslim/passes/_select.py", "int(i) for i in o[:n_keep]", "int(i) for i in o[-n_keep:]",
     ["tests/test_passes.py"]),
    ("NaN goes right in the reference", "treeslim/ir/_predict.py",
     "self.nan_right = (~forest.default_left)", "self.nan_right = (forest.default_left)",
     ["tests/test_xgboost.py", "tests/test_lightgbm.py"]),
    ("kernel: NaN to the other side", "treeslim/runtime/csrc/forest_kernel.c",
     "((x != x) & !(fd & 1))", "((x != x) & (fd & 1))", ["tests/test_compile.py"]),
    ("kernel row walk drops a tree", "treeslim/runtime/csrc/forest_kernel.c",
     "for (int32_t t = 0; t < n; ++t) ts_add_leaf", "for (int32_t t = 1; t < n; ++t) ts_add_leaf",
     ["tests/test_compile.py"]),
    ("C ABI sigmoid slope", "treeslim/backends/tl2cgen/shim.c", "exp(-(TS_ALPHA) * r[j])",
     "exp(-(TS_ALPHA) * r[j] * 0.999)", ["tests/test_serving.py"]),
    ("XGBoost export drops base_score", "treeslim/backends/_xgboost.py",
     "\"base_score\": base_str", "\"base_score\": \"0\"", ["tests/test_xgboost.py"]),
    ("LightGBM export flips default_left", "treeslim/backends/_lightgbm.py",
     "np.where(forest.default_left[lo:hi][inner], 10, 8)",
     "np.where(~forest.default_left[lo:hi][inner], 10, 8)", ["tests/test_lightgbm.py"]),
    ("ONNX ignores missing direction", "treeslim/backends/_onnx.py",
     "(~leaf & forest.default_left).astype(np.int64)", "(~leaf & ~forest.default_left).astype(np.int64)",
     ["tests/test_onnx.py"]),
    (".tslim drops default_left", "treeslim/formats/_tslim.py", "w.bits(default_left)", "w.bits(~default_left)",
     ["tests/test_tslim.py"]),
    ("exact passes collapse different leaves", "treeslim/passes/_exact.py",
     "k: tuple[Any, ...] = (\"L\", *lv[node].tolist())", "k: tuple[Any, ...] = (\"L\",)",
     ["tests/test_passes.py"]),
    ("quantized thresholds not snapped", "treeslim/passes/_quantize.py", "snapped = _snap(t, grid, col, strict)", "snapped = t",
     ["tests/test_quantize.py"]),
    ("certificate skips the bound", "treeslim/measure/_certify.py", "bound <= max_loss, loss", "bound <= max_loss + 1, loss",
     ["tests/test_certify.py"]),
    ("threads write one range", "treeslim/runtime/_kernel.py", "out[lo:].ctypes.data",
     "out.ctypes.data", ["tests/test_compile.py"]),
]  # fmt: skip


def run_one(name, path, old, new, tests, timeout):
    with tempfile.TemporaryDirectory(prefix="treeslim-mutant-") as tmp:
        shutil.copytree(os.path.join(ROOT, "treeslim"), os.path.join(tmp, "treeslim"),
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        target = os.path.join(tmp, path)
        src = open(target).read()
        if old not in src:
            return "NOT APPLIED (text not found: update the mutation list)"
        with open(target, "w") as fh:
            fh.write(src.replace(old, new, 1))
        env = dict(os.environ, PYTHONPATH=tmp, TREESLIM_CACHE_DIR=os.path.join(tmp, "cache"))
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
               "-o", "addopts=", *[os.path.join(ROOT, t) for t in tests]]  # fmt: skip
        try:
            run = subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True,
                                 timeout=timeout)  # fmt: skip
        except subprocess.TimeoutExpired:
            return "killed (timeout)"
        return "killed" if run.returncode != 0 else "SURVIVED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", nargs="*", help="names (substrings) of mutations to run")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    survivors = 0
    for name, path, old, new, tests in MUTATIONS:
        if args.only and not any(o in name for o in args.only):
            continue
        t0 = time.perf_counter()
        result = run_one(name, path, old, new, tests, args.timeout)
        survivors += result != "killed" and not result.startswith("killed")
        print(f"{result:>10}  {name}  ({time.perf_counter() - t0:.0f} s; {', '.join(tests)})",
              flush=True)  # fmt: skip
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
