"""Tests for benchmarks: JSONL/GSM8K loading, deterministic splits, reasoning-gym, the registry."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from agentsearch.errors import DataError, UserError
from agentsearch.evaluators.benchmarks import (
    GSM8K,
    JSONL,
    SPLITS,
    Benchmark,
    Example,
    ReasoningGym,
    SplitSpec,
    get_benchmark,
    list_benchmarks,
    split_examples,
)
from tests.conftest import GSM8K_TRAIN

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
QA = FIXTURES / "qa_small.jsonl"
GSM8K_SMALL = FIXTURES / "gsm8k_small.jsonl"
GSM8K_REAL = GSM8K_TRAIN  # ../shared/data next to the checkout: the real file must be there (no silent skip)


def _write(tmp_path: Path, lines: list[str], name: str = "data.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(n: int) -> list[str]:
    return [json.dumps({"question": f"What is {i} + 1?", "answer": str(i + 1)}) for i in range(n)]


class _Pool(Benchmark):
    """A synthetic benchmark of ``n`` examples."""

    name = "pool"

    def __init__(self, n: int, prefix: str = "ex") -> None:
        super().__init__()
        self.n, self.prefix = n, prefix

    def examples(self) -> list[Example]:
        return self._cached(lambda: [Example(f"{self.prefix}-{i}", f"q{i}", str(i)) for i in range(self.n)])


def _ids(examples: list[Example]) -> list[str]:
    return [ex.id for ex in examples]


def _raises(match: str):
    return pytest.raises(DataError, match=match)


# --------------------------------------------------------------------------------------------------
# JSONL


def test_jsonl_fixture_loads():
    bench = JSONL(QA)
    examples = bench.examples()
    assert _ids(examples) == ["add-1", "mul-1", "7", "cap-1", "box-1"]  # blank line skipped
    by_id = {ex.id: ex for ex in examples}
    assert by_id["add-1"].answer == "5" and by_id["add-1"].solution == ""
    assert by_id["mul-1"].answer == "42"  # "#### 42" extracted
    assert by_id["mul-1"].solution == "6 * 7 = 42\n#### 42"
    assert by_id["7"].answer == "1.5"  # a JSON number
    assert by_id["7"].meta == {"level": "easy"}
    assert by_id["cap-1"].solution == "France's capital is Paris."
    assert by_id["box-1"].answer == "\\frac{1}{2}"
    assert bench.describe() == {"name": "jsonl", "size": 5, "source": str(QA)}


def test_jsonl_metric():
    bench = JSONL(QA)
    by_id = {ex.id: ex for ex in bench.examples()}
    assert bench.metric(by_id["mul-1"], "6 times 7 is 42.\n#### 42")
    assert bench.metric(by_id["mul-1"], "The answer is 42.")
    assert not bench.metric(by_id["mul-1"], "The answer is 41.")
    assert bench.metric(by_id["box-1"], "so \\boxed{0.5}")
    assert bench.metric(by_id["cap-1"], "Answer: paris")


def test_jsonl_examples_cached_and_copied():
    bench = JSONL(QA)
    first = bench.examples()
    first.clear()
    assert len(bench.examples()) == 5


def test_jsonl_ids_without_id_field_do_not_depend_on_line_order(tmp_path):
    rows = _rows(30)
    a = JSONL(_write(tmp_path, rows, "a.jsonl"))
    b = JSONL(_write(tmp_path, list(reversed(rows)), "b.jsonl"))
    assert sorted(_ids(a.examples())) == sorted(_ids(b.examples()))
    spec = SplitSpec(seed=3, val_size=5, test_size=5)
    sa, sb = a.split(spec), b.split(spec)
    for name in SPLITS:
        assert _ids(sa[name]) == _ids(sb[name])


def test_jsonl_repeated_questions_get_distinct_ids(tmp_path):
    row = json.dumps({"question": "Same?", "answer": "yes"})
    ids = _ids(JSONL(_write(tmp_path, [row, row, row])).examples())
    assert len(set(ids)) == 3 and ids[1] == ids[0] + "-2"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "q", "answer": "1"}', "{not json"], r"data\.jsonl:2: invalid JSON"),
        (
            ['{"question": "q", "answer": "1"}', "", "[1, 2]"],
            r"data\.jsonl:3: expected a JSON object, got list",
        ),
        (['{"question": "q"}'], r"data\.jsonl:1: no 'answer' field"),
        (['{"answer": "1"}'], r"data\.jsonl:1: no 'question' field"),
        (['{"question": "q", "answer": "  "}'], r"data\.jsonl:1: empty 'answer' field"),
        (['{"question": "", "answer": "1"}'], r"data\.jsonl:1: empty 'question' field"),
        (['{"question": "q", "answer": "steps\\n#### "}'], r"data\.jsonl:1: empty final answer"),
        (['{"question": "q", "answer": true}'], r"data\.jsonl:1: 'answer' must be a string, got bool"),
        (['{"question": ["q"], "answer": "1"}'], r"data\.jsonl:1: 'question' must be a string"),
        (
            ['{"id": "a", "question": "q", "answer": "1"}', '{"id": "a", "question": "r", "answer": "2"}'],
            r"data\.jsonl:2: duplicate id 'a' \(first on line 1\)",
        ),
        (['{"id": "", "question": "q", "answer": "1"}'], r"data\.jsonl:1: 'id' must be"),
        ([""], r"data\.jsonl: empty file"),
    ],
)
def test_jsonl_bad_lines(tmp_path, lines, message):
    bench = JSONL(_write(tmp_path, lines))
    with _raises(message) as err:
        bench.examples()
    assert "\n" not in str(err.value)
    assert isinstance(err.value, UserError)


def test_jsonl_missing_and_empty_files(tmp_path):
    with _raises(r"nope\.jsonl: no such file"):
        JSONL(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with _raises(r"empty\.jsonl: empty file"):
        JSONL(empty).examples()
    with _raises(r"is a directory"):
        JSONL(tmp_path).examples()


def test_jsonl_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'{"question": "caf\xe9", "answer": "1"}\n')
    with _raises(r"latin1\.jsonl: not UTF-8"):
        JSONL(path).examples()


# --------------------------------------------------------------------------------------------------
# splits


def test_split_is_deterministic_and_disjoint():
    spec = SplitSpec(seed=0, val_size=10, test_size=20, train_size=None)
    first, second = _Pool(100).split(spec), _Pool(100).split(spec)
    for name in SPLITS:
        assert _ids(first[name]) == _ids(second[name])
    assert [len(first[s]) for s in ("test", "val", "train")] == [20, 10, 70]
    test, val, train = (set(_ids(first[s])) for s in ("test", "val", "train"))
    assert not (test & val) and not (test & train) and not (val & train)
    assert test | val | train == {f"ex-{i}" for i in range(100)}


def test_split_does_not_depend_on_pool_order():
    pool = _Pool(50).examples()
    spec = SplitSpec(val_size=5, test_size=5)
    a, b = split_examples(pool, spec), split_examples(list(reversed(pool)), spec)
    assert all(_ids(a[s]) == _ids(b[s]) for s in SPLITS)


def test_split_is_shuffled_and_seed_dependent():
    bench = _Pool(100)
    a = bench.split(SplitSpec(seed=0, val_size=10, test_size=10))
    b = bench.split(SplitSpec(seed=1, val_size=10, test_size=10))
    assert _ids(a["test"]) != _ids(b["test"])
    assert _ids(a["test"]) != [f"ex-{i}" for i in range(10)]


def test_split_known_values_are_stable():
    # sha256("0:ex-<i>") order: pinning it guards against accidental changes of the split recipe.
    got = _ids(_Pool(20).split(SplitSpec(seed=0, val_size=2, test_size=3))["test"])
    import hashlib

    expected = sorted(
        (f"ex-{i}" for i in range(20)), key=lambda s: hashlib.sha256(f"0:{s}".encode()).hexdigest()
    )
    assert got == expected[:3]


def test_split_growing_train_keeps_test_and_val():
    bench = _Pool(100)
    small = bench.split(SplitSpec(val_size=10, test_size=10, train_size=5))
    big = bench.split(SplitSpec(val_size=10, test_size=10, train_size=50))
    assert _ids(small["test"]) == _ids(big["test"]) and _ids(small["val"]) == _ids(big["val"])
    assert _ids(big["train"])[:5] == _ids(small["train"])


def test_split_fractions():
    splits = _Pool(20).split(SplitSpec(val_size=0.1, test_size=0.25, train_size=0.5))
    assert [len(splits[s]) for s in ("test", "val", "train")] == [5, 2, 10]
    # fractions are exact decimals: 0.29 * 100 is 29, not 28 (float 28.999...)
    assert len(_Pool(100).split(SplitSpec(val_size=0, test_size=0.29))["test"]) == 29
    assert len(_Pool(100).split(SplitSpec(val_size=50.0, test_size=0))["val"]) == 50


def test_split_zero_sizes():
    splits = _Pool(10).split(SplitSpec(val_size=0, test_size=0))
    assert len(splits["train"]) == 10 and splits["val"] == [] and splits["test"] == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (SplitSpec(test_size=200), r"--test-size 200 exceeds the 100 examples of pool"),
        (SplitSpec(val_size=101, test_size=0), r"--val-size 101 exceeds the 100 examples of pool"),
        (SplitSpec(val_size=50, test_size=60), r"--test-size 60 \+ --val-size 50 = 110 exceeds"),
        (SplitSpec(val_size=10, test_size=10, train_size=81), r"--train-size 81 = 101 exceeds the 100"),
        (SplitSpec(val_size=0.5, test_size=0.6), r"--test-size 0.6 \(60\) \+ --val-size 0.5 \(50\)"),
    ],
)
def test_split_too_large(spec, message):
    with _raises(message):
        _Pool(100).split(spec)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val_size": -1}, r"--val-size -1: must be ≥ 0"),
        ({"test_size": 1.5}, r"--test-size 1.5: a fraction must be in \(0, 1\)"),
        ({"test_size": 1.0}, r"--test-size 1.0 is ambiguous"),
        ({"train_size": -0.5}, r"--train-size -0.5"),
        ({"val_size": True}, r"--val-size True"),
        ({"val_size": "50"}, r"--val-size '50'"),
        ({"val_size": None}, r"--val-size is required"),
        ({"seed": "0"}, r"--seed '0'"),
    ],
)
def test_split_spec_validation(kwargs, message):
    with _raises(message):
        SplitSpec(**kwargs)


def test_split_spec_parse_size():
    assert SplitSpec.parse_size("50") == 50 and SplitSpec.parse_size("0.2") == 0.2
    with _raises(r"--val-size 'abc'"):
        SplitSpec.parse_size("abc", "--val-size")


def test_split_duplicate_ids_rejected():
    pool = [Example("a", "q", "1"), Example("a", "r", "2")]
    with _raises(r"duplicate example id 'a'"):
        split_examples(pool, SplitSpec(val_size=0, test_size=0))


def test_load_one_split():
    bench, spec = _Pool(30), SplitSpec(val_size=5, test_size=5)
    assert _ids(bench.load("val", spec)) == _ids(bench.split(spec)["val"])
    with _raises(r"unknown split 'validation'; expected train, val or test"):
        bench.load("validation", spec)


def test_example_is_hashable_with_meta():
    a = Example("x", "q", "1", meta={"k": [1]})
    assert a == Example("x", "q", "1") and len({a, Example("x", "q", "1")}) == 1


# --------------------------------------------------------------------------------------------------
# GSM8K


def test_gsm8k_fixture():
    bench = GSM8K(GSM8K_SMALL)
    examples = bench.examples()
    assert _ids(examples) == ["gsm8k-1", "gsm8k-2", "gsm8k-3", "gsm8k-4"]
    assert [ex.answer for ex in examples] == ["72", "10", "1080", "-5"]
    assert "<<" not in examples[0].solution and examples[0].solution.endswith("#### 72")
    assert examples[0].question.startswith("Natalia sold clips")
    assert bench.metric(examples[2], "So the farm has 1,080 hens.\n#### 1080")
    assert bench.metric(examples[2], "The answer is $1,080.")
    assert not bench.metric(examples[2], "The answer is 1,008.")
    assert bench.describe() == {"name": "gsm8k", "size": 4, "source": str(GSM8K_SMALL)}
    splits = bench.split(SplitSpec(val_size=1, test_size=1))
    assert [len(splits[s]) for s in ("test", "val", "train")] == [1, 1, 2]


def test_gsm8k_bad_file(tmp_path):
    with _raises(r"missing\.jsonl: no such file"):
        GSM8K(tmp_path / "missing.jsonl")
    path = _write(tmp_path, ['{"question": "q", "answer": "#### 3"}', '{"question": "q2"}'])
    with _raises(r"data\.jsonl:2: no 'answer' field"):
        GSM8K(path).examples()


def test_gsm8k_hub_without_datasets(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` fail
    with _raises(r"gsm8k needs --data FILE\.jsonl offline, or `pip install datasets` and network access"):
        GSM8K().examples()


def test_gsm8k_hub_unreachable(monkeypatch):
    def load_dataset(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'openai/gsm8k' on the Hub\n(LocalEntryNotFoundError)")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    with _raises(r"gsm8k: cannot load openai/gsm8k from the Hugging Face hub .*--data FILE\.jsonl") as err:
        GSM8K().examples()
    assert "\n" not in str(err.value)


def test_gsm8k_hub_pool_is_train_then_test(monkeypatch):
    rows = {
        "train": [
            {"question": "a?", "answer": "x <<1+1=2>>2\n#### 2"},
            {"question": "b?", "answer": "#### 3"},
        ],
        "test": [{"question": "c?", "answer": "#### 1,000"}],
    }
    calls = []

    def load_dataset(*args, **kwargs):
        calls.append(args)
        return rows

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    bench = GSM8K()
    examples = bench.examples()
    assert calls == [("openai/gsm8k", "main")]
    assert _ids(examples) == ["gsm8k-train-0", "gsm8k-train-1", "gsm8k-test-0"]
    assert [ex.answer for ex in examples] == ["2", "3", "1000"]
    assert bench.describe()["source"] == "openai/gsm8k (main)"
    bench.examples()
    assert len(calls) == 1  # cached


def test_gsm8k_real_file():
    assert GSM8K_REAL.exists(), f"{GSM8K_REAL}: the shared GSM8K file is missing (../shared/data next to the checkout)"
    bench = GSM8K(GSM8K_REAL)
    examples = bench.examples()
    assert len(examples) == 7473
    assert len({ex.id for ex in examples}) == 7473
    assert examples[0].id == "gsm8k-1" and examples[0].answer == "72"
    assert all(ex.answer.lstrip("-").isdigit() for ex in examples)  # "#### 1,080" -> "1080"
    assert all(bench.metric(ex, ex.solution) for ex in examples[:500])

    splits = bench.split(SplitSpec())
    assert [len(splits[s]) for s in ("test", "val", "train")] == [100, 50, 7323]
    again = GSM8K(GSM8K_REAL).split(SplitSpec())
    assert all(_ids(splits[s]) == _ids(again[s]) for s in SPLITS)
    other = bench.split(SplitSpec(seed=1))
    assert _ids(other["test"]) != _ids(splits["test"])
    sized = bench.split(SplitSpec(val_size=0.1, test_size=200, train_size=1000))
    assert [len(sized[s]) for s in ("test", "val", "train")] == [200, 747, 1000]
    with _raises(r"--test-size 9000 exceeds the 7473 examples of gsm8k"):
        bench.split(SplitSpec(test_size=9000))


# --------------------------------------------------------------------------------------------------
# reasoning-gym


def test_reasoning_gym_generation():
    bench = ReasoningGym("basic_arithmetic", size=20, seed=1)
    examples = bench.examples()
    assert len(examples) == 20
    assert examples[0].id == "basic_arithmetic-1-0"
    assert examples[0].meta["answer"] == examples[0].answer
    assert "metadata" in examples[0].meta
    again = ReasoningGym("basic_arithmetic", size=20, seed=1).examples()
    assert [ex.question for ex in again] == [ex.question for ex in examples]
    other = ReasoningGym("basic_arithmetic", size=20, seed=2).examples()
    assert [ex.question for ex in other] != [ex.question for ex in examples]
    assert bench.describe()["size"] == 20 and bench.describe()["task"] == "basic_arithmetic"


def test_reasoning_gym_metric_counts_only_perfect_scores():
    bench = ReasoningGym("basic_arithmetic", size=10)
    example = bench.examples()[0]
    gold = example.answer
    assert bench.metric(example, gold)
    assert bench.metric(example, f"Let me compute.\nThe answer is {gold}.")
    assert bench.metric(example, f"\\boxed{{{gold}}}")
    # reasoning-gym gives partial credit when the gold answer is inside a longer answer ...
    import reasoning_gym

    partial = f"{gold}.0"
    score = reasoning_gym.create_dataset("basic_arithmetic", size=10, seed=0).score_answer(
        partial, example.meta
    )
    assert 0 < score < 1
    # ... which does not count
    assert not bench.metric(example, partial)
    assert not bench.metric(example, "12345678901234567890")
    assert not bench.metric(example, "")


def test_reasoning_gym_split_grows_pool():
    bench = ReasoningGym("chain_sum", size=50)
    splits = bench.split(SplitSpec())  # train None -> 200; the pool grows to 350
    assert [len(splits[s]) for s in ("test", "val", "train")] == [100, 50, 200]
    ids = [set(_ids(splits[s])) for s in SPLITS]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert len(bench.examples()) == 50  # examples() keeps the configured size
    big = bench.split(SplitSpec(val_size=10, test_size=600, train_size=5))
    assert len(big["test"]) == 600
    again = ReasoningGym("chain_sum", size=50).split(SplitSpec())
    assert all(_ids(splits[s]) == _ids(again[s]) for s in SPLITS)
    # fractions apply to the configured size
    frac = bench.split(SplitSpec(val_size=0.2, test_size=0.2, train_size=0.5))
    assert [len(frac[s]) for s in ("test", "val", "train")] == [10, 10, 25]


def test_reasoning_gym_unknown_task():
    with _raises(r"unknown reasoning_gym task 'basic_arith'; did you mean basic_arithmetic\?.*chain_sum"):
        ReasoningGym("basic_arith")
    with _raises(r"size must be a positive integer"):
        ReasoningGym("basic_arithmetic", size=0)


# --------------------------------------------------------------------------------------------------
# registry


def test_list_benchmarks():
    names = list_benchmarks()
    assert names[:2] == ["gsm8k", "jsonl"]
    assert "reasoning_gym:basic_arithmetic" in names and "reasoning_gym:chain_sum" in names


def test_get_benchmark():
    assert isinstance(get_benchmark("gsm8k", str(GSM8K_SMALL)), GSM8K)
    assert isinstance(get_benchmark("jsonl", str(QA)), JSONL)
    rg = get_benchmark("reasoning_gym:basic_arithmetic", seed=3)
    assert isinstance(rg, ReasoningGym) and rg.seed == 3 and rg.name == "reasoning_gym:basic_arithmetic"


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("mmlu", None, r"unknown benchmark 'mmlu'; expected gsm8k, jsonl .* reasoning_gym:<task>"),
        ("jsonl", None, r"benchmark jsonl needs --data FILE\.jsonl"),
        ("jsonl", "/nonexistent/x.jsonl", r"/nonexistent/x\.jsonl: no such file"),
        ("gsm8k", "/nonexistent/x.jsonl", r"/nonexistent/x\.jsonl: no such file"),
        ("reasoning_gym:", None, r"names no task"),
        ("reasoning_gym:nope", None, r"unknown reasoning_gym task 'nope'"),
        ("reasoning_gym:basic_arithmetic", "x.jsonl", r"takes no --data"),
    ],
)
def test_get_benchmark_errors(name, data, message):
    with _raises(message):
        get_benchmark(name, data)


def test_subclass_without_super_init_can_cache():
    class Bare(Benchmark):
        name = "bare"

        def __init__(self) -> None:  # no super().__init__()
            self.loads = 0

        def examples(self) -> list[Example]:
            def load() -> list[Example]:
                self.loads += 1
                return [Example(str(i), "q", "1") for i in range(5)]

            return self._cached(load)

    bench = Bare()
    assert len(bench.split(SplitSpec(val_size=1, test_size=1))["train"]) == 3
    bench.examples()
    assert bench.loads == 1


def test_a_scorer_crash_is_a_wrong_answer_recorded_as_a_scoring_error(monkeypatch):
    from agentsearch.evaluators.benchmarks import ReasoningGym, SplitSpec
    from agentsearch.evaluators.evaluator import Evaluator

    bench = ReasoningGym("chain_sum")
    ex = bench.split(SplitSpec(val_size=1, test_size=1))["val"][0]

    class Broken:
        def score_answer(self, answer, entry):
            raise ValueError("cannot parse 'seven'")

    monkeypatch.setattr(bench, "_dataset", lambda size: Broken())
    score = bench.score(ex, "Answer: seven")
    assert not score.correct and score.extracted == "seven" and "scoring error: ValueError" in score.error

    class Echo:
        def __call__(self, question):
            import dspy

            return dspy.Prediction(answer="seven", reasoning="")

    record = Evaluator(bench.score, concurrency=1).evaluate(Echo(), [ex]).records[0]
    assert record.error_kind == "scoring" and "cannot parse" in record.error and not record.correct


def test_benchmarks_describe_their_metric_for_proposers():
    from agentsearch.evaluators.benchmarks import GSM8K, ReasoningGym

    assert "as a number" in GSM8K().metric_description
    assert "reasoning-gym's own scorer" in ReasoningGym("chain_sum").metric_description
