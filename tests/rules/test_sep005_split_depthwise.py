"""SEP005 split-depthwise: Split(axis=1) → one conv per channel → Concat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import helper

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import Conv, Editor, is_depthwise
from tests.rules import support


def split_depthwise(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP005: each depthwise conv (M = 1) becomes Split(axis=1) → C one-channel convs → Concat.

    As onnx2tf and MNN wrote it: same function, C tiny convs instead of one depthwise layer.
    The Split sizes are an input from opset 13 on and an attribute before.
    """
    editor = Editor(model, "SEP005")
    replacements: dict[int, list[onnx.NodeProto]] = {}

    def eligible(conv: Conv) -> bool:
        return is_depthwise(conv) and conv.weight.shape[0] == conv.group and conv.bias_is_constant

    for conv in editor.select(nodes, eligible, "depthwise (multiplier 1, constant bias)"):
        node, base, channels = conv.node, conv.base_name, conv.group
        pieces = [editor.fresh(base, f"split_{c}") for c in range(channels)]
        sizes = np.ones(channels, dtype=np.int64)
        if editor.opset >= 13:
            split = editor.node("Split", [node.input[0], editor.add_initializer(sizes, base, "split_sizes")], pieces,
                                base, "split", axis=1)
        else:
            split = editor.node("Split", [node.input[0]], pieces, base, "split", axis=1, split=sizes.tolist())
        kept_attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "group"}
        channel_convs = []
        for c, piece in enumerate(pieces):
            inputs = [piece, editor.add_initializer(conv.weight[c : c + 1], base, f"weight_{c}")]
            if conv.bias is not None:
                inputs.append(editor.add_initializer(conv.bias[c : c + 1], base, f"bias_{c}"))
            channel_convs.append(editor.node("Conv", inputs, [editor.fresh(base, f"conv_{c}_out")], base,
                                             f"conv_{c}", group=1, **kept_attributes))
        concat = editor.node("Concat", [cc.output[0] for cc in channel_convs], list(node.output), base, "concat",
                             axis=1)
        editor.release(*node.input[1:])
        replacements[conv.index] = [split, *channel_convs, concat]
    return editor.rebuild(replacements)


MANGLES = {"split": split_depthwise}


SAMPLES = {
    "sep005_split_depthwise": support.mangled_sample(
        MANGLES["split"], "SEP005: each depthwise conv as Split(axis=1) → one conv per channel → Concat."
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


def test_split_depthwise(clean):
    depthwise, _ = support.convs_by_kind(clean)
    channels = [support.attrs(support.node(clean, n))["group"] for n in depthwise]
    mangled = split_depthwise(clean)
    ops_before, ops_after = support.ops(clean), support.ops(mangled)
    assert ops_after["Split"] == len(depthwise) and ops_after["Concat"] == len(depthwise)
    assert ops_after["Conv"] == ops_before["Conv"] - len(depthwise) + sum(channels)
    assert all(support.attrs(n).get("group", 1) == 1 for n in mangled.graph.node if n.op_type == "Conv")
    split = next(n for n in mangled.graph.node if n.op_type == "Split")
    assert len(split.input) == 2, "opset 13 Split takes its sizes as an input"
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


def test_split_depthwise_refuses_multiplier():
    with pytest.raises(ValueError, match="no depthwise"):
        split_depthwise(builders.separable_block(depth_multiplier=2))


def test_mangler_refuses_models_without_depthwise():
    with pytest.raises(ValueError, match="no depthwise"):
        split_depthwise(builders.resnext_grouped())


# -- the rule ------------------------------------------------------------------------------------


def test_one_finding_spans_split_convs_and_concat():
    [finding] = sepfix.check(split_depthwise(builders.separable_block(c_in=4)))
    assert finding.code == "SEP005" and len(finding.nodes) == 1 + 4 + 1


def test_split_into_channel_groups_of_two_is_silent():
    """Split into two pieces of two channels, each a dense conv: a grouped conv (group 2), not a
    depthwise one; nothing for SEP005 to merge."""
    rng = np.random.default_rng(0)
    weights = [onnx.numpy_helper.from_array(rng.normal(size=(2, 2, 3, 3)).astype(np.float32), f"w{i}")
               for i in range(2)]
    sizes = onnx.numpy_helper.from_array(np.array([2, 2], np.int64), "sizes")
    graph = helper.make_graph(
        [helper.make_node("Split", ["x", "sizes"], ["a", "b"], name="split", axis=1),
         helper.make_node("Conv", ["a", "w0"], ["ca"], name="conv_a", pads=[1, 1, 1, 1]),
         helper.make_node("Conv", ["b", "w1"], ["cb"], name="conv_b", pads=[1, 1, 1, 1]),
         helper.make_node("Concat", ["ca", "cb"], ["y"], name="concat", axis=1)],
        "grouped_by_split",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [*weights, sizes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    assert sepfix.check(model) == []
