"""Categorical forests after import: the .tslim file, the passes, the CLI.

The oracle is the reference predictor (``Forest.predict``), which the frontend tests check against
each library's own predictions; the forests here are random (tests/catmodels.py) so every rule,
both precisions and wide sets are covered.
"""

from __future__ import annotations

import zlib

import fuzz
import numpy as np
import pytest
from catmodels import categorical_forest, categorical_rows

import treeslim
from treeslim.formats import HEADER as _HEADER
from treeslim.formats import dump_tslim_bytes, load_tslim_bytes

FORESTS = [
    ("xgboost", "binary", "float32"),
    ("lightgbm", "multiclass", "float64"),
    ("sklearn", "regression", "float64"),
]


def _forest(rule, task, dtype, **kw):
    f = categorical_forest(seed=5, rule=rule, task=task, feature_dtype=dtype, **kw)
    if rule == "sklearn":  # raw values 10, 20, ... encode to codes 0, 1, ...
        cats = tuple(float(10 * (c + 1)) for c in range(100))
        f = f.replace(feature_categories=(cats, None, cats, None))
    return f


def _rows(f):
    X = categorical_rows(f)
    if f.category_rule == "sklearn":
        X[:, [0, 2]] = np.where(np.isfinite(X[:, [0, 2]]), X[:, [0, 2]] * 10 + 10, X[:, [0, 2]])
    return X


@pytest.mark.parametrize(("rule", "task", "dtype"), FORESTS)
def test_tslim_round_trip_is_exact(rule, task, dtype):
    f = _forest(rule, task, dtype)
    X = _rows(f)
    back = load_tslim_bytes(dump_tslim_bytes(f))
    assert back.n_categorical_splits == f.n_categorical_splits
    assert back.category_rule == rule and back.feature_categories == f.feature_categories
    np.testing.assert_array_equal(back.predict_margin(X), f.predict_margin(X))
    # the sets the forest no longer uses are not stored
    unused = f.replace(cat_bitsets=np.vstack([f.cat_bitsets, np.ones((50, f.cat_bitsets.shape[1]))]))
    assert len(dump_tslim_bytes(unused)) == len(dump_tslim_bytes(f))


def test_tslim_numerical_files_are_unchanged_by_the_categorical_flag():
    f = _forest("xgboost", "binary", "float32")
    numeric = f.replace(cat_index=None)
    data = dump_tslim_bytes(numeric)
    assert _HEADER.unpack_from(data)[2] == 0  # no flags: readable by the previous version
    assert load_tslim_bytes(data).cat_index is None


def test_fuzzed_categorical_payloads_fail_cleanly():
    f = _forest("lightgbm", "binary", "float64")
    data = dump_tslim_bytes(f)
    flags = _HEADER.unpack_from(data)[2]
    payload = data[_HEADER.size :]

    def frame(p):
        return _HEADER.pack(b"TSLIM", 1, flags, len(p), zlib.crc32(p)) + p

    mutants = (frame(bad) for bad in fuzz.byte_mutations(payload, np.random.default_rng(2)))
    fuzz.fuzz(load_tslim_bytes, mutants, what="categorical payload bytes")


@pytest.mark.parametrize(("rule", "task", "dtype"), FORESTS)
def test_save_and_load_through_the_public_api(tmp_path, rule, task, dtype):
    f = _forest(rule, task, dtype)
    path = tmp_path / "m.tslim"
    treeslim.save(f, path)
    np.testing.assert_array_equal(treeslim.load(path).predict(_rows(f)), f.predict(_rows(f)))
