"""What a rule reports: one mangled pattern at one place in the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Finding:
    """One occurrence of a catalogued mangle, as the user sees it.

    `node` is the node's name, or `<op_type>#<index>` for an unnamed node; `graph` is the path
    of the graph that holds it (`main`, `main/If_3.then_branch`, `function:domain.Name`), so a
    finding inside a subgraph or a model-local function can be found again. `nodes` lists every
    node the mangle spans (the Split, the per-channel convs, the Concat ...), `node` first.
    `details` holds the evidence as plain data (shapes, group found, group expected).
    `severity` is the level: error, warning or info (info shows only with --advice).
    `match` is the rule's match the finding came from (what a rewrite acts on); it stays in
    the process and never reaches a report.
    """

    code: str
    name: str
    node: str
    message: str
    fixable: bool
    graph: str = "main"
    nodes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    severity: str = "warning"
    match: Any = field(default=None, repr=False, compare=False)

    @property
    def location(self) -> str:
        """`node` qualified by its graph when it is not in the main graph."""
        return self.node if self.graph == "main" else f"{self.graph}/{self.node}"

    @property
    def counts(self) -> bool:
        """True when the finding fails a check (info findings are advice)."""
        return self.severity != "info"

    def detached(self) -> "Finding":
        """The same finding without its match (to cross a process boundary)."""
        return Finding(self.code, self.name, self.node, self.message, self.fixable, self.graph,
                       list(self.nodes), dict(self.details), self.severity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code, "name": self.name, "severity": self.severity, "node": self.node,
            "graph": self.graph, "location": self.location, "nodes": list(self.nodes),
            "message": self.message, "fixable": self.fixable, "details": dict(self.details),
        }
