"""## What it does
Finds a convolution stored with `group=1` and a dense weight `(C*M, C, k, k)` whose values are
block-diagonal: output channel `o` reads only input channel `o // M`. That is a depthwise
convolution (depth multiplier `M`) written the expensive way.

## Why is this bad
A dense kernel does `C` times the multiply-adds of the depthwise one, and TensorRT sees an
ordinary dense convolution: it cannot pick its depthwise kernels (`CudaDepthwiseConvolution`),
so the block runs as a dense conv full of zeros. Converters that expand groups (MMdnn, some
TF/Keras paths, hand-written exporters for runtimes without grouped convs) produce this.

## Example
`Conv(x, W)` with `group=1`, `W.shape == (32, 32, 3, 3)` and `W[o, i] == 0` for every `i != o`.

## Use instead
`Conv(x, W')` with `group=32` and `W' = W[o, o // M]`, shape `(32, 1, 3, 3)`.

## Fix safety
Safe: the same products are summed, the zero terms are dropped. The validator still compares
the outputs. A weight shared with another node is cloned before it is edited.

## Known problems
A dense weight that is block-diagonal by accident (a freshly zero-initialised layer) is
reported too; an all-zero weight is not. Weights behind DequantizeLinear are reported but not
rewritten (their per-channel scales would need rewriting too).
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex, Source
from sepfix.patterns import ConvInfo, ConvKind, all_convs, has_constant_weight
from sepfix.rules.base import Match, fmt_shape

CODE = "SEP001"
NAME = "dense-depthwise"
SUMMARY = "depthwise conv stored as a dense block-diagonal kernel with group=1"
LEVEL = "warning"
APPLICABILITY = "safe"
SOURCES = ["MMdnn PR 422 (grouped convs expanded to dense block-diagonal kernels)"]


def match(index: GraphIndex):
    for info in all_convs(index):
        layout = _candidate_layout(info)
        if layout is None:
            continue
        channels, multiplier = layout
        if not _first_row_is_diagonal(index, info, channels, multiplier):
            continue
        weight = index.constant_value(info.node.scope, info.node.input(1))
        if weight is None or not is_block_diagonal(weight, channels, multiplier, info.transposed):
            continue
        shape = info.weight_shape
        dense_shape = fmt_shape(shape)
        if info.transposed:
            slim = fmt_shape((channels, multiplier) + tuple(shape[2:]))
        else:
            slim = fmt_shape((channels * multiplier, 1) + tuple(shape[2:]))
        yield Match(
            info.node,
            f"{info.node.op} has group=1 and a block-diagonal dense weight {dense_shape}: it is a "
            f"depthwise conv (C={channels}, M={multiplier}) doing {channels}x the work; "
            f"as group={channels} its weight is {slim}",
            bound={"weight": info.node.input(1)},
            evidence={
                "weight_shape": list(shape),
                "group_found": info.group if info.group is not None else 1,
                "group_expected": channels,
                "depth_multiplier": multiplier,
            },
            why_not_fixable="the weight is quantized" if info.weight.kind is Source.QUANTIZED else None,
        )


def _candidate_layout(info: ConvInfo) -> tuple[int, int] | None:
    """(C, M) when the conv's shape allows it to be a dense-stored depthwise conv."""
    if info.kind is not ConvKind.DENSE or info.effective_group != 1:
        return None
    if not has_constant_weight(info):
        return None
    shape = info.weight_shape
    if info.transposed:
        channels, outputs = shape[0], shape[1]
        if max(shape[2:], default=1) <= 1 and channels == outputs:
            return None
    else:
        outputs, channels = shape[0], shape[1]
        if max(shape[2:], default=1) <= 1:
            return None
    if channels < 2 or outputs % channels:
        return None
    return channels, outputs // channels


def _first_row_is_diagonal(index: GraphIndex, info: ConvInfo, channels: int, multiplier: int) -> bool:
    """Cheap early exit: read only output channel 0's slice of the weight first."""
    shape = info.weight_shape
    taps = int(np.prod(shape[2:]))
    if info.transposed:
        row = index.constant_prefix(info.node.scope, info.node.input(1), shape[1] * taps)
        return row is not None and not np.any(row.reshape(shape[1], taps)[multiplier:])
    row = index.constant_prefix(info.node.scope, info.node.input(1), channels * taps)
    return row is not None and not np.any(row.reshape(channels, taps)[1:])


def is_block_diagonal(weight: np.ndarray, channels: int, multiplier: int, transposed: bool) -> bool:
    """All non-zeros on the block diagonal (and some there): counted, not masked, for speed."""
    on_block = np.count_nonzero(_diagonal_blocks(weight, channels, multiplier, transposed))
    return on_block > 0 and on_block == np.count_nonzero(weight)


def _diagonal_blocks(weight: np.ndarray, channels: int, multiplier: int, transposed: bool) -> np.ndarray:
    if transposed:  # (C, C*M, k...): row c keeps columns c*M .. c*M+M-1
        blocks = weight.reshape((channels, channels, multiplier) + weight.shape[2:])
        return blocks[np.arange(channels), np.arange(channels)]
    outputs = np.arange(channels * multiplier)
    return weight[outputs, outputs // multiplier]


def slim_weight(weight: np.ndarray, channels: int, multiplier: int, transposed: bool) -> np.ndarray:
    """The depthwise weight the dense one stands for: (C*M, 1, k...) or, transposed, (C, M, k...)."""
    diagonal = _diagonal_blocks(weight, channels, multiplier, transposed)
    return diagonal if transposed else diagonal[:, None]


def rewrite(ctx, match: Match) -> str:
    """group=C and the slim weight; the dense constant is left for cleanup (or other users)."""
    node = ctx.anchor
    channels, multiplier = match.evidence["group_expected"], match.evidence["depth_multiplier"]
    dense = ctx.value(match.bound["weight"])
    slim = slim_weight(dense, channels, multiplier, node.op == "ConvTranspose")
    node.inputs[1] = ctx.constant(f"{node.name}_depthwise_weight", slim)
    node.attrs["group"] = channels
    ctx.touch(node)
    return f"group 1 -> {channels}; weight {fmt_shape(dense.shape)} -> {fmt_shape(slim.shape)}"
