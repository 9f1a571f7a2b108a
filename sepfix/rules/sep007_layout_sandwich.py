"""## What it does
Finds a `Transpose` followed (directly, or through element-wise activations) by the inverse
`Transpose`, next to a depthwise or pointwise convolution: the NHWC round trips that TF
converters wrap around every NCHW conv.

## Why is this bad
Each pair moves the whole feature map through memory twice to end where it started. TensorRT
removes some pairs itself but not all (never across a non-fusible layer boundary), and every
pair left splits what would have been a conv+activation fusion. tf2onnx issue 977 shows models
with hundreds of them.

## Example
`Conv -> Transpose(perm=[0,2,3,1]) -> Relu -> Transpose(perm=[0,3,1,2]) -> Conv`.

## Use instead
`Conv -> Relu -> Conv`: the pair cancels, the activation stays.

## Fix safety
Safe: a transpose followed by its inverse is the identity, and element-wise ops commute with it.
"""

from __future__ import annotations

from sepfix.graph import GraphIndex, Node
from sepfix.ops import CONV_OPS, UNARY_ELEMENTWISE_OPS
from sepfix.rules.base import Match

CODE = "SEP007"
NAME = "layout-sandwich"
SUMMARY = "inverse Transpose pairs (NHWC round trips) wrapped around convs"
LEVEL = "warning"
APPLICABILITY = "safe"
SOURCES = ["tf2onnx issue 977 (Transpose pairs around every conv)"]


def match(index: GraphIndex):
    for first in index.nodes("Transpose"):
        found = match_inverse_pair(index, first)
        if found is None:
            continue
        middle, last = found
        between = "".join(f" -> {n.op}" for n in middle)
        yield Match(
            first,
            f"Transpose(perm={list(first.attr('perm'))}){between} -> Transpose(perm="
            f"{list(last.attr('perm'))}) is an NHWC round trip next to a conv: the pair cancels",
            roles={"middle": middle, "last": last},
            evidence={"middle_ops": [n.op for n in middle]},
        )


def match_inverse_pair(index: GraphIndex, first: Node):
    """(element-wise nodes between, closing transpose) or None."""
    scope = first.scope
    perm = first.attr("perm")
    if not perm:
        return None
    middle: list[Node] = []
    tensor = first.node.output[0]
    for _ in range(6):
        user = index.sole_consumer(scope, tensor)
        if user is None:
            return None
        if user.op == "Transpose":
            inverse = user.attr("perm")
            if not inverse or len(inverse) != len(perm) or any(perm[inverse[i]] != i for i in range(len(perm))):
                return None
            if not _touches_conv(index, first, user):
                return None
            return middle, user
        if not _elementwise_on(index, user, tensor):
            return None
        middle.append(user)
        tensor = user.node.output[0]
    return None


def _elementwise_on(index: GraphIndex, node: Node, tensor: str) -> bool:
    """True for an op that commutes with a transpose of `tensor`: unary element-wise, or Clip
    whose bounds are constant scalars."""
    if node.op not in UNARY_ELEMENTWISE_OPS or node.input(0) != tensor:
        return False
    extra = [n for n in node.node.input[1:] if n]
    return all(index.constant_shape(node.scope, n) in ((), (1,)) and index.constant_value(node.scope, n) is not None
               for n in extra) if node.op == "Clip" else not extra


def _touches_conv(index: GraphIndex, first: Node, last: Node) -> bool:
    producer = index.producer(first.scope, first.input(0))
    if producer is not None and producer.op in CONV_OPS:
        return True
    return any(n.op in CONV_OPS for n in index.consumers(last.scope, last.node.output[0]))


def rewrite(ctx, match: Match) -> str:
    """Bypass both transposes: the element-wise ops between now read and write NCHW."""
    import onnx_graphsurgeon as gs

    first, middle, last = ctx.anchor, ctx.role("middle"), ctx.role("last")
    source = first.inputs[0]
    if middle:
        middle[0].inputs[0] = source
        for node in middle:
            node.outputs[0].shape = None  # it was NHWC
        result = middle[-1].outputs[0]
    else:
        result = source
    target = last.outputs[0]
    graph_outputs = {t.name for t in ctx.graph.outputs}
    if target.name in graph_outputs:
        # The graph output keeps its name: the node computing the result writes it directly.
        last.outputs = []
        producer = result.inputs[0] if result.inputs else None
        if producer is not None and result.name not in graph_outputs:
            for consumer in list(result.outputs):
                _replace_input(consumer, result, target)
            producer.outputs[producer.outputs.index(result)] = target
        else:
            ctx.node("Identity", f"{first.name}_cancelled", inputs=[result], outputs=[target])
    else:
        for consumer in list(target.outputs):
            _replace_input(consumer, target, result)
            _replace_in_subgraphs(consumer, target, result, gs)
        last.outputs = []
    return f"cancelled Transpose pair {first.name} / {last.name}" + (f" around {', '.join(n.op for n in middle)}" if middle else "")


def _replace_input(node, old, new) -> None:
    for i, tensor in enumerate(node.inputs):
        if tensor is old:
            node.inputs[i] = new


def _replace_in_subgraphs(node, old, new, gs) -> None:
    """Subgraph nodes may read the tensor from the enclosing scope."""
    for value in node.attrs.values():
        graphs = value if isinstance(value, list) else [value]
        for graph in graphs:
            if isinstance(graph, gs.Graph):
                for inner in graph.nodes:
                    _replace_input(inner, old, new)
                    _replace_in_subgraphs(inner, old, new, gs)
