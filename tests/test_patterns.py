"""Conv classification and DW->PW block finding on real torch exports and helper-built models."""

from __future__ import annotations

import pytest

from sepfix.graph import GraphIndex
from sepfix.model_io import from_proto
from sepfix.patterns import ConvKind, all_convs, find_blocks
from sepfix.testing import builders
from tests.torch_models import DepthwiseTransposed, MobileNetV2Like, SeparableBlock, export, torch

import sepfix


def kinds_and_blocks(model):
    index = GraphIndex(from_proto(model))
    return [c.kind for c in all_convs(index)], find_blocks(index)


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
@pytest.mark.parametrize(
    "kwargs, multiplier",
    [({}, 1), ({"multiplier": 2}, 2), ({"stride": 2}, 1), ({"dilation": 2}, 1), ({"k": 5}, 1)],
    ids=["plain", "multiplier2", "stride2", "dilation2", "k5"],
)
def test_torch_separable_block_is_classified(kwargs, multiplier, dynamo):
    model = export(SeparableBlock(**kwargs), torch.randn(1, 8, 16, 16), dynamo=dynamo)
    kinds, blocks = kinds_and_blocks(model)
    assert kinds == [ConvKind.DEPTHWISE, ConvKind.POINTWISE]
    assert len(blocks) == 1
    assert blocks[0].channels == 8 and blocks[0].depth_multiplier == multiplier
    assert sepfix.check(model) == []


def test_torch_conv1d_block():
    block = SeparableBlock(conv=torch.nn.Conv1d, bn=torch.nn.BatchNorm1d)
    model = export(block, torch.randn(1, 8, 32))
    kinds, blocks = kinds_and_blocks(model)
    assert kinds == [ConvKind.DEPTHWISE, ConvKind.POINTWISE]
    assert blocks[0].kernel == (3,)
    assert sepfix.check(model) == []


def test_torch_depthwise_conv_transpose():
    model = export(DepthwiseTransposed(), torch.randn(1, 8, 8, 8))
    kinds, _ = kinds_and_blocks(model)
    assert kinds == [ConvKind.DEPTHWISE, ConvKind.POINTWISE]
    assert sepfix.check(model) == []


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_clean_mobilenetv2_export_has_blocks_and_no_findings(dynamo):
    model = export(MobileNetV2Like(), torch.randn(1, 3, 32, 32), dynamo=dynamo)
    _, blocks = kinds_and_blocks(model)
    assert len(blocks) == 4  # the first separable block and one per inverted residual
    assert sepfix.check(model) == []


def test_blocks_pass_through_bn_activation_and_gates():
    for activation in ("relu", "relu6", "hardswish", "swish"):
        model = builders.mobilenet_like(activation=activation)
        _, blocks = kinds_and_blocks(model)
        assert len(blocks) == 3, activation
        assert "BatchNormalization" in blocks[0].between_ops


def test_grouped_conv_is_not_depthwise():
    kinds, blocks = kinds_and_blocks(builders.resnext_grouped())
    assert ConvKind.GROUPED in kinds and ConvKind.DEPTHWISE not in kinds
    assert blocks == []


def test_subgraph_and_function_convs_are_indexed():
    """A depthwise conv inside an If branch and inside a model-local function is classified."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    branch = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="dw_in_branch")], "then",
        [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["z"], name="id")], "else",
        [], [helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, None)],
    )
    function = helper.make_function(
        "local", "DwFn", ["a", "k"], ["b"],
        [helper.make_node("Conv", ["a", "k"], ["b"], name="dw_in_function", group=4)],
        [helper.make_opsetid("", 13)],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["out"], name="branching", then_branch=branch, else_branch=other),
         helper.make_node("DwFn", ["x", "w"], ["out2"], name="call", domain="local")],
        "g",
        [helper.make_tensor_value_info("cond", onnx.TensorProto.BOOL, []),
         helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None),
         helper.make_tensor_value_info("out2", onnx.TensorProto.FLOAT, None)],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("local", 1)],
                              functions=[function], ir_version=8)
    findings = sepfix.check(model)
    # The branch conv lost its group: found inside the subgraph, with its graph path.
    assert [(f.code, f.graph, f.node) for f in findings] == [("SEP002", "main/branching.then_branch", "dw_in_branch")]
    index = GraphIndex(from_proto(model))
    paths = [s.path for s in index.scopes]
    assert sorted(paths) == ["function:local.DwFn", "main", "main/branching.else_branch", "main/branching.then_branch"]
