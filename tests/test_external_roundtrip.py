"""Round trip of a model with external data (a few MB) through `sepfix repair`.

The promise (onnx issue 6655 is the bug it avoids): the repaired weights go to a NEW data file
beside OUT; an existing file is never appended to or overwritten, not even one with the very
name onnx would pick. Repairing over an existing OUT works, and so does --in-place; every
result loads with onnx.load and computes what the original computes on onnxruntime.
`scripts/big_model_roundtrip.py` does the same with a model over 2 GB.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sepfix.testing import builders
from tests.rules.test_sep001_dense_depthwise import dense_depthwise

ROOT = Path(__file__).resolve().parent.parent
DATA = "weights.bin"


def _sepfix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sepfix", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _data_files(path: Path) -> set[str]:
    model = onnx.load(str(path), load_external_data=False)
    return {e.value for t in model.graph.initializer for e in t.external_data if e.key == "location"}


def _outputs(path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.default_rng(1).standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
            .astype(np.float32) for i in session.get_inputs()}
    return session.run(None, feed)


def assert_same_outputs(left: Path, right: Path) -> None:
    for a, b in zip(_outputs(left), _outputs(right)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.fixture
def model(tmp_path) -> Path:
    """Dense-depthwise convs of 256 channels (SEP001), ~5 MB of weights in weights.bin."""
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    proto = dense_depthwise(builders.mobilenet_like(channels=(256, 256), spatial=8))
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location=DATA,
                    size_threshold=1024)
    assert (folder / DATA).stat().st_size > 4_000_000
    return path


def test_repair_writes_a_new_data_file_and_never_touches_an_existing_one(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    target = out / "repaired.onnx"
    # The name onnx (and sepfix's first choice) would use for OUT's data: it must stay as it is.
    squatter = out / "repaired.onnx.data"
    squatter.write_bytes(b"somebody else's weights" * 1000)
    before = (_digest(squatter), squatter.stat().st_mtime_ns)
    originals = {p.name: _digest(p) for p in model.parent.iterdir()}

    result = _sepfix("repair", str(model), "-o", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (_digest(squatter), squatter.stat().st_mtime_ns) == before
    (data,) = _data_files(target)
    assert data not in ("repaired.onnx.data", DATA) and (out / data).is_file()
    assert {p.name: _digest(p) for p in model.parent.iterdir()} == originals  # the input is untouched
    assert sorted(p.name for p in out.iterdir()) == sorted(["repaired.onnx", "repaired.onnx.data", data])
    onnx.checker.check_model(onnx.load(str(target)))
    assert_same_outputs(model, target)


def test_data_goes_beside_out_with_out_s_name(model, tmp_path):
    out = tmp_path / "elsewhere"
    out.mkdir()
    result = _sepfix("repair", str(model), "-o", str(out / "r.onnx"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _data_files(out / "r.onnx") == {"r.onnx.data"}
    assert sorted(p.name for p in out.iterdir()) == ["r.onnx", "r.onnx.data"]
    assert_same_outputs(model, out / "r.onnx")


def test_repair_over_an_existing_out(model, tmp_path):
    target = tmp_path / "repaired.onnx"
    for force in ([], ["--force"]):  # replacing an existing OUT takes --force
        result = _sepfix("repair", str(model), "-o", str(target), *force)
        assert result.returncode == 0, result.stdout + result.stderr
        assert_same_outputs(model, target)
    refused = _sepfix("repair", str(model), "-o", str(target))
    assert refused.returncode == 2 and "--force" in refused.stderr
    # The second run could not reuse the first run's data file (the old OUT read it until the
    # rename), so it wrote another one; once the new OUT was in place, the old file, used by no
    # model any more, was removed.
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".data")] == list(_data_files(target))


def test_in_place_keeps_the_model_loadable_and_equal(model, tmp_path):
    reference = tmp_path / "reference"
    reference.mkdir()
    for p in model.parent.iterdir():
        (reference / p.name).write_bytes(p.read_bytes())

    result = _sepfix("repair", str(model), "--in-place")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SEP001" in result.stdout
    (data,) = _data_files(model)
    assert data != DATA and (model.parent / data).is_file()
    assert not (model.parent / DATA).exists()  # the old data, used by no model now, is gone
    assert "removed the replaced model's old data file weights.bin" in result.stdout
    assert sorted(p.name for p in model.parent.iterdir()) == sorted(["model.onnx", data])
    onnx.checker.check_model(onnx.load(str(model)))
    assert_same_outputs(reference / "model.onnx", model)
    assert _sepfix("check", str(model)).returncode == 0


def test_in_place_keeps_data_another_model_still_uses(model):
    """The old data file stays when a sibling model reads it too; it was never appended to or
    rewritten."""
    old_data = _digest(model.parent / DATA)
    sibling = model.parent / "sibling.onnx"
    sibling.write_bytes(model.read_bytes())
    result = _sepfix("repair", str(model), "--in-place")
    assert result.returncode == 0, result.stdout + result.stderr
    assert _digest(model.parent / DATA) == old_data
    assert_same_outputs(sibling, model)


def test_in_place_with_backup_keeps_the_old_data(model):
    old_data = _digest(model.parent / DATA)
    result = _sepfix("repair", str(model), "--in-place", "--backup")
    assert result.returncode == 0, result.stdout + result.stderr
    backup = model.parent / "model.onnx.bak"
    assert _digest(model.parent / DATA) == old_data and _data_files(backup) == {DATA}
    assert_same_outputs(backup, model)


def test_two_repairs_to_one_out_at_once(model, tmp_path):
    """Both pick a data-file name at the same moment: each must get its own (the name is
    reserved with O_EXCL), or both would append their weights to one file."""
    target = tmp_path / "repaired.onnx"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-m", "sepfix", "repair", str(model), "-o", str(target), "--force"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    for proc in procs:
        assert proc.wait() == 0, proc.stderr.read().decode()
    (data,) = _data_files(target)
    info = onnx.load(str(target), load_external_data=False)
    ends = [int(e["offset"]) + int(e["length"]) for e in (
        {x.key: x.value for x in t.external_data} for t in info.graph.initializer if t.external_data)]
    assert (tmp_path / data).stat().st_size == max(ends)  # one writer, nothing appended after it
    assert_same_outputs(model, target)


def test_out_that_is_the_input_s_data_file_is_refused(model):
    """With --force too: replacing the data file would leave the input without its weights."""
    before = _digest(model.parent / DATA)
    result = _sepfix("repair", str(model), "-o", str(model.parent / DATA), "--force")
    assert result.returncode == 2 and "is a data file the input reads its weights from" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert _digest(model.parent / DATA) == before
