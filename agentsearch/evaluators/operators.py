"""Operator implementations: one small ``dspy.Module`` per operator spec.

Every operator is built from a :class:`~agentsearch.search_space.graph.NodeConfig` and called as
``module(question=..., upstream=[NodeOutput, ...]) -> NodeOutput``. The node's instruction (prompt
level) replaces the signature's instructions, its demos become the predictor's few-shot demos, and
its sampling knobs go into every LM call's config.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from agentsearch.evaluators.answers import majority_vote
from agentsearch.search_space.graph import NodeConfig
from agentsearch.search_space.operators import LMParams


@dataclass(frozen=True)
class NodeOutput:
    """What a node passes downstream: its final answer, the reasoning behind it, and any samples."""

    answer: str
    reasoning: str = ""
    samples: tuple[str, ...] = field(default=())


# -- signatures -------------------------------------------------------------------------------


class Solve(dspy.Signature):
    """Solve the question."""

    question: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


class SolveWithContext(dspy.Signature):
    """Solve the question."""

    question: str = dspy.InputField()
    context: str = dspy.InputField(desc="solutions from earlier steps; they may contain errors")
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


class Critique(dspy.Signature):
    """Check the proposed solution to the question step by step and point out any error. Say whether its
    final answer is correct."""

    question: str = dspy.InputField()
    solution: str = dspy.InputField(desc="a proposed solution with its final answer")
    critique: str = dspy.OutputField(desc="the errors found, or why the solution is right")
    is_correct: bool = dspy.OutputField(desc="is the final answer correct?")


class Revise(dspy.Signature):
    """Solve the question."""

    question: str = dspy.InputField()
    solution: str = dspy.InputField(desc="an earlier solution")
    critique: str = dspy.InputField(desc="a critique of that solution")
    answer: str = dspy.OutputField(desc="the corrected final answer only (a number or a short phrase)")


class Aggregate(dspy.Signature):
    """Several solutions to the question are given; decide which is right."""

    question: str = dspy.InputField()
    candidates: str = dspy.InputField(desc="candidate solutions from other agents; some may be wrong")
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


# -- helpers ----------------------------------------------------------------------------------


def render_solution(out: NodeOutput) -> str:
    """One solution as prompt text: its reasoning, then a line ``Answer: X``."""
    body = out.reasoning.strip()
    return f"{body}\nAnswer: {out.answer}" if body else f"Answer: {out.answer}"


def format_solutions(outputs: Sequence[NodeOutput], label: str = "Solution") -> str:
    """Render several upstream outputs for a prompt, numbered."""
    return "\n\n".join(f"{label} {i}:\n{render_solution(out)}" for i, out in enumerate(outputs, 1))


def sample_outputs(call: Callable[[int], NodeOutput], n: int) -> list[NodeOutput]:
    """``call(i)`` for ``i < n``, skipping samples whose output could not be parsed; a small model's one
    garbled sample must not sink the other n-1. If every sample fails, the last parse error is raised."""
    from dspy.utils.exceptions import AdapterParseError

    outs: list[NodeOutput] = []
    last: AdapterParseError | None = None
    for i in range(n):
        try:
            outs.append(call(i))
        except AdapterParseError as exc:
            last = exc
    if not outs and last is not None:
        raise last
    return outs


def _text(pred: Any, name: str) -> str:
    value = getattr(pred, name, "")
    return "" if value is None else str(value).strip()


class OperatorModule(dspy.Module):
    """Base: keeps the node config and builds configured predictors."""

    def __init__(self, node: NodeConfig):
        super().__init__()
        self.node_id = node.id
        self.op = node.op
        self.params = node.params
        self.instruction = getattr(node.params, "instruction", None) or node.spec.default_instruction

    def _predictor(
        self, signature: type[dspy.Signature], reasoning: bool, instruction: str | None = None
    ) -> dspy.Module:
        sig = signature.with_instructions(instruction or self.instruction)
        module = dspy.ChainOfThought(sig) if reasoning else dspy.Predict(sig)
        demos = getattr(self.params, "demos", ())
        if demos:
            fields = ("question", "reasoning", "answer") if reasoning else ("question", "answer")
            examples = []
            for d in demos:
                values = {"question": d.question, "answer": d.answer, "reasoning": d.reasoning or "(omitted)"}
                examples.append(dspy.Example(**{k: values[k] for k in fields}).with_inputs("question"))
            for predictor in module.predictors():
                predictor.demos = examples
        return module

    def _config(self, sample: int | None = None) -> dict[str, Any]:
        params: LMParams = self.params  # type: ignore[assignment]
        config: dict[str, Any] = {"temperature": params.temperature, "max_tokens": params.max_tokens}
        if sample is not None and params.temperature > 0:
            config["rollout_id"] = sample  # distinct samples, each still cacheable
        return config

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:  # pragma: no cover
        raise NotImplementedError


class PredictOp(OperatorModule):
    """Direct answer, one call."""

    reasoning = False

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.solve = self._predictor(Solve, self.reasoning)
        self.solve_ctx = self._predictor(SolveWithContext, self.reasoning) if node.upstream else None

    def _solve_once(self, question: str, upstream: Sequence[NodeOutput], sample: int | None = None) -> NodeOutput:
        if upstream and self.solve_ctx is not None:
            pred = self.solve_ctx(question=question, context=format_solutions(upstream), config=self._config(sample))
        else:
            pred = self.solve(question=question, config=self._config(sample))
        return NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        return self._solve_once(question, upstream)


class CoTOp(PredictOp):
    """Chain of thought, one call."""

    reasoning = True


class SelfConsistencyOp(CoTOp):
    """n chain-of-thought samples, majority vote over normalized answers."""

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        samples = sample_outputs(lambda i: self._solve_once(question, upstream, sample=i), self.params.n)  # type: ignore[attr-defined]
        winner = majority_vote([s.answer for s in samples])
        reasoning = next((s.reasoning for s in samples if s.answer == winner), "")
        return NodeOutput(answer=winner, reasoning=reasoning, samples=tuple(s.answer for s in samples))


class SelfRefineOp(OperatorModule):
    """Draft (or take the upstream answer), then critique -> revise for up to k rounds."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.draft = self._predictor(Solve, reasoning=True)
        self.critique = dspy.Predict(Critique)
        self.revise = self._predictor(Revise, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        if upstream:
            current = upstream[0]
        else:
            pred = self.draft(question=question, config=self._config())
            current = NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))
        for _ in range(self.params.rounds):  # type: ignore[attr-defined]
            solution = render_solution(current)
            check = self.critique(question=question, solution=solution, config=self._config())
            if check.is_correct is True:
                break
            pred = self.revise(
                question=question, solution=solution, critique=_text(check, "critique"), config=self._config()
            )
            current = NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))
        return current


class VoteOp(OperatorModule):
    """Majority vote over upstream answers; no LM call."""

    def __init__(self, node: NodeConfig):
        dspy.Module.__init__(self)
        self.node_id, self.op, self.params, self.instruction = node.id, node.op, node.params, ""

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        answers = [u.answer for u in upstream]
        winner = majority_vote(answers)
        reasoning = next((u.reasoning for u in upstream if u.answer == winner), "")
        return NodeOutput(answer=winner, reasoning=reasoning, samples=tuple(answers))


class AggregateOp(OperatorModule):
    """An LM reads the upstream solutions and writes the final answer."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.aggregate = self._predictor(Aggregate, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        pred = self.aggregate(
            question=question, candidates=format_solutions(upstream, "Candidate"), config=self._config()
        )
        return NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))


#: The v1 operators; the full registry (with :mod:`operators_more`) is :mod:`agentsearch.evaluators.library`.
V1_IMPLEMENTATIONS: dict[str, Callable[[NodeConfig], OperatorModule]] = {
    "predict": PredictOp,
    "cot": CoTOp,
    "self_consistency": SelfConsistencyOp,
    "self_refine": SelfRefineOp,
    "vote": VoteOp,
    "aggregate": AggregateOp,
}
