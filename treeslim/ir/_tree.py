"""One tree with local child indices: the unit frontends build and passes rewrite."""

from __future__ import annotations

import dataclasses
from typing import Any

from numpy.typing import NDArray

__all__ = ["TreeArrays"]


@dataclasses.dataclass(frozen=True)
class TreeArrays:
    """One tree with *local* child indices (``-1`` for none); the unit frontends build.

    ``leaf_value`` has shape ``(n_nodes,)`` or ``(n_nodes, leaf_width)``; internal nodes' values are
    ignored. ``cat_index`` (optional) is the row of the forest's ``cat_bitsets`` a categorical
    node tests, ``-1`` at numerical nodes and leaves.
    """

    split_index: NDArray[Any]
    threshold: NDArray[Any]
    cleft: NDArray[Any]
    cright: NDArray[Any]
    default_left: NDArray[Any]
    leaf_value: NDArray[Any]
    tree_class: int = 0
    sum_hess: NDArray[Any] | None = None
    data_count: NDArray[Any] | None = None
    gain: NDArray[Any] | None = None
    cat_index: NDArray[Any] | None = None
