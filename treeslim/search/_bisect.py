"""Bisection over candidate sizes for the search (:mod:`treeslim.search._search`): the probes of
a round, and the distilled students tried largest first."""

from __future__ import annotations

from typing import Any

from treeslim.ir import Forest
from treeslim.search._candidate import Plan

__all__: list[str] = []

_STUDENT_TREES = (10, 30, 100)  # distilled students: trees per output ...
_STUDENT_DEPTHS = (3, 4, 6)  # ... and their depth
_PROBES = 2  # tree counts tried per bisection round: fixed, so the search never depends on n_jobs


def _bisection_probes(lo: int, hi: int) -> list[int]:
    """Grid indices to try next when ``lo`` is known to pass and ``hi`` to fail."""
    return sorted({lo + max(1, round(j * (hi - lo) / (_PROBES + 1))) for j in range(1, _PROBES + 1)}
                  - {hi})  # fmt: skip


def _student_nodes(teacher: Forest, trees: int, depth: int) -> int:
    """Nodes of a full distilled student of ``trees`` per output at ``depth``."""
    width = teacher.n_outputs if teacher.leaf_width == 1 else 1
    return width * trees * (2 ** (depth + 1) - 1)


def _student_plans(teacher: Forest, best_nodes: int) -> list[Plan]:
    """Distilled students that could be smaller than ``best_nodes``, largest first."""
    plans = [(_student_nodes(teacher, n, d), Plan(n, None, d))
             for d in _STUDENT_DEPTHS for n in _STUDENT_TREES
             if d <= teacher.max_depth and _student_nodes(teacher, n, d) < best_nodes]  # fmt: skip
    return [p for _, p in sorted(plans, key=lambda sp: -sp[0])]


def _bisect_students(run: Any) -> None:
    """Bisect the distilled students, largest first, for the smallest accepted one: the first
    round tries the largest and a middle one, and when the largest fails no smaller one is
    tried (a smaller student is taken to fit the teacher no better). ``run`` is the search's
    runner: it evaluates a round of plans and records them in ``run.result``."""
    plans = _student_plans(run.teacher, run.result.best_accepted_nodes())
    lo, hi = -1, len(plans)  # largest index known to pass, smallest known to fail
    while hi - lo > 1:
        probes = sorted({0, hi // 2} - {hi}) if lo < 0 else _bisection_probes(lo, hi)
        done = run([plans[i] for i in probes])
        passed = [i for i, c in zip(probes, done, strict=True) if c is not None and c.accepted]
        if lo < 0 and 0 not in passed:
            break
        lo = max([lo, *passed])
        hi = min([hi, *(i for i in probes if i > lo and i not in passed)])
