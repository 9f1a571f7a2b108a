"""Configuration files: found as ruff finds its own, combined with the command line as ruff
combines them, and every key doing what sepfix.config says (select, ignore, advice, exclude,
per-file and per-node ignores, levels, repair tolerances and shapes, --show-settings)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

import sepfix
from sepfix import config as cfg
from sepfix.errors import SepfixError
from sepfix.testing import builders
from tests.conftest import run_sepfix as run

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
SEP001 = SAMPLES / "sep001_dense_depthwise.onnx"  # findings at block0_dw_conv and block1_dw_conv


def check_json(args, capsys):
    code, out, err = run(["check", "--format", "json", *args], capsys)
    return code, json.loads(out), err


def codes(document, name=None) -> list[str]:
    return sorted(f["code"] for m in document["models"] if name is None or Path(m["path"]).name == name
                  for f in m["findings"])


@pytest.fixture
def tree(tmp_path):
    """project/models/{a,b}.onnx (SEP001 each), project/models/legacy/old.onnx (SEP001)."""
    models = tmp_path / "project" / "models"
    (models / "legacy").mkdir(parents=True)
    for path in (models / "a.onnx", models / "b.onnx", models / "legacy" / "old.onnx"):
        shutil.copy(SEP001, path)
    return tmp_path / "project"


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------ finding


def test_nearest_configuration_wins_and_pyproject_without_table_is_passed_over(tree, capsys):
    write(tree / "pyproject.toml", '[tool.sepfix]\nignore = ["SEP001"]\n')
    write(tree / "models" / "pyproject.toml", "[tool.black]\nline-length = 100\n")  # no [tool.sepfix]
    code, doc, _ = check_json([tree / "models" / "a.onnx"], capsys)
    assert code == 0 and codes(doc) == []  # the parent's pyproject applies
    write(tree / "models" / "legacy" / "sepfix.toml", 'select = ["SEP002"]\n')
    assert cfg.find(tree / "models" / "legacy") == tree / "models" / "legacy" / "sepfix.toml"
    # sepfix.toml sets no ignore: SEP001 is not selected there either, so old.onnx is clean too
    code, doc, _ = check_json([tree / "models" / "legacy" / "old.onnx"], capsys)
    assert code == 0
    write(tree / "models" / "legacy" / "sepfix.toml", 'select = ["SEP001"]\n')
    code, doc, _ = check_json([tree / "models" / "legacy" / "old.onnx", tree / "models" / "a.onnx"], capsys)
    assert code == 1 and codes(doc, "old.onnx") == ["SEP001", "SEP001"] and codes(doc, "a.onnx") == []


def test_file_preference_in_one_folder(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.sepfix]\nadvice = true\n")
    assert cfg.find(tmp_path) == tmp_path / "pyproject.toml"
    write(tmp_path / "sepfix.toml", "advice = false\n")
    assert cfg.find(tmp_path) == tmp_path / "sepfix.toml"
    write(tmp_path / ".sepfix.toml", "advice = false\n")
    assert cfg.find(tmp_path) == tmp_path / ".sepfix.toml"


def test_config_option_overrides_discovery_and_isolated_ignores_files(tree, tmp_path, capsys):
    write(tree / "sepfix.toml", 'ignore = ["SEP001"]\n')
    other = write(tmp_path / "strict.toml", 'select = ["SEP"]\n')
    model = tree / "models" / "a.onnx"
    assert run(["check", model], capsys)[0] == 0
    assert run(["check", "--config", other, model], capsys)[0] == 1
    assert run(["check", "--isolated", model], capsys)[0] == 1
    code, _, err = run(["check", "--config", tmp_path / "missing.toml", model], capsys)
    assert code == 2 and "missing.toml" in err


# ------------------------------------------------------------------------------------ selection


def test_command_line_combines_with_configuration_as_ruff_does(tree, capsys):
    model = tree / "models" / "a.onnx"
    write(tree / "sepfix.toml", 'ignore = ["SEP001"]\n')
    assert run(["check", model], capsys)[0] == 0
    assert run(["check", "--select", "SEP001", model], capsys)[0] == 1  # --select starts again
    write(tree / "sepfix.toml", 'select = ["SEP001"]\n')
    assert run(["check", model], capsys)[0] == 1
    assert run(["check", "--ignore", "SEP001", model], capsys)[0] == 0  # --ignore removes from it
    # Within one layer the more specific selector wins: select SEP001 beats ignore SEP00.
    write(tree / "sepfix.toml", 'select = ["SEP001"]\nignore = ["SEP00"]\n')
    assert run(["check", model], capsys)[0] == 1
    write(tree / "sepfix.toml", 'select = ["SEP00"]\nignore = ["dense-depthwise"]\n')
    assert run(["check", model], capsys)[0] == 0


def test_selection_layers_directly():
    everything = cfg.settings_for("m.onnx", cfg.default_config(), cfg.CommandLine())
    assert "SEP001" in everything.codes and "ADV001" not in everything.codes  # advice is info-level
    config = cfg.Config(path=None, root=Path("."), select=["SEP00"], ignore=["SEP005"])
    settings = cfg.settings_for("m.onnx", config, cfg.CommandLine(ignore=["SEP001"]))
    assert settings.codes == ["SEP002", "SEP003", "SEP004", "SEP006", "SEP007", "SEP008", "SEP009"]
    settings = cfg.settings_for("m.onnx", config, cfg.CommandLine(select=["SEP005"]))
    assert settings.codes == ["SEP005"]
    with pytest.raises(SepfixError, match="SEP999"):
        cfg.settings_for("m.onnx", config, cfg.CommandLine(select=["SEP999"]))


# ------------------------------------------------------------------------------------ ignores


def test_per_file_ignores_are_globs_relative_to_the_config_file(tree, capsys):
    write(tree / "sepfix.toml", '[per-file-ignores]\n"models/a.onnx" = ["SEP001"]\n"legacy/" = ["SEP00"]\n')
    code, doc, _ = check_json([tree / "models"], capsys)
    assert code == 1
    assert codes(doc, "a.onnx") == [] and codes(doc, "old.onnx") == [] and len(codes(doc, "b.onnx")) == 2
    assert doc["summary"]["suppressed"] == 4
    # The same glob from a config one folder down no longer matches (it is anchored there).
    shutil.move(tree / "sepfix.toml", tree / "models" / "sepfix.toml")
    code, doc, _ = check_json([tree / "models"], capsys)
    assert len(codes(doc, "a.onnx")) == 2 and codes(doc, "old.onnx") == []


def test_per_node_ignores_silence_one_node_in_check_and_repair(tree, capsys):
    write(tree / "pyproject.toml",
          '[tool.sepfix.per-node-ignores]\n"a.onnx" = {"SEP001" = ["block0_dw_conv"]}\n"b.onnx" = {"SEP0" = ["block*"]}\n')
    code, doc, _ = check_json([tree / "models" / "a.onnx", tree / "models" / "b.onnx"], capsys)
    a, b = doc["models"]
    assert [f["node"] for f in a["findings"]] == ["block1_dw_conv"] and a["suppressed"] == 1
    assert b["findings"] == [] and b["suppressed"] == 2
    # repair leaves the suppressed node as it is
    code, out, _ = run(["repair", tree / "models" / "a.onnx", "--in-place", "--format", "json"], capsys)
    assert code == 0 and [f["node"] for f in json.loads(out)["fixes"]] == ["block1_dw_conv"]
    left = sepfix.check(str(tree / "models" / "a.onnx"))
    assert [(f.code, f.node) for f in left] == [("SEP001", "block0_dw_conv")]


# ------------------------------------------------------------------------------------ levels


def test_levels_lower_a_rule_to_info_and_raise_advice_to_warning(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(SEP001, model)
    write(tmp_path / "sepfix.toml", '[levels]\nSEP001 = "info"\n')
    code, doc, _ = check_json([model], capsys)
    assert code == 0 and doc["models"][0]["findings"] == []  # info: only with --advice
    code, doc, _ = check_json(["--advice", model], capsys)
    assert code == 0 and {f["severity"] for f in doc["models"][0]["findings"]} == {"info"}
    write(tmp_path / "sepfix.toml", '[levels]\nSEP001 = "error"\n')
    code, doc, _ = check_json([model], capsys)
    assert code == 1 and {f["severity"] for f in doc["models"][0]["findings"]} == {"error"}
    odd = tmp_path / "odd.onnx"
    onnx.save(builders.separable_block(c_in=6, c_out=10), odd)  # ADV001: channels not a multiple of 8
    assert run(["check", odd], capsys)[0] == 0
    write(tmp_path / "sepfix.toml", '[levels]\nADV = "warning"\n')
    code, doc, _ = check_json([odd], capsys)
    assert code == 1 and codes(doc) and set(codes(doc)) == {"ADV001"}


def test_advice_key_and_no_advice_flag(tmp_path, capsys):
    odd = tmp_path / "odd.onnx"
    onnx.save(builders.separable_block(c_in=6, c_out=10), odd)
    write(tmp_path / "sepfix.toml", "advice = true\n")
    code, doc, _ = check_json([odd], capsys)
    assert code == 0 and set(codes(doc)) == {"ADV001"}
    code, doc, _ = check_json(["--no-advice", odd], capsys)
    assert codes(doc) == []


# ------------------------------------------------------------------------------------ exclude


def test_exclude_applies_to_folder_walks_and_with_force_exclude(tree, capsys):
    write(tree / "sepfix.toml", 'extend-exclude = ["legacy/", "models/b.*"]\n')
    (tree / "models" / ".git").mkdir()
    shutil.copy(SEP001, tree / "models" / ".git" / "hidden.onnx")  # default exclude
    code, doc, _ = check_json([tree], capsys)
    assert [Path(m["path"]).name for m in doc["models"]] == ["a.onnx"]
    explicit = tree / "models" / "legacy" / "old.onnx"
    code, doc, _ = check_json([explicit], capsys)  # named explicitly: checked, as in ruff
    assert len(doc["models"]) == 1
    code, out, err = run(["check", "--force-exclude", explicit], capsys)
    assert code == 0 and "no .onnx model" in err


def test_glob_semantics():
    root = Path("/r")

    def match(patterns, path, is_dir=False):
        return cfg.glob_match([cfg.Glob.compile(p, root) for p in patterns], root / path, is_dir)

    assert match(["*.onnx"], "a/b/c.onnx") and not match(["*.onnx"], "a/b/c.onnx.data")
    assert match(["b/c.onnx"], "b/c.onnx") and not match(["b/c.onnx"], "a/b/c.onnx")  # anchored
    assert match(["/c.onnx"], "c.onnx") and not match(["/c.onnx"], "a/c.onnx")
    assert match(["a/**/x.onnx"], "a/x.onnx") and match(["a/**/x.onnx"], "a/1/2/x.onnx")
    assert match(["legacy/"], "m/legacy/x.onnx") and not match(["legacy/"], "m/legacy")  # folders only
    assert match(["legacy/"], "m/legacy", is_dir=True)
    assert not match(["*.onnx", "!keep.onnx"], "keep.onnx") and match(["*.onnx", "!keep.onnx"], "x.onnx")
    assert match(["m?del[0-9].onnx"], "model3.onnx") and not match(["m?del[!0-9].onnx"], "model3.onnx")
    assert not cfg.glob_match([cfg.Glob.compile("*.onnx", root)], Path("/elsewhere/x.onnx"))  # not below root


# ------------------------------------------------------------------------------------ repair


def test_repair_table_sets_tolerances_and_shapes_and_the_command_line_wins(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    shutil.copy(SEP001, model)
    write(tmp_path / "sepfix.toml", '[repair]\nrtol = 0.001\natol = 0.002\ninput-shape = ["input:1,3,16,16"]\n')
    code, out, _ = run(["repair", model, "-o", tmp_path / "f.onnx", "--format", "json"], capsys)
    validation = json.loads(out)["validation"]
    assert code == 0 and (validation["rtol"], validation["atol"]) == (0.001, 0.002)
    code, out, _ = run(["repair", model, "-o", tmp_path / "g.onnx", "--format", "json", "--atol", "0.5"], capsys)
    assert json.loads(out)["validation"]["atol"] == 0.5
    write(tmp_path / "sepfix.toml", '[repair]\ninput-shape = {input = [1, 3, 16]}\n')
    code, _, err = run(["repair", model, "-o", tmp_path / "h.onnx"], capsys)
    assert code == 2 and "input" in err  # rank 3 for a rank-4 input: the proof refuses it


def test_show_settings(tree, capsys):
    write(tree / "pyproject.toml", '[tool.sepfix]\nextend-exclude = ["legacy/"]\n[tool.sepfix.levels]\nSEP004 = "error"\n'
                                   '[tool.sepfix.per-file-ignores]\n"a.onnx" = ["SEP001"]\n'
                                   '[tool.sepfix.repair]\nrtol = 0.01\n')
    code, out, _ = run(["check", "--show-settings", tree / "models" / "a.onnx"], capsys)
    assert code == 0
    assert f"config: {tree / 'pyproject.toml'}" in out
    assert "  SEP004 error" in out and "  SEP001 warning" in out and "ADV001" not in out
    assert "per-file ignores here: SEP001" in out and "rtol 0.01" in out and "legacy/" in out
    code, out, _ = run(["check", "--show-settings", "--ignore", "SEP00", tree / "models" / "legacy" / "old.onnx"],
                       capsys)
    assert "excluded when walking folders: yes" in out and "SEP001" not in out


# ------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("name, text, needle", [
    ("sepfix.toml", "selct = []\n", "'selct'"),
    ("pyproject.toml", "[tool.sepfix]\nadvise = true\n", "'advise'"),
    ("sepfix.toml", "[repair]\nrtl = 1\n", "'rtl'"),
    ("sepfix.toml", 'select = ["SEP999"]\n', "SEP999"),
    ("sepfix.toml", 'select = "SEP001"\n', "select must be a list of strings"),
    ("sepfix.toml", '[levels]\nSEP001 = "fatal"\n', "levels.SEP001"),
    ("sepfix.toml", '[per-node-ignores]\n"x.onnx" = {"SEP404" = ["n"]}\n', "SEP404"),
    ("sepfix.toml", "advice = 1\n", "advice must be true or false"),
    ("sepfix.toml", "select = [\n", "invalid TOML"),
])
def test_bad_configuration_is_one_line_naming_the_key(tmp_path, capsys, name, text, needle):
    model = tmp_path / "m.onnx"
    shutil.copy(SEP001, model)
    write(tmp_path / name, text)
    for command in (["check", model], ["repair", model, "--dry-run"]):
        code, out, err = run(command, capsys)
        assert code == 2 and needle in err and name in err, err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
