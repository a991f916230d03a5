"""A one-line progress bar for long steps (compression search, distillation, compile).

It draws on standard error, only when that is a terminal (``verbose=1``, the default) or when
asked to always draw (``verbose>=2``); ``verbose=0`` is silent. No dependency: the bar is one
``\\r``-rewritten line, redrawn at most ten times a second, and a final newline on close.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

__all__ = ["Progress"]


class Progress:
    """Count done steps of ``total`` and show them as ``desc [####----] done/total elapsed note``.

    Examples
    --------
    >>> with Progress(3, "search", verbose=0) as bar:
    ...     for _ in range(3):
    ...         bar.update(note="ok")
    >>> bar.done
    3
    """

    def __init__(
        self, total: int, desc: str, *, verbose: int = 1, stream: IO[str] | None = None
    ) -> None:
        self.total = int(total)
        self.desc = desc
        self.done = 0
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = verbose >= 2 or (verbose >= 1 and bool(isatty()))
        self._start = time.perf_counter()
        self._last = 0.0
        self._note = ""
        self._lock = threading.Lock()  # compile updates from its build threads

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def add(self, n: int) -> None:
        """``n`` more steps to do (a search that decides its next round as it goes)."""
        self.total += int(n)
        self._draw()

    def update(self, n: int = 1, *, note: str | None = None) -> None:
        """``n`` more steps done; ``note`` replaces the text after the counter."""
        with self._lock:
            self.done += int(n)
            if note is not None:
                self._note = note
            self._draw(force=self.done >= self.total)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        width = 24
        filled = width * self.done // max(self.total, 1)
        secs = int(now - self._start)
        line = (
            f"\r{self.desc} [{'#' * filled}{'-' * (width - filled)}] {self.done}/{self.total}"
            f" {secs // 60:02d}:{secs % 60:02d} {self._note}"
        )
        self.stream.write(line[:160].ljust(80))
        self.stream.flush()

    def close(self) -> None:
        """Draw the final state and end the line."""
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False
