"""The compression search: candidate pipelines (:class:`Plan` -> :class:`Candidate`), how they
are judged against the loss budget, and the Pareto front of size, latency and quality."""

from __future__ import annotations

from treeslim.search._candidate import Candidate, Plan
from treeslim.search._pareto import annotate_front, pareto_mask, time_per_row
from treeslim.search._search import SearchResult, search

__all__ = [
    "Candidate",
    "Plan",
    "SearchResult",
    "annotate_front",
    "pareto_mask",
    "search",
    "time_per_row",
]
