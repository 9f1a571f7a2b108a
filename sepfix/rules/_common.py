"""Small helpers shared by rule modules: building findings, reading conv attributes."""

from __future__ import annotations

from sepfix.findings import Finding
from sepfix.graph import Node


def make_finding(
    code: str,
    name: str,
    node: Node,
    message: str,
    *,
    fixable: bool,
    nodes: list[Node] | None = None,
    details: dict | None = None,
    severity: str = "warning",
) -> Finding:
    spanned = [node] + [n for n in (nodes or []) if n is not node]
    return Finding(
        code=code,
        name=name,
        node=node.label,
        message=message,
        fixable=fixable,
        graph=node.scope.path,
        nodes=[n.label for n in spanned],
        details={"node_index": node.index, "graph_address": list(node.scope.address), **(details or {})},
        severity=severity,
    )


def spatial_attrs(node: Node, rank: int) -> dict:
    """strides, dilations and pads of a conv with ONNX defaults filled in."""
    return {
        "strides": list(node.attr("strides") or [1] * rank),
        "dilations": list(node.attr("dilations") or [1] * rank),
        "pads": list(node.attr("pads") or [0] * (2 * rank)),
        "auto_pad": _text(node.attr("auto_pad", "NOTSET")),
    }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def fmt_shape(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"
