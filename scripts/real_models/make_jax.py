"""Regenerate tests/data/real/jax/: real JAX/Flax exporter outputs through jax2onnx.

    /work/venvs/jax/bin/python scripts/real_models/make_jax.py [--out tests/data/real/jax]

Environment this was made with (recorded again in MANIFEST.json by the script itself):
    python -m venv jax && jax/bin/pip install jax jax2onnx flax onnx onnxruntime
    -> jax 0.10.2, jaxlib 0.10.2, flax 0.12.8, jax2onnx 0.17.1, onnx 1.23.2, onnxruntime 1.32.0.

Models are Flax modules (NNX, and one Linen) with random weights from fixed PRNG keys;
BatchNorm statistics and conv biases are set to seeded random values so that BatchNorm is not
an identity. Export uses jax2onnx's documented entry point `to_onnx(fn, [shape], ...)` with its
default opset and NHWC input (Flax's layout); one model also uses the documented
`inputs_as_nchw` / `outputs_as_nchw` options.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx
from jax2onnx import to_onnx

ROOT = Path(__file__).resolve().parents[2]
SEED = 0


class DWSep(nnx.Module):
    """Depthwise 3x3 (feature_group_count=C) + BatchNorm + relu6 + pointwise 1x1 (+ BN + relu6)."""

    def __init__(self, cin: int, cout: int, stride: int = 1, *, pw_bn: bool, rngs: nnx.Rngs):
        self.dw = nnx.Conv(cin, cin, (3, 3), strides=stride, padding="SAME", feature_group_count=cin,
                           use_bias=False, rngs=rngs)
        self.dw_bn = nnx.BatchNorm(cin, use_running_average=True, rngs=rngs)
        self.pw = nnx.Conv(cin, cout, (1, 1), use_bias=not pw_bn, rngs=rngs)
        self.pw_bn = nnx.BatchNorm(cout, use_running_average=True, rngs=rngs) if pw_bn else None

    def __call__(self, x):
        x = jax.nn.relu6(self.dw_bn(self.dw(x)))
        x = self.pw(x)
        if self.pw_bn is not None:
            x = jax.nn.relu6(self.pw_bn(x))
        return x


class MobileNetLike(nnx.Module):
    """Stem conv 3x3/2 + BN + relu6, then 3 depthwise-separable blocks (16->32, 32->64/2, 64->64)."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(3, 16, (3, 3), strides=2, padding="SAME", use_bias=False, rngs=rngs)
        self.stem_bn = nnx.BatchNorm(16, use_running_average=True, rngs=rngs)
        self.b1 = DWSep(16, 32, 1, pw_bn=True, rngs=rngs)
        self.b2 = DWSep(32, 64, 2, pw_bn=True, rngs=rngs)
        self.b3 = DWSep(64, 64, 1, pw_bn=True, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu6(self.stem_bn(self.stem(x)))
        return self.b3(self.b2(self.b1(x)))


class LinenDWSep(linen.Module):
    """The DWSep block in Flax Linen (exported through model.apply)."""

    cin: int = 16
    cout: int = 32

    @linen.compact
    def __call__(self, x):
        x = linen.Conv(self.cin, (3, 3), padding="SAME", feature_group_count=self.cin, use_bias=False)(x)
        x = linen.BatchNorm(use_running_average=True)(x)
        x = jax.nn.relu6(x)
        return linen.Conv(self.cout, (1, 1))(x)


def _randomise_nnx(model: nnx.Module, seed: int = SEED) -> None:
    rng = np.random.default_rng(seed)
    for _, mod in sorted(nnx.iter_modules(model), key=lambda t: str(t[0])):
        if isinstance(mod, nnx.BatchNorm):
            c = mod.mean.get_value().shape
            mod.scale.set_value(jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32))
            mod.bias.set_value(jnp.asarray(rng.normal(0, 0.1, c), jnp.float32))
            mod.mean.set_value(jnp.asarray(rng.normal(0, 0.1, c), jnp.float32))
            mod.var.set_value(jnp.asarray(rng.uniform(0.5, 1.5, c), jnp.float32))
        elif isinstance(mod, nnx.Conv) and mod.bias is not None:
            mod.bias.set_value(jnp.asarray(rng.normal(0, 0.1, mod.bias.get_value().shape), jnp.float32))


def _randomise_tree(tree, seed: int = SEED):
    rng = np.random.default_rng(seed)

    def f(path, leaf):
        key = jax.tree_util.keystr(path)
        if key.endswith("['scale']") or key.endswith("['var']"):
            return jnp.asarray(rng.uniform(0.5, 1.5, leaf.shape), jnp.float32)
        if key.endswith("['bias']") or key.endswith("['mean']"):
            return jnp.asarray(rng.normal(0, 0.1, leaf.shape), jnp.float32)
        return leaf

    return jax.tree_util.tree_map_with_path(f, tree)


def build(name: str, target: Path) -> str:
    if name == "jax_nnx_dwsep_block":
        m = DWSep(16, 32, 1, pw_bn=False, rngs=nnx.Rngs(SEED))
        _randomise_nnx(m)
        to_onnx(m, [("B", 32, 32, 16)], model_name=name, return_mode="file", output_path=str(target))
        return "flax.nnx DWSep(16->32): Conv(feature_group_count=16) + BatchNorm + relu6 + Conv 1x1; to_onnx NHWC ('B',32,32,16)"
    if name in ("jax_nnx_mobilenet3", "jax_nnx_mobilenet3_nchw"):
        m = MobileNetLike(rngs=nnx.Rngs(SEED))
        _randomise_nnx(m)
        if name.endswith("_nchw"):
            to_onnx(m, [("B", 64, 64, 3)], model_name=name, inputs_as_nchw=[0], outputs_as_nchw=[0],
                    return_mode="file", output_path=str(target))
            return "flax.nnx stem + 3 DWSep blocks; to_onnx NHWC ('B',64,64,3) with inputs_as_nchw=[0], outputs_as_nchw=[0]"
        to_onnx(m, [("B", 64, 64, 3)], model_name=name, return_mode="file", output_path=str(target))
        return "flax.nnx stem + 3 DWSep blocks (16->32, 32->64 s2, 64->64), each DW+BN+relu6+PW+BN+relu6; to_onnx NHWC ('B',64,64,3)"
    if name == "jax_linen_dwsep_block":
        mod = LinenDWSep()
        variables = mod.init(jax.random.PRNGKey(SEED), jnp.zeros((1, 32, 32, 16), jnp.float32))
        variables = _randomise_tree(variables)

        def fn(x):
            return mod.apply(variables, x)

        to_onnx(fn, [("B", 32, 32, 16)], model_name=name, return_mode="file", output_path=str(target))
        return "flax.linen DWSep(16->32) through model.apply; to_onnx NHWC ('B',32,32,16)"
    raise KeyError(name)


NAMES = ["jax_nnx_dwsep_block", "jax_nnx_mobilenet3", "jax_nnx_mobilenet3_nchw", "jax_linen_dwsep_block"]


def _versions() -> dict:
    import importlib.metadata as md

    v = {p: md.version(p) for p in ["jax", "jaxlib", "flax", "jax2onnx", "onnx", "onnx-ir", "onnxruntime", "numpy"]}
    v["python"] = platform.python_version()
    return v


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "tests/data/real/jax"))
    ap.add_argument("names", nargs="*")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    man_path = out / "MANIFEST.json"
    manifest = json.loads(man_path.read_text()) if man_path.exists() else {"files": {}}
    manifest.update(tools=_versions(), generator="scripts/real_models/make_jax.py", seed=SEED)
    for name in a.names or NAMES:
        target = out / f"{name}.onnx"
        what = build(name, target)
        data = target.read_bytes()
        manifest["files"][target.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                          "how": "jax2onnx.to_onnx(return_mode='file')", "model": what}
        print(f"{name}: {len(data)} bytes")
    manifest["files"] = dict(sorted(manifest["files"].items()))
    man_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
