"""Compress a fitted XGBoost classifier that lives inside a scikit-learn Pipeline.

The Pipeline (scaler + XGBoost, 300 trees) is fitted as usual; ``treeslim.compress`` takes the
fitted Pipeline and calibration data, compresses the last step within an AUC budget, and returns
a Pipeline with the same preprocessing and a ``SlimClassifier`` at the end. The compressed trees
go back to XGBoost's own format, so an XGBoost serving stack loads them unchanged.

    pip install ".[all]" && python examples/pipeline_xgboost.py
"""

from __future__ import annotations

import tempfile

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_digits
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import treeslim

MAX_LOSS = 0.02  # largest AUC drop allowed on new data (certified at 95%)


def main() -> None:
    X, digit = load_digits(return_X_y=True)
    y = (digit >= 5).astype(int)  # bundled real data: is the handwritten digit 5 or more?
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.5, random_state=0)
    X_cal, X_test, y_cal, y_test = train_test_split(X_rest, y_rest, test_size=0.4, random_state=0)
    pipe = make_pipeline(
        StandardScaler(),
        xgb.XGBClassifier(n_estimators=300, max_depth=4, learning_rate=0.05, n_jobs=1),
    ).fit(X_train, y_train)

    slim = treeslim.compress(pipe, X_cal, y_cal, max_loss=MAX_LOSS, random_state=0, verbose=0)
    est = slim[-1]  # the SlimClassifier that replaced XGBClassifier
    before, after = treeslim.from_model(pipe[-1]), est.forest_
    print(f"trees {before.n_trees} -> {after.n_trees}, nodes {before.n_nodes:,} -> "
          f"{after.n_nodes:,} ({before.n_nodes / after.n_nodes:.0f}x fewer)")  # fmt: skip
    auc_before = roc_auc_score(y_test, pipe.predict_proba(X_test)[:, 1])
    auc_after = roc_auc_score(y_test, slim.predict_proba(X_test)[:, 1])
    print(f"test AUC {auc_before:.4f} -> {auc_after:.4f}: loss {auc_before - auc_after:+.4f},"
          f" {'within' if auc_before - auc_after <= MAX_LOSS else 'OVER'} the budget {MAX_LOSS}"
          f" (certified: <= {est.search_.certificate.loss_bound:.4f})")  # fmt: skip
    print("chosen steps:", " > ".join(est.search_.chosen["steps"]))
    print(f"Pareto front: {len(est.search_.front)} of {len(est.search_.candidates)} candidates")

    # back to XGBoost: the serving stack loads a plain Booster
    with tempfile.TemporaryDirectory() as tmp:
        booster = est.export(f"{tmp}/slim.json")
        loaded = xgb.Booster(model_file=f"{tmp}/slim.json")
        Xt = slim[:-1].transform(X_test).astype(np.float32)
        delta = np.abs(loaded.predict(xgb.DMatrix(Xt)) - est.predict_proba(Xt)[:, 1]).max()
        print(f"exported {type(booster).__name__}: max |xgboost - treeslim| = {delta:.1e}")
    print()
    print(est.report_.to_text())


if __name__ == "__main__":
    main()
