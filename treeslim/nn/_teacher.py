"""What a teacher says about rows: margins (and the last hidden layer, for an MLP teacher) of any
fitted model, the targets fine-tuning and distillation train toward."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.frontends import from_model
from treeslim.nn._sklearn import from_sklearn

__all__ = ["teacher_margins"]

Arr = NDArray[np.float64]


def teacher_margins(teacher: Any, X: Arr) -> tuple[str, Arr, Any, Arr | None]:
    """(task, margins of shape (n, k), class labels or None, last hidden layer or None)."""
    try:
        mlp = from_sklearn(teacher)
    except Exception:  # not an MLP: any model treeslim or scikit-learn can score
        mlp = None
    if mlp is not None:
        outs = mlp.forward(X)
        return mlp.task, outs[-1], mlp.classes, outs[-2] if len(mlp.layers) > 1 else None
    if hasattr(teacher, "predict_proba"):
        p = np.asarray(teacher.predict_proba(X), dtype=np.float64)
        classes = getattr(teacher, "classes_", None)
        task = "binary" if p.shape[1] == 2 else "multiclass"
    else:
        forest = from_model(teacher)
        p = np.asarray(forest.predict(X), dtype=np.float64)
        task = "regression" if forest.task in ("regression", "ranking") else forest.task
        classes = None
        if task == "regression":
            return task, p.reshape(len(p), -1), None, None
        if p.ndim == 1:
            p = np.column_stack([1 - p, p])
    p = np.clip(p, 1e-7, 1 - 1e-7)
    if task == "binary":
        return task, np.log(p[:, 1:] / p[:, :1]), classes, None
    return task, np.log(p), classes, None
