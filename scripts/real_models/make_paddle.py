"""Regenerate tests/data/real/paddle/: PP-OCRv4-style networks exported by paddle2onnx.

Run with a PaddlePaddle venv (not sepfix's), from the repository root, once per paddle2onnx
version; each run adds its files to the folder and its entry to MANIFEST.json:

    python3 -m venv /work/venvs/paddle
    /work/venvs/paddle/bin/pip install paddlepaddle paddle2onnx onnx onnxruntime
    /work/venvs/paddle/bin/python scripts/real_models/make_paddle.py        # paddle 3 + p2o 2.x

    python3 -m venv /work/venvs/paddle1
    /work/venvs/paddle1/bin/pip install "paddlepaddle==2.6.2" "paddle2onnx==1.3.1" "numpy<2" \
        onnx onnxruntime
    /work/venvs/paddle1/bin/python scripts/real_models/make_paddle.py       # paddle 2.6 + p2o 1.x

The networks: PyPI's `paddleocr` wheels (2.x and 3.x) carry no `ppocr.modeling` code, so the
PP-OCRv4 architectures are re-implemented below, layer for layer, from a reading of PaddleOCR's
ppocr/modeling (rec_lcnetv3.py PPLCNetV3, db_fpn.py RSEFPN, det_db_head.py DBHead,
necks/rnn.py EncoderWithSVTR + Im2Seq, rec_ctc_head.py CTCHead, rec_mobilenet_v3.py +
det_mobilenet_v3.py MobileNetV3, cls_head.py ClsHead): same layers, same op order, same
forward in eval mode, only the width scales are smaller so the files stay small. The export
path is PaddleOCR's tools/export_model.py: eval mode, `rep()` on every PPLCNetV3
LearnableRepLayer (the multi-branch convs become one conv with bias), paddle.jit.to_static with
PaddleOCR's InputSpec, paddle.jit.save, then the paddle2onnx CLI with `--opset_version 11`
(PaddleOCR's documented command; paddle2onnx raises the opset itself where an op needs it).
One detection model is also exported without `rep()` (train form) to show the multi-branch
depthwise convs. Weights are random (fixed numpy seed), BatchNorm statistics and the learnable
affine blocks included, so no fold is trivially the identity.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "real" / "paddle"
OPSET = 11
# paddle 3: "pir" (inference.json, what PaddleOCR 3.x / PaddleX 3 ship and paddle2onnx 2.x
# reads) by default; "old" (.pdmodel, PaddleOCR 2.x's export_model default) gives the same
# Conv/BN/Add structure. paddle 2.x: old IR always.
IR = os.environ.get("PADDLE_EXPORT_IR", "pir")


# ---------------------------------------------------------------- PP-LCNetV3 (rec_lcnetv3.py)
NET_CONFIG_DET = {  # k, in_c, out_c, stride, use_se
    "blocks2": [[3, 16, 32, 1, False]],
    "blocks3": [[3, 32, 64, 2, False], [3, 64, 64, 1, False]],
    "blocks4": [[3, 64, 128, 2, False], [3, 128, 128, 1, False]],
    "blocks5": [[3, 128, 256, 2, False]] + [[5, 256, 256, 1, False]] * 4,
    "blocks6": [[5, 256, 512, 2, True], [5, 512, 512, 1, True],
                [5, 512, 512, 1, False], [5, 512, 512, 1, False]],
}
NET_CONFIG_REC = {
    "blocks2": [[3, 16, 32, 1, False]],
    "blocks3": [[3, 32, 64, 1, False], [3, 64, 64, 1, False]],
    "blocks4": [[3, 64, 128, (2, 1), False], [3, 128, 128, 1, False]],
    "blocks5": [[3, 128, 256, (1, 2), False]] + [[5, 256, 256, 1, False]] * 4,
    "blocks6": [[5, 256, 512, (2, 1), True], [5, 512, 512, 1, True],
                [5, 512, 512, (2, 1), False], [5, 512, 512, 1, False]],
}


def make_divisible(v, divisor=16, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class LearnableAffineBlock(nn.Layer):
    """scale * x + bias with two learnable scalars (shape [1])."""

    def __init__(self, scale_value=1.0, bias_value=0.0):
        super().__init__()
        self.scale = self.create_parameter(
            [1], default_initializer=nn.initializer.Constant(scale_value))
        self.bias = self.create_parameter(
            [1], default_initializer=nn.initializer.Constant(bias_value))

    def forward(self, x):
        return self.scale * x + self.bias


class ConvBNLayer(nn.Layer):
    def __init__(self, in_c, out_c, k, stride, groups=1):
        super().__init__()
        self.conv = nn.Conv2D(in_c, out_c, k, stride, padding=(k - 1) // 2, groups=groups,
                              bias_attr=False)
        self.bn = nn.BatchNorm2D(out_c)

    def forward(self, x):
        return self.bn(self.conv(x))


class Act(nn.Layer):
    def __init__(self):
        super().__init__()
        self.act = nn.Hardswish()
        self.lab = LearnableAffineBlock()

    def forward(self, x):
        return self.lab(self.act(x))


class LearnableRepLayer(nn.Layer):
    """identity BN + 1x1 conv-BN + num_conv_branches kxk conv-BN, summed; rep() folds them."""

    def __init__(self, in_c, out_c, k, stride=1, groups=1, num_conv_branches=1):
        super().__init__()
        self.is_repped = False
        self.groups, self.stride, self.k = groups, stride, k
        self.in_c, self.out_c = in_c, out_c
        self.padding = (k - 1) // 2
        self.identity = nn.BatchNorm2D(in_c) if out_c == in_c and stride == 1 else None
        self.conv_kxk = nn.LayerList(
            [ConvBNLayer(in_c, out_c, k, stride, groups) for _ in range(num_conv_branches)])
        self.conv_1x1 = ConvBNLayer(in_c, out_c, 1, stride, groups) if k > 1 else None
        self.lab = LearnableAffineBlock()
        self.act = Act()

    def forward(self, x):
        if self.is_repped:
            out = self.lab(self.reparam_conv(x))
            if self.stride != 2:
                out = self.act(out)
            return out
        out = 0
        if self.identity is not None:
            out += self.identity(x)
        if self.conv_1x1 is not None:
            out += self.conv_1x1(x)
        for conv in self.conv_kxk:
            out += conv(x)
        out = self.lab(out)
        if self.stride != 2:
            out = self.act(out)
        return out

    @paddle.no_grad()
    def rep(self):
        if self.is_repped:
            return
        kernel, bias = self._kernel_bias()
        self.reparam_conv = nn.Conv2D(self.in_c, self.out_c, self.k, self.stride,
                                      self.padding, groups=self.groups)
        self.reparam_conv.weight.set_value(kernel)
        self.reparam_conv.bias.set_value(bias)
        del self.conv_kxk
        if self.conv_1x1 is not None:
            del self.conv_1x1
        if self.identity is not None:
            del self.identity
        self.is_repped = True

    def _kernel_bias(self):
        k1, b1 = self._fuse(self.conv_1x1)
        if isinstance(k1, paddle.Tensor):
            p = self.k // 2
            k1 = F.pad(k1, [p, p, p, p])
        kid, bid = self._fuse(self.identity)
        kk, bk = 0, 0
        for conv in self.conv_kxk:
            kw, bw = self._fuse(conv)
            kk, bk = kk + kw, bk + bw
        return kk + k1 + kid, bk + b1 + bid

    def _fuse(self, branch):
        if branch is None:
            return 0, 0
        if isinstance(branch, ConvBNLayer):
            kernel, bn = branch.conv.weight, branch.bn
        else:
            input_dim = self.in_c // self.groups
            kv = np.zeros((self.in_c, input_dim, self.k, self.k), dtype="float32")
            for i in range(self.in_c):
                kv[i, i % input_dim, self.k // 2, self.k // 2] = 1
            kernel, bn = paddle.to_tensor(kv), branch
        std = (bn._variance + bn._epsilon).sqrt()
        t = (bn.weight / std).reshape((-1, 1, 1, 1))
        return kernel * t, bn.bias - bn._mean * bn.weight / std


class LCNetSELayer(nn.Layer):
    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(channel, channel // reduction, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2D(channel // reduction, channel, 1)
        self.hardsigmoid = nn.Hardsigmoid()

    def forward(self, x):
        identity = x
        x = self.hardsigmoid(self.conv2(self.relu(self.conv1(self.avg_pool(x)))))
        # PaddleOCR writes paddle.multiply(x=identity, y=x); under paddle 3.3's OldIrGuard that
        # call raises "argument must be Value, but got Variable"; `*` is the same
        # elementwise_mul op in both IRs.
        return identity * x


class LCNetV3Block(nn.Layer):
    def __init__(self, in_c, out_c, stride, dw_size, use_se=False, conv_kxk_num=4):
        super().__init__()
        self.use_se = use_se
        self.dw_conv = LearnableRepLayer(in_c, in_c, dw_size, stride, groups=in_c,
                                         num_conv_branches=conv_kxk_num)
        if use_se:
            self.se = LCNetSELayer(in_c)
        self.pw_conv = LearnableRepLayer(in_c, out_c, 1, 1, num_conv_branches=conv_kxk_num)

    def forward(self, x):
        x = self.dw_conv(x)
        if self.use_se:
            x = self.se(x)
        return self.pw_conv(x)


class PPLCNetV3(nn.Layer):
    def __init__(self, scale=1.0, conv_kxk_num=4, det=False):
        super().__init__()
        self.det = det
        cfg = NET_CONFIG_DET if det else NET_CONFIG_REC
        self.conv1 = ConvBNLayer(3, make_divisible(16 * scale), 3, 2)
        for name in ("blocks2", "blocks3", "blocks4", "blocks5", "blocks6"):
            setattr(self, name, nn.Sequential(*[
                LCNetV3Block(make_divisible(i * scale), make_divisible(o * scale), s, k, se,
                             conv_kxk_num) for k, i, o, s, se in cfg[name]]))
        self.out_channels = make_divisible(512 * scale)
        if det:
            mv_c = [16, 24, 56, 480]
            chans = [make_divisible(cfg[b][-1][2] * scale)
                     for b in ("blocks3", "blocks4", "blocks5", "blocks6")]
            self.layer_list = nn.LayerList(
                [nn.Conv2D(c, int(m * scale), 1, 1, 0) for c, m in zip(chans, mv_c)])
            self.out_channels = [int(m * scale) for m in mv_c]

    def forward(self, x):
        out_list = []
        x = self.conv1(x)
        x = self.blocks2(x)
        x = self.blocks3(x)
        out_list.append(x)
        x = self.blocks4(x)
        out_list.append(x)
        x = self.blocks5(x)
        out_list.append(x)
        x = self.blocks6(x)
        out_list.append(x)
        if self.det:
            return [conv(o) for conv, o in zip(self.layer_list, out_list)]
        return F.avg_pool2d(x, [3, 2])  # eval branch of PPLCNetV3.forward


# ---------------------------------------------------------------- RSEFPN + DBHead (det)
class SEModule(nn.Layer):  # det_mobilenet_v3.SEModule
    def __init__(self, in_c, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv1 = nn.Conv2D(in_c, in_c // reduction, 1)
        self.conv2 = nn.Conv2D(in_c // reduction, in_c, 1)

    def forward(self, inputs):
        out = F.relu(self.conv1(self.avg_pool(inputs)))
        out = F.hardsigmoid(self.conv2(out))
        return inputs * out


class RSELayer(nn.Layer):
    def __init__(self, in_c, out_c, k, shortcut=True):
        super().__init__()
        self.in_conv = nn.Conv2D(in_c, out_c, k, padding=k // 2, bias_attr=False)
        self.se_block = SEModule(out_c)
        self.shortcut = shortcut

    def forward(self, ins):
        x = self.in_conv(ins)
        return x + self.se_block(x) if self.shortcut else self.se_block(x)


def _up(x, s):
    return F.upsample(x, scale_factor=float(s), mode="nearest", align_mode=1)


class RSEFPN(nn.Layer):
    def __init__(self, in_channels, out_channels, shortcut=True):
        super().__init__()
        self.ins_conv = nn.LayerList(
            [RSELayer(c, out_channels, 1, shortcut) for c in in_channels])
        self.inp_conv = nn.LayerList(
            [RSELayer(out_channels, out_channels // 4, 3, shortcut) for _ in in_channels])

    def forward(self, x):
        c2, c3, c4, c5 = x
        in5, in4 = self.ins_conv[3](c5), self.ins_conv[2](c4)
        in3, in2 = self.ins_conv[1](c3), self.ins_conv[0](c2)
        out4 = in4 + _up(in5, 2)
        out3 = in3 + _up(out4, 2)
        out2 = in2 + _up(out3, 2)
        p5, p4 = self.inp_conv[3](in5), self.inp_conv[2](out4)
        p3, p2 = self.inp_conv[1](out3), self.inp_conv[0](out2)
        return paddle.concat([_up(p5, 8), _up(p4, 4), _up(p3, 2), p2], axis=1)


class DBHeadBranch(nn.Layer):  # det_db_head.Head
    def __init__(self, in_c):
        super().__init__()
        self.conv1 = nn.Conv2D(in_c, in_c // 4, 3, padding=1, bias_attr=False)
        self.conv_bn1 = nn.BatchNorm2D(in_c // 4)
        self.conv2 = nn.Conv2DTranspose(in_c // 4, in_c // 4, 2, stride=2)
        self.conv_bn2 = nn.BatchNorm2D(in_c // 4)
        self.conv3 = nn.Conv2DTranspose(in_c // 4, 1, 2, stride=2)

    def forward(self, x):
        x = F.relu(self.conv_bn1(self.conv1(x)))
        x = F.relu(self.conv_bn2(self.conv2(x)))
        return F.sigmoid(self.conv3(x))


class DBHead(nn.Layer):
    def __init__(self, in_c, k=50):
        super().__init__()
        self.k = k
        self.binarize = DBHeadBranch(in_c)
        self.thresh = DBHeadBranch(in_c)  # unused in eval, as in PaddleOCR

    def forward(self, x):
        return {"maps": self.binarize(x)}  # eval: shrink maps only


class DetModel(nn.Layer):  # ch_PP-OCRv4_det_student: PPLCNetV3(det) + RSEFPN + DBHead
    def __init__(self, scale, fpn_channels):
        super().__init__()
        self.backbone = PPLCNetV3(scale=scale, det=True)
        self.neck = RSEFPN(self.backbone.out_channels, fpn_channels, shortcut=True)
        self.head = DBHead(fpn_channels)

    def forward(self, x):
        return self.head(self.neck(self.backbone(x)))


# ---------------------------------------------------------------- SVTR neck + CTC head (rec)
class SVTRConvBN(nn.Layer):  # rec_svtrnet.ConvBNLayer
    def __init__(self, in_c, out_c, kernel_size=3, padding=0, act=nn.Swish):
        super().__init__()
        self.conv = nn.Conv2D(in_c, out_c, kernel_size, padding=padding, bias_attr=False)
        self.norm = nn.BatchNorm2D(out_c)
        self.act = act()

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class Attention(nn.Layer):
    def __init__(self, dim, num_heads=8, qkv_bias=True):
        super().__init__()
        self.num_heads, self.dim = num_heads, dim
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        qkv = self.qkv(x).reshape((0, -1, 3, self.num_heads, self.head_dim)).transpose(
            (2, 0, 3, 1, 4))
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = F.softmax(q.matmul(k.transpose((0, 1, 3, 2))), axis=-1)
        x = attn.matmul(v).transpose((0, 2, 1, 3)).reshape((0, -1, self.dim))
        return self.proj(x)


class Mlp(nn.Layer):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.Swish(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Layer):  # rec_svtrnet.Block, mixer="Global", prenorm=False
    def __init__(self, dim, num_heads, mlp_ratio=2.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=1e-5)
        self.mixer = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, epsilon=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class EncoderWithSVTR(nn.Layer):
    def __init__(self, in_c, dims, depth, hidden_dims, num_heads=8, kernel_size=(1, 3)):
        super().__init__()
        pad = [kernel_size[0] // 2, kernel_size[1] // 2]
        self.conv1 = SVTRConvBN(in_c, in_c // 8, list(kernel_size), pad)
        self.conv2 = SVTRConvBN(in_c // 8, hidden_dims, 1)
        self.svtr_block = nn.LayerList(
            [Block(hidden_dims, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(hidden_dims, epsilon=1e-6)
        self.conv3 = SVTRConvBN(hidden_dims, in_c, 1)
        self.conv4 = SVTRConvBN(2 * in_c, in_c // 8, list(kernel_size), pad)
        self.conv1x1 = SVTRConvBN(in_c // 8, dims, 1)

    def forward(self, x):
        z = x.clone()  # use_guide=True (PP-OCRv4 rec): a detached copy
        z.stop_gradient = True
        h = z
        z = self.conv2(self.conv1(z))
        _, C, H, W = z.shape
        z = z.flatten(2).transpose([0, 2, 1])
        for blk in self.svtr_block:
            z = blk(z)
        z = self.norm(z)
        z = z.reshape([0, H, W, C]).transpose([0, 3, 1, 2])
        z = self.conv3(z)
        z = paddle.concat((h, z), axis=1)
        return self.conv1x1(self.conv4(z))


class RecModel(nn.Layer):
    """PP-OCRv4 rec (SVTR_LCNet): PPLCNetV3 + MultiHead whose eval output is its CTC branch:
    SequenceEncoder(svtr) = EncoderWithSVTR then Im2Seq, then CTCHead (Linear + softmax)."""

    def __init__(self, scale, dims, hidden_dims, depth, n_classes):
        super().__init__()
        self.backbone = PPLCNetV3(scale=scale, det=False)
        self.encoder = EncoderWithSVTR(self.backbone.out_channels, dims, depth, hidden_dims)
        self.fc = nn.Linear(dims, n_classes)

    def forward(self, x):
        x = self.encoder(self.backbone(x))
        x = x.squeeze(axis=2).transpose([0, 2, 1])  # Im2Seq: (N, W, C)
        return F.softmax(self.fc(x), axis=2)


# ---------------------------------------------------------------- MobileNetV3 + ClsHead (cls)
class MV3ConvBN(nn.Layer):  # det_mobilenet_v3.ConvBNLayer
    def __init__(self, in_c, out_c, k, stride, padding, groups=1, act=None):
        super().__init__()
        self.act = act
        self.conv = nn.Conv2D(in_c, out_c, k, stride, padding, groups=groups, bias_attr=False)
        self.bn = nn.BatchNorm2D(out_c)

    def forward(self, x):
        x = self.bn(self.conv(x))
        if self.act == "relu":
            x = F.relu(x)
        elif self.act == "hardswish":
            x = F.hardswish(x)
        return x


class ResidualUnit(nn.Layer):
    def __init__(self, in_c, mid_c, out_c, k, stride, use_se, act):
        super().__init__()
        self.if_shortcut = stride == 1 and in_c == out_c
        self.if_se = use_se
        self.expand_conv = MV3ConvBN(in_c, mid_c, 1, 1, 0, act=act)
        self.bottleneck_conv = MV3ConvBN(mid_c, mid_c, k, stride, (k - 1) // 2, groups=mid_c,
                                         act=act)
        if use_se:
            self.mid_se = SEModule(mid_c)
        self.linear_conv = MV3ConvBN(mid_c, out_c, 1, 1, 0, act=None)

    def forward(self, inputs):
        x = self.bottleneck_conv(self.expand_conv(inputs))
        if self.if_se:
            x = self.mid_se(x)
        x = self.linear_conv(x)
        return paddle.add(inputs, x) if self.if_shortcut else x


class ClsModel(nn.Layer):
    """ch_ppocr_mobile_v2.0_cls: rec_mobilenet_v3.MobileNetV3(small, scale 0.35) + ClsHead."""

    CFG_SMALL = [  # k, exp, c, se, nl, s  (small_stride = [2, 2, 2, 2])
        [3, 16, 16, True, "relu", (2, 1)], [3, 72, 24, False, "relu", (2, 1)],
        [3, 88, 24, False, "relu", 1], [5, 96, 40, True, "hardswish", (2, 1)],
        [5, 240, 40, True, "hardswish", 1], [5, 240, 40, True, "hardswish", 1],
        [5, 120, 48, True, "hardswish", 1], [5, 144, 48, True, "hardswish", 1],
        [5, 288, 96, True, "hardswish", (2, 1)], [5, 576, 96, True, "hardswish", 1],
        [5, 576, 96, True, "hardswish", 1],
    ]

    def __init__(self, scale=0.35, class_dim=2):
        super().__init__()

        def md(v):
            return make_divisible(v, 8)

        self.conv1 = MV3ConvBN(3, md(16 * scale), 3, 2, 1, act="hardswish")
        blocks, inplanes = [], md(16 * scale)
        for k, exp, c, se, nl, s in self.CFG_SMALL:
            blocks.append(ResidualUnit(inplanes, md(scale * exp), md(scale * c), k, s, se, nl))
            inplanes = md(scale * c)
        self.blocks = nn.Sequential(*blocks)
        self.conv2 = MV3ConvBN(inplanes, md(scale * 576), 1, 1, 0, act="hardswish")
        self.pool = nn.MaxPool2D(kernel_size=2, stride=2, padding=0)
        self.head_pool = nn.AdaptiveAvgPool2D(1)
        self.fc = nn.Linear(md(scale * 576), class_dim)

    def forward(self, x):
        x = self.pool(self.conv2(self.blocks(self.conv1(x))))
        x = self.head_pool(x)
        x = paddle.reshape(x, shape=[x.shape[0], x.shape[1]])
        return F.softmax(self.fc(x), axis=1)


# ---------------------------------------------------------------- weights, export, manifest
def randomize(model: nn.Layer, seed: int) -> None:
    """Random weights that look trained: no BN or affine block is the identity, and the
    activations stay near unit scale (LeCun-normal convs; the branches of a
    LearnableRepLayer scaled by 1/sqrt(branches) so their sum does not grow layer by layer;
    otherwise the outputs saturate and a numerical comparison proves nothing)."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        shape = p.shape
        if name.endswith("lab.scale"):
            v = rng.uniform(0.8, 1.2, shape)
        elif name.endswith("lab.bias") or (name.endswith(".bias") and len(shape) == 1
                                           and "bn" not in name and "norm" not in name
                                           and "identity" not in name):
            v = rng.normal(0, 0.05, shape)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            v = rng.normal(0, np.sqrt(1.0 / max(fan_in, 1)), shape)
        else:  # BN / LayerNorm gamma and beta
            v = rng.uniform(0.5, 1.5, shape) if name.endswith("weight") else rng.normal(
                0, 0.1, shape)
        p.set_value(v.astype("float32"))
    for layer in model.sublayers():
        if isinstance(layer, nn.BatchNorm2D):
            c = layer._mean.shape[0]
            layer._mean.set_value(rng.normal(0, 0.1, c).astype("float32"))
            layer._variance.set_value(rng.uniform(0.5, 1.5, c).astype("float32"))
    for layer in model.sublayers():
        if isinstance(layer, LearnableRepLayer):
            branches = ([layer.identity] if layer.identity is not None else []) + [
                c.bn for c in layer.conv_kxk] + (
                [layer.conv_1x1.bn] if layer.conv_1x1 is not None else [])
            f = 1.0 / np.sqrt(len(branches))
            for bn in branches:  # scale each branch's output: gamma and beta
                bn.weight.set_value((bn.weight.numpy() * f).astype("float32"))
                bn.bias.set_value((bn.bias.numpy() * f).astype("float32"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def paddle2onnx_cli() -> str:
    exe = Path(sys.executable).with_name("paddle2onnx")
    return str(exe) if exe.exists() else "paddle2onnx"


def export(model: nn.Layer, spec: list, stem: str, out_dir: Path, tmp: Path, rep: bool,
           suffix: str) -> tuple[Path, dict]:
    model.eval()
    if rep:  # tools/export_model.py: for rep lcnetv3
        for layer in model.sublayers():
            if hasattr(layer, "rep") and not getattr(layer, "is_repped"):
                layer.rep()
    input_spec = [paddle.static.InputSpec(shape=spec, dtype="float32", name="x")]
    prefix = tmp / stem / "inference"
    if IR == "pir" and hasattr(paddle, "pir_utils"):  # export_with_pir / PaddleX 3: .json
        static = paddle.jit.to_static(model, input_spec=input_spec, full_graph=True)
        paddle.jit.save(static, str(prefix))
    elif hasattr(paddle, "pir_utils"):  # PaddleOCR 2.x default on paddle 3: old IR .pdmodel
        with paddle.pir_utils.DygraphOldIrGuard():
            static = paddle.jit.to_static(model, input_spec=input_spec)
            paddle.jit.save(static, str(prefix))
    else:  # paddle 2.x: old IR only
        static = paddle.jit.to_static(model, input_spec=input_spec)
        paddle.jit.save(static, str(prefix))
    files = sorted(p.name for p in (tmp / stem).iterdir())
    model_file = next(f for f in files if f.endswith((".json", ".pdmodel")))
    dst = out_dir / f"{stem}{suffix}.onnx"
    cmd = [paddle2onnx_cli(), "--model_dir", str(tmp / stem), "--model_filename", model_file,
           "--params_filename", "inference.pdiparams", "--save_file", str(dst),
           "--opset_version", str(OPSET)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not dst.exists():
        sys.stderr.write(res.stdout + res.stderr)
        raise SystemExit(f"paddle2onnx failed for {stem}")
    shown = ["paddle2onnx"] + cmd[1:]
    shown[shown.index("--model_dir") + 1] = "<tmp>/" + stem
    shown[shown.index("--save_file") + 1] = dst.name
    return dst, {"paddle_model_file": model_file, "command": " ".join(shown)}


# paddle2onnx 1.x: only the det model is committed (the size cap). Its rec and cls exports
# (0.26 MB, 0.57 MB) differ from the 2.x ones the same way the det export does (bias inside
# the Conv, weights as Constant nodes, opset raised to 14 with HardSwish ops): --all writes them.
P2O1_COMMITTED = {"ppocrv4_det"}


# (stem, constructor, InputSpec shape, rep, seed, note)
def models():
    return [
        ("ppocrv4_det", lambda: DetModel(scale=0.1, fpn_channels=16), [-1, 3, -1, -1], True, 1,
         "PP-OCRv4 det: PPLCNetV3(det, scale 0.1) + RSEFPN(16, shortcut) + DBHead; rep() form"),
        ("ppocrv4_det_trainform", lambda: DetModel(scale=0.0625, fpn_channels=16),
         [-1, 3, -1, -1], False, 2,
         "PP-OCRv4 det: PPLCNetV3(det, scale 0.0625) + RSEFPN(16) + DBHead, exported WITHOUT "
         "rep(): every LearnableRepLayer in its multi-branch train form"),
        ("ppocrv4_rec", lambda: RecModel(scale=0.1, dims=32, hidden_dims=32, depth=2,
                                         n_classes=97), [-1, 3, 48, -1], True, 3,
         "PP-OCRv4 rec (SVTR_LCNet): PPLCNetV3(scale 0.1) + SVTR neck(32, depth 2, [1,3]) + "
         "CTCHead(97 = en dict + blank + space); rep() form"),
        ("ppocr_cls", lambda: ClsModel(scale=0.35, class_dim=2), [-1, 3, 48, 192], False, 4,
         "ch_ppocr_mobile_v2.0_cls: MobileNetV3 small scale 0.35 (rec strides) + ClsHead(2)"),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--only", nargs="*", help="stems to export (default: all)")
    ap.add_argument("--all", action="store_true",
                    help="with paddle2onnx 1.x, also write the models not committed")
    args = ap.parse_args(argv)
    import onnx
    import onnxruntime
    import paddle2onnx

    p2o = paddle2onnx.__version__
    suffix = "_p2o" + p2o.split(".")[0]  # _p2o1 / _p2o2
    paddle.set_device("cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {
        "generator": "scripts/real_models/make_paddle.py",
        "weights": "random (numpy default_rng(seed) per model); nothing downloaded",
        "runs": {}, "files": {}}
    tools = {"python": platform.python_version(), "paddlepaddle": paddle.__version__,
             "paddle2onnx": p2o, "onnx": onnx.__version__,
             "onnxruntime": onnxruntime.__version__, "numpy": np.__version__}
    manifest["runs"][suffix.lstrip("_")] = tools
    with tempfile.TemporaryDirectory() as tmp:
        for stem, ctor, spec, rep, seed, note in models():
            if args.only and stem not in args.only:
                continue
            if p2o.startswith("1.") and stem not in P2O1_COMMITTED and not args.all:
                continue  # size cap (5 MB for tests/data/real): see P2O1_COMMITTED
            paddle.seed(seed)
            model = ctor()
            randomize(model, seed)
            dst, info = export(model, spec, stem, args.out, Path(tmp), rep, suffix)
            m = onnx.load(str(dst))
            manifest["files"][dst.name] = {
                "sha256": sha256(dst), "bytes": dst.stat().st_size, "model": note,
                "input_spec": spec, "rep": rep, "seed": seed, "run": suffix.lstrip("_"),
                **info, "ir_version": m.ir_version,
                "opsets": {(o.domain or "ai.onnx"): o.version for o in m.opset_import},
                "producer": f"{m.producer_name} {m.producer_version}".strip()}
            print(f"{dst}: {dst.stat().st_size} bytes")
    manifest["files"] = dict(sorted(manifest["files"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
