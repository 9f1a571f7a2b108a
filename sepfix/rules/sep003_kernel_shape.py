"""## What it does
Finds a `Conv`/`ConvTranspose` whose `kernel_shape` disagrees with its weight's spatial dims
(an invalid model), or has no `kernel_shape` while its weight is not a plain initializer (it
arrives through DequantizeLinear, a Transpose, a Cast ...). A missing `kernel_shape` beside a
plain constant weight is valid and stays silent, and so does a weight that is a true graph input.

## Why is this bad
A wrong `kernel_shape` makes the model invalid: runtimes reject it or compute the wrong output
size. When the weight is not a plain initializer, TensorRT's ONNX parser cannot size the kernel
without the attribute (the weight is a tensor it sees only at build time, e.g. through
DequantizeLinear in explicit quantization). The torch dynamo exporter has omitted it
(pytorch issues 169824, 190890).

## Example
`Conv(x, DequantizeLinear(W_int8, s))` with no `kernel_shape`; or `kernel_shape=[5, 5]` with a
`(32, 1, 3, 3)` weight.

## Use instead
`kernel_shape` written from the weight's dims: `[3, 3]`.

## Fix safety
Safe: the attribute is read from the weight, which already decides the computation.
"""

from __future__ import annotations

from sepfix.graph import GraphIndex, Source
from sepfix.patterns import all_convs
from sepfix.rules.base import Level, Match

CODE = "SEP003"
NAME = "kernel-shape"
SUMMARY = "kernel_shape disagrees with the weight, or is missing beside a non-initializer weight"
LEVEL = "error"
APPLICABILITY = "safe"
SOURCES = ["pytorch issues 169824 and 190890 (dynamo exporter omits kernel_shape)"]

_PLAIN = (Source.INITIALIZER, Source.CONSTANT_NODE, Source.GRAPH_INPUT_INITIALIZER, Source.GRAPH_INPUT)


def match(index: GraphIndex):
    for info in all_convs(index):
        shape = info.weight_shape
        written = info.node.attr("kernel_shape")
        kernel = list(shape[2:]) if shape is not None else None
        if written is not None:
            if kernel is not None and list(written) != kernel:
                yield Match(
                    info.node,
                    f"kernel_shape={list(written)} but the weight's kernel is {kernel}",
                    evidence={"kernel_shape_found": list(written), "kernel_shape_expected": kernel},
                )
            continue
        if info.weight.kind in _PLAIN:
            continue
        through = " -> ".join(n.op for n in info.weight.chain) or "a computed tensor"
        if kernel is None:
            yield Match(
                info.node,
                f"kernel_shape is missing and the weight arrives through {through} with an unknown "
                "shape: TensorRT cannot size the kernel (not rewritten: the shape is unknown)",
                evidence={"kernel_shape_found": None, "kernel_shape_expected": None},
                why_not_fixable="weight shape unknown",
                level=Level.WARNING,
            )
            continue
        yield Match(
            info.node,
            f"kernel_shape is missing and the weight arrives through {through}: TensorRT cannot "
            f"size the kernel; write kernel_shape={kernel}",
            evidence={"kernel_shape_found": None, "kernel_shape_expected": kernel},
            level=Level.WARNING,
        )


def rewrite(ctx, match: Match) -> str:
    node = ctx.anchor
    expected = match.evidence["kernel_shape_expected"]
    before = node.attrs.get("kernel_shape", "missing")
    node.attrs["kernel_shape"] = list(expected)
    ctx.touch(node)
    return f"kernel_shape {list(before) if before != 'missing' else before} -> {list(expected)}"
