"""Fresh names: the one source of unique node and tensor names (rewrites, builders, manglers).

TensorRT names an unnamed node `node_of_<output>`, and its layer names are how a user reads
what was fused, so every node sepfix makes gets a name nobody else in the model has.
"""

from __future__ import annotations

import onnx

from sepfix import walk


def used_names(model: onnx.ModelProto) -> set[str]:
    """Every node, tensor, input, output and value_info name anywhere in the model."""
    names: set[str] = set()
    for body in walk.bodies(model):
        if isinstance(body, onnx.GraphProto):
            names.update(t.name for t in body.initializer)
            names.update(v.name for v in list(body.input) + list(body.output) + list(body.value_info))
        else:
            names.update(body.input)
            names.update(body.output)
        for node in body.node:
            names.add(node.name)
            names.update(node.input)
            names.update(node.output)
    names.discard("")
    return names


class NameSource:
    """Hands out names not yet used, `base`, then `base_1`, `base_2` ..."""

    def __init__(self, taken: set[str] | None = None):
        self.taken = set(taken or ())

    @classmethod
    def for_model(cls, model: onnx.ModelProto) -> "NameSource":
        return cls(used_names(model))

    def __call__(self, base: str) -> str:
        name, counter = base, 1
        while name in self.taken or not name:
            name = f"{base}_{counter}"
            counter += 1
        self.taken.add(name)
        return name
