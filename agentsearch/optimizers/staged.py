"""Staged search (MASS-style): prompts first, then topology with the best prompts, then prompts again.

One durable Optuna study, three stages decided by how many trials have finished or run (so a resumed
study continues in the right stage):

1. ``prompt``: instruction and style of a single node of the fixed default operator;
2. ``topology``: module and agent levels (operators, knobs, topology), every LM node given the best
   stage-1 instruction;
3. ``refine``: the best stage-2 graph kept fixed, instruction and style searched per LM node.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

from agentsearch.optimizers.base import Archive, FinishedTrial, Proposal
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import OPERATORS, LMParams
from agentsearch.search_space.space import STYLES, PromptPool, SearchSpace

STAGES = ("prompt", "topology", "refine")


class Staged:
    """The staged strategy: each proposal is a define-by-run sampler of the current stage's part of the
    space, so the study's sampler (TPE by default) still chooses every value."""

    name = "staged"

    def __init__(self, *, n_trials: int, fractions: tuple[float, float] = (0.3, 0.5)):
        self.n_trials = n_trials
        self.fractions = fractions

    def bounds(self, archive: Archive) -> tuple[int, int]:
        """Where stage 2 and stage 3 start, in trials counting toward ``--trials`` (baselines first)."""
        search = max(3, self.n_trials - archive.n_baselines)
        first = max(1, round(search * self.fractions[0]))
        second = max(1, round(search * self.fractions[1]))
        return archive.n_baselines + first, archive.n_baselines + first + second

    def stage(self, archive: Archive) -> str:
        """The stage of the next trial: trials evaluated or running count."""
        bounds = self.bounds(archive)
        done = archive.n_taken
        return STAGES[0] if done < bounds[0] else STAGES[1] if done < bounds[1] else STAGES[2]

    def propose(self, archive: Archive, space: SearchSpace, rng: random.Random) -> Proposal:
        stage = self.stage(archive)
        topology_space = dataclasses.replace(
            space, levels=frozenset(space.levels - {"prompt"}) or frozenset({"module"})
        )
        if stage == "prompt":
            prompt_space = dataclasses.replace(space, levels=frozenset({"prompt"}))
            return Proposal(sample=prompt_space.sample, origin="staged:prompt")
        if stage == "topology":
            best_prompt = _best_of(archive, "prompt") or _best_of(archive, "any")
            instruction = getattr(best_prompt.nodes[0].params, "instruction", None) if best_prompt else None

            def topology(trial: Any, pool: PromptPool) -> AgentGraph:
                graph = topology_space.sample(trial, pool)
                return _with_instructions(graph, {n.id: instruction for n in graph.nodes}) if instruction else graph

            return Proposal(sample=topology, origin="staged:topology")
        base = _best_of(archive, "topology") or _best_of(archive, "any")
        if base is None:  # nothing finished yet to tune the prompts of: explore the topology instead
            return Proposal(sample=topology_space.sample, origin="staged:topology")

        def refine(trial: Any, pool: PromptPool) -> AgentGraph:
            chosen = {}
            for node in base.nodes:
                if not isinstance(node.params, LMParams) or OPERATORS[node.op].kind == "aggregator":
                    continue
                idx = trial.suggest_categorical(f"prompt.{node.id}.instruction", list(range(len(space.instructions))))
                style = trial.suggest_categorical(f"prompt.{node.id}.style", list(space.styles))
                text = " ".join(t for t in (space.instructions[idx], STYLES.get(style, "")) if t)
                if text:
                    chosen[node.id] = (
                        text if space.instructions[idx] else f"{OPERATORS[node.op].default_instruction} {text}"
                    )
            return _with_instructions(base, chosen)

        return Proposal(sample=refine, origin="staged:refine")

    def told(self, trial: FinishedTrial) -> None:
        return None


def _best_of(archive: Archive, stage: str) -> AgentGraph | None:
    done = [
        t
        for t in archive.complete()
        if t.graph is not None and (stage == "any" or t.origin.removesuffix(":retry") == f"staged:{stage}")
    ]
    if not done:
        return None
    return max(done, key=lambda t: (t.values[0], -t.number)).graph  # type: ignore[index]


def _with_instructions(graph: AgentGraph, instructions: dict[str, str]) -> AgentGraph:
    nodes = []
    for node in graph.nodes:
        text = instructions.get(node.id)
        if text and isinstance(node.params, LMParams):
            node = node.model_copy(update={"params": node.params.model_copy(update={"instruction": text})})
        nodes.append(node)
    return graph.model_copy(update={"nodes": tuple(nodes)})
