"""The text output format (TextAdapter): prompts, demos and lenient parsing; the adapter for each format."""

from __future__ import annotations

import json
from pathlib import Path

import dspy
import pytest

from agentsearch.evaluators.operators.acting import WriteProgram
from agentsearch.evaluators.operators.aggregators import Judge
from agentsearch.evaluators.operators.base import Critique, Solve
from agentsearch.evaluators.operators.formats import TextAdapter, make_adapter
from agentsearch.evaluators.operators.prompting import PlanSolve, Principle
from agentsearch.evaluators.operators.sampling import Verify
from agentsearch.search_space.operators import FORMATS

COT = dspy.ChainOfThought(Solve).predict.signature
NUMBER = TextAdapter(answer_kind="number")
TEXT = TextAdapter(answer_kind="text")


def test_each_format_has_its_adapter():
    kinds = {fmt: type(make_adapter(fmt)).__name__ for fmt in FORMATS}
    assert kinds == {"text": "TextAdapter", "chat": "ChatAdapter", "xml": "XMLAdapter", "json": "JSONAdapter"}
    assert make_adapter("chat").use_json_adapter_fallback is False  # no silent second call
    with pytest.raises(ValueError, match="unknown format"):
        make_adapter("yaml")


def test_prompt_is_natural_text():
    messages = NUMBER.format(COT, [], {"question": "What is 2 + 3?"})
    system, user = messages[0]["content"], messages[-1]["content"]
    assert system.startswith("Solve the question.")
    assert system.endswith(
        'Think step by step, then end your reply with a final line of the form "Answer: <the final answer only '
        '(a number or a short phrase)>".'
    )
    assert "[[" not in system and "{" not in system
    assert user == "What is 2 + 3?"


def test_several_inputs_are_labelled_blocks_and_direct_asks_for_the_line_only():
    messages = TEXT.format(dspy.Predict(Critique).signature, [], {"question": "Q?", "solution": "S\nAnswer: 4"})
    assert messages[0]["content"].endswith(
        "Reply in this form:\n"
        "Critique: <the errors found, or why the solution is right>\n"
        "Is correct: <is the final answer correct?; yes or no>"
    )
    user = messages[-1]["content"]
    assert user == "Question:\nQ?\n\nSolution (a proposed solution with its final answer):\nS\nAnswer: 4"


def test_demos_are_rendered_as_the_same_turns():
    demos = [{"question": "What is 1 + 1?", "reasoning": "one and one", "answer": "2"}]
    messages = TEXT.format(COT, demos, {"question": "What is 2 + 3?"})
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[1]["content"] == "What is 1 + 1?"
    assert messages[2]["content"] == "one and one\nAnswer: 2"
    # and what the adapter writes, it reads back
    assert TEXT.parse(COT, messages[2]["content"]) == {"answer": "2", "reasoning": "one and one"}


@pytest.mark.parametrize(
    ("reply", "answer"),
    [
        ("48 / 2 = 24\n48 + 24 = 72\nAnswer: 72", "72"),
        ("steps\n\n**Answer:** 72", "72"),
        ("steps\n### Final Answer: $72$", "72"),
        ("steps\nAnswer: \\boxed{72}", "72"),
        ("Answer: 5\nsome afterthought\nAnswer: 7", "7"),  # the last answer line wins
        ("steps\nAnswer:\n\n  72 clips", "72 clips"),  # the value on the next line
        ("Therefore, Weng earned \\(\\boxed{36000}\\) dollars.", "36000"),  # no line: \boxed{}
        ("So the answer is 12.", "12"),  # no line: "the answer is"
        ("She has 3 + 4 = 7 apples left.", "7"),  # numbers: the last number, as a last resort
        ("I cannot tell.\nSorry.", ""),  # nothing to read: no answer
        ("[[ ## reasoning ## ]]\nsteps\n\n[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]", "42"),  # chat anyway
        ("<reasoning>steps</reasoning>\n<answer>42</answer>", "42"),  # xml anyway
        ('```json\n{"reasoning": "steps", "answer": "42"}\n```', "42"),  # json anyway
    ],
)
def test_answers_are_read_leniently(reply, answer):
    assert NUMBER.parse(COT, reply)["answer"] == answer


def test_text_benchmarks_get_no_last_number_fallback():
    assert TEXT.parse(COT, "She has 3 + 4 = 7 apples left.\nHm.")["answer"] == ""
    assert NUMBER.parse(COT, "She has 3 + 4 = 7 apples left.\nHm.")["answer"] == "7"


def test_reasoning_is_the_text_before_the_labels():
    out = NUMBER.parse(COT, "First 2 + 3 = 5.\nThen double: 10.\nAnswer: 10")
    assert out == {"reasoning": "First 2 + 3 = 5.\nThen double: 10.", "answer": "10"}


def test_a_one_line_direct_reply_is_the_answer():
    sig = dspy.Predict(Solve).signature
    assert TEXT.parse(sig, "Paris") == {"answer": "Paris"}
    assert TEXT.parse(sig, "I think it is\nprobably Paris") == {"answer": ""}


def test_multi_output_signatures_as_labelled_lines():
    crit = dspy.Predict(Critique).signature
    assert TEXT.parse(crit, "Critique: 2 + 2 is 4, fine.\nIs correct: yes") == {
        "critique": "2 + 2 is 4, fine.",
        "is_correct": True,
    }
    assert TEXT.parse(crit, "The sum is wrong.\nIs correct: No, it is not.") == {
        "critique": "The sum is wrong.",
        "is_correct": False,
    }
    assert TEXT.parse(crit, "Critique: fine")["is_correct"] is None  # no verdict: unknown, not an exception
    plan = TEXT.parse(PlanSolve, "Plan: 1. add\n2. double\nSolution: 2 + 3 = 5, 5 * 2 = 10\nAnswer: 10")
    assert plan == {"plan": "1. add\n2. double", "solution": "2 + 3 = 5, 5 * 2 = 10", "answer": "10"}


def test_typed_fields():
    assert TEXT.parse(Verify, "Score: 0.8") == {"score": 0.8}
    assert TEXT.parse(Verify, "I would say 80% likely.") == {"score": 0.8}  # the only field, unlabelled
    assert TEXT.parse(Verify, "no idea") == {"score": None}
    assert TEXT.parse(Judge, "**Best:** Candidate 2") == {"best": 2}
    assert TEXT.parse(Judge, "Best: " + "9" * 400)["best"] == int("9" * 30)  # a digit loop: read, never raised
    assert TEXT.parse(Verify, "Score: " + "9" * 400 + ".5")["score"] > 0


def test_a_single_free_text_field_is_the_whole_reply():
    assert TEXT.parse(Principle, "Use the distributive law.") == {"principle": "Use the distributive law."}
    code = "```python\nprint(4)\n```"
    assert TEXT.parse(WriteProgram, f"Code:\n{code}") == {"code": code}
    assert TEXT.parse(WriteProgram, code) == {"code": code}


# -- real replies of the embedded model ---------------------------------------------------------------

#: 48 replies of the embedded Qwen2.5-Coder-0.5B to GSM8K train questions (cot and direct, 12 per format),
#: recorded once by `python bench/formats.py --record FILE`; `expected` is the answer as a reader applying
#: the documented rules reads it from the reply in its own format ("" = none: the format's parser fails),
#: `expected_lenient` what the text format reads from the same reply (labels, boxed, "the answer is", the
#: last number). Each label was checked by hand against the reply.
REPLIES = [
    json.loads(line)
    for line in (Path(__file__).parents[1] / "fixtures" / "replies_embedded.jsonl").read_text().splitlines()
]


def _read(fmt: str, op: str, reply: str) -> str:
    from dspy.utils.exceptions import AdapterParseError

    from agentsearch.evaluators.benchmarks import GSM8K

    signature = COT if op == "cot" else dspy.Predict(Solve).signature
    try:
        answer = make_adapter(fmt, "number").parse(signature, reply)["answer"]
    except AdapterParseError:
        return ""
    return GSM8K().extract(answer) if answer else ""  # GSM8K's answers are numbers; nothing is loaded


def test_the_recorded_replies_cover_every_format():
    assert len(REPLIES) == 48
    assert {r["format"] for r in REPLIES} == set(FORMATS)


@pytest.mark.parametrize("row", REPLIES, ids=[f"{r['format']}-{r['op']}-{i}" for i, r in enumerate(REPLIES)])
def test_answers_read_from_real_replies(row):
    assert _read(row["format"], row["op"], row["reply"]) == row["expected"]
    assert _read("text", row["op"], row["reply"]) == row["expected_lenient"]
