"""What every benchmark shares: the data directory, dataset loading and splits, teacher training,
and a one-line description of the machine and library versions.

Benchmarks run as scripts (``python benchmarks/<name>.py``), so they import this as ``common``.
"""

from __future__ import annotations

import os
import platform

import numpy as np

import treeslim

DATASETS = [
    "adult",
    "bank_marketing",
    "credit_default",
    "higgs_lgbm_example",
    "letter",
    "california_housing",
    "bike_sharing_hourly",
    "mq2008",
    "mslr_web_sample",
]


def default_data_dir() -> str:
    """``../shared/data`` beside the repository."""
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "shared", "data"))


def load(path: str):
    """``X`` (float32), ``y``, ``qid`` (None unless ranking) and the task of one ``.npz`` file."""
    z = np.load(path, allow_pickle=False)
    task = str(z["task"])
    qid = z["qid"] if "qid" in z.files else None
    return z["X"].astype(np.float32), z["y"], qid, task


def split(n: int, qid, seed: int = 0):
    """Index arrays of a 60% train / 20% calibration / 20% test split, whole queries for ranking."""
    rng = np.random.default_rng(seed)
    units = np.unique(qid) if qid is not None else np.arange(n)
    rng.shuffle(units)
    a, b = int(0.6 * len(units)), int(0.8 * len(units))
    parts = [units[:a], units[a:b], units[b:]]
    if qid is None:
        return [np.sort(p) for p in parts]
    return [np.flatnonzero(np.isin(qid, p)) for p in parts]


def load_split(path: str):
    """Train and test parts (X, y, qid each) and the task; the shipped split when there is one."""
    z = np.load(path, allow_pickle=False)
    X, y, task = z["X"].astype(np.float32), z["y"], str(z["task"])
    qid = z["qid"] if "qid" in z.files else None
    if "split" in z.files:
        test = z["split"] == 1
    elif "part" in z.files:  # LETOR fold 1: train S1-S3, test S5
        test = z["part"] == 5
        keep = (z["part"] <= 3) | test
        X, y, qid, test = X[keep], y[keep], qid[keep], test[keep]
    elif qid is not None:
        queries = np.unique(qid)
        test = np.isin(qid, queries[int(0.75 * len(queries)) :])
    else:
        test = np.random.default_rng(0).random(len(y)) < 0.25
    tr = ~test
    q = (None, None) if qid is None else (qid[tr], qid[test])
    return X[tr], y[tr], q[0], X[test], y[test], q[1], task


def train(
    kind: str,
    task: str,
    X,
    y,
    qid,
    n_trees: int,
    depth: int = 6,
    *,
    lr_scale: float = 1.0,
    n_jobs: int = 2,
    num_leaves: int | None = None,
):
    """A teacher (or a from-scratch baseline) of ``kind`` xgboost, lightgbm or rf, fitted.

    XGBoost gets ``max_depth=depth``; LightGBM ``num_leaves=2**depth - 1`` unless ``num_leaves``;
    RandomForest ``max_depth=depth`` (NaN read as 0). Learning rates are the libraries' defaults
    times ``lr_scale``.
    """
    if kind == "rf":
        from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

        cls = RandomForestClassifier if task in ("binary", "multiclass") else RandomForestRegressor
        return cls(n_estimators=n_trees, max_depth=depth, n_jobs=n_jobs, random_state=0).fit(
            np.nan_to_num(X), y
        )
    if kind == "xgboost":
        import xgboost as xgb

        kw = dict(
            n_estimators=n_trees,
            max_depth=depth,
            n_jobs=n_jobs,
            random_state=0,
            learning_rate=min(0.5, 0.3 * lr_scale),
        )
        if task == "ranking":
            return xgb.XGBRanker(**kw).fit(X, y, qid=qid)
        cls = xgb.XGBClassifier if task in ("binary", "multiclass") else xgb.XGBRegressor
        return cls(**kw).fit(X, y)
    if kind != "lightgbm":
        raise ValueError(f"unknown teacher kind {kind!r}")
    import lightgbm as lgb

    kw = dict(
        n_estimators=n_trees,
        num_leaves=num_leaves or 2**depth - 1,
        n_jobs=n_jobs,
        random_state=0,
        verbose=-1,
        learning_rate=min(0.5, 0.1 * lr_scale),
    )
    if task == "ranking":
        return lgb.LGBMRanker(**kw).fit(X, y, group=np.unique(qid, return_counts=True)[1])
    cls = lgb.LGBMClassifier if task in ("binary", "multiclass") else lgb.LGBMRegressor
    return cls(**kw).fit(X, y)


def categorical_columns(path: str) -> list[int]:
    """Indices of the ordinal-coded categorical columns of a dataset (empty when it has none)."""
    z = np.load(path, allow_pickle=False)
    return [int(j) for j in z["cat_idx"]] if "cat_idx" in z.files else []


def train_categorical(kind: str, task: str, X, y, cat_idx, n_trees: int, depth: int = 6, *,
                      lr_scale: float = 1.0, n_jobs: int = 2):  # fmt: skip
    """A teacher that splits the columns ``cat_idx`` (integer codes, NaN = missing) by category:
    XGBoost ``enable_categorical`` on a DataFrame of ``category`` columns, LightGBM
    ``categorical_feature``, HistGradientBoosting ``categorical_features``. Numpy rows of the
    same codes score it (XGBoost reads codes; the others encode the same way)."""
    if task in ("ranking",):
        raise ValueError("categorical teachers are trained for classification and regression")
    classify = task in ("binary", "multiclass")
    if kind == "xgboost":
        import pandas as pd
        import xgboost as xgb

        df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
        for j in cat_idx:
            codes = np.unique(X[:, j][~np.isnan(X[:, j])]).astype(int)
            df[f"f{j}"] = pd.Categorical(X[:, j], categories=np.arange(codes.max() + 1))
        cls = xgb.XGBClassifier if classify else xgb.XGBRegressor
        return cls(n_estimators=n_trees, max_depth=depth, n_jobs=n_jobs, random_state=0,
                   learning_rate=min(0.5, 0.3 * lr_scale), enable_categorical=True,
                   tree_method="hist", max_cat_to_onehot=1).fit(df, y)  # fmt: skip
    if kind == "lightgbm":
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if classify else lgb.LGBMRegressor
        return cls(n_estimators=n_trees, num_leaves=2**depth - 1, n_jobs=n_jobs, random_state=0,
                   verbose=-1, learning_rate=min(0.5, 0.1 * lr_scale)).fit(
            X, y, categorical_feature=list(cat_idx))  # fmt: skip
    if kind == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classify else HistGradientBoostingRegressor
        return cls(max_iter=n_trees, max_depth=depth, random_state=0, early_stopping=False,
                   learning_rate=min(0.5, 0.1 * lr_scale),
                   categorical_features=list(cat_idx)).fit(X, y)  # fmt: skip
    raise ValueError(f"no categorical teacher of kind {kind!r}")


def print_and_write(lines: list[str], path: str) -> None:
    """Print a markdown table (its lines) and write it to ``path``, creating the folder."""
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)


def serving_rows(quick: bool):
    """The serving benchmarks' data: ``(X, y, X_big, check, n_trees, calls)``, with X, y from
    ``make_classification(50_000, 50)`` as float32, 100k rows drawn from X as float64, 2,000 of
    them with 5% NaN to check every path with, and the model size and call count."""
    from sklearn.datasets import make_classification

    X, y = make_classification(50_000, 50, n_informative=20, random_state=0)
    X = X.astype(np.float32)
    rng = np.random.default_rng(0)
    X_big = X[rng.integers(0, len(X), 100_000)].astype(np.float64)
    check = X_big[:2000].copy()
    check[rng.random(check.shape) < 0.05] = np.nan
    n_trees, calls = (100, 500) if quick else (500, 2000)
    return X, y, X_big, check, n_trees, calls


def ranking_rows():
    """``(X, y, qid)`` of the latency benchmarks' ranker: mslr_web_sample's 136 features, or
    10,000 synthetic rows of that width (100 queries) when the data is absent."""
    path = os.path.join(default_data_dir(), "mslr_web_sample.npz")
    if os.path.exists(path):
        z = np.load(path)
        return z["X"].astype(np.float32), z["y"], z["qid"]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(10_000, 136)).astype(np.float32)
    return X, rng.integers(0, 5, 10_000), np.repeat(np.arange(100), 100)


def cpu_seconds() -> dict[int, float]:
    """CPU seconds (user + system) so far of this process and each of its live child processes
    (joblib's workers), by pid: the difference of two snapshots (:func:`cpu_between`) is the CPU
    time a step took, which other load on the machine does not inflate as it does wall time.
    Without psutil, this process and its reaped children only."""
    try:
        import psutil
    except ImportError:
        t = os.times()
        return {os.getpid(): t.user + t.system + t.children_user + t.children_system}
    me = psutil.Process()
    out = {}
    for p in [me, *me.children(recursive=True)]:
        try:
            c = p.cpu_times()
        except psutil.Error:
            continue
        out[p.pid] = c.user + c.system
    return out


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two :func:`cpu_seconds` snapshots."""
    return sum(v - before.get(pid, 0.0) for pid, v in after.items())


def machine() -> str:
    """CPU, core count and the versions of everything that is measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        pass
    import lightgbm
    import sklearn
    import tl2cgen
    import treelite
    import xgboost

    return (
        f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy "
        f"{np.__version__}, scikit-learn {sklearn.__version__}, xgboost {xgboost.__version__}, "
        f"lightgbm {lightgbm.__version__}, treelite {treelite.__version__}, tl2cgen "
        f"{tl2cgen.__version__}, treeslim {treeslim.__version__}"
    )
