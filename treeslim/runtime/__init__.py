"""Native code at run time: the C toolchain (find a compiler, build, cache) and treeslim's batch
kernel, which scores any Forest with no per-model compile."""

from __future__ import annotations

from treeslim.runtime._kernel import KernelForest
from treeslim.runtime._scoring import fast_margin, fast_predict
from treeslim.runtime._toolchain import CompilerError, cache_dir, find_compiler, run_compiler

__all__ = [
    "CompilerError",
    "KernelForest",
    "cache_dir",
    "fast_margin",
    "fast_predict",
    "find_compiler",
    "run_compiler",
]
