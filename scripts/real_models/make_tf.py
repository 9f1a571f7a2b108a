"""Regenerate tests/data/real/tf/: real TensorFlow/Keras exporter outputs through tf2onnx.

    /work/venvs/tf/bin/python scripts/real_models/make_tf.py [--out tests/data/real/tf] [NAME ...]

Environment this was made with (recorded again in MANIFEST.json by the script itself):
    python -m venv tf && tf/bin/pip install tensorflow-cpu tf-keras tf2onnx onnx onnxruntime
    -> tensorflow-cpu 2.21.0, keras 3.15.1, tf-keras 2.21.0, tf2onnx 1.17.0, onnx 1.23.2,
       onnxruntime 1.32.0, numpy 2.4.6, protobuf 7.36.2 (Python 3.11). No pins were needed:
       tf2onnx 1.17.0 imports and converts with TF 2.21 / numpy 2 / protobuf 7. Its transpose
       optimizer fails on MobileNetV3 (tf2onnx's own bug, see README.md); TF 2.17.1 + tf-keras
       2.17.0 + onnx 1.17.0 + numpy 1.26 gave the same graph, op for op.

Every model is built from Keras with random weights (weights=None, never a download) and fixed
seeds; BatchNormalization statistics and conv biases are then set to seeded random values so
that a folded or unfolded BatchNorm is not an identity (Keras initialises gamma=1, beta=0,
mean=0, var=1 and biases to 0). The *_kinit models keep Keras's initial values: with zero
biases tf2onnx's transpose optimizer crashes on MobileNetV3 and leaves its layout Transposes. Each model is built in its own child process, because
TF_USE_LEGACY_KERAS must be set before TensorFlow is imported. The tf2onnx warnings that matter
("Failed to apply optimize_transpose", unsupported ops) are counted into MANIFEST.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPSET = 13
SEED = 0

# name -> (how, one-line description). The builders below are looked up by name.
MODELS = {
    "k2_mobilenetv3small": ("tf-keras (Keras 2) -> tf2onnx.convert.from_keras, opset 13",
                            "MobileNetV3Small alpha=0.25 minimalistic=False include_top=False 96x96"),
    "k2_mobilenetv3small_kinit": ("tf-keras (Keras 2) -> tf2onnx.convert.from_keras, opset 13",
                                  "as k2_mobilenetv3small, but Keras's own initial weights (zero biases, identity BN)"),
    "k3_mobilenetv3small": ("Keras 3 model.export() SavedModel -> python -m tf2onnx.convert --saved-model, opset 13",
                            "MobileNetV3Small alpha=0.25 minimalistic=False include_top=False 96x96"),
    "k3_mobilenetv2": ("Keras 3 model.export() SavedModel -> python -m tf2onnx.convert --saved-model, opset 13",
                       "MobileNetV2 alpha=0.35 96x96, cut after block_13_project_BN (size cap)"),
    "k3_efficientnet": ("Keras 3 model.export() SavedModel -> python -m tf2onnx.convert --saved-model, opset 13",
                        "EfficientNet(width 0.25, depth 0.25) include_top=False 96x96"),
    "tflite_mobilenetv3small": ("Keras 3 SavedModel -> TFLiteConverter (float32) -> python -m tf2onnx.convert --tflite, opset 13",
                                "the k3_mobilenetv3small model"),
    "tflite_mobilenetv3small_op15": ("Keras 3 SavedModel -> TFLiteConverter (float32) -> python -m tf2onnx.convert --tflite, opset 15",
                                     "the k3_mobilenetv3small model (opset 15: HardSwish exists from opset 14)"),
    "tflite_dilated_dw": ("Keras 3 SavedModel -> TFLiteConverter (float32) -> python -m tf2onnx.convert --tflite, opset 13",
                          "DepthwiseConv2D(3, dilation_rate=2, same) + BN + ReLU6 + Conv2D 1x1, 32x32x16, dynamic batch"),
    "k3_dilated_dw": ("Keras 3 model.export() SavedModel -> python -m tf2onnx.convert --saved-model, opset 13",
                      "the tflite_dilated_dw model, converted directly"),
    "k3_pad_dw_s2": ("Keras 3 model.export() SavedModel -> python -m tf2onnx.convert --saved-model, opset 13",
                     "2 x [ZeroPadding2D + DepthwiseConv2D(3, strides=2, valid) + BN + ReLU6 + Conv2D 1x1 + BN]"),
    "k2_pad_dw_s2": ("tf-keras (Keras 2) -> tf2onnx.convert.from_keras, opset 13",
                     "the k3_pad_dw_s2 architecture built with tf-keras"),
    "k3_groups_dw": ("Keras 3 model.export() SavedModel -> python -m tf2onnx.convert --saved-model, opset 13",
                     "Conv2D(16, 3, groups=16, same) + BN + ReLU + Conv2D 1x1, 32x32x16"),
    "k2_groups_dw": ("tf-keras (Keras 2) -> tf2onnx.convert.from_keras, opset 13",
                     "the k3_groups_dw architecture built with tf-keras"),
}
OPSETS = {"tflite_mobilenetv3small_op15": 15}  # every other model: OPSET
LEGACY = {"k2_mobilenetv3small", "k2_mobilenetv3small_kinit", "k2_pad_dw_s2", "k2_groups_dw"}


# --------------------------------------------------------------------------- child side
def _keras():
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        import tf_keras as keras
    else:
        import keras
    return keras


def _randomise(model, seed: int = SEED) -> None:
    """Seeded random BN statistics and conv biases, so BN folding is not a no-op."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        cls = layer.__class__.__name__
        if cls == "BatchNormalization":
            ws = layer.get_weights()  # gamma, beta, moving_mean, moving_variance
            c = ws[0].shape
            layer.set_weights([
                rng.uniform(0.5, 1.5, c).astype("float32"), rng.normal(0, 0.1, c).astype("float32"),
                rng.normal(0, 0.1, c).astype("float32"), rng.uniform(0.5, 1.5, c).astype("float32"),
            ])
        elif cls in ("Conv2D", "DepthwiseConv2D") and getattr(layer, "use_bias", False):
            ws = layer.get_weights()
            ws[1] = rng.normal(0, 0.1, ws[1].shape).astype("float32")
            layer.set_weights(ws)


def _mnv3s(keras):
    return keras.applications.MobileNetV3Small(
        input_shape=(96, 96, 3), alpha=0.25, minimalistic=False, include_top=False,
        weights=None, include_preprocessing=False)


def _mnv2(keras):
    m = keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False, weights=None)
    return keras.Model(m.input, m.get_layer("block_13_project_BN").output, name="mobilenetv2_035_cut")


def _efficientnet(keras):
    from keras.src.applications import efficientnet  # EfficientNet(width, depth, size) is not public API

    return efficientnet.EfficientNet(0.25, 0.25, 96, include_top=False, weights=None,
                                     input_shape=(96, 96, 3), name="efficientnet_w025_d025")


def _dilated(keras):
    L = keras.layers
    x0 = keras.Input((32, 32, 16), name="input")
    x = L.DepthwiseConv2D(3, dilation_rate=2, padding="same", use_bias=False, name="dw")(x0)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu6")(x)
    x = L.Conv2D(32, 1, name="pw")(x)
    return keras.Model(x0, x, name="dilated_dw")


def _pad_dw_s2(keras):
    L = keras.layers
    x0 = keras.Input((32, 32, 16), name="input")
    x = x0
    for i, (pad, cout) in enumerate(((((1, 1), (1, 1)), 24), (((0, 1), (0, 1)), 32))):
        x = L.ZeroPadding2D(pad, name=f"b{i}_pad")(x)
        x = L.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False, name=f"b{i}_dw")(x)
        x = L.BatchNormalization(name=f"b{i}_dw_bn")(x)
        x = L.ReLU(6.0, name=f"b{i}_dw_relu6")(x)
        x = L.Conv2D(cout, 1, use_bias=False, name=f"b{i}_pw")(x)
        x = L.BatchNormalization(name=f"b{i}_pw_bn")(x)
    return keras.Model(x0, x, name="pad_dw_s2")


def _groups_dw(keras):
    L = keras.layers
    x0 = keras.Input((32, 32, 16), name="input")
    x = L.Conv2D(16, 3, padding="same", groups=16, use_bias=False, name="gconv_dw")(x0)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(name="dw_relu")(x)
    x = L.Conv2D(32, 1, name="pw")(x)
    return keras.Model(x0, x, name="groups_dw")


BUILDERS = {
    "k2_mobilenetv3small": _mnv3s, "k3_mobilenetv3small": _mnv3s,
    "k2_mobilenetv3small_kinit": _mnv3s, "tflite_mobilenetv3small": _mnv3s,
    "tflite_mobilenetv3small_op15": _mnv3s,
    "k3_mobilenetv2": _mnv2, "k3_efficientnet": _efficientnet,
    "tflite_dilated_dw": _dilated, "k3_dilated_dw": _dilated,
    "k3_pad_dw_s2": _pad_dw_s2, "k2_pad_dw_s2": _pad_dw_s2,
    "k3_groups_dw": _groups_dw, "k2_groups_dw": _groups_dw,
}


def _tf2onnx_cli(opset: int, *args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "tf2onnx.convert", *args, "--opset", str(opset)],
                       capture_output=True, text=True)
    sys.stderr.write(r.stdout + r.stderr)
    if r.returncode:
        raise SystemExit(f"tf2onnx.convert failed ({r.returncode})")


def build_one(name: str, out: Path, work: Path) -> None:
    import numpy as np
    import tensorflow as tf

    keras = _keras()
    keras.utils.set_random_seed(SEED)
    tf.random.set_seed(SEED)
    np.random.seed(SEED)
    model = BUILDERS[name](keras)
    if not name.endswith("_kinit"):
        _randomise(model)
    target = out / f"{name}.onnx"
    opset = OPSETS.get(name, OPSET)
    if name in LEGACY:
        import logging

        import tf2onnx

        # the CLI configures logging itself; in-process, give tf2onnx's warnings the CLI's format
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s - %(levelname)s - %(message)s",
                            force=True)

        shape = (None,) + tuple(model.input_shape[1:])
        spec = (tf.TensorSpec(shape, tf.float32, name="input"),)
        tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset, output_path=str(target))
        return
    saved = work / f"{name}_savedmodel"
    model.export(str(saved), verbose=False)
    if name.startswith("tflite_"):
        conv = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        flat = work / f"{name}.tflite"
        flat.write_bytes(conv.convert())
        _tf2onnx_cli(opset, "--tflite", str(flat), "--output", str(target))
    else:
        _tf2onnx_cli(opset, "--saved-model", str(saved), "--output", str(target))


# --------------------------------------------------------------------------- parent side
def _versions() -> dict:
    code = ("import json, importlib.metadata as md; print(json.dumps({p: md.version(p) for p in "
            "['tensorflow-cpu', 'keras', 'tf-keras', 'tf2onnx', 'onnx', 'onnxruntime', 'numpy', 'protobuf']}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    v = json.loads(r.stdout)
    v["python"] = platform.python_version()
    return v


def _warnings(log: str) -> list[str]:
    """tf2onnx's WARNING/ERROR lines (deduplicated, trimmed), and its optimizer failures."""
    seen: dict[str, int] = {}
    for line in log.splitlines():
        m = re.search(r" - (WARNING|ERROR) - (.*)", line)
        if m:
            text = re.sub(r"\[[^\]]*: (\w+)\]", r"[<node>: \1]", m.group(2))  # one line per op type
            msg = f"{m.group(1)}: {text[:200]}"
            seen[msg] = seen.get(msg, 0) + 1
    return [f"{msg} (x{n})" if n > 1 else msg for msg, n in seen.items()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests/data/real/tf"))
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("names", nargs="*")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.one:
        build_one(a.one, out, Path(a.work))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    names = a.names or list(MODELS)
    man_path = out / "MANIFEST.json"
    manifest = json.loads(man_path.read_text()) if man_path.exists() else {"files": {}}
    manifest["tools"] = _versions()
    manifest["generator"] = "scripts/real_models/make_tf.py"
    manifest["seed"] = SEED
    for name in names:
        work = Path(tempfile.mkdtemp(prefix=f"mk_{name}_"))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        if name in LEGACY:
            env["TF_USE_LEGACY_KERAS"] = "1"
        else:
            env.pop("TF_USE_LEGACY_KERAS", None)
        r = subprocess.run([sys.executable, __file__, "--out", str(out), "--one", name, "--work", str(work)],
                           env=env, capture_output=True, text=True)
        (work / "log.txt").write_text(r.stdout + r.stderr)
        target = out / f"{name}.onnx"
        if r.returncode or not target.exists():
            print(f"{name}: FAILED (rc {r.returncode}), log in {work / 'log.txt'}")
            print("\n".join((r.stdout + r.stderr).splitlines()[-15:]))
            continue
        data = target.read_bytes()
        how, what = MODELS[name]
        manifest["files"][target.name] = {
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
            "how": how, "model": what, "opset_requested": OPSETS.get(name, OPSET),
            "tf2onnx_messages": _warnings(r.stdout + r.stderr),
        }
        print(f"{name}: {len(data)} bytes, {len(manifest['files'][target.name]['tf2onnx_messages'])} tf2onnx messages")
        shutil.rmtree(work, ignore_errors=True)
    manifest["files"] = dict(sorted(manifest["files"].items()))
    man_path.write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.glob("*.onnx"))
    print(f"total {total} bytes in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
