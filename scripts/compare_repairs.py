"""Repair every model under a folder with two checkouts of sepfix and compare what they wrote.

    python scripts/compare_repairs.py --old WORKTREE [--new .] [--models tests/data/real]

For a change to how repairs are written (issue 11 rewrote the whole write path): each model is
repaired with `python -m sepfix repair MODEL -o OUT` under each checkout (PYTHONPATH), and the two
results must exit alike and hold the same model as onnx.load reads it (weights inline, however
they were stored). Prints one line per difference and a summary; exit 1 when any differ.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sepfix import model_io  # noqa: E402


def content(path: Path) -> onnx.ModelProto:
    """The model with every weight inline; external-data loading marks tensors DEFAULT explicitly."""
    model = onnx.load(str(path))
    for tensor in model_io.all_tensors(model):
        if tensor.data_location == onnx.TensorProto.DEFAULT:
            tensor.ClearField("data_location")
    return model


def repaired(checkout: Path, model: Path, out: Path) -> tuple[int, Path | None]:
    done = subprocess.run([sys.executable, "-m", "sepfix", "repair", str(model), "-o", str(out), "-q"],
                          env={**os.environ, "PYTHONPATH": str(checkout)}, capture_output=True, check=False)
    return done.returncode, out if out.exists() else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--new", type=Path, default=ROOT)
    parser.add_argument("--models", type=Path, default=ROOT / "tests" / "data" / "real")
    args = parser.parse_args(argv)
    models = sorted(args.models.rglob("*.onnx"))
    same = unwritten = differ = 0
    with tempfile.TemporaryDirectory() as folder:
        for i, model in enumerate(models):
            (old_code, old), (new_code, new) = (repaired(checkout, model, Path(folder) / f"{i}-{label}.onnx")
                                                for label, checkout in (("old", args.old), ("new", args.new)))
            name = model.relative_to(args.models)
            if old_code != new_code or (old is None) != (new is None):
                print(f"{name}: exit {old_code} before, {new_code} now")
                differ += 1
            elif old is None:
                unwritten += 1
            elif content(old) == content(new):
                same += 1
            else:
                print(f"{name}: the repaired models differ")
                differ += 1
    print(f"{len(models)} models: {same} repaired alike, {unwritten} written by neither, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
