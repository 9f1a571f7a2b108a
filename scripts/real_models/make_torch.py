"""Regenerate tests/data/real/torch/: real torch.onnx exports of small torchvision and timm
networks (random weights, never pretrained) and what ONNX Runtime's tools make of one of them.

Run it with the torch environment, not sepfix's dev venv (it needs torch 2.14, torchvision, timm,
onnxruntime, onnxscript, onnxsim, onnxslim, onnxconverter-common):

    /work/venvs/torch/bin/python scripts/real_models/make_torch.py [--out DIR] [--only NAME,...]

Every network is the library's own class built with smaller width/depth arguments (and, where
the class hard-codes a 1280-wide head, that head narrowed to 128; see TAIL below), seeded
(torch.manual_seed(0)), put in eval mode, its BatchNorm statistics and affine parameters set to
seeded non-trivial values (so folding them shows in the numbers), and exported at opset 17 from
a 1x3x64x64 input unless its entry says otherwise. The script writes MANIFEST.json: tool
versions, and per file its sha256, size, recipe, IR version, opsets and whether onnxruntime
(CPU) loads it and runs it on a random input.

Determinism: the torch exports and onnxsim/onnxslim/float16 outputs are byte-for-byte
repeatable with the same tool versions. The ORT-made files are not portable across machines:
ORT_ENABLE_ALL lays NCHWc blocks out for the CPU it runs on (8 channels on AVX2, 16 on
AVX-512), and static-quantization scales come from calibration runs on this CPU's kernels.
MANIFEST.json records the CPU flags that matter.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import random
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO_ROOT / "tests" / "data" / "real" / "torch"
OPSET = 17
INPUT_SHAPE = (1, 3, 64, 64)
TAIL = 128  # width of the head conv that torchvision hard-codes at 1280 (mobilenet_v2, mnasnet)
SEED = 0
SIZE_CAP = 5 * 1024 * 1024  # the whole folder
FILE_SOFT_CAP = 400 * 1024


def seed_all(seed: int = SEED) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def randomize_bn(model: nn.Module, seed: int = SEED) -> nn.Module:
    """Seeded, non-trivial BatchNorm statistics and affine parameters (as a trained model has)."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                c = module.num_features
                module.running_mean.copy_(torch.rand(c, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(c, generator=gen) * 1.5 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                    module.bias.copy_(torch.rand(c, generator=gen) - 0.5)
    return model


def example_input(shape=INPUT_SHAPE) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(SEED + 2))


# ---------------------------------------------------------------------------------------------
# Networks (the library's classes, small)
# ---------------------------------------------------------------------------------------------


def tv_mobilenet_v2() -> nn.Module:
    """torchvision MobileNetV2(width_mult=0.25, 10 classes) with its inverted-residual table cut
    to n=(1,2,2,2,1,1) and no 320 stage; the 1280 head conv narrowed to TAIL."""
    from torchvision.models import mobilenet_v2
    from torchvision.ops.misc import Conv2dNormActivation

    setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 2, 2], [6, 64, 2, 2], [6, 96, 1, 1], [6, 160, 1, 2]]
    model = mobilenet_v2(width_mult=0.25, num_classes=10, inverted_residual_setting=setting)
    last_in = model.features[-1][0].in_channels
    model.features[-1] = Conv2dNormActivation(last_in, TAIL, kernel_size=1, norm_layer=nn.BatchNorm2d,
                                              activation_layer=nn.ReLU6)
    model.classifier[1] = nn.Linear(TAIL, 10)
    model.last_channel = TAIL
    return model


def tv_mobilenet_v3_small() -> nn.Module:
    """torchvision MobileNetV3 with the mobilenet_v3_small table at width 0.25, reduced tail,
    its last two blocks dropped (10 -> 8 inverted residuals after the stem)."""
    from torchvision.models.mobilenetv3 import MobileNetV3, _mobilenet_v3_conf

    setting, last_channel = _mobilenet_v3_conf("mobilenet_v3_small", width_mult=0.25, reduced_tail=True)
    return MobileNetV3(setting[:-2], last_channel=last_channel, num_classes=10)


def tv_mnasnet() -> nn.Module:
    """torchvision MNASNet(alpha=0.1, 10 classes); the 1280 head conv narrowed to TAIL."""
    from torchvision.models import MNASNet

    model = MNASNet(0.1, num_classes=10)
    conv = model.layers[14]
    model.layers[14] = nn.Conv2d(conv.in_channels, TAIL, 1, padding=0, stride=1, bias=False)
    model.layers[15] = nn.BatchNorm2d(TAIL, momentum=model.layers[15].momentum)
    model.classifier[1] = nn.Linear(TAIL, 10)
    return model


def tv_shufflenet_v2() -> nn.Module:
    """torchvision ShuffleNetV2 with repeats (2,2,2) and channels (24,32,64,96,128)."""
    from torchvision.models import ShuffleNetV2

    return ShuffleNetV2([2, 2, 2], [24, 32, 64, 96, 128], num_classes=10)


def tv_efficientnet_b0() -> nn.Module:
    """torchvision EfficientNet with the efficientnet_b0 table at width 0.125, depth 0.25, its
    last stage (320 channels, one block) dropped; head conv TAIL wide."""
    from torchvision.models.efficientnet import EfficientNet, _efficientnet_conf

    setting, _ = _efficientnet_conf("efficientnet_b0", width_mult=0.125, depth_mult=0.25)
    return EfficientNet(setting[:-1], dropout=0.2, last_channel=TAIL, num_classes=10)


def timm_repvit() -> nn.Module:
    """timm RepVit (train-time RepVggDw mixers) with embed_dim (16,24,32), depth (2,2,1)."""
    from timm.models.repvit import RepVit

    return RepVit(embed_dim=(16, 24, 32), depth=(2, 2, 1), num_classes=10)


def timm_fastvit() -> nn.Module:
    """timm FastVit, sa-style (RepMixer stages then one attention stage), embed_dims (8,16,32,32),
    one block per stage, mlp_ratio 2."""
    from timm.models.fastvit import FastVit

    return FastVit(layers=(1, 1, 1, 1), embed_dims=(8, 16, 32, 32), mlp_ratios=(2, 2, 2, 2),
                   token_mixers=("repmixer", "repmixer", "repmixer", "attention"), num_classes=10)


def timm_mobileone() -> nn.Module:
    """timm ByobNet with mobileone_s0's block kind (4 conv branches), d=(1,1,1,1),
    stage widths (16,32,64,64), stem 16."""
    from timm.models.byobnet import ByobNet, ByoModelCfg, _mobileone_bcfg

    cfg = ByoModelCfg(blocks=_mobileone_bcfg(d=(1, 1, 1, 1), wf=(0.25, 0.25, 0.25, 0.125), num_conv_branches=4),
                      stem_type="one", stem_chs=16)
    return ByobNet(cfg, num_classes=10)


def timm_resnext() -> nn.Module:
    """timm ResNet as ResNeXt (Bottleneck, cardinality 4), channels (8,8,8,16): grouped 3x3
    convs with 8 or 16 channels per group (not depthwise)."""
    from timm.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, (1, 1, 1, 1), channels=(8, 8, 8, 16), cardinality=4, base_width=64,
                  num_classes=10)


def timm_convnext() -> nn.Module:
    """timm ConvNeXt with depths (1,1,1,1), dims (8,16,24,32); Linear pointwise layers (conv_mlp=False)."""
    from timm.models.convnext import ConvNeXt

    return ConvNeXt(depths=(1, 1, 1, 1), dims=(8, 16, 24, 32), num_classes=10)


def build(factory: Callable[[], nn.Module]) -> nn.Module:
    """Seeded construction; BN statistics randomised before any re-parameterisation sees them."""
    seed_all()
    return randomize_bn(factory()).eval()


def build_reparam(factory: Callable[[], nn.Module]) -> nn.Module:
    from timm.utils.model import reparameterize_model

    train_time = build(factory)
    return reparameterize_model(train_time).eval()


# ---------------------------------------------------------------------------------------------
# Exporters
# ---------------------------------------------------------------------------------------------


def export_legacy(make_model: Callable[[], nn.Module], dynamic_axes=None, functions=False) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(make_model(), (example_input(),), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["x"], output_names=["y"], dynamic_axes=dynamic_axes,
                          export_modules_as_functions=functions)
    return buffer.getvalue()


FUNCTION_EXPORT_ATTEMPTS = 20


def export_in_child(name: str) -> bytes:
    """Export one recipe in a fresh interpreter, retrying until it succeeds.

    export_modules_as_functions is not deterministic in torch 2.14.1: the function body's value
    names come from whichever module instance it picks (so bytes differ between runs), and for a
    class whose instances differ in their attributes (EfficientNet's Conv2d: bias=False in
    Conv2dNormActivation, bias=True in SqueezeExcitation) it fails now and then with "Found
    outstanding annotated attribute". Retrying in the same process then trips an internal assert
    or a segfault, hence a fresh process per attempt."""
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / name
        for attempt in range(1, FUNCTION_EXPORT_ATTEMPTS + 1):
            done = subprocess.run([sys.executable, __file__, "--child", name, "--child-out", str(target)],
                                  capture_output=True, text=True)
            if done.returncode == 0 and target.exists():
                return target.read_bytes()
            last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
            print(f"  attempt {attempt} failed (exit {done.returncode}): {last[:110]}", flush=True)
    raise RuntimeError(f"{name}: export failed {FUNCTION_EXPORT_ATTEMPTS} times")


def export_dynamo(model: nn.Module) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example_input(),), dynamo=True, input_names=["x"],
                                    output_names=["y"], external_data=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        program.save(str(path), external_data=False)
        return path.read_bytes()


BATCH = {"x": {0: "n"}}
BATCH_HW = {"x": {0: "n", 2: "h", 3: "w"}}


def torch_recipes() -> dict[str, tuple[Callable[[], bytes], str]]:
    """file name -> (make its bytes, what it is)."""
    from torchvision.ops.misc import Conv2dNormActivation

    def legacy(factory, **kw):
        return lambda: export_legacy(lambda: build(factory), **kw)

    def legacy_reparam(factory, **kw):
        return lambda: export_legacy(lambda: build_reparam(factory), **kw)

    dyn = "legacy exporter (dynamo=False), opset 17, dynamic_axes={'x': {0: 'n'}}"
    static = "legacy exporter (dynamo=False), opset 17, static 1x3x64x64"
    return {
        "tv_mobilenet_v2_dynbatch.onnx": (legacy(tv_mobilenet_v2, dynamic_axes=BATCH),
                                          f"{tv_mobilenet_v2.__doc__} {dyn}"),
        "tv_mobilenet_v2_dynbhw.onnx": (legacy(tv_mobilenet_v2, dynamic_axes=BATCH_HW),
                                        f"{tv_mobilenet_v2.__doc__} legacy exporter, opset 17, "
                                        "dynamic_axes={'x': {0: 'n', 2: 'h', 3: 'w'}}"),
        "tv_mobilenet_v2_dynamo.onnx": (lambda: export_dynamo(build(tv_mobilenet_v2)),
                                        f"{tv_mobilenet_v2.__doc__} dynamo exporter (dynamo=True, "
                                        "its default opset and optimize=True), static 1x3x64x64"),
        "tv_mobilenet_v3_small_dynbatch.onnx": (legacy(tv_mobilenet_v3_small, dynamic_axes=BATCH),
                                                f"{tv_mobilenet_v3_small.__doc__} {dyn}"),
        "tv_mnasnet_a010_dynbatch.onnx": (legacy(tv_mnasnet, dynamic_axes=BATCH), f"{tv_mnasnet.__doc__} {dyn}"),
        "tv_shufflenet_v2_dynbatch.onnx": (legacy(tv_shufflenet_v2, dynamic_axes=BATCH),
                                           f"{tv_shufflenet_v2.__doc__} {dyn}"),
        "tv_efficientnet_b0_dynbatch.onnx": (legacy(tv_efficientnet_b0, dynamic_axes=BATCH),
                                             f"{tv_efficientnet_b0.__doc__} {dyn}"),
        "tv_mobilenet_v2_fn_convnormact.onnx": (
            legacy(tv_mobilenet_v2, functions={Conv2dNormActivation}),
            f"{tv_mobilenet_v2.__doc__} {static}, "
            "export_modules_as_functions={torchvision.ops.misc.Conv2dNormActivation}"),
        "tv_mobilenet_v2_fn_conv2d.onnx": (
            legacy(tv_mobilenet_v2, functions={nn.Conv2d}),
            f"{tv_mobilenet_v2.__doc__} {static}, export_modules_as_functions={{torch.nn.Conv2d}}"),
        "tv_efficientnet_b0_fn_convnormact.onnx": (
            legacy(tv_efficientnet_b0, functions={Conv2dNormActivation}),
            f"{tv_efficientnet_b0.__doc__} {static}, "
            "export_modules_as_functions={torchvision.ops.misc.Conv2dNormActivation}"),
        "tv_efficientnet_b0_fn_conv2d.onnx": (
            legacy(tv_efficientnet_b0, functions={nn.Conv2d}),
            f"{tv_efficientnet_b0.__doc__} {static}, export_modules_as_functions={{torch.nn.Conv2d}}"),
        "timm_repvit_train.onnx": (legacy(timm_repvit, dynamic_axes=BATCH), f"{timm_repvit.__doc__} {dyn}"),
        "timm_repvit_reparam.onnx": (legacy_reparam(timm_repvit, dynamic_axes=BATCH),
                                     f"timm.utils.reparameterize_model of: {timm_repvit.__doc__} {dyn}"),
        "timm_fastvit_train.onnx": (legacy(timm_fastvit, dynamic_axes=BATCH), f"{timm_fastvit.__doc__} {dyn}"),
        "timm_fastvit_reparam.onnx": (legacy_reparam(timm_fastvit, dynamic_axes=BATCH),
                                      f"timm.utils.reparameterize_model of: {timm_fastvit.__doc__} {dyn}"),
        "timm_mobileone_train.onnx": (legacy(timm_mobileone, dynamic_axes=BATCH),
                                      f"{timm_mobileone.__doc__} {dyn}"),
        "timm_mobileone_reparam.onnx": (legacy_reparam(timm_mobileone, dynamic_axes=BATCH),
                                        f"timm.utils.reparameterize_model of: {timm_mobileone.__doc__} {dyn}"),
        "neg_timm_resnext_dynbatch.onnx": (legacy(timm_resnext, dynamic_axes=BATCH),
                                           f"negative control: {timm_resnext.__doc__} {dyn}"),
        "neg_timm_convnext_dynbatch.onnx": (legacy(timm_convnext, dynamic_axes=BATCH),
                                            f"negative control: {timm_convnext.__doc__} {dyn}"),
    }


# ---------------------------------------------------------------------------------------------
# ONNX Runtime's tools (and the simplifiers) applied to tv_mobilenet_v2_dynbatch.onnx
# ---------------------------------------------------------------------------------------------

ORT_SOURCE = "tv_mobilenet_v2_dynbatch.onnx"


class RandomReader:
    """CalibrationDataReader: 8 seeded random 1x3x64x64 batches."""

    def __init__(self, count: int = 8):
        rng = np.random.default_rng(SEED + 3)
        self._batches = iter([{"x": rng.standard_normal(INPUT_SHAPE, dtype=np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self._batches, None)

    def rewind(self):  # older ORT versions call it
        pass


def preprocess(src: Path, tmp: Path) -> Path:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = tmp / "pre.onnx"
    quant_pre_process(str(src), str(out))
    return out


def quant_static(src: Path, out: Path, tmp: Path, fmt: str, per_channel: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(RandomReader, CalibrationDataReader):
        pass

    seed_all()
    quantize_static(str(preprocess(src, tmp)), str(out), Reader(),
                    quant_format=getattr(QuantFormat, fmt), per_channel=per_channel)


def quant_dynamic(src: Path, out: Path, tmp: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(preprocess(src, tmp)), str(out))


def ort_optimize(src: Path, out: Path, tmp: Path, level: str) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def fp16(src: Path, out: Path, tmp: Path) -> None:
    from onnxconverter_common import float16

    onnx.save(float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(out))


def simplify(src: Path, out: Path, tmp: Path) -> None:
    import onnxsim

    model, ok = onnxsim.simplify(onnx.load(str(src)))
    if not ok:
        raise RuntimeError("onnxsim's own check failed")
    onnx.save(model, str(out))


def slim(src: Path, out: Path, tmp: Path) -> None:
    import onnxslim

    onnx.save(onnxslim.slim(onnx.load(str(src))), str(out))


def ort_recipes() -> dict[str, tuple[Callable[[Path, Path, Path], None], str]]:
    pre = "after quant_pre_process (symbolic shape inference + ORT basic optimisation)"
    return {
        "ort_mobilenet_v2_qdq_per_channel.onnx": (
            lambda s, o, t: quant_static(s, o, t, "QDQ", True),
            f"quantize_static QDQ, per_channel=True, default types, 8 random calibration batches, {pre}"),
        "ort_mobilenet_v2_qdq_per_tensor.onnx": (
            lambda s, o, t: quant_static(s, o, t, "QDQ", False),
            f"quantize_static QDQ, per_channel=False, default types, 8 random calibration batches, {pre}"),
        "ort_mobilenet_v2_qoperator.onnx": (
            lambda s, o, t: quant_static(s, o, t, "QOperator", False),
            f"quantize_static QOperator (QLinearConv), per_channel=False, 8 random calibration batches, {pre}"),
        "ort_mobilenet_v2_dynamic_quant.onnx": (
            quant_dynamic, f"quantize_dynamic, default settings, {pre}"),
        "ort_mobilenet_v2_opt_extended.onnx": (
            lambda s, o, t: ort_optimize(s, o, t, "ORT_ENABLE_EXTENDED"),
            "ORT offline optimizer (SessionOptions.optimized_model_filepath), ORT_ENABLE_EXTENDED, CPU EP"),
        "ort_mobilenet_v2_opt_all.onnx": (
            lambda s, o, t: ort_optimize(s, o, t, "ORT_ENABLE_ALL"),
            "ORT offline optimizer, ORT_ENABLE_ALL, CPU EP (NCHWc layout for this CPU)"),
        "cc_mobilenet_v2_fp16.onnx": (
            fp16, "onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)"),
        "onnxsim_mobilenet_v2.onnx": (simplify, "onnxsim.simplify (defaults)"),
        "onnxslim_mobilenet_v2.onnx": (slim, "onnxslim.slim (defaults)"),
    }


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------

PACKAGES = ("torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxscript", "onnx-ir", "onnxsim",
            "onnxslim", "onnxconverter-common", "numpy", "protobuf")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return sorted(f for f in flags if f.startswith(("avx", "fma", "f16c", "amx")) or f == "vnni")
    return []


def ort_run(path: Path) -> dict:
    """Load in onnxruntime (CPU) and run on a seeded random input; dynamic dims get 1 (batch) / 64."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {}
        rng = np.random.default_rng(SEED + 4)
        for inp in session.get_inputs():
            shape = [d if isinstance(d, int) else (1 if i == 0 else 64) for i, d in enumerate(inp.shape)]
            dtype = np.float16 if "float16" in inp.type else np.float32
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        outputs = session.run(None, feeds)
        return {"ok": True, "output_shapes": [list(o.shape) for o in outputs],
                "finite": bool(all(np.isfinite(o).all() for o in outputs))}
    except Exception as exc:  # noqa: BLE001 - recorded, not raised
        return {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}


def describe_file(path: Path) -> dict:
    data = path.read_bytes()
    model = onnx.load_from_string(data)
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "ir_version": model.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", default="", help="comma-separated file names (for debugging; no manifest)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        args.child_out.write_bytes(torch_recipes()[args.child][0]())
        return 0
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    only = {n for n in args.only.split(",") if n}

    recipes: dict[str, str] = {}
    for name, (make, what) in torch_recipes().items():
        if only and name not in only and not (name == ORT_SOURCE and only & set(ort_recipes())):
            continue
        print(f"export {name}", flush=True)
        (out / name).write_bytes(export_in_child(name) if "_fn_" in name else make())
        recipes[name] = what
    for name, (make, what) in ort_recipes().items():
        if only and name not in only:
            continue
        print(f"tool   {name}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            seed_all()
            make(out / ORT_SOURCE, out / name, Path(tmp))
        recipes[name] = f"{what}; source {ORT_SOURCE}"

    files = {}
    for name in sorted(recipes):
        entry = describe_file(out / name)
        entry["recipe"] = recipes[name]
        entry["onnxruntime_cpu"] = ort_run(out / name)
        files[name] = entry
        flag = "" if entry["bytes"] <= FILE_SOFT_CAP else "  (over the 400 KB soft cap)"
        print(f"{name}: {entry['bytes']} bytes, ort {entry['onnxruntime_cpu']}{flag}")
    if only:
        return 0

    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file() and p.suffix == ".onnx")
    manifest = {
        "generator": "scripts/real_models/make_torch.py",
        "seed": SEED, "opset": OPSET, "input_shape": list(INPUT_SHAPE),
        "versions": versions(),
        "machine": {"platform": platform.platform(), "machine": platform.machine(), "cpu_flags": cpu_flags()},
        "files": files,
        "total_onnx_bytes": total,
    }
    (out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    print(f"total {total} bytes in {len(files)} files")
    if total > SIZE_CAP:
        print(f"error: folder over {SIZE_CAP} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
