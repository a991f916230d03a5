"""Native code at run time: the C toolchain (find a compiler, build, cache) and treeslim's batch
kernel, which scores any Forest with no per-model compile."""

from __future__ import annotations

from treeslim.runtime._kernel import (
    KERNEL_SOURCE,
    ROW_WALK_MAX_ROWS,
    KernelForest,
    KernelLayout,
    plan_ranges,
    run_in_ranges,
)
from treeslim.runtime._scoring import fast_margin, fast_predict
from treeslim.runtime._toolchain import (
    CompilerError,
    cache_dir,
    find_compiler,
    machine_tag,
    run_compiler,
)

__all__ = [
    "KERNEL_SOURCE",
    "ROW_WALK_MAX_ROWS",
    "CompilerError",
    "KernelForest",
    "KernelLayout",
    "cache_dir",
    "fast_margin",
    "fast_predict",
    "find_compiler",
    "machine_tag",
    "plan_ranges",
    "run_compiler",
    "run_in_ranges",
]
