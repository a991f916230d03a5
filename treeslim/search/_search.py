"""The compression search: the smallest Forest whose loss on new data is certified within a budget.

``search(teacher, X, y)`` tries candidate pipelines (:mod:`treeslim.search._candidate`: which
trees to keep, leaf refit toward the teacher on the calibration rows plus generated rows, node
pruning, exact passes; distilled students) and judges each on held-out calibration rows with the
task's metric; those within ``max_loss`` there are proposed. Rows set aside before the search
then certify the proposals, largest first, until one fails
(:func:`treeslim.measure.certify_in_sequence`); the smallest certified model (by ``objective``)
is returned. Candidates are evaluated in parallel with joblib, so
``joblib.parallel_config(backend="dask")`` runs them on a Dask cluster unchanged.
:func:`treeslim.compress` wraps the result in a fitted scikit-learn estimator.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any

import numpy as np
from joblib import Parallel, delayed
from numpy.typing import ArrayLike, NDArray

from treeslim._utils import Progress, check_qid
from treeslim.data import calibration_split, generate_rows
from treeslim.errors import InsufficientDataError, InsufficientDataWarning
from treeslim.formats import dump_tslim_bytes
from treeslim.ir import Forest
from treeslim.measure import (
    HIGHER_IS_BETTER,
    Certificate,
    cannot_certify_message,
    certify_in_sequence,
    default_metric,
    evaluate,
    exact_certificate,
    paired_se,
    proposal_margin,
    sequence_order,
    smallest_budget,
)
from treeslim.passes import (
    exact_passes,
    output_groups,
    quantize_leaves,
    quantize_thresholds,
    selection_order,
)
from treeslim.runtime import KernelForest, fast_predict
from treeslim.search._bisect import (
    _bisect_students,
    _bisection_probes,
)
from treeslim.search._candidate import Candidate, Plan, build_candidate, score
from treeslim.search._pareto import annotate_front

__all__ = ["SearchResult", "search"]

_FRACTIONS = (0.75, 0.5, 0.25)  # node budgets tried inside the kept trees
# larger tree counts added above each budget's smallest passing one: safer, higher-fidelity
# proposals the certification chain can start with (on the budget grid, 2 -> 4 -> 6 moved the
# geometric mean reduction 1.95x -> 2.03x -> 2.08x with the same 2 of 135 runs over budget)
_LADDER = 6
OBJECTIVES = ("nodes", "bytes", "latency")


@dataclasses.dataclass
class SearchResult:
    """What :func:`search` found: the chosen forest and every candidate it measured."""

    forest: Forest
    teacher_metric: float
    metric: str
    candidates: list[Candidate] = dataclasses.field(default_factory=list)
    certificate: Certificate | None = None  # the returned forest's

    @property
    def chosen(self) -> Candidate:
        """The candidate whose forest was returned (its ``steps``, ``nodes``, ``score``, ...)."""
        return next(c for c in self.candidates if c.forest is self.forest)

    @property
    def front(self) -> list[Candidate]:
        """The candidates on the Pareto front of (nodes, single-row p50, metric), by size."""
        return sorted((c for c in self.candidates if c.pareto), key=lambda c: c.nodes)

    def best_accepted_nodes(self) -> int:
        """Nodes of the smallest accepted candidate so far."""
        return min(c.nodes for c in self.candidates if c.accepted)


def _tree_grid(n: int) -> list[int]:
    """Tree counts (per output) to try: all, then shrinking by a factor 1.6 down to 1."""
    grid = []
    k = float(n)
    while k >= 1:
        grid.append(max(1, round(k)))
        k /= 1.6
    return sorted(set(grid), reverse=True)


def _expected_nodes(teacher: Forest, order: list[list[int]], groups: list[Any], k: int) -> int:
    """Nodes of the first ``k`` trees per group in selection order (before pruning)."""
    sizes = np.diff(teacher.tree_offsets)
    return int(
        sum(
            sizes[g].sum() if k >= len(g) else sizes[np.asarray(g)[o[:k]]].sum()
            for g, o in zip(groups, order, strict=True)
        )
    )


@dataclasses.dataclass(frozen=True)
class _Boxed:
    """A task argument dask must not look inside: dask before 2024.12 rebuilds list arguments
    as ``type(x)(items)``, which drops a :class:`SelectionOrder`'s ``n_trees``."""

    value: Any


def _indexed(
    i: int, plan: Plan, teacher: Forest, X_fit: Any, target: Any, judge: Any, metric: str,
    random_state: int | None, order: _Boxed,
) -> tuple[int, Candidate | None]:  # fmt: skip
    return i, build_candidate(plan, teacher, X_fit, target, judge, metric, random_state,
                              order.value)  # fmt: skip


@dataclasses.dataclass
class _Budget:
    """How candidates are proposed: the teacher's score on the judge rows and the budget."""

    judge: tuple[Any, Any, Any]  # X, y, qid of the judge rows
    metric: str
    base: float  # the teacher's metric there
    teacher_pred: NDArray[np.float64]
    max_loss: float
    random_state: int | None
    se_factor: float = 1.0  # standard errors the loss must stay clear of the budget by

    @property
    def sign(self) -> float:
        return 1.0 if HIGHER_IS_BETTER[self.metric] else -1.0

    def loss(self, c: Candidate) -> float:
        return self.sign * (self.base - c.score)

    def accepts(self, c: Candidate, task: str) -> bool:
        """Loss plus ``se_factor`` bootstrap standard errors of the paired difference within the
        budget (the error only computed where the loss alone fits): a candidate likely to pass
        certification, not yet a promise."""
        if self.loss(c) > self.max_loss:
            return False
        X, y, qid = self.judge
        c.loss_se = paired_se(task, y, qid, self.metric, self.teacher_pred,
                              fast_predict(c.forest, X), self.random_state)  # fmt: skip
        return self.loss(c) + self.se_factor * c.loss_se <= self.max_loss


@dataclasses.dataclass
class _Runner:
    """Evaluates rounds of plans in parallel (joblib) and records them, in plan order."""

    teacher: Forest
    X_fit: NDArray[np.float64]
    target: NDArray[np.float64]
    order: list[list[int]]
    budget: _Budget
    result: SearchResult
    bar: Progress
    n_jobs: int | None

    def __call__(self, plans: list[Plan]) -> list[Candidate | None]:
        self.bar.add(len(plans))
        b = self.budget
        out: list[Candidate | None] = [None] * len(plans)
        jobs = (delayed(_indexed)(i, plan, self.teacher, self.X_fit, self.target, b.judge,
                                  b.metric, b.random_state, _Boxed(self.order))
                for i, plan in enumerate(plans))  # fmt: skip
        for i, c in Parallel(n_jobs=self.n_jobs, return_as="generator_unordered")(jobs):
            out[i] = c
            if c is not None:
                c.accepted = b.accepts(c, self.teacher.task)
            self.bar.update(note=plans[i].describe())
        self.result.candidates.extend(c for c in out if c is not None)
        return out


def _bisect_trees(run: _Runner, grid: list[int]) -> None:
    """Bisect the tree grid without pruning, then for each node budget from the mildest to the
    harshest, in rounds of :data:`_PROBES` tree counts. A budget is only tried on tree counts
    the milder one passed at (pruning harder does not win back what fewer trees lost) and whose
    expected size can beat the smallest accepted candidate so far. Last, one round adds the
    :data:`_LADDER` counts above each budget's smallest passing one: larger candidates with
    room to spare, which certification can still pass when the smallest one fails there."""
    teacher, order = run.teacher, run.order
    groups = output_groups(teacher)
    sizes = [_expected_nodes(teacher, order, groups, k) for k in grid]
    hi = len(grid)  # smallest grid index known to fail, for the previous budget
    tried: set[tuple[int, float | None]] = set()
    ladder: list[tuple[int, float | None]] = []
    for f in (None, *_FRACTIONS):
        lo = 0 if f is None else -1  # largest grid index known to pass
        passed_at = -1
        while True:
            best_nodes = run.result.best_accepted_nodes()
            small = [i for i in range(hi) if (f or 1.0) * sizes[i] < best_nodes]
            lo = max(lo, (small[0] if small else hi) - 1)
            if hi - lo <= 1:
                break
            probes = _bisection_probes(lo, hi)
            tried.update((i, f) for i in probes)
            done = run([Plan(grid[i], f) for i in probes])
            passed = [i for i, c in zip(probes, done, strict=True) if c is not None and c.accepted]
            passed_at = max([passed_at, *passed])
            lo = max([lo, *passed])
            hi = min([hi, *(i for i in probes if i > lo and i not in passed)])
        first = 1 if f is None else 0  # all trees unpruned: the exact passes
        ladder += [(i, f) for i in range(max(first, passed_at - _LADDER), passed_at)]
    plans = [(i, f) for i, f in ladder if (i, f) not in tried]
    if plans:
        run([Plan(grid[i], f) for i, f in plans])


def _quantize_step(run: _Runner, best: Candidate, bits: int) -> None:
    """Quantize the best proposal's leaves (k-means codebook refit toward the teacher) and
    thresholds to ``bits`` bits; propose it too if it stays within the budget."""
    t0 = time.perf_counter()
    b, result = run.budget, run.result
    m = min(len(run.X_fit), 20_000)
    q = quantize_leaves(best.forest, bits=bits, method="kmeans", X=run.X_fit[:m],
                        y_margin=run.target[:m])  # fmt: skip
    q = quantize_thresholds(q, b.judge[0], bits=bits)
    c = Candidate(
        steps=[*best.steps, f"quantize_leaves(bits={bits})", f"quantize_thresholds(bits={bits})"],
        forest=q, score=score(q, *b.judge, b.metric), seconds=time.perf_counter() - t0,
    )  # fmt: skip
    c.accepted = b.accepts(c, run.teacher.task)
    result.candidates.append(c)


def _size(c: Candidate, objective: str) -> tuple[float, ...]:
    """What the user pays for, then nodes and bytes to break ties."""
    if c.bytes is None:
        c.bytes = len(dump_tslim_bytes(c.forest))
    first = {"nodes": c.nodes, "bytes": c.bytes, "latency": c.row_us or 0.0}[objective]
    return (float(first), float(c.nodes), float(c.bytes))


def _certify(result: SearchResult, budget: _Budget, cert: tuple[Any, Any, Any],
             teacher: Forest, objective: str, confidence: float) -> None:  # fmt: skip
    """Certify a chain of the proposals on the certification rows, fixed before they are seen
    (largest first, the proposals likelier to end it than to pay off left out), until one fails;
    return the smallest certified one (by ``objective``), else the exact passes."""
    proposed = [c for c in result.candidates[1:] if c.accepted]
    order = sequence_order([_size(c, objective) for c in proposed],
                           [budget.loss(c) for c in proposed],
                           [c.loss_se or 0.0 for c in proposed],
                           original=_size(result.candidates[0], objective)[0],
                           max_loss=budget.max_loss, confidence=confidence,
                           margin=budget.se_factor)  # fmt: skip
    chain = [proposed[i] for i in order]
    X, y, qid = cert
    certs = certify_in_sequence((fast_predict(c.forest, X) for c in chain), task=teacher.task,
                                metric=budget.metric, y=y, qid=qid, ref=fast_predict(teacher, X),
                                max_loss=budget.max_loss, confidence=confidence,
                                random_state=budget.random_state)  # fmt: skip
    for c, cert_ in zip(chain, certs, strict=False):
        c.certificate = cert_
    certified = [c for c in chain if c.certificate is not None and c.certificate.certified]
    chosen = min(certified, key=lambda c: _size(c, objective), default=result.candidates[0])
    result.forest = chosen.forest
    result.certificate = chosen.certificate


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
    confidence: float = 0.95,
    certify: float = 0.4,
    objective: str = "nodes",
    strict: bool = False,
) -> SearchResult:
    """Find the smallest forest whose loss on new data is within ``max_loss`` of ``teacher``'s
    metric with probability ``confidence``, from calibration rows ``(X, y)``.

    A share ``certify`` of the rows (whole queries for ranking) is set aside first and never seen
    while proposing candidates. Of the rest, ``holdout`` (none below 200 rows) judges the
    candidates, the others fit them (tree selection, leaf refit, generated rows).

    Proposing: tree counts on a grid (all, then / 1.6 down to 1 per output) are bisected, two
    per round, for the fewest trees that stay within budget after selection and leaf refit (the
    greedy selection order is computed once and shared). Node pruning (to 3/4, 1/2, 1/4 of the
    nodes) is bisected the same way afterwards, one budget after the other, only on tree counts
    the milder budget passed at and only where the pruned size would beat the best so far; then
    the six counts above each budget's smallest pass are added, safer proposals for when the
    smallest fails certification. With ``distill``, boosted students (10, 30, 100 trees per
    output of depth 3, 4, 6, in the teacher's library) trained on the teacher's probabilities
    (classifiers, by cross-entropy) or margins over the same rows
    (:func:`treeslim.distillation.distill_candidate`) are bisected, largest first, where they
    could be smaller (none smaller is tried when the largest fails).
    With ``bits``, the best proposal's leaves (k-means codebook refit toward the teacher) and
    thresholds are quantized to ``bits`` bits. A candidate is proposed when its loss on the
    judge rows, plus the bootstrap standard error of the paired difference scaled to the
    certification rows, fits ``max_loss``.

    Certifying: the proposals no other beats on both ``objective`` (``"nodes"``, ``"bytes"`` of
    ``.tslim``, or ``"latency"``: kernel time per row) and judged loss are tested largest first
    with a one-sided upper confidence bound of the loss on the certification rows
    (:func:`treeslim.measure.loss_bound`), stopping at the first that fails; the last certified
    one is returned, else the exact passes (identical predictions, loss 0). The returned model's
    loss on new data from the calibration rows' distribution exceeds ``max_loss`` with
    probability at most ``1 - confidence`` (rows, or queries, i.i.d.; the bootstrap bound of
    AUC / R^2 / NDCG is a large-sample approximation, the bound of accuracy is exact).
    ``result.certificate`` says what was certified, on how many rows.

    When the certification rows cannot certify ``max_loss`` at all (too few rows, queries or
    positives; :func:`treeslim.measure.smallest_budget`), nothing is searched: an
    :class:`~treeslim.errors.InsufficientDataWarning` names the smallest budget they can
    certify and the exact passes are returned (``strict=True`` raises
    :class:`~treeslim.errors.InsufficientDataError` instead). ``max_loss=0`` applies the exact
    passes only. Candidates of a round are evaluated in parallel with joblib (``n_jobs``); the
    result does not depend on the joblib backend or ``n_jobs``. ``verbose=1`` shows a progress
    bar on a terminal, ``0`` is silent.
    """
    metric = metric or default_metric(teacher.task)
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"Unknown metric {metric!r}; expected one of {sorted(HIGHER_IS_BETTER)}.")
    if max_loss < 0:
        raise ValueError(f"max_loss must be >= 0; got {max_loss}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}.")
    if not 0 < certify < 1:
        raise ValueError(f"certify must be in (0, 1); got {certify}.")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}; got {objective!r}.")
    Xall, yall = np.asarray(X, dtype=np.float64), np.asarray(y)
    if len(yall) != len(Xall):
        raise ValueError(
            f"y must have one entry per row: X has {len(Xall)} rows, y has {len(yall)}."
        )
    qall = None if qid is None else check_qid(qid, len(Xall))
    fit_idx, val_idx, cert_idx = calibration_split(len(Xall), qall, certify=certify,
                                                   holdout_fraction=holdout,
                                                   random_state=random_state)  # fmt: skip

    def part(idx: NDArray[np.intp]) -> tuple[Any, Any, Any]:
        return Xall[idx], yall[idx], None if qall is None else qall[idx]

    # candidates are fitted on one part and judged on another, so the budget is not judged on
    # the rows the leaves were refitted on; the third part is seen by none of them
    judge, cert = part(val_idx), part(cert_idx)
    teacher_pred = fast_predict(teacher, judge[0]) if len(val_idx) else np.zeros(0)
    base = (float(evaluate(teacher.task, judge[1], teacher_pred, qid=judge[2])[metric])
            if len(val_idx) else float("nan"))  # fmt: skip
    exact = exact_passes(teacher)
    result = SearchResult(forest=exact, teacher_metric=base, metric=metric)
    result.candidates.append(Candidate(["exact_passes"], exact, base, accepted=True))
    result.certificate = result.candidates[0].certificate = exact_certificate(
        metric, max_loss, confidence, cert[1], cert[2]
    )
    higher = HIGHER_IS_BETTER[metric]
    floor = smallest_budget(metric, cert[1], cert[2], confidence)
    if 0 < max_loss < floor:
        message = cannot_certify_message(max_loss, metric, confidence, len(Xall), cert[1],
                                         cert[2], "the exact passes (loss 0)")  # fmt: skip
        if strict:
            raise InsufficientDataError(message)
        warnings.warn(message, InsufficientDataWarning, stacklevel=2)
    if max_loss < floor or len(fit_idx) == 0 or len(val_idx) == 0:
        result.candidates[0].chosen = True
        annotate_front(result.candidates, Xall, higher_is_better=higher)
        return result
    bar = Progress(1, "treeslim search", verbose=verbose)
    Xf = Xall[fit_idx]
    extra = generate_rows(Xf, n_synthetic, random_state=random_state) if n_synthetic else None
    X_fit = Xf if extra is None else np.vstack([Xf, extra])
    target = KernelForest(teacher).margin(X_fit)
    grid = _tree_grid(teacher.trees_per_output)
    order = selection_order(teacher, X_fit, n_trees=grid[min(1, len(grid) - 1)],
                            target_margin=target, random_state=random_state)  # fmt: skip
    bar.update(note="tree order")
    # the standard errors a proposal keeps clear of the budget: what certification will add
    n_judge, n_cert = (len(val_idx), len(cert_idx)) if qall is None else (
        len(np.unique(judge[2])), len(np.unique(cert[2])))  # fmt: skip
    factor = proposal_margin(confidence, n_judge, n_cert)
    budget = _Budget(judge, metric, base, teacher_pred, max_loss, random_state, factor)
    run = _Runner(teacher, X_fit, target, order, budget, result, bar, n_jobs)
    _bisect_trees(run, grid)
    if distill:  # students distilled from the teacher's margins, where they could beat the best
        _bisect_students(run)
    if bits is not None:
        best = min((c for c in result.candidates if c.accepted),
                   key=lambda c: (c.nodes, -budget.sign * c.score))  # fmt: skip
        bar.add(1)
        _quantize_step(run, best, bits)
        bar.update(note=f"{bits}-bit quantization")
    annotate_front(result.candidates, judge[0], higher_is_better=higher)
    bar.add(1)
    _certify(result, budget, cert, teacher, objective, confidence)
    bar.update(note="certified")
    for c in result.candidates:
        c.chosen = c.forest is result.forest
    bar.close()
    return result
