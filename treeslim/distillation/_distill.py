"""Distillation: a small student model trained to mimic a large teacher.

After Bucila, Caruana & Niculescu-Mizil, "Model Compression" (KDD 2006): the teacher labels the
real rows plus many generated rows (MUNGE, leaf-box sampling or jitter, see
:func:`~treeslim.passes.generate_rows`), and a student with far fewer nodes is fitted to those
labels. The labels are soft targets (Hinton et al., 2015), regression on the teacher's margins
with a temperature (see :mod:`treeslim.distillation._soft`), optionally blended with the true labels. Rows
are generated and labelled chunk by chunk with the C kernel, so working memory stays flat beyond
the training set itself; with a ``dask.array`` ``X`` the labelling and generation run as dask
tasks (on a cluster when a ``dask.distributed`` client is active).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim._utils import check_qid, is_dask
from treeslim.data import sampler, sampler_chunks, sampler_rows, seed_of
from treeslim.distillation._soft import SoftTargets
from treeslim.distillation._students import fit_student, student_kind
from treeslim.frontends import from_model
from treeslim.ir import Forest
from treeslim.passes import check_count, check_target
from treeslim.runtime import KernelForest

__all__ = ["distill", "distill_candidate", "training_set"]

_AUGMENT = ("munge", "leaf-box", "jitter", "swap", "none")
_CHUNK = 65536  # generated rows labelled at a time


def _float(value: Any, name: str, low: float, high: float, closed_low: bool) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok:
        ok = (value >= low if closed_low else value > low) and value <= high
    if not ok:
        rng = (
            f"a float > {low:g}"
            if high == np.inf and not closed_low
            else f"a float in [{low:g}, {high:g}]"
        )
        raise ValueError(f"The '{name}' parameter of distill must be {rng}. Got {value!r} instead.")
    return float(value)


def _n_synthetic(value: Any, n: int) -> int:
    if isinstance(value, str) and value == "auto":
        return int(min(200_000, 10 * n))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            "The 'n_synthetic' parameter of distill must be an int >= 0 or 'auto'. Got"
            f" {value!r} instead."
        )
    return int(value)


def _label_block(block: NDArray[Any], teacher: Forest) -> NDArray[np.float64]:
    return KernelForest(teacher).margin(block)


def _generated_block(smp: Any, start: int, stop: int, n_rows: int, seed: int) -> Any:
    return sampler_rows(smp, start, stop, n_rows, seed)


def training_set(
    teacher: Forest,
    X: Any,
    y: ArrayLike | None = None,
    *,
    n_synthetic: int,
    augment: str,
    temperature: float = 1.0,
    alpha: float = 0.0,
    qid: ArrayLike | None = None,
    random_state: int | np.random.Generator | None = None,
    chunk_size: int = _CHUNK,
) -> tuple[NDArray[Any], NDArray[np.float64], NDArray[Any] | None]:
    """The student's training rows, soft targets ``u`` (n, K) and queries: real rows first.

    Arguments are those of :func:`distill` (checked there). Rows are stored at the teacher's
    input precision. With a ``dask.array`` ``X``, labels and generated rows are computed as dask
    tasks, one per chunk, and give the same result as a numpy ``X``.
    """

    kernel = KernelForest(teacher)
    lazy = is_dask(X)
    Xr = kernel.prepare(np.asarray(X.compute()) if lazy else X)
    n, d = Xr.shape
    if n == 0:
        raise ValueError("X has no rows: distill needs at least one real row.")
    yv: Any = y
    yr = None if yv is None else np.asarray(yv.compute() if is_dask(yv) else yv)
    if yr is not None and yr.shape != (n,):
        raise ValueError(f"y must have shape ({n},), one label per row of X; got {yr.shape}.")
    qv: Any = qid
    q = None if qv is None else check_qid(qv.compute() if is_dask(qv) else qv, n)
    if teacher.task == "ranking" and q is None:
        raise ValueError("Distilling a ranking teacher needs qid (the query of each row).")
    seed = seed_of(random_state, "distill")
    if lazy:
        margin = np.asarray(
            X.rechunk({1: -1})
            .map_blocks(
                _label_block, teacher, dtype=np.float64, chunks=(X.chunks[0], (teacher.n_outputs,))
            )
            .compute()
        )
    else:
        margin = kernel.margin_prepared(Xr)
    soft = SoftTargets(teacher, temperature, alpha, yr, q if teacher.task == "ranking" else None,
                       margin)  # fmt: skip
    qcode = None if q is None else np.unique(q, return_inverse=True)[1].astype(np.intp)
    rows = np.empty((n + n_synthetic, d), dtype=Xr.dtype)
    U = np.empty((n + n_synthetic, teacher.n_outputs))
    rows[:n] = Xr
    U[:n] = soft.targets(margin, y=yr if alpha > 0 else None, qcode=qcode)
    q_all = None if q is None else np.empty(n + n_synthetic, dtype=q.dtype)
    if q_all is not None:
        q_all[:n] = q
    if n_synthetic == 0:
        return rows, U, q_all
    method = {"none": "bootstrap"}.get(augment, augment)
    smp = sampler(Xr.astype(np.float64), method=method, forest=teacher, qid=q)
    step = max(1, min(int(chunk_size), n_synthetic))
    if lazy:
        import dask
        import dask.array as da

        shared = dask.delayed(smp, pure=True)
        parts = [
            dask.delayed(_generated_block, nout=2, pure=True)(
                shared, s, min(n_synthetic, s + step), n_synthetic, seed
            )
            for s in range(0, n_synthetic, step)
        ]
        sizes = [min(n_synthetic, s + step) - s for s in range(0, n_synthetic, step)]
        G = da.concatenate(
            [da.from_delayed(p[0], (m, d), np.float64) for p, m in zip(parts, sizes, strict=True)]
        )
        B = da.concatenate(
            [da.from_delayed(p[1], (m,), np.intp) for p, m in zip(parts, sizes, strict=True)]
        )
        M = G.map_blocks(_label_block, teacher, dtype=np.float64,
                         chunks=(G.chunks[0], (teacher.n_outputs,)))  # fmt: skip
        g, b, m = dask.compute(G, B, M)
        rows[n:] = g
        U[n:] = soft.targets(np.asarray(m), qcode=None if qcode is None else qcode[b])
        if q_all is not None:
            q_all[n:] = q[b]  # type: ignore[index]
        return rows, U, q_all
    at = n
    for g, b in sampler_chunks(smp, n_synthetic, seed, step):
        gc = kernel.prepare(g)
        rows[at : at + len(g)] = gc
        m = kernel.margin_prepared(gc)
        U[at : at + len(g)] = soft.targets(m, qcode=None if qcode is None else qcode[b])
        if q_all is not None:
            q_all[at : at + len(g)] = q[b]  # type: ignore[index]
        at += len(g)
    return rows, U, q_all


def distill(
    teacher: Any,
    X: Any,
    y: ArrayLike | None = None,
    *,
    student: Any,
    n_synthetic: int | str = "auto",
    augment: str = "munge",
    temperature: float = 1.0,
    alpha: float = 0.0,
    qid: ArrayLike | None = None,
    random_state: int | np.random.Generator | None = None,
) -> Any:
    """Train a small ``student`` to mimic ``teacher`` on real plus generated rows.

    The teacher labels the rows of ``X`` and ``n_synthetic`` rows generated from them; the student
    is fitted by least squares to soft targets made from the teacher's margins and returned in
    treeslim's IR, with the teacher's task, classes and link, so :meth:`Forest.predict` gives
    what the teacher's predict gives (probabilities for classifiers) and every other pass,
    :func:`~treeslim.report` and :func:`~treeslim.compile` apply.

    Soft targets (details in :mod:`treeslim.distillation._soft`): the student regresses ``u`` and its margin is
    ``temperature * u``. For a sigmoid (binary) teacher ``u = logit(p) / sigmoid_alpha`` with
    ``p = (1 - alpha) * sigmoid(z / T) + alpha * y``; for softmax (multiclass) ``u`` is the
    centred ``log p`` with ``p = (1 - alpha) * softmax(z / T) + alpha * onehot(y)``; ``p`` is
    clipped to ``[1e-6, 1 - 1e-6]``. So with ``alpha=0`` the student's margin matches the
    teacher's (up to a common shift of the classes), except that margins beyond about
    ``13.8 * T`` in size are capped: a small ``T`` flattens saturated margins, which change no
    prediction but would dominate a squared loss. For regression ``u = ((1 - alpha) * z +
    alpha * y) / T`` and ``T`` only rescales; for ranking ``z`` is centred within each query
    (labels, if mixed in, are centred too and put on the scores' scale). Labels are mixed into
    the real rows only.

    Parameters
    ----------
    teacher : Forest or any model :func:`treeslim.from_model` accepts
    X : array-like, DataFrame or dask.array of shape (n_samples, n_features)
        Real rows (e.g. the teacher's training data). A ``dask.array`` is labelled chunk by chunk
        as dask tasks and generated rows are made as dask tasks too (on the cluster of the active
        ``dask.distributed`` client); its rows are gathered once to serve as the generator's pool
        and the student's training data.
    y : array-like of shape (n_samples,), optional
        True labels (class indices, values, relevance), needed when ``alpha > 0``.
    student : estimator
        An unfitted XGBoost, LightGBM or scikit-learn regressor, classifier or ranker
        (trees, forests, gradient boosting) or ``MLPRegressor`` / ``MLPClassifier``; it is not
        modified. A regressor of the same library with the same parameters is fitted (one per
        class for libraries without multi-output trees; scikit-learn trees and forests fit all
        classes at once). An MLP is fitted on standardized inputs (missing values at the
        mean) and the scaler is folded into its first layer, so the returned network takes raw
        rows (without missing values).
    n_synthetic : int or "auto", default="auto"
        Generated rows on top of the real ones; "auto" is ``min(10 * n_samples, 200_000)``.
    augment : {"munge", "leaf-box", "jitter", "swap", "none"}, default="munge"
        How rows are generated (:func:`treeslim.passes.generate_rows`; "none" resamples real
        rows).
    temperature : float > 0, default=1.0
    alpha : float in [0, 1], default=0.0
        Weight of the true labels in the real rows' targets.
    qid : array-like of shape (n_samples,), optional
        Query of each row (ranking teachers): scores are centred and generated rows stay within
        their query.
    random_state : int, numpy.random.Generator or None, default=None
        Seeds the generated rows and, when the student has no ``random_state`` of its own, the
        student: the same seed gives the same student.

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
    >>> small = treeslim.distill(teacher, X, student=DecisionTreeRegressor(max_depth=5),
    ...                          n_synthetic=3000, random_state=0)
    >>> small.task, small.n_trees, small.max_depth
    ('binary', 1, 5)
    >>> bool(((small.predict(X) > 0.5) == (teacher.predict(X) == 1)).mean() > 0.9)
    True
    """

    forest = from_model(teacher)
    student_kind(student)
    if augment not in _AUGMENT:
        raise ValueError(
            f"The 'augment' parameter of distill must be one of {_AUGMENT}. Got {augment!r}"
            " instead."
        )
    T = _float(temperature, "temperature", 0.0, np.inf, closed_low=False)
    a = _float(alpha, "alpha", 0.0, 1.0, closed_low=True)
    if a > 0 and y is None:
        raise ValueError(
            "The 'alpha' parameter of distill is > 0, so y (the true labels) is needed."
        )
    seed = seed_of(random_state, "distill")
    n_rows = X.shape[0] if is_dask(X) else len(X)
    rows, U, _ = training_set(
        forest, X, y, n_synthetic=_n_synthetic(n_synthetic, int(n_rows)), augment=augment,
        temperature=T, alpha=a, qid=qid, random_state=seed,
    )  # fmt: skip
    return fit_student(forest, student, rows, U, temperature=T, seed=seed).model


def distill_candidate(
    teacher: Forest,
    X_fit: ArrayLike,
    target_margin: ArrayLike,
    *,
    n_trees: int,
    depth: int,
    library: str | None = None,
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

    Xf = np.asarray(X_fit, dtype=np.float64)
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
    forest: Forest = fit_student(teacher, student, Xf, U, temperature=1.0, seed=seed).model
    return forest
