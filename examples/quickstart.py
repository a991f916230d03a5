"""Quickstart: compress a real model and see size, latency and quality before and after.

An XGBoost classifier (300 trees) trained on scikit-learn's bundled handwritten-digits data
(is the digit 5 or more?) is compressed on calibration rows it never saw, within a loss budget
certified at 95% confidence, then compiled; both models are measured on test rows neither saw:

    pip install ".[all]" && python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

import treeslim

MAX_LOSS = 0.02  # largest AUC drop allowed on new data


def main() -> None:
    X, digit = load_digits(return_X_y=True)
    y = (digit >= 5).astype(int)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, random_state=0)
    X_cal, X_test, y_cal, y_test = train_test_split(X_rest, y_rest, test_size=0.4, random_state=0)
    model = xgb.XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.1, n_jobs=1)
    model.fit(X_train, y_train)

    slim = treeslim.compress(model, X_cal, y_cal, max_loss=MAX_LOSS, random_state=0, verbose=0)
    cert = slim.search_.certificate
    print(f"certified: AUC loss <= {cert.loss_bound:.4f} at {cert.confidence:.0%} confidence"
          f" ({cert.rows} held-out calibration rows; budget {MAX_LOSS})\n")  # fmt: skip

    rows = []
    for name, forest in (("original", treeslim.from_model(model)), ("compressed", slim.forest_)):
        compiled = treeslim.compile(forest, verbose=0)
        rep = treeslim.report(compiled, X_test, y_test, name=name, n_calls=500)[0]
        rows.append((name, forest, rep))
        print(f"{name:>10}: {forest.n_trees:4d} trees {forest.n_nodes:6,d} nodes"
              f" {rep['bytes_tslim']:8,d} B .tslim | 1 row {rep['p50_us']:5.1f} us"
              f" | {rep['rows_per_s'] / 1e3:7,.0f}k rows/s | test AUC {rep['auc']:.4f}")  # fmt: skip

    (_, before, r0), (_, after, r1) = rows
    loss = r0["auc"] - r1["auc"]
    print(f"\n{before.n_nodes / after.n_nodes:.1f}x fewer nodes,"
          f" {r0['p50_us'] / r1['p50_us']:.1f}x faster single row;"
          f" test AUC loss {loss:+.4f}: {'within' if loss <= MAX_LOSS else 'OVER'} the budget")  # fmt: skip
    native = roc_auc_score(y_test, model.predict_proba(X_test)[:, 1])
    assert abs(native - r0["auc"]) < 1e-9, "the Forest must predict what XGBoost predicts"
    np.testing.assert_allclose(slim.predict_proba(X_test), after_proba(after, X_test))


def after_proba(forest: treeslim.Forest, X: np.ndarray) -> np.ndarray:
    p = forest.predict(X)
    return np.column_stack([1 - p, p])


if __name__ == "__main__":
    main()
