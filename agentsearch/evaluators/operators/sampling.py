"""Test-time scaling: best-of-n with a verifier, step-level beam search, debate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentsearch.evaluators.answers import majority_vote
from agentsearch.evaluators.operators.aggregators import Judge, _pick
from agentsearch.evaluators.operators.base import (
    NodeOutput,
    OperatorModule,
    Solve,
    _float,
    _text,
    format_solutions,
    render_solution,
    sample_outputs,
    with_context,
)
from agentsearch.search_space.graph import NodeConfig


class Verify(dspy.Signature):
    """Check the proposed solution step by step and estimate the probability that its final answer is
    correct."""

    question: str = dspy.InputField()
    solution: str = dspy.InputField()
    score: float = dspy.OutputField(desc="probability between 0 and 1 that the final answer is correct")


class NextStep(dspy.Signature):
    """Continue the partial solution with exactly one next reasoning step. When the answer is known, the step
    is 'Final answer: <answer>'."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField(desc="the steps so far (may be empty)")
    step: str = dspy.OutputField(desc="one next step")


class ScorePartial(dspy.Signature):
    """Judge a partial solution: how likely is it to be correct so far and on track to the right answer?"""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    score: float = dspy.OutputField(desc="a number between 0 and 1")


class AnswerFromSteps(dspy.Signature):
    """Give the final answer that the solution steps reach."""

    question: str = dspy.InputField()
    steps: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


class DebateTurn(dspy.Signature):
    """Solve the question."""

    question: str = dspy.InputField()
    own: str = dspy.InputField(desc="your previous solution")
    others: str = dspy.InputField(desc="the other agents' solutions; they may be right or wrong")
    answer: str = dspy.OutputField(desc="your updated final answer only (a number or a short phrase)")


def _sample(module: dspy.Module, op: OperatorModule, n: int, **inputs: Any) -> list[NodeOutput]:
    def one(i: int) -> NodeOutput:
        pred = module(**inputs, config=op._config(sample=i))
        return NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))

    return sample_outputs(one, n)


class BestOfNOp(OperatorModule):
    """Sample n solutions; an LLM verifier scores each; the best-scored answer wins."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.solve = self._predictor(Solve, reasoning=True)
        self.verify = dspy.Predict(Verify)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        q = with_context(question, upstream)
        candidates = _sample(self.solve, self, self.params.n, question=q)  # type: ignore[attr-defined]
        scored = []
        for cand in candidates:
            try:
                score = _float(self.verify(question=q, solution=render_solution(cand), config=self._config()).score)
            except AdapterParseError:
                score = 0.0  # an unreadable verdict gives this candidate no support
            scored.append((score, cand))
        best = max(scored, key=lambda sc: sc[0])[1]
        return NodeOutput(answer=best.answer, reasoning=best.reasoning, samples=tuple(c.answer for c in candidates))


class PRMBeamOp(OperatorModule):
    """Step-level beam search guided by an LLM process-reward judge."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.propose = self._predictor(NextStep, reasoning=False)
        self.score = dspy.Predict(ScorePartial)
        self.finish = self._predictor(AnswerFromSteps, reasoning=False)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        p = self.params
        q = with_context(question, upstream)
        beams: list[tuple[float, list[str]]] = [(0.0, [])]
        sample = 0
        for _ in range(p.depth):  # type: ignore[attr-defined]
            expanded: list[tuple[float, list[str]]] = []
            for _, steps in beams:
                if steps and steps[-1].lower().startswith("final answer"):
                    expanded.append((1.0, steps))
                    continue
                for _ in range(p.expansions):  # type: ignore[attr-defined]
                    pred = self.propose(
                        question=q, steps="\n".join(steps) or "(no steps yet)", config=self._config(sample=sample)
                    )
                    sample += 1
                    new = steps + [_text(pred, "step")]
                    try:
                        score = _float(self.score(question=q, steps="\n".join(new), config=self._config()).score)
                    except AdapterParseError:
                        score = 0.0
                    expanded.append((score, new))
            beams = sorted(expanded, key=lambda b: -b[0])[: p.beam_width]  # type: ignore[attr-defined]
            if all(s and s[-1].lower().startswith("final answer") for _, s in beams):
                break
        steps = "\n".join(beams[0][1])
        final = self.finish(question=q, steps=steps, config=self._config())
        return NodeOutput(answer=_text(final, "answer"), reasoning=steps)


class DebateOp(OperatorModule):
    """m agents solve independently, then revise after reading each other for r-1 rounds; vote or judge."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.first = self._predictor(Solve, reasoning=True)
        self.turn = self._predictor(DebateTurn, reasoning=True)
        self.judge = dspy.Predict(Judge)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        p = self.params
        q = with_context(question, upstream)
        agents = _sample(self.first, self, p.agents, question=q)  # type: ignore[attr-defined]
        sample = p.agents  # type: ignore[attr-defined]
        for _ in range(p.rounds - 1):  # type: ignore[attr-defined]
            updated = []
            for i, own in enumerate(agents):
                others = format_solutions([a for j, a in enumerate(agents) if j != i], "Agent")
                sample += 1
                try:
                    pred = self.turn(question=q, own=render_solution(own), others=others, config=self._config(sample))
                except AdapterParseError:
                    updated.append(own)  # an unreadable turn: the agent keeps its previous answer
                    continue
                updated.append(NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning")))
            agents = updated
        answers = tuple(a.answer for a in agents)
        if p.final == "judge":  # type: ignore[attr-defined]
            best = _pick(self.judge, self, q, agents)
            return NodeOutput(answer=best.answer, reasoning=best.reasoning, samples=answers)
        winner = majority_vote(list(answers))
        reasoning = next((a.reasoning for a in agents if a.answer == winner), "")
        return NodeOutput(answer=winner, reasoning=reasoning, samples=answers)
