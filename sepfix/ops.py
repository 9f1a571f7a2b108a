"""ONNX op families: the one table every part of sepfix reads (graph, patterns, rules, the
TensorRT report), so that "what is an activation" has one answer.

Only `ai.onnx` ops are what their names say: a `com.microsoft` FusedConv is not a Conv. Node
views give `op` as the bare name for the default domain and `domain.Name` otherwise, so these
tables never match a runtime-private op by accident.
"""

from __future__ import annotations

CONV_OPS = frozenset({"Conv", "ConvTranspose"})
BATCHNORM_OPS = frozenset({"BatchNormalization"})
# Unary activations: element-wise, no axis, one tensor input (Clip's bounds are constants).
ACTIVATION_OPS = frozenset({
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Celu", "Softplus", "Softsign", "Gelu", "ThresholdedRelu", "PRelu", "Mish",
})
# Element-wise ops that commute with any transpose (one data input, no axis).
UNARY_ELEMENTWISE_OPS = (ACTIVATION_OPS - {"PRelu"}) | {"Identity", "Neg", "Abs", "Exp", "Erf", "Cast", "Sqrt", "Reciprocal"}
BINARY_ELEMENTWISE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"})
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
ADD_OPS = frozenset({"Add", "Sum"})
# Ops through which a constant stays a constant and sepfix can evaluate it with numpy. Q/DQ is
# resolved for shapes and values too, but rules never fold it (explicit quantization needs it).
FOLDABLE_OPS = frozenset({"Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
# Ops whose output has its input's channel count (dim 1).
CHANNEL_PRESERVING_OPS = (ACTIVATION_OPS | BATCHNORM_OPS | QUANT_OPS | BINARY_ELEMENTWISE_OPS | {
    "Identity", "Dropout", "InstanceNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
    "GlobalMaxPool", "Pad", "Resize", "Upsample", "Cast",
})
# Ops a depthwise output may pass through on its way to the pointwise conv of its block
# (Q/DQ too: explicit quantization puts a Q->DQ pair before every conv input).
BLOCK_PASSTHROUGH_OPS = ACTIVATION_OPS | BATCHNORM_OPS | QUANT_OPS | {"Identity", "Dropout"}
