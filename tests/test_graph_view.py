"""The view rules read: ops no opset defines, channel counts from weights rather than declared
shapes, blocks through Q/DQ, and the proof's input sizes for dynamic dimensions. Real exporter output for each is in test_real_world.py."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import sepfix
from sepfix import model_io
from sepfix.checker import check_loaded
from sepfix.rules import select_rules
from sepfix.testing import builders
from sepfix.validate.numeric import compare_models
from sepfix.cli import main as run_cli


def _codes(model: onnx.ModelProto, advice: bool = True) -> list[str]:
    return [f.code for f in sepfix.check(model, advice=advice)]


def _blocks(model: onnx.ModelProto) -> int:
    return len(check_loaded(model_io.from_proto(model), select_rules()).blocks)


def test_an_op_no_opset_defines_is_a_one_line_error(tmp_path, capsys):
    model = builders.separable_block()
    model.graph.node[1].op_type = "PartitionedCall"
    path = tmp_path / "tf2onnx_leftover.onnx"
    onnx.save(model, path)
    code = run_cli(["check", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "PartitionedCall" in err and "not an ONNX operator" in err


def test_an_op_newer_than_the_opset_names_its_first_opset(tmp_path, capsys):
    model = builders.separable_block()
    model.graph.node[1].op_type = "HardSwish"  # opset 14 on; the model imports 13
    path = tmp_path / "too_new.onnx"
    onnx.save(model, path)
    assert run_cli(["check", str(path)]) == 2
    assert "from opset 14 on, but the model imports opset 13" in capsys.readouterr().err


def test_channels_come_from_weights_not_from_a_channels_last_value_info():
    model = builders.separable_block(c_in=8, c_out=16)
    for node in model.graph.node:  # jax2onnx declares NHWC dims on NCHW tensors
        model.graph.value_info.append(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, [1, 12, 12, 8]))
    assert _codes(model) == [] and _blocks(model) == 1


def test_blocks_are_found_through_quantize_dequantize_pairs():
    model = builders.separable_block()
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    pointwise = next(n for n in model.graph.node if n.op_type == "Conv" and n is not model.graph.node[0])
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "act_scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "act_zero")
    model.graph.initializer.extend([scale, zero])
    q = helper.make_node("QuantizeLinear", [relu.output[0], "act_scale", "act_zero"], ["q"], name="q")
    dq = helper.make_node("DequantizeLinear", ["q", "act_scale", "act_zero"], ["dq"], name="dq")
    pointwise.input[0] = "dq"
    model.graph.node.extend([q, dq])
    sorted_model = onnx.shape_inference.infer_shapes(model)
    assert _codes(sorted_model) == []
    [block] = check_loaded(model_io.from_proto(model), select_rules()).blocks
    assert block.between_ops[-2:] == ("QuantizeLinear", "DequantizeLinear")


def _needs_48_by_320() -> onnx.ModelProto:
    """Dynamic H and W (written as -1, as paddle2onnx does) but a Reshape that only fits 48x320."""
    shape = numpy_helper.from_array(np.array([1, 3, 48, 320], np.int64), "fixed")
    nodes = [helper.make_node("Reshape", ["x", "fixed"], ["r"], name="reshape"),
             helper.make_node("Relu", ["r"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, -1, -1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [shape])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_the_proof_tries_sizes_until_the_original_runs_and_says_which():
    model = _needs_48_by_320()
    result = compare_models(model, model)
    assert result.passed and result.input_shapes == {"x": [1, 3, 48, 320]}
    assert "refused" in result.shapes_note


def test_the_proof_names_input_shape_when_no_size_runs():
    model = _needs_48_by_320()
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.array([1, 3, 47, 319], np.int64), "fixed"))
    result = compare_models(model, model)
    assert not result.passed
    assert "--input-shape" in result.message and "inputs: x" in result.message
