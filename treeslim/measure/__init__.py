"""Measurements every model and every step gets: quality metrics (also streamed over data larger
than memory), bytes in each storage format, single-row and batch latency, and the
:class:`Report` that holds them."""

from __future__ import annotations

from treeslim.measure._metrics import (
    HIGHER_IS_BETTER,
    default_metric,
    evaluate,
    fidelity,
    ndcg_at_k,
    quantization_error,
)
from treeslim.measure._report import Report, measure_batch, measure_single_row, report
from treeslim.measure._sizes import format_sizes, serialize
from treeslim.measure._streaming import evaluate_chunked

__all__ = [
    "HIGHER_IS_BETTER",
    "Report",
    "default_metric",
    "evaluate",
    "evaluate_chunked",
    "fidelity",
    "format_sizes",
    "measure_batch",
    "measure_single_row",
    "ndcg_at_k",
    "quantization_error",
    "report",
    "serialize",
]
