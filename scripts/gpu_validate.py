"""`sepfix validate` on a GPU: clean, SEP001-mangled and repaired MobileNetV2 exports.

    python scripts/gpu_validate.py --out DIR [--provider cuda] [--bench 50] [--size 224] [--batch 1]

Exports MobileNetV2-like (built in scripts/bench_repair.py) and, when torchvision imports,
torchvision's mobilenet_v2 (random weights) with torch.onnx (legacy exporter, opset 13), mangles
each with SEP001 (dense block-diagonal depthwise convs), repairs it with `sepfix repair`, then
runs `sepfix validate --provider P --bench N --format json`:
  clean      against its own CPU run
  mangled    against the clean model  (same function, C times the depthwise FLOPs)
  repaired   against the mangled model
and `--provider tensorrt` on the repaired model, to record what the provider list claimed and
what actually ran. Every JSON report, the versions and a summary table go to --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_repair import MobileNetV2Like, export  # noqa: E402

from tests.rules.test_sep001_dense_depthwise import dense_depthwise  # noqa: E402


def sepfix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sepfix", *args], capture_output=True, text=True)


def networks():
    yield "mobilenetv2_like", MobileNetV2Like()
    try:
        import torchvision

        yield "torchvision_mobilenet_v2", torchvision.models.mobilenet_v2(weights=None)
    except Exception as error:  # noqa: BLE001 - torchvision is optional; say why it was skipped
        print(f"torchvision skipped: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--provider", default="cuda")
    parser.add_argument("--bench", type=int, default=50)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = []
    for name, module in networks():
        folder = args.out / name
        folder.mkdir(exist_ok=True)
        clean = export(module, args.size, batch=args.batch)
        paths = {"clean": folder / "clean.onnx", "mangled": folder / "sep001.onnx", "repaired": folder / "repaired.onnx"}
        onnx.save(clean, paths["clean"])
        onnx.save(dense_depthwise(clean), paths["mangled"])
        repaired = sepfix("repair", str(paths["mangled"]), "-o", str(paths["repaired"]), "--force", "--format", "json")
        (folder / "repair.json").write_text(repaired.stdout)
        if repaired.returncode != 0:
            print(repaired.stdout, repaired.stderr, file=sys.stderr)
            return 1
        runs = {
            "clean": ["validate", str(paths["clean"])],
            "mangled": ["validate", str(paths["mangled"]), "--reference", str(paths["clean"])],
            "repaired": ["validate", str(paths["repaired"]), "--reference", str(paths["mangled"])],
        }
        runs["repaired-tensorrt"] = ["validate", str(paths["repaired"])]
        for label, command in runs.items():
            provider = "tensorrt" if label.endswith("tensorrt") else args.provider
            done = sepfix(*command, "--provider", provider, "--bench", str(args.bench), "--format", "json")
            (folder / f"validate_{label}.json").write_text(done.stdout)
            (folder / f"validate_{label}.stderr.txt").write_text(done.stderr)
            try:
                report = json.loads(done.stdout)
            except json.JSONDecodeError:
                report = {"verdict": f"no JSON (exit {done.returncode}): stdout {done.stdout[:300]!r} "
                                     f"stderr {done.stderr.strip()[-300:]!r}"}
            summary.append(_row(name, label, provider, done.returncode, report))
    versions = _versions()
    (args.out / "versions.json").write_text(json.dumps(versions, indent=2))
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(versions))
    for row in summary:
        print(json.dumps(row))
    return 0


def _row(network: str, label: str, requested: str, code: int, report: dict) -> dict:
    provider = report.get("provider") or {}
    numeric = report.get("numeric") or {}
    latency = report.get("latency") or {}
    return {
        "network": network, "model": label, "requested": requested, "exit_code": code,
        "verdict": report.get("verdict"), "active": provider.get("active"), "fell_back": provider.get("fell_back"),
        "reason": provider.get("reason"), "numeric_passed": numeric.get("passed"),
        "max_abs": max((o.get("max_abs") or 0 for o in numeric.get("outputs", [])), default=None),
        "latency": latency,
    }


def _versions() -> dict:
    import onnxruntime
    import torch

    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip() if _has("nvidia-smi") else "none"
    return {"python": platform.python_version(), "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxruntime_providers": onnxruntime.get_available_providers(), "torch": torch.__version__, "gpu": gpu}


def _has(command: str) -> bool:
    import shutil

    return shutil.which(command) is not None


if __name__ == "__main__":
    raise SystemExit(main())
