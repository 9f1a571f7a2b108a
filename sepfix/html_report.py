"""`--report report.html`: one self-contained HTML page for `sepfix check` and `sepfix repair`.

The page has inline CSS and inline SVG only: no scripts, fonts, images or links to anything
outside it, so it can be attached to a CI run or mailed as is. A repair report shows the
findings, the numerical proof, and for every applied fix a before/after drawing of the nodes it
replaced and the nodes it created or changed, with their direct producers and consumers.

Fixes are applied in passes (a fix can uncover another), so a fix of the second pass may replace
a node that the first pass created. To draw each fix against the model it really rewrote, the
repair keeps the model after each pass when a report is asked for; without them the original
and the final model are drawn instead, and the page says so.

Every string that comes from a model or a user goes through `html.escape`.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from dataclasses import dataclass, field

from sepfix import __version__

MAX_NODES = 40  # node boxes per drawing, top layers first
MAX_PER_LAYER = 5  # wider layers (Split -> one conv per channel) keep 2 + '… N more' + 2
_MAX_CANDIDATES = 400  # nodes considered for one drawing at all, the fix's own first
_DRAWN_ATTRIBUTES = ("group", "kernel_shape", "strides", "pads", "dilations", "perm")
_ROLES = {
    "Conv": ("X", "W", "B"),
    "ConvTranspose": ("X", "W", "B"),
    "Gemm": ("A", "B", "C"),
    "MatMul": ("A", "B"),
    "Add": ("A", "B"),
    "Mul": ("A", "B"),
    "Sub": ("A", "B"),
    "Div": ("A", "B"),
    "BatchNormalization": ("X", "scale", "B", "mean", "var"),
    "Clip": ("x", "min", "max"),
    "Reshape": ("data", "shape"),
    "Transpose": ("data",),
    "Split": ("x", "split"),
    "DequantizeLinear": ("x", "scale", "zero"),
    "QuantizeLinear": ("x", "scale", "zero"),
}

# Drawing metrics (px): a monospace font of 12 px is about 7.25 px a character.
_FONT = 12
_CHAR = 7.25
_LINE = 15
_PAD_X = 10
_PAD_Y = 7
_MIN_W = 110
_MAX_W = 430
_GAP_X = 26
_GAP_Y = 44
_MARGIN = 16
_DUMMY_W = 10


def esc(value) -> str:
    return html.escape(str(value), quote=True)


# ==================================================================================== pages
_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; color: #1d232b;
       background: #fff; margin: 0; padding: 24px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d6dbe1; }
h3 { font-size: 16px; margin: 0 0 6px; }
code, .mono { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 13px; }
.meta { color: #4a5563; margin: 2px 0; }
.verdict { display: inline-block; padding: 6px 14px; border-radius: 6px; font-weight: 700; margin: 12px 0 4px; }
.verdict.pass { background: #dff5e3; color: #14532d; border: 1px solid #86c99a; }
.verdict.fail { background: #fde2e1; color: #7f1d1d; border: 1px solid #e59a95; }
.verdict.info { background: #eef2f7; color: #1f2d3d; border: 1px solid #b7c3d1; }
table { border-collapse: collapse; margin: 6px 0 10px; width: 100%; }
table.facts { width: auto; min-width: 50%; }
th, td { border: 1px solid #d6dbe1; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f1f4f7; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.code { white-space: nowrap; font-weight: 600; }
td.nowrap { white-space: nowrap; }
tr.bad td { background: #fff3f2; }
.yes { color: #14532d; font-weight: 600; }
.no { color: #7f1d1d; font-weight: 600; }
.muted { color: #6b7684; }
.fix { border: 1px solid #d6dbe1; border-radius: 8px; padding: 14px 16px; margin: 16px 0; }
.fix .desc { margin: 0 0 8px; }
.pair { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; border: 1px solid #e3e7ec; border-radius: 6px; background: #fbfcfd; max-width: 100%;
         overflow-x: auto; }
figcaption { font-weight: 700; padding: 6px 10px; border-bottom: 1px solid #e3e7ec; background: #f4f6f8; }
figure.before figcaption { color: #8a1c14; }
figure.after figcaption { color: #14532d; }
figure svg { display: block; }
.note { color: #6b4e00; background: #fff8e1; border: 1px solid #f0d98a; border-radius: 4px; padding: 4px 8px;
        margin: 6px 10px; font-size: 13px; }
.legend span { display: inline-block; margin-right: 14px; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 3px; vertical-align: -2px;
          margin-right: 5px; border: 1.5px solid; }
span.more { color: #2e5fa8; text-decoration: underline dotted; cursor: help; }
h2.mono { font-size: 16px; }
footer { margin-top: 32px; color: #6b7684; font-size: 12px; }
svg text { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: 12px;
           fill: #1d232b; }
svg text.op { font-weight: 700; font-size: 13px; }
svg text.attr { fill: #3b4656; }
svg text.shape { fill: #5b6675; }
svg text.const { fill: #7a4a00; }
svg .edge { fill: none; stroke: #7b8794; stroke-width: 1.4; }
"""

_KIND_STYLE = {  # fill, stroke
    "replaced": ("#fde2e1", "#c0392b"),
    "created": ("#dff5e3", "#1e8449"),
    "changed": ("#e3ecfb", "#2e5fa8"),
    "neighbour": ("#f5f6f8", "#9aa4b1"),
    "io": ("#ffffff", "#9aa4b1"),
}


def _page(title: str, body: list[str]) -> str:
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        *body,
        f'<footer>Generated by sepfix {esc(__version__)}. Self-contained: no scripts, no external resources.</footer>',
        "</body>",
        "</html>",
        "",
    ])


def _table(headers: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    """`rows` hold HTML that is already escaped."""
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead>", "<tbody>"]
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        out.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _yes_no(value: bool) -> str:
    return '<span class="yes">yes</span>' if value else '<span class="no">no</span>'


def _findings_table(findings) -> str:
    if not findings:
        return '<p class="muted">No findings.</p>'
    rows = []
    for f in findings:
        rows.append([
            f'<td class="code">{esc(f.code)}</td>',
            f'<td class="nowrap">{esc(f.name)}</td>',
            f'<td class="mono">{esc(f.location)}</td>',
            f"<td>{esc(f.message)}</td>",
            f"<td>{_yes_no(f.fixable)}</td>",
        ])
    return _table(["code", "name", "location", "message", "fixable"], rows)


# ------------------------------------------------------------------------------ check report
def render_check_report(results) -> str:
    """The page for `sepfix check --report`: a summary and every model's findings."""
    from sepfix.report import exit_code, summary_sentence

    code = exit_code(results)
    verdict = ("fail", "FAILED") if code else ("pass", "PASSED")
    body = [
        "<h1>sepfix check report</h1>",
        f'<div class="verdict {verdict[0]}">{verdict[1]}: {esc(summary_sentence(results))}</div>',
        "<h2>Models</h2>",
    ]
    rows = []
    for i, r in enumerate(results):
        state = "unreadable" if r.error else (f"{len(r.mangles)} findings" if r.mangles else "clean")
        rows.append([
            f'<td class="mono"><a href="#model-{i}">{esc(r.path)}</a></td>',
            f"<td>{esc(state)}</td>",
            f'<td class="num">{len(r.blocks)}</td>',
            f'<td class="mono">{esc(", ".join(f"{k}: {v}" for k, v in r.conv_kinds.items()))}</td>',
            f'<td class="num">{r.seconds:.2f} s</td>',
        ])
    body.append(_table(["model", "state", "blocks", "convs", "time"], rows,
                       ["bad" if (r.error or r.mangles) else "" for r in results]))
    for i, r in enumerate(results):
        body.append(f'<section class="model" id="model-{i}">')
        body.append(f'<h2 class="mono">{esc(r.path)}</h2>')
        if r.error:
            body.append(f'<p class="note">Could not be read: {esc(r.error)}</p>')
            body.append("</section>")
            continue
        opsets = ", ".join(f"{k} {v}" for k, v in r.opsets.items())
        body.append(f'<p class="meta">IR version {esc(r.ir_version)}; opsets {esc(opsets)}</p>')
        body.append("<h3>Findings</h3>")
        body.append(_findings_table(r.findings))
        if r.blocks:
            body.append("<h3>Depthwise-separable blocks</h3>")
            rows = []
            for b in r.blocks:
                d = b.to_dict()
                rows.append([
                    f'<td class="mono">{esc(d.get("graph", ""))}</td>',
                    f'<td class="mono">{esc(d.get("depthwise", ""))}</td>',
                    f'<td class="mono">{esc(" → ".join(d.get("between_ops", [])))}</td>',
                    f'<td class="mono">{esc(d.get("pointwise", ""))}</td>',
                    f'<td class="num">{esc(d.get("channels", ""))}</td>',
                    f'<td class="num">{esc(d.get("depth_multiplier", ""))}</td>',
                    f'<td class="mono">{esc("x".join(str(k) for k in d.get("kernel") or []))}</td>',
                ])
            body.append(_table(["graph", "depthwise", "between", "pointwise", "channels", "multiplier", "kernel"],
                               rows))
        body.append("</section>")
    return _page("sepfix check report", body)


# ----------------------------------------------------------------------------- repair report
def render_repair_report(report) -> str:
    """The page for `sepfix repair --report`: findings, proof, and a drawing per applied fix."""
    validation = report.validation
    refused = validation is not None and not validation.passed
    body = ["<h1>sepfix repair report</h1>", f'<p class="meta">Input: <code>{esc(report.input)}</code></p>']
    if report.output:
        body.append(f'<p class="meta">Output: <code>{esc(report.output)}</code></p>')
    count = len(report.fixes)
    fixes_text = f"{count} fix{'es' if count != 1 else ''}"
    if refused:
        body.append(f'<div class="verdict fail">FAILED: validation refused the repair ({esc(fixes_text)}); '
                    "nothing was written.</div>")
    elif report.dry_run:
        body.append(f'<div class="verdict info">DRY RUN: {esc(fixes_text)}; nothing was written.</div>')
    elif report.written:
        body.append(f'<div class="verdict pass">PASSED: {esc(fixes_text)}, wrote '
                    f"<code>{esc(report.output)}</code></div>")
    else:
        body.append(f'<div class="verdict info">{esc(fixes_text)}; nothing was written.</div>')
    if report.message:
        body.append(f'<p class="meta">{esc(report.message)}</p>')
    body.append(f'<p class="meta">{report.seconds:.2f} s</p>')

    stages = _Stages(report)
    body.append("<h2>Findings in the input</h2>")
    findings = stages.findings()
    if findings is None:
        body.append('<p class="muted">The input model is not available to this report.</p>')
    else:
        body.append(_findings_table(findings))
        if stages.passes > 1:
            body.append(f'<p class="meta">The repair ran {stages.passes} fix passes: a fix can uncover a finding '
                        "that the input does not show yet, so there can be more fixes than findings here.</p>")

    body.append("<h2>Validation</h2>")
    body.append(_validation_html(validation, report))

    body.append("<h2>Applied fixes</h2>")
    if report.fixes:
        rows = []
        for i, f in enumerate(report.fixes):
            where = f.node if f.graph == "main" else f"{f.graph}/{f.node}"
            rows.append([
                f'<td class="code"><a href="#fix-{i}">{esc(f.code)}</a></td>',
                f"<td>{esc(f.name)}</td>",
                f'<td class="mono">{esc(where)}</td>',
                f"<td>{esc(f.description)}</td>",
            ])
        body.append(_table(["code", "name", "location", "what changed"], rows))
    else:
        body.append('<p class="muted">No fix applied.</p>')
    body.append("<h2>Left after the repair</h2>")
    body.append(_findings_table(report.remaining) if report.remaining
                else '<p class="muted">Nothing: no finding of the selected rules remains.</p>')

    if report.fixes:
        body.append("<h2>Before and after, fix by fix</h2>")
        body.append(_legend())
        if stages.note:
            body.append(f'<p class="note">{esc(stages.note)}</p>')
        for i, fix in enumerate(report.fixes):
            body.append(_fix_section(i, fix, stages))
    return _page("sepfix repair report", body)


def _number(value) -> str:
    if value is None:
        return "–"
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "∞" if value > 0 else "-∞"
    return f"{value:.3g}"


def _validation_html(validation, report) -> str:
    if validation is None:
        if not report.fixes:
            return '<p class="muted">Nothing was rewritten, so there was nothing to prove.</p>'
        options = getattr(report, "options", None)
        if options is not None and not options.validate:
            return '<p class="note">Not validated (--no-validate): the repaired model was not compared.</p>'
        return '<p class="muted">No validation result.</p>'
    state = '<span class="yes">passed</span>' if validation.passed else '<span class="no">FAILED</span>'
    facts = [
        ["Result", state],
        ["What ran the original", f"<code>{esc(validation.original_label)}</code>"
         + (f" ({esc(validation.original_runner)})" if validation.proof != "onnxruntime" else "")],
        ["What ran the repaired model", f"<code>{esc(validation.candidate_label)}</code>"],
        ["Input sets", esc(validation.input_sets)],
        ["Required tolerance", f"rtol {esc(_number(validation.rtol))}, atol {esc(_number(validation.atol))}"],
    ]
    if validation.message:
        facts.append(["Message", esc(validation.message)])
    out = ['<table class="facts"><tbody>' + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in facts)
           + "</tbody></table>"]
    rows, classes = [], []
    for o in validation.outputs:
        shape = "x".join(str(d) for d in o.shape) if o.shape is not None else "?"
        rows.append([
            f'<td class="mono">{esc(o.name)}</td>',
            f'<td class="mono">{esc(shape)}</td>',
            f'<td class="num">{esc(_number(o.max_abs))}</td>',
            f'<td class="num">{esc(_number(o.max_rel))}</td>',
            f'<td class="num">{esc(_number(o.required_rtol))}</td>',
            f'<td class="num">{esc(_number(o.required_atol))}</td>',
            f"<td>{_yes_no(o.passed)}</td>",
            f"<td>{esc(o.note)}</td>",
        ])
        classes.append("" if o.passed else "bad")
    if rows:
        out.append(_table(["output", "shape", "max abs error", "max rel error", "rtol needed (at atol)",
                           "atol needed (at rtol)", "passed", "note"], rows, classes))
    return "\n".join(out)


def _legend() -> str:
    items = [("replaced", "replaced by the fix"), ("created", "created by the fix"),
             ("changed", "rewritten by the fix"), ("neighbour", "producer / consumer")]
    spans = []
    for kind, text in items:
        fill, stroke = _KIND_STYLE[kind]
        spans.append(f'<span><i class="swatch" style="background:{fill};border-color:{stroke}"></i>{esc(text)}</span>')
    return f'<p class="legend">{"".join(spans)}</p>'


# ==================================================================================== stages
class _Stages:
    """For each fix, the model it rewrote and the model it produced.

    The repair keeps the model after each fix pass when a report is asked for
    (`RepairOptions.keep_stages`), so a pass-2 fix is drawn against what pass 1 made. Without
    them, each 'before' is the input and each 'after' the final model.
    """

    def __init__(self, report):
        self.report = report
        self.original = getattr(report, "original_model", None)
        self.repaired = getattr(report, "repaired_model", None)
        self.note = ""
        self._indexes: dict[int, object] = {}
        self._per_fix: list[tuple] = []
        self.passes = max((f.pass_number for f in report.fixes), default=1)
        if self.original is None or self.repaired is None:
            if report.fixes:
                self.note = "The models are not available to this report: no drawings."
            return
        stages = getattr(report, "stages", None) or []
        if len(stages) > self.passes:
            self._per_fix = [(stages[f.pass_number - 1], stages[f.pass_number], f.pass_number) for f in report.fixes]
            return
        if self.passes > 1:
            self.note = ("The fixes ran in several passes and the intermediate models were not kept: each "
                         "'before' is drawn from the input model and each 'after' from the final one.")
        self._per_fix = [(self.original, self.repaired, None)] * len(report.fixes)

    def index(self, model):
        from sepfix import model_io
        from sepfix.graph import GraphIndex

        key = id(model)
        if key not in self._indexes:
            weights = getattr(self.report, "weights", None)  # the models keep weights in the input's files
            self._indexes[key] = GraphIndex(weights.view(model) if weights is not None else model_io.from_proto(model))
        return self._indexes[key]

    def findings(self):
        """What the repair's first fix pass found on the input (never matched again here)."""
        return getattr(self.report, "found", None) if self.original is not None else None

    def for_fix(self, i: int):
        return self._per_fix[i] if i < len(self._per_fix) else (None, None, None)


def _labels_by_graph(index) -> dict[str, set[str]]:
    return {scope.path: {n.label for n in scope.nodes} for scope in index.scopes}


def _fix_section(i: int, fix, stages: _Stages) -> str:
    where = fix.node if fix.graph == "main" else f"{fix.graph}/{fix.node}"
    out = [f'<section class="fix" id="fix-{i}" data-code="{esc(fix.code)}" data-node="{esc(fix.node)}">',
           f'<h3>{esc(fix.code)} {esc(fix.name)} — <code>{esc(where)}</code></h3>',
           f'<p class="desc">{esc(fix.description)}</p>']
    facts = []
    for label, names in (("replaced", fix.replaced), ("created", fix.created), ("changed", fix.changed)):
        if names:
            listed = ", ".join(f"<code>{esc(n or '(unnamed)')}</code>" for n in names[:6])
            if len(names) > 8:
                listed += (f', <span class="more" title="{esc(", ".join(names[6:]))}">'
                           f"and {len(names) - 6} more</span>")
            else:
                listed = ", ".join(f"<code>{esc(n or '(unnamed)')}</code>" for n in names)
            facts.append(f"{esc(label)}: {listed}")
    if fix.graph != "main":
        facts.insert(0, f"graph: <code>{esc(fix.graph)}</code>")
    if facts:
        out.append(f'<p class="meta">{"; ".join(facts)}</p>')
    before_model, after_model, number = stages.for_fix(i)
    if before_model is None:
        out.append('<p class="note">No drawing: the models are not available to this report.</p>')
        out.append("</section>")
        return "\n".join(out)
    try:
        out.extend(_fix_drawings(i, fix, stages, before_model, after_model, number))
    except Exception as error:  # noqa: BLE001 - a drawing must never cost the user the report
        out.append(f'<p class="note">No drawing: {esc(type(error).__name__)}: {esc(error)}</p>')
    out.append("</section>")
    return "\n".join(out)


def _fix_drawings(i: int, fix, stages: _Stages, before_model, after_model, number) -> list[str]:
    passes = f" (pass {number} of {stages.passes})" if number is not None and stages.passes > 1 else ""
    before = _draw(stages.index(before_model), fix.graph, {n: "replaced" for n in fix.replaced if n}, f"f{i}b")
    after_kinds = {n: "changed" for n in fix.changed if n}
    after_kinds.update({n: "created" for n in fix.created if n})
    fallback_note = ""
    if not after_kinds:
        # The fix only removed nodes: show what stayed of them, or where they were.
        after_kinds = {n: "changed" for n in fix.replaced if n}
        fallback_note = "The fix created and rewrote no node: this shows where the replaced nodes were."
    after = _draw(stages.index(after_model), fix.graph, after_kinds, f"f{i}a",
                  context=[n for n in before.names if n not in after_kinds])
    if fallback_note:
        after.notes.insert(0, fallback_note)
    return ['<div class="pair">', _figure("before", f"Before{passes}", before, i, fix),
            _figure("after", f"After{passes}", after, i, fix), "</div>"]


def _figure(side: str, caption: str, drawing: "_Drawing", i: int, fix) -> str:
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in drawing.notes)
    return (f'<figure class="{side}" data-fix="{i}" data-side="{side}">'
            f"<figcaption>{esc(caption)}</figcaption>{drawing.svg}{notes}</figure>")


# ==================================================================================== drawing
@dataclass
class _Item:
    key: str
    kind: str  # replaced / created / changed / neighbour / io / dummy
    name: str = ""
    lines: list[tuple[str, str]] = field(default_factory=list)  # (text, css class)
    width: float = _DUMMY_W
    height: float = 0.0
    layer: int = 0
    x: float = 0.0  # centre
    y: float = 0.0  # top
    order: int = 0
    title: str = ""
    folded: bool = False  # a '… N more' box standing for several nodes


@dataclass
class _Drawing:
    svg: str
    names: list[str]
    notes: list[str]


def _shape_text(shape) -> str:
    if shape is None:
        return "?"
    if len(shape) == 0:
        return "scalar"
    return "×".join("?" if d is None else str(d) for d in shape)


def _attr_text(name: str, value) -> str:
    if isinstance(value, (list, tuple)):
        sep = "x" if name in ("kernel_shape", "strides", "dilations") else ","
        return f"{name}={sep.join(str(v) for v in value)}"
    return f"{name}={value}"


def _wrap(tokens: list[str], width: int, prefix: str = "") -> list[str]:
    """Tokens joined two spaces apart, `width` characters a line; the first line gets `prefix`."""
    lines, current = [], prefix
    for token in tokens:
        if current.strip() and len(current) + 2 + len(token) > width:
            lines.append(current)
            current = token
        else:
            current = f"{current}  {token}" if current.strip() else current + token
    if current.strip():
        lines.append(current)
    return lines


def _node_lines(index, scope, node) -> list[tuple[str, str]]:
    proto = node.node
    op = proto.op_type if not proto.domain or proto.domain == "ai.onnx" else f"{proto.domain}.{proto.op_type}"
    lines = [(op, "op"), (node.label, "name")]
    attributes = []
    for name in _DRAWN_ATTRIBUTES:
        if node.has_attr(name):
            value = node.attr(name)
            if name == "dilations" and all(v == 1 for v in value):
                continue
            attributes.append(_attr_text(name, value))
    lines.extend((text, "attr") for text in _wrap(attributes, 30))
    roles = _ROLES.get(proto.op_type, ())
    activations, constants = [], []
    for position, tensor in enumerate(proto.input):
        if not tensor:
            continue
        role = roles[position] if position < len(roles) else f"in{position}"
        try:
            constant = index.is_constant(scope, tensor)
            shape = index.constant_shape(scope, tensor) if constant else scope.shape(tensor)
        except Exception:  # noqa: BLE001 - a shape we cannot tell is drawn as "?"
            constant, shape = False, None
        (constants if constant else activations).append((role, _shape_text(shape)))
    if len(activations) > 3 and len({shape for _, shape in activations}) == 1:
        activations = [(f"{len(activations)} inputs", activations[0][1])]
    lines.extend((text, "shape") for text in _wrap([f"{r} {t}" for r, t in activations], 32))
    constants = [f"{r} {t}" for r, t in constants]
    if constants:
        lines.extend((text, "const") for text in _wrap(constants, 32, "const "))
    outputs = [_shape_text(scope.shape(t)) for t in proto.output if t]
    if len(outputs) > 2 and len(set(outputs)) == 1:
        outputs = [f"{len(outputs)}× {outputs[0]}"]
    if outputs:
        lines.append(("→ " + ", ".join(outputs), "shape"))
    return lines


def _measure(item: _Item) -> None:
    longest = max((len(text) for text, _ in item.lines), default=0)
    item.width = min(_MAX_W, max(_MIN_W, longest * _CHAR + 2 * _PAD_X))
    item.height = len(item.lines) * _LINE + 2 * _PAD_Y


def _draw(index, graph_path: str, kinds: dict[str, str], uid: str, context: list[str] | None = None) -> _Drawing:
    """The nodes named in `kinds` (by label) in graph `graph_path`, with their direct neighbours."""
    notes: list[str] = []
    scope = next((s for s in index.scopes if s.path == graph_path), None)
    if scope is None:
        return _Drawing(f'<p class="note">Graph {esc(graph_path)} is not in this model.</p>', [], [])
    by_label = {n.label: n for n in scope.nodes}
    core = [by_label[name] for name in kinds if name in by_label]
    missing = [name for name in kinds if name not in by_label]
    if missing:
        notes.append("Not in this model: " + ", ".join(missing))
    if not core and context:
        # Nothing of the fix is left: draw the surroundings it had.
        core_context = [by_label[name] for name in context if name in by_label]
    else:
        core_context = []
    core_ids = {id(n.node) for n in core}
    neighbours, seen = [], set(core_ids)

    def add(node) -> None:
        if node is not None and id(node.node) not in seen and node.op != "Constant":
            seen.add(id(node.node))
            neighbours.append(node)

    for node in core_context:
        add(node)
    for node in core:
        for tensor in node.node.input:
            if tensor:
                add(scope.producers.get(tensor))
        for tensor in node.node.output:
            for consumer in scope.consumers.get(tensor, ()):
                if consumer.scope is scope:
                    add(consumer)
    position = {id(n.node): n.index for n in scope.nodes}
    # Far more candidates than can be drawn (a tensor with a thousand readers): keep the first.
    chosen = (core + neighbours)[:_MAX_CANDIDATES]
    left_out = len(core) + len(neighbours) - len(chosen)
    chosen.sort(key=lambda n: position[id(n.node)])

    items: dict[str, _Item] = {}
    order: list[str] = []
    producer_key: dict[str, str] = {}
    for node in chosen:
        key = f"n{position[id(node.node)]}"
        kind = kinds.get(node.label, "neighbour") if id(node.node) in core_ids else "neighbour"
        item = _Item(key, kind, node.label, _node_lines(index, scope, node))
        _measure(item)
        items[key] = item
        order.append(key)
        for tensor in node.node.output:
            if tensor:
                producer_key[tensor] = key
    edges: list[tuple[str, str, str]] = []  # (from, to, tensor)
    pills = 0
    graph_outputs = set(scope.outputs)
    for node in chosen:
        key = f"n{position[id(node.node)]}"
        is_core = id(node.node) in core_ids
        for tensor in node.node.input:
            if not tensor:
                continue
            if tensor in producer_key:
                edges.append((producer_key[tensor], key, tensor))
            elif is_core and not index.is_constant(scope, tensor):
                pill = f"i{pills}"
                pills += 1
                where = "graph input" if scope.is_graph_input(tensor) else "from"
                item = _Item(pill, "io", tensor, [(f"{where} {tensor}", "name"),
                                                  (_shape_text(scope.shape(tensor)), "shape")])
                _measure(item)
                items[pill] = item
                order.insert(0, pill)
                edges.append((pill, key, tensor))
        for tensor in node.node.output:
            if tensor in graph_outputs:
                pill = f"o{pills}"
                pills += 1
                item = _Item(pill, "io", tensor, [(f"graph output {tensor}", "name"),
                                                  (_shape_text(scope.shape(tensor)), "shape")])
                _measure(item)
                items[pill] = item
                order.append(pill)
                edges.append((key, pill, tensor))
    names = [items[k].name for k in order if items[k].kind != "io"]
    _layers(items, order, edges)
    collapsed = _collapse_wide_layers(items, order, edges)
    if collapsed:
        notes.append(f"Collapsed: {collapsed} parallel node{'s' if collapsed != 1 else ''} drawn as one "
                     "'… more' box (its tooltip names them).")
    left_out += _clip(items, order, edges)
    if left_out:
        notes.append(f"Clipped: {left_out} more node{'s' if left_out != 1 else ''} not drawn "
                     f"(at most {MAX_NODES} per drawing).")
    svg = _layout_svg(items, order, edges, uid)
    return _Drawing(svg, names, notes)


def _collapse_wide_layers(items: dict[str, _Item], order: list[str], edges: list) -> int:
    """A layer wider than MAX_PER_LAYER keeps its first and last two nodes; the rest become one
    '… N more' box that takes over their edges. Returns how many nodes were folded away."""
    rank = {k: i for i, k in enumerate(order)}
    by_layer = defaultdict(list)
    for key in order:
        if items[key].kind != "io":
            by_layer[items[key].layer].append(key)
    folded: dict[str, str] = {}
    for layer, keys in sorted(by_layer.items()):
        if len(keys) <= MAX_PER_LAYER:
            continue
        keys.sort(key=rank.get)
        hidden = keys[2:-2]
        key = f"m{layer}"
        ops = defaultdict(int)
        for k in hidden:
            ops[items[k].lines[0][0]] += 1
        hidden_names = [items[k].name for k in hidden]
        more = _Item(key, items[hidden[0]].kind, "", [(f"… {len(hidden)} more", "op"),
                                       (", ".join(f"{op} ×{n}" for op, n in ops.items()), "attr"),
                                       ("(names in tooltip)", "shape")],
                     layer=layer, title="Not drawn one by one:\n" + "\n".join(hidden_names), folded=True)
        _measure(more)
        items[key] = more
        order.insert(order.index(hidden[0]), key)
        for k in hidden:
            folded[k] = key
            order.remove(k)
            del items[k]
    if folded:
        seen, kept = set(), []
        for a, b, tensor in edges:
            a, b = folded.get(a, a), folded.get(b, b)
            if a != b and (a, b) not in seen:
                seen.add((a, b))
                kept.append((a, b, tensor))
        edges[:] = kept
    return len(folded)


def _clip(items: dict[str, _Item], order: list[str], edges: list) -> int:
    """Keep at most MAX_NODES node boxes, top layers first; returns how many were dropped."""
    rank = {k: i for i, k in enumerate(order)}
    boxes = sorted((k for k in order if items[k].kind != "io"), key=lambda k: (items[k].layer, rank[k]))
    dropped = set(boxes[MAX_NODES:])
    if not dropped:
        return 0
    edges[:] = [e for e in edges if e[0] not in dropped and e[1] not in dropped]
    linked = {e[0] for e in edges} | {e[1] for e in edges}
    dropped |= {k for k in order if items[k].kind == "io" and k not in linked}
    order[:] = [k for k in order if k not in dropped]
    for k in dropped:
        del items[k]
    return sum(1 for k in boxes[MAX_NODES:])


def _layers(items: dict[str, _Item], order: list[str], edges) -> None:
    """Longest-path layers (Kahn's order; a cycle, in an invalid model, just goes on below)."""
    preds, succs = defaultdict(list), defaultdict(list)
    for a, b, _ in edges:
        if a != b:
            preds[b].append(a)
            succs[a].append(b)
    indegree = {k: len(set(preds[k])) for k in order}
    ready = [k for k in order if indegree[k] == 0]
    done: list[str] = []
    placed = set()
    rank = {k: i for i, k in enumerate(order)}
    while len(done) < len(order):
        if not ready:  # a cycle: take the first node left
            ready = [next(k for k in order if k not in placed)]
        ready.sort(key=rank.get)
        key = ready.pop(0)
        if key in placed:
            continue
        placed.add(key)
        done.append(key)
        items[key].layer = max((items[p].layer + 1 for p in preds[key] if p in placed), default=0)
        for s in set(succs[key]):
            indegree[s] -= 1
            if indegree[s] == 0 and s not in placed:
                ready.append(s)
    # Sources sit right above their first consumer rather than at the very top.
    for key in reversed(done):
        if not preds[key] and succs[key]:
            items[key].layer = max(0, min(items[s].layer for s in succs[key]) - 1)


def _layout_svg(items: dict[str, _Item], order: list[str], edges, uid: str) -> str:
    if not order:
        return '<p class="note">Nothing to draw.</p>'
    _layers(items, order, edges)
    # Long edges pass through one dummy per layer they cross, so they go around boxes.
    routes: list[tuple[list[str], str]] = []
    dummies = 0
    for a, b, tensor in edges:
        chain = [a]
        if items[b].layer > items[a].layer + 1:
            for layer in range(items[a].layer + 1, items[b].layer):
                key = f"d{dummies}"
                dummies += 1
                items[key] = _Item(key, "dummy", layer=layer)
                chain.append(key)
        chain.append(b)
        routes.append((chain, tensor))
    depth = max(item.layer for item in items.values()) + 1
    layers: list[list[str]] = [[] for _ in range(depth)]
    rank = {k: i for i, k in enumerate(order)}
    for key in sorted(items, key=lambda k: (rank.get(k, len(rank)), k)):
        layers[items[key].layer].append(key)
    up, down = defaultdict(list), defaultdict(list)
    for chain, _ in routes:
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)

    def positions(layer):
        return {k: i for i, k in enumerate(layer)}

    # Barycentre ordering, a few sweeps down and up.
    for _ in range(4):
        for i in range(1, depth):
            pos, own = positions(layers[i - 1]), positions(layers[i])
            layers[i].sort(key=lambda k: _mean([pos[p] for p in up[k] if p in pos], own[k]))
        for i in range(depth - 2, -1, -1):
            pos, own = positions(layers[i + 1]), positions(layers[i])
            layers[i].sort(key=lambda k: _mean([pos[s] for s in down[k] if s in pos], own[k]))
    # x: packed and centred, then pulled towards connected nodes, keeping order and spacing.
    for layer in layers:
        total = sum(items[k].width for k in layer) + _GAP_X * (len(layer) - 1)
        x = -total / 2
        for k in layer:
            items[k].x = x + items[k].width / 2
            x += items[k].width + _GAP_X
    for _ in range(6):
        for sweep in (range(1, depth), range(depth - 2, -1, -1)):
            for i in sweep:
                links = up if sweep.step == 1 else down
                layer = layers[i]
                desired = [_mean([items[o].x for o in links[k]], items[k].x) for k in layer]
                placed = list(desired)
                for j in range(1, len(layer)):
                    low = placed[j - 1] + (items[layer[j - 1]].width + items[layer[j]].width) / 2 + _GAP_X
                    placed[j] = max(placed[j], low)
                shift = _mean([d - p for d, p in zip(desired, placed)], 0.0)
                for k, p in zip(layer, placed):
                    items[k].x = p + shift
    left = min(items[k].x - items[k].width / 2 for k in items)
    for item in items.values():
        item.x += _MARGIN - left
    width = max(item.x + item.width / 2 for item in items.values()) + _MARGIN
    row_tops, y = [], _MARGIN
    for layer in layers:
        row_tops.append(y)
        y += max((items[k].height for k in layer), default=0) + _GAP_Y
    height = y - _GAP_Y + _MARGIN
    row_heights = [max((items[k].height for k in layer), default=0) for layer in layers]
    for item in items.values():
        item.y = row_tops[item.layer] + (row_heights[item.layer] - item.height) / 2

    # Ports: spread a node's incoming and outgoing edges along its top and bottom edge.
    out_ports, in_ports = defaultdict(list), defaultdict(list)
    for number, (chain, _) in enumerate(routes):
        out_ports[chain[0]].append((items[chain[1]].x, number))
        in_ports[chain[-1]].append((items[chain[-2]].x, number))

    def spread(key, ports) -> dict[int, float]:
        item = items[key]
        ports.sort()
        span = min(item.width * 0.6, 18.0 * (len(ports) - 1))
        return {n: item.x - span / 2 + (span * j / (len(ports) - 1) if len(ports) > 1 else span / 2)
                for j, (_, n) in enumerate(ports)}

    start_x, end_x = {}, {}
    for key, ports in out_ports.items():
        start_x.update(spread(key, ports))
    for key, ports in in_ports.items():
        end_x.update(spread(key, ports))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" role="img">',
        f'<defs><marker id="arrow-{uid}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7b8794"/></marker></defs>',
    ]
    for number, (chain, tensor) in enumerate(routes):
        first, last = items[chain[0]], items[chain[-1]]
        points = [(start_x[number], first.y + first.height)]
        for key in chain[1:-1]:
            dummy = items[key]
            top = row_tops[dummy.layer]
            points += [(dummy.x, top), (dummy.x, top + row_heights[dummy.layer])]
        points.append((end_x[number], last.y - 1))
        d = f"M{points[0][0]:.1f},{points[0][1]:.1f}"
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if abs(x1 - x0) < 0.5:
                d += f" L{x1:.1f},{y1:.1f}"
            else:
                mid = (y1 - y0) / 2
                d += f" C{x0:.1f},{y0 + mid:.1f} {x1:.1f},{y1 - mid:.1f} {x1:.1f},{y1:.1f}"
        parts.append(f'<path class="edge" d="{d}" marker-end="url(#arrow-{uid})"><title>{esc(tensor)}</title></path>')
    max_chars = int((_MAX_W - 2 * _PAD_X) / _CHAR)
    for key in order:
        item = items[key]
        fill, stroke = _KIND_STYLE[item.kind]
        x0, y0 = item.x - item.width / 2, item.y
        dash = ' stroke-dasharray="4 3"' if item.kind == "io" or item.folded else ""
        radius = item.height / 2 if item.kind == "io" else 6
        full = item.title or "\n".join(text for text, _ in item.lines)
        parts.append(f'<g class="node {item.kind}{" more" if item.folded else ""}" data-name="{esc(item.name)}">'
                     f"<title>{esc(full)}</title>")
        parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{item.width:.1f}" height="{item.height:.1f}" '
                     f'rx="{min(radius, 14):.1f}" fill="{fill}" stroke="{stroke}" '
                     f'stroke-width="{1.2 if item.kind in ("neighbour", "io") else 2}"{dash}/>')
        for j, (text, cls) in enumerate(item.lines):
            if len(text) > max_chars:
                text = text[:max_chars - 1] + "…"
            baseline = y0 + _PAD_Y + _LINE * j + _FONT
            parts.append(f'<text class="{cls}" x="{item.x:.1f}" y="{baseline:.1f}" text-anchor="middle">'
                         f"{esc(text)}</text>")
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def _mean(values, default):
    return sum(values) / len(values) if values else default


def write_check_report(path: str, results) -> None:
    from sepfix.atomic import write_text_atomic

    write_text_atomic(path, render_check_report(results))


def write_repair_report(path: str, report) -> None:
    from sepfix.atomic import write_text_atomic

    write_text_atomic(path, render_repair_report(report))


__all__ = ["render_check_report", "render_repair_report", "write_check_report", "write_repair_report", "MAX_NODES"]
