"""Regenerate tests/data/real/yolo/: real ultralytics ONNX exports with random weights.

Run with the ultralytics venv (not sepfix's), from the repository root:

    python3 -m venv /work/venvs/yolo
    /work/venvs/yolo/bin/pip install ultralytics onnx onnxruntime onnxslim
    YOLO_OFFLINE=1 /work/venvs/yolo/bin/python scripts/real_models/make_yolo.py

Every model is built from ultralytics' own YAML (never from a pretrained checkpoint: nothing
is downloaded) with a narrower width scale and one class, so each file stays under ~1 MB, then
exported by `YOLO.export(format="onnx")` with ultralytics' defaults (onnxslim on, its default
opset) at a small image size. The graph is kept exactly as ultralytics wrote it. Weights are
torch's random init under a fixed seed; the exporter fuses BatchNorm into the conv first
(`model.fuse()`), as it does for every export.

Writes the .onnx files and MANIFEST.json (tool versions, export arguments, sha256 per file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "real" / "yolo"

# depth, width, max_channels. Stock 'n' is [0.50, 0.25, 1024] (2.6 M parameters, ~10 MB):
# width 0.0625 makes every channel count a multiple of 8 between 8 and 64.
TINY_SCALE = [0.50, 0.0625, 1024]
IMGSZ = 64

# (file stem, ultralytics yaml, export keyword arguments)
# YOLOv8 is left out: its DFL box head (reg_max=16, 64-channel 3x3 convs that no width scale
# shrinks) keeps it at 1.7 MB, and it has no depthwise conv at all. The dynamic-axes export
# writes ~0.5-0.7 MB of symbolic-shape value_info on top of the weights, so YOLO26 (reg_max=1,
# the smaller head) is kept in its dynamic form only; its static export (0.8 MB) is the same
# graph with fixed dims: pass --with-static to write it too.
MODELS = [
    ("yolo11_tiny_nc1_64", "11/yolo11.yaml", {}),
    ("yolo26_tiny_nc1_dynamic", "26/yolo26.yaml", {"dynamic": True}),
]
OPTIONAL = [("yolo26_tiny_nc1_64", "26/yolo26.yaml", {})]


def _torchvision_shim() -> None:
    """Let torchvision import where its C extension cannot load.

    On a machine with the CPU torch wheel and PyPI's CUDA torchvision wheel, torchvision's
    _C.so needs libtorch_cuda and fails to load; importing torchvision then dies registering
    fake kernels for torchvision::nms / qnms. Declaring those two schemas lets the import go
    on. ONNX export of a Detect model never calls them (NMS is not in the exported graph).
    """
    try:
        import torchvision  # noqa: F401

        return
    except RuntimeError:
        pass
    for mod in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[mod]
    lib = torch.library.Library("torchvision", "DEF")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_shim.lib = lib  # keep the library alive
    import torchvision  # noqa: F401


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_yaml(src: Path, dst: Path) -> None:
    import yaml

    cfg = yaml.safe_load(src.read_text())
    cfg["nc"] = 1
    cfg["scales"] = {"n": TINY_SCALE}  # the file name below ends in 'n' so ultralytics picks it
    dst.write_text(yaml.safe_dump(cfg, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--with-static", action="store_true",
                    help="also write the static YOLO26 export (not committed: size cap)")
    args = ap.parse_args(argv)
    models = MODELS + (OPTIONAL if args.with_static else [])
    os.environ.setdefault("YOLO_OFFLINE", "1")
    _torchvision_shim()
    import onnx
    import onnxruntime
    import ultralytics
    from ultralytics import YOLO

    cfg_dir = Path(ultralytics.__file__).parent / "cfg" / "models"
    args.out.mkdir(parents=True, exist_ok=True)
    entries = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for stem, rel, kwargs in models:
            torch.manual_seed(0)
            family = Path(rel).stem  # yolov8 / yolo11 / yolo26
            y = tmp / f"{family}n.yaml"
            tiny_yaml(cfg_dir / rel, y)
            model = YOLO(str(y))
            export_args = {"format": "onnx", "imgsz": IMGSZ, **kwargs}
            written = Path(model.export(**export_args))
            dst = args.out / f"{stem}.onnx"
            shutil.move(str(written), dst)
            m = onnx.load(str(dst))
            entries[dst.name] = {
                "sha256": sha256(dst),
                "bytes": dst.stat().st_size,
                "source_yaml": f"ultralytics/cfg/models/{rel}",
                "scale": {"depth": TINY_SCALE[0], "width": TINY_SCALE[1],
                          "max_channels": TINY_SCALE[2]},
                "nc": 1,
                "export_args": export_args,
                "ir_version": m.ir_version,
                "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
                "producer": f"{m.producer_name} {m.producer_version}".strip(),
            }
            print(f"{dst}: {dst.stat().st_size} bytes")

    try:
        import onnxslim

        slim = onnxslim.__version__
    except Exception:  # noqa: BLE001
        slim = None
    import torchvision

    manifest = {
        "generator": "scripts/real_models/make_yolo.py",
        "weights": "random (torch.manual_seed(0), built from YAML; nothing downloaded)",
        "python": platform.python_version(),
        "tools": {
            "ultralytics": ultralytics.__version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "onnx": onnx.__version__,
            "onnxslim": slim,
            "onnxruntime": onnxruntime.__version__,
        },
        "files": entries,
    }
    (args.out / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
