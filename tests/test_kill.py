"""Crash safety: `sepfix repair MODEL --in-place` killed with SIGKILL at any moment of its run.

After every kill MODEL is either the original (same bytes, and for external data the same data
file) or the complete validated result (what an uninterrupted in-place repair writes, computed
once in a copy), and it loads with onnx.load and runs on onnxruntime. The kill points step the
delay from 0 to a little past the typical run time, for an inline model and for one with
external data; two repairs started together on one file end the same way. The runs go in
parallel to keep CI time down (which shifts the timing; the delays still cover the whole run).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sepfix.testing import builders
from tests.rules.test_sep001_dense_depthwise import dense_depthwise

ROOT = Path(__file__).resolve().parent.parent
INLINE_POINTS = 36
EXTERNAL_POINTS = 18
DATA = "model.onnx.data"
WORKERS = max(2, os.cpu_count() or 2)


def _model() -> onnx.ModelProto:
    """Dense-depthwise (SEP001) convs of 512 channels: ~30 MB of weights, a run of ~1 s."""
    return dense_depthwise(builders.mobilenet_like(channels=(512, 512, 512), spatial=8))


def _write(model: onnx.ModelProto, folder: Path, external: bool) -> Path:
    folder.mkdir(parents=True)
    path = folder / "model.onnx"
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=DATA, size_threshold=1024)
    else:
        path.write_bytes(model.SerializeToString())
    return path


def _repair(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sepfix", "repair", str(path), "--in-place"], cwd=path.parent,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def _content(path: Path) -> bytes:
    """The model with every external tensor read back inline: equal content, whatever the
    data file is called."""
    return onnx.load(str(path)).SerializeToString()


def _run(path: Path) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: np.random.default_rng(0).standard_normal([d if isinstance(d, int) else 1 for d in i.shape])
            .astype(np.float32) for i in session.get_inputs()}
    return session.run(None, feed)


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


class Setup:
    """One original model and the result of repairing it in place without interruption."""

    def __init__(self, root: Path, external: bool):
        self.external = external
        self.original = _write(_model(), root / "original", external)
        self.original_files = _files(self.original.parent)
        self.original_bytes = self.original.read_bytes()
        # The typical run time is taken under the load the kill points run in: WORKERS at once.
        copies = [self._copy(root / f"reference{i}") for i in range(WORKERS)]
        start = time.perf_counter()
        procs = [_repair(path) for path in copies]
        for proc in procs:
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()
        self.seconds = time.perf_counter() - start
        reference = copies[0]
        self.result_bytes = reference.read_bytes()
        assert self.result_bytes != self.original_bytes
        self.result_content = _content(reference)
        self.result_outputs = _run(reference)

    def _copy(self, folder: Path) -> Path:
        shutil.copytree(self.original.parent, folder)
        return folder / "model.onnx"

    def verdict(self, path: Path) -> str:
        """"original" or "result"; fails the test for anything else."""
        now = path.read_bytes()
        files = _files(path.parent)
        if now == self.original_bytes:
            # The original, and (external) the data file it reads, untouched.
            assert all(files.get(name) == digest for name, digest in self.original_files.items()), \
                f"{path}: the original's files changed: {sorted(files)}"
            _run(path)
            return "original"
        if not self.external:
            assert now == self.result_bytes, f"{path}: neither the original nor the repaired bytes"
        else:
            assert _content(path) == self.result_content, f"{path}: not the complete repaired model"
        for left, right in zip(_run(path), self.result_outputs):
            np.testing.assert_array_equal(left, right)
        return "result"


@pytest.fixture(scope="module")
def setups(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    return {"inline": Setup(root / "inline", external=False), "external": Setup(root / "external", external=True)}


def _kill_at(setup: Setup, folder: Path, delay: float) -> str:
    path = setup._copy(folder)
    proc = _repair(path)
    time.sleep(delay)
    with_kill = proc.poll() is None
    if with_kill:
        os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    assert with_kill or proc.returncode == 0, err.decode()
    verdict = setup.verdict(path)
    # A temporary model (or a new data file) left behind: the kill landed inside the safe write.
    mid_write = any(p.name.endswith(".tmp") or (p.name.endswith(".data") and p.name != DATA)
                    for p in folder.iterdir()) and verdict == "original"
    return verdict + (" (killed after its temporary file was made)" if mid_write else "")


def test_sigkill_at_any_point_leaves_original_or_result(setups, tmp_path):
    points = [("inline", setups["inline"].seconds * 1.2 * i / (INLINE_POINTS - 1)) for i in range(INLINE_POINTS)]
    points += [("external", setups["external"].seconds * 1.2 * i / (EXTERNAL_POINTS - 1))
               for i in range(EXTERNAL_POINTS)]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        verdicts = list(pool.map(lambda job: _kill_at(setups[job[1][0]], tmp_path / str(job[0]), job[1][1]),
                                 enumerate(points)))
    seen = {kind: {v.split(" ")[0] for (k, _), v in zip(points, verdicts) if k == kind} for kind in setups}
    counts = {kind: {v: sum(1 for (k, _), w in zip(points, verdicts) if k == kind and w == v) for v in set(verdicts)}
              for kind in setups}
    print(f"{len(points)} kill points; run times {[round(s.seconds, 2) for s in setups.values()]} s; {counts}")
    # The delays span the run: the earliest kills leave the original, the latest the result.
    assert seen["inline"] == {"original", "result"}, seen
    assert seen["external"] == {"original", "result"}, seen


@pytest.mark.parametrize("kind", ["inline", "external"])
def test_two_concurrent_repairs_of_one_file(setups, tmp_path, kind):
    setup = setups[kind]
    for round_ in range(2):
        path = setup._copy(tmp_path / str(round_))
        first, second = _repair(path), _repair(path)
        for proc in (first, second):
            _, err = proc.communicate()
            assert proc.returncode == 0, err.decode()
        assert setup.verdict(path) == "result"
