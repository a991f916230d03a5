"""Oracle tests of the Treelite backend and frontend against GTIL, Treelite's reference predictor.

GTIL compares inputs in the model's threshold type without rounding them to float32 first, so rows
for a float64 model of a float32 forest are rounded here; its output has shape
(n_rows, num_target, num_class) and is squeezed to the Forest's (n,) / (n, k).
"""

from __future__ import annotations

import functools

import fuzz
import numpy as np
import pytest
import treelite
import treelite.sklearn
from oracle import assert_close, oracle_rows
from sklearn import ensemble
from treelite.model_builder import Metadata, ModelBuilder, PostProcessorFunc, TreeAnnotation

import treeslim
from treeslim import ModelFormatError, UnsupportedModelError
from treeslim.backends import to_treelite
from treeslim.frontends import (
    forest_from_sklearn,
    forest_from_treelite,
    forest_from_treelite_checkpoint,
    looks_like_treelite_checkpoint,
)

xgb = pytest.importorskip("xgboost")
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")


@functools.cache
def data(nan: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    y = np.digitize(X[:, 0] + X[:, 1] + rng.normal(scale=0.5, size=240), [-1.0, 0.0, 1.0])
    if nan:
        X = X.copy()
        X[rng.random(X.shape) < 0.15] = np.nan
    return X, y


def _xgb(params: dict, label) -> treeslim.Forest:
    X, y = data(True)
    dtrain = xgb.DMatrix(X, label(y))
    booster = xgb.train({"max_depth": 3, "nthread": 1, **params}, dtrain, 4)
    return treeslim.from_model(booster)


FORESTS = {
    "sk-rf-bin": lambda: ensemble.RandomForestClassifier(
        n_estimators=3, max_depth=4, random_state=0
    ).fit(*_bin(True)),
    "sk-rf-multi": lambda: ensemble.RandomForestClassifier(
        n_estimators=3, max_depth=4, random_state=0
    ).fit(*data(True)),
    "sk-gb-multi": lambda: ensemble.GradientBoostingClassifier(
        n_estimators=3, max_depth=3, random_state=0
    ).fit(*data(False)),
    "sk-gb-exponential": lambda: ensemble.GradientBoostingClassifier(
        n_estimators=3, max_depth=3, loss="exponential", random_state=0
    ).fit(*_bin(False)),
    "sk-hgb-poisson": lambda: ensemble.HistGradientBoostingRegressor(
        max_iter=4, max_depth=3, loss="poisson"
    ).fit(data(True)[0], data(True)[1] + 0.5),
    "xgb-logistic": lambda: _xgb({"objective": "binary:logistic"}, lambda y: y > 1),
    "xgb-softprob": lambda: _xgb({"objective": "multi:softprob", "num_class": 4}, lambda y: y),
    "xgb-squarederror": lambda: _xgb({"objective": "reg:squarederror"}, lambda y: y * 1.5),
    "xgb-poisson": lambda: _xgb({"objective": "count:poisson"}, lambda y: y),
}


def _bin(nan: bool) -> tuple[np.ndarray, np.ndarray]:
    X, y = data(nan)
    return X, (y > 1).astype(int)


@functools.cache
def forest(name: str) -> treeslim.Forest:
    obj = FORESTS[name]()
    return obj if isinstance(obj, treeslim.Forest) else forest_from_sklearn(obj)


def gtil(model, X: np.ndarray, *, margin: bool = False) -> np.ndarray:
    out = treelite.gtil.predict(model, X, pred_margin=margin, nthread=1)
    assert out.shape[:2] == (len(X), 1)
    out = out.reshape(len(X), -1)
    return out[:, 0] if out.shape[1] == 1 else out


def rounded(f: treeslim.Forest, X: np.ndarray) -> np.ndarray:
    return X.astype(np.float32).astype(np.float64) if f.feature_dtype == "float32" else X


@pytest.mark.parametrize("name", sorted(FORESTS))
def test_to_treelite_matches_gtil(name: str) -> None:
    f = forest(name)
    model = to_treelite(f)
    X = oracle_rows(f, n=300)
    prob = f.task in ("binary", "multiclass")
    assert_close(gtil(model, rounded(f, X)), f.predict(X), prob=prob, what=name)
    assert_close(gtil(model, rounded(f, X), margin=True), f.predict_margin(X), what=name)


NODE_FIELDS = (
    "split_index threshold cleft cright leaf_value tree_offsets tree_class base_score data_count"
    " gain sum_hess"
).split()
HEADER_FIELDS = (
    "task num_class postprocessor sigmoid_alpha average comparison feature_dtype feature_names"
    " num_feature"
).split()


@pytest.mark.parametrize("name", sorted(FORESTS))
def test_round_trip_is_exact(name: str) -> None:
    f = forest(name)
    back = forest_from_treelite(to_treelite(f))
    for field in NODE_FIELDS:
        a, b = getattr(back, field), getattr(f, field)
        assert (a is None and b is None) or np.array_equal(a, b), field
    mask = f.split_index >= 0
    assert np.array_equal(back.default_left[mask], f.default_left[mask])
    for field in HEADER_FIELDS:
        assert getattr(back, field) == getattr(f, field), field
    assert back.source["library"] == f.source["library"] and back.source["via"] == "treelite"
    X = oracle_rows(f, n=300)
    assert np.array_equal(back.predict(X), f.predict(X))


def test_base_scores_survive_exactly() -> None:
    """Treelite's builder parses base_scores from JSON and can lose the last bit of a float64."""
    f = forest("xgb-softprob")
    base = np.random.default_rng(3).normal(size=4) / 3
    back = forest_from_treelite(to_treelite(f.replace(base_score=base)))
    assert np.array_equal(back.base_score, base)


@pytest.mark.parametrize("name", ["sk-rf-multi", "sk-gb-multi", "xgb-logistic", "xgb-softprob"])
def test_float32_model_rounds_inputs_itself(name: str) -> None:
    f = forest(name)
    X = oracle_rows(f, n=300)
    model = to_treelite(f, threshold_type="float32")
    assert model.input_type == "float32"
    assert_close(gtil(model, X), f.predict(X), prob=True, what=name)
    # the float64 model needs rounded rows: on raw rows it disagrees
    assert not np.allclose(gtil(to_treelite(f), X), f.predict(X), atol=1e-6)
    back = forest_from_treelite(model)
    assert back.feature_dtype == "float32"
    assert_close(back.predict(X), f.predict(X), prob=True, what=name)


def test_backend_refusals() -> None:
    f = forest("xgb-softprob")
    with pytest.raises(UnsupportedModelError, match=r"replace\(postprocessor='softmax'\)"):
        to_treelite(f.replace(postprocessor="argmax"))
    with pytest.raises(ValueError, match="threshold_type='float64'"):
        to_treelite(forest("sk-hgb-poisson"), threshold_type="float32")
    with pytest.raises(ValueError, match="must be 'float64' or 'float32'"):
        to_treelite(f, threshold_type="float16")


NATIVE = {
    "sklearn-rf": lambda: treelite.sklearn.import_model(
        ensemble.RandomForestClassifier(n_estimators=3, max_depth=4, random_state=0).fit(
            *data(True)
        )
    ),
    "sklearn-gb": lambda: treelite.sklearn.import_model(
        ensemble.GradientBoostingRegressor(n_estimators=3, max_depth=3, random_state=0).fit(
            *data(False)
        )
    ),
    "sklearn-hgb": lambda: treelite.sklearn.import_model(
        ensemble.HistGradientBoostingClassifier(max_iter=3, max_depth=3).fit(*_bin(True))
    ),
    "xgboost": lambda: treelite.frontend.from_xgboost(
        xgb.train(
            {"objective": "multi:softprob", "num_class": 4, "max_depth": 3, "nthread": 1},
            xgb.DMatrix(*data(True)),
            3,
        )
    ),
}


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_forest_from_native_treelite_models(name: str) -> None:
    model = NATIVE[name]()
    f = treeslim.from_model(model)
    assert f.feature_dtype == ("float32" if name == "xgboost" else "float64")
    X = oracle_rows(f, n=300)
    assert_close(f.predict(X), gtil(model, X), prob=name != "sklearn-gb", what=name)


def test_forest_from_lightgbm_via_treelite() -> None:
    lgb = pytest.importorskip("lightgbm")
    X, y = data(True)
    booster = lgb.train(
        {
            "objective": "multiclass",
            "num_class": 4,
            "num_leaves": 7,
            "num_threads": 1,
            "verbose": -1,
        },
        lgb.Dataset(X, y),
        3,
    )
    model = treelite.frontend.from_lightgbm(booster)
    f = forest_from_treelite(model)
    Xr = oracle_rows(f, n=300)
    assert_close(f.predict(Xr), gtil(model, Xr), prob=True)


def _hand_built(ops: list[str], thresholds: list[float], *, categorical: bool = False):
    """Stumps-of-depth-2 trees, one per (op, threshold), mixing every operator."""
    n = len(ops)
    b = ModelBuilder(
        threshold_type="float64",
        leaf_output_type="float64",
        metadata=Metadata(
            num_feature=2,
            task_type="kRegressor",
            average_tree_output=False,
            num_target=1,
            num_class=[1],
            leaf_vector_shape=(1, 1),
        ),
        tree_annotation=TreeAnnotation(num_tree=n, target_id=[0] * n, class_id=[0] * n),
        postprocessor=PostProcessorFunc(name="identity"),
        base_scores=[0.0],
    )
    for t, (op, thr) in enumerate(zip(ops, thresholds)):
        b.start_tree()
        b.start_node(0)
        if categorical and t == 0:
            b.categorical_test(
                0,
                default_left=True,
                category_list=[1],
                category_list_right_child=False,
                left_child_key=1,
                right_child_key=2,
            )
        else:
            b.numerical_test(
                t % 2, thr, default_left=t % 3 == 0, opname=op, left_child_key=1, right_child_key=2
            )
        b.end_node()
        b.start_node(1)
        b.numerical_test(
            1 - t % 2,
            thr / 2,
            default_left=t % 2 == 0,
            opname=op,
            left_child_key=3,
            right_child_key=4,
        )
        b.end_node()
        for key, value in ((2, 1.0), (3, 10.0), (4, 100.0)):
            b.start_node(key)
            b.leaf(value * (t + 1))
            b.end_node()
        b.end_tree()
    return b.commit()


@pytest.mark.parametrize("majority", ["<", "<="])
def test_mixed_operators_convert_exactly(majority: str) -> None:
    ops = [majority] * 4 + ["<", "<=", ">", ">=", ">", ">="]
    thresholds = [0.5, -0.25, np.inf, -np.inf, 0.5, np.inf, -np.inf, 1e-300, np.inf, -np.inf]
    model = _hand_built(ops, thresholds)
    f = forest_from_treelite(model)
    assert f.comparison == majority
    special = np.array([0.5, 0.25, -0.25, -0.125, 1e-300, 5e-301, 0.0, np.inf, -np.inf, np.nan])
    near = np.concatenate([special, np.nextafter(special, np.inf), np.nextafter(special, -np.inf)])
    X = np.array(np.meshgrid(near, near)).reshape(2, -1).T
    assert np.array_equal(f.predict(X), gtil(model, X))


def test_frontend_refusals() -> None:
    assert forest_from_treelite(_hand_built(["<"], [0.5], categorical=True)).n_categorical_splits
    with pytest.raises(UnsupportedModelError, match=r"x == threshold"):
        forest_from_treelite(_hand_built(["=="], [0.5]))
    X, y = data(False)
    iso = treelite.sklearn.import_model(ensemble.IsolationForest(n_estimators=2).fit(X))
    with pytest.raises(UnsupportedModelError, match="isolation-forest"):
        forest_from_treelite(iso)
    multi = treelite.sklearn.import_model(
        ensemble.RandomForestRegressor(n_estimators=2, max_depth=2).fit(X, np.c_[y, y])
    )
    with pytest.raises(UnsupportedModelError, match="2 targets"):
        forest_from_treelite(multi)


# ------------------------------------------------------------------ checkpoints
@functools.cache
def checkpoint() -> bytes:
    X, y = data(True)
    rf = ensemble.RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(X, y)
    return to_treelite(forest_from_sklearn(rf)).serialize_bytes()


def test_checkpoint_load(tmp_path) -> None:
    data_ = checkpoint()
    assert looks_like_treelite_checkpoint(data_)
    assert not looks_like_treelite_checkpoint(b'{"learner": {}}' + bytes(40))
    assert not looks_like_treelite_checkpoint(data_[:10])
    path = tmp_path / "model.bin"
    path.write_bytes(data_)
    f = treeslim.load(path)
    X = oracle_rows(f, n=200)
    assert np.array_equal(
        f.predict(X), forest_from_treelite(treelite.Model.deserialize_bytes(data_)).predict(X)
    )


def test_truncated_checkpoint_raises(tmp_path) -> None:
    data_ = checkpoint()
    for n in range(0, len(data_), 7):
        with pytest.raises(ModelFormatError, match=r"cut\.bin"):
            forest_from_treelite_checkpoint(data_[:n], name="cut.bin")
    path = tmp_path / "cut.bin"
    path.write_bytes(data_[:-3])
    with pytest.raises(ModelFormatError, match=r"cut\.bin.*truncated"):
        treeslim.load(path)


def test_crafted_checkpoints_that_crash_treelite() -> None:
    """Inputs on which Treelite 4.8 hangs (huge array length) or segfaults (short node array)."""
    data_ = checkpoint()
    hang = bytearray(data_)
    hang[39] = 0xFF  # top byte of the num_class array length
    with pytest.raises(ModelFormatError, match=r"claims \d+ entries"):
        forest_from_treelite_checkpoint(bytes(hang), name="hang.bin")
    n_nodes = int(
        treelite.Model.deserialize_bytes(data_).get_tree_accessor(0).get_field("num_nodes")[0]
    )
    # a tree starts with num_nodes (int32), has_categorical_split (0), len(node_type) (uint64)
    r = data_.index(n_nodes.to_bytes(4, "little") + b"\x00" + n_nodes.to_bytes(8, "little"))
    short = bytearray(data_)
    short[r : r + 4] = (n_nodes + 1).to_bytes(4, "little")
    with pytest.raises(ModelFormatError, match="entries for"):
        forest_from_treelite_checkpoint(bytes(short), name="short.bin")


@pytest.mark.filterwarnings("ignore:.*newer Treelite version:UserWarning")
def test_byte_flips_never_crash() -> None:
    data_ = checkpoint()
    outcomes = {"ok": 0, "error": 0}
    for i in range(len(data_)):
        for value in (0xFF, data_[i] ^ 1, 0x80):
            if value == data_[i]:
                continue
            flipped = bytearray(data_)
            flipped[i] = value
            try:
                forest_from_treelite_checkpoint(bytes(flipped), name="flip.bin")
                outcomes["ok"] += 1
            except (ModelFormatError, UnsupportedModelError) as exc:
                assert "flip.bin" in str(exc)
                outcomes["error"] += 1
    assert outcomes["ok"] > 0 and outcomes["error"] > 0


@pytest.mark.slow  # TREESLIM_FUZZ_N mutants per kind (default: the small form)
@pytest.mark.filterwarnings("ignore:.*newer Treelite version:UserWarning")
@pytest.mark.parametrize("name", ["sk-rf-multi", "xgb-softprob", "sk-hgb-poisson"])
def test_fuzzed_checkpoints_parse_or_fail_cleanly(name: str) -> None:
    """Bit flips, truncations and overwritten runs: a Forest that validates and predicts, or a
    TreeSlimError, within the time and memory bounds of the fuzz harness; both occur."""
    data_ = to_treelite(forest(name)).serialize_bytes()
    mutants = fuzz.byte_mutations(data_, np.random.default_rng(3))
    fuzz.fuzz(lambda d: forest_from_treelite_checkpoint(d, name="fuzz.bin"), mutants, what=name)
