"""SEP013 multi-branch-depthwise: parallel convs over one input (k x k, 1 x 1, identity, BN)
summed, re-parameterised into one conv.

Real exports (tests/data/real/): timm RepViT, FastViT and MobileOne exported train-time and after
`timm.utils.reparameterize_model` (scripts/real_models/make_torch.py on the real-torch branch),
PaddleOCR PP-OCRv4 det exported without `rep()` (make_paddle.py on the real-paddle branch).
What the tests assert about each comes from reading the graphs (see the comments).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import sepfix
from sepfix import model_io
from sepfix.checker import check_loaded
from sepfix.names import NameSource
from sepfix.rules import select_rules
from sepfix.testing import builders
from tests.conftest import run_model
from tests.rules import support
from tests.rules.support import ops

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / "tests" / "data" / "real"


# -- the mangler ---------------------------------------------------------------------------------


def multi_branch(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """SEP013: undo the re-parameterisation of every depthwise k x k conv (k odd, > 1).

    The conv becomes the sum of a k x k branch, a 1 x 1 depthwise branch (same stride, dilation
    and group) and, where the conv keeps its input's size and channels (stride 1, multiplier 1),
    an identity branch through a BatchNormalization: RepViT's RepVggDw / MobileOne's train-time
    block. The k x k branch's weight and bias are chosen so that the sum computes what the conv
    did (up to float rounding). The input model is left as it was.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    rng = np.random.default_rng(seed)
    values = support.constants(graph)
    fresh = NameSource.for_model(out)

    def constant(base: str, value: np.ndarray) -> str:
        name = fresh(base)
        graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    nodes: list[onnx.NodeProto] = []
    dropped: set[str] = set()
    count = 0
    for node in graph.node:
        nodes.append(node)
        if node.op_type != "Conv" or node.input[1] not in values or (len(node.input) > 2 and node.input[2]
                                                                      and node.input[2] not in values):
            continue
        weight = values[node.input[1]].astype(np.float64)
        group = support.attr(node, "group", 1)
        kernel = weight.shape[2:]
        if group <= 1 or weight.shape[1] != 1 or any(k % 2 == 0 or k == 1 for k in kernel):
            continue
        spatial = len(kernel)
        channels = weight.shape[0]
        multiplier = channels // group
        strides = list(support.attr(node, "strides", [1] * spatial))
        dilations = list(support.attr(node, "dilations", [1] * spatial))
        pads = list(support.attr(node, "pads", [0] * 2 * spatial))
        bias = values[node.input[2]].astype(np.float64) if len(node.input) > 2 and node.input[2] else np.zeros(channels)
        base = node.name or f"conv{count}"
        count += 1
        w1 = rng.standard_normal((channels, 1) + (1,) * spatial) * 0.2
        b1 = rng.standard_normal(channels) * 0.1
        centred = all(pads[a] == pads[a + spatial] == dilations[a] * (k - 1) // 2 for a, k in enumerate(kernel))
        identity = multiplier == 1 and all(s == 1 for s in strides) and centred
        main_w = weight.copy()
        main_b = bias - b1
        centre = (slice(None), 0) + tuple(k // 2 for k in kernel)
        main_w[centre] -= w1.reshape(channels)
        x, output = node.input[0], node.output[0]
        if identity:
            gamma = rng.uniform(0.5, 1.5, channels)
            beta = rng.standard_normal(channels) * 0.1
            mean = rng.standard_normal(channels) * 0.1
            var = rng.uniform(0.5, 1.5, channels)
            scale = gamma / np.sqrt(var + 1e-5)
            main_w[centre] -= scale
            main_b -= beta - mean * scale
        dropped |= {n for n in node.input[1:] if n}
        del node.input[1:]
        node.input.extend([constant(f"{base}_kxk_weight", main_w), constant(f"{base}_kxk_bias", main_b)])
        node.output[0] = fresh(f"{base}_kxk_out")
        one = fresh(f"{base}_1x1_out")
        attrs = {"group": group, "kernel_shape": [1] * spatial, "strides": strides, "pads": [0] * 2 * spatial}
        if any(d != 1 for d in dilations):
            attrs["dilations"] = dilations
        nodes.append(helper.make_node("Conv", [x, constant(f"{base}_1x1_weight", w1), constant(f"{base}_1x1_bias", b1)],
                                      [one], name=fresh(f"{base}_1x1"), **attrs))
        if not identity:
            nodes.append(helper.make_node("Add", [node.output[0], one], [output], name=fresh(f"{base}_sum")))
            continue
        partial, normed = fresh(f"{base}_partial"), fresh(f"{base}_identity_out")
        nodes.append(helper.make_node("Add", [node.output[0], one], [partial], name=fresh(f"{base}_sum")))
        bn_inputs = [constant(f"{base}_identity_{k}", v) for k, v in
                     (("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var))]
        nodes.append(helper.make_node("BatchNormalization", [x, *bn_inputs], [normed], name=fresh(f"{base}_identity"),
                                      epsilon=1e-5))
        nodes.append(helper.make_node("Add", [partial, normed], [output], name=fresh(f"{base}_sum_identity")))
    if not count:
        raise ValueError("no depthwise conv with an odd k x k kernel to split into branches")
    del graph.node[:]
    graph.node.extend(nodes)
    support.drop_unused(graph, dropped)
    return out


# The shared round trip wants the clean model's ops back: sources that keep a BatchNormalization
# after the depthwise conv (helper, dynamo) lose it to the merged conv, as timm's RepVggDw.fuse
# folds its BN; test_round_trip_on_every_clean_source below covers them with that expectation.
multi_branch.sources = ("torch-legacy", "torch-dynamic-batch", "torch-dynamic-nhw")
MANGLES = {"rep_branches": multi_branch}


def _sample() -> onnx.ModelProto:
    """SEP013: every depthwise conv of the sample model as k x k + 1 x 1 + BN identity branches."""
    return multi_branch(builders.mobilenet_like(channels=(8, 16), spatial=16))


SAMPLES = {"sep013_multi_branch": _sample}


# -- helpers -------------------------------------------------------------------------------------


def grouped_convs(model: onnx.ModelProto) -> int:
    return sum(1 for n in model.graph.node if n.op_type == "Conv" and support.attr(n, "group", 1) > 1)


def blocks(model: onnx.ModelProto) -> int:
    return len(check_loaded(model_io.from_proto(model), select_rules()).blocks)


def outputs_at(model: onnx.ModelProto, names: list[str], feeds: dict) -> dict[str, np.ndarray]:
    """Values of intermediate tensors (and the outputs) on onnxruntime's CPU provider."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    have = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in have)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def assert_sums_equal(original: onnx.ModelProto, repaired: onnx.ModelProto, findings, feeds, rtol=1e-4) -> None:
    """Every merged sum's output (its name survives the repair) equal in both models, relative to
    its magnitude (random-weight networks grow large activations)."""
    names = [f.match.roles["root"].node.output[0] for f in findings]
    before, after = outputs_at(original, names, feeds), outputs_at(repaired, names, feeds)
    for name in names:
        scale = max(1.0, float(np.max(np.abs(before[name]))))
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=rtol * scale, err_msg=name)


def repaired_and_proven(model: onnx.ModelProto, select=None, input_shapes=None) -> onnx.ModelProto:
    repaired, report = sepfix.repair(model, select=select, input_shapes=input_shapes)
    assert report.validation is not None and report.validation.passed, report.message
    again, second = sepfix.repair(repaired, select=select, input_shapes=input_shapes)
    assert again is repaired and not second.fixes, "a second repair must change nothing"
    return repaired


def load(tool: str, name: str) -> onnx.ModelProto:
    path = REAL / tool / name
    assert path.exists(), f"{path} is missing (it comes from the real-{tool} branch)"
    return onnx.load(str(path))


# -- the mangler ---------------------------------------------------------------------------------


def test_mangler_keeps_the_function_and_adds_branches():
    clean = builders.mobilenet_like(channels=(8, 16), spatial=16)
    mangled = multi_branch(clean)
    onnx.checker.check_model(mangled, full_check=True)
    assert ops(mangled)["Conv"] == ops(clean)["Conv"] + 2
    assert ops(mangled)["BatchNormalization"] == ops(clean)["BatchNormalization"] + 2
    for a, b in zip(run_model(clean), run_model(mangled)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    assert [f.code for f in sepfix.check(mangled)] == ["SEP013"] * 2


@pytest.mark.parametrize("source", ["helper", "torch-legacy", "torch-dynamo"])
def test_round_trip_on_every_clean_source(clean_models, source):
    """mangle -> SEP013 only -> repair (proven) -> the clean model's ops and blocks -> same numbers."""
    clean = clean_models[source]
    mangled = multi_branch(clean)
    findings = sepfix.check(mangled)
    assert findings and {f.code for f in findings} == {"SEP013"}
    repaired = repaired_and_proven(mangled)
    assert sepfix.check(repaired) == []
    # The clean ops, less the BatchNormalization right after each depthwise conv (helper and
    # dynamo exports keep it): it follows the sum, so the re-parameterised conv absorbs it, as
    # timm's RepVggDw.fuse does with its BN.
    expected = ops(clean) - Counter({"BatchNormalization": _depthwise_then_bn(clean)})
    assert ops(repaired) == expected and grouped_convs(repaired) == grouped_convs(clean)
    assert blocks(repaired) == blocks(clean)
    for a, b in zip(run_model(clean), run_model(repaired)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def _depthwise_then_bn(model: onnx.ModelProto) -> int:
    readers = Counter(i for n in model.graph.node for i in n.input)
    first = {n.input[0]: n for n in model.graph.node if n.op_type == "BatchNormalization"}
    return sum(1 for n in model.graph.node if n.op_type == "Conv" and support.attr(n, "group", 1) > 1
               and readers[n.output[0]] == 1 and n.output[0] in first)


# -- real exports: timm train-time vs reparameterize_model ---------------------------------------

# (train-time file, its reparameterize_model export, SEP013 findings by kind, convs, grouped convs)
TIMM = {
    # RepVit: 7 RepVggDw token mixers, BN(conv3x3(x) + conv1x1(x) + x), all depthwise.
    "repvit": ("timm_repvit_train.onnx", "timm_repvit_reparam.onnx", {"depthwise": 7}, 37, 9),
    # FastViT: 3 dense MobileOne stem convs (3x3 s2 + 1x1 s2; dw 3x3 + 1x1; 1x1 + BN identity),
    # 3 RepMixers x + gamma * (mixer(x) - norm(x)) (dw 3x3 + 1x1 + 3 identities through 2 BNs),
    # 3 patch embeddings (dw 7x7 + 3x3, multiplier 2; then 1x1 + BN identity), the final dw conv.
    "fastvit": ("timm_fastvit_train.onnx", "timm_fastvit_reparam.onnx", {"depthwise": 8, "dense": 5}, 27, 12),
    # MobileOne: stem (dense 3x3 + 1x1, stride 2), per stage a dw block (4 x 3x3 + 1x1 scale
    # branch, + Add of a 0 scalar) and a pw block (4 x 1x1 dense, + BN identity where C is kept).
    "mobileone": ("timm_mobileone_train.onnx", "timm_mobileone_reparam.onnx", {"depthwise": 4, "dense": 5}, 9, 4),
}


@pytest.mark.parametrize("name", list(TIMM))
def test_timm_train_exports_repair_to_the_reparameterised_structure(name):
    train_file, reparam_file, kinds, convs, grouped = TIMM[name]
    train, reparam = load("torch", train_file), load("torch", reparam_file)
    findings = sepfix.check(train)
    assert {f.code for f in findings} == {"SEP013"}, [(f.code, f.message) for f in findings]
    assert Counter(f.details["kind"] for f in findings) == kinds
    assert all(f.fixable and f.severity == "warning" for f in findings)
    assert sepfix.check(reparam) == [], "timm's own re-parameterised export is the canonical form"

    repaired = repaired_and_proven(train)
    assert not [f for f in sepfix.check(repaired, advice=True) if f.code == "SEP013"]
    # the re-parameterised structure: as many convs, depthwise convs and blocks as timm's export
    assert ops(repaired)["Conv"] == ops(reparam)["Conv"] == convs
    assert grouped_convs(repaired) == grouped_convs(reparam) == grouped
    assert blocks(repaired) == blocks(reparam)
    # and, once sepfix has repaired both (SEP008 folds FastViT's MLP layer scales in both), the
    # same ops, but for RepViT's distillation head (BN1d + Linear twice, averaged: no conv)
    both = repaired_and_proven(reparam) if sepfix.check(reparam, advice=True) else reparam
    if name == "repvit":
        assert ops(repaired) - ops(both) == Counter(
            {"BatchNormalization": 2, "Gemm": 1, "Add": 1, "Div": 1, "Constant": 1, "Identity": 1})
    else:
        assert ops(repaired) == ops(both)
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)}
    assert_sums_equal(train, repaired, findings, feeds)


def test_repvit_merged_kernel_is_timms_fuse():
    """The first RepVggDw: sepfix's merged weight equals RepVggDw.fuse() as exported by timm."""
    train, reparam = load("torch", "timm_repvit_train.onnx"), load("torch", "timm_repvit_reparam.onnx")
    repaired = repaired_and_proven(train, select=["SEP013"])
    weights = {t.name: numpy_helper.to_array(t) for t in repaired.graph.initializer}
    expected = {t.name: numpy_helper.to_array(t) for t in reparam.graph.initializer}
    first = next(n for n in repaired.graph.node if n.op_type == "Conv" and support.attr(n, "group", 1) > 1)
    timm_first = next(n for n in reparam.graph.node if n.op_type == "Conv" and support.attr(n, "group", 1) > 1)
    assert first.name.endswith("_reparam")
    np.testing.assert_allclose(weights[first.input[1]], expected[timm_first.input[1]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(weights[first.input[2]], expected[timm_first.input[2]], rtol=1e-5, atol=1e-6)
    assert support.attr(first, "pads") == [1, 1, 1, 1] and support.attr(first, "kernel_shape") == [3, 3]


def test_paddleocr_learnable_rep_layers_repair_to_the_rep_form():
    """PP-OCRv4 det exported without rep(): 28 LearnableRepLayers, each BN-branch convs (4 k x k
    + a 1x1 scale branch, a BN identity where shapes allow) summed through Identity nodes, then the
    learnable affine (Mul/Add by (1,) scalars). After repair: 62 convs, as in the rep() export of
    the same architecture (ppocrv4_det_p2o2.onnx, another width)."""
    train, rep = load("paddle", "ppocrv4_det_trainform_p2o2.onnx"), load("paddle", "ppocrv4_det_p2o2.onnx")
    findings = sepfix.check(train, select=["SEP013"])
    assert len(findings) == 28
    assert Counter(f.details["kind"] for f in findings) == {"depthwise": 14, "dense": 14}
    # identity branches: a BatchNormalization reading what the layer's convs read (23 of them)
    conv_inputs = {n.input[0] for n in train.graph.node if n.op_type == "Conv"}
    identities = sum(1 for n in train.graph.node if n.op_type == "BatchNormalization" and n.input[0] in conv_inputs)
    assert identities == 23 and Counter(f.details["identity"] for f in findings) == {1: 23, 0: 5}
    shapes = {"x": [1, 3, 160, 160]}
    repaired = repaired_and_proven(train, select=["SEP013"], input_shapes=shapes)
    assert ops(repaired)["Conv"] == ops(rep)["Conv"] == 62
    assert grouped_convs(repaired) == grouped_convs(rep) == 14
    assert ops(repaired)["BatchNormalization"] == ops(rep)["BatchNormalization"] == 3
    # the detection map saturates to 0/1 with random weights: compare what each sum computed
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)}
    assert_sums_equal(train, repaired, findings, feeds, rtol=1e-4)


# -- hand-built models ---------------------------------------------------------------------------


def _model(nodes, initializers, c=8, size=10, inputs=("x",), rank=4) -> onnx.ModelProto:
    spatial = [size] * (rank - 2)
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1, c, *spatial]) for i in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _branches(c=8, k=3, multiplier=1, group=None, stride=(1, 1), pads=None, one_stride=None, one_group=None,
              one_input="x", identity=True, bn_after=True, seed=0):
    """RepViT's RepVggDw by hand: [BN](conv_k(x) + conv_1(x) [+ x])."""
    rng = np.random.default_rng(seed)
    group = c if group is None else group
    one_group = group if one_group is None else one_group
    out = c * multiplier
    init = {"wk": rng.standard_normal((out, c // group, k, k)), "bk": rng.standard_normal(out),
            "w1": rng.standard_normal((out, c // one_group, 1, 1)), "b1": rng.standard_normal(out),
            "g": rng.uniform(0.5, 1.5, out), "b": rng.standard_normal(out), "m": rng.standard_normal(out),
            "v": rng.uniform(0.5, 1.5, out)}
    pads = [k // 2] * 4 if pads is None else pads
    nodes = [helper.make_node("Conv", ["x", "wk", "bk"], ["tk"], name="conv_k", group=group, pads=pads, strides=list(stride)),
             helper.make_node("Conv", [one_input, "w1", "b1"], ["t1"], name="conv_1", group=one_group,
                              strides=list(one_stride or stride))]
    last = "s1"
    nodes.append(helper.make_node("Add", ["tk", "t1"], [last], name="add_1"))
    if identity:
        nodes.append(helper.make_node("Add", [last, "x"], ["s2"], name="add_identity"))
        last = "s2"
    if bn_after:
        nodes.append(helper.make_node("BatchNormalization", [last, "g", "b", "m", "v"], ["s3"], name="bn"))
        last = "s3"
    nodes.append(helper.make_node("Relu", [last], ["y"], name="relu"))
    inputs = ("x",) if one_input == "x" else ("x", one_input)
    return nodes, init, inputs


def _merged(model: onnx.ModelProto) -> onnx.ModelProto:
    findings = sepfix.check(model)
    assert [f.code for f in findings] == ["SEP013"], [(f.code, f.message) for f in findings]
    repaired = repaired_and_proven(model)
    for a, b in zip(run_model(model), run_model(repaired)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    return repaired


def test_repvgg_dw_block_becomes_one_depthwise_conv():
    nodes, init, inputs = _branches()
    model = _model(nodes, init, inputs=inputs)
    [finding] = sepfix.check(model)
    assert finding.node == "conv_k" and finding.details["kind"] == "depthwise"
    assert finding.details["branches"] == [[3, 3], [1, 1]] and finding.details["identity"] == 1
    assert finding.details["batchnorms"] == 1 and finding.nodes[0] == "conv_k"
    assert "summed by bn" in finding.message
    repaired = _merged(model)
    assert ops(repaired) == {"Conv": 1, "Relu": 1}
    conv = next(n for n in repaired.graph.node if n.op_type == "Conv")
    assert support.attr(conv, "group") == 8 and support.attr(conv, "pads") == [1, 1, 1, 1] and conv.output[0] == "s3"


def test_dense_repvgg_block_falls_out_of_the_same_code():
    """RepVGG's train-time block: dense 3x3 + dense 1x1 + identity, summed."""
    nodes, init, inputs = _branches(group=1, bn_after=False)
    [finding] = sepfix.check(_model(nodes, init, inputs=inputs))
    assert finding.details["kind"] == "dense"
    assert ops(_merged(_model(nodes, init, inputs=inputs))) == {"Conv": 1, "Relu": 1}


def test_depth_multiplier_and_stride_two_without_identity():
    """FastViT's patch embedding: depthwise 7x7 and 3x3 with multiplier 2 and stride 2."""
    nodes, init, inputs = _branches(k=7, multiplier=2, stride=(2, 2), identity=False, bn_after=False)
    repaired = _merged(_model(nodes, init, inputs=inputs))
    conv = next(n for n in repaired.graph.node if n.op_type == "Conv")
    assert support.attr(conv, "kernel_shape") == [7, 7] and support.attr(conv, "strides") == [2, 2] and support.attr(conv, "pads") == [3] * 4


def test_sub_mul_and_layer_scale_of_repmixer():
    """FastViT's RepMixer: x + gamma * ((conv3(x) + conv1(x) + BN1(x)) - BN2(x)), Identity between."""
    rng = np.random.default_rng(1)
    c = 8
    init = {"w3": rng.standard_normal((c, 1, 3, 3)), "b3": rng.standard_normal(c), "w1": rng.standard_normal((c, 1, 1, 1)),
            "gamma": rng.standard_normal((c, 1, 1))}
    for bn in ("n1", "n2"):
        init.update({f"{bn}_g": rng.uniform(0.5, 1.5, c), f"{bn}_b": rng.standard_normal(c),
                     f"{bn}_m": rng.standard_normal(c), f"{bn}_v": rng.uniform(0.5, 1.5, c)})
    nodes = [
        helper.make_node("Conv", ["x", "w3", "b3"], ["a"], name="mixer_conv3", group=c, pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w1"], ["b"], name="mixer_conv1", group=c),
        helper.make_node("BatchNormalization", ["x", "n1_g", "n1_b", "n1_m", "n1_v"], ["n1"], name="mixer_identity"),
        helper.make_node("Sum", ["a", "b", "n1"], ["mix"], name="mixer_sum"),
        helper.make_node("Identity", ["mix"], ["mix_id"], name="identity"),
        helper.make_node("BatchNormalization", ["x", "n2_g", "n2_b", "n2_m", "n2_v"], ["n2"], name="norm"),
        helper.make_node("Sub", ["mix_id", "n2"], ["d"], name="sub"),
        helper.make_node("Mul", ["gamma", "d"], ["scaled"], name="layer_scale"),
        helper.make_node("Add", ["x", "scaled"], ["y"], name="residual"),
    ]
    model = _model(nodes, init)
    [finding] = sepfix.check(model)
    assert finding.details["identity"] == 3 and finding.details["batchnorms"] == 2 and "summed by residual" in finding.message
    assert ops(_merged(model)) == {"Conv": 1}


def test_conv1d_branches():
    rng = np.random.default_rng(2)
    init = {"wk": rng.standard_normal((8, 1, 5)), "w1": rng.standard_normal((8, 1, 1)), "s": rng.standard_normal((8, 1))}
    nodes = [helper.make_node("Conv", ["x", "wk"], ["a"], name="k5", group=8, pads=[2, 2]),
             helper.make_node("Conv", ["x", "w1"], ["b"], name="k1", group=8),
             helper.make_node("Add", ["a", "b"], ["c"], name="sum"),
             helper.make_node("Div", ["c", "s"], ["y"], name="div")]
    assert ops(_merged(_model(nodes, init, rank=3))) == {"Conv": 1}


# -- negatives: nothing to merge -----------------------------------------------------------------


@pytest.mark.parametrize("variant, kwargs", [
    # 3x3 stride 1 beside 1x1 stride 2: not one conv (and not even one output size)
    ("different strides", {"one_stride": (2, 2), "identity": False}),
    # depthwise 3x3 beside a dense 1x1: no single group fits both
    ("different groups", {"one_group": 1, "identity": False}),
    # the 1x1 branch reads another tensor
    ("another input", {"one_input": "x2", "identity": False}),
    # the 3x3 window starts two rows/columns up-left: the 1x1 tap is not at its centre
    ("non-centred padding", {"pads": [2, 2, 0, 0], "identity": False}),
])
def test_branches_that_are_not_one_conv_stay_silent(variant, kwargs):
    nodes, init, inputs = _branches(**kwargs)
    assert sepfix.check(_model(nodes, init, inputs=inputs), advice=True) == [], variant


def test_one_conv_with_bn_or_affine_is_not_multi_branch():
    rng = np.random.default_rng(3)
    init = {"w": rng.standard_normal((8, 1, 3, 3)), "g": np.ones(8), "b": np.zeros(8), "m": np.zeros(8), "v": np.ones(8)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="dw", group=8, pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["a", "g", "b", "m", "v"], ["y"], name="bn")]
    assert sepfix.check(_model(nodes, init), advice=True) == []


def test_product_of_branches_and_runtime_weights_stay_silent():
    rng = np.random.default_rng(4)
    init = {"wk": rng.standard_normal((8, 1, 3, 3)), "w1": rng.standard_normal((8, 1, 1, 1))}
    product = [helper.make_node("Conv", ["x", "wk"], ["a"], name="k3", group=8, pads=[1, 1, 1, 1]),
               helper.make_node("Conv", ["x", "w1"], ["b"], name="k1", group=8),
               helper.make_node("Mul", ["a", "b"], ["y"], name="gate")]
    assert sepfix.check(_model(product, init), advice=True) == []
    runtime = [helper.make_node("Conv", ["x", "wk"], ["a"], name="k3", group=8, pads=[1, 1, 1, 1]),
               helper.make_node("Conv", ["x", "w_in"], ["b"], name="k1", group=8),
               helper.make_node("Add", ["a", "b"], ["y"], name="sum")]
    model = _model(runtime, {"wk": init["wk"]})
    model.graph.input.append(helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [8, 1, 1, 1]))
    assert sepfix.check(model, advice=True) == []


def test_branch_read_elsewhere_is_not_merged():
    """The 1x1 branch's output also feeds the graph output: merging would lose it."""
    nodes, init, inputs = _branches(identity=False, bn_after=False)
    model = _model(nodes, init, inputs=inputs)
    model.graph.output.append(helper.make_tensor_value_info("t1", TensorProto.FLOAT, None))
    assert sepfix.check(model, advice=True) == []
