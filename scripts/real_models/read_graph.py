"""Print what a reader needs to judge an exported graph's depthwise-separable blocks.

    python scripts/real_models/read_graph.py MODEL.onnx [--convs] [--chains]

Needs only onnx + numpy. Prints: IR version, opsets, producer, inputs/outputs with their dims
(dim_value -1 shown as -1, dim_param by name), op counts, conv kinds (depthwise = group == C_in
with weight (C*M, 1, k, k); pointwise = 1x1 group 1; dense; grouped), and for every depthwise
conv the path of nodes from it to the next Conv (what stands between DW and PW: BN, activation,
Mul/Add with their constant shapes, SE branches, Identity). --convs lists every conv.
"""

from __future__ import annotations

import argparse
import collections
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def dims(vi):
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return "?"
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(str(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append("?")
    return "[" + ",".join(out) + "]"


class G:
    def __init__(self, m):
        self.m = m
        g = m.graph
        self.inits = {i.name: i for i in g.initializer}
        self.consts = {}
        for n in g.node:
            if n.op_type == "Constant":
                for a in n.attribute:
                    if a.name == "value":
                        self.consts[n.output[0]] = numpy_helper.to_array(a.t)
        self.prod = {o: n for n in g.node for o in n.output}
        self.cons = collections.defaultdict(list)
        for n in g.node:
            for i in n.input:
                self.cons[i].append(n)
        self.outputs = {o.name for o in g.output}

    def shape(self, name):
        if name in self.inits:
            return tuple(self.inits[name].dims)
        if name in self.consts:
            return tuple(self.consts[name].shape)
        # through Identity to an initializer
        p = self.prod.get(name)
        if p is not None and p.op_type == "Identity":
            return self.shape(p.input[0])
        return None

    def value(self, name):
        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        if name in self.consts:
            return self.consts[name]
        p = self.prod.get(name)
        if p is not None and p.op_type == "Identity":
            return self.value(p.input[0])
        return None

    def is_const(self, name):
        return self.value(name) is not None


def attr(n, name, default=None):
    for a in n.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def conv_kind(g, n):
    w = g.shape(n.input[1])
    grp = attr(n, "group", 1)
    if w is None:
        return "runtime-weight", w, grp
    cin = w[1] * grp
    if grp > 1 and w[1] == 1:
        return "depthwise", w, grp
    if grp > 1:
        return "grouped", w, grp
    if tuple(w[2:]) == (1, 1):
        return "pointwise", w, grp
    return "dense", w, grp


def describe(g, n):
    s = n.op_type
    extra = []
    ins = list(n.input) if n.op_type in ("Add", "Mul", "Sub", "Div") else list(n.input[1:])
    if n.op_type == "Concat":
        ins = []
    for i in ins:
        if g.is_const(i):
            v = g.value(i)
            extra.append(f"const{tuple(v.shape)}" + (f"={float(v.reshape(-1)[0]):.3g}"
                                                     if v.size == 1 else ""))
        else:
            extra.append("tensor")
    if n.op_type == "Conv":
        k, w, grp = conv_kind(g, n)
        extra = [f"{k} w{w} g{grp} b={'yes' if len(n.input) > 2 and n.input[2] else 'no'}"]
    return s + ("(" + ", ".join(extra) + ")" if extra else "")


def path_to_next_conv(g, n, limit=14):
    """Follow the main data path from a conv to the next Conv; list what stands between."""
    steps = []
    cur = n
    for _ in range(limit):
        outs = g.cons.get(cur.output[0], [])
        if not outs:
            return steps, None, "graph output" if cur.output[0] in g.outputs else "dead end"
        fan = len(outs)
        # SE pattern: one consumer is GlobalAveragePool / ReduceMean feeding a Mul that also
        # takes this tensor: skip to that Mul
        nxt = None
        se = [c for c in outs if c.op_type in ("GlobalAveragePool", "ReduceMean")]
        muls = [c for c in outs if c.op_type == "Mul"]
        hsig = [c for c in outs if c.op_type == "HardSigmoid"]
        if se and muls and fan == 2:
            steps.append("[SE branch]")
            nxt = muls[0]
        elif hsig and muls and fan == 2 and any(
                o in muls[0].input for o in hsig[0].output):
            steps.append("[x*HardSigmoid(x)]")
            nxt = muls[0]
        elif fan == 2 and muls and [c for c in outs if c.op_type == "Sigmoid"] and any(
                o in muls[0].input for c in outs if c.op_type == "Sigmoid" for o in c.output):
            steps.append("[x*Sigmoid(x)]")
            nxt = muls[0]
        elif fan > 1:
            names = ",".join(sorted(c.op_type for c in outs))
            return steps, None, f"fan-out {fan} ({names})"
        else:
            nxt = outs[0]
        if nxt.op_type == "Conv":
            return steps, nxt, None
        if not steps or not steps[-1].startswith("[x*"):
            steps.append(describe(g, nxt)) if nxt.op_type != "Mul" or not steps or \
                not steps[-1].startswith("[") else None
        cur = nxt
    return steps, None, "too far"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--convs", action="store_true")
    args = ap.parse_args(argv)
    m = onnx.load(args.model)
    g = G(m)
    opsets = {(o.domain or "ai.onnx"): o.version for o in m.opset_import}
    print(f"{args.model}: ir_version {m.ir_version}, opsets {opsets}, producer "
          f"{m.producer_name} {m.producer_version}")
    for i in m.graph.input:
        if i.name not in g.inits:
            print(f"  input  {i.name} {dims(i)}")
    for o in m.graph.output:
        print(f"  output {o.name} {dims(o)}")
    print(f"  initializers {len(g.inits)}, Constant nodes {len(g.consts)}, value_info "
          f"{len(m.graph.value_info)}")
    ops = collections.Counter(n.op_type for n in m.graph.node)
    print("  ops: " + ", ".join(f"{k} {v}" for k, v in ops.most_common()))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    kinds = collections.Counter(conv_kind(g, n)[0] for n in convs)
    print("  conv kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    biasless = sum(1 for n in convs if not (len(n.input) > 2 and n.input[2]))
    print(f"  convs without bias input: {biasless}")
    # what follows each conv directly
    after = collections.Counter()
    for n in convs:
        outs = g.cons.get(n.output[0], [])
        after[", ".join(sorted(describe(g, c) if c.op_type != "Conv" else "Conv"
                               for c in outs)) or "(output)"] += 1
    print("  directly after a Conv:")
    for k, v in after.most_common():
        print(f"    {v:3d} x {k}")
    idn = [n for n in m.graph.node if n.op_type == "Identity"]
    if idn:
        chains = sum(1 for n in idn if g.prod.get(n.input[0]) is not None
                     and g.prod[n.input[0]].op_type == "Identity")
        print(f"  Identity nodes {len(idn)} (chained {chains})")
    print("  depthwise -> next conv:")
    seen = collections.Counter()
    for n in convs:
        if conv_kind(g, n)[0] != "depthwise":
            continue
        steps, nxt, why = path_to_next_conv(g, n)
        tgt = describe(g, nxt) if nxt is not None else f"<{why}>"
        k, w, grp = conv_kind(g, n)
        seen[f"DW k{w[2:]} -> " + " -> ".join(steps + [tgt])] += 1
    for k, v in seen.most_common():
        print(f"    {v:3d} x {k}")
    if args.convs:
        for n in convs:
            print(f"    {n.name}: {describe(g, n)} strides={attr(n, 'strides')} "
                  f"pads={attr(n, 'pads')} ks={attr(n, 'kernel_shape')} "
                  f"dil={attr(n, 'dilations')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
