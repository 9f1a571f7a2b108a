"""Engine layer information → per-block fusion report, on real TensorRT engine dumps.

The fixtures are unmodified layer-information JSON files from NVIDIA/TensorRT's
trt-engine-explorer (see their README). Everything here is read from the engine alone: no ONNX
model is loaded, so node roles come from the names TensorRT gave its layers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sepfix.errors import SepfixError
from sepfix.validate.tensorrt import (
    OnnxBlock,
    block_report,
    build_engine_layer_info,
    coverage,
    classify_layer,
    layer_info_from_engine_file,
    load_layer_info,
    parse_layer_info,
    parse_metadata,
    predict_block_report,
    split_layer_name,
    tensorrt_available,
)

from tests.conftest import SHARED, require_shared

FIXTURES = SHARED / "fixtures" / "trt-layer-info"


@pytest.fixture(autouse=True)
def fixtures_present():
    """Every test here reads the fixtures: each fails under CI without them, else skips saying why."""
    require_shared(FIXTURES, "TensorRT layer-info fixtures")

MOBILENETS = {
    "mobilenet.qat": FIXTURES / "mobilenet.qat.onnx.engine.graph.json",
    "mobilenet_v2_residuals.qat": FIXTURES / "mobilenet_v2_residuals.qat.onnx.engine.graph.json",
}
RESNETS = {
    "fp16": FIXTURES / "resnet-A100-fp16" / "resnet.onnx.engine.graph.json",
    "fp32": FIXTURES / "resnet-A100-fp32" / "resnet.onnx.engine.graph.json",
}
GROUP_SIZES = {32, 96, 144, 192, 384, 576, 960}


@pytest.fixture(params=sorted(MOBILENETS), ids=sorted(MOBILENETS))
def mobilenet(request):
    return load_layer_info(MOBILENETS[request.param])


def _by_name(info, name):
    matches = [layer for layer in info.layers if layer.name == name]
    assert len(matches) == 1, name
    return matches[0]


# ---------------------------------------------------------------- MobileNetV2 QAT engines


def test_mobilenet_has_17_cuda_depthwise_layers(mobilenet):
    depthwise = [layer for layer in mobilenet.layers if classify_layer(layer).kind == "depthwise"]
    assert len(depthwise) == 17
    for layer in depthwise:
        assert layer.layer_type == "CudaDepthwiseConvolution"
        assert classify_layer(layer).cuda_depthwise
        assert layer.groups == layer.out_maps
    assert {layer.groups for layer in depthwise} == GROUP_SIZES


def test_mobilenet_block_report_one_fused_block_per_depthwise_layer(mobilenet):
    results = block_report(mobilenet)
    assert len(results) == 17
    for result in results:
        assert result.evidence == "observed"
        assert result.status == "fused", result.message
        assert result.depthwise_kept_grouped is True
        assert result.cuda_depthwise is True
        assert result.depthwise_groups in GROUP_SIZES
        fused = result.depthwise_fused
        # Each depthwise layer holds its Conv, its Clip (as PWN) and the weight's QuantizeLinear.
        assert fused.conv is not None and fused.conv.startswith("Conv_")
        assert len(fused.activations) == 1 and fused.activations[0].startswith("Clip_")
        assert fused.pwn == fused.activations
        assert len(fused.quantize) == 1 and fused.quantize[0].startswith("QuantizeLinear_")
        assert fused.trt_activation == "CLIPPED_RELU"
        assert len(fused.weights) == 1 and fused.weights[0].endswith(".weight")
        # The pointwise conv after it is found and is a 1x1, Groups 1 convolution.
        assert result.pointwise_layer is not None
        assert result.pointwise_fused.conv is not None
        assert result.pointwise_fused.has_bias is True
        assert result.depsep is False
    with_add = [r for r in results if r.pointwise_fused.adds]
    assert len(with_add) == 10
    assert all(r.pointwise_residual_input for r in with_add)
    assert not any(r.pointwise_residual_input for r in results if not r.pointwise_fused.adds)


def test_mobilenet_first_depthwise_layer_by_exact_name():
    info = load_layer_info(MOBILENETS["mobilenet.qat"])
    layer = _by_name(info, "features.1.conv.0.0.weight + QuantizeLinear_25 + Conv_29 + PWN(Clip_33)")
    assert layer.onnx_nodes == ("QuantizeLinear_25", "Conv_29", "Clip_33")
    assert layer.weights == ("features.1.conv.0.0.weight",)
    assert layer.pwn_nodes == ("Clip_33",)
    assert [layer.op_type(n) for n in layer.onnx_nodes] == ["QuantizeLinear", "Conv", "Clip"]

    first = block_report(info)[0]
    assert first.depthwise_layer == layer.name
    assert first.depthwise_node == "Conv_29"
    assert first.depthwise_fused.conv == "Conv_29"
    assert first.depthwise_fused.activations == ("Clip_33",)
    assert first.depthwise_fused.quantize == ("QuantizeLinear_25",)
    assert first.depthwise_fused.weights == ("features.1.conv.0.0.weight",)
    assert first.channels == 32
    assert first.pointwise_layer == "features.1.conv.1.weight + QuantizeLinear_42 + Conv_46"
    assert first.pointwise_node == "Conv_46"
    assert first.pointwise_fused.adds == ()


@pytest.mark.parametrize(
    ("key", "depthwise", "pointwise_layer", "conv", "add"),
    [
        ("mobilenet.qat", "Conv_125", "features.3.conv.2.weight + QuantizeLinear_138 + Conv_142 + Add_144",
         "Conv_142", "Add_144"),
        ("mobilenet_v2_residuals.qat", "Conv_677",
         "features.16.conv.2.weight + QuantizeLinear_689 + Conv_691 + Add_693", "Conv_691", "Add_693"),
    ],
)
def test_mobilenet_pointwise_fuses_residual_add(key, depthwise, pointwise_layer, conv, add):
    results = {r.depthwise_node: r for r in block_report(load_layer_info(MOBILENETS[key]))}
    result = results[depthwise]
    assert result.pointwise_layer == pointwise_layer
    assert result.pointwise_fused.conv == conv
    assert result.pointwise_fused.adds == (add,)
    assert result.pointwise_residual_input is True


def test_mobilenet_has_no_depsep_layer(mobilenet):
    assert not any(classify_layer(layer).kind == "depsep" for layer in mobilenet.layers)
    assert all(r.depsep is False for r in block_report(mobilenet))


def test_unnamed_and_weight_names_are_not_nodes():
    info = load_layer_info(MOBILENETS["mobilenet.qat"])
    layer = next(layer for layer in info.layers if layer.name.startswith("classifier.1.weight"))
    assert layer.onnx_nodes == ("QuantizeLinear_860", "Gemm_864")
    assert layer.weights == ("classifier.1.weight", "classifier.1.bias")
    assert "(Unnamed Layer* 850) [ElementWise]" in layer.other_names
    assert not any("Unnamed" in node for node in layer.onnx_nodes)


def test_qdq_reformat_is_a_node_not_a_copy():
    info = load_layer_info(MOBILENETS["mobilenet.qat"])
    quantize = _by_name(info, "QuantizeLinear_2")
    assert quantize.origin == "QDQ" and not quantize.is_copy
    assert quantize.onnx_nodes == ("QuantizeLinear_2",)
    copy = _by_name(info, "Reformatting CopyNode for Input Tensor 0 to GlobalAveragePool_843")
    assert copy.is_copy and copy.onnx_nodes == ()


# ---------------------------------------------------------------- ResNet-18 engines


@pytest.mark.parametrize("precision", sorted(RESNETS))
def test_resnet_has_no_depthwise_and_copies_fuse_nothing(precision):
    info = load_layer_info(RESNETS[precision])
    assert not any(classify_layer(layer).kind in ("depthwise", "depsep") for layer in info.layers)
    assert block_report(info) == []
    conv = _by_name(info, "Conv_5 + Add_6 + Relu_7")
    assert conv.onnx_nodes == ("Conv_5", "Add_6", "Relu_7")
    assert [conv.op_type(n) for n in conv.onnx_nodes] == ["Conv", "Add", "Relu"]
    for layer in info.layers:
        if layer.name.startswith("Reformatting CopyNode"):
            assert layer.is_copy and layer.onnx_nodes == ()


def test_resnet_fp16_copy_node_layer():
    info = load_layer_info(RESNETS["fp16"])
    copy = _by_name(info, "Reformatting CopyNode for Input Tensor 0 to Conv_5 + Add_6 + Relu_7")
    assert copy.layer_type == "NoOp"
    assert copy.is_copy
    assert copy.onnx_nodes == ()
    assert copy.copy_target == "Conv_5 + Add_6 + Relu_7"
    assert classify_layer(copy).kind == "copy"


# ---------------------------------------------------------------- name and Metadata parsing


def test_split_layer_name_forms():
    nested = split_layer_name("/b/Conv + PWN(PWN(/b/Sigmoid, /b/Mul) + /b/Add)")
    assert nested.nodes == ("/b/Conv", "/b/Sigmoid", "/b/Mul", "/b/Add")
    assert nested.pwn_nodes == ("/b/Sigmoid", "/b/Mul", "/b/Add")
    horizontal = split_layer_name("Conv_3 + Relu_4 || Conv_0 + Relu_1")
    assert horizontal.horizontal and horizontal.nodes == ("Conv_3", "Relu_4", "Conv_0", "Relu_1")
    copy = split_layer_name("Reformatting CopyNode for Output Tensor 0 to Conv_27 + Add_28 + Relu_29")
    assert copy.nodes == () and copy.copy_target == "Conv_27 + Add_28 + Relu_29"


def test_parse_metadata_documented_format():
    # onnx-tensorrt writes "[ONNX Layer: <node> | <fn node> (<fn>)]"; fused layers join with \x1f.
    text = "[ONNX Layer: /dw/Conv]\x1f[ONNX Layer: /act/Clip | /blk (Block)]"
    assert parse_metadata(text) == ("/dw/Conv", "/act/Clip")
    assert parse_metadata("[ONNX Layer: a]\x1e[ONNX Layer: b]") == ("a", "b")
    # An entry cut by TensorRT's length limit is dropped, not half-read.
    assert parse_metadata("[ONNX Layer: a]\x1f[ONNX Layer: bb ... yy]\x1f[ONNX Layer: c]") == ("a", "c")


def _tensor(name, channels):
    return {"Name": name, "Location": "Device", "Dimensions": [1, channels, 8, 8], "Format/Datatype": "Half"}


def _conv(name, metadata, layer_type, inputs, output, groups, out_maps, kernel):
    return {
        "Name": name, "LayerType": layer_type, "ParameterType": "Convolution",
        "Inputs": inputs, "Outputs": [output], "Kernel": kernel, "OutMaps": out_maps,
        "Groups": groups, "HasBias": 1, "Activation": "NONE", "Metadata": metadata,
    }


METADATA_DOC = {
    "Layers": [
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to dw_layer", "LayerType": "Reformat",
            "ParameterType": "Reformat", "Origin": "REFORMAT",
            "Inputs": [_tensor("x", 8)], "Outputs": [_tensor("x_reformatted", 8)],
        },
        # The name lists two nodes; Metadata (authoritative) shows the BN fused too.
        _conv("dw_layer", "[ONNX Layer: /blk/dw/Conv]\x1f[ONNX Layer: /blk/bn/BatchNormalization]"
              "\x1f[ONNX Layer: /blk/act/Relu]", "CudaDepthwiseConvolution",
              [_tensor("x_reformatted", 8)], _tensor("dw_out", 8), 8, 8, [3, 3]),
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to pw_layer", "LayerType": "NoOp",
            "Inputs": [_tensor("dw_out", 8)], "Outputs": [_tensor("dw_out_copy", 8)],
            "Metadata": "[ONNX Layer: /blk/pw/Conv]",
        },
        _conv("pw_layer", "[ONNX Layer: /blk/pw/Conv | /blk (SepBlock)]\x1f[ONNX Layer: /blk/add/Add]",
              "CaskConvolution", [_tensor("dw_out_copy", 8), _tensor("x", 16)], _tensor("y", 16), 1, 16, [1, 1]),
    ],
    "Bindings": ["x", "y"],
}


def test_metadata_is_authoritative_and_copies_fuse_nothing():
    info = parse_layer_info(json.dumps(METADATA_DOC))
    dw = _by_name(info, "dw_layer")
    assert dw.metadata_nodes == ("/blk/dw/Conv", "/blk/bn/BatchNormalization", "/blk/act/Relu")
    assert dw.onnx_nodes == dw.metadata_nodes
    copy = _by_name(info, "Reformatting CopyNode for Input Tensor 0 to pw_layer")
    assert copy.is_copy and copy.onnx_nodes == ()

    (result,) = block_report(info)
    assert result.depthwise_node == "/blk/dw/Conv"
    assert result.depthwise_fused.batch_norm == ("/blk/bn/BatchNormalization",)
    assert result.depthwise_fused.activations == ("/blk/act/Relu",)
    assert result.pointwise_layer == "pw_layer"
    assert result.pointwise_node == "/blk/pw/Conv"
    assert result.pointwise_fused.adds == ("/blk/add/Add",)
    assert result.via == ("Reformatting CopyNode for Input Tensor 0 to pw_layer",)
    assert result.status == "fused"

    (named,) = block_report(info, [OnnxBlock("/blk/dw/Conv", "/blk/pw/Conv", ("/blk/bn/BatchNormalization", "/blk/act/Relu"), 8)])
    assert named.status == "fused"
    assert named.between_placement == {"/blk/bn/BatchNormalization": "dw_layer", "/blk/act/Relu": "dw_layer"}


def test_names_only_and_list_forms():
    names_only = parse_layer_info({"Layers": ["Conv_0 + Relu_1", "Reformatting CopyNode for Input Tensor 0 to Conv_2"],
                                   "Bindings": ["input", "output"]})
    assert not names_only.detailed
    assert names_only.layers[0].onnx_nodes == ("Conv_0", "Relu_1")
    assert names_only.layers[1].is_copy
    with pytest.raises(SepfixError, match="DETAILED"):
        block_report(names_only)
    as_list = parse_layer_info(json.loads(MOBILENETS["mobilenet.qat"].read_text())["Layers"])
    assert len(as_list.layers) == 73 and as_list.bindings == ()


# ---------------------------------------------------------------- ONNX blocks given


def test_block_report_with_onnx_blocks():
    info = load_layer_info(MOBILENETS["mobilenet.qat"])
    blocks = [
        OnnxBlock("Conv_29", "Conv_46", ("Clip_33",), 32),
        OnnxBlock("Conv_125", "Conv_142", ("Clip_129",), 144),
        OnnxBlock("Conv_12", "Conv_29", ("Clip_16",), 32),  # a dense 3x3 conv posing as depthwise
        OnnxBlock("Conv_9999", "Conv_10000", (), 64),  # not in the engine at all
    ]
    first, residual, dense, missing = block_report(info, blocks)

    assert first.evidence == "observed" and first.status == "fused"
    assert first.depthwise_layer == "features.1.conv.0.0.weight + QuantizeLinear_25 + Conv_29 + PWN(Clip_33)"
    assert first.pointwise_layer == "features.1.conv.1.weight + QuantizeLinear_42 + Conv_46"
    assert first.between_placement == {"Clip_33": first.depthwise_layer}

    assert residual.pointwise_fused.adds == ("Add_144",)
    assert residual.depthwise_groups == 144

    assert dense.status == "depthwise-dense-or-missing"
    assert dense.message.startswith("depthwise became dense or was not found")
    assert dense.depthwise_kept_grouped is False
    assert dense.depthwise_layer == "features.0.0.weight + QuantizeLinear_8 + Conv_12 + PWN(Clip_16)"

    # No layer names any node of this block: not covered, never an observation.
    assert missing.status == "not-covered" and missing.evidence == "none"
    assert missing.message.startswith("not in this layer information")
    assert missing.depthwise_layer is None and missing.depthwise_kept_grouped is None
    assert coverage([first, residual, dense, missing]) == {"blocks": 4, "observed": 3, "predicted": 0, "not_covered": 1}

    # The depthwise node gone while the rest of its block is there: observed missing.
    (gone,) = block_report(info, [OnnxBlock("Conv_28", "Conv_46", ("Clip_33",), 32)])
    assert gone.evidence == "observed" and gone.status == "depthwise-dense-or-missing"
    assert "'Conv_28' is not named in any engine layer, while Clip_33, Conv_46" in gone.message


# ---------------------------------------------------------------- predictions


def test_predictions_are_labelled_predicted_never_observed():
    blocks = [
        OnnxBlock("dw", "pw", ("bn", "relu"), 32, between_ops=("BatchNormalization", "Relu"),
                  after=("relu2",), after_ops=("Relu",)),
        OnnxBlock("Conv_29", "Conv_46", ("Clip_33",), 32),
    ]
    for precision in ("fp32", "fp16", "int8"):
        results = predict_block_report(blocks, precision=precision, compute_capability="7.5")
        assert [r.evidence for r in results] == ["predicted", "predicted"]
        dumped = json.loads(json.dumps([r.to_dict() for r in results]))
        assert {d["evidence"] for d in dumped} == {"predicted"}
        assert all(d["message"].startswith("predicted") for d in dumped)
    first = predict_block_report(blocks, precision="fp16")[0]
    assert first.depthwise_fused.batch_norm == ("bn",)
    assert first.depthwise_fused.activations == ("relu",)
    assert first.pointwise_fused.activations == ("relu2",)
    assert first.depsep is False


def test_predicted_depsep_only_for_int8_on_72_and_later():
    block = OnnxBlock("dw", "pw", ("relu",), 32, between_ops=("Relu",), after=("relu2",), after_ops=("Relu",))
    no_after = OnnxBlock("dw", "pw", ("relu",), 32, between_ops=("Relu",))
    assert predict_block_report([block], "int8", (7, 5))[0].depsep is True
    assert predict_block_report([block], "int8", 7.2)[0].depsep is True
    assert predict_block_report([block], "int8", "sm_70")[0].depsep is False
    assert predict_block_report([block], "fp16", (8, 6))[0].depsep is False
    assert predict_block_report([block], "int8", None)[0].depsep is None
    assert predict_block_report([no_after], "int8", (8, 6))[0].depsep is False
    with pytest.raises(SepfixError):
        predict_block_report([block], "bf16")


def test_to_dict_is_json_ready():
    result = block_report(load_layer_info(MOBILENETS["mobilenet.qat"]))[0]
    data = result.to_dict()
    assert data["evidence"] == "observed"
    assert data["depthwise_fused"]["activations"] == ["Clip_33"]
    assert json.loads(json.dumps(data)) == data


# ---------------------------------------------------------------- TensorRT itself


def test_tensorrt_unavailable_says_why(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        pass
    else:
        pytest.skip("tensorrt imports on this machine")
    ok, reason = tensorrt_available()
    assert ok is False
    assert "tensorrt" in reason.lower() and len(reason) > 20
    with pytest.raises(SepfixError, match="TensorRT is not usable here"):
        build_engine_layer_info(tmp_path / "model.onnx")
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    with pytest.raises(SepfixError, match="TensorRT is not usable here"):
        layer_info_from_engine_file(engine)
