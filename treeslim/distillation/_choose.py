"""Choosing distillation settings on held-out rows of the data :func:`treeslim.distill` is given.

Distilling does not always beat training the same student on the labels: with as many labelled
rows as the teacher had, a booster that can learn the function from the labels gains little
from soft targets and can lose to generated rows off the data's support. So every setting
:func:`treeslim.distill` leaves at ``"auto"`` is chosen by the student's metric on held-out rows
(five folds up to 2,000 rows, three up to 20,000, else one 20% holdout; whole queries for
ranking; closeness to the teacher when there are no labels), among candidates that always
include plain training on the labels. The search is greedy, a stage at a time, and a step is
taken only when it pays: by more than ``TOL`` on the metric and more than the standard error of
the paired per-fold differences (the noise of the held-out rows):

1. the loss (least squares on soft targets, cross-entropy, pairwise ranking; see
   :mod:`treeslim.distillation._losses`) and the blend ``alpha`` of true labels (0, 0.5), real
   rows only; and the student trained on the labels alone;
2. temperature 2 and 0.5 for classifiers (for regression and ranking it only rescales);
3. generated rows by MUNGE, leaf-box sampling and jitter, sized by the student's capacity (about
   ten rows per leaf or weight, at least as many as real rows and at least 10,000 within 20 per
   real row: with fewer, a small student's fit to the teacher depends on where the few rows
   fall; a 10x7 booster on 1,000 rows of bike_sharing gained -0.015 R^2 over plain training on
   average over six draws with 1,000 generated rows, +0.013 with 10,000), from the best setting
   so far and from the best without labels mixed in; then three times that many rows when they
   pay;
4. plain training on the labels is kept unless the distilled setting beats it the same way, and
   then again on another partition of the rows, of ten folds up to 20,000 rows (else another
   20% holdout), where its gain must be above 0 with 95% confidence by the corrected resampled
   t-test (:func:`confirm_gain`) and above ``TOL``. The best of a dozen candidates looks better
   on the rows that picked it than it is, and with three folds each fit has two thirds of the
   rows, where soft targets help more than with all of them (plain training gains more from
   more rows): the second look is not biased by the pick, and its fits have 90% of the rows.
   For a teacher trained on many more rows than it is given (1,000 rows of its 24,000) soft
   targets carry what the rows lack, so the distilled winner replaces plain training whenever
   its held-out mean is higher by more than ``TOL``, with neither the noise margin nor the
   second look: ten folds of 100 rows (or of two or three queries) were measured too noisy to
   confirm its gains (three wins of +0.014 to +0.041 in the distillation benchmark became
   ties), and the margin alone kept plain training for a 255-leaf tree and an MLP on 1,000 rows
   of two ranking sets (50 and 6 queries) where the distilled settings tried scored +0.015 to
   +0.076 NDCG@10 over plain training on the test split (tree) and -0.008 to +0.040 (MLP);
5. for a boosting estimator left at its library's defaults, a larger (XGBoost: smaller)
   learning rate and half the boosting rounds.

When the teacher can be refitted, the folds are cross-fitted: each fold's fitting rows are
labelled by a teacher fitted on them alone, so the held-out rows are new to the teacher that
guided the student (:mod:`treeslim.distillation._crossfit`). The winner is distilled from scratch
on all the rows with the real teacher; every fit uses the same seed, so the search is
deterministic given ``random_state``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.distillation._losses import fit_labels, fit_soft, losses_for, soft_kind
from treeslim.distillation._students import student_kind
from treeslim.distillation._training import training_set
from treeslim.ir import Forest
from treeslim.measure import HIGHER_IS_BETTER, default_metric, evaluate

__all__ = [
    "CONFIRM_CONFIDENCE",
    "CONFIRM_FOLDS",
    "TOL",
    "Fold",
    "Setting",
    "beats",
    "capacity",
    "choose_setting",
    "fit_setting",
    "held_out_folds",
]

TOL = 1e-3  # a step must raise the held-out metric by more than this to be taken
CONFIRM_FOLDS = 10  # folds of the second look at distilled vs plain training (up to 20,000 rows)
CONFIRM_CONFIDENCE = 0.95  # one-sided confidence that the second look's gain is above 0
_AUGMENTS = ("munge", "leaf-box", "jitter")
_MAX_SYNTHETIC = 200_000
_MIN_SYNTHETIC = 10_000  # generated rows tried first, at least (at most 20 per real row)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One candidate: the loss ("labels": plain training on ``y``), label blend, temperature,
    generated rows per real row and how they are made, and student parameters changed."""

    loss: str
    alpha: float = 0.0
    temperature: float = 1.0
    augment: str = "none"
    ratio: float = 0.0
    params: tuple[tuple[str, Any], ...] = ()

    def n_synthetic(self, n: int) -> int:
        """Generated rows for ``n`` real rows."""
        return int(min(_MAX_SYNTHETIC, round(self.ratio * n)))

    def describe(self, n: int) -> dict[str, Any]:
        """The setting as a JSON-able dict, with the generated rows for ``n`` real rows."""
        plain = self.loss == "labels"
        return {
            "loss": self.loss,
            "alpha": 1.0 if plain else self.alpha,
            "temperature": self.temperature,
            "augment": self.augment if self.ratio > 0 else "none",
            "n_synthetic": self.n_synthetic(n),
            "student_params": dict(self.params),
        }


def capacity(student: Any, n_outputs: int) -> int:
    """About how many leaves (trees) or weights (MLP) ``student`` has."""
    p = student.get_params(deep=False)
    package, reg = student_kind(student)

    def get(key: str, default: int) -> int:
        value = p.get(key)
        return int(value) if isinstance(value, (int, np.integer)) and value > 0 else default

    if reg == "MLPRegressor":
        return int(sum(p.get("hidden_layer_sizes") or (100,)) * 16 * n_outputs)
    if package == "lightgbm":
        return get("n_estimators", 100) * get("num_leaves", 31) * n_outputs
    if package == "xgboost":
        leaves = get("max_leaves", 2 ** min(get("max_depth", 6), 12))
        return get("n_estimators", 100) * leaves * n_outputs
    leaves = get("max_leaf_nodes", 2 ** min(get("max_depth", 12), 12))
    rounds = get("max_iter", get("n_estimators", 1))
    return rounds * leaves * (n_outputs if "Boosting" in reg else 1)


def _tunable(student: Any) -> list[tuple[str, Any]]:
    """(parameter, value to try) for boosting parameters the user left at their defaults."""
    p = student.get_params(deep=False)
    defaults = type(student)().get_params(deep=False)
    out: list[tuple[str, Any]] = []
    package, _ = student_kind(student)
    boosting = package != "sklearn" or "Boosting" in type(student).__name__
    if boosting and "learning_rate" in p and p["learning_rate"] == defaults["learning_rate"]:
        out.append(("learning_rate", 0.1 if package == "xgboost" else 0.3))
    for key in ("n_estimators", "max_iter"):
        if boosting and key in p and p[key] == defaults[key]:
            out.append((key, max(1, int(p[key] or 100) // 2)))
    return out


def fit_setting(
    teacher: Forest, student: Any, X: Any, y: Any, qid: Any, setting: Setting, seed: int
) -> Any | None:
    """The student fitted with ``setting`` on real rows ``X`` (None if it cannot be fitted)."""
    if setting.params:
        student = student.__class__(**{**student.get_params(deep=False), **dict(setting.params)})
    if setting.loss == "labels":
        return fit_labels(teacher, student, np.asarray(X), y, qid, seed)
    n = X.shape[0]
    rows, U, q_all = training_set(
        teacher, X, y if setting.alpha > 0 else None, n_synthetic=setting.n_synthetic(n),
        augment=setting.augment, temperature=setting.temperature, alpha=setting.alpha, qid=qid,
        random_state=seed,
    )  # fmt: skip
    return fit_soft(teacher, student, rows, U, loss=setting.loss, temperature=setting.temperature,
                    seed=seed, qid=q_all).model  # fmt: skip


Fold = tuple[NDArray[np.intp], NDArray[np.intp]]


def held_out_folds(
    n: int, qid: Any, seed: int, repeat: int = 0, k: int | None = None
) -> list[Fold]:
    """(fitting rows, held-out rows) of each of ``k`` folds, by default five folds up to 2,000
    rows, three up to 20,000, else one 20% holdout (``k=1``); whole queries with ``qid`` (at
    most one fold per query). ``repeat`` > 0 draws another partition of the same rows."""
    rng = np.random.default_rng([seed, 18] if repeat == 0 else [seed, 18, repeat])
    units = np.unique(qid) if qid is not None else np.arange(n)
    perm = rng.permutation(len(units))
    if k is None:
        k = 5 if n <= 2000 else 3 if n <= 20000 else 1
    k = max(1, min(k, len(units)))
    parts = np.array_split(perm, k) if k > 1 else [perm[: max(1, len(perm) // 5)]]
    out = []
    for part in parts:
        held = np.isin(qid, units[part]) if qid is not None else np.isin(np.arange(n), part)
        out.append((np.flatnonzero(~held), np.flatnonzero(held)))
    return out


def beats(top: NDArray[np.float64], incumbent: NDArray[np.float64], *, margin: bool) -> bool:
    """Whether per-fold held-out scores ``top`` beat ``incumbent``'s: a mean gain above
    ``TOL`` and, with ``margin``, above the standard error of the paired per-fold differences
    (a fold where either cannot be scored leaves the means to decide, gain above 0)."""
    d = top - incumbent
    if not np.all(np.isfinite(d)):
        return bool(np.mean(top) - np.mean(incumbent) > 0)
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 and margin else 0.0
    return float(np.mean(d)) > max(TOL, se)


def confirm_gain(d: NDArray[np.float64], folds: list[Fold]) -> dict[str, Any]:
    """Step 4's rule: the per-fold gains ``d`` of the distilled winner over plain training on
    the second partition's ``folds`` keep it only when their mean exceeds ``TOL`` and the
    one-sided lower confidence bound at ``CONFIRM_CONFIDENCE`` of the expected gain is above 0,
    by the corrected resampled t-test (Nadeau and Bengio, 2003): cross-validation folds share
    fitting rows, so their differences are correlated and the plain standard error understates
    the noise; the variance is scaled by ``1/k + n_held/n_fit`` instead of ``1/k`` and the
    quantile is Student's t with ``k - 1`` degrees of freedom. With one fold (over 20,000 rows)
    there is no spread to bound, and the mean must exceed ``TOL``."""
    from scipy.stats import t as student_t

    k = len(d)
    gain = float(np.mean(d)) if k else -np.inf
    if k < 2 or not np.all(np.isfinite(d)):
        return {"gain": gain, "se": 0.0, "lower_bound": gain, "kept": bool(gain > TOL)}
    ratio = float(np.mean([len(v) / max(1, len(f)) for f, v in folds]))
    se = float(np.sqrt((1.0 / k + ratio) * np.var(d, ddof=1)))
    lower = gain - float(student_t.ppf(CONFIRM_CONFIDENCE, k - 1)) * se
    return {"gain": gain, "se": se, "lower_bound": lower, "kept": bool(gain > TOL and lower > 0)}


def _score(model: Any, teacher: Forest, X: Any, y: Any, qid: Any, metric: str) -> float:
    if model is None:
        return -np.inf
    if not isinstance(model, Forest):  # an MLP: missing values at the mean, as in training
        X = np.where(np.isnan(X), np.nanmean(X, axis=0), X) if np.isnan(X).any() else X
    if y is not None:
        value = evaluate(teacher.task, y, model.predict(X), qid=qid)[metric]
        value = value if HIGHER_IS_BETTER[metric] else -value
    else:  # no labels: closeness to the teacher's margins (centred per row or query)
        a = np.asarray(model.predict_margin(X), dtype=np.float64).reshape(len(X), -1)
        b = teacher.predict_margin(X).reshape(len(X), -1)
        if soft_kind(teacher) in ("softmax", "ranking"):
            a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
        if qid is not None:
            code = np.unique(qid, return_inverse=True)[1].ravel()
            size = np.bincount(code)
            a = a - (np.bincount(code, a[:, 0]) / size)[code][:, None]
            b = b - (np.bincount(code, b[:, 0]) / size)[code][:, None]
        value = -float(np.mean((a - b) ** 2))
    return float(value) if np.isfinite(value) else -np.inf


def choose_setting(
    teacher: Forest,
    student: Any,
    X: NDArray[Any],
    y: NDArray[Any] | None,
    qid: NDArray[Any] | None,
    *,
    fixed: dict[str, Any],
    seed: int,
    refit: Callable[[list[Fold]], list[Forest] | None] | None = None,
    teacher_knows_more: bool = False,
) -> tuple[Setting, list[dict[str, Any]], dict[str, Any]]:
    """The best setting on held-out rows, every candidate measured (dicts with ``score``) and
    how the choice was made (``selection``, ``teacher_refits``, ``confirmation``).

    ``fixed`` holds the settings the caller gave (``loss``, ``alpha``, ``temperature``,
    ``augment``, ``n_synthetic``); the others are searched (see the module docstring).
    ``refit``, given folds, returns one teacher per fold fitted without its held-out rows, which
    labels the fitting rows of its fold instead of ``teacher`` (cross-fitting, see
    :mod:`treeslim.distillation._crossfit`), or None when it cannot (then ``teacher`` does).
    ``teacher_knows_more``: the teacher was trained on many more rows than ``X`` holds; then a
    distilled winner replaces plain training when it scores higher on the held-out rows, with
    no noise margin and no second partition (step 4 of the module docstring).
    """
    n = len(X)
    metric = default_metric(teacher.task)
    first = held_out_folds(n, qid, seed)
    guides = refit(first) if refit is not None else None
    crossfit = guides is not None
    partitions: list[tuple[list[Fold], list[Forest]]] = [
        (first, guides if guides is not None else [teacher] * len(first))
    ]
    refits = len(first) if crossfit else 0

    def partition(r: int) -> tuple[list[Fold], list[Forest]] | None:
        """Partition ``r`` of the rows (0: the search's; 1: the confirmation's), None when its
        cross-fitted teachers cannot be made."""
        nonlocal refits
        if r == len(partitions):
            folds = held_out_folds(n, qid, seed, repeat=r, k=CONFIRM_FOLDS if n <= 20000 else 1)
            more = refit(folds) if crossfit and refit is not None else [teacher] * len(folds)
            if more is None:
                return None
            refits += len(folds) if crossfit else 0
            partitions.append((folds, more))
        return partitions[r]

    tried: dict[tuple[Setting, int], NDArray[np.float64]] = {}

    def part(a: Any, idx: NDArray[np.intp]) -> Any:
        return None if a is None else a[idx]

    def scores(s: Setting, r: int = 0) -> NDArray[np.float64]:
        if (s, r) not in tried:
            got = partition(r)
            assert got is not None
            folds, guides = got
            tried[s, r] = np.array([
                _score(fit_setting(guide, student, X[f], part(y, f), part(qid, f), s, seed),
                       teacher, X[v], part(y, v), part(qid, v), metric)
                for (f, v), guide in zip(folds, guides, strict=True)
            ])  # fmt: skip
        return tried[s, r]

    def trial(s: Setting, r: int = 0) -> float:
        return float(np.mean(scores(s, r)))

    def best(options: list[Setting], incumbent: Setting, margin: bool = True) -> Setting:
        """The best of ``options``; it replaces ``incumbent`` only when it pays."""
        if not options:
            return incumbent
        top = max(options, key=trial)
        return top if beats(scores(top), scores(incumbent), margin=margin) else incumbent

    def replace(s: Setting, **kw: Any) -> Setting:
        return dataclasses.replace(s, **kw)

    fixed_ratio = None if fixed["n_synthetic"] is None else fixed["n_synthetic"] / n
    base_aug = fixed["augment"] or ("munge" if fixed_ratio else "none")
    losses = [fixed["loss"]] if fixed["loss"] else list(losses_for(teacher, student))
    alphas = [fixed["alpha"]] if fixed["alpha"] is not None else (
        [0.0, 0.5] if y is not None else [0.0])  # fmt: skip
    T0 = fixed["temperature"] or 1.0
    soft = [Setting(loss, a, T0, base_aug, fixed_ratio or 0.0) for loss in losses for a in alphas]
    chosen = max(soft, key=trial)
    if fixed["temperature"] is None and soft_kind(teacher) in ("sigmoid", "softmax"):
        chosen = best([replace(chosen, temperature=t) for t in (2.0, 0.5)], chosen)
    stages: list[Callable[[Setting], list[Setting]]] = []
    if fixed_ratio is None or fixed["augment"] is None:
        rows = max(10 * capacity(student, teacher.n_outputs), _MIN_SYNTHETIC)
        r1 = float(np.clip(rows / n, 1.0, 20.0))
        ratios = [fixed_ratio] if fixed_ratio is not None else [r1]
        augs = [fixed["augment"]] if fixed["augment"] else list(_AUGMENTS)
        stages.append(lambda s: [replace(s, augment=a, ratio=r) for a in augs for r in ratios])
        if fixed_ratio is None:
            stages.append(lambda s: [replace(s, ratio=3 * s.ratio)] if s.ratio > 0 else [])
    # generated rows are tried from the best setting and from the best without labels mixed in
    # (labels are what generated rows cannot carry, so the two can swap places)
    starts = list(dict.fromkeys([chosen, max((s for s in soft if s.alpha == 0), key=trial,
                                             default=chosen)]))  # fmt: skip
    for stage in stages:
        chosen = best([o for s in starts for o in stage(s)], chosen)
        starts = [chosen]
    confirmation: dict[str, Any] | None = None
    if y is not None and fixed["alpha"] is None and fixed["loss"] is None:
        labels = Setting("labels")
        chosen = best([chosen], labels, margin=not teacher_knows_more)
        if not teacher_knows_more and chosen != labels and partition(1) is not None:
            # the winner of many candidates looks better on the rows that picked it than it is:
            # it must beat plain training again on another partition of the rows
            confirmation = confirm_gain(scores(chosen, 1) - scores(labels, 1), partitions[1][0])
            chosen = chosen if confirmation["kept"] else labels
    for key, value in _tunable(student):
        chosen = best([replace(chosen, params=(*chosen.params, (key, value)))], chosen)
    table = [{**s.describe(n), "score": float(np.mean(v))} for (s, r), v in tried.items()
             if r == 0]  # fmt: skip
    info = {"selection": "crossfit" if crossfit else "holdout", "teacher_refits": refits,
            "confirmation": confirmation}  # fmt: skip
    return chosen, table, info
