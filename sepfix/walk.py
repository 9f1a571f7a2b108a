"""The one walk over a model's graph bodies: the main graph, If/Loop/Scan subgraphs at any
depth, and model-local functions. Everything that visits "every node" or "every graph" uses it.
"""

from __future__ import annotations

from typing import Iterator, Union

import onnx

Body = Union[onnx.GraphProto, onnx.FunctionProto]


def subgraphs(node: onnx.NodeProto) -> Iterator[tuple[onnx.AttributeProto, int, onnx.GraphProto]]:
    """(attribute, position, graph) for each graph a node's attributes hold."""
    for attribute in node.attribute:
        if attribute.type == onnx.AttributeProto.GRAPH:
            yield attribute, 0, attribute.g
        elif attribute.type == onnx.AttributeProto.GRAPHS:
            for position, graph in enumerate(attribute.graphs):
                yield attribute, position, graph


def graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """`graph` and every subgraph nested in it, outer first."""
    yield graph
    for node in graph.node:
        for _, _, sub in subgraphs(node):
            yield from graphs(sub)


def bodies(model: onnx.ModelProto) -> Iterator[Body]:
    """Every graph of the model with its subgraphs, then every function with its subgraphs."""
    yield from graphs(model.graph)
    for function in model.functions:
        yield function
        for node in function.node:
            for _, _, sub in subgraphs(node):
                yield from graphs(sub)


def nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    for body in bodies(model):
        yield from body.node


def tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Initializers and attribute tensors of a graph and its subgraphs (not sparse ones)."""
    for body in graphs(graph):
        yield from body.initializer
        for node in body.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
