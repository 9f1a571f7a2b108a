"""How `sepfix check` and `sepfix repair` scale with the weights and with the node count,
side by side with `onnx.load` and `onnx.load` + `onnx.save` in the same run.

    python scripts/bench_scale.py [--weights-mb 250,1000,2200] [--inline-mb 1000]
                                  [--nodes 200,1000,4000,8000] [--repeat 3] [--workdir DIR]
                                  [--markdown FILE]

Weight scaling: the model of `scripts/big_model_roundtrip.py` (two 1024-channel depthwise 3x3
convs stored dense, SEP001, around 4096-channel pointwise convs) with external data, as many
pointwise layers as reach each size, and the same inline (one protobuf) for --inline-mb. Node
scaling: inline models of small depthwise-separable blocks (16 channels; Conv, Relu, Conv,
Relu), every eighth depthwise conv stored dense.

Every command runs in a fresh process under GNU time (wall seconds, peak RSS), from a warm page
cache, median of --repeat runs (peak: the largest). The floors: for check, `onnx.load(M,
load_external_data=False)` (the structure only, which is what a check needs); for repair,
`onnx.load(M)` + `onnx.save` (external data again where the input had it). A repair writes a
new model (and data file) each run, proven by onnxruntime, as `sepfix repair M -o OUT` does.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import big_model_roundtrip
import numpy as np
import onnx
from bench_check import drop_page_cache_hint, measure
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
WIDE = 4096  # pointwise width of the weight-scaling models: 64 MiB per layer


def weight_model(folder: Path, megabytes: int) -> Path:
    base = 4 * (2 * 1024 * 1024 * 9 + 2 * 1024 * WIDE + 256 * 1024)  # the convs every size has
    layers = max(0, round((megabytes * 10**6 - base) / (4 * WIDE * WIDE)))
    folder.mkdir(parents=True, exist_ok=True)
    return big_model_roundtrip.build(folder, wide_channels=WIDE, wide_layers=layers)


def inline_weight_model(folder: Path, megabytes: int) -> Path:
    """The weight-scaling model of that size with its weights inline (one protobuf, < 2 GB)."""
    source = weight_model(folder / "external", megabytes)
    path = folder / "model.onnx"
    onnx.save(onnx.load(str(source)), str(path))
    shutil.rmtree(folder / "external")
    return path


def node_model(folder: Path, nodes: int, channels: int = 16) -> Path:
    """Depthwise-separable blocks of four nodes until `nodes`; every eighth depthwise dense."""
    rng = np.random.default_rng(0)
    graph_nodes, weights, x = [], [], "input"
    for b in range(max(1, nodes // 4)):
        if b % 8 == 0:
            dw = np.zeros((channels, channels, 3, 3), np.float32)
            dw[np.arange(channels), np.arange(channels)] = rng.standard_normal((channels, 3, 3))
            group = 1
        else:
            dw, group = rng.standard_normal((channels, 1, 3, 3)).astype(np.float32), channels
        pw = (rng.standard_normal((channels, channels, 1, 1)) / np.sqrt(channels)).astype(np.float32)
        weights += [numpy_helper.from_array(dw, f"dw{b}.w"), numpy_helper.from_array(pw, f"pw{b}.w")]
        graph_nodes += [
            helper.make_node("Conv", [x, f"dw{b}.w"], [f"dw{b}"], name=f"dw{b}", group=group,
                             kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"dw{b}"], [f"dw{b}.act"], name=f"dw{b}.act"),
            helper.make_node("Conv", [f"dw{b}.act", f"pw{b}.w"], [f"pw{b}"], name=f"pw{b}", kernel_shape=[1, 1]),
            helper.make_node("Relu", [f"pw{b}"], [f"pw{b}.act"], name=f"pw{b}.act"),
        ]
        x = f"pw{b}.act"
    graph = helper.make_graph(
        graph_nodes, "node_scaling", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, channels, 8, 8])], weights)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def weights_of(model: Path) -> int:
    return sum(f.stat().st_size for f in model.parent.iterdir() if f.is_file())


def bench(model: Path, repeat: int) -> dict:
    """The four commands on one model, each `repeat` times."""
    python = sys.executable
    external = (model.parent / "model.onnx.data").exists()
    out = model.parent / "out"
    save = (f"onnx.save(m, {str(out / 'saved.onnx')!r}, save_as_external_data=True, location='saved.onnx.data')"
            if external else f"onnx.save(m, {str(out / 'saved.onnx')!r})")
    commands = {
        "check": [python, "-m", "sepfix", "check", str(model)],
        "load": [python, "-c", f"import onnx; onnx.load({str(model)!r}, load_external_data=False)"],
        "repair": [python, "-m", "sepfix", "repair", str(model), "-o", str(out / "repaired.onnx")],
        "load+save": [python, "-c", f"import onnx; m = onnx.load({str(model)!r}); {save}"],
    }
    runs: dict[str, list] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, command in commands.items():  # interleaved, so drift hits all alike
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            drop_page_cache_hint(model)
            runs[name].append(measure(command, model.parent))
    shutil.rmtree(out, ignore_errors=True)
    return {name: (statistics.median(r[0] for r in got), max(r[1] for r in got)) for name, got in runs.items()}


def row(label: str, model: Path, result: dict) -> str:
    size = weights_of(model)
    nodes = len(onnx.load(str(model), load_external_data=False).graph.node)
    (ct, cm), (lt, lm), (rt, rm), (st, sm) = (result[k] for k in ("check", "load", "repair", "load+save"))
    gib = 2**30
    return (f"| {label} | {size / 1e6:,.0f} MB | {nodes:,} | {ct:.2f} s, {cm / gib:.2f} GiB | {lt:.2f} s, "
            f"{lm / gib:.2f} GiB | {ct / lt:.2f}x | {rt:.2f} s, {rm / gib:.2f} GiB | {st:.2f} s, {sm / gib:.2f} GiB | "
            f"{rt / st:.2f}x | {f'{rm / size:.2f}x' if size >= 64 * 2**20 else '-'} |")


def phases(model: Path) -> str:
    """Where one repair's time goes, in this process: a line per phase (seconds, calls)."""
    import functools

    from sepfix import model_io, repairer
    from sepfix.validate import numeric

    spent: dict[str, list] = {}

    def timed(owner, name: str, label: str) -> None:
        function = getattr(owner, name)

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                entry = spent.setdefault(label, [0.0, 0])
                entry[0] += time.perf_counter() - start
                entry[1] += 1

        setattr(owner, name, wrapper)

    for owner, name, label in [(model_io, "load_for_check", "read the structure (scan)"),
                               (repairer, "run_passes", "match and rewrite (all passes)"),
                               (repairer, "_save", "save (copy untouched weights, fsync data)"),
                               (numeric, "_open_session", "proof: open onnxruntime sessions"),
                               (numeric, "_run_session", "proof: run them")]:
        timed(owner, name, label)
    out = model.parent / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    start = time.perf_counter()
    report = repairer.repair_file(str(model), str(out / "repaired.onnx"))
    total = time.perf_counter() - start
    shutil.rmtree(out, ignore_errors=True)
    lines = [f"{model}: {report.verdict}, {total:.2f} s in all"]
    lines += [f"  {label}: {seconds:.2f} s ({calls} call{'s' if calls != 1 else ''})"
              for label, (seconds, calls) in spent.items()]
    return "\n".join(lines)


HEADER = ("| model | weights | nodes | sepfix check | onnx.load (structure) | check / load | sepfix repair -o "
          "| onnx.load + onnx.save | repair / load+save | repair peak / weights (from 64 MB) |\n"
          "|---|---:|---:|---|---|---:|---|---|---:|---:|")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-mb", default="250,1000,2200", help="comma-separated sizes ('' for none)")
    parser.add_argument("--inline-mb", default="1000", help="sizes of inline models, under 2000 ('' for none)")
    parser.add_argument("--nodes", default="200,1000,4000,8000", help="comma-separated node counts ('' for none)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None, help="where the models go (default: a temporary folder)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--phases", type=Path, default=None, metavar="MODEL",
                        help="instead: where one repair of MODEL spends its time, phase by phase")
    args = parser.parse_args(argv)
    if args.phases:
        print(phases(args.phases))
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sepfix-scale-"))
    lines = [HEADER]
    print(HEADER, flush=True)
    try:
        plans = [(f"external data, {mb} MB", work / f"weights-{mb}", lambda f, mb=int(mb): weight_model(f, mb))
                 for mb in filter(None, args.weights_mb.split(","))]
        plans += [(f"inline, {mb} MB", work / f"inline-{mb}", lambda f, mb=int(mb): inline_weight_model(f, mb))
                  for mb in filter(None, args.inline_mb.split(","))]
        plans += [(f"inline, {n} nodes", work / f"nodes-{n}", lambda f, n=int(n): node_model(f, n))
                  for n in filter(None, args.nodes.split(","))]
        for label, folder, make in plans:
            model = folder / "model.onnx" if (folder / "model.onnx").exists() else make(folder)
            lines.append(row(label, model, bench(model, args.repeat)))
            print(lines[-1], flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.markdown:
        args.markdown.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
