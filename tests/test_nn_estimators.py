"""treeslim.nn.compress and the SlimMLP estimators: the budget holds on held-out rows, the
sklearn estimator contract, pipelines, pickling, export back to scikit-learn."""

from __future__ import annotations

import warnings

import joblib
import numpy as np
import pytest
from models import fit_quietly as fit
from sklearn.datasets import load_diabetes, load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import treeslim
from treeslim.nn import MLP, SlimMLPClassifier, SlimMLPRegressor, compress, from_sklearn


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    clf = fit(MLPClassifier(hidden_layer_sizes=(64,), max_iter=80, random_state=0), X, y)
    return X, y, clf


def test_compress_keeps_the_budget_and_shrinks(digits, tmp_path):
    X, y, clf = digits
    est = compress(clf, X, y, max_loss=0.01, fine_tune_epochs=4, random_state=0)
    assert isinstance(est, SlimMLPClassifier) and isinstance(est.mlp_, MLP)
    res = est.search_
    chosen = [c for c in res.candidates if c["name"] == res.name]
    assert chosen and chosen[0]["loss"] <= 0.01
    assert res.certificate is chosen[0]["certificate"] and res.certificate.certified
    assert res.certificate.loss_bound <= 0.01 and res.certificate.rows > 600
    certified = [c for c in res.candidates if c.get("certificate") and c["certificate"].certified]
    assert all(c["bytes"] >= chosen[0]["bytes"] for c in certified)
    original, compressed = est.report_[0], est.report_[1]
    assert compressed["certified"] and compressed["loss_bound"] == res.certificate.loss_bound
    assert compressed["bytes_tslim"] * 4 < original["bytes_tslim"]
    assert compressed["accuracy"] > original["accuracy"] - 0.03
    treeslim.save(est.mlp_, tmp_path / "m.tslim")
    assert (tmp_path / "m.tslim").stat().st_size == compressed["bytes_tslim"]
    back = treeslim.load(tmp_path / "m.tslim")
    np.testing.assert_array_equal(back.predict(X), est.mlp_.predict(X))
    assert "params" in str(est.report_) and "shape" in str(est.report_)
    exported = est.export()
    np.testing.assert_allclose(exported.predict_proba(X), est.predict_proba(X), atol=1e-10)


def test_regression_compress_with_methods_subset():
    X, y = load_diabetes(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    reg = fit(MLPRegressor(hidden_layer_sizes=(32,), max_iter=400, random_state=0), X, y)
    est = compress(reg, X, y, methods=["float", "int8"], max_loss=0.02, random_state=0)
    assert isinstance(est, SlimMLPRegressor)
    assert {c["name"] for c in est.search_.candidates} == {"float32", "fp16", "int8", "int8 act"}
    assert est.predict(X).shape == (len(X),)
    assert est.score(X, y) > reg.score(X, y) - 0.05


def test_pipeline_pickle_and_mlp_ir_as_inner_model(digits, tmp_path):
    X, y, clf = digits
    pipe = make_pipeline(
        StandardScaler(),
        SlimMLPClassifier(
            MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0),
            methods=["int8"],
            random_state=0,
        ),
    ).fit(X, y)
    joblib.dump(pipe, tmp_path / "p.joblib")
    again = joblib.load(tmp_path / "p.joblib")
    np.testing.assert_array_equal(again.predict(X), pipe.predict(X))
    slim = SlimMLPClassifier(from_sklearn(clf), methods=["float"], random_state=0).fit(X, y)
    np.testing.assert_array_equal(slim.classes_, np.arange(10))
    assert slim.predict_proba(X).shape == (len(X), 10)


def test_estimator_errors(digits):
    X, y, clf = digits
    with pytest.raises(ValueError, match="at least 2 classes"):
        SlimMLPClassifier().fit(X[:20], np.zeros(20))
    with pytest.raises(ValueError, match="labels the fitted inner model does not know"):
        SlimMLPClassifier(from_sklearn(clf)).fit(X, y + 1)
    with pytest.raises(ValueError, match="X has 3 features, but the inner model expects 64"):
        SlimMLPClassifier(from_sklearn(clf)).fit(X[:, :3], y)
    with pytest.raises(ValueError, match=r"Unknown methods \['zip'\]"):
        compress(clf, X, y, methods=["zip"])
    with pytest.raises(ValueError, match="'max_loss' parameter must be a float >= 0"):
        compress(clf, X, y, max_loss=-1)
    with pytest.raises(ValueError, match="'validation_fraction' parameter"):
        compress(clf, X, y, validation_fraction=1.5)
    with pytest.raises(ValueError, match="Unknown metric 'f1'"):
        compress(clf, X, y, metric="f1")
    with pytest.raises(treeslim.UnsupportedModelError, match="Cannot convert"):
        compress(StandardScaler().fit(X), X, y)


_FAST = {"methods": ["int8", "prune"], "fine_tune_epochs": 2}


@parametrize_with_checks(
    [
        SlimMLPClassifier(
            MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0), **_FAST
        ),
        SlimMLPRegressor(
            MLPRegressor(hidden_layer_sizes=(8,), max_iter=100, random_state=0), **_FAST
        ),
    ]
)
def test_sklearn_estimator_contract(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", treeslim.InsufficientDataWarning)  # the checks' tiny sets
        check(estimator)


def test_mlp_small_data_warns_and_strict_raises(digits):
    """Too few rows to certify the budget: a warning naming the smallest certifiable budget and
    the original network back (its certificate: exact); ``strict=True`` raises instead."""
    X, y, clf = digits
    with pytest.warns(
        treeslim.InsufficientDataWarning,
        match=r"can certify a loss budget \(accuracy\) of 0.0\d+ or more",
    ):
        est = compress(clf, X[:150], y[:150], max_loss=0.01, random_state=0, verbose=0)
    assert est.search_.name == "original" and est.search_.candidates == []
    assert est.search_.certificate.certified and est.search_.certificate.loss_bound == 0.0
    with pytest.raises(treeslim.InsufficientDataError, match=r"max_loss=0\.01 cannot be certified"):
        compress(clf, X[:150], y[:150], max_loss=0.01, strict=True, verbose=0)


def test_validation_data_judges_and_certifies_on_its_own_rows():
    """X the teacher's training rows, validation_data rows it never saw: a share of the new rows
    certifies and the rest judges (a certificate on the training rows would measure the loss
    against a teacher that knows their labels); all of X fits."""
    from treeslim.data import calibration_split
    from treeslim.measure import evaluate
    from treeslim.nn import search_mlp

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    clf = fit(MLPClassifier(hidden_layer_sizes=(32,), max_iter=60, random_state=0), X[:1000],
              y[:1000])  # fmt: skip
    teacher = from_sklearn(clf)
    Xn, yn = X[1000:], y[1000:]
    res = search_mlp(teacher, X[:1000], y[:1000], validation_data=(Xn, yn), methods=["float", "int8"],
                     max_loss=0.05, fine_tune_epochs=1, random_state=0, verbose=0)  # fmt: skip
    _, judge, cert = calibration_split(len(Xn), None, certify=0.4, holdout_fraction=0.0,
                                       random_state=0)  # fmt: skip
    assert len(judge) + len(cert) == len(Xn) and res.certificate is not None
    assert res.certificate.rows == len(cert) and res.certificate.certified
    codes = np.searchsorted(teacher.classes, yn[judge])
    want = evaluate("multiclass", codes, teacher.predict(Xn[judge]))["accuracy"]
    assert res.baseline == pytest.approx(want)
