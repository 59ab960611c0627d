"""Prompting strategies: predict, chain of thought, self-consistency, self-refine,
least-to-most, step-back, plan-and-solve.
"""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from agentsearch.evaluators.answers import majority_vote
from agentsearch.evaluators.operators.base import (
    Critique,
    NodeOutput,
    OperatorModule,
    Revise,
    Solve,
    SolveWithContext,
    _lines,
    _text,
    format_solutions,
    render_solution,
    sample_outputs,
    with_context,
)
from agentsearch.search_space.graph import NodeConfig


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


class Decompose(dspy.Signature):
    """Break the problem into simpler subquestions which, answered in order, lead to the answer. The last
    subquestion asks for the final answer."""

    question: str = dspy.InputField()
    subquestions: str = dspy.OutputField(desc="one subquestion per line, in the order to solve them")


class SolveSubquestion(dspy.Signature):
    """Answer the subquestion, using the answers already found."""

    question: str = dspy.InputField(desc="the original problem")
    solved: str = dspy.InputField(desc="subquestions answered so far")
    subquestion: str = dspy.InputField()
    answer: str = dspy.OutputField(desc="a short answer to the subquestion")


class Principle(dspy.Signature):
    """Step back: state the general principle, concept or formula needed to solve the question, without
    solving it."""

    question: str = dspy.InputField()
    principle: str = dspy.OutputField()


class SolveWithPrinciple(dspy.Signature):
    """Solve the question."""

    question: str = dspy.InputField()
    principle: str = dspy.InputField(desc="the principle that applies")
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


class PlanSolve(dspy.Signature):
    """Solve the question."""

    question: str = dspy.InputField()
    plan: str = dspy.OutputField(desc="the relevant quantities and a numbered plan")
    solution: str = dspy.OutputField(desc="the plan carried out step by step")
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


class LeastToMostOp(OperatorModule):
    """Decompose into subquestions, solve them in order, then answer with all of them in view."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.decompose = dspy.Predict(Decompose)
        self.solve_sub = dspy.Predict(SolveSubquestion)
        self.final = self._predictor(SolveWithContext, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        q = with_context(question, upstream)
        plan = self.decompose(question=q, config=self._config())
        subs = _lines(plan.subquestions, self.params.max_subquestions)  # type: ignore[attr-defined]
        solved: list[str] = []
        for sub in subs:
            pred = self.solve_sub(
                question=q, solved="\n".join(solved) or "(none yet)", subquestion=sub, config=self._config()
            )
            solved.append(f"Q: {sub}\nA: {_text(pred, 'answer')}")
        final = self.final(question=q, context="\n".join(solved) or "(no subquestions)", config=self._config())
        reasoning = "\n".join(solved + [_text(final, "reasoning")])
        return NodeOutput(answer=_text(final, "answer"), reasoning=reasoning)


class StepBackOp(OperatorModule):
    """Abstract the principle first, then solve with it."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.abstract = dspy.Predict(Principle)
        self.solve = self._predictor(SolveWithPrinciple, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        q = with_context(question, upstream)
        principle = _text(self.abstract(question=q, config=self._config()), "principle")
        pred = self.solve(question=q, principle=principle or "(none)", config=self._config())
        return NodeOutput(answer=_text(pred, "answer"), reasoning=f"Principle: {principle}\n{_text(pred, 'reasoning')}")


class PlanAndSolveOp(OperatorModule):
    """Plan-and-Solve prompting: plan, execute, answer in one call."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.solve = self._predictor(PlanSolve, reasoning=False)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        pred = self.solve(question=with_context(question, upstream), config=self._config())
        return NodeOutput(
            answer=_text(pred, "answer"), reasoning=f"Plan: {_text(pred, 'plan')}\n{_text(pred, 'solution')}"
        )
