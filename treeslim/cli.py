"""The ``treeslim`` command line: a thin layer over the public API.

Reads native model files only (never unpickles). Every subcommand returns an exit code; errors
are printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from treeslim._api import compile as compile_forest
from treeslim._api import compress, load
from treeslim._utils import write_atomic
from treeslim.backends import to_lightgbm, to_onnx, to_treelite, to_xgboost
from treeslim.distillation import distill, parse_student
from treeslim.errors import TreeSlimError, UnsupportedModelError
from treeslim.formats import save_tslim
from treeslim.ir import Forest
from treeslim.measure import Report, format_sizes, report
from treeslim.nn import MLP, shape_text

__all__ = ["main"]


def _load_forest(path: str, command: str) -> Any:
    """The Forest in ``path``, or a clear error when the file holds something else (an MLP)."""
    model = load(path)
    if not isinstance(model, Forest):
        raise UnsupportedModelError(
            f"{path} holds a {type(model).__name__}, not a tree ensemble; `treeslim {command}`"
            " works on tree ensembles (compress networks with treeslim.nn.compress in Python)."
        )
    return model


def _inspect(args: argparse.Namespace) -> int:
    forest = load(args.model)
    if isinstance(forest, MLP):
        print(json.dumps({"file": args.model, "file_bytes": os.path.getsize(args.model),
                          "kind": "mlp", "task": forest.task, "shape": shape_text(forest),
                          "params": forest.n_params}, indent=2))  # fmt: skip
        return 0
    depths = np.bincount(forest.tree_depths)
    info: dict[str, Any] = {
        "file": args.model,
        "file_bytes": os.path.getsize(args.model),
        "library": forest.source.get("library"),
        "objective": forest.source.get("objective"),
        "task": forest.task,
        "num_class": forest.num_class,
        "postprocessor": forest.postprocessor,
        "trees": forest.n_trees,
        "nodes": forest.n_nodes,
        "leaves": forest.n_leaves,
        "max_depth": forest.max_depth,
        "categorical_splits": forest.n_categorical_splits,
        "depth_histogram": {int(d): int(c) for d, c in enumerate(depths) if c},
        "num_feature": forest.num_feature,
        "bytes": format_sizes(forest),
        "bytes_gzip": format_sizes(forest, compressed=True),
    }
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        print(f"{key:<{width}}  {value}")
    return 0


def read_data(path: str, target: str | None = None) -> tuple[Any, Any, Any]:
    """``(X, y, qid)`` from an ``.npz`` (arrays X, optional y, qid), ``.npy`` (X) or ``.csv`` file.

    In a CSV file with a header, ``target`` names the label column (the rest are features).
    """
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            if "X" not in z:
                raise ValueError(f"{path}: an .npz data file needs an array named 'X'.")
            return (z["X"], z["y"] if "y" in z else None, z["qid"] if "qid" in z else None)
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False), None, None
    if path.endswith(".csv"):
        with open(path) as fh:
            header = fh.readline().strip().split(",")
        has_header = any(not _is_number(h) for h in header)
        with warnings.catch_warnings():  # numpy warns about a file without rows: refused below
            warnings.simplefilter("ignore", UserWarning)
            data = np.genfromtxt(
                path, delimiter=",", skip_header=int(has_header), dtype=np.float64, ndmin=2
            )
        if data.size == 0:
            what = "is empty" if header == [""] else "has a header but no data rows"
            raise ValueError(f"{path}: the CSV file {what}; expected one row per sample.")
        if target is None:
            return data, None, None
        if not has_header or target not in header:
            raise ValueError(f"{path}: no column named {target!r} in the header.")
        j = header.index(target)
        return np.delete(data, j, axis=1), data[:, j], None
    raise ValueError(f"{path}: data must be .npz, .npy or .csv.")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _compile(args: argparse.Namespace) -> int:
    forest = _load_forest(args.model, "compile")
    compiled = compile_forest(forest, engine=args.engine, march=args.march, nthread=args.nthread,
                              cache=not args.no_cache)  # fmt: skip
    out = args.output
    if os.path.isdir(out) or out.endswith(("/", os.sep)):  # a folder: MODEL.so and MODEL.h in it
        lib, header = compiled.save(out, name=_stem(args.model))
    else:  # the library where asked, its header beside it
        lib, header = compiled.save(out)
    print(
        f"compiled {forest.n_trees} trees ({forest.n_nodes} nodes) into {lib}"
        f" ({lib.stat().st_size:,} bytes), C header {header}"
    )
    return 0


def _stem(path: str) -> str:
    """A C-friendly name from a model file's name (``ranker.v2.json`` -> ``ranker``)."""
    name = "".join(c if c.isalnum() else "_" for c in os.path.basename(path).split(".")[0])
    return name or "model"


def _bench(args: argparse.Namespace) -> int:
    forest = _load_forest(args.model, "bench")
    X, y, qid = read_data(args.data, args.target)
    compiled = compile_forest(forest, nthread=args.nthread)
    rep = report(
        compiled,
        X,
        y,
        qid=qid,
        name=os.path.basename(args.model),
        nthread=args.nthread,
        n_calls=args.calls,
    )
    print(rep.to_json() if args.json else rep.to_text())
    return 0


def _compress(args: argparse.Namespace) -> int:
    forest = _load_forest(args.model, "compress")
    X, y, qid = read_data(args.data, args.target)
    if y is None:
        raise ValueError(f"{args.data}: compress needs labels (y in the .npz, or --target).")
    slim = compress(
        forest,
        X,
        y,
        qid=qid,
        max_loss=args.max_loss,
        metric=args.metric,
        random_state=args.seed,
        verbose=args.verbose,
        bits=args.bits,
        confidence=args.confidence,
        strict=args.strict,
        objective=args.objective,
    )
    lib = forest.source.get("library")
    slim.export(args.output)
    slim.report_.to_json(args.output + ".report.json")
    print(slim.report_.to_text())
    print(f"certificate: {slim.search_.certificate}")
    wrote = [f"{args.output} ({lib or 'treelite'} format)", f"{args.output}.report.json"]
    front = Report([e for e in slim.report_.entries if e.get("pareto")])
    front.to_json(args.output + ".pareto.json")
    wrote.append(f"{args.output}.pareto.json")
    try:
        import matplotlib.pyplot as plt

        plt.close(slim.report_.plot(path=args.output + ".pareto.png"))
        wrote.append(f"{args.output}.pareto.png")
    except ImportError:
        print("no Pareto plot: matplotlib is not installed (pip install 'treeslim[plot]')")
    print("wrote " + ", ".join(wrote))
    return 0


def _auto_float(text: str) -> float | str:
    return text if text == "auto" else float(text)


def _distill(args: argparse.Namespace) -> int:
    teacher = _load_forest(args.model, "distill")
    X, y, qid = read_data(args.data, args.target)
    if args.alpha != "auto" and float(args.alpha) > 0 and y is None:
        raise ValueError(f"{args.data}: --alpha > 0 needs labels (y in the .npz, or --target).")
    spec = parse_student(args.student)
    n_syn: int | str = "auto" if args.n_synthetic is None else args.n_synthetic
    student = distill(
        teacher,
        X,
        y,
        student=spec,
        n_synthetic=n_syn,
        augment=args.augment,
        temperature=args.temperature,
        alpha=args.alpha,
        loss=args.loss,
        qid=qid,
        teacher_saw_rows={"yes": True, "no": False}.get(args.teacher_saw_rows, "auto"),
        random_state=args.seed,
    )

    chosen = {k: v for k, v in student.source["distill"].items() if k != "candidates"}
    print("settings: " + ", ".join(f"{k}={v}" for k, v in chosen.items()))
    lib = student.source.get("library")
    is_forest = hasattr(student, "n_nodes")
    if not is_forest or args.output.endswith(".tslim") or lib not in ("lightgbm", "xgboost"):
        save_tslim(student, args.output)  # atomic
        fmt = ".tslim"
    else:
        (to_lightgbm if lib == "lightgbm" else to_xgboost)(student, args.output)  # atomic
        fmt = lib
    size = (f"{student.n_trees} trees, {student.n_nodes} nodes" if is_forest
            else f"MLP, {student.n_params} parameters")  # fmt: skip
    if is_forest:
        rep = report(student, X, y, qid=qid, reference=teacher, name=os.path.basename(args.output))
        rep.to_json(args.output + ".report.json")
        print(rep.to_text())
    print(
        f"wrote {args.output} ({fmt} format; {size}; the teacher has {teacher.n_nodes} nodes)"
        + (f" and {args.output}.report.json" if is_forest else "")
    )
    return 0


def _write_treelite(forest: Forest, path: str) -> None:
    write_atomic(path, bytes(to_treelite(forest).serialize_bytes()))


#: ``treeslim export --format`` -> a function writing a Forest to a path (atomically)
_EXPORTERS = {
    "onnx": to_onnx,
    "xgboost": to_xgboost,
    "lightgbm": to_lightgbm,
    "treelite": _write_treelite,
}


def _export(args: argparse.Namespace) -> int:
    forest = _load_forest(args.model, "export")
    _EXPORTERS[args.format](forest, args.output)
    size = os.path.getsize(args.output)
    print(
        f"wrote {args.output} ({args.format} format, {size:,} bytes; {forest.n_trees} trees,"
        f" {forest.n_nodes} nodes)"
    )
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treeslim", description="Compress and compile tree ensembles."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="describe a model file (XGBoost, LightGBM, Treelite)")
    p.add_argument(
        "model", help="model file: XGBoost .json/.ubj, LightGBM .txt, Treelite checkpoint"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_inspect)

    p = sub.add_parser("compile", help="compile a model file into a shared library (C ABI)")
    p.add_argument("model", help="model file")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="a folder (DIR/ gets MODEL.so and MODEL.h, the C header) or the .so to write",
    )
    p.add_argument(
        "--engine",
        choices=["kernel", "tl2cgen"],
        default="kernel",
        help="the code the library runs: treeslim's kernel over the model's data (default;"
        " compiles in about a second) or TL2cgen's generated C",
    )
    p.add_argument(
        "--march",
        default=None,
        help="kernel engine: the CPU to compile for, e.g. native or x86-64-v3 (default: the"
        " compiler's default target, which runs on any machine of the architecture; a library"
        " built for a newer CPU refuses to score on an older one instead of crashing)",
    )
    p.add_argument("--nthread", type=int, default=None, help="parallel compiler processes")
    p.add_argument("--no-cache", action="store_true", help="rebuild even if cached")
    p.set_defaults(func=_compile)

    p = sub.add_parser("export", help="write a model file in another library's format")
    p.add_argument("model", help="model file: XGBoost, LightGBM, Treelite, .tslim")
    p.add_argument(
        "--format",
        required=True,
        choices=sorted(_EXPORTERS),
        help="onnx (ai.onnx.ml tree ensemble, float32 input X; needs treeslim[onnx]), xgboost"
        " (JSON, or UBJSON for a .ubj name), lightgbm (model text), treelite (checkpoint)",
    )
    p.add_argument("-o", "--output", required=True, help="where to write the exported model")
    p.set_defaults(func=_export)

    p = sub.add_parser("bench", help="size, latency and quality of a model on a data file")
    p.add_argument("model", help="model file")
    p.add_argument("--data", required=True, help=".npz (X, y, qid), .npy or .csv")
    p.add_argument("--target", default=None, help="label column of a CSV file")
    p.add_argument("--nthread", type=int, default=1, help="threads for the batch figure")
    p.add_argument("--calls", type=int, default=1000, help="single-row calls to time")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_bench)

    p = sub.add_parser("compress", help="compress a model on calibration data")
    p.add_argument("model", help="model file (the output keeps its format)")
    p.add_argument("--data", required=True, help="calibration data: .npz (X, y, qid) or .csv")
    p.add_argument("--target", default=None, help="label column of a CSV file")
    p.add_argument("--max-loss", type=float, default=0.005, help="allowed metric drop")
    p.add_argument("--metric", default=None, help="auc, accuracy, logloss, rmse, r2, ndcg@10")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--bits", type=int, default=None, help="also quantize leaves and thresholds")
    p.add_argument(
        "--confidence", type=float, default=0.95, help="probability the loss on new data fits"
    )
    p.add_argument(
        "--strict", action="store_true", help="fail when the data cannot certify --max-loss"
    )
    p.add_argument(
        "--objective", default="nodes", choices=["nodes", "bytes", "latency"],
        help="what the smallest model minimises",
    )  # fmt: skip
    p.add_argument(
        "--verbose", type=int, default=1, help="0: silent; 1: progress bar on a terminal; 2: always"
    )
    p.add_argument("-o", "--output", required=True, help="where to write the compressed model")
    p.set_defaults(func=_compress)

    p = sub.add_parser("distill", help="train a small student model to mimic a model file")
    p.add_argument("model", help="teacher model file (XGBoost, LightGBM, Treelite, .tslim)")
    p.add_argument("--data", required=True, help="real rows: .npz (X, y, qid), .npy or .csv")
    p.add_argument("--target", default=None, help="label column of a CSV file")
    p.add_argument(
        "--student",
        required=True,
        help="LIB:key=val,... with LIB one of lightgbm, xgboost, sklearn-tree, sklearn-forest,"
        " sklearn-gb, mlp (e.g. lightgbm:n_estimators=50,num_leaves=15)",
    )
    p.add_argument("--n-synthetic", type=int, default=None, help="generated rows (default auto)")
    p.add_argument(
        "--augment",
        default="auto",
        choices=["auto", "munge", "leaf-box", "jitter", "swap", "none"],
        help="how rows are generated (default: chosen on held-out rows)",
    )
    p.add_argument(
        "--temperature", type=_auto_float, default="auto", help="soft-target temperature"
    )
    p.add_argument("--alpha", type=_auto_float, default="auto", help="weight of the true labels")
    p.add_argument(
        "--loss", default="auto", choices=["auto", "squared", "cross_entropy", "pairwise"]
    )
    p.add_argument(
        "--teacher-saw-rows",
        default="auto",
        choices=["auto", "yes", "no"],
        help="whether the teacher was trained on these rows; a model file cannot be refitted to"
        " choose settings on rows it never saw, so 'no' (the rows are new to it) is the honest"
        " case, and otherwise a warning says the choice can favour distillation",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="student file: the student library's format (LightGBM text, XGBoost JSON), .tslim"
        " for scikit-learn students or when the name ends in .tslim",
    )
    p.set_defaults(func=_distill)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (TreeSlimError, OSError, ValueError) as exc:
        print(f"treeslim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
