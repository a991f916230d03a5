"""XGBoost categorical models in and out, ``missing=``, the parameter audit and legacy binary files.

The oracle is XGBoost itself: its ``inplace_predict`` on numpy category codes and its scikit-learn
wrappers' ``predict`` on DataFrames (whose categories XGBoost 3.1+ maps through the lists it
stored at training, whatever the DataFrame's own order).
"""

from __future__ import annotations

import functools
import json
import os

import numpy as np
import pytest
from oracle import assert_close

import treeslim
from treeslim.frontends import forest_from_xgboost, forest_from_xgboost_bytes
from treeslim.ir import Forest, TreeArrays, bitset_table

xgb = pytest.importorskip("xgboost")
pd = pytest.importorskip("pandas")

DATA = os.path.join(os.path.dirname(__file__), "data")
CITIES = ["oslo", "rome", "lima", "kiev", "pune", "baku", "doha", "riga", "bern", "kobe", "suva"]
GRADES = [3, 5, 7, 10, 11, 20, 31, 40]  # integer categories: codes are positions, not values
ODD = [np.nan, -1.0, -0.5, -0.0, 3.7, 2.0**31, 1e10, np.inf, -np.inf, 64.0, 1e6]
TASKS = ["binary", "multiclass", "regression", "ranking"]


def _frame(seed: int, n: int = 900):
    rng = np.random.default_rng(seed)
    city = rng.integers(0, len(CITIES), n)
    grade = rng.integers(0, len(GRADES), n)
    x = rng.normal(size=n).astype(np.float32)
    X = pd.DataFrame({
        "city": pd.Categorical.from_codes(city, CITIES),
        "x": x,
        "grade": pd.Categorical.from_codes(grade, GRADES),
    })  # fmt: skip
    X.loc[rng.random(n) < 0.05, "city"] = np.nan
    X.loc[rng.random(n) < 0.05, "x"] = np.nan
    score = np.isin(city, [0, 2, 3, 7, 9]) * 1.5 + (grade % 3 == 1) + 0.8 * np.nan_to_num(x)
    return X, score + 0.3 * rng.normal(size=n)


@functools.cache
def model(task: str, onehot: bool):
    """``onehot``: every categorical split tests one category (``max_cat_to_onehot`` above the
    category counts); otherwise partition splits over sets of categories."""
    X, score = _frame(0)
    kw = dict(n_estimators=12, max_depth=4, enable_categorical=True, random_state=0,
              max_cat_to_onehot=64 if onehot else 1)  # fmt: skip
    if task == "binary":
        return xgb.XGBClassifier(**kw).fit(X, (score > 1.2).astype(int))
    if task == "multiclass":
        return xgb.XGBClassifier(**kw).fit(X, np.digitize(score, [0.7, 1.8]))
    if task == "regression":
        return xgb.XGBRegressor(**kw).fit(X, score)
    qid = np.repeat(np.arange(45), 20)
    return xgb.XGBRanker(**kw).fit(X, np.digitize(score, [0.7, 1.8]), qid=qid)


def _native(m, X, margin=True):
    booster = m.get_booster() if hasattr(m, "get_booster") else m
    return booster.inplace_predict(X, predict_type="margin" if margin else "value")


def code_rows(n: int = 600, seed: int = 1) -> np.ndarray:
    """numpy rows of codes: every code in and out of every set, beyond them, and odd values."""
    rng = np.random.default_rng(seed)
    city = np.concatenate([np.arange(len(CITIES) + 3, dtype=float), ODD])
    grade = np.concatenate([np.arange(len(GRADES) + 3, dtype=float), ODD])
    x = np.concatenate([rng.normal(size=20), [np.nan, np.inf, -np.inf, 0.0]])
    return np.column_stack([rng.choice(city, n), rng.choice(x, n), rng.choice(grade, n)])


def _shuffled(X: pd.DataFrame) -> pd.DataFrame:
    """The same values, with each category column's categories listed in another order."""
    out = X.copy()
    out["city"] = out["city"].cat.reorder_categories(CITIES[::-1])
    out["grade"] = out["grade"].cat.reorder_categories(GRADES[3:] + GRADES[:3])
    return out


def _predictions(m, X) -> np.ndarray:
    if hasattr(m, "predict_proba"):
        p = m.predict_proba(X)
        return p[:, 1] if p.shape[1] == 2 else p
    return m.predict(X)


@pytest.mark.parametrize("onehot", [False, True], ids=["partition", "onehot"])
@pytest.mark.parametrize("task", TASKS)
def test_oracle_categorical_codes_and_dataframes(task, onehot):
    m = model(task, onehot)
    forest = treeslim.from_model(m)
    sizes = [len(forest.category_set(int(v))) for v in np.flatnonzero(forest.is_categorical)]
    assert sizes and (max(sizes) == 1) == onehot  # one-hot splits are one-category sets
    assert forest.category_rule == "xgboost" and forest.feature_categories[0] == tuple(CITIES)
    assert forest.feature_categories[1] is None and forest.feature_categories[2] == tuple(GRADES)
    X = code_rows()
    assert_close(forest.predict_margin(X), _native(m, X), what=f"{task} codes")
    frame = _shuffled(_frame(5, 300)[0])
    assert_close(forest.predict(frame), _predictions(m, frame), what=f"{task} DataFrame")


def test_unseen_categories_are_refused():
    """XGBoost 3.2 refuses an unseen integer category; an unseen string it scores as neither a
    code nor NaN. treeslim refuses both rather than guess."""
    m = model("binary", False)
    forest = treeslim.from_model(m)
    frame = _frame(6, 20)[0]
    frame["grade"] = pd.Categorical([99] * 20)
    with pytest.raises(xgb.core.XGBoostError, match="not in the training set"):
        m.predict(frame)
    with pytest.raises(ValueError, match=r"column feature 2 \('grade'\) holds the category 99"):
        forest.predict(frame)
    frame = _frame(6, 20)[0]
    frame["city"] = pd.Categorical(["atlantis"] * 20)
    with pytest.raises(ValueError, match="atlantis"):
        forest.predict(frame)


@pytest.mark.parametrize("fmt", ["json", "ubj"])
@pytest.mark.parametrize("task", TASKS)
def test_files_and_round_trips(task, fmt, tmp_path):
    """JSON / UBJSON files read exactly; import -> to_xgboost -> native predicts bit for bit,
    on codes and (through the category lists written back) on DataFrames."""
    booster = model(task, False).get_booster()
    path = tmp_path / f"model.{fmt}"
    booster.save_model(path)
    forest = treeslim.load(path)
    X = code_rows(400, seed=2).astype(np.float32)
    assert_close(forest.predict_margin(X), _native(booster, X), what=f"{task} {fmt}")
    back = treeslim.to_xgboost(forest, tmp_path / f"out.{fmt}")
    np.testing.assert_array_equal(_native(back, X), _native(booster, X))
    for i in range(0, 40, 3):  # one row at a time XGBoost steps to child left + !decision
        np.testing.assert_array_equal(_native(back, X[i : i + 1]), _native(booster, X[i : i + 1]))
    reread = xgb.Booster(model_file=tmp_path / f"out.{fmt}")
    frame = _shuffled(_frame(7, 200)[0])
    np.testing.assert_array_equal(_native(reread, frame), _native(booster, frame))
    again = treeslim.from_model(back)
    np.testing.assert_array_equal(again.cat_bitsets, forest.cat_bitsets)
    assert again.feature_categories == forest.feature_categories


def _one_split(rule: str, codes: list[int], default_left: bool = True) -> Forest:
    tree = TreeArrays(
        split_index=np.array([0, -1, -1]),
        threshold=np.zeros(3),
        cleft=np.array([1, -1, -1]),
        cright=np.array([2, -1, -1]),
        default_left=np.array([default_left, False, False]),
        leaf_value=np.array([0.0, 1.0, -2.0]),
        cat_index=np.array([0, -1, -1]),
    )
    return Forest.from_trees([tree], num_feature=1, task="regression", category_rule=rule,
                             cat_bitsets=bitset_table([codes]))  # fmt: skip


def test_to_xgboost_other_category_rules_exact_or_refused():
    values = np.array([[v] for v in [*range(40), *ODD, -0.9, -0.1]], dtype=np.float32)
    for rule, codes in [("xgboost", [0, 3, 33]), ("lightgbm", [1, 3, 33]), ("lightgbm", [40])]:
        forest = _one_split(rule, codes, default_left=False)
        got = _native(treeslim.to_xgboost(forest), values)
        np.testing.assert_array_equal(got, forest.predict_margin(values), err_msg=rule)
    with pytest.raises(treeslim.UnsupportedModelError, match=r"holds category 0.*to_lightgbm"):
        treeslim.to_xgboost(_one_split("lightgbm", [0, 3]))
    with pytest.raises(treeslim.UnsupportedModelError, match="category set is empty"):
        treeslim.to_xgboost(_one_split("xgboost", []))
    forest = _one_split("sklearn", [0, 3]).replace(feature_names=("colour",))
    with pytest.raises(treeslim.UnsupportedModelError, match=r"tree 0, node 0 .*'colour'"):
        treeslim.to_xgboost(forest)


def test_non_ascii_categories_are_refused():
    X = pd.DataFrame({"c": pd.Categorical(["é", "v", "wörd"] * 40)})
    m = xgb.XGBRegressor(n_estimators=2, enable_categorical=True).fit(X, np.arange(120) % 3)
    with pytest.raises(treeslim.UnsupportedModelError, match=r"feature 0 \('c'\).*not ASCII"):
        treeslim.from_model(m)


def _doc(task="binary"):
    return json.loads(bytes(model(task, False).get_booster().save_raw("json")))


def _first_cat_tree(doc):
    trees = doc["learner"]["gradient_booster"]["model"]["trees"]
    return next(t for t in trees if t["categories_nodes"])


def _clear_categories(tree):
    for key in ("categories", "categories_nodes", "categories_segments", "categories_sizes"):
        tree[key] = []


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: _first_cat_tree(d)["categories_sizes"].append(1), "categories_sizes"),
        (lambda d: _first_cat_tree(d)["categories_sizes"].__setitem__(0, 10**6), "run past"),
        (lambda d: _first_cat_tree(d)["categories"].__setitem__(0, 2**30), "category codes"),
        (lambda d: _first_cat_tree(d)["categories_nodes"].__setitem__(0, 10**5),
         "not a categorical split"),
        (lambda d: _clear_categories(_first_cat_tree(d)), "with no category set"),
        (lambda d: d["learner"]["gradient_booster"]["model"]["cats"]["enc"].pop(),
         "cats.enc has 2 entries for 3 features"),
        (lambda d: d["learner"]["gradient_booster"]["model"]["cats"]["enc"][0]["offsets"].pop(),
         "offsets do not cut"),
    ],
)  # fmt: skip
def test_corrupt_categorical_documents(edit, match):
    doc = _doc()
    edit(doc)
    with pytest.raises(treeslim.ModelFormatError, match=match):
        forest_from_xgboost_bytes(json.dumps(doc).encode())


# ---------------------------------------------------------------- missing=


def _missing_rows(m: float, n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    near = np.nextafter(np.float32(m), np.float32([-np.inf, np.inf]))
    odd = np.array([m, m, np.nan, *near, np.inf, -np.inf, -1e30, 1e30, 0.0], dtype=np.float32)
    mask = rng.random(X.shape) < 0.35
    X[mask] = rng.choice(odd, size=int(mask.sum()))
    return X


@pytest.mark.parametrize("m", [-999.0, 0.0, 0.5])
def test_missing_value_is_routed_like_nan(m):
    X = _missing_rows(m, 2000, 5, seed=0)
    X[~np.isfinite(X) & ~np.isnan(X)] = 1.0  # a DMatrix refuses inf
    y = (np.where(X[:, 0] == m, 1.0, X[:, 0]) + np.nan_to_num(X[:, 1]) > 0).astype(int)
    clf = xgb.XGBClassifier(n_estimators=15, max_depth=4, missing=m, random_state=0).fit(X, y)
    forest = treeslim.from_model(clf)
    Xt = _missing_rows(m, 1500, 5, seed=1)
    assert_close(forest.predict(Xt), clf.predict_proba(Xt)[:, 1], prob=True, what=f"m={m}")
    booster = treeslim.from_model(clf.get_booster(), missing=m)  # a Booster is told
    expected = clf.get_booster().inplace_predict(Xt, missing=m, predict_type="margin")
    assert_close(booster.predict_margin(Xt), expected, what=f"Booster m={m}")
    assert forest.n_nodes < 4 * treeslim.from_model(clf.get_booster()).n_nodes


@pytest.mark.parametrize("how", ["trained", "scored", "flipped"])
@pytest.mark.parametrize("m", [-999.0, 2.0])
def test_missing_value_at_categorical_nodes(m, how):
    """A code equal to ``missing`` takes the default side at categorical nodes too, also where
    it is in the node's set: a model trained without it and scored with it, and that model
    with its categorical nodes' default sides flipped (so that both sides hold ``m`` somewhere)."""
    rng = np.random.default_rng(3)  # training takes valid codes only (and NaN, and m)
    X = np.column_stack([rng.integers(0, 11, 1500), rng.normal(size=1500),
                         rng.integers(0, 8, 1500)]).astype(float)  # fmt: skip
    X[rng.random(X.shape) < 0.1] = np.nan
    if how == "trained":
        X[rng.random(X.shape) < 0.1] = m
    y = np.isin(np.nan_to_num(X[:, 0]), [0, 2, 5]) + (np.nan_to_num(X[:, 2]) % 2)
    dtrain = xgb.DMatrix(X, y, missing=m if how == "trained" else np.nan,
                         feature_types=["c", "q", "c"], enable_categorical=True)  # fmt: skip
    booster = xgb.train({"max_depth": 4, "max_cat_to_onehot": 1}, dtrain, 10)
    if how == "flipped":
        doc = json.loads(bytes(booster.save_raw("json")))
        for tree in doc["learner"]["gradient_booster"]["model"]["trees"]:
            for node in tree["categories_nodes"]:
                tree["default_left"][node] = 1 - tree["default_left"][node]
        booster = xgb.Booster(model_file=bytearray(json.dumps(doc).encode()))
    forest = treeslim.from_model(booster, missing=m)
    rows = code_rows(800, seed=4)
    rows[np.random.default_rng(1).random(rows.shape) < 0.2] = m
    expected = booster.inplace_predict(rows, missing=m, predict_type="margin")
    assert_close(forest.predict_margin(rows), expected, what=f"categorical m={m}")


def test_missing_keyword_is_checked():
    clf = model("binary", False)
    with pytest.raises(ValueError, match=r"missing=-1\.0.*disagrees.*missing=nan"):
        treeslim.from_model(clf, missing=-1.0)
    assert treeslim.from_model(clf, missing=np.nan).n_nodes == treeslim.from_model(clf).n_nodes
    from sklearn.ensemble import RandomForestRegressor

    rf = RandomForestRegressor(n_estimators=2, max_depth=2).fit(np.eye(4), np.arange(4))
    with pytest.raises(treeslim.UnsupportedModelError, match="XGBoost models only"):
        treeslim.from_model(rf, missing=-1.0)


def test_missing_rewrite_that_would_grow_too_much_is_refused():
    from treeslim.frontends._missing import route_value_as_missing

    X = _missing_rows(0.0, 2000, 5, seed=2)
    X[np.abs(X) > 1e6] = 1.0  # a DMatrix refuses inf
    y = np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    booster = xgb.train({"max_depth": 6}, xgb.DMatrix(X, y, missing=0.0), 5)
    forest = treeslim.from_model(booster)
    trees = [forest.tree(t) for t in range(forest.n_trees)]
    with pytest.raises(treeslim.UnsupportedModelError, match=r"more than 1\.1-fold.*np\.where"):
        route_value_as_missing(trees, 0.0, None, max_growth=1.1)


# ---------------------------------------------------------------- audit


def test_best_iteration_and_iteration_range():
    """The wrapper's best iteration is kept, as its predict does; a Booster keeps every tree, as
    Booster.predict does (the user slices booster[:n] for fewer)."""
    X, score = _frame(8, 900)
    y = (score > 1.2).astype(int)
    clf = xgb.XGBClassifier(n_estimators=60, max_depth=3, enable_categorical=True,
                            early_stopping_rounds=2, learning_rate=0.5)  # fmt: skip
    clf.fit(X[:600], y[:600], eval_set=[(X[600:], y[600:])], verbose=False)
    assert clf.best_iteration < 59
    forest = treeslim.from_model(clf)
    assert forest.n_trees == clf.best_iteration + 1
    assert_close(forest.predict(X), clf.predict_proba(X)[:, 1], prob=True)
    booster = clf.get_booster()
    full = treeslim.from_model(booster)
    assert full.n_trees == booster.num_boosted_rounds()
    assert_close(full.predict_margin(X), booster.predict(xgb.DMatrix(X, enable_categorical=True),
                                                         output_margin=True))  # fmt: skip
    part = treeslim.from_model(booster[: clf.best_iteration + 1])
    assert_close(part.predict(X), forest.predict(X), prob=True)


def test_multi_output_models_are_refused():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    Y = np.column_stack([X[:, 0], X[:, 1] * 2])
    vector = xgb.XGBRegressor(n_estimators=2, multi_strategy="multi_output_tree").fit(X, Y)
    with pytest.raises(treeslim.UnsupportedModelError, match="several targets"):
        treeslim.from_model(vector)
    per_target = xgb.XGBRegressor(n_estimators=2).fit(X, Y)
    with pytest.raises(treeslim.UnsupportedModelError, match="several targets"):
        treeslim.from_model(per_target)


@pytest.mark.parametrize(
    ("objective", "label"),
    [("binary:hinge", "binary"), ("survival:cox", "time"), ("survival:aft", "aft")],
)  # fmt: skip
def test_objectives_outside_the_table_are_refused(objective, label):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(float) if label == "binary" else np.abs(X[:, 0]) + 0.1
    d = xgb.DMatrix(X, y)
    if label == "aft":
        d.set_float_info("label_lower_bound", y)
        d.set_float_info("label_upper_bound", y + 1)
    booster = xgb.train({"objective": objective}, d, 2)
    with pytest.raises(treeslim.UnsupportedModelError, match=f"objective '{objective}'"):
        treeslim.from_model(booster)


def test_base_margin_is_not_part_of_the_model():
    """A model trained with base_margin predicts without it unless given one again; the Forest
    is the model as saved, so it matches XGBoost's predictions without base_margin."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    d = xgb.DMatrix(X, X[:, 0], base_margin=np.full(300, 5.0))
    booster = xgb.train({"max_depth": 3}, d, 5)
    forest = treeslim.from_model(booster)
    assert_close(forest.predict(X), booster.predict(xgb.DMatrix(X)))


# ---------------------------------------------------------------- legacy binary files


@pytest.mark.parametrize("name", ["binary", "multiclass"])
def test_legacy_binary_models_load_through_treelite(name):
    """Files written by XGBoost 0.90 (``xgb.train(...).save_model``; rows and that version's
    predictions saved beside them), which XGBoost 3 refuses."""
    pytest.importorskip("treelite")
    path = os.path.join(DATA, f"xgboost090_{name}.model")
    with pytest.raises((xgb.core.XGBoostError, UnicodeDecodeError)):  # its error text is binary
        xgb.Booster(model_file=path)
    forest = treeslim.load(path)
    expected = np.load(os.path.join(DATA, "xgboost090_predictions.npz"))
    key = "bin" if name == "binary" else "multi"
    X = expected["X"]
    assert_close(forest.predict(X), expected[f"{key}_value"].reshape(len(X), -1).squeeze(),
                 prob=True)  # fmt: skip
    assert_close(forest.predict_margin(X), expected[f"{key}_margin"].reshape(len(X), -1).squeeze())


def test_corrupt_legacy_binary_models_are_refused_with_advice(tmp_path):
    pytest.importorskip("treelite")
    data = open(os.path.join(DATA, "xgboost090_binary.model"), "rb").read()
    path = tmp_path / "cut.model"
    path.write_bytes(data[:400])
    with pytest.raises(treeslim.ModelFormatError, match=r"legacy binary.*save_model\('model"):
        treeslim.load(path)
    path.write_bytes(b"\0" * 400)  # no objective where one belongs: not taken for one
    with pytest.raises(treeslim.ModelFormatError, match="not a model file treeslim can read"):
        treeslim.load(path)


def test_forest_from_xgboost_booster_keyword():
    m = model("regression", False)
    forest = forest_from_xgboost(m.get_booster(), missing=np.nan)
    assert_close(forest.predict_margin(code_rows(100)), _native(m, code_rows(100)))
