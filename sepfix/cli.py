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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sepfix")
def cli() -> None:
    """Find and repair mangled depthwise-separable convolutions in ONNX models.

    \b
      sepfix check model.onnx            what the exporter mangled, block by block
      sepfix repair model.onnx -o f.onnx the canonical form, proven equal by onnxruntime
      sepfix rules / sepfix explain CODE the rule catalogue
    """


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(dir_okay=True, path_type=str))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True)
@click.option("--select", multiple=True, help="Only these rule codes or prefixes (comma-separated).")
@click.option("--ignore", multiple=True, help="Skip these rule codes or prefixes (comma-separated).")
@click.option("--advice", is_flag=True, help="Also show advice (never changes the exit code).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the report here instead of stdout.")
def check(models, fmt, select, ignore, advice, output) -> int:
    """Report mangled depthwise-separable blocks in MODELS.

    Exit 0 when nothing is found, 1 when something is, 2 when a model cannot be read.
    """
    from sepfix.checker import CheckResult, check_path
    from sepfix.report import exit_code, render
    from sepfix.rules import select_rules

    rules = select_rules(_split_codes(select), _split_codes(ignore), advice)
    results = []
    for path in models:
        try:
            results.append(check_path(path, rules))
        except SepfixError as error:
            results.append(CheckResult(path=path, error=str(error)))
            if fmt == "text":
                click.echo(f"sepfix: error: {error}", err=True)
    text = render(results, fmt, color=fmt == "text" and output is None and sys.stdout.isatty())
    _emit(text, output)
    return exit_code(results)


@cli.command()
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
def rules(fmt) -> int:
    """List the rule catalogue."""
    import json

    from sepfix.rules import all_rules

    catalogue = [
        {"code": r.CODE, "name": r.NAME, "summary": r.SUMMARY, "fix_safety": r.FIX_SAFETY}
        for r in all_rules()
    ]
    if fmt == "json":
        click.echo(json.dumps(catalogue, indent=2))
        return 0
    width = max(len(r["name"]) for r in catalogue)
    for r in catalogue:
        click.echo(f"{r['code']}  {r['name']:<{width}}  {r['fix_safety']:<11}  {r['summary']}")
    return 0


@cli.command()
@click.argument("code")
def explain(code) -> int:
    """Print one rule's documentation (by code or name)."""
    from sepfix.rules import find_rule

    rule = find_rule(code)
    click.echo(f"# {rule.CODE} {rule.NAME}\n\n{rule.SUMMARY}.\n")
    click.echo(rule.__doc__.strip())
    click.echo(f"\n## Fix safety class\n{rule.FIX_SAFETY}\n\n## Sources")
    for source in rule.SOURCES:
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
