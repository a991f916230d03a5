"""Compress a scikit-learn MLP: pruning, int8 weights, and a file that is really smaller.

Trains an ``MLPClassifier`` (128, 64) on scikit-learn's bundled digits, then lets
``treeslim.nn.compress`` search pruning, neuron pruning, low-rank, fp16 and int8 (with short
fine-tuning) for the smallest network certified within 0.03 accuracy on new data (0.01 is more
than 359 calibration rows can certify). The compressed
network is saved at its real width (``treeslim.save``), loaded back, and exported to a plain
``MLPClassifier`` (dequantized) for serving stacks that only know scikit-learn.

    pip install ".[all]" && python examples/compress_mlp.py
"""

from __future__ import annotations

import os
import pickle
import tempfile

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import treeslim


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.4, random_state=0)
    X_cal, X_test, y_cal, y_test = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0)
    mlp = MLPClassifier(hidden_layer_sizes=(128, 64), max_iter=300, random_state=0)
    mlp.fit(X_train, y_train)

    # 359 calibration rows, about 140 of them set aside: they certify 0.021 accuracy or more
    est = treeslim.nn.compress(mlp, X_cal, y_cal, max_loss=0.03, random_state=0)
    print(f"certificate: {est.search_.certificate}")
    acc_before = mlp.score(X_test, y_test)
    acc_after = float(np.mean(est.predict(X_test) == y_test))
    print(f"test accuracy {acc_before:.4f} -> {acc_after:.4f}")
    print(est.report_.to_text())

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "digits.tslim")
        treeslim.save(est.mlp_, path)
        size = os.path.getsize(path)
        f32 = 4 * est.teacher_.n_params  # the original's weights and biases as float32
        print(f"\noriginal: sklearn pickle {len(pickle.dumps(mlp)):,} B, float32 parameters "
              f"{f32:,} B -> .tslim {size:,} B ({f32 / size:.1f}x smaller than float32)")  # fmt: skip
        back = treeslim.load(path)
        same = np.array_equal(back.predict(X_test), est.mlp_.predict(X_test))
        print(f"loaded back, identical predictions: {same}")
    plain = est.export()  # a fitted MLPClassifier with the dequantized (and pruned) weights
    agree = float(np.mean(plain.predict(X_test) == est.predict(X_test)))
    print(f"exported {type(plain).__name__}: agrees with the compressed network on {agree:.1%}")


if __name__ == "__main__":
    main()
