"""A corpus of bad, odd and hostile inputs for the `sepfix` commands, built into a folder.

Each `Case` lives in its own sub-folder (so a stray temporary or data file is easy to spot) and
says what each command must answer: `check` 0/1/2, `repair -o OUT` and `repair --in-place`
0/1/2 (None: not run). For exit 2 the one line on stderr must contain `needle`.

    python tests/bad_inputs.py DIR      # build the corpus into DIR and list it

Used by tests/test_bad_inputs.py, which runs every case through `python -m sepfix`.
"""

from __future__ import annotations

import gzip
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sepfix.testing import builders  # noqa: E402
from tests.rules.test_sep001_dense_depthwise import dense_depthwise  # noqa: E402
from tests.rules.test_sep002_group_mismatch import group_attribute  # noqa: E402

BIG = 2**40  # an absurd dimension: 4 TiB of float32 per unit of the other dims


@dataclass
class Case:
    """One input and what every command must do with it."""

    name: str
    model: str  # path given on the command line (absolute, or relative to `folder`)
    folder: Path
    check: int
    repair: int | None = None
    in_place: int | None = None
    needle: str = ""  # must appear (case-insensitive) in the exit-2 line
    output: str | None = None  # repair -o target; default: <folder>/out/repaired.onnx
    restricted: bool = False  # run without the power to read/write files the mode forbids
    note: str = ""

    @property
    def model_path(self) -> Path:
        path = Path(self.model)
        return path if path.is_absolute() else self.folder / path

    @property
    def output_path(self) -> Path:
        return Path(self.output) if self.output else self.folder / "out" / "repaired.onnx"


@dataclass
class _Corpus:
    root: Path
    cases: list[Case] = field(default_factory=list)

    def folder(self, name: str) -> Path:
        folder = self.root / name
        (folder / "out").mkdir(parents=True)
        return folder

    def add_bytes(self, name: str, data: bytes, needle: str, **expect) -> Case:
        folder = self.folder(name)
        (folder / "model.onnx").write_bytes(data)
        return self.add(Case(name, "model.onnx", folder, **{"check": 2, "repair": 2, "in_place": 2, "needle": needle,
                                                              **expect}))

    def add_model(self, name: str, model: onnx.ModelProto, check: int, repair: int | None = None,
                  in_place: int | None = None, needle: str = "", **kw) -> Case:
        folder = self.folder(name)
        (folder / "model.onnx").write_bytes(model.SerializeToString())
        return self.add(Case(name, "model.onnx", folder, check, repair, in_place, needle, **kw))

    def add(self, case: Case) -> Case:
        self.cases.append(case)
        return case


# ------------------------------------------------------------------------------------ models


def clean() -> onnx.ModelProto:
    return builders.mobilenet_like(channels=(8, 16), spatial=16)


def mangled() -> onnx.ModelProto:
    """SEP001 on every depthwise conv: something for repair to do (and so to write)."""
    return dense_depthwise(clean())


def graph_field_span(data: bytes) -> tuple[int, int]:
    """(start, end) of the top-level graph field (7) of a serialized ModelProto."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    while pos < len(data):
        start = pos
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            varint()
        elif wire == 2:
            length = varint()
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire}")
        if number == 7:
            return start, pos
    raise ValueError("no graph field")


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _set_attr(node: onnx.NodeProto, name: str, value) -> None:
    for i, attribute in enumerate(node.attribute):
        if attribute.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def _initializer(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _with_cycle() -> onnx.ModelProto:
    model = mangled()
    # The stem's conv reads the output of the last node: input -> ... -> output -> stem.
    stem = _node(model, "stem_conv")
    stem.input[0] = model.graph.node[-2].output[0]
    return model


def _with_missing_input() -> onnx.ModelProto:
    model = mangled()
    _node(model, "block0_dw_bn").input[0] = "nobody_makes_this"
    return model


def _with_duplicate_outputs() -> onnx.ModelProto:
    model = mangled()
    relu = _node(model, "block0_dw_act")
    _node(model, "block1_dw_act").output[0] = relu.output[0]  # two producers of one tensor
    return model


def _with_duplicate_initializers() -> onnx.ModelProto:
    model = mangled()
    first = model.graph.initializer[0]
    twin = onnx.TensorProto()
    twin.CopyFrom(model.graph.initializer[1])
    twin.name = first.name
    model.graph.initializer.append(twin)
    return model


def _with_duplicate_node_names() -> onnx.ModelProto:
    model = mangled()
    for node in model.graph.node:
        node.name = "same"
    return model


def _input_dims(dims: list[int], mangle_it: bool = True) -> onnx.ModelProto:
    model = mangled() if mangle_it else clean()
    shape = model.graph.input[0].type.tensor_type.shape
    for dim, value in zip(shape.dim, dims):
        dim.Clear()
        dim.dim_value = value
    return model


def _initializer_dims(dims: list[int], name: str = "block0_pw_conv_weight") -> onnx.ModelProto:
    model = mangled()
    tensor = _initializer(model, name)
    del tensor.dims[:]
    tensor.dims.extend(dims)
    return model


def _kernel_shape_length() -> onnx.ModelProto:
    model = clean()
    _set_attr(_node(model, "block0_dw_conv"), "kernel_shape", [3])
    return model


def _weight_rank() -> onnx.ModelProto:
    model = mangled()
    tensor = _initializer(model, "block0_pw_conv_weight")  # (8, 8, 1, 1) stored as (8, 8)
    del tensor.dims[:]
    tensor.dims.extend([8, 8])
    return model


def _empty_graph() -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])
    graph = helper.make_graph([], "empty", [x], [x])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _unknown_domain() -> onnx.ModelProto:
    model = clean()
    node = helper.make_node("Frobnicate", [model.graph.output[0].name], ["frobbed"], name="frob",
                            domain="com.example.unknown", strength=3)
    model.graph.node.append(node)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("frobbed", TensorProto.FLOAT, None))
    model.opset_import.append(helper.make_opsetid("com.example.unknown", 1))
    return model


def _opset(version: int) -> onnx.ModelProto:
    model = clean()
    model.opset_import[0].version = version
    if version < 13:  # Clip's min/max became inputs at opset 11; before it, attributes
        for node in model.graph.node:
            if node.op_type == "Clip" and version < 11:
                inputs = [model.graph.initializer[i] for i, t in enumerate(model.graph.initializer)
                          if t.name in node.input[1:]]
                lo, hi = (float(numpy_helper.to_array(t)) for t in inputs)
                del node.input[1:]
                node.attribute.extend([helper.make_attribute("min", lo), helper.make_attribute("max", hi)])
    return model


def _new_ir(model: onnx.ModelProto) -> onnx.ModelProto:
    model.ir_version = onnx.IR_VERSION + 5  # newer than any onnxruntime or onnx knows
    return model


def _save_external(model: onnx.ModelProto, folder: Path, location: str = "model.onnx.data") -> Path:
    path = folder / "model.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=location, size_threshold=0)
    return path


def _edit_external(path: Path, tensor_name: str, **entries: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    tensor = next(t for t in model.graph.initializer if t.name == tensor_name)
    for entry in tensor.external_data:
        if entry.key in entries:
            entry.value = entries.pop(entry.key)
    for key, value in entries.items():
        tensor.external_data.add(key=key, value=value)
    path.write_bytes(model.SerializeToString())


# ------------------------------------------------------------------------------------ corpus


def build(root: Path) -> list[Case]:
    """Write every case under `root`; return them."""
    root.mkdir(parents=True, exist_ok=True)
    c = _Corpus(root)
    good = mangled().SerializeToString()

    # -- not a model at all
    c.add_bytes("empty", b"", "empty")
    c.add_bytes("one_byte", b"\x08", "truncated")
    start, end = graph_field_span(good)
    offsets = sorted({1, 2, start, start + 1, start + 2, start + 3, end - 1, *range(start + 5, end - 1, max(1, (end - start) // 9))})
    for i, offset in enumerate(offsets):  # in place fails the same way as -o: tried on a few
        c.add_bytes(f"truncated_{offset}", good[:offset], "truncated", in_place=2 if i % 4 == 0 else None)
    for seed in range(4):
        c.add_bytes(f"random_{seed}", random.Random(seed).randbytes(257 + 300 * seed), "ONNX model",
                    in_place=2 if seed == 0 else None)
    c.add_bytes("tensor_proto", numpy_helper.from_array(np.ones((4, 4), np.float32), "t").SerializeToString(),
                "not an ONNX model")
    c.add_bytes("graph_proto", mangled().graph.SerializeToString(), "not an ONNX model")
    c.add_bytes("text", b"hello: this is not a model\n" * 20, "text file")
    c.add_bytes("gzip", gzip.compress(good, mtime=0), "gzip")
    c.add_bytes("lfs_pointer", b"version https://git-lfs.github.com/spec/v1\n"
                b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n",
                "git lfs pull")

    folder = c.folder("directory")
    (folder / "model.onnx").mkdir()
    c.add(Case("directory", "model.onnx", folder, 2, 2, None, "directory"))
    folder = c.folder("missing")
    c.add(Case("missing", "model.onnx", folder, 2, 2, None, "no such file"))

    folder = c.folder("no_read_permission")
    (folder / "model.onnx").write_bytes(good)
    os.chmod(folder / "model.onnx", 0)
    c.add(Case("no_read_permission", "model.onnx", folder, 2, 2, 2, "permission denied", restricted=True))

    folder = c.folder("unwritable_output_folder")
    (folder / "model.onnx").write_bytes(good)
    os.chmod(folder / "out", 0o555)
    c.add(Case("unwritable_output_folder", "model.onnx", folder, 1, 2, None, "cannot write", restricted=True))

    folder = c.folder("unwritable_model_folder")
    (folder / "model.onnx").write_bytes(good)
    os.chmod(folder, 0o555)
    c.add(Case("unwritable_model_folder", "model.onnx", folder, 1, None, 2, "cannot write", restricted=True))

    folder = c.folder("output_under_a_file")
    (folder / "model.onnx").write_bytes(good)
    (folder / "out" / "afile").write_bytes(b"x")
    c.add(Case("output_under_a_file", "model.onnx", folder, 1, 2, None, "does not exist",
               output=str(folder / "out" / "afile" / "repaired.onnx")))

    folder = c.folder("output_folder_missing")
    (folder / "model.onnx").write_bytes(good)
    c.add(Case("output_folder_missing", "model.onnx", folder, 1, 2, None, "does not exist",
               output=str(folder / "nowhere" / "repaired.onnx")))

    folder = c.folder("symlink")
    (folder / "real.onnx").write_bytes(good)
    (folder / "model.onnx").symlink_to("real.onnx")
    c.add(Case("symlink", "model.onnx", folder, 1, 0, None, note="a link to a valid model works"))
    folder = c.folder("dangling_symlink")
    (folder / "model.onnx").symlink_to("gone.onnx")
    c.add(Case("dangling_symlink", "model.onnx", folder, 2, 2, None, "no such file"))

    # -- graphs that cannot be analysed: never repaired
    c.add_model("cycle", _with_cycle(), 2, 2, 2, "cycle")
    c.add_model("missing_node_input", _with_missing_input(), 2, 2, 2, "nobody_makes_this")
    c.add_model("duplicate_tensor_names", _with_duplicate_outputs(), 2, 2, 2, "more than once")
    c.add_model("duplicate_initializers", _with_duplicate_initializers(), 2, 2, 2, "more than once")
    c.add_model("duplicate_node_names", _with_duplicate_node_names(), 2, 2, 2, "used by",
                note="onnx.checker allows it, onnxruntime refuses it, findings could not name the node")

    # -- dims
    c.add_model("zero_batch_input", _input_dims([0, 3, 16, 16]), 1, 2, 2, "no elements",
                note="empty inputs would 'prove' any repair")
    c.add_model("zero_batch_input_clean", _input_dims([0, 3, 16, 16], mangle_it=False), 0, 0, 0,
                note="nothing to repair: written as a copy, validation never runs")
    c.add_model("absurd_input", _input_dims([1, 3, BIG, BIG]), 1, 2, 2, "too large")
    c.add_model("absurd_initializer_dims", _initializer_dims([BIG, 8, 1, 1]), 2, 2, 2, "block0_pw_conv_weight")
    c.add_model("zero_initializer_dims", _initializer_dims([0, 8, 1, 1]), 2, 2, 2, "block0_pw_conv_weight")
    c.add_model("kernel_shape_length", _kernel_shape_length(), 1, None, None,
                note="catalogued: SEP003")
    c.add_model("weight_rank", _weight_rank(), 2, 2, 2, "rank 3 or more")

    # -- malformed but catalogued: findings, not crashes
    for value in (0, -3, 3):
        model = group_attribute(clean(), value)
        c.add_model(f"group_{value}".replace("-", "minus"), model, 1, 0, None, note="SEP002")

    # -- valid oddities: checked without complaint
    c.add_model("empty_graph", _empty_graph(), 0, 0, 0)
    c.add_model("unknown_domain", _unknown_domain(), 0, 0, 0)
    newest = onnx.defs.onnx_opset_version()
    for version in sorted({7, 9, 11, 13, newest}):
        c.add_model(f"opset_{version}", _opset(version), 0, 0, None)
    c.add_model("ir_newer_than_onnxruntime", _new_ir(clean()), 0, 0, 0)
    c.add_model("ir_newer_than_onnxruntime_mangled", _new_ir(mangled()), 1, 1, 1,
                note="validation cannot run the model: refused, nothing written")

    # -- external data
    for name, edit, needle in [
        ("external_missing", lambda f, p: (f / "model.onnx.data").unlink(), "missing"),
        ("external_too_short", lambda f, p: os.truncate(f / "model.onnx.data", 100), "too short"),
        ("external_offset_past_end", lambda f, p: _edit_external(p, "block0_pw_conv_weight", offset="99999999"),
         "too short"),
        ("external_relative_escape",
         lambda f, p: _edit_external(p, "block0_pw_conv_weight", location="../sentinel.data"), "escapes"),
        ("external_absolute_escape",
         lambda f, p: _edit_external(p, "block0_pw_conv_weight", location=str(f.parent / "sentinel.data")),
         "escapes"),
    ]:
        folder = c.folder(name)
        path = _save_external(mangled(), folder)
        edit(folder, path)
        c.add(Case(name, "model.onnx", folder, 2, 2, 2, needle))
    (root / "sentinel.data").write_bytes(b"\0" * 65536)
    return c.cases


if __name__ == "__main__":
    for case in build(Path(sys.argv[1])):
        print(f"{case.name:32} check={case.check} repair={case.repair} in_place={case.in_place} {case.note}")
