"""Compile a Forest to a shared library with Treelite + TL2cgen, and score it with little overhead.

``compile(forest)`` builds the Treelite model, has TL2cgen generate C (split into translation
units for big models), adds a small shim of our own, builds everything with the system C compiler
(translation units in parallel), and caches the library under a content hash of the model and the
options. :class:`CompiledForest` then scores:

- one row through the shim's row function, called straight through ctypes: no DMatrix, no per-call
  buffers on the Python side; the shim keeps TL2cgen's input buffer on the C stack, so concurrent
  calls from several threads are safe;
- a batch through treeslim's tree-at-a-time C kernel (``_kernel.py``), with a thread count.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from numpy.typing import NDArray

from ._errors import TreeSlimError
from ._io import write_atomic
from ._kernel import (
    CompilerError,
    KernelForest,
    cache_dir,
    find_compiler,
    run_compiler,
)
from ._thresholds import float32_thresholds

if TYPE_CHECKING:
    from .forest import Forest

__all__ = ["CompiledForest", "CompilerError", "compile"]

_SHIM = r"""
#include "header.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#define TS_NOUT (N_TARGET * MAX_N_CLASS)

void ts_predict_noq(union Entry* data, int pred_margin, TS_LEAF_T* result);

/* Entries are quantized here, not in TL2cgen's predict: TL2cgen marks a missing value by
 * writing -1 into the low 32 bits of the union, which a float64 value can also hold (LightGBM
 * thresholds often do), so it would take such a value for missing. Quantized indices are never
 * -1, so after this fill "missing" is unambiguous. */
#define TS_DEFINE(SUFFIX, IN_T)                                                     \
  static inline void ts_fill_##SUFFIX(union Entry* e, const IN_T* x, int d) {       \
    for (int i = 0; i < d; ++i) {                                                   \
      if (isnan(x[i])) { memset(&e[i], 0xff, sizeof(e[i])); }                       \
      else { e[i].qvalue = quantize((TS_ENTRY_T)(TS_INPUT_T)x[i], (unsigned)i); }   \
    }                                                                               \
  }                                                                                 \
  /* one row, one output: the value is returned, nothing is allocated */            \
  double ts_row1_##SUFFIX(const IN_T* x, int margin) {                              \
    union Entry e[TS_NFEAT];                                                        \
    TS_LEAF_T r[TS_NOUT] = {0};                                                     \
    ts_fill_##SUFFIX(e, x, TS_NFEAT);                                               \
    ts_predict_noq(e, margin, r);                                                   \
    return (double)r[0];                                                            \
  }                                                                                 \
  /* n rows, row at a time (TL2cgen's own way), outputs into out (n, TS_NOUT) */    \
  void ts_rows_##SUFFIX(const IN_T* X, int64_t n, int margin, double* out) {        \
    union Entry e[TS_NFEAT];                                                        \
    for (int64_t i = 0; i < n; ++i) {                                               \
      TS_LEAF_T r[TS_NOUT] = {0};                                                   \
      ts_fill_##SUFFIX(e, X + i * TS_NFEAT, TS_NFEAT);                              \
      ts_predict_noq(e, margin, r);                                                 \
      for (int k = 0; k < TS_NOUT; ++k) out[i * TS_NOUT + k] = (double)r[k];        \
    }                                                                               \
  }

TS_DEFINE(f64, double)
TS_DEFINE(f32, float)

int ts_nout(void) { return TS_NOUT; }
"""

_BUILD_LOCK = threading.Lock()
#: Batches up to this size go row by row through the compiled code; larger ones through the
#: tree-at-a-time kernel (measured crossover: 2-4 rows on a 500-tree model, benchmarks/latency.py).
ROWWISE_MAX_ROWS = 2
_CFLAGS = ["-O2", "-fPIC", "-std=c99", "-fno-math-errno"]


def _forest_hash(forest: Forest, options: dict[str, Any]) -> str:
    import tl2cgen
    import treelite

    h = hashlib.sha256()
    for name in (
        "split_index",
        "threshold",
        "cleft",
        "cright",
        "default_left",
        "leaf_value",
        "tree_offsets",
        "tree_class",
        "base_score",
    ):
        h.update(np.ascontiguousarray(getattr(forest, name)).tobytes())
    header = (
        forest.num_feature,
        forest.task,
        forest.num_class,
        forest.postprocessor,
        forest.sigmoid_alpha,
        forest.average,
        forest.comparison,
        forest.feature_dtype,
    )
    h.update(
        repr(
            (header, sorted(options.items()), tl2cgen.__version__, treelite.__version__, _SHIM)
        ).encode()
    )
    return h.hexdigest()[:24]


def _generate(forest: Forest, build: Path, parallel_comp: int, verbose: bool) -> list[Path]:
    import tl2cgen

    from .backends.treelite import to_treelite

    # class indices (XGBoost multi:softmax) are taken from the probabilities in Python
    tl_forest = (
        forest.replace(postprocessor="softmax") if forest.postprocessor == "argmax" else forest
    )
    model = to_treelite(tl_forest, threshold_type=_threshold_type(forest))
    # quantized (integer) comparisons are what makes the missing-value marker unambiguous, and
    # several translation units keep predict() small enough to copy (see _predict_without_quantize)
    params: dict[str, Any] = {"quantize": 1, "parallel_comp": max(2, parallel_comp)}
    with _quiet(not verbose):
        tl2cgen.generate_c_code(model, str(build), params=params)
    _exact_threshold_table(build / "quantize.c", forest)
    _predict_without_quantize(build / "main.c")
    header = (build / "header.h").read_text()
    entry = re.search(r"union Entry \{[^}]*?(float|double) fvalue;", header, re.S)
    leaf = re.search(r"void predict\(union Entry\* data, int pred_margin, (float|double)\*", header)
    if entry is None or leaf is None:
        raise TreeSlimError(
            "TL2cgen generated a header this version of treeslim does not recognise; "
            f"tl2cgen {tl2cgen.__version__} may be too new."
        )
    shim = (
        f"#define TS_ENTRY_T {entry.group(1)}\n#define TS_LEAF_T {leaf.group(1)}\n"
        f"#define TS_NFEAT {forest.num_feature}\n"
        f"#define TS_INPUT_T {'float' if forest.feature_dtype == 'float32' else 'double'}\n" + _SHIM
    )
    (build / "treeslim_shim.c").write_text(shim)
    return sorted(build.glob("*.c"))


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence TL2cgen's and its bundled Treelite's log lines (they write to fds 1 and 2)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _threshold_type(forest: Forest) -> Literal["float32", "float64"]:
    """Float32 models (XGBoost, scikit-learn) compile with float32 thresholds, moved exactly."""
    return "float32" if forest.feature_dtype == "float32" else "float64"


def _predict_without_quantize(path: Path) -> None:
    """Append ``ts_predict_noq``: TL2cgen's ``predict`` without its input-quantizing loop.

    ``predict`` itself stays, so TL2cgen's own Predictor can still load the library.
    """
    src = path.read_text()
    m = re.search(
        r"void predict\(union Entry\* data, int pred_margin, (float|double)\* result\) \{", src
    )
    if m is None:
        raise TreeSlimError("TL2cgen's main.c has no predict(); unsupported tl2cgen version.")
    end = src.index("\n}\n", m.start()) + 3
    body = src[m.start() : end]
    loop = re.search(
        r"// Quantize data\s*for \(int i = 0; i < \d+; \+\+i\) \{\s*if \([^{]*\) \{\s*"
        r"data\[i\]\.qvalue = quantize\(data\[i\]\.fvalue, i\);\s*\}\s*\}",
        body,
    )
    if loop is None:
        raise TreeSlimError(
            "TL2cgen's predict() has no quantize loop; unsupported tl2cgen version."
        )
    noq = body[: loop.start()] + body[loop.end() :]
    path.write_text(src + "\n" + noq.replace("void predict(", "void ts_predict_noq(", 1))


def _c_int_array(src: str, name: str) -> list[int]:
    m = re.search(r"static const int " + name + r"\[\] = \{([^}]*)\}", src)
    if m is None:
        raise TreeSlimError(
            f"TL2cgen's quantize.c has no {name} table; unsupported tl2cgen version."
        )
    return [int(v) for v in m.group(1).replace("\n", " ").split(",") if v.strip()]


def _exact_threshold_table(path: Path, forest: Forest) -> None:
    """Rewrite TL2cgen's threshold table with exact hexadecimal literals.

    TL2cgen prints float32 thresholds with 8 significant digits, which does not round-trip: inputs
    equal to such a threshold then go the wrong way. The table holds each feature's distinct
    thresholds in increasing order, so it can be rebuilt from the forest itself.
    """
    src = path.read_text()
    begin = _c_int_array(src, "th_begin")
    length = _c_int_array(src, "th_len")
    m = re.search(r"static const (float|double) threshold\[\] = \{[^}]*\}", src)
    if m is None:
        raise TreeSlimError("TL2cgen's quantize.c has no threshold table; unsupported version.")
    values: list[str] = []
    inner = forest.split_index >= 0
    for j in range(forest.num_feature):
        t = forest.threshold[inner & (forest.split_index == j)]
        if m.group(1) == "float":
            t = float32_thresholds(t, forest.comparison).astype(np.float64)
        t = np.unique(t)
        if len(t) != length[j] or begin[j] != len(values):
            raise TreeSlimError(
                f"TL2cgen's threshold table for feature {j} has {length[j]} entries, the model"
                f" {len(t)}; cannot make it exact."
            )
        values.extend(float(v).hex() for v in t)
    table = (
        f"static const {m.group(1)} threshold[] = {{\n  " + ",\n  ".join(values or ["0"]) + "\n}"
    )
    path.write_text(src[: m.start()] + table + src[m.end() :])


def _build(forest: Forest, target: Path, *, nthread: int, parallel_comp: int, verbose: int) -> None:
    from ._progress import Progress

    cc = find_compiler()
    with (
        tempfile.TemporaryDirectory(prefix="treeslim-build-") as tmp,
        Progress(2, "treeslim compile", verbose=int(verbose)) as bar,
    ):
        build = Path(tmp)
        sources = _generate(forest, build, parallel_comp, verbose >= 2)
        bar.add(len(sources))
        bar.update(note="C generated")

        def compile_one(src: Path) -> Path:
            obj = src.with_suffix(".o")
            run_compiler([cc, *_CFLAGS, "-c", str(src), "-o", str(obj)], f"{src.name}")
            bar.update(note=src.name)
            return obj

        with ThreadPoolExecutor(max_workers=max(1, nthread)) as pool:
            objects = list(pool.map(compile_one, sources))
        out = build / "model.so"
        run_compiler(
            [cc, "-shared", "-o", str(out), *map(str, objects), "-lm"], "the model library"
        )
        bar.update(note="linked")
        fd, tmp_target = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        shutil.copyfile(out, tmp_target)
        os.replace(tmp_target, target)


def compile(
    forest: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    nthread: int | None = None,
    parallel_comp: int | None = None,
    cache: bool = True,
    verbose: int = 1,
) -> CompiledForest:
    """Compile ``forest`` into a shared library and load it.

    Parameters
    ----------
    forest : Forest or fitted model
        Anything :func:`treeslim.from_model` accepts.
    path : path-like, optional
        Also copy the library there (atomically), e.g. for deployment.
    nthread : int, optional
        Threads for building (parallel compiler processes) and the default for batch scoring;
        all cores by default.
    parallel_comp : int, optional
        Translation units TL2cgen splits the trees into (default: one per ~100 trees, at least
        2, at most 32). Thresholds are always quantized (TL2cgen's ``quantize``: integer
        comparisons against per-feature threshold tables, which treeslim makes exact).
    cache : bool, default=True
        Reuse a library built before for the same model and options.
    verbose : int, default=1
        0: silent; 1: a progress bar of the build on a terminal; 2: always, with TL2cgen's own
        messages.

    Returns
    -------
    CompiledForest

    Raises
    ------
    CompilerError
        No C compiler, or the build failed; the message says what to install.
    """
    from .frontends import from_model

    forest = from_model(forest)
    threads = nthread or os.cpu_count() or 1
    units = parallel_comp or int(min(32, max(1, forest.n_trees // 100)))
    options = {"parallel_comp": units}
    key = _forest_hash(forest, options)
    target = cache_dir() / "models" / f"model-{key}.so"
    target.parent.mkdir(parents=True, exist_ok=True)
    with _BUILD_LOCK:
        if not (cache and target.exists()):
            _build(
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
        from ._predict import apply_postprocessor

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
        return compile(forest, nthread=nthread)
    return CompiledForest(forest, libpath, nthread=nthread)
