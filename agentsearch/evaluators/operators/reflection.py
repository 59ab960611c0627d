"""Verbal reinforcement and memory: reflexion, experience (insights built from the train split)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentsearch.evaluators.operators.base import (
    NodeOutput,
    OperatorModule,
    Solve,
    _lines,
    _text,
    render_solution,
    with_context,
)
from agentsearch.search_space.graph import NodeConfig

log = logging.getLogger(__name__)


class SelfCheck(dspy.Signature):
    """Review your solution to the question critically. If you doubt the final answer, explain what went
    wrong and what to do differently."""

    question: str = dspy.InputField()
    solution: str = dspy.InputField()
    confident: bool = dspy.OutputField(desc="is the final answer certainly correct?")
    reflection: str = dspy.OutputField(desc="the mistake and how to avoid it (empty if confident)")


class RetryWithReflection(dspy.Signature):
    """Solve the question."""

    question: str = dspy.InputField()
    reflections: str = dspy.InputField(desc="lessons from earlier failed attempts at this question")
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


class DistillInsights(dspy.Signature):
    """Compare the solved and failed attempts at similar problems and write general, reusable insights
    (rules of thumb) that would help solve new problems of this kind correctly."""

    task: str = dspy.InputField(desc="what the problems ask for")
    successes: str = dspy.InputField(desc="problems solved correctly, with their reasoning")
    failures: str = dspy.InputField(desc="problems solved wrongly, with the wrong reasoning and the right answer")
    insights: str = dspy.OutputField(desc="one short insight per line")


class ReflexionOp(OperatorModule):
    """Answer; self-check; on doubt, reflect and retry with the accumulated reflections."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.solve = self._predictor(Solve, reasoning=True)
        self.check = dspy.Predict(SelfCheck)
        self.retry = self._predictor(RetryWithReflection, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        q = with_context(question, upstream)
        pred = self.solve(question=q, config=self._config())
        current = NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))
        reflections: list[str] = []
        for _ in range(self.params.max_trials):  # type: ignore[attr-defined]
            check = self.check(question=q, solution=render_solution(current), config=self._config())
            if check.confident is True:
                break
            reflections.append(_text(check, "reflection") or f"The answer {current.answer} was doubted.")
            pred = self.retry(question=q, reflections="\n".join(f"- {r}" for r in reflections), config=self._config())
            current = NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))
        return current


class ExperienceOp(OperatorModule):
    """Chain of thought guided by insights distilled (ExpeL-style) from the train split; see
    :func:`build_insights`. The insights live in the node config, so an exported agent carries them."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        insights = getattr(self.params, "insights", ())
        if insights:
            self.instruction = (
                self.instruction + "\n\nInsights from earlier problems:\n" + "\n".join(f"- {i}" for i in insights)
            )
        self.solve = self._predictor(Solve, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        pred = self.solve(question=with_context(question, upstream), config=self._config())
        return NodeOutput(answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"))


def build_insights(
    node: NodeConfig,
    lm: dspy.BaseLM,
    train: Sequence[Any],
    metric: Callable[[Any, str], bool],
    answer_kind: str = "text",
) -> NodeConfig:
    """Solve ``n_train`` train examples with the node, then distill insights from its successes and
    failures; returns the node with ``params.insights`` filled (the memory is frozen from then on)."""
    from agentsearch.evaluators.operators.formats import make_adapter

    with dspy.context(adapter=make_adapter(node.params.format, answer_kind)):  # type: ignore[attr-defined]
        return _build_insights(node, lm, train, metric)


def _build_insights(
    node: NodeConfig, lm: dspy.BaseLM, train: Sequence[Any], metric: Callable[[Any, str], bool]
) -> NodeConfig:
    params = node.params
    solver = ExperienceOp(node)
    solver.set_lm(lm)
    distill = dspy.Predict(DistillInsights)
    distill.set_lm(lm)
    successes, failures = [], []
    for ex in list(train)[: params.n_train]:  # type: ignore[attr-defined]
        try:
            out = solver(question=ex.question)
        except AdapterParseError:
            continue
        entry = f"Problem: {ex.question}\nReasoning: {out.reasoning[:600]}\nAnswer given: {out.answer}"
        if metric(ex, out.answer):
            successes.append(entry)
        else:
            failures.append(f"{entry}\nCorrect answer: {ex.answer}")
    try:
        text = distill(
            task=solver.instruction,
            successes="\n\n".join(successes) or "(none)",
            failures="\n\n".join(failures) or "(none)",
            config={"temperature": 0.0},
        ).insights
    except AdapterParseError:
        text = ""
    insights = tuple(i[:300] for i in _lines(text, params.max_insights))  # type: ignore[attr-defined]
    if not insights:  # nothing learned: store nothing (the node runs as plain chain of thought) and say so
        log.warning(
            "experience node %s: no insight could be distilled from %d solved and %d failed train examples; "
            "its memory is empty",
            node.id,
            len(successes),
            len(failures),
        )
    new_params = params.model_copy(update={"insights": insights, "built": True})
    return node.model_copy(update={"params": new_params})
