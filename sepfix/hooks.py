"""pre-commit entry points: `sepfix-hook-check` and `sepfix-hook-repair`.

pre-commit hands a hook the staged files that match its `files:` pattern, which for a model
with external data may be only the weights file (`model.onnx.data`) and not the model. These
wrappers turn that file list into the list of models to check or repair, then run the ordinary
`sepfix` CLI on them:

- `x.onnx` is a model;
- any other file is mapped to the `.onnx` models in its folder whose initializers name it as
  their external data `location` (a weights change can break or fix the model that reads it);
  a file no model references is skipped.

Both return 0 or 1 as pre-commit expects (1 also for an unreadable model, such as a Git LFS
pointer, whose one-line reason the CLI prints). The repair hook returns 1 whenever it changed
a file, so pre-commit stops the commit and the user reviews and stages the rewrite.

`python -m sepfix.hooks check|repair FILES` runs the same code without the console scripts.
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import shlex
import sys
from pathlib import Path

import click

from sepfix.model_io import referenced_data_files

MODEL_SUFFIX = ".onnx"


def _mentions(model_path: Path, needle: bytes) -> bool:
    """Cheap pre-filter: a location string is stored verbatim in the protobuf, so a model whose
    bytes lack the file name cannot reference the file (and need not be parsed)."""
    try:
        with open(model_path, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return mm.find(needle) != -1
    except (OSError, ValueError):
        return False


def models_for(filenames: list[str]) -> list[str]:
    """The models to act on for the changed `filenames`, in first-seen order, no duplicates."""
    models: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, shown: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            models.append(shown)

    for name in filenames:
        path = Path(name)
        if path.suffix.lower() == MODEL_SUFFIX:
            add(path, name)
            continue
        if not path.is_file():
            continue
        target = path.resolve()
        folder = path.parent
        for candidate in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
            if not candidate.is_file() or not _mentions(candidate, path.name.encode()):
                continue
            locations = referenced_data_files(candidate)
            if locations and target in locations:
                add(candidate, os.fspath(candidate))
    return models


def _parser(prog: str, repair: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("filenames", nargs="*", help="changed files (pre-commit passes them)")
    if not repair:
        parser.add_argument("--select", action="append", default=[], help="passed to `sepfix check`")
        parser.add_argument("--ignore", action="append", default=[], help="passed to `sepfix check`")
        parser.add_argument("--advice", action="store_true", help="passed to `sepfix check`")
        parser.add_argument("-j", "--jobs", type=int, default=1, help="passed to `sepfix check`")
    return parser


def main_check(argv: list[str] | None = None) -> int:
    """Check the models behind the changed files; 1 when any has findings or cannot be read.

    The configuration (sepfix.toml, [tool.sepfix]) applies as for `sepfix check`, its exclude
    included (pre-commit names every file, so excludes are forced)."""
    from sepfix.batch import run_check
    from sepfix.errors import SepfixError

    args = _parser("sepfix-hook-check", repair=False).parse_args(argv)
    models = models_for(args.filenames)
    if not models:
        return 0
    try:
        code, results = run_check(models, select=args.select, ignore=args.ignore, advice=args.advice or None,
                                  jobs=max(1, args.jobs), quiet=True, force_exclude=True)
    except SepfixError as error:  # a bad configuration or option
        click.echo(f"sepfix: error: {error}", err=True)
        code, results = 2, []
    if code == 2:
        click.echo("sepfix-hook: a model could not be checked (see above); the commit is refused", err=True)
    fixable = [r.path for r in results if any(f.fixable for f in r.mangles)]
    if fixable:
        files = " ".join(shlex.quote(path) for path in fixable)
        click.echo(f"sepfix-hook: to repair the findings marked [*], run the repair hook: "
                   f"pre-commit run sepfix-repair --hook-stage manual --files {files}", err=True)
    return 0 if code == 0 else 1


def _digest(paths: list[Path]) -> str:
    """One sha256 over the files (missing ones count as absent), to see whether repair wrote."""
    h = hashlib.sha256()
    for path in paths:
        h.update(os.fspath(path).encode() + b"\x00")
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except FileNotFoundError:
            h.update(b"<missing>")
    return h.hexdigest()


def main_repair(argv: list[str] | None = None) -> int:
    """Repair the models behind the changed files in place; 1 when a file changed or a repair
    failed (pre-commit's convention for fixers), 0 when every model was already canonical."""
    from sepfix.cli import main

    args = _parser("sepfix-hook-repair", repair=True).parse_args(argv)
    status = 0
    for model in models_for(args.filenames):
        path = Path(model)
        # The model and its weights files: repair may rewrite either.
        watched = [path, *sorted(referenced_data_files(path) or ())]
        before = _digest(watched)
        code = main(["repair", model, "--in-place", "--force-exclude", "--quiet"])
        if code != 0:
            click.echo(f"sepfix-hook: repair of {model} failed (exit code {code}); the file is left as it was", err=True)
            status = 1
        elif _digest(watched) != before:
            click.echo(f"sepfix-hook: repaired {model}; review and stage the change", err=True)
            status = 1
    return status


def _module_main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"check": main_check, "repair": main_repair}
    if not argv or argv[0] not in commands:
        click.echo("usage: python -m sepfix.hooks check|repair FILES...", err=True)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(_module_main())
