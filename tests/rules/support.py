"""What the rule test modules share: reading a model back (attributes, producers, which convs
are depthwise or pointwise, judged independently of the code under test) and comparing what
two models compute."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import onnx

import sepfix
from onnx import helper, numpy_helper

from sepfix import model_io
from sepfix.checker import check_loaded
from sepfix.rules import select_rules
from sepfix.testing import builders
from tests.conftest import run_model

RTOL, ATOL = 1e-4, 1e-5


def sample_clean() -> onnx.ModelProto:
    """The clean model every sample of sample_models/ is made from (clean_mobilenet.onnx)."""
    return builders.mobilenet_like(channels=(8, 16), spatial=16)


def described(make: Callable[[], onnx.ModelProto], description: str) -> Callable[[], onnx.ModelProto]:
    """A sample maker whose docstring is `description`: the line scripts/make_samples.py writes
    beside the file in sample_models/README.md."""

    def sample() -> onnx.ModelProto:
        return make()

    sample.__doc__ = description
    return sample


def mangled_sample(mangler: Callable[[onnx.ModelProto], onnx.ModelProto], description: str):
    """A sample: `mangler` applied to `sample_clean()`, described by `description`."""
    return described(lambda: mangler(sample_clean()), description)


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {out: n for n in model.graph.node for out in n.output}


def consumers(model: onnx.ModelProto, tensor: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    (found,) = [n for n in model.graph.node if n.name == name]
    return found


def ops(model: onnx.ModelProto) -> Counter:
    return Counter(n.op_type for n in model.graph.node)


def blocks(model: onnx.ModelProto) -> list[tuple[str, str]]:
    """(depthwise, pointwise) node names of the depthwise-separable blocks `check` reports."""
    result = check_loaded(model_io.from_proto(model), select_rules(advice=True), advice=True)
    return [(b.to_dict()["depthwise"], b.to_dict()["pointwise"]) for b in result.blocks]


def convs_by_kind(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    """Names of depthwise and pointwise convs, judged independently of the code under test."""
    weights = initializers(model)
    depthwise, pointwise = [], []
    for n in model.graph.node:
        if n.op_type != "Conv" or n.input[1] not in weights:
            continue
        w, group = weights[n.input[1]], attrs(n).get("group", 1)
        if group > 1 and w.shape[1] == 1 and w.shape[2:] != (1, 1):
            depthwise.append(n.name)
        elif group == 1 and w.shape[2:] == (1, 1):
            pointwise.append(n.name)
    return depthwise, pointwise


def run(model: onnx.ModelProto, extra_outputs: list[str] = (), seed: int = 0) -> list[np.ndarray]:
    """onnxruntime outputs on seeded inputs (symbolic dims: batch 2, others 16), plus the
    values of `extra_outputs` (intermediate tensors) after the graph outputs."""
    if extra_outputs:
        exposed = onnx.ModelProto()
        exposed.CopyFrom(model)
        exposed.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in extra_outputs)
        model = exposed
    return run_model(model, seed=seed, batch=2, size=16)


def assert_same_on_batch(a: onnx.ModelProto, b: onnx.ModelProto, batch: int = 1, atol: float = 1e-5) -> float:
    """Outputs equal on two seeded input sets (every symbolic dimension `batch`); returns the
    largest difference seen."""
    worst = 0.0
    for seed in (0, 1):
        left, right = (run_model(m, seed=seed, batch=batch, size=batch) for m in (a, b))
        for x, y in zip(left, right, strict=True):
            np.testing.assert_allclose(x, y, rtol=1e-4, atol=atol)
            worst = max(worst, float(np.max(np.abs(x - y))) if x.size else 0.0)
    return worst


def assert_same_function(expected: onnx.ModelProto, actual: onnx.ModelProto, rtol=RTOL, atol=ATOL) -> None:
    for want, got in zip(run(expected), run(actual), strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def with_weights_seen_by_convs(clean: onnx.ModelProto, mangled: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """The clean model with these convs' weights replaced by what the mangled convs receive.

    For manglers that move the numbers on purpose (fp16 cast, int8 DequantizeLinear): the
    mangled model must equal the clean one with the rounded weights, read from onnxruntime.
    """
    weight_tensors = [node(mangled, name).input[1] for name in names]
    seen = run(mangled, weight_tensors)[len(mangled.graph.output):]
    reference = onnx.ModelProto()
    reference.CopyFrom(clean)
    tensors = {t.name: t for t in reference.graph.initializer}
    for name, value in zip(names, seen, strict=True):
        weight = node(reference, name).input[1]
        tensors[weight].CopyFrom(numpy_helper.from_array(value, weight))
    return reference


def assert_named(clean: onnx.ModelProto, mangled: onnx.ModelProto) -> None:
    """Every node named once, IR version and opsets kept."""
    names = [n.name for n in mangled.graph.node]
    assert all(names), "every node must be named"
    assert len(names) == len(set(names)), "node names must be unique"
    assert mangled.ir_version == clean.ir_version
    assert list(mangled.opset_import) == list(clean.opset_import)


def assert_valid_and_named(clean: onnx.ModelProto, mangled: onnx.ModelProto) -> None:
    onnx.checker.check_model(mangled, full_check=True)
    assert_named(clean, mangled)


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Constant tensors by name: initializers, Constant nodes, and Identity nodes of either
    (torch.onnx writes those for deduplicated constants)."""
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def drop_unused(graph: onnx.GraphProto, dropped: set[str]) -> None:
    """Remove the replaced constants no node reads any more (with the Constant/Identity nodes
    that held them)."""
    while True:
        read = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        gone = [n for n in graph.node if n.op_type in ("Constant", "Identity") and n.output[0] in dropped
                and n.output[0] not in read]
        if not gone:
            break
        for node in gone:
            dropped |= {i for i in node.input if i}
            graph.node.remove(node)
    read = {i for n in graph.node for i in n.input}
    keep = [t for t in graph.initializer if t.name not in dropped or t.name in read]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def repaired(model: onnx.ModelProto, **options):
    """sepfix.repair with its proof, which must pass with verdict PASSED, and idempotent."""
    fixed, report = sepfix.repair(model, **options)
    assert report.validation is not None and report.validation.passed, report.to_text()
    assert report.verdict == "PASSED", report.to_text()
    again, second = sepfix.repair(fixed, **options)
    assert second.fixes == [] and again is fixed, "repairing the repaired model changes nothing"
    return fixed, report
