"""Renderers for check results: text for people, JSON for scripts, SARIF and GitHub for CI."""

from __future__ import annotations

import json
from pathlib import Path

from sepfix import __version__
from sepfix.checker import CheckResult
from sepfix.rules import all_rules

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/sepfix/sepfix"
_SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def render(results: list[CheckResult], fmt: str, color: bool = False) -> str:
    return {"text": render_text, "json": render_json, "sarif": render_sarif, "github": render_github}[fmt](
        results, color=color
    )


def summary(results: list[CheckResult]) -> dict:
    mangles = [f for r in results for f in r.mangles]
    return {
        "models": len(results),
        "models_with_findings": sum(1 for r in results if r.mangles),
        "errors": sum(1 for r in results if r.error),
        "findings": len(mangles),
        "fixable": sum(1 for f in mangles if f.fixable),
        "advice": sum(len(r.findings) - len(r.mangles) for r in results),
        "suppressed": sum(r.suppressed for r in results),
        "blocks": sum(len(r.blocks) for r in results),
        "restorable_blocks": _restorable(results),
    }


def _restorable(results: list[CheckResult]) -> int | None:
    """Blocks `sepfix repair` would restore, over the models where that was counted (None: none was)."""
    counted = [r.restorable_blocks for r in results if r.restorable_blocks is not None]
    return sum(counted) if counted else None


def exit_code(results: list[CheckResult]) -> int:
    if any(r.error for r in results):
        return 2
    return 1 if any(r.mangles for r in results) else 0


def summary_sentence(results: list[CheckResult], fixable_mark: str = "") -> str:
    """"3 findings (2 fixable with `sepfix repair`), 1 advice, 0 canonical depthwise-separable
    blocks (+2 that `sepfix repair` restores) in 2 models"."""
    totals = summary(results)
    parts = [f"{totals['findings']} finding{'s' if totals['findings'] != 1 else ''}"]
    if totals["findings"]:
        parts[0] += f" ({totals['fixable']} fixable with `sepfix repair`{',' + fixable_mark if fixable_mark else ''})"
    if totals["advice"]:
        parts.append(f"{totals['advice']} advice")
    if totals["suppressed"]:
        parts.append(f"{totals['suppressed']} suppressed by configuration")
    if totals["errors"]:
        parts.append(f"{totals['errors']} unreadable")
    blocks = (f"{totals['blocks']} canonical depthwise-separable block{'s' if totals['blocks'] != 1 else ''}")
    if totals["restorable_blocks"]:
        blocks += f" (+{totals['restorable_blocks']} that `sepfix repair` restores)"
    parts.append(f"{blocks} in {totals['models']} model{'s' if totals['models'] != 1 else ''}")
    return ", ".join(parts)


def render_text(results: list[CheckResult], color: bool = False) -> str:
    def style(text: str, **kw) -> str:
        if not color:
            return text
        import click

        return click.style(text, **kw)

    lines = []
    for result in results:
        for f in result.findings:  # unreadable models: the CLI printed their one-line error
            mark = " [*]" if f.fixable else ""
            code_color = "cyan" if not f.counts else "red"
            lines.append(
                f"{style(result.path, bold=True)}: {f.location}: {style(f.code, fg=code_color, bold=True)}"
                f"{mark} {f.name}: {f.message}"
            )
    verdict = "FAILED" if exit_code(results) else "PASSED"
    seconds = sum(r.seconds for r in results)
    colour = "red" if verdict == "FAILED" else "green"
    lines.append(f"{style(verdict, fg=colour, bold=True)}: {summary_sentence(results, ' marked [*]')} ({seconds:.2f} s)")
    return "\n".join(lines)


def render_json(results: list[CheckResult], color: bool = False) -> str:
    document = {
        "tool": "sepfix",
        "version": __version__,
        "models": [r.to_dict() for r in results],
        "summary": summary(results),
        "exit_code": exit_code(results),
    }
    return json.dumps(document, indent=2)


def render_sarif(results: list[CheckResult], color: bool = False) -> str:
    rules = all_rules()
    rule_index = {rule.code: i for i, rule in enumerate(rules)}
    sarif_results = []
    notifications = []
    for result in results:
        uri = Path(result.path).as_posix()
        if result.error:
            notifications.append({
                "level": "error",
                "message": {"text": f"{result.path}: {result.error}"},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
            })
            continue
        for f in result.findings:
            sarif_results.append({
                "ruleId": f.code,
                "ruleIndex": rule_index[f.code],
                "level": _SARIF_LEVEL.get(f.severity, "warning"),
                "message": {"text": f"{f.name}: {f.message}"},
                "locations": [{
                    "physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": 1}},
                    "logicalLocations": [{"name": f.node, "fullyQualifiedName": f.location, "kind": "member"}],
                }],
                "partialFingerprints": {"sepfixLocation/v1": f"{f.code}:{f.location}"},
                "properties": {"fixable": f.fixable, "graph": f.graph, "nodes": f.nodes},
            })
    document = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sepfix",
                "version": __version__,
                "informationUri": INFORMATION_URI,
                "rules": [_sarif_rule(rule) for rule in rules],
            }},
            "invocations": [{
                "executionSuccessful": not notifications,
                "toolExecutionNotifications": notifications,
            }],
            "results": sarif_results,
        }],
    }
    return json.dumps(document, indent=2)


def _sarif_rule(rule) -> dict:
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.summary},
        "help": {"text": rule.doc, "markdown": rule.doc},
        "defaultConfiguration": {"level": _SARIF_LEVEL[rule.level.value]},
        "properties": {"fixSafety": rule.applicability.value, "level": rule.level.value},
    }


def render_github(results: list[CheckResult], color: bool = False) -> str:
    """GitHub Actions workflow commands: one annotation per finding or unreadable file."""
    lines = []
    for result in results:
        if result.error:
            lines.append(f"::error file={_escape_property(result.path)},title=sepfix::{_escape_data(result.error)}")
            continue
        for f in result.findings:
            level = {"error": "error", "info": "notice"}.get(f.severity, "warning")
            title = f"{f.code} {f.name}"
            text = f"{f.location}: {f.message}" + (" (fixable with sepfix repair)" if f.fixable else "")
            lines.append(
                f"::{level} file={_escape_property(result.path)},title={_escape_property(title)}::{_escape_data(text)}"
            )
    return "\n".join(lines)


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")
