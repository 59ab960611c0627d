"""Budgets (issue 12, section 3): the projection as a range from the cost model and the pruning schedule,
the study limits (--max-calls, --max-tokens, --time-budget), the $ estimate, and a resumed study's progress."""

from __future__ import annotations

import pytest

from agentsearch.errors import UserError
from agentsearch.evaluators.llm.models import ModelFlags
from agentsearch.runs.optimize import optimize, study_config
from agentsearch.runs.study import (
    StudyConfig,
    calls_range,
    examples_per_trial,
    parse_duration,
    prepare_study,
    project_budget,
)
from agentsearch.search_space.graph import AgentGraph


def test_calls_range_from_the_cost_model():
    assert calls_range(AgentGraph.single("cot")) == (1, 1)
    assert calls_range(AgentGraph.single("self_consistency", n=5)) == (5, 5)  # no early stop: one number
    low, high = calls_range(AgentGraph.single("self_refine", rounds=3))
    assert (low, high) == (3, 7)  # 1 + 2 per round; it may stop after the first critique
    assert calls_range(AgentGraph.single("program_of_thought", repairs=2)) == (1, 3)


def test_examples_per_trial_follows_the_pruning_schedule():
    assert examples_per_trial(50, 4, "none") == 50
    # rungs 4, 8, 16, 32, 50: all run 4, half the next 4, a quarter the next 8, ...
    assert examples_per_trial(50, 4, "sha") == pytest.approx(4 + 4 / 2 + 8 / 4 + 16 / 8 + 18 / 16)
    assert examples_per_trial(4, 4, "sha") == 4


def _cfg(tmp_path, **kw) -> StudyConfig:
    base = {"study": "b", "benchmark": "jsonl", "trials": 12, "val_size": 16, "test_size": 8, "run_dir": tmp_path,
            "min_batch": 4, "formats": ("text",), "tracking": False}  # fmt: skip
    return StudyConfig(**{**base, **kw})


def test_projection_is_a_range_and_nothing_when_nothing_is_left(tmp_path, questions_file):
    cfg = _cfg(tmp_path, data=str(questions_file))
    prepared = prepare_study(cfg)
    p = project_budget(prepared.space, cfg, 16, 8, 12)
    assert p is not None and p.calls[0] < p.calls[1] and p.tokens[0] < p.tokens[1]
    assert " LLM calls" in p.describe() and "-" in p.describe().split(" LLM calls")[0]
    assert p.usd is None and "$" not in p.describe()
    assert project_budget(prepared.space, cfg, 16, 8, 0, tested=True) is None  # nothing to project
    test_only = project_budget(prepared.space, cfg, 16, 8, 0)  # the trials ran, the test did not yet
    assert test_only is not None and test_only.calls[1] < p.calls[1]
    capped = project_budget(prepared.space, _cfg(tmp_path, data=str(questions_file), max_calls=50), 16, 8, 12)
    assert "--max-calls 50" in capped.describe() and capped.calls[1] < p.calls[1]
    priced = project_budget(prepared.space, _cfg(tmp_path, prices={"default": (0.5, 2.0)}), 16, 8, 12)
    assert priced.usd == pytest.approx((priced.tokens[0] * 0.5 / 1e6, priced.tokens[1] * 2.0 / 1e6), rel=1e-3)
    assert "$" in priced.describe()


def test_the_projection_holds_what_a_study_spends(tmp_path, fake_server, questions_file):
    """The range contains what the study then spent: trials, the top-k re-scoring and the test."""
    models = ModelFlags(model=fake_server.model, api_base=(fake_server.url,))
    cfg = study_config(
        benchmark="jsonl", models=models, run_dir=tmp_path, data=str(questions_file), val_size="16",
        test_size="8", formats="text", trials=10, min_batch=4, parallel=1, concurrency=4, tracking=False,
    )  # fmt: skip
    announced: list[str] = []
    summary = optimize(cfg, models, cache=False, announce=announced.append)
    projected = next(line for line in announced if line.startswith("projected:"))
    low, high = (int(x.replace(",", "")) for x in projected.split()[1].split("-"))
    tested = sum(round(t["calls_per_question"] * t["n"]) for t in summary["test"].values())
    spent = summary["calls"] + summary["selection_calls"] + tested
    assert low <= spent <= high, (low, spent, high, projected)
    assert high <= 2.5 * spent  # a range, not the 5.7x over-estimate of issue 12


def test_study_limits_stop_new_trials_and_the_study_ends_normally(tmp_path, fake_server, questions_file):
    models = ModelFlags(model=fake_server.model, api_base=(fake_server.url,))
    common = {"benchmark": "jsonl", "models": models, "data": str(questions_file), "val_size": "16",
              "test_size": "8", "formats": "text", "trials": 12, "min_batch": 4, "parallel": 1, "concurrency": 4,
              "tracking": False}  # fmt: skip
    for limit, flag in (({"max_tokens": 3000}, "--max-tokens"), ({"time_budget": "1s"}, "--time-budget"),
                        ({"max_calls": 20}, "--max-calls")):  # fmt: skip
        run_dir = tmp_path / flag.strip("-")
        cfg = study_config(run_dir=run_dir, **common, **limit)
        summary = optimize(cfg, models, cache=False)
        assert summary["stopped_reason"] and flag in summary["stopped_reason"], (flag, summary["stopped_reason"])
        assert summary["n_trials"] < 12 and summary["best_test"] is not None  # then the test, as usual
        assert summary["trials_requested"] == 12


def test_time_budget_values():
    assert parse_duration("90") == 90 and parse_duration("90s") == 90 and parse_duration("30m") == 1800
    assert parse_duration("1h30m") == 5400 and parse_duration("0.5h") == 1800
    for bad in ("soon", "", "0", "-5m", "5d"):
        with pytest.raises(UserError, match="--time-budget"):
            parse_duration(bad)


def test_a_run_config_prices_its_aliases(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        "models:\n  default:\n    endpoints: [{api_base: 'http://127.0.0.1:9/v1', model: m}]\n"
        "    price: {input: 0.15, output: 0.6}\n"
    )
    assert ModelFlags(config=path).prices() == {"default": (0.15, 0.6)}
    path.write_text(
        "models:\n  default:\n    endpoints: [{api_base: 'http://127.0.0.1:9/v1', model: m}]\n    price: {input: -1}\n"
    )
    with pytest.raises(UserError, match="price"):
        ModelFlags(config=path).prices()


def test_a_resumed_study_continues_the_progress_bar(tmp_path, fake_server, questions_file):
    from agentsearch.cli import _StudyProgress

    models = ModelFlags(model=fake_server.model, api_base=(fake_server.url,))
    common = {"benchmark": "jsonl", "models": models, "run_dir": tmp_path, "study": "again",
              "data": str(questions_file), "val_size": "8", "test_size": "8", "formats": "text", "min_batch": 4,
              "parallel": 1, "concurrency": 4, "tracking": False}  # fmt: skip
    optimize(study_config(trials=3, **common), models, cache=False)
    progress = _StudyProgress(5)
    seen = []
    progress_resumed = progress.study_resumed

    def spy(so_far):
        seen.append(so_far)
        progress_resumed(so_far)

    progress.study_resumed = spy
    with progress:
        optimize(study_config(trials=5, **common), models, cache=False, observer=progress)
    assert [s.finished for s in seen] == [3]
    task = progress.bar.tasks[0]
    assert (task.completed, task.total) == (5, 5)  # not "2/5"


def test_a_finished_study_projects_nothing(tmp_path, fake_server, questions_file):
    models = ModelFlags(model=fake_server.model, api_base=(fake_server.url,))
    common = {"benchmark": "jsonl", "models": models, "run_dir": tmp_path, "study": "done",
              "data": str(questions_file), "val_size": "8", "test_size": "8", "formats": "text", "min_batch": 4,
              "parallel": 1, "concurrency": 4, "tracking": False, "trials": 3}  # fmt: skip
    first: list[str] = []
    optimize(study_config(**common), models, cache=False, announce=first.append)
    again: list[str] = []
    optimize(study_config(**common), models, cache=False, announce=again.append)
    assert any(line.startswith("projected:") for line in first)
    assert not any("projected" in line for line in again), again
    assert any("3 trials finished, 0 to go" in line for line in again)
