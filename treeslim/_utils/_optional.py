"""Optional dependencies: import one by name, or say which extra to install."""

from __future__ import annotations

import importlib

from treeslim.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str) -> object:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingDependencyError(
            f"This needs the optional package {module!r}: pip install 'treeslim[{extra}]'"
            f" (or pip install {module})."
        ) from exc
