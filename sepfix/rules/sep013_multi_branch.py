"""## What it does
Finds parallel convolutions over the same input, with the same stride, group and output
channels and centred kernels of different sizes (k x k beside 1 x 1), whose outputs are summed
(`Add`, `Sum`, `Sub`) with an optional identity branch (the input itself), each branch through
an optional `BatchNormalization`, and the sum through optional per-channel affine ops (a
`BatchNormalization`, `Mul`/`Div`/`Add`/`Sub` by a per-channel constant such as a layer scale,
`Identity`): the train-time form of a re-parameterisable block. Depthwise branches (RepViT's
RepVggDw, FastViT's RepMixer and patch embedding, MobileOne, PP-LCNetV3's LearnableRepLayer)
are the usual case; grouped and dense ones (RepVGG, MobileOne's pointwise and stem blocks) fall
out of the same arithmetic.

## Why is this bad
Every branch is a separate convolution reading the same input, and every BatchNormalization
and Add a separate pass over the activations; the sum is linear, so one convolution with the
combined kernel computes the same. The re-parameterised form is what these networks are
designed to run as; timm (`reparameterize_model`) and PaddleOCR (`rep()`) produce it only in
the framework, before export, if the user remembers to. No ONNX Runtime optimizer level merges
the branches, and TensorRT's Layer Fusion Catalog lists no fusion that adds convolutions of
different kernel sizes into one.

Measured with `scripts/bench_sep013.py`, train-time export as written vs repaired by sepfix
(ONNX Runtime CPU, one thread, batch 1, random weights, medians of 50-60 interleaved runs; a
shared 2-core machine: the figures are from a quiet moment (load 1.8), with the range of two
runs under load 9-11 in brackets). Default optimizations, full-size timm models at 224x224:
RepViT-M0.9 1.12x (1.07-1.19x), FastViT-T8 1.27x (1.18-1.32x), MobileOne-S0 3.65x (3.3-3.7x),
the repaired model as fast as timm's own `reparameterize_model` export (15.9 / 15.5 ms, 12.2 /
12.2 ms, 4.6 / 4.6 ms); with ORT_DISABLE_ALL 1.06x, 1.11x, 4.02x. The committed small exports:
RepViT 1.29x, FastViT 1.43x, MobileOne 2.41x, PP-OCRv4 det train form (28 LearnableRepLayers)
2.70x. Deterministic beside them: the nodes ONNX Runtime runs after its graph optimizations
(ORT_ENABLE_EXTENDED) go from 274 to 182 (RepViT-M0.9; timm's re-parameterised export: 178, the
difference its distillation head), 188 to 88 (FastViT-T8; timm: 88), 455 to 46 (MobileOne-S0;
timm: 46), 501 to 203 (PP-OCRv4 det). Issue 14 measured RepViT-M0.9 1.28x and FastViT-T8 1.15x
on this CPU and, on an H200 with the CUDA EP (batch 1 / 32), RepViT-M0.9 1.34x / 1.18x,
FastViT-T8 1.64x / 1.23x, MobileOne-S0 4.05x / 2.56x: hence `warning`.

## Example
`BatchNormalization(Conv(x, W3, group=C, pads=1) + Conv(x, W1, group=C) + x)` (RepViT);
`x + gamma * ((Conv(x, W3) + Conv(x, W1) + BN1(x)) - BN2(x))` (FastViT's RepMixer).

## Use instead
One `Conv(x, W, b, group=C, pads=1)` with, per output channel, each branch's BatchNormalization
folded into its kernel and bias, smaller kernels zero-padded to the largest (centred), the
identity as a 1 at the kernel's centre, everything summed, and the affine ops after the sum
applied to the sum's kernel and bias (RepVGG / MobileOne re-parameterisation).

## Fix safety
Validated: the same function, but the sums happen in a different order (inside one
accumulator instead of across tensors), which moves the last bits; the validator compares the
outputs before anything is written.

## Known problems
Branches must be centred on the largest kernel (`pads = (k - 1) / 2` apart from the stride
alignment) and undilated relative to each other; a branch shifted inside the kernel window,
an asymmetric padding that does not match the others, or `auto_pad` leaves the sum as it is.
Weights behind Q/DQ or fed as graph inputs are not folded. Convs whose sum also takes another
tensor (a residual from elsewhere) are merged up to that Add only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sepfix.graph import GraphIndex, Node, Scope
from sepfix.patterns import CONV_ATTRIBUTES, spatial_attrs
from sepfix.rules._affine import FOLDABLE_SOURCES, channel_vector, constant_shape, per_channel_size
from sepfix.rules.base import Match

CODE = "SEP013"
NAME = "multi-branch-depthwise"
SUMMARY = "parallel convs over one input (k x k, 1 x 1, identity, BN) summed: one re-parameterised conv"
LEVEL = "warning"
APPLICABILITY = "validated"
SOURCES = [
    "RepVGG (Ding et al. 2021) and MobileOne (Vasu et al. 2023) structural re-parameterisation",
    "timm RepVit RepVggDw.fuse, FastVit RepMixer/MobileOneBlock.reparameterize, timm.utils.reparameterize_model",
    "PaddleOCR PPLCNetV3 LearnableRepLayer.rep",
    "issue 14: train-time vs re-parameterised timm exports, ONNX Runtime CPU and CUDA EP (H200)",
    "scripts/bench_sep013.py: ONNX Runtime CPU latency and optimized node counts, as written vs repaired",
    "TensorRT Layer Fusion Catalog: https://docs.nvidia.com/deeplearning/tensorrt/latest/performance/fusion-catalog.html",
]

# Ops whose output is a per-channel linear function of their non-constant inputs.
_LINEAR = frozenset({"Add", "Sub", "Sum", "Mul", "Div", "BatchNormalization", "Identity"})
_MAX_DEPTH = 48


@dataclass
class _Tree:
    """What a sum expands to: the linear nodes, the conv branches, the other tensors it reads
    (which must all be the convs' input: identity branches) and the constants it folds."""

    nodes: list[Node] = field(default_factory=list)
    convs: list[Node] = field(default_factory=list)
    leaves: list[str] = field(default_factory=list)
    constants: list[tuple[str, tuple]] = field(default_factory=list)  # per-channel operands
    batchnorms: list[tuple[Node, list[tuple]]] = field(default_factory=list)

    def extend(self, other: "_Tree") -> None:
        self.nodes += other.nodes
        self.convs += other.convs
        self.leaves += other.leaves
        self.constants += other.constants
        self.batchnorms += other.batchnorms


def match(index: GraphIndex):
    for root, tree, plan in _sums(index):
        yield _match(root, tree, plan)


def branch_convs(index: GraphIndex) -> set[int]:
    """ids of the convs that are branches of a sum this rule merges (SEP008 leaves those alone:
    a constant added to one branch is part of the sum's bias)."""
    return {id(conv) for _, tree, _ in _sums(index) for conv in tree.convs}


def _sums(index: GraphIndex) -> list:
    """Every mergeable sum, largest trees only: (root, tree, plan), computed once per view."""
    key = "sep013_sums"
    if key not in index.cache:
        sums = []
        for scope in index.scopes:
            found = []
            for node in scope.nodes:
                if node.op not in _LINEAR:
                    continue
                tree = _linear_node(index, scope, node, _MAX_DEPTH)
                if tree is None:
                    continue
                plan = _plan(index, scope, tree)
                if plan is not None:
                    found.append((node, tree, plan))
            inside = {id(n) for _, tree, _ in found for n in tree.nodes[:-1]}  # every node but the root
            sums += [entry for entry in found if id(entry[0]) not in inside]
        index.cache[key] = sums
    return index.cache[key]


def _linear_node(index: GraphIndex, scope: Scope, node: Node, depth: int) -> _Tree | None:
    """The tree under a linear node, or None when the node is not linear here (a Mul of two
    tensors, a Div by a tensor, a BN with non-constant or non-per-channel statistics...)."""
    if depth <= 0 or not node.node.output or any(node.node.output[1:]):
        return None  # BatchNormalization's training outputs, when written, are not ours to drop
    op = node.op
    terms = [n for n in node.node.input if n]
    if op == "BatchNormalization":
        if node.attr("training_mode", 0) or node.attr("spatial", 1) != 1 or len(terms) != 5:
            return None
        shapes = [constant_shape(index, scope, n) for n in terms[1:]]
        if any(s is None or len(s) != 1 for s in shapes):
            return None
        tree = _tensor(index, scope, terms[0], depth)
        tree.batchnorms.append((node, shapes))
    elif op == "Identity":
        tree = _tensor(index, scope, terms[0], depth)
    elif op in ("Add", "Sub", "Sum"):
        constants = [(n, constant_shape(index, scope, n)) for n in terms]
        if op != "Sum" and len(terms) != 2 or all(s is not None for _, s in constants):
            return None
        tree = _Tree()
        for name, shape in constants:
            if shape is not None:
                tree.constants.append((name, shape))
            else:
                tree.extend(_tensor(index, scope, name, depth))
    elif op in ("Mul", "Div"):
        if len(terms) != 2:
            return None
        shapes = [constant_shape(index, scope, n) for n in terms]
        variable = [i for i, s in enumerate(shapes) if s is None]
        if len(variable) != 1 or (op == "Div" and variable != [0]):
            return None  # a product of two tensors, a division by a tensor: not linear
        tree = _tensor(index, scope, terms[variable[0]], depth)
        tree.constants.append((terms[1 - variable[0]], shapes[1 - variable[0]]))
    else:
        return None
    tree.nodes.append(node)
    return tree


def _tensor(index: GraphIndex, scope: Scope, name: str, depth: int) -> _Tree:
    """A term of a linear node: a conv branch, a linear node read only here, or a leaf tensor."""
    producer = index.producer(scope, name)
    if producer is not None and index.sole_consumer(scope, name) is not None:
        if producer.op == "Conv" and _conv_branch(index, scope, producer):
            return _Tree(convs=[producer])
        if producer.op in _LINEAR:
            tree = _linear_node(index, scope, producer, depth - 1)
            if tree is not None:
                return tree
    return _Tree(leaves=[name])


def _conv_branch(index: GraphIndex, scope: Scope, conv: Node) -> bool:
    """A conv whose weight and bias a rewrite may fold, with explicit pads."""
    if conv.unresolved() & CONV_ATTRIBUTES or len([o for o in conv.node.output if o]) != 1:
        return False
    source = index.weight_source(scope, conv.input(1))
    shape = source.shape
    if source.kind not in FOLDABLE_SOURCES or shape is None or len(shape) < 3:
        return False
    if not all(isinstance(d, int) and d > 0 for d in shape):
        return False
    if conv.input(2):
        bias = constant_shape(index, scope, conv.input(2))
        if bias is None or bias != (shape[0],):
            return False
    group = conv.attr("group", 1)
    attrs = spatial_attrs(conv, len(shape) - 2)
    return isinstance(group, int) and group > 0 and shape[0] % group == 0 and attrs["auto_pad"] == "NOTSET"


@dataclass
class _Plan:
    """The merged conv: its input, geometry and what the sum holds."""

    source: str
    kernel: list[int]
    pads: list[int]
    strides: list[int]
    dilations: list[int]
    group: int
    c_out: int
    c_in: int
    identities: int
    branch_kernels: list[tuple]


def _plan(index: GraphIndex, scope: Scope, tree: _Tree) -> _Plan | None:
    """The merged conv when the tree is one: one input, compatible geometry, per-channel
    constants, at least two branches."""
    if not tree.convs:
        return None
    source = tree.convs[0].input(0)
    if any(c.input(0) != source for c in tree.convs) or any(leaf != source for leaf in tree.leaves):
        return None  # a branch reads another tensor
    if len(tree.convs) + len(tree.leaves) < 2:
        return None  # one conv with affine ops after it: SEP008's business, or BN left to the runtime
    geometry = _geometry(index, scope, tree.convs)
    if geometry is None:
        return None
    kernel, pads, strides, dilations, group, c_out, c_in, branch_kernels = geometry
    rank = len(kernel) + 2
    channels = index.channels(scope, source)
    if channels is not None and channels != c_in:
        return None
    for _, shape in tree.constants:
        size = per_channel_size(shape, rank)
        if size not in (1, c_out):
            return None
    for _, shapes in tree.batchnorms:
        if any(s != (c_out,) for s in shapes):
            return None
    if tree.leaves:  # identity branches: a 1 at the kernel's centre, same size out as in
        spatial = len(kernel)
        centred = all(k % 2 == 1 and pads[a] == pads[a + spatial] == dilations[a] * (k - 1) // 2
                      for a, k in enumerate(kernel))
        if c_out != c_in or any(s != 1 for s in strides) or not centred:
            return None
    return _Plan(source, kernel, pads, strides, dilations, group, c_out, c_in, len(tree.leaves), branch_kernels)


def _geometry(index: GraphIndex, scope: Scope, convs: list[Node]):
    """(kernel, pads, strides, dilations, group, c_out, c_in, branch kernels) of the merged conv, or None when
    the branches differ in stride, dilation, group or channels, or are not centred alike."""
    shapes = [tuple(index.weight_source(scope, c.input(1)).shape) for c in convs]
    groups = [c.attr("group", 1) for c in convs]
    if len({s[:2] for s in shapes}) != 1 or len(set(groups)) != 1 or len({len(s) for s in shapes}) != 1:
        return None
    spatial = len(shapes[0]) - 2
    attrs = [spatial_attrs(c, spatial) for c in convs]
    if any(a["strides"] != attrs[0]["strides"] or a["dilations"] != attrs[0]["dilations"] for a in attrs):
        return None
    dilations = attrs[0]["dilations"]
    kernel = [max(s[2 + a] for s in shapes) for a in range(spatial)]
    begin: set[tuple] = set()
    end: set[tuple] = set()
    for shape, attr in zip(shapes, attrs):
        offsets = [kernel[a] - shape[2 + a] for a in range(spatial)]
        if any(o % 2 for o in offsets):
            return None  # an even difference of sizes has no centre
        shift = [dilations[a] * offsets[a] // 2 for a in range(spatial)]
        pads = attr["pads"]
        begin.add(tuple(pads[a] + shift[a] for a in range(spatial)))
        end.add(tuple(pads[a + spatial] + shift[a] for a in range(spatial)))
    if len(begin) != 1 or len(end) != 1:
        return None  # a branch sits elsewhere in the window than the others
    c_out, per_group = shapes[0][:2]
    return (kernel, list(begin.pop()) + list(end.pop()), attrs[0]["strides"], dilations, groups[0], c_out,
            per_group * groups[0], [tuple(s[2:]) for s in shapes])


def _kind(plan: _Plan) -> str:
    if plan.group == plan.c_in and plan.c_out % plan.c_in == 0:
        return "depthwise"
    return "dense" if plan.group == 1 else "grouped"


def _match(root: Node, tree: _Tree, plan: _Plan) -> Match:
    convs = tree.convs
    sizes = plan.branch_kernels
    anchor = convs[max(range(len(convs)), key=lambda i: (np.prod(sizes[i]), -i))]
    kind = _kind(plan)
    parts = [f"{len(convs)} {kind} conv{'s' if len(convs) > 1 else ''} "
             f"({', '.join('x'.join(map(str, s)) for s in sizes)})"]
    if plan.identities:
        parts.append("the identity" + (f" ({plan.identities} times)" if plan.identities > 1 else ""))
    if tree.batchnorms:
        parts.append(f"{len(tree.batchnorms)} BatchNormalization")
    kernel = "x".join(map(str, plan.kernel))
    message = (f"{' + '.join(parts)} over one input, summed by {root.label}: one {kind} {kernel} conv "
               f"(group={plan.group}) computes the same (re-parameterisation)")
    bound = {"input": plan.source}
    for i, conv in enumerate(convs):
        bound[f"weight{i}"] = conv.input(1)
        if conv.input(2):
            bound[f"bias{i}"] = conv.input(2)
    for i, (name, _) in enumerate(tree.constants):
        bound[f"constant{i}"] = name
    for i, (bn, _) in enumerate(tree.batchnorms):
        for j, name in enumerate(bn.node.input[1:5]):
            bound[f"bn{i}_{j}"] = name
    evidence = {
        "kind": kind, "branches": [list(s) for s in sizes], "identity": plan.identities,
        "batchnorms": len(tree.batchnorms), "kernel": plan.kernel, "pads": plan.pads, "strides": plan.strides,
        "dilations": plan.dilations, "group": plan.group, "channels": plan.c_out,
    }
    return Match(anchor, message, roles={"root": root, "convs": convs, "nodes": tree.nodes}, bound=bound,
                 evidence=evidence)


def rewrite(ctx, match: Match) -> str:
    """One conv with the combined kernel and bias, writing the sum's output."""
    root, convs, nodes = ctx.role("root"), ctx.role("convs"), ctx.role("nodes")
    evidence = match.evidence
    source = match.bound["input"]
    kernel, group, c_out = evidence["kernel"], evidence["group"], evidence["channels"]
    weight0 = ctx.value(match.bound["weight0"])
    per_group = weight0.shape[1]
    spatial = len(kernel)
    produced = {n.outputs[0].name: n for n in list(nodes) + list(convs)}

    def is_term(name: str) -> bool:
        return name in produced or name == source

    def term(name: str) -> tuple[np.ndarray, np.ndarray]:
        """(kernel, bias) of what `name` holds, as a function of the input, in float64."""
        node = produced.get(name)
        if node is None:
            if name != source:
                raise ValueError(f"{name} is not a term of the sum")  # the match promised it was
            return _identity(c_out, per_group, kernel), np.zeros(c_out)
        inputs = [t.name for t in node.inputs]
        if node.op == "Conv":
            weight = ctx.value(inputs[1]).astype(np.float64)
            bias = ctx.value(inputs[2]).astype(np.float64) if len(inputs) > 2 and inputs[2] else np.zeros(c_out)
            return _centred(weight, kernel), bias.reshape(-1)
        if node.op == "Identity":
            return term(inputs[0])
        if node.op == "BatchNormalization":
            w, b = term(inputs[0])
            gamma, beta, mean, var = (ctx.value(n).astype(np.float64).reshape(-1) for n in inputs[1:5])
            scale = gamma / np.sqrt(var + float(node.attrs.get("epsilon", 1e-5)))
            return w * _per_out(scale, spatial), (b - mean) * scale + beta
        if node.op in ("Add", "Sum", "Sub"):
            total_w, total_b = np.zeros((c_out, per_group, *kernel)), np.zeros(c_out)
            for i, name_i in enumerate(inputs):
                sign = -1.0 if node.op == "Sub" and i == 1 else 1.0
                if is_term(name_i):
                    w, b = term(name_i)
                    total_w, total_b = total_w + sign * w, total_b + sign * b
                else:
                    total_b = total_b + sign * channel_vector(ctx.value(name_i), c_out)
            return total_w, total_b
        if node.op in ("Mul", "Div"):
            variable = 0 if is_term(inputs[0]) else 1
            w, b = term(inputs[variable])
            factor = channel_vector(ctx.value(inputs[1 - variable]), c_out)
            if node.op == "Div":
                factor = 1.0 / factor
            return w * _per_out(factor, spatial), b * factor
        raise ValueError(f"{node.op} is not linear")  # the match promised it was

    output = root.outputs[0]
    weight, bias = term(output.name)
    dtype = weight0.dtype
    x = convs[0].inputs[0]
    root.outputs = []
    anchor = ctx.anchor
    base = f"{anchor.name}_reparam" if anchor.name else "reparam_conv"
    attrs = {"group": group, "kernel_shape": list(kernel), "pads": list(evidence["pads"]),
             "strides": list(evidence["strides"])}
    if any(d != 1 for d in evidence["dilations"]):
        attrs["dilations"] = list(evidence["dilations"])
    ctx.node("Conv", base,
             inputs=[x, ctx.constant(f"{base}_weight", weight.astype(dtype)),
                     ctx.constant(f"{base}_bias", bias.astype(dtype))],
             outputs=[output], attrs=attrs)
    parts = [f"{len(convs)} conv{'s' if len(convs) > 1 else ''}"]
    if evidence["identity"]:
        parts.append("identity")
    if evidence["batchnorms"]:
        parts.append(f"{evidence['batchnorms']} BN")
    return (f"{' + '.join(parts)} and {len(nodes)} linear node{'s' if len(nodes) > 1 else ''} -> one Conv "
            f"{'x'.join(map(str, kernel))} group={group}, weight {tuple(weight.shape)}")


def _per_out(vector: np.ndarray, spatial: int) -> np.ndarray:
    return vector.reshape((-1, 1) + (1,) * spatial)


def _centred(weight: np.ndarray, kernel: list[int]) -> np.ndarray:
    """A branch's kernel zero-padded to the merged size, centred."""
    pad = [(0, 0), (0, 0)] + [((k - s) // 2, (k - s) // 2) for k, s in zip(kernel, weight.shape[2:])]
    return np.pad(weight, pad)


def _identity(c_out: int, per_group: int, kernel: list[int]) -> np.ndarray:
    """The kernel of the identity: for output channel o, a 1 at the centre of its own input channel."""
    weight = np.zeros((c_out, per_group, *kernel))
    centre = tuple(k // 2 for k in kernel)
    for o in range(c_out):
        weight[(o, o % per_group) + centre] = 1.0
    return weight
