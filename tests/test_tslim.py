"""The .tslim format: exact round trips for every model kind, sizes, and corrupt-file handling."""

from __future__ import annotations

import importlib.util
import json
import struct
import zlib

import fuzz
import models
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import oracle_rows, rows

import treeslim
from treeslim import Forest, ModelFormatError, TreeSlimError
from treeslim.formats import HEADER as _HEADER
from treeslim.formats import dump_tslim_bytes, load_tslim_bytes, save_tslim
from treeslim.formats._bits import BitReader as _Reader
from treeslim.formats._bits import BitWriter as _Writer
from treeslim.formats._tslim import _read_leaves, _read_structure, _read_thresholds
from treeslim.passes import quantize_leaves

HAVE_SKLEARN_FRONTEND = importlib.util.find_spec("treeslim.frontends._sklearn") is not None
MODELS = [
    pytest.param(lib, task, marks=pytest.mark.skipif(
        lib.startswith("sklearn") and not HAVE_SKLEARN_FRONTEND, reason="no sklearn frontend"))
    for lib, task in models.ALL
]  # fmt: skip


def forest_of(lib, task):
    model, X = models.model(lib, task)
    return treeslim.from_model(model), X


def tree_keys(forest):
    """Each tree as a nested tuple, independent of node numbering."""

    def key(i):
        if forest.split_index[i] < 0:
            return ("leaf", forest.leaf_value[i].tobytes())
        return (
            int(forest.split_index[i]),
            forest.threshold[i].tobytes(),
            bool(forest.default_left[i]),
            key(forest.cleft[i]),
            key(forest.cright[i]),
        )

    return [key(int(r)) for r in forest.tree_offsets[:-1]]


def assert_same_forest(a, b):
    assert tree_keys(a) == tree_keys(b)
    np.testing.assert_array_equal(a.tree_class, b.tree_class)
    np.testing.assert_array_equal(a.base_score, b.base_score)
    assert a.header().keys() == b.header().keys()
    for k in ("num_feature", "task", "num_class", "postprocessor", "sigmoid_alpha", "average",
              "comparison", "feature_dtype", "feature_names"):  # fmt: skip
        assert getattr(a, k) == getattr(b, k), k
    assert json.dumps(a.source, sort_keys=True) == json.dumps(b.source, sort_keys=True)


def frame(payload, flags=0, version=1):
    return _HEADER.pack(b"TSLIM", version, flags, len(payload), zlib.crc32(payload)) + payload


def tiny_forest(**kw):
    fields = dict(
        split_index=[0, 1, -1, -1, -1], threshold=[0.5, -1.25, 0, 0, 0], cleft=[1, 3, -1, -1, -1],
        cright=[2, 4, -1, -1, -1], default_left=[True, False, False, False, False],
        leaf_value=[0, 0, 0.1, -0.2, 0.3], tree_offsets=[0, 5], tree_class=[0], num_feature=3,
        task="regression",
    )  # fmt: skip
    fields.update(kw)
    return Forest(**fields)


# ------------------------------------------------------------------------------ exactness
@pytest.mark.parametrize(("lib", "task"), MODELS)
def test_round_trip_is_exact_for_every_model(lib, task):
    forest, X = forest_of(lib, task)
    data = dump_tslim_bytes(forest)
    back = load_tslim_bytes(data)
    assert_same_forest(forest, back)
    R = oracle_rows(forest, 300, seed=7)
    for Z in (X, R):
        np.testing.assert_array_equal(back.predict_margin(Z), forest.predict_margin(Z))
        np.testing.assert_array_equal(back.predict(Z), forest.predict(Z))
    assert dump_tslim_bytes(back) == data  # preorder in, same bytes out


@pytest.mark.parametrize(("lib", "task"), [("xgboost", "multiclass"), ("lightgbm", "binary")])
@given(data=st.data())
def test_round_trip_on_hypothesis_rows(lib, task, data):
    forest, _ = forest_of(lib, task)
    back = load_tslim_bytes(dump_tslim_bytes(forest))
    R = data.draw(rows(forest))
    np.testing.assert_array_equal(back.predict_margin(R), forest.predict_margin(R))


def test_statistics_are_left_out_unless_asked(tmp_path):
    forest, _ = forest_of("lightgbm", "regression")
    assert forest.sum_hess is not None or forest.data_count is not None or forest.gain is not None
    plain = load_tslim_bytes(dump_tslim_bytes(forest))
    assert plain.sum_hess is None and plain.data_count is None and plain.gain is None
    path = tmp_path / "m.tslim"
    save_tslim(forest, path, stats=True)
    back = treeslim.load(path)
    for name in ("sum_hess", "data_count", "gain"):
        if getattr(forest, name) is not None:
            assert sorted(getattr(back, name)) == sorted(getattr(forest, name)), name
    assert len(path.read_bytes()) > len(dump_tslim_bytes(forest))


def test_huge_claimed_leaf_width_is_refused_before_allocating():
    """A forged header: 10**6 outputs x 3 leaves of a one-value codebook would need no bits."""
    f = tiny_forest(leaf_value=[0, 0, 1.0, 1.0, 1.0])
    payload = dump_tslim_bytes(f)[_HEADER.size :]
    (n,) = struct.unpack_from("<I", payload)
    meta = json.loads(payload[4 : 4 + n])
    meta.update(task="multiclass", num_class=10**6, base_score=[0] * 10**6, leaf_width=10**6)
    head = json.dumps(meta).encode()
    with pytest.raises(ModelFormatError, match=r"leaf values needs 96000000 bits but only"):
        load_tslim_bytes(frame(struct.pack("<I", len(head)) + head + payload[4 + n :]))


def test_edge_values_survive_bit_for_bit():
    f = tiny_forest(
        threshold=[-0.0, np.inf, 0, 0, 0], leaf_value=[0, 0, -0.0, 1e-300, np.pi],
        feature_names=("a", "b", "ç"), source={"library": "x", "n": np.int64(3), "t": (1, 2)},
        base_score=[0.1],
    )  # fmt: skip
    back = load_tslim_bytes(dump_tslim_bytes(f))
    assert tree_keys(back) == tree_keys(f)
    assert back.feature_names == ("a", "b", "ç") and back.source["t"] == [1, 2]


def test_vector_leaves_and_single_leaf_trees():
    f = Forest(
        split_index=[-1, 2, -1, -1], threshold=[0, 3.0, 0, 0], cleft=[-1, 2, -1, -1],
        cright=[-1, 3, -1, -1], default_left=[False, True, False, False],
        leaf_value=[[0.2, 0.8], [0, 0], [1.0, 0.0], [0.5, 0.5]], tree_offsets=[0, 1, 4],
        tree_class=[-1, -1], num_feature=4, task="multiclass", num_class=2,
        base_score=[0.0, 0.0], postprocessor="identity", average=True,
    )  # fmt: skip
    back = load_tslim_bytes(dump_tslim_bytes(f))
    assert_same_forest(f, back)
    lone = tiny_forest(split_index=[-1], threshold=[0], cleft=[-1], cright=[-1],
                       default_left=[False], leaf_value=[2.5], tree_offsets=[0, 1])  # fmt: skip
    assert load_tslim_bytes(dump_tslim_bytes(lone)).predict_margin(np.zeros((1, 3))) == [2.5]


def test_quantized_forests_are_smaller_and_lossless_tslim_beats_json():
    forest, _ = forest_of("xgboost", "binary")
    lossless = len(dump_tslim_bytes(forest))
    sizes = treeslim.measure.format_sizes(forest)
    assert lossless * 4 < sizes["xgboost_json"]
    q = quantize_leaves(forest, bits=4)
    assert len(dump_tslim_bytes(q)) < lossless - forest.n_leaves  # at least 1 byte per leaf


def test_load_routes_tslim_files_and_names_them(tmp_path):
    path = tmp_path / "model.tslim"
    save_tslim(tiny_forest(), path)
    assert treeslim.load(path).n_nodes == 5
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ModelFormatError, match=r"model\.tslim: \.tslim file truncated"):
        treeslim.load(path)


def test_source_must_be_json_serializable():
    with pytest.raises(ModelFormatError, match="source values must be JSON-serializable"):
        dump_tslim_bytes(tiny_forest(source={"x": object()}))


# ------------------------------------------------------------------------------ corrupt files
def test_header_errors():
    good = dump_tslim_bytes(tiny_forest())
    payload = good[_HEADER.size :]
    cases = [
        (b"", "not a .tslim file"),
        (b"PK\x03\x04 a zip", "not a .tslim file"),
        (good[:10], "shorter than the header"),
        (frame(payload, version=2), r"format version 2; this treeslim reads version 1 \(upgrade"),
        (frame(payload, version=0), "format version 0; this treeslim reads version 1."),
        (frame(payload, flags=0x80), "unknown .tslim flags 0x0080"),
        (good[:-1], r"truncated: the header says \d+ payload bytes, found"),
        (good + b"\0", "has trailing bytes"),
        (good[:-1] + bytes([good[-1] ^ 1]), "checksum mismatch"),
    ]
    for data, message in cases:
        with pytest.raises(ModelFormatError, match=message):
            load_tslim_bytes(data, name="f.tslim")


def test_payload_errors_with_a_valid_checksum():
    payload = dump_tslim_bytes(tiny_forest())[_HEADER.size :]
    (n,) = struct.unpack_from("<I", payload)
    meta = json.loads(payload[4 : 4 + n])

    def with_meta(**changes):
        head = json.dumps({**meta, **changes}).encode()
        return frame(struct.pack("<I", len(head)) + head + payload[4 + n :])

    cases = [
        (frame(payload + b"\0"), "1 unexpected trailing bytes"),
        (frame(payload, flags=1), r"sum_hess needs \d+ bits but only \d+ are left"),
        (frame(struct.pack("<I", 5) + b"{bad}"), r"JSON header is corrupt"),
        (frame(struct.pack("<I", 2**31) + b"{}"), r"JSON header needs \d+ bits"),
        (with_meta(task=3), "bad or missing 'task'"),
        (with_meta(n_nodes=2**31 - 1), r"tree structure needs 2147483647 bits"),
        (with_meta(n_trees=2), "does not make 2 complete trees"),
        (with_meta(num_feature=1), r"not increasing in \[0, 1\)"),
        (with_meta(leaf_width=7), "leaf_width 7 is not 1"),
        (with_meta(task="bogus"), "task must be one of"),
        (with_meta(base_score=[1.0, 2.0]), "one entry per output"),
    ]
    for data, message in cases:
        with pytest.raises(ModelFormatError, match=message):
            load_tslim_bytes(data)


def splits_stream(codes, sizes, indices, n_used=1, used=(0,)):
    """A hand-made split section (see _write_splits) for 3 splits, float64 tables."""
    w = _Writer()
    w.uints([n_used])
    w.uints(list(used))
    w.uints(codes, (n_used - 1).bit_length())
    w.uints(sizes)
    w.bits(np.ones(len(sizes)))
    for idx, size in zip(indices, sizes, strict=True):
        w.uints(idx, (size - 1).bit_length())
    w.bits(np.zeros(3))
    w.raw(np.arange(sum(sizes), dtype="<f8").tobytes())
    return _Reader(w.getvalue())


def test_each_decoder_check():
    with pytest.raises(ModelFormatError, match="does not make 1 complete trees"):
        _read_structure(_Reader(bytes([0b010])), 3, 1)  # a leaf, then a dangling split
    with pytest.raises(ModelFormatError, match="does not make 1 complete trees"):
        _read_structure(_Reader(bytes([0b011])), 3, 1)
    back = _read_thresholds(splits_stream([0, 0, 0], [3], [[0, 1, 2]]), 3, 5)
    np.testing.assert_array_equal(back[1], [0.0, 1.0, 2.0])
    cases = [
        (splits_stream([0, 0, 0], [3], [[0, 1, 3]]), "threshold index of feature 0 is out of"),
        (splits_stream([0, 0, 0], [4], [[0, 1, 3]]), "table size does not match its splits"),
        (splits_stream([0, 1, 0], [3, 1], [[0, 1], [0]], 2, (0, 4)), r"not increasing in \[0, 3\)"),
        (splits_stream([0, 1, 3], [1, 1, 1], [[0], [0], [0]], 3, (0, 1, 2)), "code is out of"),
        (splits_stream([0, 0, 0], [3], [[0, 1, 2]], 4, (0, 1, 2, 3)), "4 used features for 3"),
    ]  # fmt: skip
    for reader, message in cases:
        with pytest.raises(ModelFormatError, match=message):
            _read_thresholds(reader, 3, 3)
    for k in (5, 1):  # a one-value codebook would make codes of 0 bits: never written
        w = _Writer()
        w.uints([0], 2)
        w.uints([k])
        with pytest.raises(ModelFormatError, match=f"codebook size {k} is out of range for 4 leaf"):
            _read_leaves(_Reader(w.getvalue()), 4)
    w = _Writer()
    w.uints([1], 2)
    w.uints([3])
    w.uints([0, 1, 2, 3], 2)
    w.raw(np.zeros(3).tobytes())
    with pytest.raises(ModelFormatError, match="a leaf code is out of range"):
        _read_leaves(_Reader(w.getvalue()), 4)
    with pytest.raises(ModelFormatError, match="bit width 200 exceeds 32"):
        _Reader(bytes([200, 0, 0])).uints(1, "x")


def mutations(data, rng, n):
    for i in range(n):
        kind = i % 3
        pos = int(rng.integers(0, len(data)))
        if kind == 0:
            yield data[:pos] + bytes([data[pos] ^ (1 << int(rng.integers(8)))]) + data[pos + 1 :]
        elif kind == 1:
            yield data[:pos]
        else:
            yield data[:pos] + bytes([int(rng.integers(256))]) + data[pos:]


def check_clean(data):
    try:
        forest = load_tslim_bytes(data)
    except TreeSlimError:
        return False
    treeslim.validate(forest)
    return True


@pytest.mark.parametrize(("lib", "task"), [("xgboost", "multiclass"), ("lightgbm", "regression")])
def test_fuzzed_files_fail_cleanly(lib, task):
    forest, _ = forest_of(lib, task)
    good = dump_tslim_bytes(quantize_leaves(forest, bits=3))  # codebook path
    loaded = [check_clean(bad) for bad in mutations(good, np.random.default_rng(0), 300)]
    assert not any(loaded)  # the checksum catches every one


def split_payload(data):
    """(JSON header as a dict, the bitstream after it) of .tslim bytes."""
    payload = data[_HEADER.size :]
    (n,) = struct.unpack_from("<I", payload)
    return json.loads(payload[4 : 4 + n]), payload[4 + n :]


def join_payload(meta, bits):
    head = json.dumps(meta).encode()
    return frame(struct.pack("<I", len(head)) + head + bits)


@pytest.mark.slow  # TREESLIM_FUZZ_N mutants per kind (default: the small form)
@pytest.mark.parametrize(("lib", "task"), [("xgboost", "binary"), ("lightgbm", "multiclass")])
def test_fuzzed_payloads_behind_a_valid_checksum_fail_cleanly(lib, task):
    """The decoder itself: mutate the payload (bytes, or a field of the JSON header), fix the
    CRC; each mutant is a clean error or a Forest that validates and predicts, within the time
    and memory bounds of the fuzz harness, and both occur."""
    forest, _ = forest_of(lib, task)
    rng = np.random.default_rng(1)
    for data in (dump_tslim_bytes(forest), dump_tslim_bytes(quantize_leaves(forest, bits=2))):
        payload = data[_HEADER.size :]
        mutants = (frame(bad) for bad in fuzz.byte_mutations(payload, rng))
        fuzz.fuzz(load_tslim_bytes, mutants, what=f"{lib} {task} payload bytes")
        meta, bits = split_payload(data)
        mutants = (join_payload(m, bits) for m in fuzz.doc_mutations(meta, rng))
        fuzz.fuzz(load_tslim_bytes, mutants, what=f"{lib} {task} JSON header")


def test_a_feature_count_the_trees_do_not_use_is_refused(monkeypatch):
    meta, bits = split_payload(dump_tslim_bytes(tiny_forest()))  # splits on features 0 and 1
    meta["num_feature"] = 200_000_001
    with pytest.raises(ModelFormatError, match="num_feature declares 200,000,001 features, but the"
                                               " trees split on none beyond feature 1"):  # fmt: skip
        load_tslim_bytes(join_payload(meta, bits))
    meta["num_feature"] = 1000  # within the bound: kept
    assert load_tslim_bytes(join_payload(meta, bits)).num_feature == 1000
    monkeypatch.setattr(treeslim.formats._limits, "MAX_UNUSED_FEATURES", 100)
    with pytest.raises(ModelFormatError, match="more than 100 unused features"):
        load_tslim_bytes(join_payload(meta, bits))
