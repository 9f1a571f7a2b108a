"""The rule catalogue: every module here named `sepNNN_name` or `advNNN_name` is a rule.

Adding a rule is adding its module (see `base.py` for the shape) and its test module
`tests/rules/test_sepNNN_name.py`; nothing here lists rules by hand.
"""

from __future__ import annotations

import importlib
import pkgutil
import re

from sepfix.errors import SepfixError
from sepfix.rules.base import Applicability, Level, Match, Rule

__all__ = ["Applicability", "Level", "Match", "Rule", "RULES", "ADVICE", "all_rules", "find_rule", "select_rules"]

_RULE_MODULE = re.compile(r"^(sep|adv)\d{3}_[a-z0-9_]+$")


def _discover() -> list[Rule]:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if _RULE_MODULE.match(m.name))
    return [Rule(importlib.import_module(f"{__name__}.{name}")) for name in names]


_ALL = _discover()
RULES: list[Rule] = [r for r in _ALL if not r.is_advice]
# Advice is not a mangle: shown only with --advice, never changes the exit code.
ADVICE: list[Rule] = [r for r in _ALL if r.is_advice]


def all_rules() -> list[Rule]:
    return RULES + ADVICE


def find_rule(code_or_name: str) -> Rule:
    wanted = code_or_name.strip().upper()
    for rule in all_rules():
        if wanted in (rule.code, rule.name.upper()):
            return rule
    raise SepfixError(f"unknown rule {code_or_name!r}: `sepfix rules` lists them")


def select_rules(
    select: list[str] | None = None, ignore: list[str] | None = None, advice: bool = False
) -> list[Rule]:
    """Rules whose code starts with a selected prefix and with no ignored prefix.

    Prefixes work as in ruff: `SEP00` selects SEP001–SEP009; names (`dense-depthwise`) work too.
    """
    candidates = all_rules() if advice else list(RULES)
    select = [s for s in (select or []) if s]
    ignore = [s for s in (ignore or []) if s]
    for token in select + ignore:
        if not any(_matches(rule, token) for rule in all_rules()):
            raise SepfixError(f"unknown rule or prefix {token!r} in --select/--ignore: `sepfix rules` lists them")
    if select:
        candidates = [r for r in all_rules() if any(_matches(r, s) for s in select)]
    return [r for r in candidates if not any(_matches(r, s) for s in ignore)]


def _matches(rule: Rule, token: str) -> bool:
    token = token.strip()
    return rule.code.startswith(token.upper()) or rule.name == token.lower()
