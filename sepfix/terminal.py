"""Feedback on stderr for a person at a terminal, and silence everywhere else."""

from __future__ import annotations

import sys
from contextlib import nullcontext


def working(text: str, quiet: bool = False):
    """A spinner on stderr while a long step runs (a repair's proof, a validation), only where a
    person watches: never in pipes, logs or CI, never with --quiet."""
    if quiet or not sys.stderr.isatty():
        return nullcontext()
    from rich.console import Console

    return Console(stderr=True).status(text)
