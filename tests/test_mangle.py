"""The mangles damage models the way exporters did, and (where claimed) keep their function.

Every mangle runs on a builder model and on real torch.onnx.export output (legacy and dynamo),
because rules will meet both and the mangles must find convs by structure, not by name.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import helper, numpy_helper

from sepfix.testing import builders, mangle

REPO_ROOT = Path(__file__).resolve().parent.parent
RTOL, ATOL = 1e-4, 1e-5


# -- sources -------------------------------------------------------------------------------------


class _TorchSeparableBlock(torch.nn.Module):
    """Depthwise 3x3 (groups=C) + BatchNorm + ReLU6 + pointwise 1x1, as torchvision writes it."""

    def __init__(self, channels: int = 8, out_channels: int = 16) -> None:
        super().__init__()
        self.depthwise = torch.nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.bn = torch.nn.BatchNorm2d(channels)
        self.act = torch.nn.ReLU6()
        self.pointwise = torch.nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.act(self.bn(self.depthwise(x))))


def _torch_block() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    block = _TorchSeparableBlock()
    with torch.no_grad():  # non-trivial running statistics, so BN folding matters
        block.bn.running_mean.uniform_(-0.2, 0.2)
        block.bn.running_var.uniform_(0.5, 1.5)
        block.bn.weight.uniform_(0.8, 1.2)
        block.bn.bias.uniform_(-0.1, 0.1)
    return block.eval(), torch.randn(1, 8, 12, 12)


def _torch_legacy_export() -> onnx.ModelProto:
    block, example = _torch_block()
    buffer = io.BytesIO()
    torch.onnx.export(block, (example,), buffer, dynamo=False, opset_version=13)
    return onnx.load_from_string(buffer.getvalue())


def _torch_dynamo_export() -> onnx.ModelProto:
    block, example = _torch_block()
    return torch.onnx.export(block, (example,), dynamo=True, verbose=False).model_proto


_SOURCES = {
    "builder": builders.mobilenet_like,
    "torch_legacy": _torch_legacy_export,
    "torch_dynamo": _torch_dynamo_export,
}
_cache: dict[str, onnx.ModelProto] = {}


@pytest.fixture(params=list(_SOURCES))
def clean(request) -> onnx.ModelProto:
    """A fresh copy each time, so a mangle that wrote into its input could not hide it."""
    if request.param not in _cache:
        _cache[request.param] = _SOURCES[request.param]()
    model = onnx.ModelProto()
    model.CopyFrom(_cache[request.param])
    return model


# -- helpers -------------------------------------------------------------------------------------


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: n for n in model.graph.node for out in n.output}


def _consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def _convs_by_kind(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Names of depthwise and pointwise convs, judged independently of the code under test."""
    weights = _initializers(model)
    depthwise, pointwise = [], []
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in weights:
            continue
        w, group = weights[node.input[1]], _attrs(node).get("group", 1)
        if group > 1 and w.shape[1] == 1 and w.shape[2:] != (1, 1):
            depthwise.append(node.name)
        elif group == 1 and w.shape[2:] == (1, 1):
            pointwise.append(node.name)
    return depthwise, pointwise


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    (node,) = [n for n in model.graph.node if n.name == name]
    return node


def _ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def _feed(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    initialized = {t.name for t in model.graph.initializer}
    feed = {}
    for value in model.graph.input:
        if value.name not in initialized:
            shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
            feed[value.name] = rng.normal(size=shape).astype(np.float32)
    return feed


def _run(
    model: onnx.ModelProto, feed: dict[str, np.ndarray], extra_outputs: list[str] = ()
) -> list[np.ndarray]:
    if extra_outputs:
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        exposed.graph.output.extend(
            helper.make_empty_tensor_value_info(name) for name in extra_outputs
        )
        model = exposed
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _assert_same_function(expected_model: onnx.ModelProto, mangled: onnx.ModelProto) -> None:
    feed = _feed(expected_model)
    for expected, actual in zip(_run(expected_model, feed), _run(mangled, feed), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL)


def _with_weights_seen_by_convs(
    clean: onnx.ModelProto, mangled: onnx.ModelProto, names: list[str]
) -> onnx.ModelProto:
    """The clean model with these convs' weights replaced by what the mangled convs receive.

    For mangles that move the numbers on purpose (fp16 cast, int8 DequantizeLinear): the
    mangled model must equal the clean one with the rounded weights, read from onnxruntime.
    """
    weight_tensors = [_node(mangled, name).input[1] for name in names]
    seen = _run(mangled, _feed(mangled), weight_tensors)[len(mangled.graph.output) :]
    reference = onnx.ModelProto()
    reference.CopyFrom(clean)
    initializers = {t.name: t for t in reference.graph.initializer}
    for name, value in zip(names, seen, strict=True):
        initializers[_node(reference, name).input[1]].CopyFrom(
            numpy_helper.from_array(value, _node(reference, name).input[1])
        )
    return reference


def _assert_valid_and_named(clean: onnx.ModelProto, mangled: onnx.ModelProto) -> None:
    onnx.checker.check_model(mangled, full_check=True)
    _assert_named(clean, mangled)


def _assert_named(clean: onnx.ModelProto, mangled: onnx.ModelProto) -> None:
    names = [n.name for n in mangled.graph.node]
    assert all(names), "every node must be named"
    assert len(names) == len(set(names)), "node names must be unique"
    assert mangled.ir_version == clean.ir_version
    assert list(mangled.opset_import) == list(clean.opset_import)


# -- SEP001 --------------------------------------------------------------------------------------


def test_dense_depthwise(clean):
    depthwise, _ = _convs_by_kind(clean)
    before = clean.SerializeToString()
    mangled = mangle.dense_depthwise(clean)
    assert clean.SerializeToString() == before, "the input model must not change"
    weights = _initializers(mangled)
    for name in depthwise:
        node = _node(mangled, name)
        w = weights[node.input[1]]
        assert _attrs(node)["group"] == 1
        assert w.shape[0] == w.shape[1] and w.shape[2:] == (3, 3)
        off_diagonal = ~np.eye(w.shape[0], dtype=bool)
        assert not np.any(w[off_diagonal]), "the dense weight must be block-diagonal"
    assert _convs_by_kind(mangled)[0] == []
    _assert_valid_and_named(clean, mangled)
    _assert_same_function(clean, mangled)


def test_dense_depthwise_with_multiplier():
    clean = builders.mobilenet_like(channels=(8, 16), depth_multiplier=2, activation="hardswish")
    mangled = mangle.dense_depthwise(clean)
    weights = _initializers(mangled)
    shapes = [weights[_node(mangled, n).input[1]].shape for n in _convs_by_kind(clean)[0]]
    assert shapes == [(16, 8, 3, 3), (16, 8, 3, 3)]
    _assert_same_function(clean, mangled)


def test_dense_depthwise_conv_transpose():
    rng = np.random.default_rng(0)
    channels, multiplier = 4, 2
    weight = rng.normal(size=(channels, multiplier, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node(
                "ConvTranspose",
                ["input", "w"],
                ["output"],
                name="dw_deconv",
                group=channels,
                strides=[2, 2],
            )
        ],
        "deconv",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [1, channels, 5, 5])],
        [
            helper.make_tensor_value_info(
                "output", onnx.TensorProto.FLOAT, [1, channels * multiplier, 11, 11]
            )
        ],
        [numpy_helper.from_array(weight, "w")],
    )
    clean = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    mangled = mangle.dense_depthwise(clean)
    node = _node(mangled, "dw_deconv")
    assert _attrs(node)["group"] == 1
    assert _initializers(mangled)[node.input[1]].shape == (channels, channels * multiplier, 3, 3)
    _assert_same_function(clean, mangled)


# -- SEP002 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, -3, 1, 5])
def test_group_attribute(clean, value):
    depthwise, _ = _convs_by_kind(clean)
    mangled = mangle.group_attribute(clean, value)
    for name in depthwise:
        attrs = _attrs(_node(mangled, name))
        if value is None:
            assert "group" not in attrs
        else:
            assert attrs["group"] == value
        assert _node(mangled, name).input[1] == _node(clean, name).input[1], "weight untouched"
    assert _initializers(mangled).keys() == _initializers(clean).keys()
    _assert_named(clean, mangled)


# -- SEP003 --------------------------------------------------------------------------------------


def test_kernel_shape_wrong(clean):
    depthwise, pointwise = _convs_by_kind(clean)
    mangled = mangle.kernel_shape(clean, "wrong")
    for name in depthwise:
        assert _attrs(_node(mangled, name))["kernel_shape"] == [5, 5]
    for name in pointwise:
        assert _attrs(_node(mangled, name))["kernel_shape"] == [3, 3]
    _assert_named(clean, mangled)


def test_kernel_shape_missing_dq(clean):
    depthwise, pointwise = _convs_by_kind(clean)
    mangled = mangle.kernel_shape(clean, "missing_dq")
    producers, weights = _producers(mangled), _initializers(mangled)
    for name in depthwise + pointwise:
        node = _node(mangled, name)
        assert "kernel_shape" not in _attrs(node)
        dequantize = producers[node.input[1]]
        assert dequantize.op_type == "DequantizeLinear"
        assert weights[dequantize.input[0]].dtype == np.int8
        assert weights[dequantize.input[1]].shape == (), "per-tensor scale"
    assert _ops(mangled)["DequantizeLinear"] == len(depthwise + pointwise)
    _assert_valid_and_named(clean, mangled)
    # int8 rounding moves the numbers: equal to the clean model with dequantized weights ...
    _assert_same_function(
        _with_weights_seen_by_convs(clean, mangled, depthwise + pointwise), mangled
    )
    # ... and still close to the clean model itself.
    feed = _feed(clean)
    np.testing.assert_allclose(_run(mangled, feed)[0], _run(clean, feed)[0], atol=0.05)


# -- SEP004 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["tf_transpose", "tf_reshape_transpose", "cast_fp16", "identity"])
def test_runtime_weights_nodes(clean, how):
    depthwise, pointwise = _convs_by_kind(clean)
    mangled = mangle.runtime_weights(clean, how)
    producers, weights = _producers(mangled), _initializers(mangled)
    expected_chain = {
        "tf_transpose": ["Transpose"],
        "tf_reshape_transpose": ["Reshape", "Transpose"],
        "cast_fp16": ["Cast"],
        "identity": ["Identity"],
    }[how]
    for name in depthwise + pointwise:
        chain, tensor = [], _node(mangled, name).input[1]
        while tensor in producers:
            chain.insert(0, producers[tensor].op_type)
            tensor = producers[tensor].input[0]
        assert chain == expected_chain
        stored = weights[tensor]
        original = _initializers(clean)[_node(clean, name).input[1]]
        if how.startswith("tf_"):
            assert stored.shape[:2] == original.shape[2:] or how == "tf_reshape_transpose"
        if how == "cast_fp16":
            assert stored.dtype == np.float16
    assert _convs_by_kind(mangled) == ([], []), "no block conv reads a plain initializer any more"
    _assert_valid_and_named(clean, mangled)
    expected = clean
    if how == "cast_fp16":
        expected = _with_weights_seen_by_convs(clean, mangled, depthwise + pointwise)
        feed = _feed(clean)
        np.testing.assert_allclose(_run(mangled, feed)[0], _run(clean, feed)[0], atol=0.02)
    _assert_same_function(expected, mangled)


def test_runtime_weights_tf_layouts_with_multiplier():
    clean = builders.separable_block(depth_multiplier=2, k=5)
    for how in ("tf_transpose", "tf_reshape_transpose"):
        _assert_same_function(clean, mangle.runtime_weights(clean, how))


def test_runtime_weights_graph_input(clean):
    depthwise, pointwise = _convs_by_kind(clean)
    mangled = mangle.runtime_weights(clean, "graph_input")
    input_names = {i.name for i in mangled.graph.input}
    initializers = _initializers(mangled)
    for name in depthwise + pointwise:
        weight = _node(mangled, name).input[1]
        assert weight in input_names and weight in initializers
    assert len(mangled.graph.node) == len(clean.graph.node)
    _assert_valid_and_named(clean, mangled)
    _assert_same_function(clean, mangled)


# -- SEP005 --------------------------------------------------------------------------------------


def test_split_depthwise(clean):
    depthwise, _ = _convs_by_kind(clean)
    channels = [_attrs(_node(clean, n))["group"] for n in depthwise]
    mangled = mangle.split_depthwise(clean)
    ops_before, ops_after = _ops(clean), _ops(mangled)
    assert ops_after["Split"] == len(depthwise) and ops_after["Concat"] == len(depthwise)
    assert ops_after["Conv"] == ops_before["Conv"] - len(depthwise) + sum(channels)
    assert all(_attrs(n).get("group", 1) == 1 for n in mangled.graph.node if n.op_type == "Conv")
    split = next(n for n in mangled.graph.node if n.op_type == "Split")
    assert len(split.input) == 2, "opset 13 Split takes its sizes as an input"
    _assert_valid_and_named(clean, mangled)
    _assert_same_function(clean, mangled)


def test_split_depthwise_refuses_multiplier():
    with pytest.raises(ValueError, match="no depthwise"):
        mangle.split_depthwise(builders.separable_block(depth_multiplier=2))


# -- SEP006 --------------------------------------------------------------------------------------


def test_matmul_pointwise(clean):
    _, pointwise = _convs_by_kind(clean)
    mangled = mangle.matmul_pointwise(clean)
    ops_before, ops_after = _ops(clean), _ops(mangled)
    assert ops_after["Conv"] == ops_before["Conv"] - len(pointwise)
    assert ops_after["MatMul"] == len(pointwise)
    assert ops_after["Transpose"] == ops_before["Transpose"] + 2 * len(pointwise)
    assert ops_after["Add"] == ops_before["Add"] + len(pointwise)
    perms = [_attrs(n)["perm"] for n in mangled.graph.node if n.op_type == "Transpose"]
    assert perms.count([0, 2, 3, 1]) == perms.count([0, 3, 1, 2]) == len(pointwise)
    _assert_valid_and_named(clean, mangled)
    _assert_same_function(clean, mangled)


def test_matmul_pointwise_without_bias():
    clean = builders.separable_block(bias=False)
    mangled = mangle.matmul_pointwise(clean)
    assert _ops(mangled)["Add"] == 0 and _ops(mangled)["MatMul"] == 1
    _assert_same_function(clean, mangled)


# -- SEP007 --------------------------------------------------------------------------------------


def test_layout_sandwich(clean):
    depthwise, pointwise = _convs_by_kind(clean)
    mangled = mangle.layout_sandwich(clean)
    assert _ops(mangled)["Transpose"] == _ops(clean)["Transpose"] + 4 * len(depthwise + pointwise)
    assert _ops(mangled)["Conv"] == _ops(clean)["Conv"]
    producers = _producers(mangled)
    for name in depthwise + pointwise:
        node = _node(mangled, name)
        to_nchw = producers[node.input[0]]
        to_nhwc = producers[to_nchw.input[0]]
        assert (_attrs(to_nhwc)["perm"], _attrs(to_nchw)["perm"]) == ([0, 2, 3, 1], [0, 3, 1, 2])
        (after_nhwc,) = _consumers(mangled, node.output[0])
        (after_nchw,) = _consumers(mangled, after_nhwc.output[0])
        assert (_attrs(after_nhwc)["perm"], _attrs(after_nchw)["perm"]) == (
            [0, 2, 3, 1],
            [0, 3, 1, 2],
        )
        assert after_nchw.output[0] == _node(clean, name).output[0], (
            "downstream still reads the old name"
        )
    _assert_valid_and_named(clean, mangled)
    _assert_same_function(clean, mangled)


# -- SEP008 --------------------------------------------------------------------------------------


def test_detached_bias(clean):
    depthwise, pointwise = _convs_by_kind(clean)
    mangled = mangle.detached_bias(clean)
    weights = _initializers(mangled)
    for name in depthwise + pointwise:
        node = _node(mangled, name)
        assert len(node.input) == 2
        (add,) = _consumers(mangled, node.output[0])
        assert add.op_type == "Add"
        bias = weights[add.input[1]]
        assert bias.shape == (1, weights[node.input[1]].shape[0], 1, 1)
    assert _ops(mangled)["Add"] == _ops(clean)["Add"] + len(depthwise + pointwise)
    _assert_valid_and_named(clean, mangled)
    _assert_same_function(clean, mangled)


def test_detached_bias_needs_a_bias():
    with pytest.raises(ValueError, match="no depthwise or pointwise"):
        mangle.detached_bias(builders.separable_block(bias=False))


# -- SEP009 --------------------------------------------------------------------------------------


def test_inflated_kernel(clean):
    _, pointwise = _convs_by_kind(clean)
    mangled = mangle.inflated_kernel(clean)
    weights = _initializers(mangled)
    for name in pointwise:
        node = _node(mangled, name)
        w = weights[node.input[1]]
        assert w.shape[2:] == (3, 3)
        assert _attrs(node)["pads"] == [1, 1, 1, 1]
        assert _attrs(node).get("kernel_shape", [3, 3]) == [3, 3]
        off_centre = w.copy()
        off_centre[:, :, 1, 1] = 0
        assert not np.any(off_centre) and np.any(w[:, :, 1, 1])
    assert _convs_by_kind(mangled)[1] == []
    _assert_valid_and_named(clean, mangled)
    _assert_same_function(clean, mangled)


# -- selection and errors ------------------------------------------------------------------------


def test_nodes_selects_only_named_convs():
    clean = builders.mobilenet_like()
    depthwise, _ = _convs_by_kind(clean)
    mangled = mangle.dense_depthwise(clean, nodes=[depthwise[1]])
    assert _convs_by_kind(mangled)[0] == [depthwise[0], depthwise[2]]
    _assert_same_function(clean, mangled)


def test_nodes_rejects_ineligible_names():
    clean = builders.mobilenet_like()
    _, pointwise = _convs_by_kind(clean)
    with pytest.raises(ValueError, match="not depthwise"):
        mangle.dense_depthwise(clean, nodes=[pointwise[0]])
    with pytest.raises(ValueError, match="not depthwise"):
        mangle.dense_depthwise(clean, nodes=["no_such_node"])


@pytest.mark.parametrize(
    "apply",
    [
        mangle.dense_depthwise,
        lambda m: mangle.group_attribute(m, 0),
        mangle.split_depthwise,
    ],
)
def test_depthwise_mangles_refuse_models_without_depthwise(apply):
    with pytest.raises(ValueError, match="no depthwise"):
        apply(builders.resnext_grouped())


def test_unknown_kinds_are_refused():
    clean = builders.separable_block()
    with pytest.raises(ValueError, match="unknown how"):
        mangle.runtime_weights(clean, "bogus")
    with pytest.raises(ValueError, match="unknown how"):
        mangle.kernel_shape(clean, "bogus")


def test_dropped_constants_leave_no_orphans(clean):
    """Replaced weights are removed, so sample models stay small and rules see one weight."""
    for mangled in (
        mangle.dense_depthwise(clean),
        mangle.split_depthwise(clean),
        mangle.matmul_pointwise(clean),
    ):
        consumed = {name for n in mangled.graph.node for name in n.input}
        assert {t.name for t in mangled.graph.initializer} <= consumed


# -- builders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", builders.ACTIVATIONS)
def test_mobilenet_like_activations(activation):
    model = builders.mobilenet_like(channels=(8, 16), activation=activation, depth_multiplier=2)
    depthwise, pointwise = _convs_by_kind(model)
    assert len(depthwise) == len(pointwise) == 2
    assert _ops(model)["Add"] == 1, "the first block keeps its width and gets a residual"
    (output,) = _run(model, _feed(model))
    assert output.shape == (1, 16, 16, 16)


@pytest.mark.parametrize(
    "build",
    [
        builders.resnext_grouped,
        builders.dense_with_zeros,
        builders.repvgg_kernel,
        builders.convnext_linear,
        builders.weight_graph_input,
        builders.qdq_weights,
    ],
)
def test_negative_controls_are_valid_and_run(build):
    model = build()
    onnx.checker.check_model(model, full_check=True)
    _assert_named(model, model)
    (output,) = _run(model, _feed(model))
    assert np.all(np.isfinite(output))


def test_negative_controls_are_not_depthwise_separable_by_construction():
    weights = _initializers(builders.dense_with_zeros())
    dense = weights["dense_conv_weight"]
    assert np.any(dense[~np.eye(dense.shape[0], dtype=bool)]) and np.mean(dense == 0) > 0.4
    repvgg = _initializers(builders.repvgg_kernel())["repvgg_conv_weight"]
    assert np.all(repvgg != 0) and np.all(np.abs(repvgg[:, :, [0, 2], :]) < 0.011)
    assert _convs_by_kind(builders.resnext_grouped())[0] == []


# -- sample models -------------------------------------------------------------------------------


def test_make_samples_reproduces_sample_models(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "make_samples.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = sorted(p.name for p in (REPO_ROOT / "sample_models").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (
            REPO_ROOT / "sample_models" / name
        ).read_bytes(), name
    for path in tmp_path.glob("*.onnx"):
        assert path.stat().st_size < 100_000
