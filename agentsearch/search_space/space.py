"""The search space: a define-by-run sampler turning an Optuna trial into an AgentGraph.

Three levels, each switchable (``--levels prompt,module,agent``):

- ``prompt``: the instruction of each LM node, chosen from a pool, plus a reasoning style, and its
  output format (``text``, ``chat``, ``xml``, ``json``: how it asks for and reads its outputs);
- ``module``: the operator at each slot and its knobs (temperature, and what the operator's spec
  declares searchable: n, rounds, agents, beam width, tools, ...), and with several model aliases,
  the model each node runs on;
- ``agent``: the topology, from a small grammar: ``width`` parallel branches, each a chain of
  ``depth`` operators (a later operator reads the earlier one's solution); an aggregator when there
  are several branches (vote, fuse, rank, judge, aggregate); an optional final stage that refines
  or verifies (self_refine, reflexion).

A level that is off is held at a fixed default (one ``cot`` node, the operator's own instruction,
the first of ``formats``).
Parameter names are hierarchical (``agent.width``, ``agent.b2.depth``, ``node.b1s1.op``,
``node.b1s1.temperature``, ``node.b1s1.self_consistency.n``, ``prompt.b1s1.instruction``,
``prompt.agg.format``). The space itself is data:
:meth:`SearchSpace.describe` lists every parameter with its domain and condition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from agentsearch.defaults import MAX_CALLS_PER_QUESTION
from agentsearch.errors import UserError
from agentsearch.search_space.graph import ENTRY, AgentGraph
from agentsearch.search_space.operators import DEFAULT_FORMAT, FORMATS, OPERATORS, LMParams

LEVELS = ("prompt", "module", "agent")

#: Hand-written instructions; index 0 means "the operator's default instruction".
DEFAULT_INSTRUCTIONS: tuple[str, ...] = (
    "",
    "Read the question carefully and solve it. State only the final answer as the answer.",
    "Work through the problem step by step, check each calculation, then put only the final answer "
    "(a number or short phrase) as the answer.",
    "You are an expert problem solver. Identify what is asked, break the problem into small parts, "
    "solve each part, verify the result, and give only the final answer as the answer.",
    "Solve the problem concisely with only the essential steps. The answer is just the final answer.",
)

#: Reasoning styles appended to the instruction (prompt level).
STYLES: dict[str, str] = {
    "plain": "",
    "step_by_step": "Think step by step.",
    "verify": "Before answering, verify the result by checking it against the question.",
    "decompose": "First list the quantities given and what is asked, then solve.",
}

#: Solver operators the module level chooses from by default (every solver in the library).
SOLVERS: tuple[str, ...] = tuple(name for name, spec in OPERATORS.items() if spec.kind == "solver")
#: Aggregators and final stages, from the operator specs (a new one is its spec, nothing here).
AGGREGATORS: tuple[str, ...] = tuple(name for name, spec in OPERATORS.items() if spec.kind == "aggregator")
FINALS: tuple[str, ...] = ("none", *(name for name, spec in OPERATORS.items() if spec.final))
#: The knob a final stage searches (its spec's first knob, with the spec's bounds).
FINAL_KNOB: dict[str, tuple[str, int, int]] = {
    op: (knob, int(domain[1]), int(domain[2]))
    for op in FINALS[1:]
    for knob, domain in list(OPERATORS[op].knobs.items())[:1]
}


@dataclass(frozen=True)
class PromptPool:
    """Instructions and demo sets added during a study (by an LLM proposer, by bootstrapping): immutable,
    an explicit input of :meth:`SearchSpace.sample` (whoever owns the study holds the current pool).

    The space reserves ``proposal_slots`` instruction choices and ``demo_slots`` demo-set choices
    from the start (Optuna's categorical choices can't grow); a slot the pool has not filled yet
    behaves like choice 0 (the operator's default instruction; no demos).
    """

    instructions: tuple[str, ...] = ()
    demo_sets: tuple[tuple[Mapping[str, str], ...], ...] = ()

    def with_instruction(self, text: str) -> tuple[PromptPool, int]:
        """The pool with ``text`` added, and its 0-based position (-1 and the same pool if already there)."""
        if text in self.instructions:
            return self, -1
        return replace(self, instructions=(*self.instructions, text)), len(self.instructions)

    def with_demo_sets(self, sets: Sequence[Sequence[Mapping[str, str]]]) -> PromptPool:
        return replace(self, demo_sets=(*self.demo_sets, *(tuple(dict(d) for d in s) for s in sets)))

    def to_dict(self) -> dict[str, Any]:
        return {"instructions": list(self.instructions), "demo_sets": [[dict(d) for d in s] for s in self.demo_sets]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> PromptPool:
        data = data or {}
        return cls(
            tuple(str(t) for t in data.get("instructions", [])),
            tuple(tuple(dict(d) for d in s) for s in data.get("demo_sets", [])),
        )


#: The pool of a study nothing was proposed or bootstrapped in.
EMPTY_POOL = PromptPool()


class TrialLike(Protocol):
    """The subset of ``optuna.Trial`` the sampler uses (tests may pass a stand-in)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...


class RandomTrial:
    """A :class:`TrialLike` drawing each parameter uniformly with ``rng``: evolution's new nodes get the
    same domains as the Optuna sampler's, because the same code (:meth:`SearchSpace.solver_node`, ...)
    suggests them."""

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self.rng.choice(list(choices))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1) -> int:
        return self.rng.randrange(low, high + 1, step)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        if step:
            return round(low + self.rng.randrange(int(round((high - low) / step)) + 1) * step, 4)
        return self.rng.uniform(low, high)


@dataclass(frozen=True)
class SearchSpace:
    """What the optimizer may vary; all bounds are inclusive."""

    levels: frozenset[str] = frozenset(LEVELS)
    instructions: tuple[str, ...] = DEFAULT_INSTRUCTIONS
    styles: tuple[str, ...] = tuple(STYLES)
    solvers: tuple[str, ...] = SOLVERS
    aggregators: tuple[str, ...] = AGGREGATORS
    finals: tuple[str, ...] = FINALS
    max_width: int = 3
    max_depth: int = 2
    temperature: tuple[float, float] = (0.0, 1.0)
    temperature_step: float = 0.1
    models: tuple[str, ...] = ("default",)
    formats: tuple[str, ...] = FORMATS  # output formats searched (the prompt level); the first when it is off
    fixed_op: str = "cot"
    max_calls_per_question: int | None = MAX_CALLS_PER_QUESTION
    proposal_slots: int = 0  # instruction choices reserved for proposed instructions (see PromptPool)
    demo_slots: int = 0  # demo-set choices reserved for bootstrapped demos

    def __post_init__(self) -> None:
        bad = sorted(set(self.levels) - set(LEVELS))
        if bad or not self.levels:
            raise UserError(
                f"--levels: unknown level {bad[0]!r} (choose from {', '.join(LEVELS)})"
                if bad
                else "--levels: choose at least one of prompt, module, agent"
            )
        for op in (*self.solvers, *self.aggregators, self.fixed_op, *(f for f in self.finals if f != "none")):
            if op not in OPERATORS:
                raise UserError(f"search space: unknown operator {op!r}")
        if not self.models:
            raise UserError("search space: at least one model alias")
        bad_formats = [f for f in self.formats if f not in FORMATS]
        if bad_formats or not self.formats or len(set(self.formats)) != len(self.formats):
            raise UserError(
                f"--formats: unknown format {bad_formats[0]!r} (choose from {', '.join(FORMATS)})"
                if bad_formats
                else f"--formats: give each format once, at least one of {', '.join(FORMATS)}"
            )
        if self.max_calls_per_question is not None and self.max_calls_per_question < 1:
            raise UserError("--max-calls-per-question: must be >= 1")

    @classmethod
    def from_levels(cls, levels: str | list[str] | tuple[str, ...], **kwargs: Any) -> SearchSpace:
        items = [s.strip() for s in levels.split(",")] if isinstance(levels, str) else list(levels)
        return cls(levels=frozenset(s for s in items if s), **kwargs)

    # -- sampling ----------------------------------------------------------------------------

    def sample(self, trial: TrialLike, pool: PromptPool = EMPTY_POOL) -> AgentGraph:
        """Define-by-run: ask the trial for each parameter and build the graph (``pool``: the study's proposed
        instructions and bootstrapped demo sets, filling the reserved prompt choices)."""
        agent = "agent" in self.levels
        width = trial.suggest_int("agent.width", 1, self.max_width) if agent else 1
        nodes: list[dict[str, Any]] = []
        tails = []
        for i in range(1, width + 1):
            depth = trial.suggest_int(f"agent.b{i}.depth", 1, self.max_depth) if agent else 1
            previous = ENTRY
            for j in range(1, depth + 1):
                slot = f"b{i}s{j}"
                nodes.append(self.solver_node(trial, slot, [previous], pool))
                previous = slot
            tails.append(previous)
        output = tails[0]
        if width > 1:
            agg = trial.suggest_categorical("agent.aggregator", list(self.aggregators))
            agg_node: dict[str, Any] = {"id": "agg", "op": agg, "inputs": tails}
            if issubclass(OPERATORS[agg].params, LMParams):
                agg_node["params"] = self.lm_params(trial, "agg")
            nodes.append(agg_node)
            output = "agg"
        final = trial.suggest_categorical("agent.final", list(self.finals)) if agent else "none"
        if final != "none":
            nodes.append({"id": "final", "op": final, "inputs": [output], "params": self.final_params(trial, final)})
            output = "final"
        name = f"w{width}" + ("" if final == "none" else f"+{final}")
        return AgentGraph.from_dict({"name": name, "output": output, "nodes": nodes}, source="search space")

    def _model_param(self, trial: TrialLike, slot: str) -> dict[str, Any]:
        if "module" in self.levels and len(self.models) > 1:
            return {"model": trial.suggest_categorical(f"node.{slot}.model", list(self.models))}
        return {}

    def _format_param(self, trial: TrialLike, slot: str) -> dict[str, Any]:
        if "prompt" in self.levels and len(self.formats) > 1:
            return {"format": trial.suggest_categorical(f"prompt.{slot}.format", list(self.formats))}
        return {"format": self.formats[0]}

    def lm_params(self, trial: TrialLike, slot: str) -> dict[str, Any]:
        """The params every LM node of a slot gets: its model alias and its output format."""
        return {**self._model_param(trial, slot), **self._format_param(trial, slot)}

    def final_params(self, trial: TrialLike, final: str) -> dict[str, Any]:
        """A final stage's params: its knob (:data:`FINAL_KNOB`, the spec's domain) and its LM params."""
        knob, low, high = FINAL_KNOB[final]
        return {knob: trial.suggest_int(f"node.final.{knob}", low, high), **self.lm_params(trial, "final")}

    def temperatures(self) -> list[float]:
        """The temperature grid (``temperature`` by ``temperature_step``) the sampler draws from."""
        lo, hi = self.temperature
        step = self.temperature_step
        if not step or step <= 0 or hi <= lo:
            return sorted({round(lo, 4), round(hi, 4)})
        return [round(lo + i * step, 4) for i in range(int(round((hi - lo) / step)) + 1)]

    @property
    def primary_format(self) -> str:
        """The format baselines are yardsticks in: the default one when it is searched, else the first."""
        return DEFAULT_FORMAT if DEFAULT_FORMAT in self.formats else self.formats[0]

    def solver_node(
        self, trial: TrialLike, slot: str, inputs: list[str], pool: PromptPool = EMPTY_POOL
    ) -> dict[str, Any]:
        """One solver slot: its operator and knobs (module level), model, format and prompt (prompt level)."""
        params: dict[str, Any] = {}
        if "module" in self.levels:
            op = trial.suggest_categorical(f"node.{slot}.op", list(self.solvers))
            params["temperature"] = round(
                trial.suggest_float(f"node.{slot}.temperature", *self.temperature, step=self.temperature_step), 4
            )
            for knob, domain in OPERATORS[op].knobs.items():  # named per operator: domains differ
                name = f"node.{slot}.{op}.{knob}"
                if domain[0] == "int":
                    params[knob] = trial.suggest_int(name, domain[1], domain[2], step=domain[3])
                else:
                    choices = list(domain[1])
                    params[knob] = choices[trial.suggest_categorical(name, list(range(len(choices))))]
            params.update(self._model_param(trial, slot))
        else:
            op = self.fixed_op
        params.update(self._format_param(trial, slot))
        if "prompt" in self.levels:
            n_choices = len(self.instructions) + self.proposal_slots
            idx = trial.suggest_categorical(f"prompt.{slot}.instruction", list(range(n_choices)))
            style = trial.suggest_categorical(f"prompt.{slot}.style", list(self.styles))
            base = self.instruction_text(idx, pool)
            text = " ".join(t for t in (base, STYLES.get(style, "")) if t)
            if text:
                default = OPERATORS[op].default_instruction
                params["instruction"] = text if base else f"{default} {text}"
            if self.demo_slots and OPERATORS[op].demos:
                demo_idx = trial.suggest_categorical(f"prompt.{slot}.demos", list(range(self.demo_slots + 1)))
                demos = self.demo_set(demo_idx, pool)
                if demos:
                    params["demos"] = [dict(d) for d in demos]
        return {"id": slot, "op": op, "inputs": inputs, "params": params}

    def instruction_text(self, index: int, pool: PromptPool = EMPTY_POOL) -> str:
        """Choice ``index`` of the instruction pool: hand-written first, then proposed ("" = default)."""
        if index < len(self.instructions):
            return self.instructions[index]
        k = index - len(self.instructions)
        return pool.instructions[k] if k < len(pool.instructions) else ""

    def demo_set(self, index: int, pool: PromptPool = EMPTY_POOL) -> tuple[Mapping[str, str], ...]:
        """Demo-set choice ``index`` (0: none)."""
        if index <= 0 or index - 1 >= len(pool.demo_sets):
            return ()
        return pool.demo_sets[index - 1]

    def check(self, graph: AgentGraph) -> str | None:
        """Why ``graph`` is outside this space (None: it is inside), in words a proposer can act on: over the
        calls/question budget, an unknown model alias, a format not searched, an operator not offered."""
        if self.over_budget(graph):
            return (
                f"too expensive: {graph.expected_calls()} LM calls per question; the budget is "
                f"{self.max_calls_per_question}. Use fewer or cheaper nodes."
            )
        unknown = graph.models() - set(self.models)
        if unknown:
            return f"unknown model alias {sorted(unknown)[0]!r}; use one of {list(self.models)}"
        formats = graph.formats() - set(self.formats)
        if formats:
            return f"output format {sorted(formats)[0]!r} is not searched; use one of {list(self.formats)}"
        offered = {*self.solvers, *self.aggregators, *(f for f in self.finals if f != "none"), self.fixed_op}
        ops = sorted({node.op for node in graph.nodes} - offered)
        if ops:
            return f"operator {ops[0]!r} is not in this search space; use one of {sorted(offered)}"
        return None

    def over_budget(self, graph: AgentGraph) -> bool:
        """True when the graph's LM calls per question exceed ``max_calls_per_question``."""
        return self.max_calls_per_question is not None and graph.expected_calls() > self.max_calls_per_question

    # -- encoding known graphs (baselines) ---------------------------------------------------

    def encode(self, graph: AgentGraph) -> dict[str, Any] | None:
        """The parameters that make :meth:`sample` rebuild ``graph``, or None if it is not in the space."""
        if len(graph.nodes) != 1:
            return None
        node = graph.nodes[0]
        params: dict[str, Any] = {}
        if "agent" in self.levels:
            params.update({"agent.width": 1, "agent.b1.depth": 1, "agent.final": "none"})
        p = node.params
        if "module" in self.levels:
            if node.op not in self.solvers:
                return None
            params["node.b1s1.op"] = node.op
            params["node.b1s1.temperature"] = p.temperature  # type: ignore[attr-defined]
            for knob, domain in OPERATORS[node.op].knobs.items():
                value = getattr(p, knob)
                if domain[0] == "cat":
                    if value not in domain[1]:
                        return None
                    value = list(domain[1]).index(value)
                params[f"node.b1s1.{node.op}.{knob}"] = value
            if len(self.models) > 1:
                params["node.b1s1.model"] = getattr(p, "model", "default")
        elif node.op != self.fixed_op:
            return None
        fmt = getattr(p, "format", DEFAULT_FORMAT)
        if "prompt" in self.levels and len(self.formats) > 1:
            if fmt not in self.formats:
                return None
            params["prompt.b1s1.format"] = fmt
        elif fmt != self.formats[0]:
            return None
        if "prompt" in self.levels:
            if getattr(p, "instruction", None):
                return None
            if getattr(p, "demos", ()):
                return None
            params["prompt.b1s1.instruction"] = 0
            params["prompt.b1s1.style"] = "plain"
            if self.demo_slots and OPERATORS[node.op].demos:
                params["prompt.b1s1.demos"] = 0
        try:
            rebuilt = self.sample(_FixedTrial(params))
        except (KeyError, UserError):
            return None
        return params if rebuilt.config_hash == graph.config_hash else None

    # -- description -------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Every parameter: name, level, domain, and when it is active."""
        rows: list[dict[str, Any]] = []

        def add(name: str, level: str, domain: str, when: str = "always") -> None:
            rows.append({"name": name, "level": level, "domain": domain, "when": when})

        slot = "b1s1"
        slot_when = "always"
        if "agent" in self.levels:
            add("agent.width", "agent", f"int [1, {self.max_width}]  (parallel branches)")
            add(
                "agent.b<i>.depth", "agent", f"int [1, {self.max_depth}]  (operators chained in branch i)", "i <= width"
            )
            add("agent.aggregator", "agent", f"categorical {list(self.aggregators)}", "width > 1")
            add("agent.final", "agent", f"categorical {list(self.finals)}  (refine/verify stage)")
            for final, (knob, low, high) in FINAL_KNOB.items():
                if final in self.finals:
                    add(f"node.final.{knob}", "agent", f"int [{low}, {high}]", f"final={final}")
            slot = "b<i>s<j>"
            slot_when = "per slot: branch i, step j"
        if "module" in self.levels:
            add(f"node.{slot}.op", "module", f"categorical {list(self.solvers)}", slot_when)
            add(
                f"node.{slot}.temperature",
                "module",
                f"float [{self.temperature[0]}, {self.temperature[1]}] step {self.temperature_step}",
                slot_when,
            )
            for op in self.solvers:
                for knob, domain in OPERATORS[op].knobs.items():
                    dom = (
                        f"int [{domain[1]}, {domain[2]}] step {domain[3]}"
                        if domain[0] == "int"
                        else f"categorical {list(domain[1])}"
                    )
                    add(f"node.{slot}.{op}.{knob}", "module", dom, f"op={op}")
            if len(self.models) > 1:
                add(f"node.{slot}.model", "module", f"categorical {list(self.models)}", slot_when)
        else:
            add(f"node.{slot}.op", "module (fixed)", f"'{self.fixed_op}'", slot_when)
        if "prompt" in self.levels and len(self.formats) > 1:
            add(f"prompt.{slot}.format", "prompt", f"categorical {list(self.formats)}  (output format)", slot_when)
            if "agent" in self.levels:
                add("prompt.agg.format", "prompt", f"categorical {list(self.formats)}", "an LM aggregator")
                add("prompt.final.format", "prompt", f"categorical {list(self.formats)}", "final != none")
        else:
            add(f"prompt.{slot}.format", "prompt (fixed)", f"'{self.formats[0]}'  (output format)", slot_when)
        if "prompt" in self.levels:
            add(f"prompt.{slot}.instruction", "prompt", f"index into {len(self.instructions)} instructions", slot_when)
            add(f"prompt.{slot}.style", "prompt", f"categorical {list(self.styles)}", slot_when)
            if self.proposal_slots:
                add(
                    f"prompt.{slot}.instruction",
                    "prompt",
                    f"+ {self.proposal_slots} slots for instructions an LLM proposes during the study",
                    slot_when,
                )
            if self.demo_slots:
                add(
                    f"prompt.{slot}.demos",
                    "prompt",
                    f"0 (none) or one of {self.demo_slots} bootstrapped demo sets",
                    "op takes demos",
                )
        if self.max_calls_per_question is not None:
            add("budget", "all", f"candidates over {self.max_calls_per_question} LM calls/question are pruned unrun")
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything that defines the space (stored with the study; a resumed study must match it)."""
        return {
            "levels": sorted(self.levels),
            "instructions": list(self.instructions),
            "styles": list(self.styles),
            "solvers": list(self.solvers),
            "aggregators": list(self.aggregators),
            "finals": list(self.finals),
            "max_width": self.max_width,
            "max_depth": self.max_depth,
            "temperature": [*self.temperature, self.temperature_step],
            "models": list(self.models),
            "formats": list(self.formats),
            "fixed_op": self.fixed_op,
            "max_calls_per_question": self.max_calls_per_question,
            "proposal_slots": self.proposal_slots,
            "demo_slots": self.demo_slots,
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


def graph_from_params(space: SearchSpace, params: Mapping[str, Any], pool: PromptPool = EMPTY_POOL) -> AgentGraph:
    """Rebuild the graph a finished trial evaluated, from its stored parameters (and the study's pool)."""
    return space.sample(_FixedTrial(params), pool)
