"""Serving artifacts: the compiled library's C ABI (through ctypes and from a C program built with
the system compiler), its header, self-contained pickles on a host without a compiler, and file
permissions. Every path is compared with Forest.predict and with the native library."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cabi import CABI
from models import ALL, model
from oracle import assert_close, oracle_rows

import treeslim
from treeslim.backends.tl2cgen import CompiledForest
from treeslim.backends.tl2cgen._compiled import _restore
from treeslim.runtime import CompilerError

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "serve_c", "serve.c")


def _compiled(cache, lib, task, engine="kernel"):
    if (lib, task, engine) not in cache:
        native = model(lib, task)[0]
        forest = treeslim.from_model(native)
        compiled = treeslim.compile(forest, nthread=2, verbose=0, engine=engine)
        cache[(lib, task, engine)] = (native, forest, compiled)
    return cache[(lib, task, engine)]


def native_predict(native, task, X):
    """The library's own predictions (what Forest.predict promises to equal)."""
    if task in ("binary", "multiclass") and hasattr(native, "predict_proba"):
        p = native.predict_proba(X)
        return p[:, 1] if task == "binary" else p
    return native.predict(X)


@pytest.mark.parametrize("engine", ["kernel", "tl2cgen"])
@pytest.mark.parametrize(("lib", "task"), ALL)
def test_c_abi_equals_forest_and_native_library(compiled_cache, tmp_path, lib, task, engine):
    native, forest, compiled = _compiled(compiled_cache, lib, task, engine)
    so, header = compiled.save(tmp_path, name="m")
    abi = CABI(so)
    assert (abi.d, abi.k) == (forest.num_feature, forest.n_outputs)
    X = oracle_rows(forest, 400, seed=11)
    prob = forest.postprocessor in ("sigmoid", "softmax")
    want = forest.predict(X)
    assert_close(abi.predict(X, margin=1), forest.predict_margin(X), what="margin")
    assert_close(abi.predict(X), want, prob=prob, what="prediction")
    with np.errstate(over="ignore"):
        f32 = X.astype(np.float32)
    assert_close(abi.predict(f32, f32=True), forest.predict(f32), prob=prob, what="float32")
    # the native library, on rows it accepts (XGBoost and scikit-learn refuse inf and values
    # beyond float32; the sklearn forests were trained without NaN), in the precision it reads
    Xn = np.where(np.abs(X) > 1e30, np.sign(X) * 1e30, X)
    if lib in ("sklearn-forest", "sklearn-gb"):
        Xn = np.nan_to_num(Xn)
    Xn = Xn.astype(np.float32) if forest.feature_dtype == "float32" else Xn
    assert_close(abi.predict(Xn), native_predict(native, task, Xn), prob=prob, what="native")
    info = json.loads(abi.lib.treeslim_model_info())
    assert info["task"] == forest.task and info["num_features"] == forest.num_feature
    assert info["num_outputs"] == forest.n_outputs and info["versions"]["treeslim"]
    assert info == compiled.info and info["engine"] == engine and info["target"] == "default"
    assert abi.lib.treeslim_cpu_supported() == 1
    text = header.read_text()
    assert f"#define TREESLIM_NUM_FEATURES {forest.num_feature}" in text
    assert "void treeslim_predict(const double* X, int64_t n_rows, int32_t margin" in text


def test_c_abi_is_thread_safe(compiled_cache, tmp_path):
    import threading

    _, forest, compiled = _compiled(compiled_cache, "lightgbm", "multiclass")
    abi = CABI(compiled.save(tmp_path)[0])
    X = oracle_rows(forest, 300, seed=3)
    want = abi.predict(X)
    errors = []

    def work():
        for _ in range(20):
            if not np.array_equal(abi.predict(X), want):
                errors.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _cc():
    cc = shutil.which(os.environ.get("CC") or "cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    return cc


@pytest.mark.parametrize(
    ("lib", "task", "engine"),
    [("xgboost", "ranking", "kernel"), ("lightgbm", "binary", "kernel"),
     ("xgboost", "ranking", "tl2cgen")],
)  # fmt: skip
def test_c_service_example_ranks_like_forest_predict(compiled_cache, tmp_path, lib, task, engine):
    _, forest, compiled = _compiled(compiled_cache, lib, task, engine)
    so, _ = compiled.save(tmp_path / "model")  # model/model.so and model/model.h
    exe = tmp_path / "serve"
    subprocess.run([_cc(), "-O2", "-I", str(tmp_path / "model"), "-o", str(exe), EXAMPLE, "-ldl"],
                   check=True, capture_output=True)  # fmt: skip
    X = oracle_rows(forest, 200, seed=5)  # one query's candidates, NaN and inf included
    csv = tmp_path / "candidates.csv"
    lines = [",".join(f"f{j}" for j in range(X.shape[1]))]
    lines += [",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in X]
    csv.write_text("\n".join(lines) + "\n")
    run = subprocess.run([str(exe), str(so), str(csv)], check=True, capture_output=True, text=True)
    rows = [line.split(",") for line in run.stdout.strip().splitlines()[1:]]
    order = np.array([int(r[1]) for r in rows])
    scores = np.array([float(r[2]) for r in rows])
    want = forest.predict(X)
    assert sorted(order.tolist()) == list(range(len(X)))
    assert_close(scores, want[order], prob=forest.postprocessor == "sigmoid")
    assert np.all(np.diff(scores) <= 0)  # best first
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n")
    run = subprocess.run([str(exe), str(so), str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and "fields" in run.stderr


def test_pickle_loads_without_a_compiler(compiled_cache, tmp_path):
    _, forest, compiled = _compiled(compiled_cache, "xgboost", "binary")
    blob = tmp_path / "compiled.pkl"
    blob.write_bytes(pickle.dumps(compiled))
    X = oracle_rows(forest, 100, seed=1)
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import pickle, shutil, numpy as np
        assert shutil.which("gcc") is None and shutil.which("cc") is None
        compiled = pickle.loads(open({str(blob)!r}, "rb").read())
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "got.npy")!r}, compiled.predict(X))
        np.save({str(tmp_path / "one.npy")!r}, compiled.predict(X[0]))
        """
    )
    bare = tmp_path / "bin"  # a PATH where no compiler can be found
    bare.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env.update(PATH=str(bare), TREESLIM_CACHE_DIR=str(tmp_path / "empty-cache"))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    assert_close(np.load(tmp_path / "got.npy"), forest.predict(X), prob=True)
    assert_close(np.load(tmp_path / "one.npy"), forest.predict(X[:1]), prob=True)


def test_corrupt_or_foreign_embedded_library_is_refused(compiled_cache):
    _, forest, compiled = _compiled(compiled_cache, "lightgbm", "regression")
    fn, (f, data, digest, machine, abi, nthread) = compiled.__reduce__()
    assert fn is _restore
    with pytest.raises(treeslim.ModelFormatError, match="corrupt"):
        _restore(f, data[:-1] + bytes([data[-1] ^ 1]), digest, machine, abi, nthread)
    with pytest.raises(CompilerError, match="recompile"):
        _restore(f, data, digest, "plan9-mips", abi, nthread)
    with pytest.raises(CompilerError, match="recompile"):
        _restore(f, data, digest, machine, abi + 1, nthread)
    again = _restore(f, data, digest, machine, abi, nthread)
    X = oracle_rows(forest, 50, seed=2)
    assert_close(again.predict(X), forest.predict(X))


def test_a_library_for_another_model_is_refused(compiled_cache, tmp_path):
    _, forest, compiled = _compiled(compiled_cache, "xgboost", "binary")
    other = forest.replace(num_feature=forest.num_feature + 1)
    with pytest.raises(CompilerError, match="recompile"):
        CompiledForest(other, compiled.libpath)
    not_ours = tmp_path / "libnot.so"
    subprocess.run([_cc(), "-shared", "-fPIC", "-x", "c", "-", "-o", str(not_ours)],
                   input="int f(void){return 1;}\n", text=True, check=True)  # fmt: skip
    with pytest.raises(CompilerError, match="not a treeslim model library"):
        CompiledForest(forest, not_ours)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask(compiled_cache, tmp_path, umask):
    _, forest, compiled = _compiled(compiled_cache, "xgboost", "regression")
    old = os.umask(umask)
    try:
        so, header = compiled.save(tmp_path / "out")
        treeslim.save(forest, tmp_path / "m.tslim")
        treeslim.to_xgboost(forest, tmp_path / "m.json")
    finally:
        os.umask(old)

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    assert mode(so) == 0o777 & ~umask
    for p in (header, tmp_path / "m.tslim", tmp_path / "m.json"):
        assert mode(p) == 0o666 & ~umask, p


def test_cli_compile_into_a_folder_writes_library_and_header(compiled_cache, tmp_path, capsys):
    from treeslim.cli import main

    native, forest, _ = _compiled(compiled_cache, "xgboost", "binary")
    path = tmp_path / "ranker.v2.json"
    native.get_booster().save_model(path)
    assert main(["compile", str(path), "-o", str(tmp_path / "dist") + "/"]) == 0
    assert (tmp_path / "dist" / "ranker.so").exists()
    assert "#define TREESLIM_NUM_FEATURES" in (tmp_path / "dist" / "ranker.h").read_text()
    assert "C header" in capsys.readouterr().out
    abi = CABI(tmp_path / "dist" / "ranker.so")
    X = oracle_rows(forest, 50, seed=9)
    assert_close(abi.predict(X), forest.predict(X), prob=True)
