"""Benchmark `sepfix check` against `onnx.load` on a generated ~500 MB model.

    python scripts/bench_check.py [--size-mb 500] [--repeat 3] [--workdir DIR]

Builds a MobileNet-like stack (depthwise 3x3 + pointwise 1x1 blocks, two of them mangled to
dense block-diagonal depthwise convs so the check must read some weights), saves it once with
inline weights and once with external data, then times, in fresh processes:
  - `sepfix check MODEL` (inline)         vs `python -c "import onnx; onnx.load(MODEL)"`
  - `sepfix check MODEL` (external data)  vs `onnx.load(MODEL, load_external_data=False)`, the
    structure alone (what a check needs; a full load would read weights no check reads)
and prints wall time (median of --repeat runs) and peak RSS (from GNU time) with the ratios.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def build_model(size_mb: int, channels: int = 1024, seed: int = 0) -> onnx.ModelProto:
    """Blocks of DW (C,1,3,3) + PW (C,C,1,1) until the weights reach `size_mb`."""
    rng = np.random.default_rng(seed)
    block_bytes = 4 * (channels * 9 + channels * channels + 2 * channels)
    blocks = max(2, size_mb * 1024 * 1024 // block_bytes)
    nodes, inits = [], []
    x = "input"
    for b in range(blocks):
        dense = b in (0, blocks // 2)  # mangled: depthwise stored dense and block-diagonal
        if dense:
            w = np.zeros((channels, channels, 3, 3), np.float32)
            idx = np.arange(channels)
            w[idx, idx] = rng.standard_normal((channels, 3, 3)).astype(np.float32)
            group = 1
        else:
            w = rng.standard_normal((channels, 1, 3, 3)).astype(np.float32)
            group = channels
        inits += [numpy_helper.from_array(w, f"dw{b}.w"),
                  numpy_helper.from_array(rng.standard_normal(channels).astype(np.float32), f"dw{b}.b")]
        nodes.append(helper.make_node("Conv", [x, f"dw{b}.w", f"dw{b}.b"], [f"dw{b}"], name=f"dw{b}",
                                      group=group, kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"dw{b}"], [f"act{b}"], name=f"act{b}"))
        pw = (rng.standard_normal((channels, channels, 1, 1)) / np.sqrt(channels)).astype(np.float32)
        inits += [numpy_helper.from_array(pw, f"pw{b}.w"),
                  numpy_helper.from_array(np.zeros(channels, np.float32), f"pw{b}.b")]
        nodes.append(helper.make_node("Conv", [f"act{b}", f"pw{b}.w", f"pw{b}.b"], [f"pw{b}"], name=f"pw{b}",
                                      kernel_shape=[1, 1]))
        x = f"pw{b}"
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, channels, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def measure(command: list[str], cwd: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one fresh process, as GNU time reports them.

    (wait4's ru_maxrss would also count the memory this script held when it forked.)
    """
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report.name, *command], cwd=cwd,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
        seconds = time.perf_counter() - start
        if done.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-400:]}")
        peak_kb = int(report.read().strip().splitlines()[-1])
    return seconds, peak_kb * 1024


def in_process(statement: str, path: Path, repeat: int) -> float:
    """Median seconds of `statement` alone in a fresh process, imports excluded."""
    code = ("import time, onnx, sepfix.checker, sepfix.rules\n"
            f"p = {str(path)!r}\n"
            "t = time.perf_counter()\n"
            f"{statement}\n"
            "print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
                  .stdout.strip().splitlines()[-1]) for _ in range(repeat)]
    return statistics.median(runs)


def median_of(command: list[str], repeat: int) -> tuple[float, int]:
    runs = [measure(command) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def drop_page_cache_hint(path: Path) -> None:
    """Read the files beside `path` once, so every command starts from a warm page cache (fair
    to both)."""
    for file in path.parent.iterdir():
        if not file.is_file():
            continue
        with open(file, "rb") as handle:
            while handle.read(64 * 1024 * 1024):
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sepfix-bench-"))
    inline_dir, external_dir = work / "inline", work / "external"
    inline_dir.mkdir(parents=True, exist_ok=True)
    external_dir.mkdir(parents=True, exist_ok=True)
    inline, external = inline_dir / "model.onnx", external_dir / "model.onnx"
    if args.generate_only:
        model = build_model(args.size_mb)
        onnx.save(model, inline)
        onnx.save(model, external, save_as_external_data=True, location="model.onnx.data", size_threshold=1024)
        return 0
    # Generated in a child process, so this one stays small while it measures.
    subprocess.run([sys.executable, __file__, "--generate-only", "--size-mb", str(args.size_mb),
                    "--workdir", str(work)], check=True)
    sepfix = [sys.executable, "-m", "sepfix", "check"]
    python = sys.executable
    rows = []
    # The floor for external data is the structure alone (onnx.load(..., load_external_data=False)):
    # all a check needs, and nearly free; a full load is no fair comparison there.
    for label, path, load_args in (("inline", inline, ""), ("external data", external, ", load_external_data=False")):
        drop_page_cache_hint(path)
        check = median_of(sepfix + [str(path)], args.repeat)
        load = median_of([python, "-c", f"import onnx; onnx.load({str(path)!r}{load_args})"], args.repeat)
        check_work = in_process("sepfix.checker.check_path(p, sepfix.rules.select_rules())", path, args.repeat)
        load_work = in_process(f"onnx.load(p{load_args})", path, args.repeat)
        rows.append((label, path, check, load, check_work, load_work))
    size = inline.stat().st_size / 2**20
    print(f"model: {size:.0f} MB of weights, {args.repeat} runs each (median time, peak RSS)")
    print(f"{'model':<14} {'sepfix check':>22} {'onnx.load':>22} {'time ratio':>11} {'memory ratio':>13}"
          "  (external data: onnx.load without it)")
    for label, _, (ct, cm), (lt, lm), _, _ in rows:
        print(f"{label:<14} {ct:>8.2f} s {cm / 2**20:>8.0f} MB {lt:>8.2f} s {lm / 2**20:>8.0f} MB "
              f"{ct / lt:>10.2f}x {cm / lm:>12.2f}x")
    print("in-process (interpreter start and imports excluded):")
    for label, _, _, _, cw, lw in rows:
        print(f"{label:<14} check {cw:.3f} s, onnx.load {lw:.3f} s, ratio {cw / lw:.2f}x")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
