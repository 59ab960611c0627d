"""BIG-Bench Hard: the loaders on the three shared upstream files and on malformed copies, ``bbh:all``, the hub
path, and the scorer of every answer type on real targets (against themselves and their letter/text variants)."""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import pytest

from agentsearch.errors import DataError
from agentsearch.evaluators.benchmarks import BBH, Example, SplitSpec, get_benchmark
from agentsearch.evaluators.benchmarks.bbh import TASKS, options

BBH_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "bbh"
SHARED_TASKS = ["boolean_expressions", "date_understanding", "logical_deduction_three_objects"]


def _file(task: str) -> Path:
    return BBH_DIR / f"{task}.json"


def _upstream(task: str) -> list[dict]:
    return json.loads(_file(task).read_text())["examples"]


def _write(path: Path, payload) -> Path:
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


# --------------------------------------------------------------------------------------------------
# loading


@pytest.mark.parametrize("task", SHARED_TASKS)
def test_the_shared_files_load(task):
    bench = get_benchmark(f"bbh:{task}", data=str(_file(task)))
    pool, rows = bench.examples(), _upstream(task)
    assert isinstance(bench, BBH) and bench.name == f"bbh:{task}" and len(pool) == len(rows) == 250
    assert [ex.id for ex in pool] == [f"bbh-{task}-{i}" for i in range(250)]
    assert [(ex.question, ex.answer) for ex in pool] == [(r["input"].strip(), r["target"]) for r in rows]
    assert all(ex.meta["task"] == task and ex.meta["kind"] == TASKS[task] for ex in pool)
    assert bench.answer_kind == "text" and bench.group(pool[0]) is None
    # the same task through a directory
    assert get_benchmark(f"bbh:{task}", data=str(BBH_DIR)).examples() == pool


def test_options_are_read_from_the_input():
    ex = get_benchmark("bbh:date_understanding", data=str(_file("date_understanding"))).examples()[0]
    assert ex.meta["options"] == {
        "A": "12/11/1937", "B": "12/25/1937", "C": "01/04/1938",
        "D": "12/04/1937", "E": "12/25/2006", "F": "07/25/1937",
    }  # fmt: skip
    assert options("no options here") == {}


def test_splits_are_seeded_and_disjoint():
    bench = get_benchmark("bbh:boolean_expressions", data=str(_file("boolean_expressions")))
    spec = SplitSpec(seed=1, val_size=20, test_size=30)
    split = bench.split(spec)
    assert split == get_benchmark("bbh:boolean_expressions", data=str(BBH_DIR)).split(spec)
    assert [len(split[k]) for k in ("test", "val", "train")] == [30, 20, 200]
    assert len({ex.id for part in split.values() for ex in part}) == 250
    assert bench.split(SplitSpec(seed=2, val_size=20, test_size=30))["test"] != split["test"]


def test_all_pools_the_tasks_found_and_groups_by_task(tmp_path):
    bench = get_benchmark("bbh:all", data=str(BBH_DIR))
    pool = bench.examples()
    assert bench.name == "bbh:all" and bench.tasks == SHARED_TASKS and len(pool) == 750
    assert {bench.group(ex) for ex in pool} == set(SHARED_TASKS)
    assert "True/False" in bench.metric_description and "multiple choice" in bench.metric_description
    # unrelated files are ignored; a directory without task files is an error
    shutil.copy(_file("boolean_expressions"), tmp_path / "boolean_expressions.json")
    _write(tmp_path / "notes.json", {"examples": []})
    assert get_benchmark("bbh:all", data=str(tmp_path)).tasks == ["boolean_expressions"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"empty: no BIG-Bench Hard task file \(<task>\.json\) in this directory"):
        get_benchmark("bbh:all", data=str(empty))
    with pytest.raises(DataError, match=r"empty: no date_understanding\.json in this directory"):
        get_benchmark("bbh:date_understanding", data=str(empty))


def test_all_per_task_scores_through_the_evaluator():
    import dspy

    from agentsearch.evaluators.evaluator import Evaluator

    bench = get_benchmark("bbh:all", data=str(BBH_DIR))
    test = bench.load("test", SplitSpec(val_size=0, test_size=30))

    class RightOnDates:  # right on date_understanding only
        def __call__(self, question):
            ex = next(e for e in test if e.question == question)
            right = ex.meta["task"] == "date_understanding"
            return dspy.Prediction(answer=ex.answer if right else "no idea", reasoning="")

    result = Evaluator(bench.score, concurrency=1).evaluate(RightOnDates(), test)
    by_task = result.by_group({ex.id: bench.group(ex) for ex in test})
    assert sorted(by_task) == SHARED_TASKS and sum(t["n"] for t in by_task.values()) == 30
    assert by_task["date_understanding"]["score"] == 1.0 and by_task["boolean_expressions"]["score"] == 0.0
    assert by_task["boolean_expressions"]["n_no_answer"] == 0  # "no idea" is an answer, just not a valid one
    assert result.records[0].extracted in ("no idea", test[0].answer)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("bbh", None, r"benchmark 'bbh' names no task; e\.g\. bbh:date_understanding, or bbh:all"),
        ("bbh:date_understandin", None,
         r"unknown bbh task 'date_understandin'; did you mean bbh:date_understanding or bbh:sports_understanding\?"),
        ("bbh:mmlu", None, r"unknown bbh task 'mmlu'; expected one of the 27 BIG-Bench Hard tasks"),
        ("bbh:date_understanding", "/nonexistent/x.json", r"/nonexistent/x\.json: no such file or directory"),
        ("bbh:all", str(BBH_DIR / "date_understanding.json"), r"bbh:all needs --data DIR"),
        ("bbh:date_understanding", str(BBH_DIR / "boolean_expressions.json"),
         r"this is the boolean_expressions file, not date_understanding \(use --benchmark bbh:boolean_expressions\)"),
    ],
)  # fmt: skip
def test_bad_names_and_paths(name, data, message):
    with pytest.raises(DataError, match=message) as err:
        get_benchmark(name, data=data).examples()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"examples": [', r"date_understanding\.json:1: invalid JSON"),
        ("[1, 2]", r"expected a JSON object with an 'examples' list \(the upstream BBH format\), got list"),
        ({"canary": "x"}, r"date_understanding\.json: no 'examples' list"),
        ({"examples": []}, r"date_understanding\.json: 'examples' is empty"),
        ({"examples": ["x"]}, r"examples\[0\]: expected a JSON object with 'input' and 'target', got str"),
        ({"examples": [{"input": "Q?\nOptions:\n(A) a\n(B) b"}]}, r"examples\[0\]: no 'target' field"),
        ({"examples": [{"target": "(A)"}]}, r"examples\[0\]: no 'input' field"),
        ({"examples": [{"input": "Q?\nOptions:\n(A) a\n(B) b", "target": "(C)"}]},
         r"examples\[0\]: target '\(C\)' is not an option letter of the question like \(A\) \(is this the "
         r"date_understanding file\?\)"),
        ({"examples": [{"input": "Q?", "target": "True"}]}, r"target 'True' is not an option letter"),
    ],
)  # fmt: skip
def test_malformed_copies(tmp_path, payload, message):
    path = _write(tmp_path / "date_understanding.json", payload)
    with pytest.raises(DataError, match=message) as err:
        get_benchmark("bbh:date_understanding", data=str(path)).examples()
    assert "\n" not in str(err.value)


def test_a_damaged_real_file_names_the_example(tmp_path):
    data = json.loads(_file("boolean_expressions").read_text())
    data["examples"][41]["target"] = "Maybe"
    path = _write(tmp_path / "copy.json", data)
    with pytest.raises(DataError, match=r"copy\.json: examples\[41\]: target 'Maybe' is not True or False"):
        get_benchmark("bbh:boolean_expressions", data=str(path)).examples()


def test_the_hub(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(DataError, match=r"bbh:date_understanding needs --data FILE\.json or DIR offline"):
        get_benchmark("bbh:date_understanding").examples()

    calls = []

    def load_dataset(name, task, split=None):
        calls.append((name, task, split))
        return _upstream(task)[:5] if task in SHARED_TASKS else []

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    bench = get_benchmark("bbh:date_understanding")
    assert bench.source == "lukaemon/bbh (date_understanding, test)" and len(bench.examples()) == 5
    assert calls == [("lukaemon/bbh", "date_understanding", "test")]
    assert len(get_benchmark("bbh:all").examples()) == 15 and len(calls) == 1 + len(TASKS)

    def unreachable(name, task, split=None):
        raise ConnectionError("Couldn't reach 'lukaemon/bbh' on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=unreachable))
    with pytest.raises(DataError, match=r"cannot load lukaemon/bbh \(date_understanding\) .*pass --data"):
        get_benchmark("bbh:date_understanding").examples()


# --------------------------------------------------------------------------------------------------
# scoring


def _choice_variants(ex: Example) -> list[str]:
    letter, text = ex.answer.strip("()"), ex.meta["options"][ex.answer.strip("()")]
    return [
        ex.answer, letter, f"{letter})", f"{letter}.", f"({letter.lower()})", f"Option {letter}", text,
        f"{ex.answer} {text}", f"{letter}) {text}", f"the answer is {text}.", f"**{ex.answer}**",
    ]  # fmt: skip


def _variants(ex: Example) -> list[str]:
    base = [ex.answer, ex.answer.lower(), ex.answer.upper(), f"**{ex.answer}**."]
    core = _choice_variants(ex) if ex.meta["kind"] == "multiple choice" else base
    return [*core, *(f"Let's think.\nAnswer: {v}" for v in core), *(f"So \\boxed{{{v}}}" for v in core[:2])]


def _wrong(ex: Example) -> list[str]:
    if ex.meta["kind"] == "multiple choice":
        other = next(k for k in ex.meta["options"] if f"({k})" != ex.answer)
        return [f"({other})", other, ex.meta["options"][other], f"Answer: {other}) {ex.meta['options'][other]}"]
    flipped = "False" if ex.answer == "True" else "True"
    return [flipped, flipped.lower(), f"Answer: {flipped}", "Answer: maybe"]


@pytest.mark.parametrize("task", SHARED_TASKS)
def test_every_target_scores_against_itself_and_its_variants(task):
    bench = get_benchmark(f"bbh:{task}", data=str(_file(task)))
    for ex in bench.examples():
        for reply in _variants(ex):
            score = bench.score(ex, reply)
            assert score.correct, (ex.id, ex.answer, reply, score)
            assert score.extracted == (ex.answer if ex.meta["kind"] == "multiple choice" else ex.answer.capitalize())
        for reply in _wrong(ex):
            assert not bench.score(ex, reply).correct, (ex.id, ex.answer, reply)


def _synthetic(tmp_path: Path, task: str, rows: list[tuple[str, str]]) -> BBH:
    _write(tmp_path / f"{task}.json", {"examples": [{"input": q, "target": t} for q, t in rows]})
    return get_benchmark(f"bbh:{task}", data=str(tmp_path))


@pytest.mark.parametrize(
    ("task", "target", "right", "wrong"),
    [
        ("causal_judgement", "Yes", ["Yes", "yes.", "Answer: YES", "**Yes**, the CEO intended it."], ["No", "maybe"]),
        ("sports_understanding", "no", ["No", "no", "Answer: no, it is not plausible"], ["yes", "Yes."]),
        ("navigate", "No", ["No"], ["Yes"]),
        ("web_of_lies", "Yes", ["Yes"], ["No"]),
        ("formal_fallacies", "invalid", ["invalid", "Invalid.", "The argument is invalid", "not valid"],
         ["valid", "deductively valid"]),
        ("formal_fallacies", "valid", ["valid", "Valid", "deductively valid"], ["invalid", "not valid"]),
        ("multistep_arithmetic_two", "-52", ["-52", "Answer: -52.", "\\boxed{-52}", "-52.0"], ["52", "-51"]),
        ("object_counting", "7", ["7", "seven is 7", "Answer: 7 objects"], ["8", "none"]),
        ("dyck_languages", "] ) }", ["] ) }", "])}", "Answer: ] ) }", "The closing sequence is ] ) }"],
         ["] }", "} ) ]", "])}}"]),
        ("word_sorting", "apple banana cherry",
         ["apple banana cherry", "Apple, banana, cherry", "apple banana cherry."],
         ["banana apple cherry", "apple cherry", "apple banana cherry date"]),
        ("boolean_expressions", "False", ["False", "false", "Answer: False."], ["True", "not sure"]),
    ],
)  # fmt: skip
def test_each_answer_type(tmp_path, task, target, right, wrong):
    questions = {"word_sorting": "Sort: cherry apple banana", "dyck_languages": "Complete: { ( ["}
    question = questions.get(task, "A question?")
    bench = _synthetic(tmp_path, task, [(question, target)])
    ex = bench.examples()[0]
    for reply in right:
        assert bench.score(ex, reply).correct, reply
    for reply in wrong:
        assert not bench.score(ex, reply).correct, reply
    if task in ("multistep_arithmetic_two", "object_counting"):
        assert bench.answer_kind == "number" and "an integer" in bench.metric_description


def test_choice_reading_is_not_fooled_by_words():
    bench = get_benchmark("bbh:date_understanding", data=str(_file("date_understanding")))
    ex = bench.examples()[0]  # options A to F, target (B)
    assert bench.score(ex, "I think it is (B).").correct  # "I" is a word here, not an option letter
    assert not bench.score(ex, "A or B, I am not sure").correct
    assert not bench.score(ex, "(A) or (B)").correct
    assert bench.score(ex, "12/25/1937").extracted == "(B)"
    assert bench.score(ex, "Answer: (G)").extracted == "(G)" and not bench.score(ex, "Answer: (G)").correct
    assert bench.score(ex, "").no_answer


def test_each_task_type_is_described_for_the_proposers():
    for task, kind in TASKS.items():
        bench = BBH(task)  # no data needed to describe it
        assert bench.metric_description.startswith("The final answer is "), task
        assert bench.answer_kind == ("number" if kind == "number" else "text")
