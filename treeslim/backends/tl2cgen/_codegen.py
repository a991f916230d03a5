"""Generate the C of a compiled model: TL2cgen's code for the Treelite model, patched to be exact
(threshold tables as hexadecimal literals, a predict without TL2cgen's lossy input quantizing),
plus treeslim's shim (``shim.c``) with the row entry points."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from treeslim._utils import VERSION, float32_thresholds
from treeslim.backends._treelite import to_treelite
from treeslim.errors import TreeSlimError, UnsupportedModelError

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = ["ABI_VERSION", "LINK_H", "SHIM", "c_string", "generate", "header_text", "model_info"]

SHIM = Path(__file__).with_name("shim.c").read_text()
HEADER_TEMPLATE = Path(__file__).with_name("treeslim.h.in").read_text()
#: Version of the C ABI (the treeslim_* functions and their contract); a library of another
#: version is refused when loaded. 2: treeslim_cpu_supported() added (libraries built for a newer
#: CPU than the default target), the kernel engine.
ABI_VERSION = 2
#: The C shared by both engines' code (the link), written next to the generated sources.
LINK_H = Path(__file__).with_name("ts_link.h").read_text()
_LINKS = {"identity": 0, "sigmoid": 1, "softmax": 2, "exponential": 3, "argmax": 2}


def model_info(forest: Forest, engine: str = "tl2cgen", target: str = "default") -> str:
    """The JSON a compiled library returns from ``treeslim_model_info()``: the model, the engine
    that scores it (``"kernel"`` or ``"tl2cgen"``) and the target its code was compiled for
    (``"default"``: the compiler's, else ``"-march=..."``)."""
    import tl2cgen
    import treelite

    versions = {"treeslim": VERSION}
    if engine == "tl2cgen":
        versions.update(treelite=treelite.__version__, tl2cgen=tl2cgen.__version__)
    n_out = forest.n_outputs
    info = {
        "abi_version": ABI_VERSION,
        "task": forest.task,
        "num_features": forest.num_feature,
        "features": list(forest.feature_names) if forest.feature_names else None,
        "num_outputs": n_out,
        "outputs": forest.source.get("classes") if n_out > 1 else None,
        "link": "softmax" if forest.postprocessor == "argmax" else forest.postprocessor,
        "sigmoid_alpha": forest.sigmoid_alpha,
        "input_precision": forest.feature_dtype,
        "missing": "NaN",
        "categorical": _categorical_info(forest),
        "source": {k: forest.source[k] for k in ("library", "objective") if k in forest.source},
        "engine": engine,
        "target": target,
        "versions": versions,
    }
    return json.dumps(info, separators=(",", ":"), default=str)


def _categorical_info(forest: Forest) -> dict[str, Any]:
    """Per categorical feature (by name, else index): the codes' rule and, where the source
    library encoded values itself, the value of each code (C callers pass codes)."""
    if forest.cat_index is None:
        return {}
    used = np.unique(forest.split_index[forest.is_categorical]).tolist()
    names = forest.feature_names
    cats = forest.feature_categories or [None] * forest.num_feature
    return {
        (names[j] if names else str(j)): {
            "index": j,
            "rule": forest.category_rule,
            "categories": None if cats[j] is None else list(cats[j]),
        }
        for j in used
    }


def _categorical_defines(forest: Forest) -> str:
    """The shim's categorical switches: which features are categorical, the rule, the width."""
    if forest.cat_index is None or forest.cat_bitsets is None:
        return "#define TS_HAS_CAT 0\n"
    is_cat = np.zeros(forest.num_feature, dtype=bool)
    is_cat[forest.split_index[forest.is_categorical]] = True
    numeric = np.flatnonzero(is_cat[np.maximum(forest.split_index, 0)] & (forest.split_index >= 0)
                             & ~forest.is_categorical)  # fmt: skip
    if len(numeric):
        node = int(numeric[0])
        t = int(np.searchsorted(forest.tree_offsets, node, side="right") - 1)
        j = int(forest.split_index[node])
        name = forest.feature_names[j] if forest.feature_names else str(j)
        raise UnsupportedModelError(
            f"Tree {t}, node {node - int(forest.tree_offsets[t])} compares feature {j} ({name!r})"
            " with a threshold, while other nodes split it by category; TL2cgen reads a feature"
            " one way only: compile with the kernel engine (treeslim.compile's default), which"
            " reads it both ways, or retrain with the feature either categorical or numerical."
        )
    flags = ",".join("1" if c else "0" for c in is_cat)
    return (
        "#define TS_HAS_CAT 1\n"
        f"#define TS_CAT_LIGHTGBM {int(forest.category_rule == 'lightgbm')}\n"
        f"#define TS_CAT_WIDTH {32 * forest.cat_bitsets.shape[1]}.0\n"
        f"static const unsigned char ts_is_cat[] = {{{flags}}};\n"
    )


def c_string(text: str) -> str:
    """``text`` as a C string literal (bytes escaped in octal, so any content is safe)."""
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        out.append(ch if 32 <= b < 127 and ch not in '"\\?' else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def header_text(forest: Forest, name: str) -> str:
    """The C header documenting a compiled library's ABI (written next to it as ``name.h``)."""
    values = {
        "NAME": name, "VERSION": VERSION, "ABI": str(ABI_VERSION), "TASK": forest.task,
        "NUM_FEATURES": str(forest.num_feature), "NUM_OUTPUTS": str(forest.n_outputs),
        "LINK": "softmax" if forest.postprocessor == "argmax" else forest.postprocessor,
        "GUARD": "".join(c if c.isalnum() else "_" for c in name).upper(),
    }  # fmt: skip
    text = HEADER_TEMPLATE
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    return text


def generate(forest: Forest, build: Path, parallel_comp: int, verbose: bool) -> list[Path]:
    import tl2cgen

    # class indices (XGBoost multi:softmax) are taken from the probabilities in Python
    tl_forest = (
        forest.replace(postprocessor="softmax") if forest.postprocessor == "argmax" else forest
    )
    categorical = _categorical_defines(forest)  # refuses what TL2cgen cannot compile first
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
    defines = {
        "TS_ENTRY_T": entry.group(1),
        "TS_LEAF_T": leaf.group(1),
        "TS_NFEAT": str(forest.num_feature),
        "TS_INPUT_T": "float" if forest.feature_dtype == "float32" else "double",
        "TS_LINK": str(_LINKS[forest.postprocessor]),
        "TS_ALPHA": float(forest.sigmoid_alpha).hex(),
        "TS_ABI_VERSION": str(ABI_VERSION),
        "TS_MODEL_INFO": c_string(model_info(forest)),
    }
    shim = "".join(f"#define {k} {v}\n" for k, v in defines.items())
    shim += categorical + SHIM
    (build / "treeslim_shim.c").write_text(shim)
    (build / "ts_link.h").write_text(LINK_H)
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
    inner = (forest.split_index >= 0) & ~forest.is_categorical  # category sets have no threshold
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
