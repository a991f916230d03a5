"""Scikit-learn plumbing shared by both estimator families (trees and MLPs): is a model fitted,
and how an already-fitted model is carried through ``clone``."""

from __future__ import annotations

from typing import Any

from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted

__all__ = ["frozen", "is_fitted", "unwrap"]


def is_fitted(est: Any) -> bool:
    """Whether ``est`` is a fitted model.

    Scikit-learn-API estimators (including XGBoost's and LightGBM's wrappers and
    ``FrozenEstimator``) answer through ``check_is_fitted``. Anything else (a Booster, a
    ``treelite.Model``, a Forest, an MLP) exists only fitted; whether treeslim can read it is the
    frontend's question.
    """
    if not isinstance(est, BaseEstimator):
        return True
    try:
        check_is_fitted(est)
    except NotFittedError:
        return False
    return True


def frozen(model: Any) -> Any:
    """A fitted scikit-learn-API model wrapped in ``FrozenEstimator`` (so ``clone`` keeps it
    fitted); other fitted models (Boosters, Forests, treelite models) as they are."""
    if isinstance(model, BaseEstimator) and not isinstance(model, FrozenEstimator):
        return FrozenEstimator(model)
    return model


def unwrap(est: Any) -> Any:
    """The model inside a ``FrozenEstimator``; any other object as it is."""
    return est.estimator if isinstance(est, FrozenEstimator) else est
