"""scikit-learn frontend: decision trees, random forests, extra trees, (hist) gradient boosting.

Arrays are read whole from each fitted tree (``tree_`` for the CART-based estimators, the node
records of ``_predictors`` for histogram gradient boosting), never node by node. Semantics kept
exactly: CART-based estimators round inputs to float32 and test ``x <= threshold`` against float64
thresholds; histogram gradient boosting tests float64 inputs with ``<=``; NaN follows
``missing_go_to_left`` (set on every node, also for models trained without NaN). Leaves hold what
``predict_proba`` / ``predict`` / ``decision_function`` sum: class fractions for trees and forests,
``learning_rate * value`` for gradient boosting (the product sklearn computes), shrunk values for
histogram boosting. Categorical histogram boosting keeps its splits as category sets (members of
``raw_left_cat_bitsets`` go left) under the ``"sklearn"`` rule: inputs are encoded by value with
the OrdinalEncoder's categories (unseen values become NaN and take the missing side, as HGB's own
encoder and predictor do), and the tree features, which index the encoder's reordered output
(categorical columns first), are mapped back to the user's columns.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from treeslim.errors import UnsupportedModelError
from treeslim.ir import Forest, TreeArrays

__all__ = ["forest_from_sklearn", "sklearn_tree_arrays"]

_SINGLE = (
    "DecisionTreeClassifier",
    "DecisionTreeRegressor",
    "ExtraTreeClassifier",
    "ExtraTreeRegressor",
)
_BAGGED = (
    "RandomForestClassifier",
    "RandomForestRegressor",
    "ExtraTreesClassifier",
    "ExtraTreesRegressor",
)
_GB = ("GradientBoostingClassifier", "GradientBoostingRegressor")
_HGB = ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")
_CONSTANT_DUMMY = {
    "DummyRegressor": None,
    "DummyClassifier": ("prior", "most_frequent", "uniform", "constant"),
}


def _family(obj: Any) -> str:
    for cls in type(obj).__mro__:
        if cls.__module__.startswith("sklearn.") and cls.__name__ in (
            *_SINGLE,
            *_BAGGED,
            *_GB,
            *_HGB,
        ):
            return cls.__name__
    raise UnsupportedModelError(
        f"{type(obj).__qualname__} is not a scikit-learn tree model treeslim reads: pass a decision"
        " tree, random forest, extra trees or (hist) gradient boosting estimator."
    )


def _check_fitted(obj: Any, name: str) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(obj)
    except NotFittedError:
        raise UnsupportedModelError(
            f"This {name} is not fitted yet: call fit(X, y) on it first, then convert it."
        ) from None


def sklearn_tree_arrays(tree: Any, value: np.ndarray, tree_class: int = 0) -> TreeArrays:
    """One ``sklearn.tree._tree.Tree`` as TreeArrays; ``value`` is the per-node leaf output."""
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    leaf = left < 0
    w = np.asarray(tree.weighted_n_node_samples, dtype=np.float64)
    wimp = w * np.asarray(tree.impurity, dtype=np.float64)
    li, ri = np.where(leaf, 0, left), np.where(leaf, 0, right)
    gain = np.where(leaf, 0.0, wimp - wimp[li] - wimp[ri])  # weighted impurity decrease
    return TreeArrays(
        split_index=np.where(leaf, -1, tree.feature),
        threshold=np.where(leaf, 0.0, tree.threshold),
        cleft=np.where(leaf, -1, left),
        cright=np.where(leaf, -1, right),
        default_left=np.asarray(tree.missing_go_to_left).astype(bool),
        leaf_value=value,
        tree_class=tree_class,
        sum_hess=w,
        data_count=np.asarray(tree.n_node_samples, dtype=np.float64),
        gain=gain,
    )


def _classes(obj: Any, name: str) -> int:
    k = int(np.asarray(obj.n_classes_).ravel()[0])
    if k < 2:
        raise UnsupportedModelError(
            f"This {name} was fitted on a single class ({list(obj.classes_)}); it predicts a"
            " constant, which treeslim does not hold: fit it on at least two classes."
        )
    return k


def _cart_forest(obj: Any, name: str, header: dict[str, Any]) -> Forest:
    n_out = int(getattr(obj, "n_outputs_", 1))
    if n_out > 1:
        raise UnsupportedModelError(
            f"This {name} was fitted on {n_out} outputs (2-D y); treeslim holds single-output"
            " models: fit one estimator per output column."
        )
    estimators = [obj] if name in _SINGLE else list(obj.estimators_)
    header.update(comparison="<=", feature_dtype="float32", average=name in _BAGGED)
    if name.endswith("Regressor"):
        trees = [sklearn_tree_arrays(e.tree_, e.tree_.value[:, 0, 0]) for e in estimators]
        return Forest.from_trees(trees, task="regression", **header)
    k = _classes(obj, name)
    header["source"]["classes"] = np.asarray(obj.classes_).tolist()
    if k == 2:  # leaf = fraction of class 1, what predict_proba(X)[:, 1] sums
        trees = [sklearn_tree_arrays(e.tree_, e.tree_.value[:, 0, 1]) for e in estimators]
        return Forest.from_trees(trees, task="binary", **header)
    trees = [sklearn_tree_arrays(e.tree_, e.tree_.value[:, 0, :], -1) for e in estimators]
    return Forest.from_trees(
        trees, task="multiclass", num_class=k, base_score=np.zeros(k), **header
    )


def _gb_base_score(obj: Any, name: str) -> np.ndarray:
    init = obj.init_
    if not (isinstance(init, str) and init == "zero"):
        cls = type(init).__name__
        allowed = _CONSTANT_DUMMY.get(cls, ())
        if cls not in _CONSTANT_DUMMY or (allowed and init.strategy not in allowed):
            raise UnsupportedModelError(
                f"This {name} starts from init={init!r}, whose prediction depends on X; treeslim"
                " holds a constant base score: refit with init=None (the default) or init='zero'."
            )
    x0 = np.zeros((1, int(obj.n_features_in_)), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "X does not have valid feature names"
        base = np.asarray(obj._raw_predict_init(x0), dtype=np.float64)[0]
    return base


def _gb_forest(obj: Any, name: str, header: dict[str, Any]) -> Forest:
    lr = float(obj.learning_rate)
    stages = np.asarray(obj.estimators_)
    k = stages.shape[1]
    trees = [
        sklearn_tree_arrays(stages[s, c].tree_, lr * stages[s, c].tree_.value[:, 0, 0], c)
        for s in range(stages.shape[0])
        for c in range(k)
    ]
    header.update(comparison="<=", feature_dtype="float32", base_score=_gb_base_score(obj, name))
    header["source"]["loss"] = str(obj.loss)
    if name == "GradientBoostingRegressor":
        return Forest.from_trees(trees, task="regression", **header)
    n_cls = _classes(obj, name)
    header["source"]["classes"] = np.asarray(obj.classes_).tolist()
    if n_cls > 2:
        return Forest.from_trees(
            trees, task="multiclass", num_class=n_cls, postprocessor="softmax", **header
        )
    alpha = 2.0 if obj.loss == "exponential" else 1.0  # ExponentialLoss: proba = expit(2 raw)
    return Forest.from_trees(
        trees, task="binary", postprocessor="sigmoid", sigmoid_alpha=alpha, **header
    )


def _hgb_tree(nodes: np.ndarray, tree_class: int, columns: np.ndarray, set_base: int) -> TreeArrays:
    """One HGB predictor as TreeArrays: features mapped back to the user's columns, and
    categorical nodes pointing at row ``set_base + bitset_idx`` of the forest's category table."""
    leaf = nodes["is_leaf"].astype(bool)
    cat = nodes["is_categorical"].astype(bool) & ~leaf
    return TreeArrays(
        split_index=np.where(leaf, -1, columns[np.where(leaf, 0, nodes["feature_idx"])]),
        threshold=np.where(leaf | cat, 0.0, nodes["num_threshold"]),
        cleft=np.where(leaf, -1, nodes["left"].astype(np.int64)),
        cright=np.where(leaf, -1, nodes["right"].astype(np.int64)),
        default_left=nodes["missing_go_to_left"].astype(bool),
        leaf_value=nodes["value"],
        tree_class=tree_class,
        data_count=nodes["count"].astype(np.float64),
        gain=np.where(leaf, 0.0, nodes["gain"]),
        cat_index=np.where(cat, set_base + nodes["bitset_idx"].astype(np.int64), -1),
    )


def _hgb_columns(obj: Any, name: str, n: int) -> tuple[np.ndarray, list[Any] | None]:
    """Which user column each tree feature is, and the category values per user column.

    With categorical features, HGB's ``_preprocessor`` (a ColumnTransformer) puts the ordinally
    encoded categorical columns first and the numerical ones after them; tree feature ``j`` is
    column ``j`` of that output. The OrdinalEncoder's ``categories_`` give, per categorical column,
    the value of each code (its trailing NaN, the missing marker, is not a category).
    """
    pre = getattr(obj, "_preprocessor", None)
    if pre is None:
        return np.arange(n), None
    columns = np.full(n, -1, dtype=np.int64)
    for key, _, selected in pre.transformers_:
        out = pre.output_indices_.get(key, slice(0, 0))
        if out.stop == out.start:
            continue  # an empty step (the "drop" remainder)
        sel = np.asarray(selected)
        picked = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64, copy=False)
        if sel.dtype.kind not in "biu" or len(picked) != out.stop - out.start:
            raise UnsupportedModelError(
                f"This {name}'s preprocessor step {key!r} selects columns by {sel.dtype} values;"
                " treeslim maps HistGradientBoosting columns given as masks or indices only."
            )
        columns[out] = picked
    if np.any(columns < 0) or len(set(columns.tolist())) != n:
        raise UnsupportedModelError(
            f"This {name}'s preprocessor does not map its {n} input columns one to one; treeslim"
            " cannot tell which column each tree feature reads."
        )
    encoder = pre.named_transformers_["encoder"]
    enc_cols = columns[pre.output_indices_["encoder"]]
    categories: list[Any] = [None] * n
    for col, cats in zip(enc_cols.tolist(), encoder.categories_, strict=True):
        values = list(cats)
        while values and (values[-1] is None or _is_nan(values[-1])):
            values.pop()  # OrdinalEncoder lists the missing marker last; it encodes to NaN
        categories[col] = tuple(values)
    return columns, categories


def _is_nan(v: Any) -> bool:
    return isinstance(v, (float, np.floating)) and bool(np.isnan(v))


def _hgb_trees(obj: Any, name: str, columns: np.ndarray) -> tuple[list[TreeArrays], Any]:
    """All predictors as TreeArrays, and the table of their categories-going-left bitsets."""
    predictors = obj._predictors[: int(obj.n_iter_)]
    trees, tables, n_sets = [], [], 0
    for per_class in predictors:
        for c, pred in enumerate(per_class):
            trees.append(_hgb_tree(pred.nodes, c, columns, n_sets))
            bits = np.asarray(pred.raw_left_cat_bitsets, dtype=np.uint32).reshape(-1, _BITSET_WORDS)
            tables.append(bits)
            n_sets += len(bits)
    if not trees:
        raise UnsupportedModelError(f"This {name} has no trees (n_iter_ == 0): fit it again.")
    table = np.concatenate(tables) if n_sets else None
    if table is not None:  # drop all-zero high words (codes stop at max_bins <= 255)
        used = np.flatnonzero(table.any(axis=0))
        table = table[:, : int(used[-1]) + 1 if len(used) else 1]
    return trees, table


#: Words of one HGB category bitset (256 bits: codes up to max_bins = 255).
_BITSET_WORDS = 8


def _hgb_forest(obj: Any, name: str, header: dict[str, Any]) -> Forest:
    n = int(obj.n_features_in_)
    columns, categories = _hgb_columns(obj, name, n)
    trees, table = _hgb_trees(obj, name, columns)
    k = len(obj._predictors[0])
    base = np.asarray(obj._baseline_prediction, dtype=np.float64).ravel()
    link = type(obj._loss.link).__name__
    header.update(comparison="<=", feature_dtype="float64", base_score=base)
    if categories is not None:
        header.update(cat_bitsets=table, category_rule="sklearn", feature_categories=categories)
    header["source"]["loss"] = str(obj.loss)
    if name == "HistGradientBoostingRegressor":
        posts = {"IdentityLink": "identity", "LogLink": "exponential"}
        if link not in posts:
            raise UnsupportedModelError(
                f"{name}(loss={obj.loss!r}) uses the link {link}, which treeslim does not hold;"
                " supported losses: squared_error, absolute_error, quantile, poisson, gamma."
            )
        return Forest.from_trees(trees, task="regression", postprocessor=posts[link], **header)
    header["source"]["classes"] = np.asarray(obj.classes_).tolist()
    if k > 1:
        return Forest.from_trees(
            trees, task="multiclass", num_class=k, postprocessor="softmax", **header
        )
    return Forest.from_trees(trees, task="binary", postprocessor="sigmoid", **header)


def forest_from_sklearn(obj: Any) -> Forest:
    """Build a Forest from a fitted scikit-learn tree estimator.

    Parameters
    ----------
    obj : fitted estimator
        ``DecisionTree*``, ``ExtraTree*``, ``RandomForest*``, ``ExtraTrees*``,
        ``GradientBoosting*`` or ``HistGradientBoosting*`` (classifier or regressor).

    Returns
    -------
    Forest
        ``predict`` gives ``predict_proba(X)[:, 1]`` for binary classifiers, ``predict_proba(X)``
        for multiclass ones and ``predict(X)`` for regressors; ``predict_margin`` gives
        ``decision_function`` (``_raw_predict``) for gradient boosting.

    Raises
    ------
    UnsupportedModelError
        For an unfitted estimator, several outputs, single-class training or a gradient
        boosting ``init`` estimator that is not constant.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> X = np.arange(8.0).reshape(-1, 1)
    >>> tree = DecisionTreeRegressor(max_depth=2).fit(X, X[:, 0] ** 2)
    >>> forest = forest_from_sklearn(tree)
    >>> forest.comparison, forest.feature_dtype, forest.n_trees
    ('<=', 'float32', 1)
    >>> bool(np.array_equal(forest.predict(X), tree.predict(X)))
    True
    """
    name = _family(obj)
    _check_fitted(obj, name)
    import sklearn

    names = getattr(obj, "feature_names_in_", None)
    header: dict[str, Any] = {
        "num_feature": int(obj.n_features_in_),
        "feature_names": None if names is None else tuple(str(n) for n in names),
        "source": {"library": "sklearn", "estimator": name, "version": sklearn.__version__},
    }
    if name in _HGB:
        return _hgb_forest(obj, name, header)
    if name in _GB:
        return _gb_forest(obj, name, header)
    return _cart_forest(obj, name, header)
