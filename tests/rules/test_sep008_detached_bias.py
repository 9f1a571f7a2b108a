"""SEP008 detached-bias: a conv's bias applied by a separate Add of a (1, C, 1, 1) constant."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import Conv, Editor, is_block_conv
from tests.rules import support


def detached_bias(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP008: move each depthwise/pointwise conv's bias into a following Add of (1, C, 1, 1).

    Same function up to float rounding; TensorRT fuses a conv bias for free but not always an Add.
    """
    editor = Editor(model, "SEP008")
    replacements: dict[int, list[onnx.NodeProto]] = {}

    def eligible(conv: Conv) -> bool:
        return is_block_conv(conv) and conv.bias is not None

    for conv in editor.select(nodes, eligible, "depthwise or pointwise (with a constant bias)"):
        node, base = conv.node, conv.base_name
        bias = editor.add_initializer(conv.bias.reshape(1, -1, 1, 1), base, "detached_bias")
        conv_output = node.output[0]
        editor.release(node.input[2])
        del node.input[2:]
        node.output[0] = editor.fresh(base, "conv_out")
        add = editor.node("Add", [node.output[0], bias], [conv_output], base, "bias_add")
        replacements[conv.index] = [node, add]
    return editor.rebuild(replacements)


MANGLES = {"detached": detached_bias}


SAMPLES = {
    "sep008_detached_bias": support.mangled_sample(
        MANGLES["detached"], "SEP008: DW/PW conv biases moved into a following Add of a (1, C, 1, 1) constant."
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


def test_detached_bias(clean):
    depthwise, pointwise = support.convs_by_kind(clean)
    mangled = detached_bias(clean)
    weights = support.initializers(mangled)
    for name in depthwise + pointwise:
        node = support.node(mangled, name)
        assert len(node.input) == 2
        (add,) = support.consumers(mangled, node.output[0])
        assert add.op_type == "Add"
        bias = weights[add.input[1]]
        assert bias.shape == (1, weights[node.input[1]].shape[0], 1, 1)
    assert support.ops(mangled)["Add"] == support.ops(clean)["Add"] + len(depthwise + pointwise)
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


def test_detached_bias_needs_a_bias():
    with pytest.raises(ValueError, match="no depthwise or pointwise"):
        detached_bias(builders.separable_block(bias=False))


# -- the rule ------------------------------------------------------------------------------------


def test_residual_add_is_not_a_bias():
    """mobilenet_like's residual Add adds a tensor, not a (1, C, 1, 1) constant."""
    assert sepfix.check(builders.mobilenet_like()) == []


def test_add_of_a_full_size_constant_is_silent():
    """An Add of a constant that varies over H and W is no bias: it cannot go into the conv."""
    model = detached_bias(builders.separable_block(), nodes=["pw_conv"])
    add = next(n for n in model.graph.node if n.op_type == "Add")
    tensor = next(t for t in model.graph.initializer if t.name == add.input[1])
    values = onnx.numpy_helper.to_array(tensor)
    full = np.broadcast_to(values, (1, values.shape[1], 12, 12)).copy()
    full[..., 0, 0] += 1.0
    tensor.CopyFrom(onnx.numpy_helper.from_array(full, tensor.name))
    assert sepfix.check(model) == []
