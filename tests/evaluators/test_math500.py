"""MATH-500: the loader on the shared real sample and on malformed copies, filters, splits, the hub path, and
the scorer on every real gold answer (against itself, an equivalent LaTeX form and wrong answers)."""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import pytest

from agentsearch.errors import DataError
from agentsearch.evaluators.benchmarks import MATH500, SplitSpec, get_benchmark

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "math500" / "sample30.jsonl"

#: An equivalent form (as a model may write it) of every gold answer of the sample.
EQUIVALENT = {
    "13535": "13{,}535",
    "6": "\\dfrac{12}{2}",
    "\\frac{3}{2}": "1.5",
    "3": "3.0",
    "80": "$80$",
    "-4": "-\\frac{8}{2}",
    "\\text{east}": "East",
    "\\frac{1}{4}": "0.25",
    "288 \\pi": "288\\pi",
    "10": "10.00",
    "120^\\circ": "120^{\\circ}",
    "4": "\\sqrt{16}",
    "7": "\\frac{14}{2}",
    "\\frac{17}{21}": "\\dfrac{17}{21}",
    "12": "12.0",
    "(2,4)": "\\left( 2, 4 \\right)",
    "-1": "-1.0",
    "120": "\\frac{240}{2}",
    "100": "10^2",
    "326.5": "\\frac{653}{2}",
    "0": "0.0",
    "60": "60.0",
    "45": "\\frac{90}{2}",
}

#: A wrong answer for each form of gold answer.
WRONG = {
    "\\frac{3}{2}": "\\frac{2}{3}",
    "(2,4)": "(4,2)",
    "288 \\pi": "289\\pi",
    "\\text{east}": "west",
    "120^\\circ": "60^\\circ",
    "\\frac{17}{21}": "\\frac{21}{17}",
    "326.5": "326",
}


def _records() -> list[dict]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


def _bench(**filters) -> MATH500:
    return MATH500(SAMPLE, **filters)


def _write(tmp_path: Path, rows: list, name: str = "math.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# --------------------------------------------------------------------------------------------------
# loading


def test_the_real_sample_loads():
    bench = get_benchmark("math500", data=str(SAMPLE))
    pool = bench.examples()
    rows = _records()
    assert isinstance(bench, MATH500) and bench.name == "math500" and len(pool) == len(rows) == 30
    assert [ex.id for ex in pool] == [r["unique_id"] for r in rows]
    assert [ex.answer for ex in pool] == [r["answer"] for r in rows]
    first = pool[0]
    assert first.question == rows[0]["problem"].strip() and first.solution == rows[0]["solution"].strip()
    assert first.meta == {"subject": rows[0]["subject"], "level": rows[0]["level"]}
    assert bench.answer_kind == "text" and bench.source == str(SAMPLE)
    assert "math-verify" in bench.metric_description and "\\boxed" in bench.metric_description


def test_splits_are_seeded_disjoint_and_independent_of_line_order(tmp_path):
    spec = SplitSpec(seed=3, val_size=5, test_size=10)
    split = _bench().split(spec)
    assert split == _bench().split(spec)
    ids = [ex.id for part in split.values() for ex in part]
    assert len(ids) == len(set(ids)) == 30
    lines = SAMPLE.read_text().splitlines()
    random.Random(0).shuffle(lines)
    shuffled = MATH500(_write(tmp_path, lines)).split(spec)
    assert {k: [e.id for e in v] for k, v in shuffled.items()} == {k: [e.id for e in v] for k, v in split.items()}
    assert _bench().split(SplitSpec(seed=4, val_size=5, test_size=10))["test"] != split["test"]


@pytest.mark.parametrize(
    ("arg", "keep"),
    [
        ("level=5", lambda r: r["level"] == 5),
        ("level=4-5", lambda r: r["level"] in (4, 5)),
        ("level=1+5", lambda r: r["level"] in (1, 5)),
        ("subject=algebra", lambda r: r["subject"] == "Algebra"),
        ("subject=Counting & Probability", lambda r: r["subject"] == "Counting & Probability"),
        ("subject=counting_and_probability+geometry", lambda r: r["subject"] in ("Counting & Probability", "Geometry")),
        ("subject=algebra, level=2", lambda r: r["subject"] == "Algebra" and r["level"] == 2),
    ],
)
def test_filters(arg, keep):
    bench = get_benchmark(f"math500:{arg}", data=str(SAMPLE))
    expected = [r["unique_id"] for r in _records() if keep(r)]
    assert expected and [ex.id for ex in bench.examples()] == expected
    assert bench.name.startswith("math500:") and bench.name == get_benchmark(bench.name, data=str(SAMPLE)).name


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("level=6", r"math500:level=6: level '6': levels run from 1 to 5"),
        ("level=hard", r"level 'hard': expected 1 to 5"),
        ("subject=calculus", r"unknown subject 'calculus'; expected one of algebra, counting_and_probability"),
        ("difficulty=5", r"unknown filter 'difficulty'; expected level=\.\.\. or subject=\.\.\."),
        ("level", r"expected filters like level=5 or subject=geometry, got 'level'"),
        ("level=4,level=5", r"level given twice \(join several values with \+, e\.g\. level=4\+5\)"),
        ("level=1,subject=geometry", r"math500:level=1,subject=geometry: no problem of .*sample30\.jsonl matches"),
    ],
)
def test_bad_filters_are_one_line_data_errors(arg, message):
    with pytest.raises(DataError, match=message) as err:
        get_benchmark(f"math500:{arg}", data=str(SAMPLE)).examples()
    assert "\n" not in str(err.value)


GOOD = {"problem": "What is $1+1$?", "solution": "It is $\\boxed{2}$.", "answer": "2", "subject": "Algebra",
        "level": 1, "unique_id": "test/algebra/1.json"}  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([GOOD, "{not json"], r"math\.jsonl:2: invalid JSON"),
        ([GOOD, "[1, 2]"], r"math\.jsonl:2: expected a JSON object, got list"),
        ([{k: v for k, v in GOOD.items() if k != "answer"}], r"math\.jsonl:1: no 'answer' field"),
        ([{k: v for k, v in GOOD.items() if k != "problem"}], r"math\.jsonl:1: no 'problem' field"),
        ([{**GOOD, "answer": ""}], r"math\.jsonl:1: empty 'answer' field"),
        ([{**GOOD, "answer": ["2"]}], r"math\.jsonl:1: 'answer' must be a string, got list"),
        ([{**GOOD, "level": 7}], r"math\.jsonl:1: 'level' must be 1 to 5"),
        ([GOOD, GOOD], r"math\.jsonl:2: duplicate unique_id 'test/algebra/1\.json' \(first at .*math\.jsonl:1\)"),
        ([], r"math\.jsonl: empty file, no examples"),
    ],
)
def test_malformed_copies(tmp_path, rows, message):
    with pytest.raises(DataError, match=message) as err:
        MATH500(_write(tmp_path, rows)).examples()
    assert "\n" not in str(err.value)


def test_a_real_line_damaged_names_its_line(tmp_path):
    lines = SAMPLE.read_text().splitlines()
    record = json.loads(lines[11])
    del record["answer"]
    lines[11] = json.dumps(record)
    with pytest.raises(DataError, match=r"sample\.jsonl:12: no 'answer' field"):
        MATH500(_write(tmp_path, lines, "sample.jsonl")).examples()


def test_minimal_records_and_original_math_levels(tmp_path):
    path = _write(tmp_path, [{"problem": "p1", "answer": 3}, {"problem": "p2", "answer": "4", "level": "Level 2"}])
    pool = MATH500(path).examples()
    assert [ex.answer for ex in pool] == ["3", "4"] and pool[0].id.startswith("math500-")
    assert pool[1].meta == {"level": 2}
    with pytest.raises(DataError, match=r"math\.jsonl:1: no 'level' field \(needed by the level filter\)"):
        MATH500(path, levels={2}).examples()


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"nope\.jsonl: no such file"):
        get_benchmark("math500", data=str(tmp_path / "nope.jsonl"))
    with pytest.raises(DataError, match=r"is a directory, expected a MATH-500 JSONL file"):
        get_benchmark("math500", data=str(tmp_path))


def test_the_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails
    with pytest.raises(DataError, match=r"math500 needs --data FILE\.jsonl offline, or `pip install"):
        get_benchmark("math500").examples()

    calls = []

    def load_dataset(name, split=None):
        calls.append((name, split))
        return _records()

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    bench = get_benchmark("math500:level=2")
    assert calls == [] and bench.source == "HuggingFaceH4/MATH-500 (test)"
    assert [ex.id for ex in bench.examples()] == [r["unique_id"] for r in _records() if r["level"] == 2]
    assert calls == [("HuggingFaceH4/MATH-500", "test")]

    def unreachable(name, split=None):
        raise ConnectionError("Couldn't reach 'HuggingFaceH4/MATH-500' on the Hub\nmore")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=unreachable))
    with pytest.raises(DataError, match=r"math500: cannot load HuggingFaceH4/MATH-500 .*Couldn't reach.*--data"):
        get_benchmark("math500").examples()


# --------------------------------------------------------------------------------------------------
# scoring


def test_every_sample_answer_scores_correct_against_itself_and_an_equivalent_form():
    bench = _bench()
    for ex in bench.examples():
        gold = ex.answer
        assert gold in EQUIVALENT, f"no equivalent form written for {gold!r}"
        for reply in (
            gold,
            f"So the final answer is $\\boxed{{{gold}}}$.",
            f"We simplify.\nAnswer: {gold}",
            f"We simplify.\nAnswer: ${EQUIVALENT[gold]}$",
            f"Thus \\boxed{{{EQUIVALENT[gold]}}}.",
        ):
            score = bench.score(ex, reply)
            assert score.correct, (ex.id, gold, reply, score)


def test_wrong_answers_score_wrong():
    bench = _bench()
    pool = bench.examples()
    golds = sorted({ex.answer for ex in pool}, key=str)
    same_value = {frozenset({"120", "120^\\circ"})}  # two golds of the sample that are equal as values
    for ex in pool:
        others = [g for g in golds if g != ex.answer and frozenset({g, ex.answer}) not in same_value]
        wrongs = random.Random(ex.id).sample(others, 3) + ([WRONG[ex.answer]] if ex.answer in WRONG else [])
        for wrong in wrongs:
            score = bench.score(ex, f"Answer: {wrong}")
            assert not score.correct, (ex.id, ex.answer, wrong)
        assert bench.score(ex, "I could not solve it.").extracted == "I could not solve it"
        assert not bench.score(ex, "").correct and bench.score(ex, "").no_answer


@pytest.mark.parametrize(
    ("gold", "right", "wrong"),
    [
        ("\\frac{14}{3}", ["14/3", "\\dfrac{14}{3}", "\\tfrac{14}{3}", "$\\frac{14}{3}$"],
         ["\\frac{3}{14}", "4.67", "14"]),
        ("(3, \\frac{\\pi}{2})", ["\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\dfrac{\\pi}{2})", "(3, \\pi/2)"],
         ["(3, \\pi)", "(\\frac{\\pi}{2}, 3)", "3"]),
        ("\\text{(C)}", ["C", "(C)", "\\text{C}", "\\textbf{(C)}"], ["B", "(D)", "\\text{(A)}"]),
        ("2\\sqrt{3}", ["\\sqrt{12}", "2 \\sqrt 3"], ["\\sqrt{3}", "3\\sqrt{2}"]),
        ("[-2, 7)", ["[-2,7)"], ["(-2, 7)", "[-2, 7]"]),
        ("x^2+7x+10", ["(x+2)(x+5)", "x^2 + 7x + 10"], ["x^2+7x+12"]),
    ],
)  # fmt: skip
def test_latex_answers(gold, right, wrong):
    from agentsearch.evaluators.benchmarks import Example

    bench = _bench()
    ex = Example("x", "q", gold)
    for reply in right:
        assert bench.score(ex, f"The answer is \\boxed{{{reply}}}.").correct, reply
    for reply in wrong:
        assert not bench.score(ex, f"The answer is \\boxed{{{reply}}}.").correct, reply


def test_boxed_first_then_the_answer_line():
    from agentsearch.evaluators.benchmarks import Example

    bench = _bench()
    ex = Example("x", "q", "\\frac{14}{3}")
    assert bench.score(ex, "Answer: 5\nChecking: \\boxed{\\frac{14}{3}}").extracted == "\\frac{14}{3}"
    assert bench.score(ex, "We get 14/3 in the end.\nAnswer: $\\frac{14}{3}$.").extracted == "\\frac{14}{3}"


def test_the_records_carry_the_extracted_answer():
    import dspy

    from agentsearch.evaluators.evaluator import Evaluator

    bench = _bench()
    pool = bench.examples()[:3]

    class Replies:
        def __call__(self, question):
            ex = next(e for e in pool if e.question == question)
            return dspy.Prediction(answer=f"so the answer is \\boxed{{{EQUIVALENT[ex.answer]}}}", reasoning="")

    result = Evaluator(bench.score, concurrency=1).evaluate(Replies(), pool)
    assert [r.extracted for r in result.records] == [EQUIVALENT[ex.answer] for ex in pool]
    assert all(r.correct for r in result.records) and result.score == 1.0
