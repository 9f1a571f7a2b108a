"""SEP007 layout-sandwich: NHWC Transpose pairs wrapped around depthwise and pointwise convs."""

from __future__ import annotations

from collections.abc import Sequence

import onnx

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import TO_NCHW, TO_NHWC, Editor, is_block_conv
from tests.rules import support


def _nhwc_round_trip(editor: Editor, base: str, source: str, target: str, where: str) -> list[onnx.NodeProto]:
    """Transpose(0,2,3,1) then Transpose(0,3,1,2): an NHWC detour that changes nothing."""
    nhwc = editor.node("Transpose", [source], [editor.fresh(base, f"{where}_nhwc")], base, f"{where}_to_nhwc",
                       perm=TO_NHWC)
    nchw = editor.node("Transpose", [nhwc.output[0]], [target], base, f"{where}_to_nchw", perm=TO_NCHW)
    return [nhwc, nchw]


def layout_sandwich(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP007: wrap each depthwise and pointwise conv in NHWC round trips, as tf2onnx did.

    Before the conv: Transpose(0,2,3,1) → Transpose(0,3,1,2); after it the same pair. Each pair
    is an inverse pair that cancels, so the function is unchanged (bit for bit).
    """
    editor = Editor(model, "SEP007")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    for conv in editor.select(nodes, is_block_conv, "depthwise or pointwise"):
        node, base = conv.node, conv.base_name
        before_output = editor.fresh(base, "before_nchw")
        before = _nhwc_round_trip(editor, base, node.input[0], before_output, "before")
        conv_output = node.output[0]
        node.input[0] = before[-1].output[0]
        node.output[0] = editor.fresh(base, "conv_out")
        after = _nhwc_round_trip(editor, base, node.output[0], conv_output, "after")
        replacements[conv.index] = [*before, node, *after]
    return editor.rebuild(replacements)


MANGLES = {"sandwich": layout_sandwich}


SAMPLES = {
    "sep007_layout_sandwich": support.mangled_sample(
        MANGLES["sandwich"],
        "SEP007: NHWC Transpose round trips (inverse pairs) before and after every DW/PW conv.",
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


def test_layout_sandwich(clean):
    depthwise, pointwise = support.convs_by_kind(clean)
    mangled = layout_sandwich(clean)
    assert support.ops(mangled)["Transpose"] == support.ops(clean)["Transpose"] + 4 * len(depthwise + pointwise)
    assert support.ops(mangled)["Conv"] == support.ops(clean)["Conv"]
    producers = support.producers(mangled)
    for name in depthwise + pointwise:
        node = support.node(mangled, name)
        to_nchw = producers[node.input[0]]
        to_nhwc = producers[to_nchw.input[0]]
        assert (support.attrs(to_nhwc)["perm"], support.attrs(to_nchw)["perm"]) == ([0, 2, 3, 1], [0, 3, 1, 2])
        (after_nhwc,) = support.consumers(mangled, node.output[0])
        (after_nchw,) = support.consumers(mangled, after_nhwc.output[0])
        assert (support.attrs(after_nhwc)["perm"], support.attrs(after_nchw)["perm"]) == ([0, 2, 3, 1], [0, 3, 1, 2])
        assert after_nchw.output[0] == support.node(clean, name).output[0], "downstream still reads the old name"
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


# -- the rule ------------------------------------------------------------------------------------


def test_convnext_layout_transposes_are_silent():
    """One NHWC Transpose into a LayerNorm and one back after the Linear layers: no inverse pair
    around a conv, nothing to cancel."""
    assert sepfix.check(builders.convnext_linear()) == []


def test_one_finding_per_inverse_pair():
    findings = sepfix.check(layout_sandwich(builders.separable_block()))
    assert {f.code for f in findings} == {"SEP007"} and len(findings) == 4
