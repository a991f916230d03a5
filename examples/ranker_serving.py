"""Compress a LightGBM ranker and serve it one row at a time through ``treeslim.compile``.

A real-time ranking service scores candidate documents one request at a time, so single-row
latency is what matters. This trains a LightGBM LambdaRank model (300 trees, 31 leaves) on
synthetic query/document data, compresses it within an NDCG@10 budget on calibration queries,
compiles the result (Treelite + TL2cgen + the C compiler, cached) and compares per-call latency
and NDCG on held-out queries with LightGBM's own ``predict``.

    pip install ".[all]" && python examples/ranker_serving.py
"""

from __future__ import annotations

import tempfile
import time

import lightgbm as lgb
import numpy as np

import treeslim
from treeslim.measure import ndcg_at_k


def make_queries(n_queries: int, seed: int):
    """Documents of random queries; relevance 0-4 from a hidden non-linear score plus noise."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(10, 40, n_queries)
    qid = np.repeat(np.arange(n_queries), sizes)
    X = rng.normal(size=(len(qid), 20)).astype(np.float32)
    topic = rng.normal(size=(n_queries, 3))[qid]
    score = X[:, 0] + 0.8 * np.tanh(X[:, 1] * X[:, 2]) + 0.5 * (X[:, 3:6] * topic).sum(axis=1)
    score += 0.5 * rng.normal(size=len(qid))
    y = np.digitize(score, np.quantile(score, [0.5, 0.75, 0.9, 0.97])).astype(np.int32)
    return X, y, qid


def p50_us(predict_one, rows) -> float:
    times = []
    for row in rows:
        t0 = time.perf_counter_ns()
        predict_one(row)
        times.append(time.perf_counter_ns() - t0)
    return float(np.median(times) / 1e3)


def main() -> None:
    X_tr, y_tr, q_tr = make_queries(600, 0)
    X_cal, y_cal, q_cal = make_queries(600, 1)  # 240 queries set aside certify 0.0125 or more
    X_te, y_te, q_te = make_queries(250, 2)
    ranker = lgb.LGBMRanker(n_estimators=300, num_leaves=31, learning_rate=0.05, n_jobs=1,
                            verbose=-1).fit(X_tr, y_tr, group=np.bincount(q_tr))  # fmt: skip

    slim = treeslim.compress(ranker, X_cal, y_cal, qid=q_cal, max_loss=0.02, random_state=0,
                             verbose=0)  # fmt: skip
    print(f"certificate: {slim.search_.certificate}")
    teacher, small = treeslim.from_model(ranker), slim.forest_
    print(f"trees {teacher.n_trees} -> {small.n_trees}, nodes {teacher.n_nodes:,} -> "
          f"{small.n_nodes:,} ({teacher.n_nodes / small.n_nodes:.0f}x fewer)")  # fmt: skip
    ndcg_before = ndcg_at_k(y_te, ranker.predict(X_te), q_te)
    ndcg_after = ndcg_at_k(y_te, slim.predict(X_te), q_te)
    loss = ndcg_before - ndcg_after
    print(f"test NDCG@10 {ndcg_before:.4f} -> {ndcg_after:.4f}: loss {loss:+.4f},"
          f" {'within' if loss <= 0.02 else 'OVER'} the budget 0.02")  # fmt: skip

    compiled = treeslim.compile(small)  # a shared library, cached by content
    one = np.array([compiled.predict(row)[0] for row in X_te[:500]])
    print(f"compiled single-row == forest: max |delta| = "
          f"{np.abs(one - small.predict(X_te[:500])).max():.1e}")  # fmt: skip
    rows = X_te[:2000]
    booster = ranker.booster_
    lgb_us = p50_us(lambda r: booster.predict(r[None, :]), rows[:300])
    slim_us = p50_us(compiled.predict, rows)
    print(f"single-row p50: LightGBM predict {lgb_us:.1f} us, compressed + compiled "
          f"{slim_us:.1f} us ({lgb_us / slim_us:.0f}x lower)")  # fmt: skip

    # or keep serving with LightGBM: the compressed model in LightGBM's own text format
    with tempfile.TemporaryDirectory() as tmp:
        slim.export(f"{tmp}/ranker.txt")
        native = lgb.Booster(model_file=f"{tmp}/ranker.txt")
        delta = np.abs(native.predict(X_te) - slim.predict(X_te)).max()
        print(f"exported LightGBM model: max |lightgbm - treeslim| = {delta:.1e}")


if __name__ == "__main__":
    main()
