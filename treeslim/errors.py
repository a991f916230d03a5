"""The one exception hierarchy of treeslim.

Every error treeslim raises on purpose derives from :class:`TreeSlimError`; each subclass also
derives from the matching built-in so that ``except ValueError`` keeps working for callers who do
not know treeslim.
"""

from __future__ import annotations

__all__ = [
    "InsufficientDataError",
    "InsufficientDataWarning",
    "InvalidForestError",
    "MissingDependencyError",
    "ModelFormatError",
    "TreeSlimError",
    "UnsupportedModelError",
]


class TreeSlimError(Exception):
    """Base class of every error treeslim raises on purpose."""


class UnsupportedModelError(TreeSlimError, NotImplementedError):
    """The model uses something treeslim's IR cannot hold (the message says what, and what to do)."""


class InvalidForestError(TreeSlimError, ValueError):
    """A :class:`~treeslim.Forest` breaks one of its invariants (the message names tree and node)."""


class ModelFormatError(TreeSlimError, ValueError):
    """A model file or serialized model is corrupt, truncated or not of the expected format."""


class MissingDependencyError(TreeSlimError, ImportError):
    """An optional dependency is needed for this call; the message names the package to install."""


class InsufficientDataError(TreeSlimError, ValueError):
    """The calibration data cannot certify the loss budget asked for (``strict=True``); the
    message names the smallest budget these rows can certify."""


class InsufficientDataWarning(UserWarning):
    """The calibration data cannot certify the loss budget asked for; only what these rows can
    certify is returned (at worst the exact passes). The message names the smallest budget."""
