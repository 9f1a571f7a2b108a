"""Fuzz sepfix with hypothesis: sample models damaged at the protobuf-bytes and graph level.

The oracle (tests/mutators.py `run_one`): `sepfix.check` and `repair_file` may refuse a mutant
only with SepfixError, never another exception, and a failed repair leaves nothing in its
output folder. Bounded for CI (a few hundred examples in all); `scripts/fuzz.py --minutes N`
runs the same mutators for as long as you like. Crashes it found are pinned in
tests/test_fuzz_regressions.py.
"""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests import mutators

SAMPLES = mutators.load_samples()
FUZZ = settings(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def workdir():
    folder = mutators.scratch()
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _check(outcome_of) -> None:
    try:
        outcome_of()
    except mutators.Crash as crash:
        pytest.fail(str(crash))


@settings(FUZZ, max_examples=200)
@given(sample=st.sampled_from(SAMPLES), rnd=st.randoms(use_true_random=False))
def test_byte_mutants_are_checked_or_refused(workdir, sample, rnd):
    _, data, _ = sample
    mutated, _ = mutators.mutate_bytes(data, rnd)
    _check(lambda: mutators.run_one(mutated, repair=False, workdir=workdir))


@settings(FUZZ, max_examples=200)
@given(sample=st.sampled_from(SAMPLES), rnd=st.randoms(use_true_random=False))
def test_graph_mutants_are_checked_and_repaired_or_refused(workdir, sample, rnd):
    _, _, model = sample
    mutant, _ = mutators.mutate_graph(model, rnd)
    data = mutators.serialize(mutant)
    if data is not None:
        _check(lambda: mutators.run_one(data, repair=True, workdir=workdir))


@settings(FUZZ, max_examples=100)
@given(sample=st.sampled_from(SAMPLES), rnd=st.randoms(use_true_random=False))
def test_attribute_and_dim_mutants_are_repaired_or_refused(workdir, sample, rnd):
    """Only the mutations that keep the graph wired, so the rules and fixes run on them."""
    _, _, model = sample
    mutant, _ = mutators.mutate_graph(model, _Only(rnd, [mutators._conv_attribute, mutators._change_dim,
                                                         mutators._swap_attribute]))
    data = mutators.serialize(mutant)
    if data is not None:
        _check(lambda: mutators.run_one(data, repair=True, workdir=workdir))


class _Only:
    """A Random whose `choice` among the graph mutators picks from `allowed` instead."""

    def __init__(self, rnd, allowed):
        self._rnd, self._allowed = rnd, allowed

    def choice(self, seq):
        return self._rnd.choice(self._allowed if seq is mutators.GRAPH_MUTATORS else seq)

    def __getattr__(self, name):
        return getattr(self._rnd, name)
