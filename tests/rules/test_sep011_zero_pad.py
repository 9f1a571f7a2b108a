"""SEP011 zero-pad: a constant zero Pad on spatial axes read only by convs (directly, or through
one layout Transpose), folded into the convs' pads.

Real exporter output (tests/data/real/tf/, tf2onnx 1.17 from Keras 2 and Keras 3, read node by
node): tf2onnx writes Keras `ZeroPadding2D` and TF's "SAME" padding of stride-2 depthwise convs
as an explicit Pad. Where its transpose optimizer moved the layout Transposes away the Pad is
NCHW and feeds the conv directly (info); where it could not (a Pad on the NHWC graph input,
MobileNetV3 with Keras's initial weights) the Pad is NHWC and a Transpose stands between it
and the conv (warning).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sepfix
from sepfix.names import NameSource
from sepfix.testing import builders
from tests.rules import support
from tests.rules.support import assert_same_on_batch, attrs, blocks, node, ops

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "tf"
CODE = "SEP011"


# -- helpers ----------------------------------------------------------------------------------------


def findings(model, advice: bool = True, code: str = CODE):
    return [f for f in sepfix.check(model, advice=advice) if f.code == code]


def real(name: str) -> onnx.ModelProto:
    path = REAL / name
    assert path.is_file(), f"{path} is missing: the real tf2onnx outputs come from the real-tf branch"
    return onnx.load(path)


def _opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


# -- the mangler ------------------------------------------------------------------------------------


def explicit_pad(model: onnx.ModelProto, layout: str = "nchw") -> onnx.ModelProto:
    """SEP011: every conv's pads moved into an explicit zero Pad in front of it (conv pads 0).

    `layout="nhwc"` writes what tf2onnx leaves when its transpose optimizer gives up:
    Transpose(to NHWC) -> Pad(NHWC pads) -> Transpose(to NCHW) -> Conv. Same function.
    """
    mangled = onnx.ModelProto()
    mangled.CopyFrom(model)
    graph = mangled.graph
    opset = _opset(mangled)
    fresh = NameSource.for_model(mangled)

    nodes = []
    changed = 0
    for n in graph.node:
        a = attrs(n)
        pads = list(a.get("pads", []))
        auto_pad = a.get("auto_pad", b"NOTSET")
        if n.op_type != "Conv" or not any(pads) or auto_pad not in (b"NOTSET", "NOTSET"):
            nodes.append(n)
            continue
        rank = len(pads) // 2
        base = n.name or "conv"
        x = n.input[0]
        if layout == "nhwc":
            to_last = [0] + list(range(2, rank + 2)) + [1]
            to_first = [0, rank + 1] + list(range(1, rank + 1))
            nhwc = fresh(f"{base}_nhwc")
            nodes.append(helper.make_node("Transpose", [x], [nhwc], name=fresh(f"{base}_to_nhwc"), perm=to_last))
            full = [0] + pads[:rank] + [0] + [0] + pads[rank:] + [0]
            x = nhwc
        else:
            full = [0, 0] + pads[:rank] + [0, 0] + pads[rank:]
        padded = fresh(f"{base}_padded")
        if opset >= 11:
            constant = fresh(f"{base}_pads")
            graph.initializer.append(numpy_helper.from_array(np.array(full, dtype=np.int64), constant))
            nodes.append(helper.make_node("Pad", [x, constant], [padded], name=fresh(f"{base}_pad"), mode="constant"))
        else:
            nodes.append(helper.make_node("Pad", [x], [padded], name=fresh(f"{base}_pad"), mode="constant",
                                          pads=full, value=0.0))
        if layout == "nhwc":
            back = fresh(f"{base}_nchw")
            nodes.append(helper.make_node("Transpose", [padded], [back], name=fresh(f"{base}_to_nchw"), perm=to_first))
            padded = back
        n.input[0] = padded
        for attribute in n.attribute:
            if attribute.name == "pads":
                attribute.CopyFrom(helper.make_attribute("pads", [0] * (2 * rank)))
        nodes.append(n)
        changed += 1
    if not changed:
        raise ValueError("no conv with pads to mangle")
    del graph.node[:]
    graph.node.extend(nodes)
    return mangled


MANGLES = {"nchw": explicit_pad}


def _sample_zero_pad() -> onnx.ModelProto:
    """SEP011: every conv's padding written as an explicit zero Pad in front of it; the stem's as
    tf2onnx writes it for an NHWC model input: NHWC Pad -> layout Transpose -> conv (warning),
    the others read directly by their conv (info)."""
    model = explicit_pad(builders.mobilenet_like(channels=(8, 16), spatial=16))
    stem = next(n for n in model.graph.node if n.op_type == "Pad")
    mangled = explicit_pad_to_nhwc(model, stem.name)
    graph = mangled.graph
    to_nhwc = next(n for n in graph.node if n.name == f"{stem.name}_to_nhwc")
    pad = next(n for n in graph.node if n.name == stem.name)
    source = graph.input[0]
    assert to_nhwc.input[0] == source.name
    dims = source.type.tensor_type.shape.dim
    n, c, h, w = (d.dim_value for d in dims)
    for dim, value in zip(dims, (n, h, w, c)):
        dim.dim_value = value
    pad.input[0] = source.name  # the model input is channels-last, as a Keras model's is
    graph.node.remove(to_nhwc)
    return mangled


def explicit_pad_to_nhwc(model: onnx.ModelProto, pad_name: str) -> onnx.ModelProto:
    """The named NCHW Pad rewritten as Transpose(to NHWC) -> Pad(NHWC) -> Transpose(to NCHW)."""
    mangled = onnx.ModelProto()
    mangled.CopyFrom(model)
    graph = mangled.graph
    index = next(i for i, n in enumerate(graph.node) if n.name == pad_name)
    pad = graph.node[index]
    pads_name = pad.input[1]
    tensor = next(t for t in graph.initializer if t.name == pads_name)
    pads = numpy_helper.to_array(tensor)
    tensor.CopyFrom(numpy_helper.from_array(pads[[0, 2, 3, 1, 4, 6, 7, 5]].astype(np.int64), pads_name))
    source, output = pad.input[0], pad.output[0]
    pad.input[0] = f"{pad_name}_nhwc_in"
    pad.output[0] = f"{pad_name}_nhwc_out"
    before = helper.make_node("Transpose", [source], [pad.input[0]], name=f"{pad_name}_to_nhwc", perm=[0, 2, 3, 1])
    after = helper.make_node("Transpose", [pad.output[0]], [output], name=f"{pad_name}_to_nchw", perm=[0, 3, 1, 2])
    graph.node.insert(index + 1, after)
    graph.node.insert(index, before)
    return mangled


SAMPLES = {"sep011_zero_pad": _sample_zero_pad}


def test_explicit_pad_keeps_the_function():
    clean = builders.mobilenet_like()
    for layout in ("nchw", "nhwc"):
        mangled = explicit_pad(clean, layout)
        onnx.checker.check_model(mangled, full_check=True)
        padded = [n for n in clean.graph.node if n.op_type == "Conv" and any(attrs(n).get("pads", []))]
        assert ops(mangled)["Pad"] == len(padded)
        assert all(not any(attrs(n)["pads"]) for n in mangled.graph.node if n.op_type == "Conv")
        assert_same_on_batch(clean, mangled)


def test_explicit_pad_needs_a_padded_conv():
    with pytest.raises(ValueError, match="no conv with pads"):
        explicit_pad(builders.separable_block(k=1))


# -- the rule on hand-built models ------------------------------------------------------------------


def test_direct_pad_is_advice_and_folds_back():
    clean = builders.mobilenet_like()
    mangled = explicit_pad(clean)
    found = findings(mangled)
    assert len(found) == ops(mangled)["Pad"] and {f.severity for f in found} == {"info"}
    assert all(f.fixable for f in found)
    assert findings(mangled, advice=False) == [], "info: never fails a check"
    fixed, report = support.repaired(mangled)
    assert {f.code for f in report.fixes} == {CODE}
    assert ops(fixed) == ops(clean)
    for n in clean.graph.node:
        if n.op_type == "Conv":
            assert attrs(node(fixed, n.name))["pads"] == attrs(n)["pads"]
    assert_same_on_batch(clean, fixed, atol=0)
    assert blocks(fixed) == blocks(clean)
    assert findings(fixed) == []


def test_nhwc_pad_behind_a_transpose_is_a_warning():
    clean = builders.mobilenet_like()
    mangled = explicit_pad(clean, "nhwc")
    found = findings(mangled)
    assert found and {f.severity for f in found} == {"warning"}
    assert {f.details["through_transpose"] for f in found} == {True}
    fixed, report = support.repaired(mangled)
    # the Pad folds; the Transpose pair left around each conv cancels (SEP007): the clean graph is back
    assert {f.code for f in report.fixes} == {CODE, "SEP007"}
    assert ops(fixed) == ops(clean)
    assert_same_on_batch(clean, fixed, atol=0)
    assert blocks(fixed) == blocks(clean)


def test_sample_reports_both_levels():
    sample = _sample_zero_pad()
    levels = Counter(f.severity for f in findings(sample))
    assert levels == {"warning": 1, "info": 2}  # the stem and two depthwise convs
    assert [f.code for f in sepfix.check(sample, advice=True) if f.code != CODE] == ["SEP007"]  # info: the
    # input's layout Transpose moves to the boundary, it cancels nothing
    assert {f.code for f in sepfix.check(sample)} == {CODE}


def _pad_conv_model(pads=(0, 0, 1, 1, 0, 0, 1, 1), value=None, mode="constant", opset=13, conv_pads=None,
                    auto_pad=None, extra_user=None, pads_as_input=False, axes=None, consumers=1,
                    conv_op="Conv") -> onnx.ModelProto:
    """input (N, 4, 9, 9) -> Pad -> Conv 3x3 stride 2 (depthwise) [-> more convs / other users]."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w")]
    inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 4, 9, 9])]
    pad_attrs = {"mode": mode}
    if opset >= 11:
        pad_inputs = ["input", "pads"]
        if pads_as_input:
            inputs.append(helper.make_tensor_value_info("pads", TensorProto.INT64, [len(pads)]))
        else:
            inits.append(numpy_helper.from_array(np.array(pads, dtype=np.int64), "pads"))
        if value is not None:
            inits.append(numpy_helper.from_array(np.array(value, dtype=np.float32), "value"))
            pad_inputs.append("value")
        if axes is not None:
            if value is None:
                pad_inputs.append("")
            inits.append(numpy_helper.from_array(np.array(axes, dtype=np.int64), "axes"))
            pad_inputs.append("axes")
    else:
        pad_inputs = ["input"]
        pad_attrs["pads"] = list(pads)
        if value is not None:
            pad_attrs["value"] = float(value)
    nodes = [helper.make_node("Pad", pad_inputs, ["padded"], name="pad", **pad_attrs)]
    conv_attrs = {"group": 4, "kernel_shape": [3, 3], "strides": [2, 2]}
    if conv_pads is not None:
        conv_attrs["pads"] = conv_pads
    if auto_pad is not None:
        conv_attrs["auto_pad"] = auto_pad
    outputs = []
    for i in range(consumers):
        nodes.append(helper.make_node(conv_op, ["padded", "w"], [f"y{i}"], name=f"conv{i}", **conv_attrs))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None))
    if extra_user is not None:
        nodes.append(helper.make_node(extra_user, ["padded"], ["other"], name="other",
                                      **({"kernel_shape": [2, 2]} if extra_user == "MaxPool" else {})))
        outputs.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "pad_conv", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize("opset", [10, 13, 18])
def test_every_pad_spelling(opset):
    """Pad-2 (pads and value as attributes), Pad-11/13 (inputs), Pad-18 (with axes)."""
    model = _pad_conv_model(opset=opset, value=0.0, axes=[2, 3] if opset >= 18 else None,
                            pads=(1, 1, 1, 1) if opset >= 18 else (0, 0, 1, 1, 0, 0, 1, 1))
    (finding,) = findings(model)
    assert finding.details["pads_begin"] == [1, 1] and finding.details["pads_end"] == [1, 1]
    fixed, _ = support.repaired(model)
    assert ops(fixed) == {"Conv": 1}
    assert attrs(node(fixed, "conv0"))["pads"] == [1, 1, 1, 1]
    assert_same_on_batch(model, fixed, batch=2, atol=0)


def test_pads_add_to_the_convs_own_and_stay_asymmetric():
    model = _pad_conv_model(pads=(0, 0, 0, 1, 0, 0, 2, 0), conv_pads=[1, 1, 1, 1])
    fixed, _ = support.repaired(model)
    assert attrs(node(fixed, "conv0"))["pads"] == [1, 2, 3, 1]
    assert_same_on_batch(model, fixed, batch=3, atol=0)


def test_valid_auto_pad_becomes_explicit_pads():
    model = _pad_conv_model(auto_pad="VALID")
    fixed, _ = support.repaired(model)
    conv = attrs(node(fixed, "conv0"))
    assert conv["pads"] == [1, 1, 1, 1] and conv["auto_pad"] in (b"NOTSET", "NOTSET")
    assert_same_on_batch(model, fixed, atol=0)


def test_a_pad_read_by_two_convs_folds_into_both():
    model = _pad_conv_model(consumers=2)
    (finding,) = findings(model)
    assert finding.details["convs"] == ["conv0", "conv1"]
    fixed, _ = support.repaired(model)
    assert ops(fixed) == {"Conv": 2}
    assert_same_on_batch(model, fixed, atol=0)


@pytest.mark.parametrize("case, kwargs", [
    ("non-zero value", {"value": 1.0}),
    ("negative zero", {"value": -0.0}),
    ("reflect mode", {"mode": "reflect"}),
    ("edge mode", {"mode": "edge"}),
    ("channel axis", {"pads": (0, 1, 1, 1, 0, 0, 1, 1)}),
    ("batch axis", {"pads": (1, 0, 1, 1, 0, 0, 1, 1)}),
    ("negative pads crop", {"pads": (0, 0, -1, 1, 0, 0, 1, 1)}),
    ("pads given at run time", {"pads_as_input": True}),
    ("pad also read by a MaxPool", {"extra_user": "MaxPool"}),
    ("pad also read by a Relu", {"extra_user": "Relu"}),
    ("conv pads itself by auto_pad SAME", {"auto_pad": "SAME_UPPER"}),
    ("ConvTranspose", {"conv_op": "ConvTranspose"}),
])
def test_negative(case, kwargs):
    model = _pad_conv_model(**kwargs)
    assert findings(model) == [], case


def test_negative_pad_output_is_a_graph_output():
    model = _pad_conv_model()
    model.graph.output.append(helper.make_tensor_value_info("padded", TensorProto.FLOAT, None))
    assert findings(model) == []


def test_negative_transpose_also_feeds_a_non_conv():
    model = explicit_pad(builders.separable_block(), "nhwc")
    transpose = next(n for n in model.graph.node if n.op_type == "Transpose" and attrs(n)["perm"] == [0, 3, 1, 2])
    model.graph.node.append(helper.make_node("Relu", [transpose.output[0]], ["seen"], name="seen"))
    model.graph.output.append(helper.make_tensor_value_info("seen", TensorProto.FLOAT, None))
    assert findings(model) == []


# -- real exporter output ---------------------------------------------------------------------------


def test_k2_pad_dw_s2():
    """tf-keras 2 -> tf2onnx: b0's ZeroPadding2D((1,1),(1,1)) is an NHWC Pad on the graph input,
    read through the NHWC->NCHW Transpose by the stride-2 depthwise conv (warning); b1's
    ZeroPadding2D((0,1),(0,1)) was moved to NCHW by tf2onnx and feeds its conv directly (info)."""
    model = real("k2_pad_dw_s2.onnx")
    found = findings(model)
    assert [(f.node, f.severity, f.details["pads_begin"], f.details["pads_end"]) for f in found] == [
        ("pad_dw_s2/b0_pad/Pad", "warning", [1, 1], [1, 1]),
        ("pad_dw_s2/b1_pad/Pad", "info", [0, 0], [1, 1]),
    ]
    assert [f.code for f in sepfix.check(model)] == [CODE], "only the warning fails a check"
    before = blocks(model)
    assert before == [("pad_dw_s2/b0_dw/depthwise", "pad_dw_s2/b0_pw/Conv2D"),
                      ("pad_dw_s2/b1_dw/depthwise", "pad_dw_s2/b1_pw/Conv2D")]
    fixed, report = support.repaired(model, select=[CODE])
    assert [f.code for f in report.fixes] == [CODE, CODE]
    assert len(model.graph.node) == 10 and len(fixed.graph.node) == 8 and ops(fixed)["Pad"] == 0
    assert attrs(node(fixed, "pad_dw_s2/b0_dw/depthwise"))["pads"] == [1, 1, 1, 1]
    assert attrs(node(fixed, "pad_dw_s2/b1_dw/depthwise"))["pads"] == [0, 0, 1, 1]
    layout = node(fixed, "pad_dw_s2/b0_dw/depthwise__7")
    assert layout.op_type == "Transpose" and list(layout.input) == ["input"], "the Transpose reads the graph input"
    assert blocks(fixed) == before
    assert assert_same_on_batch(model, fixed, batch=3, atol=0) == 0.0  # dynamic batch
    assert sepfix.check(fixed, advice=True) == []


def test_k3_pad_dw_s2():
    """Keras 3 SavedModel -> tf2onnx: the same two Pads (b0 NHWC behind a Transpose, b1 NCHW).
    BatchNorm stays a Mul/Add after each depthwise conv here (unfolded BN, not this rule's)."""
    model = real("k3_pad_dw_s2.onnx")
    found = findings(model)
    prefix = "StatefulPartitionedCall/pad_dw_s2_1/"
    assert [(f.node, f.severity, f.details["pads_begin"], f.details["pads_end"]) for f in found] == [
        (prefix + "b0_pad_1/Pad", "warning", [1, 1], [1, 1]),
        (prefix + "b1_pad_1/Pad", "info", [0, 0], [1, 1]),
    ]
    fixed, _ = support.repaired(model, select=[CODE])
    assert len(model.graph.node) == 14 and len(fixed.graph.node) == 12 and ops(fixed)["Pad"] == 0
    assert attrs(node(fixed, prefix + "b0_dw_1/depthwise"))["pads"] == [1, 1, 1, 1]
    assert attrs(node(fixed, prefix + "b1_dw_1/depthwise"))["pads"] == [0, 0, 1, 1]
    assert assert_same_on_batch(model, fixed, batch=2, atol=0) == 0.0
    assert findings(fixed) == []


# file, tf2onnx's Pads (pads begin, end), through a Transpose, blocks check sees before/after a
# full repair (the other rules included: SEP007 cancels kinit's layout pairs)
REAL_PADS = {
    "k2_mobilenetv3small.onnx": ([([0, 0], [1, 1])] * 2 + [([1, 1], [2, 2])] * 2, False, 11, 11),
    "k2_mobilenetv3small_kinit.onnx": ([([0, 0], [1, 1])] * 2 + [([1, 1], [2, 2])] * 2, True, 0, 11),
    "k3_mobilenetv3small.onnx": ([([0, 0], [1, 1])] * 2 + [([1, 1], [2, 2])] * 2, False, 11, 11),
    "k3_mobilenetv2.onnx": ([([0, 0], [1, 1])] * 4, False, 14, 14),
    "k3_efficientnet.onnx": ([([0, 0], [1, 1]), ([1, 1], [2, 2])] * 2, False, 7, 7),
}


@pytest.mark.parametrize("name", sorted(REAL_PADS))
def test_real_mobilenets(name):
    """The stride-2 depthwise convs' SAME padding of Keras MobileNetV2/V3 and EfficientNet as tf2onnx
    writes it. Keras 3 models keep BN as Mul/Add after the depthwise conv; blocks are seen through
    it (folding it is the detached-affine rule's business)."""
    model = real(name)
    pads, through_transpose, blocks_before, blocks_after = REAL_PADS[name]
    found = findings(model)
    assert [(f.details["pads_begin"], f.details["pads_end"]) for f in found] == pads
    assert {f.details["through_transpose"] for f in found} == {through_transpose}
    assert {f.severity for f in found} == {"warning" if through_transpose else "info"}
    assert len(blocks(model)) == blocks_before
    fixed, report = support.repaired(model, select=["SEP007", CODE])  # (their unfolded BN is SEP008's)
    assert Counter(f.code for f in report.fixes)[CODE] == len(pads)
    assert ops(fixed)["Pad"] == 0 and len(fixed.graph.node) < len(model.graph.node)
    assert len(blocks(fixed)) == blocks_after
    assert_same_on_batch(model, fixed, atol=0)
    assert findings(fixed) == []


def test_tflite_models_have_no_pad():
    """TFLite folds the SAME padding into its convs: nothing for this rule in tf2onnx's output."""
    assert findings(real("tflite_mobilenetv3small_op15.onnx")) == []
    assert findings(real("k3_dilated_dw.onnx")) == []
