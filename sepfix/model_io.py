"""Loading ONNX models without reading the weights a check does not need.

Models are often several GB and sepfix often runs in a pre-commit hook, while a check needs the
whole graph but the values of only a few weights. `load_for_check` therefore maps the file and
walks the protobuf wire format itself: every large `raw_data` of a top-level initializer is
left in the file and the tensor is rewritten to point at it (as external data in "the model
file itself"), everything else is copied verbatim, and only that small buffer is handed to
protobuf. Weights are read later, one tensor (or a prefix of one) at a time, through
`LoadedModel.tensor_array` / `tensor_prefix`, which count what they read in `bytes_read`.

Every problem with the input becomes a one-line `SepfixError` naming the file. The model is
never given to `onnx.checker`: the checker rejects some of the models sepfix must report on.
"""

from __future__ import annotations

import math
import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sepfix import walk
from sepfix.errors import SepfixError

__all__ = [
    "DEFER_THRESHOLD",
    "MODEL_FILE_MARKER",
    "DataSpan",
    "LoadedModel",
    "WireReader",
    "all_tensors",
    "from_proto",
    "initializers",
    "len_field",
    "load_for_check",
    "load_full",
    "varint_bytes",
]

DEFER_THRESHOLD = 1024
"""raw_data longer than this (bytes) stays in the file instead of being parsed."""

MODEL_FILE_MARKER = "\x00sepfix:model-file"
"""external_data location meaning "the model file itself". The NUL byte makes it impossible
to confuse with a real file name; onnx's own external-data helpers cannot follow it, so read
such tensors through `LoadedModel`."""

# Wire types.
_VARINT, _I64, _LEN, _SGROUP, _EGROUP, _I32 = 0, 1, 2, 3, 4, 5

# Known fields whose wire type is checked: a file in which these have the wrong wire type is a
# valid protobuf of some other message (a TensorProto, a GraphProto), not an ONNX model.
_MODEL_FIELDS = {
    1: ("ir_version", _VARINT),
    2: ("producer_name", _LEN),
    3: ("producer_version", _LEN),
    4: ("domain", _LEN),
    5: ("model_version", _VARINT),
    6: ("doc_string", _LEN),
    7: ("graph", _LEN),
    8: ("opset_import", _LEN),
    14: ("metadata_props", _LEN),
    20: ("training_info", _LEN),
    25: ("functions", _LEN),
    26: ("configuration", _LEN),
}
_GRAPH_FIELDS = {
    1: ("node", _LEN),
    2: ("name", _LEN),
    5: ("initializer", _LEN),
    10: ("doc_string", _LEN),
    11: ("input", _LEN),
    12: ("output", _LEN),
    13: ("value_info", _LEN),
    14: ("quantization_annotation", _LEN),
    15: ("sparse_initializer", _LEN),
    16: ("metadata_props", _LEN),
}
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5
_TENSOR_RAW_DATA, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 9, 13, 14

# Sub-byte element types: bits per element (onnx packs them; numpy_helper unpacks them).
_PACKED_BITS = {
    getattr(TensorProto, name): bits
    for name, bits in [
        ("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4),
        ("INT2", 2), ("UINT2", 2),
        ("FLOAT6E2M3", 6), ("FLOAT6E3M2", 6),
    ]
    if hasattr(TensorProto, name)
}

_LFS_PREFIX = b"version https://git-lfs.github.com/spec/v1"
_COMPRESSED_MAGIC = [
    (b"\x1f\x8b", "gzip-compressed", "gunzip it"),
    (b"PK\x03\x04", "a zip archive", "unzip it"),
    (b"\xfd7zXZ\x00", "xz-compressed", "unxz it"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed", "unzstd it"),
]
_BZIP2 = re.compile(rb"BZh[1-9]1AY&SY")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error(name: str, problem: str) -> SepfixError:
    """The one error shape: `<file>: <problem>`, on one line."""
    return SepfixError(_one_line(f"{name}: {problem}"))


# --------------------------------------------------------------------------------------------
# Wire format


class WireReader:
    """Reads protobuf fields from buf[start:end] and checks every length against `end`.

    Only field headers are touched; a length-delimited value is returned as (start, end) so the
    caller decides whether to copy it. Offsets are absolute positions in the file.
    """

    def __init__(self, buf, start: int, end: int, name: str, file_size: int, what: str):
        self.buf, self.pos, self.end = buf, start, end
        self.name, self.file_size, self.what = name, file_size, what

    def at_end(self) -> bool:
        return self.pos >= self.end

    def _overrun(self, start: int, needed: int | None = None) -> SepfixError:
        if self.end >= self.file_size:
            claim = f"needs {needed} bytes" if needed is not None else "is cut off"
            return _error(
                self.name,
                f"file is truncated or corrupt: a {self.what} field at byte {start} {claim} "
                f"but the file ends at byte {self.file_size}",
            )
        return self.corrupt(f"a field at byte {start} overruns its enclosing {self.what}")

    def corrupt(self, detail: str) -> SepfixError:
        return _error(self.name, f"not a valid ONNX model (corrupt protobuf: {detail})")

    def varint(self) -> int:
        start = self.pos
        result = shift = 0
        while True:
            if self.pos >= self.end:
                raise self._overrun(start)
            byte = self.buf[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7
            if shift >= 70:
                raise self.corrupt(f"bad varint at byte {start}")

    def tag(self) -> tuple[int, int, int]:
        """(field number, wire type, offset of the tag)."""
        start = self.pos
        key = self.varint()
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise self.corrupt(f"field number 0 at byte {start}")
        if number >= 1 << 29:
            raise self.corrupt(f"field number {number} out of range at byte {start}")
        if wire_type > _I32:
            raise self.corrupt(f"bad wire type {wire_type} at byte {start}")
        return number, wire_type, start

    def advance(self, count: int) -> None:
        if count > self.end - self.pos:
            raise self._overrun(self.pos, count)
        self.pos += count

    def length_delimited(self) -> tuple[int, int]:
        """Read a length prefix; return the (start, end) of the value and move past it."""
        at = self.pos
        length = self.varint()
        if length > self.end - self.pos:
            raise self._overrun(at, length)
        start = self.pos
        self.pos += length
        return start, self.pos

    def skip(self, number: int, wire_type: int, depth: int = 0) -> None:
        if wire_type == _VARINT:
            self.varint()
        elif wire_type == _I64:
            self.advance(8)
        elif wire_type == _I32:
            self.advance(4)
        elif wire_type == _LEN:
            self.length_delimited()
        elif wire_type == _SGROUP:
            if depth > 64:
                raise self.corrupt(f"groups nested too deeply at byte {self.pos}")
            while True:
                inner, inner_type, at = self.tag()
                if inner_type == _EGROUP:
                    if inner != number:
                        raise self.corrupt(f"mismatched end-group at byte {at}")
                    return
                self.skip(inner, inner_type, depth + 1)
        else:
            raise self.corrupt(f"unexpected end-group at byte {self.pos}")


def varint_bytes(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def len_field(number: int, payload: bytes) -> bytes:
    return varint_bytes(number << 3 | _LEN) + varint_bytes(len(payload)) + payload


def _check_wire_type(reader: WireReader, known: dict, message: str, number: int, wire_type: int, at: int) -> None:
    spec = known.get(number)
    if spec is not None and spec[1] != wire_type:
        raise _error(
            reader.name,
            f"not an ONNX model: {message} field {number} ({spec[0]}) at byte {at} has wire "
            f"type {wire_type}, expected {spec[1]} (is it some other protobuf?)",
        )


class _Scanner:
    """Rewrites a serialized ModelProto, leaving large initializer raw_data in the file."""

    def __init__(self, buf, size: int, name: str, threshold: int):
        self.buf, self.size, self.name, self.threshold = buf, size, name, threshold
        self.deferred = 0

    def reader(self, start: int, end: int, what: str) -> WireReader:
        return WireReader(self.buf, start, end, self.name, self.size, what)

    def model(self) -> tuple[bytes, set[int]]:
        """The rewritten model and the set of top-level field numbers seen."""
        r = self.reader(0, self.size, "model")
        out, run, seen = bytearray(), 0, set()
        while not r.at_end():
            number, wire_type, at = r.tag()
            _check_wire_type(r, _MODEL_FIELDS, "ModelProto", number, wire_type, at)
            seen.add(number)
            if number == _MODEL_GRAPH:
                start, end = r.length_delimited()
                out += self.buf[run:at]
                out += len_field(_MODEL_GRAPH, self.graph(start, end))
                run = r.pos
            else:
                r.skip(number, wire_type)
        out += self.buf[run:self.size]
        return bytes(out), seen

    def graph(self, start: int, end: int) -> bytes:
        r = self.reader(start, end, "graph")
        out, run = bytearray(), start
        while not r.at_end():
            number, wire_type, at = r.tag()
            _check_wire_type(r, _GRAPH_FIELDS, "GraphProto", number, wire_type, at)
            if number == _GRAPH_INITIALIZER:
                t_start, t_end = r.length_delimited()
                rewritten = self.tensor(t_start, t_end)
                if rewritten is not None:
                    out += self.buf[run:at]
                    out += len_field(_GRAPH_INITIALIZER, rewritten)
                    run = r.pos
            else:
                r.skip(number, wire_type)
        out += self.buf[run:end]
        return bytes(out)

    def tensor(self, start: int, end: int) -> bytes | None:
        """The tensor with its raw_data replaced by a pointer into the file, or None to keep it."""
        r = self.reader(start, end, "initializer")
        raw: list[tuple[int, int, int]] = []  # (tag offset, value start, value end)
        has_external = False
        while not r.at_end():
            number, wire_type, at = r.tag()
            if number == _TENSOR_RAW_DATA and wire_type == _LEN:
                value_start, value_end = r.length_delimited()
                raw.append((at, value_start, value_end))
                continue
            if number == _TENSOR_EXTERNAL_DATA:
                has_external = True
            r.skip(number, wire_type)
        # Only the plain case is deferred; anything odd (repeated raw_data, raw_data next to
        # external_data) is copied as is and left to protobuf and numpy_helper.
        if len(raw) != 1 or has_external:
            return None
        at, value_start, value_end = raw[0]
        length = value_end - value_start
        if length <= self.threshold:
            return None
        self.deferred += 1
        entries = b"".join(
            len_field(_TENSOR_EXTERNAL_DATA, len_field(1, key.encode()) + len_field(2, value.encode()))
            for key, value in (
                ("location", MODEL_FILE_MARKER),
                ("offset", str(value_start)),
                ("length", str(length)),
            )
        )
        location = varint_bytes(_TENSOR_DATA_LOCATION << 3 | _VARINT) + varint_bytes(TensorProto.EXTERNAL)
        return self.buf[start:at] + self.buf[value_end:end] + entries + location


# --------------------------------------------------------------------------------------------
# Files


def _stat_model(path: Path, name: str) -> int:
    """The size of the model file, after checking it is a readable, non-empty regular file."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise _error(name, "no such file") from None
    except PermissionError:
        raise _error(name, "permission denied (cannot access the file)") from None
    except OSError as exc:
        raise _error(name, f"cannot access the file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise _error(name, "is a directory with no .onnx model in it, not an ONNX model file")
    if not path.is_file():
        raise _error(name, "is not a regular file")
    if st.st_size == 0:
        raise _error(name, "file is empty (0 bytes), not an ONNX model")
    return st.st_size


def _diagnose(head: bytes, file: Path | None = None) -> str | None:
    """A better explanation for a file that failed to parse, judged from its first bytes (and
    its name: a PyTorch checkpoint or a weights file deserves advice, not a protobuf error)."""
    if head.startswith(_LFS_PREFIX):
        size = re.search(rb"\nsize (\d+)", head)
        real = f" (the real file is {int(size.group(1))} bytes)" if size else ""
        return f"is a Git LFS pointer file, not the model itself{real}; run `git lfs pull` to fetch it"
    advice = _file_type_advice(file, head)
    if advice:
        return advice
    for magic, kind, fix in _COMPRESSED_MAGIC:
        if head.startswith(magic):
            return f"file is {kind}, not a raw ONNX model; {fix} first"
    if _BZIP2.match(head):
        return "file is bzip2-compressed, not a raw ONNX model; bunzip2 it first"
    if _looks_like_text(head):
        first = head.split(b"\n", 1)[0][:40].decode("utf-8", "replace").strip()
        return f"is a text file (starts with {first!r}), not an ONNX model"
    return None


_TORCH_SUFFIXES = (".pth", ".pt", ".ckpt")
_DATA_SUFFIXES = (".onnx.data", ".onnx_data", ".data")
_ZIP = b"PK\x03\x04"
_HDF5 = b"\x89HDF\r\n\x1a\n"


def _file_type_advice(file: Path | None, head: bytes) -> str | None:
    """What a common wrong file is and what to do instead, from its name and its first bytes.
    Only asked about a file that did not load as ONNX, so a valid model with an odd name loads."""
    name = file.name.lower() if file is not None else ""
    is_zip = head.startswith(_ZIP)
    if (is_zip and b"data.pkl" in head) or (name.endswith(_TORCH_SUFFIXES) and (is_zip or head[:1] == b"\x80")):
        return ("is a PyTorch checkpoint, not an ONNX model: export the model with "
                "torch.onnx.export(model, example_inputs, \"model.onnx\") and pass that file")
    if name.endswith(_DATA_SUFFIXES):
        users = _models_using(file) if file is not None else []
        which = " or ".join(users) if users else "the .onnx model that references it"
        return f"is a file of external weights, not an ONNX model: pass {which} (its weights are read through it)"
    if name.endswith(".tflite") or head[4:8] == b"TFL3":
        return ("is a TensorFlow Lite model, not ONNX: convert it with "
                "`python -m tf2onnx.convert --tflite MODEL.tflite --output model.onnx`")
    if name.endswith((".h5", ".hdf5", ".keras")) or head.startswith(_HDF5):
        return ("is a Keras model, not ONNX: convert it with tf2onnx (tf2onnx.convert.from_keras, or save a "
                "SavedModel and run `python -m tf2onnx.convert --saved-model DIR --output model.onnx`)")
    if name.endswith(".pb"):
        return ("is a TensorFlow graph, not ONNX: convert it with tf2onnx (`python -m tf2onnx.convert "
                "--saved-model DIR` for a SavedModel folder, `--graphdef model.pb --inputs ... --outputs ...` "
                "for a frozen graph)")
    if name.endswith((".engine", ".plan", ".trt")):
        return ("is a TensorRT engine, not an ONNX model: pass the ONNX model it was built from; for the "
                "engine's fusions run `sepfix validate MODEL.onnx --engine-info LAYERS.json` with its layer "
                "information (`trtexec --loadEngine=ENGINE --profilingVerbosity=detailed "
                "--exportLayerInfo=LAYERS.json`)")
    return None


def _models_using(data_file: Path, limit: int = 64) -> list[str]:
    """The `.onnx` files beside a weights file that reference it (at most `limit` are looked at)."""
    folder = data_file.parent
    target = Path(os.path.abspath(data_file)).resolve()
    found = []
    try:
        candidates = sorted(folder.glob("*.onnx"))[:limit]
    except OSError:
        return []
    for candidate in candidates:
        try:  # the location is stored verbatim: a model whose bytes lack the name cannot use the file
            with open(candidate, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                if mm.find(data_file.name.encode()) == -1:
                    continue
        except (OSError, ValueError):
            continue
        if target in (referenced_data_files(candidate) or ()):
            shown = os.path.relpath(candidate)
            found.append(shown if not shown.startswith("..") else os.fspath(candidate))
    return found


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut off by the end of `head` still counts as text.
        if exc.start < len(head) - 3 or exc.reason != "unexpected end of data":
            return False
        text = head[: exc.start].decode("utf-8")
    text = text.lstrip("\ufeff")
    return bool(text) and all(ch.isprintable() or ch in "\t\n\r\f\v" for ch in text)


def _is_absolute(location: str) -> bool:
    return (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or bool(PureWindowsPath(location).drive)
        or location.startswith(("\\", "/"))
    )


@dataclass(frozen=True)
class DataSpan:
    """Where a tensor's bytes are: `length` bytes at `offset` in `file`."""

    file: Path
    offset: int
    length: int


def _external_entries(tensor: TensorProto, name: str) -> tuple[str, int | None, int | None]:
    info = {entry.key: entry.value for entry in tensor.external_data}
    location = info.get("location", "")
    numbers = []
    for key in ("offset", "length"):
        value = info.get(key)
        if value is None:
            numbers.append(None)
            continue
        try:
            number = int(value)
        except ValueError:
            number = -1
        if number < 0:
            raise _error(name, f"tensor {tensor.name!r} has a bad external data {key} {value!r}")
        numbers.append(number)
    return location, numbers[0], numbers[1]


def _resolve_external(tensor: TensorProto, base_dir: Path | None, name: str,
                      files: dict[str, tuple[Path, int]] | None = None) -> DataSpan:
    """Check a real external-data reference without reading it: inside the model's folder,
    present, and long enough. `files` caches each location's path and size: models keep
    thousands of tensors in one data file."""
    location, offset, length = _external_entries(tensor, name)
    if files is not None and location in files:
        target, size = files[location]
        return DataSpan(target, *_checked_span(offset, length, size, location, tensor, name))
    target, size = _locate(tensor, location, base_dir, name)
    if files is not None:
        files[location] = (target, size)
    return DataSpan(target, *_checked_span(offset, length, size, location, tensor, name))


def _locate(tensor: TensorProto, location: str, base_dir: Path | None, name: str) -> tuple[Path, int]:
    if not location:
        raise _error(name, f"tensor {tensor.name!r} is external data without a location")
    if "\x00" in location:
        raise _error(name, f"tensor {tensor.name!r} has an invalid external data location {location!r}")
    if _is_absolute(location):
        raise _error(
            name,
            f"external data path escapes the model folder: tensor {tensor.name!r} uses absolute path {location!r}",
        )
    if base_dir is None:
        raise _error(name, f"tensor {tensor.name!r} uses external data {location!r} but no model folder is known")
    folder = base_dir.resolve()
    target = (folder / location).resolve()
    if not target.is_relative_to(folder):
        raise _error(
            name,
            f"external data path escapes the model folder: tensor {tensor.name!r} uses {location!r}",
        )
    try:
        st = target.stat()
    except FileNotFoundError:
        raise _error(name, f"external data file {location!r} is missing (tensor {tensor.name!r})") from None
    except OSError as exc:
        raise _error(name, f"cannot access external data file {location!r} ({exc.strerror or exc})") from None
    if not target.is_file():
        raise _error(name, f"external data file {location!r} is not a regular file")
    return target, st.st_size


def _checked_span(offset: int | None, length: int | None, size: int, location: str, tensor: TensorProto,
                  name: str) -> tuple[int, int]:
    offset = offset or 0
    if length is None:
        if size < offset:
            raise _error(
                name,
                f"external data file {location!r} is too short: tensor {tensor.name!r} starts at "
                f"byte {offset} but the file has {size} bytes",
            )
        length = size - offset
    elif size < offset + length:
        raise _error(
            name,
            f"external data file {location!r} is too short: tensor {tensor.name!r} needs bytes "
            f"{offset}..{offset + length} but the file has {size} bytes",
        )
    return offset, length


def _body_tensors(body) -> Iterator[TensorProto]:
    """The tensors one graph body holds itself: initializers (sparse ones too) and attributes."""
    if isinstance(body, onnx.GraphProto):
        yield from body.initializer
        for sparse in body.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in body.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield sparse.values
                yield sparse.indices


def initializers(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Initializers of a graph and of its subgraphs."""
    for body in walk.graphs(graph):
        yield from body.initializer


def all_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every tensor of the model, subgraphs, functions and training info included."""
    bodies = list(walk.bodies(model))
    for info in model.training_info:
        bodies += [*walk.graphs(info.initialization), *walk.graphs(info.algorithm)]
    for body in bodies:
        yield from _body_tensors(body)


def _is_model_file_ref(tensor: TensorProto) -> bool:
    return tensor.data_location == TensorProto.EXTERNAL and any(
        e.key == "location" and e.value == MODEL_FILE_MARKER for e in tensor.external_data
    )


def _validate_external(model: onnx.ModelProto, base_dir: Path | None, name: str) -> None:
    files: dict[str, tuple[Path, int]] = {}
    for tensor in all_tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL and not _is_model_file_ref(tensor):
            _resolve_external(tensor, base_dir, name, files)


# --------------------------------------------------------------------------------------------
# Tensor values


def _np_dtype(tensor: TensorProto, name: str) -> np.dtype:
    if tensor.data_type in (TensorProto.UNDEFINED, TensorProto.STRING):
        kind = "UNDEFINED" if tensor.data_type == TensorProto.UNDEFINED else "STRING"
        raise _error(name, f"tensor {tensor.name!r} has unsupported dtype {kind} for raw data")
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        raise _error(name, f"tensor {tensor.name!r} has unsupported dtype {tensor.data_type}") from None


def _element_count(tensor: TensorProto, name: str) -> int:
    if any(d < 0 for d in tensor.dims):
        raise _error(name, f"tensor {tensor.name!r} has negative dims {list(tensor.dims)}")
    return math.prod(tensor.dims)


def _nbytes_for(tensor: TensorProto, count: int, dtype: np.dtype) -> int:
    bits = _PACKED_BITS.get(tensor.data_type)
    return (count * bits + 7) // 8 if bits else count * dtype.itemsize


def _from_raw(raw: np.ndarray, tensor: TensorProto, dims: list[int], dtype: np.dtype) -> np.ndarray:
    """Turn little-endian raw bytes (a uint8 array) into an array of `dims`."""
    if tensor.data_type in _PACKED_BITS:
        packed = TensorProto(data_type=tensor.data_type, dims=dims, raw_data=raw.tobytes())
        return numpy_helper.to_array(packed)
    # onnx stores little-endian; the explicit byte order keeps big-endian hosts right too.
    return raw.view(dtype.newbyteorder("<") if dtype.kind in "biufc" else dtype).reshape(dims)


@dataclass
class LoadedModel:
    """A model whose structure is in memory and whose large weights are read on demand.

    `bytes_read` counts the weight bytes read from disk by `tensor_array` / `tensor_prefix`
    (tensors already in memory cost nothing), so tests and benchmarks can see what a check read.
    """

    model: onnx.ModelProto
    path: Path | None
    bytes_read: int = 0
    base_dir: Path | None = None
    _name: str = field(default="<in-memory model>", repr=False, compare=False)
    _files: dict = field(default_factory=dict, repr=False, compare=False)
    """Each external data file's resolved path and size, and the model file's size: looked up
    once, not once per tensor (models keep thousands of tensors in one file)."""

    def __post_init__(self) -> None:
        if self.base_dir is None and self.path is not None:
            self.base_dir = self.path.parent

    def view(self, model: onnx.ModelProto) -> LoadedModel:
        """A model made from this one (a rewrite of it): its weight references still point into
        this model's files, so it reads them the same way."""
        return LoadedModel(model, self.path, 0, self.base_dir, self._name, self._files)

    @property
    def keeps_external_data(self) -> bool:
        """Whether the file keeps weights in external data files (not in the model file)."""
        return any(t.data_location == TensorProto.EXTERNAL and not _is_model_file_ref(t)
                   for t in all_tensors(self.model))

    def location(self, tensor: TensorProto) -> DataSpan | None:
        """Where a tensor's bytes are on disk, or None when they are in the proto."""
        if tensor.data_location != TensorProto.EXTERNAL:
            return None
        if _is_model_file_ref(tensor):
            _, offset, length = _external_entries(tensor, self._name)
            if self.path is None or offset is None or length is None:
                raise _error(self._name, f"tensor {tensor.name!r} points into a model file that is not known")
            # The scanner only makes in-bounds references, but a crafted file could carry one.
            if MODEL_FILE_MARKER not in self._files:
                try:
                    self._files[MODEL_FILE_MARKER] = self.path.stat().st_size
                except OSError as exc:
                    raise _error(self._name, f"cannot read weights ({exc.strerror or exc})") from None
            size = self._files[MODEL_FILE_MARKER]
            if offset + length > size:
                raise _error(self._name, f"data of tensor {tensor.name!r} runs past the end of the model file")
            return DataSpan(self.path, offset, length)
        return _resolve_external(tensor, self.base_dir, self._name, self._files)

    def _read(self, where: DataSpan, nbytes: int) -> np.ndarray:
        """Read exactly `nbytes` bytes at where.offset, into a fresh uint8 array."""
        raw = np.empty(nbytes, dtype=np.uint8)
        view, done = memoryview(raw), 0
        try:
            with open(where.file, "rb", buffering=0) as f:
                f.seek(where.offset)
                while done < nbytes:
                    got = f.readinto(view[done:])
                    if not got:
                        break
                    done += got
        except OSError as exc:
            raise _error(self._name, f"cannot read weights from {where.file} ({exc.strerror or exc})") from None
        finally:
            view.release()
        self.bytes_read += done
        if done < nbytes:
            raise _error(self._name, f"{where.file} ended early (was it changed after loading?)")
        return raw

    def _inline(self, tensor: TensorProto) -> np.ndarray:
        try:
            return numpy_helper.to_array(tensor)
        except Exception as exc:  # malformed tensor data is the model's problem, not ours
            raise _error(self._name, f"cannot decode tensor {tensor.name!r} ({type(exc).__name__}: {exc})") from None

    def tensor_array(self, tensor: TensorProto) -> np.ndarray:
        """The tensor's value, reading only its own bytes."""
        where = self.location(tensor)
        if where is None:
            return self._inline(tensor)
        dtype = _np_dtype(tensor, self._name)
        count = _element_count(tensor, self._name)
        needed = _nbytes_for(tensor, count, dtype)
        if where.length != needed:
            raise _error(
                self._name,
                f"tensor {tensor.name!r} has {where.length} bytes of data but dims "
                f"{list(tensor.dims)} of {dtype} need {needed}",
            )
        return _from_raw(self._read(where, needed), tensor, list(tensor.dims), dtype)

    def tensor_bytes(self, tensor: TensorProto) -> bytes:
        """The raw bytes of a tensor kept on disk, as they are in the file."""
        where = self.location(tensor)
        if where is None:
            raise ValueError(f"tensor {tensor.name!r} keeps its data in the proto")
        return self._read(where, where.length).tobytes()

    def check_data_size(self, tensor: TensorProto) -> None:
        """Refuse a tensor whose raw or external data does not fit its dims and type, without
        reading it (`load_for_check` asks for every initializer): rules trust those dims."""
        if tensor.data_type == TensorProto.UNDEFINED:
            raise _error(self._name, f"tensor {tensor.name!r} has no data type (UNDEFINED)")
        if tensor.data_type == TensorProto.STRING:
            if tensor.HasField("raw_data") or tensor.data_location == TensorProto.EXTERNAL:
                raise _error(self._name, f"tensor {tensor.name!r} is of type STRING but has raw or external data")
            return
        where = self.location(tensor)
        if where is None and not tensor.HasField("raw_data"):
            return  # typed fields (float_data, ...): checked by numpy_helper when decoded
        dtype = _np_dtype(tensor, self._name)
        needed = _nbytes_for(tensor, _element_count(tensor, self._name), dtype)
        have = len(tensor.raw_data) if where is None else where.length
        explicit = where is None or any(e.key == "length" for e in tensor.external_data)
        if have < needed or (explicit and have != needed):
            raise _error(
                self._name,
                f"tensor {tensor.name!r} has {have} bytes of data but dims {list(tensor.dims)} of "
                f"{dtype} need {needed}",
            )

    def tensor_prefix(self, tensor: TensorProto, count: int) -> np.ndarray:
        """The first `count` elements (flat, C order); reads only those bytes from disk."""
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        where = self.location(tensor)
        if where is None:
            return self._inline(tensor).reshape(-1)[:count]
        dtype = _np_dtype(tensor, self._name)
        count = min(count, _element_count(tensor, self._name))
        needed = _nbytes_for(tensor, count, dtype)
        if needed > where.length:
            raise _error(
                self._name,
                f"tensor {tensor.name!r} has {where.length} bytes of data, fewer than its first {count} elements need",
            )
        return _from_raw(self._read(where, needed), tensor, [count], dtype)


# --------------------------------------------------------------------------------------------
# Loaders


def _parse(small: bytes, name: str, head: bytes, file: Path | None = None) -> onnx.ModelProto:
    try:
        model = onnx.ModelProto.FromString(small)
    except Exception as exc:  # DecodeError, or upb's RuntimeError on odd input
        raise _error(name, _diagnose(head, file) or f"not a valid ONNX model (protobuf parse error: {exc})") from None
    _check_text(model, name)
    return model


def _check_text(model: onnx.ModelProto, name: str) -> None:
    """Refuse text fields that are not UTF-8. protobuf hands them out as bytes instead of str
    (and fails only when one is copied), so a corrupt name would break far from here."""
    stack: list = [model]
    while stack:
        for descriptor, value in stack.pop().ListFields():
            if descriptor.type == descriptor.TYPE_MESSAGE:
                stack.extend(value if descriptor.is_repeated else [value])
            elif descriptor.type == descriptor.TYPE_STRING:
                for text in value if descriptor.is_repeated else (value,):
                    if not isinstance(text, str):
                        raise _error(name, f"{descriptor.full_name} holds {bytes(text)[:40]!r}, not UTF-8 text "
                                           "(corrupt file?)")


def load_for_check(path: str | os.PathLike, *, defer_threshold: int = DEFER_THRESHOLD) -> LoadedModel:
    """Load the graph structure, leaving every top-level initializer's raw_data larger than
    `defer_threshold` bytes in the file (read it with `tensor_array`). External data files are
    checked (inside the model folder, present, long enough) but not read."""
    loaded = _scan(path, defer_threshold)
    _validate_external(loaded.model, loaded.base_dir, loaded._name)
    for tensor in initializers(loaded.model.graph):  # cheap here: large data is still in the file
        loaded.check_data_size(tensor)
    return loaded


def referenced_data_files(path: str | os.PathLike) -> set[Path] | None:
    """The external data files a model file names (resolved; present or not), or None when the
    file is not a readable model. Locations that leave the model's folder are left out: they
    are invalid, and nothing may act on a file outside the folder."""
    try:
        loaded = _scan(path, DEFER_THRESHOLD)
    except SepfixError:
        return None
    folder = loaded.base_dir.resolve()
    found = set()
    for tensor in all_tensors(loaded.model):
        if tensor.data_location != TensorProto.EXTERNAL or _is_model_file_ref(tensor):
            continue
        location = {e.key: e.value for e in tensor.external_data}.get("location", "")
        if location and "\x00" not in location and not _is_absolute(location):
            target = (folder / location).resolve()
            if target.is_relative_to(folder):
                found.add(target)
    return found


def _scan(path: str | os.PathLike, defer_threshold: int) -> LoadedModel:
    """The model's structure from a wire-format scan, weights left in the file, nothing checked
    beyond the protobuf itself."""
    name = os.fspath(path)
    file = Path(os.path.abspath(name))
    size = _stat_model(file, name)
    try:
        with open(file, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            head = mm[:512]
            try:
                small, seen = _Scanner(mm, size, name, defer_threshold).model()
            except SepfixError:
                better = _diagnose(head, file)
                if better:
                    raise _error(name, better) from None
                raise
    except PermissionError:
        raise _error(name, "permission denied (cannot read the file)") from None
    except (OSError, ValueError) as exc:  # e.g. a file that cannot be mapped
        raise _error(name, f"cannot read the file ({getattr(exc, 'strerror', None) or exc})") from None

    if _MODEL_GRAPH not in seen or not ({1, 8} & seen):
        missing = "no graph" if _MODEL_GRAPH not in seen else "no ir_version and no opset_import"
        raise _error(name, _diagnose(head, file) or f"not an ONNX model ({missing}; truncated, or some other protobuf?)")
    return LoadedModel(_parse(small, name, head, file), file, 0, file.parent, name)


def load_full(path: str | os.PathLike) -> LoadedModel:
    """`onnx.load` with all external data, where a whole model must be in memory (the Python
    API's `sepfix.repair`, onnx's reference evaluator); bad input gives the same one-line errors
    as `load_for_check` (which runs first: it is cheap and diagnoses precisely)."""
    lazy = load_for_check(path)
    name, file = lazy._name, lazy.path
    assert file is not None and lazy.base_dir is not None
    try:
        model = onnx.load(os.fspath(file), load_external_data=False)
    except PermissionError:
        raise _error(name, "permission denied (cannot read the file)") from None
    except Exception as exc:  # DecodeError, or protobuf's 2 GiB limit
        size = file.stat().st_size
        hint = "; a single protobuf file over 2 GiB cannot be loaded in full" if size >= 2**31 else ""
        raise _error(name, f"not a valid ONNX model (protobuf parse error: {exc}){hint}") from None
    _validate_external(model, lazy.base_dir, name)
    try:
        onnx.external_data_helper.load_external_data_for_model(model, os.fspath(lazy.base_dir))
    except Exception as exc:  # OSError, ValueError from onnx's own path checks
        raise _error(name, f"cannot load external data ({type(exc).__name__}: {exc})") from None
    return LoadedModel(model, file, 0, lazy.base_dir, name)


def from_proto(model: onnx.ModelProto, base_dir: Path | None = None) -> LoadedModel:
    """Wrap an in-memory model; external data, if any, is looked up under `base_dir`."""
    base = Path(base_dir) if base_dir is not None else None
    name = "<in-memory model>"
    if base is not None:
        _validate_external(model, base, name)
    return LoadedModel(model, None, 0, base, name)


def fits_in_protobuf(model: onnx.ModelProto) -> bool:
    """Whether the model can be serialized as one protobuf (< 2 GB).

    Estimated from the weights' bytes plus a generous margin for the graph: exact ByteSize()
    walks every tensor and costs as much as serializing.
    """
    weights = sum(len(t.raw_data) + 4 * len(t.float_data) + 8 * len(t.int64_data) + 4 * len(t.int32_data)
                  + 8 * len(t.double_data) for t in model.graph.initializer)
    return weights + 256 * 1024 * 1024 < 2**31 - 1
