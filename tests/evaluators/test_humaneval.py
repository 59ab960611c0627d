"""HumanEval: the shipped problems, code extraction, pass@1 in the sandbox, the code answer kind in the formats
and operators."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import dspy
import pytest
from dspy.utils.dummies import DummyLM

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import extract_code, majority_vote
from agentsearch.evaluators.benchmarks import HumanEval, SplitSpec, get_benchmark, list_benchmarks
from agentsearch.evaluators.benchmarks.humaneval import sanitize, shipped_data
from agentsearch.evaluators.evaluator import Evaluator
from agentsearch.evaluators.operators.acting import check_function, question_examples
from agentsearch.evaluators.operators.base import Solve
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.evaluators.operators.formats import CODE_ANSWER, for_answer_kind, make_adapter
from agentsearch.evaluators.operators.prompting import PlanSolve
from agentsearch.testing.operators import graph_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench() -> HumanEval:
    return get_benchmark("humaneval")  # type: ignore[return-value]


@pytest.fixture(scope="module")
def problems(bench: HumanEval) -> dict:
    return {ex.id: ex for ex in bench.examples()}


def body(ex) -> str:
    return ex.answer[len(ex.meta["prompt"]) :]


# -- the data ------------------------------------------------------------------------------------


def test_the_shipped_problems_load(bench: HumanEval, problems: dict):
    assert shipped_data() is not None and shipped_data().name == "HumanEval.jsonl.gz"
    assert len(problems) == 164 and list(problems)[:2] == ["HumanEval/0", "HumanEval/1"]
    ex = problems["HumanEval/0"]
    assert ex.meta["entry_point"] == "has_close_elements" and "def check(" in ex.meta["test"]
    assert ex.answer.startswith(ex.meta["prompt"]) and "```python\nfrom typing import List" in ex.question
    assert bench.answer_kind == "code" and "humaneval" in list_benchmarks()
    assert "Python" in bench.metric_description and "unit tests" in bench.metric_description


def test_splits_are_deterministic_and_disjoint(bench: HumanEval):
    spec = SplitSpec(seed=3, val_size=20, test_size=30)
    a, b = bench.split(spec), get_benchmark("humaneval").split(spec)
    assert [e.id for e in a["test"]] == [e.id for e in b["test"]]
    ids = [e.id for part in a.values() for e in part]
    assert len(ids) == len(set(ids)) == 164 and len(a["train"]) == 114
    assert [e.id for e in bench.split(SplitSpec(seed=4, val_size=20, test_size=30))["test"]] != [
        e.id for e in a["test"]
    ]


def _write(tmp_path: Path, rows: list, name: str = "he.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _row(problems: dict, task: str = "HumanEval/0", **changes) -> dict:
    ex = problems[task]
    row = {
        "task_id": ex.id,
        "prompt": ex.meta["prompt"],
        "entry_point": ex.meta["entry_point"],
        "canonical_solution": body(ex),
        "test": ex.meta["test"],
    }
    return {k: v for k, v in {**row, **changes}.items() if v is not None}


def test_data_file_in_the_same_format(tmp_path: Path, problems: dict):
    plain = _write(tmp_path, [_row(problems), _row(problems, "HumanEval/2")])
    packed = tmp_path / "he.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    for path in (plain, packed):
        bench = get_benchmark("humaneval", data=path)
        assert [e.id for e in bench.examples()] == ["HumanEval/0", "HumanEval/2"]
        assert bench.score(bench.examples()[1], body(problems["HumanEval/2"])).correct


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["{not json"], r"he\.jsonl:1: invalid JSON"),
        (["[1, 2]"], r"he\.jsonl:1: expected a JSON object, got list"),
        ([{"task_id": "x"}], r"he\.jsonl:1: no 'prompt' field"),
        ("missing_test", r"he\.jsonl:1: no 'test' field"),
        ("empty_prompt", r"he\.jsonl:1: 'prompt' must be a non-empty string"),
        ("bad_entry", r"he\.jsonl:1: 'entry_point' 'has close' is not a Python name"),
        ("no_check", r"he\.jsonl:1: 'test' defines no check\(candidate\) function"),
        ("duplicate", r"he\.jsonl:2: duplicate task_id 'HumanEval/0' \(first on line 1\)"),
        ([""], r"he\.jsonl: empty file, no problems"),
    ],
)
def test_malformed_files_are_one_line_errors(tmp_path: Path, problems: dict, rows, message: str):
    variants = {
        "missing_test": [_row(problems, test=None)],
        "empty_prompt": [_row(problems, prompt="  ")],
        "bad_entry": [_row(problems, entry_point="has close")],
        "no_check": [_row(problems, test="def test(): pass")],
        "duplicate": [_row(problems), _row(problems)],
    }
    path = _write(tmp_path, variants.get(rows, rows) if isinstance(rows, str) else rows)
    with pytest.raises(DataError, match=message) as info:
        get_benchmark("humaneval", data=path).examples()
    assert "\n" not in str(info.value)


def test_missing_bad_gzip_and_arguments(tmp_path: Path):
    with pytest.raises(DataError, match="nope.jsonl: no such file"):
        get_benchmark("humaneval", data=tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match=r"bad\.jsonl\.gz: cannot read"):
        get_benchmark("humaneval", data=bad).examples()
    with pytest.raises(DataError, match="takes no ':x'"):
        get_benchmark("humaneval:x")


def test_cli_missing_file_exits_2_with_one_line(tmp_path: Path):
    agent = tmp_path / "cot.yaml"
    graph_for("cot").save(agent)
    env = {"PATH": "/usr/bin:/bin", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.run(
        [sys.executable, "main.py", "evaluate", "--agent", str(agent), "--benchmark", "humaneval",
         "--data", str(tmp_path / "no.jsonl")],
        cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "no.jsonl: no such file" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


# -- pass@1 in the sandbox -----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_canonical_solution_passes_in_the_sandbox(bench: HumanEval, problems: dict):
    """All 164 reference solutions, as a model would write them (the whole function in a fence), pass; so do
    the bare bodies of every 8th. About 4 s on 2 idle cores (measured: 3.8 s for the 164)."""
    started = time.monotonic()
    failed = []
    for i, ex in enumerate(problems.values()):
        got = bench.score(ex, f"Here it is:\n```python\n{ex.answer}\n```\nDone.")
        if not got.correct:
            failed.append((ex.id, got.detail or got.error))
        if i % 8 == 0 and not bench.score(ex, body(ex)).correct:
            failed.append((ex.id, "body"))
    assert failed == []
    assert time.monotonic() - started < 240


def test_a_wrong_solution_fails_with_the_reason(bench: HumanEval, problems: dict):
    ex = problems["HumanEval/0"]
    got = bench.score(ex, "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```")
    assert not got.correct and got.error is None and got.value == 0.0
    assert got.detail.startswith("tests failed: AssertionError")
    assert got.extracted.startswith("def has_close_elements")


@pytest.mark.slow
def test_an_infinite_loop_is_a_failed_test_not_a_failed_trial(bench: HumanEval, problems: dict):
    ex = problems["HumanEval/0"]
    started = time.monotonic()
    got = bench.score(ex, "def has_close_elements(numbers, threshold):\n    while True:\n        pass\n")
    assert not got.correct and got.error is None
    assert got.detail in ("tests failed: cpu limit", "tests failed: wall-clock timeout")
    assert time.monotonic() - started < bench.LIMITS.wall_s + 5


def test_a_solution_writing_files_fails_and_writes_nothing(bench: HumanEval, problems: dict, tmp_path: Path):
    ex = problems["HumanEval/0"]
    target = tmp_path / "written.txt"
    code = (
        "def has_close_elements(numbers, threshold):\n"
        f"    open({str(target)!r}, 'w').write('pwned')\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n"
    )
    got = bench.score(ex, code)
    assert not got.correct and got.error is None and "Error" in got.detail
    assert not target.exists()


def test_crashes_early_exits_and_no_code(bench: HumanEval, problems: dict):
    ex = problems["HumanEval/2"]  # truncate_number
    exits = "def truncate_number(number):\n    import sys\n    sys.exit(0)\n"
    assert not bench.score(ex, exits).correct  # leaving before the tests finished (exit status 0) is no pass
    crash = bench.score(ex, "def truncate_number(number):\n    return number %% 1.0\n")
    assert not crash.correct and "SyntaxError" in crash.detail
    blank = bench.score(ex, "I am not sure how to do this.")
    assert not blank.correct and blank.no_answer and blank.detail == "no code in the reply"


def test_demo_statements_around_the_function_do_not_run(bench: HumanEval, problems: dict):
    ex = problems["HumanEval/2"]
    code = (
        "import math\nprint('truncating')\nSCALE = 1.0\n\n"
        "def truncate_number(number: float) -> float:\n    return number - math.floor(number) * SCALE\n\n"
        "assert trunc(3.5) == 0.5\nprint(truncate_number(3.5))\n"
        "if __name__ == '__main__':\n    x = float(input())\n    print(truncate_number(x))\n"
    )
    assert bench.score(ex, code).correct
    assert sanitize(code) == (
        "import math\n\nSCALE = 1.0\n\n"
        "def truncate_number(number: float) -> float:\n    return number - math.floor(number) * SCALE"
    )
    assert sanitize("def f(:\n  pass") == "def f(:\n  pass"


# -- extraction ------------------------------------------------------------------------------------

FUNCTION = "def add(a, b):\n    return a + b"


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (f"```python\n{FUNCTION}\n```", FUNCTION),
        (f"Sure!\n```py\n{FUNCTION}\n```\nIt adds.", FUNCTION),
        (f"```\n{FUNCTION}\n```", FUNCTION),
        (f"```python\n{FUNCTION}\n```\nUsage:\n```python\nprint(add(1, 2))\n```\n```text\n3\n```", FUNCTION),
        (f"Here is the code:\n\n{FUNCTION}\n\nThis function returns the sum.", FUNCTION),
        (f"from math import sqrt\n{FUNCTION}", f"from math import sqrt\n{FUNCTION}"),
        ("    return a + b", "    return a + b"),
        ("```python\n    total = a + b\n    return total\n```", "    total = a + b\n    return total"),
        (f"```python\n{FUNCTION}", FUNCTION),  # cut off by the token limit: no closing fence
        ("I cannot solve this.", ""),
        ("", ""),
    ],
)
def test_code_is_extracted_leniently(reply: str, code: str):
    assert extract_code(reply) == code


def test_a_body_or_a_full_function_both_complete_the_prompt(bench: HumanEval, problems: dict):
    ex = problems["HumanEval/2"]  # truncate_number(number: float) -> float
    assert bench.score(ex, "```python\n    return number % 1.0\n```").correct
    assert bench.score(ex, "return number % 1.0").correct  # unindented body
    full = "def truncate_number(number: float) -> float:\n    return number % 1.0"
    assert bench.score(ex, f"The answer:\n{full}\n\nThat's all.").correct
    indented = "\n".join("    " + line for line in full.split("\n"))
    assert bench.score(ex, f"```python\n{indented}\n```").correct
    helper = problems["HumanEval/10"]  # make_palindrome uses the prompt's is_palindrome
    assert bench.score(helper, f"```python\n{helper.answer[helper.answer.index('def make_palindrome'):]}\n```").correct


def test_code_answers_vote_as_code():
    a, b = "def f():\n    return 5", "def f():\n    return 6"
    assert majority_vote([a, b, b + "\n"]) == b
    assert majority_vote(["def g():\n    return 5", "5"]) == "def g():\n    return 5"  # not the number 5


# -- the code answer kind in the formats and operators ---------------------------------------------


class ScriptedLM(DummyLM):
    """Replies with the given texts verbatim, in order."""

    def __init__(self, replies: list[str]):
        super().__init__([{"text": r} for r in replies])

    def _format_answer_fields(self, values):  # type: ignore[override]
        return values["text"]


def test_answer_fields_ask_for_code():
    assert for_answer_kind(Solve, "number") is Solve
    sig = for_answer_kind(PlanSolve, "code")
    assert sig.output_fields["answer"].json_schema_extra["desc"] == CODE_ANSWER
    plan_desc = PlanSolve.output_fields["plan"].json_schema_extra["desc"]
    assert sig.output_fields["plan"].json_schema_extra["desc"] == plan_desc
    for fmt in ("chat", "xml", "json"):
        assert make_adapter(fmt, "code").answer_kind == "code"
    with pytest.raises(ValueError, match="answer_kind"):
        make_adapter("text", "image")


def test_text_format_reads_code_answers():
    lm = ScriptedLM(
        [
            "The sum of a and b.\nAnswer:\n```python\ndef add(a, b):\n    answer = a + b\n    return answer\n```",
            "Plan: add them\nSolution: a + b\n\n```python\ndef add(a, b):\n    return a + b\n```",
            "Answer:\ndef add(a, b):\n    answer = a + b\n    return answer",
        ]
    )
    with dspy.context(lm=lm, adapter=make_adapter("text", "code")):
        cot = dspy.ChainOfThought(Solve)(question="Write add.")
        plan = dspy.Predict(PlanSolve)(question="Write add.")
        bare = dspy.ChainOfThought(Solve)(question="Write add.")
    assert cot.answer == "def add(a, b):\n    answer = a + b\n    return answer"
    assert cot.reasoning == "The sum of a and b."
    assert (plan.plan, plan.solution, plan.answer) == ("add them", "a + b", "def add(a, b):\n    return a + b")
    assert bare.answer == "def add(a, b):\n    answer = a + b\n    return answer"  # "answer = " is no label
    system = lm.history[0]["messages"][0]["content"]
    assert "end your reply with the complete Python function" in system and "Answer: <" not in system
    plan_system = lm.history[1]["messages"][0]["content"]
    assert "Plan: <" in plan_system and "then, last, the complete Python function" in plan_system


def test_chat_format_asks_for_code():
    lm = ScriptedLM(["[[ ## reasoning ## ]]\nadd\n\n[[ ## answer ## ]]\n```python\n" + FUNCTION + "\n```"])
    with dspy.context(lm=lm, adapter=make_adapter("chat", "code")):
        pred = dspy.ChainOfThought(Solve)(question="Write add.")
    assert "def add" in pred.answer and CODE_ANSWER in lm.history[0]["messages"][0]["content"]


def test_cot_graph_on_humaneval_end_to_end(bench: HumanEval, problems: dict):
    ex = problems["HumanEval/2"]
    graph = graph_for("cot")
    code = "def truncate_number(number: float) -> float:\n    return number % 1.0"
    reply = f"Take the fractional part.\n```python\n{code}\n```"
    with dspy.context(lm=ScriptedLM([reply])):
        result = Evaluator(bench.score, concurrency=1).evaluate(compile_graph(graph, answer_kind="code"), [ex])
    record = result.records[0]
    assert record.correct and record.error is None and record.extracted.startswith("def truncate_number")


def test_program_of_thought_repairs_against_the_question_examples(bench: HumanEval, problems: dict):
    ex = problems["HumanEval/0"]
    examples = question_examples(ex.question)
    assert examples.count(">>> has_close_elements") == 2
    wrong = "Code:\n```python\ndef has_close_elements(numbers, threshold):\n    return True\n```"
    right = "Fixed code:\n```python\n" + ex.answer + "\n```"
    graph = graph_for("program_of_thought", repairs=1)
    lm = ScriptedLM([wrong, right])
    with dspy.context(lm=lm):
        pred = compile_graph(graph, answer_kind="code")(question=ex.question)
    assert len(lm.history) == 2
    repair_prompt = lm.history[1]["messages"][-1]["content"]
    assert "Failed example:" in repair_prompt and "has_close_elements([1.0, 2.0, 3.0], 0.5)" in repair_prompt
    assert pred.reasoning == "the question's examples pass"
    assert bench.score(ex, pred.answer).correct
    assert check_function("def f(:\n", "").startswith("error:")
