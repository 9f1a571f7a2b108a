"""Apply rule rewrites to a model with onnx-graphsurgeon, pass after pass, until nothing is left.

Each pass matches on the current model's view, resolves every role of every fixable match to
its graphsurgeon node before anything changes (positions are stable until cleanup), rewrites
one match per node, then cleans up, sorts and exports. Rewrites can uncover other matches
(folding a Transpose'd weight shows it was dense-depthwise), so passes repeat until none
applies. What graphsurgeon drops on the way (model and node doc strings, metadata, graph
inputs that are also initializers) is put back.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from sepfix import model_io, walk
from sepfix.checker import run_rules
from sepfix.errors import SepfixError
from sepfix.findings import Finding
from sepfix.graph import GraphIndex
from sepfix.names import NameSource
from sepfix.rules.base import Match, Rule

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
    """What a rule's rewrite may use: the graphsurgeon nodes its match bound, constant values
    read through the same view the match came from, and fresh names.

    Rewrites never edit a constant in place: they make a new one, so a weight shared with
    another node is effectively cloned before it changes.
    """

    def __init__(self, index: GraphIndex, match: Match, graph: gs.Graph, located: dict, names: NameSource):
        self.index = index
        self.match = match
        self.scope = match.anchor.scope
        self.graph = graph
        self._located = located  # role -> gs node (or list), resolved before any edit
        self._names = names
        self.created: list[gs.Node] = []
        self.touched: list[gs.Node] = []
        self.removed_inputs: set[str] = set()

    @property
    def anchor(self) -> gs.Node:
        return self._located[_ANCHOR]

    def role(self, name: str):
        """The graphsurgeon node (or list of nodes) the match bound to `name`."""
        return self._located[name]

    def value(self, name: str) -> np.ndarray:
        """The constant value of a tensor the match bound (chains folded by the view)."""
        value = self.index.constant_value(self.scope, name)
        if value is None:
            raise ValueError(f"{name} is not a constant")  # the match promised it was
        return value

    def dtype(self, name: str) -> np.dtype:
        return self.value(name).dtype

    def unique(self, base: str) -> str:
        return self._names(base)

    def constant(self, base: str, values: np.ndarray) -> gs.Constant:
        return gs.Constant(self.unique(base), np.ascontiguousarray(values))

    def variable(self, base: str, dtype=None, shape=None) -> gs.Variable:
        return gs.Variable(self.unique(base), dtype=dtype, shape=shape)

    def node(self, op: str, base: str, inputs, outputs, attrs=None) -> gs.Node:
        node = gs.Node(op=op, name=self.unique(base), attrs=attrs or {}, inputs=inputs, outputs=outputs)
        self.graph.nodes.append(node)
        self.created.append(node)
        return node

    def touch(self, node: gs.Node) -> None:
        """Mark an existing node as rewritten, so it carries the rule's tag."""
        self.touched.append(node)


_ANCHOR = "__anchor__"


def _graph_at(root: gs.Graph, address) -> gs.Graph:
    """The graphsurgeon graph (main, subgraph or function) at a view scope's address."""
    graph = root
    for step in address:
        if step[0] == "function":
            _, domain, name = step
            return next(f for f in root.functions if f.domain == domain and f.name == name)
        node_index, attribute, position = step
        value = graph.nodes[node_index].attrs[attribute]
        graph = value[position] if isinstance(value, list) else value
    return graph


def _locate(root: gs.Graph, match: Match) -> tuple[gs.Graph, dict]:
    """Every role of a match as graphsurgeon nodes, resolved by position before any edit."""
    graph = _graph_at(root, match.anchor.scope.address)
    located = {_ANCHOR: graph.nodes[match.anchor.index]}
    for role, value in match.roles.items():
        located[role] = [graph.nodes[n.index] for n in value] if isinstance(value, list) else graph.nodes[value.index]
    return graph, located


def _labels(match: Match, located: dict) -> dict[int, str]:
    """The view label of every located node, by graphsurgeon node identity."""
    labels = {id(located[_ANCHOR]): match.anchor.label}
    for role, value in match.roles.items():
        nodes = value if isinstance(value, list) else [value]
        found = located[role] if isinstance(value, list) else [located[role]]
        labels.update({id(g): n.label for n, g in zip(nodes, found)})
    return labels


def _view(model: onnx.ModelProto, weights: model_io.LoadedModel | None) -> GraphIndex:
    return GraphIndex(weights.view(model) if weights is not None else model_io.from_proto(model))


def fix_pass(model: onnx.ModelProto, rules: list[Rule], pass_number: int = 1,
             applies=None, weights: model_io.LoadedModel | None = None,
             ) -> tuple[onnx.ModelProto, list[AppliedFix], list[Finding], GraphIndex]:
    """Match on `model` and rewrite every fixable finding that does not overlap another.

    `applies(finding)` may hold fixes back (a repair without the proof applies safe ones only).
    `weights` reads the weights `model` keeps in files (the model `load_for_check` made, or a
    rewrite of it); graphsurgeon carries such references through untouched, never reading them.
    Returns the new model, the fixes, every finding matched on `model` (when no fix applied,
    those are what is left: nobody needs to match on that model again), and the view of `model`
    they were matched on."""
    index = _view(model, weights)
    detected = run_rules(index, rules)
    findings = [f for f in detected if f.fixable and (applies is None or applies(f))]
    if not findings:
        return model, [], detected, index
    empty = _empty_list_attribute(model)
    if empty:
        raise SepfixError(f"{empty} with no values: sepfix cannot rewrite such a model (graphsurgeon would "
                          "write the attribute without its type)")
    by_code = {rule.code: rule for rule in rules}
    root = gs.import_onnx(model)
    names = NameSource.for_model(model)
    located = [(finding, *_locate(root, finding.match)) for finding in findings]
    applied: list[AppliedFix] = []
    busy: set[tuple] = set()
    tagged: dict[int, tuple[gs.Node, str]] = {}  # id(gs node) -> (node, "CODE name")
    removed_inputs: set[str] = set()
    for finding, graph, nodes in located:
        spanned = {(n.scope.path, n.index) for n in finding.match.nodes()}
        if spanned & busy:
            continue  # overlaps a fix made in this pass: the next pass sees it afresh
        context = FixContext(index, finding.match, graph, nodes, names)
        description = by_code[finding.code].rewrite(context, finding.match)
        busy |= spanned
        labels = _labels(finding.match, nodes)
        applied.append(AppliedFix(finding.code, finding.name, finding.node, finding.graph, description,
                                  [n.name for n in context.created],
                                  [labels.get(id(n), n.name) for n in context.touched],
                                  list(finding.nodes), pass_number))
        tag = f"{finding.code} {finding.name}"
        tagged.update({id(n): (n, tag) for n in context.created + context.touched})
        removed_inputs |= context.removed_inputs
    # Tags follow the node, not its name: an unnamed node carries a placeholder through export.
    tags: dict[str, str] = {}
    placeholders: set[str] = set()
    for node, tag in tagged.values():
        if not node.name:
            node.name = names("sepfix_unnamed")
            placeholders.add(node.name)
        tags[node.name] = tag
    for graph in [root] + list(root.functions):
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
    repaired = gs.export_onnx(root, do_type_check=False)
    restore(model, repaired, tags, removed_inputs, placeholders)
    return repaired, applied, detected, index


_LIST_TYPES = (onnx.AttributeProto.INTS, onnx.AttributeProto.FLOATS, onnx.AttributeProto.STRINGS,
               onnx.AttributeProto.TENSORS, onnx.AttributeProto.GRAPHS, onnx.AttributeProto.SPARSE_TENSORS)


def _empty_list_attribute(model: onnx.ModelProto) -> str | None:
    """The first "node 'X' has attribute 'a'" whose list is empty, anywhere in the model."""
    for node in walk.nodes(model):
        for attribute in node.attribute:
            if attribute.type in _LIST_TYPES and not onnx.helper.get_attribute_value(attribute):
                return f"node {node.name or node.op_type!r} has attribute {attribute.name!r}"
    return None


def restore(original: onnx.ModelProto, repaired: onnx.ModelProto, tags: dict[str, str], removed_inputs: set[str],
            placeholders: set[str] = frozenset()) -> None:
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
    _restore_nodes(original.graph, repaired.graph, tags, repaired.ir_version, placeholders)
    for old, new in zip(original.functions, repaired.functions):
        _restore_nodes(old, new, tags, repaired.ir_version, placeholders)


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


def _restore_nodes(original, repaired, tags: dict[str, str], ir_version: int, placeholders) -> None:
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
        if node.name in placeholders:
            node.name = ""
        if old is None:
            continue
        before = {(a.name, k): g for a, k, g in walk.subgraphs(old)}
        for attribute, position, graph in walk.subgraphs(node):
            if (attribute.name, position) in before:
                _restore_nodes(before[(attribute.name, position)], graph, tags, ir_version, placeholders)


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
    view: GraphIndex  # of the final model: what `remaining` was matched on
    stages: list[onnx.ModelProto] = field(default_factory=list)
    found: list[Finding] = field(default_factory=list)  # what the first pass matched on the input


def run_passes(model: onnx.ModelProto, rules: list[Rule], keep_stages: bool = False, applies=None,
               weights: model_io.LoadedModel | None = None) -> Rewrite:
    """Fix passes until none applies; the model is unchanged (same object) if none did.
    `weights`: see `fix_pass`."""
    applied: list[AppliedFix] = []
    stages = [model] if keep_stages else []
    found: list[Finding] = []
    for number in range(1, MAX_PASSES + 1):
        model, fixes, detected, view = fix_pass(model, rules, number, applies, weights)
        if number == 1:
            found = detected
        if not fixes:
            return Rewrite(model, applied, detected, view, stages, found)
        applied.extend(fixes)
        if keep_stages:
            stages.append(model)
    view = _view(model, weights)
    return Rewrite(model, applied, run_rules(view, rules), view, stages, found)


def rewrite(model: onnx.ModelProto, rules: list[Rule]) -> tuple[onnx.ModelProto, list[AppliedFix]]:
    """`run_passes` for callers that want only the model and the fixes."""
    result = run_passes(model, rules)
    return result.model, result.fixes
