"""The hooks under the real `pre-commit` tool, installed exactly as the README says.

The test repository's `.pre-commit-config.yaml` is the README's snippet as written, but for its
`repo:` URL, which points at a clone of this repository: pre-commit clones that, checks out the
`rev:` the README pins and pip-installs sepfix from it (dependencies from PyPI) into the hook
environments, as it does for a user. When the clone has no tag named like that `rev:` (a CI
checkout, a branch before its release), the test creates it in the clone, on the commit under
test (HEAD). So this module tests committed code: commit before running it. The hook
environments are built once per session.
"""

from __future__ import annotations

import os
import re
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
README_URL = "https://github.com/sepfix/sepfix"
LFS_POINTER = (
    "version https://git-lfs.github.com/spec/v1\n"
    "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
    "size 48311234\n"
)

if shutil.which("git") is None:
    pytest.skip("git is not installed", allow_module_level=True)


def readme_snippet() -> str:
    """The README's pre-commit configuration block, as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## pre-commit"):]
    return re.search(r"```yaml\n(.*?)```", section, re.S).group(1)


def readme_rev() -> str:
    return re.search(r"^\s*rev:\s*(\S+)\s*$", readme_snippet(), re.M).group(1)


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


def _git(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done


@pytest.fixture(scope="session")
def hooks_home(tmp_path_factory) -> Path:
    """A shared home: git config and the pre-commit cache with the hook environments."""
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture(scope="session")
def hook_config(hooks_home) -> str:
    """The README's snippet pointing at a clone of this repository that has the README's tag."""
    env = _env(hooks_home)
    clone = hooks_home / "sepfix-clone"
    _git("clone", "--quiet", str(ROOT), str(clone), cwd=hooks_home, env=env)
    rev = readme_rev()
    has_tag = subprocess.run(["git", "rev-parse", "--quiet", "--verify", f"refs/tags/{rev}"], cwd=clone, env=env,
                             capture_output=True).returncode == 0
    if not has_tag:
        _git("-c", "user.name=sepfix test", "-c", "user.email=sepfix@example.invalid",
             "tag", rev, "HEAD", cwd=clone, env=env)
    snippet = readme_snippet()
    assert README_URL in snippet
    return snippet.replace(README_URL, str(clone))


@pytest.fixture(scope="session")
def installed(hooks_home, hook_config, tmp_path_factory) -> None:
    """pre-commit builds both hook environments once (pip install from the clone, PyPI for the rest)."""
    repo = Repo(tmp_path_factory.mktemp("install") / "repo", hooks_home, hook_config)
    done = repo.pre_commit("install-hooks")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


class Repo:
    def __init__(self, path: Path, home: Path, config: str):
        self.path, self.env = path, _env(home)
        path.mkdir()
        self.git("init", "-q")
        self.git("config", "user.name", "sepfix test")
        self.git("config", "user.email", "sepfix@example.invalid")
        self.git("config", "commit.gpgsign", "false")
        (path / ".pre-commit-config.yaml").write_text(config)
        self.git("add", ".pre-commit-config.yaml")
        self.git("commit", "-q", "-m", "pre-commit config")
        done = self.pre_commit("install")
        assert done.returncode == 0, done.stdout + done.stderr

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=self.path, env=self.env, capture_output=True, text=True, timeout=1200)

    def git(self, *args: str) -> subprocess.CompletedProcess:
        done = self.run("git", *args)
        assert done.returncode == 0, done.stderr
        return done

    def pre_commit(self, *args: str) -> subprocess.CompletedProcess:
        done = self.run(sys.executable, "-m", "pre_commit", *args)
        done.output = done.stdout + done.stderr
        return done

    def commit(self, *files: str) -> subprocess.CompletedProcess:
        """`git commit` of `files` through the installed hook; output is stdout + stderr."""
        self.git("add", *files)
        done = self.run("git", "commit", "-m", f"add {' '.join(files)}")
        done.output = done.stdout + done.stderr
        return done

    def commits(self) -> int:
        return int(self.run("git", "rev-list", "--count", "HEAD").stdout.strip())


@pytest.fixture
def repo(tmp_path, hooks_home, hook_config, installed):
    return Repo(tmp_path / "repo", hooks_home, hook_config)


def test_manifest_is_valid_for_pre_commit():
    hooks = {hook["id"]: hook for hook in load_manifest(str(MANIFEST))}
    assert set(hooks) == {"sepfix-check", "sepfix-repair"}
    assert hooks["sepfix-check"]["entry"] == "sepfix-hook-check" and hooks["sepfix-check"]["require_serial"]
    assert hooks["sepfix-repair"]["stages"] == ["manual"]
    for hook in hooks.values():
        assert hook["language"] == "python"
        assert shutil.which(hook["entry"], path=str(Path(sys.executable).parent)), hook["entry"]


def test_readme_pins_the_release_tag():
    import sepfix

    assert readme_rev() == f"v{sepfix.__version__}"
    assert "repo: local" not in readme_snippet()


def test_commit_of_a_mangled_model_is_refused_with_the_repair_command(repo):
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", repo.path / "x.onnx")
    done = repo.commit("x.onnx")
    assert done.returncode != 0, done.output
    assert "sepfix check" in done.output and "Failed" in done.output
    assert "SEP001" in done.output and "dense-depthwise" in done.output
    assert "pre-commit run sepfix-repair --hook-stage manual --files x.onnx" in done.output
    assert "Traceback" not in done.output
    assert repo.commits() == 1  # nothing committed


def test_a_finding_suppressed_in_sepfix_toml_does_not_block_a_commit(repo):
    (repo.path / "sepfix.toml").write_text('[per-file-ignores]\n"legacy/*.onnx" = ["SEP001"]\n')
    (repo.path / "legacy").mkdir()
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", repo.path / "legacy" / "old.onnx")
    done = repo.commit("sepfix.toml", "legacy/old.onnx")
    assert done.returncode == 0 and "Passed" in done.output, done.output
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", repo.path / "new.onnx")
    done = repo.commit("new.onnx")
    assert done.returncode != 0 and "new.onnx" in done.output and "SEP001" in done.output, done.output
    assert "legacy/old.onnx" not in done.output
    assert repo.commits() == 2


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


def test_repair_hook_fixes_the_model_so_the_check_passes(repo):
    shutil.copy(SAMPLES / "sep001_dense_depthwise.onnx", repo.path / "x.onnx")
    before = (repo.path / "x.onnx").read_bytes()
    fixed = repo.pre_commit("run", "sepfix-repair", "--hook-stage", "manual", "--files", "x.onnx")
    assert fixed.returncode == 1, fixed.output  # a fixer that changed a file fails
    assert (repo.path / "x.onnx").read_bytes() != before
    hook_lines = [line for line in fixed.output.splitlines() if "SEP001" in line or "validation" in line
                  or line.startswith(("PASSED", "FAILED", "sepfix-hook", "sepfix:"))]
    assert hook_lines and all("x.onnx" in line for line in hook_lines), fixed.output
    assert "Traceback" not in fixed.output
    checked = repo.pre_commit("run", "sepfix-check", "--files", "x.onnx")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    again = repo.pre_commit("run", "sepfix-repair", "--hook-stage", "manual", "--files", "x.onnx")
    assert again.returncode == 0, again.stdout + again.stderr  # nothing left to change
