"""The README's first command (the sepfix part of it) works as the README says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def first_command() -> str:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)\n```", readme, re.S).group(1).strip()
    install = 'python3 -m pip install ".[cpu]" && '
    assert block.startswith(install)
    return block[len(install):]


def test_readme_first_command_checks_repairs_and_passes(tmp_path):
    command = first_command().replace("/tmp/", f"{tmp_path}/")
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    failed = next(i for i, line in enumerate(lines) if line.startswith("FAILED:"))  # the check of every sample
    assert "SEP001" in done.stdout and "SEP009" in done.stdout
    assert any("validation passed" in line for line in lines[failed:])
    assert lines[-1].startswith("PASSED: 0 findings")
    assert (tmp_path / "sep001_fixed.onnx").exists()
