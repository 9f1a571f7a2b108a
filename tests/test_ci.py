"""Tests that cannot hide: missing ../shared fixtures fail under CI, and .ci/run fails on a
skip whose reason is not listed in .ci/allowed-skips."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_shared

ROOT = Path(__file__).resolve().parents[1]
CI = ROOT / ".ci"


def _check_skips():
    spec = importlib.util.spec_from_file_location("check_skips", CI / "check_skips.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OUTPUT = """\
..s.....sss
=========================== short test summary info ============================
SKIPPED [1] tests/test_model_io.py:459: root can read anything
SKIPPED [18] tests/test_tensorrt_layer_info.py:32: TensorRT layer-info fixtures not found at /x/shared/fixtures
SKIPPED [2] tests/test_bad_inputs.py:156: running as root and cannot drop CAP_DAC_OVERRIDE (EPERM)
======================== 120 passed, 21 skipped in 61.00s ======================
"""


def test_skip_lines_are_read_from_the_short_summary():
    check = _check_skips()
    assert check.skips(OUTPUT) == [
        (1, "tests/test_model_io.py:459", "root can read anything"),
        (18, "tests/test_tensorrt_layer_info.py:32", "TensorRT layer-info fixtures not found at /x/shared/fixtures"),
        (2, "tests/test_bad_inputs.py:156", "running as root and cannot drop CAP_DAC_OVERRIDE (EPERM)"),
    ]
    allowed = check.allowed_reasons((CI / "allowed-skips").read_text())
    assert [s[1] for s in check.unexpected(OUTPUT, allowed)] == ["tests/test_tensorrt_layer_info.py:32"]


def test_check_skips_script_exit_codes(tmp_path):
    log = tmp_path / "pytest.log"
    log.write_text(OUTPUT)
    done = subprocess.run([sys.executable, str(CI / "check_skips.py"), str(log), str(CI / "allowed-skips")],
                          capture_output=True, text=True)
    assert done.returncode == 1 and "TensorRT layer-info fixtures not found" in done.stderr
    assert "root can read anything" not in done.stderr
    log.write_text(OUTPUT.replace("SKIPPED [18] tests/test_tensorrt_layer_info.py:32: TensorRT layer-info "
                                  "fixtures not found at /x/shared/fixtures\n", ""))
    done = subprocess.run([sys.executable, str(CI / "check_skips.py"), str(log)], capture_output=True, text=True)
    assert done.returncode == 0 and "3 skipped tests" in done.stdout


def test_allowed_skips_are_only_the_root_permission_ones():
    reasons = _check_skips().allowed_reasons((CI / "allowed-skips").read_text())
    assert reasons and all("root" in reason for reason in reasons)


def test_ci_run_is_the_readme_command_with_skip_reasons_checked():
    run = (CI / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    second = re.findall(r"```sh\n(.*?)\n```", readme, re.S)[1]
    assert second == 'python3 -m pip install -e ".[test]" && python3 -m pytest -rs'
    assert 'python3 -m pip install -q -e ".[test]" && python3 -m pytest -rs' in run
    assert 'export CI="${CI:-1}"' in run and "check_skips.py" in run and "tee" in run and "pipefail" in run


def test_missing_shared_fixture_fails_under_ci_and_skips_otherwise(tmp_path, monkeypatch):
    missing = tmp_path / "shared" / "fixtures" / "nothing.json"
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="CI must provide ../shared"):
        require_shared(missing, "a fixture")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="a plain clone has no ../shared"):
        require_shared(missing, "a fixture")
    assert require_shared(tmp_path, "a folder") == tmp_path


def test_no_test_turns_a_crashing_command_into_a_skip():
    """The guards that skipped when `sepfix repair/validate --help` failed are gone for good."""
    for path in (ROOT / "tests").glob("test_*.py"):
        text = path.read_text()
        assert "not there yet" not in text or path.name == "test_ci.py", path
        assert not re.search(r"skip\w*\(.*--help", text), path
