"""Each rule fires on its mangle (helper-built and real torch exports) and nowhere else."""

from __future__ import annotations

import pytest

import sepfix
from sepfix.testing import builders, mangle
from tests.torch_models import MobileNetV2Like, SeparableBlock, export, torch

MANGLES = {
    "SEP001": [lambda m: mangle.dense_depthwise(m)],
    "SEP002": [lambda m: mangle.group_attribute(m, None), lambda m: mangle.group_attribute(m, 0),
               lambda m: mangle.group_attribute(m, -3), lambda m: mangle.group_attribute(m, 1)],
    "SEP003": [lambda m: mangle.kernel_shape(m, "wrong"), lambda m: mangle.kernel_shape(m, "missing_dq")],
    "SEP004": [lambda m: mangle.runtime_weights(m, how) for how in
               ("tf_transpose", "tf_reshape_transpose", "cast_fp16", "graph_input")],
    "SEP005": [lambda m: mangle.split_depthwise(m)],
    "SEP006": [lambda m: mangle.matmul_pointwise(m)],
    "SEP007": [lambda m: mangle.layout_sandwich(m)],
    "SEP008": [lambda m: mangle.detached_bias(m)],
    "SEP009": [lambda m: mangle.inflated_kernel(m)],
}
CASES = [(code, i) for code, fns in MANGLES.items() for i in range(len(fns))]


@pytest.fixture(scope="module")
def clean_models():
    x = torch.randn(1, 8, 16, 16)
    return {
        "helper": builders.mobilenet_like(),
        "torch-legacy": export(SeparableBlock(stride=2), x),
        "torch-dynamo": export(SeparableBlock(dilation=2), x, dynamo=True),
    }


@pytest.mark.parametrize("source", ["helper", "torch-legacy", "torch-dynamo"])
@pytest.mark.parametrize("code, variant", CASES, ids=[f"{c}-{i}" for c, i in CASES])
def test_rule_fires_on_its_mangle_only(clean_models, source, code, variant):
    clean = clean_models[source]
    assert sepfix.check(clean) == []
    mangled = MANGLES[code][variant](clean)
    findings = sepfix.check(mangled)
    assert findings, f"{code} not detected"
    assert {f.code for f in findings} == {code}
    for f in findings:
        assert f.name and f.node and f.message
        assert f.fixable is True, f.message
        assert f.nodes[0] == f.node


def test_depth_multiplier_two_from_torch():
    model = export(SeparableBlock(multiplier=2), torch.randn(1, 8, 16, 16))
    [finding] = sepfix.check(mangle.dense_depthwise(model))
    assert finding.code == "SEP001" and finding.details["depth_multiplier"] == 2
    assert "(16, 8, 3, 3)" in finding.message and "(16, 1, 3, 3)" in finding.message


def test_evidence_in_messages():
    clean = builders.mobilenet_like()
    [first, *_] = sepfix.check(mangle.dense_depthwise(clean))
    assert "group=1" in first.message and "(8, 8, 3, 3)" in first.message and "group=8" in first.message
    assert first.details["group_expected"] == 8 and first.details["weight_shape"] == [8, 8, 3, 3]
    [first, *_] = sepfix.check(mangle.group_attribute(clean, -3))
    assert "group=-3" in first.message and "group=8" in first.message
    assert first.details == {**first.details, "group_found": -3, "group_expected": 8, "c_in": 8}


def test_mobilenet_mangled_everywhere_counts_every_block():
    model = export(MobileNetV2Like(), torch.randn(1, 3, 32, 32))
    findings = sepfix.check(mangle.dense_depthwise(model))
    assert [f.code for f in findings] == ["SEP001"] * 4


@pytest.mark.parametrize(
    "builder",
    ["resnext_grouped", "dense_with_zeros", "repvgg_kernel", "convnext_linear", "weight_graph_input", "qdq_weights"],
)
def test_negative_controls_stay_silent(builder):
    model = getattr(builders, builder)()
    assert sepfix.check(model) == []


def test_identity_dedup_from_torch_is_silent_but_cast_chain_is_not():
    clean = builders.mobilenet_like()
    assert sepfix.check(mangle.runtime_weights(clean, "identity")) == []
    assert {f.code for f in sepfix.check(mangle.runtime_weights(clean, "cast_fp16"))} == {"SEP004"}


def test_group_with_dynamic_channels_is_reported_but_not_fixable():
    import onnx

    model = mangle.group_attribute(builders.separable_block(), -1)
    model.graph.input[0].type.tensor_type.shape.dim[1].ClearField("dim_value")
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "C"
    del model.graph.value_info[:]
    findings = [f for f in sepfix.check(model) if f.code == "SEP002"]
    assert findings and not findings[0].fixable
    assert "dynamic" in findings[0].message
    assert isinstance(model, onnx.ModelProto)


def test_select_and_ignore_by_prefix():
    model = mangle.detached_bias(mangle.dense_depthwise(builders.mobilenet_like()))
    assert {f.code for f in sepfix.check(model)} == {"SEP001", "SEP008"}
    assert {f.code for f in sepfix.check(model, select=["SEP001"])} == {"SEP001"}
    assert {f.code for f in sepfix.check(model, ignore=["SEP00"])} == set()
    assert {f.code for f in sepfix.check(model, select=["detached-bias"])} == {"SEP008"}
    with pytest.raises(sepfix.SepfixError):
        sepfix.check(model, select=["XYZ9"])


def test_advice_only_when_asked():
    model = builders.separable_block(c_in=6, c_out=10)
    assert sepfix.check(model) == []
    assert {f.code for f in sepfix.check(model, advice=True)} == {"ADV001"}
