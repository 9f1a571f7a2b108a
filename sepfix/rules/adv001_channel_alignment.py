"""## What it does
Advice, not a mangle: points at depthwise and pointwise convs whose channel counts are not
multiples of 8. Shown only with `--advice`; it never changes the exit code.

## Why is this bad
TensorRT's FP16 and INT8 Tensor Core kernels work on channel groups of 8 (FP16) or 32 (INT8);
other counts are padded at run time, and the layer may fall back to a slower tactic.

## Example
A pointwise conv from 36 to 90 channels.

## Use instead
Channel counts that are multiples of 8 when the network is designed (this needs retraining;
sepfix does not rewrite it).

## Fix safety
Not fixable: it changes the network.

## Known problems
Counts below 8 are not reported: they are the image's 3 channels at the stem and the
squeeze-excitation bottlenecks of a few channels, layers too small for the padding to matter
(seen on every timm and torchvision export of small networks).
"""

from __future__ import annotations

from sepfix.graph import GraphIndex
from sepfix.patterns import ConvKind, all_convs
from sepfix.rules.base import Match

CODE = "ADV001"
NAME = "channel-alignment"
SUMMARY = "advice: depthwise/pointwise channel counts not a multiple of 8"
LEVEL = "info"
APPLICABILITY = "not fixable"
SOURCES = ["NVIDIA Deep Learning Performance guide: channels in multiples of 8 for Tensor Cores"]


def match(index: GraphIndex):
    for info in all_convs(index):
        if info.kind not in (ConvKind.DEPTHWISE, ConvKind.POINTWISE):
            continue
        c_in = info.effective_group * info.weight_shape[1] if not info.transposed else info.weight_shape[0]
        counts = {"input": c_in, "output": info.c_out}
        odd = {k: v for k, v in counts.items() if v is not None and v >= 8 and v % 8}
        if odd:
            text = ", ".join(f"{k} channels {v}" for k, v in odd.items())
            yield Match(
                info.node,
                f"{info.kind.value} conv has {text}: not a multiple of 8 (Tensor Core alignment)",
                evidence=counts,
                why_not_fixable="it changes the network",
            )

