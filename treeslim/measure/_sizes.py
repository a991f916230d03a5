"""Bytes a Forest takes in each storage format a serving stack might load.

Every figure is the length of the real serialized bytes (optionally gzip'ed), never an estimate.
A format whose library is missing is left out rather than guessed.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from treeslim.backends import (
    booster_from_json,
    forest_to_lightgbm_text,
    forest_to_xgboost_json,
    to_treelite,
)
from treeslim.errors import TreeSlimError
from treeslim.formats import dump_tslim_bytes

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = ["format_sizes", "native_formats", "serialize"]


def _xgboost_json(forest: Forest, memo: dict[str, bytes]) -> bytes:
    if "xgboost_json" not in memo:  # the UBJSON size loads the same document into XGBoost
        doc = forest_to_xgboost_json(forest)
        memo["xgboost_json"] = json.dumps(doc, separators=(",", ":")).encode()
    return memo["xgboost_json"]


def _xgboost_ubj(forest: Forest, memo: dict[str, bytes]) -> bytes:
    return bytes(booster_from_json(_xgboost_json(forest, memo)).save_raw(raw_format="ubj"))


def _lightgbm_text(forest: Forest, memo: dict[str, bytes]) -> bytes:
    return forest_to_lightgbm_text(forest).encode()


def _treelite(forest: Forest, memo: dict[str, bytes]) -> bytes:
    return bytes(to_treelite(forest).serialize_bytes())


def _tslim(forest: Forest, memo: dict[str, bytes]) -> bytes:
    return dump_tslim_bytes(forest)


_FORMATS: dict[str, Callable[[Forest, dict[str, bytes]], bytes]] = {
    "xgboost_json": _xgboost_json,
    "xgboost_ubj": _xgboost_ubj,
    "lightgbm_text": _lightgbm_text,
    "treelite": _treelite,
    "tslim": _tslim,
}


_NATIVE = {"xgboost": ("xgboost_json", "xgboost_ubj"), "lightgbm": ("lightgbm_text",)}


def native_formats(forest: Forest) -> tuple[str, ...]:
    """The formats of the library ``forest`` came from (none for scikit-learn and Treelite),
    then Treelite's checkpoint and ``.tslim``: what its serving stack loads. Writing every
    format costs time in proportion to the model, and more where a format multiplies it: a
    random forest's vector leaves become one tree per class in XGBoost and LightGBM (300
    trees of 26 classes: 413 MB of XGBoost JSON, about 80 s to write and load)."""
    return (*_NATIVE.get(str(forest.source.get("library")), ()), "treelite", "tslim")


def serialize(forest: Forest, fmt: str) -> bytes:
    """The bytes of ``forest`` in format ``fmt`` (one of :func:`format_sizes`' keys)."""
    if fmt not in _FORMATS:
        raise ValueError(f"Unknown format {fmt!r}; expected one of {sorted(_FORMATS)}.")
    return _FORMATS[fmt](forest, {})


def format_sizes(
    forest: Forest, *, compressed: bool = False, formats: Sequence[str] | None = None
) -> dict[str, int]:
    """Size in bytes of ``forest`` per format (every one, or those named in ``formats``);
    formats that cannot hold it or whose library is missing are left out. With
    ``compressed=True`` each is gzip'ed (level 9) first."""
    unknown = set(formats or ()) - set(_FORMATS)
    if unknown:
        raise ValueError(f"Unknown formats {sorted(unknown)}; expected some of {sorted(_FORMATS)}.")
    out: dict[str, int] = {}
    memo: dict[str, bytes] = {}
    for name, fn in _FORMATS.items():
        if formats is not None and name not in formats:
            continue
        try:
            data = fn(forest, memo)
        except (ImportError, TreeSlimError, ValueError):
            continue
        out[name] = len(gzip.compress(data, 9, mtime=0) if compressed else data)
    return out
