"""XGBoost's model schema, shared by the XGBoost frontend (reader) and backend (writer): which
objectives exist, what task and link each implies, how ``base_score`` is stored, and the category
lists XGBoost 3.1+ keeps with a model (``gradient_booster.model.cats``)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from treeslim.errors import ModelFormatError, UnsupportedModelError

__all__ = [
    "MARGIN_TO_BASE",
    "OBJECTIVES",
    "base_score_to_margin",
    "decode_categories",
    "encode_categories",
    "parse_base_score",
]

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
    (a value outside the link's domain gives a non-finite margin, for the caller to refuse).

    The float32 logarithm is the correctly rounded one C's ``logf`` gives (the float64 log
    rounded to float32); numpy's float32 ``log`` can be a unit in the last place off, which
    shifted every margin of a binary model by one float32 step.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        v = values.astype(np.float32)
        if how == "logit":
            inner = (np.float32(1.0) / v - np.float32(1.0)).astype(np.float32)
            out = (-np.log(inner.astype(np.float64))).astype(np.float32)
        elif how == "log":
            out = np.log(v.astype(np.float64)).astype(np.float32)
        else:
            out = v
    return out.astype(np.float64)


#: link of a Forest -> how XGBoost maps ``base_score`` from its output space to margin space
MARGIN_TO_BASE = {"sigmoid": "logit", "exponential": "log"}


#: ``cats.enc[j].type`` of XGBoost's integer category arrays (the rest are UTF-8 strings)
_INT_TYPES = {9: np.int8, 10: np.uint8, 11: np.int16, 12: np.uint16, 13: np.int32, 14: np.uint32,
              15: np.int64, 16: np.uint64}  # fmt: skip


def _feature_categories(enc: Any, j: int, name: str) -> tuple[Any, ...] | None:
    if not isinstance(enc, dict):
        raise ModelFormatError(f"XGBoost model: cats.enc[{j}] is not an object.")
    values = np.asarray(enc.get("values", []))
    if "offsets" in enc:  # strings: UTF-8 bytes (stored as int8) cut at the offsets
        offsets = np.asarray(enc["offsets"], dtype=np.int64)
        if len(offsets) == 0:
            return None
        if offsets[0] != 0 or offsets[-1] != len(values) or np.any(np.diff(offsets) < 0):
            raise ModelFormatError(f"XGBoost model: cats.enc[{j}].offsets do not cut its values.")
        raw = values.astype(np.int64).astype(np.uint8).tobytes()
        if any(b >= 0x80 for b in raw):
            raise UnsupportedModelError(
                f"XGBoost model: feature {name} has categories that are not ASCII; XGBoost 3.2"
                " stores those cut short (its offsets count characters, not UTF-8 bytes), so the"
                " list it keeps cannot be read back. Rename the categories to ASCII and retrain,"
                " or train on integer category codes."
            )
        try:
            return tuple(raw[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets))
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"XGBoost model: cats.enc[{j}] is not UTF-8.") from exc
    if len(values) == 0:
        return None
    if enc.get("type") not in _INT_TYPES or values.dtype.kind not in "iu":
        raise ModelFormatError(
            f"XGBoost model: cats.enc[{j}] holds categories of type {enc.get('type')!r}, not"
            " integers or strings."
        )
    return tuple(int(v) for v in values)


def decode_categories(
    cats: Any, num_feature: int, names: Sequence[str] | None = None
) -> tuple[tuple[Any, ...] | None, ...] | None:
    """Per feature the category values XGBoost stored at training (position = code), or None.

    ``cats`` is ``gradient_booster.model.cats`` (absent before XGBoost 3.1, then None is returned:
    DataFrame columns are taken by their own codes, as XGBoost then does).
    """
    if not isinstance(cats, dict) or len(cats.get("enc", [])) == 0:
        return None
    enc = cats["enc"]
    if len(enc) != num_feature:
        raise ModelFormatError(
            f"XGBoost model: cats.enc has {len(enc)} entries for {num_feature} features."
        )
    out = tuple(
        _feature_categories(e, j, f"{j} ({names[j]!r})" if names else str(j))
        for j, e in enumerate(enc)
    )
    segments = np.asarray(cats.get("feature_segments", []), dtype=np.int64)
    sizes = [0 if c is None else len(c) for c in out]
    if len(segments) and not np.array_equal(np.diff(segments), sizes):
        raise ModelFormatError(
            "XGBoost model: cats.feature_segments disagree with the category lists."
        )
    return None if all(c is None for c in out) else out


def encode_categories(
    feature_categories: Sequence[Sequence[Any] | None] | None, num_feature: int
) -> dict[str, Any]:
    """The ``cats`` block for ``feature_categories`` (strings as UTF-8, integers as int64)."""
    cats = list(feature_categories) if feature_categories is not None else []
    if not any(c is not None and len(c) for c in cats):
        return {"enc": [], "feature_segments": [], "sorted_idx": []}
    enc: list[dict[str, Any]] = []
    sorted_idx: list[int] = []
    segments = [0]
    for j in range(num_feature):
        values = list(cats[j] or [])
        if values and all(isinstance(v, str) for v in values):
            blobs = [v.encode("utf-8") for v in values]
            offsets = np.cumsum([0] + [len(b) for b in blobs]).tolist()
            data = np.frombuffer(b"".join(blobs), dtype=np.uint8).astype(np.int8).tolist()
            enc.append({"offsets": offsets, "values": data})
            order = sorted(range(len(blobs)), key=lambda i: blobs[i])
        elif values and all(isinstance(v, (int, np.integer)) for v in values):
            enc.append({"type": 15, "values": [int(v) for v in values]})
            order = sorted(range(len(values)), key=lambda i: values[i])
        elif values:
            raise ValueError(
                f"feature {j} has categories that are neither all strings nor all integers"
                " (XGBoost stores no other kind)."
            )
        else:
            enc.append({"offsets": [], "values": []})
            order = []
        sorted_idx.extend(order)
        segments.append(segments[-1] + len(values))
    return {"enc": enc, "feature_segments": segments, "sorted_idx": sorted_idx}
