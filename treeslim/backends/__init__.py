"""Backends: from a :class:`~treeslim.Forest` back to the formats serving stacks load.

Each optional library is imported inside the function that needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..forest import Forest

__all__ = ["to_lightgbm", "to_treelite", "to_xgboost"]


def to_xgboost(forest: Forest, path: Any = None) -> Any:
    """An ``xgboost.Booster`` predicting what ``forest`` predicts (saved as JSON when ``path`` is set).

    See :func:`treeslim.backends.xgboost.to_xgboost`.
    """
    from .xgboost import to_xgboost as impl

    return impl(forest, path)


def to_lightgbm(forest: Forest, path: Any = None) -> Any:
    """A ``lightgbm.Booster`` predicting what ``forest`` predicts (model text written to ``path``).

    See :func:`treeslim.backends.lightgbm.to_lightgbm`.
    """
    from .lightgbm import to_lightgbm as impl

    return impl(forest, path)


def to_treelite(forest: Forest) -> Any:
    """A ``treelite.Model`` predicting what ``forest`` predicts.

    See :func:`treeslim.backends.treelite.to_treelite`.
    """
    from .treelite import to_treelite as impl

    return impl(forest)
