"""Run the rule catalogue over one model: the engine behind `sepfix check` and `sepfix.check`."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field
from types import ModuleType

import onnx

from sepfix import model_io
from sepfix.findings import Finding
from sepfix.graph import GraphIndex
from sepfix.patterns import SeparableBlock, all_convs, find_blocks
from sepfix.rules import select_rules


@dataclass
class CheckResult:
    """Findings for one model, with the facts a report shows beside them."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    blocks: list[SeparableBlock] = field(default_factory=list)
    conv_kinds: dict[str, int] = field(default_factory=dict)
    ir_version: int | None = None
    opsets: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    suppressed: int = 0  # findings silenced by a per-file or per-node ignore of the configuration
    restorable_blocks: int | None = None  # canonical blocks `sepfix repair` would add; None: not counted

    @property
    def mangles(self) -> list[Finding]:
        """Findings that count towards the exit code (info-level ones, advice, do not)."""
        return [f for f in self.findings if f.severity != "info"]

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "error": self.error,
            "ir_version": self.ir_version,
            "opsets": self.opsets,
            "findings": [f.to_dict() for f in self.findings],
            "blocks": [b.to_dict() for b in self.blocks],
            "conv_kinds": self.conv_kinds,
            "restorable_blocks": self.restorable_blocks,
            "suppressed": self.suppressed,
            "seconds": round(self.seconds, 4),
        }


def run_rules(index: GraphIndex, rules: list[ModuleType]) -> list[Finding]:
    findings: list[Finding] = []
    for rule in rules:
        findings.extend(rule.detect(index))
    order = {scope.path: i for i, scope in enumerate(index.scopes)}
    findings.sort(key=lambda f: (f.code, order.get(f.graph, 0), f.details.get("node_index", 0)))
    return findings


def check_loaded(loaded: model_io.LoadedModel, rules: list[ModuleType], path: str = "<model>") -> CheckResult:
    start = time.perf_counter()
    index = GraphIndex(loaded)
    findings = run_rules(index, rules)
    _levels(findings, rules)
    kinds = Counter(info.kind.value for info in all_convs(index))
    model = loaded.model
    return CheckResult(
        path=path,
        findings=findings,
        blocks=find_blocks(index),
        conv_kinds=dict(sorted(kinds.items())),
        ir_version=model.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        seconds=time.perf_counter() - start,
    )


def _levels(findings: list[Finding], rules) -> None:
    """Every finding's severity as one of error | warning | info: its own (advice's "note" is
    info), or its rule's level when it has none of those."""
    from sepfix.config import LEVELS, default_level, normalize_level, rule_code

    by_code = {rule_code(rule): rule for rule in rules}
    for finding in findings:
        level = normalize_level(finding.severity)
        if level not in LEVELS:
            rule = by_code.get(finding.code)
            level = normalize_level(default_level(rule)) if rule is not None else "warning"
        finding.severity = level


def check_path(path: str | os.PathLike, rules: list[ModuleType]) -> CheckResult:
    """Check one file; a SepfixError (bad file) propagates for the caller to report."""
    start = time.perf_counter()
    loaded = model_io.load_for_check(path)
    result = check_loaded(loaded, rules, str(path))
    result.seconds = time.perf_counter() - start
    return result


def check(
    model: str | os.PathLike | onnx.ModelProto,
    select: list[str] | None = None,
    ignore: list[str] | None = None,
    advice: bool = False,
) -> list[Finding]:
    """Findings for a model file or an in-memory ModelProto (e.g. right after torch.onnx.export).

    Raises `sepfix.SepfixError` for a file that cannot be read as an ONNX model.
    """
    rules = select_rules(select, ignore, advice)
    if isinstance(model, onnx.ModelProto):
        return check_loaded(model_io.from_proto(model), rules).findings
    return check_path(model, rules).findings
