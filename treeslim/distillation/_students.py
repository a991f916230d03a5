"""Students for :func:`treeslim.distill`: fit a small regressor on soft targets, import it.

A student is given as an unfitted scikit-learn style estimator of XGBoost, LightGBM, scikit-learn
(trees, forests, gradient boosting) or a scikit-learn MLP. Distillation is regression on the
teacher's margins, so classifiers and rankers are swapped for the regressor of the same library
with the same parameters. Single-output libraries get one regressor per output column (K small
students for K classes, all counted in the size); scikit-learn trees and forests fit every output
at once (leaves hold the K values). The fitted regressors become one :class:`~treeslim.Forest`
with the teacher's task, classes and link, whose margin is ``temperature`` times the regressors'
summed output; an MLP student becomes the :mod:`treeslim.nn` MLP IR.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.errors import UnsupportedModelError
from treeslim.frontends import from_model, sklearn_tree_arrays
from treeslim.ir import Forest, TreeArrays, categorical_features
from treeslim.nn import from_sklearn

__all__ = [
    "MULTI_OUTPUT",
    "StudentFit",
    "assemble",
    "categorical_student",
    "estimator_like",
    "fit_student",
    "fit_scaled_mlp",
    "fold_scaler",
    "parse_student",
    "sklearn_multi",
    "standardized",
    "student_kind",
]

_REGRESSOR = {  # (package, class) of a student -> the regressor fitted in its place
    ("lightgbm", "LGBMClassifier"): "LGBMRegressor",
    ("lightgbm", "LGBMRanker"): "LGBMRegressor",
    ("lightgbm", "LGBMRegressor"): "LGBMRegressor",
    ("xgboost", "XGBClassifier"): "XGBRegressor",
    ("xgboost", "XGBRanker"): "XGBRegressor",
    ("xgboost", "XGBRegressor"): "XGBRegressor",
    ("xgboost", "XGBRFClassifier"): "XGBRFRegressor",
    ("xgboost", "XGBRFRegressor"): "XGBRFRegressor",
    **{
        ("sklearn", f"{base}{kind}"): f"{base}Regressor"
        for base in (
            "DecisionTree",
            "ExtraTree",
            "RandomForest",
            "ExtraTrees",
            "GradientBoosting",
            "HistGradientBoosting",
            "MLP",
        )
        for kind in ("Classifier", "Regressor")
    },
}
MULTI_OUTPUT = {"DecisionTreeRegressor", "ExtraTreeRegressor", "RandomForestRegressor",
                 "ExtraTreesRegressor"}  # fmt: skip
_SPEC_LIBS = {
    "lightgbm": ("lightgbm", "LGBMRegressor"),
    "xgboost": ("xgboost", "XGBRegressor"),
    "sklearn-tree": ("sklearn.tree", "DecisionTreeRegressor"),
    "sklearn-forest": ("sklearn.ensemble", "RandomForestRegressor"),
    "sklearn-gb": ("sklearn.ensemble", "HistGradientBoostingRegressor"),
    "mlp": ("sklearn.neural_network", "MLPRegressor"),
}


@dataclasses.dataclass(frozen=True)
class StudentFit:
    """A fitted student: the imported model and the fitted regressors it came from."""

    model: Any  # Forest, or treeslim.nn.MLP
    estimators: list[Any]
    library: str


def student_kind(student: Any) -> tuple[str, str]:
    """``(package, regressor class name)`` for a student estimator, or an error naming it."""
    package = type(student).__module__.split(".")[0]
    name = type(student).__name__
    if isinstance(student, type):
        raise ValueError(
            "The 'student' parameter of distill must be an estimator instance (e.g."
            f" lightgbm.LGBMRegressor(n_estimators=30)), not the class {student.__name__}."
        )
    if (package, name) not in _REGRESSOR:
        raise UnsupportedModelError(
            f"The 'student' parameter of distill must be an unfitted XGBoost, LightGBM,"
            f" scikit-learn tree / forest / gradient boosting or MLP estimator. Got a"
            f" {type(student).__module__}.{name} instead."
        )
    return package, _REGRESSOR[(package, name)]


def estimator_like(student: Any, class_name: str, seed: int) -> Any:
    """An unfitted ``class_name`` of the student's library (and module, for scikit-learn) with
    the student's parameters, its loss dropped unless it is that class, a seed when it had none."""
    import importlib

    package, _ = student_kind(student)
    module = {"sklearn": type(student).__module__, "lightgbm": "lightgbm", "xgboost": "xgboost"}
    cls = getattr(importlib.import_module(module[package]), class_name)
    allowed = set(cls().get_params(deep=False))
    own = student.get_params(deep=False)
    if package == "lightgbm":  # LightGBM takes any of its parameters as keywords (cat_feature)
        allowed |= set(own)
    params = {k: v for k, v in own.items() if k in allowed}
    if type(student).__name__ != class_name:  # a classifier's / ranker's loss is not ours
        for key in ("objective", "criterion", "loss"):
            params.pop(key, None)
    if "random_state" in allowed and params.get("random_state") is None:
        params["random_state"] = seed % 2**31
    return cls(**params)


def _regressor(student: Any, seed: int) -> tuple[Any, str]:
    """An unfitted regressor with the student's parameters (and a seed when it had none)."""
    package, reg_name = student_kind(student)
    est = estimator_like(student, reg_name, seed)
    return est, ("mlp" if reg_name == "MLPRegressor" else package)


def _scaled(
    part: Forest, t: int, factor: float, tree_class: int, set_offset: int = 0
) -> TreeArrays:
    tree = part.tree(t)
    cats = tree.cat_index
    if cats is not None:  # the part's category sets sit at set_offset in the merged table
        cats = np.where(np.asarray(cats) >= 0, np.asarray(cats) + set_offset, -1)
    return dataclasses.replace(
        tree, leaf_value=np.asarray(tree.leaf_value) * factor, tree_class=tree_class,
        cat_index=cats,
    )  # fmt: skip


def _merged_sets(parts: list[Forest]) -> tuple[list[int], NDArray[np.uint32] | None]:
    """Each part's offset into one table holding every part's category sets, and the table."""
    tables = [p.cat_bitsets for p in parts if p.cat_index is not None]
    if not tables:
        return [0] * len(parts), None
    words = max(t.shape[1] for t in tables if t is not None)
    offsets, rows, at = [], [], 0
    for p in parts:
        offsets.append(at)
        if p.cat_index is not None and p.cat_bitsets is not None:
            t = p.cat_bitsets
            rows.append(np.pad(t, ((0, 0), (0, words - t.shape[1]))))
            at += len(t)
    return offsets, np.vstack(rows).astype(np.uint32)


def sklearn_multi(est: Any, k: int) -> Forest:
    """A multi-output scikit-learn tree or forest as a Forest whose leaves hold every output."""
    members = list(getattr(est, "estimators_", [est]))
    return Forest.from_trees(
        [sklearn_tree_arrays(e.tree_, e.tree_.value[:, :, 0], -1) for e in members],
        num_feature=int(est.n_features_in_),
        task="multiclass",
        num_class=k,
        base_score=np.zeros(k),
        average=hasattr(est, "estimators_"),
        comparison="<=",
        feature_dtype="float32",
    )


def assemble(
    teacher: Forest, parts: list[Forest], temperature: float, library: str
) -> Forest:  # fmt: skip
    """One Forest from per-output regression forests (or one multi-output one): the teacher's
    task and link, margins ``temperature`` times the parts' summed outputs."""
    k = teacher.n_outputs
    first = parts[0]
    offsets, table = _merged_sets(parts)
    if len(parts) == 1 and first.leaf_width == k:
        trees = [_scaled(first, t, temperature, int(first.tree_class[t]))
                 for t in range(first.n_trees)]  # fmt: skip
        base = np.broadcast_to(first.base_score * temperature, (k,)).copy()
    else:
        trees = [_scaled(p, t, temperature, c, offsets[c]) for c, p in enumerate(parts)
                 for t in range(p.n_trees)]  # fmt: skip
        base = np.array([float(p.base_score[0]) * temperature for p in parts])
    return Forest.from_trees(
        trees,
        num_feature=teacher.num_feature,
        task=teacher.task,
        num_class=teacher.num_class,
        base_score=base,
        postprocessor=teacher.postprocessor,
        sigmoid_alpha=teacher.sigmoid_alpha,
        average=first.average,
        comparison=first.comparison,
        feature_dtype=first.feature_dtype,
        feature_names=teacher.feature_names,
        cat_bitsets=table,
        category_rule=first.category_rule,
        source={"library": library, "distilled_from": teacher.source.get("library")},
    )


def standardized(
    X: NDArray[Any],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Rows standardized per feature (missing values at the mean), the means and the scales."""
    Xf = np.asarray(X, dtype=np.float64)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nan_to_num(np.nanmean(Xf, axis=0))
        std = np.nan_to_num(np.nanstd(Xf, axis=0))
    std = np.where(std > 0, std, 1.0)
    return np.nan_to_num((Xf - mean) / std), mean, std


def fold_scaler(est: Any, mean: NDArray[np.float64], std: NDArray[np.float64]) -> None:
    """Fold the standardization into a fitted MLP's first layer, so it takes raw rows."""
    est.coefs_[0] = est.coefs_[0] / std[:, None]
    est.intercepts_[0] = est.intercepts_[0] - (mean / std) @ (est.coefs_[0] * std[:, None])


def fit_scaled_mlp(est: Any, X: NDArray[Any], target: NDArray[Any]) -> None:
    """Fit a scikit-learn MLP on standardized rows and, for a regressor, standardized targets
    (per output column), then fold both scalings into its first and last layers, so the network
    takes raw rows and outputs targets on their own scale. Without the target scaling an
    MLPRegressor's few epochs leave it far off targets in the hundreds (bike rentals) or
    around 2 (california prices): R^2 -0.9 and -3.3 with 1,000 rows."""
    from sklearn.neural_network import MLPRegressor

    Z, mean, std = standardized(X)
    if not isinstance(est, MLPRegressor):  # a classifier's targets are its labels
        est.fit(Z, target)
    else:
        T = np.asarray(target, dtype=np.float64)
        T2 = T.reshape(len(T), -1)
        t_mean = T2.mean(axis=0)
        t_std = T2.std(axis=0)
        t_std = np.where(t_std > 0, t_std, 1.0)
        scaled = (T2 - t_mean) / t_std
        est.fit(Z, scaled[:, 0] if T.ndim == 1 else scaled)
        est.coefs_[-1] = est.coefs_[-1] * t_std[None, :]
        est.intercepts_[-1] = est.intercepts_[-1] * t_std + t_mean
    fold_scaler(est, mean, std)


def _fit_mlp(
    teacher: Forest, est: Any, X: NDArray[Any], U: NDArray[np.float64], temperature: float
) -> tuple[Any, Any]:
    """Fit an MLPRegressor on the teacher's targets (:func:`fit_scaled_mlp`), then fold
    ``temperature`` (and a sigmoid's slope) into the last layer, so the network takes raw rows
    and outputs the teacher's logits; it gets the teacher's task when the MLP IR has its link."""
    fit_scaled_mlp(est, X, U[:, 0] if U.shape[1] == 1 else U)
    link = 1.0
    task = "regression"
    if teacher.postprocessor == "sigmoid" and teacher.task == "binary":
        link, task = teacher.sigmoid_alpha, "binary"
    elif teacher.postprocessor == "softmax" and teacher.num_class >= 3:
        task = "multiclass"
    est.coefs_[-1] = est.coefs_[-1] * (temperature * link)
    est.intercepts_[-1] = est.intercepts_[-1] * (temperature * link)
    mlp = from_sklearn(est)
    classes = teacher.source.get("classes") if task != "regression" else None
    want = 2 if task == "binary" else teacher.num_class
    if classes is not None and len(classes) != want:
        classes = None
    return est, mlp.replace(
        task=task,
        classes=None if classes is None else np.asarray(classes),
        feature_names=teacher.feature_names,
        source={"library": "sklearn", "class": "MLPRegressor",
                "distilled_from": teacher.source.get("library")},
    )  # fmt: skip


def fit_student(
    teacher: Forest,
    student: Any,
    X: NDArray[Any],
    U: NDArray[np.float64],
    *,
    temperature: float,
    seed: int,
) -> StudentFit:
    """Fit ``student`` (a template, left untouched) on rows ``X`` and targets ``U`` (n, K)."""
    from sklearn.base import clone

    template, library = _regressor(student, seed)
    if library == "mlp":
        est, mlp = _fit_mlp(teacher, clone(template), X, U, temperature)
        return StudentFit(mlp, [est], library)
    name = type(template).__name__
    if U.shape[1] > 1 and name in MULTI_OUTPUT:
        est = clone(template).fit(X, U)
        part = sklearn_multi(est, U.shape[1])
        return StudentFit(assemble(teacher, [part], temperature, library), [est], library)
    estimators = [clone(template).fit(X, U[:, c]) for c in range(U.shape[1])]
    parts = [from_model(e) for e in estimators]
    return StudentFit(assemble(teacher, parts, temperature, library), estimators, library)


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_student(spec: str) -> Any:
    """An unfitted regressor from ``"lib:key=val,key=val"``.

    ``lib`` is one of xgboost, lightgbm, sklearn-tree, sklearn-forest, sklearn-gb, mlp; values
    are Python literals (``hidden_layer_sizes=(32,16)``) or bare strings.

    Examples
    --------
    >>> parse_student("sklearn-tree:max_depth=4,min_samples_leaf=5")
    DecisionTreeRegressor(max_depth=4, min_samples_leaf=5)
    """
    import importlib

    lib, _, rest = spec.partition(":")
    if lib not in _SPEC_LIBS:
        raise ValueError(
            f"The '--student' option must start with one of {sorted(_SPEC_LIBS)} followed by"
            f" ':key=value,...'. Got {spec!r} instead."
        )
    params: dict[str, Any] = {}
    for item in re.split(r",(?=\s*[A-Za-z_]\w*\s*=)", rest) if rest.strip() else []:
        key, eq, val = item.partition("=")
        if not eq or not key.strip().isidentifier():
            raise ValueError(f"The '--student' option has a bad 'key=value' item {item!r}.")
        params[key.strip()] = _value(val.strip())
    module, name = _SPEC_LIBS[lib]
    cls = getattr(importlib.import_module(module), name)
    unknown = sorted(set(params) - set(cls().get_params(deep=False)))
    if unknown and lib not in ("lightgbm", "xgboost"):  # those two take any booster parameter
        raise ValueError(f"The '--student' option: {name} has no parameter(s) {unknown}.")
    return cls(**params)


def categorical_student(student: Any, teacher: Forest) -> Any:
    """``student`` told to split the columns ``teacher`` splits by category by category too
    (LightGBM ``cat_feature``, XGBoost ``enable_categorical`` with ``feature_types``), unless
    the student sets its own; other students split those codes as numbers."""
    features = categorical_features(teacher)
    module = type(student).__module__.split(".")[0]
    if not features or module not in ("lightgbm", "xgboost"):
        return student
    params = student.get_params()
    if module == "lightgbm":
        if any(params.get(k) is not None for k in ("cat_feature", "categorical_feature",
                                                     "categorical_column")):  # fmt: skip
            return student
        return student.__class__(**{**params, "cat_feature": features})
    if params.get("feature_types") is not None:
        return student
    types = ["c" if j in features else "q" for j in range(teacher.num_feature)]
    return student.__class__(**{**params, "enable_categorical": True, "feature_types": types,
                                "tree_method": params.get("tree_method") or "hist"})  # fmt: skip
