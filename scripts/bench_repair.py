"""Benchmark `sepfix repair` on torch exports of MobileNetV2-like and EfficientNet-like networks.

    python scripts/bench_repair.py [--runs 50] [--size 224] [--markdown FILE] [--only TEXT]

Each network is built here in torch (2.13.0 CPU), exported with torch.onnx (legacy exporter,
opset 13), mangled by every rule's manglers (every variant of `MANGLES` in
tests/rules/test_<code>_<name>.py), then repaired. For each mangle it prints the repair time
and the onnxruntime CPU latency (median of --runs runs, after warm-up, runs of the models
interleaved so drift hits all alike; one intra-op thread) of the clean, mangled and repaired
models. The target: repaired <= 1.02x clean for every rule. Invalid mangles (SEP002,
SEP003 wrong) cannot run on onnxruntime: their mangled latency is shown as "invalid".
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sepfix.repairer import repair  # noqa: E402
from sepfix.rules import find_rule  # noqa: E402
from tests.rules import rule_code, rule_test_modules  # noqa: E402


def manglers() -> dict:
    """Label -> mangler from every rule test module's MANGLES; labels read
    `SEP001 dense-depthwise (dense)`, the rule and the variant."""
    table = {}
    for module in rule_test_modules():
        rule = find_rule(rule_code(module))
        for variant, mangler in module.MANGLES.items():
            table[f"{rule.code} {rule.name} ({variant})"] = mangler
    return table


MANGLES = manglers()


def conv_bn_act(c_in, c_out, k=3, stride=1, groups=1, act=nn.ReLU6):
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), act())


class InvertedResidual(nn.Module):
    def __init__(self, c_in, c_out, stride, expand):
        super().__init__()
        hidden = c_in * expand
        layers = [conv_bn_act(c_in, hidden, 1)] if expand != 1 else []
        layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2Like(nn.Module):
    """torchvision's MobileNetV2 configuration (t, c, n, s), width 1.0."""

    CONFIG = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1)]

    def __init__(self):
        super().__init__()
        layers, c = [conv_bn_act(3, 32, 3, 2)], 32
        for t, out, n, s in self.CONFIG:
            for i in range(n):
                layers.append(InvertedResidual(c, out, s if i == 0 else 1, t))
                c = out
        layers += [conv_bn_act(c, 1280, 1)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))

    def forward(self, x):
        return self.head(self.features(x))


class SqueezeExcite(nn.Module):
    def __init__(self, c, reduced):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(c, reduced, 1)
        self.expand = nn.Conv2d(reduced, c, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.expand(torch.nn.functional.silu(self.reduce(self.pool(x)))))


class MBConv(nn.Module):
    def __init__(self, c_in, c_out, k, stride, expand):
        super().__init__()
        hidden = c_in * expand
        layers = [conv_bn_act(c_in, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [conv_bn_act(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcite(hidden, max(1, c_in // 4)),
                   nn.Conv2d(hidden, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class EfficientNetLike(nn.Module):
    """EfficientNet-B0's configuration (expand, kernel, stride, channels, repeats)."""

    CONFIG = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
              (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]

    def __init__(self):
        super().__init__()
        layers, c = [conv_bn_act(3, 32, 3, 2, act=nn.SiLU)], 32
        for e, k, s, out, n in self.CONFIG:
            for i in range(n):
                layers.append(MBConv(c, out, k, s if i == 0 else 1, e))
                c = out
        layers += [conv_bn_act(c, 1280, 1, act=nn.SiLU)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000))

    def forward(self, x):
        return self.head(self.features(x))


def export(module: nn.Module, size: int, batch: int = 1) -> onnx.ModelProto:
    torch.manual_seed(0)
    module = module.eval()
    with torch.no_grad():  # non-trivial BN statistics, as in a trained network
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(batch, 3, size, size),), buffer, dynamo=False, opset_version=13)
    return onnx.load_from_string(buffer.getvalue())


def session(model: onnx.ModelProto, feed: dict) -> ort.InferenceSession | None:
    """A CPU session that has run once, or None for a model onnxruntime refuses (invalid)."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1  # one thread: steadier on a small shared machine
    options.inter_op_num_threads = 1
    try:
        s = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        s.run(None, feed)
        return s
    except Exception:  # noqa: BLE001 - invalid mangles (SEP002/SEP003) are expected to be refused
        return None


def latencies(sessions: dict[str, ort.InferenceSession | None], feed: dict, runs: int) -> dict[str, float | None]:
    """Median ms per session, runs interleaved round-robin after a warm-up."""
    live = {k: s for k, s in sessions.items() if s is not None}
    for s in live.values():
        for _ in range(5):
            s.run(None, feed)
    times: dict[str, list[float]] = {k: [] for k in live}
    for _ in range(runs):
        for key, s in live.items():
            start = time.perf_counter()
            s.run(None, feed)
            times[key].append((time.perf_counter() - start) * 1000)
    return {k: (statistics.median(times[k]) if k in times else None) for k in sessions}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--markdown", type=Path, default=None, help="Also write the table here (Markdown).")
    parser.add_argument("--only", default="", help="Only mangles and networks whose label contains this text.")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    feed = {"input": rng.standard_normal((1, 3, args.size, args.size)).astype(np.float32)}
    rows = []
    for network in (MobileNetV2Like, EfficientNetLike):
        clean = export(network(), args.size)
        feed = {clean.graph.input[0].name: feed[next(iter(feed))]}
        for label, make in MANGLES.items():
            if args.only and args.only not in f"{network.__name__} {label}":
                continue
            mangled = make(clean)
            start = time.perf_counter()
            repaired, report = repair(mangled)
            seconds = time.perf_counter() - start
            assert report.validation is not None and report.validation.passed, (network.__name__, label)
            sessions = {"clean": session(clean, feed), "mangled": session(mangled, feed),
                        "repaired": session(repaired, feed)}
            times = latencies(sessions, feed, args.runs)
            rows.append((network.__name__, label, len(report.fixes), seconds, times))
            print(_row(rows[-1]), flush=True)
    table = _markdown(rows, args)
    if args.markdown:
        args.markdown.write_text(table)
    print(table)
    return 0


def _fmt(value: float | None) -> str:
    return "invalid" if value is None else f"{value:.2f}"


def _row(row) -> str:
    network, label, fixes, seconds, t = row
    ratio = t["repaired"] / t["clean"]
    return (f"{network:<17} {label:<44} fixes {fixes:>3}  repair {seconds:6.2f} s  clean {_fmt(t['clean'])} ms  "
            f"mangled {_fmt(t['mangled'])} ms  repaired {_fmt(t['repaired'])} ms  repaired/clean {ratio:.3f}")


def _markdown(rows, args) -> str:
    lines = [
        f"onnxruntime {ort.__version__} CPUExecutionProvider (1 thread), torch {torch.__version__} export "
        f"(opset 13), input 1x3x{args.size}x{args.size}, median of {args.runs} interleaved runs after 5 warm-up runs.",
        "",
        "| network | mangle | fixes | repair time (s) | clean (ms) | mangled (ms) | repaired (ms) | repaired / clean |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for network, label, fixes, seconds, t in rows:
        lines.append(f"| {network} | {label} | {fixes} | {seconds:.2f} | {_fmt(t['clean'])} | {_fmt(t['mangled'])} "
                     f"| {_fmt(t['repaired'])} | {t['repaired'] / t['clean']:.3f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
