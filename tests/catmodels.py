"""Random forests with categorical and numerical splits, and adversarial rows for them.

The libraries' own categorical models are tested in the frontend tests; these synthetic forests
reach the corners the libraries rarely produce (every rule, float32 and float64, wide sets, class
vectors) so the engines and the file format can be checked against the reference predictor.
"""

from __future__ import annotations

import numpy as np

from treeslim import Forest
from treeslim.ir import TreeArrays, bitset_table

CAT_FEATURES = (0, 2)  # features 0 and 2 are categorical in every forest below
MAX_CODE = 70  # sets reach into a third bitset word


def _tree(rng, depth, n_features, sets, cls, stop=0.2):
    split, thr, cl, cr, dl, leaf, cat = [], [], [], [], [], [], []

    def grow(level):
        node = len(split)
        for a in (split, thr, cl, cr, dl, leaf, cat):
            a.append(0)
        if level == depth or (level > 1 and rng.random() < stop):
            split[node], cl[node], cr[node] = -1, -1, -1
            leaf[node] = float(np.round(rng.normal(), 3))
            cat[node] = -1
            return node
        j = int(rng.integers(n_features))
        split[node] = j
        dl[node] = bool(rng.random() < 0.5)
        if j in CAT_FEATURES and rng.random() < 0.8:
            codes = rng.choice(MAX_CODE, size=int(rng.integers(1, 12)), replace=False)
            sets.append(sorted(codes.tolist()))
            cat[node] = len(sets) - 1
        else:
            thr[node] = float(np.round(rng.normal(), 2))
            cat[node] = -1
        cl[node] = grow(level + 1)
        cr[node] = grow(level + 1)
        return node

    grow(0)
    return TreeArrays(
        split_index=np.array(split), threshold=np.array(thr), cleft=np.array(cl),
        cright=np.array(cr), default_left=np.array(dl, dtype=bool), leaf_value=np.array(leaf),
        tree_class=cls, cat_index=np.array(cat),
    )  # fmt: skip


def categorical_forest(seed=0, rule="xgboost", task="binary", feature_dtype="float32",
                       n_trees=12, depth=4, n_features=4, comparison="<", stop=0.2):  # fmt: skip
    """A random forest whose features 0 and 2 are (mostly) split as categories."""
    rng = np.random.default_rng(seed)
    sets: list[list[int]] = []
    n_out = 3 if task == "multiclass" else 1
    trees = [_tree(rng, depth, n_features, sets, t % n_out, stop) for t in range(n_trees)]
    post = {"binary": "sigmoid", "multiclass": "softmax"}.get(task, "identity")
    return Forest.from_trees(
        trees, num_feature=n_features, task=task, num_class=n_out, base_score=np.zeros(n_out),
        postprocessor=post, comparison=comparison, feature_dtype=feature_dtype,
        category_rule=rule, cat_bitsets=bitset_table(sets or [[0]]),
    )  # fmt: skip


SPECIAL = np.array([np.nan, -1.0, -0.5, -0.0, 0.0, 0.5, 3.7, 31.0, 32.0, 63.99, 64.0, 95.0, 96.0,
                    2.0**24, 2.0**31, 1e10, np.inf, -np.inf])  # fmt: skip


def categorical_rows(forest, n=400, seed=0):
    """Rows with every code below MAX_CODE + 30 in categorical columns, and the special values."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, forest.num_feature))
    for j in CAT_FEATURES:
        if j < forest.num_feature:
            X[:, j] = rng.integers(0, MAX_CODE + 30, size=n)
            pick = rng.random(n) < 0.3
            X[pick, j] = rng.choice(SPECIAL, size=int(pick.sum()))
    pick = rng.random(X.shape) < 0.03
    X[pick] = rng.choice(SPECIAL, size=int(pick.sum()))
    return X
