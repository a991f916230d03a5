"""The MLP IR and its sklearn frontend: exact equivalence with scikit-learn, validation errors."""

from __future__ import annotations

import numpy as np
import pytest
from models import fit_quietly as fit
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier, MLPRegressor

from treeslim import UnsupportedModelError
from treeslim.nn import MLP, InvalidMLPError, Layer, from_sklearn, to_sklearn

ACTIVATIONS = ["relu", "tanh", "logistic", "identity"]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_classes", [2, 10])
def test_classifier_matches_sklearn_on_random_inputs(digits, activation, n_classes):
    X, y = digits
    keep = y < n_classes
    clf = fit(
        MLPClassifier(
            hidden_layer_sizes=(12, 7), activation=activation, max_iter=40, random_state=0
        ),
        X[keep],
        y[keep],
    )
    mlp = from_sklearn(clf)
    Z = np.random.default_rng(1).normal(size=(300, X.shape[1])) * 2
    proba = clf.predict_proba(Z)
    if n_classes == 2:
        assert mlp.task == "binary"
        np.testing.assert_allclose(mlp.predict(Z), proba[:, 1], rtol=1e-12, atol=1e-14)
    else:
        assert mlp.task == "multiclass"
        np.testing.assert_allclose(mlp.predict(Z), proba, rtol=1e-12, atol=1e-14)
    back = to_sklearn(mlp)
    np.testing.assert_array_equal(back.predict(Z), clf.predict(Z))
    np.testing.assert_allclose(back.predict_proba(Z), proba, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_targets", [1, 3])
def test_regressor_matches_sklearn_on_random_inputs(activation, n_targets):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    y = X @ rng.normal(size=(5, n_targets))
    y = y[:, 0] if n_targets == 1 else y
    reg = fit(
        MLPRegressor(hidden_layer_sizes=(9, 4), activation=activation, max_iter=50, random_state=0),
        X,
        y,
    )
    mlp = from_sklearn(reg)
    Z = rng.normal(size=(100, 5)) * 3
    np.testing.assert_allclose(mlp.predict(Z), reg.predict(Z), rtol=1e-12, atol=1e-12)
    assert mlp.predict(Z).shape == reg.predict(Z).shape
    np.testing.assert_allclose(to_sklearn(mlp).predict(Z), reg.predict(Z), rtol=1e-12)


def test_string_labels_and_feature_names_round_trip():
    import pandas as pd

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(120, 3)), columns=["a", "b", "c"])
    y = np.where(X["a"] > 0, "yes", "no")
    clf = fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=30, random_state=0), X, y)
    mlp = from_sklearn(clf)
    assert mlp.feature_names == ("a", "b", "c")
    np.testing.assert_array_equal(to_sklearn(mlp).predict(X), clf.predict(X))
    with pytest.raises(ValueError, match="feature names"):
        mlp.predict(X[["b", "a", "c"]].set_axis(["b", "a", "x"], axis=1))


def test_wrong_feature_count_is_a_clear_error(digits):
    X, y = digits
    mlp = from_sklearn(
        fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y)
    )
    with pytest.raises(ValueError, match="X has 3 features, but this model expects 64"):
        mlp.predict(np.zeros((2, 3)))


def test_unsupported_models_are_refused():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    with pytest.raises(UnsupportedModelError, match="multilabel"):
        from_sklearn(
            fit(MLPClassifier(hidden_layer_sizes=(3,), max_iter=5), X, (X[:, :2] > 0).astype(int))
        )
    if "loss" in MLPRegressor().get_params():  # scikit-learn >= 1.7 has Poisson MLPs
        with pytest.raises(UnsupportedModelError, match="'exp'"):
            from_sklearn(
                fit(
                    MLPRegressor(hidden_layer_sizes=(3,), loss="poisson", max_iter=5),
                    X,
                    np.abs(X[:, 0]),
                )
            )
    with pytest.raises(UnsupportedModelError, match="not fitted"):
        from_sklearn(MLPRegressor())
    with pytest.raises(UnsupportedModelError, match=r"Cannot convert a .*LinearRegression"):
        from sklearn.linear_model import LinearRegression

        from_sklearn(LinearRegression())


def _dense(n_in, n_out, **kw):
    return Layer(np.zeros(n_out), weight=np.ones((n_in, n_out)), **kw)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: MLP(()), "at least one Layer"),
        (lambda: MLP((_dense(2, 1),), activation="gelu"), "activation must be one of"),
        (lambda: MLP((_dense(2, 1),), task="ranking"), "task must be one of"),
        (lambda: MLP((_dense(2, 3), _dense(4, 1))), "layer 1: takes 4 inputs but layer 0 gives 3"),
        (lambda: MLP((_dense(2, 2),), task="binary"), "binary MLP has 1 output"),
        (lambda: MLP((_dense(2, 2),), task="multiclass"), "multiclass MLP has >= 3"),
        (lambda: MLP((Layer(np.zeros(1)),)), "layer 0: exactly one of weight"),
        (
            lambda: MLP((Layer(np.zeros(2), weight=np.ones((3, 2), np.int8)),)),
            "layer 0: int8 weights need a per-channel scale",
        ),
        (
            lambda: MLP((Layer(np.zeros(2), weight=np.ones((3, 2), np.int8), scale=[1, 0]),)),
            "scale must be 2 finite positive",
        ),
        (
            lambda: MLP((Layer(np.zeros(2), weight=np.ones((3, 2)), act_scale=1.0),)),
            "act_scale must be",
        ),
        (
            lambda: MLP((Layer(np.zeros(1), weight=np.array([[np.nan]])),)),
            "weights must be finite",
        ),
        (
            lambda: MLP((Layer([np.inf], weight=np.ones((1, 1))),)),
            "bias must be finite",
        ),
        (
            lambda: MLP(
                (Layer(np.zeros(2), data=[1.0, 2.0], indices=[1, 0], indptr=[0, 2, 2], n_in=3),)
            ),
            "output channel 0 must be sorted",
        ),
        (
            lambda: MLP(
                (Layer(np.zeros(2), data=[1.0, 2.0], indices=[1, 5], indptr=[0, 1, 2], n_in=3),)
            ),
            r"indices must lie in \[0, 3\)",
        ),
        (
            lambda: MLP((Layer(np.zeros(2), data=[1.0], indices=[0], indptr=[0, 1], n_in=3),)),
            "indptr must have 3 entries",
        ),
        (
            lambda: MLP((Layer(np.zeros(2), u=np.ones((3, 2)), v=np.ones((3, 2))),)),
            "lowrank factors",
        ),
        (
            lambda: MLP((_dense(2, 1),), task="binary", classes=[0, 1, 2]),
            "classes must hold 2 labels",
        ),
        (lambda: MLP((_dense(2, 1),), feature_names=("a",)), "feature_names has 1 names"),
    ],
)
def test_invalid_mlps_are_refused(build, match):
    with pytest.raises(InvalidMLPError, match=match):
        build()


def test_ir_arrays_are_read_only(digits):
    X, y = digits
    mlp = from_sklearn(
        fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y)
    )
    with pytest.raises(ValueError, match="read-only"):
        mlp.layers[0].weight[0, 0] = 1.0


def test_pickled_ir_predicts_the_same_and_stays_read_only(digits):
    import pickle

    X, y = digits
    mlp = from_sklearn(
        fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=5, random_state=0), X, y)
    )
    mlp.predict(X[:3])  # fills the per-layer cache, which must pickle too
    back = pickle.loads(pickle.dumps(mlp))
    np.testing.assert_array_equal(back.predict(X), mlp.predict(X))
    with pytest.raises(ValueError, match="read-only"):
        back.layers[0].weight[0, 0] = 1.0
