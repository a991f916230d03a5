"""A small UBJSON decoder for XGBoost's binary model format (``.ubj``).

XGBoost writes big-endian UBJSON with strongly typed, counted arrays for its node tables; those
are decoded straight into numpy arrays. Any malformed input raises :class:`ModelFormatError`
(never an IndexError or an attempt to allocate a absurd count).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from treeslim.errors import ModelFormatError

__all__ = ["decode_ubjson"]

_NUMERIC = {
    "i": ">i1",
    "U": ">u1",
    "I": ">i2",
    "l": ">i4",
    "L": ">i8",
    "d": ">f4",
    "D": ">f8",
}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelFormatError(
                f"UBJSON data is truncated: needed {n} bytes at offset {self.pos}, "
                f"{len(self.data) - self.pos} left."
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def marker(self) -> str:
        m = chr(self.take(1)[0])
        while m == "N":  # no-op marker
            m = chr(self.take(1)[0])
        return m

    def number(self, m: str) -> Any:
        dt = np.dtype(_NUMERIC[m])
        value = np.frombuffer(self.take(dt.itemsize), dtype=dt)[0]
        return float(value) if dt.kind == "f" else int(value)

    def length(self) -> int:
        m = self.marker()
        if m not in "iUIlL":
            raise ModelFormatError(
                f"UBJSON: expected an integer length at offset {self.pos - 1}, got {m!r}."
            )
        n = int(self.number(m))
        if n < 0 or n > len(self.data):
            raise ModelFormatError(f"UBJSON: impossible length {n} at offset {self.pos}.")
        return n

    def string(self) -> str:
        n = self.length()
        try:
            return bytes(self.take(n)).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError(
                f"UBJSON: string at offset {self.pos - n} is not UTF-8."
            ) from exc

    def value(self, m: str, depth: int) -> Any:
        if depth > 64:
            raise ModelFormatError("UBJSON: nesting deeper than 64 levels.")
        if m in _NUMERIC:
            return self.number(m)
        if m == "S" or m == "H":
            return self.string()
        if m == "C":
            return chr(self.take(1)[0])
        if m == "T":
            return True
        if m == "F":
            return False
        if m == "Z":
            return None
        if m == "[":
            return self.array(depth)
        if m == "{":
            return self.object(depth)
        raise ModelFormatError(f"UBJSON: unknown marker {m!r} at offset {self.pos - 1}.")

    def _container_header(self) -> tuple[str | None, int | None]:
        typ: str | None = None
        count: int | None = None
        nxt = chr(self.data[self.pos]) if self.pos < len(self.data) else ""
        if nxt == "$":
            self.pos += 1
            typ = self.marker()
            nxt = chr(self.data[self.pos]) if self.pos < len(self.data) else ""
            if nxt != "#":
                raise ModelFormatError("UBJSON: a typed container needs a count.")
        if nxt == "#":
            self.pos += 1
            count = self.length()
        return typ, count

    def array(self, depth: int) -> Any:
        typ, count = self._container_header()
        if typ is not None and count is not None:
            if typ in _NUMERIC:
                dt = np.dtype(_NUMERIC[typ])
                raw = self.take(count * dt.itemsize)
                return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))
            return [self.value(typ, depth + 1) for _ in range(count)]
        if count is not None:
            return [self.value(self.marker(), depth + 1) for _ in range(count)]
        out: list[Any] = []
        while True:
            m = self.marker()
            if m == "]":
                return out
            out.append(self.value(m, depth + 1))

    def object(self, depth: int) -> dict[str, Any]:
        typ, count = self._container_header()
        out: dict[str, Any] = {}
        if count is not None:
            for _ in range(count):
                key = self.string()
                out[key] = self.value(typ or self.marker(), depth + 1)
            return out
        while True:
            if self.pos < len(self.data) and chr(self.data[self.pos]) == "}":
                self.pos += 1
                return out
            key = self.string()
            out[key] = self.value(self.marker(), depth + 1)


def decode_ubjson(data: bytes) -> Any:
    """Decode one UBJSON document; typed numeric arrays come back as numpy arrays."""
    reader = _Reader(bytes(data))
    try:
        value = reader.value(reader.marker(), 0)
    except struct.error as exc:  # pragma: no cover - frombuffer guards sizes already
        raise ModelFormatError(f"UBJSON: {exc}") from exc
    return value
