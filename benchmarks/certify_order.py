"""Which chain of proposals to certify: the rules compared on the same searches.

``compress`` certifies its proposals in a sequence fixed before the certification rows are read,
stopping at the first failure (see ``treeslim.measure._certify``). The order decides how much
compression the certificate lets through, never the certificate's level. For each model below,
one search is run; then *every* proposal's upper bound on the certification rows is computed
(outside the sequence), so each rule's outcome can be read off the same numbers:

- ``likeliest``: all proposals, lowest judged loss + margin first (the rule before);
- ``size-desc``: all proposals, largest first;
- ``chain``: :func:`treeslim.measure.sequence_order` (the rule ``compress`` uses): largest first,
  the chain with the largest expected log reduction, proposals passing with the chance their
  judged loss and standard error give;
- ``oracle``: the smallest proposal whose bound passes, as if no sequence were needed.

Teachers and splits are those of ``benchmarks/compression.py``; ``compress`` runs with
``max_loss=0.005``, ``confidence=0.95`` and each seed of ``--seeds`` (the seed moves the
calibration split).

``--grid`` replays the smaller searches of ``budget.py``'s grid instead (8,000-row samples
split 50/25/25: 2,000 calibration rows; 150 boosting rounds, 100 RF trees).

    python benchmarks/certify_order.py [--grid] [--seeds 0,1] [--models adult:xgboost,...]
"""

from __future__ import annotations

import argparse
import math
import os
import warnings

import numpy as np
from common import default_data_dir, load, machine, print_and_write, split, train

import treeslim
from treeslim.data import calibration_split
from treeslim.measure import HIGHER_IS_BETTER, loss_bound, proposal_margin, sequence_order
from treeslim.runtime import fast_predict

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = (
    "adult:xgboost,adult:lightgbm,bank_marketing:lightgbm,bank_marketing:rf,"
    "credit_default:xgboost,credit_default:lightgbm,california_housing:xgboost,"
    "california_housing:lightgbm,california_housing:rf,bike_sharing_hourly:xgboost,"
    "bike_sharing_hourly:lightgbm,bike_sharing_hourly:rf"
)
MAX_LOSS, CONFIDENCE = 0.005, 0.95


def proposals(name: str, kind: str, seed: int, data: str) -> tuple[int, list[dict]]:
    """Teacher nodes, and every proposal of one search with its certification bound, on the
    splits of ``compression.py``."""
    X, y, qid, task = load(os.path.join(data, name + ".npz"))
    tr, ca, _ = split(len(X), qid)
    Xv = np.nan_to_num(X) if kind == "rf" else X  # as compression.py trains random forests
    model = train(kind, task, Xv[tr], y[tr], None if qid is None else qid[tr],
                  300 if kind == "rf" else 500, 12 if kind == "rf" else 6)  # fmt: skip
    return replay(model, Xv[ca], y[ca], None if qid is None else qid[ca], seed, n_jobs=2)


def grid_proposals(name: str, kind: str, seed: int, data: str) -> tuple[int, list[dict]]:
    """The same, on the samples of ``budget.py``'s grid (8,000 rows split 50/25/25, 150
    boosting rounds, 100 RF trees)."""
    from budget import sample_split

    X, y, qid, task = load(os.path.join(data, name + ".npz"))
    tr, ca, _ = sample_split(len(X), qid, 8000, seed)
    Xv = np.nan_to_num(X) if kind == "rf" else X
    model = train(kind, task, Xv[tr], y[tr], None if qid is None else qid[tr],
                  100 if kind == "rf" else 150, 12 if kind == "rf" else 6, n_jobs=2)  # fmt: skip
    return replay(model, Xv[ca], y[ca], None if qid is None else qid[ca], seed, n_jobs=1)


def replay(model, Xca, yca, q, seed: int, n_jobs: int) -> tuple[int, list[dict]]:
    """Compress on the calibration rows, then bound every proposal on the certification rows."""
    teacher = treeslim.from_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slim = treeslim.compress(model, Xca, yca, qid=q, max_loss=MAX_LOSS,
                                 confidence=CONFIDENCE, random_state=seed, n_jobs=n_jobs,
                                 verbose=0)  # fmt: skip
    res = slim.search_
    # the same split the search made: proposing on fit + judge rows, certifying on the rest
    _, judge_idx, cert_idx = calibration_split(len(yca), q, certify=0.4, holdout_fraction=0.3,
                                               random_state=seed)  # fmt: skip
    units = (len(judge_idx), len(cert_idx)) if q is None else (
        len(np.unique(q[judge_idx])), len(np.unique(q[cert_idx])))  # fmt: skip
    margin = proposal_margin(CONFIDENCE, *units)
    Xc, yc, qc = Xca[cert_idx], yca[cert_idx], None if q is None else q[cert_idx]
    ref = fast_predict(teacher, Xc)
    sign = 1.0 if HIGHER_IS_BETTER[res.metric] else -1.0
    out = []
    for c in res.candidates[1:]:
        if not c.accepted:
            continue
        _, bound, _ = loss_bound(teacher.task, res.metric, yc, qc, ref, fast_predict(c.forest, Xc),
                                 confidence=CONFIDENCE, random_state=seed)  # fmt: skip
        out.append({"nodes": c.nodes, "loss": sign * (res.teacher_metric - c.score),
                    "se": c.loss_se or 0.0, "margin": margin, "bound": bound})  # fmt: skip
    return teacher.n_nodes, out


def outcome(props: list[dict], order: list[int]) -> int | None:
    """Nodes of the smallest proposal certified before the first failure of ``order``."""
    best = None
    for i in order:
        if props[i]["bound"] > MAX_LOSS:
            break
        best = props[i]["nodes"] if best is None else min(best, props[i]["nodes"])
    return best


def rules(props: list[dict], original: int) -> dict[str, int | None]:
    n = range(len(props))
    score = [p["loss"] + p["margin"] * p["se"] for p in props]
    likeliest = sorted(sorted(n, key=lambda i: -props[i]["nodes"]), key=lambda i: score[i])
    size_desc = sorted(sorted(n, key=lambda i: score[i]), key=lambda i: -props[i]["nodes"])
    chain = sequence_order([p["nodes"] for p in props], [p["loss"] for p in props],
                           [p["se"] for p in props], original=original, max_loss=MAX_LOSS,
                           confidence=CONFIDENCE,
                           margin=props[0]["margin"] if props else 1.0)  # fmt: skip
    passed = [p["nodes"] for p in props if p["bound"] <= MAX_LOSS]
    return {"likeliest": outcome(props, likeliest), "size-desc": outcome(props, size_desc),
            "chain": outcome(props, chain), "oracle": min(passed) if passed else None}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--models", default=MODELS)
    ap.add_argument("--grid", action="store_true",
                    help="budget.py's grid samples (8,000 rows, 150 rounds) instead")  # fmt: skip
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    name_out = "certify-order-grid.md" if args.grid else "certify-order.md"
    args.out = args.out or os.path.join(HERE, "results", name_out)
    get = grid_proposals if args.grid else proposals
    names = ("likeliest", "size-desc", "chain", "oracle")
    lines = [
        "# Certification order: reduction each rule lets through, on the same searches", "",
        f"Machine: {machine()}. `max_loss={MAX_LOSS}`, `confidence={CONFIDENCE}`.", "",
        "| model | seed | proposals | " + " | ".join(names) + " |",
        "|---|---:|---:|" + "---:|" * len(names),
    ]  # fmt: skip
    logs: dict[str, list[float]] = {k: [] for k in names}
    for spec in args.models.split(","):
        name, kind = spec.split(":")
        for seed in (int(s) for s in args.seeds.split(",")):
            original, props = get(name, kind, seed, args.data)
            got = rules(props, original)
            for k in names:
                logs[k].append(math.log(original / (got[k] or original)))
            cells = " | ".join(f"{original / (got[k] or original):.1f}x" for k in names)
            lines.append(f"| {name} {kind} | {seed} | {len(props)} | {cells} |")
            print(lines[-1], flush=True)
    lines += ["", "| rule | geometric mean reduction | median |", "|---|---:|---:|"]
    for k in names:
        v = sorted(logs[k])
        lines.append(f"| {k} | {math.exp(np.mean(v)):.1f}x | {math.exp(v[len(v) // 2]):.1f}x |")
    print_and_write(lines, args.out)


if __name__ == "__main__":
    main()
