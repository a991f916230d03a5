"""The kernel engine of a compiled model: a shared library whose C ABI runs treeslim's own kernel
(``treeslim/runtime/csrc/forest_kernel.c``) over the model's arrays, embedded as static data.

Two objects are linked:

- the engine, ``kernel_abi.c`` (the kernel source included as it is, plus the scoring around it),
  which depends on no model: compiled once per compiler, kernel version and target (``-O3``) and
  cached in ``cache_dir()/objects``;
- the model's file, generated here: :class:`~treeslim.runtime.KernelLayout`'s arrays as C
  literals (exact: hexadecimal floats), a ``ts_abi_model`` over them and the exported C ABI
  (``kernel_front.c``), compiled for the compiler's default target (it checks the CPU before
  entering an engine built for a newer one).

A 500-tree model's file compiles in a fraction of a second: the cost of a compile is its data.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from treeslim._utils import Progress, write_atomic
from treeslim.backends.tl2cgen._codegen import ABI_VERSION, c_string, model_info
from treeslim.runtime import (
    KERNEL_SOURCE,
    ROW_WALK_MAX_ROWS,
    CompilerError,
    KernelLayout,
    cache_dir,
    find_compiler,
    machine_tag,
    run_compiler,
)

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = ["ENGINE_FILES", "build_kernel_library", "cpu_requirements", "kernel_source"]

_HERE = Path(__file__).parent
#: The C of the engine and the front, by file name (part of every model's cache key).
ENGINE_FILES = {
    name: (_HERE / name).read_text()
    for name in ("kernel_abi.c", "kernel_abi.h", "kernel_front.c", "ts_link.h")
}
_ENGINE_FLAGS = ["-O3", "-fPIC", "-std=c99"]
_MODEL_FLAGS = ["-O1", "-fPIC", "-std=c99"]
_LOCK = threading.Lock()

#: x86 extensions a target may need, as the compiler announces them (predefined macros) and as
#: ``__builtin_cpu_supports`` (GCC and Clang) names them: the ones compilers generate code with
#: for plain C (vector widths, FMA, bit manipulation).
_X86_FEATURES = {
    "__SSE3__": "sse3", "__SSSE3__": "ssse3", "__SSE4_1__": "sse4.1", "__SSE4_2__": "sse4.2",
    "__POPCNT__": "popcnt", "__AVX__": "avx", "__AVX2__": "avx2", "__FMA__": "fma",
    "__BMI__": "bmi", "__BMI2__": "bmi2", "__AVX512F__": "avx512f", "__AVX512VL__": "avx512vl",
    "__AVX512BW__": "avx512bw", "__AVX512DQ__": "avx512dq", "__AVX512CD__": "avx512cd",
}  # fmt: skip


def _predefined(cc: str, flags: list[str]) -> set[str]:
    """The macros ``cc`` predefines with ``flags``."""
    try:
        proc = subprocess.run([cc, *flags, "-dM", "-E", "-x", "c", "-"], input="",
                              capture_output=True, text=True, check=False)  # fmt: skip
    except OSError as exc:
        raise CompilerError(f"Could not run the C compiler {cc!r}: {exc}") from exc
    if proc.returncode != 0:
        raise CompilerError(
            f"The C compiler {cc!r} refused {' '.join(flags)}:\n{proc.stderr[-2000:]}"
        )
    return {line.split()[1] for line in proc.stdout.splitlines() if line.startswith("#define ")}


def cpu_requirements(cc: str, march: str | None) -> list[str]:
    """The CPU features (``__builtin_cpu_supports`` names) code built with ``-march=march`` may
    use, on x86; empty for the default target and on other architectures (unchecked there)."""
    if march is None:
        return []
    macros = _predefined(cc, [f"-march={march}"])
    if not macros & {"__x86_64__", "__i386__"}:
        return []
    return [name for macro, name in _X86_FEATURES.items() if macro in macros]


def _engine_flags(march: str | None) -> list[str]:
    return [*_ENGINE_FLAGS, *([f"-march={march}"] if march else [])]


def _engine_object(cc: str, march: str | None) -> Path:
    """The engine object for ``march``, compiled on first use and cached by its sources, the
    compiler and the flags (and this CPU for ``march="native"``)."""
    flags = _engine_flags(march)
    h = hashlib.sha256(KERNEL_SOURCE.read_bytes())
    h.update(repr((sorted(ENGINE_FILES.items()), cc, flags)).encode())
    if march == "native":
        h.update(machine_tag().encode())
    target = cache_dir() / "objects" / f"kernel-abi-{h.hexdigest()[:20]}.o"
    with _LOCK:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="treeslim-engine-") as tmp:
                obj = Path(tmp) / "kernel_abi.o"
                args = [cc, *flags, "-I", str(KERNEL_SOURCE.parent), "-I", str(_HERE), "-c",
                        str(_HERE / "kernel_abi.c"), "-o", str(obj)]  # fmt: skip
                run_compiler(args, "the kernel engine")
                write_atomic(target, obj.read_bytes())
    return target


def _c_array(ctype: str, name: str, values: Iterable[str]) -> str:
    body = ",".join(values) or "0"  # C has no empty initializer list
    return f"static const {ctype} {name}[] = {{{body}}};\n"


def _floats(a: Any, suffix: str) -> list[str]:
    """Exact C literals: hexadecimal floats, NAN and INFINITY (math.h)."""
    out = []
    for v in np.asarray(a, dtype=np.float64).ravel().tolist():
        if v != v:
            out.append("NAN")
        elif v in (np.inf, -np.inf):
            out.append("INFINITY" if v > 0 else "-INFINITY")
        else:
            out.append(v.hex() + suffix)
    return out


def _ints(a: Any) -> list[str]:
    return [str(v) for v in np.asarray(a).ravel().tolist()]


def kernel_source(forest: Forest, march: str | None, requires: list[str]) -> str:
    """The model's C file: its kernel arrays as static data, the model, the exported C ABI."""
    lay = KernelLayout(forest)
    f32 = lay.dtype == np.float32
    target = f"-march={march}" if march else "default"
    check = " && ".join(f'__builtin_cpu_supports("{name}")' for name in requires) or "1"
    cats = lay.cat_set is not None and lay.cat_bits is not None
    parts = [
        f"/* A treeslim model library's data and C ABI ({forest.n_trees} trees, {len(lay.thr)}"
        " nodes): generated by treeslim.backends.tl2cgen._kernel_lib, do not edit. */\n",
        '#include <math.h>\n#include <stddef.h>\n#include <stdint.h>\n#include "kernel_abi.h"\n',
        f"#define TS_ABI_VERSION {ABI_VERSION}\n",
        f"#define TS_MODEL_INFO {c_string(model_info(forest, 'kernel', target))}\n",
        f"#define TS_TARGET {c_string(target)}\n",
        f"#define TS_CPU_OK ({check})\n",
        _c_array("float" if f32 else "double", "ts_thr", _floats(lay.thr, "f" if f32 else "")),
        _c_array("int32_t", "ts_child", _ints(lay.child)),
        _c_array("int32_t", "ts_fdl", _ints(lay.feat_dl)),
        _c_array("int32_t", "ts_roots", _ints(lay.roots)),
        _c_array("int32_t", "ts_depths", _ints(lay.depths)),
        _c_array("int32_t", "ts_tree_out", _ints(lay.tree_out)),
        _c_array("int32_t", "ts_order", _ints(lay.walk_order)),
        _c_array("double", "ts_values", _floats(lay.values, "")),
        _c_array("double", "ts_init", _floats(lay.init, "")),
        _c_array("double", "ts_base", _floats(forest.base_score, "")),
    ]
    if cats:
        assert lay.cat_set is not None and lay.cat_bits is not None
        parts.append(_c_array("int32_t", "ts_cat_set", _ints(lay.cat_set)))
        parts.append(_c_array("uint32_t", "ts_cat_bits", [f"{v}u" for v in _ints(lay.cat_bits)]))
    fields = {
        "layout": "TS_ABI_MODEL_LAYOUT",
        "n_features": forest.num_feature,
        "n_out": forest.n_outputs,
        "n_trees": forest.n_trees,
        "width": forest.leaf_width,
        "f32": int(f32),
        "strict": lay.strict,
        "f32sum": lay.f32sum,
        "refill": lay.refill,
        "row_walk_max": ROW_WALK_MAX_ROWS,
        "average": forest.trees_per_output if forest.average else 0,
        "add_base": int(not lay.f32sum),
        "link": {"identity": 0, "sigmoid": 1, "softmax": 2, "argmax": 2, "exponential": 3}[
            forest.postprocessor
        ],
        "alpha": float(forest.sigmoid_alpha).hex(),
        "thr": "ts_thr",
        "child": "ts_child",
        "fdl": "ts_fdl",
        "roots": "ts_roots",
        "depths": "ts_depths",
        "tree_out": "ts_tree_out",
        "order": "ts_order",
        "values": "ts_values",
        "init": "ts_init",
        "base": "ts_base",
        "cat_set": "ts_cat_set" if cats else "NULL",
        "cat_bits": "ts_cat_bits" if cats else "NULL",
        "cat_words": lay.cat_bits.shape[1] if lay.cat_bits is not None else 0,
        "cat_lgb": lay.cat_lgb,
    }
    body = ",\n".join(f"  .{k} = {v}" for k, v in fields.items())
    parts.append(f"static const ts_abi_model ts_model_data = {{\n{body}\n}};\n")
    parts.append('#include "kernel_front.c"\n')
    return "".join(parts)


def build_kernel_library(
    forest: Forest, target: Path, *, march: str | None, nthread: int, verbose: int
) -> None:
    """Generate the model's file, compile it and the engine (cached) in parallel, link."""
    cc = find_compiler()
    with (
        tempfile.TemporaryDirectory(prefix="treeslim-build-") as tmp,
        Progress(3, "treeslim compile", verbose=int(verbose)) as bar,
    ):
        build = Path(tmp)
        requires = cpu_requirements(cc, march)
        src = build / "model.c"
        src.write_text(kernel_source(forest, march, requires))
        bar.update(note="C generated")

        def compile_model() -> Path:
            obj = build / "model.o"
            run_compiler([cc, *_MODEL_FLAGS, "-I", str(_HERE), "-c", str(src), "-o", str(obj)],
                         "the model's data")  # fmt: skip
            return obj

        with ThreadPoolExecutor(max_workers=2 if nthread > 1 else 1) as pool:
            engine = pool.submit(_engine_object, cc, march)
            model_obj = compile_model()
            engine_obj = engine.result()
        bar.update(note="compiled")
        out = build / "model.so"
        run_compiler([cc, "-shared", "-o", str(out), str(model_obj), str(engine_obj), "-lm"],
                     "the model library")  # fmt: skip
        bar.update(note="linked")
        write_atomic(target, out.read_bytes(), executable=True)
