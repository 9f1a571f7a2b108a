"""The lazy loader must see the same model onnx.load sees, read only what it is asked for, and
turn every bad input into a one-line SepfixError."""

from __future__ import annotations

import gzip
import os
import shutil
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from sepfix import model_io
from sepfix.errors import SepfixError
from sepfix.model_io import MODEL_FILE_MARKER, from_proto, load_for_check, load_full

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------------------------
# Model builders


def _vi(name, shape=None, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def conv_model() -> onnx.ModelProto:
    """Depthwise + pointwise conv with large and small inline weights of several dtypes."""
    weights = [
        numpy_helper.from_array(RNG.standard_normal((32, 1, 3, 3)).astype(np.float32), "dw_W"),
        numpy_helper.from_array(RNG.standard_normal(32).astype(np.float32), "dw_B"),  # small
        numpy_helper.from_array(RNG.standard_normal((64, 32, 1, 1)).astype(np.float32), "pw_W"),
        numpy_helper.from_array(RNG.standard_normal(600).astype(np.float16), "f16"),
        numpy_helper.from_array(RNG.standard_normal(700).astype(ml_dtypes.bfloat16), "bf16"),
        numpy_helper.from_array(RNG.integers(-9, 9, (20, 30)).astype(np.int64), "i64"),
        numpy_helper.from_array(RNG.integers(0, 2, 3000).astype(bool), "flags"),
        numpy_helper.from_array(RNG.integers(-8, 8, 2501).astype(ml_dtypes.int4), "i4"),
        numpy_helper.from_array(RNG.standard_normal(200).astype(np.float64), "f64"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "tiny"),
        helper.make_tensor("floatdata", TensorProto.FLOAT, [400], RNG.standard_normal(400).tolist()),  # non-raw
        numpy_helper.from_array(np.zeros((0, 5), np.float32), "empty"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "dw_W", "dw_B"], ["h"], name="dw", group=32, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["h", "pw_W"], ["y"], name="pw"),
    ]
    graph = helper.make_graph(
        nodes, "sep", [_vi("x", [1, 32, 8, 8])], [_vi("y", [1, 64, 8, 8])], weights,
        value_info=[_vi("h", [1, 32, 8, 8])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def subgraph_function_model() -> onnx.ModelProto:
    """An If with subgraphs (holding their own tensors) and a model-local function."""
    big = numpy_helper.from_array(RNG.standard_normal(512).astype(np.float32), "then_const")
    then_g = helper.make_graph(
        [helper.make_node("Constant", [], ["t_out"], value=big)], "then", [], [_vi("t_out", [512])]
    )
    else_init = numpy_helper.from_array(RNG.standard_normal(512).astype(np.float32), "else_w")
    else_g = helper.make_graph(
        [helper.make_node("Identity", ["else_w"], ["e_out"])], "else", [], [_vi("e_out", [512])], [else_init]
    )
    fn = helper.make_function(
        "local", "Scale2", ["a"], ["b"],
        [helper.make_node("Constant", [], ["two"], value_float=2.0), helper.make_node("Mul", ["a", "two"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    main_w = numpy_helper.from_array(RNG.standard_normal(1024).astype(np.float32), "main_w")
    nodes = [
        helper.make_node("If", ["cond"], ["branch"], then_branch=then_g, else_branch=else_g, name="if0"),
        helper.make_node("Add", ["branch", "main_w"], ["s"]),
        helper.make_node("Scale2", ["s"], ["out"], domain="local"),
    ]
    graph = helper.make_graph(nodes, "main", [_vi("cond", [], TensorProto.BOOL)], [_vi("out", [512])], [main_w])
    return helper.make_model(
        graph, functions=[fn],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
    )


def metadata_model() -> onnx.ModelProto:
    model = conv_model()
    model.doc_string = "model doc"
    model.graph.doc_string = "graph doc"
    model.graph.node[0].doc_string = "node doc"
    model.graph.initializer[0].doc_string = "weight doc"
    model.producer_name, model.producer_version, model.domain, model.model_version = "test", "1.2", "ai.test", 7
    helper.set_model_props(model, {"author": "me", "license": "Apache-2.0"})
    entry = model.graph.metadata_props.add()
    entry.key, entry.value = "graph_key", "graph_value"
    return model


def save(model: onnx.ModelProto, path: Path, **kwargs) -> Path:
    onnx.save(model, os.fspath(path), **kwargs)
    return path


def save_external(model: onnx.ModelProto, path: Path, location="weights.bin", one_file=True) -> Path:
    return save(
        model, path, save_as_external_data=True, all_tensors_to_one_file=one_file,
        location=location, size_threshold=1024,
    )


# --------------------------------------------------------------------------------------------
# Helpers


def deferred(model: onnx.ModelProto) -> set[str]:
    return {
        t.name for t in model.graph.initializer
        if any(e.key == "location" and e.value == MODEL_FILE_MARKER for e in t.external_data)
    }


def assert_same_structure(lazy: onnx.ModelProto, ref: onnx.ModelProto) -> None:
    """Equal in everything but the raw_data the lazy loader left in the file."""
    names = deferred(lazy)
    lazy, ref = onnx.ModelProto.FromString(lazy.SerializeToString()), onnx.ModelProto.FromString(ref.SerializeToString())
    for t in lazy.graph.initializer:
        if t.name in names:
            del t.external_data[:]
            t.ClearField("data_location")
    for t in ref.graph.initializer:
        if t.name in names:
            t.ClearField("raw_data")
    assert list(lazy.graph.node) == list(ref.graph.node)
    assert list(lazy.graph.input) == list(ref.graph.input)
    assert list(lazy.graph.output) == list(ref.graph.output)
    assert list(lazy.graph.value_info) == list(ref.graph.value_info)
    assert list(lazy.functions) == list(ref.functions)
    assert list(lazy.opset_import) == list(ref.opset_import)
    assert lazy.ir_version == ref.ir_version
    assert list(lazy.metadata_props) == list(ref.metadata_props)
    assert list(lazy.graph.metadata_props) == list(ref.graph.metadata_props)
    assert lazy.doc_string == ref.doc_string and lazy.graph.doc_string == ref.graph.doc_string
    assert list(lazy.graph.initializer) == list(ref.graph.initializer)
    assert lazy == ref
    assert lazy.SerializeToString(deterministic=True) == ref.SerializeToString(deterministic=True)


def same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def expect_error(path, *words, loader=load_for_check) -> str:
    """The loader raises SepfixError (and nothing else) whose one-line message names the file
    and mentions every word."""
    with pytest.raises(SepfixError) as info:
        loader(path)
    message = str(info.value)
    assert "\n" not in message
    assert os.fspath(path) in message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


MODELS = {
    "conv": conv_model,
    "subgraph_function": subgraph_function_model,
    "metadata": metadata_model,
}


@pytest.fixture(params=["inline", "external_one_file", "external_per_tensor", "threshold_0"])
def layout(request):
    return request.param


def write(model_fn, layout: str, tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "model.onnx"
    if layout == "inline" or layout == "threshold_0":
        save(model_fn(), path)
        return path, {"defer_threshold": 0} if layout == "threshold_0" else {}
    save_external(model_fn(), path, one_file=(layout == "external_one_file"))
    return path, {}


# --------------------------------------------------------------------------------------------
# Same model as onnx.load


@pytest.mark.parametrize("model_name", MODELS)
def test_structure_and_values_match_onnx(model_name, layout, tmp_path):
    path, kwargs = write(MODELS[model_name], layout, tmp_path)
    loaded = load_for_check(path, **kwargs)
    assert loaded.bytes_read == 0
    assert loaded.path == path
    ref = onnx.load(os.fspath(path), load_external_data=False)
    assert_same_structure(loaded.model, ref)

    full = onnx.load(os.fspath(path))
    expected = {t.name: numpy_helper.to_array(t) for t in full.graph.initializer}
    for tensor in loaded.model.graph.initializer:
        assert same_array(loaded.tensor_array(tensor), expected[tensor.name]), tensor.name


def test_large_raw_initializers_are_deferred_small_ones_kept(tmp_path):
    path = save(conv_model(), tmp_path / "m.onnx")
    loaded = load_for_check(path)
    init = {t.name: t for t in loaded.model.graph.initializer}
    assert {"dw_W", "pw_W", "f16", "bf16", "i64", "flags", "i4", "f64"} <= deferred(loaded.model)
    assert init["tiny"].raw_data and init["dw_B"].raw_data  # 128 bytes: below the threshold
    assert "floatdata" not in deferred(loaded.model)  # float_data is copied, not deferred
    assert not init["pw_W"].raw_data and list(init["pw_W"].dims) == [64, 32, 1, 1]
    assert init["pw_W"].data_type == TensorProto.FLOAT
    # the whole proto in memory is far smaller than the file
    assert loaded.model.ByteSize() < path.stat().st_size / 4


def test_unknown_fields_survive(tmp_path):
    data = conv_model().SerializeToString()
    # an unknown top-level varint field 99, length-delimited field 98 and group 30
    group = b"\xf3\x01\x08\x05\xf4\x01"
    extra = model_io.varint_bytes(99 << 3) + model_io.varint_bytes(12345) + model_io.len_field(98, b"xyz") + group
    path = tmp_path / "m.onnx"
    path.write_bytes(extra + data + extra)
    loaded = load_for_check(path)
    ref = onnx.load(os.fspath(path), load_external_data=False)
    assert_same_structure(loaded.model, ref)


def test_bytes_read_counts_exactly_one_tensor(tmp_path, layout):
    path, kwargs = write(conv_model, layout, tmp_path)
    loaded = load_for_check(path, **kwargs)
    pw = next(t for t in loaded.model.graph.initializer if t.name == "pw_W")
    assert loaded.bytes_read == 0
    arr = loaded.tensor_array(pw)
    assert loaded.bytes_read == arr.nbytes == 64 * 32 * 4
    loaded.tensor_array(pw)
    assert loaded.bytes_read == 2 * arr.nbytes


def test_inline_tensors_cost_no_reads(tmp_path):
    loaded = load_for_check(save(conv_model(), tmp_path / "m.onnx"))
    tiny = next(t for t in loaded.model.graph.initializer if t.name == "tiny")
    assert same_array(loaded.tensor_array(tiny), np.array([1, 2, 3], np.int64))
    assert loaded.bytes_read == 0


@pytest.mark.parametrize("name,count", [("pw_W", 0), ("pw_W", 1), ("pw_W", 100), ("pw_W", 10**9),
                                        ("f16", 7), ("bf16", 33), ("i4", 5), ("i4", 6), ("flags", 10),
                                        ("tiny", 2), ("floatdata", 3), ("empty", 4)])
def test_tensor_prefix(tmp_path, layout, name, count):
    path, kwargs = write(conv_model, layout, tmp_path)
    loaded = load_for_check(path, **kwargs)
    tensor = next(t for t in loaded.model.graph.initializer if t.name == name)
    full = numpy_helper.to_array(next(t for t in onnx.load(os.fspath(path)).graph.initializer if t.name == name))
    prefix = loaded.tensor_prefix(tensor, count)
    assert same_array(prefix, full.reshape(-1)[:count])
    if tensor.data_location == TensorProto.EXTERNAL:
        n = min(count, full.size)
        expected = (n + 1) // 2 if name == "i4" else n * full.dtype.itemsize
        assert loaded.bytes_read == expected
    else:
        assert loaded.bytes_read == 0


def test_tensor_prefix_rejects_negative_count(tmp_path):
    loaded = load_for_check(save(conv_model(), tmp_path / "m.onnx"))
    with pytest.raises(ValueError):
        loaded.tensor_prefix(loaded.model.graph.initializer[0], -1)


def test_external_data_is_not_read_at_load(tmp_path, monkeypatch):
    path = save_external(conv_model(), tmp_path / "m.onnx")
    calls = []
    real_empty = np.empty
    monkeypatch.setattr(model_io.np, "empty", lambda *a, **k: calls.append(a) or real_empty(*a, **k))
    loaded = load_for_check(path)
    assert calls == [] and loaded.bytes_read == 0


def test_external_data_without_offset_or_length(tmp_path):
    values = RNG.standard_normal((16, 16)).astype(np.float32)
    (tmp_path / "w.bin").write_bytes(values.tobytes())
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[16, 16])
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="sub/../w.bin")  # `..` that stays inside is fine
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [], [_vi("y", [16, 16])], [tensor])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    loaded = load_for_check(path)
    assert same_array(loaded.tensor_array(loaded.model.graph.initializer[0]), values)
    assert loaded.bytes_read == values.nbytes


@pytest.mark.parametrize("model_name", MODELS)
def test_load_full_matches_onnx_load(model_name, layout, tmp_path):
    path, _ = write(MODELS[model_name], layout, tmp_path)
    loaded = load_full(path)
    assert loaded.model == onnx.load(os.fspath(path))
    assert loaded.path == path and loaded.bytes_read == 0
    for tensor in loaded.model.graph.initializer:
        assert tensor.data_location != TensorProto.EXTERNAL
        assert same_array(loaded.tensor_array(tensor), numpy_helper.to_array(tensor))
    assert loaded.bytes_read == 0


def test_from_proto(tmp_path):
    model = conv_model()
    loaded = from_proto(model)
    assert loaded.path is None and loaded.model is model
    for tensor in model.graph.initializer:
        assert same_array(loaded.tensor_array(tensor), numpy_helper.to_array(tensor))

    path = save_external(conv_model(), tmp_path / "m.onnx")
    external = onnx.load(os.fspath(path), load_external_data=False)
    loaded = from_proto(external, base_dir=tmp_path)
    ref = {t.name: numpy_helper.to_array(t) for t in onnx.load(os.fspath(path)).graph.initializer}
    for tensor in external.graph.initializer:
        assert same_array(loaded.tensor_array(tensor), ref[tensor.name])
    assert loaded.bytes_read > 0
    with pytest.raises(SepfixError, match="no model folder"):
        from_proto(external).tensor_array(external.graph.initializer[0])


# --------------------------------------------------------------------------------------------
# Bad input: always a one-line SepfixError


BOTH = pytest.mark.parametrize("loader", [load_for_check, load_full], ids=["lazy", "full"])


@BOTH
def test_missing_directory_empty(tmp_path, loader):
    expect_error(tmp_path / "nope.onnx", "no such file", loader=loader)
    expect_error(tmp_path / "nope" / "m.onnx", "no such file", loader=loader)
    expect_error(tmp_path, "directory", loader=loader)
    (tmp_path / "empty.onnx").touch()
    expect_error(tmp_path / "empty.onnx", "empty", loader=loader)


@BOTH
def test_text_files(tmp_path, loader):
    for i, text in enumerate(["hello world\n", "<!DOCTYPE html><html>404</html>\n", '{"a": 1}',
                              "ir_version: 8\ngraph { node { op_type: 'Conv' } }\n", "ünïcödé tëxt\n"]):
        path = tmp_path / f"t{i}.onnx"
        path.write_text(text, encoding="utf-8")
        expect_error(path, "text file", loader=loader)


@BOTH
def test_git_lfs_pointer(tmp_path, loader):
    path = tmp_path / "m.onnx"
    path.write_text(
        "version https://git-lfs.github.com/spec/v1\n"
        "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 123456789\n"
    )
    message = expect_error(path, "git lfs pointer", "git lfs pull", loader=loader)
    assert "123456789" in message


@BOTH
def test_compressed(tmp_path, loader):
    data = conv_model().SerializeToString()
    path = tmp_path / "m.onnx.gz"
    path.write_bytes(gzip.compress(data))
    expect_error(path, "compressed", "gzip", loader=loader)
    zpath = tmp_path / "m.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("m.onnx", data)
    expect_error(zpath, "zip", loader=loader)


@BOTH
@pytest.mark.parametrize("seed", range(12))
def test_random_bytes(tmp_path, seed, loader):
    size = [1, 2, 3, 10, 100, 1000, 4096, 65536][seed % 8]
    path = tmp_path / "r.onnx"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    message = expect_error(path, loader=loader)
    assert any(w in message for w in ("not a valid ONNX", "not an ONNX model", "truncated", "text file")), message


@pytest.mark.parametrize(
    "data,word",
    [
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01", "bad varint"),
        (b"\x07\x00", "field number 0"),
        (b"\x0f\x00", "bad wire type"),
        (b"\x08\x08\x3a\x02\x0e\x00", "wire type"),  # bad wire type inside the graph
        (b"\x3a\x05\x2a\x10\x00\x00\x00\x08\x08", "overruns"),  # initializer longer than its graph
        (b"\x08\x08\x3a\x02\xa4\x01", "end-group"),  # an end-group with no start
        (b"\x08\x08\xf3\x01\x08\x05\xfc\x01", "mismatched end-group"),
    ],
)
def test_corrupt_wire_format(tmp_path, data, word):
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    expect_error(path, word)
    expect_error(path, loader=load_full)


@BOTH
def test_other_protobufs_are_not_onnx_models(tmp_path, loader):
    model = conv_model()
    cases = {
        "tensor": model.graph.initializer[0].SerializeToString(),
        "graph": model.graph.SerializeToString(),
        "node": model.graph.node[0].SerializeToString(),
        "no_graph": onnx.ModelProto(ir_version=8, producer_name="x").SerializeToString(),
        "no_version": onnx.ModelProto(graph=model.graph).SerializeToString(),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(data)
        expect_error(path, "onnx model", loader=loader)


def test_truncation_at_many_offsets(tmp_path):
    data = save(subgraph_function_model(), tmp_path / "full.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    raised = 0
    for cut in range(1, len(data), 7):
        path.write_bytes(data[:cut])
        for loader in (load_for_check, load_full):
            try:
                loaded = loader(path)
            except SepfixError as exc:  # anything else fails the test
                message = str(exc)
                assert "\n" not in message and os.fspath(path) in message
                assert any(w in message for w in ("truncated", "not a valid ONNX", "not an ONNX model")), message
                raised += 1
            else:  # the cut fell on a field boundary and left a complete model
                assert loaded.model.HasField("graph")
    assert raised > 2 * (len(data) // 7) * 0.8


def test_truncation_inside_weights_says_truncated(tmp_path):
    data = save(conv_model(), tmp_path / "full.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    for loader in (load_for_check, load_full):
        expect_error(path, "truncated", loader=loader)


def test_load_full_reports_like_lazy_loader(tmp_path):
    data = conv_model().SerializeToString()
    for i, bad in enumerate([data[:-100], data[:40], b"\x0f", b"hello\n", gzip.compress(data)]):
        path = tmp_path / f"b{i}.onnx"
        path.write_bytes(bad)
        with pytest.raises(SepfixError) as lazy:
            load_for_check(path)
        with pytest.raises(SepfixError) as full:
            load_full(path)
        assert str(lazy.value) == str(full.value)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
@BOTH
def test_unreadable_file(tmp_path, loader):
    path = save(conv_model(), tmp_path / "m.onnx")
    path.chmod(0)
    try:
        expect_error(path, "permission denied", loader=loader)
    finally:
        path.chmod(0o644)


@BOTH
def test_permission_error_is_reported(tmp_path, monkeypatch, loader):
    path = save(conv_model(), tmp_path / "m.onnx")

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(path))

    monkeypatch.setattr(model_io, "open", deny, raising=False)
    expect_error(path, "permission denied", loader=loader)


def _external_model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    return save_external(conv_model(), folder / "m.onnx")


def _relocate(path: Path, location: str) -> None:
    """Point every external tensor of the model at `location`."""
    model = onnx.load(os.fspath(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


@BOTH
@pytest.mark.parametrize("how", ["dotdot", "absolute", "windows_absolute", "symlink"])
def test_external_path_escaping_the_folder(tmp_path, how, loader):
    path = _external_model(tmp_path)
    outside = tmp_path / "x.bin"
    shutil.copy(path.parent / "weights.bin", outside)  # exists, so only the escape is wrong
    if how == "dotdot":
        location = "../x.bin"
    elif how == "absolute":
        location = os.fspath(outside)
    elif how == "windows_absolute":
        location = "C:\\weights\\x.bin"
    else:
        (path.parent / "link.bin").symlink_to(outside)
        location = "link.bin"
    _relocate(path, location)
    expect_error(path, "external data path escapes the model folder", loader=loader)


@BOTH
def test_missing_external_data(tmp_path, loader):
    path = _external_model(tmp_path)
    (path.parent / "weights.bin").unlink()
    expect_error(path, "external data file", "weights.bin", "missing", loader=loader)


@BOTH
def test_short_external_data(tmp_path, loader):
    path = _external_model(tmp_path)
    weights = path.parent / "weights.bin"
    weights.write_bytes(weights.read_bytes()[:-10])
    expect_error(path, "external data file", "too short", loader=loader)


def test_bad_external_offset(tmp_path):
    path = _external_model(tmp_path)
    model = onnx.load(os.fspath(path), load_external_data=False)
    for entry in model.graph.initializer[0].external_data:
        if entry.key == "offset":
            entry.value = "-5"
    path.write_bytes(model.SerializeToString())
    expect_error(path, "offset")


def test_weight_size_mismatch_is_reported_at_load(tmp_path):
    """Dims that disagree with the stored bytes are the model's problem: a SepfixError, raised
    at load (from the sizes alone, nothing read) so that no rule trusts those dims."""
    path = tmp_path / "m.onnx"
    model = conv_model()
    model.graph.initializer[0].dims[0] = 33  # 32*9 floats stored, 33*9 claimed
    path.write_bytes(model.SerializeToString())
    with pytest.raises(SepfixError, match="dw_W"):
        load_for_check(path)


def test_weights_file_changed_after_load(tmp_path):
    path = save(conv_model(), tmp_path / "m.onnx")
    loaded = load_for_check(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(SepfixError, match="past the end|ended early"):
        loaded.tensor_array(next(t for t in loaded.model.graph.initializer if t.name == "pw_W"))


def test_string_path_and_relative_path(tmp_path, monkeypatch):
    save(conv_model(), tmp_path / "m.onnx")
    monkeypatch.chdir(tmp_path)
    loaded = load_for_check("m.onnx")
    monkeypatch.chdir("/")  # reads must not depend on the working directory
    pw = next(t for t in loaded.model.graph.initializer if t.name == "pw_W")
    assert loaded.tensor_array(pw).shape == (64, 32, 1, 1)


def test_crafted_model_file_reference_is_bounded(tmp_path):
    """A file that itself carries the private marker cannot make us allocate or read past EOF."""
    tensor = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2**48], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", MODEL_FILE_MARKER), ("offset", "0"), ("length", str(2**50))):
        tensor.external_data.add(key=key, value=value)
    graph = helper.make_graph([helper.make_node("Identity", ["w"], ["y"])], "g", [], [_vi("y")], [tensor])
    path = tmp_path / "m.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(SepfixError, match="past the end"):  # refused at load, before any read
        load_for_check(path)
