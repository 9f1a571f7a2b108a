"""SEP002 group-mismatch: group missing, zero, negative or wrong for the weight (invalid model)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import onnx
import pytest

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import Editor, is_depthwise, remove_attribute, set_attribute
from tests.rules import support


def group_attribute(model: onnx.ModelProto, value: int | None, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP002: give depthwise convs a wrong group (0, negative, 1, ...) or none at all.

    The result is an invalid model (the group no longer matches the weight), as tf2onnx wrote
    with ``group: -3``; there is no numeric claim.
    """
    editor = Editor(model, "SEP002")
    for conv in editor.select(nodes, is_depthwise, "depthwise"):
        if value is None:
            remove_attribute(conv.node, "group")
        else:
            set_attribute(conv.node, "group", int(value))
    return editor.rebuild({})


MANGLES = {
    "missing": partial(group_attribute, value=None),
    "zero": partial(group_attribute, value=0),
    "negative": partial(group_attribute, value=-3),
    "one": partial(group_attribute, value=1),
}


SAMPLES = {
    "sep002_group_missing": support.mangled_sample(
        MANGLES["missing"], "SEP002: depthwise convs without a group attribute (invalid: group defaults to 1)."
    ),
    "sep002_group_negative": support.mangled_sample(
        MANGLES["negative"], "SEP002: depthwise convs with group=-3, as tf2onnx wrote (invalid)."
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, -3, 1, 5])
def test_group_attribute(clean, value):
    depthwise, _ = support.convs_by_kind(clean)
    mangled = group_attribute(clean, value)
    for name in depthwise:
        attrs = support.attrs(support.node(mangled, name))
        if value is None:
            assert "group" not in attrs
        else:
            assert attrs["group"] == value
        assert support.node(mangled, name).input[1] == support.node(clean, name).input[1], "weight untouched"
    assert support.initializers(mangled).keys() == support.initializers(clean).keys()
    support.assert_named(clean, mangled)


def test_mangler_refuses_models_without_depthwise():
    with pytest.raises(ValueError, match="no depthwise"):
        group_attribute(builders.resnext_grouped(), 0)


# -- the rule ------------------------------------------------------------------------------------


def test_evidence_in_message_and_details():
    [first, *_] = sepfix.check(group_attribute(builders.mobilenet_like(), -3))
    assert "group=-3" in first.message and "group=8" in first.message
    assert first.details == {**first.details, "group_found": -3, "group_expected": 8, "c_in": 8}


def test_group_with_dynamic_channels_is_reported_but_not_fixable():
    model = group_attribute(builders.separable_block(), -1)
    model.graph.input[0].type.tensor_type.shape.dim[1].ClearField("dim_value")
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "C"
    del model.graph.value_info[:]
    findings = [f for f in sepfix.check(model) if f.code == "SEP002"]
    assert findings and not findings[0].fixable
    assert "dynamic" in findings[0].message


def test_grouped_conv_that_is_not_depthwise_is_silent():
    assert sepfix.check(builders.resnext_grouped()) == []
