"""The MLP .tslim format: lossless round trips, real byte widths, corruption always detected."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

import treeslim
from treeslim import ModelFormatError
from treeslim.nn import (
    MLP,
    from_sklearn,
    low_rank,
    prune_neurons,
    prune_weights,
    quantize_weights,
)
from treeslim.nn._format import dump_mlp_bytes, load_mlp_bytes


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=(40, 20), max_iter=30, random_state=0).fit(X, y)
    return X, from_sklearn(clf)


def forms(X, mlp: MLP) -> dict[str, MLP]:
    pruned = prune_weights(mlp, sparsity=0.9)
    return {
        "float64": mlp,
        "float32": quantize_weights(mlp, bits=32),
        "fp16": quantize_weights(mlp, bits=16),
        "int8": quantize_weights(mlp, X, bits=8),
        "int8-act": quantize_weights(mlp, X, bits=8, activations=True),
        "sparse-mask": prune_weights(mlp, sparsity=0.5),
        "sparse-list": prune_weights(mlp, sparsity=0.97),
        "sparse-int8": quantize_weights(pruned, X, bits=8),
        "sparse-fp16": quantize_weights(pruned, bits=16),
        "lowrank": low_rank(mlp, energy=0.6),
        "lowrank-fp16": quantize_weights(low_rank(mlp, energy=0.6), bits=16),
        "neurons": prune_neurons(mlp, X, fraction=0.5),
    }


def test_round_trip_is_exact_and_file_size_is_the_claimed_bytes(digits, tmp_path):
    X, mlp = digits
    for name, m in forms(X, mlp).items():
        path = tmp_path / f"{name}.tslim"
        treeslim.save(m, path)
        back = treeslim.load(path)
        assert isinstance(back, MLP), name
        assert os.path.getsize(path) == len(dump_mlp_bytes(m)), name
        np.testing.assert_array_equal(back.predict(X), m.predict(X), err_msg=name)
        assert [layer.precision for layer in back.layers] == [layer.precision for layer in m.layers]
        assert [layer.kind for layer in back.layers] == [layer.kind for layer in m.layers]


def test_quantized_weights_are_stored_at_their_real_width(digits):
    X, mlp = digits
    f = forms(X, mlp)
    n_weights = sum(layer.n_in * layer.n_out for layer in mlp.layers)
    size = {k: len(dump_mlp_bytes(m)) for k, m in f.items()}
    # deflate (applied when it helps) trims a little; the widths still set the size
    assert 6 * n_weights < size["float64"] < 8 * n_weights + 2000
    assert 3.5 * n_weights < size["float32"] < 4 * n_weights + 2000
    assert 1.6 * n_weights < size["fp16"] < 2 * n_weights + 2000
    assert 0.8 * n_weights < size["int8"] < n_weights + 2000
    assert size["float32"] / size["int8"] > 3  # scales, biases and header on 3.6k weights
    nnz = sum(len(layer.data) for layer in f["sparse-int8"].layers)
    mask_bytes = sum((layer.n_in * layer.n_out + 7) // 8 for layer in mlp.layers)
    assert size["sparse-int8"] < nnz + mask_bytes + 2000
    assert size["float32"] / size["sparse-int8"] > 7


def test_forest_files_still_load(tmp_path):
    from sklearn.tree import DecisionTreeRegressor

    X = np.random.default_rng(0).normal(size=(50, 3))
    tree = DecisionTreeRegressor(max_depth=3).fit(X, X[:, 0])
    treeslim.save(treeslim.from_model(tree), tmp_path / "t.tslim")
    assert isinstance(treeslim.load(tmp_path / "t.tslim"), treeslim.Forest)


def test_string_classes_and_feature_names_survive(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "c"])
    y = np.where(X["a"] > 0, "yes", "no")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = from_sklearn(MLPClassifier(hidden_layer_sizes=(4,), max_iter=20).fit(X, y))
    back = load_mlp_bytes(dump_mlp_bytes(mlp))
    assert list(back.classes) == ["no", "yes"] and back.feature_names == ("a", "b", "c")


def test_corrupt_files_raise_model_format_error(digits):
    X, mlp = digits
    rng = np.random.default_rng(0)
    small = prune_weights(prune_neurons(mlp, fraction=0.8), sparsity=0.5)
    samples = [dump_mlp_bytes(m) for m in (quantize_weights(small, X[:50], bits=8), small)]
    with pytest.raises(ModelFormatError, match=r"not an MLP \.tslim file"):
        load_mlp_bytes(b"TSLIM" + samples[0][5:])
    with pytest.raises(ModelFormatError, match="checksum mismatch"):
        load_mlp_bytes(samples[0][:-1] + bytes([samples[0][-1] ^ 1]))
    with pytest.raises(ModelFormatError, match="truncated: the header says"):
        load_mlp_bytes(samples[0][:-3])
    outcomes = {"error": 0, "ok": 0}
    for i in range(300):
        data = bytearray(samples[i % 2])
        kind = i % 3
        if kind == 0:  # flip bytes anywhere (the checksum catches the payload)
            for pos in rng.integers(0, len(data), size=rng.integers(1, 4)):
                data[pos] ^= int(rng.integers(1, 256))
        elif kind == 1:  # truncate
            data = data[: int(rng.integers(0, len(data)))]
        else:  # change the payload and fix the checksum: only the parser can notice
            import struct
            import zlib

            payload = bytearray(data[20:])
            for pos in rng.integers(0, min(len(payload), 400), size=rng.integers(1, 4)):
                payload[pos] = int(rng.integers(0, 256))
            data = data[:16] + struct.pack("<I", zlib.crc32(bytes(payload))) + payload
        try:
            m = load_mlp_bytes(bytes(data))
        except ModelFormatError:
            outcomes["error"] += 1
        else:
            m.predict(X[:2])  # whatever loads is a valid, usable MLP
            outcomes["ok"] += 1
    assert outcomes["error"] > 250


def test_cli_inspects_an_mlp_file_and_refuses_tree_commands(digits, tmp_path, capsys):
    import json

    from treeslim.cli import main

    _, mlp = digits
    path = tmp_path / "net.tslim"
    treeslim.save(mlp, path)
    assert main(["inspect", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "mlp" and info["params"] > 0
    assert main(["compile", str(path), "-o", str(tmp_path / "x.so")]) == 2
    assert "holds a MLP, not a tree ensemble" in capsys.readouterr().err
