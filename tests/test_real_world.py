"""sepfix on what real exporters and deployment tools write (tests/data/real/, made by the scripts
in scripts/real_models/; each folder's README is our reading of every graph, which decides what
sepfix must say here).

For every model: the findings (with --advice), the number of canonical depthwise-separable
blocks, and the exit code of a default check. For the ones with fixable findings, and for real
exports mangled the way converters do: the repair is proven, leaves the canonical form (nothing
a re-check would find), restores the blocks, and changes nothing when run again.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import onnx
import pytest

import sepfix
from sepfix import model_io
from sepfix.checker import check_loaded
from sepfix.cli import main as run_cli
from sepfix.rules import select_rules
from tests.rules.test_sep001_dense_depthwise import dense_depthwise
from tests.rules.test_sep002_group_mismatch import group_attribute
from tests.rules.test_sep006_matmul_pointwise import matmul_pointwise

REAL = Path(__file__).resolve().parent / "data" / "real"

# file: (canonical blocks, findings with --advice as {code: count}, exit code of `sepfix check`)
EXPECTED = {
    # torch 2.14 / torchvision / timm (tests/data/real/torch/README.md)
    "torch/tv_mobilenet_v2_dynbatch.onnx": (9, {}, 0),
    "torch/tv_mobilenet_v2_dynbhw.onnx": (9, {}, 0),
    "torch/tv_mobilenet_v2_dynamo.onnx": (9, {}, 0),
    "torch/tv_mobilenet_v3_small_dynbatch.onnx": (9, {}, 0),
    "torch/tv_mnasnet_a010_dynbatch.onnx": (17, {}, 0),
    "torch/tv_shufflenet_v2_dynbatch.onnx": (9, {}, 0),
    "torch/tv_efficientnet_b0_dynbatch.onnx": (6, {}, 0),
    # export_modules_as_functions: blocks counted across the calls; a Conv whose `group` the
    # call sites bind differently (one nn.Conv2d function for every conv) is advice, not a crash
    "torch/tv_mobilenet_v2_fn_conv2d.onnx": (9, {'ADV003': 1}, 0),
    "torch/tv_mobilenet_v2_fn_convnormact.onnx": (9, {'ADV003': 1}, 0),
    "torch/tv_efficientnet_b0_fn_conv2d.onnx": (6, {'ADV003': 1}, 0),
    "torch/tv_efficientnet_b0_fn_convnormact.onnx": (6, {'ADV003': 1}, 0),
    # timm train-time multi-branch exports: SEP013 re-parameterises them (their _reparam twins are
    # what timm's reparameterize_model exports)
    "torch/timm_repvit_train.onnx": (2, {'SEP013': 7}, 1),
    "torch/timm_fastvit_train.onnx": (4, {'SEP008': 4, 'SEP013': 13}, 1),
    "torch/timm_mobileone_train.onnx": (0, {'SEP013': 9}, 1),
    "torch/timm_repvit_reparam.onnx": (9, {}, 0),
    "torch/timm_fastvit_reparam.onnx": (8, {'SEP008': 4}, 0),
    "torch/timm_mobileone_reparam.onnx": (4, {}, 0),
    "torch/neg_timm_convnext_dynbatch.onnx": (0, {}, 0),
    "torch/neg_timm_resnext_dynbatch.onnx": (0, {}, 0),
    # ONNX Runtime's tools and other converters applied to the dynamic-batch MobileNetV2
    "torch/ort_mobilenet_v2_qdq_per_channel.onnx": (9, {}, 0),
    "torch/ort_mobilenet_v2_qdq_per_tensor.onnx": (9, {'ADV002': 9}, 0),
    "torch/ort_mobilenet_v2_qoperator.onnx": (0, {'SEP010': 28}, 1),
    "torch/ort_mobilenet_v2_dynamic_quant.onnx": (0, {'SEP010': 28}, 1),
    "torch/ort_mobilenet_v2_opt_extended.onnx": (0, {'SEP010': 19}, 1),
    "torch/ort_mobilenet_v2_opt_all.onnx": (0, {'SEP010': 28}, 1),
    "torch/cc_mobilenet_v2_fp16.onnx": (9, {}, 0),
    "torch/onnxsim_mobilenet_v2.onnx": (9, {}, 0),
    "torch/onnxslim_mobilenet_v2.onnx": (9, {}, 0),
    # paddle2onnx 1.x and 2.x (PP-OCRv4-like det/rec, PP-OCR cls)
    "paddle/ppocrv4_det_p2o1.onnx": (14, {'ADV001': 2, 'SEP008': 30}, 1),
    # paddle2onnx 2.x writes every conv bias as a separate Add (SEP008 info) and PPLCNetV3's learnable
    # affine as a scalar Mul/Add ONNX Runtime does not fold (SEP008 warning, measured 1.35-1.39x)
    # exported without rep(): PPLCNetV3's multi-branch convs (SEP013)
    "paddle/ppocrv4_det_trainform_p2o2.onnx": (0, {'ADV001': 2, 'SEP008': 26, 'SEP013': 28}, 1),
    "paddle/ppocrv4_det_p2o2.onnx": (14, {'ADV001': 2, 'SEP008': 54}, 1),
    "paddle/ppocrv4_rec_p2o2.onnx": (14, {'ADV001': 2, 'SEP008': 32}, 1),
    "paddle/ppocr_cls_p2o2.onnx": (11, {'ADV001': 14, 'SEP008': 18}, 0),
    # tf2onnx from Keras 2 (tf-keras) and Keras 3, TFLite -> tf2onnx (tests/data/real/tf/README.md)
    "tf/k2_mobilenetv3small.onnx": (11, {'SEP008': 9, 'SEP011': 4}, 1),  # zero Pads (SEP011 info); the SE convs' +3 Add that ONNX Runtime does not fold (SEP008 warning)
    "tf/k2_mobilenetv3small_kinit.onnx": (0, {'SEP007': 35, 'SEP011': 4}, 1),  # 101 interior Transposes in 35 regions
    "tf/k2_pad_dw_s2.onnx": (2, {'SEP007': 1, 'SEP011': 2}, 1),  # NHWC Pad -> Transpose -> Conv: warning  # NHWC input Transpose movable to the boundary: info
    "tf/k3_mobilenetv3small.onnx": (11, {'SEP008': 20, 'SEP011': 4}, 1),
    "tf/k3_mobilenetv2.onnx": (14, {'SEP008': 14, 'SEP011': 4}, 0),
    "tf/k3_efficientnet.onnx": (7, {'ADV001': 2, 'SEP007': 1, 'SEP008': 7, 'SEP011': 4}, 0),
    "tf/k3_pad_dw_s2.onnx": (2, {'SEP007': 1, 'SEP008': 2, 'SEP011': 2}, 1),
    "tf/k3_dilated_dw.onnx": (1, {'SEP008': 1}, 0),
    "tf/tflite_dilated_dw.onnx": (0, {'SEP012': 1}, 1),  # space-to-batch dilation
    "tf/tflite_mobilenetv3small_op15.onnx": (3, {'SEP007': 18}, 1),
    # TFLite -> tf2onnx dilated convs (tests/data/real/tf-dilation/README.md)
    "tf-dilation/tflite_atrous_dense.onnx": (0, {'SEP012': 1}, 1),
    "tf-dilation/tflite_dw4_crop.onnx": (0, {'SEP012': 1}, 1),
    "tf-dilation/tflite_dw23_reshape.onnx": (0, {}, 0),  # non-square rate via run-time Reshapes: not recognised (known problem)
    # jax2onnx: NHWC dims declared on NCHW tensors, relu6 as Max/Min (tests/data/real/jax/README.md)
    "jax/jax_linen_dwsep_block.onnx": (1, {}, 0),
    "jax/jax_nnx_dwsep_block.onnx": (1, {}, 0),
    "jax/jax_nnx_mobilenet3.onnx": (3, {'SEP007': 1}, 0),
    "jax/jax_nnx_mobilenet3_nchw.onnx": (3, {}, 0),
    # ultralytics
    "yolo/yolo11_tiny_nc1_64.onnx": (6, {'ADV001': 1}, 0),
    "yolo/yolo26_tiny_nc1_dynamic.onnx": (6, {'ADV001': 1}, 0),
}


def _check(path: Path) -> tuple[int, dict[str, int], int]:
    loaded = model_io.load_for_check(path)
    result = check_loaded(loaded, select_rules(advice=True), str(path), advice=True)
    codes = Counter(f.code for f in result.findings)
    failing = any(f.counts for f in result.findings)
    return len(result.blocks), dict(sorted(codes.items())), int(failing)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_check_says_what_our_reading_of_the_graph_says(name):
    assert _check(REAL / name) == EXPECTED[name]


def test_every_real_model_is_listed():
    """A model added to tests/data/real without an expectation here is a test nobody wrote."""
    present = {p.relative_to(REAL).as_posix() for p in REAL.glob("*/*.onnx")}
    assert present - set(EXPECTED) - set(INVALID) == set()


# file: blocks after repair (the proof holds, nothing a re-check would fail on is left)
REPAIRED = {
    "paddle/ppocrv4_det_p2o2.onnx": 14,  # dynamic H/W: the proof finds 224x224 by itself
    "paddle/ppocrv4_rec_p2o2.onnx": 14,  # height 48
    "paddle/ppocr_cls_p2o2.onnx": 11,
    # tf2onnx's transpose optimizer gave up: after repair only the two boundary Transposes remain
    "tf/k2_mobilenetv3small_kinit.onnx": 11,
    "tf/tflite_mobilenetv3small_op15.onnx": 11,
    "tf/tflite_dilated_dw.onnx": 1,  # one dilated depthwise Conv, then its BN as Mul/Add, then the pointwise conv
    "tf-dilation/tflite_dw4_crop.onnx": 1,
    "tf-dilation/tflite_atrous_dense.onnx": 0,
    "tf/k2_pad_dw_s2.onnx": 2,
    # Keras 3: BN left as Mul/Add after every depthwise conv (SEP008, info) and zero Pads (SEP011)
    "tf/k3_mobilenetv2.onnx": 14,
    "tf/k2_mobilenetv3small.onnx": 11,
    "paddle/ppocrv4_det_p2o1.onnx": 14,
    # train-time multi-branch: the re-parameterised structure (blocks as the reparam exports)
    "torch/timm_repvit_train.onnx": 9,
    "torch/timm_fastvit_train.onnx": 8,
    "torch/timm_mobileone_train.onnx": 4,
    "paddle/ppocrv4_det_trainform_p2o2.onnx": 14,
}

# file: the one-line error `sepfix check` gives (exit 2)
INVALID = {
    # tf2onnx leaves the TF function it could not convert (Keras Conv2D(groups=C))
    "tf/k2_groups_dw.onnx": "PartitionedCall node 'groups_dw/gconv_dw/PartitionedCall' is not an ONNX operator",
    "tf/k3_groups_dw.onnx": "StatefulPartitionedCall node",
    # TFLite -> tf2onnx writes HardSwish into an opset-13 model
    "tf/tflite_mobilenetv3small.onnx": "is defined in ai.onnx from opset 14 on, but the model imports opset 13",
}


@pytest.mark.parametrize("name", sorted(REPAIRED))
def test_repair_is_proven_canonical_and_idempotent(name, tmp_path):
    _assert_repairs(REAL / name, tmp_path, REPAIRED[name])


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_exports_are_a_one_line_error(name, capsys):
    assert run_cli(["check", str(REAL / name)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and INVALID[name] in err


def _assert_repairs(path: Path, tmp_path: Path, blocks: int) -> None:
    out = tmp_path / "repaired.onnx"
    assert run_cli(["repair", str(path), "-o", str(out), "-q"]) == 0
    original = onnx.load(path, load_external_data=False)
    repaired = onnx.load(out)
    assert (repaired.ir_version, list(repaired.opset_import)) == (original.ir_version, list(original.opset_import))
    after_blocks, codes, failing = _check(out)
    assert after_blocks == blocks and failing == 0, codes
    again = tmp_path / "again.onnx"
    assert run_cli(["repair", str(out), "-o", str(again), "-q"]) == 0
    assert again.read_bytes() == out.read_bytes()  # nothing left to fix: a byte copy


# Real exports mangled the way converters do (dropped groups on a dynamic batch, pointwise convs
# as MatMuls on a dynamic batch): every mangle found, every repair proven.
MANGLED = {
    "shufflenet_dropped_groups": ("torch/tv_shufflenet_v2_dynbatch.onnx", lambda m: group_attribute(m, None), "SEP002"),
    "shufflenet_group_1": ("torch/tv_shufflenet_v2_dynbatch.onnx", lambda m: group_attribute(m, 1), "SEP002"),
    "mobilenet_v2_matmul_pointwise": ("torch/tv_mobilenet_v2_dynbatch.onnx", matmul_pointwise, "SEP006"),
    "efficientnet_matmul_pointwise": ("torch/tv_efficientnet_b0_dynbatch.onnx", matmul_pointwise, "SEP006"),
    "mobilenet_v3_matmul_pointwise": ("torch/tv_mobilenet_v3_small_dynbatch.onnx", matmul_pointwise, "SEP006"),
    "mnasnet_dense_depthwise": ("torch/tv_mnasnet_a010_dynbatch.onnx", dense_depthwise, "SEP001"),
}


@pytest.mark.parametrize("case", sorted(MANGLED))
def test_mangled_real_exports_are_found_and_repaired(case, tmp_path):
    name, apply, code = MANGLED[case]
    clean = onnx.load(REAL / name)
    mangled = apply(clean)
    path = tmp_path / "mangled.onnx"
    onnx.save(mangled, path)
    blocks, codes, _ = _check(REAL / name)
    found = [f for f in sepfix.check(mangled) if f.code == code]
    changed = sum(1 for a, b in zip(clean.graph.node, mangled.graph.node) if a != b)
    assert found and changed
    _assert_repairs(path, tmp_path, blocks)


def test_ort_optimized_model_is_refused_with_what_to_ship_instead(capsys):
    assert run_cli(["check", "--format", "json", str(REAL / "torch/ort_mobilenet_v2_opt_all.onnx")]) == 1
    document = json.loads(capsys.readouterr().out)
    [model] = document["models"]
    assert {f["details"]["op"] for f in model["findings"]} >= {"com.microsoft.nchwc.Conv"}
    assert all(f["severity"] == "error" and not f["fixable"] for f in model["findings"])
