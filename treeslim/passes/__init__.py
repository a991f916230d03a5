"""Passes: pure functions ``Forest -> Forest`` that make a forest smaller.

Each pass takes keyword-only options, never mutates its input (the IR's arrays are read-only), and
records what it did in ``source["passes"]`` of the forest it returns.

- exact (identical predictions on every input): ``prune_unreachable``,
  ``collapse_identical_splits``, ``fold_constant_trees``, ``exact_passes``;
- budgeted, on calibration data: ``select_trees`` (``selection_order`` shares one greedy order
  between sizes), ``refit_leaves``, ``prune_nodes``;
- quantization: ``quantize_thresholds``, ``quantize_leaves`` (what they cost:
  :func:`treeslim.measure.quantization_error`).

Calibration rows to run them on (generated, sampled, held out) come from :mod:`treeslim.data`.
"""

from __future__ import annotations

from treeslim.passes._exact import (
    collapse_identical_splits,
    exact_passes,
    fold_constant_trees,
    prune_unreachable,
)
from treeslim.passes._nodes import prune_nodes
from treeslim.passes._quantize import quantize_leaves, quantize_thresholds
from treeslim.passes._refit import refit_leaves

# shared with the stages above (search, distillation), not public API
from treeslim.passes._select import check_count as check_count
from treeslim.passes._select import check_target as check_target
from treeslim.passes._select import output_groups as output_groups
from treeslim.passes._select import select_trees, selection_order

__all__ = [
    "collapse_identical_splits",
    "exact_passes",
    "fold_constant_trees",
    "prune_nodes",
    "prune_unreachable",
    "quantize_leaves",
    "quantize_thresholds",
    "refit_leaves",
    "select_trees",
    "selection_order",
]
