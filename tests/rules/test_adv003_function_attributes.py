"""ADV003 function-attributes: convs in model-local functions whose call sites bind their
attributes differently are said to be unchecked, never a crash; attributes every call site binds
alike are read (and a mangle inside the function is repaired there).

Real exporter output: torch.onnx.export(export_modules_as_functions=...) of torchvision
MobileNetV2 / EfficientNet-B0 (tests/data/real/torch/README.md): one nn.Conv2d function called
with each conv's own `group`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import sepfix

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "torch"
MANGLES: dict = {}  # advice: nothing to repair
SAMPLES: dict = {}


def _codes(model: onnx.ModelProto, advice: bool = True) -> list[str]:
    return [f.code for f in sepfix.check(model, advice=advice)]


def _function_model(groups: list[int | None]) -> onnx.ModelProto:
    """A function `DwConv(x)` holding its weight in a Constant, whose Conv reads `group` from the
    call; one call per entry of `groups` (None: the call sets no group)."""
    weight = np.random.default_rng(0).standard_normal((8, 1, 3, 3)).astype(np.float32)
    constant = helper.make_node("Constant", [], ["w"], name="weight", value=numpy_helper.from_array(weight))
    body = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])
    body.attribute.append(onnx.AttributeProto(name="group", ref_attr_name="group", type=onnx.AttributeProto.INT))
    function = helper.make_function("local", "DwConv", ["x"], ["y"], [constant, body],
                                    [helper.make_opsetid("", 13)], attributes=["group"])
    nodes, x = [], "input"
    for i, group in enumerate(groups):
        call = helper.make_node("DwConv", [x], [f"y{i}"], name=f"call{i}", domain="local")
        if group is not None:
            call.attribute.append(helper.make_attribute("group", group))
        nodes.append(call)
        x = f"y{i}"
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("local", 1)],
                             functions=[function], ir_version=8)


def test_function_attributes_bound_alike_at_every_call_site_are_read():
    assert _codes(_function_model([8, 8])) == []


def test_function_attributes_that_differ_between_call_sites_are_advice_not_a_crash():
    findings = sepfix.check(_function_model([8, 1]), advice=True)
    assert [(f.code, f.severity) for f in findings] == [("ADV003", "info")]
    assert findings[0].details == {"attributes": ["group"], "call_sites": 2}
    assert sepfix.check(_function_model([8, 1])) == []  # advice never fails a check


def test_a_missing_group_bound_by_every_call_site_is_repaired_inside_the_function():
    model = _function_model([None, None])  # the call gives no group: the Conv's default 1, invalid for C=8
    assert _codes(model) == ["SEP002"]
    repaired, report = sepfix.repair(model)
    assert report.validation.passed and _codes(repaired) == []
    conv = next(n for n in repaired.functions[0].node if n.op_type == "Conv")
    assert helper.get_attribute_value(next(a for a in conv.attribute if a.name == "group")) == 8



@pytest.mark.parametrize("name", ["tv_mobilenet_v2_fn_conv2d.onnx", "tv_efficientnet_b0_fn_conv2d.onnx"])
def test_real_function_exports(name):
    findings = sepfix.check(str(REAL / name), advice=True)
    assert [(f.code, f.severity) for f in findings] == [("ADV003", "info")]
    # one nn.Conv2d body: every conv's group, kernel, pads and strides come from its call
    assert findings[0].details["attributes"] == ["group", "kernel_shape", "pads", "strides"]
    assert findings[0].details["call_sites"] > 1
