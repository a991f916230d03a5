"""treeslim: make fitted tree ensembles small and fast enough for production.

Import a model (:func:`from_model`, :func:`load`) into the :class:`Forest` IR, compress it, and
export it back to the library its serving stack loads (:func:`to_xgboost`, :func:`to_lightgbm`,
:func:`to_treelite`, :func:`to_onnx`).
"""

from __future__ import annotations

from treeslim import nn
from treeslim._api import compile, compress, load, save
from treeslim._utils import VERSION
from treeslim.backends import to_lightgbm, to_onnx, to_treelite, to_xgboost
from treeslim.backends.tl2cgen import CompiledForest
from treeslim.distillation import distill
from treeslim.errors import (
    InsufficientDataError,
    InsufficientDataWarning,
    InvalidForestError,
    MissingDependencyError,
    ModelFormatError,
    TreeSlimError,
    UnsupportedModelError,
)
from treeslim.estimators import SlimClassifier, SlimRanker, SlimRegressor
from treeslim.formats import dump_tslim_bytes, load_tslim_bytes
from treeslim.frontends import from_model
from treeslim.ir import Forest, validate
from treeslim.measure import Certificate, Report, quantization_error, report
from treeslim.passes import (
    exact_passes,
    prune_nodes,
    prune_unreachable,
    quantize_leaves,
    quantize_thresholds,
    refit_leaves,
    select_trees,
)
from treeslim.runtime import CompilerError

save_tslim = save  #: the name ``treeslim.save`` had first

__version__ = VERSION

__all__ = [
    "CompiledForest",
    "CompilerError",
    "Certificate",
    "Forest",
    "InsufficientDataError",
    "InsufficientDataWarning",
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
    "to_onnx",
    "to_treelite",
    "to_xgboost",
    "validate",
]
