"""SEP007 layout-sandwich: channels-last regions between layout Transposes, moved through until
the Transposes cancel.

Real exporter output (tests/data/real/tf/, read by hand, see the README there):
- k2_mobilenetv3small_kinit: tf-keras MobileNetV3-Small through tf2onnx, whose transpose
  optimizer gave up on it: 102 Transposes, a (0,2,3,1) after each of the 52 convs, a (0,3,1,2)
  before each, the first reading the model input (boundary), with hard-swish fan-out,
  squeeze-excite broadcast Muls, residual Adds, NHWC Pads and ReduceMean between them; the
  model's NHWC output is a hard-swish after the last (0,2,3,1). 101 inside, in 35 regions; once
  repaired 2 are left, both at the boundary (the last one moves to the output). 11 depthwise
  convs, none seen as a block before repair.
- tflite_mobilenetv3small_op15: the Keras 3 model through TFLite and tf2onnx: 36 Transposes
  around each HardSwish (35 inside), and the squeeze-excite vector converted by 16 Reshapes
  (N,1,1,C) <-> (N,C,1,1) that only move unit dims: 18 regions. (tflite_mobilenetv3small, the
  opset 13 export, writes HardSwish, an opset 14 op: not a valid model, sepfix refuses it.)
- k2_mobilenetv3small, k3_mobilenetv3small: the same network where tf2onnx's optimizer worked:
  only the 2 boundary Transposes, nothing to report.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import sepfix
from sepfix import model_io
from sepfix.checker import check_loaded
from sepfix.rules import select_rules
from collections.abc import Sequence

from sepfix.testing import builders
from sepfix.testing.mangle import TO_NCHW as _TO_NCHW, TO_NHWC as _TO_NHWC, Editor, is_block_conv
from tests.rules import support
from tests.rules.support import ops
from tests.conftest import run_model

ROOT = Path(__file__).resolve().parents[2]
REAL_TF = ROOT / "tests" / "data" / "real" / "tf"
TO_NHWC, TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
RNG = np.random.default_rng(7)

# -- manglers ------------------------------------------------------------------------------------

def _nhwc_round_trip(editor: Editor, base: str, source: str, target: str, where: str) -> list[onnx.NodeProto]:
    """Transpose(0,2,3,1) then Transpose(0,3,1,2): an NHWC detour that changes nothing."""
    nhwc = editor.node("Transpose", [source], [editor.fresh(base, f"{where}_nhwc")], base, f"{where}_to_nhwc",
                       perm=_TO_NHWC)
    nchw = editor.node("Transpose", [nhwc.output[0]], [target], base, f"{where}_to_nchw", perm=_TO_NCHW)
    return [nhwc, nchw]


def layout_sandwich(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP007: wrap each depthwise and pointwise conv in NHWC round trips, as tf2onnx did.

    Before the conv: Transpose(0,2,3,1) → Transpose(0,3,1,2); after it the same pair. Each pair
    is an inverse pair that cancels, so the function is unchanged (bit for bit).
    """
    editor = Editor(model, "SEP007")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    for conv in editor.select(nodes, is_block_conv, "depthwise or pointwise"):
        node, base = conv.node, conv.base_name
        before_output = editor.fresh(base, "before_nchw")
        before = _nhwc_round_trip(editor, base, node.input[0], before_output, "before")
        conv_output = node.output[0]
        node.input[0] = before[-1].output[0]
        node.output[0] = editor.fresh(base, "conv_out")
        after = _nhwc_round_trip(editor, base, node.output[0], conv_output, "after")
        replacements[conv.index] = [*before, node, *after]
    return editor.rebuild(replacements)


NHWC_OPS = frozenset({"Relu", "Clip", "Add", "Mul", "Sigmoid", "HardSwish"})


def nhwc_between_convs(model: onnx.ModelProto) -> onnx.ModelProto:
    """SEP007 as tf2onnx leaves a graph when its transpose optimizer gives up: every activation
    and residual Add between convs runs channels-last; each Conv and BatchNormalization reads its
    input through Transpose(0,3,1,2) and the ops after it read its output through
    Transpose(0,2,3,1); constants of the channels-last ops are stored channels-last. Same
    function, bit for bit."""
    mangled = onnx.ModelProto()
    mangled.CopyFrom(model)
    graph = mangled.graph
    constants = {t.name: t for t in graph.initializer}
    activations = {v.name for v in graph.input} - set(constants)
    nhwc: set[str] = set()  # activations now held channels-last under their own name
    copies: dict[tuple[str, str], str] = {}
    nodes: list[onnx.NodeProto] = []

    def converted(name: str, perm: list[int], layout: str) -> str:
        if (name, layout) not in copies:
            copies[(name, layout)] = f"{name}_sep007_{layout}"
            nodes.append(helper.make_node("Transpose", [name], [copies[(name, layout)]],
                                          name=f"{name}_sep007_to_{layout}", perm=perm))
        return copies[(name, layout)]

    for node in graph.node:
        data = [i for i, name in enumerate(node.input) if name in activations]
        channels_last = node.op_type in NHWC_OPS and bool(data)
        for i in data:
            if channels_last and node.input[i] not in nhwc:
                node.input[i] = converted(node.input[i], TO_NHWC, "nhwc")
            elif not channels_last and node.input[i] in nhwc:
                node.input[i] = converted(node.input[i], TO_NCHW, "nchw")
        for i, name in enumerate(node.input):
            value = numpy_helper.to_array(constants[name]) if channels_last and name in constants else None
            if value is not None and value.ndim and any(d != 1 for d in value.shape):
                full = value.reshape((1,) * (4 - value.ndim) + value.shape)
                moved = numpy_helper.from_array(np.ascontiguousarray(full.transpose(TO_NHWC)), f"{name}_sep007_nhwc")
                graph.initializer.append(moved)
                node.input[i] = moved.name
        nodes.append(node)
        if channels_last:
            nhwc.update(node.output)
        if node.op_type != "Constant":
            activations.update(name for name in node.output if name)
    for output in graph.output:
        if output.name in nhwc:  # the graph output keeps its name and layout: one more Transpose writes it
            inner = f"{output.name}_sep007_nhwc"
            for node in nodes:
                node.input[:] = [inner if n == output.name else n for n in node.input]
                node.output[:] = [inner if n == output.name else n for n in node.output]
            nodes.append(helper.make_node("Transpose", [inner], [output.name], name=f"{output.name}_sep007_to_nchw",
                                          perm=TO_NCHW))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    value_info = [v for v in graph.value_info if v.name not in nhwc]  # their shapes changed
    del graph.value_info[:]
    graph.value_info.extend(value_info)
    return mangled


MANGLES = {"sandwich": layout_sandwich, "nhwc": nhwc_between_convs}


def _sample_layout_sandwich() -> onnx.ModelProto:
    """SEP007: NHWC Transpose round trips (inverse pairs) before and after every DW/PW conv."""
    return layout_sandwich(builders.mobilenet_like(channels=(8, 16), spatial=16))


SAMPLES = {"sep007_layout_sandwich": _sample_layout_sandwich}


# -- helpers -------------------------------------------------------------------------------------


def sep007(model) -> list:
    """SEP007's findings, advice included (a region that only moves to the model's boundary)."""
    return [f for f in sepfix.check(model, advice=True) if f.code == "SEP007"]


def repaired(model: onnx.ModelProto, select=None) -> onnx.ModelProto:
    """sepfix.repair with its proof, which must pass; the result must check clean (with
    `select`, clean of those rules)."""
    result, report = sepfix.repair(model, select=select)
    # SEP011 folds the zero Pads the moved Transposes now put right in front of convs
    # SEP011 and SEP008 fold the Pads and affine ops the moved Transposes put next to convs
    assert report.fixes and "SEP007" in {f.code for f in report.fixes} <= {"SEP007", "SEP008", "SEP011"}
    assert report.validation is not None and report.validation.passed, report.validation
    assert sepfix.check(result, select=select) == [] and sep007(result) == []
    return result


def blocks(model: onnx.ModelProto) -> list:
    return check_loaded(model_io.from_proto(model), select_rules()).blocks


def assert_same(a: onnx.ModelProto, b: onnx.ModelProto, atol=1e-6, as_written=False) -> None:
    """Outputs equal on onnxruntime; `as_written` turns its graph optimizations off."""
    for left, right in zip(run(a, as_written), run(b, as_written), strict=True):
        np.testing.assert_allclose(left, right, rtol=1e-6, atol=atol)


def run(model: onnx.ModelProto, as_written=False) -> list[np.ndarray]:
    options = ort.SessionOptions()
    if as_written:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {v.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in v.shape]).astype(np.float32)
             for v in session.get_inputs()}
    return session.run(None, feeds)


def model(nodes, inputs, outputs, initializers=(), opset=13, runtime_inputs=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "sep007", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in [*inputs, *runtime_inputs]],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in initializers])
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    onnx.checker.check_model(built, full_check=True)
    return built


def conv(name: str, x: str, out: str, c_in: int, c_out: int):
    """A 1x1 conv node and its weight."""
    weight = RNG.standard_normal((c_out, c_in, 1, 1)).astype(np.float32)
    return helper.make_node("Conv", [x, f"{name}_w"], [out], name=name), (f"{name}_w", weight)


def transpose(name: str, x: str, out: str, perm: list[int]):
    return helper.make_node("Transpose", [x], [out], name=name, perm=perm)


def island(middle, extra_inits=(), c=8, opset=13, out_shape=None, runtime_inputs=()):
    """x -> conv -> Transpose(0,2,3,1) -> `middle` (reads t, writes u) -> Transpose(0,3,1,2) -> conv -> y."""
    first, w1 = conv("conv_a", "x", "a", c, c)
    last, w2 = conv("conv_b", "back", "y", c, c)
    nodes = [first, transpose("to_nhwc", "a", "t", TO_NHWC), *middle, transpose("to_nchw", "u", "back", TO_NCHW), last]
    return model(nodes, [("x", [1, c, 6, 6])], [("y", out_shape or [1, c, 6, 6])], [w1, w2, *extra_inits], opset,
                 runtime_inputs)


# -- the manglers --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(MANGLES))
def test_manglers_keep_the_function(clean_models, variant):
    for source, clean in clean_models.items():
        mangled = MANGLES[variant](clean)
        onnx.checker.check_model(mangled, full_check=True)
        names = [n.name for n in mangled.graph.node]
        assert all(names) and len(names) == len(set(names))
        assert ops(mangled)["Transpose"] > ops(clean)["Transpose"], source
        assert {k: v for k, v in ops(mangled).items() if k != "Transpose"} == {
            k: v for k, v in ops(clean).items() if k != "Transpose"}
        assert_same(clean, mangled, atol=0)


def test_nhwc_mangler_runs_activations_channels_last():
    mangled = nhwc_between_convs(builders.mobilenet_like())
    producers = {o: n for n in mangled.graph.node for o in n.output}
    for node in mangled.graph.node:
        if node.op_type in ("Clip", "Add"):
            for name in node.input:
                producer = producers.get(name)
                assert producer is None or producer.op_type in ("Transpose", "Clip", "Add", "Constant")
                if producer is not None and producer.op_type == "Transpose":
                    assert list(producer.attribute[0].ints) == TO_NHWC


# -- round trip over the manglers and every clean source -----------------------------------------


@pytest.mark.parametrize("variant", sorted(MANGLES))
@pytest.mark.parametrize("source", ["helper", "torch-legacy", "torch-dynamo"])
def test_round_trip(clean_models, source, variant):
    clean = clean_models[source]
    mangled = MANGLES[variant](clean)
    findings = sepfix.check(mangled, advice=True)
    assert findings and {f.code for f in findings} == {"SEP007"} and all(f.fixable for f in findings)
    assert all(f.details["left_after_repair"] == 0 and f.details["layout"] == "NHWC" for f in findings)
    assert {f.severity for f in findings} == {"warning"}
    fixed = repaired(mangled)
    assert ops(fixed) == ops(clean)  # no Transpose, no Identity: the clean graph's ops
    assert len(blocks(fixed)) == len(blocks(clean)) > 0
    assert_same(clean, fixed, atol=0)
    assert [v.name for v in fixed.graph.output] == [v.name for v in clean.graph.output]
    again, report = sepfix.repair(fixed)
    assert again is fixed and report.fixes == []


def test_in_an_if_branch():
    mangled = builders.in_if_branch(nhwc_between_convs(builders.mobilenet_like()))
    findings = sep007(mangled)
    assert findings and {f.graph for f in findings} == {"main/branch.then_branch"}
    fixed = repaired(mangled)
    then_branch = fixed.graph.node[0].attribute[0].g
    assert "Transpose" not in {n.op_type for n in then_branch.node}
    feeds = {"flag": np.array(True), "input": RNG.standard_normal((1, 3, 16, 16)).astype(np.float32)}
    np.testing.assert_array_equal(run_model(fixed, feeds)[0], run_model(mangled, feeds)[0])


# -- the shipped sample keeps the old behaviour --------------------------------------------------


def test_sample_model_keeps_the_pair_findings():
    sample = onnx.load(ROOT / "sample_models" / "sep007_layout_sandwich.onnx")
    findings = sep007(sample)
    # one finding per inverse pair, anchored at its first Transpose, as before regions
    assert [f.node for f in findings] == [f"block{b}_{c}_conv_sep007_{w}_to_nhwc" for b in (0, 1)
                                          for c in ("dw", "pw") for w in ("before", "after")]
    # the last pair writes the graph output: its closing Transpose is at the boundary
    assert [f.details["interior_transposes"] for f in findings] == [2] * 7 + [1]
    assert all(f.details["ops"] == {} for f in findings)
    fixed = repaired(sample)
    clean = onnx.load(ROOT / "sample_models" / "clean_mobilenet.onnx")
    assert ops(fixed) == ops(clean)
    assert_same(clean, fixed, atol=0)


# -- real exporter output ------------------------------------------------------------------------


def _real(name: str) -> onnx.ModelProto:
    path = REAL_TF / name
    assert path.exists(), f"{path} is missing (the real tf exports are committed from the real-tf branch)"
    return onnx.load(path)


def _boundary_transposes(fixed: onnx.ModelProto) -> None:
    """The only Transposes left read the graph input or write the graph output."""
    graph = fixed.graph
    left = [n for n in graph.node if n.op_type == "Transpose"]
    assert [(n.input[0] in {v.name for v in graph.input}, n.output[0] in {v.name for v in graph.output})
            for n in left] == [(True, False), (False, True)]
    assert [list(n.attribute[0].ints) for n in left] == [TO_NCHW, TO_NHWC]


@pytest.mark.parametrize("name, regions, inside, reshapes_removed, blocks_before", [
    ("k2_mobilenetv3small_kinit.onnx", 35, 101, 0, 0),
    ("tflite_mobilenetv3small_op15.onnx", 18, 35, 16, 3),
])
def test_real_mobilenetv3_small(name, regions, inside, reshapes_removed, blocks_before):
    mangled = _real(name)
    findings = sep007(mangled)  # (kinit's NHWC zero Pads are SEP011's)
    assert len(findings) == regions
    assert sum(f.details["interior_transposes"] for f in findings) == inside
    assert sum(f.details["interior_reshapes"] for f in findings) == reshapes_removed
    assert all(f.fixable and f.details["left_after_repair"] == 0 for f in findings)
    # the last region reaches the model output: its Transpose moves there and stays; that one
    # cancels nothing (advice), every other region cancels all of its conversions
    [last] = [f for f in findings if f.severity == "info"]
    assert (last.details["moved_to_boundary"], last.details["cancelled"]) == (1, 0)
    assert all(f.details["moved_to_boundary"] == 0 for f in findings if f is not last)
    assert len(blocks(mangled)) == blocks_before

    fixed, report = sepfix.repair(mangled, select=["SEP007", "SEP011"])
    assert report.validation.passed and len([f for f in report.fixes if f.code == "SEP007"]) == regions
    assert max(o.max_abs for o in report.validation.outputs) <= 1e-5
    assert [f for f in sepfix.check(fixed, advice=True) if f.code in ("SEP007", "SEP011")] == []
    _boundary_transposes(fixed)
    assert ops(fixed)["Transpose"] == 2 and ops(mangled)["Transpose"] == inside + 1
    assert ops(mangled)["Reshape"] - ops(fixed)["Reshape"] == reshapes_removed
    moved = ("Transpose", "Reshape", "Pad")  # the zero Pads fold into their convs (SEP011)
    assert {k: v for k, v in ops(fixed).items() if k not in moved} == {
        k: v for k, v in ops(mangled).items() if k not in moved}
    assert ops(fixed)["Pad"] == 0
    found = blocks(fixed)
    assert len(found) == 11 and all(b.kernel in ((3, 3), (5, 5)) for b in found)
    assert_same(mangled, fixed, atol=1e-5)


@pytest.mark.parametrize("name", ["k2_mobilenetv3small.onnx", "k3_mobilenetv3small.onnx"])
def test_real_exports_without_sandwiches_are_silent(name):
    exported = _real(name)
    assert ops(exported)["Transpose"] == 2  # model input and output only
    assert sep007(exported) == []


@pytest.mark.parametrize("name, ops_moved", [
    ("k2_pad_dw_s2.onnx", {"Pad": 1}),  # NHWC model input -> ZeroPadding2D -> Transpose -> depthwise conv
    ("k3_efficientnet.onnx", {"Add": 1, "Mul": 2}),  # NHWC model input -> Rescaling/Normalization -> Transpose
])
def test_real_preprocessing_on_the_nhwc_input_is_advice(name, ops_moved):
    """Ops on the NHWC model input before its first Transpose: the Transpose can move to the
    input, which cancels nothing (advice); repair still moves it."""
    exported = _real(name)
    [finding] = sep007(exported)
    assert finding.severity == "info" and finding.details["ops"] == ops_moved
    assert (finding.details["interior_transposes"], finding.details["moved_to_boundary"]) == (1, 1)
    fixed, report = sepfix.repair(exported, select=["SEP007"])
    assert report.validation.passed and sep007(fixed) == []
    first = fixed.graph.node[0]
    assert first.op_type == "Transpose" and first.input[0] == fixed.graph.input[0].name


def test_partial_repair_is_still_reported():
    """What the pair-only rule left of the Keras 2 model (it cancelled the 12 Transpose -> Relu ->
    Transpose pairs of the squeeze-excite branches): 78 Transposes, 77 of them inside."""
    partial = _real("k2_mobilenetv3small_kinit.onnx")
    graph = partial.graph
    producers = {o: n for n in graph.node for o in n.output}
    readers = Counter(name for n in graph.node for name in n.input)
    cancelled = []
    for last in graph.node:
        relu = producers.get(last.input[0]) if last.op_type == "Transpose" else None
        first = producers.get(relu.input[0]) if relu is not None and relu.op_type == "Relu" else None
        if first is not None and first.op_type == "Transpose" and readers[first.output[0]] == readers[relu.output[0]] == 1:
            relu.input[0] = first.input[0]
            for node in graph.node:
                node.input[:] = [relu.output[0] if n == last.output[0] else n for n in node.input]
            cancelled += [first, last]
    for node in cancelled:
        graph.node.remove(node)
    assert ops(partial)["Transpose"] == 78
    findings = sep007(partial)
    assert sum(f.details["interior_transposes"] for f in findings) == 77
    _boundary_transposes(repaired(partial))


# -- what moves through, and how -----------------------------------------------------------------


def test_binary_constants_are_permuted():
    c = 8
    inits = [("per_channel", RNG.standard_normal(c).astype(np.float32)),
             ("full", RNG.standard_normal((1, 6, 6, c)).astype(np.float32)),
             ("row", RNG.standard_normal((6, 1, c)).astype(np.float32)),
             ("scalar", np.float32(3.0)), ("slope", RNG.standard_normal((1, 1, c)).astype(np.float32)),
             ("two", np.full((1, 1, 1, 1), 2.0, np.float32))]
    middle = [helper.make_node("Mul", ["t", "per_channel"], ["m1"], name="mul"),
              helper.make_node("Add", ["full", "m1"], ["m2"], name="add"),
              helper.make_node("Sub", ["m2", "row"], ["m3"], name="sub"),
              helper.make_node("Div", ["m3", "scalar"], ["m4"], name="div"),
              helper.make_node("PRelu", ["m4", "slope"], ["m5"], name="prelu"),
              helper.make_node("Pow", ["m5", "two"], ["u"], name="pow")]
    mangled = island(middle, inits)
    [finding] = sep007(mangled)
    assert finding.details["ops"] == {"Add": 1, "Div": 1, "Mul": 1, "PRelu": 1, "Pow": 1, "Sub": 1}
    fixed = repaired(mangled, select=["SEP007"])  # (the Mul next to the conv is SEP008's)
    assert ops(fixed)["Transpose"] == 0
    shapes = {n.op_type: [tuple(t.dims) for t in fixed.graph.initializer if t.name in n.input]
              for n in fixed.graph.node if n.op_type != "Conv"}
    assert shapes == {"Mul": [(1, c, 1, 1)], "Add": [(1, c, 6, 6)], "Sub": [(1, c, 6, 1)], "Div": [()],
                      "PRelu": [(1, c, 1, 1)], "Pow": [(1, 1, 1, 1)]}
    assert_same(mangled, fixed, atol=0)


def test_hard_swish_fan_out_squeeze_excite_and_pad():
    """The Keras MobileNetV3 pattern: x * relu6(x + 3) / 6, NHWC Pad, a squeeze-excite gate
    (ReduceMean over H, W with keepdims, broadcast Mul) and a residual Add of two regions."""
    inits = [("three", np.float32(3)), ("zero", np.float32(0)), ("six", np.float32(6)), ("sixth", np.float32(1 / 6)),
             ("pads", np.array([0, 1, 1, 0, 0, 1, 1, 0], np.int64))]
    se_conv, w_se = conv("se_conv", "pooled_nchw", "gate_nchw", 8, 8)
    middle = [helper.make_node("Add", ["t", "three"], ["h1"], name="hs_add"),
              helper.make_node("Clip", ["h1", "zero", "six"], ["h2"], name="hs_clip"),
              helper.make_node("Mul", ["h2", "sixth"], ["h3"], name="hs_scale"),
              helper.make_node("Mul", ["t", "h3"], ["h"], name="hs_mul"),
              helper.make_node("ReduceMean", ["h"], ["pooled"], name="se_pool", axes=[1, 2], keepdims=1),
              transpose("se_to_nchw", "pooled", "pooled_nchw", TO_NCHW), se_conv,
              transpose("se_to_nhwc", "gate_nchw", "gate", TO_NHWC),
              helper.make_node("Sigmoid", ["gate"], ["gate_s"], name="se_sigmoid"),
              helper.make_node("Mul", ["h", "gate_s"], ["g"], name="se_mul"),
              helper.make_node("Add", ["g", "t"], ["r"], name="residual"),
              helper.make_node("Pad", ["r", "pads"], ["u"], name="pad")]
    mangled = island(middle, [*inits, w_se], out_shape=[1, 8, 8, 8])
    [finding] = sep007(mangled)
    assert (finding.details["interior_transposes"], finding.details["entering"], finding.details["leaving"]) == (4, 2, 2)
    fixed = repaired(mangled, select=["SEP007"])  # (the Pad, now in front of the conv, is SEP011's)
    assert ops(fixed)["Transpose"] == 0
    nodes = {n.name: n for n in fixed.graph.node}
    assert helper.get_attribute_value(nodes["se_pool"].attribute[0]) == [2, 3]
    pads = next(t for t in fixed.graph.initializer if t.name == nodes["pad"].input[1])
    assert numpy_helper.to_array(pads).tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert_same(mangled, fixed, atol=0)


def test_concat_split_and_reductions_take_permuted_axes():
    inits = [("axes", np.array([1, 2], np.int64)), ("bias", RNG.standard_normal((1, 1, 1, 16)).astype(np.float32))]
    middle = [helper.make_node("Concat", ["t", "t"], ["c"], name="concat", axis=-1),
              helper.make_node("Add", ["c", "bias"], ["cb"], name="add"),
              helper.make_node("Split", ["cb"], ["s1", "s2"], name="split", axis=3, num_outputs=2),
              helper.make_node("ReduceMax", ["s2", "axes"], ["m"], name="reduce", keepdims=1),
              helper.make_node("Mul", ["s1", "m"], ["u"], name="gate")]
    mangled = island(middle, inits, opset=18)
    [finding] = sep007(mangled)
    fixed = repaired(mangled)
    nodes = {n.name: n for n in fixed.graph.node}
    attrs = {name: {a.name: helper.get_attribute_value(a) for a in nodes[name].attribute} for name in ("concat", "split")}
    assert attrs["concat"]["axis"] == 1 and attrs["split"]["axis"] == 1
    axes = next(t for t in fixed.graph.initializer if t.name == nodes["reduce"].input[1])
    assert numpy_helper.to_array(axes).tolist() == [2, 3]
    assert ops(fixed)["Transpose"] == 0
    assert_same(mangled, fixed, atol=0)


@pytest.mark.parametrize("opset", [13, 18])
def test_global_pool_of_a_channels_last_tensor_becomes_a_reduce(opset):
    """GlobalAveragePool on an NHWC tensor averages W and C: run NCHW, that is ReduceMean over
    axes 1 and 3 (an attribute before opset 18, an input from it)."""
    middle = [helper.make_node("GlobalAveragePool", ["t"], ["p"], name="gap"),
              helper.make_node("Mul", ["t", "p"], ["u"], name="mul")]
    mangled = island(middle, opset=opset)
    fixed = repaired(mangled)
    [pool] = [n for n in fixed.graph.node if n.name == "gap"]
    assert pool.op_type == "ReduceMean"
    axes = (helper.get_attribute_value(next(a for a in pool.attribute if a.name == "axes")) if opset < 18 else
            numpy_helper.to_array(next(t for t in fixed.graph.initializer if t.name == pool.input[1])).tolist())
    assert list(axes) == [1, 3]
    assert_same(mangled, fixed, atol=1e-6)


@pytest.mark.parametrize("opset", [10, 18])
def test_pads_as_attribute_and_with_axes(opset):
    if opset == 10:
        pad = helper.make_node("Pad", ["t"], ["u"], name="pad", pads=[0, 2, 1, 0, 0, 0, 3, 0])
        inits = []
    else:
        pad = helper.make_node("Pad", ["t", "pads", "", "axes"], ["u"], name="pad")
        inits = [("pads", np.array([2, 1, 0, 3], np.int64)), ("axes", np.array([1, 2], np.int64))]
    mangled = island([pad], inits, opset=opset, out_shape=[1, 8, 8, 10])
    fixed = repaired(mangled, select=["SEP007"])
    assert ops(fixed)["Transpose"] == 0
    [node] = [n for n in fixed.graph.node if n.name == "pad"]
    if opset == 10:
        assert helper.get_attribute_value(node.attribute[0]) == [0, 0, 2, 1, 0, 0, 0, 3]
    else:
        axes = next(t for t in fixed.graph.initializer if t.name == node.input[3])
        assert numpy_helper.to_array(axes).tolist() == [2, 3]
    # onnxruntime 1.32's own transpose optimizer breaks the mangled Pad-18 with axes (a Gather
    # out of range): compare the graphs as written
    assert_same(mangled, fixed, atol=0, as_written=opset == 18)


def test_unit_dim_reshapes_convert_layouts_as_tflite_writes_them():
    c = 8
    inits = [("to_nchw_shape", np.array([-1, c, 1, 1], np.int64)), ("to_nhwc_shape", np.array([-1, 1, 1, c], np.int64))]
    se_conv, w_se = conv("se_conv", "v_nchw", "g_nchw", c, c)
    middle = [helper.make_node("HardSigmoid", ["t"], ["h"], name="act"),
              helper.make_node("ReduceMean", ["h"], ["v"], name="pool", axes=[1, 2], keepdims=1),
              helper.make_node("Reshape", ["v", "to_nchw_shape"], ["v_nchw"], name="squeeze"), se_conv,
              helper.make_node("Reshape", ["g_nchw", "to_nhwc_shape"], ["g"], name="unsqueeze"),
              helper.make_node("Mul", ["h", "g"], ["u"], name="gate")]
    mangled = island(middle, [*inits, w_se])
    [finding] = sep007(mangled)
    assert (finding.details["entering"], finding.details["leaving"]) == (2, 2)
    fixed = repaired(mangled)
    assert ops(fixed)["Transpose"] == 0 and ops(fixed)["Reshape"] == 0
    assert_same(mangled, fixed, atol=0)


def test_channels_last_model_input_gets_its_transpose_at_the_input():
    """x (NHWC) -> Mul(scale) -> Transpose -> Conv: the Transpose moves to the model input."""
    first, w = conv("conv", "x_nchw", "y", 3, 4)
    nodes = [helper.make_node("Mul", ["x", "scale"], ["scaled"], name="normalize"),
             transpose("to_nchw", "scaled", "x_nchw", TO_NCHW), first]
    mangled = model(nodes, [("x", [1, 6, 6, 3])], [("y", [1, 4, 6, 6])],
                    [("scale", np.array([0.5, 2.0, -1.0], np.float32)), w])
    [finding] = sep007(mangled)
    assert (finding.details["interior_transposes"], finding.details["moved_to_boundary"]) == (1, 1)
    assert finding.severity == "info" and "(none cancels)" in finding.message  # nothing saved: advice
    fixed = repaired(mangled)
    assert [n.op_type for n in fixed.graph.node] == ["Transpose", "Mul", "Conv"]
    assert fixed.graph.node[0].input[0] == "x"
    assert_same(mangled, fixed, atol=0)


def test_region_reaching_the_model_output_moves_its_transpose_there():
    first, w = conv("conv", "x", "a", 4, 4)
    nodes = [first, transpose("to_nhwc", "a", "t", TO_NHWC), helper.make_node("Relu", ["t"], ["y"], name="relu")]
    mangled = model(nodes, [("x", [1, 4, 5, 5])], [("y", [1, 5, 5, 4])], [w])
    [finding] = sep007(mangled)
    assert finding.details["moved_to_boundary"] == 1 and finding.severity == "info"
    fixed = repaired(mangled)
    assert [n.op_type for n in fixed.graph.node] == ["Conv", "Relu", "Transpose"]
    assert fixed.graph.node[-1].output[0] == "y"
    assert_same(mangled, fixed, atol=0)


def test_fan_out_to_a_node_that_needs_the_layout_keeps_one_transpose():
    """Relu's output feeds the next conv (through the inverse Transpose) and a Reshape that
    flattens NHWC: 2 Transposes inside become 1, in front of the Reshape."""
    first, w1 = conv("conv_a", "x", "a", 4, 4)
    last, w2 = conv("conv_b", "back", "y", 4, 4)
    nodes = [first, transpose("to_nhwc", "a", "t", TO_NHWC), helper.make_node("Relu", ["t"], ["r"], name="relu"),
             transpose("to_nchw", "r", "back", TO_NCHW), last,
             helper.make_node("Reshape", ["r", "flat"], ["z"], name="flatten")]
    mangled = model(nodes, [("x", [1, 4, 3, 3])], [("y", [1, 4, 3, 3]), ("z", [1, 36])],
                    [w1, w2, ("flat", np.array([1, -1], np.int64))])
    [finding] = sep007(mangled)
    assert (finding.details["interior_transposes"], finding.details["left_after_repair"]) == (2, 1)
    assert "1 stays where a node needs NHWC" in finding.message and finding.severity == "warning"
    fixed = repaired(mangled)
    transposes = [n for n in fixed.graph.node if n.op_type == "Transpose"]
    assert len(transposes) == 1 and transposes[0].output[0] == "r"
    assert_same(mangled, fixed, atol=0)


# -- negatives -----------------------------------------------------------------------------------


def test_transpose_the_model_needs_is_silent():
    """Conv -> Transpose(0,2,3,1) -> Reshape (N, H*W, C) -> MatMul: no inverse anywhere."""
    first, w = conv("conv", "x", "a", 4, 4)
    nodes = [first, transpose("to_nhwc", "a", "t", TO_NHWC),
             helper.make_node("Relu", ["t"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "tokens"], ["seq"], name="tokens"),
             helper.make_node("MatMul", ["seq", "dense"], ["y"], name="dense")]
    needed = model(nodes, [("x", [1, 4, 3, 3])], [("y", [1, 9, 5])],
                   [w, ("tokens", np.array([1, 9, 4], np.int64)), ("dense", RNG.standard_normal((4, 5)).astype(np.float32))])
    assert sep007(needed) == [] and sepfix.check(needed) == []


@pytest.mark.parametrize("middle", ["reshape", "matmul"])
def test_pair_around_an_op_that_is_not_layout_agnostic_is_silent(middle):
    if middle == "reshape":
        ops_between = [helper.make_node("Reshape", ["t", "tokens"], ["seq"], name="tokens"),
                       helper.make_node("Relu", ["seq"], ["seq_r"], name="relu"),
                       helper.make_node("Reshape", ["seq_r", "grid"], ["u"], name="grid")]
        inits = [("tokens", np.array([1, 36, 8], np.int64)), ("grid", np.array([1, 6, 6, 8], np.int64))]
        sandwich = island(ops_between, inits)
    else:  # a MatMul with a runtime weight (with a constant one, SEP006 reports a 1x1 conv)
        sandwich = island([helper.make_node("MatMul", ["t", "w"], ["u"], name="matmul")], runtime_inputs=[("w", [8, 8])])
    assert sep007(sandwich) == [] and sepfix.check(sandwich) == []


def test_transposes_at_the_model_boundary_are_silent():
    first, w = conv("conv", "x_nchw", "a", 3, 4)
    nodes = [transpose("in", "x", "x_nchw", TO_NCHW), first, transpose("out", "a", "y", TO_NHWC)]
    boundary = model(nodes, [("x", [1, 6, 6, 3])], [("y", [1, 6, 6, 4])], [w])
    assert sep007(boundary) == [] and sepfix.check(boundary) == []


def test_reduce_without_keepdims_ends_the_region():
    first, w = conv("conv", "x", "a", 4, 4)
    nodes = [first, transpose("to_nhwc", "a", "t", TO_NHWC),
             helper.make_node("ReduceMean", ["t"], ["v"], name="pool", axes=[1, 2], keepdims=0),
             helper.make_node("Relu", ["v"], ["y"], name="relu")]
    flat = model(nodes, [("x", [1, 4, 3, 3])], [("y", [1, 4])], [w])
    assert sep007(flat) == [] and sepfix.check(flat) == []


# -- the mangler ---------------------------------------------------------------------------------


def test_layout_sandwich(clean):
    depthwise, pointwise = support.convs_by_kind(clean)
    mangled = layout_sandwich(clean)
    assert support.ops(mangled)["Transpose"] == support.ops(clean)["Transpose"] + 4 * len(depthwise + pointwise)
    assert support.ops(mangled)["Conv"] == support.ops(clean)["Conv"]
    producers = support.producers(mangled)
    for name in depthwise + pointwise:
        node = support.node(mangled, name)
        to_nchw = producers[node.input[0]]
        to_nhwc = producers[to_nchw.input[0]]
        assert (support.attrs(to_nhwc)["perm"], support.attrs(to_nchw)["perm"]) == ([0, 2, 3, 1], [0, 3, 1, 2])
        (after_nhwc,) = support.consumers(mangled, node.output[0])
        (after_nchw,) = support.consumers(mangled, after_nhwc.output[0])
        assert (support.attrs(after_nhwc)["perm"], support.attrs(after_nchw)["perm"]) == ([0, 2, 3, 1], [0, 3, 1, 2])
        assert after_nchw.output[0] == support.node(clean, name).output[0], "downstream still reads the old name"
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


# -- the rule ------------------------------------------------------------------------------------


def test_convnext_layout_transposes_are_silent():
    """One NHWC Transpose into a LayerNorm and one back after the Linear layers: no inverse pair
    around a conv, nothing to cancel."""
    assert sepfix.check(builders.convnext_linear()) == []


def test_one_finding_per_inverse_pair():
    findings = sepfix.check(layout_sandwich(builders.separable_block()))
    assert {f.code for f in findings} == {"SEP007"} and len(findings) == 4
