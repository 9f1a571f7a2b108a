"""The `sepfix` command line: check | repair | validate | rules | explain.

Exit codes: 0 clean (or written), 1 findings (or validation refused the result), 2 any error.
User mistakes raise SepfixError and print one line; anything else is a bug and shows as one.
"""

from __future__ import annotations

import sys

import click

from sepfix import __version__
from sepfix.errors import SepfixError

FORMATS = ("text", "json", "sarif", "github")


def _split_codes(values: tuple[str, ...]) -> list[str]:
    return [code.strip() for value in values for code in value.split(",") if code.strip()]


def _emit(text: str, output: str | None) -> None:
    if output:
        from sepfix.atomic import write_text_atomic

        write_text_atomic(output, text + "\n")
    elif text:
        click.echo(text)


class _LazyGroup(click.Group):
    """Commands whose modules pull in heavy dependencies load only when they are run, so
    `sepfix check` and `--help` stay fast."""

    lazy = {"validate": ("sepfix.validate.command", "validate_command")}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.lazy:
            import importlib

            module, attribute = self.lazy[name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sepfix")
def cli() -> None:
    """Find and repair mangled depthwise-separable convolutions in ONNX models.

    \b
      sepfix check model.onnx            what the exporter mangled, block by block
      sepfix repair model.onnx -o f.onnx the canonical form, proven equal by onnxruntime
      sepfix validate model.onnx         numbers and latency on a provider, TensorRT fusion report
      sepfix rules / sepfix explain CODE the rule catalogue
    """


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=True, readable=False, path_type=str))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--select", multiple=True, help="Only these rule codes or prefixes (comma-separated).")
@click.option("--ignore", multiple=True, help="Skip these rule codes or prefixes (comma-separated).")
@click.option("--advice", is_flag=True, help="Also show advice (never changes the exit code).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report here instead of stdout.")
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
    help="Check this many files at once, in worker processes (the report keeps the argument order).",
)
@click.option("-q", "--quiet", is_flag=True, help="Never show the progress bar (shown on a terminal for several files).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write a self-contained HTML report here.")
def check(models, fmt, select, ignore, advice, output, jobs, quiet, report_path) -> int:
    """Report mangled depthwise-separable blocks in MODELS.

    Exit 0 when nothing is found, 1 when something is, 2 when a model cannot be read.
    """
    from concurrent.futures import ProcessPoolExecutor
    from contextlib import nullcontext

    from sepfix.checker import CheckResult, check_path
    from sepfix.report import exit_code, render
    from sepfix.rules import select_rules

    rules = select_rules(_split_codes(select), _split_codes(ignore), advice)
    workers = min(jobs, len(models))
    # A progress bar only where a person watches it: it would be noise in logs, pipes and CI.
    progress = None
    if len(models) > 1 and not quiet and sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        progress = Progress(
            TextColumn("sepfix check"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        )

    def outcome(path: str, run) -> CheckResult:
        try:
            return run()
        except SepfixError as error:
            return CheckResult(path=path, error=str(error))

    if workers <= 1:
        results = []
        with progress or nullcontext():
            task = progress.add_task("", total=len(models)) if progress else None
            for path in models:
                results.append(outcome(path, lambda: check_path(path, rules, advice)))
                if progress:
                    progress.advance(task)
    else:
        executor = ProcessPoolExecutor(max_workers=workers)
        try:
            # Submit (and so start the workers) before the progress bar starts its thread.
            futures = [executor.submit(check_path, path, rules, advice, True) for path in models]
            with progress or nullcontext():
                if progress:
                    task = progress.add_task("", total=len(models))
                    for future in futures:
                        future.add_done_callback(lambda _, t=task: progress.advance(t))
                results = [outcome(path, future.result) for path, future in zip(models, futures)]
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    if fmt == "text":
        for result in results:
            if result.error:
                click.echo(f"sepfix: error: {result.error}", err=True)
    text = render(results, fmt, color=fmt == "text" and output is None and sys.stdout.isatty())
    _emit(text, output)
    if report_path:
        from sepfix.html_report import write_check_report

        write_check_report(report_path, results)
    return exit_code(results)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=True, readable=False, path_type=str))
@click.option("-o", "--output", type=click.Path(readable=False, path_type=str), help="Write the repaired model here.")
@click.option("--in-place", is_flag=True, help="Replace MODEL, atomically, only after validation passed.")
@click.option("--backup", is_flag=True, help="With --in-place: keep the original as MODEL.bak.")
@click.option("--select", multiple=True, help="Only these rule codes or prefixes (comma-separated).")
@click.option("--ignore", multiple=True, help="Skip these rule codes or prefixes (comma-separated).")
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
@click.option("--rtol", type=float, default=None, help="Relative tolerance of the proof (default 1e-4).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance of the proof (default 1e-5).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,..",
              help="Shape for an input with dynamic dimensions (repeatable).")
@click.option("--inputs", type=click.Path(dir_okay=False, path_type=str), help="An .npz of inputs to validate on too.")
@click.option("--no-validate", is_flag=True,
              help="Skip the numerical proof: only safe (bit-exact) fixes apply unless --unsafe-fixes.")
@click.option("--unsafe-fixes", is_flag=True, help="With --no-validate: apply validated fixes too, unproven.")
@click.option("-q", "--quiet", is_flag=True, help="No spinner on stderr while it works.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write a self-contained HTML report (findings, proof, before/after drawings) here.")
def repair(model, output, in_place, backup, select, ignore, dry_run, fmt, rtol, atol, input_shapes, inputs,
           no_validate, unsafe_fixes, quiet, report_path) -> int:
    """Rewrite every fixable finding in MODEL, prove it unchanged, write it safely.

    Exit 0 when the output was written (a faithful copy when nothing needed fixing), 1 when
    validation refused the result (nothing is written), 2 on error.
    """
    import json

    from sepfix.repairer import RepairOptions, repair_file

    shapes = None
    if input_shapes:
        from sepfix.validate.numeric import parse_input_shapes

        shapes = parse_input_shapes(list(input_shapes))
    if backup and not in_place:
        raise SepfixError("--backup only goes with --in-place")
    if unsafe_fixes and not no_validate:
        raise SepfixError("--unsafe-fixes only goes with --no-validate (with the proof, every fix applies)")
    options = RepairOptions(
        select=_split_codes(select), ignore=_split_codes(ignore), validate=not no_validate,
        rtol=rtol, atol=atol, input_shapes=shapes, inputs=inputs, keep_stages=bool(report_path),
        unsafe_fixes=unsafe_fixes,
    )
    from sepfix.terminal import working

    with working(f"repairing and validating {model}", quiet):
        report = repair_file(model, output=output, in_place=in_place, backup=backup, dry_run=dry_run,
                             options=options)
    click.echo(json.dumps(report.to_dict(), indent=2) if fmt == "json" else report.to_text())
    if report_path:
        from sepfix.html_report import write_repair_report

        write_repair_report(report_path, report)
    return report.exit_code


@cli.command()
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
def rules(fmt) -> int:
    """List the rule catalogue."""
    import json

    from sepfix.rules import all_rules

    catalogue = [
        {"code": r.code, "name": r.name, "level": r.level.value, "summary": r.summary,
         "fix_safety": r.applicability.value}
        for r in all_rules()
    ]
    if fmt == "json":
        click.echo(json.dumps(catalogue, indent=2))
        return 0
    width = max(len(r["name"]) for r in catalogue)
    for r in catalogue:
        click.echo(f"{r['code']}  {r['name']:<{width}}  {r['level']:<7}  {r['fix_safety']:<11}  {r['summary']}")
    return 0


@cli.command()
@click.argument("code")
def explain(code) -> int:
    """Print one rule's documentation (by code or name)."""
    from sepfix.rules import find_rule

    rule = find_rule(code)
    click.echo(f"# {rule.code} {rule.name}\n\n{rule.summary}.\n")
    click.echo(rule.doc)
    click.echo(f"\n## Level\n{rule.level.value}\n\n## Fix safety class\n{rule.applicability.value}\n\n## Sources")
    for source in rule.sources:
        click.echo(f"- {source}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the CLI and turns every user-facing failure into exit code 2."""
    try:
        code = cli.main(args=argv, prog_name="sepfix", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as problem:
        problem.show()
        return 2
    except click.Abort:
        click.echo("sepfix: aborted", err=True)
        return 2
    except SepfixError as error:
        click.echo(f"sepfix: error: {error}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("sepfix: interrupted", err=True)
        return 130
