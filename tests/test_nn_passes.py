"""treeslim.nn passes: the compressed predictor against float references, masks kept through
fine-tuning, structured pruning that really shrinks, low rank only where it saves, errors."""

from __future__ import annotations

import numpy as np
import pytest
from models import fit_quietly as fit
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.neural_network import MLPClassifier, MLPRegressor

from treeslim.nn import (
    MLP,
    Layer,
    distill_mlp,
    fine_tune,
    from_sklearn,
    low_rank,
    prune_neurons,
    prune_weights,
    qat_fine_tune,
    quantize_weights,
)
from treeslim.nn._mlp import link


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-9)
    clf = fit(MLPClassifier(hidden_layer_sizes=(48, 24), max_iter=60, random_state=0), X, y)
    return X, y, from_sklearn(clf)


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    y = np.tanh(X @ rng.normal(size=6)) + 0.1 * X[:, 0]
    reg = fit(
        MLPRegressor(hidden_layer_sizes=(16,), activation="tanh", max_iter=200, random_state=0),
        X,
        y,
    )
    return X, y, from_sklearn(reg)


def reference(mlp: MLP, X, quantize_inputs=False):
    """Float64 forward pass over the dequantized dense weights (optionally int8-rounded inputs)."""
    x = np.asarray(X, dtype=np.float64)
    for i, layer in enumerate(mlp.layers):
        if quantize_inputs and layer.act_scale is not None:
            s = layer.act_scale
            x = np.clip(np.rint(x / s), -127, 127) * s
        x = x @ layer.dense() + layer.bias
        if i < len(mlp.layers) - 1:
            x = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}.get(
                mlp.activation, lambda z: z
            )(x)
    return link(mlp.task, x[:, 0] if mlp.n_outputs == 1 else x)


def test_int8_weights_predict_like_float_reference_of_dequantized_weights(digits):
    X, _, mlp = digits
    q = quantize_weights(mlp, X, bits=8)
    assert all(layer.precision == "int8" and layer.act_scale is None for layer in q.layers)
    assert all(layer.weight.dtype == np.int8 for layer in q.layers)
    Z = np.random.default_rng(0).normal(size=(200, 64))
    np.testing.assert_allclose(q.predict(Z), reference(q, Z), rtol=1e-10, atol=1e-12)
    # and the quantized network is close to the original
    assert np.mean(q.predict(X).argmax(1) == mlp.predict(X).argmax(1)) > 0.98


def test_int8_activation_path_accumulates_in_int32(digits):
    X, _, mlp = digits
    q = quantize_weights(mlp, X, bits=8, activations=True)
    assert all(layer.act_scale is not None for layer in q.layers)
    Z = X[:50]
    np.testing.assert_allclose(
        q.predict(Z), reference(q, Z, quantize_inputs=True), rtol=1e-9, atol=1e-12
    )
    sparse = quantize_weights(prune_weights(mlp, sparsity=0.7), X, bits=8, activations=True)
    assert all(layer.kind == "sparse" and layer.act_scale for layer in sparse.layers)
    np.testing.assert_allclose(
        sparse.predict(Z), reference(sparse, Z, quantize_inputs=True), rtol=1e-9, atol=1e-12
    )
    # the int path really rounds the inputs: it differs from the weights-only path
    weights_only = quantize_weights(mlp, X, bits=8)
    assert not np.array_equal(q.predict(Z), weights_only.predict(Z))
    layer = q.layers[0]
    xq = np.clip(np.rint(Z / layer.act_scale), -127, 127).astype(np.int32)
    acc = xq @ layer.weight.astype(np.int32)
    assert acc.dtype == np.int32
    np.testing.assert_array_equal(
        layer.apply(Z), acc * (layer.act_scale * layer.scale) + layer.bias
    )


def test_per_tensor_fp16_float32_and_bias_correction(digits):
    X, _, mlp = digits
    t = quantize_weights(mlp, bits=8, per_channel=False)
    assert len(np.unique(t.layers[0].scale)) == 1
    for bits, dtype in ((16, np.float16), (32, np.float32)):
        h = quantize_weights(mlp, bits=bits)
        assert h.layers[0].weight.dtype == dtype
        np.testing.assert_allclose(h.predict(X[:20]), reference(h, X[:20]), rtol=1e-9)
    plain = quantize_weights(mlp, X, bits=8, per_channel=False, bias_correction=False)
    corrected = quantize_weights(mlp, X, bits=8, per_channel=False)
    err = lambda m: np.abs(m.predict_margin(X) - mlp.predict_margin(X)).mean(0)  # noqa: E731
    assert (
        np.abs((corrected.predict_margin(X) - mlp.predict_margin(X)).mean(0)).max()
        < np.abs((plain.predict_margin(X) - mlp.predict_margin(X)).mean(0)).max()
    )
    assert err(corrected).mean() < 0.5


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_weights_reaches_the_sparsity_and_runs_as_csr(digits, scope):
    X, _, mlp = digits
    p = prune_weights(mlp, sparsity=0.8, scope=scope)
    total = sum(layer.n_in * layer.n_out for layer in p.layers)
    nnz = sum(len(layer.data) for layer in p.layers)
    assert abs(nnz / total - 0.2) < 0.01
    if scope == "layer":
        for layer in p.layers:
            assert abs(len(layer.data) / (layer.n_in * layer.n_out) - 0.2) < 0.01
    assert all(layer.kind == "sparse" for layer in p.layers)
    np.testing.assert_allclose(p.predict(X[:30]), reference(p, X[:30]), rtol=1e-10, atol=1e-12)
    kept = [np.abs(layer.dense()[layer.mask()]) for layer in p.layers]
    dropped = [np.abs(orig.dense()[~layer.mask()]) for orig, layer in zip(mlp.layers, p.layers)]
    if scope == "global":
        assert max(d.max() for d in dropped) <= min(k.min() for k in kept)
    assert mlp.layers[0].kind == "dense"  # input untouched
    q = quantize_weights(p, X, bits=8)
    assert q.layers[0].data.dtype == np.int8
    np.testing.assert_array_equal(q.layers[0].mask(), p.layers[0].mask())
    np.testing.assert_allclose(q.predict(X[:30]), reference(q, X[:30]), rtol=1e-10, atol=1e-12)


def test_fine_tune_keeps_masks_and_forms(digits):
    X, y, mlp = digits
    p = prune_weights(mlp, sparsity=0.9)
    before = p.predict(X)
    tuned = fine_tune(p, X, y, teacher=mlp, epochs=3, random_state=0)
    for a, b in zip(p.layers, tuned.layers):
        assert b.kind == "sparse"
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.indptr, b.indptr)
        assert np.all(b.dense()[~a.mask()] == 0)
    assert not np.allclose(before, tuned.predict(X))  # it did train
    acc = lambda m: np.mean(m.predict(X).argmax(1) == y)  # noqa: E731
    assert acc(tuned) > acc(p)
    q = qat_fine_tune(p, X, y, epochs=2, random_state=0, activations=True)
    for a, b in zip(p.layers, q.layers):
        assert b.precision == "int8" and b.act_scale is not None
        np.testing.assert_array_equal(a.mask(), b.mask())
    lr = low_rank(mlp, energy=0.8)
    tuned_lr = fine_tune(lr, X, y, epochs=1, random_state=0)
    assert [layer.kind for layer in tuned_lr.layers] == [layer.kind for layer in lr.layers]
    h = fine_tune(quantize_weights(mlp, bits=16), X, y, epochs=1, random_state=0)
    assert h.layers[0].precision == "float16"


def test_fine_tune_is_deterministic_with_random_state(regression):
    X, y, mlp = regression
    a = fine_tune(mlp, X, y, epochs=2, random_state=3).predict(X)
    b = fine_tune(mlp, X, y, epochs=2, random_state=3).predict(X)
    np.testing.assert_array_equal(a, b)


def test_prune_neurons_shrinks_and_matches_the_masked_model(digits):
    X, _, mlp = digits
    small = prune_neurons(mlp, fraction=0.5)
    assert small.hidden_sizes == (24, 12)
    assert small.layers[0].weight.shape == (64, 24) and small.layers[1].weight.shape == (24, 12)
    # the masked model: same shapes as the original, the removed neurons' outgoing weights zero
    w = [layer.dense() for layer in mlp.layers]
    b = [np.array(layer.bias) for layer in mlp.layers]
    for i in range(2):
        w_in = w[i]
        score = np.linalg.norm(w_in, axis=0) * np.linalg.norm(w[i + 1], axis=1)
        drop = np.argsort(score, kind="stable")[: w_in.shape[1] // 2]
        w[i + 1] = w[i + 1].copy()
        w[i + 1][drop] = 0.0
    masked = MLP(
        tuple(Layer(bi, weight=wi) for wi, bi in zip(w, b)), activation="relu", task="multiclass"
    )
    np.testing.assert_allclose(small.predict(X), masked.predict(X), rtol=1e-10, atol=1e-13)


def test_prune_neurons_with_data_removes_dead_relus_exactly():
    w1 = np.array([[1.0, -5.0, 0.5]])  # neuron 1 is dead on positive inputs
    w2 = np.array([[1.0], [3.0], [2.0]])
    mlp = MLP((Layer(np.zeros(3), weight=w1), Layer(np.zeros(1), weight=w2)))
    X = np.linspace(0.1, 2, 20).reshape(-1, 1)
    small = prune_neurons(mlp, X, fraction=0.34)
    assert small.hidden_sizes == (2,)
    np.testing.assert_allclose(small.predict(X), mlp.predict(X), rtol=1e-12)


def test_low_rank_only_where_it_saves():
    rng = np.random.default_rng(0)
    m, n, r = 40, 30, 3
    w = rng.normal(size=(m, r)) @ rng.normal(size=(r, n))
    small = rng.normal(size=(n, 2))  # 30x2: full rank 2 >= 30*2/32, never factored
    mlp = MLP((Layer(np.zeros(n), weight=w), Layer(np.zeros(2), weight=small)))
    f = low_rank(mlp, energy=0.999999)
    assert f.layers[0].kind == "lowrank" and f.layers[0].u.shape == (m, r)
    assert f.layers[1].kind == "dense"
    assert f.n_params < mlp.n_params
    X = rng.normal(size=(10, m))
    np.testing.assert_allclose(f.predict(X), mlp.predict(X), rtol=1e-8, atol=1e-8)
    full = MLP((Layer(np.zeros(n), weight=rng.normal(size=(m, n))),))
    assert low_rank(full, energy=0.999).layers[0].kind == "dense"  # rank ~30 > 40*30/70


def test_distill_from_a_forest_and_with_hints(digits):
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_breast_cancer(return_X_y=True)
    rf = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    student = distill_mlp(rf, X, y, hidden_layer_sizes=(8,), alpha=0.5, epochs=60, random_state=0)
    assert student.task == "binary" and student.hidden_sizes == (8,)
    assert np.mean((student.predict(X) > 0.5) == rf.predict(X)) > 0.93
    Xd, _, teacher = digits
    hinted = distill_mlp(
        teacher,
        Xd,
        standardize=False,
        hidden_layer_sizes=(16,),
        hint_weight=1.0,
        epochs=10,
        learning_rate=1e-2,
        random_state=0,
    )
    assert np.mean(hinted.predict(Xd).argmax(1) == teacher.predict(Xd).argmax(1)) > 0.9
    rng = np.random.default_rng(0)
    Xr = rng.normal(size=(200, 3))
    from sklearn.ensemble import GradientBoostingRegressor

    gb = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(Xr, Xr[:, 0] ** 2)
    reg = distill_mlp(gb, Xr, hidden_layer_sizes=(16,), epochs=40, random_state=0)
    assert reg.task == "regression"
    assert np.corrcoef(reg.predict(Xr), gb.predict(Xr))[0, 1] > 0.9


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, X, y: prune_weights(m, sparsity=1.0), r"'sparsity' parameter must be a float"),
        (lambda m, X, y: prune_weights(m, sparsity=0.5, scope="x"), "'scope' parameter"),
        (
            lambda m, X, y: prune_weights(low_rank(m, energy=0.5), sparsity=0.5),
            "layer 0 is low-rank",
        ),
        (lambda m, X, y: prune_neurons(m, fraction=[0.5]), "one value per hidden layer"),
        (lambda m, X, y: quantize_weights(m, bits=4), "'bits' parameter must be 8, 16 or 32"),
        (lambda m, X, y: quantize_weights(m, activations=True), "activations=True needs"),
        (
            lambda m, X, y: quantize_weights(m, X, activations=True, act_percentile=0),
            r"'act_percentile' parameter must be in \(0, 100\]",
        ),
        (
            lambda m, X, y: low_rank(m, energy=0.0),
            r"'energy' parameter must be a float in \(0, 1\]",
        ),
        (lambda m, X, y: fine_tune(m, X), "needs labels y, a teacher, or both"),
        (lambda m, X, y: fine_tune(m, X, y, epochs=0), "'epochs' parameter must be an int"),
        (lambda m, X, y: fine_tune(m, X, y + 100), "labels the model does not know"),
        (
            lambda m, X, y: fine_tune(m, np.where(X > 1, np.nan, X), y),
            "NaN or infinite values",
        ),
        (
            lambda m, X, y: distill_mlp(_forest(X, y), X, hint_weight=1.0),
            "hint_weight > 0 needs an MLP teacher",
        ),
        (lambda m, X, y: distill_mlp(m, X, hidden_layer_sizes=()), "hidden_layer_sizes"),
        (lambda m, X, y: distill_mlp(m, X, activation="gelu"), "activation must be one of"),
    ],
)
def test_bad_input_errors(digits, call, match):
    X, y, mlp = digits
    with pytest.raises(ValueError, match=match):
        call(mlp, X, y)


def _forest(X, y):
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=2).fit(X, y)


def test_distill_mlp_regression_is_scale_free():
    """A regression student learns standardized targets, folded back into its last layer: a
    teacher of values around 2,000 +- 400 is fitted as well as the same teacher at unit scale
    (fidelity R^2 0.74 both; on raw targets it was -18.7). (Planted bug: no target scaling;
    caught.)"""
    from sklearn.ensemble import RandomForestRegressor

    from treeslim.nn import distill_mlp

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4))
    s = np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.5 * X[:, 3]
    fidelity = []
    for scale, offset in ((1.0, 0.0), (400.0, 2000.0)):
        rf = RandomForestRegressor(n_estimators=30, random_state=0)
        rf.fit(X[:1000], offset + scale * s[:1000])
        student = distill_mlp(rf, X[:1000], hidden_layer_sizes=(32,), random_state=0)
        t = rf.predict(X[1000:])
        fidelity.append(1 - np.mean((student.predict(X[1000:]) - t) ** 2) / np.var(t))
    assert fidelity[0] > 0.5 and abs(fidelity[1] - fidelity[0]) < 0.03, fidelity
