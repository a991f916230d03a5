"""ONNX backend: a :class:`~treeslim.Forest` as one ``ai.onnx.ml`` ``TreeEnsembleRegressor``.

The graph takes float32 rows and compares them with float32 thresholds, ``BRANCH_LT`` or
``BRANCH_LEQ`` on every node as the forest's ``comparison`` says. Each threshold is moved to the
float32 value that splits every float32 input as the forest does (the largest float32 not above it
for ``<=``, the smallest not below it for ``<``; infinities stay infinite), so every row takes the
forest's path through every tree: exactly, not within a tolerance. NaN follows
``nodes_missing_value_tracks_true`` (the "true" branch is the left child). Leaves become float32
weights, one per output (class-vector leaves give one weight per class), scaled by ``1 / trees per
output`` in averaged forests; ``base_values`` carry the base score. The link function is a separate
node after the ensemble, so the margin is an output too.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from treeslim._utils import float32_thresholds, require, write_atomic
from treeslim.errors import UnsupportedModelError
from treeslim.ir import Forest

__all__ = ["to_onnx"]

ONNX_OPSET = 17  #: ``ai.onnx`` opset of the graph (Softmax over one axis, ArgMax, Reshape)
ML_OPSET = 3  #: ``ai.onnx.ml`` opset of the TreeEnsembleRegressor
IR_VERSION = 8  #: ONNX 1.12's IR version, the first with ``ai.onnx.ml`` opset 3
_LINKS = {"sigmoid": "Sigmoid", "exponential": "Exp", "softmax": "Softmax"}


def _node_name(forest: Forest, node: int) -> str:
    t = int(np.searchsorted(forest.tree_offsets, node, side="right") - 1)
    return f"Tree {t}, node {node - int(forest.tree_offsets[t])}"


def _leaf_weights(forest: Forest, leaves: np.ndarray) -> np.ndarray:
    """Float32 leaf values (n_leaves, leaf_width), averaged forests' scaled by 1 / trees."""
    scale = 1.0 / forest.trees_per_output if forest.average else 1.0
    value = forest.leaf_value[leaves] * scale
    with np.errstate(over="ignore"):
        out = value.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if len(bad):
        raise UnsupportedModelError(
            f"{_node_name(forest, int(leaves[bad[0]]))}: leaf value {value[bad[0]].tolist()} is"
            " beyond float32 range; ONNX tree ensembles hold float32 weights only."
        )
    return out


def _tree_attributes(forest: Forest) -> dict[str, Any]:
    """The attributes of the ``TreeEnsembleRegressor`` node computing ``forest``'s margins.

    Node ids are local to each tree (a tree's root is node 0); every array is numpy, one entry per
    node (``nodes_*``) or per leaf weight (``target_*``).
    """
    off = forest.tree_offsets
    leaf = forest.split_index < 0
    tree_of = np.repeat(np.arange(forest.n_trees, dtype=np.int64), np.diff(off))
    local = np.arange(forest.n_nodes, dtype=np.int64) - off[tree_of]
    with np.errstate(over="ignore"):  # thresholds at +-FLT_MAX step to +-inf on purpose
        thr = float32_thresholds(forest.threshold, forest.comparison)
    branch = "BRANCH_LT" if forest.comparison == "<" else "BRANCH_LEQ"
    leaves = np.flatnonzero(leaf)
    weights = _leaf_weights(forest, leaves)
    width = forest.leaf_width
    if width == 1:
        target_ids = forest.tree_class[tree_of[leaves]].astype(np.int64)
    else:  # class-vector leaves: one weight per class, leaf by leaf
        target_ids = np.tile(np.arange(width, dtype=np.int64), len(leaves))
    with np.errstate(over="ignore"):
        base = forest.base_score.astype(np.float32)
    if not np.all(np.isfinite(base)):
        raise UnsupportedModelError(
            f"base_score {forest.base_score.tolist()} is beyond float32 range; ONNX tree"
            " ensembles hold float32 base values only."
        )
    return {
        "n_targets": forest.n_outputs,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
        "base_values": base,
        "nodes_treeids": tree_of,
        "nodes_nodeids": local,
        "nodes_featureids": np.where(leaf, 0, forest.split_index).astype(np.int64),
        "nodes_modes": np.where(leaf, "LEAF", branch),
        "nodes_values": np.where(leaf, np.float32(0.0), thr),
        "nodes_truenodeids": np.where(leaf, 0, forest.cleft - off[tree_of]),
        "nodes_falsenodeids": np.where(leaf, 0, forest.cright - off[tree_of]),
        "nodes_missing_value_tracks_true": (~leaf & forest.default_left).astype(np.int64),
        "target_treeids": np.repeat(tree_of[leaves], width),
        "target_nodeids": np.repeat(local[leaves], width),
        "target_ids": target_ids,
        "target_weights": weights.ravel(),
    }


def _link_nodes(forest: Forest, helper: Any, tp: Any) -> tuple[list[Any], list[Any]]:
    """Nodes (and initializers) from ``margin`` (N, n_outputs) to ``prediction``."""
    nodes: list[Any] = []
    inits: list[Any] = []
    x = "margin"
    post = forest.postprocessor
    if post == "argmax":  # XGBoost multi:softmax: the class index, as a float like Forest.predict
        nodes.append(helper.make_node("ArgMax", [x], ["class_index"], axis=1, keepdims=0))
        nodes.append(helper.make_node("Cast", ["class_index"], ["prediction"], to=tp.FLOAT))
        return nodes, inits
    if post == "sigmoid" and forest.sigmoid_alpha != 1.0:
        inits.append(helper.make_tensor("sigmoid_alpha", tp.FLOAT, [], [forest.sigmoid_alpha]))
        nodes.append(helper.make_node("Mul", [x, "sigmoid_alpha"], ["scaled_margin"]))
        x = "scaled_margin"
    if post in _LINKS:
        kw = {"axis": -1} if post == "softmax" else {}
        nodes.append(helper.make_node(_LINKS[post], [x], ["linked"], **kw))
        x = "linked"
    if forest.n_outputs == 1:  # one output: shape (N,), as Forest.predict gives
        inits.append(helper.make_tensor("flat", tp.INT64, [1], [-1]))
        nodes.append(helper.make_node("Reshape", [x, "flat"], ["prediction"]))
    else:
        nodes.append(helper.make_node("Identity", [x], ["prediction"]))
    return nodes, inits


def to_onnx(forest: Forest, path: str | os.PathLike[str] | None = None) -> Any:
    """Export ``forest`` as an ONNX model (``ai.onnx.ml`` TreeEnsembleRegressor and its link).

    The model reads float32 rows and takes the forest's path through every tree for every float32
    row, NaN and infinities included: thresholds are moved to float32 values that split all
    float32 inputs the same way, NaN goes to each node's default side. Leaves, the base score and
    the sums are float32 in ONNX Runtime, so margins match :meth:`Forest.predict_margin` within
    float32 rounding: at most ``1e-6 * (|base_score| + sum of |leaf values| reached)`` per output
    (measured: under ``2e-7`` times that sum on XGBoost, LightGBM and scikit-learn models).
    XGBoost's leaves are float32 already, so against XGBoost only the order of the float32 sum
    differs; LightGBM's and scikit-learn's float64 leaves are rounded too. Forests that compare
    float64 inputs (LightGBM, HistGradientBoosting) can send a float64 row another way than its
    float32 rounding, which is what this model sees.

    Parameters
    ----------
    forest : Forest
        A :class:`~treeslim.Forest`; convert a fitted model with :func:`treeslim.from_model`.
    path : path-like, optional
        Also write the serialized model there (atomically).

    Returns
    -------
    onnx.ModelProto
        Input ``X``: float32 of shape (N, num_feature). Outputs: ``margin``, float32 of shape
        (N, n_outputs): base score plus summed (averaged) tree outputs; ``prediction``, float32
        shaped as :meth:`Forest.predict` returns it: (N,) for one output (the probability of
        class 1 for binary, values for regression, scores for ranking), (N, num_class) class
        probabilities for multiclass, (N,) class indices for ``postprocessor="argmax"``
        (XGBoost's ``multi:softmax``).

    Raises
    ------
    TypeError
        When ``forest`` is not a Forest.
    UnsupportedModelError
        When a leaf value or the base score is beyond float32 range, or the forest has
        categorical splits (``TreeEnsembleRegressor`` compares numbers only; serve such a model
        through :func:`treeslim.compile`, or export it to its native library).
    MissingDependencyError
        When the ``onnx`` package is not installed (``pip install 'treeslim[onnx]'``).

    Examples
    --------
    >>> import numpy as np, onnxruntime, treeslim
    >>> from sklearn.ensemble import GradientBoostingClassifier
    >>> X = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
    >>> clf = GradientBoostingClassifier(n_estimators=5).fit(X, X[:, 0] > 0)
    >>> forest = treeslim.from_model(clf)
    >>> session = onnxruntime.InferenceSession(
    ...     treeslim.to_onnx(forest).SerializeToString(), providers=["CPUExecutionProvider"])
    >>> margin, proba = session.run(None, {"X": X})
    >>> margin.shape, proba.shape
    ((100, 1), (100,))
    >>> bool(np.abs(proba - clf.predict_proba(X)[:, 1]).max() < 1e-6)
    True
    """
    if not isinstance(forest, Forest):
        raise TypeError(
            f"to_onnx takes a treeslim.Forest; got {type(forest).__name__}. Convert a fitted model"
            " with treeslim.from_model(model) (or read a file with treeslim.load(path)) first."
        )
    if forest.cat_index is not None:
        node = int(np.flatnonzero(forest.is_categorical)[0])
        j = int(forest.split_index[node])
        name = forest.feature_names[j] if forest.feature_names else f"f{j}"
        raise UnsupportedModelError(
            f"to_onnx: {_node_name(forest, node)} splits feature {j} ({name!r}) by category, which"
            " ONNX's"
            " TreeEnsembleRegressor cannot express exactly (it compares numbers; a category set"
            f" needs a membership test). This model has {forest.n_categorical_splits} of them."
            " Serve it with treeslim.compile(forest) (a C library and a pickle), or export it to"
            " its own library (treeslim.to_xgboost / to_lightgbm)."
        )
    onnx: Any = require("onnx", "onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    attrs = {
        key: value.tolist() if isinstance(value, np.ndarray) else value
        for key, value in _tree_attributes(forest).items()
    }
    trees = helper.make_node(
        "TreeEnsembleRegressor", ["X"], ["margin"], name="trees", domain="ai.onnx.ml", **attrs
    )
    link, inits = _link_nodes(forest, helper, tp)
    k = forest.n_outputs
    one = k == 1 or forest.postprocessor == "argmax"
    graph = helper.make_graph(
        [trees, *link],
        "treeslim_forest",
        [helper.make_tensor_value_info("X", tp.FLOAT, ["N", forest.num_feature])],
        [
            helper.make_tensor_value_info("margin", tp.FLOAT, ["N", k]),
            helper.make_tensor_value_info("prediction", tp.FLOAT, ["N"] if one else ["N", k]),
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", ONNX_OPSET),
            helper.make_opsetid("ai.onnx.ml", ML_OPSET),
        ],
        ir_version=IR_VERSION,
        producer_name="treeslim",
    )
    meta = {
        "task": forest.task,
        "postprocessor": forest.postprocessor,
        "comparison": forest.comparison,
        "feature_names": json.dumps(list(forest.feature_names or ())),
        "source": json.dumps(dict(forest.source), default=str),
    }
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        write_atomic(path, model.SerializeToString())
    return model
