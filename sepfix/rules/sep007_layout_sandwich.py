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
from sepfix.rules._common import make_finding

CODE = "SEP007"
NAME = "layout-sandwich"
SUMMARY = "inverse Transpose pairs (NHWC round trips) wrapped around convs"
FIX_SAFETY = "safe"
SOURCES = ["tf2onnx issue 977 (Transpose pairs around every conv)"]

# Element-wise ops with no axis, which commute with any transpose.
ELEMENTWISE = ("Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Tanh", "Elu",
               "Selu", "Softplus", "Mish", "Gelu", "Identity", "Neg", "Abs", "Exp", "Erf", "Cast")
_CONVS = ("Conv", "ConvTranspose")


def detect(index: GraphIndex):
    for first in index.nodes("Transpose"):
        match = match_inverse_pair(index, first)
        if match is None:
            continue
        middle, last = match
        between = "".join(f" -> {n.op}" for n in middle)
        yield make_finding(
            CODE, NAME, first,
            f"Transpose(perm={list(first.attr('perm'))}){between} -> Transpose(perm="
            f"{list(last.attr('perm'))}) is an NHWC round trip next to a conv: the pair cancels",
            fixable=True,
            nodes=middle + [last],
            details={"middle": [n.label for n in middle], "last": last.label},
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
        if user.op not in ELEMENTWISE or user.input(0) != tensor or len([n for n in user.node.input if n]) != 1:
            return None
        middle.append(user)
        tensor = user.node.output[0]
    return None


def _touches_conv(index: GraphIndex, first: Node, last: Node) -> bool:
    producer = index.producer(first.scope, first.input(0))
    if producer is not None and producer.op in _CONVS:
        return True
    return any(n.op in _CONVS for n in index.consumers(last.scope, last.node.output[0]))
