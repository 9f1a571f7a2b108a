"""Round trip of a model over 2 GB (external data) through `sepfix check` and `sepfix repair -o`.

    python scripts/big_model_roundtrip.py [--dir DIR] [--keep]

Builds a MobileNet-like stack whose weights (about 2.3 GB) live in an external data file:
two depthwise 3x3 convs of 1024 channels exported dense (SEP001, block-diagonal (1024, 1024, 3, 3)
weights) around eight 8192 -> 8192 pointwise convs. It then runs both commands under
`/usr/bin/time -f "%e %M"`, checks that the repaired model's data file was written fresh beside
OUT (a new file holding its tensors and their alignment gaps only; the input's untouched), runs
the original and the repaired model on onnxruntime with one input and compares the outputs, and
prints the time and peak memory (max RSS) of each command. Exit 0 when all of it holds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
C_DW, C_WIDE, WIDE_LAYERS, C_OUT, SPATIAL = 1024, 8192, 8, 256, 4


class _Writer:
    """Appends weights to one data file and makes the TensorProtos that point into it."""

    def __init__(self, path: Path, seed: int = 0):
        self.path, self.handle, self.rng = path, open(path, "wb"), np.random.default_rng(seed)
        self.initializers: list[TensorProto] = []

    def external(self, name: str, array: np.ndarray) -> str:
        offset = self.handle.tell()
        self.handle.write(np.ascontiguousarray(array, dtype="<f4").tobytes())
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=array.shape,
                             data_location=TensorProto.EXTERNAL)
        for key, value in (("location", self.path.name), ("offset", str(offset)), ("length", str(array.nbytes))):
            tensor.external_data.add(key=key, value=value)
        self.initializers.append(tensor)
        return name

    def inline(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(array.astype(np.float32), name))
        return name

    def pointwise(self, c_out: int, c_in: int) -> np.ndarray:
        return (self.rng.standard_normal((c_out, c_in, 1, 1), dtype=np.float32) * np.sqrt(2.0 / c_in)).astype(
            np.float32)

    def dense_depthwise(self, channels: int) -> np.ndarray:
        """A depthwise 3x3 kernel exported dense: zero everywhere but the block diagonal."""
        dense = np.zeros((channels, channels, 3, 3), dtype=np.float32)
        diagonal = self.rng.standard_normal((channels, 3, 3), dtype=np.float32) * np.float32(np.sqrt(2.0 / 9))
        dense[np.arange(channels), np.arange(channels)] = diagonal
        return dense

    def close(self) -> None:
        self.handle.close()


def build(folder: Path, wide_channels: int = C_WIDE, wide_layers: int = WIDE_LAYERS) -> Path:
    """Write model.onnx and model.onnx.data into `folder`; return the model's path. The weights
    grow with `wide_layers` pointwise convs of `wide_channels` (4 * wide_channels**2 bytes each)."""
    writer = _Writer(folder / "model.onnx.data")
    nodes: list[onnx.NodeProto] = []
    x = "input"

    def conv(name: str, weight: str, bias: np.ndarray, kernel: int, relu: bool = True) -> None:
        nonlocal x
        pads = [kernel // 2] * 4
        nodes.append(helper.make_node("Conv", [x, weight, writer.inline(f"{name}_bias", bias)], [f"{name}_out"],
                                      name=name, kernel_shape=[kernel, kernel], pads=pads, group=1))
        x = f"{name}_out"
        if relu:
            nodes.append(helper.make_node("Relu", [x], [f"{name}_relu_out"], name=f"{name}_relu"))
            x = f"{name}_relu_out"

    zeros = lambda n: np.zeros(n, np.float32)  # noqa: E731
    conv("dw0", writer.external("dw0_weight", writer.dense_depthwise(C_DW)), zeros(C_DW), 3)
    conv("pw0", writer.external("pw0_weight", writer.pointwise(wide_channels, C_DW)), zeros(wide_channels), 1)
    for i in range(wide_layers):
        conv(f"wide{i}", writer.external(f"wide{i}_weight", writer.pointwise(wide_channels, wide_channels)),
             zeros(wide_channels), 1)
    conv("pw_down", writer.external("pw_down_weight", writer.pointwise(C_DW, wide_channels)), zeros(C_DW), 1)
    conv("dw1", writer.external("dw1_weight", writer.dense_depthwise(C_DW)), zeros(C_DW), 3)
    conv("pw_out", writer.external("pw_out_weight", writer.pointwise(C_OUT, C_DW)), zeros(C_OUT), 1, relu=False)
    nodes[-1].output[0] = "output"
    writer.close()
    graph = helper.make_graph(
        nodes, "big_mobilenet_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, C_DW, SPATIAL, SPATIAL])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, C_OUT, SPATIAL, SPATIAL])],
        writer.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def timed(*args: str, cwd: Path) -> tuple[int, float, int, str]:
    """(exit code, seconds, peak RSS in KiB, output) of `python -m sepfix ARGS` under /usr/bin/time."""
    marker = "sepfix-time:"
    proc = subprocess.run(["/usr/bin/time", "-f", f"{marker} %e %M", sys.executable, "-m", "sepfix", *args],
                          cwd=cwd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    found = re.search(rf"{marker} ([\d.]+) (\d+)", proc.stderr)
    assert found, proc.stderr
    return proc.returncode, float(found.group(1)), int(found.group(2)), proc.stdout + proc.stderr.replace(found.group(0), "")


def run(path: Path, feed: dict) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the models afterwards")
    args = parser.parse_args(argv)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="sepfix-big-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        model = build(folder)
        data = folder / "model.onnx.data"
        size = data.stat().st_size
        print(f"built {model} with {size / 2**30:.2f} GiB of external data in {time.perf_counter() - start:.1f} s")
        assert size > 2 * 10**9
        before = digest(data)

        code, seconds, rss, text = timed("check", model.name, cwd=folder)
        print(f"sepfix check: exit {code}, {seconds:.2f} s, peak RSS {rss / 2**20:.2f} GiB")
        assert code == 1 and text.count("SEP001") >= 2, text

        out = folder / "out"
        out.mkdir(exist_ok=True)
        written_after = time.time()
        code, seconds, rss, text = timed("repair", model.name, "-o", str(out / "repaired.onnx"), "--force", cwd=folder)
        print(f"sepfix repair -o: exit {code}, {seconds:.2f} s, peak RSS {rss / 2**20:.2f} GiB")
        assert code == 0, text
        print("  " + text.strip().replace("\n", "\n  "))

        repaired = onnx.load(str(out / "repaired.onnx"), load_external_data=False)
        locations = {e.value for t in repaired.graph.initializer for e in t.external_data if e.key == "location"}
        assert len(locations) == 1, locations
        new_data = out / locations.pop()
        spans = sorted((int(info["offset"]), int(info["length"])) for info in (
            {e.key: e.value for e in t.external_data} for t in repaired.graph.initializer if t.external_data))
        lengths = sum(length for _, length in spans)
        assert all(a + n <= b for (a, n), (b, _) in zip(spans, spans[1:])), "tensors overlap in the data file"
        assert new_data.stat().st_mtime >= written_after - 1, "the data file is older than the repair"
        assert not new_data.samefile(data)
        # Exactly its tensors, each large one on a 64 KiB boundary (ONNX's external-data alignment).
        assert new_data.stat().st_size == spans[-1][0] + spans[-1][1] < lengths + 65536 * len(spans)
        assert digest(data) == before, "the input's data file changed"
        print(f"  repaired data file {new_data.name}: fresh, {lengths / 2**30:.2f} GiB of tensors in "
              f"{new_data.stat().st_size / 2**30:.2f} GiB; input data untouched")

        feed = {"input": np.random.default_rng(0).standard_normal((1, C_DW, SPATIAL, SPATIAL), dtype=np.float32)}
        expected = run(model, feed)
        got = run(out / "repaired.onnx", feed)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        print(f"  onnxruntime: outputs equal (max abs difference {np.max(np.abs(got - expected)):.3g}, "
              f"output scale {np.max(np.abs(expected)):.3g})")
        print("OK")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
