"""The rule catalogue: one module per rule, listed here in code order.

A rule module has CODE, NAME, SUMMARY, FIX_SAFETY ("safe": bit-exact rewrite, or "validated":
may move the last bits, proven by the validator), SOURCES (real-world reports), a module
docstring that is its documentation, `detect(index) -> Iterable[Finding]` and
`fix(graph, finding) -> str` (the rewrite, describing what it changed).
"""

from __future__ import annotations

from types import ModuleType

from sepfix.errors import SepfixError
from sepfix.rules import (
    adv001_channel_alignment,
    sep001_dense_depthwise,
    sep002_group_mismatch,
    sep003_kernel_shape,
    sep004_runtime_weights,
    sep005_split_depthwise,
    sep006_matmul_pointwise,
    sep007_layout_sandwich,
    sep008_detached_bias,
    sep009_inflated_kernel,
)

RULES: list[ModuleType] = [
    sep001_dense_depthwise,
    sep002_group_mismatch,
    sep003_kernel_shape,
    sep004_runtime_weights,
    sep005_split_depthwise,
    sep006_matmul_pointwise,
    sep007_layout_sandwich,
    sep008_detached_bias,
    sep009_inflated_kernel,
]

# Advice is not a mangle: shown only with --advice, never changes the exit code.
ADVICE: list[ModuleType] = [adv001_channel_alignment]


def all_rules() -> list[ModuleType]:
    return RULES + ADVICE


def find_rule(code_or_name: str) -> ModuleType:
    wanted = code_or_name.strip().upper()
    for rule in all_rules():
        if wanted in (rule.CODE, rule.NAME.upper()):
            return rule
    raise SepfixError(f"unknown rule {code_or_name!r}: `sepfix rules` lists them")


def select_rules(
    select: list[str] | None = None, ignore: list[str] | None = None, advice: bool = False
) -> list[ModuleType]:
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


def _matches(rule: ModuleType, token: str) -> bool:
    token = token.strip()
    return rule.CODE.startswith(token.upper()) or rule.NAME == token.lower()
