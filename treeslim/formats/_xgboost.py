"""XGBoost's model schema, shared by the XGBoost frontend (reader) and backend (writer): which
objectives exist, what task and link each implies, and how ``base_score`` is stored."""

from __future__ import annotations

from typing import Any

import numpy as np

from treeslim.errors import ModelFormatError

__all__ = ["MARGIN_TO_BASE", "OBJECTIVES", "base_score_to_margin", "parse_base_score"]

# objective -> (task, postprocessor, how base_score maps to margin space)
OBJECTIVES: dict[str, tuple[str, str, str]] = {
    "binary:logistic": ("binary", "sigmoid", "logit"),
    "binary:logitraw": ("binary", "identity", "identity"),
    "reg:squarederror": ("regression", "identity", "identity"),
    "reg:squaredlogerror": ("regression", "identity", "identity"),
    "reg:pseudohubererror": ("regression", "identity", "identity"),
    "reg:absoluteerror": ("regression", "identity", "identity"),
    "reg:quantileerror": ("regression", "identity", "identity"),
    "reg:logistic": ("regression", "sigmoid", "logit"),
    "count:poisson": ("regression", "exponential", "log"),
    "reg:gamma": ("regression", "exponential", "log"),
    "reg:tweedie": ("regression", "exponential", "log"),
    "multi:softprob": ("multiclass", "softmax", "identity"),
    "multi:softmax": ("multiclass", "argmax", "identity"),
    "rank:ndcg": ("ranking", "identity", "identity"),
    "rank:pairwise": ("ranking", "identity", "identity"),
    "rank:map": ("ranking", "identity", "identity"),
}


def parse_base_score(text: Any) -> np.ndarray:
    """``learner_model_param.base_score`` (a number, or a list as text for vector leaves)."""
    if isinstance(text, (int, float)):
        return np.array([float(text)])
    s = str(text).strip()
    if s.startswith("["):
        s = s[1:-1]
    try:
        return np.array([float(v) for v in s.split(",") if v.strip()], dtype=np.float64)
    except ValueError as exc:
        raise ModelFormatError(f"XGBoost model: cannot read base_score {text!r}.") from exc


def base_score_to_margin(values: np.ndarray, how: str) -> np.ndarray:
    """``base_score`` in margin space, computed in float32 as XGBoost's ``ProbToMargin`` does
    (a value outside the link's domain gives a non-finite margin, for the caller to refuse)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = values.astype(np.float32)
        if how == "logit":
            out = -np.log(np.float32(1.0) / v - np.float32(1.0))
        elif how == "log":
            out = np.log(v)
        else:
            out = v
    return out.astype(np.float64)


#: link of a Forest -> how XGBoost maps ``base_score`` from its output space to margin space
MARGIN_TO_BASE = {"sigmoid": "logit", "exponential": "log"}
