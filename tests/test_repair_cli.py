"""`sepfix repair` end to end: exit codes, reports, the proof, and the promises about files."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import sepfix
from sepfix.repairer import repair
from sepfix.testing import builders
from tests.conftest import run_model
from tests.conftest import run_sepfix as run
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.rules.test_sep006_matmul_pointwise import matmul_pointwise
from tests.rules.test_sep008_detached_bias import detached_bias

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mangled(tmp_path):
    path = tmp_path / "model.onnx"
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", path)
    return path


def test_repair_writes_validated_output_and_leaves_input(mangled, tmp_path, capsys):
    before = digest(mangled)
    out = tmp_path / "fixed.onnx"
    code, text, _ = run(["repair", mangled, "-o", out], capsys)
    assert code == 0 and out.exists()
    assert digest(mangled) == before
    assert "SEP001 dense-depthwise" in text and "validation passed" in text and text.splitlines()[-1].startswith("PASSED")
    assert sepfix.check(str(out)) == []
    assert run(["check", out], capsys)[0] == 0
    for a, b in zip(run_model(onnx.load(out)), run_model(onnx.load(mangled))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert oct(out.stat().st_mode & 0o777) != "0o600"  # not the temp file's private mode
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_json_report_lists_fixes_and_validation(mangled, tmp_path, capsys):
    code, text, _ = run(["repair", mangled, "-o", tmp_path / "f.onnx", "--format", "json"], capsys)
    report = json.loads(text)
    assert code == 0 and report["written"] and report["changed"]
    assert [f["code"] for f in report["fixes"]] == ["SEP001", "SEP001"]
    assert all(f["description"].startswith("group 1 -> 8") for f in report["fixes"])
    validation = report["validation"]
    assert validation["passed"] and validation["proof"] == "onnxruntime"
    assert {"max_abs", "max_rel", "required_rtol", "required_atol"} <= set(validation["outputs"][0])


def test_invalid_original_is_proven_with_numpy_reference(tmp_path, capsys):
    code, text, _ = run(["repair", SAMPLES / "sep002_group_negative.onnx", "-o", tmp_path / "f.onnx",
                         "--format", "json"], capsys)
    report = json.loads(text)
    assert code == 0, report["validation"]
    assert report["validation"]["proof"] == "numpy-reference"


def test_refused_validation_writes_nothing(tmp_path, capsys):
    out = tmp_path / "f.onnx"
    # Merging split convs moves the last bits; a zero tolerance must refuse it.
    code, text, _ = run(["repair", SAMPLES / "sep005_split_depthwise.onnx", "-o", out, "--rtol", "0", "--atol", "0"],
                        capsys)
    assert code == 1 and not out.exists()
    assert "validation FAILED" in text and "validation refused it: nothing written" in text
    assert list(tmp_path.iterdir()) == []


def test_dry_run_writes_nothing(mangled, tmp_path, capsys):
    before = digest(mangled)
    code, text, _ = run(["repair", mangled, "--dry-run"], capsys)
    assert code == 0 and "dry run: nothing would be written" in text and digest(mangled) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_in_place_with_backup(mangled, capsys):
    original = mangled.read_bytes()
    code, _, _ = run(["repair", mangled, "--in-place", "--backup"], capsys)
    assert code == 0
    assert (mangled.parent / "model.onnx.bak").read_bytes() == original
    assert mangled.read_bytes() != original and sepfix.check(str(mangled)) == []
    again = mangled.read_bytes()
    code, text, _ = run(["repair", mangled, "--in-place"], capsys)
    assert code == 0 and "nothing to repair" in text and mangled.read_bytes() == again  # idempotent


def test_nothing_to_fix_is_a_faithful_copy(tmp_path, capsys):
    for sample in ["clean_mobilenet.onnx", "neg_qdq_weights.onnx", "neg_convnext_linear.onnx"]:
        out = tmp_path / sample
        code, _, _ = run(["repair", SAMPLES / sample, "-o", out], capsys)
        assert code == 0 and out.read_bytes() == (SAMPLES / sample).read_bytes()


def test_usage_errors_exit_2_with_one_line(mangled, tmp_path, capsys):
    cases = [
        ["repair", mangled],                                      # no -o, no --in-place
        ["repair", mangled, "-o", mangled],                       # output is the input
        ["repair", mangled, "-o", tmp_path / "x.onnx", "--in-place"],
        ["repair", mangled, "-o", tmp_path / "missing" / "x.onnx"],
        ["repair", tmp_path / "nope.onnx", "-o", tmp_path / "x.onnx"],
        ["repair", mangled, "-o", tmp_path / "x.onnx", "--backup"],
        ["repair", mangled, "-o", tmp_path / "x.onnx", "--input-shape", "input:1,a"],
    ]
    for args in cases:
        code, out, err = run(args, capsys)
        assert code == 2, args
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
    assert not (tmp_path / "x.onnx").exists()


def test_select_limits_what_is_repaired(tmp_path, capsys):
    model = tmp_path / "two.onnx"
    onnx.save(detached_bias(dense_depthwise(builders.mobilenet_like())), model)
    out = tmp_path / "f.onnx"
    code, text, _ = run(["repair", model, "-o", out, "--select", "SEP008", "--format", "json"], capsys)
    assert code == 0 and {f["code"] for f in json.loads(text)["fixes"]} == {"SEP008"}
    assert {f.code for f in sepfix.check(str(out))} == {"SEP001"}


def test_user_inputs_and_shapes_feed_the_proof(mangled, tmp_path, capsys):
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "inputs.npz", input=x)
    code, text, _ = run(["repair", mangled, "-o", tmp_path / "f.onnx", "--inputs", tmp_path / "inputs.npz",
                         "--input-shape", "input:1,3,16,16", "--format", "json"], capsys)
    assert code == 0 and json.loads(text)["validation"]["input_sets"] == 3


def test_python_api_repair():
    model = matmul_pointwise(builders.mobilenet_like())
    repaired, report = repair(model)
    assert report.validation.passed and [f.code for f in report.fixes] == ["SEP006"] * 3
    assert sepfix.check(repaired) == []
    same, empty = repair(repaired)
    assert same is repaired and empty.fixes == [] and empty.validation is None


def test_top_level_api_names_are_functions_even_after_submodule_imports():
    import importlib

    importlib.import_module("sepfix.repairer")
    importlib.import_module("sepfix.checker")
    model = detached_bias(builders.mobilenet_like())
    repaired, report = sepfix.repair(model, select=["SEP008"])
    assert [f.code for f in report.fixes] == ["SEP008"] * 6 and report.validation.passed
    assert sepfix.check(repaired) == []
