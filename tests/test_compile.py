"""Compiled models and the batch kernel, tested against the reference predictor and against the
native library itself (XGBoost, LightGBM, scikit-learn) on adversarial rows."""

from __future__ import annotations

import itertools
import os
import re
import threading

import numpy as np
import pytest
from models import ALL, model
from oracle import (
    as_f32,
    assert_close,
    has_native_margin,
    native_predict,
    native_rows,
    oracle_rows,
)

import treeslim
from treeslim._utils import float32_thresholds
from treeslim.backends.tl2cgen import CompiledForest
from treeslim.ir import leaf_nodes
from treeslim.runtime import CompilerError, KernelForest

ENGINES = ["kernel", "tl2cgen"]


def _compiled(cache, lib, task, engine="kernel"):
    if (lib, task, engine) not in cache:
        forest = treeslim.from_model(model(lib, task)[0])
        compiled = treeslim.compile(forest, nthread=2, engine=engine, verbose=0)
        assert compiled.engine == engine
        cache[(lib, task, engine)] = (forest, compiled)
    return cache[(lib, task, engine)]


@pytest.mark.parametrize(("lib", "task"), ALL)
def test_kernel_equals_reference(lib, task):
    forest = treeslim.from_model(model(lib, task)[0])
    X = oracle_rows(forest, 500, seed=7)
    kf = KernelForest(forest)
    np.testing.assert_array_equal(kf.leaves(X), leaf_nodes(forest, X))
    ref = forest.predict_margin(X)
    got = kf.margin(X, nthread=2)
    assert_close(got[:, 0] if ref.ndim == 1 else got, ref, what=f"{lib} {task}")
    # the one-row walk (trees eight at a time, by depth) sums exactly what the blocked kernel sums
    Xc = kf.prepare(X)
    blocked = kf.raw_sum(Xc)
    np.testing.assert_array_equal(kf.rows_raw_sum(Xc), blocked)
    if kf.single_output:
        rows = [kf.row_raw_sum(Xc[i].tobytes()) for i in range(len(Xc))]
        np.testing.assert_array_equal(rows, blocked[:, 0])
    for n in (1, 5, 8, 9, 17):  # both sides of the small-batch switch
        np.testing.assert_array_equal(kf.margin(X[:n]), kf.margin(X)[:n])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("lib", "task"), ALL)
def test_compiled_equals_reference(compiled_cache, lib, task, engine):
    forest, compiled = _compiled(compiled_cache, lib, task, engine)
    X = oracle_rows(forest, 400, seed=8)
    prob = forest.postprocessor in ("sigmoid", "softmax")
    assert_close(compiled.predict(X), forest.predict(X), prob=prob, what="batch")
    assert_close(compiled.predict_margin(X), forest.predict_margin(X), what="batch margin")
    assert_close(compiled.predict_rowwise(X, margin=True), forest.predict_margin(X), what="rows")
    for n in (2, 3):  # small batches go row by row, larger ones through the kernel
        assert_close(compiled.predict(X[:n]), forest.predict(X[:n]), prob=prob, what=f"{n} rows")
    for i in range(40):  # the single-row path, float64 and float32, 1-D and (1, d)
        expect = forest.predict(X[i : i + 1])
        assert_close(compiled.predict(X[i]), expect, prob=prob, what=f"row {i}")
        assert_close(compiled.predict(X[i : i + 1]), expect, prob=prob, what=f"row {i} 2-D")
        if forest.feature_dtype == "float32":
            assert_close(compiled.predict(as_f32(X[i])), expect, prob=prob, what=f"row {i} f32")


@pytest.mark.parametrize(("lib", "task"), [("xgboost", "binary"), ("lightgbm", "regression")])
def test_without_the_kernel_tl2cgen_scores_the_same(compiled_cache, lib, task):
    forest, compiled = _compiled(compiled_cache, lib, task, "tl2cgen")
    plain = CompiledForest(forest, compiled.libpath)
    plain._no_kernel = True  # a serving host without a C compiler
    X = oracle_rows(forest, 200, seed=12)
    prob = forest.postprocessor == "sigmoid"
    assert_close(plain.predict(X), compiled.predict(X), prob=prob)
    for i in range(30):
        assert_close(plain.predict(X[i]), compiled.predict(X[i]), prob=prob, what=f"row {i}")
    assert plain._kernel is None


@pytest.mark.parametrize("engine", ENGINES)
def test_single_row_link_overflow(compiled_cache, engine):
    forest, _ = _compiled(compiled_cache, "xgboost", "regression")
    for post in ("sigmoid", "exponential"):
        big = forest.replace(postprocessor=post, base_score=forest.base_score + 800.0)
        compiled = treeslim.compile(big, verbose=0, engine=engine)
        X = oracle_rows(big, 20, seed=3)
        for i in range(len(X)):
            assert_close(compiled.predict(X[i]), big.predict(X[i : i + 1]), prob=post == "sigmoid")
        assert_close(compiled.predict_rowwise(X), big.predict(X), prob=post == "sigmoid")


# sklearn's finiteness check sums rows of +-3e38 entries and warns about the inf - inf it meets
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("lib", "task"), ALL)
def test_compiled_equals_native_library(compiled_cache, lib, task, engine):
    """Both paths of a compiled model (batch and the single-row C function) against the
    library that trained the model, on rows at thresholds, their neighbours, NaN and +-inf."""
    native = model(lib, task)[0]
    forest, compiled = _compiled(compiled_cache, lib, task, engine)
    X = native_rows(native, oracle_rows(forest, 300, seed=11))
    prob = forest.postprocessor in ("sigmoid", "softmax")
    expect = native_predict(native, X)
    what = f"{lib} {task}"
    assert_close(compiled.predict(X), expect, prob=prob, what=f"{what} batch")
    assert_close(compiled.predict_rowwise(X), expect, prob=prob, what=f"{what} rowwise")
    if has_native_margin(native):
        margin = native_predict(native, X, margin=True)
        assert_close(compiled.predict_margin(X), margin, what=f"{what} batch margin")
        assert_close(compiled.predict_margin(X[5]), margin[5:6], what=f"{what} row margin")
    for i in range(0, len(X), 5):  # the single-row path, float64 and (float32 models) float32
        assert_close(compiled.predict(X[i]), expect[i : i + 1], prob=prob, what=f"{what} row {i}")
        if forest.feature_dtype == "float32":
            got = compiled.predict(as_f32(X[i]))
            assert_close(got, expect[i : i + 1], prob=prob, what=f"{what} f32 row {i}")
    if lib in ("xgboost", "lightgbm", "sklearn-hgb"):  # the traps reached the library
        assert np.isnan(X).any() and np.isinf(X).any()


WIDE_ROW_SCRIPT = """
import sys, threading
import numpy as np
import treeslim
from treeslim.backends.tl2cgen import CompiledForest

forest = treeslim.load(sys.argv[1])
compiled = CompiledForest(forest, sys.argv[2])
x = np.linspace(-2.0, 2.0, forest.num_feature)
out = []
threading.stack_size(256 * 1024)
worker = threading.Thread(target=lambda: out.append(
    (compiled.predict(x), compiled.predict_rowwise(np.stack([x, -x])))))
worker.start()
worker.join()
np.testing.assert_allclose(out[0][0], forest.predict(x[None]), rtol=1e-6)
np.testing.assert_allclose(out[0][1], forest.predict(np.stack([x, -x])), rtol=1e-6)
print("ok")
"""


def test_wide_rows_fit_a_small_thread_stack(compiled_cache, tmp_path):
    """The row functions keep a row's entries on the C stack; a row wider than a thread's stack
    (65,536 doubles, 512 KB, in a thread of 256 KB) takes a heap buffer instead of crashing the
    process. Run in a child process, so a crash is a failure, not the end of the test run."""
    import subprocess
    import sys
    from pathlib import Path

    forest = treeslim.from_model(model("lightgbm", "regression")[0]).replace(num_feature=2**16)
    treeslim.save(forest, tmp_path / "wide.tslim")
    treeslim.compile(forest, tmp_path / "wide.so", nthread=2, verbose=0)
    env = dict(os.environ, PYTHONPATH=str(Path(treeslim.__file__).parents[1]))
    args = [str(tmp_path / "wide.tslim"), str(tmp_path / "wide.so")]
    run = subprocess.run([sys.executable, "-c", WIDE_ROW_SCRIPT, *args], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0 and run.stdout.strip() == "ok", (run.returncode, run.stderr)


def test_single_row_is_thread_safe(compiled_cache):
    forest, compiled = _compiled(compiled_cache, "xgboost", "binary")
    X = oracle_rows(forest, 300, seed=9)
    expect = forest.predict(X)
    errors = []

    def worker(offset):
        for k in range(600):
            i = (k * 7 + offset) % len(X)
            got = compiled.predict(X[i])[0]
            if abs(got - expect[i]) > 1e-6:
                errors.append((i, got, expect[i]))

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_cache_path_and_tl2cgen_compatibility(compiled_cache, tmp_path):
    forest, kernel_lib = _compiled(compiled_cache, "lightgbm", "binary")
    assert treeslim.compile(forest, verbose=0).libpath == kernel_lib.libpath
    forest, compiled = _compiled(compiled_cache, "lightgbm", "binary", "tl2cgen")
    assert compiled.libpath != kernel_lib.libpath  # the engine is part of the cache key
    again = treeslim.compile(forest, engine="tl2cgen")
    assert again.libpath == compiled.libpath
    out = tmp_path / "model.so"
    treeslim.compile(forest, out, engine="tl2cgen")
    assert out.read_bytes() == compiled.libpath.read_bytes()
    tl2cgen = pytest.importorskip("tl2cgen")
    X = np.nan_to_num(oracle_rows(forest, 100, seed=1, specials=False))
    theirs = tl2cgen.Predictor(str(out)).predict(tl2cgen.DMatrix(X)).reshape(-1)
    assert_close(theirs, forest.predict(X), prob=True)
    import pickle

    clone = pickle.loads(pickle.dumps(compiled))
    assert_close(clone.predict(X), forest.predict(X), prob=True)


@pytest.mark.parametrize("engine", ENGINES)
def test_build_progress_bar(compiled_cache, capsys, engine):
    forest = treeslim.from_model(model("lightgbm", "regression")[0])
    treeslim.compile(forest, cache=False, verbose=0, engine=engine)
    assert capsys.readouterr().err == ""  # silent (and not a terminal under pytest anyway)
    treeslim.compile(forest, cache=False, verbose=2, engine=engine,
                     parallel_comp=3 if engine == "tl2cgen" else None)  # fmt: skip
    err = capsys.readouterr().err
    assert "treeslim compile [" in err and "linked" in err and err.endswith("\n")
    assert re.search(r" (\d+)/\1 ", err)  # every step done


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_compiler_and_failed_build(compiled_cache, monkeypatch, tmp_path, engine):
    forest = treeslim.from_model(model("xgboost", "regression")[0])
    forest = forest.replace(base_score=forest.base_score + 1.0)  # a model not in the cache
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CompilerError, match="No C compiler found"):
        treeslim.compile(forest, engine=engine)
    monkeypatch.setenv("CC", "/bin/false")
    with pytest.raises(CompilerError, match="failed"):
        treeslim.compile(forest, cache=False, engine=engine)
    with pytest.raises(CompilerError, match="refused"):  # asks the compiler about the target
        treeslim.compile(forest, cache=False, march="native")


def test_engine_and_march_are_checked():
    forest = treeslim.from_model(model("xgboost", "regression")[0])
    with pytest.raises(ValueError, match="engine must be one of"):
        treeslim.compile(forest, engine="treelite")
    with pytest.raises(ValueError, match="march applies to the kernel engine"):
        treeslim.compile(forest, engine="tl2cgen", march="native")
    with pytest.raises(ValueError, match="march must be"):
        treeslim.compile(forest, march="native -fplugin=x.so")


def test_wrong_input_is_refused(compiled_cache):
    forest, compiled = _compiled(compiled_cache, "xgboost", "binary")
    with pytest.raises(ValueError, match="features, but this model expects"):
        compiled.predict(np.zeros(forest.num_feature + 1))
    with pytest.raises(ValueError, match="features, but this model expects"):
        compiled.predict(np.zeros((3, forest.num_feature - 1)))
    with pytest.raises(ValueError, match="numeric"):
        compiled.predict([["a"] * forest.num_feature])


def test_exact_float32_thresholds():
    rng = np.random.default_rng(0)
    t = rng.normal(size=2000)
    x = np.concatenate([t, np.nextafter(t, 1), np.nextafter(t, -1)]).astype(np.float32)
    x = np.concatenate([x, np.nextafter(x, np.float32(1)), np.nextafter(x, np.float32(-1))])
    for op in ("<", "<="):
        t32 = float32_thresholds(t, op)
        for xi in x[::7]:
            want = (xi.astype(np.float64) < t) if op == "<" else (xi.astype(np.float64) <= t)
            got = (xi < t32) if op == "<" else (xi <= t32)
            np.testing.assert_array_equal(got, want)


def test_compiled_forest_type():
    assert issubclass(CompilerError, treeslim.TreeSlimError)
    assert CompiledForest.__doc__


def test_batches_split_over_threads_only_when_big(monkeypatch):
    from treeslim.runtime import _kernel

    assert _kernel.plan_ranges(200, 3000, 8) == [(0, 200)]  # a 200-row query of 500 trees
    ranges = _kernel.plan_ranges(100_000, 3000, 4)
    assert len(ranges) == 4 and ranges[0][0] == 0 and ranges[-1][1] == 100_000
    assert all(a[1] == b[0] and a[1] % 128 == 0 for a, b in itertools.pairwise(ranges))
    assert _kernel.plan_ranges(100_000, 3000, 1) == [(0, 100_000)]
    # exact whatever the split: force tiny ranges on a small batch
    monkeypatch.setattr(_kernel, "PARALLEL_MIN_STEPS", 1)
    for lib, task in (("lightgbm", "multiclass"), ("xgboost", "binary")):
        forest = treeslim.from_model(model(lib, task)[0])
        X = oracle_rows(forest, 1000, seed=4)
        kf = KernelForest(forest)
        assert len(_kernel.plan_ranges(len(X), kf.steps_per_row, 3)) == 3
        np.testing.assert_array_equal(kf.margin(X, nthread=3), kf.margin(X, nthread=1))
        np.testing.assert_array_equal(kf.leaves(X, nthread=3), leaf_nodes(forest, X))
