"""Compare each node output's declared shape (value_info, graph outputs) with its shape at run time.

    python scripts/real_models/check_value_info.py MODEL.onnx ...

Runs the model in onnxruntime (CPU) on random input (symbolic dims = 2) with every node output
exposed and the value_info dropped, then lists declared shapes that disagree with the real ones
(jax2onnx writes NHWC dims on tensors that are NCHW).
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort


def check(path: str) -> int:
    m = onnx.load(path)
    decl = {}
    for v in list(m.graph.value_info) + list(m.graph.output):
        t = v.type.tensor_type
        decl[v.name] = [d.dim_param or d.dim_value for d in t.shape.dim] if t.HasField("shape") else None
    names = [o for n in m.graph.node for o in n.output]
    m2 = onnx.load(path)
    del m2.graph.value_info[:]
    known = {o.name for o in m2.graph.output}
    for name in names:
        if name not in known:
            m2.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    s = ort.InferenceSession(m2.SerializeToString(), providers=["CPUExecutionProvider"])
    i = s.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal([2 if isinstance(d, str) else d for d in i.shape]).astype(np.float32)
    res = dict(zip([o.name for o in s.get_outputs()], s.run(None, {i.name: x})))
    bad = ok = missing = 0
    for name in names:
        act = list(res[name].shape)
        d = decl.get(name)
        if d is None:
            missing += 1
            continue
        if [2 if isinstance(z, str) else z for z in d] != act:
            bad += 1
            print(f"  {path}: {name}: declared {d} actual {act}")
        else:
            ok += 1
    print(f"{path}: node outputs {len(names)}, declared ok {ok}, declared WRONG {bad}, undeclared {missing}")
    return bad


def main(paths: list[str]) -> int:
    return 1 if sum(check(p) for p in paths) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
