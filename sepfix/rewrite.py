"""Apply rule fixes to a model with onnx-graphsurgeon, pass after pass, until nothing is left.

Each pass detects on the current model, resolves every fixable finding to its graphsurgeon node
before anything changes (positions are stable until cleanup), applies one fix per node, then
cleans up, sorts and exports. Fixes can uncover others (folding a Transpose'd weight shows it
was dense-depthwise), so passes repeat until no fix applies. What graphsurgeon drops on the way
(model and node doc strings, metadata, graph inputs that are also initializers) is put back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from sepfix import model_io
from sepfix.checker import run_rules
from sepfix.errors import SepfixError
from sepfix.findings import Finding
from sepfix.graph import GraphIndex, Scope

MAX_PASSES = 6
RULE_TAG = "sepfix.rule"


@dataclass
class AppliedFix:
    """One rewrite: which rule, where, and what it changed."""

    code: str
    name: str
    node: str
    graph: str
    description: str
    created: list[str] = field(default_factory=list)  # nodes the fix added
    changed: list[str] = field(default_factory=list)  # existing nodes it rewrote
    replaced: list[str] = field(default_factory=list)  # the finding's nodes in the model before
    pass_number: int = 1  # fixes of pass 2 act on what pass 1 made

    def to_dict(self) -> dict:
        return {"code": self.code, "name": self.name, "node": self.node, "graph": self.graph,
                "description": self.description, "created": self.created, "changed": self.changed,
                "replaced": self.replaced, "pass": self.pass_number}


class FixContext:
    """What a rule's fix may use: values from the detection index, unique names, new tensors.

    Fixes never edit a constant in place: they make a new one, so a weight shared with another
    node is effectively cloned before it changes.
    """

    def __init__(self, index: GraphIndex, scope: Scope, graph: gs.Graph, finding: Finding, names: set[str]):
        self.index = index
        self.scope = scope
        self.graph = graph
        self.finding = finding
        self._names = names
        self.created: list[str] = []
        self.touched: list[str] = []
        self.removed_inputs: set[str] = set()

    def value(self, tensor: gs.Tensor) -> np.ndarray:
        """The constant value of a tensor as the detection index resolved it (chains folded)."""
        if isinstance(tensor, gs.Constant):
            return np.asarray(tensor.values)
        value = self.index.constant_value(self.scope, tensor.name)
        if value is None:
            raise ValueError(f"{tensor.name} is not a constant")  # detection promised it was
        return value

    def unique(self, base: str) -> str:
        name = base
        counter = 1
        while name in self._names:
            name = f"{base}_{counter}"
            counter += 1
        self._names.add(name)
        return name

    def constant(self, base: str, values: np.ndarray) -> gs.Constant:
        return gs.Constant(self.unique(base), np.ascontiguousarray(values))

    def variable(self, base: str, dtype=None, shape=None) -> gs.Variable:
        return gs.Variable(self.unique(base), dtype=dtype, shape=shape)

    def node(self, op: str, base: str, inputs, outputs, attrs=None) -> gs.Node:
        node = gs.Node(op=op, name=self.unique(base), attrs=attrs or {}, inputs=inputs, outputs=outputs)
        self.graph.nodes.append(node)
        self.created.append(node.name)
        return node

    def touch(self, node: gs.Node) -> None:
        """Mark an existing node as rewritten, so it carries the rule's tag."""
        self.touched.append(node.name)


def resolve_graph(root: gs.Graph, address) -> gs.Graph:
    """The graphsurgeon graph (main, subgraph or function) a finding's address points at."""
    graph = root
    for step in address:
        if step[0] == "function":
            _, domain, name = step
            return next(f for f in root.functions if f.domain == domain and f.name == name)
        node_index, attribute, position = step
        value = graph.nodes[node_index].attrs[attribute]
        graph = value[position] if isinstance(value, list) else value
    return graph


def all_names(model: onnx.ModelProto) -> set[str]:
    names: set[str] = set()

    def visit(graph: onnx.GraphProto) -> None:
        names.update(t.name for t in graph.initializer)
        names.update(v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info))
        for node in graph.node:
            names.add(node.name)
            names.update(node.input)
            names.update(node.output)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    for function in model.functions:
        for node in function.node:
            names.add(node.name)
            names.update(node.input)
            names.update(node.output)
    names.discard("")
    return names


def fix_pass(model: onnx.ModelProto, rules: list[ModuleType], pass_number: int = 1) -> tuple[onnx.ModelProto, list[AppliedFix], list[Finding]]:
    """Detect on `model` and apply every fixable finding that does not overlap another.

    Returns the new model, the fixes, and every finding detected on `model` (when no fix
    applied, those are what is left: nobody needs to detect on that model again)."""
    loaded = model_io.from_proto(model)
    index = GraphIndex(loaded)
    detected = run_rules(index, rules)
    findings = [f for f in detected if f.fixable]
    if not findings:
        return model, [], detected
    empty = _empty_list_attribute(model)
    if empty:
        raise SepfixError(f"{empty} with no values: sepfix cannot rewrite such a model (graphsurgeon would "
                          "write the attribute without its type)")
    by_code = {rule.CODE: rule for rule in rules}
    scopes = {scope.path: scope for scope in index.scopes}
    root = gs.import_onnx(model)
    names = all_names(model)
    located = []
    for finding in findings:
        graph = resolve_graph(root, finding.details["graph_address"])
        located.append((finding, graph, graph.nodes[finding.details["node_index"]]))
    applied: list[AppliedFix] = []
    busy: set[str] = set()
    tags: dict[str, str] = {}  # node name -> "CODE name" of the rule that made or changed it
    removed_inputs: set[str] = set()
    for finding, graph, node in located:
        spanned = set(finding.nodes) | {finding.node}
        if spanned & busy:
            continue  # overlaps a fix made in this pass: the next pass sees it afresh
        context = FixContext(index, scopes[finding.graph], graph, finding, names)
        description = by_code[finding.code].fix(context, node)
        busy |= spanned
        applied.append(AppliedFix(finding.code, finding.name, finding.node, finding.graph, description,
                                  context.created, context.touched, list(finding.nodes), pass_number))
        tags.update({name: f"{finding.code} {finding.name}" for name in context.created + context.touched})
        removed_inputs |= context.removed_inputs
    for graph in [root] + list(root.functions):
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
    repaired = gs.export_onnx(root, do_type_check=False)
    restore(model, repaired, tags, removed_inputs)
    return repaired, applied, detected


_LIST_TYPES = (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS, onnx.AttributeProto.STRINGS,
               onnx.AttributeProto.TENSORS, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.SPARSE_TENSORS)


def _empty_list_attribute(model: onnx.ModelProto) -> str | None:
    """The first "node 'X' has attribute 'a'" whose list is empty, anywhere in the model."""

    def visit(nodes) -> str | None:
        for node in nodes:
            for attribute in node.attribute:
                if attribute.type in _LIST_TYPES and not onnx.helper.get_attribute_value(attribute):
                    return f"node {node.name or node.op_type!r} has attribute {attribute.name!r}"
                for sub in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
                    found = visit(sub.node)
                    if found:
                        return found
        return None

    return visit(model.graph.node) or next(filter(None, (visit(f.node) for f in model.functions)), None)


def restore(original: onnx.ModelProto, repaired: onnx.ModelProto, tags: dict[str, str], removed_inputs: set[str]) -> None:
    """Put back what graphsurgeon does not carry, and tag the nodes sepfix made or changed."""
    repaired.ir_version = original.ir_version
    del repaired.opset_import[:]
    repaired.opset_import.extend(original.opset_import)
    for field_name in ("producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(repaired, field_name, getattr(original, field_name))
    del repaired.metadata_props[:]
    repaired.metadata_props.extend(original.metadata_props)
    repaired.graph.name = original.graph.name
    repaired.graph.doc_string = original.graph.doc_string
    _restore_inputs(original.graph, repaired.graph, removed_inputs)
    _restore_nodes(original.graph, repaired.graph, tags, repaired.ir_version)
    for old, new in zip(original.functions, repaired.functions):
        _restore_nodes(old, new, tags, repaired.ir_version)


def _restore_inputs(original: onnx.GraphProto, repaired: onnx.GraphProto, removed: set[str]) -> None:
    """Graph inputs in their original order, initializers-as-inputs included (graphsurgeon
    drops those), less the ones a fix folded on purpose."""
    present = {v.name: v for v in repaired.input}
    initializers = {t.name for t in repaired.initializer}
    inputs = []
    for value in original.input:
        if value.name in present:
            inputs.append(present.pop(value.name))
        elif value.name in initializers and value.name not in removed:
            inputs.append(value)
    inputs.extend(present.values())
    del repaired.input[:]
    repaired.input.extend(inputs)


def _restore_nodes(original, repaired, tags: dict[str, str], ir_version: int) -> None:
    old_nodes = {n.name: n for n in original.node if n.name}
    for node in repaired.node:
        old = old_nodes.get(node.name)
        if old is not None:
            node.doc_string = old.doc_string
            if hasattr(old, "metadata_props"):
                del node.metadata_props[:]
                node.metadata_props.extend(old.metadata_props)
        if node.name in tags:
            tag = tags[node.name]
            if ir_version >= 10:
                node.metadata_props.add(key=RULE_TAG, value=tag)
            else:  # node metadata_props needs IR 10; older models get the tag in doc_string
                node.doc_string = (node.doc_string + "\n" if node.doc_string else "") + f"{RULE_TAG}: {tag}"
        for attribute, old_attribute in _subgraph_pairs(node, old):
            _restore_nodes(old_attribute, attribute, tags, ir_version)


def _subgraph_pairs(node: onnx.NodeProto, old: onnx.NodeProto | None):
    if old is None:
        return []
    old_graphs = {a.name: a for a in old.attribute}
    pairs = []
    for attribute in node.attribute:
        before = old_graphs.get(attribute.name)
        if before is None:
            continue
        if attribute.type == onnx.AttributeProto.GRAPH:
            pairs.append((attribute.g, before.g))
        pairs.extend(zip(attribute.graphs, before.graphs))
    return pairs


@dataclass
class Rewrite:
    """The outcome of the fix passes.

    `stages[k]` is the model pass k+1 rewrote and `stages[k+1]` what it made (kept only when
    asked: the report draws each fix against the model it changed); `remaining` are the
    findings on the final model, fixable ones included only if the pass limit stopped the loop.
    """

    model: onnx.ModelProto
    fixes: list[AppliedFix]
    remaining: list[Finding]
    stages: list[onnx.ModelProto] = field(default_factory=list)


def run_passes(model: onnx.ModelProto, rules: list[ModuleType], keep_stages: bool = False) -> Rewrite:
    """Fix passes until none applies; the model is unchanged (same object) if none did."""
    applied: list[AppliedFix] = []
    stages = [model] if keep_stages else []
    for number in range(1, MAX_PASSES + 1):
        model, fixes, detected = fix_pass(model, rules, number)
        if not fixes:
            return Rewrite(model, applied, detected, stages)
        applied.extend(fixes)
        if keep_stages:
            stages.append(model)
    return Rewrite(model, applied, run_rules(GraphIndex(model_io.from_proto(model)), rules), stages)


def rewrite(model: onnx.ModelProto, rules: list[ModuleType]) -> tuple[onnx.ModelProto, list[AppliedFix]]:
    """`run_passes` for callers that want only the model and the fixes."""
    result = run_passes(model, rules)
    return result.model, result.fixes
