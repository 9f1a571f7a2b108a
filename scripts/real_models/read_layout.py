"""Print what an ONNX graph holds, for reading real exporter outputs by eye.

    python scripts/real_models/read_layout.py MODEL.onnx [--run] [--json]

(scripts/real_models/read_graph.py, from the paddle work, reads the DW→PW paths too; this one
adds the layout view: every Transpose, Pad, per-channel constant, value_info and whether the
model is valid and runs.)

Needs only onnx and numpy (onnxruntime for --run), so it runs in any exporter's venv.
Prints: IR/opset/producer, op counts, ops outside ai.onnx or unknown to it, every Transpose
(perm, whether it touches a graph input/output), every Conv (group, kernel, strides, pads,
dilations, weight shape, kind: depthwise/pointwise/grouped/dense), the nodes between each
depthwise conv and the next conv, Pads, Mul/Add whose other input is a per-channel constant,
value_info shapes, onnx.checker's verdict and (--run) an onnxruntime CPU run on random input.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _shape(vi):
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_param if d.HasField("dim_param") else (d.dim_value if d.HasField("dim_value") else "?")
            for d in t.shape.dim]


def _inverse_pairs(g, producer) -> int:
    """Transpose fed directly by a Transpose whose perm it inverts (the pair is a no-op)."""
    n_pairs = 0
    for n in g.node:
        p = producer.get(n.input[0]) if n.op_type == "Transpose" and n.input else None
        if p is None or p.op_type != "Transpose":
            continue
        a, b = _attrs(p).get("perm"), _attrs(n).get("perm")
        if a is not None and b is not None and [a[i] for i in b] == list(range(len(a))):
            n_pairs += 1
    return n_pairs


def read(path: str, run: bool = False) -> dict:
    m = onnx.load(path)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            a = _attrs(n)
            if "value" in a:
                consts[n.output[0]] = numpy_helper.to_array(a["value"])

    def const(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return consts.get(name)

    def const_shape(name):
        if name in inits:
            return list(inits[name].dims)
        if name in consts:
            return list(consts[name].shape)
        return None

    producer = {o: n for n in g.node for o in n.output}
    consumers = collections.defaultdict(list)
    for n in g.node:
        for i in n.input:
            consumers[i].append(n)
    g_in = {i.name for i in g.input} - set(inits)
    g_out = {o.name for o in g.output}

    out: dict = {
        "file": path,
        "ir_version": m.ir_version,
        "opsets": {o.domain or "ai.onnx": o.version for o in m.opset_import},
        "producer": f"{m.producer_name} {m.producer_version}".strip(),
        "inputs": {i.name: _shape(i) for i in g.input if i.name not in inits},
        "outputs": {o.name: _shape(o) for o in g.output},
        "nodes": len(g.node),
        "functions": [f.name for f in m.functions],
        "op_counts": dict(collections.Counter(
            (n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}") for n in g.node
        ).most_common()),
    }
    opset = out["opsets"].get("ai.onnx", 0)
    unknown = []
    for n in g.node:
        if n.domain in ("", "ai.onnx"):
            try:
                onnx.defs.get_schema(n.op_type, opset, "")
            except Exception:
                unknown.append(n.op_type)
        else:
            unknown.append(f"{n.domain}::{n.op_type}")
    out["ops_not_in_ai_onnx"] = dict(collections.Counter(unknown))

    # Transposes
    trs = []
    for n in g.node:
        if n.op_type != "Transpose":
            continue
        perm = _attrs(n).get("perm")
        boundary = n.input[0] in g_in or any(o in g_out for o in n.output)
        src = producer.get(n.input[0])
        trs.append({
            "name": n.name, "perm": list(perm) if perm is not None else None,
            "boundary": boundary,
            "from": src.op_type if src is not None else ("<input>" if n.input[0] in g_in else "<const>"),
            "to": [c.op_type for c in consumers[n.output[0]]] or ["<output>"],
            "on_constant": const_shape(n.input[0]) is not None,
        })
    out["transposes"] = trs
    act = [t for t in trs if not t["on_constant"]]
    out["transpose_summary"] = {
        "total": len(trs),
        "on_constants": sum(t["on_constant"] for t in trs),
        "boundary": sum(t["boundary"] for t in act),
        "interior": sum(not t["boundary"] for t in act),
        "interior_perms": dict(collections.Counter(str(t["perm"]) for t in act if not t["boundary"])),
        "back_to_back_inverse_pairs": _inverse_pairs(g, producer),
    }

    # Convs
    convs = []
    for n in g.node:
        if n.op_type not in ("Conv", "ConvTranspose") or n.domain not in ("", "ai.onnx"):
            continue
        a = _attrs(n)
        ws = const_shape(n.input[1]) if len(n.input) > 1 else None
        wsrc = None
        if ws is None and len(n.input) > 1:
            p = producer.get(n.input[1])
            wsrc = p.op_type if p is not None else ("<graph input>" if n.input[1] in g_in else "?")
        group = a.get("group", 1)
        kind = "?"
        if ws is not None:
            cin = ws[1] * group
            k = ws[2:]
            if group > 1 and ws[1] == 1:
                kind = "depthwise"
            elif group > 1:
                kind = "grouped"
            elif all(d == 1 for d in k):
                kind = "pointwise"
            else:
                kind = "dense"
        convs.append({
            "name": n.name, "kind": kind, "group": group, "weight": ws, "weight_from": wsrc,
            "kernel_shape": list(a["kernel_shape"]) if "kernel_shape" in a else None,
            "strides": list(a.get("strides", [])), "pads": list(a.get("pads", [])),
            "auto_pad": a.get("auto_pad", b"").decode() if isinstance(a.get("auto_pad"), bytes) else a.get("auto_pad"),
            "dilations": list(a.get("dilations", [])),
            "bias": len(n.input) > 2 and n.input[2] != "",
        })
    out["convs"] = convs
    out["conv_kinds"] = dict(collections.Counter(c["kind"] for c in convs))

    # depthwise -> next conv: walk forward through single-consumer chains
    conv_by_name = {c["name"]: c for c in convs}
    paths = []
    for n in g.node:
        c = conv_by_name.get(n.name)
        if c is None or c["kind"] != "depthwise":
            continue
        ops, cur, reached, fan = [], n, None, False
        for _ in range(40):
            cons = consumers[cur.output[0]]
            if len(cons) != 1:
                fan = len(cons) > 1
                if fan:
                    ops.append(f"<fan-out {len(cons)}: {','.join(x.op_type for x in cons)}>")
                    # follow the main path: skip activation and squeeze-excite side branches
                    nxt = [x for x in cons if x.op_type not in (
                        "HardSigmoid", "Sigmoid", "Relu6", "Clip", "Add", "Div", "ReduceMean", "GlobalAveragePool")]
                    cons = nxt[:1] if nxt else cons[:1]
                else:
                    break
            cur = cons[0]
            if cur.op_type == "Conv":
                reached = conv_by_name.get(cur.name)
                break
            ops.append(cur.op_type)
        paths.append({
            "depthwise": n.name, "between": ops,
            "next_conv": reached["name"] if reached else None,
            "next_kind": reached["kind"] if reached else None,
        })
    out["depthwise_to_next_conv"] = paths

    pads = []
    for n in g.node:
        if n.op_type != "Pad":
            continue
        a = _attrs(n)
        pv = const(n.input[1]) if len(n.input) > 1 else a.get("pads")
        mode = a.get("mode", b"constant")
        pads.append({
            "name": n.name, "pads": np.asarray(pv).tolist() if pv is not None else None,
            "mode": mode.decode() if isinstance(mode, bytes) else mode,
            "from": producer[n.input[0]].op_type if n.input[0] in producer else "<input>",
            "to": [c.op_type for c in consumers[n.output[0]]],
        })
    out["pads"] = pads

    chan = []
    for n in g.node:
        if n.op_type not in ("Mul", "Add", "Sub", "Div") or len(n.input) != 2:
            continue
        for i, other in ((0, 1), (1, 0)):
            s = const_shape(n.input[i])
            if s is None or len(s) == 0 or int(np.prod(s)) <= 1:
                continue
            src = producer.get(n.input[other])
            chan.append({"name": n.name, "op": n.op_type, "const_shape": s,
                         "after": src.op_type if src is not None else "<input>"})
    out["per_channel_const_ops"] = chan
    out["per_channel_const_summary"] = dict(collections.Counter(
        f"{c['op']}{c['const_shape']} after {c['after']}" for c in chan))

    out["value_info"] = {v.name: _shape(v) for v in g.value_info}
    try:
        onnx.checker.check_model(m, full_check=True)
        out["checker"] = "ok"
    except Exception as e:  # noqa: BLE001 - report whatever the checker says
        out["checker"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
    if run:
        out["onnxruntime"] = run_ort(path)
    return out


def run_ort(path: str) -> str:
    try:
        import onnxruntime as ort
        s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feeds = {}
        for i in s.get_inputs():
            shp = [d if isinstance(d, int) else 2 for d in i.shape]
            dt = {"tensor(float)": np.float32, "tensor(int64)": np.int64}.get(i.type, np.float32)
            feeds[i.name] = rng.standard_normal(shp).astype(dt)
        res = s.run(None, feeds)
        return "ok " + ", ".join(f"{o.name}{list(r.shape)}" for o, r in zip(s.get_outputs(), res)) + \
            (" (finite)" if all(np.isfinite(r).all() for r in res) else " (NON-FINITE)")
    except Exception as e:  # noqa: BLE001
        return f"FAIL {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"


def print_text(r: dict) -> None:
    p = print
    p(f"== {r['file']}")
    p(f"IR {r['ir_version']} opsets {r['opsets']} producer '{r['producer']}' nodes {r['nodes']}"
      f" functions {r['functions']}")
    p(f"inputs {r['inputs']} outputs {r['outputs']}")
    p(f"ops {r['op_counts']}")
    if r["ops_not_in_ai_onnx"]:
        p(f"ops NOT in ai.onnx opset: {r['ops_not_in_ai_onnx']}")
    p(f"transposes {r['transpose_summary']}")
    for t in r["transposes"]:
        p(f"  T {t['name']}: perm {t['perm']} {t['from']} -> {t['to']}"
          f"{' BOUNDARY' if t['boundary'] else ''}{' ON-CONST' if t['on_constant'] else ''}")
    p(f"convs {r['conv_kinds']}")
    for c in r["convs"]:
        p(f"  C {c['name']}: {c['kind']} group={c['group']} W={c['weight'] or c['weight_from']} k={c['kernel_shape']}"
          f" s={c['strides']} pads={c['pads']} auto_pad={c['auto_pad']} dil={c['dilations']} bias={c['bias']}")
    for d in r["depthwise_to_next_conv"]:
        p(f"  DW {d['depthwise']} -> {d['between']} -> {d['next_conv']} ({d['next_kind']})")
    for q in r["pads"]:
        p(f"  PAD {q['name']}: {q['pads']} {q['mode']} {q['from']} -> {q['to']}")
    p(f"per-channel const ops {r['per_channel_const_summary']}")
    vi = r["value_info"]
    p(f"value_info {len(vi)} entries; first: {list(vi.items())[:6]}")
    p(f"checker: {r['checker']}")
    if "onnxruntime" in r:
        p(f"onnxruntime: {r['onnxruntime']}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--run", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    res = [read(f, a.run) for f in a.models]
    if a.json:
        json.dump(res, sys.stdout, indent=1)
    else:
        for r in res:
            print_text(r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
