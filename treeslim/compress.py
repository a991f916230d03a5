"""The compression search: the smallest Forest whose metric stays within a loss budget.

``search(teacher, X, y)`` tries candidate pipelines (which trees to keep, leaf refit toward the
teacher on the calibration rows plus generated rows, node pruning, exact passes), evaluates each
on the calibration data with the task's metric, and keeps the smallest model (by node count) whose
metric is within ``max_loss`` of the teacher's. Candidates are evaluated in parallel with joblib,
so ``joblib.parallel_config(backend="dask")`` runs them on a Dask cluster unchanged.
:func:`compress` wraps the result in a fitted scikit-learn estimator.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._judge import holdout as split_holdout
from ._judge import paired_se
from ._kernel import KernelForest
from ._progress import Progress
from .chunked import evaluate_chunked, is_dask, predict_chunked, sample_rows
from .forest import Forest
from .metrics import HIGHER_IS_BETTER, default_metric, evaluate
from .pareto import annotate_front

__all__ = ["SearchResult", "compress", "search"]


@dataclass
class SearchResult:
    """What :func:`search` found: the chosen forest and every candidate it measured."""

    forest: Forest
    teacher_metric: float
    metric: str
    candidates: list[dict[str, Any]] = field(default_factory=list)

    @property
    def chosen(self) -> dict[str, Any]:
        """The candidate whose forest was returned (its ``steps``, ``nodes``, ``score``, ...)."""
        return next(c for c in self.candidates if c["forest"] is self.forest)

    @property
    def front(self) -> list[dict[str, Any]]:
        """The candidates on the Pareto front of (nodes, single-row p50, metric), by size."""
        return sorted((c for c in self.candidates if c.get("pareto")), key=lambda c: c["nodes"])


def _score(forest: Forest, X: Any, y: Any, qid: Any, metric: str) -> float:
    return float(evaluate(forest.task, y, forest.predict(X), qid=qid)[metric])


def _candidate(
    teacher: Forest,
    X_fit: NDArray[np.float64],
    target: NDArray[np.float64],
    n_trees: int,
    node_fraction: float | None,
    X: Any,
    y: Any,
    qid: Any,
    metric: str,
    random_state: int | None,
    order: list[list[int]] | None = None,
    depth: int | None = None,
) -> dict[str, Any] | None:
    """One candidate: ``n_trees`` selected trees, nodes pruned to ``node_fraction``, leaves
    refit; or, with ``depth``, a student of ``n_trees`` trees of that depth distilled from the
    teacher's margins on the same rows."""
    from .distill import distill_candidate
    from .passes.exact import exact_passes
    from .passes.nodes import prune_nodes
    from .passes.refit import refit_leaves
    from .passes.select import select_trees

    t0 = time.perf_counter()
    steps = []
    forest = teacher
    if depth is not None:
        forest = distill_candidate(
            teacher, X_fit, target, n_trees=n_trees, depth=depth, random_state=random_state
        )
        steps.append(f"distill(n_trees={n_trees}, depth={depth})")
    elif n_trees < _per_output(teacher):
        forest = select_trees(
            forest,
            X_fit,
            n_trees=n_trees,
            target_margin=target,
            random_state=random_state,
            order=order,
        )
        steps.append(f"select_trees(n_trees={n_trees})")
    if node_fraction is not None:
        if math.ceil(node_fraction * forest.n_nodes) < forest.n_trees:
            return None  # every tree keeps its root: this budget cannot be met
        forest = prune_nodes(forest, X_fit, target_margin=target, fraction=node_fraction)
        steps.append(f"prune_nodes(fraction={node_fraction})")
    if steps and depth is None:
        forest = refit_leaves(forest, X_fit, target_margin=target)
        steps.append("refit_leaves(target=teacher)")
    forest = exact_passes(forest)
    steps.append("exact_passes")
    return {
        "steps": steps,
        "forest": forest,
        "trees": forest.n_trees,
        "nodes": forest.n_nodes,
        "score": _score(forest, X, y, qid, metric),
        "seconds": time.perf_counter() - t0,
    }


def _per_output(forest: Forest) -> int:
    """Trees per output: what ``select_trees(n_trees=...)`` counts (per class for multiclass
    forests with one output per tree)."""
    if forest.leaf_width == 1 and forest.n_outputs > 1:
        return forest.n_trees // forest.n_outputs
    return forest.n_trees


def _tree_grid(n: int) -> list[int]:
    """Tree counts (per output) to try: all, then shrinking by a factor 1.6 down to 1."""
    grid = []
    k = float(n)
    while k >= 1:
        grid.append(max(1, round(k)))
        k /= 1.6
    return sorted(set(grid), reverse=True)


_FRACTIONS = (0.75, 0.5, 0.25)  # node budgets tried inside the kept trees
_STUDENT_TREES = (10, 30, 100)  # distilled students: trees per output ...
_STUDENT_DEPTHS = (3, 4, 6)  # ... and their depth
Plan = tuple[int, "float | None", "int | None"]  # (n_trees, node_fraction, student depth)
_PROBES = 2  # tree counts tried per bisection round: fixed, so the search never depends on n_jobs


def _bisection_probes(lo: int, hi: int) -> list[int]:
    """Grid indices to try next when ``lo`` is known to pass and ``hi`` to fail."""
    return sorted({lo + max(1, round(j * (hi - lo) / (_PROBES + 1))) for j in range(1, _PROBES + 1)}
                  - {hi})  # fmt: skip


def _expected_nodes(teacher: Forest, order: list[list[int]], groups: list[Any], k: int) -> int:
    """Nodes of the first ``k`` trees per group in selection order (before pruning)."""
    sizes = np.diff(teacher.tree_offsets)
    return int(
        sum(
            sizes[g].sum() if k >= len(g) else sizes[np.asarray(g)[o[:k]]].sum()
            for g, o in zip(groups, order, strict=True)
        )
    )


def search(
    teacher: Forest,
    X: ArrayLike,
    y: ArrayLike,
    *,
    qid: ArrayLike | None = None,
    max_loss: float = 0.005,
    metric: str | None = None,
    n_synthetic: int = 20_000,
    random_state: int | None = None,
    n_jobs: int | None = None,
    verbose: int = 1,
    bits: int | None = None,
    holdout: float = 0.3,
    distill: bool = True,
) -> SearchResult:
    """Find the smallest forest within ``max_loss`` of ``teacher``'s metric on ``(X, y)``.

    ``max_loss=0`` applies the exact passes only (identical predictions on every input).
    Otherwise the search runs in two stages. First, tree counts on a grid (all, then / 1.6 down
    to 1 per output) are bisected, two per round, for the fewest trees that stay within budget
    after selection and leaf refit (the greedy selection order is computed once and shared).
    Then node pruning (to 3/4, 1/2, 1/4 of the nodes) is tried on that count and on larger
    ones, but only where the pruned size would beat the best so far. A candidate is accepted
    when its loss plus one bootstrap standard error of the paired difference fits ``max_loss``.
    With ``distill``, boosted students (10, 30, 100 trees per output of depth 3, 4, 6, in the
    teacher's library) are then trained on the teacher's margins over the same rows
    (:func:`treeslim.distill.distill_candidate`), those that could be smaller than the best so far.
    With ``bits``, the chosen forest's leaves (k-means codebook refit toward the teacher) and
    thresholds are then quantized to ``bits`` bits, kept if the metric stays within the budget.
    ``holdout`` of the rows (whole queries for ranking; none below 200 rows) are kept out of tree
    selection and leaf refit and judge the candidates. Candidates of a round are evaluated in
    parallel with joblib (``n_jobs``); the result does not depend on the joblib backend or
    ``n_jobs``. ``verbose=1`` shows a progress bar on a terminal, ``0`` is silent.
    """
    from joblib import Parallel, delayed

    from .passes.augment import generate_rows
    from .passes.exact import exact_passes
    from .passes.select import output_groups, selection_order

    metric = metric or default_metric(teacher.task)
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"Unknown metric {metric!r}; expected one of {sorted(HIGHER_IS_BETTER)}.")
    if max_loss < 0:
        raise ValueError(f"max_loss must be >= 0; got {max_loss}.")
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    Xall = np.asarray(X, dtype=np.float64)
    yall = np.asarray(y)
    fit_idx, val_idx = split_holdout(len(Xall), qid, holdout, random_state)
    # candidates are fitted on one part and judged on the other, so the budget is not judged on
    # the rows the leaves were refitted on
    Xa, y = Xall[val_idx], yall[val_idx]
    qid = None if qid is None else np.asarray(qid)[val_idx]
    base = _score(teacher, Xa, y, qid, metric)
    exact = exact_passes(teacher)
    result = SearchResult(forest=exact, teacher_metric=base, metric=metric)
    first = {"steps": ["exact_passes"], "forest": exact, "trees": exact.n_trees,
             "nodes": exact.n_nodes, "score": base, "seconds": 0.0, "accepted": True}  # fmt: skip
    result.candidates.append(first)
    if max_loss == 0:
        first["chosen"] = True
        annotate_front(result.candidates, Xa, higher_is_better=sign > 0)
        return result
    bar = Progress(1, "treeslim search", verbose=verbose)
    Xf = Xall[fit_idx]
    extra = generate_rows(Xf, n_synthetic, random_state=random_state) if n_synthetic else None
    X_fit = Xf if extra is None else np.vstack([Xf, extra])
    target = KernelForest(teacher).margin(X_fit)
    grid = _tree_grid(_per_output(teacher))
    groups = output_groups(teacher)
    order = selection_order(
        teacher, X_fit, n_trees=grid[min(1, len(grid) - 1)], target_margin=target,
        random_state=random_state,
    )  # fmt: skip
    bar.update(note="tree order")
    teacher_pred = teacher.predict(Xa)

    def run(plans: list[Plan]) -> list[dict[str, Any] | None]:
        """Evaluate ``(n_trees, node_fraction, student_depth)`` plans in parallel."""
        bar.add(len(plans))
        out: list[dict[str, Any] | None] = [None] * len(plans)
        jobs = (
            delayed(_indexed)(i, teacher, X_fit, target, k, frac, Xa, y, qid, metric,
                              random_state, order, depth)
            for i, (k, frac, depth) in enumerate(plans)
        )  # fmt: skip
        for i, c in Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs):
            out[i] = c
            if c is not None:
                loss = sign * (base - c["score"])
                c["accepted"] = False
                if loss <= max_loss:
                    se = paired_se(teacher.task, y, qid, metric, teacher_pred,
                                    c["forest"].predict(Xa), random_state)  # fmt: skip
                    c["loss_se"] = se
                    c["accepted"] = loss + se <= max_loss
            k, frac, depth = plans[i]
            bar.update(note=f"{k} trees" + (f" x{frac}" if frac else "")
                       + (f" depth {depth} (distilled)" if depth else ""))  # fmt: skip
        result.candidates.extend(c for c in out if c is not None)  # in plan order
        return out

    # Bisect the tree grid for every node budget at once, in rounds; in each, skip the tree
    # counts whose expected size cannot beat the smallest accepted candidate so far.
    budgets: tuple[float | None, ...] = (None, *_FRACTIONS)
    lo = {f: (0 if f is None else -1) for f in budgets}  # largest grid index known to pass
    hi = {f: len(grid) for f in budgets}  # smallest grid index known to fail
    sizes = [_expected_nodes(teacher, order, groups, k) for k in grid]
    while True:
        best_nodes = min(c["nodes"] for c in result.candidates if c["accepted"])
        plans: list[tuple[int, float | None]] = []
        for f in budgets:
            small = [i for i in range(hi[f]) if (f or 1.0) * sizes[i] < best_nodes]
            lo[f] = max(lo[f], (small[0] if small else hi[f]) - 1)
            if hi[f] - lo[f] > 1:
                plans += [(i, f) for i in _bisection_probes(lo[f], hi[f])]
        if not plans:
            break
        done = run([(grid[i], f, None) for i, f in plans])
        for (i, f), c in zip(plans, done, strict=True):
            if c is not None and c["accepted"]:
                lo[f] = max(lo[f], i)
        for (i, f), c in zip(plans, done, strict=True):
            if (c is None or not c["accepted"]) and i > lo[f]:
                hi[f] = min(hi[f], i)
    if distill:
        # students distilled from the teacher's margins, where they could beat the best so far
        best_nodes = min(c["nodes"] for c in result.candidates if c["accepted"])
        width = teacher.n_outputs if teacher.leaf_width == 1 else 1
        students: list[Plan] = [
            (n, None, d)
            for d in _STUDENT_DEPTHS
            for n in _STUDENT_TREES
            if d <= teacher.max_depth and width * n * (2 ** (d + 1) - 1) < best_nodes
        ]
        run(students)
    accepted = [c for c in result.candidates if c["accepted"]]
    best = min(accepted, key=lambda c: (c["nodes"], -sign * c["score"]))
    result.forest = best["forest"]
    if bits is not None:
        bar.add(1)
        _quantize_step(result, best, bits, X_fit, target, Xa, y, qid, metric, sign, base,
                       max_loss)  # fmt: skip
        bar.update(note=f"{bits}-bit quantization")
    for c in result.candidates:
        c["chosen"] = c["forest"] is result.forest
    annotate_front(result.candidates, Xa, higher_is_better=sign > 0)
    bar.close()
    return result


def _indexed(i: int, *args: Any) -> tuple[int, dict[str, Any] | None]:
    return i, _candidate(*args)


def _quantize_step(
    result: SearchResult,
    best: dict[str, Any],
    bits: int,
    X_fit: NDArray[np.float64],
    target: NDArray[np.float64],
    Xa: Any,
    y: Any,
    qid: Any,
    metric: str,
    sign: float,
    base: float,
    max_loss: float,
) -> None:
    from .passes.quantize import quantize_leaves, quantize_thresholds

    t0 = time.perf_counter()
    m = min(len(X_fit), 20_000)
    q = quantize_leaves(result.forest, bits=bits, method="kmeans", X=X_fit[:m], y_margin=target[:m])
    q = quantize_thresholds(q, Xa, bits=bits)
    score = _score(q, Xa, y, qid, metric)
    ok = sign * (base - score) <= max_loss
    result.candidates.append({
        "steps": [*best["steps"], f"quantize_leaves(bits={bits})",
                  f"quantize_thresholds(bits={bits})"],
        "forest": q, "trees": q.n_trees, "nodes": q.n_nodes, "score": score,
        "seconds": time.perf_counter() - t0, "accepted": ok,
    })  # fmt: skip
    if ok:
        result.forest = q


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
        Largest allowed absolute drop of the metric (AUC for binary, accuracy for multiclass,
        R^2 for regression, NDCG@10 for ranking unless ``metric`` says otherwise).
    metric : str, optional
    random_state : int, optional
    max_rows : int, default=200000
        Calibration sets with more rows (and every ``dask.array`` / ``dask.dataframe``) are
        sampled down to about this many rows for the search (:func:`treeslim.chunked.sample_rows`,
        chunk by chunk on the cluster for dask); the original and the compressed model are then
        scored on all rows, chunk by chunk, as the report's ``(all rows)`` entries.
    **kwargs
        Parameters of the ``Slim*`` estimator (``n_jobs``, ``verbose``, ``bits``, ...).

    Returns
    -------
    SlimClassifier, SlimRegressor, SlimRanker or Pipeline
    """
    from sklearn.pipeline import Pipeline

    from .estimators import SlimClassifier, SlimRanker, SlimRegressor, frozen
    from .frontends import from_model

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
            **kwargs,
        )
        return Pipeline([*model.steps[:-1], (model.steps[-1][0], slim)])
    forest = from_model(model)
    cls = {
        "binary": SlimClassifier,
        "multiclass": SlimClassifier,
        "regression": SlimRegressor,
        "ranking": SlimRanker,
    }[forest.task]
    est = cls(frozen(model), max_loss=max_loss, metric=metric, random_state=random_state, **kwargs)
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
    from .report import Report

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
