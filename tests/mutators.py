"""Mutators for fuzzing sepfix: damage sample models at the protobuf-bytes and at the graph level.

Shared by tests/test_fuzz.py (hypothesis, bounded) and scripts/fuzz.py (long runs). Every
mutator takes a `random.Random`-like object (hypothesis' `st.randoms()` in the tests, a seeded
`random.Random` in the script), so a seed replays a mutant exactly. `run_one` is the oracle:
sepfix may refuse an input only with `SepfixError`, and a failed repair leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import onnx
from onnx import helper

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample_models").glob("*.onnx"))

# Integers that break code: zero, negatives, off-by-ones, int32/int64 limits, absurd sizes.
NASTY_INTS = [0, 1, -1, 2, 3, 4, 7, 8, 16, -3, 255, 2**31 - 1, 2**31, 2**40, -(2**40), 2**62, -(2**63), 2**63 - 1]


def _int(rnd) -> int:
    return rnd.choice(NASTY_INTS) if rnd.random() < 0.6 else rnd.randint(-20, 40)


# ---------------------------------------------------------------------------------- bytes


def _flip(data: bytearray, rnd) -> str:
    i = rnd.randrange(len(data))
    bit = 1 << rnd.randrange(8)
    data[i] ^= bit
    return f"flip byte {i} bit {bit}"


def _set(data: bytearray, rnd) -> str:
    i = rnd.randrange(len(data))
    data[i] = rnd.choice([0, 0x7F, 0x80, 0xFF, rnd.randrange(256)])
    return f"set byte {i} to {data[i]}"


def _insert(data: bytearray, rnd) -> str:
    i = rnd.randrange(len(data) + 1)
    chunk = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 16)))
    data[i:i] = chunk
    return f"insert {len(chunk)} bytes at {i}"


def _delete(data: bytearray, rnd) -> str:
    i = rnd.randrange(len(data))
    n = rnd.randint(1, 32)
    del data[i:i + n]
    return f"delete {n} bytes at {i}"


def _truncate(data: bytearray, rnd) -> str:
    n = rnd.randrange(len(data))
    del data[n:]
    return f"truncate to {n} bytes"


def _duplicate(data: bytearray, rnd) -> str:
    i = rnd.randrange(len(data))
    n = rnd.randint(1, 64)
    data[i:i] = data[i:i + n]
    return f"duplicate {n} bytes at {i}"


BYTE_MUTATORS = [_flip, _set, _insert, _delete, _truncate, _duplicate]


def mutate_bytes(data: bytes, rnd) -> tuple[bytes, list[str]]:
    """1 to 4 byte-level mutations of a serialized model."""
    out = bytearray(data)
    done = []
    for _ in range(rnd.randint(1, 4)):
        if not out:
            break
        done.append(rnd.choice(BYTE_MUTATORS)(out, rnd))
    return bytes(out), done


# ---------------------------------------------------------------------------------- graph


def _drop_node(model, rnd) -> str | None:
    nodes = model.graph.node
    if not nodes:
        return None
    i = rnd.randrange(len(nodes))
    name = nodes[i].name
    del nodes[i]
    return f"drop node {name!r}"


def _drop_input(model, rnd) -> str | None:
    if not model.graph.input:
        return None
    i = rnd.randrange(len(model.graph.input))
    name = model.graph.input[i].name
    del model.graph.input[i]
    return f"drop graph input {name!r}"


def _drop_node_input(model, rnd) -> str | None:
    nodes = [n for n in model.graph.node if n.input]
    if not nodes:
        return None
    node = rnd.choice(nodes)
    i = rnd.randrange(len(node.input))
    del node.input[i]
    return f"drop input {i} of {node.name!r}"


def _delete_initializer(model, rnd) -> str | None:
    inits = model.graph.initializer
    if not inits:
        return None
    i = rnd.randrange(len(inits))
    name = inits[i].name
    del inits[i]
    return f"delete initializer {name!r}"


def _swap_attribute(model, rnd) -> str | None:
    attrs = [a for n in model.graph.node for a in n.attribute]
    if len(attrs) < 2:
        return None
    a, b = rnd.sample(attrs, 2)
    name_a, name_b = a.name, b.name
    saved = onnx.AttributeProto()
    saved.CopyFrom(a)
    a.CopyFrom(b)
    b.CopyFrom(saved)
    a.name, b.name = name_a, name_b
    return f"swap values of attributes {name_a!r} and {name_b!r}"


def _change_dim(model, rnd) -> str | None:
    choices = [("initializer", t) for t in model.graph.initializer if t.dims]
    choices += [("value", v) for v in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
                if v.type.tensor_type.shape.dim]
    if not choices:
        return None
    kind, item = rnd.choice(choices)
    value = _int(rnd)
    if kind == "initializer":
        i = rnd.randrange(len(item.dims))
        item.dims[i] = value
        if rnd.random() < 0.2:
            item.dims.append(rnd.randint(0, 3))
        return f"initializer {item.name!r} dim {i} -> {value}"
    dims = item.type.tensor_type.shape.dim
    i = rnd.randrange(len(dims))
    dims[i].Clear()
    if rnd.random() < 0.2:
        dims[i].dim_param = rnd.choice(["N", "", "batch"])
        return f"value {item.name!r} dim {i} -> {dims[i].dim_param!r}"
    dims[i].dim_value = value
    return f"value {item.name!r} dim {i} -> {value}"


def _conv_attribute(model, rnd) -> str | None:
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    if not convs:
        return None
    node = rnd.choice(convs)
    name = rnd.choice(["group", "kernel_shape", "pads", "strides", "dilations", "auto_pad"])
    for i, attribute in enumerate(node.attribute):
        if attribute.name == name:
            del node.attribute[i]
            break
    if rnd.random() < 0.15:
        return f"{node.name!r}: remove {name}"
    if name == "group":
        value = _int(rnd)
    elif name == "auto_pad":
        value = rnd.choice(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS", ""])
    else:
        value = [_int(rnd) for _ in range(rnd.choice([0, 1, 2, 2, 2, 3, 4, 4, 5]))]
        if not value:
            value = helper.make_attribute(name, [], attr_type=onnx.AttributeProto.INTS)
            node.attribute.append(value)
            return f"{node.name!r}: {name} = []"
    node.attribute.append(helper.make_attribute(name, value))
    return f"{node.name!r}: {name} = {value}"


def _rewire(model, rnd) -> str | None:
    nodes = [n for n in model.graph.node if n.input]
    names = {x for n in model.graph.node for x in n.output} | {t.name for t in model.graph.initializer}
    names |= {v.name for v in model.graph.input}
    if not nodes or not names:
        return None
    node = rnd.choice(nodes)
    i = rnd.randrange(len(node.input))
    node.input[i] = rnd.choice(sorted(names))
    return f"{node.name!r} input {i} -> {node.input[i]!r}"


def _change_dtype(model, rnd) -> str | None:
    if not model.graph.initializer:
        return None
    tensor = rnd.choice(model.graph.initializer)
    tensor.data_type = rnd.choice([0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 16, 17, 21, 22, 40, rnd.randint(0, 30)])
    return f"initializer {tensor.name!r} data_type -> {tensor.data_type}"


def _duplicate_node(model, rnd) -> str | None:
    if not model.graph.node:
        return None
    node = rnd.choice(model.graph.node)
    model.graph.node.insert(rnd.randrange(len(model.graph.node) + 1), node)
    return f"duplicate node {node.name!r}"


def _opset(model, rnd) -> str | None:
    if not model.opset_import:
        return None
    model.opset_import[0].version = rnd.choice([1, 6, 7, 10, 11, 13, 17, 21, 99, _int(rnd)])
    return f"opset -> {model.opset_import[0].version}"


GRAPH_MUTATORS = [_drop_node, _drop_input, _drop_node_input, _delete_initializer, _swap_attribute, _change_dim,
                  _conv_attribute, _conv_attribute, _change_dim, _rewire, _change_dtype, _duplicate_node, _opset]


def mutate_graph(model: onnx.ModelProto, rnd) -> tuple[onnx.ModelProto, list[str]]:
    """1 to 3 graph-level mutations of a copy of `model`."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    done = []
    for _ in range(rnd.randint(1, 3)):
        what = rnd.choice(GRAPH_MUTATORS)(out, rnd)
        if what:
            done.append(what)
    return out, done


def serialize(model: onnx.ModelProto) -> bytes | None:
    """The mutant's bytes, or None when protobuf itself refuses it (an int out of range)."""
    try:
        return model.SerializeToString()
    except (ValueError, OverflowError):
        return None


# ---------------------------------------------------------------------------------- oracle


class Crash(Exception):
    """sepfix misbehaved on an input: raised something other than SepfixError, or left files."""


def run_one(data: bytes, repair: bool, workdir: Path) -> str:
    """Check (and repair) one mutant in-process; return the outcome; raise Crash on a bug.

    Outcomes: "error" (SepfixError), "ok", "repaired", "refused" (validation said no).
    """
    from sepfix import SepfixError, check
    from sepfix.repairer import RepairOptions, repair_file

    source, out = workdir / "in", workdir / "out"
    shutil.rmtree(workdir, ignore_errors=True)
    source.mkdir(parents=True)
    out.mkdir()
    path = source / "model.onnx"
    path.write_bytes(data)
    outcome = "ok"
    try:
        check(str(path))
    except SepfixError:
        outcome = "error"
    except Exception as exc:  # noqa: BLE001 - the oracle: anything else is a bug to report
        raise Crash(f"check raised {type(exc).__name__}: {exc}") from exc
    if repair:
        target = out / "repaired.onnx"
        try:
            report = repair_file(str(path), output=str(target), options=RepairOptions())
        except SepfixError:
            left = sorted(p.name for p in out.iterdir())
            if left:
                raise Crash(f"repair failed with SepfixError but left {left}") from None
            outcome = "error" if outcome == "error" else "repair-error"
            if path.read_bytes() != data:
                raise Crash("the input changed") from None
            return outcome
        except Exception as exc:  # noqa: BLE001
            raise Crash(f"repair raised {type(exc).__name__}: {exc}") from exc
        left = sorted(p.name for p in out.iterdir())
        if not report.written and left:
            raise Crash(f"repair wrote nothing but left {left}")
        if report.written and (not target.exists() or any(n.endswith(".tmp") for n in left)):
            raise Crash(f"repair said it wrote {target} but the folder holds {left}")
        if outcome == "error":
            raise Crash("check refused the model but repair accepted it")
        outcome = "repaired" if report.written and report.fixes else ("refused" if not report.written else "ok")
    if path.read_bytes() != data:
        raise Crash("the input changed")
    return outcome


def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="sepfix-fuzz-"))


def load_samples() -> list[tuple[str, bytes, onnx.ModelProto]]:
    return [(p.name, p.read_bytes(), onnx.load(os.fspath(p))) for p in SAMPLES]
