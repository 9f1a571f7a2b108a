"""The spinner shows only on a terminal: never in pipes, logs or CI, never with --quiet."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "sample_models" / "sep005_split_depthwise.onnx"


def run_on_terminal(args: list[str], tmp_path: Path) -> tuple[int, str]:
    """Run sepfix with stderr on a pseudo-terminal; returns the exit code and what stderr showed."""
    leader, follower = pty.openpty()
    done = subprocess.run([sys.executable, "-m", "sepfix", *args], stdout=subprocess.PIPE, stderr=follower,
                          cwd=tmp_path, env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 65536):
            shown += chunk
    except OSError:  # the terminal closed: everything was read
        pass
    os.close(leader)
    return done.returncode, shown.decode(errors="replace")


def test_spinner_on_a_terminal_only(tmp_path):
    code, shown = run_on_terminal(["repair", str(SAMPLE), "-o", "a.onnx"], tmp_path)
    assert code == 0 and "repairing and validating" in shown
    code, shown = run_on_terminal(["repair", str(SAMPLE), "-o", "b.onnx", "--quiet"], tmp_path)
    assert code == 0 and shown == ""
    piped = subprocess.run([sys.executable, "-m", "sepfix", "validate", str(tmp_path / "a.onnx"), "--provider", "cpu"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert piped.returncode == 0 and "validating" not in piped.stderr
