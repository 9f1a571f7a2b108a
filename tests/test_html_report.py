"""`--report report.html`: one self-contained page, rendered for real in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import onnx
import pytest

from sepfix import html_report
from sepfix.repairer import repair
from sepfix.testing import builders
from tests.conftest import run_sepfix as run
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.rules.test_sep005_split_depthwise import split_depthwise
from tests.rules.test_sep006_matmul_pointwise import matmul_pointwise
from tests.rules.test_sep008_detached_bias import detached_bias

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium is not installed at /usr/bin/chromium (Debian: apt-get install -y chromium)",
)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def several_fixes_model() -> onnx.ModelProto:
    model = builders.mobilenet_like()
    for step in (dense_depthwise, detached_bias, matmul_pointwise):
        model = step(model)
    return model


def chromium(tmp_path: Path, page: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    command = [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.resolve().as_uri()]
    env = dict(os.environ, HOME=str(tmp_path))
    return subprocess.run(command, capture_output=True, text=True, timeout=180, env=env, check=False)


def screenshot(tmp_path: Path, page: Path, size: str = "1400,4000") -> Path:
    png = tmp_path / "report.png"
    done = chromium(tmp_path, page, f"--screenshot={png}", f"--window-size={size}")
    assert png.exists(), f"chromium wrote no screenshot (exit {done.returncode}): {done.stderr[-2000:]}"
    return png


def dump_dom(tmp_path: Path, page: Path) -> str:
    done = chromium(tmp_path, page, "--dump-dom")
    assert done.returncode == 0 and "<body" in done.stdout, done.stderr[-2000:]
    return done.stdout


def assert_real_png(png: Path, width: int, height: int) -> None:
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (width, height)
    assert len(data) > 30_000  # a blank page of that size compresses to a few kB
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is None or len(colours) > 50  # text, boxes and colours, not a flat page


def assert_self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    without_namespace = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:|//|file:)", without_namespace, re.I)
    assert "url(http" not in without_namespace and "@import" not in without_namespace


class FixSections(HTMLParser):
    """The per-fix sections of a rendered report: attributes, text, and the text of each SVG."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.sections: dict[str, dict] = {}
        self._section = None
        self._side = None
        self._svg_depth = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and (attrs.get("id") or "").startswith("fix-"):
            self._section = {"attrs": attrs, "text": [], "svgs": {}, "svg_text": {"before": [], "after": []}}
            self.sections[attrs["id"]] = self._section
        elif tag == "figure" and self._section is not None:
            self._side = attrs.get("data-side")
        elif tag == "svg" and self._section is not None and self._side:
            self._section["svgs"][self._side] = self._section["svgs"].get(self._side, 0) + 1
            self._svg_depth += 1
        elif tag == "g" and self._svg_depth and self._side:
            self._section["svg_text"][self._side].append(attrs.get("data-name") or "")

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        elif tag == "figure":
            self._side = None
        elif tag == "svg" and self._svg_depth:
            self._svg_depth -= 1

    def handle_data(self, data):
        if self._section is not None:
            self._section["text"].append(data)
            if self._svg_depth and self._side:
                self._section["svg_text"][self._side].append(data)


def check_fix_sections(dom: str, fixes: list[dict]) -> None:
    parser = FixSections()
    parser.feed(dom)
    assert len(parser.sections) == len(fixes)
    for i, fix in enumerate(fixes):
        section = parser.sections[f"fix-{i}"]
        text = "".join(section["text"])
        assert fix["code"] in text and fix["node"] in text
        assert section["svgs"] == {"before": 1, "after": 1}, section["svgs"]
        before = "\n".join(section["svg_text"]["before"])
        after = "\n".join(section["svg_text"]["after"])
        for name in fix["replaced"]:
            assert name in before, (fix["code"], name)
        for name in fix["created"] + fix["changed"]:
            assert name in after, (fix["code"], name)


@needs_chromium
def test_repair_report_renders_every_fix(tmp_path, capsys):
    model_path = tmp_path / "mangled.onnx"
    onnx.save(several_fixes_model(), model_path)
    out, page = tmp_path / "fixed.onnx", tmp_path / "report.html"
    code, text, _ = run(["repair", model_path, "-o", out, "--format", "json", "--report", page], capsys)
    assert code == 0 and out.exists() and page.exists()
    fixes = json.loads(text)["fixes"]
    assert {f["code"] for f in fixes} == {"SEP001", "SEP006", "SEP008"}
    source = page.read_text(encoding="utf-8")
    assert_self_contained(source)
    for word in ("Findings in the input", "Validation", "onnxruntime", "CPUExecutionProvider", "max abs error",
                 "passed", "PASSED"):
        assert word in source
    # A fix of the second pass (SEP008 on the Conv that SEP006 created) is drawn against pass 1's output.
    assert "pass 2 of 2" in source and "Replaying" not in source

    dom = dump_dom(tmp_path, page)
    check_fix_sections(dom, fixes)
    assert 'class="verdict pass"' in dom
    assert_real_png(screenshot(tmp_path, page), 1400, 4000)


@needs_chromium
def test_refused_repair_still_writes_the_report(tmp_path, capsys):
    out, page = tmp_path / "f.onnx", tmp_path / "report.html"
    code, text, _ = run(["repair", SAMPLES / "sep005_split_depthwise.onnx", "-o", out, "--rtol", "0", "--atol", "0",
                         "--report", page], capsys)
    assert code == 1 and not out.exists() and "nothing written" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    dom = dump_dom(tmp_path, page)
    assert "validation refused the repair" in dom and "nothing was written" in dom
    assert 'class="verdict fail"' in dom and "FAILED" in dom
    assert re.search(r'<tr class="bad">', dom)  # the output that failed is marked
    _, report = repair(str(SAMPLES / "sep005_split_depthwise.onnx"), rtol=0, atol=0)
    check_fix_sections(dom, [f.to_dict() for f in report.fixes])


@needs_chromium
def test_check_report(tmp_path, capsys):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    models = [SAMPLES / "sep001_dense_depthwise.onnx", SAMPLES / "clean_mobilenet.onnx", broken]
    page = tmp_path / "check.html"
    code, _, _ = run(["check", *models, "--format", "json", "--report", page], capsys)
    assert code == 2 and page.exists()
    source = page.read_text(encoding="utf-8")
    assert_self_contained(source)
    dom = dump_dom(tmp_path, page)
    findings = __import__("sepfix").check(str(models[0]))
    assert findings
    for finding in findings:
        assert finding.code in dom and finding.location in dom and finding.name in dom
    assert "FAILED" in dom and "Could not be read" in dom and "clean" in dom
    for path in models:
        assert str(path) in dom
    code, _, _ = run(["check", models[1], "--report", page], capsys)
    assert code == 0 and "PASSED" in page.read_text(encoding="utf-8")
    assert_real_png(screenshot(tmp_path, page, "1400,900"), 1400, 900)


def test_names_are_escaped_and_fixes_in_subgraphs_are_drawn():
    """Hostile node names stay text; a fix inside an If branch is looked up in that branch."""
    model = dense_depthwise(builders.separable_block())
    hostile = '<script>alert("x")</script>&'
    for node in model.graph.node:
        if node.op_type == "Conv" and node.name.endswith("dw_conv"):
            node.name = hostile
    wrapped = builders.in_if_branch(model)
    _, report = repair(wrapped, validate=False, unsafe_fixes=True)
    [fix] = report.fixes
    assert fix.graph == "main/branch.then_branch"
    page = html_report.render_repair_report(report)
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    parser = FixSections()
    parser.feed(page)
    section = parser.sections["fix-0"]
    assert section["svgs"] == {"before": 1, "after": 1}
    assert hostile in section["svg_text"]["before"] and hostile in section["svg_text"]["after"]
    assert "Not in this model" not in page and "Not validated" in page


def test_wide_layers_are_collapsed_and_big_drawings_clipped(monkeypatch):
    model = split_depthwise(builders.separable_block(c_in=64))
    _, report = repair(model, validate=False, unsafe_fixes=True)
    [fix] = report.fixes
    assert fix.code == "SEP005" and len(fix.replaced) == 66
    page = html_report.render_repair_report(report)
    assert "Collapsed: 60 parallel nodes" in page and "… 60 more" in page
    parser = FixSections()
    parser.feed(page)
    before = "\n".join(parser.sections["fix-0"]["svg_text"]["before"])
    assert all(name in before for name in fix.replaced)  # the folded ones in the box's tooltip
    boxes = max(svg.count('<g class="node') for svg in re.findall(r"<svg.*?</svg>", page, re.S))
    assert boxes <= html_report.MAX_PER_LAYER + 6

    monkeypatch.setattr(html_report, "MAX_NODES", 3)
    _, report = repair(several_fixes_model(), validate=False, unsafe_fixes=True)
    page = html_report.render_repair_report(report)
    assert "Clipped:" in page and "at most 3 per drawing" in page
    for svg in re.findall(r"<svg.*?</svg>", page, re.S):
        assert len(re.findall(r'<g class="node (?!io)', svg)) <= 3


def test_report_without_fixes():
    _, report = repair(builders.mobilenet_like())
    page = html_report.render_repair_report(report)
    assert "No fix applied" in page and "No findings." in page and "<svg" not in page

