"""`treeslim.nn.compress`: an MLP compressed within a quality budget, as a fitted estimator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from numpy.typing import ArrayLike

from treeslim._utils import frozen
from treeslim.nn._estimators import SlimMLPClassifier, SlimMLPRegressor
from treeslim.nn._sklearn import from_sklearn

__all__ = ["compress"]


def compress(
    mlp: Any,
    X: ArrayLike,
    y: ArrayLike,
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
) -> Any:
    """Compress a fitted MLP as far as ``max_loss`` allows; return a fitted estimator.

    Parameters
    ----------
    mlp : MLPClassifier, MLPRegressor, FrozenEstimator or MLP
        The fitted network (its inputs already preprocessed as it expects).
    X : array-like of shape (n_samples, n_features)
        Calibration rows: 40% are set aside to certify the budget (never seen while proposing);
        of the rest, a share ``validation_fraction`` is held out to judge candidates and the
        others feed calibration and fine-tuning.
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    max_loss : float, default=0.01
        Largest allowed drop of ``metric`` on new data from the calibration rows' distribution,
        with probability ``confidence``: the same certificate as :func:`treeslim.compress`
        (``est.search_.certificate``; exact Clopper-Pearson bound for accuracy, bootstrap
        otherwise).
    metric : str, optional
        AUC (binary), accuracy (multiclass), R^2 (regression) unless given.
    methods : sequence of str, optional
        Subset of ``("float", "int8", "qat", "prune", "neurons", "lowrank")`` (default: all).
    validation_fraction, fine_tune_epochs, random_state
    verbose : int, default=1
        0: silent; 1: a progress bar of the search on a terminal; 2: always.
    confidence : float, default=0.95
    strict : bool, default=False
        When the rows cannot certify ``max_loss``: raise
        :class:`~treeslim.errors.InsufficientDataError` instead of an
        :class:`~treeslim.errors.InsufficientDataWarning` and the original network.

    Returns
    -------
    SlimMLPClassifier or SlimMLPRegressor
        Fitted: ``mlp_`` is the compressed :class:`MLP` (``treeslim.save(est.mlp_, path)``),
        ``report_`` the :class:`~treeslim.Report`, ``search_`` every candidate judged.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.neural_network import MLPClassifier
    >>> import treeslim
    >>> X, y = load_digits(return_X_y=True)
    >>> X = X / 16.0
    >>> clf = MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0).fit(X, y)
    >>> est = treeslim.nn.compress(clf, X, y, methods=["int8"], random_state=0)
    >>> est.mlp_.layers[0].precision, est.report_[1]["bytes_tslim"] < est.report_[0]["bytes_tslim"] / 3
    ('int8', True)
    """
    task = from_sklearn(mlp).task
    cls = SlimMLPRegressor if task == "regression" else SlimMLPClassifier
    est = cls(
        frozen(mlp),
        max_loss=max_loss,
        metric=metric,
        methods=methods,
        validation_fraction=validation_fraction,
        fine_tune_epochs=fine_tune_epochs,
        random_state=random_state,
        verbose=verbose,
        confidence=confidence,
        strict=strict,
    )
    return est.fit(X, y)
