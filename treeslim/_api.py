"""The facade: ``load``, ``save``, ``compile`` and ``compress`` take "any model or path" and hand
it to the one stage that does the work (a frontend, a format, the compiled-model backend, the
search through the estimators)."""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike
from sklearn.pipeline import Pipeline

from treeslim._utils import check_qid, frozen, is_dask
from treeslim.backends.tl2cgen import CompiledForest, compile_forest
from treeslim.data import predict_chunked, sample_rows
from treeslim.errors import ModelFormatError
from treeslim.estimators import SlimClassifier, SlimRanker, SlimRegressor
from treeslim.formats import save_tslim
from treeslim.frontends import from_bytes, from_model
from treeslim.ir import Forest
from treeslim.measure import Report, evaluate, evaluate_chunked
from treeslim.nn import MLP, load_mlp_bytes, save_mlp

__all__ = ["compile", "compress", "load", "save"]


def load(path: str | os.PathLike[str], *, missing: float | None = None) -> Any:
    """Read a model file: XGBoost JSON / UBJSON, LightGBM model text, Treelite checkpoint, ``.tslim``.

    The format is recognised from the file's content. Files are only read, never unpickled.
    Returns a :class:`~treeslim.Forest`, or a :class:`treeslim.nn.MLP` for an MLP ``.tslim`` file.
    ``missing``: for an XGBoost file, the value the model is scored with as ``missing`` besides
    NaN (XGBoost does not save it; see :func:`treeslim.from_model`); other formats refuse it.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if not data:
        raise ModelFormatError(f"{path}: the file is empty.")
    if data[:256].lstrip().startswith(b"TSLNN") and missing is None:
        return load_mlp_bytes(data, name=path)
    return from_bytes(data, name=path, missing=missing)


def save(model: Forest | MLP, path: str | os.PathLike[str], *, stats: bool = False) -> None:
    """Write ``model`` to ``path`` as ``.tslim`` (atomically: a failed write loses nothing).

    A :class:`~treeslim.Forest` is written by :func:`treeslim.save_tslim` (``stats`` keeps its
    node statistics), a :class:`treeslim.nn.MLP` in its own layout; read either back with
    :func:`load`.
    """
    if isinstance(model, MLP):
        save_mlp(model, path)
        return
    save_tslim(model, path, stats=stats)


def compile(
    model: Any,
    path: str | os.PathLike[str] | None = None,
    *,
    engine: Literal["kernel", "tl2cgen"] = "kernel",
    march: str | None = None,
    nthread: int | None = None,
    parallel_comp: int | None = None,
    cache: bool = True,
    verbose: int = 1,
) -> CompiledForest:
    """Compile ``model`` into a shared library and load it.

    The library exports a C ABI (``treeslim_predict``, ``treeslim_predict_f32``, ...; see
    :meth:`CompiledForest.save`, which writes it with its C header) for services in any language,
    and :class:`CompiledForest` scores through it from Python.

    Parameters
    ----------
    model : Forest or fitted model
        Anything :func:`treeslim.from_model` accepts.
    path : path-like, optional
        Also copy the library there (atomically), e.g. for deployment.
    engine : {"kernel", "tl2cgen"}, default="kernel"
        The code the library runs.

        - ``"kernel"``: treeslim's own tree-at-a-time kernel over the model's arrays, embedded as
          static data. The C ABI then scores as fast as treeslim's Python batch path (a block
          walk for batches, eight trees side by side for one row), one row or a batch per call
          on the calling thread. A 500-tree model compiles in 0.5-1 s: only the model's data is
          compiled, the kernel itself once per compiler and target (2-4 s, then cached); and
          :class:`CompiledForest` needs nothing else, so a pickled model scores at full speed on
          a host without a compiler.
        - ``"tl2cgen"``: the model built with Treelite and compiled from TL2cgen's generated C,
          patched to be exact; slower to compile (seconds to tens of seconds for 500 trees) and,
          through the C ABI, to score. :class:`CompiledForest` scores its batches with treeslim's
          per-machine kernel (built on first use where a compiler is found).

        Both give :meth:`Forest.predict`'s predictions (the kernel engine XGBoost's and
        LightGBM's margins bit for bit, tested).
    march : str, optional
        The CPU the kernel engine's code is compiled for (the compiler's ``-march``). By default
        the compiler's default target (``x86-64`` on x86-64), which runs on any machine of the
        architecture: the library is an artifact to ship. Measured on 500-tree XGBoost and
        LightGBM models, ``"native"`` (AVX-512 there) and ``"x86-64-v3"`` scored within a few
        percent of the default, inside the noise of a shared machine (the walk waits on memory
        more than on arithmetic), so the default costs little today. ``"native"`` or a level
        like ``"x86-64-v3"`` opts in; the library then records the x86 extensions it needs and
        checks them before scoring: on a CPU without them, ``treeslim_cpu_supported()`` returns
        0, loading it in Python (or unpickling it) raises :class:`CompilerError` and the C
        scoring functions print why and abort, rather than dying of an illegal instruction
        (other architectures are not checked). Kernel engine only.
    nthread : int, optional
        Threads for building (parallel compiler processes) and the default for batch scoring;
        all cores by default. Big batches are split into row ranges scored on that many threads
        (:class:`CompiledForest`); the C ABI itself is single-threaded: a C caller owns its
        threads.
    parallel_comp : int, optional
        TL2cgen engine: translation units TL2cgen splits the trees into (default: one per ~100
        trees, at least 2, at most 32). Thresholds are always quantized (TL2cgen's ``quantize``:
        integer comparisons against per-feature threshold tables, which treeslim makes exact).
    cache : bool, default=True
        Reuse a library built before for the same model, engine and options (``False`` rebuilds
        the model's library; the kernel engine's compiled kernel object stays cached).
    verbose : int, default=1
        0: silent; 1: a progress bar of the build on a terminal; 2: always, with TL2cgen's own
        messages.

    Returns
    -------
    CompiledForest

    Raises
    ------
    CompilerError
        No C compiler, or the build failed; the message says what to install.
    """
    return compile_forest(from_model(model), path, engine=engine, march=march, nthread=nthread,
                          parallel_comp=parallel_comp, cache=cache, verbose=verbose)  # fmt: skip


def compress(
    model: Any,
    X: ArrayLike,
    y: ArrayLike,
    *,
    qid: ArrayLike | None = None,
    max_loss: float = 0.005,
    metric: str | None = None,
    random_state: int | None = None,
    max_rows: int = 200_000,
    confidence: float = 0.95,
    strict: bool = False,
    objective: str = "nodes",
    **kwargs: Any,
) -> Any:
    """Compress a fitted model on calibration data; return a fitted ``Slim*`` estimator.

    Parameters
    ----------
    model : fitted model, Forest, or fitted scikit-learn Pipeline
        A Pipeline's last step is compressed and the Pipeline returned with the same
        preprocessing steps.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    qid : array-like of shape (n_samples,), optional
        Query ids (ranking).
    max_loss : float, default=0.005
        Largest allowed absolute drop of the metric on new data (AUC for binary, accuracy for
        multiclass, R^2 for regression, NDCG@10 for ranking unless ``metric`` says otherwise).
        A share of the calibration rows (whole queries for ranking) never seen while proposing
        candidates certifies it: ``slim.search_.certificate`` holds the bound.
    metric : str, optional
    random_state : int, optional
    max_rows : int, default=200000
        Calibration sets with more rows (and every ``dask.array`` / ``dask.dataframe``) are
        sampled down to about this many rows for the search (:func:`treeslim.data.sample_rows`,
        chunk by chunk on the cluster for dask); the original and the compressed model are then
        scored on all rows, chunk by chunk, as the report's ``(all rows)`` entries.
    confidence : float, default=0.95
        The returned model's loss on new data from the calibration data's distribution is at
        most ``max_loss`` with at least this probability (see :func:`treeslim.search.search`).
    strict : bool, default=False
        Raise :class:`~treeslim.errors.InsufficientDataError` when the calibration rows cannot
        certify ``max_loss``, instead of an
        :class:`~treeslim.errors.InsufficientDataWarning` and the exact passes.
    objective : {"nodes", "bytes", "latency"}, default="nodes"
        What the smallest certified model minimises: nodes, ``.tslim`` bytes, or the C
        kernel's time per row.
    **kwargs
        Parameters of the ``Slim*`` estimator (``n_jobs``, ``verbose``, ``bits``, ...).

    Returns
    -------
    SlimClassifier, SlimRegressor, SlimRanker or Pipeline
    """
    if isinstance(model, Pipeline):
        head = model[:-1]
        Xt = head.transform(X) if len(head) else X
        slim = compress(
            model[-1],
            Xt,
            y,
            qid=qid,
            max_loss=max_loss,
            metric=metric,
            random_state=random_state,
            max_rows=max_rows,
            confidence=confidence,
            strict=strict,
            objective=objective,
            **kwargs,
        )
        return Pipeline([*model.steps[:-1], (model.steps[-1][0], slim)])
    forest = from_model(model)
    if qid is not None and not (is_dask(X) or is_dask(qid)):
        qid = check_qid(qid, len(X))  # type: ignore[arg-type]
    cls = {
        "binary": SlimClassifier,
        "multiclass": SlimClassifier,
        "regression": SlimRegressor,
        "ranking": SlimRanker,
    }[forest.task]
    est = cls(frozen(model), max_loss=max_loss, metric=metric, random_state=random_state,
              confidence=confidence, strict=strict, objective=objective, **kwargs)  # fmt: skip
    big = is_dask(X) or is_dask(y) or len(X) > max_rows  # type: ignore[arg-type]
    Xs, ys, qs, n = X, y, qid, 0
    if big:
        Xs, ys, qs, n = sample_rows(X, y, qid, max_rows=max_rows, random_state=random_state)
    if forest.task == "ranking":
        est.fit(Xs, ys, qid=qs)
    else:
        est.fit(Xs, ys)
    if big and n > len(np.asarray(Xs)):
        _report_all_rows(est, X, y, qid, n)
    return est


def _report_all_rows(est: Any, X: Any, y: Any, qid: Any, n: int) -> None:
    """Add the original's and the compressed model's metrics on every row to ``est.report_``."""
    entries = []
    for name, forest in (("original", est.teacher_), ("compressed", est.forest_)):
        entry = {"name": f"{name} (all {n:,} rows)", "task": forest.task, "rows": n,
                 "trees": forest.n_trees, "nodes": forest.n_nodes}  # fmt: skip
        if forest.task == "ranking":  # NDCG needs whole queries: one score per row comes back
            yv = np.asarray(y.compute() if is_dask(y) else y)
            qv = np.asarray(qid.compute() if is_dask(qid) else qid)
            entry.update(evaluate(forest.task, yv, predict_chunked(forest, X), qid=qv))
        else:  # sums per chunk: client memory does not grow with the rows
            entry.update(evaluate_chunked(forest, X, y, classes=getattr(est, "classes_", None)))
        entries.append(entry)
    est.report_ = est.report_ + Report(entries)
