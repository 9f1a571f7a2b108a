"""Build the small TFLite -> tf2onnx models of tests/data/real/tf-dilation/ (SEP012's real cases).

    python scripts/real_models/make_tf_dilation.py [--out tests/data/real/tf-dilation]

Needs tensorflow(-cpu), keras 3 and tf2onnx (`pip install tensorflow-cpu tf2onnx onnx`); the
tests do not. Each model is a Keras 3 model with random weights (`keras.utils.set_random_seed(0)`,
nothing downloaded), exported as a SavedModel (`model.export`), converted by
`tf.lite.TFLiteConverter.from_saved_model` (float32) and then by
`python -m tf2onnx.convert --tflite ... --opset 13`. Tool versions and sha256 go to
MANIFEST.json beside the models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = {
    "tflite_atrous_dense": "tf.nn.atrous_conv2d(rate=2, SAME) with a dense 3x3x16x16 filter + Conv2D 1x1, "
                           "32x32x16, dynamic batch",
    "tflite_dw4_crop": "DepthwiseConv2D(3, dilation_rate=4, same) + Conv2D 1x1 on 30x30x16 (SpaceToBatchND pads "
                       "to 40: BatchToSpaceND crops 2), dynamic batch",
    "tflite_dw23_reshape": "DepthwiseConv2D(3, dilation_rate=(2, 3), same) + Conv2D 1x1, 32x32x16: a non-square "
                           "rate, which tf2onnx writes with Reshape/Transpose and run-time shapes",
}


def _build(name: str, saved: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    layers = keras.layers
    size = 30 if name == "tflite_dw4_crop" else 32
    x0 = keras.Input((size, size, 16), name="input")
    if name == "tflite_atrous_dense":
        kernel = tf.constant(np.random.default_rng(0).normal(0, 0.25, (3, 3, 16, 16)).astype("float32"))
        x = layers.Lambda(lambda t: tf.nn.atrous_conv2d(t, kernel, rate=2, padding="SAME"), name="atrous")(x0)
    elif name == "tflite_dw4_crop":
        x = layers.DepthwiseConv2D(3, dilation_rate=4, padding="same", use_bias=False, name="dw")(x0)
    else:
        x = layers.DepthwiseConv2D(3, dilation_rate=(2, 3), padding="same", use_bias=False, name="dw")(x0)
    x = layers.Conv2D(32, 1, name="pw")(x)
    keras.Model(x0, x, name=name).export(str(saved), verbose=False)


def _versions() -> dict:
    import keras
    import onnx
    import tensorflow as tf
    import tf2onnx

    return {"python": sys.version.split()[0], "tensorflow": tf.__version__, "keras": keras.__version__,
            "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("tests/data/real/tf-dilation"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = {"versions": _versions(), "models": {}}
    with tempfile.TemporaryDirectory() as work:
        for name, what in MODELS.items():
            saved = Path(work) / name
            _build(name, saved)
            import tensorflow as tf

            tflite = Path(work) / f"{name}.tflite"
            tflite.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
            target = args.out / f"{name}.onnx"
            subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite), "--output", str(target),
                            "--opset", "13"], check=True, capture_output=True)
            manifest["models"][name] = {
                "what": what,
                "path": "Keras 3 model.export() SavedModel -> TFLiteConverter (float32) -> "
                        "python -m tf2onnx.convert --tflite --opset 13",
                "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
                "bytes": target.stat().st_size,
            }
            print(f"wrote {target} ({target.stat().st_size} bytes)")
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
