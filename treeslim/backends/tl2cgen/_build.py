"""Build a TL2cgen model library: C sources compiled in parallel, linked; and the content hash
(the model, the options and the generated code's versions) both engines' libraries are cached
under."""

from __future__ import annotations

import hashlib
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from treeslim._utils import Progress, write_atomic
from treeslim.backends.tl2cgen._codegen import LINK_H, SHIM, generate, model_info
from treeslim.backends.tl2cgen._kernel_lib import ENGINE_FILES
from treeslim.runtime import (
    KERNEL_SOURCE,
    ROW_WALK_MAX_ROWS,
    find_compiler,
    machine_tag,
    run_compiler,
)

if TYPE_CHECKING:
    from treeslim.ir import Forest

__all__ = ["BUILD_LOCK", "build_library", "forest_hash"]

BUILD_LOCK = threading.Lock()
_CFLAGS = ["-O2", "-fPIC", "-std=c99", "-fno-math-errno"]


def forest_hash(forest: Forest, options: dict[str, Any]) -> str:
    import tl2cgen
    import treelite

    h = hashlib.sha256()
    for name in (
        "split_index",
        "threshold",
        "cleft",
        "cright",
        "default_left",
        "leaf_value",
        "tree_offsets",
        "tree_class",
        "base_score",
    ):
        h.update(np.ascontiguousarray(getattr(forest, name)).tobytes())
    for name in ("cat_index", "cat_bitsets"):  # None for numerical forests: the hash is unchanged
        value = getattr(forest, name)
        if value is not None:
            h.update(name.encode() + np.ascontiguousarray(value).tobytes())
    header = (
        forest.num_feature,
        forest.task,
        forest.num_class,
        forest.postprocessor,
        forest.sigmoid_alpha,
        forest.average,
        forest.comparison,
        forest.feature_dtype,
        forest.margin_dtype,
        forest.category_rule,
    )
    if options.get("engine", "tl2cgen") == "kernel":  # the engine's sources, the kernel's
        code: tuple[Any, ...] = (sorted(ENGINE_FILES.items()), KERNEL_SOURCE.read_text(),
                                 ROW_WALK_MAX_ROWS, model_info(forest, "kernel"))  # fmt: skip
        if options.get("march") == "native":  # built for this CPU
            code += (machine_tag(),)
    else:
        code = (tl2cgen.__version__, treelite.__version__, SHIM, LINK_H, model_info(forest))
    h.update(repr((header, sorted(options.items()), code)).encode())
    return h.hexdigest()[:24]


def build_library(
    forest: Forest, target: Path, *, nthread: int, parallel_comp: int, verbose: int
) -> None:
    cc = find_compiler()
    with (
        tempfile.TemporaryDirectory(prefix="treeslim-build-") as tmp,
        Progress(2, "treeslim compile", verbose=int(verbose)) as bar,
    ):
        build = Path(tmp)
        sources = generate(forest, build, parallel_comp, verbose >= 2)
        bar.add(len(sources))
        bar.update(note="C generated")

        def compile_one(src: Path) -> Path:
            obj = src.with_suffix(".o")
            run_compiler([cc, *_CFLAGS, "-c", str(src), "-o", str(obj)], f"{src.name}")
            bar.update(note=src.name)
            return obj

        with ThreadPoolExecutor(max_workers=max(1, nthread)) as pool:
            objects = list(pool.map(compile_one, sources))
        out = build / "model.so"
        run_compiler(
            [cc, "-shared", "-o", str(out), *map(str, objects), "-lm"], "the model library"
        )
        bar.update(note="linked")
        write_atomic(target, out.read_bytes(), executable=True)
