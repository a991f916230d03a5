"""The `Forest` IR: every tree ensemble treeslim handles, as flat read-only numpy arrays.

All nodes of all trees live in one struct of arrays; tree ``t`` is the slice
``tree_offsets[t]:tree_offsets[t + 1]`` and child links are *global* node indices. Within a tree a
child always has a larger index than its parent (the canonical order every frontend produces), which
makes cycles impossible and lets passes walk trees bottom-up with a reversed loop. Field names follow
Treelite's model (``split_index``, ``threshold``, ``cleft``, ``cright``, ``default_left``,
``leaf_value``, ``sum_hess``, ``data_count``, ``gain``).

A decision at an internal node: the input value is first rounded to ``feature_dtype`` (XGBoost and
scikit-learn round inputs to float32, LightGBM keeps float64), NaN goes to the ``default_left``
side, otherwise the row goes left when ``x < threshold`` (``comparison="<"``, XGBoost) or
``x <= threshold`` (``"<="``, LightGBM and scikit-learn). A categorical node (``cat_index >= 0``)
sends the row left when its value is a category code in the node's set; see
:mod:`treeslim.ir._categories` for the exact rule and how DataFrame categories become codes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.errors import InvalidForestError
from treeslim.ir._canonical import canonical
from treeslim.ir._categories import codes_of
from treeslim.ir._predict import apply_postprocessor, leaf_nodes, predict_margin
from treeslim.ir._tree import TreeArrays
from treeslim.ir._validate import validate

__all__ = ["Forest", "TreeArrays"]

Task = Literal["regression", "binary", "multiclass", "ranking"]
_DTYPES: dict[str, Any] = {
    "split_index": np.int32,
    "threshold": np.float64,
    "cleft": np.int32,
    "cright": np.int32,
    "default_left": np.bool_,
    "leaf_value": np.float64,
    "tree_offsets": np.int64,
    "tree_class": np.int32,
    "base_score": np.float64,
    "sum_hess": np.float64,
    "data_count": np.float64,
    "gain": np.float64,
    "cat_index": np.int32,
    "cat_bitsets": np.uint32,
}


def _readonly(a: ArrayLike, dtype: Any) -> NDArray[Any]:
    out = np.array(a, dtype=dtype, copy=True, order="C")
    out.setflags(write=False)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class Forest:
    """A tree ensemble as flat, read-only numpy arrays.

    Build one with :func:`treeslim.from_model` or :func:`treeslim.load`; passes return new Forests
    (the arrays are read-only, so a pass that edits in place fails at once).

    Parameters
    ----------
    split_index : ndarray of shape (n_nodes,), int32
        Feature tested at each internal node, ``-1`` at leaves.
    threshold : ndarray of shape (n_nodes,), float64
        Split threshold (ignored at leaves).
    cleft, cright : ndarray of shape (n_nodes,), int32
        Global index of the left / right child, ``-1`` at leaves.
    default_left : ndarray of shape (n_nodes,), bool
        Where NaN goes.
    leaf_value : ndarray of shape (n_nodes, leaf_width), float64
        Output of each leaf (zero at internal nodes). ``leaf_width`` is 1, or ``num_class`` for
        forests whose leaves hold a whole class distribution (scikit-learn forests).
    tree_offsets : ndarray of shape (n_trees + 1,), int64
        Tree ``t`` owns nodes ``tree_offsets[t]:tree_offsets[t+1]``; its root is the first.
    tree_class : ndarray of shape (n_trees,), int32
        The output a tree adds to (``-1`` when leaves are class vectors).
    num_feature : int
    task : {"regression", "binary", "multiclass", "ranking"}
    num_class : int
        Number of classes for multiclass, else 1.
    base_score : ndarray of shape (n_outputs,), float64
        Added to the summed tree outputs, in margin space.
    postprocessor : {"identity", "sigmoid", "softmax", "exponential", "argmax"}
        The link from margins to predictions.
    average : bool
        Tree outputs are averaged (random forests) rather than summed (boosting).
    comparison : {"<", "<="}
    feature_dtype : {"float32", "float64"}
        Precision inputs are rounded to before comparison.
    margin_dtype : {"float64", "float32"}
        Precision margins are summed in. ``"float32"`` (XGBoost): each output starts at its
        ``base_score`` rounded to float32 and adds the trees' float32 leaf values in tree order,
        rounding after every addition, as XGBoost does, so margins match it to the last bit.
    feature_names : tuple of str or None
    source : mapping
        Where the model came from (``library``, ``objective`` ...) so exports can go back.
    cat_index : ndarray of shape (n_nodes,), int32, or None
        At a categorical node, the row of ``cat_bitsets`` holding its category set (members go
        left); ``-1`` elsewhere. None when no node is categorical.
    cat_bitsets : ndarray of shape (n_sets, n_words), uint32, or None
        The category sets, bit ``c & 31`` of word ``c >> 5`` for code ``c``.
    category_rule : {"xgboost", "lightgbm", "sklearn"}
        Which values count as category codes and how inputs are encoded; see
        :mod:`treeslim.ir._categories`.
    feature_categories : tuple of (tuple or None) or None
        Per feature, the category values the library stored at training (position = code), used
        to encode DataFrame columns (and numeric values under the ``"sklearn"`` rule).
    """

    split_index: NDArray[np.int32]
    threshold: NDArray[np.float64]
    cleft: NDArray[np.int32]
    cright: NDArray[np.int32]
    default_left: NDArray[np.bool_]
    leaf_value: NDArray[np.float64]
    tree_offsets: NDArray[np.int64]
    tree_class: NDArray[np.int32]
    num_feature: int
    task: Task
    num_class: int = 1
    base_score: NDArray[np.float64] = dataclasses.field(default_factory=lambda: np.zeros(1))
    postprocessor: str = "identity"
    sigmoid_alpha: float = 1.0
    average: bool = False
    comparison: Literal["<", "<="] = "<"
    feature_dtype: Literal["float32", "float64"] = "float64"
    margin_dtype: Literal["float32", "float64"] = "float64"
    feature_names: tuple[str, ...] | None = None
    sum_hess: NDArray[np.float64] | None = None
    data_count: NDArray[np.float64] | None = None
    gain: NDArray[np.float64] | None = None
    source: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cat_index: NDArray[np.int32] | None = None
    cat_bitsets: NDArray[np.uint32] | None = None
    category_rule: Literal["xgboost", "lightgbm", "sklearn"] = "xgboost"
    feature_categories: tuple[tuple[Any, ...] | None, ...] | None = None

    #: The per-node arrays every Forest has, and the optional per-node statistics.
    NODE_FIELDS: ClassVar[tuple[str, ...]] = (
        "split_index", "threshold", "cleft", "cright", "default_left", "leaf_value",
    )  # fmt: skip
    STAT_FIELDS: ClassVar[tuple[str, ...]] = ("sum_hess", "data_count", "gain")

    def __post_init__(self) -> None:
        for name, dtype in _DTYPES.items():
            value = getattr(self, name)
            if value is None:
                continue
            arr = _readonly(value, dtype)
            if name == "leaf_value" and arr.ndim == 1:
                arr = arr.reshape(-1, 1)
            if name == "base_score":
                arr = np.atleast_1d(arr)
            object.__setattr__(self, name, arr)
        if self.cat_index is not None and not np.any(self.cat_index >= 0):
            object.__setattr__(self, "cat_index", None)  # no categorical node: a numerical forest
        if self.cat_index is None:
            object.__setattr__(self, "cat_bitsets", None)
        if self.feature_categories is not None:
            cats = tuple(
                None
                if c is None
                else tuple(v.item() if isinstance(v, np.generic) else v for v in c)
                for c in self.feature_categories
            )
            object.__setattr__(self, "feature_categories", cats)
        if self.feature_names is not None:
            object.__setattr__(self, "feature_names", tuple(str(n) for n in self.feature_names))
        object.__setattr__(self, "source", dict(self.source))
        object.__setattr__(self, "num_feature", int(self.num_feature))
        object.__setattr__(self, "num_class", int(self.num_class))
        validate(self)

    def __getstate__(self) -> dict[str, Any]:
        names = {f.name for f in dataclasses.fields(self)}
        return {k: v for k, v in self.__dict__.items() if k in names}  # caches are rebuilt

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in _DTYPES:
            value = self.__dict__.get(name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_trees(cls, trees: Sequence[TreeArrays], **header: Any) -> Forest:
        """Assemble a Forest from per-tree arrays with local child indices.

        Trees are put in canonical order (children after parents, unreachable nodes dropped) when
        they are not already.
        """
        if not trees:
            raise InvalidForestError("A Forest needs at least one tree; got none.")
        parts: dict[str, list[NDArray[Any]]] = {
            k: [] for k in (*Forest.NODE_FIELDS, *Forest.STAT_FIELDS)
        }
        offsets = [0]
        widths = {np.asarray(t.leaf_value).reshape(len(t.split_index), -1).shape[1] for t in trees}
        if len(widths) != 1:
            raise InvalidForestError(f"Trees disagree on the leaf width: {sorted(widths)}.")
        stats_present = {
            k: all(getattr(t, k) is not None for t in trees) for k in Forest.STAT_FIELDS
        }
        categorical = any(t.cat_index is not None for t in trees)
        cat_parts: list[NDArray[Any]] = []
        for t_idx, tree in enumerate(trees):
            tree = canonical(tree, t_idx)
            base = offsets[-1]
            n = len(tree.split_index)
            leaf = np.asarray(tree.split_index) < 0
            parts["split_index"].append(np.where(leaf, -1, tree.split_index).astype(np.int32))
            parts["threshold"].append(np.where(leaf, 0.0, tree.threshold).astype(np.float64))
            parts["cleft"].append(np.where(leaf, -1, np.asarray(tree.cleft) + base))
            parts["cright"].append(np.where(leaf, -1, np.asarray(tree.cright) + base))
            parts["default_left"].append(np.where(leaf, False, tree.default_left).astype(bool))
            lv = np.asarray(tree.leaf_value, dtype=np.float64).reshape(n, -1)
            parts["leaf_value"].append(np.where(leaf[:, None], lv, 0.0))
            for k in Forest.STAT_FIELDS:
                if stats_present[k]:
                    parts[k].append(np.asarray(getattr(tree, k), dtype=np.float64))
            if categorical:
                ci = np.full(n, -1) if tree.cat_index is None else np.asarray(tree.cat_index)
                cat_parts.append(np.where(leaf, -1, ci).astype(np.int32))
            offsets.append(base + n)
        fields: dict[str, Any] = {k: np.concatenate(parts[k]) for k in Forest.NODE_FIELDS}
        for k in Forest.STAT_FIELDS:
            fields[k] = np.concatenate(parts[k]) if stats_present[k] else None
        fields["tree_offsets"] = np.asarray(offsets, dtype=np.int64)
        fields["tree_class"] = np.asarray([t.tree_class for t in trees], dtype=np.int32)
        fields["cat_index"] = np.concatenate(cat_parts) if categorical else None
        fields.update(header)
        return cls(**fields)

    def replace(self, **changes: Any) -> Forest:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def tree(self, t: int) -> TreeArrays:
        """Tree ``t`` as :class:`TreeArrays` with local child indices."""
        if not 0 <= t < self.n_trees:
            raise IndexError(f"tree index {t} out of range for a Forest of {self.n_trees} trees")
        lo, hi = int(self.tree_offsets[t]), int(self.tree_offsets[t + 1])
        leaf = self.split_index[lo:hi] < 0
        stats = {
            k: (None if getattr(self, k) is None else getattr(self, k)[lo:hi])
            for k in Forest.STAT_FIELDS
        }
        return TreeArrays(
            split_index=self.split_index[lo:hi],
            threshold=self.threshold[lo:hi],
            cleft=np.where(leaf, -1, self.cleft[lo:hi] - lo),
            cright=np.where(leaf, -1, self.cright[lo:hi] - lo),
            default_left=self.default_left[lo:hi],
            leaf_value=self.leaf_value[lo:hi],
            tree_class=int(self.tree_class[t]),
            cat_index=None if self.cat_index is None else self.cat_index[lo:hi],
            **stats,
        )

    def header(self) -> dict[str, Any]:
        """The non-node fields, for building a Forest like this one."""
        skip = {*Forest.NODE_FIELDS, *Forest.STAT_FIELDS, "tree_offsets", "tree_class", "cat_index"}
        return {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip
        }

    # ------------------------------------------------------------------ size
    @property
    def n_trees(self) -> int:
        """Number of trees."""
        return len(self.tree_offsets) - 1

    @property
    def n_nodes(self) -> int:
        """Number of nodes, internal and leaves, over all trees."""
        return len(self.split_index)

    @property
    def n_leaves(self) -> int:
        """Number of leaves over all trees."""
        return int(np.count_nonzero(self.split_index < 0))

    @property
    def is_categorical(self) -> NDArray[np.bool_]:
        """Which nodes are categorical splits, shape (n_nodes,)."""
        if self.cat_index is None:
            return np.zeros(self.n_nodes, dtype=bool)
        return self.cat_index >= 0

    @property
    def n_categorical_splits(self) -> int:
        """Number of categorical split nodes."""
        return 0 if self.cat_index is None else int(np.count_nonzero(self.cat_index >= 0))

    def category_set(self, node: int) -> NDArray[np.int64]:
        """The category codes that go left at categorical node ``node`` (global index)."""
        if self.cat_index is None or self.cat_index[node] < 0:
            raise ValueError(f"node {node} is not a categorical split")
        assert self.cat_bitsets is not None
        return codes_of(self.cat_bitsets[self.cat_index[node]])

    @property
    def n_outputs(self) -> int:
        """Width of the margin: ``num_class`` for multiclass, else 1."""
        return self.num_class if self.task == "multiclass" else 1

    @property
    def trees_per_output(self) -> int:
        """Trees that add to each output: ``n_trees / n_outputs`` when every tree adds to one
        output (boosted multiclass), else ``n_trees`` (one output, or class-vector leaves). What
        :func:`~treeslim.select_trees` counts, and what an averaged forest divides by."""
        if self.leaf_width == 1 and self.n_outputs > 1:
            return self.n_trees // self.n_outputs
        return self.n_trees

    @property
    def leaf_width(self) -> int:
        """Values per leaf: 1, or ``num_class`` for class-distribution leaves."""
        return int(self.leaf_value.shape[1])

    @cached_property
    def node_depth(self) -> NDArray[np.int32]:
        """Depth of every node (roots are at depth 0)."""
        depth = np.zeros(self.n_nodes, dtype=np.int32)
        frontier = self.tree_offsets[:-1]
        level = 0
        while len(frontier):
            depth[frontier] = level
            inner = frontier[self.split_index[frontier] >= 0]
            frontier = np.concatenate([self.cleft[inner], self.cright[inner]])
            level += 1
        depth.setflags(write=False)
        return depth

    @property
    def tree_depths(self) -> NDArray[np.int32]:
        """Depth of each tree (a lone leaf has depth 0)."""
        return np.maximum.reduceat(self.node_depth, self.tree_offsets[:-1]).astype(np.int32)

    @property
    def max_depth(self) -> int:
        """Depth of the deepest tree."""
        return int(self.node_depth.max(initial=0))

    @property
    def link(self) -> str:
        """Alias of ``postprocessor``: the function from margins to predictions."""
        return self.postprocessor

    def __repr__(self) -> str:
        lib = self.source.get("library", "?")
        obj = self.source.get("objective", "")
        return (
            f"Forest(task={self.task!r}, source={lib}:{obj}, n_trees={self.n_trees}, "
            f"n_nodes={self.n_nodes}, max_depth={self.max_depth}, num_feature={self.num_feature}, "
            f"num_class={self.num_class}, postprocessor={self.postprocessor!r})"
        )

    # ------------------------------------------------------------------ prediction
    def predict_margin(self, X: Any) -> NDArray[np.float64]:
        """Raw scores: base score plus summed (or averaged) tree outputs.

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return predict_margin(self, X)

    def predict(self, X: Any) -> NDArray[np.float64]:
        """Predictions with the native library's conventions.

        Binary: probability of class 1, shape (n,); multiclass: (n, k) probabilities (class
        indices for XGBoost's ``multi:softmax``); regression and ranking: values / scores.
        """
        return apply_postprocessor(self, predict_margin(self, X))

    def apply(self, X: Any) -> NDArray[np.int32]:
        """Index of the leaf each row reaches in each tree, local to the tree, shape (n, n_trees)."""
        return (leaf_nodes(self, X) - self.tree_offsets[:-1]).astype(np.int32)
