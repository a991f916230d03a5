"""XGBoost's legacy binary model files (``.model``, ``.bin``; the default before XGBoost 1.0 and
still written by ``save_model`` up to 1.7), which XGBoost 3 can no longer read.

They are recognised by their layout (an optional ``binf`` tag, a 136-byte ``LearnerModelParam``,
then the objective's and the booster's names as length-prefixed strings) and read through
Treelite's legacy loader, or refused with that advice when Treelite is not installed.
"""

from __future__ import annotations

import os
import struct
import tempfile
from typing import Any

from treeslim.errors import ModelFormatError, UnsupportedModelError
from treeslim.frontends._treelite import forest_from_treelite
from treeslim.ir import Forest

__all__ = ["forest_from_xgboost_legacy_binary", "looks_like_legacy_xgboost"]

_PARAM_BYTES = 136  # LearnerModelParam: base_score, num_feature, num_class, flags, reserved
_BOOSTERS = (b"gbtree", b"dart", b"gblinear")
_RESAVE = (
    "load the file with xgboost<2 and save it again as JSON (booster.save_model('model.json'))"
)
_ADVICE = (
    "XGBoost 3 cannot read this legacy binary format. Install Treelite (pip install treelite),"
    f" whose treelite.frontend.load_xgboost_model_legacy_binary treeslim.load then uses, or {_RESAVE}."
)


def _string_at(data: bytes, pos: int) -> tuple[bytes, int] | None:
    if pos + 8 > len(data):
        return None
    (n,) = struct.unpack_from("<Q", data, pos)
    if not 0 < n <= 64 or pos + 8 + n > len(data):
        return None
    return bytes(data[pos + 8 : pos + 8 + n]), pos + 8 + n


def looks_like_legacy_xgboost(data: bytes) -> bool:
    """Whether ``data`` is laid out like a legacy binary XGBoost model."""
    pos = (4 if data[:4] == b"binf" else 0) + _PARAM_BYTES
    objective = _string_at(data, pos)
    if objective is None or b":" not in objective[0] or not objective[0].isascii():
        return False
    booster = _string_at(data, objective[1])
    return booster is not None and booster[0] in _BOOSTERS


def forest_from_xgboost_legacy_binary(data: bytes, name: str = "<bytes>") -> Forest:
    """Read a legacy binary XGBoost model through Treelite's legacy loader."""
    try:
        import treelite  # optional: only this old format needs it
    except ImportError:
        raise UnsupportedModelError(f"{name}: an XGBoost legacy binary model. {_ADVICE}") from None
    loader: Any = getattr(treelite.frontend, "load_xgboost_model_legacy_binary", None)
    if loader is None:  # pragma: no cover - every Treelite 4 has it
        raise UnsupportedModelError(f"{name}: an XGBoost legacy binary model. {_ADVICE}")
    fd, path = tempfile.mkstemp(suffix=".model")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        model = loader(path)
    except treelite.TreeliteError as exc:
        raise ModelFormatError(
            f"{name}: an XGBoost legacy binary model that Treelite's legacy loader refused"
            f" ({str(exc).splitlines()[0][:200]}): if XGBoost before 3 reads it, {_RESAVE}."
        ) from None
    finally:
        os.unlink(path)
    return forest_from_treelite(model)
