"""## What it does
Finds convolutions written as operators TensorRT's ONNX parser does not take: ONNX Runtime's
private `com.microsoft` `FusedConv` (its offline optimizer at `ORT_ENABLE_EXTENDED` fuses
Conv + activation), `com.microsoft.nchwc` `Conv` with `ReorderInput`/`ReorderOutput` (the
`ORT_ENABLE_ALL` layout transform), `NhwcConv` and `com.microsoft` `QLinearConv`, and the
standard ONNX ops `QLinearConv` (quantize_static with `QuantFormat.QOperator`) and
`ConvInteger` (quantize_dynamic), which TensorRT's parser lists as unsupported.

## Why is this bad
TensorRT's ONNX parser has no importer for them: the `com.microsoft` ops are not ONNX at all,
and its operator matrix lists `QLinearConv` and `ConvInteger` as unsupported. The engine build
fails (or, through ONNX Runtime's TensorRT EP, those nodes silently fall back to the CUDA or CPU
EP, splitting the graph). The file is usually an ONNX Runtime optimisation or quantisation
output that was shipped instead of the exported model.

## Example
`com.microsoft.FusedConv(x, W, B, activation="Relu")`; `QLinearConv(x_q, x_s, x_z, W_q, ...)`.

## Use instead
The model as the exporter wrote it (`Conv` + activation): keep ONNX Runtime's offline
optimisation at `ORT_ENABLE_BASIC` or let the runtime optimise at load time; for INT8, quantise
with `QuantFormat.QDQ` (QuantizeLinear/DequantizeLinear around a plain `Conv`), which is
TensorRT's explicit-quantization input.

## Fix safety
Not fixable: sepfix does not re-create the standard graph from a runtime's private kernels;
re-export or re-quantise as above.

## Known problems
Other vendors' private ops are not listed; only the ones ONNX Runtime writes for convolutions.
"""

from __future__ import annotations

from sepfix.graph import GraphIndex
from sepfix.rules.base import Match

CODE = "SEP010"
NAME = "unsupported-conv-op"
SUMMARY = "conv written as an op TensorRT's parser does not take (ORT FusedConv/nchwc, QLinearConv, ConvInteger)"
LEVEL = "error"
APPLICABILITY = "not fixable"
SOURCES = [
    "onnx-tensorrt docs/operators.md (ConvInteger, QLinearConv: not supported; only ai.onnx ops)",
    "ONNX Runtime graph optimizations: FusedConv (extended), NCHWc layout (all)",
    "ONNX Runtime quantization: QOperator (QLinearConv) vs QDQ formats; quantize_dynamic (ConvInteger)",
]

# op (as the view spells it) -> who writes it, and what to ship instead
_PRIVATE = {
    "com.microsoft.FusedConv": ("ONNX Runtime's offline optimizer (ORT_ENABLE_EXTENDED)",
                                "the unoptimised export, or offline optimisation at ORT_ENABLE_BASIC"),
    "com.microsoft.nchwc.Conv": ("ONNX Runtime's offline optimizer (ORT_ENABLE_ALL, NCHWc layout)",
                                 "the unoptimised export, or offline optimisation at ORT_ENABLE_BASIC"),
    "com.microsoft.NhwcConv": ("ONNX Runtime's NHWC layout transform",
                               "the unoptimised export"),
    "com.microsoft.QLinearConv": ("ONNX Runtime's quantizer (QOperator format)",
                                  "a QDQ model (quantize_static with QuantFormat.QDQ)"),
    "QLinearConv": ("ONNX Runtime's quantizer (QuantFormat.QOperator)",
                    "a QDQ model (quantize_static with QuantFormat.QDQ)"),
    "ConvInteger": ("ONNX Runtime's quantize_dynamic",
                    "a QDQ model (quantize_static with QuantFormat.QDQ)"),
}


def match(index: GraphIndex):
    for node in index.nodes(*_PRIVATE):
        writer, instead = _PRIVATE[node.op]
        yield Match(
            node,
            f"{node.op} is written by {writer}; TensorRT's ONNX parser does not support it: ship {instead}",
            evidence={"op": node.op, "written_by": writer, "use_instead": instead},
            why_not_fixable="re-export or re-quantise",
        )
