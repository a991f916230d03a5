"""Cross-fitted teachers: held-out rows that the teacher guiding the student has not seen.

:func:`treeslim.distill` chooses its settings on held-out folds of the rows it is given. When
those rows trained the teacher, the teacher's targets on a held-out fold carry that fold's labels
(a teacher of 500 trees fits its training rows far better than new ones), so a student that
copies the teacher scores better on the fold than on new data and the search favours
distillation by as much as it overfits. No split of the given rows removes that while the teacher
that labels the fitting part has seen the held-out part.

Cross-fitting does: for each fold, an unfitted clone of the teacher estimator
(:func:`sklearn.base.clone`: the XGBoost and LightGBM scikit-learn wrappers, scikit-learn models)
is fitted on the fitting part only and labels that part (and the rows generated from it), so the
held-out part is new to the teacher that guided the student, as test rows are. The chosen
setting is then fitted on all rows with the real teacher. The fold teachers are a little weaker
than the real one (fewer rows), so the search errs towards plain training, never towards
distillation.

The clone is refitted as the teacher was fitted, as far as the fitted model tells:

- early stopping is switched off and the rounds are those the fitted teacher kept (XGBoost
  ``early_stopping_rounds`` -> ``best_iteration + 1`` rounds, LightGBM ``best_iteration_``,
  scikit-learn ``n_iter_`` / ``n_estimators_``), since a refit has no evaluation set to stop on;
- ranking teachers get their queries (LightGBM ``group``, XGBoost ``qid``, rows sorted by query);
- a LightGBM teacher that splits numpy columns by category gets them as ``categorical_feature``
  (it was given them at fit time, which the clone does not remember), an XGBoost one
  ``feature_types``; DataFrames are refitted as DataFrames (their category columns keep their
  categories);
- sample weights and other fit-time arguments are not known, so the clone is fitted without.

A refit that fails, or gives a model of another shape (a class missing from a fitting part),
leaves the search on held-out rows with a warning.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.frontends import from_model
from treeslim.ir import Forest, categorical_features, code_twin

__all__ = ["MORE_ROWS", "fold_teachers", "refit_template", "teacher_rows"]

_NOT_REFITTABLE = ("FrozenEstimator",)  # clone() hands back the fitted model: not refittable
MORE_ROWS = 1.5  # a teacher trained on more than this many times the given rows is not refitted


def teacher_rows(forest: Forest) -> float | None:
    """About how many rows ``forest`` was trained on, from its root statistics; None if unknown.

    The largest root row count (LightGBM, scikit-learn; a bagged or bootstrapped tree counts
    fewer rows than the teacher had, so this never overstates), else for XGBoost the first
    tree's root hessian sum divided by each row's hessian at the base score (squared error: 1;
    logistic: ``p (1 - p)``; softmax: ``2 p (1 - p)``), which holds for unweighted rows.
    """
    roots = np.asarray(forest.tree_offsets[:-1], dtype=np.intp)
    if len(roots) == 0:
        return None
    if forest.data_count is not None:
        count = forest.data_count[roots]
        count = count[np.isfinite(count)]
        return float(count.max()) if len(count) and count.max() > 0 else None
    if forest.sum_hess is None or forest.source.get("library") != "xgboost":
        return None
    h = float(forest.sum_hess[roots[0]])
    base = np.asarray(forest.base_score, dtype=np.float64)
    if forest.task == "regression" and forest.postprocessor == "identity":
        per_row = 1.0
    elif forest.task == "binary" and forest.postprocessor == "sigmoid":
        p = 1.0 / (1.0 + np.exp(-forest.sigmoid_alpha * base[0]))
        per_row = p * (1.0 - p)
    elif forest.task == "multiclass" and forest.postprocessor == "softmax":
        e = np.exp(base - base.max())
        p = float(e[int(forest.tree_class[0])] / e.sum())
        per_row = 2.0 * p * (1.0 - p)
    else:
        return None
    return h / per_row if per_row > 0 and np.isfinite(h) and h > 0 else None


def refit_template(teacher: Any) -> Any | None:
    """An unfitted clone of ``teacher`` to refit on parts of the rows, or None when ``teacher``
    is no estimator that can be refitted (a Forest, a Booster, a Treelite model, a frozen one).

    Early stopping is switched off and the number of rounds set to what the fitted teacher kept,
    so the clone needs no evaluation set and grows a model of the teacher's size.
    """
    if isinstance(teacher, Forest) or isinstance(teacher, type):
        return None
    if not (hasattr(teacher, "fit") and hasattr(teacher, "get_params")):
        return None
    if type(teacher).__name__ in _NOT_REFITTABLE:
        return None
    from sklearn.base import clone

    try:
        template = clone(teacher)
    except Exception:  # an estimator clone() does not understand: not refittable
        return None
    return template.set_params(**_rounds_kept(teacher, template.get_params(deep=False)))


def _rounds_kept(teacher: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Parameters that switch early stopping off at the rounds the fitted teacher kept."""
    package = type(teacher).__module__.split(".")[0]
    out: dict[str, Any] = {}
    if package == "xgboost" and params.get("early_stopping_rounds") is not None:
        best = getattr(teacher, "best_iteration", None)
        out["early_stopping_rounds"] = None
        if best is not None:
            out["n_estimators"] = int(best) + 1
    elif package == "lightgbm":
        best = getattr(teacher, "best_iteration_", None)
        if best:
            out["n_estimators"] = int(best)
        for key in ("early_stopping_round", "early_stopping_rounds", "early_stopping",
                    "n_iter_no_change"):  # fmt: skip
            if params.get(key) not in (None, False, 0):
                out[key] = None
    elif package == "sklearn":
        if params.get("early_stopping") not in (None, False) and hasattr(teacher, "n_iter_"):
            out.update(early_stopping=False, max_iter=int(teacher.n_iter_))  # HistGradientBoosting
        if params.get("n_iter_no_change") is not None and hasattr(teacher, "n_estimators_"):
            out.update(n_iter_no_change=None, n_estimators=int(teacher.n_estimators_))
    return out


def _rows(X: Any, idx: NDArray[np.intp]) -> Any:
    return X.iloc[idx] if hasattr(X, "iloc") else np.asarray(X)[idx]


def _fit(template: Any, teacher: Forest, X: Any, y: Any, qid: Any) -> Any:
    from sklearn.base import clone

    est = clone(template)
    package = type(est).__module__.split(".")[0]
    cats = categorical_features(teacher)
    frame = hasattr(X, "iloc")
    params = est.get_params(deep=False)
    if cats and not frame and package == "xgboost" and params.get("feature_types") is None:
        types = ["c" if j in cats else "q" for j in range(teacher.num_feature)]
        est.set_params(feature_types=types, enable_categorical=True)
    kw: dict[str, Any] = {}
    if cats and not frame and package == "lightgbm" and not any(
        params.get(k) is not None for k in ("cat_feature", "categorical_feature",
                                             "categorical_column")):  # fmt: skip
        kw["categorical_feature"] = list(cats)
    if teacher.task != "ranking":
        return est.fit(X, y, **kw)
    code = np.unique(np.asarray(qid), return_inverse=True)[1].ravel()
    order = np.argsort(code, kind="stable")
    Xs, ys = _rows(X, order), np.asarray(y)[order]
    if package == "lightgbm":
        return est.fit(Xs, ys, group=np.bincount(code[order]), **kw)
    if package == "xgboost":
        return est.fit(Xs, ys, qid=code[order])
    raise ValueError(f"a {type(est).__name__} ranking teacher: no way to give it the queries")


def fold_teachers(
    template: Any,
    teacher: Forest,
    X: Any,
    y: NDArray[Any],
    qid: NDArray[Any] | None,
    folds: list[tuple[NDArray[np.intp], NDArray[np.intp]]],
) -> list[Forest] | None:
    """One teacher per fold, ``template`` fitted on the fold's fitting rows of ``X`` (the rows
    as the user gave them: a DataFrame stays one), as Forests taking category codes like the
    search's rows; None (with a warning) when a refit fails or differs in shape from
    ``teacher``."""
    out = []
    for fit_idx, _ in folds:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # e.g. "no validation set"
                est = _fit(template, teacher, _rows(X, fit_idx), y[fit_idx],
                           None if qid is None else qid[fit_idx])  # fmt: skip
            forest = code_twin(from_model(est))
        except Exception as exc:  # an arbitrary user estimator: any failure means no cross-fit
            warnings.warn(
                f"distill could not refit the teacher on part of the rows ({type(exc).__name__}:"
                f" {exc}), so settings are chosen on held-out rows the teacher was trained on,"
                " which can favour distillation.",
                UserWarning,
                stacklevel=4,  # fold_teachers < choose_setting < distill < the caller
            )
            return None
        same = (forest.task, forest.n_outputs, forest.num_feature) == (
            teacher.task, teacher.n_outputs, teacher.num_feature)  # fmt: skip
        if not same:
            warnings.warn(
                f"distill refitted the teacher on part of the rows and got a {forest.task} model"
                f" with {forest.n_outputs} outputs (a class missing from the part?), so settings"
                " are chosen on held-out rows the teacher was trained on, which can favour"
                " distillation.",
                UserWarning,
                stacklevel=4,  # fold_teachers < choose_setting < distill < the caller
            )
            return None
        out.append(forest)
    return out
