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


@pytest.mark.parametrize("source", ["helper", "torch-legacy", "torch-dynamo"])
@pytest.mark.parametrize("code, variant", CASES, ids=[f"{c}-{i}" for c, i in CASES])
def test_rule_fires_on_its_mangle_only(clean_models, source, code, variant):
    clean = clean_models[source]
    assert sepfix.check(clean) == []
    mangled = MANGLES[code][variant](clean)
    # advice too: an info-level finding (SEP008's bias Add, which ONNX Runtime folds) is still found
    findings = [f for f in sepfix.check(mangled, advice=True) if not f.code.startswith("ADV")]
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
    assert {f.code for f in sepfix.check(model)} == {"SEP001"}  # SEP008 here is info: ONNX Runtime folds it
    assert {f.code for f in sepfix.check(model, advice=True)} == {"SEP001", "SEP008"}
    assert {f.code for f in sepfix.check(model, select=["SEP001"], advice=True)} == {"SEP001"}
    assert {f.code for f in sepfix.check(model, ignore=["SEP00"], advice=True)} == set()
    assert {f.code for f in sepfix.check(model, select=["detached-bias"], advice=True)} == {"SEP008"}
    with pytest.raises(sepfix.SepfixError):
        sepfix.check(model, select=["XYZ9"])


def test_advice_only_when_asked():
    model = builders.separable_block(c_in=6, c_out=10)
    assert sepfix.check(model) == []
    assert {f.code for f in sepfix.check(model, advice=True)} == {"ADV001"}


def test_conv1d_dense_depthwise_from_torch_is_found_and_repaired():
    """A Conv1d depthwise block whose weight a converter expanded to dense block-diagonal."""
    import numpy as np
    from onnx import numpy_helper

    from sepfix.rewrite import rewrite
    from sepfix.rules import select_rules
    from tests.conftest import assert_same_outputs

    block = SeparableBlock(conv=torch.nn.Conv1d, bn=torch.nn.BatchNorm1d)
    clean = export(block, torch.randn(1, 8, 32))
    mangled = type(clean)()
    mangled.CopyFrom(clean)
    conv = next(n for n in mangled.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i == 8 for a in n.attribute))
    weight_init = next(t for t in mangled.graph.initializer if t.name == conv.input[1])
    slim = numpy_helper.to_array(weight_init)  # (8, 1, 3)
    dense = np.zeros((8, 8, 3), slim.dtype)
    dense[np.arange(8), np.arange(8)] = slim[:, 0]
    weight_init.CopyFrom(numpy_helper.from_array(dense, weight_init.name))
    next(a for a in conv.attribute if a.name == "group").i = 1
    [finding] = sepfix.check(mangled)
    assert finding.code == "SEP001" and "(8, 8, 3)" in finding.message
    repaired, _ = rewrite(mangled, select_rules())
    assert sepfix.check(repaired) == []
    assert_same_outputs(repaired, clean)


def test_check_reads_only_the_weights_it_inspects(tmp_path):
    """On an external-data model, a clean check reads a few hundred bytes of weights at most;
    a dense-depthwise candidate is read because it must be inspected."""
    import numpy as np
    import onnx

    from sepfix import model_io
    from sepfix.checker import check_loaded
    from sepfix.rules import select_rules

    clean = builders.mobilenet_like(channels=(32, 64, 64))
    for name, model in (("clean", clean), ("dense", mangle.dense_depthwise(clean, nodes=["block1_dw_conv"]))):
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, path, save_as_external_data=True, location=f"{name}.data", size_threshold=0)
        total = (tmp_path / f"{name}.data").stat().st_size
        loaded = model_io.load_for_check(path)
        result = check_loaded(loaded, select_rules(), str(path))
        if name == "clean":
            assert result.findings == [] and loaded.bytes_read < 1024, loaded.bytes_read
        else:
            conv = next(n for n in model.graph.node if n.name == "block1_dw_conv")
            weight = next(t for t in model.graph.initializer if t.name == conv.input[1])
            dense_bytes = 4 * int(np.prod(weight.dims))
            assert [f.code for f in result.findings] == ["SEP001"]
            assert dense_bytes <= loaded.bytes_read < dense_bytes + 4096 < total
