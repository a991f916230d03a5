"""LightGBM's model text schema, shared by the LightGBM frontend (reader) and backend (writer):
the objectives, the task and link each implies, LightGBM's zero band, and the ``pandas_categorical``
line LightGBM's Python package appends to the text (the category list of each pandas ``category``
column at training, in column order; ``null`` for a model trained on arrays)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from treeslim.errors import ModelFormatError, UnsupportedModelError

__all__ = [
    "OBJECTIVES",
    "PANDAS_CATEGORICAL",
    "ZERO_THRESHOLD",
    "dump_pandas_categorical",
    "pandas_columns",
    "parse_objective",
    "read_pandas_categorical",
]

#: The key of the last line of a model text written by LightGBM's Python package.
PANDAS_CATEGORICAL = "pandas_categorical:"

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


def read_pandas_categorical(text: str) -> list[list[Any]] | None:
    """The category lists of the text's ``pandas_categorical:`` line (None when absent or null).

    Like LightGBM's Python package, only a line after the trees counts.
    """
    start = text.rfind("\n" + PANDAS_CATEGORICAL)
    if start < 0 or start < text.find("\nend of trees"):
        return None
    line = text[start + 1 + len(PANDAS_CATEGORICAL) :].partition("\n")[0]
    try:
        lists = json.loads(line)
    except ValueError as exc:
        raise ModelFormatError(
            f"LightGBM model text: cannot read its pandas_categorical line ({exc})."
        ) from None
    if lists is not None and not (
        isinstance(lists, list) and all(isinstance(c, list) for c in lists)
    ):
        raise ModelFormatError(
            "LightGBM model text: pandas_categorical must be a list of category lists."
        )
    return lists or None


def dump_pandas_categorical(lists: Sequence[Sequence[Any]] | None) -> str:
    """The ``pandas_categorical:`` line for ``lists`` (LightGBM reads it as the text's last line)."""
    if not lists:
        return PANDAS_CATEGORICAL + "null"
    try:
        return PANDAS_CATEGORICAL + json.dumps([list(c) for c in lists])
    except (TypeError, ValueError) as exc:
        raise UnsupportedModelError(
            f"The category lists cannot be written as LightGBM's pandas_categorical JSON ({exc}):"
            " map the categories to strings or numbers first."
        ) from None


def pandas_columns(infos: Sequence[str], lists: Sequence[Sequence[Any]]) -> list[int] | None:
    """The features ``pandas_categorical``'s lists belong to, in order (None when unclear).

    LightGBM encodes the i-th ``category`` column of a DataFrame with the i-th list, whatever the
    column, and the text does not say which columns those were at training. They are taken to be
    the categorical features (``feature_infos`` a list of values, not ``[min:max]``), which is
    what ``categorical_feature='auto'`` gives; when that count differs, the features holding small
    non-negative integers or nothing (ordered pandas categoricals are encoded but split
    numerically) are added. Each feature's values must be codes of its list.
    """

    def codes(info: str) -> list[float]:
        try:
            return [float(v) for v in info.strip("[]").split(":")]
        except ValueError:
            return [-2.0]

    def fits(j: int, cats: Sequence[Any]) -> bool:
        c = codes(infos[j])
        return infos[j] == "none" or (min(c) >= -1 and max(c) < len(cats))

    candidates = [j for j, info in enumerate(infos) if info != "none" and info[0] != "["]
    if len(candidates) != len(lists):
        candidates = [
            j for j, info in enumerate(infos)
            if info == "none" or info[0] != "[" or all(v >= 0 and v == int(v) for v in codes(info))
        ]  # fmt: skip
    ok = len(candidates) == len(lists) and all(map(fits, candidates, lists))
    return candidates if ok else None
