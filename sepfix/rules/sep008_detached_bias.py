"""## What it does
Finds a conv whose output goes through per-channel affine ops before anything else reads it:
`Mul`, `Div`, `Add` or `Sub` by a constant that holds one value per output channel (shape
`(1, C, 1, 1)`, `(C, 1, 1)`) or one value for all (`()`, `(1,)`), in any order and number,
with `Identity` nodes between. A detached bias (`Conv -> Add(b)`) is the simplest case;
BatchNormalization written out as `Mul(scale) -> Add(shift)` (Keras 3 through tf2onnx after
depthwise convs), a layer scale (`Mul(gamma)`, timm FastViT) and PaddleOCR's learnable affine
(`scale * x + bias`, paddle2onnx, with Identity nodes between) are the others seen in real
exports.

## Why is this bad
Each op is one more pass over the conv's output, where folding it into the conv's weight
(scales) and bias (shifts) costs nothing at run time, and an op left between the conv and its
activation keeps runtimes from fusing the two. Whether a runtime folds the chain itself decides
the level. Measured with `scripts/bench_sep008.py` (ONNX Runtime CPU, one thread, default
optimizations, medians of 60 interleaved runs on a shared 2-core machine at a quiet moment,
load 1.8; and, deterministic, the nodes ONNX Runtime runs after its ORT_ENABLE_EXTENDED
optimizations, as written / repaired):
- `info` where ONNX Runtime folds the chain itself: a Conv followed by `Add` and `Mul` whose
  constant is the second input, shaped `(C, 1, 1)` or `(1, C, 1, 1)` (or a `()` scalar for
  `Mul`) (its ConvAddFusion / ConvMulFusion). Its optimized graph is then node for node the one
  sepfix writes, and the time the same: Keras 3 MobileNetV2 52 / 52 nodes, 1.02x; EfficientNet
  99 / 99, 1.02x; PaddleOCR cls bias Adds 119 / 119, 1.01x; timm FastViT's layer scale 98 / 98,
  1.00x; the detached-bias mangle 6 / 6, 0.99x; one conv + Add 1.00x, + Mul + Add 0.99x. Issue
  13 measured the PaddleOCR bias Adds at 1.00x on CPU and 0.99-1.02x on the CUDA EP (H200).
  TensorRT documents the same folding: its Layer Fusion Catalog fuses a convolution with a
  following per-channel or uniform Scale into the convolution's weights, and element-wise ops
  into a pointwise (`PWN(...)`) layer fused with the convolution, as real `trtexec` logs show
  (`Conv_29 + PWN(Clip_33)`).
- `warning` for a chain ONNX Runtime leaves in the graph: `Sub`, `Div`, a constant written
  first (`Mul(gamma, x)`), a `(1,)` or `(1, 1, 1, 1)` constant (PaddleOCR's learnable affine),
  an `Add` of a scalar, any op after a `ConvTranspose`. Measured: PP-OCRv4 det (rep form,
  paddle2onnx 2 and 1) 259 / 200 nodes, 1.39x and 1.36x (1.34-1.48x under load); PP-OCRv4 rec
  289 / 233, 1.35x; Keras 3 MobileNetV3-Small 196 / 178, 1.08x (1.07-1.16x under load: its
  squeeze-excite convs add hard-sigmoid's +3 as a `(1, 1, 1, 1)` Add, which keeps ONNX Runtime
  from fusing the conv with its Clip); one 3x3 conv (64 channels, 56x56) followed by `Sub`,
  `Div`, or `Mul(g, x) -> Add` with `(1,)` constants: 3 / 1 nodes, 1.05x each.

## Example
`Conv(x, W) -> Mul(s_1c11) -> Add(b_1c11)`; `Conv(x, W) -> Identity -> Mul(g_1, .) -> Identity -> Add(b_1)`.

## Use instead
`Conv(x, W', b')` with, per output channel, `W' = W * s` and `b' = b * s + t`, where `s` and
`t` are the chain's combined scale and shift (a `Sub` of the conv from a constant negates the
scale, a `Div` divides it).

## Fix safety
Validated: the same arithmetic, but a scale folded into the weights is applied before the
accumulation instead of after it, and the bias is added inside the accumulator, which can move
the last bits; the validator compares the outputs.

## Known problems
A scale is folded only into a conv whose weight is a plain constant (not Q/DQ, not a graph
input); a shift alone needs only a constant bias. BatchNormalization after a conv is left to
the runtimes (every one fuses it). A chain is folded up to its first op that is not a
per-channel affine (a constant varying over H or W, a runtime tensor, a division by zero).
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex, Node
from sepfix.patterns import all_convs
from sepfix.rules._affine import FOLDABLE_SOURCES, channel_vector, constant_shape, per_channel_size
from sepfix.rules.base import Level, Match, fmt_shape
from sepfix.rules.sep013_multi_branch import branch_convs

CODE = "SEP008"
NAME = "detached-bias"
SUMMARY = "per-channel Mul/Add/Sub/Div (a bias, an unfolded BN, a layer scale) after a conv, not folded into it"
LEVEL = "info"
APPLICABILITY = "validated"
SOURCES = [
    "TF Conv + BiasAdd exported as two nodes (tf2onnx, onnx-tensorflow)",
    "Keras 3 SavedModel -> tf2onnx: BatchNormalization after depthwise convs as Mul + Add (issue 14)",
    "paddle2onnx: PaddleOCR bias Adds and LearnableAffineBlock scale * x + bias (issue 13)",
    "ONNX Runtime basic graph optimizations: ConvAddFusion, ConvMulFusion (folded chains measured 1.00x)",
    "scripts/bench_sep008.py: ONNX Runtime CPU latency and optimized node counts, as written vs repaired",
    "TensorRT Layer Fusion Catalog: https://docs.nvidia.com/deeplearning/tensorrt/latest/performance/fusion-catalog.html",
    "TensorRT verbose build log, 'Fusing convolution weights from ... with scale ...': "
    "https://gist.github.com/blacksailer/ba795610cedca5747271da6698b7b994",
    "tests/data/trt-logs/trtexec_fpn_mobilenetv2_int8_build.log: 'Conv_N + PWN(Clip_M)' fused layers",
]

_AFFINE = ("Mul", "Div", "Add", "Sub")


def match(index: GraphIndex):
    branches = branch_convs(index)
    for info in all_convs(index):
        if info.c_out is None or info.weight_shape is None or id(info.node) in branches:
            continue
        found = _chain(index, info)
        if found is None:
            continue
        chain, steps, scales = found
        bound = {"weight": info.node.input(1)}
        if info.node.input(2):
            bound["bias"] = info.node.input(2)
        for i, (_, constant, _) in enumerate(steps):
            bound[f"operand{i}"] = constant
        folded = _onnxruntime_folds(info, steps)
        described = " -> ".join(f"{node.op} {fmt_shape(shape)}" for node, _, shape in steps)
        last = steps[-1][0]
        kind = "transposed" if info.transposed else info.kind.value
        rank = len(info.weight_shape)
        if len(steps) == 1 and steps[0][0].op == "Add" and per_channel_size(steps[0][2], rank) == info.c_out > 1:
            what = (f"its bias is a separate Add of a {fmt_shape(steps[0][2])} constant ({last.label}); "
                    "fold it into the conv's bias")
        else:
            what = (f"its output goes through {described} ({', '.join(n.label for n, _, _ in steps)}), a per-channel "
                    f"affine; fold it into the conv's {'weight and ' if scales else ''}bias")
        where = "" if folded else " (ONNX Runtime does not fold this chain)"
        yield Match(
            info.node,
            f"{kind} conv: {what}{where}",
            roles={"chain": chain},
            bound=bound,
            evidence={"ops": [n.op for n, _, _ in steps], "shapes": [list(s) for _, _, s in steps],
                      "bias_shape": list(steps[0][2]), "conv_has_bias": bool(info.node.input(2)),
                      "channels": info.c_out, "folded_by_onnxruntime": folded},
            level=Level.INFO if folded else Level.WARNING,
        )


def _chain(index: GraphIndex, info):
    """(nodes to remove in order, [(affine node, constant, its shape)], whether any scales)
    or None when no per-channel affine op follows the conv."""
    conv = info.node
    scope = conv.scope
    if conv.input(2) and constant_shape(index, scope, conv.input(2)) is None:
        return None  # a bias computed at run time
    can_scale = info.weight.kind in FOLDABLE_SOURCES
    rank = len(info.weight_shape)
    tensor = conv.node.output[0]
    chain: list[Node] = []
    pending: list[Node] = []  # Identity nodes, kept only when an affine op follows them
    steps = []
    scales = False
    while True:
        user = index.sole_consumer(scope, tensor)
        if user is None or len(user.node.output) != 1:
            break
        if user.op == "Identity":
            pending.append(user)
            tensor = user.node.output[0]
            continue
        step = _affine_step(index, user, tensor, rank, info.c_out)
        if step is None:
            break
        constant, shape, scaling = step
        if scaling and not can_scale:
            break
        scales |= scaling
        chain += pending + [user]
        pending = []
        steps.append((user, constant, shape))
        tensor = user.node.output[0]
    if not steps:
        return None
    return chain, steps, scales


def _affine_step(index: GraphIndex, node: Node, tensor: str, rank: int, channels: int):
    """(constant, its shape, whether it scales) when `node` applies a per-channel affine to `tensor`."""
    if node.op not in _AFFINE or len(node.node.input) != 2 or list(node.node.input).count(tensor) != 1:
        return None
    position = list(node.node.input).index(tensor)
    constant = node.node.input[1 - position]
    shape = constant_shape(index, node.scope, constant)
    if shape is None or per_channel_size(shape, rank) not in (1, channels):
        return None  # a runtime tensor, or a constant that varies over the spatial axes
    if node.op == "Div":
        if position != 0:
            return None  # c / conv is not affine
        value = index.constant_value(node.scope, constant)
        if value is None or not np.all(value != 0):
            return None
    scaling = node.op in ("Mul", "Div") or (node.op == "Sub" and position == 1)
    return constant, shape, scaling


def _onnxruntime_folds(info, steps) -> bool:
    """True when ONNX Runtime's ConvAddFusion / ConvMulFusion fold every op of the chain (as
    measured with onnxruntime 1.32: Conv only; the constant second; (C,1,1) or (1,C,1,1), or a
    () scalar for Mul)."""
    if info.transposed or len(info.weight_shape) != 4:
        return False
    channel_shapes = {(info.c_out, 1, 1), (1, info.c_out, 1, 1)}
    for node, constant, shape in steps:
        if node.op not in ("Add", "Mul") or node.node.input[1] != constant:
            return False
        if shape not in channel_shapes and not (node.op == "Mul" and shape == ()):
            return False
    return True


def rewrite(ctx, match: Match) -> str:
    """Fold the chain into the conv's weight and bias; the conv writes the chain's output."""
    conv, chain = ctx.anchor, ctx.role("chain")
    weight = ctx.value(match.bound["weight"]) if _scales(chain, conv) else None
    transposed = conv.op == "ConvTranspose"
    group = int(conv.attrs.get("group", 1))
    dtype = ctx.dtype(match.bound["weight"])
    c_out = int(match.evidence["channels"])
    scale, shift = np.ones(c_out), np.zeros(c_out)
    current = conv.outputs[0].name
    for node in chain:
        names = [t.name for t in node.inputs]
        if node.op != "Identity":
            position = names.index(current)
            value = channel_vector(ctx.value(names[1 - position]), c_out)
            if node.op == "Mul":
                scale, shift = scale * value, shift * value
            elif node.op == "Div":
                scale, shift = scale / value, shift / value
            elif node.op == "Add":
                shift = shift + value
            elif position == 0:  # conv - c
                shift = shift - value
            else:  # c - conv
                scale, shift = -scale, value - shift
        current = node.outputs[0].name
    bias = ctx.value(match.bound["bias"]).astype(np.float64).reshape(-1) if "bias" in match.bound else np.zeros(c_out)
    new_bias = ctx.constant(f"{conv.name}_bias", (bias * scale + shift).astype(dtype))
    if len(conv.inputs) > 2:
        conv.inputs[2] = new_bias
    else:
        conv.inputs.append(new_bias)
    if weight is not None:
        conv.inputs[1] = ctx.constant(f"{conv.name}_weight", _scaled(weight, scale, transposed, group).astype(dtype))
    last = chain[-1]
    output = last.outputs[0]
    last.outputs = []
    conv.outputs = [output]
    ctx.touch(conv)
    ops = [n.op for n in chain if n.op != "Identity"]
    if ops == ["Add"]:
        return f"Add {chain[-1].name} folded into the conv's bias ({c_out} channels)"
    return (f"{' -> '.join(ops)} folded into the conv's {'weight and ' if weight is not None else ''}bias "
            f"({c_out} channels)")


def _scales(chain, conv) -> bool:
    """Whether the chain scales (Mul, Div, a Sub of the conv from a constant)."""
    current = conv.outputs[0].name
    for node in chain:
        names = [t.name for t in node.inputs]
        if node.op in ("Mul", "Div") or (node.op == "Sub" and names.index(current) == 1):
            return True
        current = node.outputs[0].name
    return False


def _scaled(weight: np.ndarray, scale: np.ndarray, transposed: bool, group: int) -> np.ndarray:
    """The weight with each output channel multiplied by its scale."""
    weight = weight.astype(np.float64)
    spatial = (1,) * (weight.ndim - 2)
    if not transposed:
        return weight * scale.reshape((-1, 1) + spatial)
    c_in, per_group_out = weight.shape[:2]
    grouped = weight.reshape((group, c_in // group, per_group_out) + weight.shape[2:])
    return (grouped * scale.reshape((group, 1, per_group_out) + spatial)).reshape(weight.shape)
