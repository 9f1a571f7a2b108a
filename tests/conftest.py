"""Shared test helpers: run models with onnxruntime, export small torch modules."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest


SHARED = Path(__file__).resolve().parents[2] / "shared"
"""The folder beside the repository that CI provides (fixtures too large or foreign to commit)."""


def require_shared(path: Path, what: str) -> Path:
    """`path` (under ../shared) when it exists. When it does not: with `CI` set the test fails
    (CI has ../shared, so a missing fixture is a broken setup, not a reason to pass quietly);
    on a plain clone it skips and says why."""
    if path.exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{what} not found at {path}: CI must provide ../shared beside the repository", pytrace=False)
    pytest.skip(f"{what} not found at {path} (a plain clone has no ../shared; with CI set this fails)")


def run_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray] | None = None, seed: int = 0,
              batch: int = 1, size: int = 1) -> list[np.ndarray]:
    """Outputs of `model` on onnxruntime's CPU provider (seeded random inputs by default: a
    symbolic first dimension is `batch`, any other symbolic dimension `size`)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    if feeds is None:
        rng = np.random.default_rng(seed)
        feeds = {}
        for value in session.get_inputs():
            shape = [d if isinstance(d, int) else (batch if i == 0 else size) for i, d in enumerate(value.shape)]
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return session.run(None, feeds)


def run_sepfix(args, capsys) -> tuple[int, str, str]:
    """`sepfix ARGS` in this process: (exit code, stdout, stderr); paths may be Path objects."""
    from sepfix.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_same_outputs(a: onnx.ModelProto, b: onnx.ModelProto, rtol=1e-4, atol=1e-5, seed=0) -> None:
    for left, right in zip(run_model(a, seed=seed), run_model(b, seed=seed)):
        np.testing.assert_allclose(left, right, rtol=rtol, atol=atol)


@pytest.fixture
def codes():
    """Set of finding codes for a model or path."""
    import sepfix

    return lambda model, **kw: sorted({f.code for f in sepfix.check(model, **kw)})


# The clean models every rule's manglers and the shared round trip (tests/rules/) run on:
# onnx.helper, torch.onnx's legacy and dynamo exporters (stride 2 and dilation 2 blocks), and
# legacy exports with a symbolic batch (a MobileNetV2-like network) and a symbolic batch, height
# and width (a separable block).
CLEAN_SOURCES = ("helper", "torch-legacy", "torch-dynamo", "torch-dynamic-batch", "torch-dynamic-nhw")


def _build_clean(source: str) -> onnx.ModelProto:
    from sepfix.testing import builders
    from tests.torch_models import MobileNetV2Like, SeparableBlock, export, torch

    x = torch.randn(1, 8, 16, 16)
    if source == "helper":
        return builders.mobilenet_like()
    if source == "torch-legacy":
        return export(SeparableBlock(stride=2), x)
    if source == "torch-dynamo":
        return export(SeparableBlock(dilation=2), x, dynamo=True)
    if source == "torch-dynamic-batch":
        return export(MobileNetV2Like(), torch.randn(1, 3, 32, 32), dynamic={0: "n"})
    if source == "torch-dynamic-nhw":
        return export(SeparableBlock(), x, dynamic={0: "n", 2: "h", 3: "w"})
    raise KeyError(source)


class _CleanModels(dict):
    """Built on first use (a torch export takes a while), then shared by the session."""

    def __missing__(self, source: str) -> onnx.ModelProto:
        self[source] = _build_clean(source)
        return self[source]


@pytest.fixture(scope="session")
def clean_models():
    """source name -> clean depthwise-separable model (see CLEAN_SOURCES); do not edit them."""
    return _CleanModels()


@pytest.fixture(params=CLEAN_SOURCES)
def clean(request, clean_models) -> onnx.ModelProto:
    """A fresh copy of each clean source in turn, so a mangler that wrote into its input could
    not hide it."""
    model = onnx.ModelProto()
    model.CopyFrom(clean_models[request.param])
    return model
