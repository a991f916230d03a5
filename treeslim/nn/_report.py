"""Report entries for MLPs: the same :class:`~treeslim.Report` as for forests.

Keys: ``shape`` (layer widths), ``params`` (stored weights and biases), ``bytes_tslim`` (the file
:func:`treeslim.save` writes), ``bytes_float32`` (the same parameters as raw float32), latency of
the IR's numpy predictor (``p50_us``, ``p99_us``, ``rows_per_s``), the task's metrics and
fidelity to a reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from treeslim.measure import Report, evaluate, fidelity, measure_batch, measure_single_row
from treeslim.nn._format import dump_mlp_bytes
from treeslim.nn._mlp import MLP

__all__ = ["mlp_report", "shape_text"]


def shape_text(mlp: MLP) -> str:
    """Layer widths with each layer's form, e.g. ``64-128s:i8-10:f16``: ``s`` sparse, ``r`` low
    rank; ``:i8`` int8, ``:f16`` / ``:f32`` float16 / float32 (nothing for float64)."""
    parts = [str(mlp.num_feature)]
    for layer in mlp.layers:
        tag = {"sparse": "s", "lowrank": "r", "dense": ""}[layer.kind]
        tag += {"int8": ":i8", "float16": ":f16", "float32": ":f32"}.get(layer.precision, "")
        parts.append(f"{layer.n_out}{tag}")
    return "-".join(parts)


def mlp_report(
    mlp: MLP,
    X: ArrayLike,
    y: ArrayLike | None = None,
    reference: MLP | None = None,
    *,
    name: str = "mlp",
    latency: bool = True,
    n_calls: int = 1000,
    batch_seconds: float = 0.2,
) -> Report:
    """Measure one MLP: size, latency of its numpy predictor, quality on ``(X, y)``, fidelity.

    ``y`` holds class indices (0..k-1) for classifiers, values for regression.

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim.nn import MLP, Layer
    >>> from treeslim.nn._report import mlp_report
    >>> mlp = MLP((Layer(np.zeros(1), weight=np.ones((2, 1))),))
    >>> entry = mlp_report(mlp, np.ones((5, 2)), latency=False)[0]
    >>> entry["params"], entry["bytes_float32"]
    (3, 12)
    """
    Xa = np.asarray(X, dtype=np.float64)
    entry: dict[str, Any] = {
        "name": name,
        "task": mlp.task,
        "shape": shape_text(mlp),
        "params": mlp.n_params,
        "bytes_tslim": len(dump_mlp_bytes(mlp)),
        "bytes_float32": 4 * mlp.n_params,
    }
    if latency and len(Xa):
        rows = np.ascontiguousarray(Xa[: max(1, min(len(Xa), n_calls))])
        entry["p50_us"], entry["p99_us"] = measure_single_row(mlp.predict, rows, n_calls=n_calls)
        entry["rows_per_s"] = measure_batch(mlp.predict, Xa, min_time=batch_seconds)
        entry["nthread"] = 1
        entry["latency_backend"] = "treeslim.nn numpy predictor"
    pred = mlp.predict(Xa)
    if y is not None:
        entry.update(evaluate(mlp.task, y, pred))
    if reference is not None:
        entry.update(
            fidelity(
                mlp.task, pred, mlp.predict_margin(Xa), reference.predict(Xa),
                reference.predict_margin(Xa),
            )
        )  # fmt: skip
    return Report([entry])
