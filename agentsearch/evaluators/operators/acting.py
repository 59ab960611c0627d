"""Operators that act with tools: ReAct (calculator, sandboxed python), program of thought."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import dspy

from agentsearch.evaluators.operators.base import NodeOutput, OperatorModule, Solve, _text, with_context
from agentsearch.search_space.graph import NodeConfig


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


def make_tools(names: Sequence[str], timeout_s: float = 5.0) -> list[Callable[..., str]]:
    """The tool functions ReAct may call (docstrings are what the LLM sees)."""
    tools: list[Callable[..., str]] = []
    if "calculator" in names:

        def calculator(expression: str) -> str:
            """Evaluate an arithmetic expression exactly, e.g. '(12 + 7) * 3 / 4' or 'sqrt(2) ^ 2'."""
            from agentsearch.evaluators.tools.calculator import evaluate

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
    from agentsearch.evaluators.tools.sandbox import SandboxLimits, run_python

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
