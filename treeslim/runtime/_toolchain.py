"""The C toolchain: find a compiler, run it with errors that say what to install, and the cache
folder where built libraries live."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path

from treeslim.errors import TreeSlimError

__all__ = [
    "CompilerError",
    "cache_dir",
    "find_compiler",
    "machine_tag",
    "run_compiler",
]


class CompilerError(TreeSlimError, RuntimeError):
    """No working C compiler, or a build failed (the message says what to install or fix)."""


def cache_dir() -> Path:
    """Where compiled libraries are cached: ``$TREESLIM_CACHE_DIR`` or ``~/.cache/treeslim``."""
    root = os.environ.get("TREESLIM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "treeslim"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def find_compiler() -> str:
    """The C compiler to use: ``$CC``, else gcc, else cc; :class:`CompilerError` if none."""
    for cand in (os.environ.get("CC"), "gcc", "cc", "clang"):
        if cand and shutil.which(cand):
            return cand
    raise CompilerError(
        "No C compiler found (tried $CC, gcc, cc, clang). Install one, e.g. "
        "'apt-get install gcc' on Debian/Ubuntu, 'xcode-select --install' on macOS, "
        "or set CC to its path."
    )


def machine_tag() -> str:
    """A short hash of this CPU (model and flags): libraries built with -march=native are cached
    per machine."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [line for line in fh if line.startswith(("model name", "flags"))]
        cpu += "".join(lines[:2])
    except OSError:
        pass
    return hashlib.sha256(cpu.encode()).hexdigest()[:12]


def run_compiler(args: list[str], what: str) -> None:
    """Run one compiler command; a failure raises :class:`CompilerError` with its output."""
    try:
        proc = subprocess.run(args, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise CompilerError(f"Could not run the C compiler {args[0]!r} for {what}: {exc}") from exc
    if proc.returncode != 0:
        raise CompilerError(
            f"Building {what} failed ({' '.join(args[:3])} ... exit {proc.returncode}):\n"
            f"{proc.stderr[-2000:]}"
        )
