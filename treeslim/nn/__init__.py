"""`treeslim.nn`: compress small neural networks (scikit-learn MLPs).

The same three layers as for trees: :func:`from_sklearn` reads a fitted ``MLPClassifier`` /
``MLPRegressor`` into the :class:`MLP` IR, passes (pruning, quantization, low-rank factorisation,
fine-tuning, distillation) rewrite it, and :func:`to_sklearn` / :func:`treeslim.save` write it
back; the IR's own numpy predictor runs the compressed layers as they are stored.
"""

from __future__ import annotations

from .frontends import from_sklearn, to_sklearn
from .mlp import MLP, InvalidMLPError, Layer, validate_mlp

__all__ = [
    "MLP",
    "InvalidMLPError",
    "Layer",
    "from_sklearn",
    "to_sklearn",
    "validate_mlp",
]
