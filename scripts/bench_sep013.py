"""SEP013 multi-branch-depthwise: latency of train-time exports as written vs repaired by sepfix
(and vs the framework's own re-parameterised export, where there is one).

    python scripts/bench_sep013.py [--runs 40] [--batch 1] [--markdown FILE] [--pair TRAIN.onnx REPARAM.onnx]...
    /work/venvs/torch/bin/python scripts/bench_sep013.py --export-full DIR   # needs torch + timm

Default models: the committed real exports (tests/data/real/torch/timm_{repvit,fastvit,
mobileone}_{train,reparam}.onnx: small timm configurations at 64x64; tests/data/real/paddle/
ppocrv4_det_trainform_p2o2.onnx at 1x3x320x320). `--export-full DIR` writes full-size timm
models instead (repvit_m0_9, fastvit_t8, mobileone_s0; random weights, 224x224, torch.onnx
legacy exporter, opset 17; train-time and `timm.utils.reparameterize_model` versions), which
`--pair` then times.

Each model is repaired with `sepfix.repair(select=["SEP013"])` (validated); then the models of a
row are timed with onnxruntime on CPU, one intra-op and one inter-op thread, sequential
execution, at ORT's default optimizations (ORT_ENABLE_ALL) and with ORT_DISABLE_ALL: after
warm-up, runs of the models are interleaved (A B C, B C A, ...) so that the load of this shared
machine hits every model alike; a run is as many back-to-back inferences as last 5 ms. Reported:
the median of each model's runs (ms per inference), mangled / repaired as the median of the
per-round ratios, and how many nodes ONNX Runtime runs after its ORT_ENABLE_EXTENDED graph
optimizations (deterministic evidence of what it folds, unlike timings on a loaded machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = ROOT / "tests" / "data" / "real"
DEFAULT_PAIRS = [
    ("timm RepViT (small)", REAL / "torch" / "timm_repvit_train.onnx", REAL / "torch" / "timm_repvit_reparam.onnx"),
    ("timm FastViT (small)", REAL / "torch" / "timm_fastvit_train.onnx", REAL / "torch" / "timm_fastvit_reparam.onnx"),
    ("timm MobileOne (small)", REAL / "torch" / "timm_mobileone_train.onnx", REAL / "torch" / "timm_mobileone_reparam.onnx"),
    ("PP-OCRv4 det train form", REAL / "paddle" / "ppocrv4_det_trainform_p2o2.onnx", None),
]
FULL = {"repvit_m0_9": "RepViT-M0.9", "fastvit_t8": "FastViT-T8", "mobileone_s0": "MobileOne-S0"}


def export_full(out: Path) -> None:
    """Full-size timm models, train-time and re-parameterised (random weights)."""
    import timm
    import torch
    from timm.utils import reparameterize_model

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for name in FULL:
        model = timm.create_model(name, pretrained=False, num_classes=1000).eval()
        with torch.no_grad():  # random BN statistics, so that folding them is never an identity;
            for module in model.modules():  # gammas below 1 keep a sum of 5 branches from growing
                if isinstance(module, torch.nn.BatchNorm2d):  # 1e13-large over 14 blocks (no proof at that size)
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 1.5)
                    module.weight.uniform_(0.3, 0.6)
        x = torch.randn(1, 3, 224, 224)
        for tag, net in (("train", model), ("reparam", reparameterize_model(model))):
            path = out / f"{name}_{tag}.onnx"
            torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], opset_version=17,
                              dynamic_axes={"x": {0: "n"}}, dynamo=False)
            print(f"wrote {path}")


def feeds_for(model, batch: int) -> dict:
    rng = np.random.default_rng(0)
    feeds = {}
    initializers = {t.name for t in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in value.type.tensor_type.shape.dim]
        shape = [batch if i == 0 else (d or 320) for i, d in enumerate(dims)]
        feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return feeds


def time_models(models: dict, feeds: dict, runs: int, level, sample_ms: float = 5.0) -> dict[str, float]:
    """Median ms per inference per model, and (key "ratio") the median over rounds of the first
    model's time over the second's. One round times every model once, in an order that rotates
    round by round; one timing is `repeat` back-to-back inferences, so that each lasts at least
    `sample_ms` (tiny models are otherwise all timer noise)."""
    import onnxruntime as ort

    sessions = {}
    for name, model in models.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = level
        options.log_severity_level = 3
        sessions[name] = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    slowest = 0.0
    for session in sessions.values():
        for _ in range(3):
            start = time.perf_counter()
            session.run(None, feeds)
            slowest = max(slowest, (time.perf_counter() - start) * 1000)
    repeat = max(1, int(sample_ms / max(slowest, 1e-3)))
    times: dict[str, list[float]] = {name: [] for name in sessions}
    names = list(sessions)
    for r in range(runs):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(repeat):
                sessions[name].run(None, feeds)
            times[name].append((time.perf_counter() - start) * 1000 / repeat)
    result = {name: statistics.median(values) for name, values in times.items()}
    first, second = names[:2]
    result["ratio"] = statistics.median(a / b for a, b in zip(times[first], times[second]))
    return result


def optimized_nodes(model, level) -> int:
    """How many nodes ONNX Runtime's CPU session runs after its graph optimizations at `level`
    (deterministic, unlike timings on a loaded machine)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        return len(onnx.load(options.optimized_model_filepath).graph.node)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--pair", nargs=2, action="append", metavar=("TRAIN", "REPARAM"),
                        help="a train-time export and its re-parameterised export (REPARAM may be '-')")
    parser.add_argument("--export-full", metavar="DIR", help="export full-size timm models (torch + timm needed) and stop")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    args = parser.parse_args(argv)
    if args.export_full:
        export_full(Path(args.export_full))
        return 0

    import onnx
    import onnxruntime as ort

    import sepfix

    pairs = [(Path(t).stem, Path(t), None if r == "-" else Path(r)) for t, r in args.pair] if args.pair else DEFAULT_PAIRS
    levels = {"default (ALL)": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "DISABLE_ALL": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    rows = []
    for label, train_path, reparam_path in pairs:
        train = onnx.load(str(train_path))
        feeds = feeds_for(train, args.batch)
        shapes = {k: list(v.shape) for k, v in feeds.items()}
        repaired, report = sepfix.repair(train, select=["SEP013"], input_shapes=shapes)
        if not report.validation or not report.validation.passed:
            print(f"{label}: repair not proven: {report.message}", file=sys.stderr)
            return 1
        max_abs = max(o.max_abs for o in report.validation.outputs)
        models = {"mangled": train, "repaired": repaired}
        if reparam_path is not None:
            models["framework"] = onnx.load(str(reparam_path))
        nodes = {k: optimized_nodes(m, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED) for k, m in models.items()}
        print(f"{label:28s} ORT nodes after EXTENDED optimizations: " + ", ".join(f"{k} {v}" for k, v in nodes.items()))
        for level_name, level in levels.items():
            medians = time_models(models, feeds, args.runs, level)
            rows.append((label, level_name, len(report.fixes), max_abs, medians | {"nodes": nodes}))
            framework = f"{medians['framework']:.3f}" if "framework" in medians else "-"
            print(f"{label:28s} {level_name:14s} fixes={len(report.fixes):3d} max_abs={max_abs:.2e} "
                  f"mangled={medians['mangled']:.3f} ms repaired={medians['repaired']:.3f} ms framework={framework} ms "
                  f"mangled/repaired={medians['ratio']:.2f}x", flush=True)
    if args.markdown:
        lines = ["| model | ORT optimizations | SEP013 fixes | proof max abs | ORT nodes (mangled / repaired / framework) "
                 "| mangled ms | repaired ms | framework reparam ms | mangled / repaired |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for label, level_name, fixes, max_abs, medians in rows:
            framework = f"{medians['framework']:.3f}" if "framework" in medians else "-"
            nodes = " / ".join(str(v) for v in medians["nodes"].values())
            lines.append(f"| {label} | {level_name} | {fixes} | {max_abs:.1e} | {nodes} | {medians['mangled']:.3f} | "
                         f"{medians['repaired']:.3f} | {framework} | {medians['ratio']:.2f}x |")
        Path(args.markdown).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
