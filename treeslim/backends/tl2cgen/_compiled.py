"""A compiled Forest: the TL2cgen library built for it (:func:`compile_forest`: generate, build,
load) and :class:`CompiledForest`, which scores

- one row through the shim's row function, called straight through ctypes: no DMatrix, no per-call
  buffers on the Python side; the shim keeps TL2cgen's input buffer on the C stack, so concurrent
  calls from several threads are safe;
- a batch through treeslim's tree-at-a-time C kernel (:class:`treeslim.runtime.KernelForest`),
  with a thread count.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import write_atomic
from treeslim.backends.tl2cgen._build import BUILD_LOCK, build_library, forest_hash
from treeslim.ir import Forest, apply_postprocessor
from treeslim.runtime import CompilerError, KernelForest, cache_dir

__all__ = ["ROWWISE_MAX_ROWS", "CompiledForest", "compile_forest"]

#: Batches up to this size go row by row through the compiled code; larger ones through the
#: tree-at-a-time kernel (measured crossover: 2-4 rows on a 500-tree model, benchmarks/latency.py).
ROWWISE_MAX_ROWS = 2


def compile_forest(
    forest: Forest,
    path: str | os.PathLike[str] | None = None,
    *,
    nthread: int | None = None,
    parallel_comp: int | None = None,
    cache: bool = True,
    verbose: int = 1,
) -> CompiledForest:
    """Compile ``forest`` into a shared library and load it: generate, build (cached), load.

    The parameters are :func:`treeslim.compile`'s, which takes any model and comes here.
    """
    threads = nthread or os.cpu_count() or 1
    units = parallel_comp or int(min(32, max(1, forest.n_trees // 100)))
    options = {"parallel_comp": units}
    key = forest_hash(forest, options)
    target = cache_dir() / "models" / f"model-{key}.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    with BUILD_LOCK:
        if not (cache and target.exists()):
            build_library(
                forest,
                target,
                nthread=threads,
                parallel_comp=units,
                verbose=verbose,
            )
    if path is not None:
        write_atomic(path, target.read_bytes())
    return CompiledForest(forest, target, nthread=threads)


class CompiledForest:
    """A compiled Forest: ``predict`` / ``predict_margin`` as :class:`~treeslim.Forest` gives them.

    One row (a 1-D array or shape (1, d)) goes through the compiled row function with no per-call
    allocation beyond the result; batches go through the tree-at-a-time kernel with ``nthread``
    threads. Calls are thread-safe.
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
        c_ptr = ctypes.c_void_p
        self._row1 = {}
        self._rows = {}
        for suffix, dt in (("f64", np.float64), ("f32", np.float32)):
            fn = getattr(lib, f"ts_row1_{suffix}")
            fn.argtypes = [ctypes.c_char_p, ctypes.c_int]  # bytes pass as a pointer, no copy
            fn.restype = ctypes.c_double
            self._row1[np.dtype(dt)] = fn
            fn = getattr(lib, f"ts_rows_{suffix}")
            fn.argtypes = [c_ptr, ctypes.c_int64, ctypes.c_int, c_ptr]
            fn.restype = None
            self._rows[np.dtype(dt)] = fn
        self.n_outputs = int(lib.ts_nout())
        self._kernel = KernelForest(forest)
        self._d = forest.num_feature
        self._single = forest.n_outputs == 1 and self.n_outputs == 1

    def __repr__(self) -> str:
        return f"CompiledForest({self.forest!r}, lib={self.libpath.name})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_reload, (self.forest, str(self.libpath), self.nthread))

    def _one_row(self, X: Any, margin: int) -> float | None:
        """The fast path: one float32/float64 row of the right width, else None.

        ``X.tobytes()`` (a few hundred bytes) is cheaper than asking numpy for a pointer, and
        ctypes hands the bytes to C as a pointer; each call has its own copy, so threads are safe.
        """
        if self._single and type(X) is np.ndarray and X.size == self._d and X.ndim <= 2:
            fn = self._row1.get(X.dtype)
            if fn is not None:
                return float(fn(X.tobytes(), margin))
        return None

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
        Xc = self._kernel.prepare(X)
        if len(Xc) <= ROWWISE_MAX_ROWS:
            return self._rowwise(Xc, margin=True)
        out = self._kernel.margin_prepared(Xc, nthread or self.nthread)
        return out[:, 0] if self.forest.n_outputs == 1 else out

    def predict_rowwise(self, X: Any, *, margin: bool = False) -> NDArray[np.float64]:
        """Score row by row through TL2cgen's generated code (its own batch strategy; for
        comparison and tests)."""
        return self._rowwise(self._kernel.prepare(X), margin=margin)

    def _rowwise(self, Xc: NDArray[Any], *, margin: bool) -> NDArray[np.float64]:
        fn = self._rows[Xc.dtype]
        out = np.empty((Xc.shape[0], self.n_outputs))
        fn(Xc.ctypes.data, Xc.shape[0], int(margin), out.ctypes.data)
        return out[:, 0] if self.n_outputs == 1 else out


def _reload(forest: Forest, libpath: str, nthread: int) -> CompiledForest:
    if not os.path.exists(libpath):
        return compile_forest(forest, nthread=nthread)
    return CompiledForest(forest, libpath, nthread=nthread)
