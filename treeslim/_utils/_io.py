"""File output shared by every writer: atomic replacement, so a failed write loses nothing."""

from __future__ import annotations

import os
import tempfile

__all__ = ["write_atomic"]


def write_atomic(path: str | os.PathLike[str], payload: bytes | str) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and a rename.

    Either the whole new content is at ``path`` afterwards, or the old file is untouched.
    """
    path = os.fspath(path)
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".treeslim-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
