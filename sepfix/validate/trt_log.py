"""TensorRT layer information read from text: build logs, ``--dumpLayerInfo`` output, the
TensorRT EP's log in onnxruntime's.

What users have where they deploy is mostly text. ``trtexec --verbose`` prints an ``Engine
Layer Information:`` section at the end of every build, one line per engine layer::

    [02/08/2023-15:25:37] [V] [TRT] Engine Layer Information:
    Layer(CudaDepthwiseConvolution): Conv_4 + PWN(Clip_7), Tactic: 0xfffffffffffffffd, 395[Int8(1,32,256,384)] -> 400[Int8(1,32,256,384)]

``--dumpLayerInfo`` (and TensorRT 10's verbose log) print the engine inspector's one-line form
(``Layers:`` then ``Name: ..., LayerType: ..., Inputs: [...], ..., Groups: 1, ...``). Every
TensorRT version and every logger prefixes the lines differently (``[V] [TRT] ``, ``[TRT] [V] ``,
``[TensorRT] VERBOSE: `` on every line, timestamps, onnxruntime's ``2026-12-01 10:00:00.123
[W:onnxruntime:..., tensorrt_execution_provider.h:88 log] [2026-12-01 10:00:00 VERBOSE] ``,
colour codes); some leave out tactics or tensors. This module finds those sections among
everything else and turns each layer into the entry `sepfix.validate.tensorrt.parse_layer_info`
reads from JSON, so the text and the JSON forms give the same `EngineInfo` to the per-block
report. A ``Layer(...)`` line carries no ``Groups``: a ``*Depthwise*`` layer type is what says
the depthwise conv stayed depthwise (`sepfix.validate.tensorrt.classify_layer`).

Several builds in one log (a trtexec log of two runs, a rebuilt engine): the last section that
has layer types wins. An onnxruntime TensorRT EP log builds one engine per subgraph TensorRT
took: every section is kept (`layer_info_from_ep_log`).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from sepfix.errors import SepfixError
from sepfix.validate.tensorrt import EngineInfo, parse_layer_info, split_top

__all__ = [
    "EP_LOG_SOURCE",
    "EXPECTED",
    "TextSection",
    "strip_prefixes",
    "find_sections",
    "parse_layer_text",
    "load_engine_info",
    "layer_info_from_ep_log",
    "without_verbose",
]

EP_LOG_SOURCE = "onnxruntime TensorRT EP log"
EXPECTED = (
    "expected TensorRT layer information: the JSON of trtexec --exportLayerInfo (or the engine "
    "inspector), or text with an 'Engine Layer Information:' section (trtexec --verbose, the "
    "TensorRT EP's verbose log) or a 'Layers:' section (trtexec --dumpLayerInfo)"
)

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Line prefixes, tried in turn at the start of a line until none matches.
_ORT_PREFIX = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? \[(?P<sev>[VIWEF]):onnxruntime:[^\]]*\]\s?")
_EP_PREFIX = re.compile(r"\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\s+(?P<sev>VERBOSE|UNKNOWN|INFO|WARNING|ERROR|BUG)\]\s?")
_PREFIXES = (
    _ORT_PREFIX,
    _EP_PREFIX,
    re.compile(r"\[\d{2}/\d{2}/\d{4}-\d{2}:\d{2}:\d{2}\]\s?"),  # trtexec: [12/01/2026-10:00:00]
    re.compile(r"\[\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\]\s?"),  # [2026-12-01 10:00:00.123]
    re.compile(r"\[(?:V|I|W|E|F|VERBOSE|INFO|WARNING|ERROR|TRT|TensorRT)\]\s?"),  # [V] [TRT] / [TRT] [V]
    re.compile(r"(?:VERBOSE|INFO|WARNING|ERROR|INTERNAL_ERROR|DEBUG):\s?"),  # [TensorRT] VERBOSE: ...
    re.compile(r"\[[^\[\]]*(?:TRT|TensorRT|Conversion Context)[^\[\]]*\]\s?-\s?"),  # DEBUG: [Torch-TensorRT ...] -
)
_LAYER_LINE = re.compile(r"Layer\((?P<type>[^()]*)\):\s?(?P<rest>.*)$")
_ENGINE_HEADER = "Engine Layer Information:"
_ONELINE_HEADERS = ("Layers:",)
_BINDINGS_HEADERS = ("Bindings:",)
# A tensor in a Layer(...) line: TensorRT 7/8 ``name[Half(1,32,56,56)]``, TensorRT 10
# ``name (Half[1,32,56,56])``.
_TENSOR_OLD = re.compile(r"^(?P<name>.*?)\[(?P<type>[A-Za-z][A-Za-z0-9_]*)\((?P<dims>[-0-9, ]*)\)\]$", re.S)
_TENSOR_NEW = re.compile(r"^(?P<name>.*?) \((?P<type>[A-Za-z][A-Za-z0-9_]*)\[(?P<dims>[-0-9, ]*)\]\)$", re.S)
_ONELINE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9/_]*: ")
# Fields of the one-line form that hold structure (lists, objects) rather than a word.
_STRUCTURED_KEYS = frozenset({
    "Inputs", "Outputs", "Kernel", "PrePadding", "PostPadding", "Stride", "Dilation", "Weights",
    "Bias", "Dimensions", "WindowSize", "Padding",
})


# --------------------------------------------------------------------------------------------
# Lines


def strip_prefixes(line: str) -> tuple[str, bool]:
    """A log line without its logger prefixes (and colour codes), and whether it had any."""
    text = _ANSI.sub("", line).strip()
    had = False
    changed = True
    while changed and text:
        changed = False
        for pattern in _PREFIXES:
            match = pattern.match(text)
            if match is not None and match.end() > 0:
                text = text[match.end():].lstrip()
                had = changed = True
                break
    return text, had


def _dims(text: str) -> list[int] | None:
    try:
        return [int(d) for d in text.replace(" ", "").split(",") if d != ""]
    except ValueError:
        return None


def _tensor(text: str) -> dict[str, Any]:
    text = text.strip()
    for pattern in (_TENSOR_OLD, _TENSOR_NEW):
        match = pattern.match(text)
        if match is not None and match.group("name").strip():
            entry: dict[str, Any] = {"Name": match.group("name").strip(), "Format/Datatype": match.group("type")}
            dims = _dims(match.group("dims"))
            if dims is not None:
                entry["Dimensions"] = dims
            return entry
    return {"Name": text}


def _layer_line(layer_type: str, rest: str) -> dict[str, Any]:
    """``Layer(TYPE): NAME, Tactic: T, in[...], in2[...] -> out[...]`` as a layer-information entry.

    The name runs to ``, Tactic:`` when there is one, else to the first top-level comma; a name
    may itself hold `` -> `` (``2-layer MLP: a -> b``) and commas inside parentheses.
    """
    entry: dict[str, Any] = {"LayerType": layer_type.strip()}
    parts = split_top(rest, (", Tactic: ",), drop_empty=False)
    if len(parts) > 1:
        name = parts[0]
        after = ", Tactic: ".join(parts[1:])
        tactic, _, tensors = after.partition(", ")
        entry["TacticValue"] = tactic.strip()
    else:
        head = split_top(rest, (", ",), drop_empty=False)
        name = head[0]
        tensors = ", ".join(head[1:]) if len(head) > 1 else ""
    entry["Name"] = name.strip()
    if " -> " in tensors or tensors.strip():
        sides = split_top(tensors, (" -> ",), drop_empty=False)
        inputs = sides[0] if len(sides) > 1 else tensors
        outputs = " -> ".join(sides[1:]) if len(sides) > 1 else ""
        entry["Inputs"] = [_tensor(t) for t in split_top(inputs, (", ",), drop_empty=False) if t.strip()]
        entry["Outputs"] = [_tensor(t) for t in split_top(outputs, (", ",), drop_empty=False) if t.strip()]
    return entry


# --------------------------------------------------------------------------------------------
# The one-line form: ``Name: x, LayerType: y, Inputs: [ { Name: a, Dimensions: [1,2] } ], ...``


def _scan_value(text: str, i: int, stop: str) -> int:
    """Index where the value starting at ``i`` ends: the first character of ``stop`` at depth 0."""
    depth = 0
    in_quote = False
    while i < len(text):
        ch = text[i]
        if in_quote:
            in_quote = ch != '"'
        elif ch == '"':
            in_quote = True
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0 and ch in stop:
                return i
            depth -= 1
        elif depth == 0 and ch in stop:
            return i
        i += 1
    return i


def _parse_value(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        items, i = [], 0
        while i < len(inner):
            end = _scan_value(inner, i, ",")
            item = inner[i:end].strip()
            if item:
                items.append(_parse_value(item))
            i = end + 1
        return items
    if text.startswith("{") and text.endswith("}"):
        return _parse_object(text[1:-1])
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


def _parse_object(inner: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    i = 0
    while i < len(inner):
        end = _scan_value(inner, i, ",")
        pair = inner[i:end].strip()
        i = end + 1
        if not pair:
            continue
        key, sep, value = pair.partition(":")
        if not sep:
            continue
        out[key.strip().strip('"')] = _parse_value(value)
    return out


def _oneline(text: str) -> dict[str, Any]:
    """One ``Name: ..., LayerType: ..., ...`` line as a layer-information entry.

    Top-level values end at a comma followed by the next ``Key: ``, so layer names keep their
    commas (``PWN(a, b)``); ``Metadata`` stays raw text for `parse_metadata`.
    """
    entry: dict[str, Any] = {}
    keys = []
    depth = 0
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif depth == 0 and (i == 0 or text.startswith(", ", i - 2)) and _ONELINE_KEY.match(text, i):
            keys.append(i)
    for n, start in enumerate(keys):
        end = keys[n + 1] - 2 if n + 1 < len(keys) else len(text)
        key, _, value = text[start:end].partition(": ")
        value = value.strip()
        if key in _STRUCTURED_KEYS:
            entry[key] = _parse_value(value)
        elif key == "Metadata":
            entry[key] = value
        else:
            entry[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return entry


# --------------------------------------------------------------------------------------------
# Sections


@dataclass
class TextSection:
    """One block of layer information found in text.

    ``form``: ``engine-layer-information`` (``Layer(TYPE): ...`` lines) or ``layers`` (the
    inspector's one-line form). ``line`` is the 1-based line of its header; ``ort`` whether the
    header came through onnxruntime's logger.
    """

    form: str
    line: int
    ort: bool
    entries: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[str] = field(default_factory=list)

    @property
    def detailed(self) -> bool:
        return any("LayerType" in entry for entry in self.entries)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(entry.get("Name", "")) for entry in self.entries)


def find_sections(text: str) -> list[TextSection]:
    """Every block of layer information in ``text``, in order (empty ones left out)."""
    sections: list[TextSection] = []
    current: TextSection | None = None
    in_bindings = False
    for number, raw in enumerate(text.splitlines(), start=1):
        clean = _ANSI.sub("", raw)
        content, prefixed = strip_prefixes(clean)
        ort = _ORT_PREFIX.match(clean.strip()) is not None
        if content.startswith(_ENGINE_HEADER):
            current, in_bindings = TextSection("engine-layer-information", number, ort), False
            sections.append(current)
            content = content[len(_ENGINE_HEADER):].strip()
            if not content:
                continue
        elif content in _ONELINE_HEADERS:
            current, in_bindings = TextSection("layers", number, ort), False
            sections.append(current)
            continue
        if current is None:
            continue
        if not content:
            continue  # blank lines (blog copies double them) do not end a section
        if current.form == "engine-layer-information":
            match = _LAYER_LINE.match(content)
            if match is None:
                current = None
                continue
            current.entries.append(_layer_line(match.group("type"), match.group("rest")))
            continue
        # The one-line form.
        if content in _BINDINGS_HEADERS:
            in_bindings = True
            continue
        if content.startswith("Name: "):
            in_bindings = False
            current.entries.append(_oneline(content))
        elif prefixed:
            current = None  # the next log message
        elif in_bindings:
            current.bindings.append(content)
        else:
            current.entries.append({"Name": content})  # names-only layer information
    return [s for s in sections if s.entries]


def _dedupe(sections: list[TextSection]) -> list[TextSection]:
    """Drop a section that repeats the layer names of the one before it, keeping the one that
    says more (the one-line form carries Groups and kernels)."""
    kept: list[TextSection] = []
    for section in sections:
        if kept and kept[-1].names == section.names:
            if section.form == "layers" and section.detailed:
                kept[-1] = section
            continue
        kept.append(section)
    return kept


def _chosen(sections: list[TextSection], all_sections: bool) -> list[TextSection]:
    if all_sections:
        return _dedupe(sections)
    detailed = [s for s in sections if s.detailed]
    return [(detailed or sections)[-1]]


def _info(sections: list[TextSection], model: onnx.ModelProto | None) -> EngineInfo:
    entries = [entry for section in sections for entry in section.entries]
    info = parse_layer_info(entries, model)
    bindings = tuple(b for section in sections for b in section.bindings)
    return EngineInfo(info.layers, bindings)


def parse_layer_text(
    text: str,
    model: onnx.ModelProto | None = None,
    all_sections: bool | None = None,
) -> tuple[EngineInfo, str]:
    """The layer information in ``text`` and a one-line description of where it was found.

    ``all_sections``: keep every section (an onnxruntime TensorRT EP log: one engine per
    subgraph) or only the last (a trtexec log: the last build wins). ``None`` decides by the
    log: onnxruntime's prefixes mean every section. Raises SepfixError when there is none.
    """
    sections = find_sections(text)
    if not sections:
        raise SepfixError(f"no TensorRT layer information found: {EXPECTED}")
    ort = any(s.ort for s in sections)
    keep_all = ort if all_sections is None else all_sections
    chosen = _chosen(sections, keep_all)
    info = _info(chosen, model)
    return info, _describe(sections, chosen)


def _describe(sections: list[TextSection], chosen: list[TextSection]) -> str:
    def one(section: TextSection) -> str:
        header = "'Engine Layer Information:'" if section.form == "engine-layer-information" else "'Layers:'"
        return f"{header} at line {section.line}"

    layers = sum(len(s.entries) for s in chosen)
    if len(chosen) == 1:
        where = one(chosen[0])
        if len(sections) > 1:
            where += f", the last with layer types of {len(sections)} sections"
    else:
        where = f"{len(chosen)} sections (" + ", ".join(one(s) for s in chosen) + ")"
    return f"text, {layers} layers from {where}"


def layer_info_from_ep_log(text: str, model: onnx.ModelProto | None = None) -> EngineInfo | None:
    """The capture→parse step of ``sepfix validate --provider tensorrt``.

    ``text`` is what the TensorRT EP wrote while onnxruntime built its engines (stdout and
    stderr, captured at the file-descriptor level, with ``trt_detailed_build_log`` and verbose
    logging on). Every engine's section is kept: onnxruntime builds one engine per subgraph
    TensorRT takes. Returns None when the log holds no layer information (the EP did not build,
    or its log level hid it).
    """
    try:
        info, _ = parse_layer_text(text, model, all_sections=True)
    except SepfixError:
        return None
    return info


def _looks_like_json(text: str) -> bool:
    stripped = text.lstrip("\ufeff \t\r\n")
    return stripped.startswith(("{", "["))


def load_engine_info(path: str | Path, model: onnx.ModelProto | None = None) -> tuple[EngineInfo, str]:
    """Layer information from a file, or from stdin when ``path`` is ``-``, in any form TensorRT
    writes: layer-information JSON (detailed, names-only, a bare list) or text (a whole build
    log, ``--dumpLayerInfo`` output, an onnxruntime log). Returns it with a one-line description
    of what was read. Anything else is a SepfixError saying what was expected.
    """
    if str(path) == "-":
        name = "<stdin>"
        text = sys.stdin.read()
    else:
        file = Path(path)
        name = str(file)
        if not file.is_file():
            raise SepfixError(f"layer information file not found: {file}")
        try:
            text = file.read_bytes().decode("utf-8", "replace")
        except OSError as exc:
            raise SepfixError(f"cannot read {file}: {exc.strerror or exc}") from exc
    if not text.strip():
        raise SepfixError(f"{name} is empty: {EXPECTED}")
    json_error = ""
    if _looks_like_json(text):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            json_error = f"not valid JSON ({exc.msg} at line {exc.lineno})"
        else:
            try:
                return parse_layer_info(doc, model), "JSON layer information"
            except (SepfixError, KeyError, TypeError, AttributeError) as exc:
                detail = str(exc) if isinstance(exc, SepfixError) else f"{type(exc).__name__}: {exc}"
                raise SepfixError(f"{name}: JSON but not TensorRT layer information ({detail}); {EXPECTED}") from None
    try:
        return parse_layer_text(text, model)
    except SepfixError:
        what = f"{json_error} and no" if json_error else "no"
        raise SepfixError(f"{name}: {what} TensorRT layer information found; {EXPECTED}") from None


# --------------------------------------------------------------------------------------------
# Passing a captured verbose log on without flooding the terminal


def without_verbose(text: str) -> str:
    """``text`` less onnxruntime's VERBOSE/INFO messages and the TensorRT EP's verbose ones
    (with the lines a multi-line message continues on), so that what is worth reading (warnings,
    errors, onnxruntime's fallback banner) can still be passed on to stderr."""
    kept: list[str] = []
    dropping = False
    for line in text.splitlines():
        clean = _ANSI.sub("", line).strip()
        ort = _ORT_PREFIX.match(clean)
        if ort is not None:
            rest = clean[ort.end():]
            ep = _EP_PREFIX.match(rest)
            dropping = ort.group("sev") in "VI" or (ep is not None and ep.group("sev") in ("VERBOSE", "UNKNOWN", "INFO"))
        elif re.match(r"\[\d{2}/\d{2}/\d{4}-\d{2}:\d{2}:\d{2}\]\s*\[[VI]\]|\[TRT\]\s*\[[VI]\]|\[TensorRT\] (?:VERBOSE|INFO):", clean):
            dropping = True
        elif re.match(r"\[\d{2}/\d{2}/\d{4}-\d{2}:\d{2}:\d{2}\]|\[TRT\]|\[TensorRT\]", clean):
            dropping = False
        if not dropping:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept and text.endswith("\n") else "")
