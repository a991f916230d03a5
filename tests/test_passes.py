"""Compression passes: exact ones predict the same everywhere, data-driven ones approximate well."""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.util
import itertools
import pickle

import models
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import assert_close, oracle_rows, rows

import treeslim
from treeslim import Forest
from treeslim.data import generate_rows, iter_generated_rows
from treeslim.ir import TreeArrays
from treeslim.passes import (
    collapse_identical_splits,
    exact_passes,
    fold_constant_trees,
    prune_nodes,
    refit_leaves,
    select_trees,
    selection_order,
)

HAVE_SKLEARN_FRONTEND = importlib.util.find_spec("treeslim.frontends._sklearn") is not None
CASES = [
    pytest.param(lib, task, marks=pytest.mark.skipif(
        lib.startswith("sklearn") and not HAVE_SKLEARN_FRONTEND, reason="no sklearn frontend"))
    for lib, task in models.ALL
]  # fmt: skip


@functools.cache
def forest_of(lib: str, task: str) -> tuple[Forest, np.ndarray]:
    model, X = models.model(lib, task)
    return treeslim.from_model(model), X


@functools.cache
def real_model() -> tuple[Forest, np.ndarray]:
    """A real 120-tree XGBoost model: what tree selection is for."""
    import xgboost as xgb

    X, y, _ = models.data("binary", n=3000, d=8, seed=1)
    m = xgb.XGBClassifier(n_estimators=120, max_depth=4, n_jobs=1, random_state=0).fit(X, y)
    return treeslim.from_model(m), X


def teacher_error(student: Forest, teacher: Forest, X: np.ndarray) -> float:
    return float(np.mean((student.predict_margin(X) - teacher.predict_margin(X)) ** 2))


def bloated(f: Forest) -> Forest:
    """``f`` with every tree doubled under a root split and, unless averaged, a constant tree per
    output (its value taken off base_score): predicts what ``f`` does, with nodes to remove."""

    def shift(child, by):
        return np.where(np.asarray(child) < 0, -1, np.asarray(child) + by)

    trees = []
    for t in range(f.n_trees):
        tr = f.tree(t)
        n = len(tr.split_index)
        trees.append(TreeArrays(
            split_index=np.r_[t % f.num_feature, tr.split_index, tr.split_index],
            threshold=np.r_[0.5, tr.threshold, tr.threshold],
            cleft=np.r_[1, shift(tr.cleft, 1), shift(tr.cleft, 1 + n)],
            cright=np.r_[1 + n, shift(tr.cright, 1), shift(tr.cright, 1 + n)],
            default_left=np.r_[t % 2 == 0, tr.default_left, tr.default_left],
            leaf_value=np.vstack([tr.leaf_value[:1], tr.leaf_value, tr.leaf_value]),
            tree_class=tr.tree_class,
        ))  # fmt: skip
    header = f.header()
    if not f.average:
        for c in range(f.n_outputs if f.leaf_width == 1 else 1):
            value = np.full((1, f.leaf_width), 0.25)
            trees.append(leaf_tree(value, c if f.leaf_width == 1 else -1))
        header["base_score"] = f.base_score - 0.25
    return Forest.from_trees(trees, **header)


# ------------------------------------------------------------------------------ exact passes
@pytest.mark.parametrize(("lib", "task"), CASES)
def test_exact_passes_keep_every_prediction(lib, task):
    f, _ = forest_of(lib, task)
    big = bloated(f)
    small = exact_passes(big)
    assert small.n_nodes <= f.n_nodes < big.n_nodes
    assert small.n_trees == f.n_trees
    R = oracle_rows(f, 400)
    assert_close(small.predict_margin(R), f.predict_margin(R), what=f"{lib} {task}")
    assert exact_passes(f).n_nodes <= f.n_nodes

    @settings(max_examples=10)
    @given(rows(f, max_rows=30))
    def check(X):
        assert_close(small.predict_margin(X), big.predict_margin(X), what=f"{lib} {task}")

    check()


def chain(values, data_count=None):
    """x0 < 0 -> (x1 < 0 -> a | b), else (x1 < 0 -> c | d): a complete depth-2 tree."""
    return TreeArrays(
        split_index=np.array([0, 1, 1, -1, -1, -1, -1]),
        threshold=np.zeros(7), cleft=np.array([1, 3, 5, -1, -1, -1, -1]),
        cright=np.array([2, 4, 6, -1, -1, -1, -1]), default_left=np.ones(7, bool),
        leaf_value=np.r_[0.0, 0.0, 0.0, values], data_count=data_count,
    )  # fmt: skip


def test_collapse_cascades_and_sums_statistics():
    counts = np.array([10.0, 4, 6, 1, 3, 2, 4])
    f = Forest.from_trees([chain([1.0, 1, 1, 1], counts)], num_feature=2, task="regression")
    g = collapse_identical_splits(f)
    assert g.n_nodes == 1  # the inner splits collapse, then the root does
    assert g.data_count.tolist() == [10.0]
    h = Forest.from_trees([chain([1.0, 2, 1, 2], counts)], num_feature=2, task="regression")
    k = collapse_identical_splits(h)
    assert k.n_nodes == 3 and k.split_index[0] == 1  # the root goes, x1's split stays
    assert k.data_count.tolist() == [10.0, 3.0, 7.0]
    R = oracle_rows(h, 200)
    assert_close(k.predict_margin(R), h.predict_margin(R))
    assert collapse_identical_splits(k) is k
    for field, value in (("default_left", [True, True, False]), ("threshold", [0.0, 0.0, 1e-9])):
        t = chain([1.0, 2, 1, 2])  # subtrees alike except for one field of their split
        t = dataclasses.replace(t, **{field: np.r_[value, np.zeros(4, t.default_left.dtype)]})
        u = Forest.from_trees([t], num_feature=2, task="regression")
        assert collapse_identical_splits(u) is u, field
    assert k.source["passes"][-1]["nodes_after"] == 3


def leaf_tree(value, tree_class=0):
    v = np.atleast_2d(np.asarray(value, dtype=float))
    return TreeArrays(np.array([-1]), np.zeros(1), np.array([-1]), np.array([-1]),
                      np.zeros(1, bool), v, tree_class=tree_class)  # fmt: skip


def test_fold_constant_trees_per_class():
    trees = [chain([1.0, 2, 3, 4]), leaf_tree(0.5, 0), leaf_tree(-1.0, 1), leaf_tree(2.0, 1),
             leaf_tree(0.25, 2)]  # fmt: skip
    f = Forest.from_trees(trees, num_feature=2, task="multiclass", num_class=3,
                          postprocessor="softmax", base_score=[0.1, 0.2, 0.3])  # fmt: skip
    g = fold_constant_trees(f)
    assert g.n_trees == 3  # class 0 keeps its stump, classes 1 and 2 one constant tree each
    assert np.bincount(g.tree_class, minlength=3).tolist() == [1, 1, 1]
    assert np.allclose(g.base_score, [0.6, 0.2, 0.3])
    R = oracle_rows(f, 100)
    assert_close(g.predict_margin(R), f.predict_margin(R))
    avg = Forest.from_trees(trees[:2], num_feature=2, task="regression", average=True)
    assert fold_constant_trees(avg) is avg  # folding would change the mean's divisor


def test_fold_constant_vector_leaves():
    stump = chain([1.0, 2, 3, 4])
    stump = dataclasses.replace(
        stump, tree_class=-1, leaf_value=np.outer(stump.leaf_value, [1, -1])
    )
    f = Forest.from_trees([stump, leaf_tree([[0.5, 1.5]], -1)], num_feature=2,
                          task="multiclass", num_class=2, base_score=[0.0, 0.0])  # fmt: skip
    g = fold_constant_trees(f)
    assert g.n_trees == 1 and g.base_score.tolist() == [0.5, 1.5]
    R = oracle_rows(f, 100)
    assert_close(g.predict_margin(R), f.predict_margin(R))


def test_exact_passes_rejects_bad_rounds():
    f, _ = forest_of("xgboost", "binary")
    with pytest.raises(ValueError, match="'max_rounds' parameter of exact_passes"):
        exact_passes(f, max_rounds=0)


# ------------------------------------------------------------------------------ generated rows
def test_generate_rows_deterministic_and_chunk_independent():
    X, _, _ = models.data("regression", n=300)
    G = generate_rows(X, 10_000, random_state=7)
    assert G.shape == (10_000, X.shape[1])
    assert np.array_equal(G, generate_rows(X, 10_000, random_state=7), equal_nan=True)
    assert not np.array_equal(G, generate_rows(X, 10_000, random_state=8), equal_nan=True)
    for chunk in (1_000, 4_096, 5_000, 50_000):
        got = np.vstack(list(iter_generated_rows(X, 10_000, random_state=7, chunk_size=chunk)))
        assert np.array_equal(G, got, equal_nan=True), chunk
        parts = list(iter_generated_rows(X, 10_000, random_state=7, chunk_size=chunk))
        assert max(len(p) for p in parts) == min(chunk, 10_000)
    for j in range(X.shape[1]):  # every value comes from its own column
        col = G[:, j]
        assert np.isin(col[~np.isnan(col)], X[:, j]).all()
        assert 0 < np.isnan(col).mean() < 0.1  # X has 5% NaN, copied like any value
    assert not any((X == g).all(axis=1).any() for g in G[:50])  # rows are new combinations
    assert len(np.unique(np.nan_to_num(G, nan=-99.0), axis=0)) > 0.99 * len(G)  # no repeats
    B = generate_rows(X, 200, method="bootstrap", random_state=0)
    real = {r.tobytes() for r in X.astype(np.float64)}
    assert all(r.tobytes() in real for r in B)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_rows": -1}, "'n_rows' parameter"), ({"method": "gan"}, "'method' parameter"),
     ({"swap_prob": 2.0}, "'swap_prob' parameter"), ({"chunk_size": 0}, "'chunk_size' parameter"),
     ({"random_state": "x"}, "'random_state' parameter")],
)  # fmt: skip
def test_generate_rows_errors(kwargs, match):
    X = np.ones((5, 2))
    with pytest.raises(ValueError, match=match):
        generate_rows(X, **{"n_rows": 10, **kwargs})
    with pytest.raises(ValueError, match="2-D"):
        generate_rows(np.ones(5), 3)


# ------------------------------------------------------------------------------ tree selection
@pytest.mark.parametrize("method", ["greedy", "nnls"])
@pytest.mark.parametrize(("lib", "task"), CASES)
def test_select_all_trees_reproduces_margins(lib, task, method):
    f, X = forest_of(lib, task)
    per_output = f.n_trees // f.n_outputs if f.leaf_width == 1 else f.n_trees
    g = select_trees(f, generate_rows(X, 3000, random_state=0), n_trees=per_output, method=method)
    assert g.n_trees == f.n_trees and not g.average
    H = generate_rows(X, 1000, random_state=1)
    assert_close(g.predict_margin(H), f.predict_margin(H), what=f"{lib} {task} {method}")
    if f.leaf_width == 1 and f.n_outputs > 1 and method == "greedy":  # per-class structure kept
        small = select_trees(f, X, n_trees=2, method=method)
        assert np.bincount(small.tree_class).tolist() == [2] * f.n_outputs


@pytest.mark.parametrize("method", ["greedy", "nnls"])
def test_select_beats_first_trees(method):
    f, X = real_model()
    G = generate_rows(X, 6000, swap_prob=0.5, random_state=0)
    H = generate_rows(X, 3000, swap_prob=0.5, random_state=1)
    for k in (5, 10):
        first = Forest.from_trees([f.tree(t) for t in range(k)], **f.header())
        chosen = select_trees(f, G, n_trees=k, method=method)
        assert chosen.n_trees == k
        assert teacher_error(chosen, f, H) < 0.5 * teacher_error(first, f, H)


@pytest.mark.parametrize("method", ["greedy", "nnls"])
@pytest.mark.parametrize(
    ("lib", "task"), [("xgboost", "multiclass"), ("sklearn-forest", "multiclass")]
)
def test_selection_order_is_nested(lib, task, method):
    """One order for the largest size gives the same forests as selecting each size afresh."""
    f, X = forest_of(lib, task)
    G = generate_rows(X, 2000, random_state=0)
    order = selection_order(f, G, n_trees=6, method=method)
    for k in (1, 3, 6):
        a = select_trees(f, G, n_trees=k, method=method)
        b = select_trees(f, G, n_trees=k, method=method, order=order)
        np.testing.assert_array_equal(a.leaf_value, b.leaf_value)
        np.testing.assert_array_equal(a.base_score, b.base_score)
    # an order made for fewer trees is not trusted for more
    short = selection_order(f, G, n_trees=2, method=method)
    c = select_trees(f, G, n_trees=4, method=method, order=short)
    np.testing.assert_array_equal(
        c.leaf_value, select_trees(f, G, n_trees=4, method=method).leaf_value
    )
    with pytest.raises(ValueError, match="one sequence per output group"):
        select_trees(f, G, n_trees=2, order=[[0]] * (len(order) + 1))


@pytest.mark.parametrize(("lib", "task"), [("xgboost", "multiclass"), ("lightgbm", "binary")])
def test_an_order_weights_trees_without_scoring_them_only_on_its_own_rows(lib, task):
    """A greedy order carries its least-squares fit: on the rows it was made on, select_trees
    weights the kept trees from it (bit-identical to selecting afresh, which test above checks);
    on other rows, other targets or another row sample it refits on those rows, as a plain list
    of the same order does."""
    f, X = forest_of(lib, task)
    G = generate_rows(X, 1500, random_state=0)
    order = selection_order(f, G, n_trees=5, random_state=0)
    assert order.fits is not None and order.key is not None
    plain = [list(o) for o in order]
    G2 = generate_rows(X, 1500, random_state=1)
    target = f.predict_margin(G) * 0.5
    for kw in ({"X": G2}, {"X": G, "target_margin": target}, {"X": G, "max_rows": 700}):
        a = select_trees(f, n_trees=3, order=order, random_state=0, **kw)
        b = select_trees(f, n_trees=3, order=plain, random_state=0, **kw)
        np.testing.assert_array_equal(a.leaf_value, b.leaf_value)
        np.testing.assert_array_equal(a.base_score, b.base_score)
    # another forest on the same rows (here: NaN routed the other way) refits too
    G_nan = np.where(np.random.default_rng(2).random(G.shape) < 0.2, np.nan, G)
    order_nan = selection_order(f, G_nan, n_trees=5, random_state=0)
    flipped = f.replace(default_left=(f.split_index >= 0) & ~f.default_left)
    a = select_trees(flipped, G_nan, n_trees=3, order=order_nan, random_state=0)
    b = select_trees(flipped, G_nan, n_trees=3, order=[list(o) for o in order_nan],
                     random_state=0)  # fmt: skip
    np.testing.assert_array_equal(a.leaf_value, b.leaf_value)
    # the carried fit is a least-squares fit of the kept trees on these rows
    a = select_trees(f, G, n_trees=3, order=order, random_state=0)
    b = select_trees(f, G, n_trees=3, order=plain, random_state=0)
    assert_close(a.predict_margin(G), b.predict_margin(G), what=f"{lib} {task}")
    # and it survives pickling (joblib and dask workers get it that way)
    again = pickle.loads(pickle.dumps(order))
    assert again.key == order.key and len(again.fits) == len(order.fits)
    c = select_trees(f, G, n_trees=3, order=again, random_state=0)
    np.testing.assert_array_equal(c.leaf_value, a.leaf_value)


def test_an_order_that_stopped_early_serves_every_size_it_was_made_for():
    """selection_order remembers the size it was made for: a group that stopped before it (the
    other trees spanned) is kept as it is, not recomputed; a plain list that short is not
    trusted for more trees than it holds."""
    f, X = forest_of("xgboost", "multiclass")
    G = generate_rows(X, 500, random_state=0)
    order = selection_order(f, G, n_trees=4)
    assert order.n_trees == 4 and all(len(o) == 4 for o in order)
    stopped = copy.copy(order)  # as if every group had stopped after its first tree
    stopped[:] = [o[:1] for o in order]
    kept = select_trees(f, G, n_trees=3, order=stopped)
    assert kept.n_trees == len(order)  # one tree per class, as the order says
    plain = select_trees(f, G, n_trees=3, order=[o[:1] for o in order])
    assert plain.n_trees == 3 * len(order)  # recomputed
    np.testing.assert_array_equal(plain.leaf_value, select_trees(f, G, n_trees=3).leaf_value)


def test_selection_weights_are_the_least_squares_fit():
    """The kept trees' weights and intercept minimise the squared error to the target margins:
    the residual is orthogonal to every kept tree's output and sums to zero."""
    f, X = forest_of("xgboost", "regression")
    G = np.nan_to_num(generate_rows(X, 800, random_state=0))
    target = f.predict_margin(G) + 0.3 * np.sin(G[:, 0])
    # the least-squares fit in exact arithmetic, not XGBoost's float32 sum
    g = select_trees(f, G, n_trees=5, target_margin=target).replace(margin_dtype="float64")
    residual = target - g.predict_margin(G)
    zero = {**g.header(), "base_score": [0.0]}
    outputs = np.stack(
        [Forest.from_trees([g.tree(t)], **zero).predict_margin(G) for t in range(g.n_trees)],
        axis=1,
    )
    scale = np.linalg.norm(residual) * np.linalg.norm(outputs, axis=0)
    np.testing.assert_array_less(np.abs(residual @ outputs), 1e-8 * scale)
    assert abs(residual.sum()) < 1e-8 * np.linalg.norm(residual) * np.sqrt(len(G))


def test_select_errors():
    f, X = forest_of("xgboost", "multiclass")
    with pytest.raises(ValueError, match="'method' parameter of select_trees"):
        select_trees(f, X, n_trees=2, method="lars")
    with pytest.raises(ValueError, match="'n_trees' parameter of select_trees"):
        select_trees(f, X, n_trees=0)
    with pytest.raises(ValueError, match=r"target_margin must have shape \(500, 3\)"):
        select_trees(f, X, n_trees=2, target_margin=np.zeros(500))
    with pytest.raises(ValueError, match="X has no rows"):
        select_trees(f, X[:0], n_trees=2)


# ------------------------------------------------------------------------------ leaf refit
def test_refit_toward_teacher_after_selection():
    f, X = real_model()
    G = generate_rows(X, 6000, swap_prob=0.5, random_state=0)
    H = generate_rows(X, 3000, swap_prob=0.5, random_state=1)
    chosen = select_trees(f, G, n_trees=10)
    before = chosen.leaf_value.copy()
    refit = refit_leaves(chosen, G, target_margin=f.predict_margin(G))
    assert np.array_equal(chosen.leaf_value, before)  # the input is untouched
    assert refit.n_nodes == chosen.n_nodes and np.array_equal(refit.cleft, chosen.cleft)
    assert np.array_equal(refit.base_score, chosen.base_score)
    assert teacher_error(refit, f, H) < 0.85 * teacher_error(chosen, f, H)


@pytest.mark.parametrize(("lib", "task"), CASES)
def test_refit_task_loss_lowers_the_loss(lib, task):
    f, X = forest_of(lib, task)
    _, y, qid = models.data(task)
    start = select_trees(f, X, n_trees=2)
    if task == "ranking":  # the selection already ranks almost perfectly: start from its reverse
        start = start.replace(leaf_value=-start.leaf_value)
    fit = refit_leaves(start, X, y, task_loss=True, qid=qid, l2=1.0)
    before, after = task_loss(start, X, y, qid), task_loss(fit, X, y, qid)
    assert after < 0.95 * before, (before, after)
    teach = refit_leaves(start, X, target_margin=f.predict_margin(X))
    assert teacher_error(teach, f, X) < teacher_error(start, f, X)


def test_refit_block_solver_matches_a_dense_solve():
    """The lockstep conjugate gradients solve every column's own weighted system."""
    from scipy import sparse

    from treeslim.passes._refit import _solve

    rng = np.random.default_rng(0)
    M = sparse.random(300, 40, density=0.2, random_state=0, format="csr")
    H = rng.uniform(0.1, 2.0, size=(300, 3))
    rhs = rng.normal(size=(40, 3))
    rhs[:, 2] = 0.0  # a column that is solved from the start
    X = _solve(M, H, rhs, 0.5, 500)
    D = M.toarray()
    for j in range(3):
        want = np.linalg.solve(D.T @ (H[:, j, None] * D) + 0.5 * np.eye(40), rhs[:, j])
        np.testing.assert_allclose(X[:, j], want, rtol=1e-5, atol=1e-9)


def dense_designs(forest, X):
    """Per output: the dense (n, L) leaf-indicator design of its trees (entries 1, or 1/trees per
    output for averaged forests) and the global node ids of its L columns, the leaves reached."""
    leaves = treeslim.ir.leaf_nodes(forest, X)
    per_output = np.bincount(forest.tree_class, minlength=forest.n_outputs)
    out = []
    for c in range(forest.n_outputs):
        trees = np.flatnonzero(forest.tree_class == c)
        ids = np.unique(leaves[:, trees])
        M = np.zeros((len(X), len(ids)))
        for t in trees:
            M[np.arange(len(X)), np.searchsorted(ids, leaves[:, t])] += (
                1.0 / per_output[c] if forest.average else 1.0
            )
        out.append((M, ids))
    return out


def dense_ridge(forest, X, target, *, l2, w=None):
    """Leaf values solving ``min sum_i w_i (m_i - t_i)^2 + l2 ||v - v0||^2`` (``w`` normalized
    to mean 1, ``v0`` the current values) by a dense solve of the normal equations, per output."""
    w = np.ones(len(X)) if w is None else w * (len(X) / w.sum())
    m0 = forest.predict_margin(X).reshape(len(X), -1)
    t = np.asarray(target, dtype=np.float64).reshape(len(X), -1)
    v = forest.leaf_value.copy()
    for c, (M, ids) in enumerate(dense_designs(forest, X)):
        A = M.T @ (w[:, None] * M) + l2 * np.eye(len(ids))
        v[ids, 0] += np.linalg.solve(A, M.T @ (w * (t[:, c] - m0[:, c])))
    return v


REFIT_CASES = [
    ("xgboost", "regression"),
    ("lightgbm", "multiclass"),
    ("sklearn-forest", "regression"),
]


def assert_same_change(got, want, v0, rel=1e-2):
    """Leaf values ``got`` and ``want`` moved ``v0`` by the same amount, to ``rel`` of the
    largest move (a solver stopping at a relative residual meets this; half a step does not)."""
    scale = np.abs(want - v0).max()
    assert scale > 1e-3 * np.abs(v0).max()  # the refit had something to do
    np.testing.assert_allclose(got - v0, want - v0, rtol=0, atol=rel * scale)


@pytest.mark.parametrize(("lib", "task"), REFIT_CASES)
@pytest.mark.parametrize("l2", [1e-3, 0.5])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_refit_toward_teacher_equals_a_dense_least_squares_solve(lib, task, l2, weighted):
    """The documented ridge problem, solved densely (numpy): same margins, and with a ridge that
    makes the problem well-conditioned, the same leaves (with a tiny one, leaf values that move
    every margin equally, e.g. +c in one tree and -c in another, are barely determined)."""
    f, X = forest_of(lib, task)
    start = select_trees(f, X, n_trees=4 * f.n_outputs)
    start = start.replace(leaf_value=0.5 * start.leaf_value)  # far from the teacher
    target = f.predict_margin(X)
    w = np.random.default_rng(0).uniform(0.0, 3.0, len(X)) if weighted else None
    if weighted:
        w[::7] = 0.0
    got = refit_leaves(start, X, target_margin=target, l2=l2, sample_weight=w, max_cg=2000)
    want = dense_ridge(start, X, target, l2=l2, w=w)

    def objective(v):
        # the least-squares problem in exact arithmetic, not XGBoost's float32 sum
        m = start.replace(leaf_value=v, margin_dtype="float64").predict_margin(X)
        r = (m - target).reshape(len(X), -1)
        ww = np.ones(len(X)) if w is None else w * (len(X) / w.sum())
        return float(np.sum(ww[:, None] * r * r) + l2 * np.sum((v - start.leaf_value) ** 2))

    best, before = objective(want), objective(start.leaf_value)
    assert best <= objective(got.leaf_value) <= best + 1e-6 * before  # the optimum, to 1e-6
    m0 = start.predict_margin(X)
    move = start.replace(leaf_value=want).predict_margin(X) - m0
    np.testing.assert_allclose(got.predict_margin(X) - m0, move, atol=1e-2 * np.abs(move).max())
    if l2 >= 0.5:
        assert_same_change(got.leaf_value, want, start.leaf_value)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_refit_on_regression_labels_equals_a_dense_solve(weighted):
    f, X = forest_of("xgboost", "regression")
    _, y, _ = models.data("regression")
    start = prune_nodes(select_trees(f, X, n_trees=5), X, fraction=0.5)
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(X)) if weighted else None
    got = refit_leaves(start, X, y, l2=1.0, sample_weight=w, max_cg=2000)
    want = dense_ridge(start, X, y, l2=1.0, w=w)
    assert_same_change(got.leaf_value, want, start.leaf_value)
    assert_close(got.predict_margin(X), start.replace(leaf_value=want).predict_margin(X))


def dense_newton_step(forest, X, y, v, *, l2, w):
    """One Newton step of refit's task loss plus ``l2/2 ||v - v0||^2`` from leaf values ``v``:
    logistic for sigmoid links, softmax cross-entropy with its per-class diagonal Hessian."""
    cur = forest.replace(leaf_value=v)
    m = cur.predict_margin(X).reshape(len(X), -1)
    if forest.task == "multiclass":
        z = np.exp(m - m.max(axis=1, keepdims=True))
        p, onehot = z / z.sum(axis=1, keepdims=True), np.eye(forest.n_outputs)[y]
    else:
        p, onehot = 1.0 / (1.0 + np.exp(-m)), y[:, None]
    g, h = w[:, None] * (p - onehot), w[:, None] * p * (1.0 - p)
    new = v.copy()
    for c, (M, ids) in enumerate(dense_designs(forest, X)):
        A = M.T @ (h[:, c, None] * M) + l2 * np.eye(len(ids))
        new[ids, 0] -= np.linalg.solve(
            A, M.T @ g[:, c] + l2 * (v[ids, 0] - forest.leaf_value[ids, 0])
        )
    return new


def task_objective(forest, X, y, v, *, l2, w):
    m = forest.replace(leaf_value=v).predict_margin(X).reshape(len(X), -1)
    if forest.task == "multiclass":
        lse = np.log(np.exp(m - m.max(axis=1, keepdims=True)).sum(axis=1)) + m.max(axis=1)
        loss = w * (lse - m[np.arange(len(y)), y])
    else:
        loss = w * (np.logaddexp(0.0, m[:, 0]) - y * m[:, 0])
    return float(loss.sum() + 0.5 * l2 * np.sum((v - forest.leaf_value) ** 2))


@pytest.mark.parametrize(("lib", "task"), [("lightgbm", "binary"), ("xgboost", "multiclass")])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_refit_task_loss_equals_a_dense_newton_solve(lib, task, weighted):
    """One Newton step is the dense Newton step; many reach the dense Newton optimum."""
    f, X = forest_of(lib, task)
    _, y, _ = models.data(task)
    start = select_trees(f, X, n_trees=3 * f.n_outputs)
    raw = np.random.default_rng(2).uniform(0.2, 3.0, len(X)) if weighted else np.ones(len(X))
    w, l2 = raw * (len(X) / raw.sum()), 0.5
    v0 = start.leaf_value
    step = dense_newton_step(start, X, y, v0, l2=l2, w=w)
    assert task_objective(start, X, y, step, l2=l2, w=w) < task_objective(
        start, X, y, v0, l2=l2, w=w
    )
    sw = None if not weighted else raw
    one = refit_leaves(start, X, y, task_loss=True, l2=l2, sample_weight=sw, max_newton=1,
                       max_cg=2000)  # fmt: skip
    assert_same_change(one.leaf_value, step, v0)
    v = v0
    for _ in range(30):
        v = dense_newton_step(start, X, y, v, l2=l2, w=w)
    full = refit_leaves(start, X, y, task_loss=True, l2=l2, sample_weight=sw, max_newton=30,
                        max_cg=2000)  # fmt: skip
    assert_close(full.predict_margin(X), start.replace(leaf_value=v).predict_margin(X))


@pytest.mark.parametrize(
    ("lib", "task"), [("xgboost", "multiclass"), ("lightgbm", "multiclass"), ("lightgbm", "binary")]
)
def test_refit_cross_entropy_toward_teacher(lib, task):
    """Cross-entropy to the teacher's probabilities brings them closer than the selection."""
    f, X = forest_of(lib, task)
    start = select_trees(f, X, n_trees=2)
    fit = refit_leaves(start, X, target_margin=f.predict_margin(X), teacher_loss="cross_entropy")
    assert fit.source["passes"][-1]["fit"] == "teacher_cross_entropy"

    def kl(g):
        p, q = f.predict(X), np.clip(g.predict(X), 1e-12, 1.0)
        if p.ndim == 1:
            p, q = np.stack([1 - p, p], axis=1), np.stack([1 - q, q], axis=1)
        return float(np.sum(p * (np.log(np.clip(p, 1e-12, 1.0)) - np.log(q))))

    assert kl(fit) < 0.9 * kl(start)


def task_loss(forest, X, y, qid):
    """The loss refit_leaves minimises for the task (1 - NDCG@10 for ranking)."""
    from treeslim.measure import ndcg_at_k

    m = forest.predict_margin(X)
    if forest.task == "ranking":
        return 1.0 - ndcg_at_k(y, m, qid)
    if forest.postprocessor == "identity":
        target = np.eye(forest.num_class)[y] if forest.task == "multiclass" else y
        return float(np.mean((m - target) ** 2))
    p = np.clip(forest.predict(X), 1e-12, 1 - 1e-12)
    if forest.task == "binary":
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def test_refit_errors():
    f, X = forest_of("xgboost", "binary")
    _, y, _ = models.data("binary")
    with pytest.raises(ValueError, match="either a teacher's target_margin or labels y"):
        refit_leaves(f, X, y, target_margin=f.predict_margin(X))
    with pytest.raises(ValueError, match="needs target_margin"):
        refit_leaves(f, X)
    with pytest.raises(ValueError, match="only makes sense for regression"):
        refit_leaves(f, X, y)
    with pytest.raises(ValueError, match="'l2' parameter of refit_leaves"):
        refit_leaves(f, X, y, task_loss=True, l2=-1.0)
    with pytest.raises(ValueError, match="0 / 1 labels"):
        refit_leaves(f, X, y + 1, task_loss=True)
    with pytest.raises(ValueError, match="sample_weight"):
        refit_leaves(f, X, y, task_loss=True, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="no task loss for task='binary' with postprocessor="):
        refit_leaves(f.replace(postprocessor="exponential"), X, y, task_loss=True)
    with pytest.raises(ValueError, match="'teacher_loss' parameter of refit_leaves"):
        refit_leaves(f, X, target_margin=f.predict_margin(X), teacher_loss="kl")
    with pytest.raises(ValueError, match="applies to a teacher's target_margin"):
        refit_leaves(f, X, y, task_loss=True, teacher_loss="cross_entropy")
    reg, Xg = forest_of("xgboost", "regression")
    with pytest.raises(ValueError, match="needs a classifier with a softmax or sigmoid link"):
        refit_leaves(reg, Xg, target_margin=reg.predict_margin(Xg), teacher_loss="cross_entropy")
    r, Xr = forest_of("xgboost", "ranking")
    with pytest.raises(ValueError, match="needs qid"):
        refit_leaves(r, Xr, models.data("ranking")[1], task_loss=True)


# ------------------------------------------------------------------------------ node pruning
@pytest.mark.parametrize(("lib", "task"), CASES)
def test_prune_nodes_meets_the_budget(lib, task):
    f, X = forest_of(lib, task)
    budget = f.n_nodes // 3
    g = prune_nodes(f, X, max_nodes=budget)
    assert f.n_trees <= g.n_nodes <= budget
    assert g.n_trees == f.n_trees and np.array_equal(g.base_score, f.base_score)
    assert prune_nodes(f, X, max_nodes=f.n_nodes) is f
    one_row = prune_nodes(f, X[:1], fraction=0.5)  # most nodes see no row: cover decides
    assert one_row.n_nodes <= np.ceil(f.n_nodes / 2)
    assert_close(one_row.predict_margin(X[:1]), f.predict_margin(X[:1]), what="the one row")


@pytest.mark.parametrize(
    ("lib", "task"), [("xgboost", "multiclass"), ("sklearn-forest", "multiclass")]
)
def test_prune_statistics_per_leaf_row_by_row(lib, task):
    """The per-leaf sums collapsing costs are made of (rows, sum of o, of z = o + r, of |z|^2 and
    |r|^2; o: the leaf's output, r: the row's residual at the tree's output) match a row-by-row
    sum, for one output per tree and for leaves holding class vectors."""
    from treeslim.passes._exact import tree_scale
    from treeslim.passes._nodes import _node_sums

    f, X = forest_of(lib, task)
    X = X[:150]
    target = (
        f.predict_margin(X) + np.linspace(-1, 1, len(X))[:, None] * np.arange(1, 4)[: f.n_outputs]
    )
    cnt, so, sz, szz, srr = _node_sums(f, np.asarray(X, dtype=np.float64), target)
    leaves = f.apply(X) + f.tree_offsets[:-1]
    r_all = target - f.predict_margin(X)
    scale = tree_scale(f)
    for t in range(0, f.n_trees, max(1, f.n_trees // 7)):
        cols = slice(None) if f.leaf_width > 1 else [int(f.tree_class[t])]
        for leaf in np.unique(leaves[:, t]):
            rows = leaves[:, t] == leaf
            o = f.leaf_value[leaf] * scale[t]
            r = r_all[rows][:, cols]
            z = o + r
            assert cnt[leaf] == rows.sum()
            np.testing.assert_allclose(so[leaf], (o + 0 * r).sum(axis=0), atol=1e-9)
            np.testing.assert_allclose(sz[leaf], z.sum(axis=0), atol=1e-9)
            np.testing.assert_allclose(szz[leaf], (z * z).sum(), rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(srr[leaf], (r * r).sum(), rtol=1e-9, atol=1e-9)


def test_prune_nodes_error_grows_as_the_budget_shrinks():
    f, X = real_model()
    G = generate_rows(X, 6000, swap_prob=0.5, random_state=0)
    H = generate_rows(X, 3000, swap_prob=0.5, random_state=1)
    errors = [teacher_error(prune_nodes(f, G, fraction=q), f, H) for q in (0.8, 0.6, 0.4, 0.2)]
    assert errors[0] < 0.2 * errors[-1]
    blind = prune_nodes(f, G[:1], fraction=0.4)  # one row: the order carries no information
    assert errors[2] < 0.2 * teacher_error(blind, f, H)
    assert all(b > 0.9 * a for a, b in itertools.pairwise(errors)), errors


def test_prune_nodes_leaf_value_is_the_data_mean():
    """x0 < 0 -> (x1 < 0 -> a | b): collapsing node 1 gives the mean of a and b over its rows,
    weighted by the rows (by sum_hess when no row arrives)."""
    hess = np.array([10.0, 4.0, 6.0, 1.0, 3.0, 2.0, 4.0])
    f = Forest.from_trees([dataclasses.replace(chain([1.0, 2, 3, 4]), sum_hess=hess)],
                          num_feature=2, task="regression")  # fmt: skip
    X = np.array([[-1.0, -1.0]] * 3 + [[-1.0, 1.0]] + [[1.0, -1.0]] * 10 + [[1.0, 1.0]] * 9)
    g = prune_nodes(f, X, max_nodes=5)
    assert g.n_nodes == 5 and g.split_index[1] == -1  # the left subtree costs least
    assert g.leaf_value[1, 0] == pytest.approx((3 * 1.0 + 1 * 2.0) / 4)
    g = prune_nodes(f, X[4:], max_nodes=5)  # no row reaches the left subtree
    assert g.leaf_value[1, 0] == pytest.approx((1 * 1.0 + 3 * 2.0) / 4)


def test_prune_nodes_errors():
    f, X = forest_of("lightgbm", "regression")
    with pytest.raises(ValueError, match="exactly one of max_nodes and fraction"):
        prune_nodes(f, X)
    with pytest.raises(ValueError, match="exactly one of max_nodes and fraction"):
        prune_nodes(f, X, max_nodes=10, fraction=0.5)
    with pytest.raises(ValueError, match="'fraction' parameter of prune_nodes"):
        prune_nodes(f, X, fraction=1.5)
    with pytest.raises(ValueError, match="below the 12 trees"):
        prune_nodes(f, X, max_nodes=5)


@settings(max_examples=5)
@given(st.integers(0, 2**32 - 1))
def test_passes_keep_invariants(seed):
    f, X = forest_of("lightgbm", "multiclass")
    G = generate_rows(X, 500, random_state=seed)
    g = refit_leaves(prune_nodes(select_trees(f, G, n_trees=3), G, fraction=0.5), G,
                     target_margin=f.predict_margin(G))  # fmt: skip
    treeslim.validate(exact_passes(g))
