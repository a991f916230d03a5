"""Treelite (v4) checkpoint bytes, checked in full before Treelite sees them: Treelite 4.8
segfaults or hangs on some corrupt checkpoints, so every length and index it would trust is
walked here first (:func:`parse_checkpoint`)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from treeslim.errors import ModelFormatError

__all__ = ["FLOAT_TYPES", "TREE_LAYOUT", "looks_like_treelite_checkpoint", "parse_checkpoint"]

FLOAT_TYPES = {2: np.float32, 3: np.float64}  # Treelite TypeInfo codes
# a tree in a checkpoint: name:dtype:length (n = one per node, * = any, ? = none or one per node)
TREE_LAYOUT = (
    "node_type:i1:n cleft:i4:n cright:i4:n split_index:i4:n default_left:u1:n leaf_value:R:n"
    " threshold:R:n cmp:i1:n category_list_right_child:u1:n leaf_vector:R:* leaf_vector_begin:u8:n"
    " leaf_vector_end:u8:n category_list:u4:* category_list_begin:u8:n category_list_end:u8:n"
    " data_count:u8:? data_count_present:u1:? sum_hess:f8:? sum_hess_present:u1:? gain:f8:?"
    " gain_present:u1:?"
).split()


class _Reader:
    """Bounds-checked reader of Treelite's serialized stream."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = memoryview(data), 0

    def take(self, nbytes: int, what: str) -> memoryview:
        if nbytes < 0 or self.pos + nbytes > len(self.data):
            raise ModelFormatError(f"truncated or corrupt at byte {self.pos} (reading {what}).")
        out = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return out

    def scalar(self, fmt: str, what: str) -> Any:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def array(self, dtype: Any, what: str) -> np.ndarray:
        n = self.scalar("Q", what)
        size = np.dtype(dtype).itemsize
        if n > (len(self.data) - self.pos) // size:
            raise ModelFormatError(f"{what} claims {n} entries, more than the data left.")
        return np.frombuffer(self.take(n * size, what), dtype=np.dtype(dtype).newbyteorder("<"))

    def text(self, what: str) -> str:
        try:
            return self.array(np.uint8, what).tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelFormatError(f"{what} is not UTF-8 text ({exc}).") from None

    def flag(self, what: str) -> int:
        v = self.scalar("B", what)
        if v > 1:
            raise ModelFormatError(f"{what} is {v}, not a boolean.")
        return int(v)

    def skip_optional_fields(self, what: str) -> None:
        count = self.scalar("i", what)
        if count < 0:
            raise ModelFormatError(f"{what}: negative count {count}.")
        for _ in range(count):
            self.array(np.uint8, f"{what} name")
            nbytes = self.scalar("Q", what) * self.scalar("Q", what)
            self.take(nbytes if nbytes <= len(self.data) else -1, what)


def _parse_tree(r: _Reader, idx: int, real: Any) -> dict[str, Any]:
    n = r.scalar("i", f"tree {idx} num_nodes")
    if n < 1:
        raise ModelFormatError(f"tree {idx} has {n} nodes.")
    r.flag(f"tree {idx} has_categorical_split")
    t: dict[str, Any] = {}
    for entry in TREE_LAYOUT:
        key, dtype, length = entry.split(":")
        a = r.array(real if dtype == "R" else np.dtype(dtype), f"tree {idx} {key}")
        if (length == "n" and a.size != n) or (length == "?" and a.size not in (0, n)):
            raise ModelFormatError(f"tree {idx}: {key} has {a.size} entries for {n} nodes.")
        t[key] = a
    inner = t["node_type"] != 0
    for key in ("cleft", "cright"):
        bad = inner & ((t[key] < 0) | (t[key] >= n))
        if bad.any():
            raise ModelFormatError(f"tree {idx}, node {int(np.argmax(bad))}: {key} out of range.")
    for key in ("leaf_vector", "category_list"):
        b, e, size = t[f"{key}_begin"], t[f"{key}_end"], t[key].size
        if np.any(b > e) or np.any(e > size):
            raise ModelFormatError(f"tree {idx}: {key} ranges exceed its {size} entries.")
    r.skip_optional_fields(f"tree {idx} optional fields")
    r.skip_optional_fields(f"tree {idx} optional node fields")
    return t


def parse_checkpoint(data: bytes) -> None:
    """Walk the whole checkpoint, checking every length and index Treelite would trust."""
    r = _Reader(data)
    major = r.scalar("i", "version")
    r.take(8, "version")
    if major != 4:
        raise ModelFormatError(f"Treelite checkpoint version {major}.x; treeslim reads 4.x.")
    ttype, ltype = r.scalar("B", "threshold_type"), r.scalar("B", "leaf_output_type")
    if ttype not in FLOAT_TYPES or ltype != ttype:
        raise ModelFormatError(f"threshold / leaf types {ttype} / {ltype} are not float32/64.")
    num_tree = r.scalar("Q", "num_tree")
    if num_tree > len(data) // 100:  # every tree takes well over 100 bytes
        raise ModelFormatError(f"num_tree {num_tree} does not fit in {len(data)} bytes.")
    r.scalar("i", "num_feature")
    r.scalar("B", "task_type")
    r.flag("average_tree_output")
    num_target = r.scalar("i", "num_target")
    header = {
        key: r.array(np.int32, key)
        for key in ("num_class", "leaf_vector_shape", "target_id", "class_id")
    }
    if (
        num_target < 1
        or header["num_class"].size != num_target
        or header["leaf_vector_shape"].size != 2
        or any(header[key].size != num_tree for key in ("target_id", "class_id"))
    ):
        raise ModelFormatError("header arrays do not match num_target / num_tree.")
    r.text("postprocessor")
    r.take(8, "sigmoid_alpha / ratio_c")
    r.array(np.float64, "base_scores")
    r.text("attributes")
    r.skip_optional_fields("model optional fields")
    real = FLOAT_TYPES[ttype]
    for i in range(num_tree):
        _parse_tree(r, i, real)
    if r.pos != len(data):
        raise ModelFormatError(f"{len(data) - r.pos} unexpected bytes after the last tree.")


def looks_like_treelite_checkpoint(data: bytes) -> bool:
    """Whether ``data`` starts like a Treelite 4.x checkpoint (``Model.serialize``)."""
    if len(data) < 22:
        return False
    major, minor, patch, ttype, ltype = struct.unpack("<iiiBB", bytes(data[:14]))
    return major == 4 and 0 <= minor < 1000 and 0 <= patch < 1000 and ttype == ltype in FLOAT_TYPES
