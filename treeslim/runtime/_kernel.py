"""The native batch kernel: tree-at-a-time traversal of a Forest in C, over blocks of rows.

``csrc/forest_kernel.c`` is compiled once per machine with the C compiler that ``compile()``
needs anyway (gcc / cc) and cached. Big batches are split into row ranges scored on blocking
worker threads (:func:`run_in_ranges`); small ones stay on the calling thread. :class:`KernelForest` lays a
Forest out for it: siblings side by side, leaves looping onto themselves, thresholds converted
exactly to the precision the model compares in (float32 for XGBoost and scikit-learn, whose inputs
are float32; float64 for LightGBM).

Built with ``-march=native`` on a CPU with AVX-512 (F, VL, DQ), the kernel walks 16 float / 8
double rows (or, for one row, trees) per vector instruction, from padded tree tops built once per
model (``ts_pack_new_*``); elsewhere, or with ``TREESLIM_KERNEL_PORTABLE=1`` (``-DTS_NO_SIMD``, cached
under its own key), the portable C walk. Both give the same sums, bit for bit.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import tempfile
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from treeslim._utils import float32_thresholds, write_atomic
from treeslim.ir import check_X
from treeslim.runtime._toolchain import (
    cache_dir,
    find_compiler,
    machine_tag,
    run_compiler,
)

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = [
    "KERNEL_SOURCE",
    "PARALLEL_MIN_STEPS",
    "ROW_WALK_MAX_ROWS",
    "KernelForest",
    "KernelLayout",
    "plan_ranges",
    "run_in_ranges",
]

_SRC = Path(__file__).with_name("csrc") / "forest_kernel.c"
#: The kernel's C source: built here once per machine, and included as it is in the engine of
#: compiled model libraries (treeslim.backends.tl2cgen).
KERNEL_SOURCE = _SRC
_LOCK = threading.Lock()


def _load_kernel(portable: bool = False) -> ctypes.CDLL:
    """Build (once per machine and source) and load the kernel. ``portable``: without the SIMD
    walk (``-DTS_NO_SIMD``), the plain C one every compiler builds; cached under its own key."""
    source = _SRC.read_bytes()
    cc = find_compiler()
    flags = ["-O3", "-march=native", "-fPIC", "-shared", "-std=c99"]
    if portable:
        flags.append("-DTS_NO_SIMD")
    key = hashlib.sha256(source + " ".join([cc, *flags, machine_tag()]).encode()).hexdigest()[:16]
    target = cache_dir() / f"kernel-{key}{'.dll' if sys.platform == 'win32' else '.so'}"
    with _LOCK:
        if not target.exists():
            with tempfile.TemporaryDirectory(prefix="treeslim-kernel-") as tmp:
                built = os.path.join(tmp, target.name)
                run_compiler(
                    [cc, *flags, str(_SRC), "-o", built, "-lm"], "the treeslim batch kernel"
                )
                write_atomic(target, Path(built).read_bytes(), executable=True)
        lib = ctypes.CDLL(str(target))
    ptr, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    for t in ("float", "double"):
        fn = getattr(lib, f"ts_margin_{t}")
        # X, n, d, thr, child, feat_dl, roots, depths, tree_out, n_trees, values, width, n_out,
        # strict, cats, f32sum, out
        fn.argtypes = [ptr, i64, i32, ptr, ptr, ptr, ptr, ptr, ptr, i32, ptr, i32, i32,
                       ctypes.c_int, ptr, ctypes.c_int, ptr]  # fmt: skip
        fn.restype = None
        fn = getattr(lib, f"ts_leaves_{t}")
        # X, n, d, thr, child, feat_dl, roots, depths, n_trees, strict, cats, leaves
        fn.argtypes = [ptr, i64, i32, ptr, ptr, ptr, ptr, ptr, i32, ctypes.c_int, ptr, ptr]
        fn.restype = None
        fn = getattr(lib, f"ts_row_{t}")  # x, model, out
        fn.argtypes = [ptr, ptr, ptr]
        fn.restype = None
        fn = getattr(lib, f"ts_rows_{t}")  # X, n, d, model, out
        fn.argtypes = [ptr, i64, i32, ptr, ptr]
        fn.restype = None
        fn = getattr(lib, f"ts_row1_{t}")  # x (bytes, no copy), model -> raw sum
        fn.argtypes = [ctypes.c_char_p, ptr]
        fn.restype = ctypes.c_double
        fn = getattr(lib, f"ts_pack_new_{t}")  # model, kfull, kpart -> pack (NULL: none)
        fn.argtypes = [ptr, i32, i32]
        fn.restype = ptr
        fn = getattr(lib, f"ts_margin_pack_{t}")  # X, n, d, model, pack, out
        fn.argtypes = [ptr, i64, i32, ptr, ptr, ptr]
        fn.restype = None
        fn = getattr(lib, f"ts_row1_pack_{t}")  # x (bytes, no copy), model, pack -> raw sum
        fn.argtypes = [ctypes.c_char_p, ptr, ptr]
        fn.restype = ctypes.c_double
        fn = getattr(lib, f"ts_rows_pack_{t}")  # X, n, d, model, pack, out
        fn.argtypes = [ptr, i64, i32, ptr, ptr, ptr]
        fn.restype = None
    lib.ts_pack_free.argtypes = [ptr]
    lib.ts_pack_free.restype = None
    lib.ts_kernel_simd.argtypes = []
    lib.ts_kernel_simd.restype = ctypes.c_int
    return lib


class _Model(ctypes.Structure):
    """The C kernel's ``ts_model``: a Forest's kernel arrays, passed to a row call as one pointer."""

    _fields_ = [(name, ctypes.c_void_p) for name in
                ("thr", "child", "fdl", "depths", "tree_out", "values", "order")] + [
        (name, ctypes.c_int32)
        for name in ("n_trees", "width", "n_out", "strict", "f32sum", "refill")
    ] + [("init", ctypes.c_double)]  # fmt: skip


class _Cats(ctypes.Structure):
    """The C kernel's ``ts_cats``: a forest's categorical splits."""

    _fields_ = [("set", ctypes.c_void_p), ("bits", ctypes.c_void_p), ("words", ctypes.c_int32),
                ("lgb", ctypes.c_int32)]  # fmt: skip


_KERNELS: dict[bool, ctypes.CDLL] = {}
#: The SIMD walk's padded tops (ts_pack): trees up to this deep get all their levels, deeper ones
#: their first PACK_PART levels (measured on 500-tree XGBoost depth-6 and LightGBM 63-leaf models,
#: benchmarks/kernel_ab.py).
PACK_FULL = 8
PACK_PART = 6

#: A batch is split over threads only when each thread gets at least this many level steps
#: (rows x summed tree depths; about 1-3 ms of kernel time). Below it the whole batch runs on the
#: calling thread: handing work to another thread costs tens of microseconds when a core is free
#: and a scheduler time slice (milliseconds) when every core is busy, as on a loaded server.
PARALLEL_MIN_STEPS = 2_000_000
_BLOCK = 128  # rows per block in the C kernel; ranges are cut at block boundaries
_ROW_CHUNK = 512  # TS_CHUNK of the C kernel: trees per chunk of the one-row walk
#: Batches up to this many rows are walked a row at a time (trees side by side), larger ones by
#: the blocked kernel (measured crossover with the AVX-512 walks on 500-tree models: about 16 rows
#: for XGBoost depth 6, 10-12 for LightGBM 63 leaves; benchmarks/kernel_ab.py).
ROW_WALK_MAX_ROWS = 12
_PORTABLE_ROW_WALK_MAX_ROWS = 8  # the same crossover without the SIMD walks (no pack)
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """Worker threads for big batches. They block on a queue while idle (no spinning), and the
    kernel runs without the GIL (ctypes releases it), so they really run in parallel."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                       thread_name_prefix="treeslim-kernel")  # fmt: skip
        return _POOL


def plan_ranges(n: int, steps_per_row: int, nthread: int) -> list[tuple[int, int]]:
    """Row ranges to score in parallel: one per thread that gets at least
    :data:`PARALLEL_MIN_STEPS` of work, at most ``nthread``, cut at block boundaries."""
    threads = max(1, min(int(nthread), n * max(1, steps_per_row) // PARALLEL_MIN_STEPS))
    if threads == 1:
        return [(0, n)]
    size = -(-n // threads // _BLOCK) * _BLOCK
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


def run_in_ranges(
    run: Callable[[int, int], None], n: int, steps_per_row: int, nthread: int
) -> None:
    """``run(lo, hi)`` over the ranges of :func:`plan_ranges`: the first on the calling thread,
    the others on the pool; returns when all are done."""
    ranges = plan_ranges(n, steps_per_row, nthread)
    if n == 0:
        return
    futures = [_pool().submit(run, lo, hi) for lo, hi in ranges[1:]]
    run(*ranges[0])
    for fut in futures:
        fut.result()


def kernel(portable: bool | None = None) -> ctypes.CDLL:
    """The compiled kernel library (built on first use, then cached on disk). ``portable``: the
    build without the SIMD walk; None reads ``$TREESLIM_KERNEL_PORTABLE`` (set and not "0")."""
    if portable is None:
        portable = os.environ.get("TREESLIM_KERNEL_PORTABLE", "0") not in ("", "0")
    lib = _KERNELS.get(portable)
    if lib is None:
        lib = _KERNELS[portable] = _load_kernel(portable)
    return lib


class KernelLayout:
    """A Forest laid out in the C kernel's arrays (no native code involved): what
    :class:`KernelForest` hands the per-machine kernel, and what a compiled model library embeds
    as static data (:mod:`treeslim.backends.tl2cgen`)."""

    def __init__(self, forest: Forest) -> None:
        self.forest = forest
        self.dtype = np.float32 if forest.feature_dtype == "float32" else np.float64
        n_trees = forest.n_trees
        split, cl, cr = forest.split_index, forest.cleft, forest.cright
        new_id = np.empty(forest.n_nodes, dtype=np.int64)
        frontier = forest.tree_offsets[:-1].astype(np.int64)
        new_id[frontier] = np.arange(n_trees)
        order = [frontier]
        nxt = n_trees
        while len(frontier):
            inner = frontier[split[frontier] >= 0]
            kids = np.stack([cl[inner], cr[inner]], axis=1).ravel().astype(np.int64)
            new_id[kids] = nxt + np.arange(len(kids))
            nxt += len(kids)
            order.append(kids)
            frontier = kids
        old = np.concatenate(order)  # old node id at each new position
        level = np.repeat(np.arange(len(order)), [len(o) for o in order])
        leaf = split[old] < 0
        tree_of = np.repeat(np.arange(n_trees), np.diff(forest.tree_offsets))[old]
        thr: NDArray[Any] = forest.threshold[old]
        if self.dtype == np.float32:
            thr = float32_thresholds(thr, forest.comparison)
        # struct of arrays (16-byte node structs measured slower on the one-row walk)
        self.thr = np.ascontiguousarray(np.where(leaf, np.nan, thr), dtype=self.dtype)
        self.child = np.ascontiguousarray(
            np.where(leaf, np.arange(len(old)), new_id[np.where(leaf, 0, cl[old])]), dtype=np.int32
        )
        # feature * 8 + right child is a leaf * 4 + left child is a leaf * 2 + default left
        kid_leaf = leaf[self.child] * 2 + leaf[np.minimum(self.child + 1, len(old) - 1)] * 4
        self.feat_dl = np.ascontiguousarray(
            np.where(
                leaf, 7, split[old].astype(np.int64) * 8 + kid_leaf + forest.default_left[old]
            ),
            dtype=np.int32,
        )
        self.old_ids = old
        self.roots = np.arange(n_trees, dtype=np.int32)
        # each tree's depth, then the level from which the batch walk asks which rows reached a
        # leaf: the shallowest leaf's in unbalanced trees (under an eighth of the leaves a complete
        # tree of that depth has: LightGBM's leaf-wise growth), else the depth (no asking)
        min_leaf = np.full(n_trees, np.iinfo(np.int32).max, dtype=np.int64)
        np.minimum.at(min_leaf, tree_of[leaf], level[leaf])
        n_leaves = np.bincount(tree_of[leaf], minlength=n_trees)
        unbalanced = n_leaves * 8 < 2.0**forest.tree_depths
        self.depths = np.ascontiguousarray(np.concatenate(
            [forest.tree_depths, np.where(unbalanced, min_leaf, forest.tree_depths)]),
            dtype=np.int32)  # fmt: skip
        self.tree_out = np.ascontiguousarray(np.maximum(forest.tree_class, 0), dtype=np.int32)
        self.values = np.ascontiguousarray(forest.leaf_value[old], dtype=np.float64)
        self.strict = 1 if forest.comparison == "<" else 0
        self.steps_per_row = int(forest.tree_depths.sum())  # level steps one row costs
        # XGBoost's float32 sum starts at the float32 base score; the float64 sum at 0, and the
        # base score (and averaging) come after it
        self.f32sum = int(forest.margin_dtype == "float32")
        base32 = forest.base_score.astype(np.float32).astype(np.float64)
        self.init = base32 if self.f32sum else np.zeros(forest.n_outputs)
        # row_margin = raw sum / div + base, as margin_prepared computes it (the float32 sum
        # has its base in it already)
        self._row_div = float(forest.trees_per_output) if forest.average else 1.0
        self._row_base = 0.0 if self.f32sum else float(forest.base_score[0])
        # categorical splits: per node the bitset row (-1: numerical), the bitsets, the rule
        self.cat_set: NDArray[np.int32] | None = None
        self.cat_bits: NDArray[np.uint32] | None = None
        self.cat_lgb = int(forest.category_rule == "lightgbm")
        if forest.cat_index is not None and forest.cat_bitsets is not None:
            # leaves are never categorical, so the loop onto themselves stays as it is
            self.cat_set = np.ascontiguousarray(forest.cat_index[old], dtype=np.int32)
            self.cat_bits = np.ascontiguousarray(forest.cat_bitsets, dtype=np.uint32)
        # the one-row walk visits each chunk's trees by depth (leaves are still summed in order)
        chunk = _ROW_CHUNK
        self.walk_order = np.concatenate(
            [lo + np.argsort(forest.tree_depths[lo : lo + chunk], kind="stable")
             for lo in range(0, n_trees, chunk)]
        ).astype(np.int32)  # fmt: skip
        self.refill = int(unbalanced.mean() > 0.5)  # the one-row walk's schedule (ts_model)
        self.single_output = forest.n_outputs == 1 and forest.leaf_width == 1


class KernelForest(KernelLayout):
    """A Forest laid out for the C kernel; ``margin(X)`` and ``leaves(X)`` are thread-safe."""

    def __init__(
        self,
        forest: Forest,
        *,
        portable: bool | None = None,
        pack_levels: tuple[int, int] | None = None,
    ) -> None:
        """``portable``: use the kernel built without the SIMD walk (None: as
        ``$TREESLIM_KERNEL_PORTABLE`` says). ``pack_levels``: (full, part) for the SIMD walk's
        padded tops, default (:data:`PACK_FULL`, :data:`PACK_PART`); (-1, -1) scores without them
        (tops found per call)."""
        super().__init__(forest)
        self._cats_ptr: int | None = None
        if self.cat_set is not None and self.cat_bits is not None:
            self._cats = _Cats(self.cat_set.ctypes.data, self.cat_bits.ctypes.data,
                               self.cat_bits.shape[1], self.cat_lgb)  # fmt: skip
            self._cats_ptr = ctypes.addressof(self._cats)
        self._lib = kernel(portable)
        suffix = "float" if self.dtype == np.float32 else "double"
        self._margin = getattr(self._lib, f"ts_margin_{suffix}")
        self._leaves = getattr(self._lib, f"ts_leaves_{suffix}")
        self._rows = getattr(self._lib, f"ts_rows_{suffix}")
        self._row1 = getattr(self._lib, f"ts_row1_{suffix}")
        self._model = _Model(
            self.thr.ctypes.data, self.child.ctypes.data, self.feat_dl.ctypes.data,
            self.depths.ctypes.data, self.tree_out.ctypes.data, self.values.ctypes.data,
            self.walk_order.ctypes.data, forest.n_trees, forest.leaf_width, forest.n_outputs,
            self.strict, self.f32sum, self.refill, float(self.init[0]),
        )  # fmt: skip
        self._model_ptr = ctypes.addressof(self._model)
        # the SIMD walk's padded tops, built once in C (None: a portable build, or categorical
        # splits, which take the portable walk)
        self._pack: int | None = None
        full, part = pack_levels or (PACK_FULL, PACK_PART)
        self.simd = bool(self._lib.ts_kernel_simd()) and self._cats_ptr is None
        if self.simd and full >= 0:
            self._pack = getattr(self._lib, f"ts_pack_new_{suffix}")(self._model_ptr, full, part)
            if self._pack:
                weakref.finalize(self, self._lib.ts_pack_free, self._pack)
                self._margin_pack = getattr(self._lib, f"ts_margin_pack_{suffix}")
                self._row1_pack = getattr(self._lib, f"ts_row1_pack_{suffix}")
                self._rows_pack = getattr(self._lib, f"ts_rows_pack_{suffix}")
        self._row_walk_max = ROW_WALK_MAX_ROWS if self._pack else _PORTABLE_ROW_WALK_MAX_ROWS

    def prepare(self, X: Any) -> NDArray[Any]:
        """``X`` validated and converted to the kernel's dtype, C-ordered."""
        return check_X(self.forest, X, dtype=self.dtype)

    def raw_sum(self, Xc: NDArray[Any], nthread: int = 1) -> NDArray[np.float64]:
        """Summed leaf values (n, n_outputs) of prepared rows, without averaging; from the float32
        base score for float32 sums (XGBoost's order), else without it."""
        f = self.forest
        out = np.tile(self.init, (Xc.shape[0], 1))

        def run(lo: int, hi: int) -> None:
            if self._pack:
                self._margin_pack(Xc[lo:].ctypes.data, hi - lo, f.num_feature, self._model_ptr,
                                  self._pack, out[lo:].ctypes.data)  # fmt: skip
                return
            self._margin(Xc[lo:].ctypes.data, hi - lo, f.num_feature, self.thr.ctypes.data,
                         self.child.ctypes.data, self.feat_dl.ctypes.data, self.roots.ctypes.data,
                         self.depths.ctypes.data, self.tree_out.ctypes.data, f.n_trees,
                         self.values.ctypes.data, f.leaf_width, f.n_outputs, self.strict,
                         self._cats_ptr, self.f32sum, out[lo:].ctypes.data)  # fmt: skip

        run_in_ranges(run, Xc.shape[0], self.steps_per_row, nthread)
        return out

    def margin(self, X: Any, nthread: int = 1) -> NDArray[np.float64]:
        """Margins (n, n_outputs), as :meth:`Forest.predict_margin` computes them."""
        return self.margin_prepared(self.prepare(X), nthread)

    def margin_prepared(self, Xc: NDArray[Any], nthread: int = 1) -> NDArray[np.float64]:
        """:meth:`margin` of rows already passed through :meth:`prepare`: up to
        :data:`ROW_WALK_MAX_ROWS` rows walked one at a time, more by the blocked kernel (the same
        sums either way)."""
        f = self.forest
        if Xc.shape[0] <= self._row_walk_max and self._cats_ptr is None:
            out = self.rows_raw_sum(Xc)
        else:
            out = self.raw_sum(Xc, nthread)
        if f.average:
            out /= f.trees_per_output
        if not self.f32sum:
            out += f.base_score
        return out

    def row_margin(self, row: bytes) -> float:
        """The margin of one row of a single-output forest (bytes as for :meth:`row_raw_sum`)."""
        return self.row_raw_sum(row) / self._row_div + self._row_base

    def row_raw_sum(self, row: bytes) -> float:
        """Summed leaf values of one row of a single-output forest, given as the bytes of a
        C-ordered row in the kernel's dtype (``row.tobytes()``). The fastest call there is: one
        pointer to the model, trees walked eight at a time; the sum is the one
        :meth:`raw_sum` gives. (Forests with categorical splits take the blocked kernel.)"""
        if self._cats_ptr is not None:
            return float(self.raw_sum(np.frombuffer(row, dtype=self.dtype).reshape(1, -1))[0, 0])
        if self._pack:
            return float(self._row1_pack(row, self._model_ptr, self._pack))
        return float(self._row1(row, self._model_ptr))

    def rows_raw_sum(self, Xc: NDArray[Any]) -> NDArray[np.float64]:
        """:meth:`raw_sum` of prepared rows, each walked by the one-row code (for small batches,
        where the blocked kernel has too few rows to overlap); the same sums."""
        if self._cats_ptr is not None:
            return self.raw_sum(Xc)
        out = np.tile(self.init, (Xc.shape[0], 1))
        if self._pack:
            self._rows_pack(Xc.ctypes.data, Xc.shape[0], self.forest.num_feature,
                            self._model_ptr, self._pack, out.ctypes.data)  # fmt: skip
            return out
        self._rows(Xc.ctypes.data, Xc.shape[0], self.forest.num_feature, self._model_ptr,
                   out.ctypes.data)  # fmt: skip
        return out

    def leaves(self, X: Any, nthread: int = 1) -> NDArray[np.int64]:
        """Global Forest node index of the leaf each row reaches in each tree, (n, n_trees)."""
        Xc = self.prepare(X)
        f = self.forest
        out = np.empty((Xc.shape[0], f.n_trees), dtype=np.int32)

        def run(lo: int, hi: int) -> None:
            self._leaves(Xc[lo:].ctypes.data, hi - lo, f.num_feature, self.thr.ctypes.data,
                         self.child.ctypes.data, self.feat_dl.ctypes.data, self.roots.ctypes.data,
                         self.depths.ctypes.data, f.n_trees, self.strict, self._cats_ptr,
                         out[lo:].ctypes.data)  # fmt: skip

        run_in_ranges(run, Xc.shape[0], self.steps_per_row, nthread)
        return self.old_ids[out]
