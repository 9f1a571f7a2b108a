"""## What it does
Finds a `Conv` whose `group` attribute is missing, zero, negative, or does not fit its weight:
ONNX requires `C_in == group * W.shape[1]`. When exactly one group value is consistent with the
input's channel count and the weight, the finding says which.

## Why is this bad
The model is invalid. onnxruntime refuses to run it; `onnx.checker` does not notice a missing
group; TensorRT's ONNX parser skips the check when the channel dimension is dynamic and builds
a wrong (dense) layer, or fails later with an opaque shape error. tf2onnx has written
`group: -3` (issues 824, 2084), onnx-tensorflow dropped it (issue 306).

## Example
`Conv(x, W)` with `x` of 32 channels, `W.shape == (32, 1, 3, 3)` and no `group` attribute.

## Use instead
`group = C_in / W.shape[1]` — here `group=32`, a depthwise conv.

## Fix safety
Safe when the channel count is known: only one group value makes the model valid, and the
original (which onnxruntime cannot run) is compared against an independent numpy reference of
the convolution with that group. With a dynamic channel count the finding is not fixable.

## Known problems
`ConvTranspose` weights `(C_in, C_out/group, k, k)` fit many group values; for it only an
invalid value (≤ 0, not dividing C_in) is reported, never rewritten.
"""

from __future__ import annotations

from sepfix.graph import GraphIndex
from sepfix.patterns import ConvInfo, all_convs
from sepfix.rules.base import Match, fmt_shape

CODE = "SEP002"
NAME = "group-mismatch"
SUMMARY = "group attribute missing, zero, negative or inconsistent with the weight"
LEVEL = "error"
APPLICABILITY = "safe"
SOURCES = ["tf2onnx issues 824 and 2084 (group: -3)", "onnx-tensorflow issue 306 (group dropped)"]


def expected_group(info: ConvInfo) -> int | None:
    """The one group value that makes a Conv valid, when the channel count is known."""
    shape = info.weight_shape
    if info.transposed or shape is None or info.c_in is None or shape[1] <= 0:
        return None
    if info.c_in % shape[1]:
        return None
    group = info.c_in // shape[1]
    return group if group > 0 and shape[0] % group == 0 else None


def match(index: GraphIndex):
    for info in all_convs(index):
        shape = info.weight_shape
        if shape is None:
            continue
        written = "no group attribute" if info.group is None else f"group={info.group}"
        group = info.effective_group
        if info.transposed:
            if group <= 0 or shape[0] % group:
                yield Match(
                    info.node,
                    f"ConvTranspose has {written}, invalid for weight {fmt_shape(shape)}; "
                    "several groups fit a ConvTranspose weight, so it is not rewritten",
                    evidence={"group_found": info.group, "weight_shape": list(shape)},
                    why_not_fixable="ambiguous",
                )
            continue
        expected = expected_group(info)
        if info.c_in is not None and group > 0 and info.c_in == group * shape[1]:
            continue
        if info.c_in is None:
            if group > 0:
                continue  # cannot tell; a positive group may be right
            yield Match(
                info.node,
                f"Conv has {written} (invalid) with weight {fmt_shape(shape)}; the input's channel "
                "count is dynamic, so the consistent group cannot be proven (not rewritten)",
                evidence={"group_found": info.group, "group_expected": None, "weight_shape": list(shape)},
                why_not_fixable="input channel count unknown",
            )
            continue
        if expected is None:
            message = (f"Conv has {written} but input has {info.c_in} channels and weight "
                       f"{fmt_shape(shape)}: no group value fits")
        else:
            message = (f"Conv has {written} but input has {info.c_in} channels and weight "
                       f"{fmt_shape(shape)}: the only consistent value is group={expected}")
            if shape[1] == 1 and expected > 1:
                message += " (a depthwise conv)"
        yield Match(
            info.node, message,
            evidence={"group_found": info.group, "group_expected": expected, "c_in": info.c_in,
                      "weight_shape": list(shape)},
            why_not_fixable=None if expected is not None else "no group value fits",
        )


def rewrite(ctx, match: Match) -> str:
    node = ctx.anchor
    expected = match.evidence["group_expected"]
    before = node.attrs.get("group", "missing")
    node.attrs["group"] = expected
    ctx.touch(node)
    return f"group {before} -> {expected}"
