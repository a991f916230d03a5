"""The IR: :class:`Forest` (every tree ensemble as flat read-only arrays), its invariants
(:func:`validate`) and the reference predictor every backend is tested against."""

from __future__ import annotations

from treeslim.ir._categories import (
    CATEGORY_RULES,
    bitset_table,
    categorical_features,
    code_twin,
    codes_of,
    snap_codes,
    with_categories_of,
)
from treeslim.ir._forest import Forest, Task
from treeslim.ir._predict import (
    apply_postprocessor,
    check_X,
    leaf_nodes,
    margin_from_leaves,
    predict_margin,
)
from treeslim.ir._tree import TreeArrays
from treeslim.ir._validate import POSTPROCESSORS, TASKS, validate

__all__ = [
    "CATEGORY_RULES",
    "POSTPROCESSORS",
    "TASKS",
    "Forest",
    "Task",
    "TreeArrays",
    "apply_postprocessor",
    "bitset_table",
    "categorical_features",
    "code_twin",
    "codes_of",
    "check_X",
    "leaf_nodes",
    "margin_from_leaves",
    "predict_margin",
    "snap_codes",
    "validate",
    "with_categories_of",
]
