"""MLP compression benchmark: treeslim.nn on real data, every method against the original network.

For digits (scikit-learn) and letter, adult, california_housing (../shared/data): a teacher
``Pipeline(SimpleImputer, StandardScaler, MLP(128, 64), early stopping)`` is fitted on the train
split (60%); passes calibrate and fine-tune on the train rows, the budgeted search judges
candidates on 60% of the calibration rows (20%, unseen by the teacher) and certifies them on the
other 40% (``validation_data``), and the test split (20%) is never seen, every row is reported
on it: ``.tslim``
bytes and how many times smaller than the original stored as float32, the test metric and its
change, agreement with the original, and latency of treeslim's numpy predictor (single-row p50
over 1000 distinct rows, batch rows/s on the test split, one thread) against scikit-learn's
``predict`` on the same network in the same run.

    python benchmarks/mlp.py [--quick] [--data ../shared/data] [--out FILE]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread for both predictors

import argparse
import time
import warnings

import numpy as np
from common import default_data_dir, load, machine, split

from treeslim.measure import (
    HIGHER_IS_BETTER,
    default_metric,
    evaluate,
    fidelity,
    measure_batch,
    measure_single_row,
)
from treeslim.nn import (
    distill_mlp,
    fine_tune,
    from_sklearn,
    low_rank,
    prune_neurons,
    prune_weights,
    qat_fine_tune,
    quantize_weights,
    search_mlp,
)
from treeslim.nn._format import dump_mlp_bytes
from treeslim.nn._report import shape_text

DATASETS = ["digits", "letter", "adult", "california_housing"]


def dataset(name: str, data_dir: str, quick: bool):
    if name == "digits":
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        task = "multiclass"
    else:
        X, y, _, task = load(os.path.join(data_dir, f"{name}.npz"))
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64) / 1e5 if task == "regression" else np.asarray(y)
    tr, cal, te = split(len(y), None)
    if quick:
        tr, cal, te = tr[:4000], cal[:1500], te[:2000]
    return X, y, task, tr, cal, te


def teacher(X, y, task):
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cls = MLPRegressor if task == "regression" else MLPClassifier
    net = cls(hidden_layer_sizes=(128, 64), early_stopping=True, max_iter=200, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), net).fit(X, y)


def row(name, m, base, Xt, yt, codes, metric, sk, quick):
    pred = m.predict(Xt)
    score = evaluate(m.task, codes, pred)[metric]
    n_calls = 300 if quick else 1000
    p50, _ = measure_single_row(
        lambda r: m.predict(r.reshape(1, -1)), Xt[:n_calls], n_calls=n_calls
    )
    rps = measure_batch(m.predict, Xt, min_time=0.05 if quick else 0.2)
    fid = fidelity(m.task, pred, m.predict_margin(Xt), base.predict(Xt), base.predict_margin(Xt))
    return {
        "method": name,
        "shape": shape_text(m),
        "bytes": len(dump_mlp_bytes(m)),
        "score": score,
        "agree": fid["agreement"] if m.task != "regression" else np.nan,
        "p50": p50,
        "rps": rps,
        "sk_p50": sk[0],
        "sk_rps": sk[1],
    }


def run(name: str, data_dir: str, quick: bool, log) -> tuple[str, list[dict]]:
    X, y, task, tr, cal, te = dataset(name, data_dir, quick)
    t0 = time.perf_counter()
    pipe = teacher(X[tr], y[tr], task)
    prep = pipe[:-1]
    Xc, Xt = prep.transform(X[np.concatenate([tr, cal])]), prep.transform(X[te])
    yc, yt = y[np.concatenate([tr, cal])], y[te]
    base = from_sklearn(pipe[-1])
    codes = yt if task == "regression" else np.searchsorted(base.classes, yt)
    metric = default_metric(task)
    log(f"{name}: teacher {time.perf_counter() - t0:.1f}s")
    net = pipe[-1]
    n_calls = 300 if quick else 1000
    sk_one = lambda r: net.predict(r.reshape(1, -1))  # noqa: E731
    sk = (
        measure_single_row(sk_one, Xt[:n_calls], n_calls=n_calls)[0],
        measure_batch(net.predict, Xt, min_time=0.05 if quick else 0.2),
    )
    epochs = 3 if quick else 20
    Xf, yf = Xc[: len(tr)], yc[: len(tr)]
    Xv, yv = Xc[len(tr) :], yc[len(tr) :]  # the calibration rows: the teacher never saw them
    kw = {"max_loss": 0.01, "fine_tune_epochs": epochs, "random_state": 0}
    kw["validation_data"] = (Xv, yv)

    def searched(methods, fallback=None, want=None):
        """The search's choice; when nothing of the family is certified, its first rung."""
        res = search_mlp(base, Xf, yf, methods=methods, **kw)
        if res.name == "original" or (want and not all(w in res.name for w in want)):
            label, build = fallback
            return f"{label}: not certified", build()
        return res.name, res.mlp

    def tuned(m):
        return quantize_weights(
            fine_tune(m, Xf, yf, teacher=base, epochs=epochs, random_state=0), bits=32
        )

    first_prune = ("prune 0.5", lambda: tuned(prune_weights(base, sparsity=0.5)))

    rows = []
    f32 = quantize_weights(base, bits=32)
    builds = [
        ("original (float32)", lambda: ("", f32)),
        ("fp16", lambda: ("", quantize_weights(base, bits=16))),
        ("int8 PTQ", lambda: ("", quantize_weights(base, Xf, bits=8))),
        ("int8 PTQ, int8 activations", lambda: ("", quantize_weights(base, Xf, bits=8, activations=True))),
        ("int8 QAT", lambda: ("", qat_fine_tune(base, Xf, yf, teacher=base, epochs=epochs, random_state=0))),
        ("prune + fine-tune", lambda: searched(["prune"], first_prune)),
        ("neuron prune + fine-tune", lambda: searched(["neurons"], ("neurons 0.25", lambda: tuned(prune_neurons(base, Xf, fraction=0.25))))),
        ("low-rank + fine-tune", lambda: searched(["lowrank"], ("lowrank 0.95", lambda: tuned(low_rank(base, energy=0.95))))),
        ("prune + int8", lambda: searched(["prune", "int8", "qat"], ("prune 0.5 > int8", lambda: quantize_weights(first_prune[1](), Xf, bits=8)), want=("prune", "int8"))),
        ("distilled MLP(64) + int8", lambda: ("", quantize_weights(distill_mlp(
            base, Xf, yf, hidden_layer_sizes=(64,), alpha=0.3, epochs=3 * epochs, random_state=0,
            standardize=False), Xf, bits=8))),
        ("compress (all methods)", lambda: searched(None, ("float32", lambda: f32))),
    ]  # fmt: skip
    for label, build in builds:
        t1 = time.perf_counter()
        chosen, m = build()
        r = row(label, m, base, Xt, yt, codes, metric, sk, quick)
        r["chosen"] = chosen
        r["seconds"] = time.perf_counter() - t1
        rows.append(r)
        log(
            f"  {label}: {r['bytes']:,d} B {metric}={r['score']:.4f} [{chosen}] {r['seconds']:.1f}s"
        )
    ref = rows[0]
    f64 = len(dump_mlp_bytes(base))  # scikit-learn's own float64 weights at native width
    for r in rows:
        r["ratio"] = ref["bytes"] / r["bytes"]
        r["ratio64"] = f64 / r["bytes"]
        r["delta"] = r["score"] - ref["score"]
        if not HIGHER_IS_BETTER[metric]:
            r["delta"] = -r["delta"]
    return metric, rows


def table(results) -> str:
    head = (
        "| dataset | method | shape | .tslim bytes | x smaller vs f32 (f64) | test metric | Δ |"
        " agree | p50 µs (sklearn) | batch rows/s (sklearn) |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
    )
    lines = [head]
    for name, metric, rows in results:
        for r in rows:
            method = r["method"] + (f" [{r['chosen']}]" if r["chosen"] else "")
            agree = "-" if np.isnan(r["agree"]) else f"{r['agree']:.3f}"
            lines.append(
                f"| {name} | {method} | {r['shape']} | {r['bytes']:,d} |"
                f" {r['ratio']:.1f} ({r['ratio64']:.1f}) |"
                f" {metric} {r['score']:.4f} | {r['delta']:+.4f} | {agree} |"
                f" {r['p50']:.1f} ({r['sk_p50']:.1f}) | {r['rps']:,.0f} ({r['sk_rps']:,.0f}) |"
            )
    return "\n".join(lines)


def targets(results) -> list[str]:
    out = []
    for name, _, rows in results:
        by = {r["method"]: r for r in rows}
        for label, need in (("int8 PTQ", 4), ("prune + int8", 10)):
            r = by[label]
            ok = r["ratio"] >= need and r["delta"] >= -0.01
            ok64 = r["ratio64"] >= need and r["delta"] >= -0.01
            out.append(
                f"- {name} {label}: {r['ratio']:.1f}x smaller than float32"
                f" ({r['ratio64']:.1f}x than scikit-learn's float64), Δ {r['delta']:+.4f}"
                f" (target >= {need}x within 0.01): {'met' if ok else 'missed'} against float32,"
                f" {'met' if ok64 else 'missed'} against float64"
            )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="subsampled rows, 3 fine-tune epochs (else 20)"
    )
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("--datasets", nargs="*", default=DATASETS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    out = args.out or os.path.join(
        os.path.dirname(__file__), "results", "mlp-quick.md" if args.quick else "mlp.md"
    )
    t0 = time.perf_counter()
    results = []
    for name in args.datasets:
        metric, rows = run(name, args.data, args.quick, lambda s: print(s, flush=True))
        results.append((name, metric, rows))
    text = "\n".join(
        [
            "# MLP compression (treeslim.nn)" + (" — quick run" if args.quick else ""),
            "",
            f"Machine: {machine()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}.",
            "",
            "Teacher: StandardScaler + MLP(128, 64), early stopping, trained on 60% of the rows"
            " (train); passes calibrate and fine-tune on the train rows and the budgeted search"
            " judges candidates on 60% of the 20% calibration rows and certifies them on the other"
            " 40%; the test 20% is reported. x smaller:"
            " against the original's .tslim at float32. Metrics: accuracy (digits, letter), AUC"
            " (adult), R^2 (california_housing). Latency: treeslim's numpy predictor (probabilities"
            " / values) against scikit-learn's `predict` on the original network, same run;"
            " [..] is the candidate the budgeted search (max_loss 0.01, certified at 95%) chose,"
            " or the family's first rung when none is certified.",
            "",
            table(results),
            "",
            "Targets:",
            *targets(results),
            "",
            f"Total time: {time.perf_counter() - t0:.0f} s.",
            "",
        ]
    )
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        fh.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
