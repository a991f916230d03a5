"""Tree selection: keep a few trees of a forest and re-weight them to mimic the whole forest.

On calibration rows every tree is one column of a matrix of per-tree outputs; the forest's margin
(or a teacher's) is the target. :func:`select_trees` picks ``n_trees`` columns per output, by greedy
forward selection with a least-squares re-fit after every step (orthogonal least squares) or along
the non-negative lasso path, and folds the fitted weights into the kept trees' leaf values and the
intercept into ``base_score``. The module also holds the calibration helpers the other data-driven
passes share.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from treeslim.ir import Forest
from treeslim.passes._exact import record, tree_scale
from treeslim.passes._lsq import greedy_path, ls_weights, order_columns, prefix_weights
from treeslim.runtime import KernelForest

__all__ = ["select_trees", "selection_order"]

_METHODS = ("greedy", "nnls")


# ------------------------------------------------------------------------------ shared helpers
def summed_form(forest: Forest) -> Forest:
    """``forest`` with averaged outputs turned into sums (leaves scaled by 1/trees per output)."""
    if not forest.average:
        return forest
    scale = np.repeat(tree_scale(forest), np.diff(forest.tree_offsets))
    return forest.replace(leaf_value=forest.leaf_value * scale[:, None], average=False)


def check_target(
    forest: Forest, target: ArrayLike, n_rows: int, name: str = "target_margin"
) -> NDArray[np.float64]:
    """``target`` as a finite (n_rows, n_outputs) float64 array, or a ValueError naming ``name``."""
    t = np.asarray(target, dtype=np.float64)
    k = forest.n_outputs
    if t.ndim == 1 and k == 1:
        t = t[:, None]
    if t.shape != (n_rows, k):
        want = f"({n_rows},)" if k == 1 else f"({n_rows}, {k})"
        raise ValueError(f"{name} must have shape {want} (one margin per row and output); got"
                         f" {t.shape}.")  # fmt: skip
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} must be finite; it holds NaN or inf.")
    return t


def teacher_margin(
    forest: Forest, X: ArrayLike, target: ArrayLike | None
) -> tuple[KernelForest, NDArray[Any], NDArray[np.float64]]:
    """The kernel of ``forest``, the prepared rows, and the target margins (n, n_outputs)."""
    kernel = KernelForest(forest)
    Xc = kernel.prepare(X)
    if Xc.shape[0] == 0:
        raise ValueError("X has no rows: calibration passes need at least one row.")
    if target is None:
        return kernel, Xc, kernel.margin(Xc)
    return kernel, Xc, check_target(forest, target, Xc.shape[0])


def check_count(value: Any, name: str, fn: str, low: int = 1) -> int:
    """``value`` as an int >= ``low``, or a ValueError in scikit-learn's words."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(
            f"The '{name}' parameter of {fn} must be an int >= {low}. Got {value!r} instead."
        )
    return int(value)


_System = tuple[list[int], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]  # fmt: skip


def take_trees(forest: Forest, trees: NDArray[np.intp]) -> Forest:
    """The forest of trees ``trees`` (indices, in that order) of ``forest``, same header."""
    return Forest.from_trees([forest.tree(int(t)) for t in trees], **forest.header())


def output_groups(forest: Forest) -> list[NDArray[np.intp]]:
    """Tree indices per output group: every tree when leaves hold class vectors, else the trees
    of each class (selection keeps ``n_trees`` per group)."""
    if forest.leaf_width > 1:
        return [np.arange(forest.n_trees)]
    return [np.flatnonzero(forest.tree_class == c) for c in range(forest.n_outputs)]


def _systems(
    forest: Forest,
    X: ArrayLike,
    target_margin: ArrayLike | None,
    method: str,
    max_rows: int | None,
    random_state: Any,
    keep: Sequence[Sequence[int]] | None = None,
) -> tuple[Forest, list[NDArray[np.intp]], list[_System]]:
    """The summed forest, its output groups and, per group, the centred least-squares system
    ``(outputs, A, b, A_mean, b_mean)``: one column of per-tree outputs per member tree.

    With ``keep`` (positions within each group), the groups shrink to those members, in that
    order, and only their trees are evaluated on the rows.
    """
    if method not in _METHODS:
        raise ValueError(
            f"The 'method' parameter of select_trees must be one of {_METHODS}. Got {method!r}"
            " instead."
        )
    _, Xc, target = teacher_margin(forest, X, target_margin)
    if max_rows is not None:
        check_count(max_rows, "max_rows", "select_trees")
        if Xc.shape[0] > max_rows:
            rows = np.sort(np.random.default_rng(random_state).choice(len(Xc), max_rows, False))
            Xc, target = Xc[rows], target[rows]
    f = summed_form(forest)
    groups = output_groups(f)
    used = np.arange(f.n_trees)
    if keep is not None:
        groups = [g[np.asarray(list(p), dtype=np.intp)] for g, p in zip(groups, keep, strict=True)]
        used = np.unique(np.concatenate(groups))
    sub = f if len(used) == f.n_trees else take_trees(f, used)
    column = np.empty(f.n_trees, dtype=np.intp)
    column[used] = np.arange(len(used))
    leaves = KernelForest(sub).leaves(Xc)
    k = f.n_outputs
    vector = f.leaf_width > 1
    systems: list[_System] = []
    for c, members in enumerate(groups):
        outs = list(range(k)) if vector else [c]
        # Rows stacked over the group's outputs; every output has its own intercept.
        lv_cols = outs if vector else [0]
        if not len(members):
            t = target[:, outs]
            systems.append((outs, np.zeros((t.size, 0)), t.ravel(), np.zeros((len(outs), 0)), t.mean(axis=0)))  # fmt: skip
            continue
        A = np.concatenate([sub.leaf_value[leaves[:, column[members]], o] for o in lv_cols])
        b = np.concatenate([target[:, o] for o in outs])
        A3 = A.reshape(len(outs), -1, len(members))  # a view: centred in place
        A_mean = A3.mean(axis=1)  # (outs, members)
        A3 -= A_mean[:, None]
        b_mean = b.reshape(len(outs), -1).mean(axis=1)
        b = (b.reshape(len(outs), -1) - b_mean[:, None]).ravel()
        systems.append((outs, A, b, A_mean, b_mean))
    return f, groups, systems


class SelectionOrder(list[list[int]]):
    """What :func:`selection_order` returns: per output group, the trees in the order they are
    picked, and the ``n_trees`` it was made for. A group may hold fewer: the selection stopped
    there, its other trees being spanned by the chosen ones on these rows; the order still
    serves every ``n_trees`` up to this one.

    A greedy order also carries the least-squares fit of every prefix (``fits``, one
    :class:`_PrefixFit` per group) and a fingerprint of the forest, rows, target and row sample
    it was computed on (``key``): :func:`select_trees` given the same arguments then weights the
    kept trees without evaluating them on the rows again.
    """

    def __init__(
        self,
        groups: Any = (),
        n_trees: int | None = None,
        fits: list[_PrefixFit] | None = None,
        key: str | None = None,
    ) -> None:
        # n_trees is optional: dask (before 2024.12) rebuilds list arguments as type(x)(items),
        # and an order without it is trusted only as far as a plain list is
        super().__init__(groups)
        self.n_trees = n_trees
        self.fits = fits
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (SelectionOrder, ([list(g) for g in self], self.n_trees, self.fits, self.key))


@dataclasses.dataclass(frozen=True)
class _PrefixFit:
    """One group's greedy fit (:func:`greedy_path`): directions ``U``, coefficients ``beta``,
    the chosen columns' means per output ``A_mean``, the target's ``b_mean``, and the rows fitted."""

    U: NDArray[np.float64]
    beta: NDArray[np.float64]
    A_mean: NDArray[np.float64]
    b_mean: NDArray[np.float64]
    rows: int


def _fingerprint(
    forest: Forest, X: ArrayLike, target: ArrayLike | None, max_rows: int | None, random_state: Any
) -> str | None:
    """A hash of what a selection's least-squares systems are built from; None when they cannot
    be rebuilt identically (a random Generator draws another row sample every time)."""
    if random_state is not None and not isinstance(random_state, (int, np.integer)):
        return None
    try:
        Xa = np.ascontiguousarray(X, dtype=np.float64)
        ta = None if target is None else np.ascontiguousarray(target, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    h = hashlib.blake2b(digest_size=16)
    for a in (Xa, ta, forest.leaf_value, forest.threshold, forest.split_index, forest.cleft,
              forest.cright, forest.default_left, forest.tree_offsets, forest.tree_class,
              forest.base_score, forest.cat_index, forest.cat_bitsets):  # fmt: skip
        h.update(b"-" if a is None else repr(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    h.update(repr((max_rows, None if random_state is None else int(random_state),
                   forest.average, forest.comparison, forest.category_rule,
                   forest.feature_dtype)).encode())  # fmt: skip
    return h.hexdigest()


def selection_order(
    forest: Forest,
    X: ArrayLike,
    *,
    n_trees: int,
    target_margin: ArrayLike | None = None,
    method: str = "greedy",
    max_rows: int | None = 200_000,
    random_state: int | np.random.Generator | None = None,
) -> list[list[int]]:
    """The order in which :func:`select_trees` picks trees, up to ``n_trees`` per output group.

    Pass it as ``order=`` to :func:`select_trees` with the same arguments and any smaller
    ``n_trees`` to skip the search; the result is the same as without it.
    """
    n_keep = check_count(n_trees, "n_trees", "selection_order")
    _, groups, systems = _systems(forest, X, target_margin, method, max_rows, random_state)
    if method != "greedy":
        return SelectionOrder(
            [
                order_columns(A, b, n_keep, method) if len(members) else []
                for members, (_, A, b, _, _) in zip(groups, systems, strict=True)
            ],
            n_keep,
        )
    order: list[list[int]] = []
    fits: list[_PrefixFit] = []
    for members, (outs, A, b, A_mean, b_mean) in zip(groups, systems, strict=True):
        if not len(members):
            order.append([])
            continue
        chosen, U, beta = greedy_path(A, b, n_keep)
        order.append(chosen)
        fits.append(_PrefixFit(U, beta, A_mean[:, chosen], b_mean, A.shape[0] // len(outs)))
    key = _fingerprint(forest, X, target_margin, max_rows, random_state)
    if key is None or len(fits) < len(order) or not all(order):
        return SelectionOrder(order, n_keep)
    return SelectionOrder(order, n_keep, fits, key)


def select_trees(
    forest: Forest,
    X: ArrayLike,
    *,
    n_trees: int,
    target_margin: ArrayLike | None = None,
    method: str = "greedy",
    max_rows: int | None = 200_000,
    random_state: int | np.random.Generator | None = None,
    order: Sequence[Sequence[int]] | None = None,
) -> Forest:
    """Keep ``n_trees`` trees (per class) re-weighted to approximate a target margin on ``X``.

    Every tree's output on the rows of ``X`` is a column; the chosen columns and an intercept are
    fitted to ``target_margin`` by least squares, the weights are folded into the kept trees' leaf
    values and the intercept into ``base_score``. ``method="greedy"`` is forward selection with a
    full least-squares re-fit after each step (orthogonal least squares); ``method="nnls"`` takes
    the first trees to enter the non-negative lasso path and fits non-negative weights. Multiclass
    forests with one tree per class and round keep ``n_trees`` trees *per class*, each class fitted
    to its own margin; forests whose leaves hold class vectors fit one weight per tree over all
    classes. Averaged forests come back summed (``average=False``), predicting the same.

    Parameters
    ----------
    forest : Forest
    X : array-like of shape (n_samples, n_features)
        Calibration rows (real and generated, see :func:`~treeslim.passes.generate_rows`).
    n_trees : int
        Trees to keep, per class for multiclass forests with one output per tree.
    target_margin : array-like of shape (n_samples,) or (n_samples, n_outputs), optional
        Margins to approximate; by default ``forest``'s own margins on ``X``.
    method : {"greedy", "nnls"}, default="greedy"
    max_rows : int or None, default=200000
        Fit on a random subset of this many rows when ``X`` has more (bounds memory and time).
    random_state : int, numpy.random.Generator or None
        Seed of that subset.
    order : sequence of sequences of int, optional
        The selection order per output group, as :func:`selection_order` returns it for the
        same forest, rows, target, method and ``n_trees`` at least this large; the first
        ``n_trees`` of each are kept. Forward selection is nested, so one order serves every
        smaller ``n_trees`` (this is how :func:`~treeslim.compress` tries many sizes cheaply).

    Returns
    -------
    Forest
        The kept trees, in their original order, with the weights folded in.

    Examples
    --------
    >>> import numpy as np
    >>> from treeslim import Forest
    >>> f = Forest(split_index=[0, -1, -1, 0, -1, -1], threshold=[0.0, 0, 0, 1.0, 0, 0],
    ...            cleft=[1, -1, -1, 4, -1, -1], cright=[2, -1, -1, 5, -1, -1],
    ...            default_left=[True] + [False] * 5, leaf_value=[0, -1.0, 1.0, 0, -1.0, 1.0],
    ...            tree_offsets=[0, 3, 6], tree_class=[0, 0], num_feature=1, task="regression")
    >>> X = np.linspace(-2, 3, 50)[:, None]
    >>> g = select_trees(f, X, n_trees=2)
    >>> bool(np.allclose(g.predict_margin(X), f.predict_margin(X)))
    True
    """
    n_keep = check_count(n_trees, "n_trees", "select_trees")
    sizes = [len(g) for g in output_groups(forest)]
    if order is not None and len(order) != len(sizes):
        raise ValueError(
            f"order must hold one sequence per output group ({len(sizes)}); got {len(order)}."
        )
    prefix = None
    if order is not None and (
        (getattr(order, "n_trees", None) or 0) >= n_keep
        or all(len(o) >= min(n_keep, m) for o, m in zip(order, sizes, strict=True))
    ):
        # the order covers n_keep: only the trees it keeps need evaluating
        prefix = [
            [int(i) for i in o[:n_keep]] or [0][:m] for o, m in zip(order, sizes, strict=True)
        ]
    fits = getattr(order, "fits", None)
    if (prefix is not None and fits is not None and method == "greedy"
            and getattr(order, "key", None) == _fingerprint(forest, X, target_margin, max_rows,
                                                          random_state)):  # fmt: skip
        return _select_from_fits(forest, prefix, fits, method)
    f, groups, systems = _systems(forest, X, target_margin, method, max_rows, random_state, prefix)
    k = f.n_outputs
    weights = np.zeros(f.n_trees)
    keep = np.zeros(f.n_trees, dtype=bool)
    base = np.zeros(k)
    for c, (members, (outs, A, b, A_mean, b_mean)) in enumerate(zip(groups, systems, strict=True)):
        if not len(members):
            base[c] = b_mean[0]
            continue
        path = None
        if prefix is not None:  # members are already the kept trees, in selection order
            cols = list(range(len(members)))
        elif method == "greedy":  # no order, or one made for fewer trees
            cols, U, beta = path = greedy_path(A, b, n_keep)
        else:
            cols = order_columns(A, b, n_keep, method)
        if path is not None and cols:  # the greedy fit, as selection_order's orders carry it
            w = prefix_weights(U, beta, len(cols))
        else:  # no tree varies on these rows: keep the first as a constant
            cols = cols or [0]
            w = ls_weights(A, b, cols, positive=method == "nnls")
        nonzero = [i for i, wi in zip(cols, w, strict=True) if wi != 0.0] or cols[:1]
        chosen = members[nonzero]
        weights[chosen] = w[[cols.index(i) for i in nonzero]]
        keep[chosen] = True
        base[outs] = b_mean - A_mean[:, nonzero] @ weights[chosen]
    rows = systems[0][1].shape[0] // len(systems[0][0])
    return _weighted_forest(forest, f, weights, keep, base, method, rows)


def _select_from_fits(
    forest: Forest, prefix: list[list[int]], fits: list[_PrefixFit], method: str
) -> Forest:
    """:func:`select_trees` on the rows :func:`selection_order` saw: each group's weights are
    its greedy fit of the kept prefix, with no tree evaluated on the rows again."""
    f = summed_form(forest)
    weights = np.zeros(f.n_trees)
    keep = np.zeros(f.n_trees, dtype=bool)
    base = np.zeros(f.n_outputs)
    vector = f.leaf_width > 1
    for c, (members, kept, fit) in enumerate(zip(output_groups(f), prefix, fits, strict=True)):
        outs = list(range(f.n_outputs)) if vector else [c]
        j = len(kept)
        w = prefix_weights(fit.U, fit.beta, j)
        nonzero = [i for i in range(j) if w[i] != 0.0] or [0]
        chosen = members[np.asarray(kept, dtype=np.intp)[nonzero]]
        weights[chosen] = w[nonzero]
        keep[chosen] = True
        base[outs] = fit.b_mean - fit.A_mean[:, nonzero] @ w[nonzero]
    return _weighted_forest(forest, f, weights, keep, base, method, fits[0].rows)


def _weighted_forest(
    forest: Forest,
    f: Forest,
    weights: NDArray[np.float64],
    keep: NDArray[np.bool_],
    base: NDArray[np.float64],
    method: str,
    rows: int,
) -> Forest:
    """The kept trees of ``f`` (``forest`` in summed form), weights folded into their leaves."""
    node_w = np.repeat(weights, np.diff(f.tree_offsets))
    scaled = f.replace(leaf_value=f.leaf_value * node_w[:, None])
    trees = [scaled.tree(int(t)) for t in np.flatnonzero(keep)]
    header = f.header()
    header["base_score"] = base
    header["source"] = record(
        forest,
        {"name": "select_trees", "lossy": True, "method": method, "trees_before": forest.n_trees,
         "trees_after": len(trees), "rows": rows},
    )  # fmt: skip
    return Forest.from_trees(trees, **header)
