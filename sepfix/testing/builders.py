"""Builders of small, clean ONNX models for tests and sample models.

Clean means "what a careful exporter writes": depthwise convs keep group == C and a
(C*M, 1, k, k) weight, pointwise convs are real 1x1 convs, every weight is a plain initializer.
The manglers of `tests/rules/` (built on `sepfix.testing.mangle`) damage these models the way
real exporters did; the negative controls here are valid models that look suspicious but that
no rule may flag.

All models use opset 13 (17 for `convnext_linear`, which needs LayerNormalization) and
IR version 8 so that onnxruntime loads them; weights come from a seeded numpy generator so
the same arguments always give the same bytes; every node has a unique name because TensorRT
reports layers by node name.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sepfix.names import NameSource

IR_VERSION = 8
OPSET = 13
ACTIVATIONS = ("relu", "relu6", "hardswish", "swish")


class _GraphBuilder:
    """Accumulates nodes and initializers, handing out unique node and tensor names."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.unique = NameSource()  # unique("x") -> "x", then "x_1", "x_2" ...

    def constant(self, base: str, array: np.ndarray) -> str:
        name = self.unique(base)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op_type: str, inputs: list[str], base: str, **attributes) -> str:
        """Add a single-output node named `base` (made unique); return its output tensor."""
        name = self.unique(base)
        output = self.unique(f"{name}_out")
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name, **attributes))
        return output

    def conv_weight(self, c_out: int, c_in_per_group: int, kernel: tuple[int, ...]) -> np.ndarray:
        fan_in = c_in_per_group * math.prod(kernel)
        shape = (c_out, c_in_per_group, *kernel)
        return self.rng.normal(0.0, 1.0 / math.sqrt(fan_in), size=shape).astype(np.float32)

    def bias(self, channels: int) -> np.ndarray:
        return self.rng.normal(0.0, 0.1, size=channels).astype(np.float32)

    def conv(
        self,
        x: str,
        base: str,
        weight: np.ndarray,
        bias: np.ndarray | None,
        group: int = 1,
        stride: int = 1,
        dilation: int = 1,
    ) -> str:
        """Conv with symmetric 'same'-style pads and kernel_shape written, as exporters do."""
        kernel = list(weight.shape[2:])
        pads_begin = [dilation * (k - 1) // 2 for k in kernel]
        inputs = [x, self.constant(f"{base}_weight", weight)]
        if bias is not None:
            inputs.append(self.constant(f"{base}_bias", bias))
        return self.node(
            "Conv",
            inputs,
            base,
            group=group,
            kernel_shape=kernel,
            pads=pads_begin + pads_begin,
            strides=[stride] * len(kernel),
            dilations=[dilation] * len(kernel),
        )

    def batch_norm(self, x: str, base: str, channels: int) -> str:
        scale = self.rng.uniform(0.8, 1.2, size=channels).astype(np.float32)
        shift = self.rng.normal(0.0, 0.1, size=channels).astype(np.float32)
        mean = self.rng.normal(0.0, 0.1, size=channels).astype(np.float32)
        var = self.rng.uniform(0.5, 1.5, size=channels).astype(np.float32)
        inputs = [x] + [
            self.constant(f"{base}_{part}", value)
            for part, value in (("scale", scale), ("shift", shift), ("mean", mean), ("var", var))
        ]
        return self.node("BatchNormalization", inputs, base, epsilon=1e-5)

    def activation(self, x: str, base: str, kind: str) -> str:
        if kind == "relu":
            return self.node("Relu", [x], base)
        if kind == "relu6":
            low = self.constant(f"{base}_min", np.array(0.0, dtype=np.float32))
            high = self.constant(f"{base}_max", np.array(6.0, dtype=np.float32))
            return self.node("Clip", [x, low, high], base)
        if kind == "hardswish":
            # HardSwish is opset 14; x * HardSigmoid(x, 1/6, 0.5) is the opset-13 spelling.
            gate = self.node("HardSigmoid", [x], f"{base}_gate", alpha=1.0 / 6.0, beta=0.5)
            return self.node("Mul", [x, gate], base)
        if kind == "swish":
            gate = self.node("Sigmoid", [x], f"{base}_gate")
            return self.node("Mul", [x, gate], base)
        raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")

    def model(
        self,
        inputs: list[onnx.ValueInfoProto],
        outputs: list[onnx.ValueInfoProto],
        graph_name: str,
        opset: int = OPSET,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, graph_name, inputs, outputs, self.initializers)
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", opset)],
            ir_version=IR_VERSION,
            producer_name="sepfix.testing.builders",
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def _float_tensor(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _rename_output(builder: _GraphBuilder, tensor: str, new_name: str) -> None:
    """Make the last node write the graph output's name directly (no Identity needed)."""
    last = builder.nodes[-1]
    assert last.output[0] == tensor, "only the last node's output can become the graph output"
    last.output[0] = new_name


def _conv_output_size(size: int, k: int, stride: int, dilation: int) -> int:
    pad = dilation * (k - 1) // 2
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


def mobilenet_like(
    channels: tuple[int, ...] = (8, 16, 24),
    spatial: int = 16,
    depth_multiplier: int = 1,
    activation: str = "relu6",
    seed: int = 0,
) -> onnx.ModelProto:
    """A MobileNet-style stack: the DW→BN→act→PW blocks every rule is about.

    Stem: 3x3 dense conv 3→channels[0] + BN + Clip(0, 6). Then one block per entry of
    `channels`: depthwise 3x3 (group=C, weight (C*M,1,3,3), bias) → BN → activation →
    pointwise 1x1 to that entry, plus a residual Add when the block keeps the channel count
    (the first block always does), as in MobileNetV2.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
    if depth_multiplier < 1:
        raise ValueError("depth_multiplier must be >= 1")
    b = _GraphBuilder(seed)
    x = b.conv("input", "stem_conv", b.conv_weight(channels[0], 3, (3, 3)), b.bias(channels[0]))
    x = b.batch_norm(x, "stem_bn", channels[0])
    x = b.activation(x, "stem_act", "relu6")
    c = channels[0]
    for i, c_out in enumerate(channels):
        block_input = x
        dw_channels = c * depth_multiplier
        x = b.conv(
            x,
            f"block{i}_dw_conv",
            b.conv_weight(dw_channels, 1, (3, 3)),
            b.bias(dw_channels),
            group=c,
        )
        x = b.batch_norm(x, f"block{i}_dw_bn", dw_channels)
        x = b.activation(x, f"block{i}_dw_act", activation)
        x = b.conv(x, f"block{i}_pw_conv", b.conv_weight(c_out, dw_channels, (1, 1)), b.bias(c_out))
        if c_out == c:
            x = b.node("Add", [block_input, x], f"block{i}_residual_add")
        c = c_out
    _rename_output(b, x, "output")
    return b.model(
        [_float_tensor("input", [1, 3, spatial, spatial])],
        [_float_tensor("output", [1, c, spatial, spatial])],
        "mobilenet_like",
    )


def separable_block(
    c_in: int = 8,
    c_out: int = 16,
    k: int = 3,
    stride: int = 1,
    dilation: int = 1,
    depth_multiplier: int = 1,
    bias: bool = True,
    spatial: int = 12,
    seed: int = 0,
) -> onnx.ModelProto:
    """One depthwise k×k conv → Relu → pointwise 1x1 conv: the smallest case for a rule."""
    b = _GraphBuilder(seed)
    dw_channels = c_in * depth_multiplier
    x = b.conv(
        "input",
        "dw_conv",
        b.conv_weight(dw_channels, 1, (k, k)),
        b.bias(dw_channels) if bias else None,
        group=c_in,
        stride=stride,
        dilation=dilation,
    )
    x = b.node("Relu", [x], "dw_relu")
    x = b.conv(
        x, "pw_conv", b.conv_weight(c_out, dw_channels, (1, 1)), b.bias(c_out) if bias else None
    )
    _rename_output(b, x, "output")
    out_size = _conv_output_size(spatial, k, stride, dilation)
    return b.model(
        [_float_tensor("input", [1, c_in, spatial, spatial])],
        [_float_tensor("output", [1, c_out, out_size, out_size])],
        "separable_block",
    )


# --- negative controls: valid models that no rule may flag ------------------------------------


def resnext_grouped(
    channels: int = 16, groups: int = 4, spatial: int = 12, seed: int = 0
) -> onnx.ModelProto:
    """Grouped 3x3 conv with 1 < group < C (ResNeXt, RegNet) then a 1x1 conv: not depthwise."""
    if not 1 < groups < channels or channels % groups:
        raise ValueError("need 1 < groups < channels with channels divisible by groups")
    b = _GraphBuilder(seed)
    x = b.conv(
        "input",
        "grouped_conv",
        b.conv_weight(channels, channels // groups, (3, 3)),
        b.bias(channels),
        group=groups,
    )
    x = b.node("Relu", [x], "grouped_relu")
    x = b.conv(x, "pw_conv", b.conv_weight(channels, channels, (1, 1)), b.bias(channels))
    _rename_output(b, x, "output")
    shape = [1, channels, spatial, spatial]
    return b.model(
        [_float_tensor("input", shape)], [_float_tensor("output", shape)], "resnext_grouped"
    )


def dense_with_zeros(
    channels: int = 8, spatial: int = 12, zero_fraction: float = 0.6, seed: int = 0
) -> onnx.ModelProto:
    """Dense 3x3 conv (group 1, C_in == C_out) whose many zeros are random, not structural.

    It must not look like SEP001's block-diagonal weight (off-diagonal channel pairs carry
    weight) nor like SEP009's inflated kernel (off-centre taps carry weight). Followed by a 1x1
    conv so that it sits where a depthwise conv would.
    """
    b = _GraphBuilder(seed)
    weight = b.conv_weight(channels, channels, (3, 3))
    weight[b.rng.random(weight.shape) < zero_fraction] = 0.0
    off_diagonal = ~np.eye(channels, dtype=bool)
    off_centre = np.ones((3, 3), dtype=bool)
    off_centre[1, 1] = False
    # The random zeros must never make the weight structural; seeds where they would are refused.
    if not np.any(weight[off_diagonal]) or not np.any(weight[:, :, off_centre]):
        raise ValueError(f"seed {seed} made the zeros structural; pick another")
    x = b.conv("input", "dense_conv", weight, b.bias(channels))
    x = b.node("Relu", [x], "dense_relu")
    x = b.conv(x, "pw_conv", b.conv_weight(channels, channels, (1, 1)), b.bias(channels))
    _rename_output(b, x, "output")
    shape = [1, channels, spatial, spatial]
    return b.model(
        [_float_tensor("input", shape)], [_float_tensor("output", shape)], "dense_with_zeros"
    )


def repvgg_kernel(channels: int = 8, spatial: int = 12, seed: int = 0) -> onnx.ModelProto:
    """RepVGG-style merged 3x3 conv: a dominant centre tap, small but non-zero off-centre taps.

    SEP009 shrinks kernels whose off-centre taps are exactly zero; this one must stay 3x3.
    """
    b = _GraphBuilder(seed)
    small = b.rng.uniform(1e-3, 1e-2, size=(channels, channels, 3, 3)).astype(np.float32)
    signs = np.where(b.rng.random(small.shape) < 0.5, -1.0, 1.0).astype(np.float32)
    weight = small * signs
    weight[:, :, 1, 1] = b.conv_weight(channels, channels, (1, 1))[:, :, 0, 0]
    x = b.conv("input", "repvgg_conv", weight, b.bias(channels))
    x = b.node("Relu", [x], "repvgg_relu")
    _rename_output(b, x, "output")
    shape = [1, channels, spatial, spatial]
    return b.model(
        [_float_tensor("input", shape)], [_float_tensor("output", shape)], "repvgg_kernel"
    )


def convnext_linear(channels: int = 16, spatial: int = 8, seed: int = 0) -> onnx.ModelProto:
    """A ConvNeXt block: depthwise 7x7 → NHWC → LayerNorm → Linear → GELU → Linear → NCHW.

    Its MatMuls are nn.Linear layers after a LayerNorm, not 1x1 convs that an exporter turned
    into MatMul, so SEP006 must stay silent (opset 17 for LayerNormalization).
    """
    hidden = 4 * channels
    b = _GraphBuilder(seed)
    x = b.conv(
        "input", "dw_conv", b.conv_weight(channels, 1, (7, 7)), b.bias(channels), group=channels
    )
    x = b.node("Transpose", [x], "to_nhwc", perm=[0, 2, 3, 1])
    ln_scale = b.constant("ln_scale", b.rng.uniform(0.8, 1.2, size=channels).astype(np.float32))
    ln_bias = b.constant("ln_bias", b.bias(channels))
    x = b.node("LayerNormalization", [x, ln_scale, ln_bias], "layer_norm", axis=-1, epsilon=1e-6)
    fc1 = b.rng.normal(0.0, 1.0 / math.sqrt(channels), size=(channels, hidden)).astype(np.float32)
    x = b.node("MatMul", [x, b.constant("fc1_weight", fc1)], "fc1_matmul")
    x = b.node("Add", [x, b.constant("fc1_bias", b.bias(hidden))], "fc1_add")
    # GELU spelled with Erf, as exporters before opset 20 write it: x * 0.5 * (1 + erf(x / √2)).
    scaled = b.node(
        "Div", [x, b.constant("gelu_sqrt2", np.array(math.sqrt(2.0), np.float32))], "gelu_div"
    )
    erf = b.node("Erf", [scaled], "gelu_erf")
    one_plus = b.node("Add", [erf, b.constant("gelu_one", np.array(1.0, np.float32))], "gelu_add")
    gated = b.node("Mul", [x, one_plus], "gelu_mul")
    x = b.node("Mul", [gated, b.constant("gelu_half", np.array(0.5, np.float32))], "gelu_half_mul")
    fc2 = b.rng.normal(0.0, 1.0 / math.sqrt(hidden), size=(hidden, channels)).astype(np.float32)
    x = b.node("MatMul", [x, b.constant("fc2_weight", fc2)], "fc2_matmul")
    x = b.node("Add", [x, b.constant("fc2_bias", b.bias(channels))], "fc2_add")
    gamma = b.rng.uniform(0.1, 0.5, size=channels).astype(np.float32)
    x = b.node("Mul", [x, b.constant("layer_scale_gamma", gamma)], "layer_scale")
    x = b.node("Transpose", [x], "to_nchw", perm=[0, 3, 1, 2])
    x = b.node("Add", ["input", x], "residual_add")
    _rename_output(b, x, "output")
    shape = [1, channels, spatial, spatial]
    return b.model(
        [_float_tensor("input", shape)],
        [_float_tensor("output", shape)],
        "convnext_linear",
        opset=17,
    )


def weight_graph_input(channels: int = 8, spatial: int = 12, seed: int = 0) -> onnx.ModelProto:
    """A depthwise-shaped conv whose weight "dw_weight" is a true graph input (no initializer).

    The weight is data the caller supplies, so there is nothing to fold (SEP004 stays silent).
    """
    b = _GraphBuilder(seed)
    x = b.node(
        "Conv",
        ["input", "dw_weight"],
        "dw_conv",
        group=channels,
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    x = b.node("Relu", [x], "dw_relu")
    x = b.conv(x, "pw_conv", b.conv_weight(channels, channels, (1, 1)), b.bias(channels))
    _rename_output(b, x, "output")
    shape = [1, channels, spatial, spatial]
    return b.model(
        [_float_tensor("input", shape), _float_tensor("dw_weight", [channels, 1, 3, 3])],
        [_float_tensor("output", shape)],
        "weight_graph_input",
    )


def _symmetric_int8(weight: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 quantization, per tensor (axis None) or per channel along `axis`."""
    reduce_axes = None if axis is None else tuple(d for d in range(weight.ndim) if d != axis)
    scale = (np.abs(weight).max(axis=reduce_axes) / 127.0).astype(np.float32)
    shaped_scale = scale if axis is None else scale.reshape([-1] + [1] * (weight.ndim - 1))
    quantized = np.clip(np.round(weight / shaped_scale), -127, 127).astype(np.int8)
    return quantized, scale


def qdq_weights(
    channels: int = 8, c_out: int = 16, spatial: int = 12, seed: int = 0
) -> onnx.ModelProto:
    """Explicitly quantized DW→PW block: weights reach the convs through Q/DQ; kernel_shape set.

    Depthwise weight: int8 initializer → DequantizeLinear (per channel). Pointwise weight: float
    initializer → QuantizeLinear → DequantizeLinear (per tensor). Activations get Q/DQ pairs too,
    as QAT exports write them. TensorRT needs these Q/DQ nodes, so SEP004 must not fold them, and
    kernel_shape is present, so SEP003 has nothing to add.
    """
    b = _GraphBuilder(seed)

    def activation_qdq(x: str, base: str) -> str:
        scale = b.constant(f"{base}_scale", np.array(0.05, dtype=np.float32))
        zero_point = b.constant(f"{base}_zero_point", np.array(0, dtype=np.int8))
        q = b.node("QuantizeLinear", [x, scale, zero_point], f"{base}_quantize")
        return b.node("DequantizeLinear", [q, scale, zero_point], f"{base}_dequantize")

    dw_q, dw_scale = _symmetric_int8(b.conv_weight(channels, 1, (3, 3)), axis=0)
    dw_weight = b.node(
        "DequantizeLinear",
        [
            b.constant("dw_weight_int8", dw_q),
            b.constant("dw_weight_scale", dw_scale),
            b.constant("dw_weight_zero_point", np.zeros(channels, dtype=np.int8)),
        ],
        "dw_weight_dequantize",
        axis=0,
    )
    x = activation_qdq("input", "dw_input")
    x = b.node(
        "Conv",
        [x, dw_weight, b.constant("dw_bias", b.bias(channels))],
        "dw_conv",
        group=channels,
        kernel_shape=[3, 3],
        pads=[1, 1, 1, 1],
    )
    x = b.node("Relu", [x], "dw_relu")

    pw_float = b.conv_weight(c_out, channels, (1, 1))
    pw_weight_scale = b.constant(
        "pw_weight_scale", np.array(np.abs(pw_float).max() / 127.0, dtype=np.float32)
    )
    pw_weight_zero_point = b.constant("pw_weight_zero_point", np.array(0, dtype=np.int8))
    pw_q = b.node(
        "QuantizeLinear",
        [b.constant("pw_weight", pw_float), pw_weight_scale, pw_weight_zero_point],
        "pw_weight_quantize",
    )
    pw_weight = b.node(
        "DequantizeLinear", [pw_q, pw_weight_scale, pw_weight_zero_point], "pw_weight_dequantize"
    )
    x = activation_qdq(x, "pw_input")
    x = b.node(
        "Conv",
        [x, pw_weight, b.constant("pw_bias", b.bias(c_out))],
        "pw_conv",
        group=1,
        kernel_shape=[1, 1],
    )
    _rename_output(b, x, "output")
    return b.model(
        [_float_tensor("input", [1, channels, spatial, spatial])],
        [_float_tensor("output", [1, c_out, spatial, spatial])],
        "qdq_weights",
    )


def in_if_branch(model: onnx.ModelProto, name: str = "branch") -> onnx.ModelProto:
    """`model`'s graph as the then-branch of an If (the else-branch passes the input through),
    for tests of findings and fixes inside subgraphs. Inputs: `flag` (bool), then the model's."""
    then_graph = onnx.helper.make_graph(list(model.graph.node), "then", [], list(model.graph.output),
                                        list(model.graph.initializer))
    source = model.graph.input[0].name
    passthrough = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", [source], ["passthrough"])], "else", [],
        [onnx.helper.make_tensor_value_info("passthrough", onnx.TensorProto.FLOAT, None)])
    outer = onnx.helper.make_graph(
        [onnx.helper.make_node("If", ["flag"], ["result"], name=name, then_branch=then_graph,
                               else_branch=passthrough)],
        "outer",
        [onnx.helper.make_tensor_value_info("flag", onnx.TensorProto.BOOL, []), *model.graph.input],
        [onnx.helper.make_tensor_value_info("result", onnx.TensorProto.FLOAT, None)],
    )
    return onnx.helper.make_model(outer, opset_imports=list(model.opset_import), ir_version=model.ir_version)
