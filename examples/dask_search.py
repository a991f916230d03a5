"""Run the compression search on a local Dask cluster, with a calibration set held as a dask array.

``treeslim.compress`` evaluates its candidates through joblib; inside
``joblib.parallel_config(backend="dask")`` they run on the Dask cluster of the active
``dask.distributed.Client``, unchanged, and with the same ``random_state`` the result is the
model the local run returns. A calibration set larger than memory can be a ``dask.array`` (or
``dask.dataframe``): the rows the search needs are sampled chunk by chunk on the workers, and
the original and compressed models are then scored on every row, chunk by chunk.

    pip install ".[all]" && python examples/dask_search.py
"""

from __future__ import annotations

import dask.array as da
import joblib
import numpy as np
from dask.distributed import Client, LocalCluster
from sklearn.datasets import make_classification
from sklearn.ensemble import RandomForestClassifier

import treeslim


def main() -> None:
    X, y = make_classification(n_samples=40_000, n_features=20, n_informative=10,
                               random_state=0)  # fmt: skip
    X_train, y_train = X[:10_000], y[:10_000]
    model = RandomForestClassifier(n_estimators=60, max_depth=8, n_jobs=1, random_state=0)
    model.fit(X_train, y_train)
    # 30,000 calibration rows as a chunked dask array; the search samples about 5,000
    X_cal = da.from_array(X[10_000:], chunks=(5_000, 20))
    y_cal = da.from_array(y[10_000:], chunks=5_000)

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        with joblib.parallel_config(backend="dask"):
            slim = treeslim.compress(model, X_cal, y_cal, max_loss=0.005, random_state=0,
                                     max_rows=5_000, verbose=0)  # fmt: skip
        full = [e for e in slim.report_.entries if "rows" in e]
    local = treeslim.compress(model, X[10_000:], y[10_000:], max_loss=0.005, random_state=0,
                              max_rows=5_000, n_jobs=2, verbose=0)  # fmt: skip

    teacher = slim.teacher_
    print(f"nodes {teacher.n_nodes:,} -> {slim.forest_.n_nodes:,} "
          f"({teacher.n_nodes / slim.forest_.n_nodes:.0f}x fewer)")  # fmt: skip
    for e in full:
        print(f"{e['name']:>32}: AUC {e['auc']:.4f}")
    same = np.array_equal(local.forest_.leaf_value, slim.forest_.leaf_value)
    print(f"same model as the local run: {same}")


if __name__ == "__main__":
    main()
