"""The container every ``.tslim`` file shares (forests and MLPs): a 20-byte header, then the
payload.

Header, little-endian: a 5-byte magic (``b"TSLIM"`` for a forest, ``b"TSLNN"`` for an MLP, so a
reader tells them apart by content), the format version (``u8``), flags (``u16``, meaning per
format), the payload length (``u64``) and the ``zlib.crc32`` of the payload (``u32``). Unpacking
checks all of it before the payload is decoded, and says what is wrong in a
:class:`~treeslim.ModelFormatError` that names the file.
"""

from __future__ import annotations

import struct
import zlib

from treeslim.errors import ModelFormatError

__all__ = ["HEADER", "pack_container", "unpack_container"]

HEADER = struct.Struct("<5sBHQI")  # magic, version, flags, payload length, crc32


def pack_container(magic: bytes, version: int, flags: int, payload: bytes) -> bytes:
    """Header plus ``payload``."""
    return HEADER.pack(magic, version, flags, len(payload), zlib.crc32(payload)) + payload


def unpack_container(
    data: bytes,
    *,
    magic: bytes,
    version: int,
    known_flags: int,
    kind: str,
    name: str,
    article: str = "a",
) -> tuple[int, bytes]:
    """``(flags, payload)`` of a container of ``kind`` (e.g. ``".tslim"``, with its ``article``),
    every header field checked; :class:`~treeslim.ModelFormatError` names ``name`` and the first
    problem found."""
    if not data or not data.startswith(magic[: len(data)]):
        raise ModelFormatError(f"{name}: not {article} {kind} file (no {magic!r} magic number).")
    if len(data) < HEADER.size:
        raise ModelFormatError(
            f"{name}: truncated {kind} file ({len(data)} bytes, shorter than the header)."
        )
    _, found, flags, length, crc = HEADER.unpack_from(data)
    if found != version:
        raise ModelFormatError(
            f"{name}: {kind} format version {found}; this treeslim reads version {version}"
            + (" (upgrade treeslim)." if found > version else ".")
        )
    if flags & ~known_flags:
        raise ModelFormatError(f"{name}: unknown {kind} flags {flags:#06x}.")
    payload = data[HEADER.size :]
    if len(payload) != length:
        what = "truncated" if len(payload) < length else "has trailing bytes"
        raise ModelFormatError(
            f"{name}: {kind} file {what}: the header says {length} payload bytes, found"
            f" {len(payload)}."
        )
    if zlib.crc32(payload) != crc:
        raise ModelFormatError(f"{name}: {kind} checksum mismatch: the file is corrupt.")
    return flags, payload
