"""Quickstart: import a fitted model into treeslim, check it, export it, see its size.

Runs on scikit-learn's bundled breast-cancer data in a few seconds:

    pip install ".[all]" && python examples/quickstart.py
"""

from __future__ import annotations

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

import treeslim
from treeslim.sizes import format_sizes


def main() -> None:
    X, y = load_breast_cancer(return_X_y=True)
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=0)
    model = xgb.XGBClassifier(n_estimators=200, max_depth=4, learning_rate=0.1, n_jobs=1)
    model.fit(X_train, y_train)

    forest = treeslim.from_model(model)
    print(forest)
    native = model.predict_proba(X_test)[:, 1]
    ours = forest.predict(X_test)
    print(f"max |treeslim - xgboost| on the test split: {np.abs(ours - native).max():.2e}")

    booster = treeslim.to_lightgbm(forest)
    print(
        f"exported to LightGBM, max |delta|: {np.abs(booster.predict(X_test) - native).max():.2e}"
    )
    print("bytes per format:", format_sizes(forest))


if __name__ == "__main__":
    main()
