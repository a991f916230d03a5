"""File output shared by every writer: atomic replacement, so a failed write loses nothing, and
the permissions any other file gets (the process umask), not a temporary file's 0600."""

from __future__ import annotations

import os
import tempfile
import threading

__all__ = ["write_atomic"]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    """The process umask, read without changing it where the OS says it (Linux), else by the
    classic set-and-restore under a lock."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def write_atomic(
    path: str | os.PathLike[str], payload: bytes | str, *, executable: bool = False
) -> None:
    """Write ``payload`` to ``path`` through a temporary file in the same folder and a rename.

    Either the whole new content is at ``path`` afterwards, or the old file is untouched. The file
    gets mode ``0o666`` (``0o777`` when ``executable``, e.g. a shared library) less the umask, as
    ``open()`` would give it.
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
            os.fchmod(fh.fileno(), (0o777 if executable else 0o666) & ~_umask())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
