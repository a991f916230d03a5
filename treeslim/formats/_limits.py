"""Bounds on the header counts of a model file that its trees do not need.

A reader takes the trees' own arrays from the bytes it was given, so their sizes are bounded by
the file. A header count the trees do not use (the feature count beyond the highest split
feature) is not: a file whose trees split on six features can claim 200,000,001, and everything
downstream (predicting, compiling, the single-row buffers of a compiled model) then pays per
feature. Readers check such counts against what the file holds (feature names, trees) and refuse
more than :data:`MAX_UNUSED_FEATURES` features beyond the highest one the trees split on.
"""

from __future__ import annotations

from treeslim.errors import ModelFormatError

__all__ = ["MAX_UNUSED_FEATURES", "check_feature_count"]

#: Most features a model may declare beyond the highest feature its trees split on.
MAX_UNUSED_FEATURES = 2**20


def check_feature_count(num_feature: int, n_used: int, *, field: str, where: str) -> None:
    """Refuse a feature count the trees cannot use, naming the header ``field`` at fault.

    Parameters
    ----------
    num_feature : int
        The feature count the header declares.
    n_used : int
        One more than the highest feature the trees split on (0 for trees without splits).
    field : str
        The header field, as the file spells it (``"max_feature_idx"``, ``"num_feature"``).
    where : str
        What is being read, for the message (``"LightGBM model text"``).

    Raises
    ------
    ModelFormatError
        When ``num_feature < n_used`` or ``num_feature > n_used + MAX_UNUSED_FEATURES``.

    Examples
    --------
    >>> check_feature_count(10, 6, field="num_feature", where="model")
    >>> check_feature_count(200_000_001, 6, field="num_feature", where="model")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    treeslim.errors.ModelFormatError: model: num_feature declares 200,000,001 features, but ...
    """
    if num_feature < n_used:
        raise ModelFormatError(
            f"{where}: {field} declares {num_feature:,} features, but the trees split on feature"
            f" {n_used - 1}."
        )
    if num_feature - n_used > MAX_UNUSED_FEATURES:
        raise ModelFormatError(
            f"{where}: {field} declares {num_feature:,} features, but the trees split on none"
            f" beyond feature {n_used - 1}; more than {MAX_UNUSED_FEATURES:,} unused features is"
            " taken for a corrupt header (every prediction and compiled model would pay for them)."
        )
