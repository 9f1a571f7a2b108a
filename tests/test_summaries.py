"""Summaries that say exactly what happened: -o never overwrites by surprise, block counts say
what is there and what repair restores, one labelled line per output, the proof names what ran
each model, dry runs say what they would write, errors go to stderr in every format, hook lines
name their files, and common wrong files get advice instead of a protobuf error."""

from __future__ import annotations

import json
import pickle
import shutil
import zipfile
from pathlib import Path

import onnx
import pytest

from sepfix import batch, hooks
from sepfix.testing import builders
from sepfix.validate.numeric import OutputComparison, Validation
from tests.conftest import run_sepfix as run

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
SEP001 = SAMPLES / "sep001_dense_depthwise.onnx"


@pytest.fixture
def mangled(tmp_path):
    path = tmp_path / "model.onnx"
    shutil.copy(SEP001, path)
    return path


# ------------------------------------------------------------------------------------ -o


def test_output_refuses_an_existing_file_unless_forced(mangled, tmp_path, capsys):
    unrelated = tmp_path / "notes.onnx"
    unrelated.write_text("someone's file")
    code, out, err = run(["repair", mangled, "-o", unrelated], capsys)
    assert code == 2 and "exists" in err and "--force" in err and len(err.strip().splitlines()) == 1
    assert unrelated.read_text() == "someone's file"
    code, out, _ = run(["repair", mangled, "-o", unrelated, "--force"], capsys)
    assert code == 0 and f"wrote {unrelated}" in out and onnx.load(str(unrelated)).graph.node


# ------------------------------------------------------------------------------------ block counts


def test_block_counts_say_what_is_there_and_what_repair_restores(mangled, tmp_path, capsys):
    code, out, _ = run(["check", mangled], capsys)
    assert out.strip().splitlines()[-1].startswith(
        "FAILED: 2 findings (2 fixable with `sepfix repair`, marked [*]), 0 canonical depthwise-separable blocks "
        "(+2 that `sepfix repair` restores) in 1 model")
    code, out, _ = run(["check", "--format", "json", mangled], capsys)
    document = json.loads(out)
    assert document["summary"]["blocks"] == 0 and document["summary"]["restorable_blocks"] == 2
    assert document["models"][0]["restorable_blocks"] == 2
    clean = tmp_path / "clean.onnx"
    shutil.copy(SAMPLES / "clean_mobilenet.onnx", clean)
    code, out, _ = run(["check", "--format", "json", clean], capsys)
    document = json.loads(out)
    assert document["models"][0]["restorable_blocks"] is None  # nothing fixable: not computed
    code, out, _ = run(["check", clean], capsys)
    assert "canonical depthwise-separable blocks in 1 model" in out and "restores" not in out


def test_no_restorable_count_for_models_over_the_limit(mangled, capsys, monkeypatch):
    monkeypatch.setattr(batch, "RESTORABLE_LIMIT", 1000)
    code, out, _ = run(["check", mangled], capsys)
    assert "0 canonical depthwise-separable blocks in 1 model" in out and "restores" not in out


# ------------------------------------------------------------------------------------ the proof


def test_proof_names_what_ran_each_model_and_one_line_per_output(tmp_path, capsys):
    code, out, _ = run(["repair", SAMPLES / "sep002_group_negative.onnx", "-o", tmp_path / "f.onnx"], capsys)
    assert code == 0
    assert "validation passed: numpy reference (original) vs onnxruntime CPUExecutionProvider (repaired)" in out
    assert "numpy-reference on" not in out and "worst output" not in out and "passes at" not in out
    [line] = [line for line in out.splitlines() if ": output 'output': " in line]
    assert "smallest that passes: atol " in line and " at rtol 0.0001, or rtol " in line and " at atol 1e-05" in line
    code, out, _ = run(["repair", SEP001, "-o", tmp_path / "g.onnx"], capsys)
    assert "onnxruntime CPUExecutionProvider (original) vs onnxruntime CPUExecutionProvider (repaired)" in out


def test_output_lines_one_per_output_with_each_tolerance_stated_with_the_other():
    validation = Validation(True, "onnxruntime", "CPUExecutionProvider", 1e-4, 1e-5, 2, outputs=[
        OutputComparison("logits", [1, 10], 7.15e-07, 2e-3, 0.0, 1.44e-07, True),
        OutputComparison("features", [1, 8], 0.0, 0.0, 0.0, 0.0, True),
        OutputComparison("mask", [1, 8], 0.5, 1.0, float("inf"), 0.4999, False),
    ], original_runner="CPUExecutionProvider")
    lines = validation.output_lines()
    assert lines[0] == ("output 'logits': max abs 7.15e-07, max rel 0.002; within tolerance (smallest that passes: "
                        "atol 1.44e-07 at rtol 0.0001, or rtol 0 at atol 1e-05)")
    assert lines[1] == "output 'features': max abs 0, max rel 0; identical"
    assert lines[2].startswith("output 'mask': max abs 0.5, max rel 1; FAILED (passes only from atol 0.5 at rtol "
                               "0.0001, or no rtol at atol 1e-05")
    assert validation.runners() == "onnxruntime CPUExecutionProvider (original) vs onnxruntime CPUExecutionProvider (repaired)"


# ------------------------------------------------------------------------------------ dry runs


def test_dry_run_says_what_it_would_write(mangled, tmp_path, capsys):
    cases = {
        (): "2 fixes; dry run: nothing would be written (no -o OUT or --in-place given)",
        ("-o", tmp_path / "f.onnx"): f"2 fixes; dry run: would write {tmp_path / 'f.onnx'}",
        ("--in-place",): f"2 fixes; dry run: would replace {mangled}",
    }
    before = mangled.read_bytes()
    for extra, expected in cases.items():
        code, out, _ = run(["repair", mangled, "--dry-run", *extra], capsys)
        assert code == 0 and out.strip().splitlines()[-1].startswith(f"PASSED: {mangled}: {expected} ("), out
    clean = SAMPLES / "clean_mobilenet.onnx"
    code, out, _ = run(["repair", clean, "--dry-run", "-o", tmp_path / "c.onnx"], capsys)
    assert f"nothing to repair; dry run: would copy it unchanged to {tmp_path / 'c.onnx'}" in out
    assert mangled.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("fmt", ["json", "sarif", "github", "text"])
def test_errors_go_to_stderr_in_every_format(tmp_path, capsys, fmt):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07garbage")
    code, out, err = run(["check", "--format", fmt, broken, SEP001], capsys)
    assert code == 2 and err.startswith(f"sepfix: error: {broken}:") and len(err.strip().splitlines()) == 1
    if fmt in ("json", "sarif"):
        json.loads(out)  # stdout stays one clean document


# ------------------------------------------------------------------------------------ hooks


def test_check_hook_says_how_to_run_the_repair_hook(mangled, capsys):
    code = hooks.main_check([str(mangled), str(SAMPLES / "clean_mobilenet.onnx")])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"pre-commit run sepfix-repair --hook-stage manual --files {mangled}" in err
    assert "clean_mobilenet" not in err  # only the models with fixable findings


def test_repair_hook_names_the_file_on_every_line(mangled, capsys):
    code = hooks.main_repair([str(mangled)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = [line for line in (out + err).splitlines() if line.strip()]
    assert lines and all(str(mangled) in line for line in lines), lines


# ------------------------------------------------------------------------------------ wrong files


def _zip(path: Path, member: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, "{}")


def _torch_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:  # the layout torch.save writes
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": [1.0, 2.0]}))
        archive.writestr("archive/version", "3\n")


WRONG_FILES = {
    "model.pth": (_torch_zip, "PyTorch checkpoint", "torch.onnx.export"),
    "model.pt": (lambda p: p.write_bytes(pickle.dumps({"w": 1}, protocol=2)), "PyTorch checkpoint", "torch.onnx.export"),
    "last.ckpt": (_torch_zip, "PyTorch checkpoint", "torch.onnx.export"),
    "model.tflite": (lambda p: p.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 64), "TensorFlow Lite", "--tflite"),
    "saved_model.pb": (lambda p: p.write_bytes(b"\x12\x0cserving_default\x1a\x00"), "TensorFlow graph", "tf2onnx"),
    "model.h5": (lambda p: p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64), "Keras model", "tf2onnx"),
    "model.keras": (lambda p: _zip(p, "config.json"), "Keras model", "tf2onnx"),
    "model.engine": (lambda p: p.write_bytes(b"ftrt\x00\x00\x00\x00" + b"\x01" * 64), "TensorRT engine",
                     "--engine-info"),
    "model.plan": (lambda p: p.write_bytes(b"\x00\x01\x02\x03" * 16), "TensorRT engine", "--engine-info"),
}


@pytest.mark.parametrize("name", sorted(WRONG_FILES))
def test_common_wrong_files_get_advice(tmp_path, capsys, name):
    make, what, hint = WRONG_FILES[name]
    path = tmp_path / name
    make(path)
    for command in (["check", path], ["repair", path, "--dry-run"], ["validate", path]):
        code, out, err = run(command, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, (command, err)
        assert what in err and hint in err and "protobuf" not in err, (command, err)


@pytest.mark.parametrize("location", ["model.onnx.data", "model.onnx_data", "weights.data"])
def test_weights_file_names_the_model_that_reads_it(tmp_path, capsys, location):
    onnx.save(builders.mobilenet_like(), str(tmp_path / "model.onnx"), save_as_external_data=True,
              location=location, size_threshold=64)
    code, _, err = run(["check", tmp_path / location], capsys)
    assert code == 2 and "external weights" in err and f"pass {tmp_path / 'model.onnx'} (its weights" in err, err
    (tmp_path / "model.onnx").unlink()
    code, _, err = run(["check", tmp_path / location], capsys)
    assert code == 2 and "pass the .onnx model that references it" in err


def test_a_valid_model_with_an_odd_name_still_loads(tmp_path, capsys):
    odd = tmp_path / "model.pb"
    shutil.copy(SAMPLES / "clean_mobilenet.onnx", odd)
    code, out, err = run(["check", odd], capsys)
    assert code == 0 and err == ""
