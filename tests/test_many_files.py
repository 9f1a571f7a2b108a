"""check, repair and validate over several models: folders walked to *.onnx, --files-from,
--shard, -j, per-model reports and the worst exit code."""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import pytest

import sepfix
from tests.conftest import run_sepfix as run

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"


@pytest.fixture
def folder(tmp_path):
    """models/{clean,sep001,sub/sep008}.onnx, a weights file and a text file that are not models."""
    models = tmp_path / "models"
    (models / "sub").mkdir(parents=True)
    shutil.copy(SAMPLES / "clean_mobilenet.onnx", models / "clean.onnx")
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", models / "sep001.onnx")
    shutil.copy(SAMPLES / "sep008_detached_bias.onnx", models / "sub" / "sep008.onnx")
    (models / "weights.onnx.data").write_bytes(b"\0" * 64)
    (models / "notes.txt").write_text("not a model")
    return models


def names(document) -> list[str]:
    return [Path(m["path"]).relative_to(m["path"].split("models")[0] + "models").as_posix()
            for m in document["models"]]


def test_check_walks_folders_to_onnx_files(folder, capsys):
    code, out, _ = run(["check", "--format", "json", folder], capsys)
    document = json.loads(out)
    assert code == 1 and names(document) == ["clean.onnx", "sep001.onnx", "sub/sep008.onnx"]
    # a folder and a file inside it: the model is checked once
    code, out, _ = run(["check", "--format", "json", folder / "sep001.onnx", folder], capsys)
    assert names(json.loads(out)) == ["sep001.onnx", "clean.onnx", "sub/sep008.onnx"]


def test_worst_exit_code_and_the_other_models_still_run(folder, capsys):
    (folder / "broken.onnx").write_bytes(b"\x08\x07garbage")
    code, out, err = run(["check", folder], capsys)
    assert code == 2 and "broken.onnx" in err and "SEP001" in out and "SEP008" in out
    assert run(["check", folder / "clean.onnx"], capsys)[0] == 0


def test_files_from_a_file_and_stdin(folder, tmp_path, capsys, monkeypatch):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# models to check\n{folder / 'clean.onnx'}\n\n{folder / 'sub'}\n")
    code, out, _ = run(["check", "--format", "json", "--files-from", listing], capsys)
    assert code == 1 and [Path(m["path"]).name for m in json.loads(out)["models"]] == ["clean.onnx", "sep008.onnx"]
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{folder / 'clean.onnx'}\n"))
    code, out, _ = run(["check", "--files-from", "-"], capsys)
    assert code == 0 and "1 model" in out
    code, _, err = run(["check", "--files-from", tmp_path / "missing.txt"], capsys)
    assert code == 2 and "missing.txt" in err
    assert run(["check"], capsys)[0] == 2  # nothing to check is a usage error


def test_shards_split_the_sorted_list_deterministically(capsys):
    everything = sorted(str(p) for p in SAMPLES.glob("*.onnx"))
    seen = []
    for index in (1, 2, 3):
        code, out, _ = run(["check", "--format", "json", "--shard", f"{index}/3", SAMPLES], capsys)
        seen.append([m["path"] for m in json.loads(out)["models"]])
    assert sorted(sum(seen, [])) == everything and all(abs(len(s) - len(everything) / 3) < 1 for s in seen)
    assert seen[0] == everything[0::3]
    for bad in ("0/3", "4/3", "1-3", "a/b"):
        code, _, err = run(["check", "--shard", bad, SAMPLES], capsys)
        assert code == 2 and "--shard" in err


def test_verbose_prints_throughput_for_several_models(folder, capsys):
    code, out, err = run(["check", "-v", folder], capsys)
    assert "models/s," in err and "models/s," not in out
    _, _, err = run(["check", "-v", folder / "clean.onnx"], capsys)
    assert "models/s," not in err


def test_repair_in_place_over_a_folder_reports_per_file(folder, capsys):
    clean_before = (folder / "clean.onnx").read_bytes()
    code, out, err = run(["repair", "--in-place", folder], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert any(line.startswith(f"PASSED: {folder / 'sep001.onnx'}: 2 fixes; replaced") for line in lines)
    assert any(line.startswith(f"PASSED: {folder / 'sub' / 'sep008.onnx'}:") for line in lines)
    assert any(line.startswith(f"PASSED: {folder / 'clean.onnx'}: nothing to repair; left it as it was")
               for line in lines)
    assert lines[-1].startswith("PASSED: 3 models: 2 repaired, 1 with nothing to repair")
    assert (folder / "clean.onnx").read_bytes() == clean_before
    for model in ("sep001.onnx", "sub/sep008.onnx"):
        assert sepfix.check(str(folder / model)) == []
    assert [p.name for p in folder.rglob(".*.tmp")] == []


def test_repair_exit_code_is_the_worst_over_models(folder, capsys):
    (folder / "broken.onnx").write_bytes(b"\x08\x07garbage")
    shutil.copy(SAMPLES / "sep005_split_depthwise.onnx", folder / "sep005.onnx")  # refused at rtol=atol=0
    shutil.copy(SAMPLES / "sep004_runtime_weights_transpose.onnx", folder / "sep004.onnx")  # bit-exact
    code, out, err = run(["repair", "--in-place", "--rtol", "0", "--atol", "0", folder], capsys)
    assert code == 2 and "broken.onnx" in err
    assert f"FAILED: {folder / 'sep005.onnx'}: 2 fixes; validation refused it: nothing written" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: 6 models:")
    # Refused at rtol=atol=0: sep005 (merged convs), sub/sep008 (a folded affine) and sep001 (a
    # dense and a depthwise kernel sum in different orders): each moves the last bits.
    assert "3 refused by validation" in out and "1 unreadable" in out
    assert sepfix.check(str(folder / "sep004.onnx")) == []  # the others were repaired
    (folder / "broken.onnx").unlink()
    code, _, _ = run(["repair", "--in-place", "--rtol", "0", "--atol", "0", folder], capsys)
    assert code == 1


def test_repair_parallel_gives_the_same_reports(folder, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)

    def reports(path, jobs):
        code, out, _ = run(["repair", "--in-place", "--format", "json", "-j", jobs, path], capsys)
        document = json.loads(out)
        for report in document["reports"]:
            report.pop("seconds")
            report["input"] = Path(report["input"]).name
            report["output"] = Path(report["output"]).name
        return code, document

    assert reports(folder, "1") == reports(copy, "2")


def test_repair_output_takes_exactly_one_model(folder, tmp_path, capsys):
    for args in (["repair", folder / "clean.onnx", folder / "sep001.onnx", "-o", tmp_path / "x.onnx"],
                 ["repair", folder, "-o", tmp_path / "x.onnx"]):
        code, out, err = run(args, capsys)
        assert code == 2 and "-o OUT takes exactly one model" in err and "--in-place" in err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.onnx").exists()
    code, _, err = run(["repair", folder / "clean.onnx", folder / "sep001.onnx"], capsys)
    assert code == 2 and "--in-place" in err
    code, out, _ = run(["repair", "--dry-run", folder], capsys)
    assert code == 0 and "dry run" in out and sepfix.check(str(folder / "sep001.onnx"))


def test_validate_takes_several_models(folder, capsys):
    code, out, err = run(["validate", folder / "clean.onnx", folder / "sub"], capsys)
    assert code == 1, err  # sub/sep008.onnx has findings that fail a check: validate says so
    assert f"{folder / 'clean.onnx'}: against" in out and f"{folder / 'sub' / 'sep008.onnx'}: against" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: 2 models: 1 passed, 1 failed")
    code, _, err = run(["validate", folder / "clean.onnx", folder / "sep001.onnx", "--reference",
                        folder / "clean.onnx"], capsys)
    assert code == 2 and "--reference" in err
    (folder / "broken.onnx").write_bytes(b"\x08\x07garbage")
    code, out, err = run(["validate", "--format", "json", folder / "clean.onnx", folder / "broken.onnx"], capsys)
    document = json.loads(out)
    assert code == 2 and "broken.onnx" in err and len(document["reports"]) == 1
    assert document["errors"][0]["path"].endswith("broken.onnx")


def test_a_folder_without_models_is_an_error_but_an_excluded_one_is_not(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no model here")
    code, _, err = run(["check", empty], capsys)
    assert code == 2 and "is a directory with no .onnx model in it" in err
    (empty / "old.onnx").write_bytes(b"")
    (tmp_path / "sepfix.toml").write_text('extend-exclude = ["old.onnx"]\n')
    code, _, err = run(["check", empty], capsys)
    assert code == 0 and "no .onnx model to act on" in err
