"""## What it does
Finds a constant-mode `Pad` with value 0 that pads only spatial axes and whose output is read
only by convolutions: directly (`Pad -> Conv`), or through one layout `Transpose`
(`NHWC Pad -> Transpose(perm=[0,3,1,2]) -> Conv`, as tf2onnx writes for Keras `ZeroPadding2D`
and for TF's "SAME" padding of stride-2 convs when its transpose optimizer cannot move the pad).

## Why is this bad
The pad writes a second, larger copy of the feature map that the conv could have padded on the
fly. What that costs depends on where the Pad sits. Measured with `python
scripts/bench_pad_dilation.py` (ONNX Runtime 1.32 CPU, 1 thread, batch 1, median of 200
interleaved runs, thread CPU time; default optimizations / none):

- `Pad -> Conv`: absorbed, so reported as advice (`info`, shown with `--advice`, still repaired).
  TensorRT's Layer Fusion Catalog lists "Padding and Convolution" among the fusions it makes,
  and ONNX Runtime's level-1 PadFusion folds such a Pad into its Conv: with its default
  optimizations ONNX Runtime runs the same ops either way (64-channel 56x56 stride-2 depthwise
  block 1.00x, Keras MobileNetV3-Small from tf2onnx with 4 such Pads 1.00x). Run as written
  (ORT_DISABLE_ALL) the Pad costs 1.03x on the block, 1.06x on MobileNetV3-Small.
- `Pad -> Transpose -> Conv` (an NHWC Pad): a `warning`. No fusion catalogue documents a Pad
  separated from its conv by a Transpose, and ONNX Runtime keeps such a Pad where its transpose
  optimizer cannot move the Transpose first (a Pad on the NHWC graph input, as in
  k2_pad_dw_s2): 1.31x on the block written NHWC, 1.24x on k2_pad_dw_s2 (1.27x k3_pad_dw_s2)
  with the default optimizations. Run as written the block measured 0.95x (there the padded
  conv ran slower than the Pad and the unpadded conv together), and where the optimizer does
  move the Transposes (MobileNetV3-Small with Keras's initial weights) the Pads are absorbed
  (1.03x).

## Example
`Pad(x, pads=[0,0,1,1, 0,0,1,1]) -> Conv(kernel 3x3, strides 2, pads [0,0,0,0])`, or
`Pad(x_nhwc, pads=[0,1,1,0, 0,1,1,0]) -> Transpose(perm=[0,3,1,2]) -> Conv`.

## Use instead
`Conv(x, pads=[1,1,1,1])` (added to pads the conv already has; asymmetric pads such as
`[0,0,1,1]` are valid ONNX), with the layout Transpose, when there was one, reading `x`
directly. `auto_pad` stays NOTSET.

## Fix safety
Safe: the conv pads with the same zeros, and the padded taps only ever multiply zeros.

## Known problems
A Pad whose output also feeds anything but a conv (a pooling layer, a residual branch), a
non-zero or reflect/edge pad, a pad on the batch or channel axis, a conv with
`auto_pad=SAME_*` and a Pad behind Quantize/DequantizeLinear are left alone.
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex, Node
from sepfix.rules.base import Level, Match

CODE = "SEP011"
NAME = "zero-pad"
SUMMARY = "zero Pad on spatial axes feeding only convs (directly or through a layout Transpose)"
LEVEL = "info"
APPLICABILITY = "safe"
SOURCES = [
    "TensorRT Layer Fusion Catalog, Padding and Convolution: "
    "https://docs.nvidia.com/deeplearning/tensorrt/latest/performance/fusion-catalog.html",
    "ONNX Runtime PadFusion, Pad -> Conv/MaxPool (microsoft/onnxruntime PR 18136)",
    "tf2onnx: Keras ZeroPadding2D and TF SAME stride-2 padding as an NHWC Pad -> Transpose -> Conv",
    "scripts/bench_pad_dilation.py (ONNX Runtime CPU, 1 thread)",
]


def match(index: GraphIndex):
    for pad in index.nodes("Pad"):
        found = match_zero_pad_into_convs(index, pad)
        if found is None:
            continue
        convs, transpose, begin, end = found
        spatial = [[b, e] for b, e in zip(begin[2:], end[2:])]
        names = ", ".join(c.label for c in convs)
        if transpose is None:
            message = (f"zero Pad of spatial pads {spatial} read only by {names}: the conv pads by itself "
                       "(TensorRT and ONNX Runtime fuse this Pad into the conv)")
        else:
            message = (f"zero Pad of spatial pads {spatial} in front of a layout Transpose "
                       f"(perm={list(transpose.attr('perm'))}) read only by {names}: a padded copy moved by the "
                       "Transpose; the conv pads by itself")
        roles = {"convs": convs}
        if transpose is not None:
            roles["transpose"] = transpose
        yield Match(
            pad,
            message,
            roles=roles,
            evidence={"pads_begin": begin[2:], "pads_end": end[2:], "convs": [c.label for c in convs],
                      "through_transpose": transpose is not None},
            level=Level.WARNING if transpose is not None else None,
        )


def zero_pads(index: GraphIndex, pad: Node, rank: int) -> tuple[list[int], list[int]] | None:
    """(begin, end) pads per axis of a constant-mode Pad with value 0 and non-negative
    constant pads, on a tensor of `rank`; None for anything else."""
    mode = pad.attr("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        return None
    attribute_pads = pad.attr("pads", pad.attr("paddings"))
    if attribute_pads is not None:  # Pad-1/Pad-2: pads and value are attributes
        pads = [int(v) for v in attribute_pads]
        value = pad.attr("value", 0.0)
        axes = None
    else:
        pads = _constant_ints(index, pad, 1)
        if pads is None:
            return None
        value = 0.0
        if pad.input(2):
            constant = _constant(index, pad, 2)
            if constant is None or constant.size != 1:
                return None
            value = constant.reshape(-1)[0]
        axes = None
        if pad.input(3):
            axes = _constant_ints(index, pad, 3)
            if axes is None:
                return None
    if not _is_positive_zero(value):
        return None
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    if len(pads) != 2 * len(axes) or any(not 0 <= a < rank for a in axes) or len(set(axes)) != len(axes):
        return None
    if any(p < 0 for p in pads):
        return None  # negative pads crop
    begin, end = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        begin[axis], end[axis] = pads[i], pads[len(axes) + i]
    return begin, end


def _constant(index: GraphIndex, node: Node, position: int) -> np.ndarray | None:
    name = node.input(position)
    if node.scope.is_graph_input(name):
        return None  # an initializer also listed as an input can be overridden at run time
    return index.constant_value(node.scope, name)


def _constant_ints(index: GraphIndex, node: Node, position: int) -> list[int] | None:
    value = _constant(index, node, position)
    if value is None or value.dtype.kind not in "iu":
        return None
    return [int(v) for v in value.reshape(-1)]


def _is_positive_zero(value) -> bool:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return False
    return number == 0.0 and not np.signbit(number)


def match_zero_pad_into_convs(index: GraphIndex, pad: Node):
    """(convs, layout Transpose or None, begin, end pads in the convs' layout) or None."""
    scope = pad.scope
    output = pad.node.output[0]
    if not output or output in scope.outputs:
        return None
    users = index.consumers(scope, output)
    transpose = None
    if len(users) == 1 and users[0].op == "Transpose":
        transpose = users[0]
        output = transpose.node.output[0]
        if output in scope.outputs:
            return None
        users = index.consumers(scope, output)
    if not users or any(not _reads_as_data(user, output) for user in users):
        return None
    ranks = {_conv_rank(index, conv) for conv in users}
    if len(ranks) != 1 or None in ranks:
        return None
    rank = ranks.pop()
    pads = zero_pads(index, pad, rank)
    if pads is None:
        return None
    begin, end = pads
    if transpose is not None:
        perm = transpose.attr("perm")
        if not perm or sorted(perm) != list(range(rank)):
            return None
        begin, end = [begin[p] for p in perm], [end[p] for p in perm]
    if any(begin[:2]) or any(end[:2]):
        return None  # padding the batch or channel axis is not a conv's padding
    return users, transpose, begin, end


def _reads_as_data(node: Node, tensor: str) -> bool:
    """A Conv reading `tensor` as its input and nowhere else, padding by explicit pads."""
    if node.op != "Conv" or node.input(0) != tensor or tensor in list(node.node.input)[1:]:
        return False
    if node.unresolved():
        return False
    auto_pad = node.attr("auto_pad", "NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    return auto_pad in ("NOTSET", "VALID")


def _conv_rank(index: GraphIndex, conv: Node) -> int | None:
    shape = index.constant_shape(conv.scope, conv.input(1))
    if shape is not None and len(shape) >= 3:
        return len(shape)
    kernel = conv.attr("kernel_shape")
    return len(kernel) + 2 if kernel else None


def rewrite(ctx, match: Match) -> str:
    """The convs (or the layout Transpose in front of them) read the unpadded tensor; the pads
    move into each conv's `pads`."""
    pad, convs = ctx.anchor, ctx.role("convs")
    transpose = ctx.role("transpose") if "transpose" in match.roles else None
    source = pad.inputs[0]
    begin, end = match.evidence["pads_begin"], match.evidence["pads_end"]
    rank = len(begin)
    if transpose is not None:
        transpose.inputs[0] = source
        transpose.outputs[0].shape = None  # it was the padded size
    for conv in convs:
        if transpose is None:
            conv.inputs[0] = source
        auto_pad = conv.attrs.get("auto_pad", "NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        old = [0] * (2 * rank) if auto_pad == "VALID" else list(conv.attrs.get("pads") or [0] * (2 * rank))
        conv.attrs["pads"] = [old[i] + begin[i] for i in range(rank)] + [old[rank + i] + end[i] for i in range(rank)]
        if auto_pad == "VALID":
            conv.attrs["auto_pad"] = "NOTSET"
        ctx.touch(conv)
    where = f" through Transpose {transpose.name}" if transpose is not None else ""
    pads = [[b, e] for b, e in zip(begin, end)]
    return f"Pad {pad.name}{where} folded into the pads of {', '.join(c.name for c in convs)} (+{pads})"
