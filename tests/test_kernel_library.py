"""The kernel engine's model library (``treeslim.compile``'s default): treeslim's kernel over the
model's arrays embedded as static data, behind the C ABI.

Its C ABI, called through ctypes and from a C program linked against the library, is checked
against the native libraries (XGBoost and LightGBM margins bit for bit, scikit-learn to rounding)
and against treeslim's per-machine kernel (bit for bit) on adversarial rows, for both entry points
(float64, float32), margin 0 and 1, batches, small batches and single rows; rows in the other
precision are converted exactly; a pickled model scores at full speed, exactly, on a host without
a compiler; a library built for CPU extensions the machine lacks is refused with a message.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cabi import CABI
from models import ALL, model
from oracle import as_f32, assert_close, has_native_margin, native_predict, native_rows, oracle_rows

import treeslim
from treeslim.backends.tl2cgen import _kernel_lib
from treeslim.backends.tl2cgen._compiled import _platform, _restore
from treeslim.runtime import CompilerError, KernelForest

ABI_CHECK = Path(__file__).with_name("abi_check.c")
#: libraries whose margins the kernel engine reproduces bit for bit (XGBoost's float32 sums,
#: LightGBM's float64 sums in tree order); scikit-learn's gradient boosting sums in another order
EXACT_MARGIN = ("xgboost", "lightgbm")


def _compiled(cache, lib, task):
    if (lib, task) not in cache:
        native = model(lib, task)[0]
        forest = treeslim.from_model(native)
        compiled = treeslim.compile(forest, nthread=2, verbose=0)
        assert compiled.engine == "kernel" and compiled.info["engine"] == "kernel"
        cache[(lib, task)] = (native, forest, compiled)
    return cache[(lib, task)]


def _kernel_margin(forest, X):
    """treeslim's per-machine kernel (built with -march=native): what the library must equal."""
    out = KernelForest(forest).margin(X)
    return out[:, 0] if forest.n_outputs == 1 else out


def _cc():
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    return cc


# sklearn's finiteness check sums rows of +-3e38 entries and warns about the inf - inf it meets
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize(("lib", "task"), ALL)
def test_c_abi_equals_native_library_and_kernel(compiled_cache, lib, task):
    native, forest, compiled = _compiled(compiled_cache, lib, task)
    abi = CABI(compiled.libpath)
    X = native_rows(native, oracle_rows(forest, 400, seed=21))
    X32 = as_f32(X)
    prob = forest.postprocessor in ("sigmoid", "softmax")
    m64, m32 = abi.predict(X, 1), abi.predict(X32, 1, f32=True)
    # the per-machine kernel, bit for bit, from either entry point
    np.testing.assert_array_equal(m64, _kernel_margin(forest, X))
    np.testing.assert_array_equal(m32, _kernel_margin(forest, X32.astype(np.float64)))
    if forest.feature_dtype == "float32":  # float64 rows are rounded to float32 first
        np.testing.assert_array_equal(m64, m32)
    # small batches (walked a row at a time) and single rows sum the same
    for n in (1, 2, 8, 9, 129):
        np.testing.assert_array_equal(abi.predict(X[:n], 1), m64[:n])
    np.testing.assert_array_equal(compiled.predict_margin(X), m64)
    np.testing.assert_array_equal(compiled.predict_rowwise(X, margin=True), m64)
    # the native library
    if has_native_margin(native):
        want64 = native_predict(native, X, margin=True).reshape(m64.shape)
        want32 = native_predict(native, X32.astype(np.float64), margin=True).reshape(m64.shape)
        if lib in EXACT_MARGIN:
            np.testing.assert_array_equal(m64, want64)
            np.testing.assert_array_equal(m32, want32)
        else:
            assert_close(m64, want64, what="margin")
            assert_close(m32, want32, what="float32 margin")
    p64, p32 = abi.predict(X, 0), abi.predict(X32, 0, f32=True)
    assert_close(p64, native_predict(native, X).reshape(p64.shape), prob=prob, what="prediction")
    want = native_predict(native, X32.astype(np.float64)).reshape(p64.shape)
    assert_close(p32, want, prob=prob, what="float32 prediction")
    if lib == "sklearn-forest":  # averaged, no link: exact
        np.testing.assert_array_equal(p64, native_predict(native, X).reshape(p64.shape))
    assert_close(p64, forest.predict(X), prob=prob, what="Forest.predict")
    if lib in ("xgboost", "lightgbm", "sklearn-hgb"):  # the traps reached the library
        assert np.isnan(X).any() and np.isinf(X).any()


@pytest.mark.parametrize(
    ("lib", "task"),
    [("xgboost", "binary"), ("xgboost", "multiclass"), ("lightgbm", "ranking"),
     ("lightgbm", "multiclass"), ("sklearn-hgb", "regression")],
)  # fmt: skip
def test_a_c_program_linked_to_the_library(compiled_cache, tmp_path, lib, task):
    """abi_check.c, compiled against the generated header and linked to the library, scores every
    way a C caller can; each equals the native library and the ctypes calls."""
    native, forest, compiled = _compiled(compiled_cache, lib, task)
    so, _ = compiled.save(tmp_path / "lib", name="model")
    exe = tmp_path / "abi_check"
    subprocess.run([_cc(), "-O2", "-Wall", "-Werror", "-I", str(so.parent), "-o", str(exe),
                    str(ABI_CHECK), str(so), f"-Wl,-rpath,{so.parent}", "-lm"],
                   check=True, capture_output=True)  # fmt: skip
    X = native_rows(native, oracle_rows(forest, 300, seed=5))
    X.tofile(tmp_path / "rows.f64")
    run = subprocess.run([str(exe), str(tmp_path / "rows.f64"), str(len(X)),
                          str(tmp_path / "out.f64")], capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 0, run.stderr
    k = forest.n_outputs
    assert run.stdout.split() == ["1", str(forest.num_feature), str(k)]
    blocks = np.fromfile(tmp_path / "out.f64").reshape(6, len(X), k)
    m64, p64, m32, p32, one, threes = (b[:, 0] if k == 1 else b for b in blocks)
    abi = CABI(so)
    np.testing.assert_array_equal(m64, abi.predict(X, 1))
    np.testing.assert_array_equal(p64, abi.predict(X, 0))
    np.testing.assert_array_equal(m32, abi.predict(as_f32(X), 1, f32=True))
    np.testing.assert_array_equal(p32, abi.predict(as_f32(X), 0, f32=True))
    np.testing.assert_array_equal(one, m64)
    np.testing.assert_array_equal(threes, m64)
    want = native_predict(native, X, margin=True).reshape(m64.shape)
    if lib in EXACT_MARGIN:
        np.testing.assert_array_equal(m64, want)
    else:
        assert_close(m64, want)
    prob = forest.postprocessor in ("sigmoid", "softmax")
    assert_close(p64, native_predict(native, X).reshape(p64.shape), prob=prob)


def test_rows_in_the_other_precision_are_converted_exactly(compiled_cache):
    """float64 rows to a float32 model are rounded as numpy rounds them, a block at a time: in the
    32 KB stack buffer when a block fits, else in one heap buffer (300 float32 features: 128 rows
    take 150 KB); float32 rows to a float64 model are widened (5,000 features: even one row is
    wider than the stack buffer)."""
    xgb = treeslim.from_model(model("xgboost", "multiclass")[0]).replace(num_feature=300)
    abi = CABI(treeslim.compile(xgb, verbose=0, nthread=2).libpath)
    X = oracle_rows(xgb, 700, seed=3)
    want = _kernel_margin(xgb, X)
    np.testing.assert_array_equal(abi.predict(as_f32(X), 1, f32=True), want)
    for n in (1, 3, 8, 9, 128, 129, 700):
        np.testing.assert_array_equal(abi.predict(X[:n], 1), want[:n])
    lgb = treeslim.from_model(model("lightgbm", "regression")[0]).replace(num_feature=5000)
    abi = CABI(treeslim.compile(lgb, verbose=0, nthread=2).libpath)
    X32 = as_f32(oracle_rows(lgb, 300, seed=4))
    want = _kernel_margin(lgb, X32.astype(np.float64))
    for n in (1, 5, 9, 300):
        np.testing.assert_array_equal(abi.predict(X32[:n], 1, f32=True), want[:n])


def test_big_batches_go_to_the_library_in_row_ranges(compiled_cache, monkeypatch):
    from treeslim.runtime import _kernel

    monkeypatch.setattr(_kernel, "PARALLEL_MIN_STEPS", 1)  # ranges even for small batches
    for lib, task in (("lightgbm", "multiclass"), ("xgboost", "binary")):
        _, forest, compiled = _compiled(compiled_cache, lib, task)
        # the library's own entry points, as on a host without a compiler (with one, a SIMD
        # per-machine kernel scores instead)
        monkeypatch.setattr(compiled, "_kernel", None)
        monkeypatch.setattr(compiled, "_no_kernel", True)
        X = oracle_rows(forest, 1000, seed=4)
        one = compiled.predict_margin(X, nthread=1)
        calls = []
        fn = compiled._rows[np.dtype(compiled._dtype)]
        monkeypatch.setitem(compiled._rows, np.dtype(compiled._dtype),
                            lambda x, n, m, o, fn=fn: (calls.append(n), fn(x, n, m, o)))  # fmt: skip
        np.testing.assert_array_equal(compiled.predict_margin(X, nthread=3), one)
        assert sorted(calls) == [232, 384, 384]  # three ranges cut at 128-row blocks
        np.testing.assert_array_equal(one, _kernel_margin(forest, X))


NO_COMPILER = textwrap.dedent(
    """
    import pickle, shutil, sys, numpy as np
    from treeslim.runtime import CompilerError, _kernel, find_compiler
    assert shutil.which("gcc") is None and shutil.which("cc") is None
    try:
        find_compiler()
        raise SystemExit("a compiler was found")
    except CompilerError:
        pass
    compiled = pickle.loads(open(sys.argv[1], "rb").read())
    X = np.load(sys.argv[2])
    with np.errstate(over="ignore"):
        X32 = X.astype(np.float32)
    _kernel.PARALLEL_MIN_STEPS = 1  # big-batch ranges on two threads, too
    calls = []
    fn = compiled._rows[np.dtype(compiled._dtype)]
    compiled._rows[np.dtype(compiled._dtype)] = lambda *a: (calls.append(a[1]), fn(*a))
    out = dict(batch=compiled.predict_margin(X, nthread=2), probs=compiled.predict(X),
               rows=[compiled.predict_margin(x)[0] for x in X[:40]],
               rows32=[compiled.predict(x)[0] for x in X32[:40]])
    # the library's kernel did it all: treeslim's per-machine kernel was never built
    assert compiled.engine == "kernel" and compiled._kernel is None and not _kernel._KERNELS
    assert sorted(calls) == [244, 244, 256, 256], calls  # two batches, two ranges each
    np.savez(sys.argv[3], **out)
    """
)


def test_pickle_scores_at_full_speed_without_a_compiler(compiled_cache, tmp_path):
    native, forest, compiled = _compiled(compiled_cache, "xgboost", "binary")
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(compiled))
    X = native_rows(native, oracle_rows(forest, 500, seed=13))
    np.save(tmp_path / "X.npy", X)
    bare = tmp_path / "bin"  # a PATH where no compiler can be found, CC naming none
    bare.mkdir()
    cache = tmp_path / "empty-cache"
    env = dict(os.environ, PATH=str(bare), CC=str(tmp_path / "no-such-cc"),
               TREESLIM_CACHE_DIR=str(cache),
               PYTHONPATH=str(Path(treeslim.__file__).parents[1]))  # fmt: skip
    args = [str(tmp_path / "m.pkl"), str(tmp_path / "X.npy"), str(tmp_path / "out.npz")]
    run = subprocess.run([sys.executable, "-c", NO_COMPILER, *args], env=env,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    got = np.load(tmp_path / "out.npz")
    margin = native_predict(native, X, margin=True)
    np.testing.assert_array_equal(got["batch"], margin)  # XGBoost's margins, bit for bit
    np.testing.assert_array_equal(got["batch"], compiled.predict_margin(X))
    np.testing.assert_array_equal(got["probs"], compiled.predict(X))
    np.testing.assert_array_equal(got["rows"], margin[:40])
    assert_close(got["rows32"], got["probs"][:40], prob=True)  # the link: C's exp, numpy's
    assert_close(got["probs"], native_predict(native, X), prob=True)
    assert not list(cache.glob("kernel-*"))  # nothing was built there
    assert [p.name[:9] for p in (cache / "models").iterdir()] == ["restored-"]


def test_march_native(compiled_cache):
    _, forest, default = _compiled(compiled_cache, "lightgbm", "multiclass")
    native = treeslim.compile(forest, march="native", verbose=0)
    assert native.libpath != default.libpath
    assert (native.info["target"], default.info["target"]) == ("-march=native", "default")
    X = oracle_rows(forest, 300, seed=2)
    np.testing.assert_array_equal(native.predict_margin(X), default.predict_margin(X))
    np.testing.assert_array_equal(native.predict_rowwise(X), default.predict_rowwise(X))
    clone = pickle.loads(pickle.dumps(native))  # on the machine it was built for
    np.testing.assert_array_equal(clone.predict(X), default.predict(X))


def _absent_x86_feature():
    """A feature __builtin_cpu_supports knows (GCC and Clang) that this CPU lacks, or None."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next(line for line in fh if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return None
    if "sse2" not in flags:  # not x86
        return None
    return next((f for f in ("fma4", "xop", "sse4a") if f not in flags), None)


def test_a_library_built_for_a_missing_cpu_feature_is_refused(monkeypatch, tmp_path):
    """What a library compiled with march=... does on a CPU without the extensions it needs:
    simulated with a requirement this CPU lacks."""
    missing = _absent_x86_feature()
    if missing is None:
        pytest.skip("needs an x86 CPU lacking fma4, xop or sse4a")
    monkeypatch.setenv("TREESLIM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(_kernel_lib, "cpu_requirements", lambda cc, march: ["sse2", missing])
    forest = treeslim.from_model(model("xgboost", "regression")[0])
    with pytest.raises(CompilerError, match="compiled for -march=x86-64, and this CPU lacks"):
        treeslim.compile(forest, march="x86-64", verbose=0)
    (lib,) = (tmp_path / "cache" / "models").glob("model-*")
    assert ctypes.CDLL(str(lib)).treeslim_cpu_supported() == 0
    data = lib.read_bytes()
    import hashlib

    with pytest.raises(CompilerError, match="lacks"):  # a pickle of it, unpickled here
        _restore(forest, data, hashlib.sha256(data).hexdigest(), _platform(), 2, 1)
    call = textwrap.dedent(
        f"""
        import ctypes, numpy as np
        lib = ctypes.CDLL({str(lib)!r})
        x, out = np.zeros(({forest.num_feature},)), np.zeros(1)
        lib.treeslim_predict(ctypes.c_void_p(x.ctypes.data), ctypes.c_int64(1), 0,
                             ctypes.c_void_p(out.ctypes.data))
        """
    )
    run = subprocess.run([sys.executable, "-c", call], capture_output=True, text=True)
    assert run.returncode != 0  # a clear abort, not an illegal instruction
    assert "built for -march=x86-64, which this CPU does not support" in run.stderr


def test_the_kernel_is_compiled_once_per_target(compiled_cache, monkeypatch):
    calls = []
    real = _kernel_lib.run_compiler
    monkeypatch.setattr(_kernel_lib, "run_compiler",
                        lambda args, what: (calls.append(what), real(args, what)))  # fmt: skip
    forest = treeslim.from_model(model("xgboost", "ranking")[0])
    treeslim.compile(forest, cache=False, verbose=0)
    calls.clear()
    treeslim.compile(forest.replace(base_score=forest.base_score + 1), cache=False, verbose=0)
    assert calls == ["the model's data", "the model library"]


def test_a_pickle_of_an_abi_1_library_still_loads(compiled_cache, monkeypatch):
    """Libraries of C ABI 1 (TL2cgen's, before treeslim_cpu_supported) load from old pickles."""
    import hashlib

    from treeslim.backends.tl2cgen import _codegen

    _, forest, _ = _compiled(compiled_cache, "lightgbm", "binary")
    monkeypatch.setattr(_codegen, "ABI_VERSION", 1)
    old = forest.replace(base_score=forest.base_score + 3)  # not in the cache
    data = treeslim.compile(old, engine="tl2cgen", verbose=0).libpath.read_bytes()
    monkeypatch.undo()
    again = _restore(old, data, hashlib.sha256(data).hexdigest(), _platform(), 1, 1)
    assert again.engine == "tl2cgen" and again._abi == 1
    X = oracle_rows(old, 100, seed=6)
    assert_close(again.predict(X), old.predict(X), prob=True)
    assert pickle.loads(pickle.dumps(again))._abi == 1
