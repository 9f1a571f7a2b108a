"""Running check, repair and validate over many models: per-model settings from the
configuration, worker processes for `-j N`, one outcome per model, the worst exit code.

A model that cannot be read is that model's error (reported on stderr, exit 2 in the end); the
other models still run. Workers receive plain data (a path and its `FileSettings`) and resolve
the rules themselves, so nothing unpicklable crosses the process boundary.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sepfix import config as cfg
from sepfix.errors import SepfixError

RESTORABLE_LIMIT = 64 * 1024 * 1024
"""Models (with their external data) up to this size get the count of blocks repair restores."""


def _portable(findings: list) -> list:
    """Findings without anything a process boundary cannot carry."""
    return [f.detached() if hasattr(f, "detached") else f for f in findings]


# --------------------------------------------------------------------------------------------
# check


def check_one(path: str, settings: cfg.FileSettings):
    """Check one model under its settings: findings with their levels, the configuration's
    ignores applied, and the blocks a repair would restore (small models with fixable findings)."""
    from sepfix.checker import CheckResult, check_path

    try:
        result = check_path(path, settings.rules(), advice=True)  # the settings decide what shows
    except SepfixError as error:
        return CheckResult(path=path, error=str(error))
    result.findings, result.suppressed = cfg.apply(settings, result.findings)
    result.restorable_blocks = restorable_blocks(path, result, settings)
    result.findings = _portable(result.findings)
    return result


def _size_with_data(path: str) -> int:
    from sepfix.model_io import referenced_data_files

    total = os.path.getsize(path)
    if total > RESTORABLE_LIMIT:
        return total  # over the limit already: no need to scan the file for its data files
    for data in referenced_data_files(path) or ():
        try:
            total += data.stat().st_size
        except OSError:
            pass
    return total


def restorable_blocks(path: str, result, settings: cfg.FileSettings) -> int | None:
    """How many canonical depthwise-separable blocks `sepfix repair` would add, by running the
    fix passes in memory (nothing is validated or written); None when there is nothing fixable
    or the model is over RESTORABLE_LIMIT (then nothing is said about it)."""
    if not any(f.fixable and f.severity != "info" for f in result.findings):
        return None
    try:
        if _size_with_data(path) > RESTORABLE_LIMIT:
            return None
        from sepfix.repairer import blocks_after_repair

        after = blocks_after_repair(path, cfg.filtered_rules(settings))
    except (SepfixError, OSError):
        return None
    return max(0, after - len(result.blocks))


def _progress(label: str, total: int, quiet: bool):
    """A progress bar on stderr for several files, only where a person watches it."""
    if total <= 1 or quiet or not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)


def run_many(function: Callable, items: list[tuple], jobs: int, label: str, quiet: bool) -> list:
    """`function(*item)` for every item, in worker processes when jobs > 1; results in order."""
    progress = _progress(label, len(items), quiet)
    workers = min(jobs, len(items))
    if workers <= 1:
        results = []
        with progress or nullcontext():
            task = progress.add_task("", total=len(items)) if progress else None
            for item in items:
                results.append(function(*item))
                if progress:
                    progress.advance(task)
        return results
    executor = ProcessPoolExecutor(max_workers=workers)
    try:
        # Submit (and so start the workers) before the progress bar starts its thread.
        futures = [executor.submit(function, *item) for item in items]
        with progress or nullcontext():
            if progress:
                task = progress.add_task("", total=len(items))
                for future in futures:
                    future.add_done_callback(lambda _, t=task: progress.advance(t))
            return [future.result() for future in futures]
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


@dataclass
class Selection:
    """The models a command acts on, each with its settings."""

    models: list[str]
    settings: list[cfg.FileSettings]
    resolver: cfg.Resolver


def select_models(paths, cli: cfg.CommandLine, config_file=None, files_from=None, shard=None,
                  force_exclude=False, isolated=False) -> Selection:
    from sepfix.files import collect

    resolver = cfg.Resolver(config_file, isolated=isolated)
    models = collect(paths, resolver, files_from=files_from, shard=shard, force_exclude=force_exclude)
    settings = [cfg.settings_for(model, resolver.for_path(Path(model)), cli) for model in models]
    return Selection(models, settings, resolver)


def throughput(verb: str, count: int, seconds: float, jobs: int) -> str:
    rate = count / seconds if seconds > 0 else float("inf")
    return f"sepfix: {verb} {count} models in {seconds:.2f} s ({rate:.1f} models/s, -j {jobs})"


# --------------------------------------------------------------------------------------------
# repair


@dataclass
class RepairRequest:
    """What the command line asks of every model's repair."""

    output: str | None = None
    in_place: bool = False
    backup: bool = False
    dry_run: bool = False
    force: bool = False
    validate: bool = True
    unsafe_fixes: bool = False
    inputs: str | None = None
    keep_stages: bool = False


@dataclass
class RepairOutcome:
    path: str
    report: object | None = None  # RepairReport
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return 2 if self.error else self.report.exit_code


def repair_one(path: str, settings: cfg.FileSettings, request: RepairRequest, portable: bool = False) -> RepairOutcome:
    from sepfix.repairer import RepairOptions, repair_file

    options = RepairOptions(
        rules=cfg.filtered_rules(settings), validate=request.validate, unsafe_fixes=request.unsafe_fixes, rtol=settings.rtol, atol=settings.atol,
        input_shapes=settings.input_shapes or None, inputs=request.inputs, keep_stages=request.keep_stages,
    )
    try:
        report = repair_file(path, output=request.output, in_place=request.in_place, backup=request.backup,
                             dry_run=request.dry_run, options=options, force=request.force)
    except SepfixError as error:
        return RepairOutcome(path, error=str(error))
    if portable:  # back from a worker: the report's text and figures, not its models
        report.original_model = report.repaired_model = None
        report.stages, report.options, report.weights = [], None, None
        report.remaining = _portable(report.remaining)
    return RepairOutcome(path, report)


def repair_summary(outcomes: list[RepairOutcome], seconds: float) -> str:
    """The last line of a repair over several models."""
    reports = [o.report for o in outcomes if o.report is not None]
    repaired = sum(1 for r in reports if r.fixes and r.exit_code == 0)
    clean = sum(1 for r in reports if not r.fixes)
    refused = sum(1 for r in reports if r.exit_code)
    errors = sum(1 for o in outcomes if o.error)
    worst = max((o.exit_code for o in outcomes), default=0)
    dry = " (dry run)" if reports and all(r.dry_run for r in reports) else ""
    parts = [f"{repaired} repaired{dry}", f"{clean} with nothing to repair"]
    if refused:
        parts.append(f"{refused} refused by validation")
    if errors:
        parts.append(f"{errors} unreadable")
    return (f"{'FAILED' if worst else 'PASSED'}: {len(outcomes)} models: {', '.join(parts)} ({seconds:.2f} s)")


@dataclass
class ValidateOutcome:
    path: str
    report: object | None = None
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return 2 if self.error else self.report.exit_code


def validate_one(path: str, kwargs: dict) -> ValidateOutcome:
    from sepfix.validate.command import run_validate

    try:
        return ValidateOutcome(path, run_validate(path, **kwargs))
    except SepfixError as error:
        return ValidateOutcome(path, error=str(error))


@dataclass
class Timer:
    start: float = field(default_factory=time.perf_counter)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start


# --------------------------------------------------------------------------------------------
# The commands' bodies (the CLI and the pre-commit hooks share them)


def run_check(paths, *, fmt="text", select=(), ignore=(), advice=None, output=None, jobs=1, quiet=False,
              report_path=None, config_file=None, isolated=False, files_from=None, shard=None,
              force_exclude=False, verbose=False, show_settings=False, emit=None) -> tuple[int, list]:
    """`sepfix check`: (exit code, one CheckResult per model)."""
    import click

    from sepfix.report import exit_code, render

    cli = cfg.CommandLine(select=cfg.split_codes(select), ignore=cfg.split_codes(ignore), advice=advice)
    timer = Timer()
    selection = select_models(paths, cli, config_file, files_from, shard, force_exclude, isolated)
    if show_settings:
        if not selection.models:
            raise SepfixError("--show-settings needs a model file")
        model = selection.models[0]
        click.echo(cfg.show(selection.settings[0], selection.resolver.for_path(Path(model))))
        return 0, []
    if not selection.models:
        click.echo("sepfix: warning: no .onnx model to act on (none found, or all excluded by the configuration)", err=True)
    results = run_many(check_one, list(zip(selection.models, selection.settings)), jobs, "sepfix check", quiet)
    for result in results:
        if result.error:  # on stderr whatever the format: stdout keeps the report alone
            click.echo(f"sepfix: error: {result.error}", err=True)
    text = render(results, fmt, color=fmt == "text" and output is None and sys.stdout.isatty())
    (emit or _emit)(text, output)
    if report_path:
        from sepfix.html_report import write_check_report

        write_check_report(report_path, results)
    if verbose and len(results) > 1:
        click.echo(throughput("checked", len(results), timer.seconds, jobs), err=True)
    return exit_code(results), results


def _emit(text: str, output: str | None) -> None:
    import click

    if output:
        from sepfix.atomic import write_text_atomic

        write_text_atomic(output, text + "\n")
    elif text:
        click.echo(text)


def run_repair(paths, *, request: RepairRequest, fmt="text", select=(), ignore=(), rtol=None, atol=None,
               input_shapes=(), jobs=1, quiet=False, report_path=None, config_file=None, isolated=False,
               files_from=None, shard=None, force_exclude=False, verbose=False) -> int:
    """`sepfix repair` over one model or many; the worst exit code."""
    import json

    import click

    from sepfix.terminal import working

    shapes = {}
    if input_shapes:
        from sepfix.validate.numeric import parse_input_shapes

        shapes = parse_input_shapes(list(input_shapes))
    if request.backup and not request.in_place:
        raise SepfixError("--backup only goes with --in-place")
    if request.in_place and request.output:
        raise SepfixError("give either -o OUT or --in-place, not both")
    cli = cfg.CommandLine(select=cfg.split_codes(select), ignore=cfg.split_codes(ignore), rtol=rtol, atol=atol,
                          input_shapes=shapes)
    timer = Timer()
    selection = select_models(paths, cli, config_file, files_from, shard, force_exclude, isolated)
    count = len(selection.models)
    if not count:
        click.echo("sepfix: warning: no .onnx model to act on (none found, or all excluded by the configuration)", err=True)
        return 0
    if request.output and count != 1:
        raise SepfixError(f"-o OUT takes exactly one model, and {count} were given: use --in-place to repair "
                          "each one where it is (or --dry-run to see what would change)")
    if count > 1 and not (request.in_place or request.dry_run):
        raise SepfixError("repairing several models needs --in-place (each is replaced atomically after its "
                          "validation) or --dry-run")
    if report_path and count != 1:
        raise SepfixError(f"--report draws one model's repair, and {count} were given")
    request.keep_stages = bool(report_path)
    items = [(model, settings, request, jobs > 1) for model, settings in zip(selection.models, selection.settings)]
    if count == 1:
        with working(f"repairing and validating {selection.models[0]}", quiet):
            outcomes = [repair_one(*items[0])]
    else:
        outcomes = run_many(repair_one, items, jobs, "sepfix repair", quiet)
    for outcome in outcomes:
        if outcome.error:
            click.echo(f"sepfix: error: {outcome.error}", err=True)
    reports = [o.report for o in outcomes if o.report is not None]
    worst = max(o.exit_code for o in outcomes)
    if fmt == "json":
        if count == 1:
            if reports:
                click.echo(json.dumps(reports[0].to_dict(), indent=2))
        else:
            from sepfix import __version__

            click.echo(json.dumps({
                "tool": "sepfix", "version": __version__, "command": "repair", "exit_code": worst,
                "reports": [r.to_dict() for r in reports],
                "errors": [{"path": o.path, "error": o.error} for o in outcomes if o.error],
            }, indent=2))
    else:
        for report in reports:
            click.echo(report.to_text())
        if count > 1:
            click.echo(repair_summary(outcomes, timer.seconds))
    if report_path and reports:
        from sepfix.html_report import write_repair_report

        write_repair_report(report_path, reports[0])
    if verbose and count > 1:
        click.echo(throughput("repaired", count, timer.seconds, jobs), err=True)
    return worst
