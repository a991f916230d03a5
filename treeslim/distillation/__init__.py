"""Distillation: a small student (fewer, shallower trees; one tree; a small MLP) trained on a
teacher's soft targets over calibration plus generated rows, then imported back as a Forest."""

from __future__ import annotations

from treeslim.distillation._distill import distill, distill_candidate, training_set
from treeslim.distillation._soft import SoftTargets
from treeslim.distillation._students import fit_student, parse_student, student_kind

__all__ = [
    "SoftTargets",
    "distill",
    "distill_candidate",
    "fit_student",
    "parse_student",
    "student_kind",
    "training_set",
]
