"""Small fitted models of every library and task, built once per test session.

Each builder returns ``(model, X)``: a fitted native model and float32 training rows with NaN.
"""

from __future__ import annotations

import functools

import numpy as np


def data(task, n=500, d=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    X[rng.random(X.shape) < 0.05] = np.nan
    s = np.nan_to_num(X[:, 0]) + 0.7 * np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2])
    s = s + 0.3 * rng.normal(size=n)
    qid = np.repeat(np.arange(n // 20), 20)
    if task == "binary":
        y = (s > 0).astype(int)
    elif task == "multiclass":
        y = np.digitize(s, [-0.6, 0.6])
    elif task == "ranking":
        y = np.digitize(s, [-0.5, 0.5])
    else:
        y = 3.0 * s + 10.0
    return X, y, qid


@functools.cache
def xgboost_model(task):
    import xgboost as xgb

    X, y, qid = data(task)
    kw = dict(n_estimators=12, max_depth=4, n_jobs=1, random_state=0)
    if task == "binary":
        m = xgb.XGBClassifier(**kw).fit(X, y)
    elif task == "multiclass":
        m = xgb.XGBClassifier(**kw).fit(X, y)
    elif task == "ranking":
        m = xgb.XGBRanker(**kw).fit(X, y, qid=qid)
    else:
        m = xgb.XGBRegressor(**kw).fit(X, y)
    return m, X


@functools.cache
def lightgbm_model(task):
    import lightgbm as lgb

    X, y, qid = data(task)
    kw = dict(
        n_estimators=12, num_leaves=15, n_jobs=1, random_state=0, verbose=-1, min_child_samples=5
    )
    if task in ("binary", "multiclass"):
        m = lgb.LGBMClassifier(**kw).fit(X, y)
    elif task == "ranking":
        m = lgb.LGBMRanker(**kw).fit(X, y, group=np.bincount(qid))
    else:
        m = lgb.LGBMRegressor(**kw).fit(X, y)
    return m, X


@functools.cache
def sklearn_model(task, kind="forest"):
    from sklearn import ensemble

    X, y, _ = data(task)
    Xf = np.nan_to_num(X) if kind in ("forest", "gb") else X
    if task == "ranking":
        task = "regression"
    clf = task in ("binary", "multiclass")
    if kind == "forest":
        cls = ensemble.RandomForestClassifier if clf else ensemble.RandomForestRegressor
        m = cls(n_estimators=8, max_depth=5, random_state=0, n_jobs=1)
    elif kind == "gb":
        cls = ensemble.GradientBoostingClassifier if clf else ensemble.GradientBoostingRegressor
        m = cls(n_estimators=8, max_depth=3, random_state=0)
    else:
        cls = (
            ensemble.HistGradientBoostingClassifier
            if clf
            else ensemble.HistGradientBoostingRegressor
        )
        m = cls(max_iter=8, max_depth=4, random_state=0)
    return m.fit(Xf, y), Xf


ALL = [
    (lib, task)
    for lib in ("xgboost", "lightgbm")
    for task in ("binary", "multiclass", "regression", "ranking")
] + [
    ("sklearn-" + kind, task)
    for kind in ("forest", "gb", "hgb")
    for task in ("binary", "multiclass", "regression")
]


def model(lib, task):
    if lib == "xgboost":
        return xgboost_model(task)
    if lib == "lightgbm":
        return lightgbm_model(task)
    return sklearn_model(task, lib.split("-")[1])


def fit_quietly(est, X, y):
    """``est.fit(X, y)`` without ConvergenceWarning (small networks trained briefly on purpose)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, y)
