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
from .forest import Forest, validate
from .frontends import from_model, load

__version__ = "0.1.0"

__all__ = [
    "Forest",
    "InvalidForestError",
    "MissingDependencyError",
    "ModelFormatError",
    "TreeSlimError",
    "UnsupportedModelError",
    "from_model",
    "load",
    "to_lightgbm",
    "to_treelite",
    "to_xgboost",
    "validate",
]
