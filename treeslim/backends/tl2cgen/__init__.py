"""Compiled models: a Forest compiled to a shared library with a C ABI, and the predictor around
it. Two engines build the library (the package keeps its historical name):

- the kernel engine (the default): :func:`~treeslim.backends.tl2cgen._kernel_lib.build_kernel_library`
  writes the model's kernel arrays as static C data and links them with treeslim's kernel
  (compiled once per compiler and target, cached);
- the TL2cgen engine: :func:`~treeslim.backends.tl2cgen._codegen.generate` (C from TL2cgen, patched
  to be exact), :func:`~treeslim.backends.tl2cgen._build.build_library` (compile, link).

:func:`compile_forest` builds (cached by content hash) and :class:`CompiledForest` loads and scores.
"""

from __future__ import annotations

from treeslim.backends.tl2cgen._compiled import ENGINES, CompiledForest, compile_forest

__all__ = ["ENGINES", "CompiledForest", "compile_forest"]
