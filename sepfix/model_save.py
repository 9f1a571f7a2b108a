"""Writing a model whose large weights are still where the input keeps them.

`sepfix repair` rewrites the structure `model_io.load_for_check` reads: every large weight is a
reference into the input (into the model file itself, or into an external data file), and
only the tensors a fix computed are in memory. Saving copies the referenced bytes from file to
file in chunks (the kernel's copy_file_range where there is one), so the weights of a 2 GB
model never pass through Python, let alone twice.

Two forms, as the input had them:
- external data: the model file plus one data file; tensors of 1 MiB or more start on 64 KiB
  boundaries (ONNX's external-data alignment, which lets a runtime map them), the others on 64
  bytes;
- inline: one protobuf written field by field, each referenced tensor's header followed by its
  raw_data copied from the input. The file is an ordinary ModelProto.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

import onnx
from onnx import TensorProto

from sepfix import model_io
from sepfix.errors import SepfixError

EXTERNAL_THRESHOLD = 1024
"""Inline raw_data of at least this many bytes moves to the data file (onnx's own default)."""

_ALIGN_BIG, _BIG, _ALIGN_SMALL = 64 * 1024, 1024 * 1024, 64
_CHUNK = 16 * 1024 * 1024
_PROTOBUF_LIMIT = 2**31 - 1
_LEN = 2
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_RAW_DATA = 7, 5, 9
# copy_file_range cannot do it here (other file system, old kernel, special file): copy by hand.
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EBADF, errno.EPERM}


class _Output:
    """An open output file that takes bytes and spans of other files, and counts both."""

    def __init__(self, handle):
        self.handle = handle
        self.position = 0
        self.copied = 0
        self._pending = bytearray()
        self._sources: dict[Path, object] = {}
        self._open = contextlib.ExitStack()

    def write(self, data: bytes) -> None:
        self._pending += data
        self.position += len(data)
        if len(self._pending) >= _CHUNK:
            self.flush()

    def align(self, length: int) -> None:
        alignment = _ALIGN_BIG if length >= _BIG else _ALIGN_SMALL
        self.write(bytes(-self.position % alignment))

    def flush(self) -> None:
        if self._pending:
            self.handle.write(self._pending)
            self._pending.clear()

    def copy(self, span: model_io.DataSpan) -> None:
        """Append `span`'s bytes, file to file."""
        self.flush()
        source = self._source(span.file)
        done = _kernel_copy(source.fileno(), self.handle.fileno(), span, self.position)
        source.seek(span.offset + done)
        self.handle.seek(self.position + done)
        while done < span.length:
            chunk = source.read(min(_CHUNK, span.length - done))
            if not chunk:
                raise SepfixError(f"{span.file} ended early (was it changed during the repair?)")
            self.handle.write(chunk)
            done += len(chunk)
        self.position += span.length
        self.copied += span.length

    def _source(self, path: Path):
        if path not in self._sources:
            self._sources[path] = self._open.enter_context(open(path, "rb", buffering=0))
        return self._sources[path]

    def close(self) -> None:
        self.flush()
        self._open.close()
        self._sources.clear()


def _kernel_copy(source: int, target: int, span: model_io.DataSpan, position: int) -> int:
    """Copy what the kernel will of `span` to `position` in `target`; the bytes done."""
    done = 0
    if not hasattr(os, "copy_file_range"):
        return 0
    try:
        while done < span.length:
            count = os.copy_file_range(source, target, min(span.length - done, 1 << 30),
                                       span.offset + done, position + done)
            if count == 0:
                break  # the source is shorter than the span: the reader says so
            done += count
    except OSError as error:
        if error.errno not in _NO_KERNEL_COPY:
            raise
    return done


def _spans(weights: model_io.LoadedModel, tensors) -> list[tuple[TensorProto, model_io.DataSpan | None]]:
    """Each tensor with where its bytes are (None: in the proto). Checked before anything is
    written, so a missing or short data file fails the save before it starts."""
    return [(tensor, weights.location(tensor)) for tensor in tensors]


def _point(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    del tensor.external_data[:]
    tensor.ClearField("raw_data")
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        tensor.external_data.add(key=key, value=value)
    tensor.data_location = TensorProto.EXTERNAL


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def save_external(weights: model_io.LoadedModel, model_path: Path, data_path: Path, durable: bool = True) -> int:
    """Write `weights.model` to `model_path`, every large tensor in `data_path` (an empty file
    beside it that the caller reserved), the data fsynced when `durable` (the caller fsyncs the
    model file as it moves it into place). Returns the bytes copied from files."""
    model = _copy(weights.model)
    moving = {id(t): t for t in model_io.all_tensors(model) if t.data_location == TensorProto.EXTERNAL}
    moving.update({id(t): t for t in model_io.initializers(model.graph)
                   if t.data_location != TensorProto.EXTERNAL and len(t.raw_data) >= EXTERNAL_THRESHOLD})
    planned = _spans(weights, moving.values())
    with open(data_path, "r+b", buffering=0) as handle:
        out = _Output(handle)
        try:
            for tensor, span in planned:
                length = span.length if span is not None else len(tensor.raw_data)
                out.align(length)
                offset = out.position
                if span is not None:
                    out.copy(span)
                else:
                    out.write(tensor.raw_data)
                _point(tensor, data_path.name, offset, length)
        finally:
            out.close()
        handle.truncate(out.position)
        if durable:
            os.fsync(handle.fileno())
    model_path.write_bytes(model.SerializeToString())
    return out.copied


def _split(message, number: int) -> tuple[bytes, bytes]:
    """`message` (its field `number` empty) serialized, cut where field `number` belongs:
    protobuf writes known fields in number order, unknown ones last."""
    data = message.SerializeToString()
    reader = model_io.WireReader(data, 0, len(data), "<sepfix>", len(data), "message")
    while not reader.at_end():
        field, wire_type, at = reader.tag()
        if field > number:
            return data[:at], data[at:]
        reader.skip(field, wire_type)
    return data, b""


def _tag(number: int) -> bytes:
    return model_io.varint_bytes(number << 3 | _LEN)


def _inline_plan(weights: model_io.LoadedModel) -> tuple[list, int]:
    """The inline file as pieces (bytes, or a span to copy) and its size."""
    model = _copy(weights.model)
    main = onnx.GraphProto()
    main.initializer.extend(model.graph.initializer)
    model.graph.ClearField("initializer")
    for tensor, span in _spans(weights, model_io.all_tensors(model)):
        if span is not None:  # rare: the scanner defers only the main graph's initializers
            tensor.raw_data = weights.tensor_bytes(tensor)
            del tensor.external_data[:]
            tensor.ClearField("data_location")
    entries: list = []
    for tensor, span in _spans(weights, main.initializer):
        if span is None:
            entries.append(model_io.len_field(_GRAPH_INITIALIZER, tensor.SerializeToString()))
            continue
        header = TensorProto()
        header.CopyFrom(tensor)
        del header.external_data[:]
        header.ClearField("data_location")
        body = header.SerializeToString() + _tag(_TENSOR_RAW_DATA) + model_io.varint_bytes(span.length)
        entries += [_tag(_GRAPH_INITIALIZER) + model_io.varint_bytes(len(body) + span.length) + body, span]
    graph_low, graph_high = _split(model.graph, _GRAPH_INITIALIZER)
    graph_size = len(graph_low) + len(graph_high) + sum(len(e) if isinstance(e, bytes) else e.length for e in entries)
    model.ClearField("graph")
    model_low, model_high = _split(model, _MODEL_GRAPH)
    pieces = [model_low + _tag(_MODEL_GRAPH) + model_io.varint_bytes(graph_size) + graph_low, *entries,
              graph_high + model_high]
    return pieces, len(model_low) + len(model_high) + len(_tag(_MODEL_GRAPH)) + len(
        model_io.varint_bytes(graph_size)) + graph_size


def fits_inline(weights: model_io.LoadedModel) -> bool:
    """Whether the model, weights included, fits in one protobuf (under 2 GiB)."""
    return _inline_plan(weights)[1] <= _PROTOBUF_LIMIT


def save_inline(weights: model_io.LoadedModel, model_path: Path) -> int:
    """Write `weights.model` as one protobuf to `model_path`, its referenced weights copied from
    their files (the caller fsyncs it as it moves it into place). Returns the bytes copied."""
    pieces, size = _inline_plan(weights)
    if size > _PROTOBUF_LIMIT:
        raise SepfixError(f"cannot write {model_path}: {size} bytes is over protobuf's 2 GiB limit")
    with open(model_path, "wb", buffering=0) as handle:
        out = _Output(handle)
        try:
            for piece in pieces:
                if isinstance(piece, bytes):
                    out.write(piece)
                else:
                    out.copy(piece)
        finally:
            out.close()
    return out.copied


def external_view(model_path: Path, view_path: Path) -> None:
    """Write at `view_path` (same folder) a model that reads `model_path`'s large initializers
    from inside `model_path` as external data: onnxruntime then maps the weights from the file
    instead of parsing a second copy of them out of the protobuf."""
    loaded = model_io.load_for_check(model_path)
    view = loaded.model
    for tensor in view.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location" and entry.value == model_io.MODEL_FILE_MARKER:
                entry.value = model_path.name
    view_path.write_bytes(view.SerializeToString())
