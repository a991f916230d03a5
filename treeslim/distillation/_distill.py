"""Distillation: a small student model trained to mimic a large teacher.

After Bucila, Caruana & Niculescu-Mizil, "Model Compression" (KDD 2006): the teacher labels the
real rows plus generated rows (:mod:`treeslim.distillation._training`) and a student with far
fewer nodes is fitted to those soft targets (Hinton et al., 2015) with the loss of its task
(:mod:`treeslim.distillation._losses`). Whether that beats training the student on the labels
depends on the data, so :func:`distill` chooses its settings on held-out rows
(:mod:`treeslim.distillation._choose`), labelled by teachers refitted without them when the
teacher can be refitted (:mod:`treeslim.distillation._crossfit`). :func:`distill_candidate` is the fixed-setting building
block :func:`treeslim.compress` uses.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from treeslim._utils import check_qid, is_dask
from treeslim.data import seed_of
from treeslim.distillation._choose import Fold, Setting, choose_setting, fit_setting
from treeslim.distillation._crossfit import MORE_ROWS, fold_teachers, refit_template, teacher_rows
from treeslim.distillation._losses import LOSSES, fit_soft, losses_for
from treeslim.distillation._soft import SoftTargets
from treeslim.distillation._students import student_kind
from treeslim.frontends import from_model
from treeslim.ir import (
    Forest,
    categorical_features,
    check_X,
    code_twin,
    snap_codes,
    with_categories_of,
)
from treeslim.measure import default_metric
from treeslim.passes import check_count, check_target
from treeslim.runtime import KernelForest

__all__ = ["distill", "distill_candidate"]

_AUGMENT = ("munge", "leaf-box", "jitter", "swap", "none")
_MIN_SEARCH = 30  # fewer real rows (queries) than this: too few to hold out, the defaults


def _auto(value: Any) -> bool:
    return isinstance(value, str) and value == "auto"


def _float(value: Any, name: str, low: float, high: float, closed_low: bool) -> float | None:
    if _auto(value):
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = (value >= low if closed_low else value > low) and value <= high
    if not ok:
        rng = (
            f"a float > {low:g}"
            if high == np.inf and not closed_low
            else f"a float in [{low:g}, {high:g}]"
        )
        raise ValueError(
            f"The '{name}' parameter of distill must be {rng} or 'auto'. Got {value!r} instead."
        )
    return float(value)


def _n_synthetic(value: Any) -> int | None:
    if _auto(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            "The 'n_synthetic' parameter of distill must be an int >= 0 or 'auto'. Got"
            f" {value!r} instead."
        )
    return int(value)


def _saw(value: Any) -> bool | None:
    if _auto(value):
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(
            "The 'teacher_saw_rows' parameter of distill must be True, False or 'auto'. Got"
            f" {value!r} instead."
        )
    return bool(value)


_SEEN_WARNING = (
    "distill chooses its settings on held-out rows of X, and the teacher ({name}) cannot be"
    " refitted on part of them. If the teacher was trained on these rows, its targets on the"
    " held-out rows carry their labels and the choice can favour distillation over plain"
    " training. Pass the teacher as its fitted estimator (XGBoost, LightGBM or scikit-learn) to"
    " choose with teachers refitted without the held-out rows, or teacher_saw_rows=False if the"
    " rows are new to the teacher."
)


def _choice(value: Any, name: str, options: tuple[str, ...]) -> str | None:
    if _auto(value):
        return None
    if value not in options:
        raise ValueError(
            f"The '{name}' parameter of distill must be one of {(*options, 'auto')}. Got"
            f" {value!r} instead."
        )
    return str(value)


def distill(
    teacher: Any,
    X: Any,
    y: ArrayLike | None = None,
    *,
    student: Any,
    n_synthetic: int | str = "auto",
    augment: str = "auto",
    temperature: float | str = "auto",
    alpha: float | str = "auto",
    loss: str = "auto",
    qid: ArrayLike | None = None,
    teacher_saw_rows: bool | str = "auto",
    random_state: int | np.random.Generator | None = None,
) -> Any:
    """Train a small ``student`` to mimic ``teacher``, never worse than training it on ``y``.

    The teacher labels the rows of ``X`` (and, if it pays, rows generated from them) with soft
    targets, the student is fitted to them and returned in treeslim's IR with the teacher's
    task, classes and link, so :meth:`Forest.predict` gives what the teacher's predict gives
    (probabilities for classifiers) and every other pass, :func:`~treeslim.report` and
    :func:`~treeslim.compile` apply.

    **Settings left at "auto" are chosen on held-out rows** of ``X`` by the student's metric
    (AUC, accuracy, R^2, NDCG@10; without ``y``, closeness to the teacher's margins), among
    candidates that include the student trained on the labels alone (``loss="labels"``), so
    with labels the result is never worse than plain training by more than the noise of the
    held-out rows. The search (:mod:`treeslim.distillation._choose`) tries the losses and
    ``alpha`` in {0, 0.5} on the real rows, then temperatures 2 and 0.5 (classifiers), then
    generated rows (MUNGE, leaf-box, jitter; sized by the student's capacity), then, for a
    boosting estimator left at its library's defaults, another learning rate and half the
    rounds; a step is taken only when it raises the held-out metric by more than 0.001 and the
    standard error of the per-fold differences. A teacher trained on many more rows than ``X``
    holds knows what the rows lack: its distilled winner needs only the higher mean (by 0.001)
    over plain training. Otherwise it must beat plain training by that margin and again on a
    second partition of ten folds, with a one-sided 95% lower bound of the gain above 0 by the
    corrected resampled t-test (``confirmation`` in the report: mean ``gain``, its corrected
    standard error ``se``, ``lower_bound``, ``kept``): the pick flatters the winner, and three
    folds leave plain training a third of the rows short. The winner is refitted on all rows.
    Below 30 rows (queries, for ranking) held-out scores are noise and the defaults are used
    (``searched`` False): least squares on the teacher's targets alone, ``T=1``, ten MUNGE rows
    per real row (at most 200,000), which beat the search's picks on 6 to 9 queries. The chosen
    settings are reported in ``model.source["distill"]``: ``loss``, ``alpha``, ``temperature``,
    ``augment``, ``n_synthetic``, ``student_params`` (parameters changed), ``searched``,
    ``selection`` ("crossfit", "holdout" or "none"), ``teacher_refits``, ``teacher_rows`` (about
    how many rows the teacher was trained on, from its root statistics; None if unknown),
    ``metric`` and ``candidates`` (every setting measured, with its held-out ``score``).

    **Held-out rows the teacher was trained on flatter distillation**: the teacher's targets on
    them carry their labels, so a student that copies it scores better there than on new rows.
    So when the teacher is given as its estimator (XGBoost, LightGBM, scikit-learn: anything
    :func:`sklearn.base.clone` can refit) and there are labels, the search is **cross-fitted**
    (``selection="crossfit"``): in each fold a clone of the teacher fitted on the fitting rows
    only labels them, so the held-out rows are new to the teacher that guided the student, as
    test rows are (:mod:`treeslim.distillation._crossfit`; ``teacher_refits`` clones, one per
    fold, with early stopping off at the rounds the teacher kept). The chosen setting is then
    fitted with the real teacher. A clone fitted on part of ``X`` stands in for the teacher only
    when the teacher was trained on about as many rows: one whose root statistics show more than
    1.5 times the rows of ``X`` (``X`` a sample of its training data) would be replaced by much
    weaker clones, so it is not refitted unless ``teacher_saw_rows=True``. Otherwise
    (``selection="holdout"``) the real teacher labels every fold; a teacher that cannot be
    refitted (a Forest, a Booster, a model file) draws a ``UserWarning`` unless
    ``teacher_saw_rows=False`` says the rows are new to it.

    Soft targets (details in :mod:`treeslim.distillation._soft`): for a sigmoid (binary)
    teacher ``p = (1 - alpha) * sigmoid(z / T) + alpha * y``; for softmax (multiclass) ``p =
    (1 - alpha) * softmax(z / T) + alpha * onehot(y)``, ``p`` clipped to ``[1e-6, 1 - 1e-6]``;
    for regression ``(1 - alpha) * z + alpha * y``; for ranking ``z`` centred within each query
    (labels, if mixed in, centred too and put on the scores' scale). Labels are mixed into the
    real rows only. The student's margin is ``T`` times what it learns, so with ``alpha=0`` it
    matches the teacher's.

    Parameters
    ----------
    teacher : Forest or any model :func:`treeslim.from_model` accepts
        Given as the fitted estimator, it is cloned and refitted on parts of ``X`` to choose the
        settings honestly (see above); it is not modified.
    X : array-like, DataFrame or dask.array of shape (n_samples, n_features)
        Real rows (e.g. the teacher's training data). A ``dask.array`` is labelled chunk by chunk
        as dask tasks and generated rows are made as dask tasks too (on the cluster of the active
        ``dask.distributed`` client); its rows are gathered once for the settings search, the
        generator's pool and the student's training data.
    y : array-like of shape (n_samples,), optional
        True labels (class indices, values, relevance): needed when ``alpha > 0``; without them
        the search cannot compare with plain training and scores closeness to the teacher.
    student : estimator
        An unfitted XGBoost, LightGBM or scikit-learn regressor, classifier or ranker
        (trees, forests, gradient boosting) or ``MLPRegressor`` / ``MLPClassifier``; it is not
        modified. Distilled with least squares, an estimator of the same library with the same
        parameters is fitted as a regressor (one per class for libraries without multi-output
        trees; scikit-learn trees and forests fit all classes at once); an MLP is fitted on
        standardized inputs (missing values at the mean) and, as a regressor, standardized
        targets, with both scalings folded into its first and last layers, so it takes raw rows
        (without missing values) and outputs on the targets' scale.
    n_synthetic : int or "auto", default="auto"
        Generated rows on top of the real ones.
    augment : {"munge", "leaf-box", "jitter", "swap", "none", "auto"}, default="auto"
        How rows are generated (:func:`treeslim.passes.generate_rows`; "none" resamples real
        rows).
    temperature : float > 0 or "auto", default="auto"
    alpha : float in [0, 1] or "auto", default="auto"
        Weight of the true labels in the real rows' targets.
    loss : {"squared", "cross_entropy", "pairwise", "auto"}, default="auto"
        ``"squared"``: least squares on the soft targets ``u`` (margins / T); ``"cross_entropy"``
        (binary, multiclass one-vs-rest; LightGBM, XGBoost, scikit-learn trees and forests) on the
        probabilities ``p``; ``"pairwise"`` (ranking; LightGBM LambdaRank, XGBoost pairwise)
        within each query on grades cut from the teacher's centred scores
        (:mod:`treeslim.distillation._losses`).
    qid : array-like of shape (n_samples,), optional
        Query of each row (ranking teachers): scores are centred, generated rows stay within
        their query, ranking students and the held-out split use whole queries.
    teacher_saw_rows : bool or "auto", default="auto"
        Whether the teacher was trained on the rows of ``X``. ``True``: cross-fit the search
        when the teacher can be refitted, else choose on held-out rows with a ``UserWarning``
        that the choice can favour distillation. ``"auto"``: the same, except that a teacher
        trained on more than 1.5 times as many rows is not refitted (held-out rows judge).
        ``False``: the rows are new to the teacher, so held-out rows judge honestly; no refits.
        Only matters with ``y`` (without labels the search scores closeness to the teacher).
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the held-out split, the generated rows and, when the student has no
        ``random_state`` of its own, the student: the same seed gives the same student.

    Returns
    -------
    Forest or treeslim.nn.MLP
        The fitted student (an MLP student comes back as the MLP IR, its margins in its output).

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.ensemble import RandomForestClassifier
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> import treeslim
    >>> X, y = make_classification(600, 6, random_state=0)
    >>> teacher = RandomForestClassifier(n_estimators=50, random_state=0).fit(X, y)
    >>> small = treeslim.distill(teacher, X, y, student=DecisionTreeRegressor(max_depth=5),
    ...                          random_state=0)
    >>> small.task, small.n_trees, small.max_depth <= 5
    ('binary', 1, True)
    >>> report = small.source["distill"]
    >>> report["loss"] in ("labels", "squared", "cross_entropy"), report["selection"]
    (True, 'crossfit')
    """

    forest = from_model(teacher)
    student_kind(student)
    fixed: dict[str, Any] = {
        "augment": _choice(augment, "augment", _AUGMENT),
        "temperature": _float(temperature, "temperature", 0.0, np.inf, closed_low=False),
        "alpha": _float(alpha, "alpha", 0.0, 1.0, closed_low=True),
        "loss": _choice(loss, "loss", LOSSES),
        "n_synthetic": _n_synthetic(n_synthetic),
    }
    if fixed["loss"] is not None and fixed["loss"] not in losses_for(forest, student):
        raise ValueError(
            f"The 'loss' parameter of distill must be one of {list(losses_for(forest, student))}"
            f" for a {type(student).__name__} student of a {forest.task} teacher. Got {loss!r}"
            " instead."
        )
    if (fixed["alpha"] or 0.0) > 0 and y is None:
        raise ValueError(
            "The 'alpha' parameter of distill is > 0, so y (the true labels) is needed."
        )
    saw = _saw(teacher_saw_rows)
    seed = seed_of(random_state, "distill")
    given = np.asarray(X.compute()) if is_dask(X) else X  # as the user gave them: for refits
    Xn = KernelForest(forest).prepare(given)
    original, cats = forest, categorical_features(forest)
    if cats or forest.feature_categories is not None:
        # the student learns on category codes (snapped: valid training input for students that
        # split by category) scored by the teacher's code twin; it gets the teacher's category
        # lists back at the end, so it takes inputs as the teacher does
        Xn = Xn.copy()
        snap_codes(Xn, cats, forest.category_rule)
        X, forest = Xn, code_twin(forest)
    n = len(Xn)
    if n == 0:
        raise ValueError("X has no rows: distill needs at least one real row.")
    yn = None if y is None else np.asarray(y.compute() if is_dask(y) else y)  # type: ignore[union-attr]
    if yn is not None and yn.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per row of X; got {yn.shape}.")
    qn = None if qid is None else check_qid(qid.compute() if is_dask(qid) else qid, n)  # type: ignore[union-attr]
    if forest.task == "ranking" and qn is None:
        raise ValueError("Distilling a ranking teacher needs qid (the query of each row).")
    units = n if qn is None else len(np.unique(qn))
    searched = units >= _MIN_SEARCH and any(v is None for v in fixed.values())
    table: list[dict[str, Any]] = []
    rows_seen = teacher_rows(forest)
    info: dict[str, Any] = {"selection": "none", "teacher_refits": 0, "confirmation": None}
    if searched:
        refit: Callable[[list[Fold]], list[Forest] | None] | None = None
        many = rows_seen is not None and rows_seen > MORE_ROWS * n
        if yn is not None and saw is not False:
            template = refit_template(teacher)
            if template is not None and (saw or not many):
                refit = functools.partial(fold_teachers, template, forest, given, yn, qn)
            elif template is None:
                warnings.warn(_SEEN_WARNING.format(name=type(teacher).__name__), UserWarning,
                              stacklevel=2)  # fmt: skip
        chosen, table, info = choose_setting(forest, student, Xn, yn, qn, fixed=fixed, seed=seed,
                                             refit=refit, teacher_knows_more=many)  # fmt: skip
    else:
        n_syn = fixed["n_synthetic"]
        chosen = Setting(
            fixed["loss"] or "squared", fixed["alpha"] or 0.0, fixed["temperature"] or 1.0,
            fixed["augment"] or "munge",
            (min(200_000, 10 * n) if n_syn is None else n_syn) / n,
        )  # fmt: skip
    model = fit_setting(forest, student, Xn if chosen.loss == "labels" else X, yn, qn, chosen,
                        seed)  # fmt: skip
    if model is None:  # plain training lost a class on all rows: cannot happen after a search
        raise ValueError(f"The student cannot be trained on y: {forest.num_class} classes needed.")
    report = {**chosen.describe(n), "searched": searched, **info,
              "teacher_rows": None if rows_seen is None else round(rows_seen),
              "metric": default_metric(forest.task) if yn is not None else "teacher margin MSE",
              "candidates": table}  # fmt: skip
    model = model.replace(source={**model.source, "distill": report})
    return with_categories_of(model, original) if isinstance(model, Forest) else model


def distill_candidate(
    teacher: Forest,
    X_fit: ArrayLike,
    target_margin: ArrayLike,
    *,
    n_trees: int,
    depth: int,
    library: str | None = None,
    loss: str = "squared",
    random_state: int | None = None,
) -> Forest:
    """A boosted student of ``n_trees`` trees of depth ``depth`` fitted to given teacher margins.

    The building block :func:`treeslim.compress` uses: rows and targets are ready (calibration
    plus generated rows, margins of shape (n, n_outputs)), ``temperature=1``, no labels.

    Parameters
    ----------
    teacher : Forest
    X_fit : array-like of shape (n_samples, n_features)
    target_margin : array-like of shape (n_samples,) or (n_samples, n_outputs)
    n_trees, depth : int
        Trees per output and their maximum depth (LightGBM: ``num_leaves = 2**depth``).
    library : {"lightgbm", "xgboost", "sklearn"}, optional
        The student's library; default the teacher's when it is LightGBM or XGBoost, else
        scikit-learn's ``HistGradientBoostingRegressor``.
    loss : {"squared", "cross_entropy", "auto"}, default="squared"
        Least squares on the margins, or (binary / multiclass teachers) cross-entropy on the
        teacher's probabilities (:mod:`treeslim.distillation._losses`); "auto" is cross-entropy
        where the teacher and the student's library allow it, else least squares (what
        :func:`treeslim.compress` uses).
    random_state : int, optional

    Returns
    -------
    Forest

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.ensemble import GradientBoostingRegressor
    >>> import treeslim
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(400, 3))
    >>> teacher = treeslim.from_model(GradientBoostingRegressor(n_estimators=50).fit(X, X[:, 0]))
    >>> small = distill_candidate(teacher, X, teacher.predict_margin(X), n_trees=5, depth=2)
    >>> small.n_trees, small.max_depth
    (5, 2)
    """

    original = teacher
    Xf = np.array(check_X(teacher, X_fit), dtype=np.float64)  # codes, a copy
    cats = categorical_features(teacher)
    if cats or teacher.feature_categories is not None:
        snap_codes(Xf, cats, teacher.category_rule)
        teacher = code_twin(teacher)
    n_trees = check_count(n_trees, "n_trees", "distill_candidate")
    depth = check_count(depth, "depth", "distill_candidate")
    margin = check_target(teacher, target_margin, Xf.shape[0])
    lib = library or teacher.source.get("library")
    seed = 0 if random_state is None else int(random_state)
    student: Any
    if lib == "lightgbm":
        import lightgbm as lgb

        student = lgb.LGBMRegressor(n_estimators=n_trees, num_leaves=2**depth, max_depth=depth,
                                    min_child_samples=5, verbose=-1, n_jobs=1)  # fmt: skip
    elif lib == "xgboost":
        import xgboost as xgb

        student = xgb.XGBRegressor(n_estimators=n_trees, max_depth=depth, n_jobs=1)
    elif lib in (None, "sklearn", "treelite", "tslim"):
        from sklearn.ensemble import HistGradientBoostingRegressor

        student = HistGradientBoostingRegressor(max_iter=n_trees, max_depth=depth,
                                                early_stopping=False)  # fmt: skip
    else:
        raise ValueError(
            "The 'library' parameter of distill_candidate must be 'lightgbm', 'xgboost' or"
            f" 'sklearn'. Got {library!r} instead."
        )
    # compress scores whole rows, not queries: a ranking teacher's scores are fitted as they are
    one_query = np.zeros(len(Xf)) if teacher.task == "ranking" else None
    soft = SoftTargets(teacher, 1.0, 0.0, None, one_query, margin)
    if soft.kind == "ranking":
        soft.kind = "linear"
    U = soft.targets(margin)
    if loss == "auto":
        loss = "cross_entropy" if "cross_entropy" in losses_for(teacher, student) else "squared"
    if loss not in ("squared", "cross_entropy") or loss not in losses_for(teacher, student):
        raise ValueError(
            "The 'loss' parameter of distill_candidate must be 'squared', 'auto' or"
            f" (classifiers) 'cross_entropy'. Got {loss!r} instead."
        )
    fit = fit_soft(teacher, student, Xf, U, loss=loss, temperature=1.0, seed=seed)
    forest: Forest = fit.model
    return with_categories_of(forest, original)
