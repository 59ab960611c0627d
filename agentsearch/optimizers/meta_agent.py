"""Meta-agent (agent level, ADAS-style, archive-based), in our typed graph language.

The proposer LLM sees the archive of evaluated graphs (YAML, validation score, cost) and the operator
catalogue, and writes a new graph in YAML. The YAML is validated, never executed: an invalid graph
gets its one-line validation error back for up to two repairs; a graph equal (same config hash) to
one already tried is rejected without evaluation. :class:`MetaAgent` is a
:class:`~agentsearch.optimizers.base.Strategy`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentsearch.errors import GraphError
from agentsearch.optimizers.base import Archive, FinishedTrial, Proposal, StrategyContext
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import OPERATORS
from agentsearch.search_space.space import SearchSpace

log = logging.getLogger(__name__)

EXAMPLE_YAML = """name: two_solvers_and_a_judge
output: final
nodes:
  - id: a
    op: cot
    params: {temperature: 0.2}
  - id: b
    op: program_of_thought
  - id: final
    op: judge
    inputs: [a, b]"""


class DesignAgent(dspy.Signature):
    """You design agent systems that answer questions of a task as accurately as possible within a cost
    budget. An agent is a graph of operators written in YAML: every node has an id, an op, optional
    inputs (default [question]; list upstream node ids to pass their solutions on) and optional params;
    `output` names the node whose answer is the agent's. Study the archive of evaluated agents and write
    ONE new agent that is likely to score higher than all of them. Be creative but valid: use only the
    operators and params in the catalogue. Output only the YAML."""

    task: str = dspy.InputField()
    catalogue: str = dspy.InputField(desc="operators: what they do, their params and cost")
    archive: str = dspy.InputField(desc="evaluated agents: YAML, validation score, LM calls per question")
    budget: str = dspy.InputField()
    feedback: str = dspy.InputField(desc="why your previous attempt was rejected (empty at first)")
    yaml: str = dspy.OutputField(desc="the new agent as YAML")


def catalogue(space: SearchSpace) -> str:
    """The operators the meta-agent may use, with their params, ranges and defaults (from the specs)."""
    lines = []
    for name, spec in OPERATORS.items():
        if spec.kind == "solver" and name not in space.solvers:
            continue
        params = []
        for field, schema in spec.params.model_json_schema().get("properties", {}).items():
            if field in ("demos", "instruction", "insights", "model"):
                continue
            lo, hi = schema.get("minimum", schema.get("exclusiveMinimum")), schema.get("maximum")
            domain = f" in [{lo}, {hi}]" if lo is not None or hi is not None else ""
            if "enum" in schema:
                domain = f" one of {schema['enum']}"
            params.append(f"{field}={schema.get('default')!r}{domain}")
        arity = "aggregator, inputs: 2+ upstream node ids" if spec.kind == "aggregator" else "solver"
        lines.append(f"- {name} ({arity}): {spec.summary}. params: {'; '.join(params) or 'none'}")
    lines.append(f"Every LM node also takes params.instruction (text) and params.model (one of {list(space.models)}).")
    return "\n".join(lines)


def render_archive(archive: list[FinishedTrial], limit: int = 8) -> str:
    """The best and most recent evaluated agents, best first."""
    done = [t for t in archive if t.state == "COMPLETE" and t.graph is not None and t.values]
    best = sorted(done, key=lambda t: -t.values[0])[:limit]  # type: ignore[index]
    blocks = []
    for t in best:
        g = t.graph.model_copy(update={"name": f"trial_{t.number}"})  # type: ignore[union-attr]
        blocks.append(
            f"# score {t.values[0]:.3f}, {t.metrics.get('calls_per_question', 0):.1f} calls/question\n"  # type: ignore[index]
            f"{g.to_yaml().strip()}"
        )
    return "\n\n".join(blocks) or "(empty)"


def extract_yaml(text: str) -> str:
    m = re.search(r"```(?:ya?ml)?\s*\n(.*?)```", text or "", re.DOTALL)
    return (m.group(1) if m else text or "").strip()


class MetaAgent:
    """An LLM designs whole graphs from the archive; validated, repaired, deduplicated."""

    name = "meta-agent"

    def __init__(self, *, proposer_lm: dspy.BaseLM | None = None, task: str = "Answer the question.", repairs: int = 2):
        self.proposer_lm = proposer_lm
        self.task = task
        self.repairs = repairs

    def bind(self, context: StrategyContext) -> None:
        self.proposer_lm = context.proposer_lm

    def told(self, trial: FinishedTrial) -> None:
        return None

    def propose(self, archive: Archive, space: SearchSpace, rng: Any = None) -> Proposal | None:
        if self.proposer_lm is None or len(archive.complete()) < 2:
            return None  # baselines (or the sampler) first
        design = dspy.Predict(DesignAgent)
        design.set_lm(self.proposer_lm)
        budget = (
            f"at most {space.max_calls_per_question} LM calls per question"
            if space.max_calls_per_question
            else "no hard limit; cheaper is better"
        )
        feedback = ""
        seen = archive.seen
        shown = render_archive(list(archive.trials))
        attempts: list[dict[str, str]] = []  # what the proposer was told and wrote, logged with the trial
        for attempt in range(self.repairs + 1):
            if attempts:
                attempts[-1]["rejected"] = feedback
            try:
                from agentsearch.evaluators.operators.formats import proposer_adapter

                with dspy.context(adapter=proposer_adapter()):
                    out = design(
                        task=self.task,
                        catalogue=catalogue(space),
                        archive=shown,
                        budget=budget,
                        feedback=feedback or "(none)",
                        config={"temperature": 0.8, "rollout_id": len(archive.trials) * 10 + attempt},
                    )
            except AdapterParseError as exc:
                feedback = f"your reply could not be read: {str(exc).splitlines()[0][:200]}"
                continue
            text = extract_yaml(str(out.yaml))
            attempts.append({"feedback": feedback or "(none)", "reply": text})
            try:
                graph = AgentGraph.from_text(text, source="your YAML")
            except GraphError as exc:
                feedback = f"invalid graph: {exc}. Fix exactly this and resend the whole YAML."
                log.info("meta-agent attempt %d invalid: %s", attempt + 1, exc)
                continue
            outside = space.check(graph)  # the space's own rules: budget, models, formats, operators
            if outside is not None:
                feedback = outside
                continue
            if graph.config_hash in seen:
                feedback = "that agent was already evaluated (see the archive); propose a different one."
                continue
            info = {"archive": shown, "budget": budget, "attempts": attempts}
            return Proposal(graph=graph.model_copy(update={"name": f"meta-{len(archive.trials)}"}), info=info)
        log.warning("meta-agent gave no valid new graph after %d attempts; sampling instead", self.repairs + 1)
        return None
