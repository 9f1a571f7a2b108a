"""One test module per rule: `tests/rules/test_<code>_<name>.py`, named as the rule module
`sepfix/rules/<code>_<name>.py` is.

Each holds the rule's manglers (on the toolkit `sepfix.testing.mangle`), its positive and
negative cases, and two module-level tables the rest of the repository reads, so that nothing
else lists rules by hand:

    MANGLES = {"variant": mangler}   # clean ModelProto -> mangled copy; the shared round trip
                                     # (test_round_trip.py) and scripts/bench_repair.py run them
    SAMPLES = {"sep001_dense_depthwise": make}   # () -> ModelProto, its docstring the
                                     # description; scripts/make_samples.py writes them
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

_RULE_TEST = re.compile(r"^test_((?:sep|adv)\d{3})_[a-z0-9_]+\.py$")


def rule_test_modules() -> list[ModuleType]:
    """Every rule's test module, in code order, found by file name in this folder.

    Imported under their package name (`tests.rules.test_sep001_dense_depthwise`), as pytest
    imports them, so a script and the test session share one module object."""
    folder = Path(__file__).resolve().parent
    names = sorted(p.stem for p in folder.glob("test_*.py") if _RULE_TEST.match(p.name))
    return [importlib.import_module(f"{__name__}.{name}") for name in names]


def rule_code(module: ModuleType) -> str:
    """The rule code a test module is for: SEP001 for tests.rules.test_sep001_dense_depthwise."""
    return _RULE_TEST.match(module.__name__.rsplit(".", 1)[-1] + ".py").group(1).upper()
