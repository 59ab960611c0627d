"""Evolutionary search over agent graphs (AFlow / EvoFlow style): mutate and cross over evaluated graphs.

Parents are picked from the archive of COMPLETE trials: by tournament on the validation score (one
objective) or uniformly from the Pareto front (several objectives). A child is made by crossover
(branches of two parents under one aggregator, or one parent's topology with the other's node
configs) and/or by one of the mutation operators below. Every child is a validated
:class:`AgentGraph`, new (its config hash was never tried in this study) and within the space's
calls-per-question budget; otherwise another mutation is tried.

Each mutation is a pure function ``(graph, rng, space) -> AgentGraph | None`` (None: not applicable
to this graph). They work on any valid graph, not only the ones the space samples: a graph is read
as ``branches -> [aggregator] -> [final stage]`` (see :func:`analyze`), with branches found on the
networkx DAG as the ancestors of each input of the aggregator.

:class:`Evolution` is a :class:`~agentsearch.optimizers.base.Strategy`; everything else (durable study,
baselines first, duplicate rejection, metering of the proposer's LM calls) comes from
:class:`~agentsearch.optimizers.proposal.StrategyOptimizer`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dspy
import networkx as nx
from pydantic import ValidationError

from agentsearch.errors import GraphError, UserError
from agentsearch.optimizers.base import Archive, FinishedTrial, Proposal, StrategyContext
from agentsearch.search_space.graph import ENTRY, AgentGraph, NodeConfig
from agentsearch.search_space.operators import OPERATORS, LMParams
from agentsearch.search_space.space import FINAL_KNOB, STYLES, RandomTrial, SearchSpace

log = logging.getLogger(__name__)

#: LM params carried over when a node changes operator (op-specific knobs are not).
_COMMON = ("instruction", "temperature", "max_tokens", "model", "format", "demos")
_MAX_INSTRUCTION = 8000

# -- reading a graph ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """A graph read as ``branches -> [aggregator] -> [final stage]``.

    ``final`` is the exit node when it is a refine/verify operator reading exactly one upstream node;
    ``core`` is the node the final stage reads (or the exit); ``agg`` is ``core`` when it is an
    aggregator. ``tips`` are the aggregator's upstream nodes (or ``(core,)``), and ``branches[i]`` are
    the node ids that feed ``tips[i]`` (the tip included, topological order). Branches of odd graphs
    may share nodes.
    """

    final: str | None
    agg: str | None
    core: str
    tips: tuple[str, ...]
    branches: tuple[tuple[str, ...], ...]

    @property
    def width(self) -> int:
        return len(self.tips)


def final_ops(space: SearchSpace) -> frozenset[str]:
    """Operators that count as a final refine/verify stage when they sit at the exit."""
    return frozenset(f for f in space.finals if f != "none") | frozenset(FINAL_KNOB)


def analyze(graph: AgentGraph, finals: frozenset[str] = frozenset(FINAL_KNOB)) -> Shape:
    """Split any valid graph into branches, aggregator and final stage (see :class:`Shape`)."""
    g = graph.to_networkx()
    order = {n: i for i, n in enumerate(nx.lexicographical_topological_sort(g, key=str))}
    out = graph.node(graph.output)
    final, core = None, out
    if out.op in finals and len(out.upstream) == 1:
        final, core = out.id, graph.node(out.upstream[0])
    if core.spec.kind == "aggregator" and core.upstream:
        agg, tips = core.id, core.upstream
    else:
        agg, tips = None, (core.id,)
    branches = tuple(
        tuple(sorted((nx.ancestors(g, tip) - {ENTRY}) | {tip}, key=order.__getitem__)) for tip in tips
    )
    return Shape(final=final, agg=agg, core=core.id, tips=tuple(tips), branches=branches)


# -- building a graph ---------------------------------------------------------------------------


def _nodes(graph: AgentGraph) -> dict[str, dict[str, Any]]:
    """Editable copies of the nodes (params as set, JSON form), in graph order."""
    return {n.id: _node_dict(n) for n in graph.nodes}


def _node_dict(node: NodeConfig, node_id: str | None = None) -> dict[str, Any]:
    return {
        "id": node_id or node.id,
        "op": node.op,
        "inputs": list(node.inputs),
        "params": node.params.model_dump(mode="json", exclude_unset=True),
    }


def _build(nodes: Mapping[str, dict[str, Any]], output: str, name: str, description: str = "") -> AgentGraph:
    """Validate edited nodes into a graph (nodes listed in topological order, ties in edit order)."""
    index = {nid: i for i, nid in enumerate(nodes)}
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for nid, node in nodes.items():
        g.add_edges_from((ref, nid) for ref in node["inputs"] if ref in nodes)
    try:
        order = list(nx.lexicographical_topological_sort(g, key=index.__getitem__))
    except nx.NetworkXUnfeasible:  # let validation name the cycle
        order = list(nodes)
    data: dict[str, Any] = {"name": name, "output": output, "nodes": [nodes[n] for n in order]}
    if description:
        data["description"] = description
    return AgentGraph.from_dict(data, source="evolution")


def _different(child: AgentGraph, *parents: AgentGraph) -> AgentGraph | None:
    return None if any(child.config_hash == p.config_hash for p in parents) else child


def _fresh(base: str, used: set[str]) -> str:
    if base not in used:
        return base
    i = 2
    while f"{base}{i}" in used:
        i += 1
    return f"{base}{i}"


def _fresh_branch(used: set[str], start: int = 1) -> str:
    i = max(start, 1)
    while any(u.startswith(f"b{i}s") for u in used):
        i += 1
    return f"b{i}s1"


def _arity_ok(op: str, n_upstream: int) -> bool:
    spec = OPERATORS[op]
    return n_upstream >= spec.min_inputs and (spec.max_inputs is None or n_upstream <= spec.max_inputs)


# -- knob domains -------------------------------------------------------------------------------


def _knob_values(domain: tuple) -> list[Any]:
    if domain[0] == "int":
        return list(range(domain[1], domain[2] + 1, domain[3] if len(domain) > 3 else 1))
    return list(domain[1])


def _random_solver(rng: random.Random, space: SearchSpace, node_id: str, inputs: list[str]) -> dict[str, Any]:
    """A new solver node, drawn by the space's own slot sampler (same domains, formats included)."""
    return space.solver_node(RandomTrial(rng), node_id, inputs)


def _model_param(rng: random.Random, space: SearchSpace, op: str) -> dict[str, Any]:
    """A new aggregator's model and format, as the space's sampler draws them (none for a non-LM op)."""
    if not issubclass(OPERATORS[op].params, LMParams):
        return {}
    return space.lm_params(RandomTrial(rng), "agg")


def _carry(node: NodeConfig, op: str, keep: Sequence[str] = _COMMON) -> dict[str, Any]:
    """The params of ``node`` that still make sense for ``op`` (common LM fields only)."""
    old = node.params.model_dump(mode="json", exclude_unset=True)
    fields = OPERATORS[op].params.model_fields
    out = {k: v for k, v in old.items() if k in keep and k in fields}
    if "demos" in out and not OPERATORS[op].demos:
        out.pop("demos")
    instruction = out.get("instruction")
    old_default, new_default = node.spec.default_instruction, OPERATORS[op].default_instruction
    if instruction and old_default and instruction.startswith(old_default):
        rest = instruction[len(old_default):].strip()  # the op's default plus a style: the new default
        if rest:
            out["instruction"] = f"{new_default} {rest}" if new_default else rest
        else:
            out.pop("instruction")
    return out


# -- mutations ----------------------------------------------------------------------------------

Mutation = Callable[..., AgentGraph | None]


def swap_operator(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """A branch node's solver becomes another solver of the space (common LM params carried over)."""
    shape = analyze(graph, final_ops(space))
    nodes_ = [n for n in graph.nodes if n.id not in (shape.final, shape.agg) and n.spec.kind == "solver"]
    if not nodes_:
        return None
    node = rng.choice(nodes_)
    ops = [op for op in space.solvers if op != node.op and _arity_ok(op, len(node.upstream))]
    if not ops:
        return None
    op = rng.choice(ops)
    params = _carry(node, op)
    for knob, domain in OPERATORS[op].knobs.items():  # the op's default, or a value of its searched domain
        if rng.random() < 0.5:
            params[knob] = rng.choice(_knob_values(domain))
    nodes = _nodes(graph)
    nodes[node.id].update(op=op, params=params)
    return _different(_build(nodes, graph.output, graph.name, graph.description), graph)


def add_branch(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """A new solver branch feeds the aggregator (one is introduced when the graph has a single branch)."""
    shape = analyze(graph, final_ops(space))
    if shape.width >= space.max_width or not space.aggregators:
        return None
    nodes = _nodes(graph)
    used = set(nodes)
    bid = _fresh_branch(used, shape.width + 1)
    new = _random_solver(rng, space, bid, [ENTRY])
    output = graph.output
    nodes[bid] = new
    if shape.agg is not None:
        nodes[shape.agg]["inputs"] = [*nodes[shape.agg]["inputs"], bid]
    else:
        agg_id = _fresh("agg", used | {bid})
        op = rng.choice(space.aggregators)
        params = _model_param(rng, space, op)
        nodes[agg_id] = {"id": agg_id, "op": op, "inputs": [shape.core, bid], "params": params}
        if shape.final is not None:
            final = nodes.pop(shape.final)
            final["inputs"] = [agg_id if ref == shape.core else ref for ref in final["inputs"]]
            nodes[shape.final] = final
        else:
            output = agg_id
    return _different(_build(nodes, output, graph.name, graph.description), graph)


def remove_branch(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """One branch is dropped (at least one stays; with one left, the aggregator goes too)."""
    shape = analyze(graph, final_ops(space))
    if shape.agg is None or shape.width < 2:
        return None
    i = rng.randrange(shape.width)
    others = set().union(*(set(b) for j, b in enumerate(shape.branches) if j != i))
    drop = set(shape.branches[i]) - others
    nodes = {k: v for k, v in _nodes(graph).items() if k not in drop}
    agg = nodes[shape.agg]
    agg["inputs"] = [ref for ref in agg["inputs"] if ref != shape.tips[i]]
    left = [ref for ref in agg["inputs"] if ref != ENTRY]
    output = graph.output
    if not _arity_ok(agg["op"], len(left)):
        del nodes[shape.agg]
        if shape.final is not None:
            final = nodes[shape.final]
            final["inputs"] = [left[0] if ref == shape.agg else ref for ref in final["inputs"]]
        else:
            output = left[0]
    return _different(_build(nodes, output, graph.name, graph.description), graph)


def change_aggregator(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """The aggregator becomes another aggregator of the space."""
    shape = analyze(graph, final_ops(space))
    if shape.agg is None:
        return None
    node = graph.node(shape.agg)
    ops = [op for op in space.aggregators if op != node.op and _arity_ok(op, len(node.upstream))]
    if not ops:
        return None
    op = rng.choice(ops)
    params = _model_param(rng, space, op) | _carry(node, op, keep=("model", "format", "temperature", "max_tokens"))
    nodes = _nodes(graph)
    nodes[node.id].update(op=op, params=params)
    return _different(_build(nodes, graph.output, graph.name, graph.description), graph)


def change_knobs(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """One knob of one node takes another value: temperature (the space's grid), an op knob (its
    spec's searched domain) or, with several model aliases, the model."""
    choices: list[tuple[NodeConfig, str, list[Any]]] = []
    for node in graph.nodes:
        fields = node.spec.params.model_fields
        if "temperature" in fields:
            choices.append((node, "temperature", space.temperatures()))
        for knob, domain in node.spec.knobs.items():
            choices.append((node, knob, _knob_values(domain)))
        if "model" in fields and len(space.models) > 1:
            choices.append((node, "model", list(space.models)))
    rng.shuffle(choices)
    for node, knob, values in choices:
        current = getattr(node.params, knob)
        values = [v for v in values if v != current]
        if not values:
            continue
        nodes = _nodes(graph)
        nodes[node.id]["params"][knob] = rng.choice(values)
        try:
            child = _build(nodes, graph.output, graph.name, graph.description)
        except GraphError:  # e.g. a domain value the node's params reject
            continue
        if child.config_hash != graph.config_hash:
            return child
    return None


def _final_params(rng: random.Random, space: SearchSpace, op: str) -> dict[str, Any]:
    """A final stage's knob and LM params, as the space's sampler draws them."""
    if op in FINAL_KNOB:
        return space.final_params(RandomTrial(rng), op)
    return _model_param(rng, space, op)


def add_final(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """A refine/verify stage (``space.finals``) is appended after the exit node."""
    ops = [f for f in space.finals if f != "none" and _arity_ok(f, 1)]
    shape = analyze(graph, final_ops(space))
    if shape.final is not None or not ops:
        return None
    nodes = _nodes(graph)
    fid = _fresh("final", set(nodes))
    op = rng.choice(ops)
    nodes[fid] = {"id": fid, "op": op, "inputs": [graph.output], "params": _final_params(rng, space, op)}
    return _different(_build(nodes, fid, graph.name, graph.description), graph)


def remove_final(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """The final refine/verify stage is dropped (when the space allows no final stage)."""
    shape = analyze(graph, final_ops(space))
    if shape.final is None or "none" not in space.finals:
        return None
    nodes = _nodes(graph)
    del nodes[shape.final]
    return _different(_build(nodes, shape.core, graph.name, graph.description), graph)


def change_final(graph: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
    """The final stage becomes another refine/verify operator of ``space.finals``."""
    shape = analyze(graph, final_ops(space))
    if shape.final is None:
        return None
    node = graph.node(shape.final)
    ops = [f for f in space.finals if f not in ("none", node.op) and _arity_ok(f, len(node.upstream))]
    if not ops:
        return None
    op = rng.choice(ops)
    params = _carry(node, op, keep=("model", "temperature", "max_tokens")) | _final_params(rng, space, op)
    nodes = _nodes(graph)
    nodes[node.id].update(op=op, params=params)
    return _different(_build(nodes, graph.output, graph.name, graph.description), graph)


class RewriteInstruction(dspy.Signature):
    """You improve the prompt of one step of an LLM agent that answers questions.

    Given the task, what the step does, its current instruction and the agent's validation accuracy
    with it, write an improved instruction for that step: specific to the task, clear about how to
    reason and check the work, and ending by asking for only the final answer as the answer.
    Reply with the instruction text only."""

    task: str = dspy.InputField(desc="the task the agent solves")
    step: str = dspy.InputField(desc="the operator this step runs and what it does")
    current_instruction: str = dspy.InputField()
    score: str = dspy.InputField(desc="validation accuracy of the agent with the current instruction")
    improved_instruction: str = dspy.OutputField(desc="the new instruction, text only")


def _has_instruction(node: NodeConfig) -> bool:
    return node.spec.kind == "solver" and "instruction" in node.spec.params.model_fields


def _pool_texts(space: SearchSpace, op: str) -> list[str | None]:
    """Instructions the space's prompt level can give ``op`` (None: the op's default)."""
    out: list[str | None] = []
    default = OPERATORS[op].default_instruction
    for base in space.instructions:
        for style in space.styles:
            text = " ".join(t for t in (base, STYLES.get(style, "")) if t)
            value = None if not text else text if base else f"{default} {text}"
            if value not in out:
                out.append(value)
    return out or [None]


def _clean_instruction(text: Any) -> str:
    text = str(text or "").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    return text[:_MAX_INSTRUCTION]


def rewrite_instruction(
    graph: AgentGraph,
    rng: random.Random,
    space: SearchSpace,
    *,
    lm: dspy.BaseLM | None = None,
    task: str = "",
    score: float | None = None,
) -> AgentGraph | None:
    """One solver node gets a new instruction: written by ``lm`` (a :class:`RewriteInstruction`
    predictor given the current instruction, the task and the score), or without an LM (or when its
    call fails) another instruction of the space's pool."""
    nodes_ = [n for n in graph.nodes if _has_instruction(n)]
    if not nodes_:
        return None
    node = rng.choice(nodes_)
    current = getattr(node.params, "instruction", None) or node.spec.default_instruction
    text: str | None = None
    if lm is not None:
        try:
            from agentsearch.evaluators.operators.formats import proposer_adapter

            with dspy.context(lm=lm, adapter=proposer_adapter()):
                pred = dspy.Predict(RewriteInstruction)(
                    task=task or graph.description or "answer the questions of a benchmark",
                    step=f"{node.op}: {node.spec.summary}",
                    current_instruction=current,
                    score="unknown" if score is None else f"{score:.3f}",
                    config={"rollout_id": rng.randrange(1 << 30), "temperature": 1.0},
                )
            text = _clean_instruction(pred.improved_instruction) or None
        except Exception as exc:  # noqa: BLE001 - a failing proposer LM falls back to the pool
            log.warning("instruction rewrite failed (%s); using the space's instruction pool", exc)
            lm = None
    if lm is None:
        options = [t for t in _pool_texts(space, node.op) if (t or node.spec.default_instruction) != current]
        if not options:
            return None
        text = rng.choice(options)
    elif text is None or text == current:
        return None
    nodes = _nodes(graph)
    params = nodes[node.id]["params"]
    if text is None:
        params.pop("instruction", None)
    else:
        params["instruction"] = text
    return _different(_build(nodes, graph.output, graph.name, graph.description), graph)


#: Mutation operators by kind (the origin of a child is ``evolution:mutate:<kind>``).
MUTATIONS: dict[str, Mutation] = {
    "swap_op": swap_operator,
    "add_branch": add_branch,
    "remove_branch": remove_branch,
    "change_aggregator": change_aggregator,
    "knobs": change_knobs,
    "add_final": add_final,
    "remove_final": remove_final,
    "change_final": change_final,
    "instruction": rewrite_instruction,
}
_LEVEL = {
    "swap_op": "module", "knobs": "module", "instruction": "prompt",
    "add_branch": "agent", "remove_branch": "agent", "change_aggregator": "agent",
    "add_final": "agent", "remove_final": "agent", "change_final": "agent",
}


# -- crossover ----------------------------------------------------------------------------------


def crossover_branches(
    a: AgentGraph, b: AgentGraph, rng: random.Random, space: SearchSpace
) -> AgentGraph | None:
    """Branches of both parents (at least one of each, ``space.max_width`` at most) under one
    aggregator (a parent's, else one of the space); the final stage of one parent, if it has one."""
    if space.max_width < 2:
        return None
    finals = final_ops(space)
    sa, sb = analyze(a, finals), analyze(b, finals)
    ka = rng.randint(1, min(sa.width, space.max_width - 1))
    kb = rng.randint(1, min(sb.width, space.max_width - ka))
    pick_a, pick_b = sorted(rng.sample(range(sa.width), ka)), sorted(rng.sample(range(sb.width), kb))
    picks = [(a, sa, pick_a), (b, sb, pick_b)]
    nodes: dict[str, dict[str, Any]] = {}
    tips: list[str] = []
    k = 0
    for parent, shape, chosen in picks:
        mapping = {ENTRY: ENTRY}
        for i in chosen:
            k += 1
            j = 0
            for nid in shape.branches[i]:
                if nid in mapping:  # shared with a branch already taken from this parent
                    continue
                j += 1
                mapping[nid] = new_id = f"b{k}s{j}"
                node = _node_dict(parent.node(nid), new_id)
                node["inputs"] = [mapping[ref] for ref in node["inputs"]]
                nodes[new_id] = node
            if mapping[shape.tips[i]] not in tips:  # a tip that feeds another tip of the same parent
                tips.append(mapping[shape.tips[i]])
    if len(tips) < 2:
        return None
    with_agg = [(p, s) for p, s in ((a, sa), (b, sb)) if s.agg is not None]
    if with_agg:
        parent, shape = rng.choice(with_agg)
        agg = _node_dict(parent.node(shape.agg), "agg")
        agg["inputs"] = ([ENTRY] if ENTRY in agg["inputs"] else []) + tips
    elif space.aggregators:
        op = rng.choice(space.aggregators)
        agg = {"id": "agg", "op": op, "inputs": tips, "params": _model_param(rng, space, op)}
    else:
        return None
    nodes["agg"] = agg
    output = "agg"
    parent, shape = rng.choice([(a, sa), (b, sb)])
    if shape.final is not None:
        final = _node_dict(parent.node(shape.final), "final")
        final["inputs"] = ["agg" if ref == shape.core else ref for ref in final["inputs"]]
        nodes["final"] = final
        output = "final"
    return _different(_build(nodes, output, a.name, a.description), a, b)


def crossover_configs(
    a: AgentGraph, b: AgentGraph, rng: random.Random, space: SearchSpace
) -> AgentGraph | None:
    """Parent A's topology; nodes whose id B also has take B's operator and params (each with
    probability 1/2, at least one) where B's operator fits the node's place and arity."""
    b_ids = {n.id for n in b.nodes}
    fits = []
    for node in a.nodes:
        if node.id not in b_ids:
            continue
        other = b.node(node.id)
        if other.spec.kind != node.spec.kind or not _arity_ok(other.op, len(node.upstream)):
            continue
        if other.op == node.op and other.params == node.params:
            continue
        fits.append((node, other))
    if not fits:
        return None
    taken = [pair for pair in fits if rng.random() < 0.5] or [rng.choice(fits)]
    if len(taken) == len(fits) > 1:  # all of B's configs on B's own topology would be B again
        taken.remove(rng.choice(taken))
    nodes = _nodes(a)
    for node, other in taken:
        nodes[node.id].update(op=other.op, params=other.params.model_dump(mode="json", exclude_unset=True))
    return _different(_build(nodes, a.output, a.name, a.description), a, b)


# -- the optimizer ------------------------------------------------------------------------------


def _attempt(operator: Callable[..., AgentGraph | None], *args: Any, **kwargs: Any) -> AgentGraph | None:
    """Run a mutation/crossover; a child that fails validation (an odd input graph) counts as None."""
    try:
        return operator(*args, **kwargs)
    except (GraphError, ValidationError) as exc:
        log.debug("evolution: %s gave an invalid child: %s", getattr(operator, "__name__", operator), exc)
        return None


class Evolution:
    """Evolution over agent graphs: tournament (or Pareto-front) parents, crossover, mutation.

    Args:
        proposer_lm: a DSPy LM that rewrites instructions (or given later by :meth:`bind`); without one
            the space's instructions are used. Its calls are metered by the optimizer running the strategy.
        mutation_rate: probability that a child gets one more mutation (a crossover child: its
            first); at most ``max_mutations`` per child.
        crossover_rate: probability that a child is made by crossover of two parents.
        tournament: tournament size (single objective).
        mutations: restrict the mutation kinds (names of :data:`MUTATIONS`); the space's levels decide which
            apply (``prompt`` -> instruction, ``module`` -> operator swap and knobs, ``agent`` -> branches,
            aggregator, final stage and branch crossover).
        task: a description of the task, for the instruction rewriter.
    """

    name = "evolution"
    max_tries: int = 24  # candidate children per proposal before giving up (the sampler fills in)
    max_llm_rewrites: int = 2  # proposer LM calls per proposal
    max_mutations: int = 3

    def __init__(
        self,
        *,
        proposer_lm: dspy.BaseLM | None = None,
        mutation_rate: float = 0.2,
        crossover_rate: float = 0.3,
        tournament: int = 3,
        mutations: Sequence[str] | None = None,
        task: str = "",
    ):
        kinds = tuple(mutations) if mutations is not None else tuple(MUTATIONS)
        unknown = sorted(set(kinds) - set(MUTATIONS))
        if unknown or not kinds:
            raise UserError(f"evolution: unknown mutation {unknown[0]!r} (choose from {', '.join(MUTATIONS)})"
                            if unknown else "evolution: at least one mutation kind")
        if not (0.0 <= mutation_rate <= 1.0 and 0.0 <= crossover_rate <= 1.0) or tournament < 1:
            raise UserError("evolution: mutation_rate and crossover_rate in [0, 1], tournament >= 1")
        self.proposer_lm = proposer_lm
        self.mutation_rate = mutation_rate
        self.crossover_rate = crossover_rate
        self.tournament = tournament
        self.task = task
        self.mutations = kinds

    def bind(self, context: StrategyContext) -> None:
        self.proposer_lm = context.proposer_lm

    def kinds(self, space: SearchSpace) -> tuple[str, ...]:
        """The mutation kinds that apply to ``space`` (by its levels)."""
        return tuple(k for k in self.mutations if _LEVEL[k] in space.levels)

    # -- selection ------------------------------------------------------------------------------

    def parent_pool(self, archive: Archive) -> list[FinishedTrial]:
        """Who may be a parent: COMPLETE trials (several objectives: the Pareto front)."""
        done = [t for t in archive.complete() if t.graph is not None]
        if len(archive.objectives) > 1 and done:
            return [t for t in archive.front() if t.graph is not None] or done
        return done

    def select(self, pool: list[FinishedTrial], rng: random.Random, multi: bool = False) -> FinishedTrial:
        """Tournament on the first objective (one objective), uniform over the front (several)."""
        if multi:
            return rng.choice(pool)
        contestants = rng.sample(pool, min(self.tournament, len(pool)))
        return max(contestants, key=lambda t: (t.values[0], -t.number))  # type: ignore[index]

    # -- proposal -------------------------------------------------------------------------------

    def propose(self, archive: Archive, space: SearchSpace, rng: random.Random) -> Proposal | None:
        done = [t for t in archive.complete() if t.graph is not None]
        if len(done) < 2 or (not self.kinds(space) and self.crossover_rate == 0):
            return None
        pool = self.parent_pool(archive)
        multi = len(archive.objectives) > 1
        budget = {"llm": self.max_llm_rewrites}
        for _ in range(self.max_tries):
            made = self._child(pool, rng, budget, space, multi)
            if made is None:
                continue
            child, origin, parents, ops = made
            if child.config_hash in archive.seen or space.check(child) is not None:
                continue
            kind = origin.split(":")[-1]
            child = child.model_copy(update={"name": f"evo-{kind}-{child.config_hash[:6]}"})
            return Proposal(graph=child, origin=origin, info={"parents": parents, "mutations": ops})
        log.info("evolution: no new child within budget after %d tries; the sampler fills in", self.max_tries)
        return None

    def told(self, trial: FinishedTrial) -> None:
        return None

    def _child(
        self, pool: list[FinishedTrial], rng: random.Random, budget: dict[str, int], space: SearchSpace, multi: bool
    ) -> tuple[AgentGraph, str, list[int], list[str]] | None:
        first = self.select(pool, rng, multi)
        graph: AgentGraph | None = None
        parents, ops = [first.number], []
        if len(pool) > 1 and rng.random() < self.crossover_rate:
            others = [t for t in pool if t.graph.config_hash != first.graph.config_hash]  # type: ignore[union-attr]
            if others:
                second = self.select(others, rng, multi)
                graph = self.crossover(first.graph, second.graph, rng, space)  # type: ignore[arg-type]
                if graph is not None:
                    parents.append(second.number)
        origin = "evolution:crossover"
        if graph is None:
            graph = self.mutate(first.graph, rng, first.values[0], budget, ops, space)  # type: ignore[arg-type,index]
            if graph is None:
                return None
            origin = f"evolution:mutate:{ops[0]}"
        while self.kinds(space) and len(ops) < self.max_mutations and rng.random() < self.mutation_rate:
            more = self.mutate(graph, rng, first.values[0], budget, ops, space)  # type: ignore[index]
            if more is None:
                break
            graph = more
        return graph, origin, parents, ops

    def crossover(self, a: AgentGraph, b: AgentGraph, rng: random.Random, space: SearchSpace) -> AgentGraph | None:
        ways = [crossover_configs]
        if "agent" in space.levels:
            ways.append(crossover_branches)
        rng.shuffle(ways)
        for way in ways:
            child = _attempt(way, a, b, rng, space)
            if child is not None:
                return child
        return None

    def mutate(
        self,
        graph: AgentGraph,
        rng: random.Random,
        score: float | None,
        budget: dict[str, int],
        ops: list[str],
        space: SearchSpace,
    ) -> AgentGraph | None:
        """One mutation of ``graph`` (kinds tried in random order until one applies); appends its kind."""
        kinds = list(self.kinds(space))
        rng.shuffle(kinds)
        for kind in kinds:
            if kind == "instruction":
                lm = self.proposer_lm if budget["llm"] > 0 else None
                if lm is not None:
                    budget["llm"] -= 1
                child = _attempt(rewrite_instruction, graph, rng, space, lm=lm, task=self.task, score=score)
            else:
                child = _attempt(MUTATIONS[kind], graph, rng, space)
            if child is not None:
                ops.append(kind)
                return child
        return None
