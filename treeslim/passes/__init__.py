"""Passes: pure functions ``Forest -> Forest`` that make a forest smaller.

Each pass takes keyword-only options, never mutates its input (the IR's arrays are read-only), and
records what it did in ``source["passes"]`` of the forest it returns.

- exact (identical predictions on every input): ``prune_unreachable``,
  ``collapse_identical_splits``, ``fold_constant_trees``, ``exact_passes``;
- budgeted, on calibration data: ``select_trees`` (``selection_order`` shares one greedy order
  between sizes), ``refit_leaves``, ``prune_nodes``;
- quantization: ``quantize_thresholds``, ``quantize_leaves`` (``quantization_error`` reports);
- calibration data: ``generate_rows`` / ``iter_generated_rows``: feature swaps, bootstrap,
  MUNGE (nearest-neighbour swaps plus noise), jitter, or sampling inside a forest's leaf boxes
  (``method=``), in fixed blocks so chunked and one-shot generation agree.
"""

from __future__ import annotations

from .augment import generate_rows, iter_generated_rows
from .exact import collapse_identical_splits, exact_passes, fold_constant_trees
from .nodes import prune_nodes
from .quantize import prune_unreachable, quantization_error, quantize_leaves, quantize_thresholds
from .refit import refit_leaves
from .select import select_trees, selection_order

__all__ = [
    "collapse_identical_splits",
    "exact_passes",
    "fold_constant_trees",
    "generate_rows",
    "iter_generated_rows",
    "prune_nodes",
    "prune_unreachable",
    "quantization_error",
    "quantize_leaves",
    "quantize_thresholds",
    "refit_leaves",
    "select_trees",
    "selection_order",
]
