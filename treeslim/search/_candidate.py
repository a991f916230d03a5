"""The records the search passes between its parts: a :class:`Plan` (what to try) and a
:class:`Candidate` (what it gave), and :func:`build_candidate`, which turns one into the other.

A candidate is one pipeline on the teacher: keep ``n_trees`` trees per output (greedy selection
toward the teacher's margins), prune nodes to ``node_fraction`` of them, refit the leaves toward
the teacher, then the exact passes; or, with ``depth``, a boosted student of ``n_trees`` trees of
that depth distilled from the teacher on the same rows, by cross-entropy on its probabilities for
classifiers (what :func:`treeslim.distill` fits with; it beat least squares on the margins by
0.003-0.008 AUC for 10 trees of depth 3 and by 0.02-0.04 accuracy on 26-class letter, and was
within +-0.002 for larger binary students), by least squares on its margins otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.distillation import distill_candidate
from treeslim.ir import Forest
from treeslim.measure import Certificate, evaluate
from treeslim.passes import exact_passes, prune_nodes, refit_leaves, select_trees
from treeslim.runtime import fast_predict

__all__ = ["Candidate", "Plan", "build_candidate", "score"]

# Conjugate gradient iterations of the leaf refit. Measured on the letter, california and bike
# boosters: 25 instead of refit_leaves' 100 leave the judged metric unchanged to +-0.001 (the
# margins fit the teacher a little less tightly on the fitting rows, which overfits less) at a
# quarter of the cost, which was the largest part of a candidate on multiclass forests.
_REFIT_CG = 25


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one candidate tries: trees per output, the node budget inside them, and for a
    distilled student its depth (``None``: select and prune the teacher's own trees)."""

    n_trees: int
    node_fraction: float | None = None
    depth: int | None = None

    def describe(self) -> str:
        """A short label for progress bars."""
        return (
            f"{self.n_trees} trees"
            + (f" x{self.node_fraction}" if self.node_fraction else "")
            + (f" depth {self.depth} (distilled)" if self.depth else "")
        )


@dataclasses.dataclass
class Candidate:
    """One model the search measured.

    ``score`` is the metric on the judge rows; ``accepted`` whether it fits the budget there
    (with ``loss_se`` the standard error that decided it), which proposes it for certification;
    ``certificate`` is what the certification rows said, for the candidates the fixed-sequence
    test reached (:func:`treeslim.measure.certify_in_sequence`); ``row_us``, ``bytes``,
    ``pareto`` and ``chosen`` are filled in at the end. Fields read as keys too (``c["nodes"]``), as the candidate dicts of
    earlier versions did.
    """

    steps: list[str]
    forest: Forest
    score: float
    seconds: float = 0.0
    accepted: bool = False
    loss_se: float | None = None
    row_us: float | None = None
    pareto: bool = False
    chosen: bool = False
    certificate: Certificate | None = None
    bytes: int | None = None

    @property
    def trees(self) -> int:
        """Trees of the candidate's forest."""
        return self.forest.n_trees

    @property
    def nodes(self) -> int:
        """Nodes of the candidate's forest."""
        return self.forest.n_nodes

    def __getitem__(self, key: str) -> Any:
        if key not in _KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """``self[key]`` when ``key`` is a field, else ``default``."""
        return getattr(self, key) if key in _KEYS else default


_KEYS = frozenset({f.name for f in dataclasses.fields(Candidate)} | {"trees", "nodes"})


def score(forest: Forest, X: Any, y: Any, qid: Any, metric: str) -> float:
    """``metric`` of ``forest`` on ``(X, y)`` (queries ``qid`` for ranking)."""
    return float(evaluate(forest.task, y, fast_predict(forest, X), qid=qid)[metric])


def build_candidate(
    plan: Plan,
    teacher: Forest,
    X_fit: NDArray[np.float64],
    target: NDArray[np.float64],
    judge: tuple[Any, Any, Any],
    metric: str,
    random_state: int | None,
    order: list[list[int]] | None = None,
) -> Candidate | None:
    """Run ``plan`` on ``teacher`` (fitted on ``X_fit`` toward the margins ``target``) and score
    it on ``judge = (X, y, qid)``; None when the node budget cannot be met."""
    t0 = time.perf_counter()
    steps = []
    forest = teacher
    if plan.depth is not None:
        forest = distill_candidate(teacher, X_fit, target, n_trees=plan.n_trees,
                                   depth=plan.depth, loss="auto",
                                   random_state=random_state)  # fmt: skip
        steps.append(f"distill(n_trees={plan.n_trees}, depth={plan.depth})")
    elif plan.n_trees < teacher.trees_per_output:
        forest = select_trees(forest, X_fit, n_trees=plan.n_trees, target_margin=target,
                              random_state=random_state, order=order)  # fmt: skip
        steps.append(f"select_trees(n_trees={plan.n_trees})")
    if plan.node_fraction is not None:
        if math.ceil(plan.node_fraction * forest.n_nodes) < forest.n_trees:
            return None  # every tree keeps its root: this budget cannot be met
        forest = prune_nodes(forest, X_fit, target_margin=target, fraction=plan.node_fraction)
        steps.append(f"prune_nodes(fraction={plan.node_fraction})")
    if steps and plan.depth is None:
        forest = refit_leaves(forest, X_fit, target_margin=target, max_cg=_REFIT_CG)
        steps.append("refit_leaves(target=teacher)")
    forest = exact_passes(forest)
    steps.append("exact_passes")
    return Candidate(steps=steps, forest=forest, score=score(forest, *judge, metric),
                     seconds=time.perf_counter() - t0)  # fmt: skip
