"""The numeric proof: equal models pass, a perturbed weight fails with the right statistics,
invalid originals (SEP002/SEP003) are proven through the numpy reference, and the feeds follow
the documented shape and input rules."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from sepfix.errors import SepfixError
from sepfix.testing import builders
from sepfix.validate.numeric import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    compare_arrays,
    compare_models,
    proof_session_options,
    load_npz_inputs,
    make_feeds,
    numpy_conv,
    parse_input_shapes,
)
from tests.rules.test_sep002_group_mismatch import group_attribute
from tests.rules.test_sep003_kernel_shape import kernel_shape


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _perturbed(model: onnx.ModelProto, name: str, delta: float) -> onnx.ModelProto:
    out = _copy(model)
    for init in out.graph.initializer:
        if init.name == name:
            array = numpy_helper.to_array(init).copy()
            array.flat[0] += delta
            init.CopyFrom(numpy_helper.from_array(array, name))
            return out
    raise AssertionError(f"no initializer {name}")


def _ort_run(model: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    """A run as the proof makes it (the same session options)."""
    session = ort.InferenceSession(model.SerializeToString(), proof_session_options(),
                                   providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in names})


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


# ------------------------------------------------------------------------------ verdicts


def test_identical_models_pass_with_zero_error():
    model = builders.mobilenet_like()
    result = compare_models(model, _copy(model))
    assert result.passed, result.message
    assert result.proof == "onnxruntime"
    assert result.provider == "CPUExecutionProvider"
    assert result.input_sets == 2
    assert (result.rtol, result.atol) == (DEFAULT_RTOL, DEFAULT_ATOL)
    [out] = result.outputs
    assert out.name == "output" and out.shape == [1, 24, 16, 16]
    assert out.max_abs == 0 and out.max_rel == 0
    assert out.required_atol == 0 and out.required_rtol == 0
    json.dumps(result.to_dict(), allow_nan=False)


def test_paths_work_like_protos(tmp_path):
    model = builders.separable_block()
    original, candidate = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(model, original)
    onnx.save_model(model, candidate, save_as_external_data=True, all_tensors_to_one_file=True,
                    location="b.onnx.data", size_threshold=0)
    result = compare_models(original, candidate)
    assert result.passed and result.outputs[0].max_abs == 0


def test_proto_with_external_data_asks_for_a_path(tmp_path):
    model = builders.separable_block()
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="ext.data", size_threshold=0)
    external = onnx.load(path, load_external_data=False)
    with pytest.raises(SepfixError, match="external data"):
        compare_models(model, external)


def test_perturbed_weight_fails_and_reports_the_true_error():
    model = builders.separable_block()
    candidate = _perturbed(model, "pw_conv_weight", 1e-2)
    result = compare_models(model, candidate)
    assert not result.passed
    assert "output 'output'" in result.message
    # The true statistics over the same feeds the comparison made.
    diffs, refs = [], []
    for feed in make_feeds(model):
        [b] = _ort_run(model, feed)
        [a] = _ort_run(candidate, feed)
        diffs.append(np.abs(a.astype(np.float64) - b))
        refs.append(np.abs(b.astype(np.float64)))
    diff, ref = np.concatenate([d.ravel() for d in diffs]), np.concatenate([r.ravel() for r in refs])
    [out] = result.outputs
    assert not out.passed
    assert out.max_abs == pytest.approx(diff.max(), rel=1e-6)
    assert out.required_atol == pytest.approx((diff - DEFAULT_RTOL * ref).max(), rel=1e-6)
    assert out.required_atol > DEFAULT_ATOL
    over = diff > DEFAULT_ATOL
    assert out.required_rtol == pytest.approx(((diff[over] - DEFAULT_ATOL) / ref[over]).max(), rel=1e-6)
    # The reported tolerances are exactly enough.
    looser = compare_models(model, candidate, atol=out.required_atol * 1.001)
    assert looser.passed, looser.message


@pytest.mark.parametrize(
    "mangled",
    [
        pytest.param(lambda m: group_attribute(m, None), id="sep002-group-missing"),
        pytest.param(lambda m: group_attribute(m, -3), id="sep002-group-negative"),
        pytest.param(lambda m: kernel_shape(m, "wrong"), id="sep003-kernel-shape-wrong"),
    ],
)
@pytest.mark.parametrize("activation", ["relu6", "hardswish"])
def test_invalid_original_is_proven_through_numpy_reference(mangled, activation):
    clean = builders.mobilenet_like(activation=activation, depth_multiplier=2)
    original = mangled(clean)
    with pytest.raises(Exception):  # onnxruntime really refuses it
        _ort_run(original, make_feeds(clean)[0])
    result = compare_models(original, clean)
    assert result.passed, result.message
    assert result.proof == "numpy-reference"
    assert result.provider == "CPUExecutionProvider"
    assert "invalid for onnxruntime" in result.message and "\n" not in result.message
    assert result.outputs[0].max_abs < 1e-5


def test_invalid_original_against_a_wrong_candidate_still_fails():
    clean = builders.separable_block()
    original = group_attribute(clean, -3)
    result = compare_models(original, _perturbed(clean, "dw_conv_weight", 0.5))
    assert result.proof == "numpy-reference" and not result.passed


def test_reference_that_cannot_run_either_fails_clearly():
    # group missing and a weight whose channels (3) do not divide C_in (8): no consistent group.
    nodes = [helper.make_node("Conv", ["input", "w"], ["output"], name="conv", pads=[1, 1, 1, 1])]
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(nodes, "g", [_vi("input", [1, 8, 12, 12])], [_vi("output", None)], [weight])
    original = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    result = compare_models(original, builders.separable_block(c_in=8))
    assert not result.passed
    assert result.proof == "numpy-reference"
    assert "reference evaluator failed too" in result.message


def test_candidate_onnxruntime_cannot_run_fails_with_its_error():
    clean = builders.separable_block()
    result = compare_models(clean, group_attribute(clean, -3))
    assert not result.passed and result.proof == "onnxruntime"
    assert result.message.startswith("onnxruntime could not run the candidate: Fail:")
    assert "\n" not in result.message


def test_missing_and_reshaped_outputs_fail():
    clean = builders.separable_block()
    renamed = _copy(clean)
    renamed.graph.output[0].name = "other"
    renamed.graph.node[-1].output[0] = "other"
    result = compare_models(clean, renamed)
    assert not result.passed and "no output of this name" in result.outputs[0].note
    assert result.outputs[0].max_abs == np.inf
    document = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert document["outputs"][0]["max_abs"] is None

    wider = builders.separable_block(c_out=12)
    result = compare_models(clean, wider)
    assert not result.passed and "shape" in result.outputs[0].note


def test_candidate_inputs_must_be_a_subset():
    clean = builders.separable_block()
    extra = _copy(clean)
    extra.graph.input.append(_vi("unused", [1]))
    result = compare_models(clean, extra)
    assert not result.passed and "unused" in result.message


# ------------------------------------------------------------------------------ statistics


def test_compare_arrays_nan_and_inf_rules():
    a = np.array([1.0, np.nan, np.inf, 0.0], np.float32)
    same = compare_arrays(a, a.copy(), DEFAULT_RTOL, DEFAULT_ATOL)
    assert same.passed and same.max_abs == 0
    moved = compare_arrays(np.array([1.0, 2.0, np.inf, 0.0], np.float32), a, DEFAULT_RTOL, DEFAULT_ATOL)
    assert not moved.passed and "NaN" in moved.note
    flipped = compare_arrays(np.array([1.0, np.nan, -np.inf, 0.0], np.float32), a, 1.0, 1.0)
    assert not flipped.passed
    # An exact zero missed by more than atol needs an infinite rtol.
    zero = compare_arrays(np.array([1e-3]), np.array([0.0]), DEFAULT_RTOL, DEFAULT_ATOL)
    assert zero.required_rtol == np.inf and zero.required_atol == pytest.approx(1e-3)
    assert compare_arrays(np.array([1, 2]), np.array([1, 2]), 0.0, 0.0).passed


# ------------------------------------------------------------------------------ numpy conv


def _conv_case(x_shape, w_shape, group, bias=True, seed=0, **attrs):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    b = rng.standard_normal(w_shape[0]).astype(np.float32) if bias else None
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    node = helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["y"], group=group, **attrs)
    graph = helper.make_graph([node], "conv", [_vi("x", list(x_shape))], [_vi("y", None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model, x, w, b


CONV_CASES = {
    "grouped": dict(x_shape=(1, 8, 10, 10), w_shape=(8, 2, 3, 3), group=4, pads=[1, 1, 1, 1]),
    "depthwise-multiplier-2": dict(x_shape=(2, 6, 9, 9), w_shape=(12, 1, 3, 3), group=6, pads=[1, 1, 1, 1]),
    "stride-2": dict(x_shape=(1, 4, 11, 11), w_shape=(5, 4, 3, 3), group=1, strides=[2, 2], pads=[1, 1, 1, 1]),
    "dilation-2": dict(x_shape=(1, 4, 12, 12), w_shape=(4, 1, 3, 3), group=4, dilations=[2, 2], pads=[2, 2, 2, 2]),
    "asymmetric-pads": dict(x_shape=(1, 3, 9, 8), w_shape=(5, 3, 3, 2), group=1, pads=[0, 1, 2, 3]),
    "same-upper": dict(x_shape=(1, 3, 10, 9), w_shape=(4, 3, 4, 3), group=1, strides=[2, 2], auto_pad="SAME_UPPER"),
    "same-lower": dict(x_shape=(1, 4, 7, 10), w_shape=(8, 1, 4, 2), group=4, auto_pad="SAME_LOWER"),
    "valid": dict(x_shape=(1, 2, 9, 9), w_shape=(3, 2, 3, 3), group=1, strides=[2, 1], auto_pad="VALID"),
    "conv1d": dict(x_shape=(1, 4, 20), w_shape=(6, 2, 5), group=2, strides=[3], pads=[2, 1]),
    "conv3d": dict(x_shape=(1, 4, 6, 7, 5), w_shape=(4, 1, 3, 3, 3), group=4, strides=[1, 2, 1],
                   dilations=[1, 1, 2], pads=[1, 0, 2, 1, 1, 2]),
    "no-bias": dict(x_shape=(1, 6, 8, 8), w_shape=(6, 1, 5, 5), group=6, bias=False, pads=[2, 2, 2, 2]),
}


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_numpy_conv_matches_onnxruntime(case):
    spec = dict(CONV_CASES[case])
    model, x, w, b = _conv_case(**spec)
    [expected] = _ort_run(model, {"x": x})
    attrs = {k: v for k, v in spec.items() if k in ("strides", "dilations", "pads", "auto_pad")}
    got = numpy_conv(x, w, b, **attrs)  # group derived from the weight: C_in / W.shape[1]
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_numpy_conv_refuses_inconsistent_weights():
    with pytest.raises(ValueError):
        numpy_conv(np.zeros((1, 8, 4, 4), np.float32), np.zeros((4, 3, 3, 3), np.float32))


# ------------------------------------------------------------------------------ feeds


def _dynamic_model():
    nodes = [helper.make_node("Add", ["a", "b"], ["y"]), helper.make_node("Cast", ["n"], ["m"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(
        nodes, "dyn",
        [_vi("a", ["N", 3, "H", None]), _vi("b", ["N", 3, "H", None]),
         _vi("n", ["K", 2], TensorProto.INT64)],
        [_vi("y", None), _vi("m", None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dynamic_dims_get_documented_defaults():
    feeds = make_feeds(_dynamic_model(), count=2)
    assert len(feeds) == 2
    for feed in feeds:
        assert feed["a"].shape == (1, 3, 16, 16) and feed["a"].dtype == np.float32
        assert feed["b"].shape == (1, 3, 16, 16)
        assert feed["n"].shape == (1, 2) and feed["n"].dtype == np.int64
        assert feed["n"].min() >= 0 and feed["n"].max() < 8
    assert not np.array_equal(feeds[0]["a"], feeds[1]["a"])
    again = make_feeds(_dynamic_model(), count=2)
    assert np.array_equal(feeds[1]["a"], again[1]["a"])  # seeded


def test_named_dims_stay_consistent_and_input_shapes_apply():
    shapes = parse_input_shapes(["a:2,3,5,7", "n:[4,2]"])
    feed = make_feeds(_dynamic_model(), shapes=shapes, count=1)[0]
    assert feed["a"].shape == (2, 3, 5, 7)
    assert feed["b"].shape == (2, 3, 5, 16)  # N and H bound by "a"; the unnamed dim defaults
    assert feed["n"].shape == (4, 2)
    result = compare_models(_dynamic_model(), _dynamic_model(), shapes={"a": [2, 3, 5, 7], "b": [2, 3, 5, 7]})
    assert result.passed and result.outputs[0].shape == [2, 3, 5, 7]


def test_parse_input_shapes():
    assert parse_input_shapes(["input:1,3,224,224"]) == {"input": [1, 3, 224, 224]}
    assert parse_input_shapes(["input:0:1x3x8x8", "s:"]) == {"input:0": [1, 3, 8, 8], "s": []}
    for bad in ["input", ":1,2", "x:1,-2", "x:a,b", "x:1,,2"]:
        with pytest.raises(SepfixError):
            parse_input_shapes([bad])
    with pytest.raises(SepfixError, match="twice"):
        parse_input_shapes(["x:1", "x:2"])


def test_input_shapes_that_contradict_the_model_raise():
    model = builders.separable_block()
    with pytest.raises(SepfixError, match="no input 'nope'"):
        make_feeds(model, shapes={"nope": [1]})
    with pytest.raises(SepfixError, match="rank"):
        make_feeds(model, shapes={"input": [1, 8, 12]})
    with pytest.raises(SepfixError, match="fixes it"):
        make_feeds(model, shapes={"input": [1, 4, 12, 12]})


def test_npz_inputs_are_used_first(tmp_path):
    model = builders.separable_block()
    given = np.full((1, 8, 12, 12), 0.5, np.float32)
    path = tmp_path / "inputs.npz"
    np.savez(path, input=given)
    inputs = load_npz_inputs(path)
    feeds = make_feeds(model, user_inputs=inputs)
    assert len(feeds) == 3 and np.array_equal(feeds[0]["input"], given)
    result = compare_models(model, _copy(model), user_inputs=inputs)
    assert result.passed and result.input_sets == 3
    # float64 data for a float32 input is cast, not refused.
    cast = make_feeds(model, user_inputs={"input": given.astype(np.float64)}, count=0)
    assert cast[0]["input"].dtype == np.float32


def test_bad_npz_inputs_raise(tmp_path):
    model = builders.separable_block()
    with pytest.raises(SepfixError, match="no such file"):
        load_npz_inputs(tmp_path / "missing.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SepfixError):
        load_npz_inputs(corrupt)
    npy = tmp_path / "one.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(SepfixError, match="np.savez"):
        load_npz_inputs(npy)
    with pytest.raises(SepfixError, match="no input 'wrong'"):
        make_feeds(model, user_inputs={"wrong": np.zeros((1, 8, 12, 12), np.float32)})
    with pytest.raises(SepfixError, match="fixes axis"):
        make_feeds(model, user_inputs={"input": np.zeros((1, 8, 12, 13), np.float32)})
    with pytest.raises(SepfixError, match="rank"):
        make_feeds(model, user_inputs={"input": np.zeros((8, 12, 12), np.float32)})
    with pytest.raises(SepfixError, match="takes float32"):
        make_feeds(model, user_inputs={"input": np.zeros((1, 8, 12, 12), np.complex64)})


def test_initializer_listed_as_input_is_not_fed():
    clean = builders.separable_block()
    listed = _copy(clean)
    weight = next(t for t in listed.graph.initializer if t.name == "dw_conv_weight")
    listed.graph.input.append(_vi("dw_conv_weight", list(weight.dims)))
    feeds = make_feeds(listed)
    assert all(set(feed) == {"input"} for feed in feeds)
    with pytest.raises(SepfixError, match="initializer"):
        make_feeds(listed, shapes={"dw_conv_weight": [16, 1, 3, 3]})
    # A fix may drop the listed initializer from the inputs: the candidate's inputs are a subset.
    result = compare_models(listed, clean)
    assert result.passed, result.message
