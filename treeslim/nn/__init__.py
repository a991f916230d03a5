"""`treeslim.nn`: compress small neural networks (scikit-learn MLPs).

The same three layers as for trees: :func:`from_sklearn` reads a fitted ``MLPClassifier`` /
``MLPRegressor`` into the :class:`MLP` IR, passes (pruning, quantization, low-rank factorisation,
fine-tuning, distillation) rewrite it, and :func:`to_sklearn` / :func:`treeslim.save` write it
back; the IR's own numpy predictor runs the compressed layers as they are stored.
"""

from __future__ import annotations

from .compress import MLPSearchResult, compress, search_mlp
from .distill import distill_mlp
from .estimators import SlimMLPClassifier, SlimMLPRegressor
from .frontends import from_sklearn, to_sklearn
from .mlp import MLP, InvalidMLPError, Layer, validate_mlp
from .passes import low_rank, prune_neurons, prune_weights, quantize_weights
from .train import fine_tune, qat_fine_tune

__all__ = [
    "MLP",
    "InvalidMLPError",
    "Layer",
    "MLPSearchResult",
    "SlimMLPClassifier",
    "SlimMLPRegressor",
    "compress",
    "distill_mlp",
    "fine_tune",
    "from_sklearn",
    "low_rank",
    "prune_neurons",
    "prune_weights",
    "qat_fine_tune",
    "quantize_weights",
    "search_mlp",
    "to_sklearn",
    "validate_mlp",
]
