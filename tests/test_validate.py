"""`sepfix validate` on the CPU build of onnxruntime: providers reported as they ran (a TensorRT
request is never confirmed here), numbers against a reference, predicted rows labelled, engine
layer information observed, latency, JSON."""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from sepfix import cli, model_io
from sepfix.testing import builders
from sepfix.validate import providers
from sepfix.validate.bench import latency
from sepfix.validate.command import model_blocks, run_validate, validate_command
from tests.conftest import SHARED, require_shared
from tests.conftest import run_sepfix as run
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.rules.test_sep002_group_mismatch import group_attribute

MOBILENET_QAT = SHARED / "fixtures" / "trt-layer-info" / "mobilenet.qat.onnx.engine.graph.json"

CPU_BUILD = "CUDAExecutionProvider" not in providers.available_providers()


@pytest.fixture(autouse=True)
def registered():
    """Register the command the way the CLI owner will, if it is not registered yet."""
    if "validate" not in cli.cli.commands:
        cli.cli.add_command(validate_command, "validate")
        yield
        cli.cli.commands.pop("validate", None)
    else:
        yield


@pytest.fixture
def clean(tmp_path):
    path = tmp_path / "clean.onnx"
    onnx.save(builders.mobilenet_like(), path)
    return path


def run_json(args, capsys):
    code, out, err = run([*args, "--format", "json"], capsys)
    return code, json.loads(out), err


def _perturbed(model: onnx.ModelProto, name: str, delta: float) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    init = next(t for t in out.graph.initializer if t.name == name)
    array = numpy_helper.to_array(init).copy()
    array.flat[0] += delta
    init.CopyFrom(numpy_helper.from_array(array, name))
    return out


# ------------------------------------------------------------------------------ providers


@pytest.mark.skipif(not CPU_BUILD, reason="needs the CPU build of onnxruntime")
def test_tensorrt_request_on_cpu_build_is_reported_not_available(clean, capsys):
    code, doc, _ = run_json(["validate", str(clean), "--provider", "tensorrt"], capsys)
    assert code == 1  # an explicitly requested provider did not run
    assert doc["exit_code"] == 1 and doc["passed"] is False
    assert doc["verdict"] in ("fusion-predicted", "numeric-only")
    assert doc["tensorrt"]["available"] is False and doc["tensorrt"]["ep_ran"] is False
    provider = doc["provider"]
    assert provider["requested"] == "tensorrt" and provider["wanted"] == "TensorrtExecutionProvider"
    assert provider["listed"] is False and provider["fell_back"] is True
    assert provider["active"] == ["CPUExecutionProvider"]
    assert "not available" in provider["reason"]
    assert any("--provider tensorrt did not run" in p for p in doc["problems"])
    # The numbers were still checked, on the CPU.
    assert doc["numeric"]["passed"] is True and doc["numeric"]["provider"] == "CPUExecutionProvider"
    assert doc["blocks"] and all(b["evidence"] == "predicted" for b in doc["blocks"])
    assert "\"evidence\": \"observed\"" not in json.dumps(doc) and doc["evidence"] == "predicted"

    code, out, _ = run(["validate", str(clean), "--provider", "tensorrt"], capsys)
    rows = [line for line in out.splitlines() if "(C=" in line]
    assert rows and all("[predicted]" in row for row in rows)
    assert "[observed]" not in out and "NOT AVAILABLE" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: fusion-predicted")


@pytest.mark.skipif(not CPU_BUILD, reason="needs the CPU build of onnxruntime")
def test_cuda_request_on_cpu_build_exits_1_but_auto_passes(clean, capsys):
    code, doc, _ = run_json(["validate", str(clean), "--provider", "cuda"], capsys)
    assert code == 1 and doc["provider"]["fell_back"] and doc["numeric"]["passed"]
    code, doc, _ = run_json(["validate", str(clean)], capsys)
    assert code == 0 and doc["verdict"] == "fusion-predicted"
    assert doc["provider"]["requested"] == "auto" and doc["provider"]["fell_back"] is False
    assert "auto did not pick TensorRT" in doc["provider"]["reason"]


def test_listed_but_not_loading_provider_is_a_fallback(monkeypatch, clean):
    """onnxruntime-gpu lists the TensorRT EP where TensorRT is absent and runs on the CPU."""
    gpu_list = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(providers, "available_providers", lambda: list(gpu_list))
    monkeypatch.setattr(providers, "_preloaded", True)
    assert providers.resolve("tensorrt") == gpu_list
    assert providers.resolve("cuda") == gpu_list[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CPU build warns that it lacks them
        session, outcome = providers.open_session(str(clean), "tensorrt")
        assert outcome.listed and outcome.fell_back and not outcome.ran
        assert outcome.active == ["CPUExecutionProvider"]
        assert "listed" in outcome.reason and "fell back to CPUExecutionProvider" in outcome.reason
        report = run_validate(clean, provider="tensorrt")
    assert report.exit_code == 1 and report.tensorrt["ep_listed"] and not report.tensorrt["ep_ran"]
    assert all(b.evidence == "predicted" for b in report.blocks)


def test_resolve_and_unknown_provider():
    assert providers.resolve("cpu") == ["CPUExecutionProvider"]
    assert providers.resolve("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(providers.SepfixError):
        providers.resolve("metal")


# ------------------------------------------------------------------------------ numbers


def test_cpu_clean_model_passes(clean, capsys):
    code, out, _ = run(["validate", str(clean), "--provider", "cpu"], capsys)
    assert code == 0
    last = out.strip().splitlines()[-1]
    assert last.startswith("PASSED: fusion-predicted") and last.endswith(" s)")
    code, doc, _ = run_json(["validate", str(clean), "--provider", "cpu"], capsys)
    assert code == 0 and doc["numeric"]["proof"] == "onnxruntime" and doc["numeric"]["passed"]
    assert doc["numeric"]["outputs"][0]["max_abs"] == 0
    assert doc["provider"]["active"] == ["CPUExecutionProvider"] and not doc["provider"]["fell_back"]


def test_reference_with_perturbed_weight_fails(tmp_path, capsys):
    model = builders.mobilenet_like()
    original, changed = tmp_path / "original.onnx", tmp_path / "changed.onnx"
    onnx.save(model, original)
    onnx.save(_perturbed(model, "block1_pw_conv_weight", 1e-2), changed)
    code, doc, _ = run_json(["validate", str(changed), "--reference", str(original), "--provider", "cpu"], capsys)
    assert code == 1 and doc["verdict"] == "failed"
    out = doc["numeric"]["outputs"][0]
    assert not out["passed"] and out["required_atol"] > 1e-5
    assert any(p.startswith("numbers differ") for p in doc["problems"])
    code, out_text, _ = run(["validate", str(changed), "--reference", str(original), "--rtol", "1", "--atol", "1"], capsys)
    assert code == 0 and "PASSED" in out_text.splitlines()[-1]


def test_reference_that_onnxruntime_rejects_is_proven_by_numpy(tmp_path, capsys):
    model = builders.mobilenet_like()
    original, repaired = tmp_path / "sep002.onnx", tmp_path / "repaired.onnx"
    onnx.save(group_attribute(model, -3), original)
    onnx.save(model, repaired)
    code, doc, _ = run_json(["validate", str(repaired), "--reference", str(original), "--provider", "cpu",
                             "--bench", "2"], capsys)
    assert code == 0 and doc["numeric"]["proof"] == "numpy-reference"
    assert "error" in doc["latency"]["reference"]  # the invalid original cannot be timed


def test_model_onnxruntime_cannot_run_fails(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    onnx.save(group_attribute(builders.mobilenet_like(), -3), path)
    code, doc, _ = run_json(["validate", str(path), "--provider", "cpu"], capsys)
    assert code == 1 and doc["verdict"] == "failed" and not doc["numeric"]["passed"]
    # An invalid model is said to be invalid, once, with why: not "numbers differ".
    assert doc["problems"][0].startswith("the model is invalid: SEP002 group-mismatch at block0_dw_conv")
    assert not any("numbers differ" in p for p in doc["problems"])
    assert sum("invalid" in p for p in doc["problems"]) == 1
    assert doc["check"]["codes"] == {"SEP002": 3} and doc["check"]["invalid"]
    code, out, _ = run(["validate", str(path), "--provider", "cpu"], capsys)
    assert out.strip().splitlines()[-1].startswith("FAILED: failed: the model is invalid: SEP002")
    assert "numbers differ" not in out


def test_model_onnxruntime_refuses_to_load_is_invalid(tmp_path, capsys):
    model = builders.separable_block()  # an op of a domain onnxruntime has no kernels for
    model.graph.node[0].domain = "org.nowhere"
    model.opset_import.append(onnx.helper.make_opsetid("org.nowhere", 1))
    path = tmp_path / "refused.onnx"
    onnx.save(model, path)
    code, doc, _ = run_json(["validate", str(path), "--provider", "cpu"], capsys)
    assert code == 1 and doc["verdict"] == "failed" and doc["numeric"] is None and doc["problems"]
    assert doc["problems"] == [p for p in doc["problems"] if p.startswith("the model is invalid: onnxruntime refuses it")]


def test_mangled_model_reports_its_findings_not_a_bare_pass(tmp_path, capsys):
    path = tmp_path / "sep001.onnx"
    onnx.save(dense_depthwise(builders.mobilenet_like()), path)
    code, doc, _ = run_json(["validate", str(path), "--provider", "cpu"], capsys)
    assert code == 1 and doc["numeric"]["passed"] and doc["verdict"] == "numeric-only"
    assert doc["check"] == {"count": 3, "codes": {"SEP001": 3}, "fixable": 3, "invalid": [],
                            "restorable_blocks": 3, "error": None}
    assert doc["problems"] == ["sepfix check finds 3 mangled patterns (SEP001 x3): "
                               "`sepfix repair` would restore 3 depthwise-separable blocks"]
    code, out, _ = run(["validate", str(path), "--provider", "cpu"], capsys)
    assert "  check: 3 findings (SEP001 x3), 3 fixable\n" in out
    assert "  problem: sepfix check finds 3 mangled patterns (SEP001 x3): `sepfix repair` would restore 3" in out
    assert out.strip().splitlines()[-1].startswith("FAILED: numeric-only: sepfix check finds 3 mangled patterns")
    assert "PASSED" not in out


def test_one_provider_line_without_repetition(clean, capsys):
    code, out, _ = run(["validate", str(clean), "--provider", "cpu"], capsys)
    [line] = [l for l in out.splitlines() if l.startswith("  provider:")]
    assert line == "  provider: CPUExecutionProvider ran (--provider cpu)"
    assert out.count("CPUExecutionProvider ran") == 1
    code, out, _ = run(["validate", str(clean)], capsys)
    [line] = [l for l in out.splitlines() if l.startswith("  provider:")]
    assert line.count("CPUExecutionProvider ran") == 1 and "--provider auto" in line


def test_input_shapes_and_npz_inputs(tmp_path, capsys):
    path = tmp_path / "dyn.onnx"
    model = builders.separable_block()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.save(model, path)
    npz = tmp_path / "in.npz"
    np.savez(npz, input=np.ones((3, 8, 12, 12), np.float32))
    code, doc, _ = run_json(["validate", str(path), "--input-shape", "input:2,8,12,12", "--inputs", str(npz)], capsys)
    assert code == 0 and doc["numeric"]["input_sets"] == 3
    bad = tmp_path / "bad.npz"
    np.savez(bad, nope=np.ones(3))
    code, out, err = run(["validate", str(path), "--inputs", str(bad)], capsys)
    assert code == 2 and "no input 'nope'" in err and err.count("\n") == 1


def test_errors_exit_2(tmp_path, capsys):
    code, _, err = run(["validate", str(tmp_path / "missing.onnx")], capsys)
    assert code == 2 and "no such file" in err and "Traceback" not in err
    clean = tmp_path / "c.onnx"
    onnx.save(builders.separable_block(), clean)
    code, _, err = run(["validate", str(clean), "--input-shape", "input"], capsys)
    assert code == 2 and "--input-shape" in err
    code, _, err = run(["validate", str(clean), "--engine-info", str(tmp_path / "none.json")], capsys)
    assert code == 2 and "not found" in err
    code, _, err = run(["validate", str(clean), "--bench", "-1"], capsys)
    assert code == 2


# ------------------------------------------------------------------------------ engine info


@pytest.fixture
def needs_fixtures():
    return require_shared(MOBILENET_QAT, "TensorRT layer-info fixture")


@pytest.mark.usefixtures("needs_fixtures")
def test_engine_info_blocks_are_observed(tmp_path, capsys):
    # One block named as in the QAT MobileNetV2 engine: Conv_29 (depthwise, 32 ch) + Clip_33 -> Conv_46.
    model = builders.separable_block(c_in=32, c_out=16)
    names = {"dw_conv": "Conv_29", "dw_relu": "Clip_33", "pw_conv": "Conv_46"}
    for node in model.graph.node:
        node.name = names[node.name]
    path = tmp_path / "named.onnx"
    onnx.save(model, path)
    code, doc, _ = run_json(["validate", str(path), "--engine-info", str(MOBILENET_QAT)], capsys)
    assert code == 0 and doc["verdict"] == "fusion-observed" and doc["evidence"] == "observed"
    [block] = doc["blocks"]
    assert block["evidence"] == "observed" and block["status"] == "fused"
    assert block["depthwise_layer_type"] == "CudaDepthwiseConvolution" and block["depthwise_groups"] == 32
    assert "Clip_33" in block["depthwise_fused"]["activations"]
    code, out, _ = run(["validate", str(path), "--engine-info", str(MOBILENET_QAT)], capsys)
    assert "[observed] Conv_29 -> Conv_46" in out and "predicted" not in out
    assert out.strip().splitlines()[-1].startswith("PASSED: fusion-observed")


@pytest.mark.usefixtures("needs_fixtures")
def test_engine_info_for_another_model_is_refused(clean, capsys):
    """Layer information that names none of the model's nodes is another model's: refused with
    one line (exit 2), never reported as blocks observed missing."""
    code, out, err = run(["validate", str(clean), "--engine-info", str(MOBILENET_QAT)], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "names none of this model's" in err and "another model" in err


# ------------------------------------------------------------------------------ latency, JSON


def test_bench_gives_median_and_p90_for_both_models(tmp_path, capsys):
    model = builders.mobilenet_like()
    original, repaired = tmp_path / "original.onnx", tmp_path / "repaired.onnx"
    onnx.save(dense_depthwise(model), original)
    onnx.save(model, repaired)
    code, doc, _ = run_json(["validate", str(repaired), "--reference", str(original), "--bench", "5"], capsys)
    assert code == 0
    lat = doc["latency"]
    assert lat["runs"] == 5 and lat["provider"] == doc["provider"]["active"][0]
    for role in ("model", "reference"):
        assert lat[role]["runs"] == 5
        assert 0 < lat[role]["median_ms"] <= lat[role]["p90_ms"]
    code, out, _ = run(["validate", str(repaired), "--reference", str(original), "--bench", "5"], capsys)
    assert "latency (" in out and "reference median" in out


def test_latency_function(clean):
    session, _ = providers.open_session(str(clean), "cpu")
    feed = {"input": np.zeros((1, 3, 16, 16), np.float32)}
    result = latency(session, feed, runs=4, warmup=1)
    assert set(result) == {"median_ms", "p90_ms", "runs"} and result["runs"] == 4
    assert latency(session, [feed], runs=1)["median_ms"] > 0
    with pytest.raises(providers.SepfixError):
        latency(session, feed, runs=0)


def test_json_parses_and_has_the_keys(clean, capsys):
    code, out, _ = run(["validate", str(clean), "--format", "json"], capsys)
    doc = json.loads(out)
    assert {"verdict", "provider", "numeric", "blocks", "tensorrt", "latency", "exit_code"} <= set(doc)
    assert doc["verdict"] in ("fusion-observed", "fusion-predicted", "numeric-only", "failed")
    assert doc["exit_code"] == code and doc["latency"] is None
    assert set(doc["tensorrt"]) >= {"available", "reason"}


def test_model_without_blocks_is_numeric_only(tmp_path, capsys):
    path = tmp_path / "resnext.onnx"
    onnx.save(builders.resnext_grouped(), path)
    code, doc, _ = run_json(["validate", str(path)], capsys)
    assert code == 0 and doc["verdict"] == "numeric-only" and doc["blocks"] == []


def test_model_blocks_use_tensorrt_names_and_collect_what_follows(tmp_path):
    model = builders.mobilenet_like()
    for node in model.graph.node:
        if node.name == "block1_dw_act":
            node.name = ""  # TensorRT will call it node_of_<output>
    blocks = model_blocks(model_io.from_proto(model))
    assert [b.depthwise for b in blocks] == ["block0_dw_conv", "block1_dw_conv", "block2_dw_conv"]
    assert blocks[0].after == ("block0_residual_add",) and blocks[0].after_ops == ("Add",)
    assert "node_of_block1_dw_act_out" in blocks[1].between


def test_onnxruntime_fallback_banner_on_stdout_does_not_corrupt_json(monkeypatch, clean, capsys):
    """onnxruntime-gpu *prints* "EP Error ... Falling back" to stdout when the TensorRT EP fails
    to load (seen on an H100 with onnxruntime-gpu 1.31.1): --format json must stay parseable."""
    import onnxruntime as ort

    real = ort.InferenceSession

    def noisy_session(*args, **kwargs):
        if "TensorrtExecutionProvider" not in (kwargs.get("providers") or []):
            return real(*args, **kwargs)
        print("*************** EP Error ***************")
        print("EP Error Please install TensorRT libraries ... Falling back to ['CPUExecutionProvider'] and retrying.")
        return real(*args, **kwargs)

    gpu_list = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(providers, "available_providers", lambda: list(gpu_list))
    monkeypatch.setattr(providers, "_preloaded", True)
    monkeypatch.setattr(ort, "InferenceSession", noisy_session)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code, doc, err = run_json(["validate", str(clean), "--provider", "tensorrt"], capsys)
    assert code == 1 and doc["provider"]["fell_back"] is True and doc["verdict"] != "fusion-observed"
    assert "EP Error" in err


# ------------------------------------------------------------------------------ text layer information


def test_engine_info_real_text_log_summary_and_rows(tmp_path, capsys):
    from tests.trt_log_models import FPN_MOBILENETV2_LOG, fpn_mobilenetv2

    path = tmp_path / "fpn.onnx"
    onnx.save(fpn_mobilenetv2(), path)
    code, out, _ = run(["validate", str(path), "--engine-info", str(FPN_MOBILENETV2_LOG)], capsys)
    assert code == 0, out
    assert (f"  blocks: 13 observed (evidence: --engine-info {FPN_MOBILENETV2_LOG} (text, 48 layers from "
            "'Engine Layer Information:' at line 26)):") in out
    assert ("    [observed] Conv_22 -> Conv_26 (C=144): fused: depthwise layer 'Conv_22 + PWN(Clip_25)' "
            "(CudaDepthwiseConvolution): Conv_22 + act[Clip_25]; pointwise layer 'Conv_26 + Add_27' "
            "(CaskConvolution): Conv_26 + add[Add_27]") in out
    assert out.strip().splitlines()[-1].startswith("PASSED: fusion-observed")

    cut = tmp_path / "cut.log"
    text = FPN_MOBILENETV2_LOG.read_text()
    cut.write_text(text[: text.index("Layer(CaskConvolution): Conv_66 ")])
    code, doc, _ = run_json(["validate", str(path), "--engine-info", str(cut)], capsys)
    assert code == 0 and doc["verdict"] == "fusion-observed"
    assert doc["coverage"] == {"blocks": 13, "observed": 7, "predicted": 0, "not_covered": 6}
    assert [b["status"] for b in doc["blocks"]] == ["fused"] * 7 + ["not-covered"] * 6
    assert all(b["evidence"] == "none" for b in doc["blocks"][7:])
    assert any("6 of 13 blocks are not in this layer information" in n for n in doc["notes"])
    code, out, _ = run(["validate", str(path), "--engine-info", str(cut)], capsys)
    assert "  blocks: 7 observed, 6 not covered (evidence:" in out
    assert "    [not covered] Conv_70 -> Conv_74 (C=384): not-covered: not in this layer information" in out
