"""SEP010 unsupported-conv-op: convs written as ops TensorRT's ONNX parser does not take.

Real exporter output (tests/data/real/torch/README.md): ONNX Runtime's offline optimizer at
ORT_ENABLE_EXTENDED writes com.microsoft FusedConv, at ORT_ENABLE_ALL com.microsoft.nchwc Conv
with Reorder nodes; quantize_static with QuantFormat.QOperator writes QLinearConv,
quantize_dynamic ConvInteger. The QDQ exports of the same model are what TensorRT takes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import pytest
from onnx import helper

import sepfix
from sepfix.testing import builders

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "torch"
MANGLES: dict = {}  # not fixable: nothing to round-trip
SAMPLES: dict = {}


def test_a_com_microsoft_fused_conv_is_not_a_conv():
    model = builders.separable_block()
    conv = model.graph.node[0]
    conv.domain, conv.op_type = "com.microsoft", "FusedConv"
    conv.attribute.append(helper.make_attribute("activation", "Relu"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    [finding] = sepfix.check(model)
    assert (finding.code, finding.severity, finding.fixable) == ("SEP010", "error", False)
    assert "ORT_ENABLE_EXTENDED" in finding.message and "ORT_ENABLE_BASIC" in finding.message


@pytest.mark.parametrize("name, ops", [
    ("ort_mobilenet_v2_opt_extended.onnx", {"com.microsoft.FusedConv"}),
    ("ort_mobilenet_v2_opt_all.onnx", {"com.microsoft.nchwc.Conv"}),
    ("ort_mobilenet_v2_qoperator.onnx", {"QLinearConv"}),
    ("ort_mobilenet_v2_dynamic_quant.onnx", {"ConvInteger"}),
])
def test_real_onnxruntime_outputs(name, ops):
    model = onnx.load(REAL / name)
    findings = sepfix.check(model)
    assert {f.details["op"] for f in findings} == ops
    assert all(f.code == "SEP010" and f.severity == "error" and not f.fixable for f in findings)
    wanted = {op.split(".")[-1] for op in ops}
    assert len(findings) == sum(Counter(n.op_type for n in model.graph.node)[op] for op in wanted)


@pytest.mark.parametrize("name", ["ort_mobilenet_v2_qdq_per_channel.onnx", "cc_mobilenet_v2_fp16.onnx"])
def test_qdq_and_fp16_exports_are_silent(name):
    assert [f.code for f in sepfix.check(str(REAL / name))] == []


def test_repair_writes_nothing_for_it(tmp_path):
    from sepfix.cli import main

    out = tmp_path / "out.onnx"
    assert main(["repair", str(REAL / "ort_mobilenet_v2_opt_extended.onnx"), "-o", str(out), "-q"]) == 1
    assert not out.exists()
