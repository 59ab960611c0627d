"""AgentGraph: the typed, frozen configuration of one candidate agent.

An agent is a DAG on :class:`networkx.DiGraph`. The entry is the implicit node ``question``; every
other node runs one operator (``op``) with typed ``params`` and receives the question plus the
outputs of the nodes listed in its ``inputs``. The ``output`` node's answer is the agent's answer.

The config is what is stored, logged and exported, never a live program: compile it with
:func:`agentsearch.evaluators.operators.compile.compile_graph`. Its :attr:`AgentGraph.config_hash` is a stable
identity (the same behaviour-relevant config gives the same hash on every machine).

YAML form (human-editable; params left out take the operator's defaults)::

    name: cot_sc5
    output: solve
    nodes:
      - id: solve
        op: self_consistency
        params: {n: 5, temperature: 0.7}
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import networkx as nx
import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError

from agentsearch.errors import GraphError
from agentsearch.search_space.operators import OPERATORS, OperatorSpec, OpParams

ENTRY = "question"
_ID_PATTERN = r"^[A-Za-z_][A-Za-z0-9_\-]{0,63}$"


class NodeConfig(BaseModel):
    """One operator node: its id, operator, upstream inputs and validated params."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=_ID_PATTERN)
    op: str
    inputs: tuple[str, ...] = (ENTRY,)
    params: SerializeAsAny[OpParams]

    @property
    def spec(self) -> OperatorSpec:
        return OPERATORS[self.op]

    @property
    def upstream(self) -> tuple[str, ...]:
        """Upstream node ids (the entry excluded)."""
        return tuple(i for i in self.inputs if i != ENTRY)

    def expected_calls(self) -> int:
        return self.spec.calls(self.params, len(self.upstream))

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        params = self.params.model_dump(mode="json", exclude_unset=not full)
        out: dict[str, Any] = {"id": self.id, "op": self.op}
        if full or self.inputs != (ENTRY,):
            out["inputs"] = list(self.inputs)
        if params or full:
            out["params"] = params
        return out


class AgentGraph(BaseModel):
    """A validated agent graph. Build it with :meth:`from_dict`, :meth:`load` or :meth:`single`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = "agent"
    description: str = ""
    nodes: tuple[NodeConfig, ...]
    output: str

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Any, source: str = "graph") -> AgentGraph:
        """Validate raw data (from YAML/JSON); errors name ``source``, the node and the field."""
        if not isinstance(data, Mapping):
            raise GraphError(f"{source}: expected a mapping with 'nodes' and 'output', got {type(data).__name__}")
        unknown = sorted(set(data) - {"name", "description", "nodes", "output"})
        if unknown:
            raise GraphError(
                f"{source}: field '{unknown[0]}': unknown field (allowed: name, description, nodes, output)"
            )
        raw_nodes = data.get("nodes")
        if not isinstance(raw_nodes, list) or not raw_nodes:
            raise GraphError(f"{source}: field 'nodes': must be a non-empty list of nodes")
        nodes = [_parse_node(raw, i, source) for i, raw in enumerate(raw_nodes)]
        output = data.get("output")
        if output is None and len(nodes) == 1:
            output = nodes[0].id
        if not isinstance(output, str) or not output:
            raise GraphError(f"{source}: field 'output': missing (name the exit node whose answer is the agent's)")
        try:
            graph = cls(
                name=str(data.get("name") or "agent"),
                description=str(data.get("description") or ""),
                nodes=tuple(nodes),
                output=output,
            )
        except ValidationError as exc:  # pragma: no cover - node-level errors are caught above
            raise GraphError(f"{source}: {_first_error(exc)}") from None
        graph.check(source)
        return graph

    @classmethod
    def single(cls, op: str, name: str | None = None, node_id: str = "solve", **params: Any) -> AgentGraph:
        """A one-node graph, e.g. ``AgentGraph.single("cot", temperature=0.2)``."""
        return cls.from_dict(
            {"name": name or op, "output": node_id, "nodes": [{"id": node_id, "op": op, "params": params}]}
        )

    @classmethod
    def load(cls, path: str | Path) -> AgentGraph:
        """Load a graph from a YAML or JSON file."""
        from agentsearch.configfiles import read_text

        path = Path(path)
        return cls.from_text(read_text(path, GraphError), source=str(path))

    @classmethod
    def from_text(cls, text: str, source: str = "graph") -> AgentGraph:
        from agentsearch.configfiles import load_yaml

        # YAML is a superset of JSON; sizes, nesting and alias expansion are bounded (configfiles)
        return cls.from_dict(load_yaml(text, source, GraphError), source=source)

    # -- validation ---------------------------------------------------------------------------

    def check(self, source: str = "graph") -> None:
        """Structural validation: ids, inputs, arity, cycles, exit node, dangling nodes."""
        seen: set[str] = set()
        for node in self.nodes:
            if node.id == ENTRY:
                raise GraphError(f"{source}: node '{ENTRY}': field 'id': '{ENTRY}' is reserved for the entry")
            if node.id in seen:
                raise GraphError(f"{source}: node '{node.id}': field 'id': duplicate node id")
            seen.add(node.id)
        for node in self.nodes:
            if not node.inputs:
                raise GraphError(f"{source}: node '{node.id}': field 'inputs': empty (use [{ENTRY}] for the entry)")
            for ref in node.inputs:
                if ref != ENTRY and ref not in seen:
                    raise GraphError(f"{source}: node '{node.id}': field 'inputs': unknown node '{ref}'")
            if len(set(node.inputs)) != len(node.inputs):
                raise GraphError(f"{source}: node '{node.id}': field 'inputs': listed twice")
            spec, k = node.spec, len(node.upstream)
            if k < spec.min_inputs:
                raise GraphError(
                    f"{source}: node '{node.id}': field 'inputs': {node.op} needs at least {spec.min_inputs} "
                    f"upstream nodes, got {k}"
                )
            if spec.max_inputs is not None and k > spec.max_inputs:
                raise GraphError(
                    f"{source}: node '{node.id}': field 'inputs': {node.op} takes at most {spec.max_inputs} "
                    f"upstream nodes, got {k}"
                )
        if self.output not in seen:
            raise GraphError(f"{source}: field 'output': unknown exit node '{self.output}'")
        g = self.to_networkx()
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            raise GraphError(f"{source}: node '{cycle[0][0]}': field 'inputs': cycle {path}")
        reaching = nx.ancestors(g, self.output) | {self.output}
        for node in self.nodes:
            if node.id not in reaching:
                raise GraphError(
                    f"{source}: node '{node.id}': dangling (its output never reaches the exit node '{self.output}')"
                )

    # -- views --------------------------------------------------------------------------------

    def to_networkx(self) -> nx.DiGraph:
        """The DAG: the entry node plus one node per operator, edges upstream -> downstream."""
        g = nx.DiGraph(name=self.name, output=self.output)
        g.add_node(ENTRY, op="entry")
        for node in self.nodes:
            g.add_node(node.id, op=node.op, params=node.params.model_dump(mode="json"))
        for node in self.nodes:
            for ref in node.inputs:
                g.add_edge(ref, node.id)
        return g

    def node(self, node_id: str) -> NodeConfig:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def topological_generations(self) -> list[list[str]]:
        """Operator nodes grouped into generations; nodes of one generation are independent."""
        gens = nx.topological_generations(self.to_networkx())
        return [sorted(n for n in gen if n != ENTRY) for gen in gens if any(n != ENTRY for n in gen)]

    def with_format(self, fmt: str) -> AgentGraph:
        """The same agent with every LM node in output format ``fmt`` (text, chat, xml, json)."""
        from agentsearch.search_space.operators import FORMATS

        if fmt not in FORMATS:
            raise GraphError(f"graph '{self.name}': unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
        nodes = tuple(
            node.model_copy(update={"params": node.params.model_copy(update={"format": fmt})})
            if "format" in type(node.params).model_fields
            else node
            for node in self.nodes
        )
        return self.model_copy(update={"nodes": nodes})

    def formats(self) -> set[str]:
        """Output formats the graph's LM nodes use."""
        return {node.params.format for node in self.nodes if hasattr(node.params, "format")}

    def expected_calls(self) -> int:
        """LM calls per question (upper bound from the operators' cost models)."""
        return sum(node.expected_calls() for node in self.nodes)

    def models(self) -> set[str]:
        """Model aliases the graph's LM nodes use."""
        return {node.params.model for node in self.nodes if hasattr(node.params, "model")}

    def summary(self) -> str:
        """One line, e.g. ``solve=self_consistency(n=5, temperature=0.7)``."""
        parts = []
        for node in self.nodes:
            knobs = node.params.model_dump(mode="json", exclude_unset=True, exclude={"instruction", "demos"})
            inner = ", ".join(f"{k}={v}" for k, v in knobs.items())
            parts.append(f"{node.id}={node.op}({inner})")
        return " -> ".join(parts)

    # -- serialization ------------------------------------------------------------------------

    def to_dict(self, full: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["output"] = self.output
        out["nodes"] = [node.to_dict(full=full) for node in self.nodes]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=100)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def save(self, path: str | Path) -> Path:
        """Write YAML (or JSON when the suffix is .json)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() if path.suffix == ".json" else self.to_yaml(), encoding="utf-8")
        return path

    @cached_property
    def config_hash(self) -> str:
        """Stable identity of the behaviour: operators, params (defaults filled in) and wiring.

        Node ids and the graph's name don't count: nodes are renamed canonically (by topological
        generation, then by content), so two graphs that differ only in naming share a hash.
        """
        by_id = {node.id: node for node in self.nodes}
        canonical: dict[str, str] = {ENTRY: ENTRY}
        nodes = []
        for generation in self.topological_generations():
            keyed = []
            for node_id in generation:
                node = by_id[node_id]
                entry = {
                    "op": node.op,
                    "inputs": sorted(canonical[i] for i in node.inputs),
                    "params": node.params.model_dump(mode="json"),
                }
                keyed.append((json.dumps(entry, sort_keys=True, ensure_ascii=False), node_id, entry))
            for _, node_id, entry in sorted(keyed):
                canonical[node_id] = f"n{len(canonical) - 1}"
                nodes.append(entry)
        canon = {"output": canonical[self.output], "nodes": nodes}
        blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> AgentGraph:
        """A copy with ``update`` applied; structural updates are re-validated, the identity recomputed."""
        copy = super().model_copy(update=update, deep=deep)
        copy.__dict__.pop("config_hash", None)  # cached_property: never carry a stale identity
        if update and {"nodes", "output"} & set(update):
            copy.check(f"graph '{copy.name}'")
        return copy

    def __hash__(self) -> int:
        return hash(self.config_hash)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgentGraph) and self.config_hash == other.config_hash

    def render_png(self, path: str | Path, dpi: int = 110) -> Path:
        """Draw the graph (see :meth:`figure`) to a PNG file (or SVG, by the suffix)."""
        import matplotlib.pyplot as plt

        fig = self.figure()
        try:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(path, dpi=dpi, bbox_inches="tight")
        finally:
            plt.close(fig)
        return path

    def figure(self) -> Any:
        """The graph as a matplotlib figure (entry at the left, layers to the right; the caller closes it).

        Each node is a box sized to its label (id, operator, every knob set), so nothing is cut off; the
        figure is sized to the boxes."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        g = self.to_networkx()
        labels = {ENTRY: "question"}
        for node in self.nodes:
            knobs = node.params.model_dump(mode="json", exclude_unset=True, exclude={"instruction", "demos"})
            extra = [f"{k}={_short(v)}" for k, v in knobs.items()]
            labels[node.id] = "\n".join([node.id, f"[{node.op}]", *extra])
        layers = [sorted(gen, key=str) for gen in nx.topological_generations(g)]

        def width(n: str) -> float:  # inches, at font size 8 (monospace-ish estimate) plus padding
            return 0.075 * max(len(line) for line in labels[n].splitlines()) + 0.35

        def height(n: str) -> float:
            return 0.16 * len(labels[n].splitlines()) + 0.3

        gap_x, gap_y = 0.6, 0.3
        col_w = [max(width(n) for n in layer) for layer in layers]
        col_h = [sum(height(n) for n in layer) + gap_y * (len(layer) - 1) for layer in layers]
        fig_w, fig_h = sum(col_w) + gap_x * (len(layers) - 1), max(col_h)
        pos: dict[str, tuple[float, float]] = {}
        x = 0.0
        for layer, w, h in zip(layers, col_w, col_h, strict=True):
            y = (fig_h + h) / 2  # top of the column, columns centred vertically
            for n in layer:
                pos[n] = (x + w / 2, y - height(n) / 2)
                y -= height(n) + gap_y
            x += w + gap_x
        fig, ax = plt.subplots(figsize=(max(3.0, fig_w + 0.4), max(1.5, fig_h + 0.6)))
        try:  # coordinates are inches: the boxes fit the axes
            ax.set_xlim(-0.2, fig_w + 0.2)
            ax.set_ylim(-0.3, fig_h + 0.3)
            ax.axis("off")
            boxes = {}
            for n, (bx, by) in pos.items():
                color = "#d9d9d9" if n == ENTRY else "#ffd27f" if n == self.output else "#9ecae1"
                boxes[n] = ax.text(
                    bx, by, labels[n], ha="center", va="center", fontsize=8, family="monospace", zorder=3,
                    bbox={"boxstyle": "round,pad=0.4", "facecolor": color, "edgecolor": "#555555"},
                )  # fmt: skip
            for u, v in g.edges:
                ax.annotate(
                    "", xy=pos[v], xytext=pos[u], zorder=4,
                    arrowprops={"arrowstyle": "-|>", "mutation_scale": 14, "color": "#333333", "shrinkA": 2,
                                "shrinkB": 2, "patchA": boxes[u].get_bbox_patch(), "patchB": boxes[v].get_bbox_patch()},
                )  # fmt: skip
            ax.set_title(f"{self.name}  ({self.config_hash})", fontsize=9)
        except BaseException:
            plt.close(fig)
            raise
        return fig


def _short(value: Any, limit: int = 48) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if p != "__root__")
    field = f"{prefix}{'.' if prefix and loc else ''}{loc}"
    value = err.get("input")
    shown = f" (got {value!r})" if not isinstance(value, Mapping | list) and value is not None else ""
    return f"field '{field}': {err['msg']}{shown}" if field else f"{err['msg']}{shown}"


def _parse_node(raw: Any, index: int, source: str) -> NodeConfig:
    if not isinstance(raw, Mapping):
        raise GraphError(f"{source}: nodes[{index}]: expected a mapping with id, op, inputs, params")
    node_id = raw.get("id")
    label = f"node '{node_id}'" if isinstance(node_id, str) and node_id else f"nodes[{index}]"
    unknown = sorted(set(raw) - {"id", "op", "inputs", "params"})
    if unknown:
        raise GraphError(f"{source}: {label}: field '{unknown[0]}': unknown field (allowed: id, op, inputs, params)")
    op = raw.get("op")
    if not isinstance(op, str) or op not in OPERATORS:
        known = ", ".join(sorted(OPERATORS))
        raise GraphError(f"{source}: {label}: field 'op': unknown operator {op!r} (known: {known})")
    raw_params = raw.get("params") or {}
    if not isinstance(raw_params, Mapping):
        raise GraphError(f"{source}: {label}: field 'params': expected a mapping")
    try:
        params = OPERATORS[op].validate_params(dict(raw_params))
    except ValidationError as exc:
        raise GraphError(f"{source}: {label}: {_first_error(exc, 'params')}") from None
    inputs = raw.get("inputs", [ENTRY])
    if isinstance(inputs, str):
        inputs = [inputs]
    try:
        return NodeConfig(
            id=node_id, op=op, inputs=tuple(inputs) if isinstance(inputs, list) else inputs, params=params
        )
    except ValidationError as exc:
        raise GraphError(f"{source}: {label}: {_first_error(exc)}") from None
