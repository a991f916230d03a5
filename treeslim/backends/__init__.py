"""Backends: from a :class:`~treeslim.Forest` back to the formats serving stacks load, and to
compiled code.

``to_xgboost`` / ``to_lightgbm`` / ``to_treelite`` / ``to_onnx`` give native models that predict
what the Forest predicts; :mod:`treeslim.backends.tl2cgen` compiles a Forest to a shared library.
Each optional library is imported inside the function that needs it.
"""

from __future__ import annotations

from treeslim.backends._lightgbm import forest_to_lightgbm_text, to_lightgbm
from treeslim.backends._onnx import to_onnx
from treeslim.backends._treelite import to_treelite
from treeslim.backends._xgboost import booster_from_json, forest_to_xgboost_json, to_xgboost

__all__ = [
    "booster_from_json",
    "forest_to_lightgbm_text",
    "forest_to_xgboost_json",
    "to_lightgbm",
    "to_onnx",
    "to_treelite",
    "to_xgboost",
]
