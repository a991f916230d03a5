"""Helpers every layer may use: atomic file output, progress bars, exact float32 thresholds,
optional dependencies, dask detection, query ids and scikit-learn plumbing. Nothing here knows
the IR."""

from __future__ import annotations

from treeslim._utils._dask import is_dask
from treeslim._utils._floats import float32_strict_thresholds, float32_thresholds
from treeslim._utils._io import write_atomic
from treeslim._utils._labels import class_codes
from treeslim._utils._optional import require
from treeslim._utils._progress import Progress
from treeslim._utils._qid import check_qid, group_to_qid
from treeslim._utils._sklearn import frozen, is_fitted, unwrap
from treeslim._utils._version import VERSION

__all__ = [
    "VERSION",
    "Progress",
    "check_qid",
    "class_codes",
    "float32_strict_thresholds",
    "float32_thresholds",
    "frozen",
    "group_to_qid",
    "is_dask",
    "is_fitted",
    "require",
    "unwrap",
    "write_atomic",
]
