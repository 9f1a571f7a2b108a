"""Test support: builders of small clean models, and the toolkit the manglers are built on.

Kept inside the package (not under tests/) so that scripts and other projects' tests can build
the same models sepfix is tested against. The manglers themselves, one set per rule, live in the
rule's test module `tests/rules/test_<code>_<name>.py` (`MANGLES`, `SAMPLES`).
"""
