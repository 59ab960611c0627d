"""Instruction proposer (prompt level, OPRO/MIPRO-style), working with the Optuna sampler.

Every few trials an LLM (the proposer model) reads the best instruction so far, its validation
score, and a sample of failed and passed validation examples, and writes a new instruction. The
new instruction fills one of the space's reserved instruction slots, so TPE can choose it for any
node from then on; it is first tried on the best configuration so far. Few-shot demo sets are
bootstrapped once from correct chain-of-thought traces on the train split and join the pool the
same way. The pool is saved with the study, so a resumed study keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentsearch.optimizers.base import Archive, FinishedTrial, Proposal, StrategyContext
from agentsearch.search_space.operators import DEFAULT_FORMAT
from agentsearch.search_space.space import PromptPool, SearchSpace

log = logging.getLogger(__name__)


class ProposeInstruction(dspy.Signature):
    """You improve the instruction given to an AI system solving a task. Study where the current
    instruction fails, then write a new, better instruction for the same task. Keep what works; add
    concrete guidance that fixes the failures. Output only the instruction text."""

    task: str = dspy.InputField(desc="what the system is asked to do")
    current_instruction: str = dspy.InputField()
    score: str = dspy.InputField(desc="validation accuracy of the current instruction")
    failures: str = dspy.InputField(desc="examples it got wrong: question, its answer, the right answer")
    successes: str = dspy.InputField(desc="examples it got right")
    earlier_proposals: str = dspy.InputField(desc="instructions already tried, with their scores")
    new_instruction: str = dspy.OutputField(desc="the improved instruction (2-6 sentences)")


def _examples(items: Sequence[dict[str, Any]], correct: bool, limit: int) -> str:
    chosen = [e for e in items if bool(e.get("correct")) == correct][:limit]
    if not chosen:
        return "(none)"
    return "\n\n".join(
        f"Question: {e['question']}\nAnswer given: {e['prediction']}" + ("" if correct else f"\nCorrect: {e['gold']}")
        for e in chosen
    )


def bootstrap_demo_sets(
    lm: dspy.BaseLM,
    train: Sequence[Any],
    metric: Callable[[Any, str], bool],
    sets: int = 2,
    k: int = 3,
    max_tries: int = 16,
    answer_kind: str = "text",
) -> list[list[dict[str, str]]]:
    """Demo sets of ``k`` correct chain-of-thought traces each, from the train split (in the default format)."""
    from agentsearch.evaluators.operators.base import Solve

    solver = dspy.ChainOfThought(
        Solve.with_instructions("Solve the question step by step. Give only the final answer as the answer.")
    )
    solver.set_lm(lm)
    from agentsearch.evaluators.operators.formats import make_adapter

    adapter = make_adapter(DEFAULT_FORMAT, answer_kind)
    good: list[dict[str, str]] = []
    for ex in list(train)[:max_tries]:
        if len(good) >= sets * k:
            break
        try:
            with dspy.context(adapter=adapter):
                pred = solver(question=ex.question)
        except AdapterParseError:
            continue
        if metric(ex, str(pred.answer)):
            good.append({"question": ex.question, "answer": str(pred.answer), "reasoning": str(pred.reasoning)[:1200]})
    return [good[i : i + k] for i in range(0, len(good) - k + 1, k)][:sets]


class InstructionProposer:
    """A strategy: TPE (the study's sampler) over the space, plus LLM-written instructions and bootstrapped
    demos joining the study's prompt pool."""

    name = "proposer"

    def __init__(
        self,
        *,
        proposer_lm: dspy.BaseLM | None = None,
        task: str = "Answer the question correctly.",
        propose_every: int = 3,
        demo_bootstrap: Callable[[], list[list[dict[str, str]]]] | None = None,
        bootstrap_demos: bool = False,
    ):
        self.proposer_lm = proposer_lm
        self.task = task
        self.propose_every = propose_every
        self.demo_bootstrap = demo_bootstrap
        self.bootstrap_demos = bootstrap_demos

    def adapt(self, space: SearchSpace) -> SearchSpace:
        """Slots for proposed instructions and bootstrapped demo sets (Optuna's choices can't grow later)."""
        if "prompt" not in space.levels:
            from agentsearch.errors import UserError

            raise UserError("--optimizer proposer writes instructions: include 'prompt' in --levels")
        import dataclasses

        return dataclasses.replace(
            space,
            proposal_slots=max(space.proposal_slots, 8),
            # demo sets are bootstrapped from the train split once the LMs exist (study.run_study binds
            # demo_bootstrap then): their choices must be in the space from the first trial
            demo_slots=max(space.demo_slots, 2 if (self.demo_bootstrap or self.bootstrap_demos) else 0),
        )

    def bind(self, context: StrategyContext) -> None:
        self.proposer_lm = context.proposer_lm
        if context.demo_bootstrap is not None:
            self.demo_bootstrap = context.demo_bootstrap

    def told(self, trial: FinishedTrial) -> None:
        return None

    def propose(self, archive: Archive, space: SearchSpace, rng: Any = None) -> Proposal | None:
        """Bootstrap demo sets once (a new pool, nothing else this time); else, every few trials, a new
        instruction tried on the best configuration so far."""
        pool: PromptPool = archive.pool or PromptPool()
        if self.demo_bootstrap is not None and not pool.demo_sets and not archive.attrs.get("demos_bootstrapped"):
            return Proposal(pool=pool.with_demo_sets(self.demo_bootstrap()), attrs={"demos_bootstrapped": True})
        if self.proposer_lm is None:
            return None
        return self._instruction(archive, space, pool)

    def _instruction(self, archive: Archive, space: SearchSpace, pool: PromptPool) -> Proposal | None:
        done = [t for t in archive.complete() if t.params]
        if len(done) < 2 or len(done) % self.propose_every or len(pool.instructions) >= space.proposal_slots:
            return None
        best = max(done, key=lambda t: t.values[0])  # type: ignore[index]
        slots = [k for k in best.params if k.startswith("prompt.") and k.endswith(".instruction")]
        if not slots:
            return None
        slot = sorted(slots)[0]
        node_id = slot.split(".")[1]
        current = best.graph.node(node_id).params.instruction if best.graph else None  # type: ignore[union-attr]
        history = (
            "\n".join(
                f"- ({t.values[0]:.2f}) {t.graph.node(node_id).params.instruction}"  # type: ignore[union-attr,index]
                for t in sorted(done, key=lambda t: -t.values[0])[:5]  # type: ignore[index]
                if t.graph is not None
                and node_id in {n.id for n in t.graph.nodes}
                and getattr(t.graph.node(node_id).params, "instruction", None)
            )
            or "(none)"
        )
        propose = dspy.Predict(ProposeInstruction)
        propose.set_lm(self.proposer_lm)
        inputs = {
            "task": self.task,
            "current_instruction": current or "(the default instruction)",
            "score": f"{best.values[0]:.3f}",  # type: ignore[index]
            "failures": _examples(best.examples, False, 5),
            "successes": _examples(best.examples, True, 2),
            "earlier_proposals": history,
        }
        from agentsearch.evaluators.operators.formats import proposer_adapter

        with dspy.context(adapter=proposer_adapter()):
            out = propose(**inputs, config={"temperature": 0.7, "rollout_id": len(done)})
        text = " ".join(str(out.new_instruction or "").split())[:2000]
        if len(text) < 10:
            return None
        pool, position = pool.with_instruction(text)
        if position < 0:
            return None
        params = dict(best.params)
        params[slot] = len(space.instructions) + position
        if f"prompt.{node_id}.style" in params:
            params[f"prompt.{node_id}.style"] = "plain"
        proposal = {
            "proposer": "instruction",
            "node": node_id,
            "parent_trial": best.number,
            **inputs,
            "new_instruction": text,
        }
        log.info("proposed instruction %d for %s: %s", position, node_id, text[:120])
        return Proposal(params=params, origin="proposer:instruction", info=proposal, pool=pool)
