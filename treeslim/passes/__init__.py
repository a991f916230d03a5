"""Passes: pure functions ``Forest -> Forest`` that make a forest smaller.

Each pass takes keyword-only options, never mutates its input (the IR's arrays are read-only), and
records what it did in ``source["passes"]`` of the forest it returns.
"""

from __future__ import annotations

from .quantize import prune_unreachable, quantization_error, quantize_leaves, quantize_thresholds

__all__ = ["prune_unreachable", "quantization_error", "quantize_leaves", "quantize_thresholds"]
