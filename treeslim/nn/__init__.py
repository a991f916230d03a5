"""`treeslim.nn`: compress small neural networks (scikit-learn MLPs).

The same three layers as for trees: :func:`from_sklearn` reads a fitted ``MLPClassifier`` /
``MLPRegressor`` into the :class:`MLP` IR, passes (pruning, quantization, low-rank factorisation,
fine-tuning, distillation) rewrite it, and :func:`to_sklearn` / :func:`treeslim.save` write it
back; the IR's own numpy predictor runs the compressed layers as they are stored.
"""

from __future__ import annotations

from treeslim.nn._compress import compress
from treeslim.nn._distill import distill_mlp
from treeslim.nn._estimators import SlimMLPClassifier, SlimMLPRegressor

# for treeslim.load / save and the CLI, not public API
from treeslim.nn._format import dump_mlp_bytes as dump_mlp_bytes
from treeslim.nn._format import load_mlp_bytes as load_mlp_bytes
from treeslim.nn._format import save_mlp as save_mlp
from treeslim.nn._mlp import MLP, InvalidMLPError, Layer, validate_mlp
from treeslim.nn._passes import low_rank, prune_neurons, prune_weights, quantize_weights
from treeslim.nn._report import shape_text as shape_text
from treeslim.nn._search import MLPSearchResult, search_mlp
from treeslim.nn._sklearn import from_sklearn, to_sklearn
from treeslim.nn._train import fine_tune, qat_fine_tune

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
