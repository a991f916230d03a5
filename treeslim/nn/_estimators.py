"""Scikit-learn estimators around the MLP compression search: `SlimMLPClassifier`,
`SlimMLPRegressor`.

Each takes an inner ``estimator``: a fitted ``MLPClassifier`` / ``MLPRegressor`` (wrapped in
``FrozenEstimator`` so ``clone`` keeps it fitted), an :class:`~treeslim.nn.MLP`, or an unfitted
MLP estimator that ``fit`` fits on ``(X, y)`` first. ``fit(X, y)`` then runs
:func:`treeslim.nn.search_mlp` with ``(X, y)`` as calibration data. Learned state:
``mlp_`` (the compressed MLP), ``teacher_``, ``search_``, ``report_``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, clone
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from treeslim._utils import class_codes, is_fitted, unwrap
from treeslim.measure import Report, certificate_fields
from treeslim.nn._mlp import MLP
from treeslim.nn._report import mlp_report
from treeslim.nn._search import label_codes, search_mlp
from treeslim.nn._sklearn import from_sklearn, to_sklearn

__all__ = ["SlimMLPClassifier", "SlimMLPRegressor"]


class _SlimMLPBase(BaseEstimator):
    _default: str = ""

    def __init__(
        self,
        estimator: Any = None,
        *,
        max_loss: float = 0.01,
        metric: str | None = None,
        methods: Sequence[str] | None = None,
        validation_fraction: float = 0.25,
        fine_tune_epochs: int = 10,
        random_state: int | None = None,
        verbose: int = 1,
        confidence: float = 0.95,
        strict: bool = False,
    ) -> None:
        self.estimator = estimator
        self.max_loss = max_loss
        self.metric = metric
        self.methods = methods
        self.validation_fraction = validation_fraction
        self.fine_tune_epochs = fine_tune_epochs
        self.random_state = random_state
        self.verbose = verbose
        self.confidence = confidence
        self.strict = strict

    def _inner(self, X: NDArray[np.float64], y: Any) -> Any:
        est = self.estimator
        if est is None:
            from sklearn import neural_network

            est = getattr(neural_network, self._default)(
                hidden_layer_sizes=(32,), max_iter=300, random_state=self.random_state
            )
        if is_fitted(est):
            return unwrap(est)
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return clone(est).fit(X, y)

    def _search(self, X: NDArray[np.float64], y: Any) -> None:
        if len(X) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 samples; got {len(X)} sample."
            )
        model = self._inner(X, y)
        teacher = from_sklearn(model)
        if teacher.num_feature != X.shape[1]:
            raise ValueError(
                f"X has {X.shape[1]} features, but the inner model expects {teacher.num_feature}."
            )
        result = search_mlp(
            teacher,
            X,
            y,
            max_loss=self.max_loss,
            metric=self.metric,
            methods=self.methods,
            validation_fraction=self.validation_fraction,
            fine_tune_epochs=self.fine_tune_epochs,
            random_state=self.random_state,
            verbose=self.verbose,
            confidence=self.confidence,
            strict=bool(self.strict),
        )
        self.model_ = model
        self.teacher_ = teacher
        self.mlp_ = result.mlp
        self.search_ = result

        codes = label_codes(teacher, y)
        quick: dict[str, Any] = {"n_calls": 200, "batch_seconds": 0.01}
        steps = [
            {
                "name": c["name"],
                "task": teacher.task,
                "params": c["params"],
                "bytes_tslim": c["bytes"],
                result.metric: c["score"],
                "seconds": c["seconds"],
                "accepted": c["accepted"],
                **certificate_fields(c.get("certificate")),
            }
            for c in result.candidates
        ]
        compressed = mlp_report(result.mlp, X, codes, teacher, name=f"compressed ({result.name})",
                                **quick)  # fmt: skip
        compressed.entries[0].update(certificate_fields(result.certificate))
        self.report_ = (
            mlp_report(teacher, X, codes, name="original", **quick) + compressed + Report(steps)
        )

    def _check_X(self, X: ArrayLike) -> NDArray[np.float64]:
        check_is_fitted(self, "mlp_")
        out: NDArray[np.float64] = validate_data(self, X, reset=False, dtype=np.float64)
        return out

    def export(self) -> Any:
        """The compressed network as a fitted scikit-learn MLP (weights dequantized, dense)."""
        check_is_fitted(self, "mlp_")
        return to_sklearn(self.mlp_)


class SlimMLPClassifier(ClassifierMixin, _SlimMLPBase):
    """A compressed MLP classifier (binary or multiclass).

    Parameters
    ----------
    estimator : MLPClassifier, FrozenEstimator or MLP, default=None
        The network to compress; an unfitted one is fitted on ``(X, y)`` first (default:
        ``MLPClassifier(hidden_layer_sizes=(32,), max_iter=300)``).
    max_loss : float, default=0.01
        Largest allowed drop of ``metric`` on new data, certified at ``confidence`` on
        calibration rows the search never saw (``search_.certificate``).
    metric : str, optional
        ``"auc"`` for binary, ``"accuracy"`` for multiclass by default.
    methods : sequence of str, optional
        Which compression methods to try (see :func:`treeslim.nn.compress`).
    validation_fraction : float, default=0.25
        Share of the rows not set aside for certification held out to judge candidates.
    fine_tune_epochs : int, default=10
    random_state : int, optional
    verbose : int, default=1
        0: silent; 1: a progress bar of the search on a terminal; 2: always.
    confidence : float, default=0.95
        Probability that the returned network's loss on new data is at most ``max_loss``.
    strict : bool, default=False
        Raise :class:`~treeslim.errors.InsufficientDataError` when the rows cannot certify
        ``max_loss``, instead of a warning and the original network.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from treeslim.nn import SlimMLPClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> pipe = make_pipeline(StandardScaler(), SlimMLPClassifier(max_loss=0.02, random_state=0))
    >>> pipe = pipe.fit(X, y)
    >>> slim = pipe[-1]
    >>> slim.mlp_.n_params < slim.teacher_.n_params or slim.mlp_.layers[0].precision != "float64"
    True
    """

    _default = "MLPClassifier"

    def fit(self, X: ArrayLike, y: ArrayLike) -> SlimMLPClassifier:
        """Fit (or take) the inner network and compress it on ``(X, y)``."""
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        est = self.estimator
        inner = unwrap(est) if is_fitted(est) else None
        known = getattr(inner, "classes", None) if isinstance(inner, MLP) else None
        if inner is not None and not isinstance(inner, MLP):
            known = getattr(inner, "classes_", None)
        self.classes_ = np.unique(y) if known is None else np.asarray(known)
        if len(self.classes_) < 2:
            raise ValueError(
                f"SlimMLPClassifier needs at least 2 classes in y; got {len(self.classes_)} class."
            )
        class_codes(self.classes_, y, owner="the fitted inner model")  # unknown labels raise
        self._search(cast(NDArray[np.float64], X), y)
        return self

    def decision_function(self, X: ArrayLike) -> NDArray[np.float64]:
        """Margins of the compressed network, shape (n,) (binary) or (n, n_classes)."""
        Xc = self._check_X(X)
        return self.mlp_.predict_margin(Xc)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Class probabilities, shape (n_samples, n_classes)."""
        Xc = self._check_X(X)
        p = self.mlp_.predict(Xc)
        return np.column_stack([1.0 - p, p]) if p.ndim == 1 else p

    def predict(self, X: ArrayLike) -> NDArray[Any]:
        """Predicted class labels."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class SlimMLPRegressor(RegressorMixin, _SlimMLPBase):
    """A compressed MLP regressor (one or more targets); parameters as
    :class:`SlimMLPClassifier` (default inner network ``MLPRegressor(hidden_layer_sizes=(32,))``,
    metric R^2)."""

    _default = "MLPRegressor"

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = True  # the default inner network trains briefly
        return tags

    def fit(self, X: ArrayLike, y: ArrayLike) -> SlimMLPRegressor:
        """Fit (or take) the inner network and compress it on ``(X, y)``."""
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, multi_output=True)
        self._search(cast(NDArray[np.float64], X), y)
        return self

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Predicted values, shape (n,) for one target, (n, n_targets) otherwise."""
        Xc = self._check_X(X)
        return self.mlp_.predict(Xc)
