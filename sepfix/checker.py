"""Run the rule catalogue over one model: the engine behind `sepfix check` and `sepfix.check`."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass, field

import onnx

from sepfix import model_io
from sepfix.findings import Finding
from sepfix.graph import GraphIndex
from sepfix.patterns import Block, all_convs, find_blocks
from sepfix.rules import Rule, select_rules


@dataclass
class CheckResult:
    """Findings for one model, with the facts a report shows beside them."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    blocks: list[Block] = field(default_factory=list)
    conv_kinds: dict[str, int] = field(default_factory=dict)
    ir_version: int | None = None
    opsets: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None
    suppressed: int = 0  # findings silenced by a per-file or per-node ignore of the configuration
    restorable_blocks: int | None = None  # canonical blocks `sepfix repair` would add; None: not counted

    @property
    def mangles(self) -> list[Finding]:
        """Findings that count towards the exit code (info-level advice does not)."""
        return [f for f in self.findings if f.counts]

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


def run_rules(index: GraphIndex, rules: list[Rule]) -> list[Finding]:
    """Every rule's matches on one view, as findings in code, graph and node order."""
    findings: list[Finding] = []
    for rule in rules:
        findings.extend(rule.findings(index))
    order = {scope.path: i for i, scope in enumerate(index.scopes)}
    findings.sort(key=lambda f: (f.code, order.get(f.graph, 0), f.match.anchor.index))
    return findings


def check_loaded(loaded: model_io.LoadedModel, rules: list[Rule], path: str = "<model>",
                 advice: bool = False) -> CheckResult:
    """Findings on one loaded model; info-level ones only when `advice` is asked for."""
    start = time.perf_counter()
    index = GraphIndex(loaded)
    findings = [f for f in run_rules(index, rules) if advice or f.counts]
    kinds = Counter(info.kind.value for info in all_convs(index))
    model = loaded.model
    return CheckResult(
        path=path,
        findings=findings,
        blocks=find_blocks(index.inlined()),
        conv_kinds=dict(sorted(kinds.items())),
        ir_version=model.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        seconds=time.perf_counter() - start,
    )


def check_path(path: str | os.PathLike, rules: list[Rule], advice: bool = False, detach: bool = False) -> CheckResult:
    """Check one file; a SepfixError (bad file) propagates for the caller to report.

    `detach` drops each finding's match (it holds the model) so the result can cross to
    another process."""
    start = time.perf_counter()
    loaded = model_io.load_for_check(path)
    result = check_loaded(loaded, rules, str(path), advice)
    if detach:
        result.findings = [f.detached() for f in result.findings]
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
        return check_loaded(model_io.from_proto(model), rules, advice=advice).findings
    return check_path(model, rules, advice).findings
