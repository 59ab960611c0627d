"""The search space: a define-by-run sampler turning an Optuna trial into an AgentGraph.

Three levels, each switchable (``--levels prompt,module,agent``):

- ``prompt``: the instruction of each LM node, chosen from a pool, plus a reasoning style;
- ``module``: the operator at each slot and its knobs (temperature, n, rounds);
- ``agent``: the topology: a single node; k parallel branches + an aggregator; a chain with a
  refine stage.

A level that is off is held at a fixed default (one ``cot`` node, the operator's own instruction).
Parameter names are hierarchical (``agent.topology``, ``node.b1.op``, ``node.b1.temperature``,
``prompt.b1.instruction``) so MLflow and Optuna's plots group them. The space itself is data:
:meth:`SearchSpace.describe` lists every parameter with its domain and condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentsearch.errors import UserError
from agentsearch.search_space.graph import ENTRY, AgentGraph
from agentsearch.search_space.operators import OPERATORS

LEVELS = ("prompt", "module", "agent")

#: Hand-written instructions; index 0 means "the operator's default instruction".
DEFAULT_INSTRUCTIONS: tuple[str, ...] = (
    "",
    "Read the question carefully and solve it. Put only the final answer in the answer field.",
    "Work through the problem step by step, check each calculation, then put only the final answer "
    "(a number or short phrase) in the answer field.",
    "You are an expert problem solver. Identify what is asked, break the problem into small parts, "
    "solve each part, verify the result, and give only the final answer in the answer field.",
    "Solve the problem concisely with only the essential steps. The answer field holds just the final answer.",
)

#: Reasoning styles appended to the instruction (prompt level).
STYLES: dict[str, str] = {
    "plain": "",
    "step_by_step": "Think step by step.",
    "verify": "Before answering, verify the result by checking it against the question.",
    "decompose": "First list the quantities given and what is asked, then solve.",
}

TOPOLOGIES = ("single", "branches", "chain_refine")
SOLVERS = ("predict", "cot", "self_consistency", "self_refine")
AGGREGATORS = ("vote", "aggregate")


class TrialLike(Protocol):
    """The subset of ``optuna.Trial`` the sampler uses (tests may pass a stand-in)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...


@dataclass(frozen=True)
class SearchSpace:
    """What the optimizer may vary; all bounds are inclusive."""

    levels: frozenset[str] = frozenset(LEVELS)
    instructions: tuple[str, ...] = DEFAULT_INSTRUCTIONS
    styles: tuple[str, ...] = tuple(STYLES)
    solvers: tuple[str, ...] = SOLVERS
    topologies: tuple[str, ...] = TOPOLOGIES
    aggregators: tuple[str, ...] = AGGREGATORS
    branches: tuple[int, int] = (2, 3)
    temperature: tuple[float, float] = (0.0, 1.0)
    temperature_step: float = 0.1
    n: tuple[int, int] = (3, 7)
    n_step: int = 2
    rounds: tuple[int, int] = (1, 3)
    fixed_op: str = "cot"
    max_calls_per_question: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        bad = sorted(set(self.levels) - set(LEVELS))
        if bad or not self.levels:
            raise UserError(f"--levels: unknown level {bad[0]!r} (choose from {', '.join(LEVELS)})" if bad
                            else "--levels: choose at least one of prompt, module, agent")
        for op in (*self.solvers, *self.aggregators, self.fixed_op):
            if op not in OPERATORS:
                raise UserError(f"search space: unknown operator {op!r}")

    @classmethod
    def from_levels(cls, levels: str | list[str] | tuple[str, ...], **kwargs: Any) -> SearchSpace:
        items = [s.strip() for s in levels.split(",")] if isinstance(levels, str) else list(levels)
        return cls(levels=frozenset(s for s in items if s), **kwargs)

    # -- sampling ----------------------------------------------------------------------------

    def sample(self, trial: TrialLike) -> AgentGraph:
        """Define-by-run: ask the trial for each parameter and build the graph."""
        topology = trial.suggest_categorical("agent.topology", list(self.topologies)) if "agent" in self.levels else "single"
        nodes: list[dict[str, Any]] = []
        if topology == "single":
            nodes.append(self._solver(trial, "s0", [ENTRY]))
            output = "s0"
        elif topology == "branches":
            k = trial.suggest_int("agent.branches", *self.branches)
            for i in range(1, k + 1):
                nodes.append(self._solver(trial, f"b{i}", [ENTRY]))
            agg = trial.suggest_categorical("agent.aggregator", list(self.aggregators))
            agg_node: dict[str, Any] = {"id": "agg", "op": agg, "inputs": [f"b{i}" for i in range(1, k + 1)]}
            if agg != "vote":
                agg_node["params"] = {}
            nodes.append(agg_node)
            output = "agg"
        elif topology == "chain_refine":
            nodes.append(self._solver(trial, "s0", [ENTRY]))
            rounds = trial.suggest_int("node.refine.rounds", *self.rounds)
            nodes.append({"id": "refine", "op": "self_refine", "inputs": ["s0"], "params": {"rounds": rounds}})
            output = "refine"
        else:  # pragma: no cover - guarded by the choices
            raise ValueError(topology)
        return AgentGraph.from_dict({"name": f"{topology}", "output": output, "nodes": nodes}, source="search space")

    def _solver(self, trial: TrialLike, slot: str, inputs: list[str]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if "module" in self.levels:
            op = trial.suggest_categorical(f"node.{slot}.op", list(self.solvers))
            params["temperature"] = round(
                trial.suggest_float(f"node.{slot}.temperature", *self.temperature, step=self.temperature_step), 4
            )
            if op == "self_consistency":
                params["n"] = trial.suggest_int(f"node.{slot}.n", *self.n, step=self.n_step)
            elif op == "self_refine":
                params["rounds"] = trial.suggest_int(f"node.{slot}.rounds", *self.rounds)
        else:
            op = self.fixed_op
        if "prompt" in self.levels:
            idx = trial.suggest_categorical(f"prompt.{slot}.instruction", list(range(len(self.instructions))))
            style = trial.suggest_categorical(f"prompt.{slot}.style", list(self.styles))
            text = " ".join(t for t in (self.instructions[idx], STYLES.get(style, "")) if t)
            if text:
                default = OPERATORS[op].default_instruction
                params["instruction"] = text if self.instructions[idx] else f"{default} {text}"
        return {"id": slot, "op": op, "inputs": inputs, "params": params}

    # -- encoding known graphs (baselines) ---------------------------------------------------

    def encode(self, graph: AgentGraph) -> dict[str, Any] | None:
        """The parameters that make :meth:`sample` rebuild ``graph``, or None if it is not in the space."""
        if len(graph.nodes) != 1:
            return None
        node = graph.nodes[0]
        params: dict[str, Any] = {}
        if "agent" in self.levels:
            params["agent.topology"] = "single"
        p = node.params
        if "module" in self.levels:
            if node.op not in self.solvers:
                return None
            params["node.s0.op"] = node.op
            params["node.s0.temperature"] = p.temperature  # type: ignore[attr-defined]
            if node.op == "self_consistency":
                params["node.s0.n"] = p.n  # type: ignore[attr-defined]
            if node.op == "self_refine":
                params["node.s0.rounds"] = p.rounds  # type: ignore[attr-defined]
        elif node.op != self.fixed_op:
            return None
        if "prompt" in self.levels:
            if getattr(p, "instruction", None):
                return None
            params["prompt.s0.instruction"] = 0
            params["prompt.s0.style"] = "plain"
        rebuilt = self.sample(_FixedTrial(params))
        rebuilt_node = rebuilt.nodes[0].model_copy(update={"id": node.id})
        same = rebuilt_node.params == node.params and rebuilt_node.op == node.op
        return params if same else None

    # -- description -------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Every parameter: name, level, domain, and when it is active."""
        rows: list[dict[str, Any]] = []

        def add(name: str, level: str, domain: str, when: str = "always") -> None:
            rows.append({"name": name, "level": level, "domain": domain, "when": when})

        slot_when = "always"
        if "agent" in self.levels:
            add("agent.topology", "agent", f"categorical {list(self.topologies)}")
            add("agent.branches", "agent", f"int [{self.branches[0]}, {self.branches[1]}]", "topology=branches")
            add("agent.aggregator", "agent", f"categorical {list(self.aggregators)}", "topology=branches")
            add("node.refine.rounds", "agent", f"int [{self.rounds[0]}, {self.rounds[1]}]", "topology=chain_refine")
            slot_when = "per slot: s0 (single, chain_refine) or b1..bk (branches)"
        slot = "<slot>" if "agent" in self.levels else "s0"
        if "module" in self.levels:
            add(f"node.{slot}.op", "module", f"categorical {list(self.solvers)}", slot_when)
            add(
                f"node.{slot}.temperature", "module",
                f"float [{self.temperature[0]}, {self.temperature[1]}] step {self.temperature_step}", slot_when,
            )
            add(f"node.{slot}.n", "module", f"int [{self.n[0]}, {self.n[1]}] step {self.n_step}", "op=self_consistency")
            add(f"node.{slot}.rounds", "module", f"int [{self.rounds[0]}, {self.rounds[1]}]", "op=self_refine")
        else:
            add(f"node.{slot}.op", "module (fixed)", f"'{self.fixed_op}'", slot_when)
        if "prompt" in self.levels:
            add(f"prompt.{slot}.instruction", "prompt", f"index into {len(self.instructions)} instructions", slot_when)
            add(f"prompt.{slot}.style", "prompt", f"categorical {list(self.styles)}", slot_when)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything that defines the space (stored with the study; a resumed study must match it)."""
        return {
            "levels": sorted(self.levels),
            "instructions": list(self.instructions),
            "styles": list(self.styles),
            "solvers": list(self.solvers),
            "topologies": list(self.topologies),
            "aggregators": list(self.aggregators),
            "branches": list(self.branches),
            "temperature": [*self.temperature, self.temperature_step],
            "n": [*self.n, self.n_step],
            "rounds": list(self.rounds),
            "fixed_op": self.fixed_op,
            "max_calls_per_question": self.max_calls_per_question,
        }


class _FixedTrial:
    """A TrialLike answering from a dict (to rebuild a graph from known parameters)."""

    def __init__(self, params: Mapping[str, Any]):
        self.params = dict(params)

    def _get(self, name: str) -> Any:
        if name not in self.params:
            raise KeyError(name)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._get(name)

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return int(self._get(name))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        return float(self._get(name))


def graph_from_params(space: SearchSpace, params: Mapping[str, Any]) -> AgentGraph:
    """Rebuild the graph a finished trial evaluated, from its stored parameters."""
    return space.sample(_FixedTrial(params))
