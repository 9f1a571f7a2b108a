"""`sepfix check`, `rules`, `explain`: exit codes, the four formats, errors as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import onnx
import pytest

from sepfix.rules import all_rules
from sepfix.testing import builders
from tests.conftest import run_sepfix as run
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.sarif_schema import sarif_schema

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"


@pytest.fixture
def models(tmp_path):
    clean = tmp_path / "clean.onnx"
    onnx.save(builders.mobilenet_like(), clean)
    dense = tmp_path / "dense.onnx"
    onnx.save(dense_depthwise(builders.mobilenet_like()), dense)
    return clean, dense


def test_exit_codes(models, capsys, tmp_path):
    clean, dense = models
    assert run(["check", str(clean)], capsys)[0] == 0
    code, out, _ = run(["check", str(clean), str(dense)], capsys)
    assert code == 1
    assert "SEP001" in out and "dense-depthwise" in out and out.strip().splitlines()[-1].startswith("FAILED")
    missing = tmp_path / "nope.onnx"
    code, out, err = run(["check", str(dense), str(missing)], capsys)
    assert code == 2
    assert err.strip().count("\n") == 0 and "nope.onnx" in err and "Traceback" not in err


def test_json_format(models, capsys):
    clean, dense = models
    code, out, _ = run(["check", "--format", "json", str(clean), str(dense)], capsys)
    document = json.loads(out)
    assert code == 1 and document["exit_code"] == 1
    first, second = document["models"]
    assert first["findings"] == [] and first["path"] == str(clean)
    assert len(second["findings"]) == 3
    for finding in second["findings"]:
        assert {"code", "name", "node", "message", "fixable", "graph", "location"} <= set(finding)
    assert document["summary"]["findings"] == 3 and document["summary"]["blocks"] == 3


def test_sarif_is_valid_sarif_2_1_0(models, capsys, tmp_path):
    clean, dense = models
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    code, out, _ = run(["check", "--format", "sarif", str(clean), str(dense), str(broken)], capsys)
    document = json.loads(out)
    jsonschema.validate(document, sarif_schema())
    run_ = document["runs"][0]
    assert code == 2
    assert {r["ruleId"] for r in run_["results"]} == {"SEP001"}
    assert [rule["id"] for rule in run_["tool"]["driver"]["rules"]][:2] == ["SEP001", "SEP002"]
    assert run_["invocations"][0]["toolExecutionNotifications"][0]["level"] == "error"


def test_github_annotations(models, capsys):
    _, dense = models
    code, out, _ = run(["check", "--format", "github", str(dense)], capsys)
    lines = out.strip().splitlines()
    assert code == 1 and len(lines) == 3
    assert all(line.startswith("::warning file=") and "title=SEP001 dense-depthwise::" in line for line in lines)


def test_select_ignore_and_unknown_code(models, capsys):
    _, dense = models
    assert run(["check", "--ignore", "SEP001", str(dense)], capsys)[0] == 0
    assert run(["check", "--select", "SEP002,SEP003", str(dense)], capsys)[0] == 0
    code, _, err = run(["check", "--select", "SEP999", str(dense)], capsys)
    assert code == 2 and "SEP999" in err


def test_advice_never_changes_exit_code(tmp_path, capsys):
    odd = tmp_path / "odd.onnx"
    onnx.save(builders.separable_block(c_in=6, c_out=10), odd)
    code, out, _ = run(["check", "--advice", str(odd)], capsys)
    assert code == 0 and "ADV001" in out


def test_output_file(models, tmp_path, capsys):
    _, dense = models
    report = tmp_path / "report.sarif"
    code, out, _ = run(["check", "--format", "sarif", "-o", str(report), str(dense)], capsys)
    assert code == 1 and out == ""
    assert json.loads(report.read_text())["version"] == "2.1.0"


def test_rules_and_explain(capsys):
    code, out, _ = run(["rules"], capsys)
    assert code == 0 and all(rule.code in out and rule.name in out for rule in all_rules())
    code, out, _ = run(["explain", "SEP001"], capsys)
    assert code == 0 and "## Why is this bad" in out and "## Fix safety" in out
    code, out, _ = run(["explain", "inflated-kernel"], capsys)
    assert code == 0 and "SEP009" in out
    code, _, err = run(["explain", "SEP777"], capsys)
    assert code == 2 and "SEP777" in err


def test_bad_option_is_usage_error(capsys):
    code, _, err = run(["check", "--format", "xml", "x.onnx"], capsys)
    assert code == 2 and "xml" in err


def test_console_script_and_module_entry(models):
    clean, dense = models
    for command in (["sepfix"], [sys.executable, "-m", "sepfix"]):
        done = subprocess.run(command + ["check", str(dense)], capture_output=True, text=True)
        assert done.returncode == 1 and "SEP001" in done.stdout


def test_samples_reported_with_the_right_code(capsys):
    """Every mangled sample is reported with its rule's code; clean and negatives are silent."""
    samples = sorted(SAMPLES.glob("*.onnx"))
    assert len(samples) >= 18
    # the default check: every sample carries a finding that fails it (SEP011's sample besides
    # has an info-level layout Transpose at its channels-last input, SEP007's with --advice)
    code, out, _ = run(["check", "--format", "json", *map(str, samples)], capsys)
    assert code == 1
    for model in json.loads(out)["models"]:
        name = Path(model["path"]).name
        codes = {f["code"] for f in model["findings"] if not f["code"].startswith("ADV")}
        if name.startswith("sep0"):
            assert codes == {name[:6].upper()}, name
        else:
            assert codes == set(), name


def _without_timings(document: dict) -> dict:
    for model in document["models"]:
        model.pop("seconds")
    return document


def test_jobs_give_the_same_report_in_argument_order(capsys, tmp_path):
    """-j N only changes how fast the report comes, never what it says or its order."""
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    paths = [*map(str, sorted(SAMPLES.glob("*.onnx"), reverse=True)), str(broken)]
    code1, out1, err1 = run(["check", "--format", "json", "-j", "1", *paths], capsys)
    code2, out2, err2 = run(["check", "--format", "json", "--jobs", "2", *paths], capsys)
    assert code1 == code2 == 2 and err1 == err2
    one, two = _without_timings(json.loads(out1)), _without_timings(json.loads(out2))
    assert one == two and [m["path"] for m in two["models"]] == paths
    code, _, err = run(["check", "-j", "0", paths[0]], capsys)
    assert code == 2 and "-j" in err


def test_no_progress_bar_unless_stderr_is_a_terminal():
    samples = [str(p) for p in sorted(SAMPLES.glob("*.onnx"))]
    for jobs in ("1", "2"):
        done = subprocess.run(
            [sys.executable, "-m", "sepfix", "check", "-j", jobs, *samples], capture_output=True, text=True
        )
        assert done.returncode == 1 and done.stderr == ""


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_on_a_terminal_and_quiet_hides_it():
    import os

    samples = [str(p) for p in sorted(SAMPLES.glob("*.onnx"))]

    def stderr_on_a_tty(*options: str) -> tuple[bytes, str]:
        master, slave = os.openpty()
        try:
            done = subprocess.run(
                [sys.executable, "-m", "sepfix", "check", *options, *samples],
                stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "TERM": "xterm"},
            )
        finally:
            os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 1 << 16)
            except OSError:  # EIO: the child side is closed
                break
            if not chunk:
                break
            seen += chunk
        os.close(master)
        return seen, done.stdout.decode()

    shown, out = stderr_on_a_tty()
    assert f"/{len(samples)}".encode() in shown and "FAILED" in out and "\x1b" not in out
    assert stderr_on_a_tty("-q")[0] == b""
