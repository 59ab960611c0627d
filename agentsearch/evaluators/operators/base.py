"""Operator base: what a node passes on (:class:`NodeOutput`), shared signatures,
:class:`OperatorModule` and helpers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentsearch.search_space.graph import NodeConfig
from agentsearch.search_space.operators import LMParams


@dataclass(frozen=True)
class NodeOutput:
    """What a node passes downstream: its final answer, the reasoning behind it, and any samples."""

    answer: str
    reasoning: str = ""
    samples: tuple[str, ...] = field(default=())


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
    """Base: keeps the node config and builds configured predictors. ``answer_kind`` is the benchmark's
    (set by :func:`~agentsearch.evaluators.operators.registry.build_operator`; the adapters make the answer
    fields ask for it, so most operators need not look at it)."""

    answer_kind: str = "text"

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


def with_context(question: str, upstream: Sequence[NodeOutput]) -> str:
    """The question, followed by upstream solutions when there are any."""
    if not upstream:
        return question
    return f"{question}\n\nEarlier solutions (they may contain errors):\n{format_solutions(upstream)}"


def _lines(text: str, limit: int) -> list[str]:
    """Items of a one-per-line list, numbering and bullets stripped."""
    items = [re.sub(r"^\s*(?:\d+[.)]|[-*•])\s*", "", line).strip() for line in str(text or "").splitlines()]
    return [i for i in items if i][:limit]


def _float(value: Any, default: float = 0.0) -> float:
    try:
        return float(str(value).strip().rstrip("%"))
    except (TypeError, ValueError):
        return default


def _int(value: Any, default: int | None = None) -> int | None:
    m = re.search(r"-?\d+", str(value or ""))
    return int(m.group()) if m else default
