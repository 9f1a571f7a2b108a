"""Every rule's rewrite, on helper-built models and real torch exports: mangled -> repaired gives
the clean structure back, the same outputs, and a second repair changes nothing."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest

import sepfix
from sepfix.rewrite import RULE_TAG, rewrite
from sepfix.rules import select_rules
from sepfix.testing import builders, mangle
from tests.conftest import run_model
from tests.torch_models import SeparableBlock, export, torch

# (mangle, whether the mangled model computes exactly what the clean one does)
MANGLES = {
    "SEP001": [(lambda m: mangle.dense_depthwise(m), True)],
    "SEP002": [(lambda m: mangle.group_attribute(m, None), False), (lambda m: mangle.group_attribute(m, -3), False),
               (lambda m: mangle.group_attribute(m, 0), False)],
    "SEP003": [(lambda m: mangle.kernel_shape(m, "wrong"), False), (lambda m: mangle.kernel_shape(m, "missing_dq"), None)],
    "SEP004": [(lambda m: mangle.runtime_weights(m, "tf_transpose"), True),
               (lambda m: mangle.runtime_weights(m, "tf_reshape_transpose"), True),
               (lambda m: mangle.runtime_weights(m, "cast_fp16"), None),
               (lambda m: mangle.runtime_weights(m, "graph_input"), True)],
    "SEP005": [(lambda m: mangle.split_depthwise(m), True)],
    "SEP006": [(lambda m: mangle.matmul_pointwise(m), True)],
    "SEP007": [(lambda m: mangle.layout_sandwich(m), True)],
    "SEP008": [(lambda m: mangle.detached_bias(m), True)],
    "SEP009": [(lambda m: mangle.inflated_kernel(m), True)],
}
CASES = [(code, i) for code, fns in MANGLES.items() for i in range(len(fns))]
RULES = select_rules()


def op_counts(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def grouped_convs(model: onnx.ModelProto) -> list[int]:
    """The group of every conv with group > 1, in order: the depthwise convs of the blocks."""
    groups = [next((a.i for a in n.attribute if a.name == "group"), 1) for n in model.graph.node if n.op_type == "Conv"]
    return [g for g in groups if g > 1]


@pytest.mark.parametrize("source", ["helper", "torch-legacy", "torch-dynamo"])
@pytest.mark.parametrize("code, variant", CASES, ids=[f"{c}-{i}" for c, i in CASES])
def test_repair_restores_canonical_block(clean_models, source, code, variant):
    clean = clean_models[source]
    make, exact = MANGLES[code][variant]
    mangled = make(clean)
    repaired, fixes = rewrite(mangled, RULES)
    assert fixes and {f.code for f in fixes} == {code}
    assert sepfix.check(repaired) == []  # canonical now
    # Structure: the clean model's ops come back (Q/DQ kept: explicit quantization needs them).
    expected = op_counts(mangled) if "DequantizeLinear" in op_counts(mangled) else op_counts(clean)
    assert op_counts(repaired) == expected
    assert grouped_convs(repaired) == grouped_convs(clean)
    # Numbers: equal to the clean model where the mangle kept them, else to the mangled model.
    reference = clean if exact is not None else mangled
    for a, b in zip(run_model(repaired), run_model(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    # Idempotent: nothing left to do, the same object comes back.
    again, more = rewrite(repaired, RULES)
    assert more == [] and again is repaired
    # Preserved: IR version, opsets, graph inputs and outputs in order.
    assert repaired.ir_version == mangled.ir_version
    assert list(repaired.opset_import) == list(mangled.opset_import)
    original_inputs = [v.name for v in mangled.graph.input]
    if code == "SEP004" and variant == 3:  # the folded weights leave the input list on purpose
        original_inputs = [n for n in original_inputs if n in {v.name for v in clean.graph.input}]
    assert [v.name for v in repaired.graph.input] == original_inputs
    assert [v.name for v in repaired.graph.output] == [v.name for v in mangled.graph.output]


def test_created_and_changed_nodes_carry_the_rule_tag():
    repaired, fixes = rewrite(mangle.split_depthwise(builders.mobilenet_like()), RULES)
    tagged = [n for n in repaired.graph.node if f"{RULE_TAG}: SEP005 split-depthwise" in n.doc_string]
    assert len(tagged) == len(fixes) == 3
    assert all(n.name for n in repaired.graph.node)
    assert len({n.name for n in repaired.graph.node}) == len(repaired.graph.node)


def test_tag_goes_to_metadata_props_from_ir_10():
    model = export(SeparableBlock(), torch.randn(1, 8, 16, 16), dynamo=True)
    assert model.ir_version >= 10
    repaired, _ = rewrite(mangle.dense_depthwise(model), RULES)
    tags = [p.value for n in repaired.graph.node for p in n.metadata_props if p.key == RULE_TAG]
    assert tags == ["SEP001 dense-depthwise"]


def test_metadata_doc_strings_and_names_are_preserved():
    model = mangle.dense_depthwise(builders.mobilenet_like())
    model.doc_string = "model doc"
    model.producer_name, model.producer_version = "exporter", "9.9"
    onnx.helper.set_model_props(model, {"author": "me", "license": "MIT"})
    model.graph.doc_string = "graph doc"
    model.graph.node[0].doc_string = "stem doc"
    names = {n.name for n in model.graph.node}
    repaired, _ = rewrite(model, RULES)
    assert repaired.doc_string == "model doc" and repaired.producer_name == "exporter"
    assert repaired.producer_version == "9.9" and repaired.graph.doc_string == "graph doc"
    assert {p.key: p.value for p in repaired.metadata_props} == {"author": "me", "license": "MIT"}
    assert repaired.graph.node[0].doc_string == "stem doc"
    assert {n.name for n in repaired.graph.node} == names


def test_shared_weight_is_cloned_not_edited():
    """Two convs read one dense block-diagonal weight; one is excluded from the fix: it keeps it."""
    model = mangle.dense_depthwise(builders.separable_block())
    dw = next(n for n in model.graph.node if n.op_type == "Conv")
    twin = onnx.helper.make_node("Conv", [dw.input[0], dw.input[1]], ["twin_out"], name="twin", group=1)
    model.graph.node.append(twin)
    model.graph.output.append(onnx.helper.make_tensor_value_info("twin_out", onnx.TensorProto.FLOAT, None))
    repaired, fixes = rewrite(model, RULES)
    assert len(fixes) == 2  # both convs are dense-depthwise; each gets its own slim weight
    weights = {n.name: n.input[1] for n in repaired.graph.node if n.op_type == "Conv"}
    assert weights["twin"] != weights[dw.name]
    for a, b in zip(run_model(repaired), run_model(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fix_inside_if_subgraph():
    model = mangle.dense_depthwise(builders.separable_block())
    wrapped = builders.in_if_branch(model)
    [finding] = [f for f in sepfix.check(wrapped)]
    assert finding.graph == "main/branch.then_branch"
    repaired, fixes = rewrite(wrapped, RULES)
    assert len(fixes) == 1 and sepfix.check(repaired) == []
    x = np.random.default_rng(0).standard_normal((1, 8, 12, 12)).astype(np.float32)
    feeds = {"flag": np.array(True), "input": x}
    np.testing.assert_allclose(run_model(repaired, feeds)[0], run_model(wrapped, feeds)[0], rtol=1e-5, atol=1e-6)


def test_dense_depthwise_conv_transpose_from_torch():
    """A depthwise ConvTranspose2d (groups == C, multiplier 2) stored dense: found and repaired."""
    from tests.torch_models import DepthwiseTransposed

    clean = export(DepthwiseTransposed(), torch.randn(1, 8, 8, 8))
    mangled = mangle.dense_depthwise(clean)
    [finding] = sepfix.check(mangled)
    assert finding.code == "SEP001" and finding.details["depth_multiplier"] == 2
    repaired, fixes = rewrite(mangled, RULES)
    assert len(fixes) == 1 and sepfix.check(repaired) == []
    conv_t = next(n for n in repaired.graph.node if n.op_type == "ConvTranspose")
    assert next(a.i for a in conv_t.attribute if a.name == "group") == 8
    for a, b in zip(run_model(repaired), run_model(clean)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fix_inside_model_local_function():
    """A dense-depthwise conv inside a model-local function, its weight a Constant node there."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    slim = rng.standard_normal((4, 1, 3, 3)).astype(np.float32)
    dense = np.zeros((4, 4, 3, 3), np.float32)
    dense[np.arange(4), np.arange(4)] = slim[:, 0]
    body = [
        helper.make_node("Constant", [], ["w"], name="weight", value=numpy_helper.from_array(dense, "w")),
        helper.make_node("Conv", ["a", "w"], ["b"], name="dw_in_function", pads=[1, 1, 1, 1]),
    ]
    function = helper.make_function("local", "DepthwiseBlock", ["a"], ["b"], body, [helper.make_opsetid("", 13)])
    graph = helper.make_graph(
        [helper.make_node("DepthwiseBlock", ["x"], ["y"], name="call", domain="local")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 8, 8])],
    )
    model = helper.make_model(graph, functions=[function], ir_version=8,
                              opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("local", 1)])
    [finding] = sepfix.check(model)
    assert finding.code == "SEP001" and finding.graph == "function:local.DepthwiseBlock"
    repaired, fixes = rewrite(model, RULES)
    assert len(fixes) == 1 and sepfix.check(repaired) == []
    conv = next(n for n in repaired.functions[0].node if n.op_type == "Conv")
    assert next(a.i for a in conv.attribute if a.name == "group") == 4
    for a, b in zip(run_model(repaired), run_model(model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
