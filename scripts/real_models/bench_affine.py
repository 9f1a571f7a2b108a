"""Does folding per-channel Adds and affine Mul/Add chains into the Conv change CPU latency?

    python scripts/real_models/bench_affine.py MODEL.onnx [--shape 1,3,256,256] [--runs 30]

Builds the folded variant with numpy + onnx.helper only (no sepfix code): for each Conv whose
output runs, one consumer at a time and through Identity nodes, into Add/Mul nodes whose other
input is a constant of shape (), (1,), (C,1,1) or (1,C,1,1), those nodes are folded into the
Conv's weight (Mul: W *= s per output channel, b *= s) and bias (Add: b += c), and the Identity
nodes on the way are bypassed. Checks that both models give the same outputs, then times both
with onnxruntime on CPU, 1 intra-op and 1 inter-op thread, sequential execution: the two
sessions alternate run by run (--runs pairs after warm-up, --rounds times) and the ratio
reported is the median of the per-pair ratios, at each graph optimisation level asked for.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import onnx
from onnx import helper, numpy_helper


def const_value(g_inits, g_consts, prod, name):
    if name in g_inits:
        return numpy_helper.to_array(g_inits[name])
    if name in g_consts:
        return g_consts[name]
    p = prod.get(name)
    if p is not None and p.op_type == "Identity":
        return const_value(g_inits, g_consts, prod, p.input[0])
    return None


def per_channel(v, c):
    """Return v as a (C,) vector if it broadcasts per output channel of an NCHW conv."""
    if v is None or v.dtype != np.float32:
        return None
    if v.size == 1 and v.ndim <= 4:
        return np.full(c, float(v.reshape(-1)[0]), np.float32)
    if v.size == c and v.shape in ((c, 1, 1), (1, c, 1, 1)):
        return v.reshape(c).astype(np.float32)
    return None


def fold(model: onnx.ModelProto, mode: str = "affine") -> tuple[onnx.ModelProto, dict]:
    """mode "bias": only Adds of a per-channel (C,1,1)/(1,C,1,1) constant (a detached bias);
    mode "affine": also scalar Adds and scalar or per-channel Muls (learnable affine blocks)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}
    removed: set[int] = set()
    stats = {"convs": 0, "add": 0, "mul": 0, "identity": 0}
    new_inits = []
    rename = {}  # tensor name -> replacement name for consumers
    for n in list(g.node):
        if n.op_type != "Conv":
            continue
        w = const_value(inits, consts, prod, n.input[1])
        if w is None or w.ndim != 4:
            continue
        c = w.shape[0]
        b = (const_value(inits, consts, prod, n.input[2])
             if len(n.input) > 2 and n.input[2] else np.zeros(c, np.float32))
        if b is None:
            continue
        w = w.astype(np.float32).copy()
        b = b.astype(np.float32).copy()
        cur = n.output[0]
        folded = []
        while True:
            users = cons.get(cur, [])
            if len(users) != 1 or cur in outputs:
                break
            u = users[0]
            if u.op_type == "Identity":
                folded.append(u)
                cur = u.output[0]
                continue
            if u.op_type not in ("Add", "Mul") or len(u.input) != 2:
                break
            other = u.input[1] if u.input[0] == cur else u.input[0]
            raw = const_value(inits, consts, prod, other)
            v = per_channel(raw, c)
            if v is None:
                break
            if mode == "bias" and (u.op_type != "Add" or raw.size != c):
                break
            if u.op_type == "Mul":
                w *= v[:, None, None, None]
                b *= v
                stats["mul"] += 1
            else:
                b += v
                stats["add"] += 1
            folded.append(u)
            cur = u.output[0]
        if not any(f.op_type in ("Add", "Mul") for f in folded):
            continue
        stats["convs"] += 1
        stats["identity"] += sum(f.op_type == "Identity" for f in folded)
        wn, bn = n.output[0] + "_folded_W", n.output[0] + "_folded_B"
        new_inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
        x_in = n.input[0]
        del n.input[:]
        n.input.extend([x_in, wn, bn])
        for f in folded:
            removed.add(id(f))
        if cur in outputs:
            n.output[0] = cur  # the chain ended in a graph output: the conv now writes it
        else:
            rename[cur] = n.output[0]
    keep = [x for x in g.node if id(x) not in removed]
    for x in keep:
        for k, name in enumerate(x.input):
            if name in rename:
                x.input[k] = rename[name]
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    # drop initializers no node uses any more
    used = {i for x in g.node for i in x.input}
    live = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    return m, stats


def session(model: onnx.ModelProto, level):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = level
    return ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])


def paired_times(s0, s1, feed, runs):
    """Alternate the two sessions run by run (this machine is shared: load drifts), so each
    pair sees the same conditions. Returns (median t0, median t1, median of t1/t0)."""
    for _ in range(5):
        s0.run(None, feed)
        s1.run(None, feed)
    t0s, t1s = [], []
    for i in range(runs):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for k in order:
            sess = s0 if k == 0 else s1
            t = time.perf_counter()
            sess.run(None, feed)
            (t0s if k == 0 else t1s).append(time.perf_counter() - t)
    ratios = [b / a for a, b in zip(t0s, t1s)]
    return statistics.median(t0s), statistics.median(t1s), statistics.median(ratios)


def main(argv=None):
    import onnxruntime as ort

    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--shape", default=None, help="input shape, e.g. 1,3,256,256")
    ap.add_argument("--runs", type=int, default=30, help="timed runs per model per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--levels", default="all,disable",
                    help="comma list of ORT graph optimisation levels: all, extended, basic, "
                         "disable")
    ap.add_argument("--save", default=None, help="write the folded model here")
    ap.add_argument("--mode", default="affine", choices=["affine", "bias"],
                    help="bias: fold only per-channel Adds (detached biases); affine: also "
                         "scalar Adds and the Muls of learnable affine blocks")
    args = ap.parse_args(argv)
    model = onnx.load(args.model)
    folded, stats = fold(model, args.mode)
    if args.save:
        onnx.save(folded, args.save)
    inp = [i for i in model.graph.input
           if i.name not in {x.name for x in model.graph.initializer}][0]
    if args.shape:
        shape = [int(x) for x in args.shape.split(",")]
    else:
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                 for d in inp.type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    feed = {inp.name: x}
    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    n_before = len(model.graph.node)
    n_after = len(folded.graph.node)
    print(f"{args.model} [{args.mode}]: input {shape}; folded {stats['add']} Add, "
          f"{stats['mul']} Mul, bypassed {stats['identity']} Identity into {stats['convs']} "
          f"Conv; nodes {n_before} -> {n_after}")
    ref = session(model, levels["disable"]).run(None, feed)
    got = session(folded, levels["disable"]).run(None, feed)
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, got))
    print(f"  max |original - folded| = {diff:.3g}")
    for lv in args.levels.split(","):
        s0, s1 = session(model, levels[lv]), session(folded, levels[lv])
        rounds = [paired_times(s0, s1, feed, args.runs) for _ in range(args.rounds)]
        a = statistics.median(r[0] for r in rounds)
        b = statistics.median(r[1] for r in rounds)
        ratio = statistics.median(r[2] for r in rounds)
        spread = ", ".join(f"{r[2]:.3f}" for r in rounds)
        print(f"  ORT {lv:8s}: original {a * 1e3:8.3f} ms, folded {b * 1e3:8.3f} ms, "
              f"folded/original = {ratio:.3f} (median of per-pair ratios; rounds: {spread})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
