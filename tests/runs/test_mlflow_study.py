"""A whole study against the fake server, as MLflow shows it: run names, real durations, key metrics, best tag,
test scores, Optuna's plots, and traces of the LM calls (linked to the trial runs, the study run, no secrets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentsearch.runs.study import StudyConfig, run_study
from tests.conftest import QUESTIONS

SECRET = "sk-TRACE-SECRET-987"


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One traced study (6 trials, the first validation example of each traced, the whole test traced)."""
    from agentsearch.evaluators.llm.lm import Endpoint
    from agentsearch.evaluators.llm.pool import build_lm
    from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy

    tmp = tmp_path_factory.mktemp("traced")
    data = tmp / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n" for q, a in QUESTIONS.items()))
    cfg = StudyConfig(
        study="traced", benchmark="jsonl", data=str(data), seed=3, val_size=8, test_size=4, trials=6, parallel=2,
        concurrency=4, min_batch=4, run_dir=tmp / "runs", trace_examples=1, baseline_names=("direct", "cot"),
    )  # fmt: skip
    with FakeOpenAIServer(ReasoningPolicy(QUESTIONS), latency=0.0) as server:
        lm = build_lm(Endpoint(model=server.model, api_base=server.url, api_key=SECRET), cache=False, num_retries=0)
        summary = run_study(cfg, {"default": lm})

    from agentsearch.runs.tracking import MlflowTracker

    tracker = MlflowTracker(summary["tracking_uri"])
    parent = tracker.study_run("traced")
    return cfg, summary, tracker, parent


def _traces(tracker, run_id: str | None = None) -> list:
    return tracker.client.search_traces(locations=[tracker.experiment_id], run_id=run_id, max_results=500)


def test_trial_runs_are_named_by_study_and_last_as_long_as_the_trial(study):
    import optuna

    cfg, summary, tracker, parent = study
    runs = tracker.child_runs(parent)
    assert [r.info.run_name for r in runs] == [f"traced/trial-{i}" for i in range(len(runs))]
    trials = {t.number: t for t in optuna.load_study(study_name="traced", storage=f"sqlite:///{cfg.run_dir}/optuna.db")
              .get_trials()}  # fmt: skip
    for run in runs:
        trial = trials[int(run.data.tags["agentsearch.trial"])]
        # (Optuna keeps naive local times) the run starts when the trial did and ends when its evaluation did:
        # before Optuna was told (which waits for the main thread, busy logging other trials), never when MLflow
        # logging finished
        start = trial.datetime_start.timestamp() * 1000
        told = trial.datetime_complete.timestamp() * 1000
        assert abs(run.info.start_time - start) < 1500, run.info.run_name
        assert run.info.start_time < run.info.end_time <= told + 50, run.info.run_name
        if run.data.tags["agentsearch.state"] == "COMPLETE":
            assert {"val_score", "tokens_per_question", "calls", "errors"} <= set(run.data.metrics)


def test_best_trial_is_tagged_and_tested_trials_carry_their_test_score(study):
    _, summary, tracker, parent = study
    runs = {int(r.data.tags["agentsearch.trial"]): r for r in tracker.child_runs(parent)}
    best = [n for n, r in runs.items() if r.data.tags.get("agentsearch.best") == "true"]
    assert best == [summary["best_trial"]]
    assert runs[summary["best_trial"]].data.metrics["test_score"] == summary["best_test"]
    tested = {n for n, r in runs.items() if "test_score" in r.data.metrics}
    assert summary["best_trial"] in tested and len(tested) >= 2  # the best and the baselines
    study_run = tracker.client.get_run(parent)
    assert study_run.data.metrics["val_score"] == summary["best_val"]
    assert study_run.data.metrics["test_score"] == summary["best_test"]


def test_optuna_plots_are_in_the_study_run_and_objectives_are_named(study):
    import optuna

    cfg, _, tracker, parent = study
    plots = {a.path for a in tracker.client.list_artifacts(parent, "plots")}
    assert {"plots/optimization_history.png", "plots/param_importances.png", "plots/intermediate_values.png"} <= plots
    assert optuna.load_study(study_name="traced", storage=f"sqlite:///{cfg.run_dir}/optuna.db").metric_names == [
        "val accuracy"
    ]


def test_traces_of_sampled_examples_and_of_the_test_are_linked_and_hold_no_secret(study):
    cfg, summary, tracker, parent = study
    for run in tracker.child_runs(parent):
        if run.data.metrics.get("n_examples", 0) == 0 or run.data.tags.get("agentsearch.reason", "").startswith("dup"):
            continue  # not run (over budget) or a reused result: nothing was called
        traces = _traces(tracker, run.info.run_id)
        val = [t for t in traces if t.info.tags.get("agentsearch.split") == "val"]
        assert len(val) == cfg.trace_examples, run.info.run_name  # the bounded sample, not every example
        trace = tracker.client.get_trace(val[0].info.trace_id)
        names = [s.name for s in trace.data.spans]
        assert names[0] == run.info.run_name and any(n.endswith(".__call__") for n in names), names  # the LM calls
        root = trace.data.spans[0]
        assert root.inputs["question"] in QUESTIONS
        assert set(root.outputs) >= {"prediction", "extracted", "correct"}
    test = [t for t in _traces(tracker, parent) if t.info.tags.get("agentsearch.split") == "test"]
    tested_agents = {t.info.tags["agentsearch.agent"] for t in test}
    assert "baseline:cot" in tested_agents and len(test) == len(tested_agents) * 4  # every test question
    best_run = next(r for r in tracker.child_runs(parent) if r.data.tags.get("agentsearch.best") == "true")
    assert any(t.info.tags.get("agentsearch.split") == "test" for t in _traces(tracker, best_run.info.run_id))

    for t in _traces(tracker):
        text = json.dumps(tracker.client.get_trace(t.info.trace_id).to_dict(), default=str)
        assert SECRET not in text and "api_key" not in text


def test_no_traces_when_disabled(tmp_path, fake_server, questions_file):
    from tests.conftest import make_lm

    cfg = StudyConfig(
        study="quiet", benchmark="jsonl", data=str(questions_file), seed=1, val_size=4, test_size=2, trials=2,
        parallel=1, concurrency=2, min_batch=4, run_dir=tmp_path / "runs", trace_examples=0,
        baseline_names=("direct",),
    )  # fmt: skip
    summary = run_study(cfg, {"default": make_lm(fake_server)})
    from agentsearch.runs.tracking import MlflowTracker

    tracker = MlflowTracker(summary["tracking_uri"])
    assert _traces(tracker) == []
    assert Path(summary["export_dir"]).exists()
