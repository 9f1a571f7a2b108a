"""The hooks under the real `pre-commit` tool, in a throw-away git repository.

pre-commit would clone a `repo: <url>` at a commit and see only committed code, so the test
repository declares the same hooks as `.pre-commit-hooks.yaml` with `repo: local`,
`language: system` and `python -m sepfix.hooks`: they run this checkout as it is now.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pre_commit = pytest.importorskip("pre_commit", reason="pre-commit is not installed (pip install pre-commit)")
from pre_commit.clientlib import load_manifest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
MANIFEST = ROOT / ".pre-commit-hooks.yaml"
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 48311234\n"
)

if shutil.which("git") is None:
    pytest.skip("git is not installed", allow_module_level=True)


def _repair_exists() -> bool:
    done = subprocess.run([sys.executable, "-m", "sepfix", "repair", "--help"], capture_output=True)
    return done.returncode == 0


def _env(home: Path) -> dict[str, str]:
    """Git and pre-commit isolated from the user's configuration and from any enclosing hook."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    config = home / "gitconfig"
    config.touch()
    env.update(
        GIT_CONFIG_GLOBAL=str(config),
        GIT_CONFIG_NOSYSTEM="1",
        PRE_COMMIT_HOME=str(home / "pre-commit-cache"),
        PRE_COMMIT_COLOR="never",
        NO_COLOR="1",
    )
    return env


def _config() -> str:
    """The manifest's hooks, rewritten to run this checkout's code (see the module docstring)."""
    entry = {"sepfix-check": "check", "sepfix-repair": "repair"}
    lines = ["repos:", "- repo: local", "  hooks:"]
    for hook in load_manifest(str(MANIFEST)):
        lines += [
            f"  - id: {hook['id']}",
            f"    name: {hook['name']}",
            f"    entry: {shlex.quote(sys.executable)} -m sepfix.hooks {entry[hook['id']]}",
            "    language: system",
            f"    files: '{hook['files']}'",
            f"    require_serial: {str(hook['require_serial']).lower()}",
        ]
        if hook.get("stages"):
            lines.append(f"    stages: [{', '.join(hook['stages'])}]")
    return "\n".join(lines) + "\n"


class Repo:
    def __init__(self, path: Path, home: Path):
        self.path, self.env = path, _env(home)
        path.mkdir()
        self.git("init", "-q")
        self.git("config", "user.name", "sepfix test")
        self.git("config", "user.email", "sepfix@example.invalid")
        self.git("config", "commit.gpgsign", "false")
        (path / ".pre-commit-config.yaml").write_text(_config())
        self.git("add", ".pre-commit-config.yaml")
        self.git("commit", "-q", "-m", "pre-commit config")
        self.pre_commit("install")

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=self.path, env=self.env, capture_output=True, text=True)

    def git(self, *args: str) -> subprocess.CompletedProcess:
        done = self.run("git", *args)
        assert done.returncode == 0, done.stderr
        return done

    def pre_commit(self, *args: str) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "pre_commit", *args)

    def commit(self, *files: str) -> subprocess.CompletedProcess:
        """`git commit` of `files` through the installed hook; output is stdout + stderr."""
        self.git("add", *files)
        done = self.run("git", "commit", "-m", f"add {' '.join(files)}")
        done.output = done.stdout + done.stderr
        return done


@pytest.fixture
def repo(tmp_path):
    return Repo(tmp_path / "repo", tmp_path)


def test_manifest_is_valid_for_pre_commit():
    hooks = {hook["id"]: hook for hook in load_manifest(str(MANIFEST))}
    assert set(hooks) == {"sepfix-check", "sepfix-repair"}
    assert hooks["sepfix-check"]["entry"] == "sepfix-hook-check" and hooks["sepfix-check"]["require_serial"]
    assert hooks["sepfix-repair"]["stages"] == ["manual"]
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert shutil.which(hook["entry"], path=str(Path(sys.executable).parent)), hook["entry"]


def test_commit_of_a_mangled_model_is_refused(repo):
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", repo.path / "x.onnx")
    done = repo.commit("x.onnx")
    assert done.returncode != 0, done.output
    assert "sepfix check" in done.output and "Failed" in done.output
    assert "SEP001" in done.output and "dense-depthwise" in done.output
    assert "Traceback" not in done.output
    assert repo.run("git", "rev-list", "--count", "HEAD").stdout.strip() == "1"  # nothing committed


def test_commit_of_a_clean_model_passes(repo):
    shutil.copy(SAMPLES / "clean_mobilenet.onnx", repo.path / "clean.onnx")
    done = repo.commit("clean.onnx")
    assert done.returncode == 0, done.output
    assert "Passed" in done.output


def test_commit_of_an_lfs_pointer_is_refused_with_a_reason(repo):
    (repo.path / "model.onnx").write_text(LFS_POINTER)
    done = repo.commit("model.onnx")
    assert done.returncode != 0, done.output
    assert "Git LFS" in done.output and "git lfs pull" in done.output
    assert "Traceback" not in done.output


def test_changed_external_data_checks_the_model_that_reads_it(repo):
    """Staging only the weights file still checks (and refuses) the model that references it."""
    import onnx

    model = onnx.load(str(SAMPLES / "sep001_dense_depthwise.onnx"))
    onnx.save(model, str(repo.path / "ext.onnx"), save_as_external_data=True,
              location="ext.onnx.data", size_threshold=64)
    (repo.path / "notes.data").write_bytes(b"not referenced by any model")
    repo.git("add", "ext.onnx")
    repo.git("commit", "-q", "--no-verify", "-m", "the model, without its weights")
    done = repo.commit("ext.onnx.data", "notes.data")
    assert done.returncode != 0 and "ext.onnx" in done.output and "SEP001" in done.output, done.output


@pytest.mark.skipif(not _repair_exists(), reason="`sepfix repair --help` exits non-zero: the repair command is not there yet")
def test_repair_hook_fixes_the_model_so_the_check_passes(repo):
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", repo.path / "x.onnx")
    before = (repo.path / "x.onnx").read_bytes()
    fixed = repo.pre_commit("run", "sepfix-repair", "--hook-stage", "manual", "--files", "x.onnx")
    assert fixed.returncode == 1, fixed.stdout + fixed.stderr  # a fixer that changed a file fails
    assert (repo.path / "x.onnx").read_bytes() != before
    checked = repo.pre_commit("run", "sepfix-check", "--files", "x.onnx")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    again = repo.pre_commit("run", "sepfix-repair", "--hook-stage", "manual", "--files", "x.onnx")
    assert again.returncode == 0, again.stdout + again.stderr  # nothing left to change
