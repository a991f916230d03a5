"""Recognising dask collections without importing dask."""

from __future__ import annotations

from typing import Any

__all__ = ["is_dask"]


def is_dask(obj: Any) -> bool:
    """True for dask collections (arrays, dataframes, series, dask-expr collections), without
    importing dask."""
    return type(obj).__module__.split(".")[0] in ("dask", "dask_expr") and hasattr(obj, "dask")
