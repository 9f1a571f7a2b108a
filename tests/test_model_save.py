"""`model_save` writes the model `load_for_check` read, copying the weights it left in the files:
the result is the model onnx.load reads from the input, inline or with external data, and the
untouched weights are copied file to file, never read into Python."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from sepfix import model_io, model_save
from sepfix.errors import SepfixError
from sepfix.testing import builders
from tests.test_model_io import conv_model, metadata_model, save, save_external, subgraph_function_model

RNG = np.random.default_rng(3)


def large_model() -> onnx.ModelProto:
    """conv_model with a 1.6 MB initializer beside its small and odd-sized ones."""
    model = conv_model()
    model.graph.initializer.append(numpy_helper.from_array(RNG.standard_normal(400_000).astype(np.float32), "big"))
    model.graph.initializer.append(numpy_helper.from_array(RNG.integers(0, 9, 1501).astype(np.uint8), "odd"))
    return model


def unknown_fields_model() -> bytes:
    """conv_model's bytes with unknown top-level fields before and after it."""
    extra = model_io.varint_bytes(99 << 3) + model_io.varint_bytes(7) + model_io.len_field(98, b"xyz")
    return extra + conv_model().SerializeToString() + extra


MODELS = {"conv": conv_model, "subgraphs+functions": subgraph_function_model, "metadata": metadata_model,
          "large": large_model}


@pytest.fixture
def counted_reads(monkeypatch):
    """The bytes every LoadedModel reads into Python, counted."""
    counter = {"bytes": 0}
    original = model_io.LoadedModel._read

    def counting(self, where, nbytes):
        counter["bytes"] += nbytes
        return original(self, where, nbytes)

    monkeypatch.setattr(model_io.LoadedModel, "_read", counting)
    return counter


def content(path: Path) -> onnx.ModelProto:
    """The model onnx.load reads, every weight inline (external-data loading marks the loaded
    tensors DEFAULT explicitly; an inline tensor leaves the field unset: the same model)."""
    model = onnx.load(str(path))
    for tensor in model_io.all_tensors(model):
        if tensor.data_location == onnx.TensorProto.DEFAULT:
            tensor.ClearField("data_location")
    return model


def _reserved(path: Path) -> Path:
    path.touch()
    return path


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_inline_save_is_the_model_onnx_reads(tmp_path, make, counted_reads):
    source = save(make(), tmp_path / "in.onnx")
    loaded = model_io.load_for_check(source)
    out = tmp_path / "out.onnx"
    copied = model_save.save_inline(loaded, out)
    expected = onnx.load(str(source))
    assert onnx.load(str(out)) == expected
    # The size it planned is exact: protobuf serializes the same fields to the same length.
    assert out.stat().st_size == len(expected.SerializeToString())
    assert copied == sum(model_io.LoadedModel.location(loaded, t).length for t in loaded.model.graph.initializer
                         if t.data_location == onnx.TensorProto.EXTERNAL)
    assert counted_reads["bytes"] == 0  # copied file to file, not read


def test_inline_save_keeps_unknown_fields(tmp_path):
    source = tmp_path / "in.onnx"
    source.write_bytes(unknown_fields_model())
    out = tmp_path / "out.onnx"
    model_save.save_inline(model_io.load_for_check(source), out)
    assert onnx.load(str(out)) == onnx.load(str(source))
    assert out.stat().st_size == source.stat().st_size


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
@pytest.mark.parametrize("external_input", [False, True], ids=["inline-input", "external-input"])
def test_external_save_is_the_model_onnx_reads(tmp_path, make, external_input, counted_reads):
    source = (save_external if external_input else save)(make(), tmp_path / "in.onnx")
    loaded = model_io.load_for_check(source)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "m.onnx"
    data = _reserved(tmp_path / "out" / "m.data")
    model_save.save_external(loaded, out, data)
    assert content(out) == content(source)
    assert counted_reads["bytes"] == 0
    written = onnx.load(str(out), load_external_data=False)
    spans = sorted((int(info["offset"]), int(info["length"]), info["location"]) for info in (
        {e.key: e.value for e in t.external_data} for t in model_io.all_tensors(written) if t.external_data))
    assert spans and {location for _, _, location in spans} == {"m.data"}
    for (offset, length, _), following in zip(spans, spans[1:] + [(data.stat().st_size, 0, "")]):
        assert offset % (65536 if length >= 2**20 else 64) == 0, (offset, length)
        assert offset + length <= following[0]  # no overlap, and the file ends with the last
    assert spans[-1][0] + spans[-1][1] == data.stat().st_size


def test_every_external_reference_is_copied_even_in_subgraphs(tmp_path):
    """onnx can put subgraph and attribute tensors in external data too; the copy follows all."""
    source = tmp_path / "in.onnx"
    onnx.save(subgraph_function_model(), str(source), save_as_external_data=True, location="w.bin",
              size_threshold=0, convert_attribute=True)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in model_io.all_tensors(
        onnx.load(str(source), load_external_data=False)) if t.name == "then_const")
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "m.onnx"
    model_save.save_external(model_io.load_for_check(source), out, _reserved(tmp_path / "out" / "m.data"))
    assert content(out) == content(source)


@pytest.mark.parametrize("kernel_copy", ["refused", "absent"])
def test_copy_without_the_kernel(tmp_path, monkeypatch, kernel_copy):
    """Where copy_file_range fails (another file system, an old kernel) or does not exist."""
    if kernel_copy == "absent":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    else:
        def refuse(*args):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    source = save(large_model(), tmp_path / "in.onnx")
    loaded = model_io.load_for_check(source)
    model_save.save_inline(loaded, tmp_path / "inline.onnx")
    model_save.save_external(loaded, tmp_path / "ext.onnx", _reserved(tmp_path / "ext.data"))
    assert content(tmp_path / "inline.onnx") == content(source) == content(tmp_path / "ext.onnx")


def test_a_data_file_cut_short_after_loading_is_an_error(tmp_path):
    source = save_external(large_model(), tmp_path / "in.onnx")
    loaded = model_io.load_for_check(source)
    data = tmp_path / "weights.bin"
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(SepfixError, match="ended early"):
        model_save.save_external(loaded, tmp_path / "out.onnx", _reserved(tmp_path / "out.data"))


def test_fits_inline_counts_the_weights_in_the_files(tmp_path, monkeypatch):
    source = save_external(large_model(), tmp_path / "in.onnx")
    loaded = model_io.load_for_check(source)
    assert model_save.fits_inline(loaded)
    monkeypatch.setattr(model_save, "_PROTOBUF_LIMIT", len(content(source).SerializeToString()) - 1)
    assert not model_save.fits_inline(loaded)
    with pytest.raises(SepfixError, match="2 GiB"):
        model_save.save_inline(loaded, tmp_path / "out.onnx")


def test_external_view_runs_the_inline_file_it_points_into(tmp_path):
    source = save(builders.mobilenet_like(channels=(128, 256), spatial=8), tmp_path / "m.onnx")
    view = tmp_path / "m.view.onnx"
    model_save.external_view(source, view)
    assert view.stat().st_size < source.stat().st_size / 4  # the weights stay in m.onnx
    feed = {i.name: RNG.standard_normal([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in ort.InferenceSession(str(source)).get_inputs()}
    expected = ort.InferenceSession(str(source)).run(None, feed)
    for got, want in zip(ort.InferenceSession(str(view)).run(None, feed), expected):
        np.testing.assert_array_equal(got, want)
