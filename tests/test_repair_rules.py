"""What every rewrite shares: rule tags, preserved metadata and names, cloned shared weights,
fixes inside subgraphs and model-local functions. Each rule's round trip (mangled -> repaired
gives the clean structure and numbers back, and a second repair changes nothing) is
tests/rules/test_round_trip.py."""

from __future__ import annotations

import numpy as np
import onnx

import sepfix
from sepfix.rewrite import RULE_TAG, rewrite
from sepfix.rules import select_rules
from sepfix.testing import builders
from tests.conftest import run_model
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.rules.test_sep005_split_depthwise import split_depthwise
from tests.torch_models import SeparableBlock, export, torch

RULES = select_rules()


def test_created_and_changed_nodes_carry_the_rule_tag():
    repaired, fixes = rewrite(split_depthwise(builders.mobilenet_like()), RULES)
    tagged = [n for n in repaired.graph.node if f"{RULE_TAG}: SEP005 split-depthwise" in n.doc_string]
    assert len(tagged) == len(fixes) == 3
    assert all(n.name for n in repaired.graph.node)
    assert len({n.name for n in repaired.graph.node}) == len(repaired.graph.node)


def test_tag_goes_to_metadata_props_from_ir_10():
    model = export(SeparableBlock(), torch.randn(1, 8, 16, 16), dynamo=True)
    assert model.ir_version >= 10
    repaired, _ = rewrite(dense_depthwise(model), RULES)
    tags = [p.value for n in repaired.graph.node for p in n.metadata_props if p.key == RULE_TAG]
    assert tags == ["SEP001 dense-depthwise"]


def test_metadata_doc_strings_and_names_are_preserved():
    model = dense_depthwise(builders.mobilenet_like())
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
    model = dense_depthwise(builders.separable_block())
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
    model = dense_depthwise(builders.separable_block())
    wrapped = builders.in_if_branch(model)
    [finding] = [f for f in sepfix.check(wrapped)]
    assert finding.graph == "main/branch.then_branch"
    repaired, fixes = rewrite(wrapped, RULES)
    assert len(fixes) == 1 and sepfix.check(repaired) == []
    x = np.random.default_rng(0).standard_normal((1, 8, 12, 12)).astype(np.float32)
    feeds = {"flag": np.array(True), "input": x}
    np.testing.assert_allclose(run_model(repaired, feeds)[0], run_model(wrapped, feeds)[0], rtol=1e-5, atol=1e-6)


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
