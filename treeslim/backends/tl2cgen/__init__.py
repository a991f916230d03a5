"""The TL2cgen backend: a Forest compiled to a shared library (Treelite model -> TL2cgen C ->
patched to be exact -> built with the system compiler -> loaded), and the predictor around it.

The driver reads like its pipeline: :func:`~treeslim.backends.tl2cgen._codegen.generate` (C from
TL2cgen, patched), :func:`~treeslim.backends.tl2cgen._build.build_library` (compile, link, cache),
:class:`CompiledForest` (load and score).
"""

from __future__ import annotations

from treeslim.backends.tl2cgen._compiled import CompiledForest, compile_forest

__all__ = ["CompiledForest", "compile_forest"]
