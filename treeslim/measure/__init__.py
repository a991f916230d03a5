"""Measurements every model and every step gets: quality metrics (also streamed over data larger
than memory), the loss certificate (an upper confidence bound of the loss on new data), bytes in
each storage format, single-row and batch latency, and the :class:`Report` that holds them."""

from __future__ import annotations

from treeslim.measure._certify import (
    Certificate,
    cannot_certify_message,
    certificate_fields,
    certify_in_sequence,
    exact_certificate,
    loss_bound,
    paired_se,
    proposal_margin,
    smallest_budget,
)
from treeslim.measure._metrics import (
    HIGHER_IS_BETTER,
    default_metric,
    evaluate,
    fidelity,
    ndcg_at_k,
    ndcg_per_query,
    quantization_error,
)
from treeslim.measure._report import Report, measure_batch, measure_single_row, report
from treeslim.measure._sequence import pass_chance, sequence_order
from treeslim.measure._sizes import format_sizes, native_formats, serialize
from treeslim.measure._streaming import evaluate_chunked

__all__ = [
    "HIGHER_IS_BETTER",
    "Certificate",
    "Report",
    "cannot_certify_message",
    "certificate_fields",
    "certify_in_sequence",
    "default_metric",
    "evaluate",
    "evaluate_chunked",
    "exact_certificate",
    "fidelity",
    "loss_bound",
    "format_sizes",
    "native_formats",
    "measure_batch",
    "measure_single_row",
    "ndcg_at_k",
    "ndcg_per_query",
    "paired_se",
    "pass_chance",
    "proposal_margin",
    "quantization_error",
    "report",
    "sequence_order",
    "serialize",
    "smallest_budget",
]
