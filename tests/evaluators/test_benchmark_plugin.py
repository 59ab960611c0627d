"""A benchmark from outside the package: one class and one registry line, found by every entry point."""

from __future__ import annotations

import json

import pytest

from agentsearch.errors import DataError
from agentsearch.evaluators.benchmarks import (
    BENCHMARKS,
    Benchmark,
    BenchmarkEntry,
    Example,
    SplitSpec,
    get_benchmark,
    list_benchmarks,
)
from tests.conftest import QUESTIONS, make_lm


class Toy(Benchmark):
    """Tom's apples (the fake server knows the answers)."""

    name = "toy"

    def examples(self) -> list[Example]:
        return self._cached(lambda: [Example(f"toy-{i}", q, a) for i, (q, a) in enumerate(QUESTIONS.items())])


@pytest.fixture
def toy():
    BENCHMARKS.add(BenchmarkEntry("toy", "Tom's apples, a test benchmark", Toy))  # the one registry line
    yield
    BENCHMARKS.remove("toy")


def test_found_listed_split_and_named_in_errors(toy):
    bench = get_benchmark("toy")
    assert isinstance(bench, Toy) and "toy" in list_benchmarks()
    spec = SplitSpec(seed=0, val_size=8, test_size=8)
    assert bench.split(spec) == get_benchmark("toy").split(spec)
    with pytest.raises(DataError, match=r"unknown benchmark 'no-such'.*toy \(Tom's apples"):
        get_benchmark("no-such")
    with pytest.raises(DataError, match="takes no --data"):
        get_benchmark("toy", data="x.jsonl")
    with pytest.raises(DataError, match="takes no ':x'"):
        get_benchmark("toy:x")


def test_registering_a_taken_name_is_refused(toy):
    with pytest.raises(ValueError, match="already registered"):
        BENCHMARKS.add(BenchmarkEntry("toy", "again", Toy))
    with pytest.raises(ValueError, match="already registered"):
        BENCHMARKS.add(BenchmarkEntry("toy2", "alias clash", Toy, aliases=("rg",)))
    assert "toy2" not in BENCHMARKS


def test_cli_evaluates_it(toy, tmp_path, fake_server, capsys):
    from agentsearch.cli import main

    assert main(["baselines", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    code = main(
        ["evaluate", "--agent", str(tmp_path / "cot.yaml"), "--benchmark", "toy", "--model", fake_server.model,
         "--api-base", fake_server.url, "--val-size", "8", "--test-size", "8", "--split", "val", "--json",
         "--no-cache", "--run-dir", str(tmp_path / "run")]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert json.loads(out)["n"] == 8


def test_a_study_runs_on_it(toy, tmp_path, fake_server):
    from agentsearch.runs.study import StudyConfig, run_study

    cfg = StudyConfig(
        study="toy", benchmark="toy", trials=5, val_size=8, test_size=8, run_dir=tmp_path, tracking=False,
        min_batch=4, parallel=1, concurrency=4, formats=("text",),
    )  # fmt: skip
    summary = run_study(cfg, {"default": make_lm(fake_server)})
    assert summary["benchmark"] == "toy" and summary["n_trials"] == 5


def test_the_human_summary_names_proposer_and_prompt_optimizer_failures(toy, tmp_path, fake_server, capsys):
    from agentsearch.cli import _print_study_summary
    from agentsearch.runs.study import StudyConfig, run_study

    cfg = StudyConfig(
        study="toy", benchmark="toy", trials=4, val_size=8, test_size=8, run_dir=tmp_path, tracking=False,
        min_batch=4, parallel=1, concurrency=4, formats=("text",),
    )  # fmt: skip
    summary = run_study(cfg, {"default": make_lm(fake_server)})
    capsys.readouterr()
    _print_study_summary(summary, tmp_path)
    assert "failed" not in capsys.readouterr().err
    _print_study_summary({**summary, "proposer_failures": 2, "prompt_optimizer_failures": 1}, tmp_path)
    err = " ".join(capsys.readouterr().err.split())
    assert "the proposer model failed 2 times" in err and "prompt optimization failed on 1 trials" in err
