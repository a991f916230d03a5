"""Fuzzing model readers: mutate a good model file many ways and parse every mutant under a time
and a memory bound. Each mutant must either raise a :class:`TreeSlimError` or give a Forest that
validates and predicts; the tests ask that both outcomes occur, so a reader that refuses
everything (or nothing) fails too.

Mutations: bytes (bit flips, truncation, insertion, runs of 0x00 / 0xFF), text (a number replaced
by an extreme value, a line deleted or duplicated) and documents (a field of a parsed JSON
document set to an extreme value or removed). ``FUZZ_N`` (environment ``TREESLIM_FUZZ_N``, default
60) mutants are drawn per kind; CI runs the default, a long run sets it higher.
"""

from __future__ import annotations

import os
import re
import struct
import time
import tracemalloc

import numpy as np
from oracle import oracle_rows

import treeslim
from treeslim import TreeSlimError

FUZZ_N = int(os.environ.get("TREESLIM_FUZZ_N", "60"))
MAX_SECONDS = 1.0  # per parse; the seed models parse in milliseconds
MAX_PEAK_BYTES = 64 * 2**20  # per parse, traced by tracemalloc (numpy's buffers included)

EXTREME_NUMBERS = [
    "0", "-1", "1", "2", "3", "7", "255", "65536", "1048577", "2147483647", "2147483648",
    "200000001", "9223372036854775807", "99999999999999999999", "1e308", "-1e308", "1e-320",
    "nan", "inf", "-inf", "1.5", "-0",
]  # fmt: skip
EXTREME_VALUES = [
    0, -1, 1, 2, 3, 255, 2**16, 2**20 + 7, 2**31 - 1, 2**31, 2**63 - 1, 200_000_001, 10**30,
    1e308, -1e308, float("nan"), 0.5, "x", "", "200000001", "-1", "[1,2]", None, True, [], {},
    [0, 0], [2**31], {"a": 1},
]  # fmt: skip
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


# ------------------------------------------------------------------------------------ mutations
def byte_mutations(data: bytes, rng: np.random.Generator, n: int = FUZZ_N):
    """Bit flips, truncations, inserted bytes and overwritten runs of 0x00 / 0xFF / random."""
    for i in range(n):
        pos = int(rng.integers(0, len(data)))
        kind = i % 5
        if kind == 0:
            yield data[:pos] + bytes([data[pos] ^ (1 << int(rng.integers(8)))]) + data[pos + 1 :]
        elif kind == 1:
            yield data[:pos]
        elif kind == 2:
            yield data[:pos] + bytes([int(rng.integers(256))]) + data[pos:]
        else:
            width = int(rng.integers(1, 9))
            run = (b"\xff" if i % 2 else b"\x00") * width if kind == 3 else rng.bytes(width)
            yield data[:pos] + run + data[pos + width :]


def text_mutations(text: bytes, rng: np.random.Generator, n: int = FUZZ_N):
    """A number replaced by an extreme value (most mutants), a line deleted or duplicated."""
    numbers = [m.span() for m in _NUMBER.finditer(text)]
    lines = text.split(b"\n")
    for i in range(n):
        if i % 4 < 3:
            a, b = numbers[int(rng.integers(len(numbers)))]
            new = EXTREME_NUMBERS[int(rng.integers(len(EXTREME_NUMBERS)))].encode()
            yield text[:a] + new + text[b:]
        else:
            j = int(rng.integers(len(lines)))
            copy = lines[:j] + ([lines[j], lines[j]] if i % 8 == 3 else []) + lines[j + 1 :]
            yield b"\n".join(copy)


def _paths(doc, prefix=()):
    """Every path (tuple of keys / indices) into a JSON-like document; long lists are sampled."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, (list, np.ndarray)) and len(doc):
        for k in sorted({0, len(doc) - 1, len(doc) // 2}):
            out += _paths(doc[k], (*prefix, k))
    return out


def _copy(doc):
    if isinstance(doc, dict):
        return {k: _copy(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_copy(v) for v in doc]
    if isinstance(doc, np.ndarray):
        return doc.copy()
    return doc


def doc_mutations(doc, rng: np.random.Generator, n: int = FUZZ_N):
    """Copies of ``doc`` with one field set to an extreme value (or a dict key removed)."""
    paths = [p for p in _paths(doc) if p]
    for i in range(n):
        path = paths[int(rng.integers(len(paths)))]
        new = _copy(doc)
        parent = new
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and i % 7 == 6:
            del parent[path[-1]]
        else:
            value = EXTREME_VALUES[int(rng.integers(len(EXTREME_VALUES)))]
            if isinstance(parent, np.ndarray):  # a typed UBJSON array stays typed
                parent = list(parent)
                container = new
                for key in path[:-2]:
                    container = container[key]
                container[path[-2]] = parent
            parent[path[-1]] = value
        yield new


# --------------------------------------------------------------------------------------- UBJSON
def encode_ubjson(value) -> bytes:
    """A small UBJSON encoder (what XGBoost writes: big-endian, typed arrays for numbers)."""
    if value is None:
        return b"Z"
    if value is True:
        return b"T"
    if value is False:
        return b"F"
    if isinstance(value, (int, np.integer)):
        v = int(value)
        for marker, fmt in ((b"i", ">b"), (b"l", ">i"), (b"L", ">q")):
            try:
                return marker + struct.pack(fmt, v)
            except struct.error:
                continue
        return b"H" + _ubj_len(len(str(v))) + str(v).encode()  # a high-precision number
    if isinstance(value, (float, np.floating)):
        return b"D" + struct.pack(">d", float(value))
    if isinstance(value, str):
        raw = value.encode()
        return b"S" + _ubj_len(len(raw)) + raw
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == 1:
        marker, dtype = {"f4": (b"d", ">f4"), "f8": (b"D", ">f8"), "i4": (b"l", ">i4"),
                         "i8": (b"L", ">i8"), "u1": (b"U", ">u1"), "i1": (b"i", ">i1")}.get(
            value.dtype.str[1:], (b"D", ">f8"))  # fmt: skip
        return b"[$" + marker + b"#" + _ubj_len(len(value)) + value.astype(dtype).tobytes()
    if isinstance(value, (list, tuple, np.ndarray)):
        return b"[" + b"".join(encode_ubjson(v) for v in value) + b"]"
    if isinstance(value, dict):
        body = b"".join(_ubj_len(len(k.encode())) + k.encode() + encode_ubjson(v)
                        for k, v in value.items())  # fmt: skip
        return b"{" + body + b"}"
    raise TypeError(type(value))


def _ubj_len(n: int) -> bytes:
    return b"L" + struct.pack(">q", n)


# ------------------------------------------------------------------------------------- checking
def _rows(forest, rng):
    if forest.num_feature <= 64:
        return oracle_rows(forest, 20, seed=int(rng.integers(1000)))
    X = rng.normal(size=(2, forest.num_feature))  # wide headers: no per-feature traps
    X[:, ::3] = np.nan
    return X


def parse_bounded(parse, data, rng=None):
    """``parse(data)`` under :data:`MAX_SECONDS` and :data:`MAX_PEAK_BYTES`; the Forest (validated,
    and predicting finite-shaped output on adversarial rows) or None when it raised a
    TreeSlimError. Any other exception propagates: that is a reader bug."""
    rng = rng or np.random.default_rng(0)
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    try:
        forest = parse(data)
    except TreeSlimError:
        forest = None
    finally:
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1] - base
        if started:
            tracemalloc.stop()
    assert seconds < MAX_SECONDS, f"parsing took {seconds:.2f} s ({len(data)} bytes)"
    assert peak < MAX_PEAK_BYTES, f"parsing peaked at {peak / 2**20:.0f} MiB ({len(data)} bytes)"
    if forest is None:
        return None
    treeslim.validate(forest)
    X = _rows(forest, rng)
    p, m = forest.predict(X), forest.predict_margin(X)
    k = forest.n_outputs
    assert p.shape[0] == m.shape[0] == len(X)
    assert m.shape == ((len(X),) if k == 1 else (len(X), k))
    return forest


def fuzz(parse, mutants, *, what=""):
    """Parse every mutant with :func:`parse_bounded`; return (accepted, rejected) counts and
    check that both outcomes occurred."""
    rng = np.random.default_rng(0)
    mutants = list(mutants)  # made before tracing starts
    accepted = rejected = 0
    tracemalloc.start()  # once for the run: each parse's peak is measured from its own start
    try:
        for data in mutants:
            if parse_bounded(parse, data, rng) is None:
                rejected += 1
            else:
                accepted += 1
    finally:
        tracemalloc.stop()
    assert accepted > 0, f"{what}: every mutant was refused: the fuzzer tests nothing"
    assert rejected > 0, f"{what}: every mutant was accepted: the reader checks nothing"
    return accepted, rejected
