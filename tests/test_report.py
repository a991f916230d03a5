"""Report, metrics and the CLI's compile / bench commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
from models import data, model
from oracle import native_predict

import treeslim
from treeslim.cli import main
from treeslim.measure import evaluate, fidelity, ndcg_at_k
from treeslim.passes import refit_leaves, select_trees


def test_ndcg_by_hand():
    y = np.array([2, 0, 1, 0, 0, 1])
    s = np.array([0.1, 0.9, 0.5, 0.3, 0.2, 0.8])
    q = np.array([0, 0, 0, 1, 1, 1])
    # query 0: order by score -> rel 0,1,2 ; ideal 2,1,0
    dcg0 = 0 / np.log2(2) + 1 / np.log2(3) + 3 / np.log2(4)
    idcg0 = 3 / np.log2(2) + 1 / np.log2(3)
    # query 1: order -> rel 1,0,0 = ideal
    expect = (dcg0 / idcg0 + 1.0) / 2
    assert ndcg_at_k(y, s, q, 10) == pytest.approx(expect)
    # a query without relevant documents counts as 1 (LightGBM's convention)
    assert ndcg_at_k(np.zeros(3), np.arange(3.0), np.zeros(3), 10) == 1.0
    with pytest.raises(ValueError, match="one entry per row"):
        ndcg_at_k(y, s, q[:2])


def test_evaluate_and_fidelity():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.8, 0.25, 0.3])
    m = evaluate("binary", y, p)
    assert m["auc"] == pytest.approx(0.75) and m["accuracy"] == pytest.approx(0.75)
    r = evaluate("regression", np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert r["rmse"] == pytest.approx(np.sqrt(1 / 3))
    f = fidelity("binary", p, np.log(p / (1 - p)), p * 0 + 0.6, np.zeros(4) + 0.4)
    assert f["agreement"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="need qid"):
        evaluate("ranking", y, p)
    with pytest.raises(ValueError, match="4 rows but the predictions have 3"):
        evaluate("binary", y, p[:3])


def expected_fidelity(task, pred, margin, ref_pred, ref_margin):
    """Agreement and largest margin difference, computed here from the two models' outputs."""
    if task == "binary":
        agree = np.mean((pred >= 0.5) == (ref_pred >= 0.5))
    elif task == "multiclass":
        agree = np.mean(pred.argmax(axis=1) == ref_pred.argmax(axis=1))
    else:
        agree = np.mean(np.abs(margin - ref_margin) <= 1e-6 * np.maximum(1.0, np.abs(ref_margin)))
    return float(agree), float(np.abs(margin - ref_margin).max())


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression", "ranking"])
def test_report_every_task(task):
    """Quality and fidelity of an XGBoost model against a different model (its first trees,
    refitted): the figures are the ones computed here from XGBoost's own predictions."""
    m, X = model("xgboost", task)
    _, y, qid = data(task)
    forest = treeslim.from_model(m)
    ref = refit_leaves(select_trees(forest, X, n_trees=3 * forest.n_outputs), X,
                       target_margin=forest.predict_margin(X))  # fmt: skip
    rep = treeslim.report(m, X, y, qid=qid, reference=ref, name="xgb", n_calls=200)
    e = rep[0]
    assert (e["trees"], e["nodes"], e["leaves"]) == (
        forest.n_trees,
        forest.n_nodes,
        forest.n_leaves,
    )
    assert e["bytes_xgboost_json"] > e["bytes_xgboost_ubj"] > 0
    assert 0 < e["p50_us"] <= e["p99_us"] and e["rows_per_s"] > 0
    pred, margin = native_predict(m, X), native_predict(m, X, margin=True)
    agree, delta = expected_fidelity(task, pred, margin, ref.predict(X), ref.predict_margin(X))
    assert delta > 0.05  # the two models differ
    assert e["agreement"] == pytest.approx(agree, abs=2 / len(X))  # float32 rounding may flip one
    assert e["max_abs_delta_margin"] == pytest.approx(delta, rel=1e-5)
    metric = treeslim.measure.default_metric(task)
    assert e[metric] == pytest.approx(evaluate(task, y, pred, qid=qid)[metric], abs=1e-6)
    assert 0 < e[metric] <= 1
    same = treeslim.report(m, X, reference=m, latency=None, sizes=False)[0]
    assert same["agreement"] == 1.0 and same["max_abs_delta_margin"] == 0.0
    json.loads(rep.to_json())
    assert "xgb" in rep.to_text() and "p50 us" in rep.to_text()
    frame = (rep + rep).to_frame()
    assert len(frame) == 2 and metric in frame.columns


def test_report_fidelity_sees_a_change_and_plots(tmp_path):
    m, X = model("lightgbm", "binary")
    _, y, _ = data("binary")
    forest = treeslim.from_model(m)
    changed = forest.replace(base_score=forest.base_score + 0.5)
    rep = treeslim.report(changed, X, y, reference=forest, latency=None, sizes=False)
    assert rep[0]["max_abs_delta_margin"] == pytest.approx(0.5)
    assert "p50_us" not in rep[0]
    with pytest.raises(ValueError, match="latency must be"):
        treeslim.report(forest, X, latency="fast")
    pytest.importorskip("matplotlib")
    path = tmp_path / "plot.png"
    (rep + treeslim.report(forest, X, y, n_calls=100, name="orig")).plot(path=str(path))
    assert path.stat().st_size > 1000


def test_cli_compile_and_bench(tmp_path, capsys):
    m, X = model("xgboost", "binary")
    _, y, _ = data("binary")
    path = tmp_path / "m.json"
    m.get_booster().save_model(path)
    out = tmp_path / "m.so"
    assert main(["compile", str(path), "-o", str(out)]) == 0
    assert out.stat().st_size > 0 and "compiled" in capsys.readouterr().out
    npz = tmp_path / "d.npz"
    np.savez(npz, X=X, y=y)
    assert main(["bench", str(path), "--data", str(npz), "--calls", "100", "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["entries"][0]
    assert entry["auc"] > 0.5 and entry["p50_us"] > 0
    csv = tmp_path / "d.csv"
    header = ",".join([f"f{i}" for i in range(X.shape[1])] + ["label"])
    np.savetxt(csv, np.column_stack([X, y]), delimiter=",", header=header, comments="")
    assert main(["bench", str(path), "--data", str(csv), "--target", "label", "--calls", "50"]) == 0
    assert "AUC" in capsys.readouterr().out
    assert main(["bench", str(path), "--data", str(csv), "--target", "nope"]) == 2
    assert "no column named 'nope'" in capsys.readouterr().err


def test_cli_bench_on_a_csv_without_rows(tmp_path, capsys):
    """A header-only (or empty) CSV is a clear error with exit code 2, not an IndexError."""
    m, X = model("xgboost", "binary")
    path = tmp_path / "m.json"
    m.get_booster().save_model(path)
    header_only = tmp_path / "header.csv"
    header_only.write_text(",".join([f"f{i}" for i in range(X.shape[1])] + ["label"]) + "\n")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for csv, what in ((header_only, "has a header but no data rows"), (empty, "is empty")):
        for extra in (["--target", "label"], []):
            assert main(["bench", str(path), "--data", str(csv), *extra]) == 2
            err = capsys.readouterr().err
            assert f"treeslim bench: error: {csv}: the CSV file {what}" in err
    one_column = tmp_path / "one.csv"  # one feature: n rows of one column, not one row
    one_column.write_text("1.5\n-2\n3\n")
    from treeslim.cli import read_data

    assert read_data(str(one_column))[0].shape == (3, 1)


@pytest.mark.parametrize(
    ("lib", "task"),
    [("xgboost", "multiclass"), ("xgboost", "binary"), ("lightgbm", "binary"),
     ("sklearn-forest", "regression")],
)  # fmt: skip
def test_search_and_report_scoring_is_the_reference_predictor(lib, task):
    """The search and the report score with the batch kernel (fast_predict): the same numbers
    as Forest.predict, on rows with NaN, infinities and exact thresholds (bit for bit for
    XGBoost's float32 sums; float64 sums in tree order, as LightGBM adds, against numpy's
    pairwise sum)."""
    from oracle import assert_close, oracle_rows

    from treeslim.runtime import fast_margin, fast_predict

    f = treeslim.from_model(model(lib, task)[0])
    X = oracle_rows(f, 300, seed=3)
    same = np.testing.assert_array_equal if f.margin_dtype == "float32" else assert_close
    same(fast_margin(f, X), f.predict_margin(X))
    same(fast_predict(f, X), f.predict(X))
    same(fast_predict(f, X[:1]), f.predict(X[:1]))


def test_search_scoring_without_a_compiler_is_the_reference_predictor(tmp_path):
    """Where the kernel cannot be built, fast_predict is Forest.predict itself."""
    import os
    import pickle
    import subprocess
    import sys
    import textwrap

    f, X = model("lightgbm", "binary")
    forest = treeslim.from_model(f)
    (tmp_path / "f.pkl").write_bytes(pickle.dumps((forest, X[:50])))
    script = textwrap.dedent(
        f"""
        import pickle, numpy as np
        from treeslim.runtime import fast_predict
        from treeslim.runtime._scoring import _kernel_of
        forest, X = pickle.loads(open({str(tmp_path / "f.pkl")!r}, "rb").read())
        assert _kernel_of(forest) is None
        assert np.array_equal(fast_predict(forest, X), forest.predict(X))
        """
    )
    bare = tmp_path / "bin"
    bare.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CC"}
    env.update(PATH=str(bare), TREESLIM_CACHE_DIR=str(tmp_path / "empty-cache"))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)


def test_compress_reports_bytes_in_the_formats_the_teachers_stack_loads():
    """report_ sizes the native formats (the teacher's library, Treelite, .tslim), each the
    length of the real bytes; format_sizes(formats=) measures the named ones only."""
    from sklearn.ensemble import RandomForestClassifier

    from treeslim.measure import format_sizes, native_formats, serialize

    X, y, _ = data("binary")
    for m, expect in ((model("xgboost", "binary")[0], {"xgboost_json", "xgboost_ubj"}),
                      (model("lightgbm", "binary")[0], {"lightgbm_text"}),
                      (RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0)
                       .fit(X, y), set())):  # fmt: skip
        forest = treeslim.from_model(m)
        assert set(native_formats(forest)) == expect | {"treelite", "tslim"}
        slim = treeslim.compress(m, X, y, max_loss=0.02, random_state=0, verbose=0)
        for entry, f in ((slim.report_[0], forest), (slim.report_[1], slim.forest_)):
            got = {k[6:]: v for k, v in entry.items() if k.startswith("bytes_")}
            assert set(got) == expect | {"treelite", "tslim"}
            assert got == {k: len(serialize(f, k)) for k in got}
    assert set(format_sizes(forest, formats=["tslim"])) == {"tslim"}
    with pytest.raises(ValueError, match="Unknown formats"):
        format_sizes(forest, formats=["pickle"])
