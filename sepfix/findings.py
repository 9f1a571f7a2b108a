"""What a rule reports: one mangled pattern at one place in the model."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Finding:
    """One occurrence of a catalogued mangle.

    `node` is the node's name, or `<op_type>#<index>` for an unnamed node; `graph` is the path
    of the graph that holds it (`main`, `main/If_3.then_branch`, `function:domain.Name`), so a
    finding inside a subgraph or a model-local function can be found again. `nodes` lists every
    node the mangle spans (the Split, the per-channel convs, the Concat ...), `node` first.
    `details` holds the evidence as plain data (shapes, group found, group expected) and
    whatever a fix needs to act without detecting again.
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

    @property
    def location(self) -> str:
        """`node` qualified by its graph when it is not in the main graph."""
        return self.node if self.graph == "main" else f"{self.graph}/{self.node}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["location"] = self.location
        return data
