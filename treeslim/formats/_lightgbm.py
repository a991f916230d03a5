"""LightGBM's model text schema, shared by the LightGBM frontend (reader) and backend (writer):
the objectives, the task and link each implies, and LightGBM's zero band."""

from __future__ import annotations

import numpy as np

from treeslim.errors import ModelFormatError, UnsupportedModelError

__all__ = ["OBJECTIVES", "ZERO_THRESHOLD", "parse_objective"]

#: LightGBM's ``kZeroThreshold`` (the float ``1e-35f`` as a double).
ZERO_THRESHOLD = float(np.float32(1e-35))

# objective name -> (task, postprocessor); None is a model trained with a custom objective
OBJECTIVES: dict[str | None, tuple[str, str]] = {
    "binary": ("binary", "sigmoid"),
    **dict.fromkeys(
        "regression regression_l2 l2 mse regression_l1 l1 mae huber fair quantile mape".split(),
        ("regression", "identity"),
    ),
    **dict.fromkeys(("poisson", "gamma", "tweedie"), ("regression", "exponential")),
    "cross_entropy": ("regression", "sigmoid"),
    "xentropy": ("regression", "sigmoid"),
    "multiclass": ("multiclass", "softmax"),
    "softmax": ("multiclass", "softmax"),
    **dict.fromkeys(("lambdarank", "rank_xendcg", "xendcg"), ("ranking", "identity")),
    None: ("regression", "identity"),
}
_SUPPORTED = sorted(k for k in OBJECTIVES if k is not None)


def parse_objective(line: str | None, num_class: int) -> tuple[str, str, float]:
    """``(task, postprocessor, sigmoid alpha)`` of a model text's ``objective=`` line."""
    tokens = (line or "").split()
    name = tokens[0] if tokens else None
    options = dict(t.partition(":")[::2] for t in tokens[1:])
    if name not in OBJECTIVES:
        raise UnsupportedModelError(
            f"LightGBM objective {line!r} is not supported; supported: {_SUPPORTED} (and models"
            " trained with a custom objective, whose raw scores are their predictions)."
        )
    if "sqrt" in options:
        raise UnsupportedModelError(
            f"LightGBM objective {line!r} squares its predictions (reg_sqrt=True), which treeslim"
            " cannot express: retrain with reg_sqrt=False."
        )
    task, post = OBJECTIVES[name]
    if name is None and num_class > 1:
        task = "multiclass"
    try:
        alpha = float(options.get("sigmoid", 1.0))
    except ValueError:
        raise ModelFormatError(
            f"LightGBM model text: cannot read the sigmoid parameter of objective {line!r}."
        ) from None
    return task, post, alpha
