"""SEP001 dense-depthwise: a depthwise conv stored with group=1 and a block-diagonal weight."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import sepfix
from sepfix.rewrite import rewrite
from sepfix.rules import select_rules
from sepfix.testing import builders
from sepfix.testing.mangle import Editor, is_depthwise, is_depthwise_transpose, set_attribute
from tests.conftest import assert_same_outputs, run_model
from tests.rules import support


def dense_depthwise(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP001: depthwise convs become group=1 convs with a block-diagonal dense weight.

    Conv (C*M, 1, k, k) → (C*M, C, k, k); ConvTranspose (C, M, k, k) → (C, C*M, k, k). Same
    function, C times the multiply-adds, and TensorRT no longer picks a depthwise kernel.
    """
    editor = Editor(model, "SEP001")
    for conv in editor.select(nodes, lambda c: is_depthwise(c) or is_depthwise_transpose(c), "depthwise"):
        w, channels = conv.weight, conv.group
        if conv.node.op_type == "Conv":
            multiplier = w.shape[0] // channels
            dense = np.zeros((w.shape[0], channels, *w.shape[2:]), dtype=w.dtype)
            out_channels = np.arange(w.shape[0])
            dense[out_channels, out_channels // multiplier] = w[:, 0]
        else:
            multiplier = w.shape[1]
            dense = np.zeros((channels, channels * multiplier, *w.shape[2:]), dtype=w.dtype)
            out_channels = np.arange(channels * multiplier)
            dense[out_channels // multiplier, out_channels] = w.reshape(channels * multiplier, *w.shape[2:])
        editor.replace_input(conv.node, 1, editor.add_initializer(dense, conv.base_name, "dense_weight"))
        set_attribute(conv.node, "group", 1)
    return editor.rebuild({})


MANGLES = {"dense": dense_depthwise}


SAMPLES = {
    "sep001_dense_depthwise": support.mangled_sample(
        MANGLES["dense"],
        "SEP001: depthwise convs exported with group=1 and a block-diagonal dense (C, C, 3, 3) weight.",
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


def test_dense_depthwise(clean):
    depthwise, _ = support.convs_by_kind(clean)
    mangled = dense_depthwise(clean)
    weights = support.initializers(mangled)
    for name in depthwise:
        node = support.node(mangled, name)
        w = weights[node.input[1]]
        assert support.attrs(node)["group"] == 1
        assert w.shape[0] == w.shape[1] and w.shape[2:] == (3, 3)
        off_diagonal = ~np.eye(w.shape[0], dtype=bool)
        assert not np.any(w[off_diagonal]), "the dense weight must be block-diagonal"
    assert support.convs_by_kind(mangled)[0] == []
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


def test_dense_depthwise_with_multiplier():
    clean = builders.mobilenet_like(channels=(8, 16), depth_multiplier=2, activation="hardswish")
    mangled = dense_depthwise(clean)
    weights = support.initializers(mangled)
    shapes = [weights[support.node(mangled, n).input[1]].shape for n in support.convs_by_kind(clean)[0]]
    assert shapes == [(16, 8, 3, 3), (16, 8, 3, 3)]
    support.assert_same_function(clean, mangled)


def _depthwise_deconv(channels: int = 4, multiplier: int = 2) -> onnx.ModelProto:
    weight = np.random.default_rng(0).normal(size=(channels, multiplier, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("ConvTranspose", ["input", "w"], ["output"], name="dw_deconv", group=channels,
                          strides=[2, 2])],
        "deconv",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, channels, 5, 5])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, [1, channels * multiplier, 11, 11])],
        [numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_dense_depthwise_conv_transpose():
    clean = _depthwise_deconv()
    mangled = dense_depthwise(clean)
    node = support.node(mangled, "dw_deconv")
    assert support.attrs(node)["group"] == 1
    assert support.initializers(mangled)[node.input[1]].shape == (4, 8, 3, 3)
    support.assert_same_function(clean, mangled)


def test_mangler_refuses_models_without_depthwise():
    with pytest.raises(ValueError, match="no depthwise"):
        dense_depthwise(builders.resnext_grouped())


# -- the rule: positives -------------------------------------------------------------------------


def test_evidence_in_message_and_details():
    [first, *_] = sepfix.check(dense_depthwise(builders.mobilenet_like()))
    assert "group=1" in first.message and "(8, 8, 3, 3)" in first.message and "group=8" in first.message
    assert first.details["group_expected"] == 8 and first.details["weight_shape"] == [8, 8, 3, 3]


def test_depth_multiplier_two_from_torch():
    from tests.torch_models import SeparableBlock, export, torch

    model = export(SeparableBlock(multiplier=2), torch.randn(1, 8, 16, 16))
    [finding] = sepfix.check(dense_depthwise(model))
    assert finding.code == "SEP001" and finding.details["depth_multiplier"] == 2
    assert "(16, 8, 3, 3)" in finding.message and "(16, 1, 3, 3)" in finding.message


def test_mobilenet_mangled_everywhere_counts_every_block():
    from tests.torch_models import MobileNetV2Like, export, torch

    model = export(MobileNetV2Like(), torch.randn(1, 3, 32, 32))
    findings = sepfix.check(dense_depthwise(model))
    assert [f.code for f in findings] == ["SEP001"] * 4


def test_conv1d_dense_depthwise_from_torch_is_found_and_repaired():
    """A Conv1d depthwise block whose weight a converter expanded to dense block-diagonal."""
    from tests.torch_models import SeparableBlock, export, torch

    block = SeparableBlock(conv=torch.nn.Conv1d, bn=torch.nn.BatchNorm1d)
    clean = export(block, torch.randn(1, 8, 32))
    mangled = type(clean)()
    mangled.CopyFrom(clean)
    conv = next(n for n in mangled.graph.node
                if n.op_type == "Conv" and any(a.name == "group" and a.i == 8 for a in n.attribute))
    weight_init = next(t for t in mangled.graph.initializer if t.name == conv.input[1])
    slim = numpy_helper.to_array(weight_init)  # (8, 1, 3)
    dense = np.zeros((8, 8, 3), slim.dtype)
    dense[np.arange(8), np.arange(8)] = slim[:, 0]
    weight_init.CopyFrom(numpy_helper.from_array(dense, weight_init.name))
    next(a for a in conv.attribute if a.name == "group").i = 1
    [finding] = sepfix.check(mangled)
    assert finding.code == "SEP001" and "(8, 8, 3)" in finding.message
    repaired, _ = rewrite(mangled, select_rules())
    assert sepfix.check(repaired) == []
    assert_same_outputs(repaired, clean)


def test_dense_depthwise_conv_transpose_from_torch_is_repaired():
    """A depthwise ConvTranspose2d (groups == C, multiplier 2) stored dense: found and repaired."""
    from tests.torch_models import DepthwiseTransposed, export, torch

    clean = export(DepthwiseTransposed(), torch.randn(1, 8, 8, 8))
    mangled = dense_depthwise(clean)
    [finding] = sepfix.check(mangled)
    assert finding.code == "SEP001" and finding.details["depth_multiplier"] == 2
    repaired, fixes = rewrite(mangled, select_rules())
    assert len(fixes) == 1 and sepfix.check(repaired) == []
    conv_t = next(n for n in repaired.graph.node if n.op_type == "ConvTranspose")
    assert next(a.i for a in conv_t.attribute if a.name == "group") == 8
    for a, b in zip(run_model(repaired), run_model(clean)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- the rule: negatives -------------------------------------------------------------------------


def test_dense_conv_with_incidental_zeros_is_silent():
    assert sepfix.check(builders.dense_with_zeros()) == []


def test_one_dense_conv_with_one_off_diagonal_weight_is_silent():
    """A block-diagonal weight but for one off-diagonal tap is a dense conv: not rewritten."""
    mangled = dense_depthwise(builders.separable_block())
    weight = next(t for t in mangled.graph.initializer if t.name.endswith("dense_weight"))
    values = numpy_helper.to_array(weight).copy()
    values[0, 1, 1, 1] = 0.5
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    assert sepfix.check(mangled) == []
