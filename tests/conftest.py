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


def run_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray] | None = None, seed: int = 0) -> list[np.ndarray]:
    """Outputs of `model` on onnxruntime's CPU provider (seeded random inputs by default)."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    if feeds is None:
        rng = np.random.default_rng(seed)
        feeds = {}
        for value in session.get_inputs():
            shape = [d if isinstance(d, int) else 1 for d in value.shape]
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
    return session.run(None, feeds)


def assert_same_outputs(a: onnx.ModelProto, b: onnx.ModelProto, rtol=1e-4, atol=1e-5, seed=0) -> None:
    for left, right in zip(run_model(a, seed=seed), run_model(b, seed=seed)):
        np.testing.assert_allclose(left, right, rtol=rtol, atol=atol)


@pytest.fixture
def codes():
    """Set of finding codes for a model or path."""
    import sepfix

    return lambda model, **kw: sorted({f.code for f in sepfix.check(model, **kw)})


@pytest.fixture(scope="session")
def clean_models():
    """Clean depthwise-separable models from three sources: onnx.helper, and torch.onnx's legacy
    and dynamo exporters (stride 2 and dilation 2 blocks)."""
    from sepfix.testing import builders
    from tests.torch_models import SeparableBlock, export, torch

    x = torch.randn(1, 8, 16, 16)
    return {
        "helper": builders.mobilenet_like(),
        "torch-legacy": export(SeparableBlock(stride=2), x),
        "torch-dynamo": export(SeparableBlock(dilation=2), x, dynamo=True),
    }
