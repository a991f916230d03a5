"""treeslim: make fitted tree ensembles small and fast enough for production.

Import a model (:func:`from_model`, :func:`load`) into the :class:`Forest` IR, compress it, and
export it back to the library its serving stack loads (:func:`to_xgboost`, :func:`to_lightgbm`,
:func:`to_treelite`).
"""

from __future__ import annotations

from . import nn
from ._errors import (
    InvalidForestError,
    MissingDependencyError,
    ModelFormatError,
    TreeSlimError,
    UnsupportedModelError,
)
from .backends import to_lightgbm, to_treelite, to_xgboost
from .compiler import CompiledForest, CompilerError, compile
from .compress import compress
from .distill import distill
from .estimators import SlimClassifier, SlimRanker, SlimRegressor
from .forest import Forest, validate
from .frontends import from_model, load
from .passes import (
    exact_passes,
    prune_nodes,
    prune_unreachable,
    quantization_error,
    quantize_leaves,
    quantize_thresholds,
    refit_leaves,
    select_trees,
)
from .report import Report, report
from .tslim import dump_tslim_bytes, load_tslim_bytes, save_tslim

save = save_tslim  #: ``treeslim.save(forest, path)``: the compact ``.tslim`` format

__version__ = "0.1.0"

__all__ = [
    "CompiledForest",
    "CompilerError",
    "Forest",
    "InvalidForestError",
    "MissingDependencyError",
    "ModelFormatError",
    "Report",
    "SlimClassifier",
    "SlimRanker",
    "SlimRegressor",
    "TreeSlimError",
    "UnsupportedModelError",
    "compile",
    "compress",
    "distill",
    "dump_tslim_bytes",
    "exact_passes",
    "from_model",
    "load",
    "load_tslim_bytes",
    "nn",
    "prune_nodes",
    "prune_unreachable",
    "quantization_error",
    "quantize_leaves",
    "quantize_thresholds",
    "refit_leaves",
    "report",
    "save",
    "save_tslim",
    "select_trees",
    "to_lightgbm",
    "to_treelite",
    "to_xgboost",
    "validate",
]
