"""Class labels to class indices, the one way every estimator, trainer and metric does it."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["class_codes"]


def class_codes(classes: Any, y: Any, *, owner: str = "the model") -> NDArray[np.intp]:
    """Index of each label of ``y`` in the sorted array ``classes``.

    A label not in ``classes`` raises ``ValueError`` naming ``owner`` and its classes.

    Examples
    --------
    >>> class_codes(["a", "b", "c"], ["c", "a"]).tolist()
    [2, 0]
    """
    classes, y = np.asarray(classes), np.asarray(y)
    codes = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    if np.any(classes[codes] != y):
        raise ValueError(f"y has labels {owner} does not know (its classes: {list(classes)}).")
    return codes
