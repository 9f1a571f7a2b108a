"""The shared round trip, over every rule test module's MANGLES and every clean source:

mangle → check finds the rule's code (and only it) → repair (sepfix.repair, with its proof) →
canonical form (no finding of that code, the clean model's depthwise-separable blocks and ops
back) → numbers equal through onnxruntime (repaired vs clean, or vs the mangled model when the
mangler moves the numbers on purpose) → idempotent (repairing again changes nothing) →
re-check clean.

A new rule gets all of this by giving its test module a `MANGLES` table; nothing here names a
rule.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import sepfix
from sepfix import model_io
from sepfix.checker import check_loaded
from sepfix.rules import Applicability, all_rules, find_rule, select_rules
from tests.conftest import CLEAN_SOURCES
from tests.rules import rule_code, rule_test_modules, support

MODULES = rule_test_modules()
RULES = select_rules()

# (mangle, source) pairs that fail because of a sepfix bug, not the test: strict, so a fix
# shows up as XPASS and the entry must go. {("SEP00N", "variant", "source"): "reason"}
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


def _cases():
    for module in MODULES:
        code = rule_code(module)
        for variant, mangler in module.MANGLES.items():
            # a mangler that needs what only some sources have (a dilated conv) names them
            for source in getattr(mangler, "sources", CLEAN_SOURCES):
                reason = KNOWN_BUGS.get((code, variant, source))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                yield pytest.param(code, variant, mangler, source, marks=marks, id=f"{code}-{variant}-{source}")


CASES = list(_cases())


def _blocks(model: onnx.ModelProto) -> list[tuple]:
    """The depthwise-separable blocks sepfix sees, by shape (names change when a fix rebuilds)."""
    result = check_loaded(model_io.from_proto(model), RULES)
    return [(b.graph, b.channels, b.depth_multiplier, tuple(b.kernel)) for b in result.blocks]


def _fresh(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


@pytest.mark.parametrize("code, variant, mangler, source", CASES)
def test_round_trip(clean_models, code, variant, mangler, source):
    clean = _fresh(clean_models[source])
    before = clean.SerializeToString()
    assert sepfix.check(clean) == [], "the clean source must be clean"
    clean_blocks = _blocks(clean)
    assert clean_blocks, "a source without depthwise-separable blocks proves nothing"

    # mangle: the input stays as it was, the damage is what the rule looks for
    mangled = mangler(clean)
    assert clean.SerializeToString() == before, "the mangler must not change its input"
    support.assert_named(clean, mangled)
    consumed = {name for n in mangled.graph.node for name in n.input}
    assert {t.name for t in mangled.graph.initializer} <= consumed, "the mangler left orphaned constants"

    # detect: the rule's code and nothing else, every finding fixable
    # (info-level findings count too: they are repaired; advice rules are not mangles)
    findings = [f for f in sepfix.check(mangled, advice=True) if not f.code.startswith("ADV")]
    assert findings and {f.code for f in findings} == {code}, [(f.code, f.message) for f in findings]
    for f in findings:
        assert f.name and f.node and f.message and f.nodes[0] == f.node
        assert f.fixable, f.message

    # repair, with the proof
    repaired, report = sepfix.repair(mangled)
    assert report.fixes and {f.code for f in report.fixes} == {code}
    assert report.validation is not None and report.validation.passed, report.to_text()
    assert report.verdict == "PASSED", report.to_text()

    # canonical form: no finding left, the clean model's blocks and ops back (Q/DQ are kept:
    # explicit quantization needs them; Identity nodes are not counted: torch.onnx writes them
    # for deduplicated constants, and they go with the constant a mangler replaced), IR version,
    # opsets, inputs and outputs as the clean model
    assert not [f for f in sepfix.check(repaired) if f.code == code]
    assert _blocks(repaired) == clean_blocks
    expected_ops = support.ops(mangled) if "DequantizeLinear" in support.ops(mangled) else support.ops(clean)
    del expected_ops["Identity"]
    repaired_ops = support.ops(repaired)
    del repaired_ops["Identity"]
    assert repaired_ops == expected_ops
    assert repaired.ir_version == clean.ir_version
    assert list(repaired.opset_import) == list(clean.opset_import)
    assert [v.name for v in repaired.graph.input] == [v.name for v in clean.graph.input]
    assert [v.name for v in repaired.graph.output] == [v.name for v in clean.graph.output]

    # numbers: onnxruntime on seeded random inputs (symbolic dims: batch 2, others 16)
    moves_numbers = getattr(mangler, "moves_numbers", False)
    reference = mangled if moves_numbers else clean
    for seed in (0, 1):
        for got, want in zip(support.run(repaired, seed=seed), support.run(reference, seed=seed), strict=True):
            np.testing.assert_allclose(got, want, rtol=support.RTOL, atol=support.ATOL)
    if moves_numbers:  # and still near the clean model: the rounding of the weights, no more
        np.testing.assert_allclose(support.run(repaired)[0], support.run(clean)[0], atol=0.05)

    # idempotent: nothing left to do, the same object comes back
    again, second = sepfix.repair(repaired)
    assert second.fixes == [] and again is repaired

    # re-check clean: no finding that counts
    assert sepfix.check(repaired) == []


# -- the per-rule tables themselves ------------------------------------------------------------


def test_every_rule_has_a_test_module_and_every_test_module_a_rule():
    assert sorted(rule_code(m) for m in MODULES) == sorted(r.code for r in all_rules())


@pytest.mark.parametrize("module", [m for m in MODULES if find_rule(rule_code(m)).applicability
                                    is not Applicability.NONE], ids=lambda m: rule_code(m))
def test_every_fixable_rule_has_a_mangle_and_a_sample(module):
    assert module.MANGLES, "the round trip needs at least one mangler"
    assert module.SAMPLES, "sample_models/ shows every rule"


SAMPLE_CASES = [pytest.param(rule_code(m), name, make, id=name) for m in MODULES for name, make in m.SAMPLES.items()]


@pytest.mark.parametrize("code, name, make", SAMPLE_CASES)
def test_sample_is_flagged_by_its_rule_only(code, name, make):
    assert name.startswith(code.lower() + "_"), "sample files are named after their rule"
    assert (make.__doc__ or "").startswith(code + ":"), "the description (docstring) starts with the code"
    assert {f.code for f in sepfix.check(make())} == {code}
