"""treeslim: make fitted tree ensembles small and fast enough for production.

Import a model (:func:`from_model`, :func:`load`) into the :class:`Forest` IR, compress it, and
export it back to the library its serving stack loads (:func:`to_xgboost`, :func:`to_lightgbm`,
:func:`to_treelite`).
"""

from __future__ import annotations

from ._errors import (
    InvalidForestError,
    MissingDependencyError,
    ModelFormatError,
    TreeSlimError,
    UnsupportedModelError,
)
from .backends import to_lightgbm, to_treelite, to_xgboost
from .compiler import CompiledForest, CompilerError, compile
from .forest import Forest, validate
from .frontends import from_model, load
from .report import Report, report

__version__ = "0.1.0"

__all__ = [
    "CompiledForest",
    "CompilerError",
    "Forest",
    "InvalidForestError",
    "MissingDependencyError",
    "ModelFormatError",
    "Report",
    "TreeSlimError",
    "UnsupportedModelError",
    "compile",
    "from_model",
    "load",
    "report",
    "to_lightgbm",
    "to_treelite",
    "to_xgboost",
    "validate",
]
