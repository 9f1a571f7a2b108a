"""SEP008 detached-bias (detached affine): latency of real exports as written vs with every
per-channel Mul/Add/Sub/Div after a conv folded into it by sepfix.

    python scripts/bench_sep008.py [--runs 40] [--markdown FILE] [--only TEXT]

Models: Keras 3 through tf2onnx (tests/data/real/tf/k3_*.onnx: BatchNormalization after depthwise
convs written as Mul + Add), paddle2onnx PaddleOCR (tests/data/real/paddle/: bias Adds, and the
learnable affine `scale * x + bias` with (1,) constants), timm FastViT's layer scale
(tests/data/real/torch/timm_fastvit_reparam.onnx), the detached-bias mangle of the sample model,
and one-conv graphs (64 channels, 56x56, 3x3) followed by one chain each, to tell which chains
ONNX Runtime folds itself.

Each model is repaired with `sepfix.repair(select=["SEP008"])` (validated); then the model as
written and the repaired one are timed with onnxruntime on CPU, one intra-op and one inter-op
thread, sequential execution, at the default optimizations (ORT_ENABLE_ALL) and with
ORT_DISABLE_ALL; runs alternate between the two models (the order flips every round) so that the
load of this shared machine hits both alike; a run is as many back-to-back inferences as last
5 ms; medians of --runs runs after warm-up (ms per inference), and the ratio as the median of
the per-round ratios; also the rule's findings by level, and how many nodes ONNX Runtime runs
after its ORT_ENABLE_EXTENDED graph optimizations, as written and repaired (equal counts: ORT
folds the chains itself; deterministic, unlike timings on a loaded machine).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_sep013 import optimized_nodes, time_models  # noqa: E402

REAL = ROOT / "tests" / "data" / "real"


def one_conv(chain: list[tuple[str, tuple, bool]], channels: int = 64, size: int = 56) -> onnx.ModelProto:
    """x -> Conv 3x3 (no bias) -> chain -> Relu; chain items (op, constant shape, constant first)."""
    rng = np.random.default_rng(0)
    initializers = [numpy_helper.from_array(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.05, "w")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["t0"], name="conv", pads=[1, 1, 1, 1])]
    for i, (op, shape, first) in enumerate(chain):
        constant = f"c{i}"
        initializers.append(numpy_helper.from_array((rng.random(shape) + 0.5).astype(np.float32), constant))
        inputs = [constant, f"t{i}"] if first else [f"t{i}", constant]
        nodes.append(helper.make_node(op, inputs, [f"t{i + 1}"], name=f"{op.lower()}{i}"))
    nodes.append(helper.make_node("Relu", [f"t{len(chain)}"], ["y"], name="relu"))
    graph = helper.make_graph(nodes, "one_conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, size, size])], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def detached_sample() -> onnx.ModelProto:
    from sepfix.testing import builders, mangle

    return mangle.detached_bias(builders.mobilenet_like(channels=(32, 64), spatial=56))


C = 64
MODELS = {
    "k3 MobileNetV2 (Mul+Add BN)": (lambda: onnx.load(REAL / "tf" / "k3_mobilenetv2.onnx"), None),
    "k3 EfficientNet (Mul+Add BN)": (lambda: onnx.load(REAL / "tf" / "k3_efficientnet.onnx"), None),
    "k3 MobileNetV3-Small (Mul+Add BN)": (lambda: onnx.load(REAL / "tf" / "k3_mobilenetv3small.onnx"), None),
    "PP-OCRv4 det rep p2o2": (lambda: onnx.load(REAL / "paddle" / "ppocrv4_det_p2o2.onnx"), [1, 3, 320, 320]),
    "PP-OCRv4 det rep p2o1": (lambda: onnx.load(REAL / "paddle" / "ppocrv4_det_p2o1.onnx"), [1, 3, 320, 320]),
    "PP-OCRv4 rec p2o2": (lambda: onnx.load(REAL / "paddle" / "ppocrv4_rec_p2o2.onnx"), [1, 3, 48, 320]),
    "PP-OCR cls p2o2 (bias Adds)": (lambda: onnx.load(REAL / "paddle" / "ppocr_cls_p2o2.onnx"), [1, 3, 48, 192]),
    "timm FastViT layer scale": (lambda: onnx.load(REAL / "torch" / "timm_fastvit_reparam.onnx"), None),
    "sample: detached-bias mangle": (detached_sample, None),
    "conv -> Add (1,C,1,1)": (lambda: one_conv([("Add", (1, C, 1, 1), False)]), None),
    "conv -> Mul -> Add (1,C,1,1)": (lambda: one_conv([("Mul", (1, C, 1, 1), False), ("Add", (1, C, 1, 1), False)]), None),
    "conv -> Mul(g,x) -> Add (1,)": (lambda: one_conv([("Mul", (1,), True), ("Add", (1,), False)]), None),
    "conv -> Sub (1,C,1,1)": (lambda: one_conv([("Sub", (1, C, 1, 1), False)]), None),
    "conv -> Div (1,C,1,1)": (lambda: one_conv([("Div", (1, C, 1, 1), False)]), None),
}


def feeds_for(model: onnx.ModelProto, shape: list[int] | None) -> dict:
    rng = np.random.default_rng(0)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim]
        feeds[value.name] = rng.standard_normal(shape or dims).astype(np.float32)
    return feeds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--only", help="only models whose label contains this text")
    parser.add_argument("--markdown", metavar="FILE")
    args = parser.parse_args(argv)

    import onnxruntime as ort

    import sepfix

    levels = {"default (ALL)": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "DISABLE_ALL": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    rows = []
    for label, (make, shape) in MODELS.items():
        if args.only and args.only not in label:
            continue
        model = make()
        feeds = feeds_for(model, shape)
        findings = sepfix.check(model, select=["SEP008"], advice=True)
        levels_found = Counter(f.severity for f in findings)
        repaired, report = sepfix.repair(model, select=["SEP008"], input_shapes={k: list(v.shape) for k, v in feeds.items()})
        if not report.validation or not report.validation.passed:
            print(f"{label}: repair not proven: {report.message}", file=sys.stderr)
            return 1
        max_abs = max(o.max_abs for o in report.validation.outputs)
        found = ", ".join(f"{n} {lv}" for lv, n in sorted(levels_found.items()))
        nodes = tuple(optimized_nodes(m, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED) for m in (model, repaired))
        print(f"{label:36s} ORT nodes after EXTENDED optimizations: as written {nodes[0]}, repaired {nodes[1]}")
        for level_name, level in levels.items():
            medians = time_models({"mangled": model, "repaired": repaired}, feeds, args.runs, level)
            ratio = medians["ratio"]
            rows.append((label, level_name, len(report.fixes), max_abs, medians, ratio, found, nodes))
            print(f"{label:36s} {level_name:14s} fixes={len(report.fixes):3d} max_abs={max_abs:.1e} "
                  f"mangled={medians['mangled']:.3f} ms repaired={medians['repaired']:.3f} ms ratio={ratio:.2f}x  [{found}]",
                  flush=True)
    if args.markdown:
        lines = ["| model | ORT optimizations | SEP008 fixes | findings | proof max abs | ORT nodes (as written / repaired) "
                 "| as written ms | repaired ms | as written / repaired |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for label, level_name, fixes, max_abs, medians, ratio, found, nodes in rows:
            lines.append(f"| {label} | {level_name} | {fixes} | {found} | {max_abs:.1e} | {nodes[0]} / {nodes[1]} | "
                         f"{medians['mangled']:.3f} | {medians['repaired']:.3f} | {ratio:.2f}x |")
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
