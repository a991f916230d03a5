import os
import sys

# one OpenMP thread per library in tests: on a 2-core CI machine, XGBoost / LightGBM /
# scikit-learn thread pools otherwise fight each other (tests that need threads ask explicitly)
os.environ.setdefault("OMP_NUM_THREADS", "1")

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


import pytest  # noqa: E402

import treeslim  # noqa: E402

if os.environ.get("CI") and "site-packages" not in treeslim.__file__:  # CI tests what users get
    raise pytest.UsageError(
        f"CI must test the installed package, but treeslim was imported from {treeslim.__file__};"
        " run `pytest` (not `python -m pytest`) after `pip install .`"
    )


@pytest.fixture(scope="session")
def dask_client():
    """A real two-worker Dask cluster (separate processes), shared by the tests that need one."""
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def compiled_cache(tmp_path_factory):
    """A fresh TREESLIM_CACHE_DIR for a module's compiled models, and a dict to keep them in."""
    old = os.environ.get("TREESLIM_CACHE_DIR")
    os.environ["TREESLIM_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield {}
    if old is None:
        del os.environ["TREESLIM_CACHE_DIR"]
    else:
        os.environ["TREESLIM_CACHE_DIR"] = old
