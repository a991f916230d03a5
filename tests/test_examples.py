"""Every script in examples/ runs to the end (as a user would run it) and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECT = {
    "quickstart.py": ["certified: AUC loss <=", "within the budget"],
    "pipeline_xgboost.py": ["within the budget 0.02", "exported Booster"],
    "ranker_serving.py": [
        "within the budget 0.02",
        "compiled single-row == forest: max |delta| = 0.0e+00",
    ],
    "compress_mlp.py": ["loaded back, identical predictions: True"],
    "dask_search.py": ["same model as the local run: True", "(all 30,000 rows)"],
}


def test_every_example_is_tested():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECT)


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_example_runs(name, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # examples must not depend on (or write into) the working directory
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in EXPECT[name]:
        assert text in proc.stdout, proc.stdout[-3000:]
    assert not list(tmp_path.iterdir())  # nothing left behind
