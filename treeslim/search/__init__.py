"""The compression search: candidate pipelines (:class:`Plan` -> :class:`Candidate`), how they
are proposed on one part of the calibration rows and certified on another, and the Pareto front of size, latency and quality."""

from __future__ import annotations

from treeslim.measure import Certificate
from treeslim.search._candidate import Candidate, Plan
from treeslim.search._pareto import annotate_front, pareto_mask, time_per_row
from treeslim.search._search import SearchResult, search

__all__ = [
    "Candidate",
    "Certificate",
    "Plan",
    "SearchResult",
    "annotate_front",
    "pareto_mask",
    "search",
    "time_per_row",
]
