"""What every rule's shape promises, across rules: fix safety decides what `repair --no-validate`
applies, a rule's tag follows the node (not its name), and JSON findings carry plain evidence,
never internal positions."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

import sepfix
from sepfix.rewrite import RULE_TAG
from sepfix.rules import Applicability, find_rule
from sepfix.testing import builders
from tests.conftest import run_sepfix as run
from tests.rules import rule_code, rule_test_modules
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.rules.test_sep002_group_mismatch import group_attribute
from tests.rules.test_sep005_split_depthwise import split_depthwise
from tests.rules.test_sep008_detached_bias import learnable_affine

ROOT = Path(__file__).resolve().parents[1]


# -- fix safety: --no-validate applies safe fixes only --------------------------------------------


def _safe_and_validated_sep001_sep008() -> onnx.ModelProto:
    """SEP001 (safe) on the depthwise conv, SEP008 (validated; a learnable affine ONNX Runtime
    does not fold, so a warning) on the pointwise conv."""
    return learnable_affine(dense_depthwise(builders.separable_block()), nodes=["pw_conv"])


def _safe_and_validated_sep002_sep005() -> onnx.ModelProto:
    """SEP002 (safe) on one depthwise conv, SEP005 (validated) on another."""
    model = group_attribute(builders.mobilenet_like(), None, nodes=["block0_dw_conv"])
    return split_depthwise(model, nodes=["block1_dw_conv"])


@pytest.fixture(params=[("SEP001", "SEP008", _safe_and_validated_sep001_sep008),
                        ("SEP002", "SEP005", _safe_and_validated_sep002_sep005)],
                ids=["SEP001+SEP008", "SEP002+SEP005"])
def two_findings(request, tmp_path):
    safe, validated, make = request.param
    assert find_rule(safe).applicability is Applicability.SAFE
    assert find_rule(validated).applicability is Applicability.VALIDATED
    path = tmp_path / "model.onnx"
    onnx.save(make(), path)
    assert {f.code for f in sepfix.check(str(path))} == {safe, validated}
    return safe, validated, path


def test_no_validate_applies_only_the_safe_fix_and_says_so(two_findings, tmp_path, capsys):
    safe, validated, path = two_findings
    out = tmp_path / "out.onnx"
    code, text, _ = run(["repair", path, "-o", out, "--no-validate"], capsys)
    summary = text.strip().splitlines()[-1]
    assert summary.split(":")[0] in ("PARTIAL", "UNVALIDATED"), text
    assert "PASSED" not in text and "validation passed" not in text
    assert code == 1, "a finding is left in the written model"
    held = [line for line in text.splitlines() if validated in line and "not repaired" in line]
    assert held and all("--unsafe-fixes" in line for line in held), text
    assert {f.code for f in sepfix.check(str(out))} == {validated}, "only the safe fix was applied"

    code, text, _ = run(["repair", path, "-o", out, "--no-validate", "--format", "json", "--force"], capsys)
    report = json.loads(text)
    assert {f["code"] for f in report["fixes"]} == {safe}
    assert {f["code"] for f in report["held_back"]} == {validated}
    assert report["verdict"] in ("PARTIAL", "UNVALIDATED") and report["validation"] is None


def test_unsafe_fixes_apply_both_unvalidated(two_findings, tmp_path, capsys):
    safe, validated, path = two_findings
    out = tmp_path / "out.onnx"
    code, text, _ = run(["repair", path, "-o", out, "--no-validate", "--unsafe-fixes"], capsys)
    assert code == 0, text
    assert text.strip().splitlines()[-1].startswith("UNVALIDATED:"), text
    assert "PASSED" not in text
    assert sepfix.check(str(out)) == []


def test_unsafe_fixes_without_no_validate_is_an_error(two_findings, tmp_path, capsys):
    _, _, path = two_findings
    out = tmp_path / "out.onnx"
    code, text, err = run(["repair", path, "-o", out, "--unsafe-fixes"], capsys)
    assert code == 2 and "--unsafe-fixes" in err and "Traceback" not in err
    assert not out.exists()


# -- tags follow the node, not its name ----------------------------------------------------------


def _tags(node: onnx.NodeProto) -> list[str]:
    in_doc = [line for line in node.doc_string.splitlines() if line.startswith(f"{RULE_TAG}:")]
    in_metadata = [p.value for p in node.metadata_props if p.key == RULE_TAG]
    return in_doc + in_metadata


@pytest.mark.parametrize("ir_version", [8, 10])
def test_unnamed_nodes_tag_only_the_fixed_conv(ir_version):
    """Conv, Relu, Conv, all unnamed, SEP002 on the first: only that conv carries the tag
    (node metadata_props from IR 10, the doc string before), and no node gains a name."""
    model = group_attribute(builders.separable_block(), -3)
    for node in model.graph.node:
        node.name = ""
    model.ir_version = ir_version
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu", "Conv"]
    [finding] = sepfix.check(model)
    assert finding.code == "SEP002"

    repaired, report = sepfix.repair(model)
    assert report.validation.passed and [f.code for f in report.fixes] == ["SEP002"]
    assert [n.name for n in repaired.graph.node] == ["", "", ""], "no node gained a name"
    fixed_output = model.graph.node[0].output[0]
    for node in repaired.graph.node:
        expected = ["SEP002 group-mismatch"] if node.output[0] == fixed_output else []
        tags = _tags(node)
        if ir_version >= 10:
            assert [p.value for p in node.metadata_props if p.key == RULE_TAG] == expected
            assert RULE_TAG not in node.doc_string
        else:
            assert [t.split(": ", 1)[1] for t in tags] == expected
            assert not [p for p in node.metadata_props if p.key == RULE_TAG]


# -- JSON details: plain evidence, no internal positions ------------------------------------------

INTERNAL = ("node_index", "graph_address")


def _assert_plain(value, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{where}: key {key!r} is not a string"
            assert key not in INTERNAL, f"{where}: internal position {key!r} in details"
            _assert_plain(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _assert_plain(item, f"{where}[{i}]")
    else:
        assert value is None or isinstance(value, (str, int, float, bool)), f"{where}: {value!r}"


def test_json_details_are_plain_data_without_internal_positions(tmp_path, capsys):
    """Every finding of every sample model, and of every rule's manglers on a helper model."""
    paths = sorted((ROOT / "sample_models").glob("*.onnx"))
    clean = builders.mobilenet_like()
    for module in rule_test_modules():
        for variant, mangler in module.MANGLES.items():
            if hasattr(mangler, "sources"):  # needs what the helper model lacks: its sample covers it
                continue
            path = tmp_path / f"{rule_code(module)}_{variant}.onnx"
            onnx.save(mangler(clean), path)
            paths.append(path)
    code, text, _ = run(["check", "--format", "json", "--advice", *paths], capsys)
    assert code == 1
    report = json.loads(text)
    findings = [(m["path"], f) for m in report["models"] for f in m["findings"]]
    assert {f["code"] for _, f in findings} >= {rule_code(m) for m in rule_test_modules() if m.MANGLES}
    for path, finding in findings:
        where = f"{Path(path).name} {finding['code']} details"
        _assert_plain(finding["details"], where)
        assert json.loads(json.dumps(finding["details"])) == finding["details"], where
    for path in paths:  # the in-memory Finding too, not only what the JSON renderer kept
        for finding in sepfix.check(str(path), advice=True):
            _assert_plain(finding.to_dict(), f"{path.name} {finding.code}")
