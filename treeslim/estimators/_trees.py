"""Scikit-learn estimators around the compression search: `SlimClassifier`, `SlimRegressor`,
`SlimRanker`.

Each takes an inner ``estimator``: already fitted (a native model, a Forest, or a scikit-learn
model wrapped in ``sklearn.frozen.FrozenEstimator``) or unfitted, in which case ``fit`` fits a
clone of it first. ``fit(X, y)`` then runs :func:`treeslim.search.search` on ``(X, y)`` as
calibration data; the learned state is ``forest_`` (the compressed Forest), ``teacher_``,
``search_`` and ``report_``. They work in a ``Pipeline`` / ``GridSearchCV`` and pickle.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from treeslim._utils import check_qid, class_codes, group_to_qid, is_fitted, unwrap
from treeslim.backends import to_lightgbm, to_treelite, to_xgboost
from treeslim.backends.tl2cgen import compile_forest
from treeslim.estimators._categorical import encode_frame, has_category_columns
from treeslim.frontends import from_model
from treeslim.ir import Forest, code_twin, with_categories_of
from treeslim.measure import Report, certificate_fields, native_formats, report
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
        model: Any = None,
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
        model = self._inner(X, y, fit_params or {}) if model is None else model
        original = self._as_teacher(from_model(model))
        teacher = code_twin(original) if self._codes_ else original
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
        self.teacher_ = original
        self.forest_ = with_categories_of(result.forest, original)
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
        # bytes in the formats the teacher's own stack loads (format_sizes measures every one)
        quick: dict[str, Any] = {"latency": latency, "n_calls": 200, "batch_seconds": 0.01,
                                 "sizes": native_formats(teacher)}  # fmt: skip
        ends = report(teacher, X, y, qid=qid, name="original", **quick) + report(
            result.forest, X, y, qid=qid, reference=teacher, name="compressed", **quick
        )
        for entry, forest in zip(ends.entries, (teacher, result.forest), strict=True):
            entry["row_us"] = time_per_row(forest, X[:256])
        ends.entries[1].update(certificate_fields(result.certificate))
        self.report_ = ends + Report(steps)

    def _as_teacher(self, forest: Forest) -> Forest:
        """The inner model's Forest as the search should judge it."""
        return forest

    def _encoded(self, X: Any, y: Any, fit_params: dict[str, Any] | None = None) -> Any:
        """``(X, model)``: a DataFrame with category columns becomes the codes the inner model
        routes (fitting the inner model on the DataFrame itself when it is not fitted yet); any
        other ``X`` is returned as it is, with no model."""
        self._codes_ = has_category_columns(X)
        if not self._codes_:
            return X, None
        model = self._inner(X, y, fit_params or {})
        return encode_frame(self._as_teacher(from_model(model)), X), model

    def _check_X(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self, "forest_")
        if has_category_columns(X):
            X = encode_frame(self.forest_, X)
        out: NDArray[np.float64] = validate_data(
            self, X, reset=False, ensure_all_finite="allow-nan", dtype=np.float64
        )
        return out

    def _scorer(self, X: ArrayLike) -> tuple[Forest, NDArray[np.float64]]:
        """The forest to score ``X`` with and ``X`` checked: category DataFrames become codes,
        scored by the compressed forest's code twin."""
        Xc = self._check_X(X)
        return (code_twin(self.forest_) if has_category_columns(X) else self.forest_), Xc

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


def _ranking_fit_params(estimator: Any, qid: NDArray[Any]) -> dict[str, Any]:
    """How to hand sorted query ids to ``estimator.fit``: as ``qid``, as LightGBM's ``group``
    sizes, or not at all (a pointwise model of the relevance labels; also the default)."""
    if estimator is None:
        return {}
    taken = inspect.signature(unwrap(estimator).fit).parameters
    if "qid" in taken:
        return {"qid": qid}
    if "group" in taken:
        return {"group": np.unique(qid, return_counts=True)[1]}
    return {}


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
        X, model = self._encoded(X, y)
        X, y = validate_data(self, X, y, ensure_all_finite="allow-nan", dtype=np.float64)
        check_classification_targets(y)
        est = self.estimator
        fitted_classes = getattr(unwrap(est), "classes_", None) if is_fitted(est) else None
        self.classes_ = np.unique(y) if fitted_classes is None else np.asarray(fitted_classes)
        if len(self.classes_) < 2:
            raise ValueError(
                f"SlimClassifier needs at least 2 classes in y; got {len(self.classes_)} class."
            )
        self._search(X, class_codes(self.classes_, y, owner="the fitted inner model"), model=model)
        return self

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        """Raw scores (margins) of the compressed forest, shape (n,) or (n, n_classes)."""
        forest, Xc = self._scorer(X)
        return forest.predict_margin(Xc)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Class probabilities, shape (n_samples, n_classes)."""
        forest, Xc = self._scorer(X)
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
        X, model = self._encoded(X, y)
        X, y = validate_data(
            self, X, y, ensure_all_finite="allow-nan", dtype=np.float64, y_numeric=True
        )
        self._search(X, y, model=model)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted values."""
        forest, Xc = self._scorer(X)
        return forest.predict(Xc)


class SlimRanker(RegressorMixin, _SlimBase):
    """A compressed learning-to-rank ensemble: ``fit(X, y, qid=...)`` with relevance labels ``y``
    and query ids, judged by NDCG@10; other parameters as :class:`SlimClassifier`.

    The inner ``estimator`` is fitted according to what its ``fit`` takes: ``qid`` (``XGBRanker``)
    or LightGBM's ``group`` sizes (``LGBMRanker``) are passed with the rows grouped by query;
    an estimator whose ``fit`` takes neither (the default,
    ``HistGradientBoostingRegressor(max_iter=30)``) is fitted on ``(X, y)`` alone: a pointwise
    ranker, a regressor of the relevance labels, which needs no extra dependency.

    Query ids may come in any order (interleaved queries are fine): the rows are sorted by query
    once, stably, and everything is fitted on that order, so the result is the same as for the
    same rows sorted by query. ``group=`` (LightGBM's consecutive query sizes) is accepted
    instead of ``qid``. Without either, all rows form one query (what scikit-learn's tools, which
    pass only ``X`` and ``y``, get).

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim import SlimRanker
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 4))
    >>> y = np.digitize(X[:, 0] + 0.3 * rng.normal(size=400), [-0.5, 0.5])
    >>> qid = rng.integers(0, 20, size=400)  # interleaved queries
    >>> slim = SlimRanker(random_state=0, verbose=0).fit(X, y, qid=qid)
    >>> slim.predict(X[:3]).shape
    (3,)
    """

    _default = "HistGradientBoostingRegressor"

    def fit(
        self,
        X: ArrayLike,
        y: ArrayLike,
        qid: ArrayLike | None = None,
        *,
        group: ArrayLike | None = None,
    ) -> SlimRanker:
        """Fit (or take) the inner ranker and compress it on ``(X, y, qid)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Relevance labels.
        qid : array-like of shape (n_samples,), optional
            Query id of each row, in any order.
        group : array-like of shape (n_queries,), optional
            Instead of ``qid``: sizes of consecutive queries (LightGBM's ``group``), summing
            to ``n_samples``.
        """
        if has_category_columns(X) and not is_fitted(self.estimator):
            raise ValueError(
                "SlimRanker takes a DataFrame with category columns only with a fitted inner"
                " ranker (fit it on the DataFrame first, then pass it, or pass numeric codes)."
            )
        X, model = self._encoded(X, y)
        Xc, yc = validate_data(
            self, X, y, ensure_all_finite="allow-nan", dtype=np.float64, y_numeric=True
        )
        n = Xc.shape[0]
        if qid is not None and group is not None:
            raise ValueError("SlimRanker.fit takes qid or group (query sizes), not both.")
        if group is not None:
            q = group_to_qid(group, n)
        elif qid is not None:
            q = check_qid(qid, n)
        else:
            q = np.zeros(n, dtype=np.intp)
        order = np.argsort(q, kind="stable")  # grouped rows, the same for any order of queries
        Xc, yc, q = Xc[order], yc[order], q[order]
        fit_params = {} if is_fitted(self.estimator) else _ranking_fit_params(self.estimator, q)
        self._search(Xc, yc, qid=q, fit_params=fit_params, model=model)
        return self

    def _as_teacher(self, forest: Forest) -> Forest:
        if forest.task == "ranking":
            return forest
        if forest.task == "regression" and forest.postprocessor == "identity":
            return forest.replace(task="ranking")  # a pointwise ranker: its scores rank the rows
        raise ValueError(
            "SlimRanker needs a ranker or a regressor with an identity link as its inner model;"
            f" got a {forest.task} model with postprocessor={forest.postprocessor!r}."
        )

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Ranking scores (the margins: a ranker has no link; higher ranks first)."""
        forest, Xc = self._scorer(X)
        return forest.predict(Xc)
