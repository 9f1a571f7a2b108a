"""GraphIndex: the lookups every rule needs, built once per model.

Rules ask the same questions over and over (who produces this tensor, who consumes it, is this
input a constant and what is its shape or value, how many channels does this tensor have). The
index answers them for the main graph, every subgraph of If/Loop/Scan, and every model-local
function, without reading a weight's bytes until a rule asks for its value.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from sepfix import walk
from sepfix.errors import SepfixError
from sepfix.model_io import LoadedModel
from sepfix.ops import CHANNEL_PRESERVING_OPS, FOLDABLE_OPS, QUANT_OPS

# Shape inference runs on the model proto; past this size it would need to serialize gigabytes.
_SHAPE_INFERENCE_LIMIT = 512 * 1024 * 1024


@dataclass
class Node:
    """A node with the place it lives: its scope and its position there."""

    node: onnx.NodeProto
    scope: "Scope"
    index: int

    @property
    def op(self) -> str:
        """The op type; qualified by its domain unless it is an ai.onnx op (`com.microsoft.FusedConv`
        is not a Conv)."""
        domain = self.node.domain
        return self.node.op_type if domain in ("", "ai.onnx") else f"{domain}.{self.node.op_type}"

    @property
    def label(self) -> str:
        """The node's name, or `<op_type>#<index>` when the exporter left it unnamed."""
        return self.node.name or f"{self.node.op_type}#{self.index}"

    def attr(self, name: str, default=None):
        """The attribute's value. Inside a model-local function an attribute may refer to one of
        the call's attributes (`ref_attr_name`): it is bound when every call site agrees (or the
        function's default applies), else `default` comes back and `unresolved` names it."""
        for attribute in self.node.attribute:
            if attribute.name == name:
                if attribute.ref_attr_name:
                    bound = self.scope.bindings.get(attribute.ref_attr_name, ABSENT)
                    return default if bound is ABSENT else bound
                return onnx.helper.get_attribute_value(attribute)
        return default

    def unresolved(self) -> set[str]:
        """Attributes that refer to a function attribute whose call sites disagree (or give none)."""
        return {a.name for a in self.node.attribute
                if a.ref_attr_name and a.ref_attr_name not in self.scope.bindings}

    def has_attr(self, name: str) -> bool:
        """True when the attribute is set (a function attribute no call binds is not)."""
        return any(a.name == name and (not a.ref_attr_name or self.scope.bindings.get(a.ref_attr_name, ABSENT)
                                       is not ABSENT) for a in self.node.attribute)

    def input(self, i: int) -> str:
        """Input i's tensor name, or "" when absent (optional inputs may be skipped)."""
        return self.node.input[i] if i < len(self.node.input) else ""


@dataclass
class Scope:
    """One graph body: the main graph, a subgraph attribute, or a model-local function."""

    path: str
    nodes: list[Node] = field(default_factory=list)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    sparse_initializers: set[str] = field(default_factory=set)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    producers: dict[str, Node] = field(default_factory=dict)
    consumers: dict[str, list[Node]] = field(default_factory=lambda: defaultdict(list))
    shapes: dict[str, tuple] = field(default_factory=dict)
    parent: "Scope | None" = None
    is_function: bool = False
    # A function's attributes as every call site binds them (only those all call sites agree on).
    bindings: dict = field(default_factory=dict)
    calls: list = field(default_factory=list)  # the nodes that call this function

    @property
    def call_sites(self) -> int:
        return len(self.calls)
    # How to reach this body from the model: () for the main graph, then one
    # (node index, attribute name, position) step per nesting level, or ("function", domain, name).
    address: tuple = ()

    def lookup_initializer(self, name: str) -> onnx.TensorProto | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.initializers:
                return scope.initializers[name]
            if name in scope.producers or name in scope.inputs:
                return None  # shadowed by something computed in this scope
            scope = scope.parent
        return None

    def lookup_producer(self, name: str) -> Node | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.producers:
                return scope.producers[name]
            if name in scope.initializers or name in scope.inputs:
                return None
            scope = scope.parent
        return None

    def is_graph_input(self, name: str) -> bool:
        """True when `name` is fed from outside this model (an input of the main graph)."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.inputs:
                return True
            if name in scope.producers:
                return False
            scope = scope.parent
        return False

    def shape(self, name: str) -> tuple | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.shapes:
                return scope.shapes[name]
            scope = scope.parent
        return None


class Source(str, Enum):
    """Where a conv's weight (or bias) comes from."""

    INITIALIZER = "initializer"  # a plain constant
    CONSTANT_NODE = "constant_node"
    GRAPH_INPUT_INITIALIZER = "graph_input_initializer"  # also a graph input: overridable at run time
    FOLDED = "folded"  # a constant passed through foldable ops (`chain`)
    QUANTIZED = "quantized"  # a constant through Q/DQ, possibly with foldable ops
    GRAPH_INPUT = "graph_input"  # a true runtime input
    RUNTIME = "runtime"  # anything else


CONSTANT_SOURCES = frozenset({Source.INITIALIZER, Source.CONSTANT_NODE, Source.GRAPH_INPUT_INITIALIZER,
                              Source.FOLDED, Source.QUANTIZED})


@dataclass
class WeightSource:
    """Where a conv's weight (or bias) comes from, as far as the index can tell."""

    kind: Source
    chain: list[Node] = field(default_factory=list)
    root: str = ""
    shape: tuple | None = None

    @property
    def is_constant(self) -> bool:
        return self.kind in CONSTANT_SOURCES


class GraphIndex:
    """Producers, consumers, constants and shapes of every graph body in a model."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.model = loaded.model
        self.scopes: list[Scope] = []
        self.cache: dict = {}  # derived facts shared between rules (see patterns.all_convs)
        self.opsets = {(o.domain or "ai.onnx"): o.version for o in self.model.opset_import}
        main = self._add_graph(self.model.graph, "main", parent=None, address=())
        for function in self.model.functions:
            self._add_function(function)
        self._bind_function_attributes()
        self._check_opset()
        for scope in self.scopes:
            self._check_scope(scope)
        self._infer_shapes(main)

    def error(self, problem: str) -> SepfixError:
        """A one-line error about this model, naming its file when it has one."""
        where = f"{self.loaded._name}: " if self.loaded.path is not None else ""
        return SepfixError(" ".join(f"{where}{problem}".split()))

    # ----------------------------------------------------------------------------- building
    def _add_graph(self, graph: onnx.GraphProto, path: str, parent: Scope | None, address: tuple) -> Scope:
        scope = Scope(path=path, parent=parent, address=address)
        scope.initializers = {t.name: t for t in graph.initializer}
        if len(scope.initializers) < len(graph.initializer):
            twice = _first_repeat(t.name for t in graph.initializer)
            raise self.error(f"graph {path}: initializer {twice!r} is defined more than once")
        scope.sparse_initializers = {s.values.name for s in graph.sparse_initializer}
        scope.inputs = [v.name for v in graph.input]
        scope.outputs = [v.name for v in graph.output]
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            dims = _dims_of(value)
            if dims is not None:
                scope.shapes[value.name] = dims
        for name, tensor in scope.initializers.items():
            scope.shapes[name] = tuple(tensor.dims)
        self.scopes.append(scope)
        self._add_nodes(scope, graph.node)
        return scope

    def _add_function(self, function: onnx.FunctionProto) -> None:
        scope = Scope(path=f"function:{function.domain}.{function.name}", is_function=True,
                      address=(("function", function.domain, function.name),))
        scope.inputs = list(function.input)
        scope.outputs = list(function.output)
        self.scopes.append(scope)
        self._add_nodes(scope, function.node)

    def _bind_function_attributes(self) -> None:
        """Per function: the value of each attribute every call site agrees on (call attribute,
        else the function's default)."""
        functions = {(f.domain, f.name): f for f in self.model.functions}
        calls: dict[tuple, list[Node]] = defaultdict(list)
        for node in self.nodes():
            key = (node.node.domain, node.node.op_type)
            if key in functions:
                calls[key].append(node)
        for scope in self.scopes:
            if not scope.is_function:
                continue
            _, domain, name = scope.address[0]
            function = functions[(domain, name)]
            defaults = {a.name: onnx.helper.get_attribute_value(a) for a in function.attribute_proto}
            sites = calls.get((domain, name), [])
            scope.calls = sites
            for attribute in list(function.attribute) + list(defaults):
                values = []
                for site in sites:
                    given = next((a for a in site.node.attribute if a.name == attribute), None)
                    values.append(onnx.helper.get_attribute_value(given) if given is not None and not given.ref_attr_name
                                  else defaults.get(attribute, _MISSING))
                if values and all(v is _MISSING for v in values):
                    scope.bindings[attribute] = ABSENT  # no call sets it and no default: omitted
                elif values and all(v is not _MISSING and v == values[0] for v in values):
                    scope.bindings[attribute] = values[0]
                elif not sites and attribute in defaults:
                    scope.bindings[attribute] = defaults[attribute]

    def _add_nodes(self, scope: Scope, nodes) -> None:
        for i, proto in enumerate(nodes):
            node = Node(proto, scope, i)
            scope.nodes.append(node)
            for name in proto.output:
                if name:
                    if name in scope.producers or name in scope.initializers or name in scope.inputs:
                        raise self.error(
                            f"graph {scope.path}: tensor {name!r} is defined more than once (node "
                            f"{node.label!r} writes it again): not a valid ONNX graph"
                        )
                    scope.producers[name] = node
            for name in proto.input:
                if name:
                    scope.consumers[name].append(node)
            for attribute, k, sub in walk.subgraphs(proto):
                suffix = attribute.name if attribute.type == onnx.AttributeProto.GRAPH else f"{attribute.name}[{k}]"
                self._add_graph(sub, f"{scope.path}/{node.label}.{suffix}", parent=scope,
                                address=scope.address + ((i, attribute.name, k),))
                # Names the subgraph reads from outer scopes count as consumed by the node.
                for outer_name in _free_names(sub):
                    scope.consumers[outer_name].append(node)

    def _check_opset(self) -> None:
        """Operator schemas type the attributes rules read: they need a valid ai.onnx opset."""
        version = self.opsets.get("ai.onnx")
        if version is not None and version < 1:
            raise self.error(f"opset_import gives ai.onnx version {version}, not a valid opset")
        if version is None and any(n.node.domain in ("", "ai.onnx") for n in self.nodes()):
            raise self.error("the model uses ai.onnx operators but its opset_import has no ai.onnx entry")

    def _check_scope(self, scope: Scope) -> None:
        """Refuse a graph no rule can reason about and no runtime loads: a node reading a name
        nothing defines, a cycle, two nodes of one name (findings and fixes name nodes;
        onnxruntime refuses such a model). Initializer sizes are checked at load."""
        twice = _first_repeat(n.node.name for n in scope.nodes if n.node.name)
        if twice:
            count = sum(n.node.name == twice for n in scope.nodes)
            raise self.error(f"graph {scope.path}: node name {twice!r} is used by {count} nodes; node names must be unique")
        local = {(f.domain, f.name) for f in self.model.functions}
        for node in scope.nodes:
            if (node.node.domain, node.node.op_type) in local:
                continue
            problem = _schema_problem(node.node, self.opsets.get(node.node.domain or "ai.onnx"))
            perm = node.attr("perm") if node.op == "Transpose" and not problem else None
            if perm is not None and sorted(perm) != list(range(len(perm))):
                problem = f"has perm={list(perm)}, not a permutation of 0..{len(perm) - 1}"
            if problem:
                raise self.error(f"graph {scope.path}: {node.op} node {node.label!r} {problem}")
        for node in scope.nodes:
            for name in node.node.input:
                if name and not _defined(scope, name):
                    raise self.error(
                        f"graph {scope.path}: node {node.label!r} reads {name!r}, which no node, graph "
                        "input or initializer defines"
                    )
        for name in scope.outputs:
            if name and not _defined(scope, name):
                raise self.error(f"graph {scope.path}: output {name!r} is not defined by any node, input or initializer")
        stuck = _cycle(scope)
        if stuck:
            names = ", ".join(repr(n.label) for n in stuck[:4]) + (", ..." if len(stuck) > 4 else "")
            raise self.error(f"graph {scope.path} has a cycle: nodes {names} depend on each other")

    def _infer_shapes(self, main: Scope) -> None:
        """Fill shapes from ONNX shape inference; a model it rejects just keeps declared shapes."""
        skeleton = _structure_only(self.model)
        if skeleton.ByteSize() > _SHAPE_INFERENCE_LIMIT:
            return
        try:
            inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=False)
        except Exception:  # noqa: BLE001 - shape inference rejects the invalid models we report on
            return
        for value in inferred.graph.value_info:
            dims = _dims_of(value)
            if dims is not None:
                main.shapes.setdefault(value.name, dims)

    def inlined(self) -> "GraphIndex":
        """The view of the model with its local functions inlined (itself when it has none): a
        depthwise-separable block can span calls of different functions."""
        if not self.model.functions:
            return self
        if "inlined" not in self.cache:
            import dataclasses

            from onnx.inliner import inline_local_functions

            try:
                model = inline_local_functions(self.model)
                self.cache["inlined"] = GraphIndex(dataclasses.replace(self.loaded, model=model))
            except Exception:  # noqa: BLE001 - onnx cannot inline it: count blocks as written
                self.cache["inlined"] = self
        return self.cache["inlined"]

    # ----------------------------------------------------------------------------- queries
    def nodes(self, *op_types: str) -> Iterator[Node]:
        for scope in self.scopes:
            for node in scope.nodes:
                if not op_types or node.op in op_types:
                    yield node

    def consumers(self, scope: Scope, name: str) -> list[Node]:
        return list(scope.consumers.get(name, ()))

    def producer(self, scope: Scope, name: str) -> Node | None:
        return scope.lookup_producer(name)

    def sole_consumer(self, scope: Scope, name: str) -> Node | None:
        """The only node reading `name`, when it is not also a graph output."""
        users = scope.consumers.get(name, ())
        if len(users) != 1 or name in scope.outputs:
            return None
        return users[0]

    def weight_source(self, scope: Scope, name: str) -> WeightSource:
        """Trace a conv weight back to where it comes from, without reading its bytes."""
        chain: list[Node] = []
        current = name
        quantized = False
        for _ in range(16):
            tensor = scope.lookup_initializer(current)
            if tensor is not None:
                if quantized:
                    kind = Source.QUANTIZED
                elif chain:
                    kind = Source.FOLDED
                elif scope.is_graph_input(current):
                    kind = Source.GRAPH_INPUT_INITIALIZER
                else:
                    kind = Source.INITIALIZER
                return WeightSource(kind, chain[::-1], current, self.constant_shape(scope, name))
            producer = scope.lookup_producer(current)
            if producer is None:
                kind = Source.GRAPH_INPUT if scope.is_graph_input(current) and not chain else Source.RUNTIME
                return WeightSource(kind, chain[::-1], current, scope.shape(name))
            if producer.op == "Constant":
                if quantized:
                    kind = Source.QUANTIZED
                else:
                    kind = Source.FOLDED if chain else Source.CONSTANT_NODE
                return WeightSource(kind, chain[::-1], current, self.constant_shape(scope, name))
            if producer.op == "Cast" and producer.attr("to") not in _NUMERIC_TYPES:
                return WeightSource(Source.RUNTIME, [], current, scope.shape(name))  # never folded
            if producer.op in FOLDABLE_OPS or producer.op in QUANT_OPS:
                quantized = quantized or producer.op in QUANT_OPS
                if not all(self.is_constant(scope, extra) for extra in producer.node.input[1:] if extra):
                    return WeightSource(Source.RUNTIME, [], current, scope.shape(name))
                chain.append(producer)
                current = producer.input(0)
                continue
            return WeightSource(Source.RUNTIME, [], current, scope.shape(name))
        return WeightSource(Source.RUNTIME, [], current, scope.shape(name))

    def is_constant(self, scope: Scope, name: str) -> bool:
        """True for an initializer or a Constant node's output (no folding)."""
        if scope.lookup_initializer(name) is not None:
            return True
        producer = scope.lookup_producer(name)
        return producer is not None and producer.op == "Constant"

    def constant_shape(self, scope: Scope, name: str) -> tuple | None:
        """Shape of a constant-derived tensor, computed from dims alone (no weight bytes read)."""
        tensor = scope.lookup_initializer(name)
        if tensor is not None:
            return tuple(tensor.dims)
        producer = scope.lookup_producer(name)
        if producer is None:
            return scope.shape(name)
        if producer.op == "Constant":
            value = _constant_node_value(producer)
            return None if value is None else tuple(value.shape)
        source_shape = self.constant_shape(scope, producer.input(0)) if producer.input(0) else None
        if source_shape is None:
            return scope.shape(name)
        if producer.op in ("Identity", "Cast", "DequantizeLinear", "QuantizeLinear"):
            return source_shape
        if producer.op == "Transpose":
            perm = producer.attr("perm") or list(range(len(source_shape)))[::-1]
            if len(perm) != len(source_shape):
                raise self.error(f"Transpose node {producer.label!r} has perm={list(perm)} for an input of "
                                 f"rank {len(source_shape)}")
            return tuple(source_shape[p] for p in perm)
        if producer.op == "Reshape":
            target = self.constant_value(scope, producer.input(1))
            if target is None:
                return None
            return _reshape_shape(source_shape, [int(v) for v in target], producer.attr("allowzero", 0))
        try:
            return tuple(self.constant_value(scope, name).shape)
        except AttributeError:
            return None

    def constant_value(self, scope: Scope, name: str) -> np.ndarray | None:
        """The value of a constant-derived tensor, folding the chain with numpy; None if runtime."""
        tensor = scope.lookup_initializer(name)
        if tensor is not None:
            return self.loaded.tensor_array(tensor)
        producer = scope.lookup_producer(name)
        if producer is None:
            return None
        if producer.op == "Constant":
            return _constant_node_value(producer)
        if producer.op not in FOLDABLE_OPS and producer.op != "DequantizeLinear":
            return None
        inputs = [self.constant_value(scope, n) if n else None for n in producer.node.input]
        if inputs[0] is None:
            return None
        try:
            return _evaluate(producer, inputs)
        except (ValueError, IndexError) as exc:  # numpy refusing the node's attributes or inputs
            raise self.error(f"{producer.op} node {producer.label!r} cannot be applied to its constant input "
                             f"({type(exc).__name__}: {exc})") from None

    def constant_prefix(self, scope: Scope, name: str, count: int) -> np.ndarray | None:
        """The first `count` elements of a plain initializer (cheap early exits for big weights)."""
        tensor = scope.lookup_initializer(name)
        if tensor is not None:
            return self.loaded.tensor_prefix(tensor, count)
        value = self.constant_value(scope, name)
        return None if value is None else value.reshape(-1)[:count]

    def channels(self, scope: Scope, name: str, depth: int = 12) -> int | None:
        """Channel count (dim 1) of an activation tensor: declared or inferred shape first,
        then walk back through ops that keep channels to one that sets them."""
        derived = self._derived_channels(scope, name, depth)
        if derived is not None:
            return derived
        shape = scope.shape(name)  # declared or inferred: only a hint (jax2onnx declares NHWC dims)
        if shape is not None and len(shape) >= 2 and isinstance(shape[1], int) and shape[1] > 0:
            return shape[1]
        return None

    def _derived_channels(self, scope: Scope, name: str, depth: int) -> int | None:
        """Channels from the producing conv's weight, BN's scale, or a graph input's declared dims."""
        producer = scope.lookup_producer(name)
        if producer is None and scope.is_function and name in scope.inputs and depth > 0:
            position = scope.inputs.index(name)  # a function input: what every call feeds it
            counts = {self.channels(site.scope, site.input(position), depth - 1) for site in scope.calls}
            return counts.pop() if len(counts) == 1 else None
        if producer is None:
            shape = scope.shape(name) if scope.is_graph_input(name) else None
            return shape[1] if shape and len(shape) >= 2 and isinstance(shape[1], int) and shape[1] > 0 else None
        if depth == 0:
            return None
        if producer.op in ("Conv", "ConvTranspose"):
            weight_shape = self.constant_shape(scope, producer.input(1))
            if not weight_shape or len(weight_shape) < 3 or not all(isinstance(d, int) for d in weight_shape[:2]):
                return None  # unknown, or a declared shape with symbolic dims
            count = weight_shape[0] if producer.op == "Conv" else weight_shape[1] * producer.attr("group", 1)
            return count if count > 0 else None  # a declared 0 (or a bad group) says nothing
        if producer.op == "BatchNormalization":
            scale = self.constant_shape(scope, producer.input(1))
            return scale[0] if scale and isinstance(scale[0], int) else None
        if producer.op in CHANNEL_PRESERVING_OPS:
            data = [n for n in producer.node.input[:2] if n and not self.is_constant(scope, n)]
            return self._derived_channels(scope, (data or [producer.input(0)])[0], depth - 1)
        if producer.op == "Concat" and producer.attr("axis") == 1:
            parts = [self.channels(scope, n, depth - 1) for n in producer.node.input]
            return sum(parts) if all(p is not None for p in parts) else None
        if producer.op == "Split":
            return self._split_channels(scope, producer, name, depth)
        if producer.op == "Slice":
            return self._slice_channels(scope, producer, depth)
        if producer.op == "Reshape" and self._is_channel_shuffle(scope, producer):
            inner = self.producer(scope, self.producer(scope, producer.input(0)).input(0))
            return self.channels(scope, inner.input(0), depth - 1)
        return None

    def _split_channels(self, scope: Scope, split: Node, name: str, depth: int) -> int | None:
        """A piece of a Split on the channel axis (torch's chunk): its size, given or equal."""
        if split.attr("axis", 0) not in (1, -3):
            return None
        position = list(split.node.output).index(name)
        sizes = split.attr("split")
        if sizes is None and split.input(1):
            value = self.constant_value(scope, split.input(1))
            sizes = None if value is None else [int(v) for v in value.reshape(-1)]
        if sizes:
            return sizes[position] if position < len(sizes) and sizes[position] > 0 else None
        total = self.channels(scope, split.input(0), depth - 1)
        count = len(split.node.output)
        return total // count if total is not None and total % count == 0 else None

    def _slice_channels(self, scope: Scope, node: Node, depth: int) -> int | None:
        """A Slice of the channel axis with step 1 and starts/ends that are constants or shape
        arithmetic on the channel count (torch's chunk on a dynamic batch)."""
        values = [self.shape_value(scope, n, depth) if n else None for n in node.node.input[1:5]]
        if len(values) < 2 or values[0] is None or values[1] is None:
            return None
        if any(v is None for part in values if part is not None for v in part.reshape(-1)):
            return None
        axes = [int(a) for a in values[2].reshape(-1)] if len(values) > 2 and values[2] is not None else list(range(values[0].size))
        steps = [int(a) for a in values[3].reshape(-1)] if len(values) > 3 and values[3] is not None else [1] * len(axes)
        total = self.channels(scope, node.input(0), depth - 1)
        for axis, start, end, step in zip(axes, values[0].reshape(-1), values[1].reshape(-1), steps):
            if axis != 1:
                continue
            if step != 1 or total is None:
                return None
            start, end = (int(v) + total if v < 0 else min(int(v), total) for v in (start, end))
            return end - start if end > start else None
        return total

    def shape_value(self, scope: Scope, name: str, depth: int = 12) -> np.ndarray | None:
        """The value of a small int tensor computed from constants and `Shape` (an object array,
        None where a dimension is dynamic), or None when it depends on anything else."""
        value = self.constant_value(scope, name) if self.is_constant(scope, name) else None
        if value is not None:
            return np.asarray(value).astype(object)
        producer = scope.lookup_producer(name)
        if producer is None or depth == 0:
            return None
        if producer.op == "Shape" and producer.attr("start") is None and producer.attr("end") is None:
            rank = len(scope.shape(producer.input(0)) or ())
            if rank < 2:
                return None
            return np.array([None, self.channels(scope, producer.input(0), depth - 1)] + [None] * (rank - 2), object)
        inputs = [self.shape_value(scope, n, depth - 1) if n else None for n in producer.node.input]
        if any(v is None for v in inputs) or not inputs:
            return None
        return _shape_arithmetic(producer, inputs)

    def _is_channel_shuffle(self, scope: Scope, reshape: Node) -> bool:
        """Reshape(Transpose(Reshape(x, 5-D), perm=[0,2,1,3,4]), 4-D): ShuffleNet's channel
        shuffle, which keeps x's channel count."""
        transpose = self.producer(scope, reshape.input(0))
        if transpose is None or transpose.op != "Transpose" or list(transpose.attr("perm") or []) != [0, 2, 1, 3, 4]:
            return False
        inner = self.producer(scope, transpose.input(0))
        return inner is not None and inner.op == "Reshape"




_MISSING = object()
ABSENT = object()  # a function attribute that no call site sets (the node then has no such attribute)
_SMALL_TENSOR = 4096  # bytes: small constants (Reshape targets ...) stay, shape inference reads them


def _structure_only(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model without its large weights' bytes: shape inference serializes whatever it gets,
    and it needs only dims and types of weights."""
    skeleton = onnx.ModelProto(ir_version=model.ir_version)
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    source = model.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    for tensor in source.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL or len(tensor.raw_data) <= _SMALL_TENSOR:
            graph.initializer.append(tensor)
        else:
            stub = graph.initializer.add(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims)
            stub.data_location = onnx.TensorProto.EXTERNAL
            stub.external_data.add(key="location", value="sepfix-shape-inference-stub")
    return skeleton


def _shape_arithmetic(node: Node, inputs: list[np.ndarray]) -> np.ndarray | None:
    """numpy semantics of the ops exporters compute shapes with, None propagating."""
    op = node.op
    try:
        if op in ("Add", "Sub", "Mul", "Div"):
            a, b = np.broadcast_arrays(*inputs[:2])
            combine = {"Add": lambda x, y: x + y, "Sub": lambda x, y: x - y, "Mul": lambda x, y: x * y,
                       "Div": lambda x, y: x // y}[op]
            out = [None if x is None or y is None else combine(int(x), int(y)) for x, y in zip(a.reshape(-1), b.reshape(-1))]
            return np.array(out, object).reshape(a.shape)
        if op == "Gather":
            return np.take(inputs[0], np.asarray(inputs[1]).astype(int), axis=node.attr("axis", 0))
        if op in ("Cast", "Identity"):
            return inputs[0]
        if op in ("Unsqueeze", "Squeeze"):
            return inputs[0].reshape(-1) if inputs[0].ndim <= 1 else None
        if op == "Concat":
            return np.concatenate([v.reshape(-1) for v in inputs])
    except (ValueError, IndexError, TypeError, ZeroDivisionError):
        return None
    return None


def _first_repeat(names) -> str:
    seen = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return ""


_SCHEMAS: dict[tuple[str, int], onnx.defs.OpSchema | None] = {}


def _schema_problem(node: onnx.NodeProto, version: int | None) -> str | None:
    """Why a standard-domain node breaks its operator's schema (input or output count, an
    attribute of the wrong type), or None. Rules read attributes as the schema types them."""
    if node.domain not in ("", "ai.onnx") or version is None:
        return None
    key = (node.op_type, min(version, 2**31 - 1))
    if key not in _SCHEMAS:
        try:
            _SCHEMAS[key] = onnx.defs.get_schema(node.op_type, key[1], "")
        except onnx.defs.SchemaError:
            _SCHEMAS[key] = None  # no such op at this opset: _undefined says why
    schema = _SCHEMAS[key]
    if schema is None:
        return _undefined(node.op_type, version)
    for what, count, low, high in (("inputs", len(node.input), schema.min_input, schema.max_input),
                                   ("outputs", len(node.output), schema.min_output, schema.max_output)):
        if not low <= count <= high:
            takes = f"{low}" if low == high else f"{low} to {high}" if high < 2**31 - 1 else f"at least {low}"
            return f"has {count} {what}; {node.op_type}-{schema.since_version} takes {takes}"
    for attribute in node.attribute:
        spec = schema.attributes.get(attribute.name)
        if spec is None or attribute.ref_attr_name or attribute.type == int(spec.type):
            continue
        found = onnx.AttributeProto.AttributeType.Name(attribute.type) if attribute.type in (
            onnx.AttributeProto.AttributeType.values()) else str(attribute.type)
        return f"has attribute {attribute.name!r} of type {found}; {node.op_type} takes {spec.type.name}"
    return None


def _undefined(op_type: str, version: int) -> str:
    """Why an ai.onnx op has no schema at the model's opset: it came later, or no opset has it
    (tf2onnx leaves PartitionedCall where it could not convert a function)."""
    first = _first_versions().get(op_type)
    if first is None:
        return ("is not an ONNX operator: no ai.onnx opset defines it (onnx.checker and onnxruntime refuse the "
                "model; an exporter left a framework op it could not convert)")
    return (f"is defined in ai.onnx from opset {first} on, but the model imports opset {version}: "
            "not a valid model")


_FIRST_VERSIONS: dict[str, int] = {}


def _first_versions() -> dict[str, int]:
    """The opset each ai.onnx op first appeared in."""
    if not _FIRST_VERSIONS:
        for schema in onnx.defs.get_all_schemas_with_history():
            if schema.domain in ("", "ai.onnx"):
                known = _FIRST_VERSIONS.get(schema.name)
                _FIRST_VERSIONS[schema.name] = min(schema.since_version, known or schema.since_version)
    return _FIRST_VERSIONS


def _defined(scope: Scope, name: str) -> bool:
    """True when `name` is defined in `scope` or an enclosing one."""
    current: Scope | None = scope
    while current is not None:
        if (name in current.producers or name in current.initializers or name in current.inputs
                or name in current.sparse_initializers):
            return True
        current = current.parent
    return False


def _cycle(scope: Scope) -> list[Node]:
    """The nodes left over by a topological sort of `scope` (empty when it has no cycle)."""
    users: list[list[int]] = [[] for _ in scope.nodes]
    pending = [0] * len(scope.nodes)
    for name, producer in scope.producers.items():
        for user in scope.consumers.get(name, ()):
            users[producer.index].append(user.index)
            pending[user.index] += 1
    ready = [i for i, count in enumerate(pending) if count == 0]
    while ready:
        for j in users[ready.pop()]:
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)
    return [scope.nodes[i] for i, count in enumerate(pending) if count > 0]


def _dims_of(value: onnx.ValueInfoProto) -> tuple | None:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in value.type.tensor_type.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return tuple(dims)


def _free_names(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads but does not define: they come from enclosing scopes."""
    defined = {t.name for t in graph.initializer} | {v.name for v in graph.input}
    used: set[str] = set()
    for node in graph.node:
        used.update(n for n in node.input if n)
        defined.update(n for n in node.output if n)
        for _, _, sub in walk.subgraphs(node):
            used |= _free_names(sub)
    used.update(v.name for v in graph.output)
    return used - defined


def _constant_node_value(node: Node) -> np.ndarray | None:
    for attribute in node.node.attribute:
        if attribute.name == "value":
            return numpy_helper.to_array(attribute.t)
        if attribute.name in ("value_float", "value_int"):
            return np.array(onnx.helper.get_attribute_value(attribute))
        if attribute.name in ("value_floats", "value_ints"):
            return np.array(onnx.helper.get_attribute_value(attribute))
    return None


def _reshape_shape(source: tuple, target: list[int], allowzero: int) -> tuple | None:
    if any(not isinstance(d, int) for d in source):
        return None
    out = [source[i] if (t == 0 and not allowzero and i < len(source)) else t for i, t in enumerate(target)]
    if out.count(-1) == 1:
        known = int(np.prod([d for d in out if d != -1]))
        total = int(np.prod(source))
        if known == 0 or total % known:
            return None
        out[out.index(-1)] = total // known
    return tuple(out)


_NUMERIC_TYPES = {getattr(onnx.TensorProto, t) for t in (
    "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "BOOL", "FLOAT16", "DOUBLE", "UINT32", "UINT64")}


def _evaluate(node: Node, inputs: list[np.ndarray | None]) -> np.ndarray | None:
    """numpy semantics of the foldable ops (and DequantizeLinear, for values only)."""
    x = inputs[0]
    op = node.op
    if op in ("Identity",):
        return x
    if op == "Cast":
        to = node.attr("to")
        if to not in _NUMERIC_TYPES:
            return None  # casts to strings and unknown types are not folded
        return x.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
    if op == "Transpose":
        perm = node.attr("perm")
        return np.transpose(x, perm)
    if op == "Reshape":
        shape = _reshape_shape(x.shape, [int(v) for v in inputs[1]], node.attr("allowzero", 0))
        if shape is None:
            raise ValueError(f"cannot reshape {list(x.shape)} to {[int(v) for v in inputs[1]]}")
        return x.reshape(shape)
    if op in ("Squeeze", "Unsqueeze"):
        axes = node.attr("axes")
        if axes is None and len(inputs) > 1 and inputs[1] is not None:
            axes = [int(a) for a in inputs[1]]
        if op == "Squeeze":
            return np.squeeze(x, axis=tuple(axes)) if axes else np.squeeze(x)
        out = x
        rank = x.ndim + len(axes)
        for axis in sorted(a % rank for a in axes):
            out = np.expand_dims(out, axis)
        return out
    if op == "Flatten":
        axis = node.attr("axis", 1) % max(x.ndim, 1)
        return x.reshape(int(np.prod(x.shape[:axis])), -1)
    if op == "DequantizeLinear":
        scale = inputs[1]
        zero = inputs[2] if len(inputs) > 2 and inputs[2] is not None else np.zeros_like(scale, dtype=x.dtype)
        axis = node.attr("axis", 1)
        if scale.ndim == 1 and scale.size > 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zero = zero.reshape(shape)
        return ((x.astype(np.int32) - zero.astype(np.int32)) * scale).astype(scale.dtype)
    return None
