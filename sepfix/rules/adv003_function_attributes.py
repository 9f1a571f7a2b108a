"""## What it does
Advice: points at convs inside model-local functions whose attributes (`group`, `strides`,
`pads` ...) refer to the function's attributes (`ref_attr_name`) while the function's call
sites bind them differently. sepfix reasons about a function's body once, so such a conv is
neither checked nor repaired; this advice says so instead of staying silent.

## Why is this bad
Nothing is wrong with the model itself: `torch.onnx.export(..., export_modules_as_functions=...)`
writes one function for `nn.Conv2d` that every conv calls with its own `group`. But a mangle in
one of those convs would go unreported.

## Example
A function `Conv2d` whose body is `Conv(x, W, group=@group)`, called with `group=1` and
`group=32`.

## Use instead
Check the inlined model (`onnx.inliner.inline_local_functions(model)`), or export without
`export_modules_as_functions`.

## Fix safety
Not fixable: it is advice about what sepfix could not check.
"""

from __future__ import annotations

from sepfix.graph import GraphIndex
from sepfix.patterns import CONV_ATTRIBUTES, unresolved_convs
from sepfix.rules.base import Match

CODE = "ADV003"
NAME = "function-attributes"
SUMMARY = "advice: conv in a function whose call sites bind its attributes differently (not checked)"
LEVEL = "info"
APPLICABILITY = "not fixable"
SOURCES = ["ONNX IR: FunctionProto attributes and ref_attr_name",
           "torch.onnx.export(export_modules_as_functions=...)"]


def match(index: GraphIndex):
    for node in unresolved_convs(index):
        names = sorted(node.unresolved() & CONV_ATTRIBUTES)
        yield Match(
            node,
            f"{node.op} reads {', '.join(names)} from the function's {node.scope.call_sites} call sites, which "
            "bind it differently: sepfix does not check it here; check the inlined model",
            evidence={"attributes": names, "call_sites": node.scope.call_sites},
            why_not_fixable="inline the functions first",
        )
