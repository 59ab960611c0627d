"""The CLI on the MATH-500 and BIG-Bench Hard benchmarks (in process, against the fake server): `main.py
benchmarks`, one-line exit-2 errors for bad benchmark input, bbh:all's per-task report, the extracted answers in
--records, and a tiny study on each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agentsearch.cli import main
from agentsearch.evaluators.benchmarks import BENCHMARKS, SplitSpec, get_benchmark
from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy
from tests.conftest import make_lm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MATH = SHARED / "math500" / "sample30.jsonl"
BBH_DIR = SHARED / "bbh"


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    lines = [ln for ln in captured.err.splitlines() if ln.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_benchmarks_lists_what_runs_offline_and_what_needs_the_hub(capsys):
    assert main(["benchmarks", "--json"]) == 0
    listed = {row["benchmark"]: row for row in json.loads(capsys.readouterr().out)["benchmarks"]}
    assert len(listed) == len(list(BENCHMARKS))
    assert listed["math500[:filters]"]["hub"] == "HuggingFaceH4/MATH-500"
    assert listed["math500[:filters]"]["offline"] == "--data FILE.jsonl"
    assert listed["bbh:<task>|all"]["hub"] == "lukaemon/bbh" and len(listed["bbh:<task>|all"]["names"]) == 28
    assert listed["reasoning_gym:<task>"]["offline"] == "generated" and listed["reasoning_gym:<task>"]["hub"] == ""
    assert listed["gsm8k"]["hub"] == "openai/gsm8k"
    assert main(["benchmarks"]) == 0
    table = capsys.readouterr().out
    assert "lukaemon/bbh" in table and "math500" in table and "generated" in table
    assert main(["benchmarks", "bbh"]) == 0
    names = capsys.readouterr().out.split()
    assert names[0] == "bbh:all" and "bbh:word_sorting" in names and len(names) == 28
    assert main(["benchmarks", "mmlu"]) == 2
    assert _one_error_line(capsys).startswith("error: unknown benchmark 'mmlu'")


@pytest.fixture(scope="module")
def agents(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("agents")
    assert main(["baselines", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize(
    ("benchmark", "data", "message"),
    [
        ("bbh:nope", None, "unknown bbh task 'nope'"),
        ("bbh:date_understanding", "missing.json", "missing.json: no such file or directory"),
        ("bbh:date_understanding", "broken", "date_understanding.json:1: invalid JSON"),
        ("bbh:all", str(MATH), "bbh:all needs --data DIR"),
        ("math500:level=9", str(MATH), "level '9': levels run from 1 to 5"),
        ("math500:subject=calculus", str(MATH), "unknown subject 'calculus'"),
        ("math500", "broken", "math.jsonl:1: invalid JSON"),
    ],
)
def test_bad_benchmark_input_is_one_line_and_exit_2(tmp_path, agents, capsys, benchmark, data, message):
    if data == "broken":
        data = str(tmp_path / ("date_understanding.json" if benchmark.startswith("bbh") else "math.jsonl"))
        Path(data).write_text("{nope\n")
    elif data == "missing.json":
        data = str(tmp_path / data)
    args = ["evaluate", "--agent", str(agents / "cot.yaml"), "--benchmark", benchmark, "--model", "fake",
            "--api-base", "http://127.0.0.1:9/v1", "--run-dir", str(tmp_path / "run")]  # fmt: skip
    capsys.readouterr()
    assert main([*args, *(["--data", data] if data else [])]) == 2
    line = _one_error_line(capsys)
    assert line.startswith("error: ") and message in line, line


def _server(bench_name: str, data: Path) -> FakeOpenAIServer:
    pool = get_benchmark(bench_name, data=str(data)).examples()
    policy = ReasoningPolicy({ex.question: ex.answer for ex in pool}, p_direct=1.0, p_reasoning=1.0)
    return FakeOpenAIServer(policy, latency=0.0)


def test_bbh_all_reports_each_task_and_the_macro_average(tmp_path, agents, capsys):
    data = tmp_path / "bbh"
    data.mkdir()
    for task in ("boolean_expressions", "date_understanding"):
        shutil.copy(BBH_DIR / f"{task}.json", data / f"{task}.json")
    with _server("bbh:all", data) as server:
        args = ["evaluate", "--agent", str(agents / "cot.yaml"), "--benchmark", "bbh:all", "--data", str(data),
                "--model", server.model, "--api-base", server.url, "--test-size", "12", "--val-size", "4",
                "--split", "test", "--no-cache", "--run-dir", str(tmp_path / "run"),
                "--records", str(tmp_path / "records.jsonl")]  # fmt: skip
        capsys.readouterr()
        assert main([*args, "--json"]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["benchmark"] == "bbh:all" and summary["n"] == 12
        by_task = summary["by_task"]
        assert sorted(by_task) == ["boolean_expressions", "date_understanding"]
        assert sum(t["n"] for t in by_task.values()) == 12
        assert summary["macro_score"] == pytest.approx(sum(t["score"] for t in by_task.values()) / 2)
        assert summary["score"] == 1.0 and summary["macro_score"] == 1.0  # the fake answers every question right
        records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
        assert all(r["extracted"] == r["gold"] for r in records)
        assert main(args) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "per task (macro average 1.000 over 2 tasks)" in out and "date_understanding" in out


def test_math500_records_carry_the_extracted_answer(tmp_path, agents, capsys):
    with _server("math500", MATH) as server:
        args = ["evaluate", "--agent", str(agents / "cot.yaml"), "--benchmark", "math500:level=1-3", "--data",
                str(MATH), "--model", server.model, "--api-base", server.url, "--test-size", "8", "--val-size", "2",
                "--split", "test", "--no-cache", "--run-dir", str(tmp_path / "run"),
                "--records", str(tmp_path / "records.jsonl"), "--json"]  # fmt: skip
        capsys.readouterr()
        assert main(args) == 0
        summary = json.loads(capsys.readouterr().out)
    assert summary["benchmark"] == "math500:level=1+2+3" and summary["n"] == 8 and "by_task" not in summary
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 8 and all(r["extracted"] for r in records)
    # the fake drops commas ("(2,4)" becomes "(24)"); every other gold comes back and is scored right
    assert all(r["correct"] for r in records if "," not in r["gold"])


@pytest.mark.parametrize(("benchmark", "data"), [("math500", MATH), ("bbh:date_understanding", BBH_DIR)])
def test_a_tiny_study_runs(tmp_path, benchmark, data):
    from agentsearch.runs.study import StudyConfig, run_study

    bench = get_benchmark(benchmark, data=str(data))
    assert bench.split(SplitSpec(val_size=8, test_size=8))["test"]
    with _server(benchmark, data) as server:
        cfg = StudyConfig(
            study="tiny", benchmark=benchmark, data=str(data), trials=3, val_size=8, test_size=8, run_dir=tmp_path,
            tracking=False, min_batch=4, parallel=1, concurrency=4, formats=("text",),
        )  # fmt: skip
        summary = run_study(cfg, {"default": make_lm(server)})
    assert summary["benchmark"] == benchmark and summary["n_trials"] == 3 and summary["best_test"] is not None


def test_subject_and_level_flags_filter_math500_and_nothing_else(tmp_path, agents, capsys):
    """--subject/--level are the math500 filters written into the benchmark's name (which the study stores)."""
    from agentsearch.cli import with_filters

    assert with_filters("math500", "geometry", "4-5") == "math500:level=4-5,subject=geometry"
    assert with_filters("math500:level=5", "algebra", None) == "math500:level=5,subject=algebra"
    assert with_filters("gsm8k", None, None) == "gsm8k"
    with _server("math500", MATH) as server:
        args = ["evaluate", "--agent", str(agents / "cot.yaml"), "--benchmark", "math500", "--level", "1-3",
                "--data", str(MATH), "--model", server.model, "--api-base", server.url, "--split", "all",
                "--no-cache", "--run-dir", str(tmp_path / "run"), "--json"]  # fmt: skip
        capsys.readouterr()
        assert main(args) == 0
        summary = json.loads(capsys.readouterr().out)
    levels = [json.loads(line)["level"] for line in MATH.read_text().splitlines()]
    assert summary["benchmark"] == "math500:level=1+2+3" and summary["n"] == sum(lv <= 3 for lv in levels)
    args = ["evaluate", "--agent", str(agents / "cot.yaml"), "--benchmark", "gsm8k", "--level", "5"]
    assert main(args) == 2
    assert "--level: only --benchmark math500" in _one_error_line(capsys)
