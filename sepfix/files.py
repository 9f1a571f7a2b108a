"""Which model files a command acts on: paths and folders from the command line or a list file,
folders walked to their `*.onnx` files past the configuration's excludes, and a shard of them.

As in ruff, a file named explicitly is taken even when an `exclude` pattern matches it, unless
`--force-exclude` is given (the pre-commit hooks pass it, since pre-commit names every file);
`exclude` always applies to what a folder walk finds. Folders are walked in sorted order and a
model reached twice (two arguments, a symlink) is taken once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

from sepfix.config import Resolver
from sepfix.errors import SepfixError

MODEL_SUFFIX = ".onnx"


def read_list(source: str) -> list[str]:
    """Paths from a file, one per line (`-`: standard input); blank lines and `#` comments skipped."""
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise SepfixError(f"--files-from {source}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise SepfixError(f"--files-from {source}: not UTF-8 text (one path per line)") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`I/N` (1 <= I <= N) -> (I, N)."""
    if text is None:
        return None
    try:
        index, total = (int(part) for part in text.split("/"))
    except ValueError:
        raise SepfixError(f"--shard {text}: expected I/N, e.g. 1/4") from None
    if total < 1 or not 1 <= index <= total:
        raise SepfixError(f"--shard {text}: I must be between 1 and N, and N at least 1")
    return index, total


def _walk(folder: Path, resolver: Resolver) -> Iterable[Path]:
    for current, dirs, files in os.walk(folder, followlinks=False):
        here = Path(current)
        config = resolver.for_folder(here)
        dirs[:] = sorted(d for d in dirs if not resolver.for_folder(here / d).excluded(here / d, is_dir=True)
                         and not config.excluded(here / d, is_dir=True))
        for name in sorted(files):
            path = here / name
            if name.lower().endswith(MODEL_SUFFIX) and not resolver.for_folder(here).excluded(path):
                yield path


def _has_models(folder: Path) -> bool:
    """Whether any `*.onnx` file is under `folder`, excluded or not."""
    for _, _, files in os.walk(folder):
        if any(name.lower().endswith(MODEL_SUFFIX) for name in files):
            return True
    return False


def collect(
    paths: Iterable[str],
    resolver: Resolver,
    files_from: str | None = None,
    shard: str | None = None,
    force_exclude: bool = False,
) -> list[str]:
    """The model files to act on, as strings the user would recognise (a folder's files are
    joined onto the folder as it was given). Order: as given, each folder's files sorted; with
    `shard`, the whole list sorted and every N-th file from the I-th on (a deterministic split:
    the N shards together are the whole list, each file in exactly one)."""
    arguments = list(paths)
    if files_from is not None:
        arguments += read_list(files_from)
    chosen = parse_shard(shard)
    found: list[str] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            found.append(os.fspath(path))

    for argument in arguments:
        path = Path(argument)
        if path.is_dir():
            models = list(_walk(path, resolver))
            for model in models:
                add(model)
            if not models and not _has_models(path):
                add(path)  # a folder with no model at all: the loader says what it is, as an error
        elif force_exclude and resolver.for_path(path).excluded(path):
            continue
        else:
            add(path)  # a missing or unreadable file is the loader's to report, in its words
    if chosen is not None:
        index, total = chosen
        found = sorted(found)[index - 1::total]
    return found
