"""The mangle toolkit and the builders: node selection, refusals, clean models and negative
controls, and the sample models made from them.

Each rule's manglers and their tests live in tests/rules/test_<code>_<name>.py; the round trip
over all of them is tests/rules/test_round_trip.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from sepfix.testing import builders
from tests.rules import support
from tests.rules.test_sep001_dense_depthwise import dense_depthwise

REPO_ROOT = Path(__file__).resolve().parent.parent


# -- selection and errors (the toolkit's Editor.select) -----------------------------------------


def test_nodes_selects_only_named_convs():
    clean = builders.mobilenet_like()
    depthwise, _ = support.convs_by_kind(clean)
    mangled = dense_depthwise(clean, nodes=[depthwise[1]])
    assert support.convs_by_kind(mangled)[0] == [depthwise[0], depthwise[2]]
    support.assert_same_function(clean, mangled)


def test_nodes_rejects_ineligible_names():
    clean = builders.mobilenet_like()
    _, pointwise = support.convs_by_kind(clean)
    with pytest.raises(ValueError, match="not depthwise"):
        dense_depthwise(clean, nodes=[pointwise[0]])
    with pytest.raises(ValueError, match="not depthwise"):
        dense_depthwise(clean, nodes=["no_such_node"])


def test_fresh_names_avoid_every_name_in_the_model():
    """The toolkit takes its names from sepfix.names: a name used anywhere (here a graph input)
    is never handed out again."""
    clean = builders.separable_block()
    taken = "dw_conv_sep001_dense_weight"
    clean.graph.input.append(onnx.helper.make_tensor_value_info(taken, onnx.TensorProto.FLOAT, [1]))
    mangled = dense_depthwise(clean)
    dw = support.node(mangled, "dw_conv")
    assert dw.input[1] == taken + "_1"


# -- builders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", builders.ACTIVATIONS)
def test_mobilenet_like_activations(activation):
    model = builders.mobilenet_like(channels=(8, 16), activation=activation, depth_multiplier=2)
    depthwise, pointwise = support.convs_by_kind(model)
    assert len(depthwise) == len(pointwise) == 2
    assert support.ops(model)["Add"] == 1, "the first block keeps its width and gets a residual"
    (output,) = support.run(model)
    assert output.shape == (1, 16, 16, 16)


@pytest.mark.parametrize(
    "build",
    [
        builders.resnext_grouped,
        builders.dense_with_zeros,
        builders.repvgg_kernel,
        builders.convnext_linear,
        builders.weight_graph_input,
        builders.qdq_weights,
    ],
)
def test_negative_controls_are_valid_and_run(build):
    model = build()
    onnx.checker.check_model(model, full_check=True)
    support.assert_named(model, model)
    (output,) = support.run(model)
    assert np.all(np.isfinite(output))


def test_negative_controls_are_not_depthwise_separable_by_construction():
    weights = support.initializers(builders.dense_with_zeros())
    dense = weights["dense_conv_weight"]
    assert np.any(dense[~np.eye(dense.shape[0], dtype=bool)]) and np.mean(dense == 0) > 0.4
    repvgg = support.initializers(builders.repvgg_kernel())["repvgg_conv_weight"]
    assert np.all(repvgg != 0) and np.all(np.abs(repvgg[:, :, [0, 2], :]) < 0.011)
    assert support.convs_by_kind(builders.resnext_grouped())[0] == []


# -- sample models -------------------------------------------------------------------------------


def test_make_samples_reproduces_sample_models(tmp_path):
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "make_samples.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    committed = sorted(p.name for p in (REPO_ROOT / "sample_models").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == committed
    for name in committed:
        assert (tmp_path / name).read_bytes() == (
            REPO_ROOT / "sample_models" / name
        ).read_bytes(), name
    for path in tmp_path.glob("*.onnx"):
        assert path.stat().st_size < 100_000
