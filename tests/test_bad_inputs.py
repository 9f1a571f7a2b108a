"""Every case of tests/bad_inputs.py through `python -m sepfix` check, validate and repair.

A bad input must give exit 2 and ONE line on stderr naming the problem, never a traceback; no
command may change the input's bytes or leave an output or a temporary file behind when it
fails; an escaping external-data path is refused before anything outside the model's folder is
read. The commands run once per case, all cases in parallel (a session fixture), and each
test asserts on one case's results.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest

from tests import bad_inputs

ROOT = Path(__file__).resolve().parent.parent
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _case_names() -> list[str]:
    with tempfile.TemporaryDirectory() as folder:
        names = [case.name for case in bad_inputs.build(Path(folder) / "corpus")]
        for path, dirs, _ in os.walk(folder):  # the corpus has read-only folders
            for d in dirs:
                os.chmod(os.path.join(path, d), 0o755)
    return names


CASES = _case_names()


def _drop_file_powers() -> None:
    """In the child, before exec: root without the capabilities that bypass file modes, so a
    mode-000 file or a mode-555 folder stops it as it stops any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _restriction():
    """(preexec_fn, None) to run restricted cases, or (None, reason) to skip them."""
    if os.geteuid() != 0:
        return None, None
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_drop_file_powers, check=True)
    except (subprocess.SubprocessError, OSError) as error:
        return None, f"running as root and cannot drop CAP_DAC_OVERRIDE ({error})"
    return _drop_file_powers, None


@dataclass
class Run:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    changed: list[str]  # input files whose bytes changed (or vanished)
    stray: list[str]  # temporary files left anywhere in the case folder
    outputs: list[str]  # files under out/ afterwards

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _snapshot(folder: Path) -> dict[str, str]:
    hashes = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file() or "out" in path.relative_to(folder).parts:
            continue
        try:
            hashes[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
        except PermissionError:
            hashes[str(path.relative_to(folder))] = "unreadable"
    return hashes


def _run(case: bad_inputs.Case, args: list[str], preexec) -> Run:
    before = _snapshot(case.folder)
    proc = subprocess.run(
        [sys.executable, "-m", "sepfix", *args], cwd=case.folder, capture_output=True, text=True,
        preexec_fn=preexec if case.restricted else None, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    after = _snapshot(case.folder)
    changed = sorted(name for name in before if after.get(name) != before[name])
    stray = sorted(str(p) for p in case.folder.rglob("*.tmp"))
    out = case.folder / "out"
    outputs = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    return Run(args, proc.returncode, proc.stdout, proc.stderr, changed, stray, outputs)


def _run_case(case: bad_inputs.Case, preexec) -> dict[str, Run]:
    runs = {"check": _run(case, ["check", case.model], preexec)}
    if case.check == 2:
        runs["validate"] = _run(case, ["validate", case.model], preexec)
    if case.repair is not None:
        runs["repair"] = _run(case, ["repair", case.model, "-o", str(case.output_path)], preexec)
    if case.in_place is not None:
        runs["in_place"] = _run(case, ["repair", case.model, "--in-place"], preexec)
    return runs


def _old_atime(path: Path) -> None:
    """An access time older than the modification time: with relatime, any read updates it."""
    st = path.stat()
    os.utime(path, ns=(st.st_mtime_ns - 10**12, st.st_mtime_ns))


def _reads_update_atime(folder: Path) -> bool:
    probe = folder / "atime-probe"
    probe.write_bytes(b"x" * 64)
    _old_atime(probe)
    before = probe.stat().st_atime_ns
    probe.read_bytes()
    return probe.stat().st_atime_ns != before


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    cases = {case.name: case for case in bad_inputs.build(root / "corpus")}
    preexec, skip_reason = _restriction()
    sentinel = root / "corpus" / "sentinel.data"
    _old_atime(sentinel)
    sentinel_atime = sentinel.stat().st_atime_ns
    runnable = [c for c in cases.values() if not (c.restricted and skip_reason)]
    with ThreadPoolExecutor(max_workers=max(2, (os.cpu_count() or 2) + 1)) as pool:
        results = dict(zip([c.name for c in runnable], pool.map(lambda c: _run_case(c, preexec),
                                                                  runnable)))
    atime_kept = sentinel.stat().st_atime_ns == sentinel_atime if _reads_update_atime(root) else None
    yield cases, results, skip_reason, atime_kept
    for path, dirs, _ in os.walk(root):
        for d in dirs:
            os.chmod(os.path.join(path, d), 0o755)


@pytest.mark.parametrize("name", CASES)
def test_case(corpus, name):
    cases, results, skip_reason, _ = corpus
    case = cases[name]
    if name not in results:
        pytest.skip(skip_reason)
    runs = results[name]
    expected = {"check": case.check, "validate": 2, "repair": case.repair, "in_place": case.in_place}
    for command, run in runs.items():
        where = f"{name}: sepfix {' '.join(run.args)}"
        shown = f"\n--- stdout\n{run.stdout[-2000:]}\n--- stderr\n{run.stderr[-2000:]}"
        assert run.returncode == expected[command], f"{where}: exit {run.returncode}{shown}"
        assert "Traceback" not in run.stdout + run.stderr, f"{where}: traceback{shown}"
        assert not run.stray, f"{where}: left temporary files {run.stray}"
        if run.returncode == 2:
            assert len(run.lines) == 1, f"{where}: expected one line on stderr{shown}"
            assert run.lines[0].startswith("sepfix: error: "), f"{where}{shown}"
            assert case.needle.lower() in run.lines[0].lower(), f"{where}: {case.needle!r} not in {run.lines[0]!r}"
        if command != "in_place" or run.returncode != 0:
            assert not run.changed, f"{where}: changed the input files {run.changed}"
        if command == "repair":
            made = [n for n in run.outputs if n != "afile"]
            if run.returncode != 0:
                assert not made, f"{where}: failed but left {made}"
            elif case.output is None:
                assert case.output_path.name in made, f"{where}: wrote nothing"
                onnx.load(str(case.output_path))  # complete, with its external data if any
        if command == "in_place" and run.returncode == 0:
            onnx.load(str(case.model_path))


def test_escaping_external_data_is_never_read(corpus):
    """The sentinel outside the model folders is refused by path, before any read (atime kept)."""
    cases, results, _, atime_kept = corpus
    for name in ("external_relative_escape", "external_absolute_escape"):
        for run in results[name].values():
            assert "escapes the model folder" in run.stderr, run.stderr
    if atime_kept is None:
        pytest.skip("this file system does not update access times on read (noatime): checked by message only")
    assert atime_kept, "a command read the file outside the model folder"


def test_restricted_cases_ran_or_were_skipped_for_a_reason(corpus):
    cases, results, skip_reason, _ = corpus
    restricted = [name for name, case in cases.items() if case.restricted]
    if skip_reason:
        pytest.skip(f"{len(restricted)} permission cases: {skip_reason}")
    assert all(name in results for name in restricted)
