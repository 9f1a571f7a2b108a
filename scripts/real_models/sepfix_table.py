"""Markdown table of what `sepfix check --advice` says about each model (findings by code, blocks).

    python scripts/real_models/sepfix_table.py tests/data/real/tf/*.onnx [--sepfix CMD]

Runs the CLI once per file (JSON output), so an error or a traceback in one model shows as that
model's row: its last stderr line. The CLI runs in a temporary directory: with
`--sepfix "python -m sepfix"` and PYTHONPATH=<a sepfix checkout>, a run from inside another
checkout would import that checkout's sepfix instead (python -m puts the cwd first on sys.path).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=tempfile.gettempdir())


def _short(text: str, path: str) -> str:
    return text.replace(path, Path(path).name).replace("|", "/")


def _summary(cmd: list[str], path: str) -> str:
    """The last line of the text output (its summary line, or its error line)."""
    r = _run([*cmd, "check", "--advice", path])
    lines = (r.stdout + r.stderr).strip().splitlines() or ["(no output)"]
    return _short(re.sub(r" \([0-9.]+ s\)$", "", lines[-1]), path)[:200]


def row(cmd: list[str], path: str) -> str:
    path = os.path.abspath(path)
    r = _run([*cmd, "check", "--advice", "--format", "json", path])
    name = Path(path).name
    text = _summary(cmd, path)
    try:
        d = json.loads(r.stdout)
    except json.JSONDecodeError:
        last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"| {name} | {r.returncode} | - | - | `{_short(last, path)[:160]}` | {text} |"
    m = d["models"][0]
    if m.get("error"):
        return f"| {name} | {r.returncode} | - | - | `{_short(str(m['error']), path)[:160]}` | {text} |"
    codes = collections.Counter(f["code"] for f in m["findings"])
    fixable = sum(f["fixable"] for f in m["findings"])
    codes_s = ", ".join(f"{c} x{n}" for c, n in sorted(codes.items())) or "none"
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(m.get("conv_kinds", {}).items()))
    return f"| {name} | {r.returncode} | {codes_s} ({fixable} fixable) | {len(m['blocks'])} | {kinds} | {text} |"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--sepfix", default="sepfix", help="command that runs sepfix (default: sepfix)")
    a = ap.parse_args(argv)
    cmd = shlex.split(a.sepfix)
    print("| model | exit | findings (--advice) | blocks | conv kinds / error | text output, last line |")
    print("|---|---|---|---|---|---|")
    for p in a.models:
        print(row(cmd, p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
