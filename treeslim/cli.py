"""The ``treeslim`` command line: a thin layer over the public API.

Reads native model files only (never unpickles). Every subcommand returns an exit code; errors
are printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main"]


def _inspect(args: argparse.Namespace) -> int:
    from .frontends import load
    from .sizes import format_sizes

    forest = load(args.model)
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treeslim", description="Compress and compile tree ensembles."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("inspect", help="describe a model file (XGBoost, LightGBM, Treelite)")
    p.add_argument("model", help="model file: XGBoost .json/.ubj, LightGBM .txt, Treelite checkpoint")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    from ._errors import TreeSlimError

    args = _parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (TreeSlimError, OSError, ValueError) as exc:
        print(f"treeslim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
