"""SEP003 kernel-shape: kernel_shape disagrees with the weight, or is missing beside a weight that
is not a plain initializer."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import onnx
import pytest

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import Editor, is_block_conv, moves_numbers, remove_attribute, set_attribute
from tests.rules import support

KINDS = ("wrong", "missing_dq")


def _quantize_per_tensor(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.float32(np.abs(weight).max() / 127.0) if np.any(weight) else np.float32(1.0)
    quantized = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
    return quantized, np.array(scale, dtype=np.float32)


def kernel_shape(model: onnx.ModelProto, how: str, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP003: break the kernel_shape attribute of depthwise and pointwise convs.

    how="wrong": kernel_shape disagrees with the weight (k+2 per axis, e.g. [5, 5] for 3x3): an
    invalid model, no numeric claim.
    how="missing_dq": kernel_shape removed and the weight routed through DequantizeLinear of an
    int8 initializer with a per-tensor scale, as the dynamo exporter wrote for quantized models.
    The numbers move by the int8 rounding: a repaired model must equal this mangled model, not
    the clean one it came from.
    """
    if how not in KINDS:
        raise ValueError(f"unknown how {how!r}; expected one of {KINDS}")
    editor = Editor(model, "SEP003")
    if how == "missing_dq" and editor.opset < 10:
        raise ValueError("DequantizeLinear needs opset >= 10")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    for conv in editor.select(nodes, is_block_conv, "depthwise or pointwise"):
        if how == "wrong":
            set_attribute(conv.node, "kernel_shape", [k + 2 for k in conv.weight.shape[2:]])
            continue
        quantized, scale = _quantize_per_tensor(conv.weight)
        base = conv.base_name
        dequantize = editor.node(
            "DequantizeLinear",
            [
                editor.add_initializer(quantized, base, "weight_int8"),
                editor.add_initializer(scale, base, "weight_scale"),
                editor.add_initializer(np.array(0, dtype=np.int8), base, "weight_zero_point"),
            ],
            [editor.fresh(base, "weight_dequantized")],
            base,
            "weight_dequantize",
        )
        editor.replace_input(conv.node, 1, dequantize.output[0])
        remove_attribute(conv.node, "kernel_shape")
        replacements[conv.index] = [dequantize, conv.node]
    return editor.rebuild(replacements)


MANGLES = {
    "wrong": partial(kernel_shape, how="wrong"),
    "missing_dq": moves_numbers(partial(kernel_shape, how="missing_dq")),
}


SAMPLES = {
    "sep003_kernel_shape_wrong": support.mangled_sample(
        MANGLES["wrong"],
        "SEP003: kernel_shape disagrees with the weight ([5,5] on 3x3 depthwise, [3,3] on 1x1 pointwise convs) "
        "(invalid).",
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


def test_kernel_shape_wrong(clean):
    depthwise, pointwise = support.convs_by_kind(clean)
    mangled = kernel_shape(clean, "wrong")
    for name in depthwise:
        assert support.attrs(support.node(mangled, name))["kernel_shape"] == [5, 5]
    for name in pointwise:
        assert support.attrs(support.node(mangled, name))["kernel_shape"] == [3, 3]
    support.assert_named(clean, mangled)


def test_kernel_shape_missing_dq(clean):
    depthwise, pointwise = support.convs_by_kind(clean)
    mangled = kernel_shape(clean, "missing_dq")
    producers, weights = support.producers(mangled), support.initializers(mangled)
    for name in depthwise + pointwise:
        node = support.node(mangled, name)
        assert "kernel_shape" not in support.attrs(node)
        dequantize = producers[node.input[1]]
        assert dequantize.op_type == "DequantizeLinear"
        assert weights[dequantize.input[0]].dtype == np.int8
        assert weights[dequantize.input[1]].shape == (), "per-tensor scale"
    assert support.ops(mangled)["DequantizeLinear"] == len(depthwise + pointwise)
    support.assert_valid_and_named(clean, mangled)
    # int8 rounding moves the numbers: equal to the clean model with dequantized weights ...
    support.assert_same_function(support.with_weights_seen_by_convs(clean, mangled, depthwise + pointwise), mangled)
    # ... and still close to the clean model itself.
    np.testing.assert_allclose(support.run(mangled)[0], support.run(clean)[0], atol=0.05)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown how"):
        kernel_shape(builders.separable_block(), "bogus")


# -- the rule ------------------------------------------------------------------------------------


def test_missing_kernel_shape_beside_a_plain_initializer_is_silent():
    """Valid ONNX: the kernel is read from the weight; nothing for TensorRT to guess."""
    model = builders.separable_block()
    for node in model.graph.node:
        if node.op_type == "Conv":
            remove_attribute(node, "kernel_shape")
    assert sepfix.check(model) == []


def test_qdq_weights_with_kernel_shape_are_silent():
    assert sepfix.check(builders.qdq_weights()) == []
