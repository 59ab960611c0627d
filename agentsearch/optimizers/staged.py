"""Staged search (MASS-style): prompts first, then topology with the best prompts, then prompts again.

One durable Optuna study, three stages decided by how many trials have finished (so a resumed study
continues in the right stage):

1. ``prompt``: instruction and style of a single node of the fixed default operator;
2. ``topology``: module and agent levels (operators, knobs, topology), every LM node given the best
   stage-1 instruction;
3. ``refine``: the best stage-2 graph kept fixed, instruction and style searched per LM node.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from agentsearch.optimizers.optuna_opt import OptunaOptimizer
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import OPERATORS, LMParams
from agentsearch.search_space.space import STYLES, SearchSpace

if TYPE_CHECKING:
    import optuna

STAGES = ("prompt", "topology", "refine")


class StagedOptimizer(OptunaOptimizer):
    def __init__(
        self, space: SearchSpace, *, n_trials: int, fractions: tuple[float, float] = (0.3, 0.5), **kwargs: Any
    ):
        super().__init__(space, **kwargs)
        self.name = "staged"
        n_base = sum(
            t.user_attrs.get("origin", "").startswith("baseline:") for t in self.study.get_trials(deepcopy=False)
        )
        search = max(3, n_trials - n_base)
        first = max(1, round(search * fractions[0]))
        second = max(1, round(search * fractions[1]))
        self.bounds = (n_base + first, n_base + first + second)
        self.prompt_space = dataclasses.replace(space, levels=frozenset({"prompt"}))
        self.topology_space = dataclasses.replace(
            space, levels=frozenset(space.levels - {"prompt"}) or frozenset({"module"})
        )

    def stage(self, asking: int | None = None) -> str:
        """The stage of the next trial: finished and running trials (but trial ``asking``, being sampled) count."""
        done = self.n_finished() + sum(t.number != asking for t in self._running())
        return STAGES[0] if done < self.bounds[0] else STAGES[1] if done < self.bounds[1] else STAGES[2]

    def _running(self) -> list:
        import optuna

        return self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))

    def _best_of(self, stage: str) -> AgentGraph | None:
        done = [
            t
            for t in self.trials()
            if t.state == "COMPLETE"
            and t.graph is not None
            and (stage == "any" or t.origin.removesuffix(":retry") == f"staged:{stage}")
        ]
        if not done:
            return None
        return max(done, key=lambda t: (t.values[0], -t.number)).graph  # type: ignore[index]

    def _sample(self, trial: optuna.Trial) -> tuple[AgentGraph, str]:
        stage = self.stage(asking=trial.number)
        if stage == "prompt":
            graph = self.prompt_space.sample(trial, self.pool)
        elif stage == "topology":
            graph = self.topology_space.sample(trial, self.pool)
            best_prompt = self._best_of("prompt") or self._best_of("any")
            instruction = getattr(best_prompt.nodes[0].params, "instruction", None) if best_prompt else None
            if instruction:
                graph = _with_instructions(graph, {n.id: instruction for n in graph.nodes})
        elif (base := self._best_of("topology") or self._best_of("any")) is None:
            stage = "topology"  # nothing finished yet to tune the prompts of: explore the topology instead
            graph = self.topology_space.sample(trial, self.pool)
        else:
            chosen = {}
            for node in base.nodes:
                if not isinstance(node.params, LMParams) or OPERATORS[node.op].kind == "aggregator":
                    continue
                idx = trial.suggest_categorical(
                    f"prompt.{node.id}.instruction", list(range(len(self.space.instructions)))
                )
                style = trial.suggest_categorical(f"prompt.{node.id}.style", list(self.space.styles))
                text = " ".join(t for t in (self.space.instructions[idx], STYLES.get(style, "")) if t)
                if text:
                    chosen[node.id] = (
                        text if self.space.instructions[idx] else f"{OPERATORS[node.op].default_instruction} {text}"
                    )
            graph = _with_instructions(base, chosen)
        return graph, f"staged:{stage}"


def _with_instructions(graph: AgentGraph, instructions: dict[str, str]) -> AgentGraph:
    nodes = []
    for node in graph.nodes:
        text = instructions.get(node.id)
        if text and isinstance(node.params, LMParams):
            node = node.model_copy(update={"params": node.params.model_copy(update={"instruction": text})})
        nodes.append(node)
    return graph.model_copy(update={"nodes": tuple(nodes)})
