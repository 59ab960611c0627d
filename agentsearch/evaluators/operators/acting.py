"""Operators that act with tools: ReAct (calculator, sandboxed python), program of thought."""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Callable, Sequence

import dspy

from agentsearch.evaluators.answers import code_blocks, extract_code
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


class WriteFunction(dspy.Signature):
    """Write the Python function the question asks for."""

    question: str = dspy.InputField()
    code: str = dspy.OutputField(desc="the complete Python function (its def line and body) in a ```python block")


class RepairFunction(dspy.Signature):
    """The Python function below fails the examples given in the question. Fix it."""

    question: str = dspy.InputField()
    code: str = dspy.InputField(desc="the failing function")
    error: str = dspy.InputField(desc="the failed examples or the error")
    fixed_code: str = dspy.OutputField(desc="the corrected complete Python function in a ```python block")


#: program of thought's instruction when the answers are code (and the node sets none)
CODE_INSTRUCTION = (
    "Write a correct, self-contained Python 3 function for the task, with its def line and body. Use only the "
    "standard library; no input(), files or network."
)


def question_examples(question: str) -> str:
    """The doctest examples (``>>>`` lines and their expected output) in the docstrings of the question's code
    (its fenced blocks, or the question itself when it is code); ``""`` when there are none. Read with
    :mod:`ast`, nothing is run."""
    found = []
    for _, block in code_blocks(question) or [(0, question)]:
        try:
            tree = ast.parse(textwrap.dedent(block))
        except (SyntaxError, ValueError, MemoryError, RecursionError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and ">>>" in doc and _doctest_parses(doc):
                    found.append(doc)
    return "\n\n".join(found)


def _doctest_parses(doc: str) -> bool:
    import doctest

    try:
        doctest.DocTestParser().get_examples(doc)
    except ValueError:  # inconsistent indentation: not examples doctest can run
        return False
    return True


def check_function(code: str, examples: str, timeout_s: float = 5.0) -> str:
    """Run ``code`` and then the doctest ``examples`` against it in the sandbox: ``""`` when it runs and every
    example gives the expected output, else the failures (or the error) in a few lines."""
    from agentsearch.evaluators.tools.sandbox import SandboxLimits, run_python

    runner = textwrap.dedent(f"""

        import ast as _ast, doctest as _doctest, sys as _sys

        class _Checker(_doctest.OutputChecker):  # "f(x) == y" examples print True; '21' is "21"
            def check_output(self, want, got, flags):
                if super().check_output(want, got, flags):
                    return True
                if not want.strip():
                    return got.strip() == "True"
                try:
                    return _ast.literal_eval(want.strip()) == _ast.literal_eval(got.strip())
                except Exception:
                    return False

        _test = _doctest.DocTestParser().get_doctest({examples!r}, dict(globals()), "examples", None, 0)
        _flags = _doctest.NORMALIZE_WHITESPACE | _doctest.ELLIPSIS
        _runner = _doctest.DocTestRunner(checker=_Checker(), optionflags=_flags)
        _runner.run(_test, out=_sys.stdout.write, clear_globs=False)
        _sys.exit(1 if _runner.failures else 0)
        """)
    result = run_python(code + runner, limits=SandboxLimits(cpu_s=timeout_s, wall_s=timeout_s * 2))
    if result.ok:
        return ""
    if result.killed_reason:
        return f"error: {result.killed_reason}"
    failed = result.stdout.replace("*" * 70, "").strip()
    tail = "\n".join(result.stderr.strip().splitlines()[-4:])
    if failed:
        return f"error: {failed[-1500:]}\n{tail}".strip()
    return f"error: {tail or f'exit code {result.returncode}'}"


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
        # code answers: write the function, test it on the question's examples, repair it on a failure
        own = getattr(node.params, "instruction", None)
        self.write_function = self._predictor(WriteFunction, False, own or CODE_INSTRUCTION)
        self.repair_function = dspy.Predict(RepairFunction)

    def _forward_code(self, q: str) -> NodeOutput:
        p = self.params
        examples = question_examples(q)
        raw = _text(self.write_function(question=q, config=self._config()), "code")
        code = extract_code(raw) or raw
        error = check_function(code, examples, p.timeout_s)  # type: ignore[attr-defined]
        for _ in range(p.repairs):  # type: ignore[attr-defined]
            if not error:
                break
            raw = _text(self.repair_function(question=q, code=code, error=error, config=self._config()), "fixed_code")
            code = extract_code(raw) or raw
            error = check_function(code, examples, p.timeout_s)  # type: ignore[attr-defined]
        checked = "the question's examples pass" if examples else "it runs (the question has no examples)"
        return NodeOutput(answer=f"```python\n{code}\n```", reasoning=error or checked)

    def forward(self, question: str, upstream: Sequence[NodeOutput] = ()) -> NodeOutput:
        p = self.params
        q = with_context(question, upstream)
        if self.answer_kind == "code":
            return self._forward_code(q)
        code = _text(self.write(question=q, config=self._config()), "code")
        output = run_code(code, p.timeout_s)  # type: ignore[attr-defined]
        for _ in range(p.repairs):  # type: ignore[attr-defined]
            if not output.startswith("error:"):
                break
            code = _text(self.repair(question=q, code=code, error=output, config=self._config()), "fixed_code")
            output = run_code(code, p.timeout_s)  # type: ignore[attr-defined]
        answer = "" if output.startswith("error:") else output.strip().splitlines()[-1].strip()
        return NodeOutput(answer=answer, reasoning=f"```python\n{strip_fences(code)}\n```\noutput: {output}")
