"""Mangles: reproduce, on a clean model, the damage exporters did to depthwise-separable blocks.

Each function takes a clean ModelProto (from `sepfix.testing.builders` or from
`torch.onnx.export`, legacy or dynamo) and returns a new, mangled copy; the input is never
modified. Convs are found by structure (op type, group, weight shape, attributes), never by
name, because exporters name nodes differently. `nodes=None` mangles every eligible conv; a
list of node names mangles just those and raises ValueError when one is not eligible. Every
mangle raises ValueError when it finds nothing to mangle.

Unless a docstring says otherwise the mangled model computes the same function as the clean one
(to float tolerance, ~1e-4): that is what lets a rule's repair be checked against it. Nodes the
mangles create get unique names carrying the rule code, e.g. ``<conv>_sep005_split``.

Scope: 2-D convs (4-D weights) in the main graph whose weights are initializers or Constant
nodes; subgraphs and model-local functions are left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

RUNTIME_WEIGHT_KINDS = (
    "tf_transpose",
    "tf_reshape_transpose",
    "cast_fp16",
    "identity",
    "graph_input",
)
KERNEL_SHAPE_KINDS = ("wrong", "missing_dq")

_TO_NHWC = [0, 2, 3, 1]
_TO_NCHW = [0, 3, 1, 2]


@dataclass
class _Conv:
    """A Conv/ConvTranspose node of the working copy with its constant weight (and bias)."""

    index: int
    node: onnx.NodeProto
    weight: np.ndarray
    bias: np.ndarray | None
    bias_is_constant: bool

    @property
    def group(self) -> int:
        return _attribute(self.node, "group", 1)

    @property
    def base_name(self) -> str:
        return self.node.name or self.node.op_type


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    """Set an attribute, keeping its position when it already exists."""
    replacement = helper.make_attribute(name, value)
    for attribute in node.attribute:
        if attribute.name == name:
            attribute.CopyFrom(replacement)
            return
    node.attribute.append(replacement)


def _remove_attribute(node: onnx.NodeProto, name: str) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)


def _default_opset(model: onnx.ModelProto) -> int:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return opset.version
    raise ValueError("model imports no default-domain opset")


def _names_used_in_graph(graph: onnx.GraphProto, names: set[str]) -> None:
    """Collect every node and tensor name, subgraphs included (outer-scope names are shared)."""
    for value in (*graph.input, *graph.output, *graph.value_info):
        names.add(value.name)
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.add(node.name)
        names.update(node.input)
        names.update(node.output)
        for attribute in node.attribute:
            for subgraph in (
                *([attribute.g] if attribute.HasField("g") else []),
                *attribute.graphs,
            ):
                _names_used_in_graph(subgraph, names)


def _names_consumed(graph: onnx.GraphProto, consumed: set[str]) -> None:
    consumed.update(o.name for o in graph.output)
    for node in graph.node:
        consumed.update(node.input)
        for attribute in node.attribute:
            for subgraph in (
                *([attribute.g] if attribute.HasField("g") else []),
                *attribute.graphs,
            ):
                _names_consumed(subgraph, consumed)


class _Editor:
    """A deep copy of the model plus the bookkeeping every mangle needs."""

    def __init__(self, model: onnx.ModelProto, rule_code: str) -> None:
        self.model = onnx.ModelProto()
        self.model.CopyFrom(model)
        self.graph = self.model.graph
        self.rule_tag = rule_code.lower()
        self.opset = _default_opset(self.model)
        self._used_names: set[str] = {""}
        _names_used_in_graph(self.graph, self._used_names)
        self._initializers = {t.name: t for t in self.graph.initializer}
        self._constant_nodes = {
            n.output[0]: n
            for n in self.graph.node
            if n.op_type == "Constant"
            and len(n.output) == 1
            and any(a.name == "value" for a in n.attribute)
        }
        self._maybe_orphaned: set[str] = set()

    # -- names and tensors ------------------------------------------------------------------
    def fresh(self, base: str, what: str) -> str:
        stem = f"{base}_{self.rule_tag}_{what}"
        name, suffix = stem, 1
        while name in self._used_names:
            name = f"{stem}_{suffix}"
            suffix += 1
        self._used_names.add(name)
        return name

    def constant_value(self, name: str) -> np.ndarray | None:
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
    def convs(self) -> list[_Conv]:
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
                _Conv(index, node, weight, bias, bias_is_constant=not has_bias or bias is not None)
            )
        return found

    def select(
        self, nodes: Iterable[str] | None, eligible: Callable[[_Conv], bool], what: str
    ) -> list[_Conv]:
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
        consumed: set[str] = set()
        _names_consumed(self.graph, consumed)
        orphans = self._maybe_orphaned - consumed
        if not orphans:
            return
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


def _is_depthwise(conv: _Conv) -> bool:
    """Conv with group == C_in > 1, weight (C_in*M, 1, k, k) and a kernel larger than 1x1."""
    w = conv.weight
    return (
        conv.node.op_type == "Conv"
        and conv.group > 1
        and w.shape[1] == 1
        and w.shape[0] % conv.group == 0
        and max(w.shape[2:]) > 1
    )


def _is_depthwise_transpose(conv: _Conv) -> bool:
    """ConvTranspose with group == C_in > 1 and weight (C_in, M, k, k)."""
    w = conv.weight
    return (
        conv.node.op_type == "ConvTranspose"
        and conv.group > 1
        and w.shape[0] == conv.group
        and max(w.shape[2:]) > 1
    )


def _is_pointwise(conv: _Conv) -> bool:
    """1x1 Conv, group 1, stride 1, no padding: a per-pixel matrix multiply."""
    node = conv.node
    return (
        node.op_type == "Conv"
        and conv.group == 1
        and tuple(conv.weight.shape[2:]) == (1, 1)
        and all(s == 1 for s in _attribute(node, "strides", [1, 1]))
        and all(p == 0 for p in _attribute(node, "pads", [0, 0, 0, 0]))
        and _attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
    )


def _is_block_conv(conv: _Conv) -> bool:
    return _is_depthwise(conv) or _is_pointwise(conv)


# -- SEP001 --------------------------------------------------------------------------------------


def dense_depthwise(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP001: depthwise convs become group=1 convs with a block-diagonal dense weight.

    Conv (C*M, 1, k, k) → (C*M, C, k, k); ConvTranspose (C, M, k, k) → (C, C*M, k, k). Same
    function, C times the multiply-adds, and TensorRT no longer picks a depthwise kernel.
    """
    editor = _Editor(model, "SEP001")
    for conv in editor.select(
        nodes, lambda c: _is_depthwise(c) or _is_depthwise_transpose(c), "depthwise"
    ):
        w, channels = conv.weight, conv.group
        if conv.node.op_type == "Conv":
            multiplier = w.shape[0] // channels
            dense = np.zeros((w.shape[0], channels, *w.shape[2:]), dtype=w.dtype)
            out_channels = np.arange(w.shape[0])
            dense[out_channels, out_channels // multiplier] = w[:, 0]
        else:
            multiplier = w.shape[1]
            dense = np.zeros((channels, channels * multiplier, *w.shape[2:]), dtype=w.dtype)
            out_channels = np.arange(channels * multiplier)
            dense[out_channels // multiplier, out_channels] = w.reshape(
                channels * multiplier, *w.shape[2:]
            )
        editor.replace_input(
            conv.node, 1, editor.add_initializer(dense, conv.base_name, "dense_weight")
        )
        _set_attribute(conv.node, "group", 1)
    return editor.rebuild({})


# -- SEP002 --------------------------------------------------------------------------------------


def group_attribute(
    model: onnx.ModelProto, value: int | None, nodes: Sequence[str] | None = None
) -> onnx.ModelProto:
    """SEP002: give depthwise convs a wrong group (0, negative, 1, ...) or none at all.

    The result is an invalid model (the group no longer matches the weight), as tf2onnx wrote
    with ``group: -3``; there is no numeric claim.
    """
    editor = _Editor(model, "SEP002")
    for conv in editor.select(nodes, _is_depthwise, "depthwise"):
        if value is None:
            _remove_attribute(conv.node, "group")
        else:
            _set_attribute(conv.node, "group", int(value))
    return editor.rebuild({})


# -- SEP003 --------------------------------------------------------------------------------------


def _quantize_per_tensor(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.float32(np.abs(weight).max() / 127.0) if np.any(weight) else np.float32(1.0)
    quantized = np.clip(np.round(weight / scale), -127, 127).astype(np.int8)
    return quantized, np.array(scale, dtype=np.float32)


def kernel_shape(
    model: onnx.ModelProto, how: str, nodes: Sequence[str] | None = None
) -> onnx.ModelProto:
    """SEP003: break the kernel_shape attribute of depthwise and pointwise convs.

    how="wrong": kernel_shape disagrees with the weight (k+2 per axis, e.g. [5, 5] for 3x3): an
    invalid model, no numeric claim.
    how="missing_dq": kernel_shape removed and the weight routed through DequantizeLinear of an
    int8 initializer with a per-tensor scale, as the dynamo exporter wrote for quantized models.
    The numbers move by the int8 rounding: a repaired model must equal this mangled model, not
    the clean one it came from.
    """
    if how not in KERNEL_SHAPE_KINDS:
        raise ValueError(f"unknown how {how!r}; expected one of {KERNEL_SHAPE_KINDS}")
    editor = _Editor(model, "SEP003")
    if how == "missing_dq" and editor.opset < 10:
        raise ValueError("DequantizeLinear needs opset >= 10")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    for conv in editor.select(nodes, _is_block_conv, "depthwise or pointwise"):
        if how == "wrong":
            _set_attribute(conv.node, "kernel_shape", [k + 2 for k in conv.weight.shape[2:]])
            continue
        quantized, scale = _quantize_per_tensor(conv.weight)
        base = conv.base_name
        dequantize = editor.node(
            "DequantizeLinear",
            [
                editor.add_initializer(quantized, base, "weight_int8"),
                editor.add_initializer(scale, base, "weight_scale"),
                editor.add_initializer(np.array(0, dtype=np.int8), base, "weight_zero_point"),
            ],
            [editor.fresh(base, "weight_dequantized")],
            base,
            "weight_dequantize",
        )
        editor.replace_input(conv.node, 1, dequantize.output[0])
        _remove_attribute(conv.node, "kernel_shape")
        replacements[conv.index] = [dequantize, conv.node]
    return editor.rebuild(replacements)


# -- SEP004 --------------------------------------------------------------------------------------


def _tf_layout_chain(editor: _Editor, conv: _Conv, with_reshape: bool) -> list[onnx.NodeProto]:
    """Store the weight in TensorFlow's layout and add the nodes that turn it back to ONNX's."""
    w, base = conv.weight, conv.base_name
    c_out, c_in_per_group, kh, kw = w.shape
    nodes: list[onnx.NodeProto] = []
    if with_reshape:
        if _is_depthwise(conv):
            # TF depthwise (kH, kW, C, M) reshaped to (kH, kW, 1, C*M), as tf2onnx emits.
            channels = conv.group
            stored = w.reshape(channels, c_out // channels, kh, kw).transpose(2, 3, 0, 1)
            reshaped = [kh, kw, 1, c_out]
        else:
            # TF dense (kH, kW, C_in, C_out), kept flattened so the Reshape has work to do.
            stored = w.transpose(2, 3, 1, 0).reshape(kh * kw * c_in_per_group, c_out)
            reshaped = [kh, kw, c_in_per_group, c_out]
        shape_name = editor.add_initializer(
            np.array(reshaped, dtype=np.int64), base, "weight_tf_shape"
        )
        reshape = editor.node(
            "Reshape",
            [editor.add_initializer(stored, base, "weight_tf"), shape_name],
            [editor.fresh(base, "weight_tf_reshaped")],
            base,
            "weight_reshape",
        )
        nodes.append(reshape)
        transpose_input, perm = reshape.output[0], [3, 2, 0, 1]
    else:
        if _is_depthwise(conv) and c_out == conv.group:
            # TF depthwise (kH, kW, C, 1): the multiplier axis is last.
            layout = [2, 3, 0, 1]
        else:
            # TF dense (kH, kW, C_in, C_out); a depthwise weight with M > 1 as (kH, kW, 1, C*M).
            layout = [2, 3, 1, 0]
        transpose_input = editor.add_initializer(w.transpose(layout), base, "weight_tf")
        perm = [int(p) for p in np.argsort(layout)]
    transpose = editor.node(
        "Transpose",
        [transpose_input],
        [editor.fresh(base, "weight_onnx_layout")],
        base,
        "weight_transpose",
        perm=perm,
    )
    nodes.append(transpose)
    return nodes


def runtime_weights(
    model: onnx.ModelProto, how: str, nodes: Sequence[str] | None = None
) -> onnx.ModelProto:
    """SEP004: make depthwise and pointwise conv weights something computed at run time.

    how: "tf_transpose" (TF-layout initializer + Transpose, tf2onnx 1070),
    "tf_reshape_transpose" (TF-layout initializer + Reshape + Transpose), "cast_fp16" (fp16
    initializer + Cast to float; the numbers move by the fp16 rounding of the weights, so a
    repaired model must equal this mangled one), "identity" (Identity in front of the weight),
    "graph_input" (the weight initializer is also listed as a graph input, as exporters did
    before IR 4 — onnxruntime issue 4507; no node is added).
    """
    if how not in RUNTIME_WEIGHT_KINDS:
        raise ValueError(f"unknown how {how!r}; expected one of {RUNTIME_WEIGHT_KINDS}")
    editor = _Editor(model, "SEP004")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    listed_inputs = {i.name for i in editor.graph.input}
    for conv in editor.select(nodes, _is_block_conv, "depthwise or pointwise"):
        base = conv.base_name
        if how == "graph_input":
            name = conv.node.input[1]
            if editor.initializer(name) is None:  # a Constant node: make it an initializer first
                name = editor.add_initializer(conv.weight, base, "weight")
                editor.replace_input(conv.node, 1, name)
            if name not in listed_inputs:
                tensor = editor.initializer(name)
                editor.graph.input.append(
                    helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims))
                )
                listed_inputs.add(name)
            continue
        if how in ("tf_transpose", "tf_reshape_transpose"):
            chain = _tf_layout_chain(editor, conv, with_reshape=how == "tf_reshape_transpose")
        elif how == "cast_fp16":
            stored = editor.add_initializer(conv.weight.astype(np.float16), base, "weight_fp16")
            chain = [
                editor.node(
                    "Cast",
                    [stored],
                    [editor.fresh(base, "weight_fp32")],
                    base,
                    "weight_cast",
                    to=TensorProto.FLOAT,
                )
            ]
        else:
            stored = editor.add_initializer(conv.weight, base, "weight")
            chain = [
                editor.node(
                    "Identity",
                    [stored],
                    [editor.fresh(base, "weight_identity_out")],
                    base,
                    "weight_identity",
                )
            ]
        editor.replace_input(conv.node, 1, chain[-1].output[0])
        replacements[conv.index] = [*chain, conv.node]
    return editor.rebuild(replacements)


# -- SEP005 --------------------------------------------------------------------------------------


def split_depthwise(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP005: each depthwise conv (M = 1) becomes Split(axis=1) → C one-channel convs → Concat.

    As onnx2tf and MNN wrote it: same function, C tiny convs instead of one depthwise layer.
    The Split sizes are an input from opset 13 on and an attribute before.
    """
    editor = _Editor(model, "SEP005")
    replacements: dict[int, list[onnx.NodeProto]] = {}

    def eligible(conv: _Conv) -> bool:
        return _is_depthwise(conv) and conv.weight.shape[0] == conv.group and conv.bias_is_constant

    for conv in editor.select(nodes, eligible, "depthwise (multiplier 1, constant bias)"):
        node, base, channels = conv.node, conv.base_name, conv.group
        pieces = [editor.fresh(base, f"split_{c}") for c in range(channels)]
        sizes = np.ones(channels, dtype=np.int64)
        if editor.opset >= 13:
            split = editor.node(
                "Split",
                [node.input[0], editor.add_initializer(sizes, base, "split_sizes")],
                pieces,
                base,
                "split",
                axis=1,
            )
        else:
            split = editor.node(
                "Split", [node.input[0]], pieces, base, "split", axis=1, split=sizes.tolist()
            )
        kept_attributes = {
            a.name: helper.get_attribute_value(a) for a in node.attribute if a.name != "group"
        }
        channel_convs = []
        for c, piece in enumerate(pieces):
            inputs = [piece, editor.add_initializer(conv.weight[c : c + 1], base, f"weight_{c}")]
            if conv.bias is not None:
                inputs.append(editor.add_initializer(conv.bias[c : c + 1], base, f"bias_{c}"))
            channel_convs.append(
                editor.node(
                    "Conv",
                    inputs,
                    [editor.fresh(base, f"conv_{c}_out")],
                    base,
                    f"conv_{c}",
                    group=1,
                    **kept_attributes,
                )
            )
        concat = editor.node(
            "Concat",
            [cc.output[0] for cc in channel_convs],
            list(node.output),
            base,
            "concat",
            axis=1,
        )
        editor.release(*node.input[1:])
        replacements[conv.index] = [split, *channel_convs, concat]
    return editor.rebuild(replacements)


# -- SEP006 --------------------------------------------------------------------------------------


def matmul_pointwise(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP006: each pointwise conv becomes Transpose → MatMul → Add(bias) → Transpose.

    The MatMul weight is (C_in, C_out); no Add when the conv had no bias. This is how NHWC
    converters write a 1x1 conv; TensorRT then sees a MatMul, not a convolution, and cannot
    fuse it with the depthwise conv before it.
    """
    editor = _Editor(model, "SEP006")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    for conv in editor.select(
        nodes, lambda c: _is_pointwise(c) and c.bias_is_constant, "pointwise"
    ):
        node, base = conv.node, conv.base_name
        to_nhwc = editor.node(
            "Transpose",
            [node.input[0]],
            [editor.fresh(base, "nhwc")],
            base,
            "to_nhwc",
            perm=_TO_NHWC,
        )
        matrix = editor.add_initializer(
            np.ascontiguousarray(conv.weight[:, :, 0, 0].T), base, "matmul_weight"
        )
        chain = [
            to_nhwc,
            editor.node(
                "MatMul",
                [to_nhwc.output[0], matrix],
                [editor.fresh(base, "matmul_out")],
                base,
                "matmul",
            ),
        ]
        if conv.bias is not None:
            bias = editor.add_initializer(conv.bias, base, "bias")
            chain.append(
                editor.node(
                    "Add", [chain[-1].output[0], bias], [editor.fresh(base, "add_out")], base, "add"
                )
            )
        chain.append(
            editor.node(
                "Transpose",
                [chain[-1].output[0]],
                list(node.output),
                base,
                "to_nchw",
                perm=_TO_NCHW,
            )
        )
        editor.release(*node.input[1:])
        replacements[conv.index] = chain
    return editor.rebuild(replacements)


# -- SEP007 --------------------------------------------------------------------------------------


def _nhwc_round_trip(
    editor: _Editor, base: str, source: str, target: str, where: str
) -> list[onnx.NodeProto]:
    """Transpose(0,2,3,1) then Transpose(0,3,1,2): an NHWC detour that changes nothing."""
    nhwc = editor.node(
        "Transpose",
        [source],
        [editor.fresh(base, f"{where}_nhwc")],
        base,
        f"{where}_to_nhwc",
        perm=_TO_NHWC,
    )
    nchw = editor.node(
        "Transpose", [nhwc.output[0]], [target], base, f"{where}_to_nchw", perm=_TO_NCHW
    )
    return [nhwc, nchw]


def layout_sandwich(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP007: wrap each depthwise and pointwise conv in NHWC round trips, as tf2onnx did.

    Before the conv: Transpose(0,2,3,1) → Transpose(0,3,1,2); after it the same pair. Each pair
    is an inverse pair that cancels, so the function is unchanged (bit for bit).
    """
    editor = _Editor(model, "SEP007")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    for conv in editor.select(nodes, _is_block_conv, "depthwise or pointwise"):
        node, base = conv.node, conv.base_name

        before_output = editor.fresh(base, "before_nchw")
        before = _nhwc_round_trip(editor, base, node.input[0], before_output, "before")
        conv_output = node.output[0]
        node.input[0] = before[-1].output[0]
        node.output[0] = editor.fresh(base, "conv_out")
        after = _nhwc_round_trip(editor, base, node.output[0], conv_output, "after")
        replacements[conv.index] = [*before, node, *after]
    return editor.rebuild(replacements)


# -- SEP008 --------------------------------------------------------------------------------------


def detached_bias(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP008: move each depthwise/pointwise conv's bias into a following Add of (1, C, 1, 1).

    Same function up to float rounding; TensorRT fuses a conv bias for free but not always an Add.
    """
    editor = _Editor(model, "SEP008")
    replacements: dict[int, list[onnx.NodeProto]] = {}

    def eligible(conv: _Conv) -> bool:
        return _is_block_conv(conv) and conv.bias is not None

    for conv in editor.select(nodes, eligible, "depthwise or pointwise (with a constant bias)"):
        node, base = conv.node, conv.base_name
        bias = editor.add_initializer(conv.bias.reshape(1, -1, 1, 1), base, "detached_bias")
        conv_output = node.output[0]
        editor.release(node.input[2])
        del node.input[2:]
        node.output[0] = editor.fresh(base, "conv_out")
        add = editor.node("Add", [node.output[0], bias], [conv_output], base, "bias_add")
        replacements[conv.index] = [node, add]
    return editor.rebuild(replacements)


# -- SEP009 --------------------------------------------------------------------------------------


def inflated_kernel(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP009: each pointwise conv becomes a 3x3 conv, zero but for the centre tap, with pads 1.

    Same function; nine times the multiply-adds and no pointwise kernel in TensorRT.
    kernel_shape is rewritten when present; auto_pad is dropped in favour of explicit pads.
    """
    editor = _Editor(model, "SEP009")
    for conv in editor.select(nodes, _is_pointwise, "pointwise"):
        node, w = conv.node, conv.weight
        inflated = np.zeros((*w.shape[:2], 3, 3), dtype=w.dtype)
        inflated[:, :, 1, 1] = w[:, :, 0, 0]
        editor.replace_input(
            node, 1, editor.add_initializer(inflated, conv.base_name, "inflated_weight")
        )
        _remove_attribute(node, "auto_pad")
        _set_attribute(node, "pads", [1, 1, 1, 1])
        if any(a.name == "kernel_shape" for a in node.attribute):
            _set_attribute(node, "kernel_shape", [3, 3])
    return editor.rebuild({})
