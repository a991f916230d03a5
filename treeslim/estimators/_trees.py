"""Scikit-learn estimators around the compression search: `SlimClassifier`, `SlimRegressor`,
`SlimRanker`.

Each takes an inner ``estimator``: already fitted (a native model, a Forest, or a scikit-learn
model wrapped in ``sklearn.frozen.FrozenEstimator``) or unfitted, in which case ``fit`` fits a
clone of it first. ``fit(X, y)`` then runs :func:`treeslim.search.search` on ``(X, y)`` as
calibration data; the learned state is ``forest_`` (the compressed Forest), ``teacher_``,
``search_`` and ``report_``. They work in a ``Pipeline`` / ``GridSearchCV`` and pickle.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from treeslim._utils import class_codes, is_fitted, unwrap
from treeslim.backends import to_lightgbm, to_treelite, to_xgboost
from treeslim.backends.tl2cgen import compile_forest
from treeslim.frontends import from_model
from treeslim.measure import Report, certificate_fields, report
from treeslim.search import search, time_per_row

__all__ = ["SlimClassifier", "SlimRanker", "SlimRegressor"]


class _SlimBase(BaseEstimator):
    _default: str = ""

    def __init__(
        self,
        estimator: Any = None,
        *,
        max_loss: float = 0.005,
        metric: str | None = None,
        n_synthetic: int | str = "auto",
        random_state: int | None = None,
        n_jobs: int | None = None,
        verbose: int = 1,
        bits: int | None = None,
        distill: bool = True,
        confidence: float = 0.95,
        strict: bool = False,
        objective: str = "nodes",
    ) -> None:
        self.estimator = estimator
        self.max_loss = max_loss
        self.metric = metric
        self.n_synthetic = n_synthetic
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.bits = bits
        self.distill = distill
        self.confidence = confidence
        self.strict = strict
        self.objective = objective

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _inner(self, X: NDArray[np.float64], y: Any, fit_params: dict[str, Any]) -> Any:
        est = self.estimator
        if est is None:
            from sklearn import ensemble

            est = getattr(ensemble, self._default)(max_iter=30, random_state=self.random_state)
        if is_fitted(est):
            return unwrap(est)
        return clone(est).fit(X, y, **fit_params)

    def _search(
        self,
        X: Any,
        y: Any,
        qid: Any = None,
        fit_params: dict[str, Any] | None = None,
    ) -> None:

        if not isinstance(self.max_loss, (int, float)) or self.max_loss < 0:
            raise ValueError(
                f"The 'max_loss' parameter of {type(self).__name__} must be a float >= 0."
                f" Got {self.max_loss!r} instead."
            )
        name = type(self).__name__
        conf = self.confidence
        if not isinstance(conf, (int, float)) or isinstance(conf, bool) or not 0 < conf < 1:
            raise ValueError(
                f"The 'confidence' parameter of {name} must be a float in the range (0, 1)."
                f" Got {conf!r} instead."
            )
        if self.objective not in ("nodes", "bytes", "latency"):
            raise ValueError(
                f"The 'objective' parameter of {name} must be one of 'nodes', 'bytes',"
                f" 'latency'. Got {self.objective!r} instead."
            )
        if len(X) < 2:
            raise ValueError(f"{name} needs at least 2 samples; got {len(X)} sample.")
        model = self._inner(X, y, fit_params or {})
        teacher = from_model(model)
        if teacher.num_feature != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the inner model expects {teacher.num_feature}."
            )
        n_syn = self.n_synthetic
        if n_syn == "auto":  # every generated row costs once per output in each candidate
            n_syn = round(min(20_000, 10 * len(X)) / math.sqrt(teacher.n_outputs))
        result = search(
            teacher,
            X,
            y,
            qid=qid,
            max_loss=self.max_loss,
            metric=self.metric,
            n_synthetic=int(n_syn),
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            verbose=self.verbose,
            bits=self.bits,
            distill=self.distill,
            confidence=float(conf),
            objective=self.objective,
            strict=bool(self.strict),
        )
        self.model_ = model
        self.teacher_ = teacher
        self.forest_ = result.forest
        self.search_ = result
        steps = [
            {
                "name": " > ".join(c.steps),
                "task": teacher.task,
                "trees": c.trees,
                "nodes": c.nodes,
                result.metric: c.score,
                "seconds": c.seconds,
                "row_us": c.row_us,
                "accepted": c.accepted,
                "pareto": c.pareto,
                "chosen": c.chosen,
                **certificate_fields(c.certificate),
            }
            for c in result.candidates
        ]
        latency = "kernel" if len(X) >= 2 else None
        quick: dict[str, Any] = {"latency": latency, "n_calls": 200, "batch_seconds": 0.01}
        ends = report(teacher, X, y, qid=qid, name="original", **quick) + report(
            result.forest, X, y, qid=qid, reference=teacher, name="compressed", **quick
        )
        for entry, forest in zip(ends.entries, (teacher, result.forest), strict=True):
            entry["row_us"] = time_per_row(forest, X[:256])
        ends.entries[1].update(certificate_fields(result.certificate))
        self.report_ = ends + Report(steps)

    def _check_X(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self, "forest_")
        out: NDArray[np.float64] = validate_data(
            self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64
        )
        return out

    def compile(self, path: Any = None, **kwargs: Any) -> Any:
        """:func:`treeslim.compile` the compressed forest."""
        check_is_fitted(self, "forest_")
        return compile_forest(self.forest_, path, **kwargs)

    def export(self, path: Any = None) -> Any:
        """The compressed forest in the inner model's own library (XGBoost stays XGBoost)."""
        check_is_fitted(self, "forest_")
        lib = self.teacher_.source.get("library")
        if lib == "lightgbm":
            return to_lightgbm(self.forest_, path)
        if lib == "xgboost":
            return to_xgboost(self.forest_, path)
        model = to_treelite(self.forest_)
        if path is not None:
            model.serialize(str(path))
        return model


class SlimClassifier(ClassifierMixin, _SlimBase):
    """A compressed tree-ensemble classifier (binary or multiclass).

    Parameters
    ----------
    estimator : estimator, fitted model or Forest, default=None
        The model to compress; unfitted estimators are fitted on ``(X, y)`` first
        (default: ``HistGradientBoostingClassifier(max_iter=30)``).
    max_loss : float, default=0.005
        Largest allowed drop of the metric on new data (the teacher's metric minus the
        compressed model's), certified at ``confidence`` on calibration rows the search never
        saw (see :func:`treeslim.search.search`); ``search_.certificate`` holds the bound.
    metric : str, optional
        ``"auc"`` for binary and ``"accuracy"`` for multiclass by default.
    n_synthetic : int or "auto", default="auto"
        Generated rows added to the calibration rows for leaf refit (10 per row, at most 20,000,
        divided by the square root of the number of outputs: 26 classes get 1/5.1 of that).
    random_state : int, optional
    n_jobs : int, optional
        Candidates evaluated in parallel (joblib).
    verbose : int, default=1
        0: silent; 1: a progress bar of the search on a terminal; 2: always.
    distill : bool, default=True
        Also try small boosted students distilled from the model's margins (see
        :func:`treeslim.search.search`); the smallest candidate within budget wins either way.
    bits : int, optional
        Also quantize leaves and thresholds to this many bits when the budget allows (stored at
        that width by :func:`treeslim.save`).
    confidence : float, default=0.95
        Probability that the returned model's loss on new data (rows i.i.d. from the
        calibration data's distribution) is at most ``max_loss``.
    strict : bool, default=False
        When the calibration rows cannot certify ``max_loss`` (too few rows, queries or
        positives), raise :class:`~treeslim.errors.InsufficientDataError` instead of warning
        and returning the exact passes.
    objective : {"nodes", "bytes", "latency"}, default="nodes"
        What "smallest" means: nodes, ``.tslim`` bytes, or the C kernel's time per row.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from treeslim import SlimClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> slim = SlimClassifier(max_loss=0.02, random_state=0).fit(X, y)
    >>> slim.forest_.n_nodes <= slim.teacher_.n_nodes, slim.search_.certificate.certified
    (True, True)
    """

    _default = "HistGradientBoostingClassifier"

    def fit(self, X: ArrayLike, y: ArrayLike) -> SlimClassifier:
        """Fit (or take) the inner model and compress it on ``(X, y)``."""
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        est = self.estimator
        fitted_classes = getattr(unwrap(est), "classes_", None) if is_fitted(est) else None
        self.classes_ = np.unique(y) if fitted_classes is None else np.asarray(fitted_classes)
        if len(self.classes_) < 2:
            raise ValueError(
                f"SlimClassifier needs at least 2 classes in y; got {len(self.classes_)} class."
            )
        self._search(X, class_codes(self.classes_, y, owner="the fitted inner model"))
        return self

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        """Raw scores (margins) of the compressed forest, shape (n,) or (n, n_classes)."""
        Xc = self._check_X(X)
        return self.forest_.predict_margin(Xc)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Class probabilities, shape (n_samples, n_classes)."""
        Xc = self._check_X(X)
        forest = self.forest_
        if forest.postprocessor == "argmax":
            forest = forest.replace(postprocessor="softmax")
        p = forest.predict(Xc)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Predicted class labels."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class SlimRegressor(RegressorMixin, _SlimBase):
    """A compressed tree-ensemble regressor; parameters as :class:`SlimClassifier`
    (default inner model: ``HistGradientBoostingRegressor(max_iter=30)``, metric R^2)."""

    _default = "HistGradientBoostingRegressor"

    def fit(self, X: ArrayLike, y: ArrayLike) -> SlimRegressor:
        """Fit (or take) the inner model and compress it on ``(X, y)``."""
        X, y = validate_data(
            self, X, y, ensure_all_finite="allow-nan", dtype=np.float64, y_numeric=True
        )
        self._search(X, y)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted values."""
        Xc = self._check_X(X)
        return self.forest_.predict(Xc)


class SlimRanker(RegressorMixin, _SlimBase):
    """A compressed learning-to-rank ensemble; ``fit(X, y, qid=...)`` with query ids, metric
    NDCG@10. The inner model must be a ranker (e.g. ``XGBRanker``, ``LGBMRanker``)."""

    _default = "HistGradientBoostingRegressor"

    def fit(self, X: ArrayLike, y: ArrayLike, qid: ArrayLike | None = None) -> SlimRanker:
        """Fit (or take) the inner ranker and compress it on ``(X, y, qid)``."""
        if qid is None:
            raise ValueError("SlimRanker.fit needs qid, the query id of every row.")
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        qid = np.asarray(qid)
        fit_params = {} if is_fitted(self.estimator) else {"qid": qid}
        self._search(X, y, qid=qid, fit_params=fit_params)
        return self

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        """Raw scores (margins) of the compressed forest, shape (n,) or (n, n_classes)."""
        Xc = self._check_X(X)
        return self.forest_.predict_margin(Xc)

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Ranking scores."""
        Xc = self._check_X(X)
        return self.forest_.predict(Xc)
