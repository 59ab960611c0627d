"""The full module library: prompting strategies, test-time scaling, tools, verbal reinforcement, memory.

Every operator is a small ``dspy.Module`` built from a node config (see
:mod:`agentsearch.evaluators.operators` for the base class and the v1 operators). Operators that
are not natively multi-input read upstream solutions as extra context appended to the question.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from agentsearch.evaluators.answers import majority_vote
from agentsearch.evaluators.operators import (
    NodeOutput,
    OperatorModule,
    Solve,
    SolveWithContext,
    _text,
    format_solutions,
    render_solution,
    sample_outputs,
)
from agentsearch.search_space.graph import NodeConfig

log = logging.getLogger(__name__)


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


# -- signatures -------------------------------------------------------------------------------


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


class WriteProgram(dspy.Signature):
    """Write a Python program that computes the answer."""

    question: str = dspy.InputField()
    code: str = dspy.OutputField(desc="Python 3 source code only, no explanations")


class RepairProgram(dspy.Signature):
    """The program below failed. Fix it so that it prints only the final answer on its last line."""

    question: str = dspy.InputField()
    code: str = dspy.InputField(desc="the failing program")
    error: str = dspy.InputField(desc="what went wrong")
    fixed_code: str = dspy.OutputField(desc="the corrected Python 3 source code only")


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


# -- prompting --------------------------------------------------------------------------------


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


# -- test-time scaling ------------------------------------------------------------------------


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


# -- tools ------------------------------------------------------------------------------------


def make_tools(names: Sequence[str], timeout_s: float = 5.0) -> list[Callable[..., str]]:
    """The tool functions ReAct may call (docstrings are what the LLM sees)."""
    tools: list[Callable[..., str]] = []
    if "calculator" in names:

        def calculator(expression: str) -> str:
            """Evaluate an arithmetic expression exactly, e.g. '(12 + 7) * 3 / 4' or 'sqrt(2) ^ 2'."""
            from agentsearch.evaluators.calculator import evaluate

            return evaluate(expression)

        tools.append(calculator)
    if "python" in names:

        def python(code: str) -> str:
            """Run a short Python 3 program in a sandbox (no files, no network) and return what it prints."""
            return run_code(code, timeout_s)

        tools.append(python)
    return tools


def run_code(code: str, timeout_s: float = 5.0) -> str:
    """Run generated code in the sandbox; stdout on success, else a one-paragraph error."""
    from agentsearch.evaluators.sandbox import SandboxLimits, run_python

    result = run_python(strip_fences(code), limits=SandboxLimits(cpu_s=timeout_s, wall_s=timeout_s * 2))
    if result.ok and result.stdout.strip():
        return result.stdout.strip()
    if result.ok:
        return "error: the program printed nothing; print the final answer on the last line"
    reason = result.killed_reason or f"exit code {result.returncode}"
    tail = "\n".join(result.stderr.strip().splitlines()[-6:])
    return f"error: {reason}\n{tail}".strip()


def strip_fences(code: str) -> str:
    m = re.search(r"```(?:python|py)?\s*\n(.*?)```", code, re.DOTALL)
    return (m.group(1) if m else code).strip()


class ReActOp(OperatorModule):
    """DSPy's ReAct with our tools; sampling knobs go to both of its predictors."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        sig = Solve.with_instructions(self.instruction)
        self.react = dspy.ReAct(sig, tools=make_tools(self.params.tools), max_iters=self.params.max_iters)  # type: ignore[attr-defined]
        for predictor in self.react.predictors():
            predictor.config.update(self._config())

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        pred = self.react(question=with_context(question, upstream))
        trajectory = getattr(pred, "trajectory", {}) or {}
        steps = [f"{k}: {v}" for k, v in trajectory.items()] if isinstance(trajectory, dict) else []
        return NodeOutput(answer=_text(pred, "answer"), reasoning="\n".join(steps)[-4000:])


class ProgramOfThoughtOp(OperatorModule):
    """The LLM writes a program; the sandbox runs it; an error is shown back for a repair."""

    def __init__(self, node: NodeConfig):
        super().__init__(node)
        self.write = self._predictor(WriteProgram, reasoning=False)
        self.repair = dspy.Predict(RepairProgram)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        p = self.params
        q = with_context(question, upstream)
        code = _text(self.write(question=q, config=self._config()), "code")
        output = run_code(code, p.timeout_s)  # type: ignore[attr-defined]
        for _ in range(p.repairs):  # type: ignore[attr-defined]
            if not output.startswith("error:"):
                break
            code = _text(self.repair(question=q, code=code, error=output, config=self._config()), "fixed_code")
            output = run_code(code, p.timeout_s)  # type: ignore[attr-defined]
        answer = "" if output.startswith("error:") else output.strip().splitlines()[-1].strip()
        return NodeOutput(answer=answer, reasoning=f"```python\n{strip_fences(code)}\n```\noutput: {output}")


# -- verbal reinforcement and memory ----------------------------------------------------------


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
    from agentsearch.evaluators.formats import make_adapter

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


IMPLEMENTATIONS_MORE: dict[str, Callable[[NodeConfig], OperatorModule]] = {
    "least_to_most": LeastToMostOp,
    "step_back": StepBackOp,
    "plan_and_solve": PlanAndSolveOp,
    "best_of_n": BestOfNOp,
    "prm_beam": PRMBeamOp,
    "debate": DebateOp,
    "fuse": FuseOp,
    "rank": RankOp,
    "judge": JudgeOp,
    "react": ReActOp,
    "program_of_thought": ProgramOfThoughtOp,
    "reflexion": ReflexionOp,
    "experience": ExperienceOp,
}
