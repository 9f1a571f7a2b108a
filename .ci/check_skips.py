"""Fail when pytest skipped a test for a reason that is not listed in .ci/allowed-skips.

usage: python3 .ci/check_skips.py PYTEST_OUTPUT [ALLOWED]

PYTEST_OUTPUT is what `pytest -rs` printed; its short test summary has one line per skip
reason, `SKIPPED [N] path:line: reason`. ALLOWED (default: .ci/allowed-skips beside this
script) holds one reason substring per line; blank lines and lines starting with # are
ignored. A skip passes when its reason contains one of them. Exit 0 when every skip is allowed,
1 otherwise (each unexpected skip is printed), 2 when a file cannot be read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SKIP_LINE = re.compile(r"^SKIPPED \[(\d+)\] (\S+?): (.*)$")


def skips(output: str) -> list[tuple[int, str, str]]:
    """(count, location, reason) for every skip line of a `pytest -rs` summary."""
    found = []
    for line in output.splitlines():
        match = SKIP_LINE.match(line.strip())
        if match:
            found.append((int(match.group(1)), match.group(2), match.group(3)))
    return found


def allowed_reasons(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def unexpected(output: str, allowed: list[str]) -> list[tuple[int, str, str]]:
    return [skip for skip in skips(output) if not any(reason in skip[2] for reason in allowed)]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    allowed_file = Path(argv[1]) if len(argv) == 2 else Path(__file__).with_name("allowed-skips")
    try:
        output = Path(argv[0]).read_text(errors="replace")
        allowed = allowed_reasons(allowed_file.read_text())
    except OSError as exc:
        print(f"check_skips: {exc}", file=sys.stderr)
        return 2
    found = skips(output)
    bad = unexpected(output, allowed)
    for count, location, reason in bad:
        print(f"check_skips: unexpected skip ({count}x) at {location}: {reason}", file=sys.stderr)
    total = sum(count for count, _, _ in found)
    if bad:
        print(f"check_skips: {sum(c for c, _, _ in bad)} of {total} skipped tests have a reason not listed in "
              f"{allowed_file}", file=sys.stderr)
        return 1
    print(f"check_skips: {total} skipped tests, every reason listed in {allowed_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
