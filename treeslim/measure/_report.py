"""`Report`: the same size / latency / quality / fidelity figures for every model and every step.

A Report is a list of entries, one per model or compression step, each a flat mapping:
``trees, nodes, leaves, max_depth``, ``bytes_<format>`` for every format that can hold the model,
``p50_us, p99_us`` (single-row latency over >= 1000 calls after warm-up, a different row each call),
``row_us`` (kernel time per row on one thread, see :mod:`treeslim.search`),
``rows_per_s`` (batch) with ``nthread``, the task's metrics, and ``agreement`` /
``max_abs_delta_margin`` against a reference. Reports add up (``r1 + r2``) and render as text,
a dict, a pandas DataFrame or a plot.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from treeslim._utils import write_atomic
from treeslim.backends.tl2cgen import CompiledForest, compile_forest
from treeslim.errors import MissingDependencyError
from treeslim.frontends import from_model
from treeslim.ir import apply_postprocessor
from treeslim.measure._metrics import default_metric, evaluate, fidelity
from treeslim.measure._sizes import format_sizes
from treeslim.runtime import KernelForest, fast_margin

if TYPE_CHECKING:
    from treeslim.backends.tl2cgen import CompiledForest
    from treeslim.ir import Forest

__all__ = ["Report", "measure_batch", "measure_single_row", "report"]

_TEXT_COLUMNS = [
    ("name", "step", "{}"),
    ("trees", "trees", "{:d}"),
    ("nodes", "nodes", "{:d}"),
    ("leaves", "leaves", "{:d}"),
    ("max_depth", "depth", "{:d}"),
    ("shape", "shape", "{}"),
    ("params", "params", "{:,d}"),
    ("bytes_float32", "f32 B", "{:,d}"),
    ("bytes_xgboost_ubj", "ubj B", "{:,d}"),
    ("bytes_lightgbm_text", "lgb txt B", "{:,d}"),
    ("bytes_treelite", "treelite B", "{:,d}"),
    ("bytes_tslim", ".tslim B", "{:,d}"),
    ("bytes_compiled", ".so B", "{:,d}"),
    ("p50_us", "p50 us", "{:.1f}"),
    ("p99_us", "p99 us", "{:.1f}"),
    ("rows_per_s", "rows/s", "{:,.0f}"),
    ("row_us", "row us", "{:.2f}"),
    ("auc", "AUC", "{:.4f}"),
    ("accuracy", "acc", "{:.4f}"),
    ("logloss", "logloss", "{:.4f}"),
    ("rmse", "RMSE", "{:.4g}"),
    ("r2", "R2", "{:.4f}"),
    ("ndcg@10", "NDCG@10", "{:.4f}"),
    ("agreement", "agree", "{:.4f}"),
    ("max_abs_delta_margin", "max|dm|", "{:.2e}"),
]


def measure_single_row(
    predict_one: Callable[[Any], Any], rows: np.ndarray, *, n_calls: int = 1000, warmup: int = 100
) -> tuple[float, float]:
    """p50 and p99 latency in microseconds of ``predict_one(row)``, a different row each call."""
    rows = np.ascontiguousarray(rows)
    n = len(rows)
    for i in range(min(warmup, n_calls)):
        predict_one(rows[i % n])
    times = np.empty(n_calls)
    clock = time.perf_counter_ns
    for i in range(n_calls):
        row = rows[i % n]
        t0 = clock()
        predict_one(row)
        times[i] = clock() - t0
    return float(np.percentile(times, 50) / 1e3), float(np.percentile(times, 99) / 1e3)


def measure_batch(
    predict_batch: Callable[[Any], Any], X: np.ndarray, *, repeat: int = 3, min_time: float = 0.2
) -> float:
    """Rows per second of ``predict_batch(X)``, best of ``repeat`` runs (each at least min_time)."""
    predict_batch(X[: min(len(X), 256)])
    best = 0.0
    for _ in range(repeat):
        done, t0 = 0, time.perf_counter()
        while True:
            predict_batch(X)
            done += len(X)
            elapsed = time.perf_counter() - t0
            if elapsed >= min_time:
                break
        best = max(best, done / elapsed)
    return best


class Report:
    """Size, latency, quality and fidelity of one or more models / compression steps."""

    def __init__(self, entries: Sequence[dict[str, Any]] = ()) -> None:
        self.entries: list[dict[str, Any]] = [dict(e) for e in entries]

    def __add__(self, other: Report) -> Report:
        return Report([*self.entries, *other.entries])

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.entries[i]

    def to_dict(self) -> dict[str, Any]:
        """``{"entries": [...]}`` with plain Python values (JSON-serialisable)."""
        return {"entries": [{k: _plain(v) for k, v in e.items()} for e in self.entries]}

    def to_json(self, path: str | None = None) -> str:
        """JSON text of :meth:`to_dict`; written atomically to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            write_atomic(path, text.encode())
        return text

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per entry."""
        import pandas as pd

        return pd.DataFrame(self.to_dict()["entries"])

    def to_text(self) -> str:
        """A fixed-width text table of the columns any entry has."""
        cols = [c for c in _TEXT_COLUMNS if any(c[0] in e for e in self.entries)]
        table = [[title for _, title, _ in cols]]
        for e in self.entries:
            row = []
            for key, _, fmt in cols:
                v = e.get(key)
                row.append(
                    "-" if v is None or (isinstance(v, float) and np.isnan(v)) else fmt.format(v)
                )
            table.append(row)
        widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
        lines = [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            )
            for r in table
        ]
        meta = self.entries[0] if self.entries else {}
        foot = f"latency: {meta.get('latency_backend', '-')}, nthread={meta.get('nthread', '-')}"
        return "\n".join([*lines, foot])

    def __str__(self) -> str:
        return self.to_text()

    def __repr__(self) -> str:
        return f"Report({len(self.entries)} entries)"

    def plot(self, *, metric: str | None = None, path: str | None = None) -> Any:
        """Quality against size (nodes) and against single-row latency, one point per entry.

        Search candidates (entries with a ``pareto`` flag) are drawn small and grey, those on the
        Pareto front joined by a line, the chosen one as a star; other entries (the original
        and compressed models) are labelled points. Written to ``path`` (PNG, SVG, ...) if given.
        """
        try:
            import matplotlib

            if path is not None:
                matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as exc:
            raise MissingDependencyError(
                "Report.plot needs matplotlib: pip install 'treeslim[plot]'"
            ) from exc
        if not self.entries:
            raise ValueError("Report.plot: the report has no entries.")
        metric = metric or default_metric(self.entries[0]["task"])
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, key, label in (
            (axes[0], "nodes", "nodes"),
            (axes[1], "row_us", "kernel time per row (us)"),
        ):
            es = [e for e in self.entries if key in e and metric in e]
            cands = [e for e in es if "pareto" in e]
            if cands:
                ax.scatter([e[key] for e in cands], [e[metric] for e in cands], s=12,
                           color="0.7", label="candidates")  # fmt: skip
                front = sorted((e for e in cands if e["pareto"]), key=lambda e: e[key])
                ax.plot([e[key] for e in front], [e[metric] for e in front], "o-", ms=4,
                        color="tab:blue", label="Pareto front")  # fmt: skip
                chosen = [e for e in cands if e.get("chosen")]
                ax.scatter([e[key] for e in chosen], [e[metric] for e in chosen], marker="*",
                           s=160, color="tab:red", zorder=3, label="chosen")  # fmt: skip
            for e in es:
                if "pareto" not in e:
                    ax.scatter([e[key]], [e[metric]], color="black", zorder=3)
                    ax.annotate(str(e.get("name", "")), (e[key], e[metric]), fontsize=8)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel(metric)
            if cands:
                ax.legend(fontsize=8)
        fig.tight_layout()
        if path is not None:
            import io

            buf = io.BytesIO()
            fmt = str(path).rsplit(".", 1)[-1] if "." in str(path) else "png"
            fig.savefig(buf, format=fmt, dpi=120)
            write_atomic(path, buf.getvalue())
        return fig


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v


Scorer = Callable[[Any], Any]


def _scorers(
    forest: Forest, compiled: CompiledForest | None, latency: str, nthread: int
) -> tuple[Scorer, Scorer, str]:
    """(single-row scorer, batch scorer, description) for a latency backend."""
    if compiled is not None and latency in ("compiled", "kernel"):
        cf = compiled
        return cf.predict, (lambda Z: cf.predict(Z, nthread=nthread)), "compiled (TL2cgen row)"
    if latency == "kernel":
        kf = KernelForest(forest)
        return (
            lambda r: apply_postprocessor(forest, kf.margin(r, 1)),
            lambda Z: apply_postprocessor(forest, kf.margin(Z, nthread)),
            "treeslim kernel",
        )
    if latency == "reference":
        return forest.predict, forest.predict, "numpy reference"
    raise ValueError(f"latency must be 'kernel', 'compiled', 'reference' or None; got {latency!r}.")


def report(
    model: Any,
    X: ArrayLike,
    y: ArrayLike | None = None,
    qid: ArrayLike | None = None,
    reference: Any = None,
    *,
    name: str | None = None,
    latency: str | None = "kernel",
    nthread: int = 1,
    n_calls: int = 1000,
    batch_seconds: float = 0.2,
    sizes: bool | Sequence[str] = True,
) -> Report:
    """Measure one model: size, latency, quality on ``(X, y)``, fidelity to ``reference``.

    Parameters
    ----------
    model : Forest, CompiledForest or any model :func:`treeslim.from_model` accepts
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,), optional
        Labels / targets / relevance; quality is skipped without them.
    qid : array-like of shape (n_samples,), optional
        Query id of each row (ranking).
    reference : model, optional
        Fidelity is measured against it (e.g. the uncompressed model).
    latency : {"kernel", "compiled", "reference", None}, default="kernel"
        What scores rows for the latency figures: treeslim's C kernel, a TL2cgen-compiled library
        (built with :func:`treeslim.compile`, cached), the numpy reference predictor, or nothing.
    nthread : int, default=1
        Threads for the batch figure.
    n_calls : int, default=1000
        Single-row calls timed (after 100 warm-up calls).
    batch_seconds : float, default=0.2
        Least time each of the three batch measurements runs.
    sizes : bool or sequence of str, default=True
        Bytes in every format that can hold the model (``True``), in the formats named (e.g.
        :func:`~treeslim.measure.native_formats`), or none (``False``).

    Returns
    -------
    Report
    """

    compiled = model if isinstance(model, CompiledForest) else None
    forest = compiled.forest if compiled is not None else from_model(model)
    Xa = np.asarray(X, dtype=np.float64) if not hasattr(X, "columns") else X
    entry: dict[str, Any] = {
        "name": name or forest.source.get("library", "model"),
        "task": forest.task,
        "trees": forest.n_trees,
        "nodes": forest.n_nodes,
        "leaves": forest.n_leaves,
        "max_depth": forest.max_depth,
    }
    if sizes:
        formats = None if sizes is True else list(sizes)
        entry.update({f"bytes_{k}": v for k, v in format_sizes(forest, formats=formats).items()})
    if latency == "compiled" and compiled is None:
        compiled = compile_forest(forest, nthread=nthread)
    if compiled is not None:
        entry["bytes_compiled"] = compiled.libpath.stat().st_size
    if latency is not None:
        Xf = np.asarray(Xa, dtype=np.float64)
        rows = np.ascontiguousarray(Xf[: max(1, min(len(Xf), n_calls))])
        one, batch, backend = _scorers(forest, compiled, latency, nthread)
        entry["p50_us"], entry["p99_us"] = measure_single_row(one, rows, n_calls=n_calls)
        entry["rows_per_s"] = measure_batch(batch, Xf, min_time=batch_seconds)
        entry["nthread"] = nthread
        entry["latency_backend"] = backend
    margin = fast_margin(forest, Xa)  # once: predictions are the link of the margins
    pred = apply_postprocessor(forest, margin)
    if y is not None:
        entry.update(evaluate(forest.task, y, pred, qid=qid))
    if reference is not None:
        ref = from_model(reference)
        ref_margin = fast_margin(ref, Xa)
        entry.update(
            fidelity(forest.task, pred, margin, apply_postprocessor(ref, ref_margin), ref_margin)
        )
    return Report([entry])
