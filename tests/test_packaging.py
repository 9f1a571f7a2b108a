"""Packaging and release: ONNX Runtime out of the base install (one import site, a clear
message when missing, `check` without it), the version in one place, `--version`, LICENSE,
CHANGELOG, and the README naming the extra to install and the tag to pin."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import sepfix

ROOT = Path(__file__).resolve().parents[1]
SEP001 = ROOT / "sample_models" / "sep001_dense_depthwise.onnx"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def without_onnxruntime(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`sepfix ARGS` in a fresh interpreter where `import onnxruntime` fails, as in a base install."""
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "from sepfix.cli import main\n"
            f"raise SystemExit(main({list(args)!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_check_works_without_onnxruntime():
    done = without_onnxruntime("check", str(SEP001))
    assert done.returncode == 1 and "SEP001" in done.stdout and done.stderr == "", done.stderr
    done = without_onnxruntime("check", "--format", "json", str(ROOT / "sample_models"))
    assert done.returncode == 1 and '"restorable_blocks": ' in done.stdout, done.stderr


def test_commands_that_run_models_name_the_extra_to_install(tmp_path):
    for args in (["repair", str(SEP001), "-o", str(tmp_path / "f.onnx")], ["validate", str(SEP001)]):
        done = without_onnxruntime(*args)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert "ONNX Runtime" in lines[0] and 'sepfix[cpu]' in lines[0] and 'sepfix[gpu]' in lines[0]
    assert not (tmp_path / "f.onnx").exists()
    done = without_onnxruntime("repair", str(SEP001), "-o", str(tmp_path / "g.onnx"), "--no-validate")
    assert done.returncode == 0 and (tmp_path / "g.onnx").exists(), done.stderr


def test_onnxruntime_is_imported_in_one_place():
    pattern = re.compile(r"^\s*(import onnxruntime|from onnxruntime)", re.M)
    importers = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "sepfix").rglob("*.py")
                       if pattern.search(path.read_text()))
    assert importers == ["sepfix/runtime.py"]


def test_onnxruntime_is_an_extra_not_a_dependency():
    project = PYPROJECT["project"]
    assert not any(dep.startswith("onnxruntime") for dep in project["dependencies"])
    extras = project["optional-dependencies"]
    assert extras["cpu"] == ["onnxruntime>=1.17"] and extras["gpu"] == ["onnxruntime-gpu>=1.17"]
    assert "onnxruntime>=1.17" in extras["test"]


def test_version_in_one_place_and_on_the_command_line():
    assert PYPROJECT["project"]["dynamic"] == ["version"] and "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "sepfix.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", sepfix.__version__)
    for flag in ("--version", "-V"):
        done = subprocess.run([sys.executable, "-m", "sepfix", flag], capture_output=True, text=True,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0 and done.stdout == f"sepfix {sepfix.__version__}\n"


def test_changelog_license_and_readme_agree_with_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {sepfix.__version__} " in changelog
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text and len(license_text.splitlines()) > 190
    assert PYPROJECT["project"]["license"] == {"text": "Apache-2.0"}
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"^\s+rev: v(\S+)$", readme, re.M).group(1) == sepfix.__version__
    first = re.search(r"```sh\n(.*?)\n```", readme, re.S).group(1)
    assert first.startswith('python3 -m pip install ".[cpu]" && ')
    assert '".[gpu]"' in readme  # says which extra to pick
