"""SEP008 detached-bias, grown into a detached affine: per-channel Mul/Add/Sub/Div after a conv
(either order, Identity nodes between), folded into the conv's weight and bias.

Real exports (tests/data/real/): Keras 3 through tf2onnx (BN after depthwise convs as Mul + Add;
the real-tf branch), paddle2onnx PaddleOCR (bias Adds, learnable affine; the real-paddle branch),
timm FastViT (layer scale; the real-torch branch). The counts below come from reading the graphs.
Levels: info where ONNX Runtime folds the chain itself (Conv, then Add/Mul with a (C,1,1) or
(1,C,1,1) constant second, or a () scalar Mul), warning otherwise.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
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


# -- manglers ------------------------------------------------------------------------------------


def _block_convs(graph: onnx.GraphProto, values: dict) -> list[onnx.NodeProto]:
    """Depthwise and pointwise convs with a constant weight and bias."""
    found = []
    for node in graph.node:
        if node.op_type != "Conv" or len(node.input) < 3 or node.input[1] not in values or node.input[2] not in values:
            continue
        shape = values[node.input[1]].shape
        group = support.attr(node, "group", 1)
        if (group > 1 and shape[1] == 1) or (group == 1 and all(k == 1 for k in shape[2:])):
            found.append(node)
    return found


def _affine(model: onnx.ModelProto, style: str, nodes=None, seed: int = 0) -> onnx.ModelProto:
    """Move part of each depthwise/pointwise conv's arithmetic into ops after it, so that the
    model computes the same (up to float rounding):

    - "detached": Conv(x, W) -> Add(b as (1,C,1,1)) (TF's BiasAdd; info)
    - "unfolded_bn": Conv(x, W/s) -> Mul(s (1,C,1,1)) -> Add(b (1,C,1,1)) (Keras 3; info)
    - "learnable_affine": Conv(x, W/g, (b-h)/g) -> Identity -> Mul(g (1,), .) -> Identity ->
      Add(h (1,)) (paddle2onnx's LearnableAffineBlock, constant first; warning)
    - "sub_div": Conv(x, W*d, (b+c)*d) -> Div(d (1,C,1,1)) -> Sub(c (1,C,1,1)) (warning)

    `nodes` limits it to the convs of those names.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    rng = np.random.default_rng(seed)
    values = support.constants(graph)
    fresh = NameSource.for_model(out)

    def constant(base: str, value: np.ndarray) -> str:
        name = fresh(base)
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    convs = [c for c in _block_convs(graph, values) if nodes is None or c.name in nodes]
    if not convs:
        raise ValueError("no depthwise or pointwise conv with a constant weight and bias")
    after: dict[int, list[onnx.NodeProto]] = {}
    dropped = set()
    for conv in convs:
        w = values[conv.input[1]].astype(np.float64)
        b = values[conv.input[2]].astype(np.float64)
        c = w.shape[0]
        per_out = (-1,) + (1,) * (w.ndim - 1)
        base, output = conv.name or fresh("conv"), conv.output[0]
        dropped |= {conv.input[1], conv.input[2]}
        del conv.input[1:]
        conv.output[0] = fresh(f"{base}_out")
        chain: list[onnx.NodeProto] = []
        channel = (1, c) + (1,) * (w.ndim - 2)
        if style == "detached":
            conv.input.append(constant(f"{base}_weight", w))
            chain.append(helper.make_node("Add", [conv.output[0], constant(f"{base}_bias", b.reshape(channel))], [output],
                                          name=fresh(f"{base}_bias_add")))
        elif style == "unfolded_bn":
            s = rng.uniform(0.5, 2.0, c) * rng.choice([-1, 1], c)
            conv.input.append(constant(f"{base}_weight", w / s.reshape(per_out)))
            scaled = fresh(f"{base}_scaled")
            chain.append(helper.make_node("Mul", [conv.output[0], constant(f"{base}_bn_scale", s.reshape(channel))], [scaled],
                                          name=fresh(f"{base}_bn_mul")))
            chain.append(helper.make_node("Add", [scaled, constant(f"{base}_bn_shift", b.reshape(channel))], [output],
                                          name=fresh(f"{base}_bn_add")))
        elif style == "learnable_affine":
            g, h = float(rng.uniform(0.5, 2.0)), float(rng.standard_normal())
            conv.input.extend([constant(f"{base}_weight", w / g), constant(f"{base}_bias", (b - h) / g)])
            names = [fresh(f"{base}_{k}") for k in ("cast", "scaled", "scaled_cast")]
            chain += [helper.make_node("Identity", [conv.output[0]], [names[0]], name=fresh(f"{base}_identity")),
                      helper.make_node("Mul", [constant(f"{base}_lab_scale", [g]), names[0]], [names[1]], name=fresh(f"{base}_lab_mul")),
                      helper.make_node("Identity", [names[1]], [names[2]], name=fresh(f"{base}_identity")),
                      helper.make_node("Add", [names[2], constant(f"{base}_lab_bias", [h])], [output], name=fresh(f"{base}_lab_add"))]
        elif style == "sub_div":
            d = rng.uniform(0.5, 2.0, c)
            k = rng.standard_normal(c)
            conv.input.extend([constant(f"{base}_weight", w * d.reshape(per_out)), constant(f"{base}_bias", (b + k) * d)])
            divided = fresh(f"{base}_divided")
            chain.append(helper.make_node("Div", [conv.output[0], constant(f"{base}_div", d.reshape(channel))], [divided],
                                          name=fresh(f"{base}_div")))
            chain.append(helper.make_node("Sub", [divided, constant(f"{base}_sub", k.reshape(channel))], [output],
                                          name=fresh(f"{base}_sub")))
        else:
            raise ValueError(style)
        after[id(conv)] = chain
    nodes = []
    for node in graph.node:
        nodes.append(node)
        nodes.extend(after.get(id(node), []))
    del graph.node[:]
    graph.node.extend(nodes)
    support.drop_unused(graph, dropped)
    return out


def detached_bias(model, nodes=None):
    return _affine(model, "detached", nodes)


def unfolded_bn(model, nodes=None):
    return _affine(model, "unfolded_bn", nodes)


def learnable_affine(model, nodes=None):
    return _affine(model, "learnable_affine", nodes)


def sub_div(model, nodes=None):
    return _affine(model, "sub_div", nodes)


# The round trip (tests/rules/test_round_trip.py) must look with advice=True: the first two are
# info-level findings (ONNX Runtime folds them), still repaired.
MANGLES = {"detached": detached_bias, "unfolded_bn": unfolded_bn, "learnable_affine": learnable_affine,
           "sub_div": sub_div}
LEVELS = {"detached": "info", "unfolded_bn": "info", "learnable_affine": "warning", "sub_div": "warning"}


def _sample() -> onnx.ModelProto:
    """SEP008: DW/PW conv biases and scales moved into a PaddleOCR-style learnable affine after the conv (Identity -> Mul(g (1,), x) -> Identity -> Add (1,)), which ONNX Runtime does not fold (warning)."""
    # not the plain bias Add: that one is info (ONNX Runtime folds it), and `sepfix check
    # sample_models/*.onnx` shows every rule's sample without --advice
    return learnable_affine(builders.mobilenet_like(channels=(8, 16), spatial=16))


SAMPLES = {"sep008_detached_bias": _sample}


# -- helpers -------------------------------------------------------------------------------------


def compute_ops(model: onnx.ModelProto) -> Counter:
    """Ops of the nodes that read an activation (not those that only pass constants on:
    Constant nodes, torch's Identity of an initializer)."""
    constant = {t.name for t in model.graph.initializer}
    counts = Counter()
    for n in model.graph.node:
        if all(i in constant for i in n.input if i):
            constant.update(n.output)
        else:
            counts[n.op_type] += 1
    return counts


def blocks(model: onnx.ModelProto) -> int:
    return len(check_loaded(model_io.from_proto(model), select_rules()).blocks)


def sep008(model: onnx.ModelProto):
    return sepfix.check(model, select=["SEP008"], advice=True)


def repaired_and_proven(model: onnx.ModelProto, input_shapes=None) -> onnx.ModelProto:
    repaired, report = sepfix.repair(model, select=["SEP008"], input_shapes=input_shapes)
    assert report.validation is not None and report.validation.passed, report.message
    again, second = sepfix.repair(repaired, select=["SEP008"], input_shapes=input_shapes)
    assert again is repaired and not second.fixes, "a second repair must change nothing"
    assert sep008(repaired) == []
    return repaired


def chain_outputs_equal(model, repaired, findings, feeds, rtol=1e-4) -> None:
    """The value each folded chain wrote (its name survives, now written by the conv), relative
    to its magnitude (random-weight networks grow large activations)."""
    import onnxruntime as ort

    names = [f.match.roles["chain"][-1].node.output[0] for f in findings]

    def values(m):
        exposed = onnx.ModelProto()
        exposed.CopyFrom(m)
        have = {o.name for o in exposed.graph.output}
        exposed.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names if n not in have)
        session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
        return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))

    before, after = values(model), values(repaired)
    for name in names:
        scale = max(1.0, float(np.max(np.abs(before[name]))))
        np.testing.assert_allclose(after[name], before[name], rtol=0, atol=rtol * scale, err_msg=name)


def load(tool: str, name: str) -> onnx.ModelProto:
    path = REAL / tool / name
    assert path.exists(), f"{path} is missing (it comes from the real-{tool} branch)"
    return onnx.load(str(path))


# -- manglers round trip -------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(MANGLES))
@pytest.mark.parametrize("source", ["helper", "torch-legacy", "torch-dynamo"])
def test_round_trip_on_every_clean_source(clean_models, source, variant):
    clean = clean_models[source]
    mangled = MANGLES[variant](clean)
    onnx.checker.check_model(mangled)
    for a, b in zip(run_model(clean), run_model(mangled)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
    findings = sepfix.check(mangled, advice=True)
    assert findings and {f.code for f in findings} == {"SEP008"}
    assert {f.severity for f in findings} == {LEVELS[variant]}
    assert all(f.fixable and f.nodes[0] == f.node for f in findings)
    # the default check fails only on what costs: info findings are advice
    assert [f.code for f in sepfix.check(mangled)] == (["SEP008"] * len(findings) if LEVELS[variant] == "warning" else [])
    repaired = repaired_and_proven(mangled)
    assert ops(repaired) == ops(clean) and blocks(repaired) == blocks(clean)
    for a, b in zip(run_model(clean), run_model(repaired)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


# -- real exports --------------------------------------------------------------------------------

# (file, input shape for the proof, SEP008 findings by level, blocks after the repair: None where
# the count depends on how far the pattern layer sees between the convs, not on this rule)
REAL_CASES = {
    # Keras 3: every depthwise conv's BN as Mul(1,C,1,1) -> Add(1,C,1,1) (ORT folds: info); once
    # folded, every depthwise conv heads a block. MobileNetV3-Small's 9 squeeze-excite convs add
    # hard-sigmoid's +3 as an Add of a (1,1,1,1): ORT keeps it, and it keeps ORT from fusing the
    # conv with its Clip (measured 1.07-1.16x for the model): warning.
    "k3_mobilenetv2": ("tf", "k3_mobilenetv2.onnx", None, {"info": 14}, 14),
    "k3_efficientnet": ("tf", "k3_efficientnet.onnx", None, {"info": 7}, 7),
    "k3_mobilenetv3small": ("tf", "k3_mobilenetv3small.onnx", None, {"info": 11, "warning": 9}, 11),
    # PaddleOCR cls: bias Adds after bias-free convs (1,C,1,1): info (issue 13: 1.00x); 11 blocks
    "ppocr_cls": ("paddle", "ppocr_cls_p2o2.onnx", None, {"info": 18}, 11),
    # PP-OCRv4 det, rep() form, paddle2onnx 2: 30 convs followed by [bias Add] -> Identity ->
    # Mul((1,) first) -> Identity -> Add((1,)) (the learnable affine: ORT keeps it: warning), 24
    # bias Adds alone (info); paddle2onnx 1: the affine without the bias Adds.
    "ppocrv4_det_p2o2": ("paddle", "ppocrv4_det_p2o2.onnx", [1, 3, 160, 160], {"info": 24, "warning": 30}, None),
    "ppocrv4_det_p2o1": ("paddle", "ppocrv4_det_p2o1.onnx", [1, 3, 160, 160], {"warning": 30}, None),
    "ppocrv4_rec_p2o2": ("paddle", "ppocrv4_rec_p2o2.onnx", [1, 3, 48, 64], {"info": 4, "warning": 28}, None),
    # timm FastViT: the MLP's layer scale Mul(gamma (C,1,1)) after its second pointwise conv: info
    "timm_fastvit_reparam": ("torch", "timm_fastvit_reparam.onnx", None, {"info": 4}, None),
}


@pytest.mark.parametrize("name", list(REAL_CASES))
def test_real_exports(name):
    tool, file, shape, levels, blocks_after = REAL_CASES[name]
    model = load(tool, file)
    findings = sep008(model)
    assert Counter(f.severity for f in findings) == levels
    assert all(f.fixable for f in findings)
    assert [f for f in sepfix.check(model, select=["SEP008"])] == [f for f in findings if f.severity == "warning"]
    input_name = model.graph.input[0].name
    repaired = repaired_and_proven(model, input_shapes={input_name: shape} if shape else None)
    assert blocks(repaired) >= blocks(model)
    if blocks_after is not None:
        assert blocks(repaired) == blocks_after
    assert ops(repaired)["Conv"] == ops(model)["Conv"]
    # exactly the chains' nodes are gone (and nodes that only held folded constants)
    folded = Counter(n.op for f in findings for n in f.match.roles["chain"])
    assert compute_ops(model) - compute_ops(repaired) == folded
    dims = shape or [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    feeds = {input_name: np.random.default_rng(0).standard_normal(dims).astype(np.float32)}
    chain_outputs_equal(model, repaired, findings, feeds)


def test_keras3_unfolded_bn_reads_as_mul_then_add():
    model = load("tf", "k3_mobilenetv2.onnx")
    [first, *_] = sep008(model)
    assert first.details["ops"] == ["Mul", "Add"] and first.details["shapes"] == [[1, 16, 1, 1], [1, 16, 1, 1]]
    assert first.details["folded_by_onnxruntime"] is True and "Mul (1, 16, 1, 1) -> Add (1, 16, 1, 1)" in first.message


def test_paddle_learnable_affine_is_a_warning_with_its_identities():
    model = load("paddle", "ppocrv4_det_p2o1.onnx")
    finding = next(f for f in sep008(model) if f.node == "Conv.8")
    assert finding.severity == "warning" and finding.details["ops"] == ["Mul", "Add"]
    assert finding.details["shapes"] == [[1], [1]] and "does not fold" in finding.message
    chain_ops = [n.op for n in finding.match.roles["chain"]]
    assert chain_ops[-1] == "Add" and "Mul" in chain_ops


def test_multi_branch_convs_are_left_to_sep013():
    """timm MobileOne train-time: `0 + conv(x)` scalar Adds inside the branches' sum are part of
    SEP013's sum, not a detached bias."""
    model = load("torch", "timm_mobileone_train.onnx")
    assert sep008(model) == []
    assert {f.code for f in sepfix.check(model)} == {"SEP013"}


# -- hand-built ----------------------------------------------------------------------------------


def _one_conv(chain, c=8, size=6, op="Conv", group=1, weight_input=False, bias=True, seed=0):
    """x -> conv -> chain of (op, constant value or None for a runtime input, constant first) -> y."""
    rng = np.random.default_rng(seed)
    if op == "Conv":
        weight = rng.standard_normal((c, c // group, 3, 3))
    else:
        weight = rng.standard_normal((c, c // group, 3, 3))  # ConvTranspose: (C_in, C_out/group, k, k)
    inits = {"w": weight}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(c)
        inputs.append("b")
    nodes = [helper.make_node(op, inputs, ["t0"], name="conv", group=group, pads=[1, 1, 1, 1])]
    extra_inputs = []
    for i, (kind, value, first) in enumerate(chain):
        if kind == "Identity":
            nodes.append(helper.make_node("Identity", [f"t{i}"], [f"t{i + 1}"], name=f"id{i}"))
            continue
        name = f"c{i}"
        if value is None:
            extra_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, 1, 1]))
        else:
            inits[name] = np.asarray(value)
        nodes.append(helper.make_node(kind, [name, f"t{i}"] if first else [f"t{i}", name], [f"t{i + 1}"], name=f"{kind.lower()}{i}"))
    nodes.append(helper.make_node("Relu", [f"t{len(chain)}"], ["y"], name="relu"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, size, size])] + extra_inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    if weight_input:
        graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, list(weight.shape)))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


R = np.random.default_rng(7)
PER_CHANNEL = (R.uniform(0.5, 2.0, (1, 8, 1, 1)) * R.choice([-1, 1], (1, 8, 1, 1)))


@pytest.mark.parametrize("chain, level, remaining", [
    ([("Add", PER_CHANNEL, False)], "info", {"Conv": 1, "Relu": 1}),
    ([("Mul", PER_CHANNEL, False), ("Add", PER_CHANNEL.reshape(8, 1, 1), False)], "info", {"Conv": 1, "Relu": 1}),
    ([("Add", PER_CHANNEL, False), ("Mul", PER_CHANNEL, False)], "info", {"Conv": 1, "Relu": 1}),
    ([("Mul", np.array(1.7), False)], "info", {"Conv": 1, "Relu": 1}),
    ([("Mul", PER_CHANNEL, True)], "warning", {"Conv": 1, "Relu": 1}),
    ([("Sub", PER_CHANNEL, False)], "warning", {"Conv": 1, "Relu": 1}),
    ([("Sub", PER_CHANNEL, True)], "warning", {"Conv": 1, "Relu": 1}),  # c - conv: the scale flips
    ([("Div", PER_CHANNEL, False)], "warning", {"Conv": 1, "Relu": 1}),
    ([("Identity", None, False), ("Mul", np.array([1.5]), True), ("Identity", None, False), ("Add", np.array([0.3]), False)],
     "warning", {"Conv": 1, "Relu": 1}),
    # a full-size Add ends the chain: the Mul before it folds, the Add stays
    ([("Mul", PER_CHANNEL, False), ("Add", R.standard_normal((1, 8, 6, 6)), False)], "info", {"Conv": 1, "Add": 1, "Relu": 1}),
])
def test_chains_fold_and_say_whether_onnxruntime_would(chain, level, remaining):
    model = _one_conv(chain)
    [finding] = sep008(model)
    assert finding.severity == level and finding.node == "conv"
    repaired = repaired_and_proven(model)
    assert ops(repaired) == remaining
    for a, b in zip(run_model(model), run_model(repaired)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_any_conv_grouped_dense_and_transposed():
    for kwargs in ({"group": 2}, {"op": "ConvTranspose", "group": 2}, {"op": "ConvTranspose", "bias": False}):
        model = _one_conv([("Mul", PER_CHANNEL, False), ("Add", PER_CHANNEL, False)], **kwargs)
        [finding] = sep008(model)
        expected = "info" if kwargs.get("op", "Conv") == "Conv" else "warning"
        assert finding.severity == expected, kwargs
        repaired = repaired_and_proven(model)
        for a, b in zip(run_model(model), run_model(repaired)):
            np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("variant, chain, kwargs", [
    # an affine that is not per-channel: a full-tensor constant
    ("full-tensor Add", [("Add", R.standard_normal((1, 8, 6, 6)), False)], {}),
    # a scale that is a runtime tensor
    ("runtime scale", [("Mul", None, False)], {}),
    # constants that broadcast over H or W
    ("Mul over W (C,)", [("Mul", R.standard_normal(6), False)], {"c": 6}),
    ("Mul over H (1,1,H,1)", [("Mul", R.standard_normal((1, 1, 6, 1)), False)], {}),
    ("Add over H,W (H,W)", [("Add", R.standard_normal((6, 6)), False)], {}),
    # not affine in the conv
    ("c / conv", [("Div", PER_CHANNEL, True)], {}),
    ("division by zero", [("Div", np.zeros((1, 8, 1, 1)), False)], {}),
    # a scale needs a weight it may change: not a graph input
    ("weight fed at run time", [("Mul", PER_CHANNEL, False)], {"weight_input": True}),
])
def test_negatives_stay_silent(variant, chain, kwargs):
    assert sep008(_one_conv(chain, **kwargs)) == [], variant


def test_conv_read_elsewhere_is_not_folded():
    model = _one_conv([("Add", PER_CHANNEL, False)])
    model.graph.output.append(helper.make_tensor_value_info("t0", TensorProto.FLOAT, None))
    assert sep008(model) == []


def test_manglers_take_node_names_and_need_a_bias():
    model = learnable_affine(builders.separable_block(), nodes=["pw_conv"])
    [finding] = sepfix.check(model)
    assert finding.node == "pw_conv" and finding.severity == "warning"
    with pytest.raises(ValueError, match="no depthwise or pointwise"):
        detached_bias(builders.separable_block(bias=False))


def test_sample_fails_the_default_check():
    findings = sepfix.check(_sample())
    assert findings and {(f.code, f.severity) for f in findings} == {("SEP008", "warning")}


def test_batchnorm_after_a_depthwise_conv_is_left_alone():
    """Every runtime fuses Conv -> BatchNormalization: not SEP008's business."""
    assert sep008(builders.mobilenet_like()) == []
