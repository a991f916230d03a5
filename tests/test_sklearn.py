"""Oracle tests of the scikit-learn frontend: every estimator class and task against sklearn itself.

Rows come from ``oracle_rows`` (thresholds, their float32 / float64 neighbours, NaN, +-inf, huge
values). CART-based estimators reject inf and values beyond float32 range at predict time (and
gradient boosting rejects NaN), so those entries are replaced before asking sklearn; histogram
gradient boosting takes every row as is.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_close, oracle_rows, rows
from sklearn import dummy, ensemble, linear_model, tree

import treeslim
from treeslim import UnsupportedModelError
from treeslim.frontends import forest_from_sklearn

# sklearn's finiteness check sums rows of +-3e38 entries and warns about the inf - inf it meets
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
R = ensemble.RandomForestClassifier
GBC, GBR = ensemble.GradientBoostingClassifier, ensemble.GradientBoostingRegressor
HGBC, HGBR = ensemble.HistGradientBoostingClassifier, ensemble.HistGradientBoostingRegressor


@functools.cache
def data(target: str, nan: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    X[:, 3] = np.round(X[:, 3], 1)  # ties: thresholds between repeated values
    noise = rng.normal(scale=0.5, size=240)
    if target == "bin":
        y = (X[:, 0] + noise > 0).astype(int)
    elif target == "multi":
        y = np.digitize(X[:, 0] + X[:, 1] + noise, [-1.0, 0.0, 1.0])
    elif target == "pos":
        y = np.exp(0.5 * X[:, 0] + 0.2 * noise)
    else:
        y = 2 * X[:, 0] - X[:, 3] + noise
    if nan:
        X = X.copy()
        X[rng.random(X.shape) < 0.15] = np.nan
        y = np.where(np.isnan(X[:, 1]), y.max() if target != "multi" else 3, y)
    return X, y


CASES = {
    "tree-bin": (lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0), "bin", False),
    "tree-multi-nan": (
        lambda: tree.DecisionTreeClassifier(max_depth=5, random_state=0),
        "multi",
        True,
    ),
    "tree-reg-nan": (lambda: tree.DecisionTreeRegressor(max_depth=5, random_state=0), "reg", True),
    "extratree-multi": (
        lambda: tree.ExtraTreeClassifier(max_depth=5, random_state=0),
        "multi",
        False,
    ),
    "extratree-bin-nan": (
        lambda: tree.ExtraTreeClassifier(max_depth=5, random_state=0),
        "bin",
        True,
    ),
    "extratree-reg": (lambda: tree.ExtraTreeRegressor(max_depth=5, random_state=0), "reg", False),
    "rf-bin-nan": (lambda: R(n_estimators=4, max_depth=4, random_state=0, n_jobs=1), "bin", True),
    "rf-multi": (lambda: R(n_estimators=4, max_depth=4, random_state=0, n_jobs=1), "multi", False),
    "rf-multi-weighted": (
        lambda: R(n_estimators=3, max_depth=4, class_weight="balanced", random_state=0, n_jobs=1),
        "multi",
        True,
    ),
    "rf-reg-nan": (
        lambda: ensemble.RandomForestRegressor(
            n_estimators=4, max_depth=4, random_state=0, n_jobs=1
        ),
        "reg",
        True,
    ),
    "et-multi-nan": (
        lambda: ensemble.ExtraTreesClassifier(
            n_estimators=4, max_depth=4, random_state=0, n_jobs=1
        ),
        "multi",
        True,
    ),
    "et-reg": (
        lambda: ensemble.ExtraTreesRegressor(n_estimators=4, max_depth=4, random_state=0, n_jobs=1),
        "reg",
        False,
    ),
    "gb-bin": (lambda: GBC(n_estimators=5, max_depth=3, random_state=0), "bin", False),
    "gb-exponential": (
        lambda: GBC(n_estimators=5, max_depth=3, loss="exponential", random_state=0),
        "bin",
        False,
    ),
    "gb-multi": (lambda: GBC(n_estimators=4, max_depth=3, random_state=0), "multi", False),
    "gb-multi-zero": (lambda: GBC(n_estimators=3, max_depth=2, init="zero"), "multi", False),
    "gb-reg-huber": (
        lambda: GBR(n_estimators=5, max_depth=3, loss="huber", learning_rate=0.3, random_state=0),
        "reg",
        False,
    ),
    "gb-reg-quantile": (
        lambda: GBR(n_estimators=5, max_depth=3, loss="quantile", alpha=0.8),
        "reg",
        False,
    ),
    "gb-reg-zero": (lambda: GBR(n_estimators=5, max_depth=3, init="zero"), "reg", False),
    "gb-reg-median": (
        lambda: GBR(n_estimators=5, max_depth=3, init=dummy.DummyRegressor(strategy="median")),
        "reg",
        False,
    ),
    "hgb-bin-nan": (lambda: HGBC(max_iter=6, max_depth=3, random_state=0), "bin", True),
    "hgb-multi-nan": (lambda: HGBC(max_iter=4, max_depth=3, random_state=0), "multi", True),
    "hgb-reg-nan": (lambda: HGBR(max_iter=6, max_depth=3), "reg", True),
    "hgb-poisson-nan": (lambda: HGBR(max_iter=6, max_depth=3, loss="poisson"), "pos", True),
    "hgb-gamma": (lambda: HGBR(max_iter=6, max_depth=3, loss="gamma"), "pos", False),
    "hgb-absolute": (lambda: HGBR(max_iter=6, max_depth=3, loss="absolute_error"), "reg", True),
}


@functools.cache
def fitted(case: str):
    make, target, nan = CASES[case]
    X, y = data(target, nan)
    return make().fit(X, y)


def sklearn_rows(model, X: np.ndarray) -> np.ndarray:
    """The rows with what this estimator rejects at predict time replaced."""
    if type(model).__name__.startswith("Hist"):
        return X
    X = X.copy()
    with np.errstate(over="ignore"):
        too_big = ~np.isfinite(X.astype(np.float32)) & ~np.isnan(X)
    X[too_big] = np.sign(X[too_big]) * 3.0e38
    if type(model).__name__.startswith("Gradient"):
        X[np.isnan(X)] = 0.25
    return X


def reference(model, X: np.ndarray) -> np.ndarray:
    if hasattr(model, "predict_proba"):
        p = model.predict_proba(X)
        return p[:, 1] if p.shape[1] == 2 else p
    return model.predict(X)


def reference_margin(model, X: np.ndarray) -> np.ndarray:
    if hasattr(model, "decision_function"):
        return model.decision_function(X)
    if isinstance(model, GBR):  # GradientBoosting's _raw_predict takes validated float32 input
        X = X.astype(np.float32)
    return model._raw_predict(X).ravel()


@pytest.mark.parametrize("case", sorted(CASES))
def test_oracle(case: str) -> None:
    model = fitted(case)
    forest = forest_from_sklearn(model)
    X = sklearn_rows(model, oracle_rows(forest, n=300))
    classifier = hasattr(model, "predict_proba")
    assert_close(forest.predict(X), reference(model, X), prob=classifier, what=case)
    if hasattr(model, "_raw_predict"):
        assert_close(forest.predict_margin(X), reference_margin(model, X), what=f"{case} margin")


@pytest.mark.parametrize("case", ["rf-multi", "hgb-multi-nan", "gb-multi", "gb-exponential"])
def test_headers(case: str) -> None:
    model = fitted(case)
    forest = forest_from_sklearn(model)
    assert forest.source["library"] == "sklearn"
    assert forest.source["estimator"] == type(model).__name__
    assert forest.source["classes"] == model.classes_.tolist()
    assert forest.comparison == "<="
    assert forest.feature_dtype == ("float64" if case.startswith("hgb") else "float32")
    expected = {
        "rf-multi": ("multiclass", "identity", True, 1.0),
        "hgb-multi-nan": ("multiclass", "softmax", False, 1.0),
        "gb-multi": ("multiclass", "softmax", False, 1.0),
        "gb-exponential": ("binary", "sigmoid", False, 2.0),
    }[case]
    assert (forest.task, forest.postprocessor, forest.average, forest.sigmoid_alpha) == expected
    if case == "rf-multi":
        assert forest.leaf_width == forest.num_class == 4
        assert np.all(forest.tree_class == -1)


@pytest.mark.parametrize("case", ["rf-bin-nan", "tree-reg-nan", "gb-reg-huber", "extratree-multi"])
def test_float32_rounding_matters(case: str) -> None:
    """Comparing unrounded float64 inputs would disagree with sklearn on the oracle rows."""
    model = fitted(case)
    forest = forest_from_sklearn(model).replace(feature_dtype="float64")
    X = sklearn_rows(model, oracle_rows(forest, n=300))
    assert not np.allclose(forest.predict(X), reference(model, X), atol=1e-6)


@pytest.mark.parametrize("case", ["rf-bin-nan", "tree-multi-nan", "hgb-reg-nan", "tree-bin"])
def test_nan_follows_missing_go_to_left(case: str) -> None:
    """NaN rows are exercised: flipping every default side breaks agreement with sklearn."""
    model = fitted(case)
    forest = forest_from_sklearn(model)
    X = oracle_rows(forest, n=300, specials=False)
    X[::2, :] = np.where(np.random.default_rng(1).random(X[::2].shape) < 0.5, np.nan, X[::2])
    X = sklearn_rows(model, X)
    assert_close(forest.predict(X), reference(model, X), prob=True, what=case)
    flipped = forest.replace(default_left=~forest.default_left & (forest.split_index >= 0))
    assert not np.allclose(flipped.predict(X), reference(model, X), atol=1e-6)


def test_hgb_split_on_nan_has_infinite_threshold() -> None:
    model = fitted("hgb-reg-nan")
    forest = forest_from_sklearn(model)
    assert np.isinf(forest.threshold[forest.split_index >= 0]).any()
    X = np.array(
        [[0.0, np.inf, 0.0, 0.0], [0.0, -np.inf, 0, 0], [0.0, np.nan, 0, 0], [0.0, 1e300, 0, 0]]
    )
    assert_close(forest.predict(X), model.predict(X))


@pytest.mark.parametrize("case", ["rf-multi-weighted", "gb-bin", "hgb-poisson-nan"])
@settings(max_examples=15)
@given(data=st.data())
def test_oracle_hypothesis(case: str, data: st.DataObject) -> None:
    model = fitted(case)
    forest = forest_from_sklearn(model)
    X = sklearn_rows(model, data.draw(rows(forest)))
    assert_close(forest.predict(X), reference(model, X), prob=case != "hgb-poisson-nan", what=case)


def test_early_stopping_respected() -> None:
    X, y = data("multi")
    hgb = HGBC(
        max_iter=50,
        early_stopping=True,
        n_iter_no_change=2,
        validation_fraction=0.3,
        random_state=0,
    ).fit(X, y)
    gb = GBC(
        n_estimators=50, n_iter_no_change=2, validation_fraction=0.3, random_state=0, max_depth=2
    ).fit(X, y)
    assert hgb.n_iter_ < 50 and gb.n_estimators_ < 50
    for model, n_iter in ((hgb, hgb.n_iter_), (gb, gb.n_estimators_)):
        forest = forest_from_sklearn(model)
        assert forest.n_trees == n_iter * 4
        Xr = sklearn_rows(model, oracle_rows(forest, n=200))
        assert_close(forest.predict(Xr), model.predict_proba(Xr), prob=True)


def test_node_statistics() -> None:
    model = fitted("tree-reg-nan")
    forest = forest_from_sklearn(model)
    assert forest.data_count[0] == 240 == forest.sum_hess[0]
    inner = forest.split_index >= 0
    assert np.all(forest.gain[inner] > 0) and np.all(forest.gain[~inner] == 0)
    counts = forest.data_count
    assert np.all(counts[inner] == counts[forest.cleft[inner]] + counts[forest.cright[inner]])


def test_feature_names_and_dispatch() -> None:
    pd = pytest.importorskip("pandas")
    X, y = data("bin")
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    model = R(n_estimators=2, max_depth=3, random_state=0).fit(frame, y)
    forest = treeslim.from_model(model)
    assert forest.feature_names == ("a", "b", "c", "d")
    assert_close(forest.predict(frame), model.predict_proba(frame)[:, 1], prob=True)
    from sklearn.frozen import FrozenEstimator

    assert treeslim.from_model(FrozenEstimator(model)).n_trees == 2


def test_refuses_multi_output() -> None:
    X, y = data("reg")
    model = ensemble.RandomForestRegressor(n_estimators=2, max_depth=2).fit(X, np.c_[y, y])
    with pytest.raises(UnsupportedModelError, match=r"RandomForestRegressor.*2 outputs"):
        forest_from_sklearn(model)


def test_reads_categorical_hgb() -> None:  # in depth: tests/test_categorical_sklearn.py
    X, y = data("bin")
    X = X.copy()
    X[:, 2] = np.arange(len(X)) % 3
    model = HGBC(max_iter=2, categorical_features=[2]).fit(X, y)
    forest = forest_from_sklearn(model)
    assert forest.category_rule == "sklearn"
    np.testing.assert_allclose(forest.predict(X), model.predict_proba(X)[:, 1], rtol=1e-12)


@pytest.mark.parametrize("model", [R(), HGBR(), GBC(), tree.ExtraTreeRegressor()])
def test_refuses_unfitted(model) -> None:
    with pytest.raises(UnsupportedModelError, match=f"{type(model).__name__} is not fitted.*fit"):
        forest_from_sklearn(model)


@pytest.mark.parametrize(
    "init", [linear_model.LinearRegression(), dummy.DummyClassifier(strategy="stratified")]
)
def test_refuses_non_constant_init(init) -> None:
    X, y = data("bin")
    cls = GBR if isinstance(init, linear_model.LinearRegression) else GBC
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = cls(n_estimators=2, init=init).fit(X, y)
    with pytest.raises(UnsupportedModelError, match=r"init=.*init='zero'"):
        forest_from_sklearn(model)


def test_refuses_single_class_and_foreign_objects() -> None:
    X, _ = data("bin")
    model = tree.DecisionTreeClassifier().fit(X, np.zeros(len(X)))
    with pytest.raises(UnsupportedModelError, match="single class"):
        forest_from_sklearn(model)
    with pytest.raises(UnsupportedModelError, match="not a scikit-learn tree model"):
        forest_from_sklearn(linear_model.LinearRegression())
