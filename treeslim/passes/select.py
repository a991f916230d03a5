"""Tree selection: keep a few trees of a forest and re-weight them to mimic the whole forest.

On calibration rows every tree is one column of a matrix of per-tree outputs; the forest's margin
(or a teacher's) is the target. :func:`select_trees` picks ``n_trees`` columns per output, by greedy
forward selection with a least-squares re-fit after every step (orthogonal least squares) or along
the non-negative lasso path, and folds the fitted weights into the kept trees' leaf values and the
intercept into ``base_score``. The module also holds the calibration helpers the other data-driven
passes share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._kernel import KernelForest
from ..forest import Forest
from .exact import record, tree_scale

__all__ = ["select_trees"]

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


# ------------------------------------------------------------------------------ selection
def _greedy(A: NDArray[np.float64], b: NDArray[np.float64], k: int) -> list[int]:
    """Orthogonal least squares: the ``k`` columns of centred ``A`` that best fit centred ``b``.

    Each step adds the column whose residual (after projecting out the chosen ones) explains the
    most of the current residual; both are kept up to date with one ``A.T @ q`` per step.
    """
    norms = np.einsum("ij,ij->j", A, A)
    floor = 1e-10 * max(float(norms.max(initial=0.0)), 1e-300)
    corr = A.T @ b
    r = b.copy()
    basis: list[NDArray[np.float64]] = []
    chosen: list[int] = []
    for _ in range(min(k, A.shape[1])):
        score = np.where(norms > floor, corr**2 / np.maximum(norms, floor), -1.0)
        score[chosen] = -1.0
        j = int(np.argmax(score))
        if score[j] < 0:
            break  # every remaining column is (numerically) spanned by the chosen ones
        q = A[:, j].copy()
        for _ in range(2):  # Gram-Schmidt twice: stays orthogonal in floating point
            for u in basis:
                q -= (u @ q) * u
        nq = float(np.linalg.norm(q))
        if nq**2 <= floor:
            norms[j] = 0.0
            continue
        q /= nq
        c = A.T @ q
        norms -= c**2
        rq = float(r @ q)
        r -= rq * q
        corr -= rq * c
        basis.append(q)
        chosen.append(j)
    return chosen


def _lasso_order(A: NDArray[np.float64], b: NDArray[np.float64], k: int) -> list[int]:
    """The first ``k`` columns to become non-zero on the non-negative lasso path (LARS)."""
    from sklearn.linear_model import lars_path_gram

    gram = A.T @ A
    _, _, coefs = lars_path_gram(
        A.T @ b, gram, n_samples=A.shape[0], max_iter=4 * A.shape[1], method="lasso",
        positive=True,
    )  # fmt: skip
    coefs = np.asarray(coefs).reshape(A.shape[1], -1)
    counts = np.count_nonzero(coefs, axis=0)
    reached = np.flatnonzero(counts >= k)
    step = int(reached[0]) if len(reached) else coefs.shape[1] - 1
    nz = np.flatnonzero(coefs[:, step])
    return nz[np.argsort(-coefs[nz, step], kind="stable")][:k].tolist()


def _weights(
    A: NDArray[np.float64], b: NDArray[np.float64], cols: list[int], positive: bool
) -> NDArray[np.float64]:
    """Least-squares weights of the chosen (centred) columns; minimum change from 1 if not unique."""
    sub = A[:, cols]
    if positive:
        from scipy.optimize import nnls

        return np.asarray(nnls(sub, b)[0], dtype=np.float64)
    delta = np.linalg.lstsq(sub, b - sub.sum(axis=1), rcond=None)[0]
    return np.asarray(1.0 + delta, dtype=np.float64)


def select_trees(
    forest: Forest,
    X: ArrayLike,
    *,
    n_trees: int,
    target_margin: ArrayLike | None = None,
    method: str = "greedy",
    max_rows: int | None = 200_000,
    random_state: int | np.random.Generator | None = None,
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
    if method not in _METHODS:
        raise ValueError(
            f"The 'method' parameter of select_trees must be one of {_METHODS}. Got {method!r}"
            " instead."
        )
    n_keep = check_count(n_trees, "n_trees", "select_trees")
    _, Xc, target = teacher_margin(forest, X, target_margin)
    if max_rows is not None:
        check_count(max_rows, "max_rows", "select_trees")
        if Xc.shape[0] > max_rows:
            rows = np.sort(np.random.default_rng(random_state).choice(len(Xc), max_rows, False))
            Xc, target = Xc[rows], target[rows]
    f = summed_form(forest)
    leaves = KernelForest(f).leaves(Xc)
    k = f.n_outputs
    vector = f.leaf_width > 1
    groups = [np.arange(f.n_trees)] if vector else [
        np.flatnonzero(f.tree_class == c) for c in range(k)
    ]  # fmt: skip
    weights = np.zeros(f.n_trees)
    keep = np.zeros(f.n_trees, dtype=bool)
    base = np.zeros(k)
    for c, members in enumerate(groups):
        if not len(members):
            base[c] = target[:, c].mean()
            continue
        outs = list(range(k)) if vector else [c]
        # Rows stacked over the group's outputs; every output has its own intercept.
        lv_cols = outs if vector else [0]
        A = np.concatenate([f.leaf_value[leaves[:, members], o] for o in lv_cols])
        b = np.concatenate([target[:, o] for o in outs])
        A3 = A.reshape(len(outs), -1, len(members))  # a view: centred in place
        A_mean = A3.mean(axis=1)  # (outs, members)
        A3 -= A_mean[:, None]
        b_mean = b.reshape(len(outs), -1).mean(axis=1)
        b = (b.reshape(len(outs), -1) - b_mean[:, None]).ravel()
        if method == "greedy":
            cols = _greedy(A, b, n_keep)
        else:
            cols = _lasso_order(A, b, n_keep)
        if not cols:  # no tree varies on these rows: keep the first as a constant
            cols = [0]
        w = _weights(A, b, cols, positive=method == "nnls")
        nonzero = [i for i, wi in zip(cols, w, strict=True) if wi != 0.0] or cols[:1]
        chosen = members[nonzero]
        weights[chosen] = w[[cols.index(i) for i in nonzero]]
        keep[chosen] = True
        base[outs] = b_mean - A_mean[:, nonzero] @ weights[chosen]
    node_w = np.repeat(weights, np.diff(f.tree_offsets))
    scaled = f.replace(leaf_value=f.leaf_value * node_w[:, None])
    trees = [scaled.tree(int(t)) for t in np.flatnonzero(keep)]
    header = f.header()
    header["base_score"] = base
    header["source"] = record(
        forest,
        {"name": "select_trees", "lossy": True, "method": method, "trees_before": forest.n_trees,
         "trees_after": len(trees), "rows": int(Xc.shape[0])},
    )  # fmt: skip
    return Forest.from_trees(trees, **header)
