"""SEP004 runtime-weights: a conv weight computed at run time (TF-layout Transpose/Reshape, Cast,
an initializer also listed as a graph input)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import sepfix
from sepfix.testing import builders
from sepfix.testing.mangle import Conv, Editor, is_block_conv, is_depthwise, moves_numbers
from tests.rules import support

KINDS = ("tf_transpose", "tf_reshape_transpose", "cast_fp16", "identity", "graph_input")


def _tf_layout_chain(editor: Editor, conv: Conv, with_reshape: bool) -> list[onnx.NodeProto]:
    """Store the weight in TensorFlow's layout and add the nodes that turn it back to ONNX's."""
    w, base = conv.weight, conv.base_name
    c_out, c_in_per_group, kh, kw = w.shape
    nodes: list[onnx.NodeProto] = []
    if with_reshape:
        if is_depthwise(conv):
            # TF depthwise (kH, kW, C, M) reshaped to (kH, kW, 1, C*M), as tf2onnx emits.
            channels = conv.group
            stored = w.reshape(channels, c_out // channels, kh, kw).transpose(2, 3, 0, 1)
            reshaped = [kh, kw, 1, c_out]
        else:
            # TF dense (kH, kW, C_in, C_out), kept flattened so the Reshape has work to do.
            stored = w.transpose(2, 3, 1, 0).reshape(kh * kw * c_in_per_group, c_out)
            reshaped = [kh, kw, c_in_per_group, c_out]
        shape_name = editor.add_initializer(np.array(reshaped, dtype=np.int64), base, "weight_tf_shape")
        reshape = editor.node(
            "Reshape",
            [editor.add_initializer(stored, base, "weight_tf"), shape_name],
            [editor.fresh(base, "weight_tf_reshaped")],
            base,
            "weight_reshape",
        )
        nodes.append(reshape)
        transpose_input, perm = reshape.output[0], [3, 2, 0, 1]
    else:
        if is_depthwise(conv) and c_out == conv.group:
            # TF depthwise (kH, kW, C, 1): the multiplier axis is last.
            layout = [2, 3, 0, 1]
        else:
            # TF dense (kH, kW, C_in, C_out); a depthwise weight with M > 1 as (kH, kW, 1, C*M).
            layout = [2, 3, 1, 0]
        transpose_input = editor.add_initializer(w.transpose(layout), base, "weight_tf")
        perm = [int(p) for p in np.argsort(layout)]
    transpose = editor.node(
        "Transpose", [transpose_input], [editor.fresh(base, "weight_onnx_layout")], base, "weight_transpose", perm=perm
    )
    nodes.append(transpose)
    return nodes


def runtime_weights(model: onnx.ModelProto, how: str, nodes: Sequence[str] | None = None) -> onnx.ModelProto:
    """SEP004: make depthwise and pointwise conv weights something computed at run time.

    how: "tf_transpose" (TF-layout initializer + Transpose, tf2onnx 1070),
    "tf_reshape_transpose" (TF-layout initializer + Reshape + Transpose), "cast_fp16" (fp16
    initializer + Cast to float; the numbers move by the fp16 rounding of the weights, so a
    repaired model must equal this mangled one), "identity" (Identity in front of the weight),
    "graph_input" (the weight initializer is also listed as a graph input, as exporters did
    before IR 4 — onnxruntime issue 4507; no node is added).
    """
    if how not in KINDS:
        raise ValueError(f"unknown how {how!r}; expected one of {KINDS}")
    editor = Editor(model, "SEP004")
    replacements: dict[int, list[onnx.NodeProto]] = {}
    listed_inputs = {i.name for i in editor.graph.input}
    for conv in editor.select(nodes, is_block_conv, "depthwise or pointwise"):
        base = conv.base_name
        if how == "graph_input":
            name = conv.node.input[1]
            if editor.initializer(name) is None:  # a Constant node: make it an initializer first
                name = editor.add_initializer(conv.weight, base, "weight")
                editor.replace_input(conv.node, 1, name)
            if name not in listed_inputs:
                tensor = editor.initializer(name)
                editor.graph.input.append(helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims)))
                listed_inputs.add(name)
            continue
        if how in ("tf_transpose", "tf_reshape_transpose"):
            chain = _tf_layout_chain(editor, conv, with_reshape=how == "tf_reshape_transpose")
        elif how == "cast_fp16":
            stored = editor.add_initializer(conv.weight.astype(np.float16), base, "weight_fp16")
            chain = [editor.node("Cast", [stored], [editor.fresh(base, "weight_fp32")], base, "weight_cast",
                                 to=TensorProto.FLOAT)]
        else:
            stored = editor.add_initializer(conv.weight, base, "weight")
            chain = [editor.node("Identity", [stored], [editor.fresh(base, "weight_identity_out")], base,
                                 "weight_identity")]
        editor.replace_input(conv.node, 1, chain[-1].output[0])
        replacements[conv.index] = [*chain, conv.node]
    return editor.rebuild(replacements)


# "identity" is not here: torch.onnx writes such Identity nodes for deduplicated constants and
# the rule leaves them alone (test_identity_dedup_is_silent below).
MANGLES = {
    "tf_transpose": partial(runtime_weights, how="tf_transpose"),
    "tf_reshape_transpose": partial(runtime_weights, how="tf_reshape_transpose"),
    "cast_fp16": moves_numbers(partial(runtime_weights, how="cast_fp16")),
    "graph_input": partial(runtime_weights, how="graph_input"),
}


SAMPLES = {
    "sep004_runtime_weights_transpose": support.mangled_sample(
        MANGLES["tf_transpose"],
        "SEP004: DW/PW weights stored in TensorFlow layout and turned to ONNX layout by a Transpose at run time.",
    ),
    "sep004_runtime_weights_cast": support.mangled_sample(
        MANGLES["cast_fp16"],
        "SEP004: DW/PW weights stored as fp16 and Cast to float at run time (numbers differ from the clean model "
        "by the fp16 rounding; a repair must match this file).",
    ),
}


# -- the mangler ---------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["tf_transpose", "tf_reshape_transpose", "cast_fp16", "identity"])
def test_runtime_weights_nodes(clean, how):
    depthwise, pointwise = support.convs_by_kind(clean)
    mangled = runtime_weights(clean, how)
    producers, weights = support.producers(mangled), support.initializers(mangled)
    expected_chain = {
        "tf_transpose": ["Transpose"],
        "tf_reshape_transpose": ["Reshape", "Transpose"],
        "cast_fp16": ["Cast"],
        "identity": ["Identity"],
    }[how]
    for name in depthwise + pointwise:
        chain, tensor = [], support.node(mangled, name).input[1]
        while tensor in producers:
            chain.insert(0, producers[tensor].op_type)
            tensor = producers[tensor].input[0]
        assert chain == expected_chain
        stored = weights[tensor]
        original = support.initializers(clean)[support.node(clean, name).input[1]]
        if how.startswith("tf_"):
            assert stored.shape[:2] == original.shape[2:] or how == "tf_reshape_transpose"
        if how == "cast_fp16":
            assert stored.dtype == np.float16
    assert support.convs_by_kind(mangled) == ([], []), "no block conv reads a plain initializer any more"
    support.assert_valid_and_named(clean, mangled)
    expected = clean
    if how == "cast_fp16":
        expected = support.with_weights_seen_by_convs(clean, mangled, depthwise + pointwise)
        np.testing.assert_allclose(support.run(mangled)[0], support.run(clean)[0], atol=0.02)
    support.assert_same_function(expected, mangled)


def test_runtime_weights_tf_layouts_with_multiplier():
    clean = builders.separable_block(depth_multiplier=2, k=5)
    for how in ("tf_transpose", "tf_reshape_transpose"):
        support.assert_same_function(clean, runtime_weights(clean, how))


def test_runtime_weights_graph_input(clean):
    depthwise, pointwise = support.convs_by_kind(clean)
    mangled = runtime_weights(clean, "graph_input")
    input_names = {i.name for i in mangled.graph.input}
    initializers = support.initializers(mangled)
    for name in depthwise + pointwise:
        weight = support.node(mangled, name).input[1]
        assert weight in input_names and weight in initializers
    assert len(mangled.graph.node) == len(clean.graph.node)
    support.assert_valid_and_named(clean, mangled)
    support.assert_same_function(clean, mangled)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown how"):
        runtime_weights(builders.separable_block(), "bogus")


# -- the rule ------------------------------------------------------------------------------------


def test_identity_dedup_is_silent_but_cast_chain_is_not():
    clean = builders.mobilenet_like()
    assert sepfix.check(runtime_weights(clean, "identity")) == []
    assert {f.code for f in sepfix.check(runtime_weights(clean, "cast_fp16"))} == {"SEP004"}


def test_true_graph_input_weight_is_silent():
    assert sepfix.check(builders.weight_graph_input()) == []


def test_qdq_weights_are_not_folded():
    assert sepfix.check(builders.qdq_weights()) == []
