"""Aggregators over upstream solutions: vote, aggregate, fuse, rank, judge."""

from __future__ import annotations

import re
from collections.abc import Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentsearch.evaluators.answers import majority_vote
from agentsearch.evaluators.operators.base import Aggregate, NodeOutput, OperatorModule, _int, _text, format_solutions
from agentsearch.search_space.graph import NodeConfig


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


class Fuse(dspy.Signature):
    """Several candidate solutions to the question are given."""

    question: str = dspy.InputField()
    candidates: str = dspy.InputField(desc="candidate solutions; some may be wrong")
    answer: str = dspy.OutputField(desc="the final answer only (a number or a short phrase)")


class Rank(dspy.Signature):
    """Several candidate solutions to the question are given."""

    question: str = dspy.InputField()
    candidates: str = dspy.InputField(desc="numbered candidate solutions")
    ranking: str = dspy.OutputField(desc="candidate numbers from best to worst, comma-separated, e.g. 2, 1, 3")


class Judge(dspy.Signature):
    """Several candidate solutions to the question are given."""

    question: str = dspy.InputField()
    candidates: str = dspy.InputField(desc="numbered candidate solutions")
    best: int = dspy.OutputField(desc="the number of the correct candidate")


def _pick(judge: dspy.Module, op: OperatorModule, question: str, candidates: Sequence[NodeOutput]) -> NodeOutput:
    """An LLM judge's choice among candidates (1-based index; unreadable -> the majority answer)."""
    try:
        index = _int(
            judge(question=question, candidates=format_solutions(candidates, "Candidate"), config=op._config()).best
        )
    except AdapterParseError:
        index = None
    if index is not None and 1 <= index <= len(candidates):
        return candidates[index - 1]
    winner = majority_vote([c.answer for c in candidates])
    return next(c for c in candidates if c.answer == winner) if winner else candidates[0]


class FuseOp(OperatorModule):
    """Archon fuser: one improved solution from several candidates."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.fuse = self._predictor(Fuse, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        pred = self.fuse(question=question, candidates=format_solutions(upstream, "Candidate"), config=self._config())
        return NodeOutput(
            answer=_text(pred, "answer"), reasoning=_text(pred, "reasoning"), samples=tuple(u.answer for u in upstream)
        )


class RankOp(OperatorModule):
    """Archon ranker: order candidates; the top one is the answer."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.rank = self._predictor(Rank, reasoning=False)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        try:
            ranking = self.rank(
                question=question, candidates=format_solutions(upstream, "Candidate"), config=self._config()
            ).ranking
            order = [int(x) for x in re.findall(r"\d+", str(ranking)) if 1 <= int(x) <= len(upstream)]
        except AdapterParseError:
            order = []
        if order:
            top = upstream[order[0] - 1]
        else:  # unreadable ranking: fall back to the majority
            winner = majority_vote([u.answer for u in upstream])
            top = next(u for u in upstream if u.answer == winner) if winner else upstream[0]
        return NodeOutput(answer=top.answer, reasoning=top.reasoning, samples=tuple(u.answer for u in upstream))


class JudgeOp(OperatorModule):
    """An LLM judge picks the best candidate."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.judge = self._predictor(Judge, reasoning=True)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        best = _pick(self.judge, self, question, upstream)
        return NodeOutput(answer=best.answer, reasoning=best.reasoning, samples=tuple(u.answer for u in upstream))
