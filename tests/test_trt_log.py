"""TensorRT layer information read from text: real build logs (``tests/data/trt-logs/``, sources
in its README), every prefix style, truncated and foreign logs, and the onnxruntime TensorRT EP
route fed with captured log text through the same function the live run uses."""

from __future__ import annotations

import io
import json
import os
import sys
import warnings

import numpy as np
import onnx
import pytest

from sepfix import model_io
from sepfix.cli import main
from sepfix.errors import SepfixError
from sepfix.testing import builders
from sepfix.validate import providers
from sepfix.validate.command import model_blocks, run_validate
from sepfix.validate.tensorrt import (
    EngineLayer,
    block_report,
    classify_layer,
    coverage,
    parse_layer_info,
    require_same_model,
)
from sepfix.validate.trt_log import (
    EP_LOG_SOURCE,
    find_sections,
    layer_info_from_ep_log,
    load_engine_info,
    parse_layer_text,
    strip_prefixes,
    without_verbose,
)
from tests.trt_log_models import DATA, FPN_MOBILENETV2_BLOCKS, FPN_MOBILENETV2_LOG, fpn_mobilenetv2

YOLOV8_QDQ_LOG = DATA / "trtexec_yolov8_qdq_int8_dumplayerinfo.log"
TRT10_LOG = DATA / "trt10_bert_layer_names_only_issue4397.log"
ORT_EP_LOG = DATA / "constructed_ort_trt_ep_verbose.log"
TRT_LIST = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.fixture(scope="module")
def fpn_model() -> onnx.ModelProto:
    return fpn_mobilenetv2()


@pytest.fixture(scope="module")
def fpn_blocks(fpn_model):
    return model_blocks(model_io.from_proto(fpn_model))


@pytest.fixture
def fpn_path(tmp_path, fpn_model):
    path = tmp_path / "fpn_mobilenetv2.onnx"
    onnx.save(fpn_model, path)
    return path


def _real_log() -> str:
    return FPN_MOBILENETV2_LOG.read_text()


def _results(text: str, model, blocks):
    info, _ = parse_layer_text(text, model)
    return block_report(info, blocks)


def assert_every_block_mapped(results, residual_known: bool = True) -> None:
    """Every depthwise block of the real log: CudaDepthwiseConvolution with its Clip fused, the
    pointwise layer the log names, the residual Add fused into it where the network has one."""
    assert [r.depthwise_node for r in results] == [b[0] for b in FPN_MOBILENETV2_BLOCKS]
    for result, (dw, clip, channels, pw, add) in zip(results, FPN_MOBILENETV2_BLOCKS):
        assert result.evidence == "observed" and result.status == "fused", result.message
        assert result.channels == channels
        assert result.depthwise_layer == f"{dw} + PWN({clip})"
        assert result.depthwise_layer_type == "CudaDepthwiseConvolution"
        assert result.depthwise_kept_grouped is True and result.cuda_depthwise is True
        assert result.depthwise_groups is None  # a text layer carries no Groups
        assert result.depthwise_fused.conv == dw
        assert result.depthwise_fused.activations == (clip,) and result.depthwise_fused.pwn == (clip,)
        assert result.pointwise_node == pw and result.pointwise_fused.conv == pw
        assert result.pointwise_layer == (f"{pw} + {add}" if add else pw)
        assert result.pointwise_layer_type == "CaskConvolution"
        assert result.pointwise_fused.adds == ((add,) if add else ())
        if residual_known:
            assert result.pointwise_residual_input is bool(add)
        else:
            assert result.pointwise_residual_input is None
        assert result.depsep is False and result.unfused_between == ()
        assert result.between_placement == {clip: result.depthwise_layer}


# ------------------------------------------------------------------- the real trtexec build log


def test_real_build_log_section_found_among_everything_else(fpn_model):
    text = _real_log()
    assert not text.startswith("Layer(") and "Parsing node: Conv_0 [Conv]" in text
    info, what = load_engine_info(FPN_MOBILENETV2_LOG, fpn_model)
    assert what == "text, 48 layers from 'Engine Layer Information:' at line 26"
    types = [layer.layer_type for layer in info.layers]
    assert types.count("CudaDepthwiseConvolution") == 13 and types.count("CaskConvolution") == 33
    assert [classify_layer(l).kind for l in info.layers].count("depthwise") == 13
    first = info.layers[1]
    assert first.name == "Conv_0 + PWN(Clip_3)" and first.onnx_nodes == ("Conv_0", "Clip_3")
    assert first.inputs == ("Reformatted Input Tensor 0 to Conv_0 + PWN(Clip_3)",) and first.outputs == ("395",)
    assert first.raw["Outputs"][0]["Dimensions"] == [1, 32, 256, 384]
    assert info.layers[0].is_copy and info.layers[0].onnx_nodes == ()
    dw = info.layers[2]
    assert dw.in_channels == 32 and dw.groups is None and dw.detailed
    require_same_model(info, fpn_model)


def test_real_build_log_maps_every_depthwise_block(fpn_model, fpn_blocks):
    results = _results(_real_log(), fpn_model, fpn_blocks)
    assert_every_block_mapped(results)
    assert coverage(results) == {"blocks": 13, "observed": 13, "predicted": 0, "not_covered": 0}


def _reprefixed(text: str, prefix: str, every_line: bool) -> str:
    """The real log in another logger's prefix style (constructed: see the data README)."""
    out = []
    for line in text.splitlines():
        if line.startswith("[02/08/2023-"):
            line = line.split("] [V] [TRT] ", 1)[1]
            out.append(prefix + line)
        else:
            out.append(prefix + line if every_line else line)
    return "\n".join(out) + "\n"


PREFIX_STYLES = {
    # TensorRT 7's Python logger prefixes every line of the section.
    "tensorrt7-every-line": lambda t: _reprefixed(t, "[TensorRT] VERBOSE: ", every_line=True),
    # TensorRT 8's Python logger: [TRT] [V] after the timestamp, the message's lines bare.
    "python-trt-v": lambda t: _reprefixed(t, "[02/08/2023-15:25:37] [TRT] [V] ", every_line=False),
    # jetson-inference's logger: [TRT] and padding on every line.
    "jetson-trt-padded": lambda t: _reprefixed(t, "[TRT]    ", every_line=True),
    # onnxruntime's coloured log with the TensorRT EP's own timestamp and severity.
    "ort-coloured": lambda t: _reprefixed(
        t, "\x1b[0;93m2026-12-01 10:00:00.123 [W:onnxruntime:Default, tensorrt_execution_provider.h:88 log]"
           "\x1b[m [2026-12-01 10:00:00 VERBOSE] ", every_line=False),
    "windows-line-ends": lambda t: t.replace("\n", "\r\n"),
}


@pytest.mark.parametrize("style", sorted(PREFIX_STYLES))
def test_every_prefix_style_maps_the_same(style, fpn_model, fpn_blocks):
    text = PREFIX_STYLES[style](_real_log())
    assert_every_block_mapped(_results(text, fpn_model, fpn_blocks))


def test_without_tactics_and_without_tensor_lists(fpn_model, fpn_blocks):
    no_tactic = "\n".join(line.split(", Tactic: ")[0] + ", " + line.split(", Tactic: ")[1].partition(", ")[2]
                          if ", Tactic: " in line else line for line in _real_log().splitlines())
    assert "Tactic" not in no_tactic
    assert_every_block_mapped(_results(no_tactic, fpn_model, fpn_blocks))
    # Names only after the type: the pointwise layer is found by the model's node names, and
    # whether the Add's second input is a residual cannot be told.
    bare = "\n".join(line.split(", Tactic: ")[0] for line in _real_log().splitlines())
    info, _ = parse_layer_text(bare, fpn_model)
    assert all(layer.inputs == () for layer in info.layers)
    assert_every_block_mapped(block_report(info, fpn_blocks), residual_known=False)


def test_last_build_wins_in_a_log_of_several(fpn_model, fpn_blocks):
    full = _real_log()
    cut = full[: full.index("Layer(CaskConvolution): Conv_66 ")]
    results = _results(cut + "\n" + full, fpn_model, fpn_blocks)  # an aborted build, then a whole one
    assert coverage(results)["observed"] == 13
    results = _results(full + "\n" + cut, fpn_model, fpn_blocks)  # the rebuild is the one that counts
    assert coverage(results) == {"blocks": 13, "observed": 7, "predicted": 0, "not_covered": 6}
    info, what = parse_layer_text(full + "\n" + cut, fpn_model)
    assert "the last with layer types of 2 sections" in what


# ------------------------------------------------------------------- honest coverage


def test_truncated_log_leaves_missed_blocks_not_covered(fpn_model, fpn_blocks):
    full = _real_log()
    cut = full[: full.index("Layer(CaskConvolution): Conv_66 ")]  # the log ends after Conv_65
    results = _results(cut, fpn_model, fpn_blocks)
    covered = [r for r in results if r.status == "fused"]
    missed = [r for r in results if r.status == "not-covered"]
    assert [r.depthwise_node for r in covered] == [b[0] for b in FPN_MOBILENETV2_BLOCKS[:7]]
    assert [r.depthwise_node for r in missed] == [b[0] for b in FPN_MOBILENETV2_BLOCKS[7:]]
    for result in missed:
        assert result.evidence == "none" and result.depthwise_layer is None
        assert result.depthwise_kept_grouped is None and result.pointwise_layer is None
        assert result.message.startswith("not in this layer information")
    assert coverage(results) == {"blocks": 13, "observed": 7, "predicted": 0, "not_covered": 6}


def test_log_cut_between_depthwise_and_pointwise(fpn_model, fpn_blocks):
    full = _real_log()
    cut = full[: full.index("Layer(CaskConvolution): Conv_74 + Add_75")]  # Conv_70's layer is the last
    results = {r.depthwise_node: r for r in _results(cut, fpn_model, fpn_blocks)}
    partly = results["Conv_70"]
    assert partly.status == "pointwise-not-covered" and partly.evidence == "observed"
    assert partly.depthwise_layer == "Conv_70 + PWN(Clip_73)" and partly.pointwise_layer is None
    assert "cut short" in partly.message
    assert results["Conv_80"].status == "not-covered"
    assert coverage(list(results.values()))["not_covered"] == 6


def test_foreign_log_is_refused(fpn_model):
    foreign = builders.mobilenet_like()
    info, _ = load_engine_info(FPN_MOBILENETV2_LOG, foreign)
    with pytest.raises(SepfixError, match="names none of this model's .* nodes: it belongs to another model"):
        require_same_model(info, foreign)
    info, _ = load_engine_info(YOLOV8_QDQ_LOG, fpn_model)
    with pytest.raises(SepfixError, match="another model"):
        require_same_model(info, fpn_model, "build.log")


def test_foreign_log_is_refused_by_the_cli(tmp_path, capsys):
    path = tmp_path / "other.onnx"
    onnx.save(builders.mobilenet_like(), path)
    code = main(["validate", str(path), "--engine-info", str(FPN_MOBILENETV2_LOG)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "belongs to another model" in err and "Traceback" not in err


# ------------------------------------------------------------------- the other real logs


def test_dumplayerinfo_one_line_form_wins_over_the_build_section():
    sections = find_sections(YOLOV8_QDQ_LOG.read_text())
    assert [(s.form, s.line, len(s.entries)) for s in sections] == [
        ("engine-layer-information", 1, 2), ("layers", 32, 3)]
    info, what = load_engine_info(YOLOV8_QDQ_LOG)
    assert what == "text, 3 layers from 'Layers:' at line 32, the last with layer types of 2 sections"
    myelin, quantize, conv = info.layers
    assert myelin.layer_type == "Myelin" and myelin.inputs == ()
    assert myelin.onnx_nodes == ("/model/taskhead22/Constant_12_output_0", "/model/taskhead22/Unsqueeze_6")
    assert len(myelin.outputs) == 5 and myelin.outputs[2] == "(Unnamed Layer* 689) [Shuffle]_output"
    assert quantize.layer_type == "Reformat" and quantize.origin == "QDQ" and not quantize.is_copy
    assert quantize.onnx_nodes == ("/model/backbone0/conv/_input_quantizer/QuantizeLinear",)
    # The one-line form carries what the Layer(...) lines do not: Groups, kernel, activation.
    assert conv.layer_type == "CaskConvolution" and conv.parameter_type == "Convolution"
    assert conv.groups == 1 and conv.out_maps == 32 and conv.kernel == (3, 3) and conv.in_channels == 3
    assert conv.raw["Activation"] == "RELU" and conv.raw["HasBias"] == 1
    assert conv.raw["Weights"] == {"Type": "Int8", "Count": 864}
    assert conv.onnx_nodes == ("/model/backbone0/conv/_weight_quantizer/QuantizeLinear", "/model/backbone0/conv/Conv")
    assert conv.weights == ("model.model.backbone0.conv.weight",)
    assert classify_layer(conv).kind == "dense"


def test_tensorrt_10_tensor_format_and_myelin_range():
    info, _ = load_engine_info(TRT10_LOG)
    myelin, copy = info.layers
    assert myelin.layer_type == "Myelin"
    assert myelin.inputs == ("concat_ids", "concat_mask", "sent_ids", "pos_ids")
    assert myelin.raw["Inputs"][1] == {"Name": "concat_mask", "Format/Datatype": "Bool", "Dimensions": [1, 40]}
    assert myelin.onnx_nodes == ("/encoder/Unsqueeze_3", "/encoder/Unsqueeze_4", "/match_model/Squeeze")
    assert copy.is_copy and copy.onnx_nodes == () and copy.outputs == ("score",)
    assert copy.inputs == myelin.outputs


# ------------------------------------------------------------------- forms, errors, stdin


def test_strip_prefixes():
    for line in (
        "[02/08/2023-15:25:37] [V] [TRT] Engine Layer Information:",
        "[05/09/2022-06:27:19] [TRT] [V] Engine Layer Information:",
        "[TensorRT] VERBOSE: Engine Layer Information:",
        "[TRT]    Engine Layer Information:",
        "[V] Engine Layer Information:",
        " [12/01/2026-10:00:00] [V] [TRT] Engine Layer Information:",
        "2026-12-01 10:00:00.123 [V:onnxruntime:, tensorrt_execution_provider.cc:123 log] Engine Layer Information:",
        "\x1b[1;31m2026-12-01 10:00:00.123456789 [W:onnxruntime:Default, tensorrt_execution_provider.h:88 log]"
        " [2026-12-01 10:00:00 VERBOSE] Engine Layer Information:\x1b[m",
        "DEBUG: [Torch-TensorRT TorchScript Conversion Context] - Engine Layer Information:",
    ):
        assert strip_prefixes(line) == ("Engine Layer Information:", True), line
    assert strip_prefixes("Layer(CaskConvolution): Conv_0") == ("Layer(CaskConvolution): Conv_0", False)


def test_layer_line_names_keep_arrows_commas_and_brackets():
    text = ("Engine Layer Information:\n"
            "Layer(cudaFusedBlockLocalMLP): 2-layer MLP: fc1 + relu -> fc2, Tactic: 0, a[Float(120,1,1)] -> b[Float(10,1,1)]\n"
            "Layer(PointWiseV2): PWN(PWN(Sigmoid_3), Mul_4), Tactic: 0x1, x[Half(1,8,4,4)], y[Half(1,8,4,4)] -> z[Half(1,8,4,4)]\n"
            "Layer(Constant): 3198 + (Unnamed Layer* 13) [Shuffle], Tactic: 0,  -> (Unnamed Layer* 13) [Shuffle]_output[Float(1,4864,256)]\n"
            "Layer(CaskDepthwiseConvolutionV2): dw, Tactic: 7, x (Half[1,8,4,4]) -> y (Half[1,8,4,4])\n")
    info, _ = parse_layer_text(text)
    mlp, pwn, constant, dw = info.layers
    assert mlp.name == "2-layer MLP: fc1 + relu -> fc2" and mlp.inputs == ("a",) and mlp.outputs == ("b",)
    assert pwn.name == "PWN(PWN(Sigmoid_3), Mul_4)" and pwn.inputs == ("x", "y")
    assert constant.inputs == () and constant.outputs == ("(Unnamed Layer* 13) [Shuffle]_output",)
    assert dw.inputs == ("x",) and dw.raw["Inputs"][0]["Dimensions"] == [1, 8, 4, 4]
    assert classify_layer(dw).kind == "depthwise" and classify_layer(dw).cuda_depthwise


def test_depthwise_from_layer_type_only_when_groups_are_not_recorded():
    text_dw = parse_layer_info([{"Name": "dw", "LayerType": "CudaDepthwiseConvolution"}]).layers[0]
    text_conv = parse_layer_info([{"Name": "c", "LayerType": "CaskConvolution"}]).layers[0]
    json_dense = parse_layer_info([{"Name": "d", "LayerType": "CudaDepthwiseConvolution",
                                    "ParameterType": "Convolution", "Groups": 1, "OutMaps": 8,
                                    "Kernel": [3, 3]}]).layers[0]
    assert isinstance(text_dw, EngineLayer)
    assert classify_layer(text_dw).kind == "depthwise"
    assert classify_layer(text_conv).kind == "convolution"
    assert classify_layer(json_dense).kind == "dense"  # recorded Groups win over the type


@pytest.mark.parametrize("content, expected", [
    ("hello, this is not a log\n", "no TensorRT layer information found"),
    ('{"something": 1}', "JSON but not TensorRT layer information"),
    ('{"Layers": [', "not valid JSON"),
    ("Engine Layer Information:\n[V] done\n", "no TensorRT layer information found"),
    ("", "is empty"),
])
def test_unrecognisable_input_says_what_was_expected(tmp_path, capsys, content, expected):
    path = tmp_path / "info.txt"
    path.write_text(content)
    with pytest.raises(SepfixError, match=expected) as caught:
        load_engine_info(path)
    assert "expected TensorRT layer information" in str(caught.value) and "\n" not in str(caught.value)
    model = tmp_path / "m.onnx"
    onnx.save(builders.separable_block(), model)
    code = main(["validate", str(model), "--engine-info", str(path)])
    _, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and expected in err


def test_engine_info_from_stdin(monkeypatch, fpn_path, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(_real_log()))
    code = main(["validate", str(fpn_path), "--engine-info", "-", "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and doc["verdict"] == "fusion-observed"
    assert doc["evidence_source"].startswith("--engine-info - (text, 48 layers")
    assert doc["coverage"] == {"blocks": 13, "observed": 13, "predicted": 0, "not_covered": 0}


# ------------------------------------------------------------------- onnxruntime's TensorRT EP


def test_ep_log_keeps_every_engine(fpn_model, fpn_blocks):
    text = ORT_EP_LOG.read_text()
    sections = find_sections(text)
    assert len(sections) == 2 and all(s.ort for s in sections)
    info = layer_info_from_ep_log(text, fpn_model)
    assert info is not None and len(info.layers) == 48
    assert_every_block_mapped(block_report(info, fpn_blocks))
    # parse_layer_text sees onnxruntime's prefixes and keeps both engines too.
    assert len(parse_layer_text(text, fpn_model)[0].layers) == 48
    assert len(parse_layer_text(text, fpn_model, all_sections=False)[0].layers) == 26
    assert layer_info_from_ep_log("2026-12-01 10:00:00.1 [W:onnxruntime:, x.cc:1 f] nothing here\n") is None


def test_verbose_ep_log_is_not_passed_on_but_warnings_are():
    shown = without_verbose(ORT_EP_LOG.read_text())
    assert "WARNING] onnx2trt_utils.cpp:377" in shown
    assert "Layer(" not in shown and "VERBOSE" not in shown and "Initializing session" not in shown


class _SessionAsIfTensorRTRan:
    """A real CPU session that reports what onnxruntime-gpu reports when TensorRT took the model."""

    def __init__(self, session):
        self._session = session

    def get_providers(self):
        return list(TRT_LIST)

    def __getattr__(self, name):
        return getattr(self._session, name)


def test_ep_route_observes_from_the_captured_log(monkeypatch, fpn_path, capfd):
    """The live route, TensorRT replaced by what it writes: the session is created with the
    documented options, the EP's log goes to the native stdout/stderr, and the report reads the
    layer information from exactly what was captured there."""
    import onnxruntime as ort

    real = ort.InferenceSession
    seen: dict = {}
    log = ORT_EP_LOG.read_bytes()

    def session(source, options=None, providers=None, provider_options=None, **kwargs):
        if "TensorrtExecutionProvider" not in (providers or []):
            return real(source, options, providers=providers, **kwargs)
        seen.update(options=options, providers=providers, provider_options=provider_options)
        os.write(2, log[: len(log) // 2])  # the EP writes at the file-descriptor level,
        os.write(1, log[len(log) // 2:])   # some of it to stdout
        return _SessionAsIfTensorRTRan(real(source, providers=["CPUExecutionProvider"]))

    monkeypatch.setattr(providers, "available_providers", lambda: list(TRT_LIST))
    monkeypatch.setattr(providers, "_preloaded", True)
    monkeypatch.setattr(ort, "InferenceSession", session)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_validate(fpn_path, provider="tensorrt")
    trt_options = seen["provider_options"][seen["providers"].index("TensorrtExecutionProvider")]
    assert trt_options["trt_detailed_build_log"] is True
    assert seen["options"].log_severity_level == 0
    assert report.provider.active[0] == "TensorrtExecutionProvider" and report.tensorrt["ep_ran"]
    assert report.evidence == "observed" and report.evidence_source == EP_LOG_SOURCE
    assert report.verdict == "fusion-observed" and report.exit_code == 0, report.problems
    assert_every_block_mapped(report.blocks)
    out, err = capfd.readouterr()
    assert "Layer(" not in out + err and "onnx2trt_utils.cpp:377" in err
    doc = report.to_dict()
    assert doc["tensorrt"]["source"] == EP_LOG_SOURCE and "log" not in doc["provider"]
    assert doc["coverage"]["observed"] == 13


def test_ep_route_without_layer_information_stays_predicted(monkeypatch, fpn_path):
    import onnxruntime as ort

    real = ort.InferenceSession

    def session(source, options=None, providers=None, provider_options=None, **kwargs):
        if "TensorrtExecutionProvider" not in (providers or []):
            return real(source, options, providers=providers, **kwargs)
        os.write(2, b"2026-12-01 10:00:00.1 [W:onnxruntime:Default, tensorrt_execution_provider.h:86 log] "
                    b"[2026-12-01 10:00:00 WARNING] something\n")
        return _SessionAsIfTensorRTRan(real(source, providers=["CPUExecutionProvider"]))

    monkeypatch.setattr(providers, "available_providers", lambda: list(TRT_LIST))
    monkeypatch.setattr(providers, "_preloaded", True)
    monkeypatch.setattr(ort, "InferenceSession", session)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = run_validate(fpn_path, provider="tensorrt")
    assert report.evidence == "predicted" and all(b.evidence == "predicted" for b in report.blocks)
    assert any("its log held no layer information" in n for n in report.notes)
    assert report.exit_code == 1  # --provider tensorrt asked for observed fusions


def test_fpn_model_runs_and_is_clean(fpn_model):
    """The model built for the real log is a valid, clean model: the mapping is not an artefact."""
    import onnxruntime as ort

    session = ort.InferenceSession(fpn_model.SerializeToString(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"inputs": np.zeros((1, 3, 64, 96), np.float32)})
    assert out.shape == (1, 64, 4, 6)
    import sepfix

    assert sepfix.check(fpn_model) == []
