"""## What it does
Finds a dense conv with a `k x k` kernel whose weights are zero everywhere but one tap, with
pads that exactly make up for the larger kernel: a 1x1 (pointwise) conv zero-padded to `k x k`.

## Why is this bad
The conv does `k*k` times the multiply-adds of the 1x1 conv it stands for, and TensorRT cannot
treat it as the pointwise half of a depthwise-separable block. Kernel re-parameterisation
tools and converters that unify kernel sizes produce it.

## Example
`Conv(x, W)` with `W.shape == (64, 32, 3, 3)`, only `W[:, :, 1, 1]` non-zero, `pads=[1,1,1,1]`.

## Use instead
`Conv(x, W[:, :, 1:2, 1:2])` with `pads=[0,0,0,0]` and `kernel_shape=[1,1]`.

## Fix safety
Safe: the dropped taps only ever multiplied zeros (padding or zero weights).

## Known problems
RepVGG-style kernels (a strong centre tap, small but non-zero neighbours) are real 3x3 convs
and stay silent.
"""

from __future__ import annotations

import numpy as np

from sepfix.graph import GraphIndex
from sepfix.patterns import ConvKind, all_convs, has_constant_weight, spatial_attrs
from sepfix.rules.base import Match, fmt_shape

CODE = "SEP009"
NAME = "inflated-kernel"
SUMMARY = "1x1 conv zero-padded to a k x k kernel with matching pads"
LEVEL = "warning"
APPLICABILITY = "safe"
SOURCES = ["kernel re-parameterisation and converters that unify kernel sizes"]


def match(index: GraphIndex):
    for info in all_convs(index):
        if info.kind is not ConvKind.DENSE or info.transposed or not has_constant_weight(info):
            continue
        shape = info.weight_shape
        kernel = shape[2:]
        taps = int(np.prod(kernel))
        prefix = index.constant_prefix(info.node.scope, info.node.input(1), shape[1] * taps)
        if prefix is None or len(_nonzero_taps(prefix.reshape(1, shape[1], -1))) > 1:
            continue
        weight = index.constant_value(info.node.scope, info.node.input(1))
        nonzero = _nonzero_taps(weight.reshape(shape[0], shape[1], -1))
        if len(nonzero) != 1:
            continue
        tap = tuple(int(t) for t in np.unravel_index(nonzero[0], kernel))
        new_pads = shrunk_pads(info.node, kernel, tap)
        if new_pads is None or any(new_pads):
            continue
        yield Match(
            info.node,
            f"{fmt_shape(shape)} kernel is zero but for tap {list(tap)} and its pads only make up "
            f"for that: it is a 1x1 conv doing {taps}x the work",
            bound={"weight": info.node.input(1)},
            evidence={"weight_shape": list(shape), "tap": list(tap)},
        )


def _nonzero_taps(weight: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(weight.reshape(-1, weight.shape[-1]) != 0, axis=0))


def shrunk_pads(node, kernel, tap) -> list[int] | None:
    """Pads of the equivalent 1x1 conv reading only `tap`; None when they would be negative."""
    rank = len(kernel)
    attrs = spatial_attrs(node, rank)
    if attrs["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        if any(s != 1 for s in attrs["strides"]) or any(k % 2 == 0 for k in kernel):
            return None
        pads = [d * (k - 1) // 2 for d, k in zip(attrs["dilations"], kernel)] * 2
    elif attrs["auto_pad"] == "VALID":
        pads = [0] * (2 * rank)
    else:
        pads = attrs["pads"]
    begin = [pads[i] - attrs["dilations"][i] * tap[i] for i in range(rank)]
    end = [pads[rank + i] - attrs["dilations"][i] * (kernel[i] - 1 - tap[i]) for i in range(rank)]
    if any(p < 0 for p in begin + end):
        return None
    return begin + end


def rewrite(ctx, match: Match) -> str:
    """Keep only the non-zero tap; pads and kernel_shape follow."""
    conv = ctx.anchor
    weight = ctx.value(match.bound["weight"])
    tap = match.evidence["tap"]
    index = (slice(None), slice(None)) + tuple(slice(t, t + 1) for t in tap)
    slim = weight[index]
    rank = len(tap)
    conv.inputs[1] = ctx.constant(f"{conv.name}_pointwise_weight", slim)
    conv.attrs["kernel_shape"] = [1] * rank
    conv.attrs["pads"] = [0] * (2 * rank)
    conv.attrs.pop("auto_pad", None)
    conv.attrs.pop("dilations", None)
    ctx.touch(conv)
    return f"kernel {fmt_shape(weight.shape)} -> {fmt_shape(slim.shape)}, pads -> 0"
