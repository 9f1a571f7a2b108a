"""SEP009 inflated-kernel: a 1x1 kernel zero-padded to k x k with matching pads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import Editor, is_pointwise, remove_attribute, set_attribute
from tests.rules import support


def inflated_kernel(model: onnx.ModelProto, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP009: each pointwise conv becomes a 3x3 conv, zero but for the centre tap, with pads 1.

    Same function; nine times the multiply-adds and no pointwise kernel in TensorRT.
    kernel_shape is rewritten when present; auto_pad is dropped in favour of explicit pads.
    """
    editor = Editor(model, "SEP009")
    for conv in editor.select(nodes, is_pointwise, "pointwise"):
        node, w = conv.node, conv.weight
        inflated = np.zeros((*w.shape[:2], 3, 3), dtype=w.dtype)
        inflated[:, :, 1, 1] = w[:, :, 0, 0]
        editor.replace_input(node, 1, editor.add_initializer(inflated, conv.base_name, "inflated_weight"))
        remove_attribute(node, "auto_pad")
        set_attribute(node, "pads", [1, 1, 1, 1])
        if any(a.name == "kernel_shape" for a in node.attribute):
            set_attribute(node, "kernel_shape", [3, 3])
    return editor.rebuild({})


MANGLES = {"inflated": inflated_kernel}


SAMPLES = {
    "sep009_inflated_kernel": support.mangled_sample(
        MANGLES["inflated"],
        "SEP009: pointwise convs inflated to 3x3 kernels, zero but for the centre tap, with pads 1.",
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


def test_inflated_kernel(clean):
    _, pointwise = support.convs_by_kind(clean)
    mangled = inflated_kernel(clean)
    weights = support.initializers(mangled)
    for name in pointwise:
        node = support.node(mangled, name)
        w = weights[node.input[1]]
        assert w.shape[2:] == (3, 3)
        assert support.attrs(node)["pads"] == [1, 1, 1, 1]
        assert support.attrs(node).get("kernel_shape", [3, 3]) == [3, 3]
        off_centre = w.copy()
        off_centre[:, :, 1, 1] = 0
        assert not np.any(off_centre) and np.any(w[:, :, 1, 1])
    assert support.convs_by_kind(mangled)[1] == []
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


# -- the rule ------------------------------------------------------------------------------------


def test_repvgg_kernel_is_silent():
    """Small but non-zero off-centre taps: a real 3x3 kernel."""
    assert sepfix.check(builders.repvgg_kernel()) == []


def test_inflated_kernel_without_matching_pads_is_silent():
    """Zero off-centre taps but no padding: the output is smaller than a 1x1 conv's, so it is not
    a 1x1 conv in disguise."""
    model = inflated_kernel(builders.separable_block())
    conv = next(n for n in model.graph.node if n.name == "pw_conv")
    set_attribute(conv, "pads", [0, 0, 0, 0])
    del model.graph.output[0].type.tensor_type.shape.dim[:]
    assert not any(f.code == "SEP009" for f in sepfix.check(model))
