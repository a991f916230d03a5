"""Treelite backend: a :class:`~treeslim.Forest` as a ``treelite.Model``, via Treelite's builder.

The model is exact by default: float64 thresholds and leaves, the forest's one comparison operator
on every node, ``default_left``, leaf vectors, averaging, base scores and the link function.
Treelite (GTIL and TL2cgen) compares inputs in the model's threshold type without rounding them
first, so a forest that rounds inputs to float32 (XGBoost, scikit-learn) needs
``X.astype(np.float32)`` with the default float64 model; ``threshold_type="float32"`` instead
builds a model that rounds inputs itself, with thresholds moved exactly (see :func:`to_treelite`)
and leaves rounded to float32. The forest's ``feature_dtype``, ``feature_names`` and ``source``
ride along in the model's ``attributes`` so
:func:`treeslim.frontends.forest_from_treelite` gets them back.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Literal

import numpy as np

from treeslim._utils import float32_thresholds
from treeslim.errors import MissingDependencyError, UnsupportedModelError
from treeslim.ir import Forest, codes_of

__all__ = ["to_treelite"]

_TASK_TYPES = {
    "regression": "kRegressor",
    "binary": "kBinaryClf",
    "multiclass": "kMultiClf",
    "ranking": "kLearningToRank",
}


def _postprocessor(forest: Forest) -> str:
    post, multi = forest.postprocessor, forest.n_outputs > 1
    if post == "argmax":
        raise UnsupportedModelError(
            "The forest's postprocessor 'argmax' (class index, XGBoost multi:softmax) has no"
            " Treelite equivalent: export forest.replace(postprocessor='softmax') and take the"
            " argmax of the probabilities."
        )
    if post == "identity":
        return "identity_multiclass" if multi else "identity"
    if post == "sigmoid":
        return "multiclass_ova" if multi else "sigmoid"
    if post == "softmax" and multi:
        return "softmax"
    if post == "exponential" and not multi:
        return "exponential"
    raise UnsupportedModelError(
        f"Postprocessor {post!r} with {forest.n_outputs} output(s) has no Treelite equivalent."
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _attributes(forest: Forest) -> dict[str, Any]:
    meta = {
        "feature_dtype": forest.feature_dtype,
        "comparison": forest.comparison,
        "feature_names": list(forest.feature_names) if forest.feature_names else None,
        "source": dict(forest.source),
        "category_rule": forest.category_rule,
        "margin_dtype": forest.margin_dtype,
        "feature_categories": _json_categories(forest.feature_categories),
    }
    return {"treeslim": json.loads(json.dumps(meta, default=_jsonable))}


def _json_categories(cats: Any) -> Any:
    """The per-feature category values when JSON holds them exactly (else None: the Treelite
    model then reads codes, as GTIL does)."""
    plain = (str, int, float, bool)
    if cats is None or not all(c is None or all(isinstance(v, plain) for v in c) for c in cats):
        return None
    return [None if c is None else list(c) for c in cats]


def to_treelite(
    forest: Forest, *, threshold_type: Literal["float64", "float32"] = "float64"
) -> Any:
    """A ``treelite.Model`` predicting what ``forest`` predicts.

    Parameters
    ----------
    forest : Forest
    threshold_type : {"float64", "float32"}, default="float64"
        ``"float64"`` is exact for every forest; Treelite then compares inputs as given, so pass
        ``X.astype(np.float32)`` when ``forest.feature_dtype == "float32"``. ``"float32"`` (only
        for float32 forests) makes Treelite round inputs itself, with each threshold moved to the
        float32 value that splits all float32 inputs the same way; leaf values and sums become
        float32 (exact for XGBoost leaves, within float32 rounding otherwise).

    Categorical splits become category lists with the members on the left. Treelite reads
    category *codes* with the ``"xgboost"`` rule, so GTIL predicts what the forest predicts on
    ``treeslim.ir.check_X(forest, X)`` (DataFrame categories and, for scikit-learn models, raw
    values encoded to codes), with values in (-1, 0) at categorical features set to 0 for a
    ``"lightgbm"``-rule forest (LightGBM truncates them to code 0, Treelite calls them invalid).
    :func:`treeslim.compile` does both itself.

    Returns
    -------
    treelite.Model

    Raises
    ------
    UnsupportedModelError
        For the ``"argmax"`` postprocessor, or one with no Treelite equivalent.

    Examples
    --------
    >>> import numpy as np, treelite
    >>> from sklearn.ensemble import RandomForestRegressor
    >>> from treeslim.frontends import forest_from_sklearn
    >>> X = np.random.default_rng(0).normal(size=(50, 3))
    >>> rf = RandomForestRegressor(n_estimators=3, max_depth=3, random_state=0).fit(X, X[:, 0])
    >>> forest = forest_from_sklearn(rf)
    >>> model = to_treelite(forest)
    >>> out = treelite.gtil.predict(model, X.astype(np.float32).astype(np.float64))
    >>> bool(np.abs(out.ravel() - forest.predict(X)).max() < 1e-12)
    True
    """
    try:
        import treelite.model_builder  # noqa: F401
    except ImportError as exc:  # pragma: no cover - treelite is a core dependency
        raise MissingDependencyError(
            "to_treelite needs treelite: pip install 'treelite>=4.4,<5'"
        ) from exc
    if threshold_type not in ("float64", "float32"):
        raise ValueError(
            f"threshold_type must be 'float64' or 'float32'; got {threshold_type!r} instead."
        )
    if threshold_type == "float32" and forest.feature_dtype != "float32":
        raise ValueError(
            "threshold_type='float32' makes Treelite round inputs to float32, but this forest"
            " compares float64 inputs: use threshold_type='float64'."
        )
    post = _postprocessor(forest)
    builder = _builder(forest, threshold_type, post)
    thr = forest.threshold
    if threshold_type == "float32":
        thr = float32_thresholds(thr, forest.comparison).astype(np.float64)
    _add_trees(builder, forest, thr)
    return _exact_base_scores(builder.commit(), forest.base_score, post)


def _builder(forest: Forest, threshold_type: str, post: str) -> Any:
    """A Treelite ModelBuilder with the forest's header: task, classes, averaging, link."""
    from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

    n_trees, k, width = forest.n_trees, forest.n_outputs, forest.leaf_width
    multi = forest.task == "multiclass"
    class_id = (
        forest.tree_class.tolist() if (multi and width == 1) else [-1 if width > 1 else 0] * n_trees
    )
    return ModelBuilder(
        threshold_type=threshold_type,
        leaf_output_type=threshold_type,
        metadata=Metadata(
            num_feature=forest.num_feature,
            task_type=_TASK_TYPES[forest.task],
            average_tree_output=bool(forest.average),
            num_target=1,
            num_class=[k],
            leaf_vector_shape=(1, width),
        ),
        tree_annotation=TreeAnnotation(
            num_tree=n_trees, target_id=[0] * n_trees, class_id=class_id
        ),
        postprocessor=PostProcessorFunc(name=post, sigmoid_alpha=float(forest.sigmoid_alpha)),
        base_scores=[float(v) for v in forest.base_score],
        attributes=_attributes(forest),
    )


def _add_trees(builder: Any, forest: Forest, thr: np.ndarray) -> None:
    """Every node into ``builder``: leaves, tests (numerical with the forest's operator,
    categorical with the members on the left) and the node statistics."""
    split, thresholds = forest.split_index.tolist(), thr.tolist()
    cleft, cright = forest.cleft.tolist(), forest.cright.tolist()
    default_left = forest.default_left.tolist()
    leaves = (
        forest.leaf_value[:, 0].tolist() if forest.leaf_width == 1 else forest.leaf_value.tolist()
    )
    count = forest.data_count
    counts = None
    if count is not None and np.all(np.isfinite(count) & (count >= 0) & (count == np.round(count))):
        counts = count.astype(np.int64).tolist()
    hess = None if forest.sum_hess is None else forest.sum_hess.tolist()
    gain = None if forest.gain is None else forest.gain.tolist()
    cat = [-1] * forest.n_nodes if forest.cat_index is None else forest.cat_index.tolist()
    sets = (
        [] if forest.cat_bitsets is None else [codes_of(row).tolist() for row in forest.cat_bitsets]
    )
    offsets = forest.tree_offsets.tolist()
    for t in range(forest.n_trees):
        lo, hi = offsets[t], offsets[t + 1]
        builder.start_tree()
        for i in range(lo, hi):
            builder.start_node(i - lo)
            children = {"left_child_key": cleft[i] - lo, "right_child_key": cright[i] - lo}
            if split[i] < 0:
                builder.leaf(leaves[i])
            elif cat[i] >= 0:
                builder.categorical_test(
                    split[i],
                    default_left=default_left[i],
                    category_list=sets[cat[i]],
                    category_list_right_child=False,
                    **children,
                )
            else:
                builder.numerical_test(
                    split[i], thresholds[i], default_left=default_left[i],
                    opname=forest.comparison, **children,
                )  # fmt: skip
            if gain is not None and split[i] >= 0:
                builder.gain(gain[i])
            if counts is not None:
                builder.data_count(counts[i])
            if hess is not None:
                builder.sum_hess(hess[i])
            builder.end_node()
        builder.end_tree()


def _exact_base_scores(model: Any, base: np.ndarray, post: str) -> Any:
    """The model with ``base_scores`` exactly ``base``.

    ModelBuilder reads its metadata from JSON without full precision (about one in ten float64
    values comes back one ulp off), and ``set_field`` keeps a pointer to the caller's buffer rather
    than copying it; so the value is patched into the model's checkpoint bytes, which Treelite
    copies when deserializing.
    """
    import treelite

    got = np.asarray(model.get_header_accessor().get_field("base_scores"), dtype=np.float64)
    if np.array_equal(got, base):
        return model
    n_trees = int(model.num_tree)
    # version, types, num_tree, num_feature, task, average, num_target, num_class, leaf shape,
    # target_id, class_id, postprocessor, sigmoid_alpha, ratio_c: then len(base_scores), values
    offset = 12 + 2 + 8 + 4 + 1 + 1 + 4 + 12 + 16 + 2 * (8 + 4 * n_trees) + 8 + len(post) + 8
    raw = bytearray(model.serialize_bytes())
    expected = struct.pack("<Q", got.size) + got.astype("<f8").tobytes()
    if bytes(raw[offset : offset + len(expected)]) != expected:
        raise UnsupportedModelError(
            "This Treelite version lays out checkpoints differently from 4.x; treeslim cannot set"
            " base_scores exactly."
        )
    raw[offset + 8 : offset + len(expected)] = np.asarray(base, dtype="<f8").tobytes()
    return treelite.Model.deserialize_bytes(bytes(raw))
