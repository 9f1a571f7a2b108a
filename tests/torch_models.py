"""Small torch networks exported with torch.onnx (torch 2.13.0 CPU) for real-exporter tests."""

from __future__ import annotations

import io
import warnings

import onnx
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


def export(module, example, dynamo: bool = False, opset: int = 13, dynamic: dict[int, str] | None = None) -> onnx.ModelProto:
    """torch.onnx.export to memory; the legacy exporter unless `dynamo`.

    `dynamic` makes input dimensions symbolic (legacy exporter): {0: "n"} is
    `input_names=["x"], dynamic_axes={"x": {0: "n"}}`."""
    module = module.eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            assert dynamic is None, "symbolic dims are exported with the legacy exporter here"
            program = torch.onnx.export(module, (example,), dynamo=True, opset_version=max(opset, 18))
            return program.model_proto
        names = {"input_names": ["x"], "dynamic_axes": {"x": dict(dynamic)}} if dynamic else {}
        torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset, **names)
    return onnx.load_from_string(buffer.getvalue())


class SeparableBlock(nn.Module):
    """Depthwise conv (any multiplier/stride/dilation) -> BN -> ReLU6 -> pointwise conv."""

    def __init__(self, c_in=8, c_out=16, k=3, stride=1, dilation=1, multiplier=1, conv=nn.Conv2d, bn=nn.BatchNorm2d):
        super().__init__()
        torch.manual_seed(0)
        pad = dilation * (k - 1) // 2
        self.dw = conv(c_in, c_in * multiplier, k, stride=stride, padding=pad, dilation=dilation, groups=c_in)
        self.bn = bn(c_in * multiplier)
        self.act = nn.ReLU6()
        self.pw = conv(c_in * multiplier, c_out, 1)
        with torch.no_grad():  # non-trivial BN statistics so folding shows up in numbers
            self.bn.running_mean.uniform_(-0.5, 0.5)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x):
        return self.pw(self.act(self.bn(self.dw(x))))


class InvertedResidual(nn.Module):
    def __init__(self, c, expand=4):
        super().__init__()
        hidden = c * expand
        self.block = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, c, 1, bias=False), nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return x + self.block(x)


class MobileNetV2Like(nn.Module):
    """Stem, inverted residual blocks with depthwise 3x3 convs, a head: MobileNetV2 in small."""

    def __init__(self, width=16, blocks=3):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU6())
        self.first = SeparableBlock(width, width)
        self.blocks = nn.Sequential(*[InvertedResidual(width) for _ in range(blocks)])
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10))

    def forward(self, x):
        return self.head(self.blocks(self.first(self.stem(x))))


class DepthwiseTransposed(nn.Module):
    """ConvTranspose2d with groups == channels (a depthwise upsampler) then a 1x1 conv."""

    def __init__(self, c=8):
        super().__init__()
        torch.manual_seed(0)
        self.up = nn.ConvTranspose2d(c, c * 2, 4, stride=2, padding=1, groups=c)
        self.pw = nn.Conv2d(c * 2, c, 1)

    def forward(self, x):
        return self.pw(torch.relu(self.up(x)))
