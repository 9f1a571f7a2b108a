"""What SEP011 (zero-pad) and SEP012 (space-to-batch-dilation) cost: mangled vs repaired latency.

    python scripts/bench_pad_dilation.py [--runs 100] [--only TEXT] [--markdown FILE]

For each case: the model as the exporter wrote it (or as the rule's mangler writes it) and the
model `sepfix repair --select <rule>` makes of it (proven equal by the validator), timed on
onnxruntime's CPU provider with one intra-op and one inter-op thread, with onnxruntime's default
graph optimizations (ORT_ENABLE_ALL) and with none (ORT_DISABLE_ALL, closer to a runtime that
runs the graph as written). Median of 2 x --runs runs after 10 warm-up runs, interleaved and
timed as the calling thread's CPU time so that the load of a shared machine hits both models
alike (see `timed`). Batch 1 (dynamic batches get 1).

Cases: the real tf2onnx outputs of tests/data/real/tf/ and tests/data/real/tf-dilation/, and a
64-channel 56x56 block (depthwise 3x3 -> Relu -> pointwise 1x1 64->64) with the pad or the
space-to-batch chain the rule finds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sepfix  # noqa: E402
from tests.rules.test_sep011_zero_pad import explicit_pad  # noqa: E402
from tests.rules.test_sep012_space_to_batch import space_to_batch  # noqa: E402

REAL = ROOT / "tests" / "data" / "real"
LEVELS = {"default": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}


def block(channels: int = 64, size: int = 56, stride: int = 1, dilation: int = 1, nhwc: bool = False,
          seed: int = 0) -> onnx.ModelProto:
    """(Transpose NHWC->NCHW ->) depthwise 3x3 (stride, dilation, same pads) -> Relu -> 1x1 conv."""
    rng = np.random.default_rng(seed)
    dw = (rng.standard_normal((channels, 1, 3, 3)) / 3).astype(np.float32)
    pw = (rng.standard_normal((channels, channels, 1, 1)) / np.sqrt(channels)).astype(np.float32)
    nodes, x = [], "input"
    if nhwc:
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], name="to_nchw", perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [
        helper.make_node("Conv", [x, "dw_w"], ["dw"], name="dw_conv", group=channels, kernel_shape=[3, 3],
                         strides=[stride] * 2, dilations=[dilation] * 2, pads=[dilation] * 4),
        helper.make_node("Relu", ["dw"], ["act"], name="dw_relu"),
        helper.make_node("Conv", ["act", "pw_w"], ["output"], name="pw_conv", kernel_shape=[1, 1]),
    ]
    shape = [1, size, size, channels] if nhwc else [1, channels, size, size]
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(dw, "dw_w"), numpy_helper.from_array(pw, "pw_w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def nhwc_pad_block() -> onnx.ModelProto:
    """NHWC input -> Pad(NHWC) -> Transpose -> stride-2 depthwise conv: what tf2onnx writes for
    ZeroPadding2D at a network's NHWC input (k2_pad_dw_s2's b0), at 56x56x64."""
    model = block(stride=2, nhwc=True)
    graph = model.graph
    dw = next(n for n in graph.node if n.name == "dw_conv")
    del dw.attribute[:]
    dw.attribute.extend([helper.make_attribute("group", 64), helper.make_attribute("kernel_shape", [3, 3]),
                         helper.make_attribute("strides", [2, 2])])
    graph.initializer.append(numpy_helper.from_array(np.array([0, 1, 1, 0, 0, 1, 1, 0], dtype=np.int64), "pads"))
    graph.node.insert(0, helper.make_node("Pad", ["input", "pads"], ["padded"], name="pad", mode="constant"))
    transpose = next(n for n in graph.node if n.name == "to_nchw")
    transpose.input[0] = "padded"
    return model


def cases():
    """(label, rule code, mangled model)."""
    yield "k2_pad_dw_s2 (NHWC pad + NCHW pad)", "SEP011", onnx.load(REAL / "tf" / "k2_pad_dw_s2.onnx")
    yield "k3_pad_dw_s2 (NHWC pad + NCHW pad)", "SEP011", onnx.load(REAL / "tf" / "k3_pad_dw_s2.onnx")
    yield "k2_mobilenetv3small (4 NCHW pads)", "SEP011", onnx.load(REAL / "tf" / "k2_mobilenetv3small.onnx")
    yield "k2_mobilenetv3small_kinit (4 NHWC pads)", "SEP011", onnx.load(REAL / "tf" / "k2_mobilenetv3small_kinit.onnx")
    yield "block 64x56x56 s2, Pad -> Conv", "SEP011", explicit_pad(block(stride=2))
    yield "block 64x56x56 s2, NHWC Pad -> Transpose -> Conv", "SEP011", nhwc_pad_block()
    yield "tflite_dilated_dw (d2, 32x32x16)", "SEP012", onnx.load(REAL / "tf" / "tflite_dilated_dw.onnx")
    yield "tflite_atrous_dense (d2, 32x32x16)", "SEP012", onnx.load(REAL / "tf-dilation" / "tflite_atrous_dense.onnx")
    yield "tflite_dw4_crop (d4, 30x30x16)", "SEP012", onnx.load(REAL / "tf-dilation" / "tflite_dw4_crop.onnx")
    yield "block 64x56x56 d2, NHWC space-to-batch", "SEP012", space_to_batch(block(dilation=2))


def session(model: onnx.ModelProto, level) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.log_severity_level = 4
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def optimized_ops(model: onnx.ModelProto, level) -> Counter:
    """The op counts of the graph onnxruntime runs after its optimizations at `level`."""
    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 4
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def feed_for(model: onnx.ModelProto) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.input:
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(dims).astype(np.float32)
    return feeds


def timed(model_a: onnx.ModelProto, model_b: onnx.ModelProto, level, feed: dict, runs: int) -> tuple[float, float]:
    """Median ms of each model over 2 x `runs` interleaved runs.

    Times are the calling thread's CPU time (`time.thread_time`): with one intra-op thread
    onnxruntime computes on the calling thread, and CPU time leaves out the waits for a core
    that other processes on a shared, loaded machine cause. Each round runs both models, in
    alternating order; the runs are done twice, once with the sessions created a-then-b and once
    b-then-a, and pooled, so neither model always goes first."""
    times: list[list[float]] = [[], []]
    for created in ((0, 1), (1, 0)):
        sessions = {}
        for i in created:
            sessions[i] = session((model_a, model_b)[i], level)
        for s in sessions.values():
            for _ in range(10):
                s.run(None, feed)
        for r in range(runs):
            for i in ((0, 1) if r % 2 == 0 else (1, 0)):
                start = time.thread_time()
                sessions[i].run(None, feed)
                times[i].append((time.thread_time() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--only", default="", help="Only cases whose label or rule contains this text.")
    parser.add_argument("--markdown", type=Path, default=None, help="Also write the table here (Markdown).")
    args = parser.parse_args(argv)
    header = ("case", "rule", "nodes", "ORT opt", "ORT runs the same ops", "mangled ms", "repaired ms",
              "mangled/repaired")
    rows = []
    print(f"onnxruntime {ort.__version__} CPU, 1 thread, median of 2 x {args.runs} interleaved runs "
          "(thread CPU time), batch 1")
    for label, code, mangled in cases():
        if args.only and args.only not in f"{label} {code}":
            continue
        repaired, report = sepfix.repair(mangled, select=[code])
        if not report.fixes or report.validation is None or not report.validation.passed:
            raise SystemExit(f"{label}: the repair did not pass: {report.to_text()}")
        feed = feed_for(mangled)
        nodes = f"{len(mangled.graph.node)}->{len(repaired.graph.node)}"
        for name, level in LEVELS.items():
            slow, fast = timed(mangled, repaired, level, feed, args.runs)
            same = "yes" if optimized_ops(mangled, level) == optimized_ops(repaired, level) else "no"
            rows.append((label, code, nodes, name, same, f"{slow:.3f}", f"{fast:.3f}", f"{slow / fast:.2f}x"))
            print("  ".join(rows[-1]), flush=True)
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths)),
             " | ".join("-" * w for w in widths)]
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    print("\n" + "\n".join(lines))
    if args.markdown:
        args.markdown.write_text("\n".join("| " + line + " |" for line in lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
