"""Print what an ONNX file holds, for reading real exporter output by eye.

    python scripts/real_models/describe.py MODEL.onnx... [--convs] [--functions]

Per model: IR version, opsets, inputs/outputs with their dims (dim_param names), op counts by
domain, every Conv-like node (group, kernel_shape, strides, pads, weight shape and where the
weight comes from, what kind of conv that makes: depthwise / pointwise / grouped / dense) with
--convs, else their counts, the path from each depthwise conv to the next conv (the ops between,
counted by pattern), the model-local functions (their attributes and nodes, attributes that
refer to the caller's by ref_attr_name; every node with --functions), and where
QuantizeLinear/DequantizeLinear sit. Needs onnx and numpy only.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

CONV_OPS = {"Conv", "QLinearConv", "ConvInteger", "FusedConv", "NhwcConv", "ConvTranspose"}


def dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return ["?"]
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
            for d in t.shape.dim]


def attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        if a.ref_attr_name:
            out[a.name] = f"@ref:{a.ref_attr_name}"
        else:
            out[a.name] = helper.get_attribute_value(a)
    return out


class Graph:
    def __init__(self, nodes, initializers, where: str):
        self.nodes = list(nodes)
        self.where = where
        self.inits = {t.name: t for t in initializers}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers = collections.defaultdict(list)
        for n in self.nodes:
            for i in n.input:
                self.consumers[i].append(n)

    def const_shape(self, name, depth=0):
        """(shape, how) of a weight traced through Identity/Cast/DQ/Constant; None if runtime."""
        if name in self.inits:
            return list(self.inits[name].dims), "init"
        n = self.producer.get(name)
        if n is None or depth > 6:
            return None, "input"
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    return list(a.t.dims), "Constant"
            return None, "Constant?"
        if n.op_type in ("Identity", "Cast", "DequantizeLinear", "QuantizeLinear"):
            shape, how = self.const_shape(n.input[0], depth + 1)
            return shape, f"{n.op_type}<-{how}"
        return None, f"{n.op_type}(runtime)"

    def kind(self, node):
        a = attrs(node)
        w = 3 if node.op_type == "QLinearConv" else 1
        shape, _ = self.const_shape(node.input[w]) if len(node.input) > w else (None, "")
        group = a.get("group", 1)
        if shape is None or isinstance(group, str) or len(shape) < 3:
            return "?"
        c_out, c_per_group = shape[0], shape[1]
        c_in = c_per_group * group
        if group > 1 and c_per_group == 1:
            return f"depthwise(C={c_in},M={c_out // max(c_in, 1)})"
        if group > 1:
            return f"grouped(g={group})"
        if all(k == 1 for k in shape[2:]):
            return "pointwise"
        return "dense"


def chain_to_next_conv(g: Graph, node, limit=12):
    """Ops on the single-consumer path from node to the next conv (stops at fan-out)."""
    path = []
    cur = node
    for _ in range(limit):
        outs = [c for o in cur.output for c in g.consumers.get(o, [])]
        types = sorted(c.op_type for c in outs)
        muls = [c for c in outs if c.op_type == "Mul"]
        if len(outs) == 2 and len(muls) == 1 and types != ["Mul", "Mul"]:
            other = next(c for c in outs if c is not muls[0])
            # x * f(x): SiLU (Sigmoid), HardSwish written out (HardSigmoid), or an SE gate (pooling)
            label = {"Sigmoid": "Mul-Sigmoid(SiLU)", "HardSigmoid": "Mul-HardSigmoid"}.get(
                other.op_type, f"SE({other.op_type}..)->Mul")
            path.append(label)
            cur = muls[0]
            continue
        if len(outs) != 1:
            path.append(f"<fan-out {len(outs)}: {','.join(c.op_type for c in outs)}>" if outs else "<output>")
            return path
        cur = outs[0]
        if cur.op_type in CONV_OPS:
            path.append(f"=> {cur.op_type} {cur.name} [{g.kind(cur)}]")
            return path
        path.append(cur.op_type)
    return path + ["..."]


def describe(path: Path, show_convs: bool, show_functions: bool) -> None:
    model = onnx.load(str(path))
    print(f"== {path.name}  ({path.stat().st_size} bytes)")
    print(f"   ir_version {model.ir_version}; opsets "
          + ", ".join(f"{o.domain or 'ai.onnx'}:{o.version}" for o in model.opset_import)
          + f"; producer {model.producer_name} {model.producer_version}")
    for vi in model.graph.input:
        print(f"   input  {vi.name} {dims(vi)} elem={vi.type.tensor_type.elem_type}")
    for vi in model.graph.output:
        print(f"   output {vi.name} {dims(vi)} elem={vi.type.tensor_type.elem_type}")
    print(f"   initializers {len(model.graph.initializer)}; value_info {len(model.graph.value_info)}")
    graphs = [Graph(model.graph.node, model.graph.initializer, "main")]
    for f in model.functions:
        graphs.append(Graph(f.node, [], f"function:{f.domain}.{f.name}"))
    for g in graphs[:1]:
        ops = collections.Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in g.nodes)
        print("   ops: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())))
    kinds = collections.Counter()
    chains = collections.Counter()
    for g in graphs:
        for n in g.nodes:
            if n.op_type not in CONV_OPS:
                continue
            a = attrs(n)
            winput = 3 if n.op_type == "QLinearConv" else 1
            shape, how = g.const_shape(n.input[winput]) if len(n.input) > winput else (None, "-")
            k = g.kind(n)
            kinds[(g.where, k.split("(")[0])] += 1
            dom = n.domain + "." if n.domain else ""
            short = {kk: v for kk, v in a.items() if kk in ("group", "kernel_shape", "strides", "pads", "dilations", "activation")}
            if show_convs:
                print(f"   [{g.where}] {dom}{n.op_type} {n.name}: {short} W{shape} ({how}) -> {k}")
            if k.startswith("depthwise"):
                ks = a.get("kernel_shape", "-")
                chain = " -> ".join(chain_to_next_conv(g, n))
                chain = chain.split(" => ")[0] + (" => " + chain.split(" => ")[1].split(" [")[0].split(" ")[0]
                                                   + " [" + chain.split(" [")[-1] if " => " in chain else "")
                chains[f"[{g.where}] {dom}{n.op_type} k{ks} s{a.get('strides', '-')} {k}: {chain}"] += 1
    print("   conv kinds: " + ", ".join(f"{w}:{k} {v}" for (w, k), v in sorted(kinds.items())))
    for c, v in sorted(chains.items()):
        print(f"   x{v} {c}")
    for f in model.functions:
        fops = collections.Counter(n.op_type for n in f.node)
        refs = [(n.op_type, a.name, a.ref_attr_name) for n in f.node for a in n.attribute if a.ref_attr_name]
        print(f"   function {f.domain}.{f.name}: inputs {list(f.input)} attrs {list(f.attribute)}"
              f" attr_protos {[a.name for a in f.attribute_proto]} ops {dict(fops)} ref_attrs {refs}")
        if show_functions:
            for n in f.node:
                print(f"        {n.op_type} {list(n.input)} -> {list(n.output)} {attrs(n)}")
    calls = collections.Counter(n.op_type for n in model.graph.node if n.domain not in ("", "ai.onnx", "com.microsoft", "com.microsoft.nchwc"))
    if calls:
        print(f"   function calls in main: {dict(calls)}")
        seen = set()
        for n in model.graph.node:
            if n.op_type in calls and n.op_type not in seen:
                seen.add(n.op_type)
                print(f"     e.g. {n.op_type} {n.name} attrs {attrs(n)}")
    g = graphs[0]
    qdq = [n for n in g.nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")]
    if qdq:
        where = collections.Counter()
        for n in qdq:
            src = g.producer.get(n.input[0])
            dst = [c.op_type for c in g.consumers.get(n.output[0], [])]
            what = "init" if n.input[0] in g.inits else (src.op_type if src else "graph-input")
            axis = attrs(n).get("axis")
            scale = g.inits.get(n.input[1]) if len(n.input) > 1 else None
            per = "per-channel" if scale is not None and len(scale.dims) == 1 and scale.dims[0] > 1 else "per-tensor"
            where[f"{n.op_type}({what}->{'/'.join(dst)}, {per}{', axis=' + str(axis) if axis is not None else ''})"] += 1
        print("   Q/DQ: " + "; ".join(f"{k} x{v}" for k, v in sorted(where.items())))
    identities = [n for n in g.nodes if n.op_type == "Identity"]
    if identities:
        print(f"   Identity nodes: {len(identities)}, e.g. {[(n.input[0], [c.op_type for c in g.consumers.get(n.output[0], [])]) for n in identities[:3]]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--convs", action="store_true", help="one line per conv")
    parser.add_argument("--functions", action="store_true")
    args = parser.parse_args(argv)
    for p in args.models:
        describe(p, args.convs, args.functions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
