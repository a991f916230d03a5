"""treeslim's version, in one place (compiled libraries record it in their model info)."""

from __future__ import annotations

__all__ = ["VERSION"]

VERSION = "0.1.0"
