"""ADV001 channel-alignment: advice only, channel counts that are not a multiple of 8."""

from __future__ import annotations

import sepfix
from sepfix.testing import builders

# Advice is not a mangle: nothing to round-trip, no sample model.
MANGLES: dict = {}
SAMPLES: dict = {}


def test_advice_only_when_asked():
    model = builders.separable_block(c_in=6, c_out=10)
    assert sepfix.check(model) == []
    assert {f.code for f in sepfix.check(model, advice=True)} == {"ADV001"}


def test_advice_is_info_and_not_fixable():
    findings = sepfix.check(builders.separable_block(c_in=6, c_out=10), advice=True)
    assert findings and all(f.severity == "info" and not f.fixable for f in findings)


def test_aligned_channels_get_no_advice():
    assert sepfix.check(builders.separable_block(c_in=8, c_out=16), advice=True) == []
