"""Generate the C of a compiled model: TL2cgen's code for the Treelite model, patched to be exact
(threshold tables as hexadecimal literals, a predict without TL2cgen's lossy input quantizing),
plus treeslim's shim (``shim.c``) with the row entry points."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from treeslim._utils import float32_thresholds
from treeslim.backends._treelite import to_treelite
from treeslim.errors import TreeSlimError

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = ["SHIM", "generate"]

SHIM = Path(__file__).with_name("shim.c").read_text()


def generate(forest: Forest, build: Path, parallel_comp: int, verbose: bool) -> list[Path]:
    import tl2cgen

    # class indices (XGBoost multi:softmax) are taken from the probabilities in Python
    tl_forest = (
        forest.replace(postprocessor="softmax") if forest.postprocessor == "argmax" else forest
    )
    model = to_treelite(tl_forest, threshold_type=_threshold_type(forest))
    # quantized (integer) comparisons are what makes the missing-value marker unambiguous, and
    # several translation units keep predict() small enough to copy (see _predict_without_quantize)
    params: dict[str, Any] = {"quantize": 1, "parallel_comp": max(2, parallel_comp)}
    with _quiet(not verbose):
        tl2cgen.generate_c_code(model, str(build), params=params)
    _exact_threshold_table(build / "quantize.c", forest)
    _predict_without_quantize(build / "main.c")
    header = (build / "header.h").read_text()
    entry = re.search(r"union Entry \{[^}]*?(float|double) fvalue;", header, re.S)
    leaf = re.search(r"void predict\(union Entry\* data, int pred_margin, (float|double)\*", header)
    if entry is None or leaf is None:
        raise TreeSlimError(
            "TL2cgen generated a header this version of treeslim does not recognise; "
            f"tl2cgen {tl2cgen.__version__} may be too new."
        )
    shim = (
        f"#define TS_ENTRY_T {entry.group(1)}\n#define TS_LEAF_T {leaf.group(1)}\n"
        f"#define TS_NFEAT {forest.num_feature}\n"
        f"#define TS_INPUT_T {'float' if forest.feature_dtype == 'float32' else 'double'}\n" + SHIM
    )
    (build / "treeslim_shim.c").write_text(shim)
    return sorted(build.glob("*.c"))


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """Silence TL2cgen's and its bundled Treelite's log lines (they write to fds 1 and 2)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _threshold_type(forest: Forest) -> Literal["float32", "float64"]:
    """Float32 models (XGBoost, scikit-learn) compile with float32 thresholds, moved exactly."""
    return "float32" if forest.feature_dtype == "float32" else "float64"


def _predict_without_quantize(path: Path) -> None:
    """Append ``ts_predict_noq``: TL2cgen's ``predict`` without its input-quantizing loop.

    ``predict`` itself stays, so TL2cgen's own Predictor can still load the library.
    """
    src = path.read_text()
    m = re.search(
        r"void predict\(union Entry\* data, int pred_margin, (float|double)\* result\) \{", src
    )
    if m is None:
        raise TreeSlimError("TL2cgen's main.c has no predict(); unsupported tl2cgen version.")
    end = src.index("\n}\n", m.start()) + 3
    body = src[m.start() : end]
    loop = re.search(
        r"// Quantize data\s*for \(int i = 0; i < \d+; \+\+i\) \{\s*if \([^{]*\) \{\s*"
        r"data\[i\]\.qvalue = quantize\(data\[i\]\.fvalue, i\);\s*\}\s*\}",
        body,
    )
    if loop is None:
        raise TreeSlimError(
            "TL2cgen's predict() has no quantize loop; unsupported tl2cgen version."
        )
    noq = body[: loop.start()] + body[loop.end() :]
    path.write_text(src + "\n" + noq.replace("void predict(", "void ts_predict_noq(", 1))


def _c_int_array(src: str, name: str) -> list[int]:
    m = re.search(r"static const int " + name + r"\[\] = \{([^}]*)\}", src)
    if m is None:
        raise TreeSlimError(
            f"TL2cgen's quantize.c has no {name} table; unsupported tl2cgen version."
        )
    return [int(v) for v in m.group(1).replace("\n", " ").split(",") if v.strip()]


def _exact_threshold_table(path: Path, forest: Forest) -> None:
    """Rewrite TL2cgen's threshold table with exact hexadecimal literals.

    TL2cgen prints float32 thresholds with 8 significant digits, which does not round-trip: inputs
    equal to such a threshold then go the wrong way. The table holds each feature's distinct
    thresholds in increasing order, so it can be rebuilt from the forest itself.
    """
    src = path.read_text()
    begin = _c_int_array(src, "th_begin")
    length = _c_int_array(src, "th_len")
    m = re.search(r"static const (float|double) threshold\[\] = \{[^}]*\}", src)
    if m is None:
        raise TreeSlimError("TL2cgen's quantize.c has no threshold table; unsupported version.")
    inner = forest.split_index >= 0
    feat, t = forest.split_index[inner], forest.threshold[inner]
    if m.group(1) == "float":
        t = float32_thresholds(t, forest.comparison).astype(np.float64)
    order = np.lexsort((t, feat))  # by feature, then value: one sort, not one pass per feature
    feat, t = feat[order], t[order]
    first = np.ones(len(t), dtype=bool)
    first[1:] = (feat[1:] != feat[:-1]) | (t[1:] != t[:-1])  # distinct values (0.0 == -0.0)
    if len(begin) != forest.num_feature or len(length) != forest.num_feature:
        raise TreeSlimError(
            f"TL2cgen's threshold table covers {len(length)} features, the model"
            f" {forest.num_feature}; unsupported tl2cgen version."
        )
    counts = np.bincount(feat[first], minlength=forest.num_feature)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    bad = np.flatnonzero((counts != np.asarray(length)) | (starts != np.asarray(begin)))
    if len(bad):
        j = int(bad[0])
        raise TreeSlimError(
            f"TL2cgen's threshold table for feature {j} has {length[j]} entries, the model"
            f" {int(counts[j])}; cannot make it exact."
        )
    values = [float(v).hex() for v in t[first]]
    table = (
        f"static const {m.group(1)} threshold[] = {{\n  " + ",\n  ".join(values or ["0"]) + "\n}"
    )
    path.write_text(src[: m.start()] + table + src[m.end() :])
