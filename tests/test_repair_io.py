"""`sepfix repair` near the cost of a copy: it reads into Python only the weights a rule inspects,
copies the others file to file, and proves files onnxruntime can map (issue 11)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sepfix import model_io, repairer
from sepfix.repairer import RepairOptions, repair_file
from sepfix.testing import builders
from tests.rules.test_sep001_dense_depthwise import dense_depthwise

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _model() -> onnx.ModelProto:
    """Dense-depthwise convs (SEP001) of 256 channels between pointwise convs: 0.8 MB of
    pointwise weights no rule reads beside 7 MB of dense kernels SEP001 must read."""
    return dense_depthwise(builders.mobilenet_like(channels=(256, 256, 256), spatial=8))


def _write(folder: Path, external: bool) -> Path:
    folder.mkdir()
    path = folder / "model.onnx"
    if external:
        onnx.save(_model(), str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=1024)
    else:
        onnx.save(_model(), str(path))
    return path


def _outputs(path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.default_rng(2).standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
            .astype(np.float32) for i in session.get_inputs()}
    return session.run(None, feed)


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external"])
def test_repair_reads_only_the_weights_a_rule_inspects(tmp_path, monkeypatch, external):
    source = _write(tmp_path / "in", external)
    spans = {}  # (file, offset) -> tensor name, for every weight left in the files
    loaded = model_io.load_for_check(source)
    for tensor in loaded.model.graph.initializer:
        where = loaded.location(tensor)
        if where is not None:
            spans[(where.file, where.offset)] = tensor.name
    read = []
    original_read = model_io.LoadedModel._read

    def recording(self, where, nbytes):
        read.append(spans.get((where.file, where.offset), f"{where.file}@{where.offset}"))
        return original_read(self, where, nbytes)

    monkeypatch.setattr(model_io.LoadedModel, "_read", recording)
    monkeypatch.setattr(model_io, "load_full", lambda *a, **k: pytest.fail("repair loaded the whole model"))
    report = repair_file(str(source), str(tmp_path / "out.onnx"))
    assert report.written and report.validation.passed and len(report.fixes) == 3
    # Read: the dense kernels SEP001 inspects (the three it repairs, and the stem's 3x3 conv,
    # dense by right, whose first output channel it looks at). Never the pointwise weights.
    inspected = {name for name in spans.values() if "dw_conv" in name} | {"stem_conv_weight"}
    assert set(read) <= inspected and len(set(read) - {"stem_conv_weight"}) == 3, sorted(set(read))
    for got, want in zip(_outputs(tmp_path / "out.onnx"), _outputs(source)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.fixture
def proofs(monkeypatch):
    """Every inline model counts as large (proven in external-data form); the paths the proof
    gave onnxruntime are recorded."""
    monkeypatch.setattr(repairer, "PROOF_MAPPED_ABOVE", 0)
    seen = []
    validate = repairer._validate

    def recording(original, candidate, options):
        seen.append((Path(original), Path(candidate)))
        return validate(original, candidate, options)

    monkeypatch.setattr(repairer, "_validate", recording)
    return seen


def test_large_inline_model_is_proven_from_mapped_files(tmp_path, proofs):
    source = _write(tmp_path / "in", external=False)
    out = tmp_path / "out" / "fixed.onnx"
    out.parent.mkdir()
    report = repair_file(str(source), str(out))
    assert report.written and report.validation.passed
    (original, candidate), = proofs
    # The input as a temporary external-data copy beside OUT; the candidate as a view of itself.
    assert original.name == "original.onnx" and original.parent.name.startswith(".sepfix-proof-")
    assert candidate.name.endswith(".view.onnx") and candidate.parent == out.parent
    assert sorted(p.name for p in out.parent.iterdir()) == ["fixed.onnx"]  # nothing of the proof left
    assert sorted(p.name for p in source.parent.iterdir()) == ["model.onnx"]
    for got, want in zip(_outputs(out), _outputs(source)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_mapped_proof_is_as_strict(tmp_path, proofs):
    """Merging split convs moves the last bits: a zero tolerance refuses it, mapped or not."""
    out = tmp_path / "fixed.onnx"
    report = repair_file(str(SAMPLES / "sep005_split_depthwise.onnx"), str(out),
                         options=RepairOptions(rtol=0.0, atol=0.0))
    assert proofs and proofs[0][1].name.endswith(".view.onnx")
    assert not report.written and not report.validation.passed
    assert list(tmp_path.iterdir()) == []


def test_dry_run_proves_in_a_temporary_folder(tmp_path, proofs):
    source = _write(tmp_path / "in", external=False)
    report = repair_file(str(source), dry_run=True)
    assert report.validation.passed and not report.written
    assert sorted(p.name for p in source.parent.iterdir()) == ["model.onnx"]
    assert not proofs[0][1].parent.exists()  # the temporary folder is gone


def _limited(limit: int):
    """In the child: files may not grow past `limit` bytes (EFBIG instead of SIGXFSZ), as on a
    full disk."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external"])
def test_a_write_that_runs_out_of_space_leaves_nothing(tmp_path, external):
    source = _write(tmp_path / "in", external)
    before = {p.name: p.read_bytes() for p in source.parent.iterdir()}
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "sepfix", "repair", str(source), "-o", str(out / "fixed.onnx")],
                          capture_output=True, text=True, preexec_fn=_limited(200_000), check=False,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot write" in done.stderr and "File too large" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert list(out.iterdir()) == []  # no partial model, no data file
    assert {p.name: p.read_bytes() for p in source.parent.iterdir()} == before
