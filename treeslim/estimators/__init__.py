"""Scikit-learn estimators around the compression search: :class:`SlimClassifier`,
:class:`SlimRegressor`, :class:`SlimRanker` (MLPs: :mod:`treeslim.nn`)."""

from __future__ import annotations

from treeslim.estimators._trees import SlimClassifier, SlimRanker, SlimRegressor

__all__ = ["SlimClassifier", "SlimRanker", "SlimRegressor"]
