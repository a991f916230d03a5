"""Calibration data: rows generated for distillation and leaf refit (feature swaps, bootstrap,
MUNGE, jitter, leaf boxes), the fit / judge / certify split, and samples and predictions of data sets
larger than memory (numpy or dask), chunk by chunk."""

from __future__ import annotations

from treeslim.data._augment import (
    generate_rows,
    iter_generated_rows,
    sampler,
    sampler_chunks,
    sampler_rows,
    seed_of,
)
from treeslim.data._chunked import as_dask_array, predict_block, predict_chunked, sample_rows
from treeslim.data._holdout import calibration_split, holdout
from treeslim.data._munge import Sampler, make_sampler

__all__ = [
    "Sampler",
    "as_dask_array",
    "calibration_split",
    "generate_rows",
    "holdout",
    "iter_generated_rows",
    "make_sampler",
    "predict_block",
    "predict_chunked",
    "sample_rows",
    "sampler",
    "sampler_chunks",
    "sampler_rows",
    "seed_of",
]
