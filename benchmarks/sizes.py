"""Bytes per storage format, and what 8-bit leaves cost, for models trained on real datasets.

For every dataset in the data directory (see ../shared/data/README.md; the files are read in place,
never copied) an XGBoost model (500 trees, depth 6) and a LightGBM model (500 trees, 63 leaves) are
trained (2 threads unless ``--jobs``). For each: the bytes as XGBoost JSON and UBJSON, LightGBM
model text and a Treelite checkpoint (measured as :func:`treeslim.measure.format_sizes` does;
without a treeslim Treelite backend the checkpoint comes from Treelite's frontend on the native
model), ``.tslim`` lossless and with 8-bit leaves (``quantize_leaves(bits=8, method="kmeans")``,
codebook refit on up to 5,000 training rows), each also gzip'ed (level 9); and the test metric of
the original and of the 8-bit model.

    python benchmarks/sizes.py [--quick] [--jobs N] [--data DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import gzip
import os
import sys
import time

import numpy as np
from common import DATASETS, default_data_dir, load_split, train

import treeslim
from treeslim import TreeSlimError
from treeslim.formats import dump_tslim_bytes
from treeslim.measure import default_metric, evaluate, quantization_error, serialize
from treeslim.passes import quantize_leaves

QUICK = ["adult", "california_housing"]
CALIBRATION_ROWS = 5000  # training rows the 8-bit codebook is refit on ...
CALIBRATION_CELLS = 10_000_000  # ... at most this many (row, tree) pairs
FORMATS = [("xgboost_json", "XGB JSON"), ("xgboost_ubj", "XGB UBJ"),
           ("lightgbm_text", "LGB text"), ("treelite", "Treelite")]  # fmt: skip


def treelite_bytes(lib: str, model) -> bytes:
    import treelite

    if lib == "xgboost":
        return bytes(treelite.frontend.from_xgboost(model.get_booster()).serialize_bytes())
    return bytes(treelite.frontend.from_lightgbm(model.booster_).serialize_bytes())


def gz(data: bytes) -> int:
    return len(gzip.compress(data, 9, mtime=0))


def measure(lib: str, name: str, path: str, n_trees: int, n_jobs: int) -> dict:
    Xtr, ytr, qtr, Xte, yte, qte, task = load_split(path)
    t0 = time.perf_counter()
    model = train(lib, task, Xtr, ytr, qtr, n_trees, n_jobs=n_jobs)
    t_train = time.perf_counter() - t0
    forest = treeslim.from_model(model)
    raw, packed = {}, {}
    for fmt, _ in FORMATS:
        try:  # what format_sizes(forest) does, but one format failing does not stop the run
            data = serialize(forest, fmt)
        except (ImportError, TreeSlimError):
            continue
        except ValueError as exc:
            print(f"  {name} {lib}: {fmt} export failed: {exc}", file=sys.stderr)
            continue
        raw[fmt], packed[fmt] = len(data), gz(data)
    if "treelite" not in raw:
        data = treelite_bytes(lib, model)
        raw["treelite"], packed["treelite"] = len(data), gz(data)
    lossless = dump_tslim_bytes(forest)
    rng = np.random.default_rng(0)
    n_cal = min(len(Xtr), CALIBRATION_ROWS, CALIBRATION_CELLS // forest.n_trees)
    cal = Xtr[rng.choice(len(Xtr), n_cal, replace=False)]
    margin = forest.predict_margin(cal)
    q8 = quantize_leaves(forest, bits=8, method="kmeans", X=cal, y_margin=margin)
    small = dump_tslim_bytes(q8)
    metric = default_metric(task)
    m0 = evaluate(task, yte, forest.predict(Xte), qid=qte)[metric]
    m8 = evaluate(task, yte, q8.predict(Xte), qid=qte)[metric]
    err = quantization_error(forest, q8, Xte)
    err["relative"] = err["mean_abs_delta_margin"] / float(np.std(forest.predict_margin(Xte)))
    return dict(
        dataset=name, lib=lib, task=task, trees=forest.n_trees, nodes=forest.n_nodes, raw=raw,
        packed=packed, tslim=(len(lossless), gz(lossless)), tslim8=(len(small), gz(small)),
        metric=metric, m0=m0, m8=m8, err=err, seconds=time.perf_counter() - t0, train_s=t_train,
    )  # fmt: skip


def kb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024:,.1f}"


def agreement(r: dict) -> str:
    return f"{r['err']['agreement']:.4f}" if r["task"] in ("binary", "multiclass") else "n/a"


def table(rows: list[dict]) -> str:
    head = ["dataset", "model", "trees", "nodes"]
    head += [f"{label} (gz)" for _, label in FORMATS]
    head += [".tslim (gz)", ".tslim 8-bit leaves (gz)", "Treelite / .tslim", "metric",
             "original", "8-bit", "Δ", "mean abs Δ margin", "agreement"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["dataset"], r["lib"], str(r["trees"]), f"{r['nodes']:,}"]
        for key, _ in FORMATS:
            cells.append(f"{kb(r['raw'].get(key))} ({kb(r['packed'].get(key))})")
        cells += [f"{kb(r['tslim'][0])} ({kb(r['tslim'][1])})",
                  f"{kb(r['tslim8'][0])} ({kb(r['tslim8'][1])})",
                  f"{r['raw']['treelite'] / r['tslim'][0]:.1f}x", r["metric"],
                  f"{r['m0']:.4f}", f"{r['m8']:.4f}", f"{r['m8'] - r['m0']:+.5f}",
                  f"{100 * r['err']['relative']:.2f}%", agreement(r)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 datasets, 100 trees")
    parser.add_argument("--data", default=default_data_dir(), help="folder of the .npz datasets")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--datasets", nargs="*", help="only these datasets")
    parser.add_argument("--jobs", type=int, default=2, help="training threads (1 on a busy machine:"
                        " OpenMP spin-waiting makes LightGBM many times slower there)")  # fmt: skip
    args = parser.parse_args(argv)
    names = args.datasets or (QUICK if args.quick else DATASETS)
    n_trees = 100 if args.quick else 500
    rows = []
    for name in names:
        path = os.path.join(args.data, f"{name}.npz")
        if not os.path.exists(path):
            print(f"skipping {name}: {path} not found")
            continue
        for lib in ("xgboost", "lightgbm"):
            rows.append(measure(lib, name, path, n_trees, args.jobs))
            r = rows[-1]
            print(f"{name} {lib}: {r['seconds']:.0f}s (training {r['train_s']:.0f}s)", flush=True)
    sizes = (
        "Sizes in KiB, gzip level 9 in parentheses; n/a: the format cannot hold the model (or its"
        " export failed). 8-bit vs original on the test rows: mean absolute margin difference as"
        " a share of the margins' standard deviation, and the share of rows given the same class."
    )
    out = f"{table(rows)}\n\n{sizes} Trees per model: {n_trees} (x classes for multiclass).\n"
    print(out)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
