"""The student's loss per task, and plain training on the labels (the candidate to beat).

:func:`~treeslim.distillation.fit_student` fits by least squares on the soft targets ``u``
(:mod:`treeslim.distillation._soft`). Here are the other losses a student can be fitted with:

- ``"cross_entropy"`` (binary and multiclass teachers): the student's output is a logit fitted by
  cross-entropy to the (tempered, label-blended) probabilities ``p`` behind ``u``; LightGBM's
  ``cross_entropy`` and XGBoost's ``binary:logistic`` take such soft labels. Multiclass is
  one-vs-rest: one booster per class on ``p_k``. A scikit-learn tree or forest is grown on ``p``
  (squared error on probabilities is the Gini criterion) and its leaves, the mean ``p`` there,
  which is the constant that minimises the cross-entropy in a leaf, become logits (``log p``
  for softmax).
- ``"pairwise"`` (ranking teachers): LambdaRank (LightGBM) or pairwise (XGBoost) ranking within
  each query on graded labels cut from the teacher's centred scores at fixed quantiles.

:func:`fit_labels` trains the same student the plain way, its library's classifier / ranker /
regressor on ``y`` alone; :func:`treeslim.distill` measures it beside the distilled candidates.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.distillation._soft import EPS, SoftTargets
from treeslim.distillation._students import (
    MULTI_OUTPUT,
    StudentFit,
    assemble,
    categorical_student,
    estimator_like,
    fit_scaled_mlp,
    fit_student,
    sklearn_multi,
    student_kind,
)
from treeslim.frontends import from_model
from treeslim.ir import Forest
from treeslim.nn import from_sklearn

__all__ = ["GRADE_QUANTILES", "LOSSES", "fit_labels", "fit_soft", "grades", "losses_for"]

LOSSES = ("squared", "cross_entropy", "pairwise")
GRADE_QUANTILES = (0.5, 0.8, 0.95)  # cuts of the centred teacher scores: grades 0..3
_CLASSIFIER = {"LGBMRegressor": "LGBMClassifier", "XGBRegressor": "XGBClassifier",
               "XGBRFRegressor": "XGBRFClassifier"}  # fmt: skip
_RANKER = {"lightgbm": "LGBMRanker", "xgboost": "XGBRanker"}


def soft_kind(teacher: Forest) -> str:
    """How the teacher's margins become targets: sigmoid, softmax, ranking or linear."""
    return SoftTargets.kind_of(teacher)


def losses_for(teacher: Forest, student: Any) -> tuple[str, ...]:
    """The losses ``student`` can be distilled with from ``teacher`` (least squares always)."""
    package, reg_name = student_kind(student)
    kind = soft_kind(teacher)
    boosted = package in ("lightgbm", "xgboost")
    if kind in ("sigmoid", "softmax") and (boosted or reg_name in MULTI_OUTPUT):
        return ("squared", "cross_entropy")
    if kind == "ranking" and boosted and reg_name != "XGBRFRegressor":
        return ("squared", "pairwise")
    return ("squared",)


def probabilities(teacher: Forest, U: NDArray[np.float64]) -> NDArray[np.float64]:
    """The probabilities ``p`` (n, K) behind soft targets ``u`` of a sigmoid / softmax teacher."""
    if soft_kind(teacher) == "sigmoid":
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * teacher.sigmoid_alpha * U)))
    e = np.exp(U - U.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def grades(u: NDArray[np.float64]) -> NDArray[np.int32]:
    """Relevance grades 0..3 of centred scores ``u``: cut at their ``GRADE_QUANTILES``."""
    cuts = np.quantile(u, GRADE_QUANTILES)
    return np.searchsorted(cuts, u, side="right").astype(np.int32)


def _leaves_to_logits(part: Forest, softmax: bool) -> Forest:
    """A tree / forest whose leaves hold mean probabilities, as one whose leaves hold logits."""
    trees = []
    for t in range(part.n_trees):
        tree = part.tree(t)
        p = np.clip(np.asarray(tree.leaf_value, dtype=np.float64), EPS, 1.0 - EPS)
        value = np.log(p) if softmax else np.log(p) - np.log1p(-p)
        trees.append(dataclasses.replace(tree, leaf_value=value))
    header = {k: getattr(part, k) for k in ("task", "num_class", "base_score", "average",
                                            "comparison", "feature_dtype")}  # fmt: skip
    return Forest.from_trees(trees, num_feature=part.num_feature, **header)


def _cross_entropy(
    teacher: Forest, student: Any, X: NDArray[Any], U: NDArray[np.float64], T: float, seed: int
) -> StudentFit:
    package, reg_name = student_kind(student)
    P = probabilities(teacher, U)
    softmax = soft_kind(teacher) == "softmax"
    factor = T if softmax else T / teacher.sigmoid_alpha
    if reg_name in MULTI_OUTPUT:
        est = estimator_like(student, reg_name, seed).fit(X, P[:, 0] if P.shape[1] == 1 else P)
        if P.shape[1] == 1:
            part = from_model(est)
        else:
            part = sklearn_multi(est, P.shape[1])
        part = _leaves_to_logits(part, softmax)
        return StudentFit(assemble(teacher, [part], factor, "sklearn"), [est], "sklearn")
    objective = "cross_entropy" if package == "lightgbm" else "binary:logistic"
    template = estimator_like(student, reg_name, seed).set_params(objective=objective)
    estimators = [template.__class__(**template.get_params()).fit(X, P[:, c])
                  for c in range(P.shape[1])]  # fmt: skip
    parts = [from_model(e) for e in estimators]
    return StudentFit(assemble(teacher, parts, factor, package), estimators, package)


def _pairwise(
    teacher: Forest, student: Any, X: NDArray[Any], U: NDArray[np.float64], qid: Any, seed: int
) -> StudentFit:
    package, _ = student_kind(student)
    if qid is None:
        raise ValueError("The 'pairwise' loss needs qid (the query of each row).")
    code = np.unique(np.asarray(qid), return_inverse=True)[1].ravel()
    order = np.argsort(code, kind="stable")
    g = grades(U[order, 0])
    est = estimator_like(student, _RANKER[package], seed)
    if package == "lightgbm":
        est.set_params(objective="lambdarank")
        est.fit(X[order], g, group=np.bincount(code[order]))
    else:
        est.set_params(objective="rank:pairwise")
        est.fit(X[order], g, qid=code[order])
    return StudentFit(assemble(teacher, [from_model(est)], 1.0, package), [est], package)


def fit_soft(
    teacher: Forest,
    student: Any,
    X: NDArray[Any],
    U: NDArray[np.float64],
    *,
    loss: str,
    temperature: float,
    seed: int,
    qid: Any = None,
) -> StudentFit:
    """Fit ``student`` on rows ``X`` toward soft targets ``U`` with ``loss`` (see the module)."""
    student = categorical_student(student, teacher)
    if loss == "squared":
        return fit_student(teacher, student, X, U, temperature=temperature, seed=seed)
    if loss not in losses_for(teacher, student):
        raise ValueError(
            f"The 'loss' parameter of distill must be one of {list(losses_for(teacher, student))}"
            f" for a {type(student).__name__} student of a {teacher.task} teacher. Got {loss!r}"
            " instead."
        )
    if loss == "cross_entropy":
        return _cross_entropy(teacher, student, X, U, temperature, seed)
    return _pairwise(teacher, student, X, U, qid, seed)


def _task_class(student: Any, task: str) -> str:
    package, reg_name = student_kind(student)
    if task in ("binary", "multiclass"):
        return _CLASSIFIER.get(reg_name, reg_name.replace("Regressor", "Classifier"))
    if task == "ranking" and package in _RANKER and reg_name != "XGBRFRegressor":
        return _RANKER[package]
    return reg_name


def fit_labels(
    teacher: Forest, student: Any, X: NDArray[Any], y: Any, qid: Any, seed: int
) -> Any | None:
    """The student trained from scratch on ``y`` alone (its library's classifier, ranker or
    regressor with the student's parameters), imported; None when it cannot stand in for the
    teacher (a class missing from ``y``)."""
    task = teacher.task
    student = categorical_student(student, teacher)
    yv = np.asarray(y)
    if task == "multiclass" and len(np.unique(yv)) != teacher.num_class:
        return None
    if task == "binary" and len(np.unique(yv)) != 2:
        return None
    name = _task_class(student, task)
    est = estimator_like(student, name, seed)
    source = {"distilled_from": teacher.source.get("library"), "class": name}
    if name.startswith("MLP"):
        fit_scaled_mlp(est, X, yv)
        mlp = from_sklearn(est)
        return mlp.replace(feature_names=teacher.feature_names,
                           source={"library": "sklearn", **source})  # fmt: skip
    if name in _RANKER.values():
        code = np.unique(np.asarray(qid), return_inverse=True)[1].ravel()
        order = np.argsort(code, kind="stable")
        if name == "LGBMRanker":
            est.fit(X[order], yv[order], group=np.bincount(code[order]))
        else:
            est.fit(X[order], yv[order], qid=code[order])
    else:
        est.fit(X, yv)
    forest = from_model(est)
    if forest.n_outputs != teacher.n_outputs:
        return None
    return forest.replace(task=task if task == "ranking" else forest.task,
                          feature_names=teacher.feature_names,
                          source={**forest.source, **source})  # fmt: skip
