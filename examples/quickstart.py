"""Quickstart: import a fitted model, check it, export it, compile it, and report on it.

Runs on scikit-learn's bundled breast-cancer data in well under a minute:

    pip install ".[all]" && python examples/quickstart.py
"""

from __future__ import annotations

import tempfile

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import treeslim


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    model = xgb.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.1, n_jobs=1)
    model.fit(X_train, y_train)

    # 1. import: the Forest predicts exactly what XGBoost predicts
    forest = treeslim.from_model(model)
    print(forest)
    native = model.predict_proba(X_test)[:, 1]
    print(f"max |treeslim - xgboost|:          {np.abs(forest.predict(X_test) - native).max():.1e}")

    # 2. export to the format another serving stack loads
    with tempfile.TemporaryDirectory() as tmp:
        booster = treeslim.to_lightgbm(forest, f"{tmp}/model.txt")
        delta = np.abs(booster.predict(X_test.astype(np.float32)) - native).max()
        print(f"max |LightGBM export - xgboost|:   {delta:.1e}")

    # 3. compile (TL2cgen + gcc, cached) and score one row at a time
    compiled = treeslim.compile(forest)
    one = np.array([compiled.predict(row)[0] for row in X_test])
    print(f"max |compiled single-row - xgboost|: {np.abs(one - native).max():.1e}")

    # 4. one report: size, latency, quality, fidelity
    print()
    print(treeslim.report(compiled, X_test, y_test, reference=model, name="xgboost-200"))


if __name__ == "__main__":
    main()
