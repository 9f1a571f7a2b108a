"""What a depthwise, pointwise, grouped and dense convolution is, and where DW→PW blocks stand.

Classification uses the weight's shape and the group attribute as written (never the weight's
values), so it is cheap enough to run on every conv of a multi-GB model. Rules that need the
values (a dense kernel that is secretly block-diagonal) read them themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterator

from sepfix.graph import GraphIndex, Node, Scope, Source, WeightSource
from sepfix.ops import ACTIVATION_OPS, ADD_OPS, BLOCK_PASSTHROUGH_OPS, QUANT_OPS


class ConvKind(str, Enum):
    DEPTHWISE = "depthwise"
    POINTWISE = "pointwise"
    GROUPED = "grouped"
    DENSE = "dense"
    UNKNOWN = "unknown"


@dataclass
class ConvInfo:
    """One Conv or ConvTranspose with the facts rules reason about.

    `group` is the attribute as written (None when absent, which ONNX reads as 1); `c_in` is
    the input's channel count when the index can tell; `weight_shape` is the constant weight's
    shape (None for a weight computed at run time from non-constants).
    """

    node: Node
    weight: WeightSource
    group: int | None
    c_in: int | None
    kind: ConvKind

    @property
    def transposed(self) -> bool:
        return self.node.op == "ConvTranspose"

    @property
    def weight_shape(self) -> tuple | None:
        """The weight's shape when known and conv-like (rank >= 3: C_out, C_in/group, k...)."""
        shape = self.weight.shape
        if shape is None or len(shape) < 3 or not all(isinstance(d, int) for d in shape):
            return None
        return tuple(shape)

    @property
    def effective_group(self) -> int:
        return 1 if self.group is None else self.group

    @property
    def kernel(self) -> tuple | None:
        return None if self.weight_shape is None else self.weight_shape[2:]

    @property
    def c_out(self) -> int | None:
        shape = self.weight_shape
        if shape is None:
            return None
        if self.transposed:
            return shape[1] * self.effective_group if self.effective_group > 0 else None
        return shape[0]


def conv_info(index: GraphIndex, node: Node) -> ConvInfo:
    weight = index.weight_source(node.scope, node.input(1))
    if weight.is_constant and weight.shape is not None and len(weight.shape) < 3:
        # A constant weight of rank < 3 makes the model invalid, and no rule can read it as a conv.
        raise index.error(
            f"{node.op} {node.label!r} has weight {node.input(1)!r} of shape {list(weight.shape)}: "
            "a conv weight has rank 3 or more (C_out, C_in/group, kernel...)"
        )
    _check_conv_attributes(index, node, weight)
    group = node.attr("group") if node.has_attr("group") else None
    c_in = index.channels(node.scope, node.input(0))
    info = ConvInfo(node, weight, group, c_in, ConvKind.UNKNOWN)
    info.kind = classify(info)
    return info


def _check_conv_attributes(index: GraphIndex, node: Node, weight: WeightSource) -> None:
    """Refuse spatial attributes and biases no conv of this kernel rank can have: rules would
    misread them. kernel_shape is SEP003's and group SEP002's to report, not errors."""
    if weight.shape is None or len(weight.shape) < 3:
        return
    rank = len(weight.shape) - 2
    for name, count, low in (("strides", rank, 1), ("dilations", rank, 1), ("pads", 2 * rank, 0)):
        value = node.attr(name)
        if value and (len(value) != count or any(not isinstance(v, int) or v < low for v in value)):
            raise index.error(f"{node.op} {node.label!r} has {name}={list(value)}: a conv with a {rank}-D kernel "
                              f"takes {count} values >= {low}")
    auto_pad = node.attr("auto_pad")
    if auto_pad is not None and _text(auto_pad) not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise index.error(f"{node.op} {node.label!r} has auto_pad={_text(auto_pad)!r}: not one of NOTSET, "
                          "SAME_UPPER, SAME_LOWER, VALID")
    bias = index.constant_shape(node.scope, node.input(2)) if node.input(2) else None
    if bias is not None and (len(bias) != 1 or (node.op == "Conv" and isinstance(bias[0], int)
                                                  and isinstance(weight.shape[0], int) and bias[0] != weight.shape[0])):
        raise index.error(f"{node.op} {node.label!r} has bias {node.input(2)!r} of shape {list(bias)}: a conv "
                          "bias is 1-D, one value per output channel")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def spatial_attrs(node: Node, rank: int) -> dict:
    """strides, dilations and pads of a conv with ONNX defaults filled in."""
    return {
        "strides": list(node.attr("strides") or [1] * rank),
        "dilations": list(node.attr("dilations") or [1] * rank),
        "pads": list(node.attr("pads") or [0] * (2 * rank)),
        "auto_pad": _text(node.attr("auto_pad", "NOTSET")),
    }


def has_constant_weight(info: "ConvInfo") -> bool:
    return info.weight.kind not in (Source.GRAPH_INPUT, Source.RUNTIME)


def classify(info: ConvInfo) -> ConvKind:
    shape = info.weight_shape
    if shape is None or len(shape) < 3:
        return ConvKind.UNKNOWN
    group = info.effective_group
    if group <= 0:
        return ConvKind.UNKNOWN
    kernel = shape[2:]
    if info.transposed:
        c_in = shape[0]
        per_group_in = c_in // group if c_in % group == 0 else None
    else:
        per_group_in = shape[1]
        c_in = per_group_in * group
    if info.c_in is not None and info.c_in != c_in:
        return ConvKind.UNKNOWN  # the group does not fit the input: SEP002's business
    if group > 1 and per_group_in == 1:
        return ConvKind.DEPTHWISE
    if group > 1:
        return ConvKind.GROUPED
    if all(k == 1 for k in kernel):
        return ConvKind.POINTWISE
    return ConvKind.DENSE


# Attributes that decide what a conv computes; a conv that cannot read one is not reasoned about.
CONV_ATTRIBUTES = frozenset({"group", "kernel_shape", "strides", "pads", "dilations", "auto_pad"})


def iter_convs(index: GraphIndex) -> Iterator[ConvInfo]:
    for node in index.nodes("Conv", "ConvTranspose"):
        if not node.unresolved() & CONV_ATTRIBUTES:
            yield conv_info(index, node)


def all_convs(index: GraphIndex) -> list[ConvInfo]:
    """Every conv of the model whose attributes are known, classified once and shared by all rules."""
    if "convs" not in index.cache:
        index.cache["convs"] = list(iter_convs(index))
    return index.cache["convs"]


def unresolved_convs(index: GraphIndex) -> list[Node]:
    """Convs inside model-local functions whose call sites bind their attributes differently."""
    return [n for n in index.nodes("Conv", "ConvTranspose") if n.unresolved() & CONV_ATTRIBUTES]


# Gates: x * f(x) (swish, hard-swish, squeeze-excitation). The side branch starts from x.
_GATE_OPS = ("Mul",)


@dataclass(frozen=True)
class Block:
    """A depthwise-separable block: a depthwise conv, what stands between it and the pointwise
    conv it feeds (BN, activations, gates, Q/DQ), and the nodes right after the pointwise conv
    that TensorRT may fuse into it (bias or residual Add, activation, Q/DQ).

    The one block type: check's JSON, validate's TensorRT report and the HTML page all read it.
    Node names are the view's labels, or TensorRT's names (`find_blocks(..., tensorrt_names=True)`:
    an unnamed node is `node_of_<first output>` there).
    """

    depthwise: str
    pointwise: str
    between: tuple[str, ...]
    channels: int
    between_ops: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    after_ops: tuple[str, ...] = ()
    graph: str = "main"
    depth_multiplier: int = 1
    kernel: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {
            "graph": self.graph,
            "depthwise": self.depthwise,
            "pointwise": self.pointwise,
            "between": list(self.between),
            "between_ops": list(self.between_ops),
            "after": list(self.after),
            "after_ops": list(self.after_ops),
            "channels": self.channels,
            "depth_multiplier": self.depth_multiplier,
            "kernel": list(self.kernel),
        }


def tensorrt_name(node: Node) -> str:
    """TensorRT's name for an ONNX node: its name, or `node_of_<first output>` when unnamed."""
    proto = node.node
    return proto.name or (f"node_of_{proto.output[0]}" if proto.output else node.label)


def find_blocks(index: GraphIndex, convs: list[ConvInfo] | None = None, tensorrt_names: bool = False) -> list[Block]:
    """Every depthwise conv (k > 1) whose output reaches a pointwise conv through BN, bias
    Add, activations, gates and Q/DQ only."""
    convs = all_convs(index) if convs is None else convs
    by_node = {id(c.node.node): c for c in convs}
    name = tensorrt_name if tensorrt_names else (lambda node: node.label)
    blocks = []
    for info in convs:
        if info.kind is not ConvKind.DEPTHWISE or info.transposed or max(info.kernel, default=1) <= 1:
            continue
        path = _walk_to_pointwise(index, info.node, by_node)
        if path is None:
            continue
        between, pointwise = path
        after = _after(index, pointwise)
        shape = info.weight_shape
        channels = info.effective_group
        blocks.append(
            Block(
                depthwise=name(info.node),
                pointwise=name(pointwise),
                between=tuple(name(n) for n in between),
                channels=channels,
                between_ops=tuple(n.op for n in between),
                after=tuple(name(n) for n in after),
                after_ops=tuple(n.op for n in after),
                graph=info.node.scope.path,
                depth_multiplier=shape[0] // channels,
                kernel=tuple(shape[2:]),
            )
        )
    return blocks


_AFTER_LIMIT = 4
# Steps from a depthwise conv to its pointwise conv: paddle2onnx writes a bias Add, an affine
# Mul/Add, hard-swish and Identity nodes between them, and an SE branch on top.
_MAX_BETWEEN = 24


def _after(index: GraphIndex, pointwise: Node) -> list[Node]:
    """Nodes right after the pointwise conv that TensorRT may fuse into it: bias/residual Add,
    activations (gated ones as Sigmoid + Mul), Q/DQ."""
    fusable = ACTIVATION_OPS | ADD_OPS | QUANT_OPS
    nodes: list[Node] = []
    scope = pointwise.scope
    tensor = pointwise.node.output[0] if pointwise.node.output else ""
    while tensor and len(nodes) < _AFTER_LIMIT:
        users = index.consumers(scope, tensor)
        if len(users) == 1 and users[0].op in fusable:
            nodes.append(users[0])
            tensor = users[0].node.output[0]
            continue
        gates = [u for u in users if u.op in ("Sigmoid", "HardSigmoid")]
        muls = [u for u in users if u.op == "Mul"]
        if len(users) == 2 and len(gates) == 1 and len(muls) == 1 and gates[0].node.output[0] in muls[0].node.input:
            nodes.extend([gates[0], muls[0]])
            tensor = muls[0].node.output[0]
            continue
        break
    return nodes


def _walk_to_pointwise(index: GraphIndex, start: Node, by_node: dict) -> tuple[list[Node], Node] | None:
    scope: Scope = start.scope
    tensor = start.node.output[0]
    between: list[Node] = []
    for _ in range(_MAX_BETWEEN):
        users = index.consumers(scope, tensor)
        if tensor in scope.outputs or not users:
            return None
        if len(users) == 1:
            user = users[0]
            info = by_node.get(id(user.node))
            if info is not None and user.input(0) == tensor:
                return (between, user) if info.kind is ConvKind.POINTWISE and not info.transposed else None
            if user.op in BLOCK_PASSTHROUGH_OPS or _is_constant_affine(index, user, tensor):
                between.append(user)
                tensor = user.node.output[0]
                continue
            return None
        pointwise = [u for u in users if u.input(0) == tensor and (info := by_node.get(id(u.node))) is not None
                     and info.kind is ConvKind.POINTWISE and not info.transposed]
        if len(pointwise) == 1:  # the tensor also feeds a residual Add or another branch
            return between, pointwise[0]
        gate = _gate_of(index, users, tensor)
        if gate is None:
            return None
        between.extend(n for n in users if n is not gate)
        between.append(gate)
        tensor = gate.node.output[0]
    return None


def _is_constant_affine(index: GraphIndex, node: Node, tensor: str) -> bool:
    """A bias Add/Sub, a scale Mul/Div or a clamp Max/Min by a constant (unfolded BN, GELU's
    0.5, layer scale, jax2onnx's relu6 as Max(x, 0) -> Min(x, 6))."""
    if (node.op not in ("Add", "Sub", "Mul", "Div", "Max", "Min")
            or node.input(0) != tensor and node.op in ("Sub", "Div")):
        return False
    other = [n for n in node.node.input if n != tensor]
    return len(other) == 1 and index.is_constant(node.scope, other[0])


def _gate_of(index: GraphIndex, users: list[Node], tensor: str) -> Node | None:
    """The Mul of x * f(x) when every other reader of x feeds that Mul's other input."""
    gates = [u for u in users if u.op in _GATE_OPS and tensor in u.node.input]
    if len(gates) != 1:
        return None
    gate = gates[0]
    others = [u for u in users if u is not gate]
    for side in others:
        if not _reaches(index, side, gate, limit=16):
            return None
    return gate


def _reaches(index: GraphIndex, node: Node, target: Node, limit: int) -> bool:
    frontier = [node]
    for _ in range(limit):
        following = []
        for current in frontier:
            if current is target:
                return True
            for name in current.node.output:
                following.extend(index.consumers(current.scope, name))
        if not following:
            return False
        frontier = following
    return any(n is target for n in frontier)
