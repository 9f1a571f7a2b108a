"""docs/rules/ is generated from the rule modules: it must be current, and every rule must
carry the documentation sections the pages (and `sepfix explain`) are made of."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sepfix.rules import all_rules

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gen_rule_docs.py"
REQUIRED = ["What it does", "Why is this bad", "Example", "Use instead", "Fix safety"]


def gen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_rule_docs_are_current():
    done = gen("--check")
    assert done.returncode == 0, f"docs/rules is stale; run `python scripts/gen_rule_docs.py`\n{done.stderr}"


@pytest.mark.parametrize("rule", all_rules(), ids=lambda r: r.code)
def test_rule_docstring_has_the_sections(rule):
    sections = re.findall(r"^## (.+?)\s*$", rule.doc, re.M)
    missing = [s for s in REQUIRED if s not in sections]
    assert not missing, f"{rule.code} docstring lacks sections {missing}"
    assert rule.sources and rule.summary and rule.level and rule.applicability


def test_check_mode_sees_stale_missing_and_leftover_pages(tmp_path):
    assert gen("--check", "--out", str(tmp_path)).returncode == 1  # nothing written yet
    assert gen("--out", str(tmp_path)).returncode == 0
    assert gen("--check", "--out", str(tmp_path)).returncode == 0
    pages = {p.name for p in tmp_path.iterdir()}
    assert pages == {f"{r.code}.md" for r in all_rules()} | {"README.md"}
    first = all_rules()[0]
    page = tmp_path / f"{first.code}.md"
    assert page.read_text().startswith(f"# {first.code} {first.name}\n")
    page.write_text(page.read_text() + "edited by hand\n")
    assert gen("--check", "--out", str(tmp_path)).returncode == 1
    gen("--out", str(tmp_path))
    (tmp_path / "SEP999.md").write_text("# a removed rule\n")
    done = gen("--check", "--out", str(tmp_path))
    assert done.returncode == 1 and "SEP999.md" in done.stderr
    gen("--out", str(tmp_path))
    assert not (tmp_path / "SEP999.md").exists()
