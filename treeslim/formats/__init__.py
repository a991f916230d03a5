"""File formats, shared by the stages that read and write them: the ``.tslim`` container and the
forest codec, UBJSON, the parts of XGBoost's and LightGBM's model schemas that both their
frontend and their backend need (objectives, ``base_score``, LightGBM's zero band), and the
bounds every reader puts on header counts the trees do not need."""

from __future__ import annotations

from treeslim.formats._container import HEADER, pack_container, unpack_container
from treeslim.formats._lightgbm import (
    PANDAS_CATEGORICAL,
    ZERO_THRESHOLD,
    dump_pandas_categorical,
    pandas_columns,
    parse_objective,
    read_pandas_categorical,
)
from treeslim.formats._limits import MAX_UNUSED_FEATURES, check_feature_count
from treeslim.formats._tslim import dump_tslim_bytes, load_tslim_bytes, save_tslim
from treeslim.formats._ubjson import decode_ubjson
from treeslim.formats._xgboost import (
    MARGIN_TO_BASE,
    OBJECTIVES,
    base_score_to_margin,
    decode_categories,
    encode_categories,
    parse_base_score,
)

__all__ = [
    "HEADER",
    "MARGIN_TO_BASE",
    "MAX_UNUSED_FEATURES",
    "OBJECTIVES",
    "PANDAS_CATEGORICAL",
    "ZERO_THRESHOLD",
    "base_score_to_margin",
    "check_feature_count",
    "decode_categories",
    "decode_ubjson",
    "dump_pandas_categorical",
    "dump_tslim_bytes",
    "encode_categories",
    "load_tslim_bytes",
    "pack_container",
    "pandas_columns",
    "parse_base_score",
    "parse_objective",
    "read_pandas_categorical",
    "save_tslim",
    "unpack_container",
]
