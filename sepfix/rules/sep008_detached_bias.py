"""## What it does
Finds a depthwise or pointwise conv whose bias is applied by a separate `Add` of a constant
shaped `(1, C, 1, 1)` (or `(C, 1, 1)`), instead of the conv's own bias input.

## Why is this bad
TensorRT fuses a conv with its bias and activation into one kernel; a separate Add is an extra
element-wise layer (often fused back only in some precisions), and it stands between the conv
and the BatchNormalization or activation that should fuse into it. Exporters that split
`Conv + BiasAdd` (TF) and graph rewriters that hoist biases produce this.

## Example
`Conv(x, W) -> Add(b_1c11)`.

## Use instead
`Conv(x, W, b)` with `b = b_1c11.reshape(C)` (added to an existing bias, when there is one).

## Fix safety
Validated: the same additions, but the runtime may add the bias inside the accumulator rather
than after it, which can move the last bits; the validator compares the outputs.
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex
from sepfix.patterns import ConvKind, all_convs
from sepfix.rules.base import Match, fmt_shape

CODE = "SEP008"
NAME = "detached-bias"
SUMMARY = "conv bias applied by a separate Add of a (1,C,1,1) constant"
LEVEL = "warning"
APPLICABILITY = "validated"
SOURCES = ["TF Conv + BiasAdd exported as two nodes (tf2onnx, onnx-tensorflow)"]


def match(index: GraphIndex):
    for info in all_convs(index):
        if info.kind not in (ConvKind.DEPTHWISE, ConvKind.POINTWISE) or info.c_out is None:
            continue
        found = match_detached_bias(index, info)
        if found is None:
            continue
        add, bias_name, bias_shape = found
        bound = {"weight": info.node.input(1), "extra": bias_name}
        if info.node.input(2):
            bound["bias"] = info.node.input(2)
        yield Match(
            info.node,
            f"{info.kind.value} conv's bias is a separate Add of a {fmt_shape(bias_shape)} constant "
            f"({add.label}); fold it into the conv's bias",
            roles={"add": add},
            bound=bound,
            evidence={"bias_shape": list(bias_shape), "conv_has_bias": bool(info.node.input(2))},
        )


def match_detached_bias(index: GraphIndex, info):
    """(add node, constant name, its shape) or None."""
    scope = info.node.scope
    output = info.node.node.output[0]
    add = index.sole_consumer(scope, output)
    if add is None or add.op != "Add":
        return None
    others = [n for n in add.node.input if n != output]
    if len(others) != 1 or not index.is_constant(scope, others[0]):
        return None
    if scope.is_graph_input(others[0]):
        return None
    shape = index.constant_shape(scope, others[0])
    rank = len(info.weight_shape)
    if shape is None or len(shape) > rank or len(shape) < rank - 1:
        return None
    channel_axis = 1 - (rank - len(shape))
    if shape[channel_axis] != info.c_out or int(np.prod(shape)) != info.c_out:
        return None
    if info.node.input(2) and not index.is_constant(scope, info.node.input(2)):
        return None
    return add, others[0], tuple(shape)


def rewrite(ctx, match: Match) -> str:
    """Add the (1,C,1,1) constant into the conv's bias; the conv writes the Add's output."""
    conv, add = ctx.anchor, ctx.role("add")
    extra = ctx.value(match.bound["extra"]).reshape(-1)
    weight_dtype = ctx.dtype(match.bound["weight"])
    if "bias" in match.bound:
        bias = ctx.value(match.bound["bias"]).reshape(-1) + extra
    else:
        bias = extra
    bias = bias.astype(weight_dtype)
    new_bias = ctx.constant(f"{conv.name}_bias", bias)
    if len(conv.inputs) > 2:
        conv.inputs[2] = new_bias
    else:
        conv.inputs.append(new_bias)
    output = add.outputs[0]
    add.outputs = []
    conv.outputs = [output]
    ctx.touch(conv)
    return f"Add {add.name} folded into the conv's bias ({bias.shape[0]} channels)"
