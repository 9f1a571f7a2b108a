"""## What it does
Finds `Transpose(channels last) -> MatMul(constant (C_in, C_out)) -> [Add(bias)] ->
Transpose(channels first)`: a pointwise 1x1 convolution written as a matrix product on an
NHWC view of an NCHW tensor.

## Why is this bad
TensorRT sees two layout shuffles and a generic matrix multiply instead of a 1x1 convolution:
no conv+bias+activation fusion, no residual-add fusion, two extra memory round trips per block.
TF/Keras and JAX converters produce it for Dense layers applied to feature maps.

## Example
`Transpose(x, perm=[0,2,3,1]) -> MatMul(W (32, 64)) -> Add(b) -> Transpose(perm=[0,3,1,2])`.

## Use instead
`Conv(x, W.T[:, :, None, None], b)` with `group=1`, kernel 1x1.

## Fix safety
Validated: the same dot products, but a conv kernel may sum them in another order; the
validator compares the outputs before anything is written.

## Known problems
A MatMul on a channels-last tensor that is not transposed straight back (ConvNeXt's Linear
layers after a LayerNorm) is not a 1x1 conv in the original network and is left alone.
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex, Node
from sepfix.rules.base import Match

CODE = "SEP006"
NAME = "matmul-pointwise"
SUMMARY = "Transpose -> MatMul -> (Add) -> Transpose standing for a 1x1 conv"
LEVEL = "warning"
APPLICABILITY = "validated"
SOURCES = ["Keras/TF Dense on feature maps through tf2onnx", "JAX/Flax Dense exported channels-last"]


def channels_last_perm(rank: int) -> list[int]:
    return [0] + list(range(2, rank)) + [1]


def channels_first_perm(rank: int) -> list[int]:
    return [0, rank - 1] + list(range(1, rank - 1))


def match(index: GraphIndex):
    for first in index.nodes("Transpose"):
        found = match_matmul_pointwise(index, first)
        if found is None:
            continue
        matmul, add, last, weight_shape = found
        roles = {"first": first, "last": last}
        bound = {"weight": matmul.input(1)}
        if add is not None:
            roles["add"] = add
            bound["bias"] = next(n for n in add.node.input if n != matmul.node.output[0])
        yield Match(
            matmul,
            f"Transpose -> MatMul{' -> Add' if add else ''} -> Transpose with weight "
            f"({weight_shape[0]}, {weight_shape[1]}) is a 1x1 conv {weight_shape[0]} -> "
            f"{weight_shape[1]} channels",
            roles=roles,
            bound=bound,
            evidence={"c_in": weight_shape[0], "c_out": weight_shape[1], "has_bias": add is not None,
                      "transposes": [first.label, last.label]},
        )


def match_matmul_pointwise(index: GraphIndex, first: Node):
    """(matmul, add or None, last transpose, (C_in, C_out)) or None."""
    scope = first.scope
    perm = first.attr("perm")
    if perm is None or len(perm) < 3 or list(perm) != channels_last_perm(len(perm)):
        return None
    rank = len(perm)
    matmul = index.sole_consumer(scope, first.node.output[0])
    if matmul is None or matmul.op != "MatMul" or matmul.input(0) != first.node.output[0]:
        return None
    weight_shape = index.constant_shape(scope, matmul.input(1))
    if weight_shape is None or len(weight_shape) != 2 or not index.is_constant(scope, matmul.input(1)):
        return None
    following = index.sole_consumer(scope, matmul.node.output[0])
    add = None
    if following is not None and following.op == "Add":
        other = [n for n in following.node.input if n != matmul.node.output[0]]
        bias_shape = index.constant_shape(scope, other[0]) if len(other) == 1 else None
        if bias_shape is None or not index.is_constant(scope, other[0]):
            return None
        if int(np.prod(bias_shape)) != weight_shape[1] or (bias_shape and bias_shape[-1] != weight_shape[1]):
            return None
        add = following
        following = index.sole_consumer(scope, add.node.output[0])
    if following is None or following.op != "Transpose":
        return None
    if list(following.attr("perm") or []) != channels_first_perm(rank):
        return None
    return matmul, add, following, tuple(int(d) for d in weight_shape)


def rewrite(ctx, match: Match) -> str:
    """Conv(x, W^T as (C_out, C_in, 1, ...), b) writing the closing Transpose's output."""
    matmul, first, following = ctx.anchor, ctx.role("first"), ctx.role("last")
    rank = len(first.attrs["perm"])
    bias = ctx.value(match.bound["bias"]).reshape(-1) if "bias" in match.bound else None
    matrix = ctx.value(match.bound["weight"])
    weight = matrix.T.reshape(matrix.shape[1], matrix.shape[0], *([1] * (rank - 2)))
    output = following.outputs[0]
    following.outputs = []
    base = matmul.name or "pointwise"
    inputs = [first.inputs[0], ctx.constant(f"{base}_weight", weight)]
    if bias is not None:
        inputs.append(ctx.constant(f"{base}_bias", bias.astype(weight.dtype)))
    ctx.node("Conv", f"{base}_conv", inputs=inputs, outputs=[output],
             attrs={"kernel_shape": [1] * (rank - 2), "group": 1})
    return f"Transpose -> MatMul{' -> Add' if bias is not None else ''} -> Transpose -> 1x1 Conv {matrix.shape[0]} -> {matrix.shape[1]}"
