"""A compiled Forest: the shared library built for it (:func:`compile_forest`: generate, build,
load) and :class:`CompiledForest`, which scores through it.

Two engines build the library; both export the same C ABI (``treeslim_predict`` and friends):

- ``"kernel"`` (the default): treeslim's own kernel (``treeslim/runtime/csrc/forest_kernel.c``)
  over the model's arrays embedded as static data (:mod:`._kernel_lib`). :class:`CompiledForest`
  scores everything through the library: one row through its row function, batches through
  ``treeslim_predict`` (split into row ranges on worker threads when big), so a host with no C
  compiler scores a pickled model at full speed;
- ``"tl2cgen"``: TL2cgen's generated C for the Treelite model, patched to be exact (:mod:`._codegen`,
  :mod:`._build`). :class:`CompiledForest` then scores batches with treeslim's per-machine kernel
  (:class:`treeslim.runtime.KernelForest`, built on first use), or with the library's row loop
  where that cannot be built.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import platform
import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import write_atomic
from treeslim.backends.tl2cgen._build import BUILD_LOCK, build_library, forest_hash
from treeslim.backends.tl2cgen._codegen import ABI_VERSION, header_text
from treeslim.backends.tl2cgen._kernel_lib import build_kernel_library
from treeslim.errors import ModelFormatError
from treeslim.ir import Forest, apply_postprocessor, check_X
from treeslim.runtime import CompilerError, KernelForest, cache_dir, run_in_ranges

__all__ = ["ENGINES", "CompiledForest", "compile_forest"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: The engines a model can be compiled with (see the module docstring), the default first.
ENGINES = ("kernel", "tl2cgen")
#: C ABI versions this treeslim loads: 1 is the same ABI without treeslim_cpu_supported (TL2cgen
#: libraries of earlier versions, still loadable from their pickles).
_LOADABLE_ABI = (1, ABI_VERSION)


def compile_forest(
    forest: Forest,
    path: str | os.PathLike[str] | None = None,
    *,
    engine: Literal["kernel", "tl2cgen"] = "kernel",
    march: str | None = None,
    nthread: int | None = None,
    parallel_comp: int | None = None,
    cache: bool = True,
    verbose: int = 1,
) -> CompiledForest:
    """Compile ``forest`` into a shared library and load it: generate, build (cached), load.

    The parameters are :func:`treeslim.compile`'s, which takes any model and comes here.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}; got {engine!r}.")
    if march is not None and engine != "kernel":
        raise ValueError("march applies to the kernel engine; TL2cgen's code is built for the"
                         " compiler's default target.")  # fmt: skip
    if march is not None and (not march or not all(c.isalnum() or c in "-_.+" for c in march)):
        raise ValueError(f"march must be a compiler -march value such as 'native'; got {march!r}.")
    threads = nthread or os.cpu_count() or 1
    units = parallel_comp or int(min(32, max(1, forest.n_trees // 100)))
    options: dict[str, Any] = (
        {"engine": engine, "march": march} if engine == "kernel" else {"parallel_comp": units}
    )
    key = forest_hash(forest, options)
    target = cache_dir() / "models" / f"model-{key}{_SUFFIX}"
    target.parent.mkdir(parents=True, exist_ok=True)
    with BUILD_LOCK:
        if not (cache and target.exists()):
            if engine == "kernel":
                build_kernel_library(forest, target, march=march, nthread=threads,
                                     verbose=verbose)  # fmt: skip
            else:
                build_library(forest, target, nthread=threads, parallel_comp=units,
                              verbose=verbose)  # fmt: skip
    compiled = CompiledForest(forest, target, nthread=threads)
    if path is not None:
        compiled.save(path)
    return compiled


class CompiledForest:
    """A compiled Forest: ``predict`` / ``predict_margin`` as :class:`~treeslim.Forest` gives them.

    One row (a 1-D array or shape (1, d)) goes through the compiled row function with no per-call
    allocation beyond the result. Batches go through the library's ``treeslim_predict`` (the kernel
    engine; big batches in row ranges on ``nthread`` threads, each a call into the library without
    the GIL), or, for a library of the TL2cgen engine, through treeslim's per-machine kernel (or,
    on a host where that cannot be built, the library's own row loop), with the same results.
    Calls are thread-safe.

    The library has a stable C ABI (``treeslim_predict`` and friends, see :meth:`save`), so a
    service in any language can load it. Pickling (``pickle``, ``joblib.dump``) embeds the
    library's bytes: unpickling needs no compiler, only the same kind of machine (and, for a
    library compiled with ``march``, a CPU with the extensions it was built for).
    """

    def __init__(self, forest: Forest, libpath: str | os.PathLike[str], *, nthread: int = 1):
        self.forest = forest
        self.libpath = Path(libpath)
        self.nthread = max(1, int(nthread))
        try:
            lib = ctypes.CDLL(str(self.libpath))
        except OSError as exc:
            raise CompilerError(f"Cannot load the compiled model {self.libpath}: {exc}") from exc
        self._lib = lib
        self._abi = _check_abi(lib, forest, self.libpath)
        info = json.loads(_info_text(lib))
        #: ``"kernel"`` or ``"tl2cgen"``: the code the library runs (``treeslim_model_info()``)
        self.engine: str = info.get("engine", "tl2cgen")
        c_ptr = ctypes.c_void_p
        self._row1 = {}
        self._rows = {}
        for dt, row1, rows in ((np.float64, "ts_row1_f64", "treeslim_predict"),
                               (np.float32, "ts_row1_f32", "treeslim_predict_f32")):  # fmt: skip
            fn = getattr(lib, row1)
            fn.argtypes = [ctypes.c_char_p, ctypes.c_int]  # bytes pass as a pointer, no copy
            fn.restype = ctypes.c_double
            self._row1[np.dtype(dt)] = fn
            fn = getattr(lib, rows)
            fn.argtypes = [c_ptr, ctypes.c_int64, ctypes.c_int32, c_ptr]
            fn.restype = None
            self._rows[np.dtype(dt)] = fn
        self.n_outputs = int(lib.treeslim_num_outputs())
        self._dtype = np.float32 if forest.feature_dtype == "float32" else np.float64
        self._kernel: KernelForest | None = None
        self._d = forest.num_feature
        self._steps_per_row = int(forest.tree_depths.sum())  # level steps one row costs
        # the one-row fast path skips check_X: not for forests that encode numeric inputs
        # (scikit-learn's categorical features are looked up in their category lists)
        encodes = forest.category_rule == "sklearn" and forest.feature_categories is not None
        self._single = forest.n_outputs == 1 and self.n_outputs == 1 and not encodes

    def __repr__(self) -> str:
        return f"CompiledForest({self.forest!r}, lib={self.libpath.name})"

    @property
    def info(self) -> dict[str, Any]:
        """What ``treeslim_model_info()`` returns: task, features, outputs, link, versions."""
        info: dict[str, Any] = json.loads(_info_text(self._lib))
        return info

    def save(self, path: str | os.PathLike[str], name: str | None = None) -> tuple[Path, Path]:
        """Write the library and its C header; return their paths.

        ``path`` is a folder (it gets ``name.so`` and ``name.h``; ``name`` defaults to
        ``"model"``; the folder is created) or, without ``name``, the library's file name ending
        in ``.so`` (``.dylib``, ``.dll``): its header goes beside it with the suffix ``.h``. The
        header documents the C ABI (``treeslim_predict``, ``treeslim_predict_f32``,
        ``treeslim_num_features``, ``treeslim_num_outputs``, ``treeslim_model_info``,
        ``treeslim_cpu_supported``). Both files are written atomically, with the usual
        permissions (umask).
        """
        out = Path(path)
        if name is not None or out.is_dir() or out.suffix not in (".so", ".dylib", ".dll"):
            out.mkdir(parents=True, exist_ok=True)
            out = out / f"{name or 'model'}{_SUFFIX}"
        header = out.with_suffix(".h")
        write_atomic(out, self.libpath.read_bytes(), executable=True)
        write_atomic(header, header_text(self.forest, out.stem))
        return out, header

    def __reduce__(self) -> tuple[Any, ...]:
        data = self.libpath.read_bytes()
        return (_restore, (self.forest, data, hashlib.sha256(data).hexdigest(), _platform(),
                           self._abi, self.nthread))  # fmt: skip

    def _one_row(self, X: Any, margin: int) -> float | None:
        """The fast path: one float32/float64 row of the right width, else None.

        The kernel engine's row function walks the row eight trees at a time and applies the link
        (``margin=0``) in C. A TL2cgen library's row goes through treeslim's per-machine kernel
        (:meth:`KernelForest.row_raw_sum`), or, without it, through TL2cgen's generated code.
        Either way ``X.tobytes()`` (a few hundred bytes) is cheaper than asking numpy for a
        pointer, and ctypes hands the bytes to C as a pointer; each call has its own copy, so
        threads are safe.
        """
        if not (self._single and type(X) is np.ndarray and X.size == self._d and X.ndim <= 2):
            return None
        kernel = self._batch_kernel()
        if self.engine == "kernel" and (kernel is None or X.dtype not in _FLOATS):
            fn = self._row1.get(X.dtype)
            return None if fn is None else float(fn(X.tobytes(), margin))
        if kernel is not None and X.dtype in _FLOATS:
            row = X.tobytes() if X.dtype == self._dtype else X.astype(self._dtype).tobytes()
            v = kernel.row_margin(row)
            return v if margin else _link1(self.forest, v)
        fn = self._row1.get(X.dtype)
        return None if fn is None else float(fn(X.tobytes(), margin))

    def predict(self, X: Any, *, nthread: int | None = None) -> NDArray[np.float64]:
        """Predictions, as :meth:`Forest.predict` (probability of class 1 for binary, ...)."""
        if self.forest.postprocessor != "argmax":
            v = self._one_row(X, 0)
            if v is not None:
                return np.array([v])
        return apply_postprocessor(self.forest, self.predict_margin(X, nthread=nthread))

    def predict_margin(self, X: Any, *, nthread: int | None = None) -> NDArray[np.float64]:
        """Raw scores, as :meth:`Forest.predict_margin`."""
        v = self._one_row(X, 1)
        if v is not None:
            return np.array([v])
        Xc = check_X(self.forest, X, dtype=self._dtype)
        kernel = self._batch_kernel()
        if self.engine == "kernel" and kernel is None:
            return self._ranges(Xc, nthread or self.nthread)
        if kernel is None:
            return self._rowwise(Xc, margin=True)
        out = kernel.margin_prepared(Xc, nthread or self.nthread)
        return out[:, 0] if self.forest.n_outputs == 1 else out

    def _ranges(self, Xc: NDArray[Any], nthread: int) -> NDArray[np.float64]:
        """Margins of prepared rows through ``treeslim_predict``: small batches in one call on
        this thread, big ones in row ranges on worker threads (ctypes releases the GIL)."""
        fn = self._rows[Xc.dtype]
        out = np.empty((Xc.shape[0], self.n_outputs))
        x0, o0 = Xc.ctypes.data, out.ctypes.data
        x_row, o_row = Xc.strides[0], out.strides[0]

        def run(lo: int, hi: int) -> None:
            fn(x0 + lo * x_row, hi - lo, 1, o0 + lo * o_row)

        run_in_ranges(run, Xc.shape[0], self._steps_per_row, nthread)
        return out[:, 0] if self.n_outputs == 1 else out

    def predict_rowwise(self, X: Any, *, margin: bool = False) -> NDArray[np.float64]:
        """Score row by row through the library's C ABI (``treeslim_predict``): what a C
        service gets; for comparison and tests."""
        return self._rowwise(check_X(self.forest, X, dtype=self._dtype), margin=margin)

    def _rowwise(self, Xc: NDArray[Any], *, margin: bool) -> NDArray[np.float64]:
        fn = self._rows[Xc.dtype]
        out = np.empty((Xc.shape[0], self.n_outputs))
        fn(Xc.ctypes.data, Xc.shape[0], int(margin), out.ctypes.data)
        return out[:, 0] if self.n_outputs == 1 else out

    def _batch_kernel(self) -> KernelForest | None:
        """treeslim's per-machine kernel (built on first use with ``-march=native``), where it
        is faster than the library's own code: always for a TL2cgen library; for a kernel
        library, where the per-machine build has the SIMD walks (the library is built for a
        portable target, which has none). None where it cannot be built (no C compiler on a
        serving host) or would not be faster: the library's own entry points score then."""
        if self._kernel is None and not self._no_kernel:
            try:
                kernel = KernelForest(self.forest)
            except CompilerError:
                kernel = None
            if kernel is not None and (self.engine != "kernel" or kernel.simd):
                self._kernel = kernel
            else:
                self._no_kernel = True
        return self._kernel

    _no_kernel = False


_SUFFIX = ".dll" if sys.platform == "win32" else (".dylib" if sys.platform == "darwin" else ".so")


def _info_text(lib: ctypes.CDLL) -> str:
    fn = lib.treeslim_model_info
    fn.restype = ctypes.c_char_p
    return bytes(fn()).decode("utf-8")


def _check_abi(lib: ctypes.CDLL, forest: Forest, path: Path) -> int:
    """Refuse a library that is not a treeslim model of a loadable ABI version for ``forest``, or
    that was built for CPU extensions this machine lacks; return its ABI version."""
    try:
        version = int(lib.treeslim_abi_version())
        n_features = int(lib.treeslim_num_features())
    except AttributeError:
        raise CompilerError(
            f"{path} is not a treeslim model library of this version (no treeslim_abi_version):"
            " recompile the model with treeslim.compile."
        ) from None
    if version not in _LOADABLE_ABI or n_features != forest.num_feature:
        raise CompilerError(
            f"{path} has C ABI version {version} for {n_features} features; this treeslim needs"
            f" version {ABI_VERSION} for {forest.num_feature}: recompile with treeslim.compile."
        )
    if version >= 2 and not lib.treeslim_cpu_supported():
        target = json.loads(_info_text(lib)).get("target")
        raise CompilerError(
            f"{path} was compiled for {target}, and this CPU lacks extensions that needs:"
            " recompile the model for the default target (treeslim.compile(model), no march),"
            " or load it on a CPU like the one it was compiled for."
        )
    return version


def _link1(forest: Forest, margin: float) -> float:
    """:func:`~treeslim.ir.apply_postprocessor` of one single-output margin, in plain floats."""
    post = forest.postprocessor
    try:
        if post == "sigmoid":
            return 1.0 / (1.0 + math.exp(-forest.sigmoid_alpha * margin))
        if post == "exponential":
            return math.exp(margin)
    except OverflowError:  # numpy's exp gives inf there
        return 0.0 if post == "sigmoid" else math.inf
    return margin


def _platform() -> str:
    """The kind of machine a compiled library runs on: OS and architecture."""
    return f"{sys.platform}-{platform.machine()}"


def _restore(
    forest: Forest, data: bytes, digest: str, machine: str, abi: int, nthread: int
) -> CompiledForest:
    """Unpickle a :class:`CompiledForest`: check the embedded library (hash, machine, ABI),
    put it in the cache if it is not there yet, and load it (which checks the CPU). No compiler
    is needed: a kernel library scores at full speed with nothing built on this host."""
    if hashlib.sha256(data).hexdigest() != digest:
        raise ModelFormatError(
            "The compiled library embedded in this pickle is corrupt (its SHA-256 does not"
            " match): recompile the model with treeslim.compile."
        )
    if machine != _platform() or abi not in _LOADABLE_ABI:
        raise CompilerError(
            f"This pickle holds a library compiled for {machine} (C ABI {abi}); this is"
            f" {_platform()} (C ABI {ABI_VERSION}): recompile the model here with"
            " treeslim.compile (it needs a C compiler), or unpickle it on a matching host."
        )
    target = cache_dir() / "models" / f"restored-{digest[:24]}{_SUFFIX}"
    if not target.exists() or hashlib.sha256(target.read_bytes()).hexdigest() != digest:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data, executable=True)
    return CompiledForest(forest, target, nthread=nthread)
