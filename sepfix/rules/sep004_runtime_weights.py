"""## What it does
Finds a conv whose weight or bias is computed at run time from constants: a TF-layout weight
put back by `Transpose`/`Reshape`, an fp16 weight widened by `Cast` (with or without `Identity`
nodes in the chain), or an initializer that is also listed as a graph input (so it may be
overridden at run time).

## Why is this bad
TensorRT's ONNX parser wants the conv's weights as build-time constants: "two inputs (data and
weights) are allowed only in explicit-quantization mode". A computed weight either fails the
build or becomes a generic convolution with weights as a tensor input, which rules out its
depthwise kernels and fusions; onnxruntime recomputes the chain (or keeps an extra copy). An
initializer listed as a graph input cannot be constant-folded by runtimes at all
(onnxruntime issue 4507). tf2onnx has emitted the Transpose form (issue 1070).

## Example
`W = Transpose(W_hwio, perm=[3, 2, 0, 1])` feeding `Conv(x, W)`.

## Use instead
A constant initializer in ONNX layout, `(C_out, C_in/group, kH, kW)`, fed straight to the conv.

## Fix safety
Safe: the chain is evaluated with numpy once, exactly as the runtime would. Folding an
initializer listed as a graph input removes it from the inputs (it can no longer be fed at run
time). Chains through QuantizeLinear/DequantizeLinear are never folded: explicit quantization
needs them.

## Known problems
A chain of `Identity` nodes alone is not reported: torch.onnx writes one whenever it
deduplicates equal constants (every freshly initialised BatchNorm folds to the same bias), and
parsers pass a constant straight through it. Repair still folds an Identity that stands in a
chain with other ops.
"""

from __future__ import annotations

from sepfix.graph import GraphIndex, Source
from sepfix.patterns import all_convs
from sepfix.rules.base import Match

CODE = "SEP004"
NAME = "runtime-weights"
SUMMARY = "conv weight or bias computed at run time (Transpose, Reshape, Cast, Identity, input)"
LEVEL = "warning"
APPLICABILITY = "safe"
SOURCES = ["tf2onnx issue 1070 (TF-layout weights transposed at run time)",
           "onnxruntime issue 4507 (initializers listed as graph inputs)"]


def match(index: GraphIndex):
    for info in all_convs(index):
        node = info.node
        for slot, role in ((1, "weight"), (2, "bias")):
            name = node.input(slot)
            if not name:
                continue
            source = info.weight if slot == 1 else index.weight_source(node.scope, name)
            if source.kind is Source.FOLDED and all(n.op == "Identity" for n in source.chain):
                continue  # torch's deduplicated constants; see Known problems
            if source.kind is Source.FOLDED:
                chain = " -> ".join(n.op for n in source.chain)
                yield Match(
                    node,
                    f"the {role} is computed at run time: {source.root} -> {chain}; fold it into "
                    "a constant initializer",
                    roles={"chain": list(source.chain)},
                    bound={role: name},
                    evidence={"input": slot, "role": role, "root": source.root,
                              "chain": [n.op for n in source.chain]},
                )
            elif source.kind is Source.GRAPH_INPUT_INITIALIZER and index.model.ir_version >= 4:
                # Before IR 4 every initializer had to be listed as an input: not a mangle there.
                yield Match(
                    node,
                    f"the {role} {name!r} is an initializer also listed as a graph input, so it can "
                    "be overridden at run time and is not a constant to TensorRT",
                    bound={role: name},
                    evidence={"input": slot, "role": role, "root": name, "chain": []},
                )


def rewrite(ctx, match: Match) -> str:
    """Replace the computed input by its folded value; an input-listed initializer is unlisted."""
    node = ctx.anchor
    details = match.evidence
    slot, role = details["input"], details["role"]
    tensor = node.inputs[slot]
    if not details["chain"]:
        ctx.graph.inputs = [t for t in ctx.graph.inputs if t.name != tensor.name]
        ctx.removed_inputs.add(tensor.name)
        ctx.touch(node)
        return f"{role} {tensor.name!r} removed from the graph inputs (a constant initializer now)"
    value = ctx.value(match.bound[role])
    node.inputs[slot] = ctx.constant(f"{node.name}_{role}", value)
    ctx.touch(node)
    chain = " -> ".join(details["chain"])
    return f"{role} folded: {details['root']} -> {chain} became one constant {tuple(value.shape)}"
