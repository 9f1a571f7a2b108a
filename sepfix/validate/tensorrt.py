"""What TensorRT did with each depthwise-separable block, read from engine layer information.

A repair is worth what it lets TensorRT build. TensorRT describes what it built as *layer
information* JSON (``trtexec --profilingVerbosity=detailed --exportLayerInfo=FILE``, or
``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)``): one entry per engine
layer, named after the ONNX nodes fused into it. This module reads that JSON, maps layer names
back to ONNX node names, and reports per block whether the depthwise conv stayed a grouped layer
with Groups == C, what fused into it, which pointwise layer follows it and what fused there.

Results read from an engine say ``evidence="observed"``. `predict_block_report` gives the same
structure from TensorRT's documented fusions and says ``evidence="predicted"``, for machines
without TensorRT; the two are never mixed. ``tensorrt`` is imported lazily, only by the functions
that build or load engines, so everything else runs anywhere.
"""

from __future__ import annotations

import ctypes.util
import importlib
import importlib.util
import json
import re
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import onnx

from sepfix import walk
from sepfix.errors import SepfixError
from sepfix.ops import ACTIVATION_OPS, ADD_OPS, BATCHNORM_OPS, QUANT_OPS
from sepfix.patterns import Block

__all__ = [
    "EngineLayer",
    "EngineInfo",
    "ParsedName",
    "LayerClass",
    "OnnxBlock",
    "FusedNodes",
    "BlockResult",
    "parse_layer_info",
    "load_layer_info",
    "split_layer_name",
    "parse_metadata",
    "guess_op_type",
    "classify_layer",
    "block_report",
    "coverage",
    "NOT_COVERED",
    "model_node_names",
    "require_same_model",
    "predict_block_report",
    "tensorrt_available",
    "build_engine_layer_info",
    "layer_info_from_engine_file",
    "ort_engine_cache_options",
    "find_ort_engine_files",
]

# --------------------------------------------------------------------------------------------
# ONNX op families, as the report groups fused nodes.

CONV_OPS = frozenset({"Conv", "ConvInteger", "QLinearConv"})  # what a layer name may come from

# Layer types TensorRT inserts to move or relabel data; they compute nothing of the model.
_DATA_MOVEMENT_TYPES = frozenset({"Reformat", "NoOp"})
# How far `block_report` walks from a depthwise layer's output looking for the next conv.
_MAX_FOLLOW_DEPTH = 8

_COPY_RE = re.compile(r"^Reformatting CopyNode for (?:Input|Output) Tensor \d+ to (?P<target>.+)$", re.S)
_FOREIGN_RE = re.compile(r"^\{ForeignNode\[(?P<inner>.*)\]\}$", re.S)
_METADATA_ENTRY = "ONNX Layer: "
# Names the ONNX parser makes up for layers it adds (shuffles around Gemm, squeezes, ...).
_PARSER_MADE_PREFIXES = (
    "unsqueeze_node_after_", "squeeze_node_after_", "copied_squeeze_after_", "squeeze_after_",
    "unsqueeze_after_", "reshape_after_", "reshape_before_", "Reformatted Input Tensor",
    "Reformatted Output Tensor",
)
# Initializer names as exporters write them (torch: ``features.1.conv.0.0.weight``).
_WEIGHT_SUFFIXES = frozenset({
    "weight", "bias", "running_mean", "running_var", "weight_orig", "kernel", "gamma", "beta",
    "moving_mean", "moving_variance",
})
# Lower-case spellings some exporters use in node names (torch dynamo ``node_conv2d``).
_OP_ALIASES = {
    "conv": "Conv", "conv2d": "Conv", "conv1d": "Conv", "conv3d": "Conv", "convolution": "Conv",
    "relu": "Relu", "relu6": "Clip", "hardtanh": "Clip", "clamp": "Clip", "clip": "Clip",
    "batch_norm": "BatchNormalization", "batchnorm": "BatchNormalization",
    "native_batch_norm_legit_no_training": "BatchNormalization",
    "sigmoid": "Sigmoid", "tanh": "Tanh", "hardswish": "HardSwish", "hard_swish": "HardSwish",
    "hardsigmoid": "HardSigmoid", "hard_sigmoid": "HardSigmoid", "leaky_relu": "LeakyRelu",
    "leakyrelu": "LeakyRelu", "gelu": "Gelu", "add": "Add", "mul": "Mul", "elu": "Elu",
    "quantize_per_tensor": "QuantizeLinear", "dequantize_per_tensor": "DequantizeLinear",
}
_ONNX_OPS = frozenset(schema.name for schema in onnx.defs.get_all_schemas_with_history())
_ONNX_OPS_LOWER = {name.lower(): name for name in _ONNX_OPS}


# --------------------------------------------------------------------------------------------
# Layer information → dataclasses


@dataclass(frozen=True)
class ParsedName:
    """What one engine layer name says about the ONNX graph.

    ``nodes`` are ONNX node names, ``weights`` initializer names (TensorRT puts constant layers'
    names into fusions), ``other_names`` names TensorRT or its ONNX parser made up
    (``(Unnamed Layer* 850) [ElementWise]``). ``copy_target`` is set for a ``Reformatting
    CopyNode``: its name repeats the target layer's fusion, but the copy fused nothing.
    """

    nodes: tuple[str, ...]
    weights: tuple[str, ...]
    other_names: tuple[str, ...]
    pwn_nodes: tuple[str, ...]
    horizontal: bool
    foreign: bool
    copy_target: str | None


@dataclass(frozen=True)
class EngineLayer:
    """One layer of a built engine.

    ``onnx_nodes`` is the list to trust: the ``Metadata`` names when the engine has them
    (TensorRT ≥ 10), else the names parsed from the layer name, and always empty for a copy.
    ``detailed`` is False for names-only layer information (no LayerType, no Groups).
    """

    name: str
    layer_type: str
    parameter_type: str | None
    groups: int | None
    out_maps: int | None
    kernel: tuple[int, ...] | None
    in_channels: int | None
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    onnx_nodes: tuple[str, ...]
    metadata_nodes: tuple[str, ...]
    metadata_truncated: bool
    name_nodes: tuple[str, ...]
    weights: tuple[str, ...]
    other_names: tuple[str, ...]
    pwn_nodes: tuple[str, ...]
    is_copy: bool
    copy_target: str | None
    origin: str | None
    detailed: bool
    op_types: Mapping[str, str | None] = field(compare=False, repr=False)
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    def op_type(self, node: str) -> str | None:
        return self.op_types.get(node)


@dataclass(frozen=True)
class EngineInfo:
    """A parsed layer-information document: its layers in engine order and its I/O names."""

    layers: tuple[EngineLayer, ...]
    bindings: tuple[str, ...]

    @property
    def detailed(self) -> bool:
        return any(layer.detailed for layer in self.layers)


class _ModelNames:
    """Node names (with op types) and initializer names of an ONNX model, subgraphs included."""

    def __init__(self, model: onnx.ModelProto):
        self.ops: dict[str, str] = {}
        self.initializers: set[str] = set()
        for body in walk.bodies(model):
            if isinstance(body, onnx.GraphProto):
                self.initializers.update(init.name for init in body.initializer)
                self.initializers.update(init.values.name for init in body.sparse_initializer)
            for node in body.node:
                self._add_node(node)

    def _add_node(self, node: onnx.NodeProto) -> None:
        # TensorRT's parser names an unnamed node after its first output (patterns.tensorrt_name).
        name = node.name or (f"node_of_{node.output[0]}" if node.output else "")
        if name:
            self.ops.setdefault(name, node.op_type)


def parse_layer_info(doc: Mapping | Sequence | str | bytes, model: onnx.ModelProto | None = None) -> EngineInfo:
    """Parse layer information in any of the forms TensorRT writes.

    Accepts the detailed form ``{"Layers": [{...}], "Bindings": [...]}``, the names-only form
    where ``Layers`` is a list of strings, a bare list of layers, and TensorRT 11's
    ``"I/O Tensors"`` in place of ``Bindings``. With ``model`` the node/initializer split and
    op types come from the model instead of from name heuristics.
    """
    if isinstance(doc, (str, bytes)):
        doc = json.loads(doc)
    names = _ModelNames(model) if model is not None else None
    if isinstance(doc, Mapping):
        if "Layers" not in doc:
            raise SepfixError("layer information has no 'Layers' key: not TensorRT layer-information JSON")
        raw_layers = doc["Layers"]
        bindings = tuple(_binding_names(doc))
    elif isinstance(doc, Sequence):
        raw_layers, bindings = doc, ()
    else:
        raise SepfixError(f"layer information must be a JSON object or list, not {type(doc).__name__}")
    layers = []
    for entry in raw_layers:
        if isinstance(entry, Mapping) and set(entry) == {"count"}:
            continue  # trtexec profiles start with {"count": N}; not a layer
        layers.append(_parse_layer(entry, names))
    return EngineInfo(tuple(layers), bindings)


def load_layer_info(path: str | Path, model: onnx.ModelProto | None = None) -> EngineInfo:
    """Read a layer-information JSON file (e.g. ``*.engine.graph.json`` from trtexec)."""
    path = Path(path)
    if not path.is_file():
        raise SepfixError(f"layer information file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SepfixError(f"{path} is not JSON: {exc}") from exc
    return parse_layer_info(doc, model)


def _binding_names(doc: Mapping) -> Iterable[str]:
    for entry in doc.get("Bindings", ()):
        yield entry if isinstance(entry, str) else entry["Name"]
    for entry in doc.get("I/O Tensors", ()):
        yield entry["Name"]


def _parse_layer(entry: Any, names: _ModelNames | None) -> EngineLayer:
    if isinstance(entry, str):
        text = entry.strip()
        # Some names-only dumps wrap each name as a one-key JSON object in a string.
        entry = json.loads(text) if text.startswith("{") else {"Name": entry}
    if not isinstance(entry, Mapping) or "Name" not in entry:
        raise SepfixError(f"layer entry without a 'Name': {str(entry)[:120]}")
    name = entry["Name"]
    layer_type = entry.get("LayerType", "")
    origin = entry.get("Origin")
    parsed = split_layer_name(name, names)
    metadata = entry.get("Metadata") or ""
    metadata_nodes = parse_metadata(metadata) if metadata else ()
    is_copy = (
        parsed.copy_target is not None
        or layer_type == "NoOp"
        or (layer_type == "Reformat" and origin in (None, "REFORMAT"))
    )
    onnx_nodes = () if is_copy else (metadata_nodes or parsed.nodes)
    all_nodes = dict.fromkeys(onnx_nodes + parsed.nodes + metadata_nodes)
    op_types = {node: _op_of(node, names) for node in all_nodes}
    inputs = tuple(_tensor_name(t) for t in entry.get("Inputs", ()))
    outputs = tuple(_tensor_name(t) for t in entry.get("Outputs", ()))
    return EngineLayer(
        name=name,
        layer_type=layer_type,
        parameter_type=entry.get("ParameterType"),
        groups=_int_or_none(entry.get("Groups")),
        out_maps=_int_or_none(entry.get("OutMaps")),
        kernel=tuple(int(k) for k in entry["Kernel"]) if isinstance(entry.get("Kernel"), list) else None,
        in_channels=_input_channels(entry),
        inputs=inputs,
        outputs=outputs,
        onnx_nodes=onnx_nodes,
        metadata_nodes=metadata_nodes,
        metadata_truncated=" ... " in metadata,
        name_nodes=parsed.nodes,
        weights=parsed.weights,
        other_names=parsed.other_names,
        pwn_nodes=parsed.pwn_nodes,
        is_copy=is_copy,
        copy_target=parsed.copy_target,
        origin=origin,
        detailed="LayerType" in entry,
        op_types=op_types,
        raw=dict(entry),
    )


def _tensor_name(tensor: Any) -> str:
    return tensor if isinstance(tensor, str) else tensor["Name"]


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _input_channels(entry: Mapping) -> int | None:
    inputs = entry.get("Inputs") or ()
    if not inputs or not isinstance(inputs[0], Mapping):
        return None
    dims = inputs[0].get("Dimensions")
    if isinstance(dims, list) and len(dims) >= 2 and isinstance(dims[1], int) and dims[1] > 0:
        return dims[1]
    return None


def _op_of(node: str, names: _ModelNames | None) -> str | None:
    if names is not None and node in names.ops:
        return names.ops[node]
    return guess_op_type(node)


# --------------------------------------------------------------------------------------------
# Names


def parse_metadata(metadata: str) -> tuple[str, ...]:
    """ONNX node names from a layer's ``Metadata`` field (TensorRT ≥ 10).

    The ONNX parser writes ``[ONNX Layer: <node> | <fn node> (<fn>) ...]`` per node; a fused
    layer joins its nodes' entries with ``\\x1f`` (``\\x1e`` has been seen too). Only the first
    ``|`` field is the node; the rest is the local-function stack. Entries cut by TensorRT's
    4000-character limit (``" ... "`` in the middle) are dropped rather than half-read.
    """
    found: list[str] = []
    for chunk in re.split(r"[\x1e\x1f]", metadata):
        in_entry = chunk.lstrip().startswith("[" + _METADATA_ENTRY)
        for match in re.finditer(r"\[([^\[\]]*)\]", chunk):
            body = match.group(1)
            if body.startswith(_METADATA_ENTRY):
                body = body[len(_METADATA_ENTRY):]
            elif not in_entry:
                continue  # brackets in free text that is not an ONNX Layer entry
            node = body.split(" | ")[0].strip()
            if node and " ... " not in node:
                found.append(node)
    return tuple(dict.fromkeys(found))


def split_layer_name(name: str, names: _ModelNames | None = None) -> ParsedName:
    """Split an engine layer name into ONNX nodes, weights and TensorRT-made names.

    TensorRT joins fused layers with `` + ``, wraps pointwise fusions as ``PWN(a, b)`` or
    ``PWN(PWN(a), b + c)``, joins horizontally merged layers with ``||`` and names Myelin
    regions ``{ForeignNode[first...last]}`` (only the two ends are known).
    """
    copy = _COPY_RE.match(name)
    if copy is not None:
        return ParsedName((), (), (), (), False, False, copy.group("target"))
    nodes: list[str] = []
    weights: list[str] = []
    other: list[str] = []
    pwn: list[str] = []
    foreign = False

    def visit(part: str, in_pwn: bool) -> None:
        nonlocal foreign
        part = part.strip()
        if not part:
            return
        if part.startswith("PWN(") and part.endswith(")") and _balanced(part[4:-1]):
            for inner in split_top(part[4:-1], (" + ", ", ")):
                visit(inner, True)
            return
        foreign_match = _FOREIGN_RE.match(part)
        if foreign_match is not None:
            foreign = True
            for inner in foreign_match.group("inner").split("..."):
                for part in split_top(inner, (" + ",)):
                    visit(part, in_pwn)
            return
        kind = _leaf_kind(part, names)
        if kind == "node":
            nodes.append(part)
            if in_pwn:
                pwn.append(part)
        elif kind == "weight":
            weights.append(part)
        else:
            other.append(part)

    horizontal_parts = split_top(name, ("||",))
    for horizontal in horizontal_parts:
        for part in split_top(horizontal, (" + ",)):
            visit(part, False)
    return ParsedName(
        tuple(dict.fromkeys(nodes)),
        tuple(dict.fromkeys(weights)),
        tuple(dict.fromkeys(other)),
        tuple(dict.fromkeys(pwn)),
        len(horizontal_parts) > 1,
        foreign,
        None,
    )


def split_top(text: str, separators: tuple[str, ...], drop_empty: bool = True) -> list[str]:
    """Split on separators outside (), [] and {} so ``PWN(a + b)`` stays one part."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif depth == 0:
            sep = next((s for s in separators if text.startswith(s, i)), None)
            if sep is not None:
                parts.append(text[start:i])
                i += len(sep)
                start = i
                continue
        i += 1
    parts.append(text[start:])
    return [p for p in parts if p.strip()] if drop_empty else parts


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth < 0:
            return False
    return depth == 0


def _leaf_kind(leaf: str, names: _ModelNames | None) -> str:
    if names is not None:
        if leaf in names.ops:
            return "node"
        if leaf in names.initializers:
            return "weight"
        return "other"
    if "(Unnamed Layer*" in leaf or leaf.startswith(_PARSER_MADE_PREFIXES):
        return "other"
    if "::" in leaf or re.split(r"[./]", leaf)[-1] in _WEIGHT_SUFFIXES:
        return "weight"  # torch initializers: ``features.1.conv.0.0.weight``, ``onnx::Conv_567``
    return "node"


def guess_op_type(name: str) -> str | None:
    """The ONNX op type a node name suggests, for when the model is not at hand.

    Exporters put the op in the name: ``Conv_29``, ``/features/1/conv/0/Conv``,
    ``node_Conv_10``, ``BatchNormalization_x``, torch dynamo's ``node_conv2d_3``. Only the last
    path component is read, so a module called ``conv`` does not make a Clip a Conv.
    """
    last = re.split(r"[/:]", name.strip("/"))[-1]
    tokens = [t for t in last.split("_") if t and not t.isdigit()]
    if tokens and tokens[0] == "node":
        tokens = tokens[1:]
    for token in tokens:
        if token in _ONNX_OPS:
            return token
    for size in range(len(tokens), 0, -1):
        for start in range(len(tokens) - size + 1):
            span = "_".join(tokens[start:start + size]).lower()
            if span in _OP_ALIASES:
                return _OP_ALIASES[span]
    for token in tokens:
        if token.lower() in _ONNX_OPS_LOWER:
            return _ONNX_OPS_LOWER[token.lower()]
    return None


# --------------------------------------------------------------------------------------------
# Classification


@dataclass(frozen=True)
class LayerClass:
    """What kind of engine layer this is, as far as the block report cares.

    ``kind``: ``depsep`` (one DW+PW layer), ``depthwise`` (Groups > 1 and one group per output
    map or per input channel, or no Groups recorded and a depthwise layer type),
    ``grouped``, ``pointwise`` (1×1, Groups 1), ``dense``, ``convolution`` (a conv whose
    grouping was not recorded), ``copy`` or ``other``. ``cuda_depthwise``: the layer type is one
    of TensorRT's depthwise kernels (``CudaDepthwiseConvolution``).
    """

    kind: str
    is_convolution: bool
    cuda_depthwise: bool
    channel_multiplier: int | None = None


def classify_layer(layer: EngineLayer) -> LayerClass:
    """Classify an engine layer from its recorded parameters (never from its name's nodes).

    Layer information without ``Groups`` (the text of a build log) still names the layer's
    type: a ``*Depthwise*`` type (``CudaDepthwiseConvolution``) is TensorRT's depthwise kernel,
    so the conv stayed depthwise; any other conv type is ``convolution`` (grouping unknown).
    """
    cuda_depthwise = "depthwise" in layer.layer_type.lower()
    if "depsep" in layer.layer_type.lower() or "depsep" in layer.name.lower():
        return LayerClass("depsep", True, cuda_depthwise)
    if layer.is_copy:
        return LayerClass("copy", False, False)
    is_conv = layer.parameter_type == "Convolution" or "Convolution" in layer.layer_type
    if not is_conv:
        return LayerClass("other", False, False)
    groups = layer.groups
    if groups is None:
        return LayerClass("depthwise" if cuda_depthwise else "convolution", True, cuda_depthwise)
    if groups > 1 and (layer.out_maps == groups or layer.in_channels == groups):
        multiplier = layer.out_maps // groups if layer.out_maps else None
        return LayerClass("depthwise", True, cuda_depthwise, multiplier)
    if groups > 1:
        return LayerClass("grouped", True, cuda_depthwise)
    if layer.kernel is not None and all(k == 1 for k in layer.kernel):
        return LayerClass("pointwise", True, cuda_depthwise)
    return LayerClass("dense", True, cuda_depthwise)


# --------------------------------------------------------------------------------------------
# Block report


# The block type is patterns.Block; the name stays for readers of this module's API.
OnnxBlock = Block


@dataclass(frozen=True)
class FusedNodes:
    """ONNX nodes that ended up in one engine layer (or are predicted to), by role.

    ``trt_activation`` and ``has_bias`` are the layer's own ``Activation`` / ``HasBias``
    parameters: TensorRT records a fused activation there even when the name hides it.
    """

    conv: str | None = None
    batch_norm: tuple[str, ...] = ()
    activations: tuple[str, ...] = ()
    quantize: tuple[str, ...] = ()
    adds: tuple[str, ...] = ()
    other: tuple[str, ...] = ()
    weights: tuple[str, ...] = ()
    pwn: tuple[str, ...] = ()
    trt_activation: str | None = None
    has_bias: bool | None = None


@dataclass(frozen=True)
class BlockResult:
    """What TensorRT did (``evidence="observed"``) or is expected to do (``"predicted"``) with
    one depthwise-separable block.

    ``status``: ``fused`` (depthwise kept grouped, pointwise found, nothing left between them),
    ``unfused-between`` (a compute layer or node stands between them), ``depthwise-dense-or-missing``,
    ``pointwise-not-found`` or ``next-conv-not-pointwise`` (observed failures), or, where the
    layer information does not reach the block, ``not-covered`` (no layer names any of its
    nodes: ``evidence="none"``) and ``pointwise-not-covered`` (the depthwise layer is there,
    nothing after it: a log cut short). ``depsep`` is True when a single DepSepConvolution layer
    holds both convs (predicted: when the documented conditions hold), None when that cannot be
    told.
    """

    evidence: str
    status: str
    message: str
    depthwise_node: str | None
    pointwise_node: str | None
    channels: int | None
    depthwise_layer: str | None = None
    depthwise_layer_type: str | None = None
    depthwise_kept_grouped: bool | None = None
    depthwise_groups: int | None = None
    cuda_depthwise: bool | None = None
    depthwise_fused: FusedNodes = field(default_factory=FusedNodes)
    pointwise_layer: str | None = None
    pointwise_layer_type: str | None = None
    pointwise_fused: FusedNodes = field(default_factory=FusedNodes)
    pointwise_residual_input: bool | None = None
    depsep: bool | None = None
    via: tuple[str, ...] = ()
    unfused_between: tuple[str, ...] = ()
    between_placement: Mapping[str, str | None] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


# Statuses that say the layer information does not reach (all of) a block: never a claim about
# what TensorRT did, and not a failure.
NOT_COVERED = frozenset({"not-covered", "pointwise-not-covered"})


def coverage(results: Sequence[BlockResult]) -> dict[str, int]:
    """How many blocks were observed, predicted and not covered (a block the layer information
    reaches only in part counts as not covered)."""
    not_covered = sum(1 for r in results if r.status in NOT_COVERED)
    return {
        "blocks": len(results),
        "observed": sum(1 for r in results if r.evidence == "observed" and r.status not in NOT_COVERED),
        "predicted": sum(1 for r in results if r.evidence == "predicted"),
        "not_covered": not_covered,
    }


def model_node_names(model: onnx.ModelProto) -> set[str]:
    """Node names of ``model`` as TensorRT names them (``node_of_<output>`` when unnamed)."""
    return set(_ModelNames(model).ops)


def require_same_model(info: EngineInfo | Sequence[EngineLayer], model: onnx.ModelProto, source: str = "the layer information") -> int:
    """Raise SepfixError when no layer of ``info`` names a node of ``model``: the layer
    information belongs to another model (or to an export with other node names). Returns how
    many of the model's nodes it names."""
    layer_list = tuple(info.layers if isinstance(info, EngineInfo) else info)
    names = model_node_names(model)
    seen = {node for layer in layer_list for node in (*layer.onnx_nodes, *layer.name_nodes, *layer.metadata_nodes)}
    found = len(names & seen)
    if not layer_list:
        raise SepfixError(f"{source} holds no layers")
    if not found:
        raise SepfixError(
            f"{source} names none of this model's {len(names)} nodes: it belongs to another model "
            f"(or to an export with other node names); its {len(layer_list)} layers are named like "
            f"{next((l.name for l in layer_list if not l.is_copy), layer_list[0].name)[:60]!r}"
        )
    return found


def block_report(layers: EngineInfo | Sequence[EngineLayer], blocks: Sequence[OnnxBlock] | None = None) -> list[BlockResult]:
    """Per depthwise-separable block, what the engine shows TensorRT did with it.

    Without ``blocks`` every depthwise (or DepSep) layer of the engine is one block. With
    ``blocks`` each ONNX block is looked up by node name (Metadata when the engine has it, else
    the layer names): a block none of whose nodes any layer names is ``not-covered`` (the layer
    information does not reach it: a log cut short, a Myelin region that names only its ends),
    never a claim; a depthwise node named in a layer that is not depthwise, or missing while the
    rest of its block is there, is ``depthwise-dense-or-missing``. Names-only layer information
    cannot say what is grouped, so it is refused rather than guessed at.
    """
    layer_list = tuple(layers.layers if isinstance(layers, EngineInfo) else layers)
    if not any(layer.detailed for layer in layer_list):
        raise SepfixError(
            "layer information has layer names only (no LayerType/Groups): rebuild the engine with "
            "ProfilingVerbosity.DETAILED (trtexec --profilingVerbosity=detailed) to see what was fused"
        )
    graph = _LayerGraph(layer_list)
    if blocks is None:
        return [
            graph.observe(index, None)
            for index, layer in enumerate(layer_list)
            if classify_layer(layer).kind in ("depthwise", "depsep")
        ]
    return [graph.observe_block(block) for block in blocks]


class _LayerGraph:
    """Engine layers connected by tensor names, and ONNX node → layer lookup."""

    def __init__(self, layers: tuple[EngineLayer, ...]):
        self.layers = layers
        self.classes = [classify_layer(layer) for layer in layers]
        self.consumers: dict[str, list[tuple[int, int]]] = {}
        self.node_layer: dict[str, int] = {}
        for index, layer in enumerate(layers):
            for port, tensor in enumerate(layer.inputs):
                self.consumers.setdefault(tensor, []).append((index, port))
            for node in layer.onnx_nodes:
                self.node_layer.setdefault(node, index)

    def follow(self, start: int) -> tuple[int | None, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The first conv reading ``start``'s output as its data input (port 0), passing through
        copies/reformats (``via``) and other non-conv layers (``between``). Convs that read it on
        another port take it as a fused residual input and are returned separately."""
        queue = deque((tensor, (), (), 0) for tensor in self.layers[start].outputs)
        seen = set(self.layers[start].outputs)
        found: list[tuple[int, int, tuple[str, ...], tuple[str, ...]]] = []
        residual: list[str] = []
        while queue:
            tensor, via, between, depth = queue.popleft()
            for index, port in self.consumers.get(tensor, ()):
                layer, cls = self.layers[index], self.classes[index]
                if cls.is_convolution:
                    if port == 0:
                        found.append((depth, index, via, between))
                    else:
                        residual.append(layer.name)
                    continue
                if depth >= _MAX_FOLLOW_DEPTH:
                    continue
                moves_data = layer.is_copy or layer.layer_type in _DATA_MOVEMENT_TYPES
                next_via = via + (layer.name,) if moves_data else via
                next_between = between if moves_data else between + (layer.name,)
                for out in layer.outputs:
                    if out not in seen:
                        seen.add(out)
                        queue.append((out, next_via, next_between, depth + 1))
        if not found:
            return None, (), (), tuple(residual)
        _, index, via, between = min(found, key=lambda item: (item[0], item[1]))
        return index, via, between, tuple(residual)

    def observe_block(self, block: OnnxBlock) -> BlockResult:
        index = self.node_layer.get(block.depthwise)
        block_nodes = (block.depthwise, *block.between, block.pointwise, *block.after)
        if index is None and not any(node in self.node_layer for node in block_nodes):
            return BlockResult(
                evidence="none",
                status="not-covered",
                message="not in this layer information: no layer names any of its nodes ("
                        + ", ".join(block_nodes) + ")",
                depthwise_node=block.depthwise,
                pointwise_node=block.pointwise,
                channels=block.channels,
            )
        if index is None or self.classes[index].kind not in ("depthwise", "depsep"):
            return self._not_grouped(block, index)
        return self.observe(index, block)

    def _not_grouped(self, block: OnnxBlock, index: int | None) -> BlockResult:
        placement = self._placement(block)
        if index is None:
            named = [n for n in (*block.between, block.pointwise, *block.after) if n in self.node_layer]
            detail = (f"node {block.depthwise!r} is not named in any engine layer, while "
                      + ", ".join(named) + " of its block are")
            layer = None
        else:
            layer = self.layers[index]
            detail = (
                f"node {block.depthwise!r} is in layer {layer.name!r} "
                f"({layer.layer_type}, {self.classes[index].kind}, Groups={layer.groups})"
            )
        return BlockResult(
            evidence="observed",
            status="depthwise-dense-or-missing",
            message=f"depthwise became dense or was not found: {detail}",
            depthwise_node=block.depthwise,
            pointwise_node=block.pointwise,
            channels=block.channels,
            depthwise_layer=None if layer is None else layer.name,
            depthwise_layer_type=None if layer is None else layer.layer_type,
            depthwise_kept_grouped=None if layer is None else False,
            depthwise_groups=None if layer is None else layer.groups,
            depthwise_fused=FusedNodes() if layer is None else _fused(layer),
            between_placement=placement,
        )

    def _placement(self, block: OnnxBlock) -> dict[str, str | None]:
        return {
            node: (self.layers[self.node_layer[node]].name if node in self.node_layer else None)
            for node in block.between
        }

    def observe(self, index: int, block: OnnxBlock | None) -> BlockResult:
        dw = self.layers[index]
        dw_class = self.classes[index]
        notes: list[str] = []
        if dw.metadata_truncated:
            notes.append(f"Metadata of {dw.name!r} was truncated by TensorRT; some node names are missing")
        depsep = dw_class.kind == "depsep"
        if depsep:
            pw_index, via, between, residual = index, (), (), ()
        else:
            pw_index, via, between, residual = self.follow(index)
        if block is not None:
            named = self.node_layer.get(block.pointwise)
            if named is not None and named != pw_index:
                if pw_index is not None:
                    notes.append(
                        f"pointwise node {block.pointwise!r} is in {self.layers[named].name!r}, not in "
                        f"{self.layers[pw_index].name!r} which reads the depthwise output"
                    )
                pw_index, via, between = named, (), ()
            elif named is None and pw_index is not None:
                notes.append(
                    f"pointwise node {block.pointwise!r} is not named in any layer; reporting the conv "
                    "layer that reads the depthwise output"
                )
        if residual:
            notes.append("depthwise output is also a fused residual input of: " + ", ".join(residual))

        dw_fused = _fused(dw)
        pw = self.layers[pw_index] if pw_index is not None else None
        pw_fused = FusedNodes()
        if pw is not None:
            pw_fused = _fused(pw)
        if depsep:
            convs = [n for n in dw.onnx_nodes if dw.op_type(n) in CONV_OPS]
            pw_fused = FusedNodes(conv=convs[1] if len(convs) > 1 else None)
            notes.append("one DepSepConvolution layer holds both convs")

        depthwise_node = block.depthwise if block is not None else dw_fused.conv
        pointwise_node = block.pointwise if block is not None else pw_fused.conv
        channels = block.channels if block is not None else dw.groups
        if block is not None and dw.groups is not None and dw.groups != block.channels:
            notes.append(f"engine layer has Groups={dw.groups}, the ONNX block has {block.channels} channels")

        unfused = list(between)
        placement: dict[str, str | None] = {}
        if block is not None:
            placement = self._placement(block)
            kept = {dw.name} | ({pw.name} if pw is not None else set())
            for node, layer_name in placement.items():
                if layer_name is not None and layer_name not in kept and layer_name not in unfused:
                    unfused.append(layer_name)

        pw_class = self.classes[pw_index] if pw_index is not None else None
        text_pointwise = (
            pw_class is not None and pw_class.kind == "convolution"
            and (block is None or block.pointwise in pw.onnx_nodes)
        )
        if text_pointwise and block is None:
            notes.append(f"{pw.name!r} records no kernel or Groups: taken as the pointwise conv")
        cut_short = (
            pw is None and block is not None and block.pointwise not in self.node_layer
            and not any(self.consumers.get(t) for t in dw.outputs)
        )
        if cut_short:
            status, message = ("pointwise-not-covered",
                               f"depthwise layer {dw.name!r} is here, but nothing after it: the pointwise conv "
                               f"{block.pointwise!r} is not in this layer information (cut short?)")
        elif pw is None:
            status, message = "pointwise-not-found", "no convolution layer reads the depthwise layer's output"
        elif not depsep and pw_class.kind != "pointwise" and not text_pointwise:
            status = "next-conv-not-pointwise"
            message = f"the conv reading the depthwise output is {pw_class.kind} ({pw.name!r})"
        elif unfused:
            status = "unfused-between"
            message = "layers left between depthwise and pointwise: " + ", ".join(unfused)
        else:
            status = "fused"
            kept = (f"depthwise kept grouped (Groups={dw.groups})" if dw.groups is not None else
                    f"depthwise kept as {dw.layer_type} (no Groups recorded; its layer type is depthwise)")
            message = (
                "depthwise and pointwise in one DepSepConvolution layer" if depsep else
                f"{kept}; pointwise is {pw.name!r}"
            )
        return BlockResult(
            evidence="observed",
            status=status,
            message=message,
            depthwise_node=depthwise_node,
            pointwise_node=pointwise_node,
            channels=channels,
            depthwise_layer=dw.name,
            depthwise_layer_type=dw.layer_type,
            depthwise_kept_grouped=True,
            depthwise_groups=dw.groups,
            cuda_depthwise=dw_class.cuda_depthwise,
            depthwise_fused=dw_fused,
            pointwise_layer=None if pw is None else pw.name,
            pointwise_layer_type=None if pw is None else pw.layer_type,
            pointwise_fused=pw_fused,
            pointwise_residual_input=None if pw is None or depsep or not pw.inputs else len(pw.inputs) > 1,
            depsep=depsep,
            via=via,
            unfused_between=tuple(unfused),
            between_placement=placement,
            notes=tuple(notes),
        )


def _fusion_role(op: str | None) -> str | None:
    """What a node fused into a conv layer is to it: "bn", "act", "quant", "add", or None."""
    for role, ops in (("bn", BATCHNORM_OPS), ("act", ACTIVATION_OPS), ("quant", QUANT_OPS), ("add", ADD_OPS)):
        if op in ops:
            return role
    return None


def _fused(layer: EngineLayer) -> FusedNodes:
    conv = None
    groups: dict[str, list[str]] = {"bn": [], "act": [], "quant": [], "add": [], "other": []}
    for node in layer.onnx_nodes:
        op = layer.op_type(node)
        if op in CONV_OPS and conv is None:
            conv = node
        else:
            groups[_fusion_role(op) or "other"].append(node)
    raw = layer.raw
    has_bias = None
    if "HasBias" in raw:
        has_bias = bool(raw["HasBias"])
    elif isinstance(raw.get("Bias"), Mapping):
        has_bias = raw["Bias"].get("Count", 0) > 0
    return FusedNodes(
        conv=conv,
        batch_norm=tuple(groups["bn"]),
        activations=tuple(groups["act"]),
        quantize=tuple(groups["quant"]),
        adds=tuple(groups["add"]),
        other=tuple(groups["other"]),
        weights=layer.weights,
        pwn=layer.pwn_nodes,
        trt_activation=raw.get("Activation"),
        has_bias=has_bias,
    )


# --------------------------------------------------------------------------------------------
# Prediction from documented fusions


def predict_block_report(
    blocks: Sequence[OnnxBlock],
    precision: str = "fp32",
    compute_capability: tuple[int, int] | str | float | None = None,
    op_types: Mapping[str, str] | None = None,
) -> list[BlockResult]:
    """What TensorRT's documented fusions say should happen to each block, labelled predicted.

    Documented (TensorRT developer guide, "Types of Fusions"): BatchNormalization folds into the
    conv before it; a conv fuses ReLU, Clip, GELU and other pointwise activations (PWN); a conv
    fuses a following ElementWise sum (bias or residual Add); explicit-quantization Q/DQ fuse
    into the adjacent convs. A single DepSepConvolution layer is documented only for INT8 on
    compute capability ≥ 7.2 with an activation after both convs, and even then it is a tactic
    TensorRT may or may not pick. ``op_types`` overrides the block's own op tuples and name
    guesses.
    """
    if precision not in ("fp32", "fp16", "int8"):
        raise SepfixError(f"precision must be fp32, fp16 or int8, not {precision!r}")
    capability = _parse_capability(compute_capability)
    return [_predict(block, precision, capability, op_types or {}) for block in blocks]


def _parse_capability(value: tuple[int, int] | str | float | None) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, tuple):
        return int(value[0]), int(value[1])
    text = str(value).strip().lower().removeprefix("sm_").removeprefix("sm")
    match = re.fullmatch(r"(\d+)\.(\d+)", text) or re.fullmatch(r"(\d+)(\d)", text)
    if match is None:
        raise SepfixError(f"cannot read compute capability {value!r} (use 7.5, '8.6' or 'sm_86')")
    return int(match.group(1)), int(match.group(2))


def _ops_for(nodes: tuple[str, ...], given: tuple[str, ...], op_types: Mapping[str, str]) -> list[str | None]:
    known = dict(zip(nodes, given)) if len(given) == len(nodes) else {}
    return [op_types.get(n) or known.get(n) or guess_op_type(n) for n in nodes]


def _predict(block: OnnxBlock, precision: str, capability: tuple[int, int] | None, op_types: Mapping[str, str]) -> BlockResult:
    between_ops = _ops_for(block.between, block.between_ops, op_types)
    after_ops = _ops_for(block.after, block.after_ops, op_types)
    notes: list[str] = []
    gated = any(op in ("Sigmoid", "HardSigmoid") for op in between_ops)

    dw = {"bn": [], "act": [], "quant": [], "add": []}
    pw_quant: list[str] = []
    unfused: list[str] = []
    for node, op in zip(block.between, between_ops):
        if op == "DequantizeLinear":
            pw_quant.append(node)
            continue
        if op in ("Identity", "Dropout"):
            continue  # removed by the parser/optimizer
        role = "act" if op == "Mul" and gated else _fusion_role(op)
        if role:
            dw[role].append(node)
        else:
            unfused.append(node)
            notes.append(f"{node!r} ({op or 'unknown op'}) is not a documented conv fusion; expect its own layer")

    pw = {"act": [], "quant": [], "add": []}
    for node, op in zip(block.after, after_ops):
        role = _fusion_role(op)
        if role in pw:
            pw[role].append(node)
        else:
            notes.append(f"{node!r} ({op or 'unknown op'}) after the pointwise conv is not predicted to fuse")

    if (dw["quant"] or pw_quant or pw["quant"]) and precision != "int8":
        notes.append("Q/DQ nodes present: explicit quantization; the block runs in INT8 where Q/DQ allow")
    depsep: bool | None
    if precision != "int8":
        depsep = False
    elif not (dw["act"] and pw["act"]):
        depsep = False
        notes.append("DepSepConvolution needs an activation after both convs")
    elif capability is None:
        depsep = None
        notes.append("DepSepConvolution is possible only on compute capability >= 7.2: capability not given")
    else:
        depsep = capability >= (7, 2)
        if depsep:
            notes.append("documented DepSepConvolution conditions hold; TensorRT may still pick two layers")

    status = "unfused-between" if unfused else "fused"
    message = (
        "predicted from TensorRT's documented fusions, not observed: "
        + ("depthwise kept grouped, BN/activation fused into it, pointwise fused with its bias/activation"
           if not unfused else "layers expected between depthwise and pointwise: " + ", ".join(unfused))
    )
    return BlockResult(
        evidence="predicted",
        status=status,
        message=message,
        depthwise_node=block.depthwise,
        pointwise_node=block.pointwise,
        channels=block.channels,
        depthwise_kept_grouped=True,
        depthwise_groups=block.channels,
        depthwise_fused=FusedNodes(
            conv=block.depthwise,
            batch_norm=tuple(dw["bn"]),
            activations=tuple(dw["act"]),
            quantize=tuple(dw["quant"]),
            adds=tuple(dw["add"]),
        ),
        pointwise_fused=FusedNodes(
            conv=block.pointwise,
            activations=tuple(pw["act"]),
            quantize=tuple(pw_quant + pw["quant"]),
            adds=tuple(pw["add"]),
        ),
        depsep=depsep,
        unfused_between=tuple(unfused),
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------------------------
# TensorRT itself (lazy)


def tensorrt_available() -> tuple[bool, str]:
    """Whether ``import tensorrt`` works here, and if not, why in plain words."""
    if importlib.util.find_spec("tensorrt") is None:
        reason = "the Python package 'tensorrt' is not installed"
        if ctypes.util.find_library("nvinfer") is None:
            reason += " and libnvinfer is not on the library path"
        return False, reason
    try:
        trt = importlib.import_module("tensorrt")
    except (ImportError, OSError) as exc:  # e.g. libnvinfer.so.10 missing: say so, don't hide it
        return False, f"'tensorrt' is installed but does not import: {type(exc).__name__}: {exc}"
    return True, f"tensorrt {getattr(trt, '__version__', '(unknown version)')}"


def _require_tensorrt() -> Any:
    ok, reason = tensorrt_available()
    if not ok:
        raise SepfixError(f"TensorRT is not usable here: {reason}")
    return importlib.import_module("tensorrt")


def _engine_layer_info(trt: Any, engine: Any) -> dict:
    inspector = engine.create_engine_inspector()
    text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(text)


def build_engine_layer_info(onnx_path: str | Path, fp16: bool = False, int8: bool = False, workspace_mb: int = 1024) -> dict:
    """Build an engine from an ONNX file and return its detailed layer information.

    Uses the TensorRT 10 Python API: ``OnnxParser`` (``parse_from_file`` so external data is
    found), ``BuilderConfig.profiling_verbosity = DETAILED`` (else only names come back),
    ``build_serialized_network``, ``Runtime.deserialize_cuda_engine`` and the engine inspector.
    ``int8`` without Q/DQ in the model and without a calibrator leaves most layers in higher
    precision: INT8 results mean something only for explicitly quantized (Q/DQ) models.
    """
    trt = _require_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise SepfixError(f"ONNX model not found: {onnx_path}")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    # TensorRT 10 networks are always explicit batch (the flag is deprecated and ignored);
    # TensorRT 8.x needs it for ONNX.
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SepfixError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if int8:
        config.set_flag(trt.BuilderFlag.INT8)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SepfixError(f"TensorRT could not build an engine from {onnx_path} (see the TensorRT log above)")
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise SepfixError("TensorRT built an engine it then could not deserialize")
    return _engine_layer_info(trt, engine)


def layer_info_from_engine_file(path: str | Path) -> dict:
    """Layer information of a serialized engine (trtexec ``--saveEngine``, or an engine that
    onnxruntime's TensorRT EP cached as ``*.engine``).

    An engine only loads in the TensorRT version that built it. One built without
    ``ProfilingVerbosity.DETAILED`` gives names only; `parse_layer_info` reads those, and
    `block_report` refuses them with that reason.
    """
    path = Path(path)
    if path.suffix == ".encrypted":
        raise SepfixError(f"{path} is encrypted by onnxruntime's trt_engine_decryption_enable; decrypt it first")
    if not path.is_file():
        raise SepfixError(f"engine file not found: {path}")
    trt = _require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(path.read_bytes())
    if engine is None:
        raise SepfixError(
            f"TensorRT {trt.__version__} could not deserialize {path}: engines load only in the TensorRT "
            "version (and on the GPU architecture) that built them"
        )
    return _engine_layer_info(trt, engine)


def ort_engine_cache_options(cache_dir: str | Path, fp16: bool = False, int8: bool = False, detailed_build_log: bool = True) -> dict[str, Any]:
    """onnxruntime TensorRT EP provider options that leave the built engines on disk.

    Option names are those onnxruntime documents for ``TensorrtExecutionProvider``. The engines
    appear as ``<cache_dir>/<prefix>_..._sm<CC>.engine`` (with a ``.profile`` beside them); read
    them with `find_ort_engine_files` and `layer_info_from_engine_file`.
    """
    return {
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_detailed_build_log": detailed_build_log,
        "trt_fp16_enable": fp16,
        "trt_int8_enable": int8,
    }


def find_ort_engine_files(cache_dir: str | Path) -> list[Path]:
    """Engines onnxruntime's TensorRT EP cached in ``cache_dir`` (``*.engine``, not encrypted)."""
    return sorted(Path(cache_dir).glob("*.engine"))
