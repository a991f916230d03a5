"""Bit-level reading and writing for the ``.tslim`` payload: fixed-width unsigned integers packed
little-endian within each byte, and byte-aligned raw blocks. Every read is checked against the
bits left before anything is allocated, so a corrupt count cannot ask for gigabytes."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from treeslim.errors import ModelFormatError

__all__ = ["MAX_WIDTH", "BitReader", "BitWriter", "bitlen"]

MAX_WIDTH = 32  # widest integer field a reader accepts


def bitlen(n: int) -> int:
    """Bits needed to write ``n`` (0 for 0)."""
    return int(n).bit_length()


class BitWriter:
    """Bits (little-endian within each byte) and byte-aligned raw blocks."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._bits: list[NDArray[np.uint8]] = []

    def bits(self, flags: NDArray[Any]) -> None:
        self._bits.append(np.asarray(flags, dtype=np.uint8))

    def uints(self, values: Any, width: int | None = None) -> None:
        """Unsigned ints at a fixed width; a leading width byte when ``width`` is not implied."""
        v = np.asarray(values, dtype=np.uint64).ravel()
        if width is None:
            width = bitlen(int(v.max())) if v.size else 0
            self.uints([width], 8)
        out = np.empty((v.size, width), dtype=np.uint8)
        for b in range(width):
            out[:, b] = (v >> np.uint64(b)) & np.uint64(1)
        self._bits.append(out.ravel())

    def align(self) -> None:
        if self._bits:
            self._chunks.append(
                np.packbits(np.concatenate(self._bits), bitorder="little").tobytes()
            )
            self._bits = []

    def raw(self, data: bytes) -> None:
        self.align()
        self._chunks.append(data)

    def getvalue(self) -> bytes:
        self.align()
        return b"".join(self._chunks)


class BitReader:
    """The inverse of :class:`BitWriter`; every read is checked against the bits left first."""

    def __init__(self, data: bytes) -> None:
        self._buf = np.frombuffer(data, dtype=np.uint8)
        self._pos = 0  # in bits
        self._end = 8 * len(data)

    def _need(self, nbits: int, what: str) -> None:
        if nbits < 0 or nbits > self._end - self._pos:
            raise ModelFormatError(
                f"{what} needs {nbits} bits but only {self._end - self._pos} are left (truncated"
                " or corrupt file)."
            )

    def bits(self, n: int, what: str) -> NDArray[np.uint8]:
        self._need(n, what)
        lo, hi = self._pos // 8, (self._pos + n + 7) // 8
        out = np.unpackbits(self._buf[lo:hi], bitorder="little")[self._pos % 8 :][:n]
        self._pos += n
        return out

    def uints(self, n: int, what: str, width: int | None = None) -> NDArray[np.int64]:
        if width is None:
            width = int(self.uints(1, what, 8)[0])
            if width > MAX_WIDTH:
                raise ModelFormatError(f"{what}: bit width {width} exceeds {MAX_WIDTH}.")
        self._need(n * width, what)
        bits = self.bits(n * width, what).reshape(n, width)
        out = np.zeros(n, dtype=np.int64)
        for b in range(width):
            out |= bits[:, b].astype(np.int64) << b
        return out

    def raw(self, nbytes: int, what: str) -> bytes:
        self._pos = -(-self._pos // 8) * 8
        self._need(8 * nbytes, what)
        start = self._pos // 8
        self._pos += 8 * nbytes
        return self._buf[start : start + nbytes].tobytes()

    def floats(self, n: int, dtype: str, what: str) -> NDArray[np.float64]:
        size = np.dtype(dtype).itemsize
        self._need(8 * size * n, what)  # before the alignment in raw(): n may be absurd
        with np.errstate(invalid="ignore"):  # a corrupt signalling NaN; validate() rejects it
            return np.frombuffer(self.raw(size * n, what), dtype=dtype).astype(np.float64)

    def finish(self) -> None:
        left = self._end - -(-self._pos // 8) * 8
        if left:
            raise ModelFormatError(f"{left // 8} unexpected trailing bytes in the payload.")
