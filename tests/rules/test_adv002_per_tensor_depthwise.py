"""ADV002 per-tensor-depthwise: depthwise weights quantized with one scale for every channel.

Real exporter output: ONNX Runtime's quantize_static (QDQ) of a torchvision MobileNetV2 with
per_channel=False and True (tests/data/real/torch/README.md)."""

from __future__ import annotations

from pathlib import Path

import sepfix
from sepfix.testing import builders

REAL = Path(__file__).resolve().parents[1] / "data" / "real" / "torch"
MANGLES: dict = {}  # advice: nothing to repair
SAMPLES: dict = {}


def test_per_tensor_depthwise_weights_are_advice_on_every_depthwise_conv():
    findings = sepfix.check(str(REAL / "ort_mobilenet_v2_qdq_per_tensor.onnx"), advice=True)
    assert [f.code for f in findings] == ["ADV002"] * 9 and all(f.severity == "info" for f in findings)
    assert all(f.details["scale_shape"] == [] for f in findings)
    assert sepfix.check(str(REAL / "ort_mobilenet_v2_qdq_per_tensor.onnx")) == []  # never fails a check


def test_per_channel_scales_are_silent():
    assert sepfix.check(str(REAL / "ort_mobilenet_v2_qdq_per_channel.onnx"), advice=True) == []


def test_helper_built_per_channel_depthwise_is_silent():
    assert not [f for f in sepfix.check(builders.qdq_weights(), advice=True) if f.code == "ADV002"]
