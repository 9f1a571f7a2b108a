"""SEP006 matmul-pointwise: Transpose → MatMul → (Add) → Transpose standing for a 1x1 conv."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import TO_NCHW, TO_NHWC, Editor, is_pointwise
from tests.rules import support


def matmul_pointwise(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP006: each pointwise conv becomes Transpose → MatMul → Add(bias) → Transpose.

    The MatMul weight is (C_in, C_out); no Add when the conv had no bias. This is how NHWC
    converters write a 1x1 conv; TensorRT then sees a MatMul, not a convolution, and cannot
    fuse it with the depthwise conv before it.
    """
    editor = Editor(model, "SEP006")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    for conv in editor.select(nodes, lambda c: is_pointwise(c) and c.bias_is_constant, "pointwise"):
        node, base = conv.node, conv.base_name
        to_nhwc = editor.node("Transpose", [node.input[0]], [editor.fresh(base, "nhwc")], base, "to_nhwc",
                              perm=TO_NHWC)
        matrix = editor.add_initializer(np.ascontiguousarray(conv.weight[:, :, 0, 0].T), base, "matmul_weight")
        chain = [to_nhwc, editor.node("MatMul", [to_nhwc.output[0], matrix], [editor.fresh(base, "matmul_out")],
                                      base, "matmul")]
        if conv.bias is not None:
            bias = editor.add_initializer(conv.bias, base, "bias")
            chain.append(editor.node("Add", [chain[-1].output[0], bias], [editor.fresh(base, "add_out")], base, "add"))
        chain.append(editor.node("Transpose", [chain[-1].output[0]], list(node.output), base, "to_nchw",
                                 perm=TO_NCHW))
        editor.release(*node.input[1:])
        replacements[conv.index] = chain
    return editor.rebuild(replacements)


MANGLES = {"matmul": matmul_pointwise}


SAMPLES = {
    "sep006_matmul_pointwise": support.mangled_sample(
        MANGLES["matmul"], "SEP006: each pointwise conv as Transpose → MatMul → Add(bias) → Transpose."
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


def test_matmul_pointwise(clean):
    _, pointwise = support.convs_by_kind(clean)
    mangled = matmul_pointwise(clean)
    ops_before, ops_after = support.ops(clean), support.ops(mangled)
    assert ops_after["Conv"] == ops_before["Conv"] - len(pointwise)
    assert ops_after["MatMul"] == len(pointwise)
    assert ops_after["Transpose"] == ops_before["Transpose"] + 2 * len(pointwise)
    assert ops_after["Add"] == ops_before["Add"] + len(pointwise)
    perms = [support.attrs(n)["perm"] for n in mangled.graph.node if n.op_type == "Transpose"]
    assert perms.count([0, 2, 3, 1]) == perms.count([0, 3, 1, 2]) == len(pointwise)
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


def test_matmul_pointwise_without_bias():
    clean = builders.separable_block(bias=False)
    mangled = matmul_pointwise(clean)
    assert support.ops(mangled)["Add"] == 0 and support.ops(mangled)["MatMul"] == 1
    support.assert_same_function(clean, mangled)


# -- the rule ------------------------------------------------------------------------------------


def test_one_finding_per_pointwise_conv():
    findings = sepfix.check(matmul_pointwise(builders.mobilenet_like()))
    assert [f.code for f in findings] == ["SEP006"] * 3
    assert all(len(f.nodes) == 4 for f in findings), "Transpose, MatMul, Add, Transpose"


def test_convnext_linear_layers_are_silent():
    """Linear layers after a LayerNorm never were 1x1 convs."""
    assert sepfix.check(builders.convnext_linear()) == []
