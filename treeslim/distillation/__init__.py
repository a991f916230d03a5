"""Distillation: a small student (fewer, shallower trees; one tree; a small MLP) trained on a
teacher's soft targets over calibration plus generated rows with its task's loss, its settings
chosen on held-out rows against plain training on the labels, then imported back as a Forest."""

from __future__ import annotations

from treeslim.distillation._distill import distill, distill_candidate
from treeslim.distillation._soft import SoftTargets
from treeslim.distillation._students import fit_student, parse_student, student_kind
from treeslim.distillation._training import training_set

__all__ = [
    "SoftTargets",
    "distill",
    "distill_candidate",
    "fit_student",
    "parse_student",
    "student_kind",
    "training_set",
]
