"""The mangle toolkit: what every mangler needs to damage a model the way an exporter did.

The manglers themselves live with their rule's tests (`tests/rules/test_<code>_<name>.py`,
`MANGLES`); this module holds what they share: `Editor` (a working copy of the model, fresh
names, constant lookup, conv discovery and selection, rebuilding with orphaned constants
dropped), attribute helpers, and what counts as a depthwise or pointwise conv.

A mangler takes a clean ModelProto (from `sepfix.testing.builders` or from `torch.onnx.export`,
legacy or dynamo) and returns a new, mangled copy; the input is never modified. Convs are found
by structure (op type, group, weight shape, attributes), never by name, because exporters name
nodes differently. `nodes=None` mangles every eligible conv; a list of node names mangles just
those and raises ValueError when one is not eligible. Every mangler raises ValueError when it
finds nothing to mangle.

Unless its docstring says otherwise a mangled model computes the same function as the clean one
(to float tolerance, ~1e-4): that is what lets a rule's repair be checked against it. A mangler
whose damage moves the numbers on purpose (fp16 or int8 weights) is marked with
`moves_numbers`, and a repair is then compared with the mangled model instead. Nodes the
manglers create get unique names (`sepfix.names.NameSource`) carrying the rule code, e.g.
``<conv>_sep005_split``.

Scope: 2-D convs (4-D weights) in the main graph whose weights are initializers or Constant
nodes; subgraphs and model-local functions are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sepfix import walk
from sepfix.names import NameSource, used_names

TO_NHWC = [0, 2, 3, 1]
TO_NCHW = [0, 3, 1, 2]

Mangler = Callable[[onnx.ModelProto], onnx.ModelProto]


def moves_numbers(mangler: Mangler) -> Mangler:
    """Mark a mangler whose output differs from the clean model by a rounding (fp16, int8):
    a repair of it must equal the mangled model, not the clean one."""
    mangler.moves_numbers = True
    return mangler


@dataclass
class Conv:
    """A Conv/ConvTranspose node of the working copy with its constant weight (and bias)."""

    index: int
    node: onnx.NodeProto
    weight: np.ndarray
    bias: np.ndarray | None
    bias_is_constant: bool

    @property
    def group(self) -> int:
        return attribute(self.node, "group", 1)

    @property
    def base_name(self) -> str:
        return self.node.name or self.node.op_type


def attribute(node: onnx.NodeProto, name: str, default):
    for found in node.attribute:
        if found.name == name:
            return helper.get_attribute_value(found)
    return default


def set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    """Set an attribute, keeping its position when it already exists."""
    replacement = helper.make_attribute(name, value)
    for found in node.attribute:
        if found.name == name:
            found.CopyFrom(replacement)
            return
    node.attribute.append(replacement)


def remove_attribute(node: onnx.NodeProto, name: str) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    raise ValueError("model imports no default-domain opset")


def _names_consumed(graph: onnx.GraphProto) -> set[str]:
    """Every tensor a node or an output reads, subgraphs included (outer-scope names are shared)."""
    consumed: set[str] = set()
    for body in walk.graphs(graph):
        consumed.update(o.name for o in body.output)
        for node in body.node:
            consumed.update(node.input)
    return consumed


class Editor:
    """A deep copy of the model plus the bookkeeping every mangler needs."""

    def __init__(self, model: onnx.ModelProto, rule_code: str) -> None:
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.graph = self.model.graph
        self.rule_tag = rule_code.lower()
        self.opset = _default_opset(self.model)
        self._names = NameSource(used_names(self.model))
        self._initializers = {t.name: t for t in self.graph.initializer}
        self._constant_nodes = {
            n.output[0]: n
            for n in self.graph.node
            if n.op_type == "Constant"
            and len(n.output) == 1
            and any(a.name == "value" for a in n.attribute)
        }
        # torch.onnx writes deduplicated constants as Identity nodes of one initializer
        self._identity_of = {
            n.output[0]: n.input[0]
            for n in self.graph.node
            if n.op_type == "Identity" and len(n.input) == 1 and len(n.output) == 1
        }
        self._maybe_orphaned: set[str] = set()

    # -- names and tensors ------------------------------------------------------------------
    def fresh(self, base: str, what: str) -> str:
        return self._names(f"{base}_{self.rule_tag}_{what}")

    def constant_value(self, name: str) -> np.ndarray | None:
        """The value of an initializer or Constant output, seen through Identity nodes."""
        for _ in range(len(self._identity_of)):
            if name not in self._identity_of:
                break
            name = self._identity_of[name]
        if name in self._initializers:
            return numpy_helper.to_array(self._initializers[name])
        if name in self._constant_nodes:
            value = next(a for a in self._constant_nodes[name].attribute if a.name == "value")
            return numpy_helper.to_array(value.t)
        return None

    def add_initializer(self, array: np.ndarray, base: str, what: str) -> str:
        name = self.fresh(base, what)
        tensor = numpy_helper.from_array(np.array(array, order="C"), name)
        self.graph.initializer.append(tensor)
        self._initializers[name] = tensor
        return name

    def node(
        self,
        op_type: str,
        inputs: Sequence[str],
        outputs: Sequence[str],
        base: str,
        what: str,
        **attrs,
    ) -> onnx.NodeProto:
        return helper.make_node(
            op_type, list(inputs), list(outputs), name=self.fresh(base, what), **attrs
        )

    def replace_input(self, node: onnx.NodeProto, position: int, new_name: str) -> None:
        """Point an input at a new tensor; the old one is dropped at the end if nothing uses it."""
        self.release(node.input[position])
        node.input[position] = new_name

    def release(self, *names: str) -> None:
        """Mark constants a replaced node read; dropped at the end if nothing reads them."""
        self._maybe_orphaned.update(names)

    def initializer(self, name: str) -> onnx.TensorProto | None:
        return self._initializers.get(name)

    # -- conv discovery ---------------------------------------------------------------------
    def convs(self) -> list[Conv]:
        found = []
        for index, node in enumerate(self.graph.node):
            if node.op_type not in ("Conv", "ConvTranspose") or len(node.input) < 2:
                continue
            weight = self.constant_value(node.input[1])
            if weight is None or weight.ndim != 4:
                continue
            has_bias = len(node.input) > 2 and node.input[2] != ""
            bias = self.constant_value(node.input[2]) if has_bias else None
            found.append(
                Conv(index, node, weight, bias, bias_is_constant=not has_bias or bias is not None)
            )
        return found

    def select(
        self, nodes: Iterable[str] | None, eligible: Callable[[Conv], bool], what: str
    ) -> list[Conv]:
        candidates = [c for c in self.convs() if eligible(c)]
        if nodes is not None:
            wanted = list(nodes)
            by_name = {c.node.name: c for c in candidates}
            missing = [n for n in wanted if n not in by_name]
            if missing:
                raise ValueError(f"not {what} convs with constant weights: {missing}")
            candidates = [c for c in candidates if c.node.name in set(wanted)]
        if not candidates:
            raise ValueError(f"no {what} conv to mangle")
        return candidates

    # -- finishing --------------------------------------------------------------------------
    def rebuild(self, replacements: dict[int, list[onnx.NodeProto]]) -> onnx.ModelProto:
        """Put each replacement list where its node stood, then drop constants nobody reads."""
        new_nodes: list[onnx.NodeProto] = []
        for index, node in enumerate(self.graph.node):
            new_nodes.extend(replacements.get(index, [node]))
        # copy the nodes out before clearing the repeated field they live in
        new_nodes = [_copy(n) for n in new_nodes]
        del self.graph.node[:]
        self.graph.node.extend(new_nodes)
        self._drop_orphans()
        return self.model

    def _drop_orphans(self) -> None:
        orphans = self._maybe_orphaned - _names_consumed(self.graph)
        if not orphans:
            return
        # an Identity that fed only a released constant goes too, and then what it read
        while True:
            feeding = [n for n in self.graph.node if n.op_type == "Identity" and n.output[0] in orphans]
            if not feeding:
                break
            kept_nodes = [_copy(n) for n in self.graph.node if not any(n is f for f in feeding)]
            del self.graph.node[:]
            self.graph.node.extend(kept_nodes)
            released = {f.input[0] for f in feeding}
            orphans |= released - _names_consumed(self.graph)
        for field in (self.graph.initializer, self.graph.input, self.graph.value_info):
            kept = [_copy(item) for item in field if item.name not in orphans]
            del field[:]
            field.extend(kept)
        kept_nodes = [
            _copy(n)
            for n in self.graph.node
            if not (n.op_type == "Constant" and n.output[0] in orphans)
        ]
        del self.graph.node[:]
        self.graph.node.extend(kept_nodes)


def _copy(message):
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


# -- what counts as depthwise / pointwise -------------------------------------------------------


def is_depthwise(conv: Conv) -> bool:
    """Conv with group == C_in > 1, weight (C_in*M, 1, k, k) and a kernel larger than 1x1."""
    w = conv.weight
    return (
        conv.node.op_type == "Conv"
        and conv.group > 1
        and w.shape[1] == 1
        and w.shape[0] % conv.group == 0
        and max(w.shape[2:]) > 1
    )


def is_depthwise_transpose(conv: Conv) -> bool:
    """ConvTranspose with group == C_in > 1 and weight (C_in, M, k, k)."""
    w = conv.weight
    return (
        conv.node.op_type == "ConvTranspose"
        and conv.group > 1
        and w.shape[0] == conv.group
        and max(w.shape[2:]) > 1
    )


def is_pointwise(conv: Conv) -> bool:
    """1x1 Conv, group 1, stride 1, no padding: a per-pixel matrix multiply."""
    node = conv.node
    return (
        node.op_type == "Conv"
        and conv.group == 1
        and tuple(conv.weight.shape[2:]) == (1, 1)
        and all(s == 1 for s in attribute(node, "strides", [1, 1]))
        and all(p == 0 for p in attribute(node, "pads", [0, 0, 0, 0]))
        and attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
    )


def is_block_conv(conv: Conv) -> bool:
    return is_depthwise(conv) or is_pointwise(conv)
