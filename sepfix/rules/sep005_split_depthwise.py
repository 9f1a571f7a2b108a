"""## What it does
Finds `Split(axis=1)` into one-channel pieces, each feeding its own `Conv` with a `(M, 1, k, k)`
weight, whose outputs a `Concat(axis=1)` joins back in order: a depthwise conv cut into `C`
convolutions.

## Why is this bad
TensorRT (and every runtime) launches `C` tiny convolutions plus the split and the concat
instead of one depthwise kernel; for C in the hundreds this dominates the block's time and the
conv+BN+activation fusion cannot happen. Converters for runtimes without grouped convs emit
this (onnx2tf issue 791, MNN issue 762).

## Example
`Split(x, axis=1) -> [Conv(x_i, W_i) for i in range(32)] -> Concat(axis=1)`.

## Use instead
One `Conv(x, W)` with `group=32`, `W = concat(W_i)` of shape `(32*M, 1, k, k)`, and the biases
concatenated likewise.

## Fix safety
Validated: each output channel sums the same products in the same order, so results are
normally bit-identical, but a runtime may pick a different kernel for the merged conv; the
validator compares the outputs before anything is written.

## Known problems
Only one-channel pieces are recognised (a grouped conv split into multi-channel groups is not),
and every piece's conv must have the same attributes.
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex, Node
from sepfix.rules.base import Match

CODE = "SEP005"
NAME = "split-depthwise"
SUMMARY = "Split -> one conv per channel -> Concat standing for one depthwise conv"
LEVEL = "warning"
APPLICABILITY = "validated"
SOURCES = ["onnx2tf issue 791", "MNN issue 762"]

_SAME_ATTRS = ("strides", "dilations", "pads", "auto_pad", "kernel_shape")


def match(index: GraphIndex):
    for split in index.nodes("Split"):
        found = match_split_convs(index, split)
        if found is None:
            continue
        convs, concat, constant, multiplier = found
        channels = len(convs)
        yield Match(
            split,
            f"Split into {channels} one-channel convs joined by Concat: one depthwise conv with "
            f"group={channels} (M={multiplier}) does the same in one kernel",
            roles={"convs": convs, "concat": concat},
            bound={f"weight{i}": c.input(1) for i, c in enumerate(convs)}
            | {f"bias{i}": c.input(2) for i, c in enumerate(convs) if c.input(2)},
            evidence={"channels": channels, "depth_multiplier": multiplier},
            why_not_fixable=None if constant else "a piece's weight or bias is not a constant",
        )


def match_split_convs(index: GraphIndex, split: Node):
    """(convs in order, concat, all weights constant, M) or None."""
    scope = split.scope
    if len(split.node.output) < 2:
        return None
    convs: list[Node] = []
    for piece in split.node.output:
        conv = index.sole_consumer(scope, piece)
        if conv is None or conv.op != "Conv" or conv.input(0) != piece:
            return None
        convs.append(conv)
    reference = [convs[0].attr(a) for a in _SAME_ATTRS]
    shapes = []
    all_constant = True
    for conv in convs:
        if conv.attr("group", 1) != 1 or [conv.attr(a) for a in _SAME_ATTRS] != reference:
            return None
        source = index.weight_source(scope, conv.input(1))
        if source.shape is None or len(source.shape) < 3 or source.shape[1] != 1:
            return None
        shapes.append(tuple(source.shape))
        all_constant &= source.is_constant
        if conv.input(2):
            all_constant &= index.constant_value(scope, conv.input(2)) is not None
    if len(set(shapes)) != 1:
        return None
    rank = len(shapes[0])  # the activations' rank: N, C and the kernel's spatial dims
    if _axis(split.attr("axis", 0), rank) != 1:
        return None
    concat = index.sole_consumer(scope, convs[0].node.output[0])
    if concat is None or concat.op != "Concat" or _axis(concat.attr("axis"), rank) != 1:
        return None
    if list(concat.node.input) != [c.node.output[0] for c in convs]:
        return None
    if any(index.sole_consumer(scope, c.node.output[0]) is not concat for c in convs):
        return None
    return convs, concat, all_constant, shapes[0][0]


def _axis(axis: int | None, rank: int) -> int | None:
    return None if axis is None else axis + rank if axis < 0 else axis


def rewrite(ctx, match: Match) -> str:
    """One depthwise conv from the pieces' weights and biases, writing the Concat's output."""
    split, convs, concat = ctx.anchor, ctx.role("convs"), ctx.role("concat")
    weights = [ctx.value(match.bound[f"weight{i}"]) for i in range(len(convs))]
    weight = np.concatenate(weights, axis=0)
    biases = [ctx.value(match.bound[f"bias{i}"]) if f"bias{i}" in match.bound else
              np.zeros(w.shape[0], dtype=w.dtype) for i, w in enumerate(weights)]
    attrs = {k: v for k, v in convs[0].attrs.items() if k != "group"}
    attrs["group"] = len(convs)
    output = concat.outputs[0]
    concat.outputs = []
    base = f"{split.name}_depthwise" if split.name else "depthwise"
    ctx.node("Conv", base,
             inputs=[split.inputs[0], ctx.constant(f"{base}_weight", weight),
                     ctx.constant(f"{base}_bias", np.concatenate(biases))],
             outputs=[output], attrs=attrs)
    return f"Split + {len(convs)} convs + Concat -> one Conv group={len(convs)}, weight {tuple(weight.shape)}"
