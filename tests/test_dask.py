"""compress() on Dask: the joblib Dask backend on a real LocalCluster gives the local result, and
dask-array / dask-dataframe calibration sets are sampled and scored chunk by chunk."""

from __future__ import annotations

import dask.array as da
import joblib
import numpy as np
import pandas as pd
import pytest
from models import data, model

import treeslim
from treeslim import compress
from treeslim._utils import is_dask
from treeslim.data import predict_chunked, sample_rows
from treeslim.search import search


def test_search_on_the_dask_backend_matches_local(dask_client):
    import xgboost as xgb

    X, y, _ = data("binary", n=1000)
    m = xgb.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1, random_state=0).fit(X, y)
    teacher = treeslim.from_model(m)
    kw = dict(max_loss=0.01, random_state=0, n_synthetic=1000, verbose=0)
    local = search(teacher, X, y, n_jobs=2, **kw)
    with joblib.parallel_config(backend="dask"):
        remote = search(teacher, X, y, **kw)
    assert [c["steps"] for c in remote.candidates] == [c["steps"] for c in local.candidates]
    np.testing.assert_array_equal(remote.forest.leaf_value, local.forest.leaf_value)
    np.testing.assert_array_equal(remote.forest.threshold, local.forest.threshold)


def test_sample_does_not_depend_on_chunking(dask_client):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 4))
    y = rng.integers(0, 2, 5000)
    ref = sample_rows(X, y, max_rows=1000, random_state=3)
    assert ref[3] == 5000 and 700 < len(ref[0]) < 1300
    for chunks in (500, 1237, 5000):
        got = sample_rows(da.from_array(X, chunks=(chunks, 2)), da.from_array(y, chunks=chunks),
                          max_rows=1000, random_state=3)  # fmt: skip
        np.testing.assert_array_equal(got[0], ref[0])
        np.testing.assert_array_equal(got[1], ref[1])
    other = sample_rows(X, y, max_rows=1000, random_state=4)
    assert not np.array_equal(other[0], ref[0])
    qid = np.repeat(np.arange(250), 20)
    Xs, ys, qs, n = sample_rows(da.from_array(X, chunks=700), y, qid, max_rows=1000)
    assert n == 5000 and len(ys) == len(Xs)
    assert set(np.bincount(qs)[np.unique(qs)]) == {20}  # whole queries only
    np.testing.assert_array_equal(Xs, X[np.isin(qid, np.unique(qs))])


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_predict_chunked_matches_predict(dask_client, task):
    m, X = model("lightgbm", task)
    f = treeslim.from_model(m)
    want = f.predict(X)
    np.testing.assert_allclose(predict_chunked(f, da.from_array(X, chunks=(97, 3))), want,
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(predict_chunked(f, X, chunk_rows=64), want, rtol=1e-12, atol=1e-12)
    ddf = __import__("dask.dataframe").dataframe.from_pandas(pd.DataFrame(X), npartitions=3)
    assert is_dask(ddf) and not is_dask(X)
    np.testing.assert_allclose(predict_chunked(f, ddf), want, rtol=1e-12, atol=1e-12)


def test_compress_dask_array_equals_numpy(dask_client):
    """A dask calibration set gives the model the same numpy data gives, and the report scores
    both models on every row."""
    m, X = model("xgboost", "binary")
    _, y, _ = data("binary")
    kw = dict(max_loss=0.01, random_state=0, n_synthetic=1000, verbose=0, max_rows=300)
    local = compress(m, X, y, **kw)
    remote = compress(m, da.from_array(X, chunks=(128, X.shape[1])), da.from_array(y, chunks=64),
                      **kw)  # fmt: skip
    np.testing.assert_array_equal(remote.forest_.leaf_value, local.forest_.leaf_value)
    full = {e["name"]: e for e in remote.report_.entries if "rows" in e}
    assert set(full) == {f"original (all {len(X):,} rows)", f"compressed (all {len(X):,} rows)"}
    auc = treeslim.measure.evaluate("binary", y, remote.forest_.predict(X))["auc"]
    assert full[f"compressed (all {len(X):,} rows)"]["auc"] == pytest.approx(auc, abs=1e-12)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_evaluate_chunked_matches_evaluate(dask_client, task):
    from treeslim.measure import evaluate, evaluate_chunked

    m, X = model("xgboost", task)
    _, y, _ = data(task)
    f = treeslim.from_model(m)
    want = evaluate(task, y, f.predict(X))
    for got in (
        evaluate_chunked(f, X, y, chunk_rows=77),
        evaluate_chunked(f, da.from_array(X, chunks=(97, 2)), da.from_array(y, chunks=50)),
    ):
        assert set(got) == set(want)
        for k in want:
            assert got[k] == pytest.approx(want[k], abs=1e-4 if k == "auc" else 1e-9), k
    labels = np.array(["no", "yes"]) if task == "binary" else None
    if labels is not None:  # string labels mapped through classes
        got = evaluate_chunked(f, X, labels[y], classes=labels)
        assert got["accuracy"] == pytest.approx(want["accuracy"])
    with pytest.raises(ValueError, match="whole queries"):
        evaluate_chunked(treeslim.from_model(model("xgboost", "ranking")[0]), X, y)
