"""SEP012 space-to-batch-dilation: a dilated conv lowered to Pad -> Transpose -> SpaceToDepth ->
Transpose -> Conv(dilation 1) -> Transpose -> DepthToSpace -> Slice -> Transpose, folded back into
one Conv with `dilations`.

Real exporter output: TFLite keeps TF's SpaceToBatchND -> conv -> BatchToSpaceND for a dilated
depthwise conv (Keras `DepthwiseConv2D(dilation_rate=r)`) and for `tf.nn.atrous_conv2d`, and
tf2onnx writes each square-rate pair as the SpaceToDepth/DepthToSpace chain above
(tests/data/real/tf/tflite_dilated_dw.onnx; tests/data/real/tf-dilation/, see its README).
The same Keras model through a SavedModel (tests/data/real/tf/k3_dilated_dw.onnx) is already one
dilated Conv: tf2onnx's own rewriter fuses the pair there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sepfix
from sepfix.names import NameSource
from sepfix.testing import builders
from tests.rules import support
from tests.rules.support import assert_same_on_batch, attrs, blocks, consumers, node, ops

DATA = Path(__file__).resolve().parents[1] / "data" / "real"
CODE = "SEP012"
INT32_MAX = 2**31 - 1


# -- helpers ----------------------------------------------------------------------------------------


def producer(model: onnx.ModelProto, tensor: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if tensor in n.output), None)


def findings(model, advice: bool = True):
    return [f for f in sepfix.check(model, advice=advice) if f.code == CODE]


def real(relative: str) -> onnx.ModelProto:
    path = DATA / relative
    assert path.is_file(), f"{path} is missing"
    return onnx.load(path)


def the_conv(model: onnx.ModelProto, group: int | None = None) -> onnx.NodeProto:
    """The one conv with a kernel larger than 1x1 (or the one with this group)."""
    weights = {t.name: t.dims for t in model.graph.initializer}
    (conv,) = [n for n in model.graph.node if n.op_type == "Conv"
               and list(weights.get(n.input[1], [0, 0, 3, 3]))[2:] != [1, 1]
               and (group is None or attrs(n).get("group", 1) == group)]
    return conv


# -- the mangler ------------------------------------------------------------------------------------


def _spatial_dims(model: onnx.ModelProto) -> dict[str, list]:
    inferred = onnx.shape_inference.infer_shapes(model)
    dims = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shape = value.type.tensor_type.shape
        dims[value.name] = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    return dims


def space_to_batch(model: onnx.ModelProto, layout: str = "nhwc") -> onnx.ModelProto:
    """SEP012: every stride-1 2-D conv with a square dilation d > 1 run as TFLite -> tf2onnx
    writes it: Pad -> Transpose -> SpaceToDepth(d) -> Transpose -> Conv(dilation 1, no pads) ->
    Transpose -> DepthToSpace(d) -> Slice -> Transpose. The Pad rounds the padded size up to a
    multiple of d and the Slice crops what that added, as SpaceToBatchND/BatchToSpaceND do.

    `layout="nhwc"` starts from an NHWC view (Transpose([0,2,3,1]) -> NHWC Pad ->
    Transpose([3,0,1,2])) as TFLite graphs are; `"nchw"` pads NCHW and transposes with
    [1,0,2,3]. Needs static H and W (TFLite has them). Same function.
    """
    mangled = onnx.ModelProto()
    mangled.CopyFrom(model)
    graph = mangled.graph
    dims = _spatial_dims(model)
    fresh = NameSource.for_model(mangled)

    def constant(base: str, values) -> str:
        name = fresh(base)
        graph.initializer.append(numpy_helper.from_array(np.array(values, dtype=np.int64), name))
        return name

    nodes = []
    changed = 0
    for n in graph.node:
        if n.op_type != "Conv":
            nodes.append(n)
            continue
        a = attrs(n)
        dilations = list(a.get("dilations", [1, 1]))
        shape = dims.get(n.input[0])
        if (len(dilations) != 2 or dilations[0] != dilations[1] or dilations[0] < 2
                or any(s != 1 for s in a.get("strides", [1, 1]))
                or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
                or shape is None or len(shape) != 4 or shape[2] is None or shape[3] is None):
            nodes.append(n)
            continue
        d = dilations[0]
        pads = list(a.get("pads", [0, 0, 0, 0]))
        extra = [(-(shape[2 + i] + pads[i] + pads[2 + i])) % d for i in range(2)]
        base = n.name or "conv"
        x = n.input[0]
        if layout == "nhwc":
            nhwc = fresh(f"{base}_nhwc")
            nodes.append(helper.make_node("Transpose", [x], [nhwc], name=fresh(f"{base}_to_nhwc"), perm=[0, 2, 3, 1]))
            full = [0, pads[0], pads[1], 0, 0, pads[2] + extra[0], pads[3] + extra[1], 0]
            to_cnhw = [3, 0, 1, 2]
            x = nhwc
        else:
            full = [0, 0, pads[0], pads[1], 0, 0, pads[2] + extra[0], pads[3] + extra[1]]
            to_cnhw = [1, 0, 2, 3]
        steps = [("Pad", [constant(f"{base}_s2b_pads", full)], {"mode": "constant"}),
                 ("Transpose", [], {"perm": to_cnhw}),
                 ("SpaceToDepth", [], {"blocksize": d}),
                 ("Transpose", [], {"perm": [1, 0, 2, 3]})]
        for op, extra_inputs, attributes in steps:
            out = fresh(f"{base}_{op.lower()}")
            nodes.append(helper.make_node(op, [x] + extra_inputs, [out], name=fresh(f"{base}_{op.lower()}"),
                                          **attributes))
            x = out
        output = n.output[0]
        n.input[0] = x
        n.output[0] = fresh(f"{base}_batched")
        for attribute in n.attribute:
            if attribute.name == "dilations":
                attribute.CopyFrom(helper.make_attribute("dilations", [1, 1]))
            if attribute.name == "pads":
                attribute.CopyFrom(helper.make_attribute("pads", [0, 0, 0, 0]))
        nodes.append(n)
        x = n.output[0]
        ends = [-e if e else INT32_MAX for e in extra]
        steps = [("Transpose", [], {"perm": [1, 0, 2, 3]}),
                 ("DepthToSpace", [], {"blocksize": d}),
                 ("Slice", [constant(f"{base}_crop_starts", [0, 0]), constant(f"{base}_crop_ends", ends),
                            constant(f"{base}_crop_axes", [2, 3])], {}),
                 ("Transpose", [], {"perm": [1, 0, 2, 3]})]
        for i, (op, extra_inputs, attributes) in enumerate(steps):
            out = output if i == len(steps) - 1 else fresh(f"{base}_{op.lower()}")
            nodes.append(helper.make_node(op, [x] + extra_inputs, [out], name=fresh(f"{base}_b2s_{op.lower()}"),
                                          **attributes))
            x = out
        changed += 1
    if not changed:
        raise ValueError("no stride-1 conv with a square dilation > 1 and static H, W to mangle")
    del graph.node[:]
    graph.node.extend(nodes)
    return mangled


def space_to_batch_nchw(model: onnx.ModelProto) -> onnx.ModelProto:
    """SEP012: as `space_to_batch`, padding NCHW and transposing with [1,0,2,3]."""
    return space_to_batch(model, "nchw")


# Only the torch-dynamo source has a stride-1 dilated depthwise conv (tests/conftest.py).
space_to_batch.sources = space_to_batch_nchw.sources = ("torch-dynamo",)
MANGLES = {"nhwc": space_to_batch, "nchw": space_to_batch_nchw}


def _sample_space_to_batch() -> onnx.ModelProto:
    """SEP012: a dilation-2 depthwise conv run on SpaceToDepth sub-images and put back by
    DepthToSpace, as TFLite -> tf2onnx writes it."""
    return space_to_batch(builders.separable_block(dilation=2, spatial=12))


SAMPLES = {"sep012_space_to_batch": _sample_space_to_batch}


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("spatial, dilation", [(12, 2), (13, 2), (15, 4)])
def test_space_to_batch_keeps_the_function(layout, spatial, dilation):
    clean = builders.separable_block(dilation=dilation, spatial=spatial)
    mangled = space_to_batch(clean, layout)
    onnx.checker.check_model(mangled, full_check=True)
    assert ops(mangled)["SpaceToDepth"] == ops(mangled)["DepthToSpace"] == 1
    assert attrs(the_conv(mangled))["dilations"] == [1, 1]
    assert_same_on_batch(clean, mangled)


def test_space_to_batch_needs_a_dilated_conv():
    with pytest.raises(ValueError, match="no stride-1 conv with a square dilation"):
        space_to_batch(builders.separable_block())


# -- the rule on hand-built models ------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("spatial, dilation", [(12, 2), (13, 2), (15, 4)])
def test_folds_back_to_the_dilated_conv(layout, spatial, dilation):
    """Odd sizes make the Pad round up and the Slice crop; the NHWC view's Transposes cancel."""
    clean = builders.separable_block(dilation=dilation, spatial=spatial)
    mangled = space_to_batch(clean, layout)
    (finding,) = findings(mangled)
    assert finding.severity == "warning" and finding.fixable
    assert finding.node == "dw_conv"
    assert finding.details["block_size"] == dilation and finding.details["dilations"] == [dilation] * 2
    assert finding.details["pads"] == attrs(the_conv(clean))["pads"]
    fixed, report = support.repaired(mangled)
    assert [f.code for f in report.fixes] == [CODE]
    assert ops(fixed) == ops(clean)
    conv = attrs(node(fixed, "dw_conv"))
    assert conv["dilations"] == [dilation] * 2 and conv["pads"] == attrs(the_conv(clean))["pads"]
    assert blocks(fixed) == blocks(clean) == [("dw_conv", "pw_conv")]
    assert_same_on_batch(clean, fixed)
    assert sepfix.check(fixed, advice=True) == []


def _dilated_model(group: int, channels: int = 8, spatial: int = 12, dilation: int = 2, batch="n") -> onnx.ModelProto:
    """input (batch, C, H, W) -> Conv 3x3 (this group, dilation, same pads) -> Relu: a dense or grouped case."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((channels, channels // group, 3, 3)).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    conv = helper.make_node("Conv", ["input", "w", "b"], ["y"], name="conv", group=group, kernel_shape=[3, 3],
                            dilations=[dilation] * 2, pads=[dilation] * 4, strides=[1, 1])
    relu = helper.make_node("Relu", ["y"], ["output"], name="relu")
    graph = helper.make_graph(
        [conv, relu], "dilated",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, channels, spatial, spatial])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [batch, channels, spatial, spatial])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize("group, kind", [(1, "dense"), (2, "grouped"), (8, "depthwise")])
def test_dense_and_grouped_convs_with_a_dynamic_batch(group, kind):
    clean = _dilated_model(group)
    mangled = space_to_batch(clean)
    (finding,) = findings(mangled)
    assert finding.details["conv_kind"] == kind
    fixed, _ = support.repaired(mangled)
    assert ops(fixed) == ops(clean)
    assert attrs(node(fixed, "conv"))["dilations"] == [2, 2]
    for batch in (1, 3):
        assert_same_on_batch(clean, fixed, batch=batch)


def test_torch_export_with_a_dynamic_batch():
    """A dilation-2 separable block exported by torch.onnx with a symbolic batch, mangled the
    TFLite way and repaired: the clean export's graph and numbers, at batch 1 and 3."""
    import io
    import warnings

    torch = pytest.importorskip("torch")
    from tests.torch_models import SeparableBlock

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(SeparableBlock(dilation=2).eval(), (torch.randn(1, 8, 16, 16),), buffer, dynamo=False,
                          opset_version=13, input_names=["x"], dynamic_axes={"x": {0: "n"}})
    clean = onnx.load_from_string(buffer.getvalue())
    assert clean.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    mangled = space_to_batch(clean)
    assert len(findings(mangled)) == 1
    fixed, _ = support.repaired(mangled)
    assert ops(fixed) == ops(clean)
    assert blocks(fixed) == blocks(clean) != []
    for batch in (1, 3):
        assert_same_on_batch(clean, fixed, batch=batch)


def test_a_non_zero_pad_stays_in_front_of_the_dilated_conv():
    """A Pad of ones is not padding a conv can do: it stays, the chain after it still folds."""
    mangled = space_to_batch(_dilated_model(8), "nchw")
    pad = next(n for n in mangled.graph.node if n.op_type == "Pad")
    mangled.graph.initializer.append(numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"))
    pad.input.append("one")
    (finding,) = findings(mangled)
    assert finding.details["pads"] == [0, 0, 0, 0]
    fixed, _ = support.repaired(mangled)
    assert ops(fixed) == {"Pad": 1, "Conv": 1, "Relu": 1}
    assert_same_on_batch(mangled, fixed)


def _edit(model: onnx.ModelProto, op: str, **changes) -> onnx.ModelProto:
    """The model with the first `op` node's attributes changed."""
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    target = next(n for n in edited.graph.node if n.op_type == op)
    for name, value in changes.items():
        kept = [a for a in target.attribute if a.name != name]
        del target.attribute[:]
        target.attribute.extend(kept + [helper.make_attribute(name, value)])
    return edited


def _set_constant(model: onnx.ModelProto, name_part: str, values) -> onnx.ModelProto:
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    tensor = next(t for t in edited.graph.initializer if name_part in t.name)
    tensor.CopyFrom(numpy_helper.from_array(np.array(values, dtype=np.int64), tensor.name))
    return edited


def _pixel_shuffle() -> onnx.ModelProto:
    """SpaceToDepth(2) -> Conv 3x3 on the 16 stacked channels -> DepthToSpace(2): a real pixel
    shuffle (the conv mixes the sub-images' channels), not space-to-batch."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("SpaceToDepth", ["input"], ["s"], name="s2d", blocksize=2),
             helper.make_node("Conv", ["s", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("DepthToSpace", ["c"], ["output"], name="d2s", blocksize=2)]
    graph = helper.make_graph(nodes, "pixel_shuffle",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _negatives():
    base = space_to_batch(_dilated_model(8, batch=4), "nchw")
    crop = space_to_batch(_dilated_model(8, spatial=13, batch=4), "nchw")
    return {
        "pixel shuffle": _pixel_shuffle(),
        "block sizes differ": _edit(base, "DepthToSpace", blocksize=4),
        "DepthToSpace in CRD mode": _edit(base, "DepthToSpace", mode="CRD"),
        "inner conv with strides": _edit(base, "Conv", strides=[2, 2]),
        "crop larger than the pad": _set_constant(crop, "crop_starts", [3, 0]),
        "crop with a step": _steps(crop),
        "crop of the channel axis": _set_constant(crop, "crop_axes", [1, 3]),
        "no batch swap": _swap_perms(base, [0, 1, 2, 3]),
        "sub-images read twice": _fan_out(base),
    }


def _steps(model: onnx.ModelProto) -> onnx.ModelProto:
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    sl = next(n for n in edited.graph.node if n.op_type == "Slice")
    edited.graph.initializer.append(numpy_helper.from_array(np.array([2, 1], dtype=np.int64), "steps"))
    sl.input.append("steps")
    return edited


def _swap_perms(model: onnx.ModelProto, perm: list[int]) -> onnx.ModelProto:
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    conv = next(n for n in edited.graph.node if n.op_type == "Conv")
    for n in edited.graph.node:
        if n.op_type == "Transpose" and (conv.input[0] in n.output or n.input[0] in conv.output):
            del n.attribute[:]
            n.attribute.append(helper.make_attribute("perm", perm))
    return edited


def _fan_out(model: onnx.ModelProto) -> onnx.ModelProto:
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    s2d = next(n for n in edited.graph.node if n.op_type == "SpaceToDepth")
    edited.graph.node.append(helper.make_node("Relu", [s2d.output[0]], ["peek"], name="peek"))
    edited.graph.output.append(helper.make_tensor_value_info("peek", TensorProto.FLOAT, None))
    return edited


def test_negatives_start_from_a_match():
    """Each negative is one edit away from a chain the rule folds."""
    for spatial in (12, 13):
        mangled = space_to_batch(_dilated_model(8, spatial=spatial, batch=4), "nchw")
        assert len(findings(mangled)) == 1


@pytest.mark.parametrize("case", sorted(_negatives()))
def test_negative(case):
    model = _negatives()[case]
    assert findings(model) == [], case


def test_negative_dilated_conv_already_canonical():
    assert findings(builders.separable_block(dilation=2)) == []


# -- real exporter output ---------------------------------------------------------------------------


def test_tflite_dilated_dw():
    """Keras 3 DepthwiseConv2D(3, dilation_rate=2, same) + BN + ReLU6 + 1x1 conv, 32x32x16, dynamic
    batch, through TFLite -> tf2onnx: Pad([0,2,2,0]x2, NHWC) -> Transpose([3,0,1,2]) ->
    SpaceToDepth(2) -> Transpose([1,0,2,3]) -> depthwise Conv(dilation 1) -> Transpose([1,0,2,3])
    -> DepthToSpace(2) -> Slice(no crop) -> Transpose([1,0,2,3]) -> BN as Mul/Add -> Clip -> 1x1."""
    model = real("tf/tflite_dilated_dw.onnx")
    (finding,) = findings(model)
    assert finding.node == "dilated_dw_1/dw_1/depthwise2" and finding.severity == "warning"
    assert finding.nodes == ["dilated_dw_1/dw_1/depthwise2", "Pad__13", "Transpose__10", "SpaceToDepth__15",
                             "dilated_dw_1/dw_1/depthwise2__19", "Transpose__28", "DepthToSpace__30", "Slice__35",
                             "Transpose__37"]
    assert {k: finding.details[k] for k in ("block_size", "dilations", "pads", "input_perm", "output_perm",
                                            "conv_kind")} == {
        "block_size": 2, "dilations": [2, 2], "pads": [2, 2, 2, 2], "input_perm": [0, 3, 1, 2],
        "output_perm": [0, 1, 2, 3], "conv_kind": "depthwise"}
    fixed, report = support.repaired(model, select=[CODE])  # (its BN left as Mul/Add is SEP008's)
    assert [f.code for f in report.fixes] == [CODE]
    assert len(model.graph.node) == 14 and len(fixed.graph.node) == 7
    assert ops(fixed) == {"Transpose": 2, "Conv": 2, "Mul": 1, "Add": 1, "Clip": 1}
    conv = node(fixed, "dilated_dw_1/dw_1/depthwise2")
    assert {k: attrs(conv)[k] for k in ("group", "dilations", "pads", "strides")} == {
        "group": 16, "dilations": [2, 2], "pads": [2, 2, 2, 2], "strides": [1, 1]}
    layout = producer(fixed, conv.input[0])
    assert layout.op_type == "Transpose" and attrs(layout)["perm"] == [0, 3, 1, 2]
    assert list(layout.input) == ["serving_default_input:0"], "one layout Transpose, at the graph input"
    assert [n.op_type for n in consumers(fixed, conv.output[0])] == ["Mul"], "BN's Mul/Add follow (SEP008's)"
    for batch in (1, 3):  # the batch is dynamic
        assert_same_on_batch(model, fixed, batch=batch)
    # the SavedModel export of the same Keras model is the dilated conv tf2onnx fused itself
    direct = real("tf/k3_dilated_dw.onnx")
    (k3_conv,) = [n for n in direct.graph.node if n.op_type == "Conv" and attrs(n)["group"] == 16]
    assert {k: attrs(k3_conv)[k] for k in ("dilations", "pads")} == {"dilations": [2, 2], "pads": [2, 2, 2, 2]}
    assert assert_same_on_batch(direct, fixed, batch=2) == 0.0
    assert findings(direct) == []
    # left: the BN as Mul/Add after the dilated conv, which ONNX Runtime folds (SEP008, info)
    assert [f.code for f in sepfix.check(fixed, advice=True)] == ["SEP008"]


def test_tflite_atrous_dense():
    """tf.nn.atrous_conv2d(rate 2) with a dense 3x3 filter through TFLite: the same chain around a
    dense conv."""
    model = real("tf-dilation/tflite_atrous_dense.onnx")
    (finding,) = findings(model)
    assert finding.details["conv_kind"] == "dense" and finding.details["pads"] == [2, 2, 2, 2]
    fixed, _ = support.repaired(model)
    assert len(model.graph.node) == 11 and len(fixed.graph.node) == 4
    assert ops(fixed) == {"Transpose": 2, "Conv": 2}
    conv = the_conv(fixed, group=1)
    assert attrs(conv)["dilations"] == [2, 2] and attrs(conv)["pads"] == [2, 2, 2, 2]
    for batch in (1, 2):
        assert_same_on_batch(model, fixed, batch=batch)


def test_tflite_dw4_crop():
    """dilation_rate=4 on 30x30: SpaceToBatchND pads [4,4] before and [6,6] after (to 40), and
    BatchToSpaceND crops 2 at the end: the conv's pads are [4,4,4,4]. After the repair the
    depthwise conv feeds the 1x1 conv: a depthwise-separable block appears."""
    model = real("tf-dilation/tflite_dw4_crop.onnx")
    (finding,) = findings(model)
    assert {k: finding.details[k] for k in ("block_size", "dilations", "pads", "conv_kind")} == {
        "block_size": 4, "dilations": [4, 4], "pads": [4, 4, 4, 4], "conv_kind": "depthwise"}
    assert blocks(model) == []
    fixed, _ = support.repaired(model)
    assert len(model.graph.node) == 11 and len(fixed.graph.node) == 4
    dw = the_conv(fixed, group=16)
    assert attrs(dw)["dilations"] == [4, 4] and attrs(dw)["pads"] == [4, 4, 4, 4]
    assert blocks(fixed) == [(dw.name, "StatefulPartitionedCall_1:0")]
    for batch in (1, 3):
        assert_same_on_batch(model, fixed, batch=batch)


def test_tflite_reshape_variant_is_not_recognised():
    """A non-square rate (2, 3): tf2onnx writes SpaceToBatchND as Reshape/Transpose/Reshape with
    shapes computed at run time. The rule does not recognise it (documented in Known problems)."""
    model = real("tf-dilation/tflite_dw23_reshape.onnx")
    assert ops(model)["SpaceToDepth"] == 0 and ops(model)["Reshape"] == 9
    assert findings(model) == []
