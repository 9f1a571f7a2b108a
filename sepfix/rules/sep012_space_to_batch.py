"""## What it does
Finds a dilated convolution lowered to space-to-batch: `[Pad] -> Transpose -> SpaceToDepth ->
Transpose(perm=[1,0,2,3]) -> Conv(dilation 1) -> Transpose(perm=[1,0,2,3]) -> DepthToSpace ->
[Slice] -> Transpose`, the form tf2onnx gives TF's `SpaceToBatchND -> conv -> BatchToSpaceND`
for a square dilation rate (TFLite keeps that form for Keras `DepthwiseConv2D(dilation_rate=r)`
and for `tf.nn.atrous_conv2d`). The block size `r` moves the `r x r` interleaved sub-images of
the padded input into the batch, the conv runs on each, and the sub-images are put back and
cropped. Depthwise, grouped and dense convs alike.

## Why is this bad
Two full-size layout shuffles (SpaceToDepth, DepthToSpace) and four Transposes around every such
conv, the conv runs on a batch `r*r` times larger, and the Pad and Slice copy the feature map
once more; TensorRT sees no dilated conv, so no depthwise conv fused with what follows it.
Measured with `python scripts/bench_pad_dilation.py` (ONNX Runtime 1.32 CPU, 1 thread, batch 1,
median of 200 interleaved runs, thread CPU time), mangled / repaired with the default
optimizations and with none: tflite_dilated_dw (Keras DepthwiseConv2D, rate 2, 32x32x16)
2.73x / 1.63x, tf.nn.atrous_conv2d dense 1.84x / 1.51x, rate 4 with crops 2.88x / 2.40x, a
64-channel 56x56 rate-2 depthwise block 2.55x / 2.18x.

## Example
`Pad(x_nhwc, [0,2,2,0, 0,2,2,0]) -> Transpose([3,0,1,2]) -> SpaceToDepth(2) ->
Transpose([1,0,2,3]) -> Conv(W, group=C) -> Transpose([1,0,2,3]) -> DepthToSpace(2) ->
Slice(crops) -> Transpose([1,0,2,3])`.

## Use instead
`Transpose(x_nhwc, [0,3,1,2]) -> Conv(W, group=C, dilations=[2,2], pads=[2,2,2,2])`: the
Pad's pads minus the crops become the conv's pads, the block size its dilation (times any
dilation the inner conv had), and only the layout Transposes the chain did not cancel stay.
The batch may be dynamic: nothing is reshaped.

## Fix safety
Validated: every output sums the same products, but one dilated conv kernel may sum them in
another order than the conv on the batch of sub-images; the validator compares the outputs.

## Known problems
Only the SpaceToDepth/DepthToSpace form: tf2onnx writes non-square dilation rates (`(2, 3)`)
as Reshape/Transpose/Reshape with shapes computed at run time, which is not recognised. A
SpaceToDepth/DepthToSpace pair that is not wrapped around one conv this way (a pixel shuffle,
block sizes that differ, a DepthToSpace in CRD mode), inner convs with strides, crops larger
than the pads, and chains with Quantize/DequantizeLinear pairs inside (quantized TFLite models)
are left alone.
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex, Node
from sepfix.rules.base import Match
from sepfix.rules.sep011_zero_pad import zero_pads

CODE = "SEP012"
NAME = "space-to-batch-dilation"
SUMMARY = "dilated conv lowered to Pad/SpaceToDepth/Conv/DepthToSpace/Slice (space-to-batch)"
LEVEL = "warning"
APPLICABILITY = "validated"
SOURCES = [
    "tf2onnx SpaceToBatchND/BatchToSpaceND -> SpaceToDepth/DepthToSpace (TFLite DepthwiseConv2D with dilation_rate)",
    "scripts/bench_pad_dilation.py (ONNX Runtime CPU, 1 thread)",
]

_SWAP = [1, 0, 2, 3]  # NCHW <-> CNHW: the batch of sub-images goes to the conv's batch axis
_IDENTITY = [0, 1, 2, 3]
_TO_END = 2**31 - 1  # a Slice end at or past this reads to the end of the axis
_MAX_STEPS = 6


def match(index: GraphIndex):
    for conv in index.nodes("Conv"):
        found = match_space_to_batch(index, conv)
        if found is None:
            continue
        chain, block, attrs = found
        kind = "depthwise" if attrs["depthwise"] else "dense" if attrs["group"] == 1 else "grouped"
        yield Match(
            conv,
            f"{kind} conv run on SpaceToDepth({block}) sub-images and put back by DepthToSpace({block}): "
            f"one Conv with dilations={attrs['dilations']} and pads={attrs['pads']} computes the same "
            f"without the {len(chain['before']) + len(chain['after']) + 4} nodes around it",
            roles=chain,
            evidence={"block_size": block, "dilations": attrs["dilations"], "pads": attrs["pads"],
                      "input_perm": attrs["input_perm"], "output_perm": attrs["output_perm"],
                      "conv_kind": kind},
        )


def match_space_to_batch(index: GraphIndex, conv: Node):
    """(roles, block size, the dilated conv's attributes) or None."""
    scope = conv.scope
    if conv.unresolved() or conv.input(0) in list(conv.node.input)[1:]:
        return None
    shape = index.constant_shape(scope, conv.input(1))
    kernel = list(shape[2:]) if shape is not None and len(shape) == 4 else conv.attr("kernel_shape")
    if not kernel or len(kernel) != 2:
        return None
    strides = list(conv.attr("strides") or [1, 1])
    auto_pad = _text(conv.attr("auto_pad", "NOTSET"))
    if strides != [1, 1] or auto_pad not in ("NOTSET", "VALID"):
        return None
    inner_pads = [0] * 4 if auto_pad == "VALID" else list(conv.attr("pads") or [0] * 4)
    inner_dilations = list(conv.attr("dilations") or [1, 1])
    if len(inner_pads) != 4 or len(inner_dilations) != 2:
        return None

    into = _producer_if_sole(index, conv, conv.input(0))
    if into is None or into.op != "Transpose" or list(into.attr("perm") or []) != _SWAP:
        return None
    s2d = _producer_if_sole(index, into, into.input(0))
    if s2d is None or s2d.op != "SpaceToDepth":
        return None
    block = s2d.attr("blocksize")
    out = index.sole_consumer(scope, conv.node.output[0])
    if out is None or out.op != "Transpose" or list(out.attr("perm") or []) != _SWAP:
        return None
    d2s = index.sole_consumer(scope, out.node.output[0])
    if d2s is None or d2s.op != "DepthToSpace" or d2s.attr("blocksize") != block or not block or block < 1:
        return None
    if _text(d2s.attr("mode", "DCR")) != "DCR":
        return None  # CRD orders the sub-images differently from SpaceToDepth

    before = _walk_back(index, s2d)
    if before is None:
        return None
    before_nodes, in_axes, pad_begin, pad_end = before
    after = _walk_forward(index, d2s)
    if after is None:
        return None
    after_nodes, out_axes, crop_begin, crop_end = after

    pads = [pad_begin[2 + i] + block * inner_pads[i] - crop_begin[2 + i] for i in range(2)]
    pads += [pad_end[2 + i] + block * inner_pads[2 + i] - crop_end[2 + i] for i in range(2)]
    if any(p < 0 for p in pads):
        return None  # crops larger than the pads: not a conv's padding
    # The conv reads NCHW = (sub-image batch axis, channel axis, H, W) of the S2D input.
    input_perm = [in_axes[1], in_axes[0], in_axes[2], in_axes[3]]
    output_perm = [_SWAP[a] for a in out_axes]
    group = conv.attr("group", 1)
    attrs = {
        "dilations": [block * d for d in inner_dilations],
        "pads": pads,
        "input_perm": input_perm,
        "output_perm": output_perm,
        "group": group,
        "depthwise": group > 1 and shape is not None and len(shape) == 4 and shape[1] == 1,
    }
    roles = {"before": before_nodes, "s2d": s2d, "into": into, "out": out, "d2s": d2s, "after": after_nodes}
    return roles, block, attrs


def _producer_if_sole(index: GraphIndex, user: Node, tensor: str) -> Node | None:
    """The node writing `tensor` when `user` is its only reader."""
    producer = index.producer(user.scope, tensor)
    if producer is None or index.sole_consumer(user.scope, tensor) is not user:
        return None
    return producer


def _walk_back(index: GraphIndex, s2d: Node):
    """From SpaceToDepth's input back through layout Transposes and at most one zero Pad.

    Returns (nodes from the source on, axes: S2D input axis i is axis axes[i] of the source,
    pads begin/end in S2D input axes) or None."""
    axes = list(_IDENTITY)
    begin, end = [0] * 4, [0] * 4
    nodes: list[Node] = []
    user, tensor = s2d, s2d.input(0)
    padded = False
    for _ in range(_MAX_STEPS):
        producer = _producer_if_sole(index, user, tensor)
        if producer is None:
            break
        if producer.op == "Transpose":
            perm = producer.attr("perm")
            if not perm or sorted(perm) != _IDENTITY:
                break
            axes = [perm[a] for a in axes]
        elif producer.op == "Pad" and not padded:
            pads = zero_pads(index, producer, 4)
            if pads is None:
                break
            # the Pad's axes are the axes of the tensor `axes` refers to at this point
            begin = [b + pads[0][axes[i]] for i, b in enumerate(begin)]
            end = [e + pads[1][axes[i]] for i, e in enumerate(end)]
            padded = True
        else:
            break
        nodes.insert(0, producer)
        user, tensor = producer, producer.input(0)
    if any(begin[:2]) or any(end[:2]):
        return None  # a pad on the sub-image batch or channel axis is not spatial padding
    return nodes, axes, begin, end


def _walk_forward(index: GraphIndex, d2s: Node):
    """From DepthToSpace's output on through layout Transposes and at most one crop Slice.

    Returns (nodes in order, axes: result axis j is D2S output axis axes[j], crops begin/end
    in D2S output axes) or None."""
    axes = list(_IDENTITY)
    begin, end = [0] * 4, [0] * 4
    nodes: list[Node] = []
    tensor = d2s.node.output[0]
    cropped = False
    for _ in range(_MAX_STEPS):
        user = index.sole_consumer(d2s.scope, tensor)
        if user is None or user.input(0) != tensor:
            break
        if user.op == "Transpose":
            perm = user.attr("perm")
            if not perm or sorted(perm) != _IDENTITY:
                break
            axes = [axes[p] for p in perm]
        elif user.op == "Slice" and not cropped:
            crops = _crops(index, user, tensor)
            if crops is None:
                return None  # a Slice that is not a crop of this layout: not the pattern
            for a, (b, e) in crops.items():
                begin[axes[a]] += b
                end[axes[a]] += e
            cropped = True
        else:
            break
        nodes.append(user)
        tensor = user.node.output[0]
    if any(begin[:2]) or any(end[:2]):
        return None
    return nodes, axes, begin, end


def _crops(index: GraphIndex, node: Node, tensor: str) -> dict[int, tuple[int, int]] | None:
    """{axis: (crop at the start, crop at the end)} of a Slice with constant starts/ends and
    step 1; None when it is not such a crop."""
    scope = node.scope
    if node.has_attr("starts"):  # Slice-1
        starts, ends = node.attr("starts"), node.attr("ends")
        if starts is None or ends is None:
            return None
        axes = node.attr("axes") or list(range(len(starts)))
        steps = [1] * len(starts)
    else:
        values = [_ints(index, node, i) for i in range(1, 5)]
        starts, ends, axes, steps = values
        if starts is None or ends is None or (node.input(3) and axes is None) or (node.input(4) and steps is None):
            return None
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        return None
    shape = scope.shape(tensor)
    known = shape is not None and len(shape) == 4
    crops: dict[int, tuple[int, int]] = {}
    for start, stop, axis, step in zip(starts, ends, axes, steps):
        axis = axis + 4 if axis < 0 else axis
        if step != 1 or not 0 <= axis < 4 or axis in crops:
            return None
        size = shape[axis] if known and isinstance(shape[axis], int) and shape[axis] > 0 else None
        if start < 0:
            if size is None:
                return None
            start = max(start + size, 0)
        if stop >= _TO_END:
            crop_end = 0
        elif stop < 0:
            crop_end = -stop
        elif size is not None and stop <= size:
            crop_end = size - stop
        elif size is not None:
            crop_end = 0
        else:
            return None
        crops[axis] = (int(start), int(crop_end))
    return crops


def _ints(index: GraphIndex, node: Node, position: int) -> list[int] | None:
    name = node.input(position)
    if not name or node.scope.is_graph_input(name):
        return None
    value = index.constant_value(node.scope, name)
    if value is None or value.dtype.kind not in "iu":
        return None
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def rewrite(ctx, match: Match) -> str:
    """One Conv with dilations and pads reads the chain's source (through one Transpose when
    the layouts do not cancel) and writes the chain's result (through one Transpose likewise)."""
    conv = ctx.anchor
    before, s2d, after, d2s = ctx.role("before"), ctx.role("s2d"), ctx.role("after"), ctx.role("d2s")
    evidence = match.evidence
    source = (before[0] if before else s2d).inputs[0]
    last = after[-1] if after else d2s
    result = last.outputs[0]
    last.outputs = []
    data = source
    added = []
    if evidence["input_perm"] != _IDENTITY:
        data = ctx.variable(f"{conv.name}_input", dtype=source.dtype)
        added.append(ctx.node("Transpose", f"{conv.name}_layout_in", inputs=[source], outputs=[data],
                              attrs={"perm": evidence["input_perm"]}))
    conv.inputs[0] = data
    if evidence["output_perm"] != _IDENTITY:
        written = ctx.variable(f"{conv.name}_output", dtype=result.dtype)
        added.append(ctx.node("Transpose", f"{conv.name}_layout_out", inputs=[written], outputs=[result],
                              attrs={"perm": evidence["output_perm"]}))
    else:
        written = result
    conv.outputs = [written]
    conv.attrs["dilations"] = list(evidence["dilations"])
    conv.attrs["pads"] = list(evidence["pads"])
    if "auto_pad" in conv.attrs:
        conv.attrs["auto_pad"] = "NOTSET"
    ctx.touch(conv)
    kept = f" (+{len(added)} layout Transpose{'s' if len(added) != 1 else ''})" if added else ""
    return (f"SpaceToDepth/DepthToSpace({evidence['block_size']}) around the conv -> dilations "
            f"{evidence['dilations']}, pads {evidence['pads']}{kept}")
