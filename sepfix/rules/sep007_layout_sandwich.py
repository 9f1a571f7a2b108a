"""## What it does
Finds the parts of a graph that run channels-last (NHWC) between layout `Transpose`s: the
islands TF converters leave around every NCHW conv. A region is a connected set of tensors
in one permuted layout, bounded by the Transposes (or unit-dim Reshapes, as TFLite writes
them) that enter it and the inverse ones that leave it; inside it only layout-agnostic ops:
element-wise ops (unary, Clip, Q/DQ per tensor, binary ops with a constant, which is permuted,
or another tensor of the region), fan-out to such ops, `Pad`, `Concat`/`Split`, `Reduce*` with
keepdims and `GlobalAveragePool`/`GlobalMaxPool`. One finding per region, with the number of
layout Transposes inside the graph that moving them through would remove; a Transpose that
reads a model input or writes a model output is at the boundary and stays.

## Why is this bad
Each Transpose moves the whole feature map through memory. tf2onnx's transpose optimizer gives
up on hard-swish and squeeze-excite (Keras MobileNetV3: 101 inside MobileNetV3-Small), and a
runtime that does not rewrite the graph runs them all: TensorRT's parser makes each one a
shuffle layer, and a Transpose between a conv and its activation splits their fusion. Measured
on an H200 (CUDA EP, issue 14), tf2onnx's Keras MobileNetV3-Small runs 1.40x / 1.74x slower
(batch 1 / 32) with its sandwiches as written, 1.00x once ONNX Runtime's optimizer has removed
them. On the CPU (`scripts/bench_sep007.py`: ONNX Runtime 1.32, 1 thread, alpha-0.25 96x96
exports, medians of 200 interleaved runs, range over repeated runs on a shared 2-core machine),
mangled / repaired as written (`ORT_DISABLE_ALL`): Keras 2 export 1.05-1.14x at batch 1 and
1.02-1.12x at batch 16, TFLite export 1.06-1.16x and 1.08-1.19x; with ONNX Runtime's default
optimizations 1.00-1.13x and 1.08-1.15x at batch 1 (5 runs for batch 1).

## Example
```
Conv -> Transpose(0,2,3,1) -> Add(3) -> Clip(0,6) -> Mul(1/6) -> Mul(x, .) -> Pad(NHWC pads)
     -> Transpose(0,3,1,2) -> Conv
```

## Use instead
`Conv -> Add(3) -> Clip(0,6) -> Mul(1/6) -> Mul(x, .) -> Pad(NCHW pads) -> Conv`: the ops run
in the convs' layout, their constants, pads and axes permuted; no Transpose left.

## Fix safety
Validated. Moving a Transpose is pure data movement and element-wise ops, Pad, Concat and Split
give the same bits in either layout; a reduction over permuted axes may sum in another order,
which can move the last bits, so the validator compares the outputs before anything is written.

## Known problems
A region is rewritten only when that removes layout Transposes inside the graph; where a node
that is not layout-agnostic (Reshape to another rank, MatMul, a conv) reads the permuted layout,
one Transpose is kept for it and counted. Only channels-last regions move (ONNX convs are
channels-first; an NCHW island in an NHWC model stays). Rank-3 layouts (Conv1d, perm `[0,2,1]`)
and other permutations (`[0,2,1,3]`) are not followed, nor Resize, Slice or Softmax inside a
region.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from sepfix.graph import GraphIndex, Node, Scope
from sepfix.ops import BINARY_ELEMENTWISE_OPS, QUANT_OPS, UNARY_ELEMENTWISE_OPS
from sepfix.rules.base import Level, Match

CODE = "SEP007"
NAME = "layout-sandwich"
SUMMARY = "layout Transposes (NHWC <-> NCHW) that cancel when moved through the ops between them"
LEVEL = "warning"
APPLICABILITY = "validated"
SOURCES = [
    "tf2onnx issue 977 (Transpose pairs around every conv)",
    "issue 14: tf2onnx Keras MobileNetV3-Small, 102 interior Transposes; H200 CUDA EP 1.40x / 1.74x as written",
    "scripts/bench_sep007.py: ONNX Runtime 1.32 CPU 1 thread, as written 1.05-1.16x at batch 1",
]


# ---------------------------------------------------------------------------- layout conversions


def channels_last(rank: int) -> tuple[int, ...]:
    return (0, *range(2, rank), 1)


def channels_first(rank: int) -> tuple[int, ...]:
    return (0, rank - 1, *range(1, rank - 1))


def inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def conversion_perm(index: GraphIndex, node: Node) -> tuple[int, ...] | None:
    """The layout permutation a node applies to its input: a Transpose to or from channels-last
    (rank 4 or more), or a Reshape that only moves dimensions of size 1 (TFLite writes
    `(N,1,1,C) -> (N,C,1,1)` for the squeeze-excite vector), which is the same data movement."""
    if node.op == "Transpose":
        perm = tuple(node.attr("perm") or ())
        rank = len(perm)
        return perm if rank >= 4 and perm in (channels_last(rank), channels_first(rank)) else None
    if node.op == "Reshape":
        return _unit_reshape_perm(index, node)
    return None


def _unit_reshape_perm(index: GraphIndex, node: Node) -> tuple[int, ...] | None:
    source = node.scope.shape(node.input(0))
    target = index.constant_value(node.scope, node.input(1)) if node.input(1) else None
    if source is None or target is None or target.ndim != 1 or len(source) < 4 or len(target) != len(source):
        return None
    dims = list(source[1:])
    head, rest = int(target[0]), [int(v) for v in target[1:]]
    if not all(isinstance(d, int) and d > 0 for d in dims) or any(v <= 0 for v in rest):
        return None
    if head not in (-1, source[0]) and not (head == 0 and not node.attr("allowzero", 0)):
        return None
    rank = len(source)
    for perm in (channels_last(rank), channels_first(rank)):
        moved = [source[p] for p in perm[1:]]
        if moved == rest and moved != dims and [d for d in moved if d != 1] == [d for d in dims if d != 1]:
            return perm
    return None


def layout_name(perm: tuple[int, ...]) -> str:
    """What a region's tensors are: NHWC when the Transposes entering it are channels-last."""
    rank = len(perm)
    spatial = "DHW"[-(rank - 2):] if rank <= 5 else "*" * (rank - 2)
    if perm == channels_last(rank):
        return f"N{spatial}C"
    return f"NC{spatial}" if perm == channels_first(rank) else str(list(perm))


# ---------------------------------------------------------------------------- layout-agnostic ops
#
# Each family says which inputs of a node carry the region's layout (`plan`, on the view) and how
# the node runs in the other layout (`convert`, on graphsurgeon): for a region tensor t that is
# transpose(u, perm), axis a of t is axis perm[a] of u.


@dataclass(frozen=True)
class NodePlan:
    data: tuple[int, ...]  # inputs in the region's layout
    constants: tuple[int, ...] = ()  # constant inputs the rewrite permutes along with them


class Family(NamedTuple):
    plan: Callable[[GraphIndex, Node, int, set], NodePlan | None]
    convert: Callable[[object, object, NodePlan, tuple], None]


def _input_kind(index: GraphIndex, scope: Scope, name: str, rank: int, known: set) -> str | None:
    """data (a tensor of the region's rank and layout), constant (permuted with it), free (size
    one in every dim: no layout), or None (another rank: not agnostic)."""
    if name in known:
        return "data"
    value = index.constant_value(scope, name)
    shape = tuple(value.shape) if value is not None else scope.shape(name)
    if shape is not None and len(shape) <= rank and all(d == 1 for d in shape):
        return "free"
    if value is not None:
        return "constant" if value.ndim <= rank else None
    return "data" if _rank(scope, name) == rank else None


def _rank(scope: Scope, name: str) -> int | None:
    shape = scope.shape(name)
    if shape is not None:
        return len(shape)
    producer = scope.lookup_producer(name)
    if producer is not None and producer.op == "Transpose" and producer.attr("perm"):
        return len(producer.attr("perm"))
    return None


_UNARY = UNARY_ELEMENTWISE_OPS | QUANT_OPS  # one data input; Clip bounds and Q/DQ parameters are scalars
_NARY = BINARY_ELEMENTWISE_OPS | {"PRelu", "Sum", "Mean"}


def _plan_elementwise(index: GraphIndex, node: Node, rank: int, known: set) -> NodePlan | None:
    if node.op in _UNARY:  # the output has the data input's rank; the other inputs must be scalars
        extras = [name for name in node.node.input[1:] if name]
        if not node.input(0) or index.constant_value(node.scope, node.input(0)) is not None:
            return None
        scalar = all(_input_kind(index, node.scope, name, rank, known) == "free" for name in extras)
        return NodePlan((0,)) if scalar else None
    kinds = [(i, _input_kind(index, node.scope, name, rank, known)) for i, name in enumerate(node.node.input) if name]
    if any(kind is None for _, kind in kinds):
        return None
    data = tuple(i for i, kind in kinds if kind == "data")
    return NodePlan(data, tuple(i for i, kind in kinds if kind == "constant")) if data else None


def _plan_pad(index: GraphIndex, node: Node, rank: int, known: set) -> NodePlan | None:
    if node.input(1):
        constant = all(index.constant_value(node.scope, node.input(i)) is not None for i in (1, 3) if node.input(i))
        return NodePlan((0,)) if constant else None
    return NodePlan((0,)) if node.attr("pads") is not None else None  # opset < 11: pads attribute


def _plan_concat(index: GraphIndex, node: Node, rank: int, known: set) -> NodePlan | None:
    data, constants = [], []
    for i, name in enumerate(node.node.input):
        value = None if name in known else index.constant_value(node.scope, name)
        if value is not None and value.ndim != rank:
            return None
        (constants if value is not None else data).append(i)
    return NodePlan(tuple(data), tuple(constants))


def _plan_one_input(index: GraphIndex, node: Node, rank: int, known: set) -> NodePlan | None:
    """Split, GlobalAveragePool, GlobalMaxPool: the first input is the data."""
    return NodePlan((0,))


def _plan_reduce(index: GraphIndex, node: Node, rank: int, known: set) -> NodePlan | None:
    if node.attr("keepdims", 1) != 1:
        return None  # the rank changes: the region ends here
    if node.input(1) and index.constant_value(node.scope, node.input(1)) is None:
        return None
    return NodePlan((0,))


def permute_constant(value: np.ndarray, perm: tuple[int, ...]) -> np.ndarray:
    """The constant that broadcasts against u as `value` did against transpose(u, perm)."""
    full = value.reshape((1,) * (len(perm) - value.ndim) + value.shape)
    return np.ascontiguousarray(np.transpose(full, inverse(perm)))


def _axes(axes, perm: tuple[int, ...]) -> list[int]:
    return sorted(perm[int(a) % len(perm)] for a in axes)


def _convert_constants(ctx, node, plan: NodePlan, perm: tuple) -> None:
    for i in plan.constants:
        node.inputs[i] = ctx.constant(f"{node.name}_{layout_name(inverse(perm))}",
                                      permute_constant(ctx.value(node.inputs[i].name), perm))


def _convert_axis(ctx, node, plan: NodePlan, perm: tuple) -> None:
    _convert_constants(ctx, node, plan, perm)
    node.attrs["axis"] = perm[int(node.attrs.get("axis", 0)) % len(perm)]


def _convert_pad(ctx, node, plan: NodePlan, perm: tuple) -> None:
    rank = len(perm)
    if "pads" in node.attrs:
        node.attrs["pads"] = _permute_pads(list(node.attrs["pads"]), perm)
    elif len(node.inputs) > 3 and node.inputs[3].name:  # opset 18 axes: the pads follow the listed axes
        axes = ctx.value(node.inputs[3].name)
        node.inputs[3] = ctx.constant(f"{node.name}_axes", np.array([perm[int(a) % rank] for a in axes], axes.dtype))
    else:
        pads = ctx.value(node.inputs[1].name)
        node.inputs[1] = ctx.constant(f"{node.name}_pads", np.array(_permute_pads(list(pads), perm), pads.dtype))


def _permute_pads(pads: list, perm: tuple) -> list:
    rank = len(perm)
    moved = [0] * (2 * rank)
    for i, p in enumerate(perm):
        moved[p], moved[rank + p] = pads[i], pads[rank + i]
    return moved


def _convert_reduce(ctx, node, plan: NodePlan, perm: tuple) -> None:
    if "axes" in node.attrs:
        node.attrs["axes"] = _axes(node.attrs["axes"], perm)
    elif len(node.inputs) > 1 and node.inputs[1].name:
        axes = ctx.value(node.inputs[1].name)
        node.inputs[1] = ctx.constant(f"{node.name}_axes", np.array(_axes(axes, perm), axes.dtype))


_GLOBAL_POOLS = {"GlobalAveragePool": "ReduceMean", "GlobalMaxPool": "ReduceMax"}


def _convert_global_pool(ctx, node, plan: NodePlan, perm: tuple) -> None:
    """A global pool reduces dims 2..: in the other layout those are other dims, unless the
    permutation keeps them; then it becomes the matching Reduce with keepdims."""
    rank = len(perm)
    axes = _axes(range(2, rank), perm)
    if axes == list(range(2, rank)):
        return
    node.op = _GLOBAL_POOLS[node.op]
    node.attrs = {"keepdims": 1}
    if ctx.index.opsets.get("ai.onnx", 1) >= 18:
        node.inputs.append(ctx.constant(f"{node.name}_axes", np.array(axes, np.int64)))
    else:
        node.attrs["axes"] = axes


FAMILIES: dict[str, Family] = {
    **{op: Family(_plan_elementwise, _convert_constants) for op in _UNARY | _NARY},
    "Pad": Family(_plan_pad, _convert_pad),
    "Concat": Family(_plan_concat, _convert_axis),
    "Split": Family(_plan_one_input, _convert_axis),
    **{op: Family(_plan_reduce, _convert_reduce) for op in (
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")},
    **{op: Family(_plan_one_input, _convert_global_pool) for op in _GLOBAL_POOLS},
}


# ---------------------------------------------------------------------------- planning: regions


@dataclass
class Moved:
    """One tensor of a region, and what becomes of it when the region runs un-permuted."""

    name: str
    origin: str = "source"  # entry (a layout conversion makes it), interior (an agnostic node), source (else)
    producer: int = -1  # its entry or interior node, as a position in Region.entries / Region.interior
    slot: int = 0  # which output of that interior node
    exits: list[int] = field(default_factory=list)  # positions in Region.exits of the inverse conversions reading it
    read_inside: bool = False  # an interior node reads it
    kept: bool = False  # still read in the permuted layout: by a node that is not agnostic, or as a graph output
    output: bool = False  # a graph output


@dataclass
class Region:
    """A connected set of tensors in one permuted layout (`perm` applied to what the convs
    use), the conversions that enter and leave it, and the agnostic nodes inside."""

    scope: Scope
    perm: tuple[int, ...]
    tensors: dict[str, Moved] = field(default_factory=dict)
    entries: list[Node] = field(default_factory=list)
    exits: list[Node] = field(default_factory=list)
    interior: list[Node] = field(default_factory=list)
    plans: list[NodePlan] = field(default_factory=list)

    def at_boundary(self, conversion: Node) -> bool:
        """A conversion reading a graph input or writing a graph output stays: the model's interface."""
        return self.scope.is_graph_input(conversion.input(0)) or conversion.node.output[0] in self.scope.outputs

    def conversions_now(self) -> list[tuple[str, bool]]:
        """(op, at the boundary) of every layout conversion entering or leaving the region."""
        return [(n.op, self.at_boundary(n)) for n in self.entries + self.exits]

    def conversions_after(self) -> list[tuple[str, bool]]:
        """The same for the conversions the rewrite keeps or inserts: the plan `rewrite` follows."""
        after = []
        for moved in self.tensors.values():
            if moved.origin == "entry" and moved.kept:
                entry = self.entries[moved.producer]
                after.append((entry.op, self.at_boundary(entry)))
            elif moved.origin == "interior" and moved.kept:
                after.append(("Transpose", moved.output))
            elif moved.origin == "source":
                after.extend((self.exits[i].op, self.at_boundary(self.exits[i])) for i in moved.exits)
                if moved.read_inside and not moved.exits:
                    after.append(("Transpose", self.scope.is_graph_input(moved.name)))
        return after

    def conflicting(self) -> bool:
        """A conversion both entering and leaving (or read as permuted): no single layout fits."""
        return (any(e.input(0) in self.tensors for e in self.entries)
                or any(x.node.output[0] in self.tensors for x in self.exits))


def grow(index: GraphIndex, scope: Scope, perm: tuple[int, ...], seed: str) -> Region:
    """Every tensor connected to `seed` through agnostic nodes, with `seed` in layout `perm`."""
    region = Region(scope, perm)
    leaving = inverse(perm)
    plans: dict[int, NodePlan | None] = {}
    placed: dict[int, int] = {}  # id(proto) -> position in region.interior
    seen = {seed}
    queue = deque([seed])

    def enqueue(name: str) -> None:
        if name and name not in seen:
            seen.add(name)
            queue.append(name)

    def agnostic(node: Node) -> NodePlan | None:
        key = id(node.node)
        if key not in plans:
            family = FAMILIES.get(node.op)
            plans[key] = None if family is None or node.unresolved() else family.plan(index, node, len(perm), seen)
        return plans[key]

    def join(node: Node, plan: NodePlan) -> int:
        key = id(node.node)
        if key not in placed:
            placed[key] = len(region.interior)
            region.interior.append(node)
            region.plans.append(plan)
            for i in plan.data:
                enqueue(node.input(i))
            for name in node.node.output:
                enqueue(name)
        return placed[key]

    while queue:
        name = queue.popleft()
        moved = region.tensors[name] = Moved(name, output=name in scope.outputs)
        producer = index.producer(scope, name)
        if producer is not None and producer.scope is not scope:
            producer = None  # made in an enclosing graph: a source here
        if producer is not None and conversion_perm(index, producer) == perm:
            moved.origin, moved.producer = "entry", len(region.entries)
            region.entries.append(producer)
        elif producer is not None and (plan := agnostic(producer)) is not None:
            moved.origin, moved.producer = "interior", join(producer, plan)
            moved.slot = list(producer.node.output).index(name)
        for consumer in index.consumers(scope, name):
            if conversion_perm(index, consumer) == leaving and consumer.input(0) == name:
                moved.exits.append(len(region.exits))
                region.exits.append(consumer)
                continue
            plan = agnostic(consumer)
            if plan is not None and all(i in plan.data for i, n in enumerate(consumer.node.input) if n == name):
                join(consumer, plan)
                moved.read_inside = True
            else:
                moved.kept = True
        moved.kept |= moved.output
    return region


def regions(index: GraphIndex):
    """Every channels-last region next to a layout conversion, each once: what a conversion to
    channels-last writes, or what a conversion to channels-first reads. (ONNX convs are
    channels-first: the islands to remove are the channels-last ones, never the other way.)"""
    visited: set[tuple[str, str]] = set()
    for node in index.nodes("Transpose", "Reshape"):
        perm = conversion_perm(index, node)
        if perm is None or index.weight_source(node.scope, node.input(0)).is_constant:
            continue  # a constant's layout is SEP004's business
        seed = node.node.output[0] if perm == channels_last(len(perm)) else node.input(0)
        if (node.scope.path, seed) in visited:
            continue
        region = grow(index, node.scope, channels_last(len(perm)), seed)
        visited.update((node.scope.path, name) for name in region.tensors)
        if not region.conflicting():
            yield region


@dataclass
class RegionMatch(Match):
    region: Region | None = None  # the plan the rewrite follows


def match(index: GraphIndex):
    for region in regions(index):
        now, after = region.conversions_now(), region.conversions_after()
        inside = Counter(op for op, boundary in now if not boundary)
        left = sum(not boundary for _, boundary in after)
        if left >= sum(inside.values()):
            continue
        moved = sum(boundary for _, boundary in after) - sum(boundary for _, boundary in now)
        cancelled = len(now) - len(after)
        layout = layout_name(region.perm)
        ops = Counter(n.op for n in region.interior)
        listed = ", ".join(f"{op} x{count}" if count > 1 else op for op, count in sorted(ops.items()))
        outcome = [f"{moved} move{'s' if moved == 1 else ''} to a model input or output"] if moved > 0 else []
        outcome += [f"{left} stay{'s' if left == 1 else ''} where a node needs {layout}"] if left else []
        yield RegionMatch(
            min((n for n in region.entries + region.exits if not region.at_boundary(n)), key=lambda n: n.index),
            f"{_conversions(inside)} inside the graph around an {layout} region of {len(region.interior)} "
            f"op{'s' if len(region.interior) != 1 else ''} ({listed or 'none'}): moved through them, "
            + (", ".join(outcome) if outcome else "all cancel")
            + (" (none cancels)" if cancelled <= 0 else ""),
            roles={"entries": region.entries, "exits": region.exits, "interior": region.interior},
            evidence={"layout": layout, "perm": list(region.perm), "interior_transposes": inside["Transpose"],
                      "interior_reshapes": inside["Reshape"], "cancelled": cancelled, "moved_to_boundary": moved,
                      "left_after_repair": left, "entering": len(region.entries), "leaving": len(region.exits),
                      "ops": dict(sorted(ops.items()))},
            # Moving a Transpose to the model's input or output removes none: advice, still repaired.
            level=Level.INFO if cancelled <= 0 else None,
            region=region,
        )


def _conversions(count: Counter) -> str:
    """`3 layout Transposes and 2 unit-dim Reshapes`."""
    parts = [f"{count['Transpose']} layout Transpose{'s' if count['Transpose'] != 1 else ''}"] if count["Transpose"] else []
    if count["Reshape"]:
        parts.append(f"{count['Reshape']} unit-dim Reshape{'s' if count['Reshape'] != 1 else ''}")
    return " and ".join(parts)


# ---------------------------------------------------------------------------- rewriting


def rewrite(ctx, match: RegionMatch) -> str:
    """Run the region un-permuted: entries and exits bypassed, interior nodes reading the
    un-permuted tensors with their constants, pads and axes permuted; a Transpose kept or
    inserted only where the plan says something still reads the permuted layout."""
    region = match.region
    entries, exits, interior = ctx.role("entries"), ctx.role("exits"), ctx.role("interior")
    perm = region.perm
    tensors = {t.name: t for node in entries + exits + interior for t in list(node.inputs) + list(node.outputs)}
    unpermuted = {}
    for moved in region.tensors.values():
        if moved.origin == "entry":
            unpermuted[moved.name] = entries[moved.producer].inputs[0]
        elif moved.origin == "interior":
            unpermuted[moved.name] = _unpermuted_output(ctx, interior[moved.producer], moved, perm)
        elif moved.read_inside:
            unpermuted[moved.name] = (exits[moved.exits[0]].outputs[0] if moved.exits
                                      else _transpose(ctx, tensors[moved.name], inverse(perm)))
    for node, plan in zip(interior, region.plans):
        for i in plan.data:
            node.inputs[i] = unpermuted[node.inputs[i].name]
        FAMILIES[node.op].convert(ctx, node, plan, perm)
        ctx.touch(node)
    for moved in region.tensors.values():
        if moved.origin != "source":
            for i in moved.exits:
                unpermuted[moved.name] = _bypass(ctx, exits[i], unpermuted[moved.name])
    inside = Counter(op for op, boundary in region.conversions_now() if not boundary)
    left = sum(not boundary for _, boundary in region.conversions_after())
    return (f"moved {_conversions(inside)} out of an {layout_name(perm)} region of {len(interior)} "
            f"op{'s' if len(interior) != 1 else ''}: {left} left inside the graph")


def _unpermuted_output(ctx, node, moved: Moved, perm: tuple):
    """The interior node's output, now un-permuted; where something still reads the permuted
    layout under the old name, the node writes a fresh tensor and a Transpose makes the old one."""
    tensor = node.outputs[moved.slot]
    if not moved.kept:
        tensor.shape = None  # it was permuted
        return tensor
    fresh = ctx.variable(f"{tensor.name}_{layout_name(inverse(perm))}", dtype=tensor.dtype)
    node.outputs[moved.slot] = fresh
    ctx.node("Transpose", f"{node.name}_to_{layout_name(perm)}", inputs=[fresh], outputs=[tensor],
             attrs={"perm": list(perm)})
    return fresh


def _transpose(ctx, tensor, perm: tuple):
    """A Transpose of a source tensor into the layout the interior now uses (`perm`)."""
    result = ctx.variable(f"{tensor.name}_{layout_name(perm)}", dtype=tensor.dtype)
    ctx.node("Transpose", f"{tensor.name}_to_{layout_name(perm)}", inputs=[tensor], outputs=[result],
             attrs={"perm": list(perm)})
    return result


def _bypass(ctx, conversion, result):
    """Readers of a leaving conversion read `result` instead; returns the tensor that holds
    `result` afterwards (a graph output keeps its name: the node computing it writes it)."""
    target = conversion.outputs[0]
    conversion.outputs = []
    graph_outputs = {t.name for t in ctx.graph.outputs}
    if target.name not in graph_outputs:
        _redirect(target, result)
        return result
    producer = result.inputs[0] if result.inputs else None
    if producer is None or result.name in graph_outputs:
        ctx.node("Identity", f"{conversion.name}_cancelled", inputs=[result], outputs=[target])
        return result
    _redirect(result, target)
    producer.outputs[producer.outputs.index(result)] = target
    return target


def _redirect(old, new) -> None:
    """Every node reading `old` reads `new`, subgraphs that read it from outside included."""
    import onnx_graphsurgeon as gs

    def replace(node) -> None:
        for i, tensor in enumerate(node.inputs):
            if tensor is old:
                node.inputs[i] = new
        for value in node.attrs.values():
            for graph in value if isinstance(value, list) else [value]:
                if isinstance(graph, gs.Graph):
                    for inner in graph.nodes:
                        replace(inner)

    for consumer in list(old.outputs):
        replace(consumer)
