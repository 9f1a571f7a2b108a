"""What SEP007's layout Transposes cost: real tf2onnx MobileNetV3-Small exports as written vs
after `sepfix repair`, on ONNX Runtime's CPU provider.

    python scripts/bench_sep007.py [--runs 60] [--batch 1] [--markdown FILE] [MODEL ...]

Models default to the tf2onnx exports in tests/data/real/tf/ that carry the sandwiches
(Keras 2 with Keras's initial weights, where tf2onnx's transpose optimizer gives up, and the
TFLite export). Each model is repaired in memory with the proof (sepfix.repair); then the
mangled and the repaired model run with one intra-op thread, once with ONNX Runtime's default
graph optimizations (which cancel Transpose pairs themselves) and once with ORT_DISABLE_ALL
(the graph as written: closer to what a parser that does not rewrite sees). Runs of the two
models are interleaved (the machine is shared and loaded: drift hits both alike); the table
gives medians after 5 warm-up runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepfix.repairer import repair  # noqa: E402

DEFAULT_MODELS = ["tests/data/real/tf/k2_mobilenetv3small_kinit.onnx",
                  "tests/data/real/tf/tflite_mobilenetv3small_op15.onnx"]
LEVELS = {"default": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}


def session(model: onnx.ModelProto, level) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def feeds(model: onnx.ModelProto, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    result = {}
    for value in model.graph.input:
        dims = [d.dim_value if d.dim_value > 0 else batch for d in value.type.tensor_type.shape.dim]
        result[value.name] = rng.standard_normal(dims).astype(np.float32)
    return result


def interleaved(sessions: list[ort.InferenceSession], inputs: dict, runs: int, warmup: int = 5) -> list[float]:
    """Median milliseconds per session, the sessions run in turn."""
    times: list[list[float]] = [[] for _ in sessions]
    for i in range(warmup + runs):
        for k, s in enumerate(sessions):
            start = time.perf_counter()
            s.run(None, inputs)
            if i >= warmup:
                times[k].append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def transposes(model: onnx.ModelProto) -> int:
    return Counter(n.op_type for n in model.graph.node)["Transpose"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--markdown", help="also write the table to this file")
    args = parser.parse_args(argv)

    header = (f"onnxruntime {ort.__version__} CPUExecutionProvider, 1 thread, batch {args.batch}, "
              f"median of {args.runs} interleaved runs after 5 warm-up runs")
    rows = ["| model | Transposes (mangled -> repaired) | fixes | proof max abs | ORT opts | mangled (ms) | "
            "repaired (ms) | mangled / repaired |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for path in args.models:
        mangled = onnx.load(str(ROOT / path) if not Path(path).is_absolute() else path)
        repaired, report = repair(mangled)
        if not report.validation.passed:
            print(f"{path}: the proof failed; not timed", file=sys.stderr)
            return 1
        worst = max(o.max_abs for o in report.validation.outputs)
        inputs = feeds(mangled, args.batch)
        for name, level in LEVELS.items():
            slow, fast = interleaved([session(mangled, level), session(repaired, level)], inputs, args.runs)
            rows.append(f"| {Path(path).name} | {transposes(mangled)} -> {transposes(repaired)} | {len(report.fixes)} | "
                        f"{worst:.3g} | {name} | {slow:.3f} | {fast:.3f} | {slow / fast:.2f}x |")
            print(rows[-1], flush=True)
    table = "\n".join([header, "", *rows])
    print("\n" + table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
