"""What a rule is: one module with a match and a rewrite over the same view.

A rule module holds CODE, NAME, SUMMARY, LEVEL, APPLICABILITY, SOURCES, its documentation as
the module docstring, and two functions:

    match(view) -> Iterator[Match]     # binds the pattern's roles to view nodes; never mutates
    rewrite(ctx, match) -> str         # acts on exactly the bound nodes; says what it changed

`Rule` wraps such a module so the rest of sepfix reads one typed object (and so a rule can be
sent to a worker process: it pickles as its module's name).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
from types import ModuleType
from typing import Any, Iterator

from sepfix.findings import Finding
from sepfix.graph import GraphIndex, Node


class Level(str, Enum):
    """How much a finding matters, by evidence (see ../DESIGN: error > warning > info)."""

    ERROR = "error"  # an invalid model, or one TensorRT cannot parse or build
    WARNING = "warning"  # a measured or documented slowdown
    INFO = "info"  # non-canonical but absorbed: shown with --advice, never fails a check


class Applicability(str, Enum):
    """Fix safety, as ruff has it: safe fixes are bit-exact; validated ones need the proof."""

    SAFE = "safe"
    VALIDATED = "validated"
    NONE = "not fixable"


@dataclass
class Match:
    """One occurrence of a rule's pattern.

    `anchor` is the node the finding is reported at; `roles` binds every other node the
    rewrite acts on (a node or a list of nodes per role name); `bound` names the tensors it
    reads (weights, biases); `evidence` is what the user sees in JSON `details`.
    """

    anchor: Node
    message: str
    roles: dict[str, Node | list[Node]] = field(default_factory=dict)
    bound: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    why_not_fixable: str | None = None
    level: Level | None = None  # overrides the rule's level for this occurrence

    @property
    def fixable(self) -> bool:
        return self.why_not_fixable is None

    def nodes(self) -> list[Node]:
        """The anchor, then every bound node once, in role order."""
        seen = {id(self.anchor)}
        spanned = [self.anchor]
        for value in self.roles.values():
            for node in value if isinstance(value, list) else [value]:
                if id(node) not in seen:
                    seen.add(id(node))
                    spanned.append(node)
        return spanned


class Rule:
    """A rule module seen as one object."""

    def __init__(self, module: ModuleType):
        self.module = module
        self.code: str = module.CODE
        self.name: str = module.NAME
        self.summary: str = module.SUMMARY
        self.level = Level(module.LEVEL)
        self.applicability = Applicability(module.APPLICABILITY)
        self.sources: list[str] = list(module.SOURCES)
        self.doc: str = (module.__doc__ or "").strip()

    def __repr__(self) -> str:
        return f"Rule({self.code} {self.name})"

    def __reduce__(self):
        return (load_rule, (self.module.__name__,))

    @property
    def is_advice(self) -> bool:
        return self.code.startswith("ADV")

    def match(self, view: GraphIndex) -> Iterator[Match]:
        return self.module.match(view)

    def rewrite(self, ctx, match: Match) -> str:
        return self.module.rewrite(ctx, match)

    def findings(self, view: GraphIndex) -> list[Finding]:
        return [self.finding(m) for m in self.match(view)]

    def finding(self, match: Match) -> Finding:
        """What the user sees of a match; the match itself rides along for the rewrite."""
        why = match.why_not_fixable if self.applicability is not Applicability.NONE else None
        message = match.message if why is None or why in match.message else f"{match.message} (not rewritten: {why})"
        evidence = dict(match.evidence)
        if why is not None:
            evidence["why_not_fixable"] = why
        return Finding(
            code=self.code,
            name=self.name,
            node=match.anchor.label,
            message=message,
            fixable=match.fixable and self.applicability is not Applicability.NONE,
            graph=match.anchor.scope.path,
            nodes=[n.label for n in match.nodes()],
            details=evidence,
            severity=(match.level or self.level).value,
            match=match,
        )


def load_rule(module_name: str) -> Rule:
    return Rule(importlib.import_module(module_name))


def fmt_shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
