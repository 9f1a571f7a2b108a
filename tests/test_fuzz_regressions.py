"""Crashes the fuzzers found (scripts/fuzz.py, tests/test_fuzz.py), pinned: each mutant is now
refused with one SepfixError that names the problem, or checked and repaired without one.

Before the fixes every case here escaped as a TypeError, IndexError, ValueError, a
graphsurgeon exception or a UnicodeDecodeError, from `sepfix.check` or `repair_file`.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import numpy as np

from sepfix import SepfixError, check
from sepfix.repairer import RepairOptions, repair_file
from sepfix.testing import builders
from tests.mutators import SAMPLES
from tests.rules.test_sep004_runtime_weights import runtime_weights

SAMPLE = {p.stem: p for p in SAMPLES}


def _sample(name: str) -> onnx.ModelProto:
    return onnx.load(str(SAMPLE[name]))


def _node(model, name):
    return next(n for n in model.graph.node if n.name == name)


def _set_attr(node, name, value, attr_type=None):
    for i, attribute in enumerate(node.attribute):
        if attribute.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value, attr_type=attr_type))


def _write(model_or_bytes, tmp_path):
    data = model_or_bytes if isinstance(model_or_bytes, bytes) else model_or_bytes.SerializeToString()
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    path = tmp_path / "in" / "model.onnx"
    path.write_bytes(data)
    return path


def assert_refused(model_or_bytes, tmp_path, needle: str, by_check: bool = True) -> None:
    """check (when `by_check`) and repair both refuse with a SepfixError naming the problem,
    and the failed repair leaves nothing behind."""
    path = _write(model_or_bytes, tmp_path)
    if by_check:
        with pytest.raises(SepfixError, match=needle):
            check(str(path))
    with pytest.raises(SepfixError, match=needle) as raised:
        repair_file(str(path), output=str(tmp_path / "out" / "r.onnx"), options=RepairOptions())
    assert "\n" not in str(raised.value)
    assert list((tmp_path / "out").iterdir()) == []


def assert_handled(model, tmp_path) -> None:
    """check and repair run to an answer: findings, a repair, a refusal, or a SepfixError."""
    path = _write(model, tmp_path)
    try:
        check(str(path))
        report = repair_file(str(path), output=str(tmp_path / "out" / "r.onnx"), options=RepairOptions())
    except SepfixError:
        assert list((tmp_path / "out").iterdir()) == []
        return
    assert report.written == (tmp_path / "out" / "r.onnx").exists()


def test_initializer_without_a_data_type(tmp_path):
    model = _sample("clean_mobilenet")
    next(t for t in model.graph.initializer if t.name == "block0_dw_bn_var").data_type = TensorProto.UNDEFINED
    assert_refused(model, tmp_path, "no data type")


def test_string_initializer_with_raw_data(tmp_path):
    model = _sample("clean_mobilenet")
    next(t for t in model.graph.initializer if t.name == "block0_dw_conv_weight").data_type = TensorProto.STRING
    assert_refused(model, tmp_path, "STRING but has raw")


@pytest.mark.parametrize("name, value, needle", [
    ("group", [8], "'group' of type INTS; Conv takes INT"),
    ("pads", 1.5, "'pads' of type FLOAT; Conv takes INTS"),
    ("kernel_shape", "3x3", "'kernel_shape' of type STRING"),
])
def test_conv_attribute_of_the_wrong_type(tmp_path, name, value, needle):
    model = _sample("sep001_dense_depthwise")
    _set_attr(_node(model, "block0_dw_conv"), name, value)
    assert_refused(model, tmp_path, needle)


def test_swapped_transpose_perm_and_conv_group(tmp_path):
    model = _sample("sep004_runtime_weights_transpose")
    _set_attr(_node(model, "block0_dw_conv_sep004_weight_transpose"), "perm", 8)
    assert_refused(model, tmp_path, "'perm' of type INT; Transpose takes INTS")


def test_empty_list_attribute_is_checked_but_not_rewritten(tmp_path):
    model = _sample("sep001_dense_depthwise")
    _set_attr(_node(model, "block0_dw_conv"), "strides", [], attr_type=onnx.AttributeProto.INTS)
    path = _write(model, tmp_path)
    assert {f.code for f in check(str(path))} == {"SEP001"}
    with pytest.raises(SepfixError, match="'strides' with no values"):
        repair_file(str(path), output=str(tmp_path / "out" / "r.onnx"), options=RepairOptions())
    assert list((tmp_path / "out").iterdir()) == []


def test_symbolic_dims_on_a_graph_input_weight(tmp_path):
    model = _sample("neg_weight_graph_input")
    weight = next(v for v in model.graph.input if v.name == "dw_weight")
    weight.type.tensor_type.shape.dim[0].dim_param = "N"
    path = _write(model, tmp_path)
    assert check(str(path)) == []


def test_node_with_too_few_inputs(tmp_path):
    model = _sample("sep007_layout_sandwich")
    del _node(model, "block1_pw_conv_sep007_before_to_nhwc").input[0]
    assert_refused(model, tmp_path, "has 0 inputs; Transpose-13 takes 1")


@pytest.mark.parametrize("perm", [[0, 0, 1, 2], [35, -14], [0, 1, 2, 4]])
def test_transpose_perm_that_is_not_a_permutation(tmp_path, perm):
    model = _sample("sep007_layout_sandwich")
    _set_attr(_node(model, "block0_dw_conv_sep007_before_to_nhwc"), "perm", perm)
    assert_refused(model, tmp_path, "not a permutation")


def test_transpose_perm_of_the_wrong_rank_on_a_weight(tmp_path):
    model = _sample("sep004_runtime_weights_transpose")
    _node(model, "block1_dw_conv_sep004_weight_transpose").input[0] = "stem_conv_bias"
    assert_refused(model, tmp_path, "for an input of rank 1")


@pytest.mark.parametrize("name, value", [
    ("pads", [23, 37]), ("pads", [1, 1, -1, 1]), ("strides", [-12, 1]), ("dilations", [1, 0]), ("strides", [1, 1, 1]),
])
def test_conv_spatial_attribute_impossible_for_its_kernel(tmp_path, name, value):
    model = _sample("sep009_inflated_kernel")
    _set_attr(_node(model, "block1_pw_conv"), name, value)
    assert_refused(model, tmp_path, f"{name}=.*a conv with a 2-D kernel takes")


def test_unknown_auto_pad(tmp_path):
    model = _sample("sep009_inflated_kernel")
    _set_attr(_node(model, "block1_pw_conv"), "auto_pad", "BOGUS")
    assert_refused(model, tmp_path, "auto_pad='BOGUS'")


def test_conv_bias_that_is_not_one_dimensional(tmp_path):
    model = _sample("sep005_split_depthwise")
    _node(model, "block0_dw_conv_sep005_conv_3").input[2] = "block0_dw_conv_sep005_weight_1"
    assert_refused(model, tmp_path, "bias 'block0_dw_conv_sep005_weight_1' of shape")


def test_cast_to_string_in_a_weight_chain_is_not_folded(tmp_path):
    model = _sample("sep004_runtime_weights_cast")
    _set_attr(_node(model, "block0_dw_conv_sep004_weight_cast"), "to", TensorProto.STRING)
    assert_handled(model, tmp_path)


def test_reshape_that_numpy_refuses_in_a_weight_chain(tmp_path):
    model = runtime_weights(builders.mobilenet_like(channels=(8, 16)), "tf_reshape_transpose")
    shape = next(t for t in model.graph.initializer if t.name == "block0_dw_conv_sep004_weight_tf_shape")
    shape.CopyFrom(numpy_helper.from_array(np.array([3, 3, 2, 8], dtype=np.int64), shape.name))  # 144 != 72
    assert_refused(model, tmp_path, "Reshape node 'block0_dw_conv_sep004_weight_reshape' cannot be applied",
                   by_check=False)


@pytest.mark.parametrize("version, needle", [(0, "not a valid opset"), (-3, "not a valid opset")])
def test_opset_version_that_is_not_valid(tmp_path, version, needle):
    model = _sample("sep001_dense_depthwise")
    model.opset_import[0].version = version
    assert_refused(model, tmp_path, needle)


def test_opset_version_beyond_int32(tmp_path):
    model = _sample("clean_mobilenet")
    model.opset_import[0].version = 2**40
    assert check(str(_write(model, tmp_path))) == []


def test_no_default_opset(tmp_path):
    model = _sample("sep001_dense_depthwise")
    del model.opset_import[:]
    assert_refused(model, tmp_path, "no ai.onnx entry")


def test_name_that_is_not_utf8(tmp_path):
    data = SAMPLE["sep003_kernel_shape_wrong"].read_bytes().replace(b"\x22\x04Clip", b"\x22\x04C\xffip", 1)
    assert_refused(data, tmp_path, "op_type holds b'C\\\\xffip', not UTF-8")


def test_duplicate_initializer_of_another_rank(tmp_path):
    """Was an IndexError in SEP002: the twin (a bias) replaced the conv weight in the index."""
    model = _sample("sep001_dense_depthwise")
    twin = onnx.TensorProto()
    twin.CopyFrom(next(t for t in model.graph.initializer if t.name == "stem_conv_bias"))
    twin.name = "stem_conv_weight"
    model.graph.initializer.append(twin)
    assert_refused(model, tmp_path, "'stem_conv_weight' is defined more than once")


def test_conv_weight_of_rank_two(tmp_path):
    """Was graphsurgeon's "Could not infer attribute kernel_shape" (SEP003 wrote kernel_shape=[])."""
    model = _sample("sep001_dense_depthwise")
    weight = next(t for t in model.graph.initializer if t.name == "block0_pw_conv_weight")
    del weight.dims[2:]
    assert_refused(model, tmp_path, "rank 3 or more")


def test_cycle_is_not_handed_to_graphsurgeon(tmp_path):
    model = _sample("sep001_dense_depthwise")
    _node(model, "stem_conv").input[0] = model.graph.node[-2].output[0]
    assert_refused(model, tmp_path, "has a cycle")


@pytest.mark.parametrize("dims, needle", [([1, 3, 2**40, 2**40], "too large to validate"),
                                          ([0, 3, 16, 16], "no elements")])
def test_input_shapes_validation_cannot_use(tmp_path, dims, needle):
    model = _sample("sep001_dense_depthwise")
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, dims):
        dim.dim_value = value
    assert_refused(model, tmp_path, needle, by_check=False)


def test_declared_zero_channels_on_a_graph_input_weight(tmp_path):
    """scripts/fuzz.py, seed 1795595205199: a flipped byte declared the weight input (0, 1, 3, 3);
    the next conv's input then had 0 channels and SEP002 divided by a group of 0."""
    model = _sample("neg_weight_graph_input")
    weight = next(v for v in model.graph.input if v.name == "dw_weight")
    weight.type.tensor_type.shape.dim[0].dim_value = 0
    assert_handled(model, tmp_path)
