"""The `sepfix` command line: check | repair | validate | rules | explain.

Exit codes: 0 clean (or written), 1 findings (or validation refused the result), 2 any error.
User mistakes raise SepfixError and print one line; anything else is a bug and shows as one.
"""

from __future__ import annotations

import click

from sepfix import __version__
from sepfix.errors import SepfixError

FORMATS = ("text", "json", "sarif", "github")


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
@click.version_option(__version__, "-V", "--version", prog_name="sepfix", message="%(prog)s %(version)s")
def cli() -> None:
    """Find and repair mangled depthwise-separable convolutions in ONNX models.

    \b
      sepfix check models/               what the exporter mangled, block by block
      sepfix repair model.onnx -o f.onnx the canonical form, proven equal by onnxruntime
      sepfix validate model.onnx         numbers and latency on a provider, TensorRT fusion report
      sepfix rules / sepfix explain CODE the rule catalogue
    """


def _many_files(function):
    """Options every command that takes several models shares (see sepfix.files)."""
    for option in reversed([
        click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=str),
                     help="Use this configuration for every model (default: the nearest sepfix.toml, "
                          ".sepfix.toml or pyproject.toml [tool.sepfix] above each model)."),
        click.option("--isolated", is_flag=True, help="Ignore every configuration file."),
        click.option("--files-from", type=click.Path(dir_okay=False, allow_dash=True, path_type=str),
                     help="Also act on the paths listed in this file, one per line (- for stdin)."),
        click.option("--shard", metavar="I/N",
                     help="Only the I-th of N shares of the sorted model list (every N-th model from the I-th)."),
        click.option("--force-exclude", is_flag=True,
                     help="Apply the configuration's exclude to models named explicitly too."),
        click.option("-v", "--verbose", is_flag=True, help="Print throughput (models/s) on stderr for several models."),
    ]):
        function = option(function)
    return function


@cli.command()
@click.argument("models", nargs=-1, type=click.Path(dir_okay=True, readable=False, path_type=str))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--select", multiple=True, help="Only these rule codes or prefixes (comma-separated; replaces the configured select).")
@click.option("--ignore", multiple=True, help="Skip these rule codes or prefixes (comma-separated).")
@click.option("--advice/--no-advice", default=None, help="Also show info-level findings (advice; never changes the exit code).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report here instead of stdout.")
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
    help="Check this many files at once, in worker processes (the report keeps the argument order).",
)
@click.option("-q", "--quiet", is_flag=True, help="Never show the progress bar (shown on a terminal for several files).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write a self-contained HTML report here.")
@click.option("--show-settings", is_flag=True, help="Print the settings resolved for the first model, then exit.")
@_many_files
def check(models, fmt, select, ignore, advice, output, jobs, quiet, report_path, show_settings, config_file,
          isolated, files_from, shard, force_exclude, verbose) -> int:
    """Report mangled depthwise-separable blocks in MODELS (files, or folders walked to *.onnx).

    Exit 0 when nothing is found, 1 when something is, 2 when a model cannot be read.
    """
    from sepfix.batch import run_check

    if not models and not files_from:
        raise click.UsageError("give at least one model or folder (or --files-from FILE)")
    code, _ = run_check(models, fmt=fmt, select=select, ignore=ignore, advice=advice, output=output, jobs=jobs,
                        quiet=quiet, report_path=report_path, config_file=config_file, isolated=isolated,
                        files_from=files_from, shard=shard, force_exclude=force_exclude, verbose=verbose,
                        show_settings=show_settings)
    return code


@cli.command()
@click.argument("models", nargs=-1, type=click.Path(dir_okay=True, readable=False, path_type=str))
@click.option("-o", "--output", type=click.Path(readable=False, path_type=str),
              help="Write the repaired model here (one model only; an existing file needs --force).")
@click.option("--force", is_flag=True, help="Let -o replace an existing file.")
@click.option("--in-place", is_flag=True, help="Replace each model, atomically, only after its validation passed.")
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
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repair this many models at once, in worker processes.")
@click.option("-q", "--quiet", is_flag=True, help="No spinner or progress bar on stderr while it works.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=str),
              help="Also write a self-contained HTML report (findings, proof, before/after drawings) here; one model only.")
@_many_files
def repair(models, output, force, in_place, backup, select, ignore, dry_run, fmt, rtol, atol, input_shapes, inputs,
           no_validate, unsafe_fixes, jobs, quiet, report_path, config_file, isolated, files_from, shard,
           force_exclude, verbose) -> int:
    """Rewrite every fixable finding in MODELS, prove each unchanged, write it safely.

    Exit 0 when every output was written (a faithful copy when nothing needed fixing), 1 when
    validation refused a result (nothing is written for it), 2 on error; the worst over models.
    """
    from sepfix.batch import RepairRequest, run_repair

    if not models and not files_from:
        raise click.UsageError("give at least one model or folder (or --files-from FILE)")
    if unsafe_fixes and not no_validate:
        raise SepfixError("--unsafe-fixes only goes with --no-validate (with the proof, every fix applies)")
    request = RepairRequest(output=output, in_place=in_place, backup=backup, dry_run=dry_run, force=force,
                            validate=not no_validate, unsafe_fixes=unsafe_fixes, inputs=inputs)
    return run_repair(models, request=request, fmt=fmt, select=select, ignore=ignore, rtol=rtol, atol=atol,
                      input_shapes=input_shapes, jobs=jobs, quiet=quiet, report_path=report_path,
                      config_file=config_file, isolated=isolated, files_from=files_from, shard=shard,
                      force_exclude=force_exclude, verbose=verbose)


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
