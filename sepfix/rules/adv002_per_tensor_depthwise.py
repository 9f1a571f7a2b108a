"""## What it does
Advice, not a mangle: points at depthwise convs whose weight is quantized per tensor (the
`DequantizeLinear` feeding the weight has one scale for every channel). Shown with `--advice`.

## Why is this bad
A depthwise conv has one tiny filter per channel and the channels' weight ranges differ by
orders of magnitude; one scale for all of them rounds the small channels to a few levels or to
zero. This is the known INT8 accuracy cliff of MobileNet-style networks, and why TensorRT's
and ONNX Runtime's quantization guides recommend per-channel weight scales for convolutions.

## Example
`Conv(x_dq, DequantizeLinear(W_int8, scale=0.02), group=32)` with `W` of shape `(32, 1, 3, 3)`.

## Use instead
Per-channel weight quantization (`DequantizeLinear(W_int8, scale[32], axis=0)`):
`quantize_static(..., per_channel=True)` in ONNX Runtime, per-channel weight quantizers in
pytorch-quantization / ModelOpt.

## Fix safety
Not fixable: it needs re-quantization (new scales from calibration).
"""

from __future__ import annotations

from sepfix.graph import GraphIndex, Source
from sepfix.patterns import ConvKind, all_convs
from sepfix.rules.base import Match

CODE = "ADV002"
NAME = "per-tensor-depthwise"
SUMMARY = "advice: depthwise weight quantized with one scale for every channel"
LEVEL = "info"
APPLICABILITY = "not fixable"
SOURCES = ["NVIDIA TensorRT quantization guide: per-channel weight scales for convolutions",
           "ONNX Runtime quantization: per_channel=True for conv weights"]


def match(index: GraphIndex):
    for info in all_convs(index):
        if info.kind is not ConvKind.DEPTHWISE or info.weight.kind is not Source.QUANTIZED:
            continue
        dequantize = next((n for n in info.weight.chain if n.op == "DequantizeLinear"), None)
        if dequantize is None:
            continue
        scale = index.constant_shape(info.node.scope, dequantize.input(1))
        if scale is None or any(d != 1 for d in scale):
            continue
        yield Match(
            info.node,
            f"depthwise conv ({info.effective_group} channels) has its weight quantized per tensor "
            f"(one scale for every channel, {dequantize.label}): quantize it per channel",
            evidence={"channels": info.effective_group, "scale_shape": list(scale)},
            why_not_fixable="needs re-quantization",
        )
