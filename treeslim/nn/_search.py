"""`compress`: search compression settings for an MLP within a certified quality budget.

The calibration rows are split as the tree search splits them
(:func:`treeslim.data.calibration_split`): passes and fine-tuning see one part, every candidate
is judged on another (held out), and a third, never seen while proposing, certifies the
proposals in a fixed sequence, largest ``.tslim`` first
(:func:`treeslim.measure.certify_in_sequence`); the smallest certified one wins, else the
original. Candidates, cheapest first: float32 / fp16 casts, int8 post-training quantization
(weights only, then int8 activations), magnitude pruning at growing sparsity with fine-tuning
toward the original and the labels (each also quantized to int8, with quantization-aware
fine-tuning when the post-training int8 loses too much), neuron pruning and low-rank
factorisation with fine-tuning.
A sparsity / fraction / energy ladder stops at its first rung over budget.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from treeslim._utils import Progress, class_codes
from treeslim.data import calibration_split
from treeslim.errors import InsufficientDataError, InsufficientDataWarning
from treeslim.measure import (
    HIGHER_IS_BETTER,
    Certificate,
    cannot_certify_message,
    certify_in_sequence,
    default_metric,
    evaluate,
    exact_certificate,
    paired_se,
    proposal_margin,
    sequence_order,
    smallest_budget,
)
from treeslim.nn._format import dump_mlp_bytes
from treeslim.nn._mlp import MLP
from treeslim.nn._passes import low_rank, prune_neurons, prune_weights, quantize_weights
from treeslim.nn._train import fine_tune

__all__ = ["METHODS", "MLPSearchResult", "label_codes", "search_mlp"]

METHODS = ("float", "int8", "qat", "prune", "neurons", "lowrank")
SPARSITIES = (0.5, 0.65, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95)
NEURON_FRACTIONS = (0.25, 0.5, 0.75)
ENERGIES = (0.95, 0.9, 0.8, 0.7)


@dataclass
class MLPSearchResult:
    """What :func:`search_mlp` found: the chosen MLP and every candidate it judged."""

    mlp: MLP
    name: str
    metric: str
    baseline: float
    candidates: list[dict[str, Any]] = field(default_factory=list)
    certificate: Certificate | None = None  # the chosen MLP's


def label_codes(mlp: MLP, y: ArrayLike) -> Any:
    """Class indices of labels ``y`` for a classifier with known classes; ``y`` as it is else."""
    y = np.asarray(y)
    if mlp.task == "regression" or mlp.classes is None:
        return y
    return class_codes(mlp.classes, y)


def _pruned(tune: Callable[[MLP], MLP], m: MLP, sparsity: float) -> MLP:
    return tune(prune_weights(m, sparsity=sparsity))


def _shrunk(tune: Callable[[MLP], MLP], m: MLP, X: Any, fraction: float) -> MLP:
    return tune(prune_neurons(m, X, fraction=fraction))


def search_mlp(
    teacher: MLP,
    X: ArrayLike,
    y: ArrayLike,
    *,
    max_loss: float = 0.01,
    metric: str | None = None,
    methods: Sequence[str] | None = None,
    validation_fraction: float = 0.25,
    validation_data: tuple[ArrayLike, ArrayLike] | None = None,
    fine_tune_epochs: int = 10,
    random_state: int | None = None,
    verbose: int = 1,
    confidence: float = 0.95,
    strict: bool = False,
    certify: float = 0.4,
) -> MLPSearchResult:
    """Judge compressed candidates of ``teacher`` on held-out calibration rows, certify those
    within ``max_loss`` on rows set aside before (a share ``certify``), largest first; keep the
    smallest certified one. Parameters as :func:`compress`; with ``validation_data=(X_val,
    y_val)`` (e.g. rows the teacher never saw, where ``X`` is its training data) the share
    ``certify`` of those rows certifies, the rest judges, and all of ``(X, y)`` feeds
    calibration and fine-tuning: a certificate on rows the teacher was trained on measures the
    loss against a teacher that knows their labels."""
    methods = tuple(METHODS if methods is None else methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}; choose from {list(METHODS)}.")
    if not isinstance(max_loss, (int, float)) or max_loss < 0:
        raise ValueError(f"The 'max_loss' parameter must be a float >= 0. Got {max_loss!r}.")
    if not 0 < validation_fraction < 1:
        raise ValueError(
            f"The 'validation_fraction' parameter must be in (0, 1). Got {validation_fraction!r}."
        )
    if not 0 < confidence < 1:
        raise ValueError(f"The 'confidence' parameter must be in (0, 1). Got {confidence!r}.")
    Xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y)
    metric = metric or default_metric(teacher.task)
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"Unknown metric {metric!r}; choose from {sorted(HIGHER_IS_BETTER)}.")
    if validation_data is not None:  # judged and certified on those rows; all of X fits
        Xn = np.asarray(validation_data[0], dtype=np.float64)
        yn = np.asarray(validation_data[1])
        _, val_idx, cert_idx = calibration_split(len(Xn), None, certify=certify,
                                                 holdout_fraction=0.0,
                                                 random_state=random_state)  # fmt: skip
        Xf, yf = Xa, ya
    else:
        Xn, yn = Xa, ya
        fit_idx, val_idx, cert_idx = calibration_split(len(Xa), None, certify=certify,
                                                       holdout_fraction=validation_fraction,
                                                       random_state=random_state)  # fmt: skip
        Xf, yf = Xa[fit_idx], ya[fit_idx]
    Xc, yc = Xn[cert_idx], label_codes(teacher, yn[cert_idx])
    Xv, yv = Xn[val_idx], label_codes(teacher, yn[val_idx])
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0

    def score(m: MLP) -> float:
        value = evaluate(m.task, yv, m.predict(Xv)).get(metric, float("nan"))
        return float(value) if np.isfinite(value) else -np.inf * sign

    baseline = score(teacher)
    seed = None if random_state is None else int(random_state)
    result = MLPSearchResult(teacher, "original", metric, baseline)
    result.certificate = exact_certificate(metric, max_loss, confidence, yc, None)
    floor = smallest_budget(metric, yc, None, confidence)
    if 0 < max_loss < floor:
        message = cannot_certify_message(max_loss, metric, confidence, len(Xn), yc, None,
                                         "the original network")  # fmt: skip
        if strict:
            raise InsufficientDataError(message)
        warnings.warn(message, InsufficientDataWarning, stacklevel=3)
    if max_loss < floor:
        return result
    bar = Progress(0, "treeslim.nn search", verbose=verbose)
    best_bytes = len(dump_mlp_bytes(teacher))
    ref_v = teacher.predict(Xv)
    margin = proposal_margin(confidence, len(Xv), len(cert_idx))
    models: list[MLP] = []

    def tune(m: MLP) -> MLP:
        out = fine_tune(m, Xf, yf, teacher=teacher, epochs=fine_tune_epochs, random_state=seed)
        return quantize_weights(out, bits=32) if out.layers[0].precision == "float64" else out

    def judge(name: str, build: Callable[[], MLP]) -> MLP | None:
        nonlocal best_bytes
        bar.add(1)
        t0 = time.perf_counter()
        m = build()
        value = score(m)
        loss = sign * (baseline - value)
        size = len(dump_mlp_bytes(m))
        ok = bool(loss <= max_loss + 1e-12)
        se = None
        if ok:  # proposed only when likely to pass certification
            se = paired_se(m.task, yv, None, metric, ref_v, m.predict(Xv), seed)
            ok = loss + margin * se <= max_loss + 1e-12
        result.candidates.append(
            {
                "name": name,
                "bytes": size,
                "params": m.n_params,
                "score": value,
                "loss": loss,
                "loss_se": se,
                "accepted": ok,
                "seconds": time.perf_counter() - t0,
            }
        )
        models.append(m)
        bar.update(note=f"{name}: {metric}={value:.4f} {size:,d} B")
        return m if ok else None

    def int8_of(name: str, m: MLP) -> None:
        if judge(f"{name} > int8", lambda: quantize_weights(m, Xf, bits=8)) is None:
            if "qat" in methods:
                judge(
                    f"{name} > int8 QAT",
                    lambda: tune(quantize_weights(m, Xf, bits=8)),
                )

    if "float" in methods:
        judge("float32", lambda: quantize_weights(teacher, bits=32))
        judge("fp16", lambda: quantize_weights(teacher, bits=16))
    if "int8" in methods:
        ok = judge("int8", lambda: quantize_weights(teacher, Xf, bits=8))
        judge("int8 act", lambda: quantize_weights(teacher, Xf, bits=8, activations=True))
        if ok is None and "qat" in methods:
            judge("int8 QAT", lambda: tune(quantize_weights(teacher, Xf, bits=8)))
    if "prune" in methods:
        start = teacher  # iterative: each rung prunes the previous fine-tuned one further
        for s in SPARSITIES:
            pruned = judge(f"prune {s:g}", partial(_pruned, tune, start, s))
            if pruned is None:
                break
            start = pruned
            if "int8" in methods:
                int8_of(f"prune {s:g}", pruned)
    if "neurons" in methods and len(teacher.layers) > 1:
        for f in NEURON_FRACTIONS:
            shrunk = judge(f"neurons {f:g}", partial(_shrunk, tune, teacher, Xf, f))
            if shrunk is None:
                break
            if "int8" in methods:
                int8_of(f"neurons {f:g}", shrunk)
    if "lowrank" in methods:
        for e in ENERGIES:
            factored = low_rank(teacher, energy=e)
            if all(layer.kind != "lowrank" for layer in factored.layers):
                continue
            if judge(f"lowrank {e:g}", partial(tune, factored)) is None:
                break
    _certify(result, models, teacher, Xc, yc, max_loss, confidence, seed, margin)
    bar.close()
    return result


def _certify(result: MLPSearchResult, models: list[MLP], teacher: MLP, Xc: Any, yc: Any,
             max_loss: float, confidence: float, seed: int | None,
             margin: float) -> None:  # fmt: skip
    """Certify a chain of the proposals on the certification rows, fixed before they are seen
    (largest first, the proposals likelier to end it than to pay off left out), until one
    fails; the smallest certified ``.tslim`` is the result (else the original)."""
    cands = result.candidates
    proposed = [i for i, c in enumerate(cands) if c["accepted"]]
    order = sequence_order([cands[i]["bytes"] for i in proposed],
                           [cands[i]["loss"] for i in proposed],
                           [cands[i]["loss_se"] or 0.0 for i in proposed],
                           original=len(dump_mlp_bytes(teacher)), max_loss=max_loss,
                           confidence=confidence, margin=margin)  # fmt: skip
    chain = [proposed[k] for k in order]
    certs = certify_in_sequence((models[i].predict(Xc) for i in chain), task=teacher.task,
                                metric=result.metric, y=yc, qid=None, ref=teacher.predict(Xc),
                                max_loss=max_loss, confidence=confidence,
                                random_state=seed)  # fmt: skip
    best = math.inf
    for i, cert in zip(chain, certs, strict=False):
        cands[i]["certificate"] = cert
        if cert.certified and cands[i]["bytes"] < best:
            best = cands[i]["bytes"]
            result.mlp, result.name = models[i], cands[i]["name"]
            result.certificate = cert
