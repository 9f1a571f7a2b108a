"""ONNX models whose node names match the real TensorRT logs in ``tests/data/trt-logs/``.

A build log names ONNX nodes, not the model: to map a real log's layers back to blocks, the test
needs a model with the same node names and the same wiring. These builders write that model with
onnx.helper (random weights), from what the log itself says: every ``Layer(...)`` line gives the
fused nodes, the input and output channels (tensor shapes) and which tensor feeds which layer.
What the log does not say (kernel sizes of the non-depthwise convs after the backbone, padding)
is chosen here and marked so. The spatial size is scaled down 8x from the log's 512x768 to keep
the numeric checks fast; node names and wiring do not depend on it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DATA = Path(__file__).resolve().parent / "data" / "trt-logs"
FPN_MOBILENETV2_LOG = DATA / "trtexec_fpn_mobilenetv2_int8_build.log"

# The 13 depthwise-separable blocks of trtexec_fpn_mobilenetv2_int8_build.log, as its layers
# show them: (depthwise conv, its fused Clip, channels, pointwise conv, residual Add or None).
FPN_MOBILENETV2_BLOCKS = (
    ("Conv_4", "Clip_7", 32, "Conv_8", None),
    ("Conv_13", "Clip_16", 96, "Conv_17", None),
    ("Conv_22", "Clip_25", 144, "Conv_26", "Add_27"),
    ("Conv_32", "Clip_35", 144, "Conv_36", None),
    ("Conv_41", "Clip_44", 192, "Conv_45", "Add_46"),
    ("Conv_51", "Clip_54", 192, "Conv_55", "Add_56"),
    ("Conv_61", "Clip_64", 192, "Conv_65", None),
    ("Conv_70", "Clip_73", 384, "Conv_74", "Add_75"),
    ("Conv_80", "Clip_83", 384, "Conv_84", "Add_85"),
    ("Conv_90", "Clip_93", 384, "Conv_94", "Add_95"),
    ("Conv_100", "Clip_103", 384, "Conv_104", None),
    ("Conv_109", "Clip_112", 576, "Conv_113", "Add_114"),
    ("Conv_119", "Clip_122", 576, "Conv_123", "Add_124"),
)


class _Builder:
    """Nodes named the way torch.onnx (opset 11-13, 2022) names them: ``<Op>_<index>``, one index
    per node in graph order, Clip bounds as two Constant nodes before the Clip."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.index = 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def _name(self, op: str) -> str:
        name = f"{op}_{self.index}"
        self.index += 1
        return name

    def conv(self, x: str, c_in: int, c_out: int, k: int = 1, stride: int = 1, group: int = 1) -> str:
        name = self._name("Conv")
        w = (self.rng.standard_normal((c_out, c_in // group, k, k)) * (1.0 / np.sqrt(c_in // group * k * k)))
        b = self.rng.standard_normal(c_out) * 0.1
        self.inits += [numpy_helper.from_array(w.astype(np.float32), f"{name}.weight"),
                       numpy_helper.from_array(b.astype(np.float32), f"{name}.bias")]
        out = f"{name}_out"
        self.nodes.append(helper.make_node(
            "Conv", [x, f"{name}.weight", f"{name}.bias"], [out], name=name, group=group,
            kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, dilations=[1, 1]))
        return out

    def clip(self, x: str) -> str:
        bounds = []
        for value in (0.0, 6.0):
            name = self._name("Constant")
            bounds.append(f"{name}_out")
            self.nodes.append(helper.make_node(
                "Constant", [], [f"{name}_out"], name=name,
                value=numpy_helper.from_array(np.array(value, np.float32))))
        name = self._name("Clip")
        self.nodes.append(helper.make_node("Clip", [x, *bounds], [f"{name}_out"], name=name))
        return f"{name}_out"

    def relu(self, x: str) -> str:
        name = self._name("Relu")
        self.nodes.append(helper.make_node("Relu", [x], [f"{name}_out"], name=name))
        return f"{name}_out"

    def add(self, a: str, b: str) -> str:
        name = self._name("Add")
        self.nodes.append(helper.make_node("Add", [a, b], [f"{name}_out"], name=name))
        return f"{name}_out"


def fpn_mobilenetv2(height: int = 64, width: int = 96, seed: int = 0) -> onnx.ModelProto:
    """The network of trtexec_fpn_mobilenetv2_int8_build.log (Conv_0 ... Relu_137).

    A MobileNetV2 backbone (stem, 13 inverted-residual blocks up to 96 channels, BN folded into
    the convs as the log's layer names show: no BatchNormalization nodes) and the start of the
    head the log shows before the blog cut it (Conv_125 ... Relu_137, Add_133). Channels,
    strides (from the tensor shapes) and residual inputs are the log's; the head's kernel sizes
    (1x1 for Conv_125/127/131/134, 3x3 for Conv_126/129/136) are this builder's choice.
    """
    b = _Builder(seed)
    x = b.clip(b.conv("inputs", 3, 32, 3, stride=2))                          # Conv_0, Clip_3
    x = b.conv(b.clip(b.conv(x, 32, 32, 3, group=32)), 32, 16)                # Conv_4, Clip_7, Conv_8
    # (expansion, c_out, repeats, first stride) per stage, as the log's shapes show.
    c = 16
    for expansion, c_out, repeats, stride in ((6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1)):
        for i in range(repeats):
            hidden = c * expansion
            y = b.clip(b.conv(x, c, hidden))                                   # expand 1x1
            y = b.clip(b.conv(y, hidden, hidden, 3, stride=stride if i == 0 else 1, group=hidden))
            y = b.conv(y, hidden, c_out)                                       # project 1x1
            x = b.add(y, x) if i > 0 else y
            c = c_out
    x = b.conv(x, 96, 128)                                                     # Conv_125
    skip = b.conv(x, 128, 128, 3)                                              # Conv_126
    y = b.relu(b.conv(skip, 128, 64))                                          # Conv_127, Relu_128
    y = b.relu(b.conv(y, 64, 64, 3))                                           # Conv_129, Relu_130
    y = b.relu(b.conv(y, 64, 128))                                             # Conv_131, Relu_132
    x = b.add(skip, y)                                                         # Add_133
    x = b.relu(b.conv(x, 128, 64))                                             # Conv_134, Relu_135
    x = b.relu(b.conv(x, 64, 64, 3))                                           # Conv_136, Relu_137
    assert b.nodes[-1].name == "Relu_137", b.nodes[-1].name
    graph = helper.make_graph(
        b.nodes, "fpn_mobilenetv2",
        [helper.make_tensor_value_info("inputs", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 64, height // 16, width // 16])],
        b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="pytorch")
    model.ir_version = 7
    return model
