"""The search loop and whole studies against the fake server (real HTTP, real Optuna, real MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentsearch.evaluators.benchmarks import Example
from agentsearch.optimizers.proposal import StrategyOptimizer
from agentsearch.optimizers.samplers import SamplerStrategy
from agentsearch.optimizers.store import open_storage
from agentsearch.runs.loop import SearchLoop, StudyStopped, minibatch_schedule
from agentsearch.runs.study import StudyConfig, run_study
from agentsearch.search_space.baselines import baseline_graphs
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.space import SearchSpace
from tests.conftest import QUESTIONS, make_lm


def test_minibatch_schedule():
    assert minibatch_schedule(50, 8) == [8, 16, 32, 50]
    assert minibatch_schedule(8, 8) == [8]
    assert minibatch_schedule(5, 8) == [5]
    assert minibatch_schedule(0, 8) == []


def _examples(n: int) -> list[Example]:
    return [Example(id=f"q{i}", question=q, answer=a) for i, (q, a) in enumerate(list(QUESTIONS.items())[:n])]


def _metric(example: Example, prediction: str) -> bool:
    return prediction.strip() == example.answer


def _loop(tmp_path: Path, server, n_trials: int, pruner: str = "sha", space: SearchSpace | None = None, **kw):
    from agentsearch.evaluators.operators.compile import compile_graph

    opt = StrategyOptimizer(
        space or SearchSpace(),
        strategy=SamplerStrategy("tpe"),
        study_name="t",
        storage=open_storage(None, tmp_path),
        sampler="tpe",
        pruner=pruner,
        seed=0,
        min_resource=4,
        max_resource=16,
        startup_trials=3,
        baselines=baseline_graphs(),
    )
    lms = {"default": make_lm(server, cache=False, num_retries=0)}
    loop = SearchLoop(
        opt,
        lambda g: compile_graph(g, lms=lms),
        _metric,
        _examples(16),
        n_trials=n_trials,
        min_batch=4,
        concurrency=4,
        **kw,
    )
    return opt, loop


def test_loop_runs_baselines_first_and_reaches_the_trial_count(tmp_path, fake_server):
    fake_server.policy.p_direct = 0.1  # far below cot's 0.6: 16 questions separate them whatever the draws
    opt, loop = _loop(tmp_path, fake_server, n_trials=10, parallel=2)
    stats = loop.run()
    trials = opt.trials()
    assert opt.n_finished() == 10 and stats.finished == 10
    origins = [t.origin for t in trials[:4]]
    assert origins == [f"baseline:{n}" for n in baseline_graphs()]
    base = {t.origin: t.metrics["val_score"] for t in trials[:4]}
    # the fake server rewards reasoning and sampling: cot beats direct, self-consistency beats cot
    assert base["baseline:cot"] > base["baseline:direct"]
    assert base["baseline:cot_sc5"] >= base["baseline:cot"]
    assert all(t.state in ("COMPLETE", "PRUNED") for t in trials)
    assert stats.calls > 0 and stats.tokens > 0


def test_pruning_stops_weak_candidates_early(tmp_path, fake_server):
    fake_server.policy.p_direct = 0.0
    space = SearchSpace.from_levels("module")
    opt, loop = _loop(tmp_path, fake_server, n_trials=14, space=space)
    loop.run()
    pruned = [t for t in opt.trials() if t.state == "PRUNED"]
    assert pruned, "some weak candidates are pruned on small minibatches"
    assert all(t.metrics["n_examples"] < 16 for t in pruned)
    assert all(not t.origin.startswith("baseline:") for t in pruned)


def test_endpoint_failures_fail_trials_with_reason_and_stop_cleanly(tmp_path, fake_server):
    opt, loop = _loop(tmp_path, fake_server, n_trials=10, parallel=1, max_consecutive_failures=2)
    fake_server.set_failure_rate(1.0)
    with pytest.raises(StudyStopped, match="failed in a row"):
        loop.run()
    failed = [t for t in opt.trials() if t.state == "FAIL"]
    assert failed and all("failed after retries" in (t.reason or "") for t in failed)
    assert opt.n_finished() == 0  # no score was recorded from failed examples
    # the endpoint comes back: the study resumes and finishes, baselines included
    fake_server.set_failure_rate(0.0)
    opt2, loop2 = _loop(tmp_path, fake_server, n_trials=6)
    loop2.run()
    assert opt2.n_finished() == 6
    done = {t.origin.removesuffix(":retry") for t in opt2.trials() if t.state == "COMPLETE"}
    assert {"baseline:direct", "baseline:cot"} <= done


def test_duplicate_configs_are_not_re_evaluated(tmp_path, fake_server):
    space = SearchSpace.from_levels("prompt", instructions=("",), styles=("plain",), formats=("text",))
    opt, loop = _loop(tmp_path, fake_server, n_trials=8, space=space, parallel=1)
    loop.run()
    # a one-point space: the 4 sampled trials all rebuild the cot baseline, so none is re-evaluated
    assert loop.stats.duplicates == 4
    reused = [t for t in opt.trials() if t.number >= 4]
    assert all(t.metrics["val_score"] == opt.trials()[1].metrics["val_score"] for t in reused)


def test_full_study_tracks_tests_once_and_exports(tmp_path, fake_server, questions_file):
    cfg = StudyConfig(
        study="full",
        benchmark="jsonl",
        data=str(questions_file),
        seed=3,
        val_size=16,
        test_size=12,
        trials=8,
        parallel=2,
        concurrency=4,
        min_batch=4,
        run_dir=tmp_path / "runs",
    )
    lms = {"default": make_lm(fake_server, cache=True)}
    summary = run_study(cfg, lms)
    assert summary["n_trials"] == 8
    assert set(summary["baselines"]) == {"direct", "cot", "cot_sc5", "self_refine"}
    assert summary["best_val"] >= max(v for v in summary["baselines_val"].values() if v is not None)
    export = Path(summary["export_dir"])
    best = AgentGraph.load(export / "best.yaml")
    assert best.config_hash == json.loads((export / "summary.json").read_text())["best"]["config_hash"]
    assert (export / "program.json").exists()

    # MLflow: one parent run, one child per finished trial, with params, metrics and artifacts
    from agentsearch.runs.tracking import MlflowTracker

    tracker = MlflowTracker(summary["tracking_uri"])
    client = tracker.client
    parents = client.search_runs(
        [client.get_experiment_by_name("agentsearch").experiment_id], "tags.`agentsearch.kind` = 'study'"
    )
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = tracker.child_runs(parents[0].info.run_id)
    assert len(children) == 8
    child = children[0]
    assert child.data.params["graph.hash"] and child.data.params["graph.formats"] in ("text", "chat")
    assert "val_score" in child.data.metrics
    names = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"graph.yaml", "graph.png", "predictions.json"} <= names

    # every test score carries its CI; the report compares the best with the baselines on the same questions
    best_test = summary["test"]["best:0"]
    assert best_test["ci_low"] <= best_test["score"] <= best_test["ci_high"] and best_test["n"] == 12
    assert summary["comparisons"] and all(c["n"] == 12 and c["verdict"] for c in summary["comparisons"])
    parent_run = client.get_run(parents[0].info.run_id)
    assert "final.best_test_ci_low" in parent_run.data.metrics
    assert parent_run.data.tags.get("agentsearch.verdict") == summary["verdict"]

    # a kill between Optuna's tell and MLflow's bookkeeping: one child left RUNNING, one never logged
    client.update_run(children[1].info.run_id, status="RUNNING")
    client.delete_run(children[2].info.run_id)
    # resuming a finished study runs no new trial and no new test evaluation, and repairs MLflow (and redraws
    # the study's plots)
    import shutil
    from urllib.parse import urlparse

    plots_dir = Path(urlparse(parent_run.info.artifact_uri).path) / "plots"
    assert (plots_dir / "optimization_history.png").exists()
    shutil.rmtree(plots_dir)
    before = fake_server.n_requests
    again = run_study(cfg, lms)
    assert again["n_trials"] == 8 and again["best_test"] == summary["best_test"]
    assert fake_server.n_requests == before
    repaired = tracker.child_runs(parents[0].info.run_id)
    assert len(repaired) == 8 and all(r.info.status in ("FINISHED", "FAILED") for r in repaired)
    assert sorted(int(r.data.tags["agentsearch.trial"]) for r in repaired) == list(range(8))
    assert (plots_dir / "optimization_history.png").exists()
    assert [r.data.tags["agentsearch.trial"] for r in repaired if r.data.tags.get("agentsearch.best") == "true"] == [
        str(again["best_trial"])
    ]


def test_designs_over_the_call_budget_are_resampled_not_counted(tmp_path, fake_server):
    fake_server.policy.p_reasoning = 1.0
    space = SearchSpace.from_levels("module", max_calls_per_question=2, formats=("text",))
    opt, loop = _loop(tmp_path, fake_server, n_trials=6, space=space, max_calls_per_question=2, parallel=1)
    loop.run()
    counted = [t for t in opt.trials() if t.counts]
    assert len(counted) == 6 == opt.n_finished() and all(t.metrics["n_examples"] > 0 for t in counted)
    assert loop.stats.rejected > 0 and loop.stats.rejected == sum(t.rejected_unrun for t in opt.trials())


def test_a_space_with_nothing_under_the_call_budget_stops_with_a_clear_reason(tmp_path, fake_server):
    from agentsearch.runs.loop import StudyStopped

    space = SearchSpace.from_levels("module", solvers=("self_consistency",), formats=("text",))
    opt, loop = _loop(
        tmp_path, fake_server, n_trials=3, space=space, max_calls_per_question=2, max_consecutive_rejected=5
    )
    # the baselines run first (direct and cot fit; cot_sc5 and self_refine do not), then nothing fits
    with pytest.raises(StudyStopped, match="over --max-calls-per-question 2"):
        loop.run()


def test_a_worker_that_finishes_while_others_run_leaves_the_test_and_export_to_the_last(
    tmp_path, fake_server, questions_file, monkeypatch
):
    """Several workers on one study: one that finishes while another (alive) still runs a trial defers the
    held-out test and the export to the last one, instead of every worker repeating them; run again once
    nothing else runs, it finishes the study."""
    cfg = StudyConfig(
        study="shared", benchmark="jsonl", data=str(questions_file), val_size=8, test_size=8, trials=5,
        parallel=1, concurrency=4, min_batch=4, run_dir=tmp_path / "runs", tracking=False, formats=("text",),
        baseline_names=("cot",),
    )  # fmt: skip
    lms = {"default": make_lm(fake_server, cache=True)}
    real = StrategyOptimizer.running_elsewhere
    monkeypatch.setattr(
        StrategyOptimizer, "running_elsewhere", lambda self, before=None, alive_only=False: 1 if alive_only else 0
    )
    summary = run_study(cfg, lms)
    assert summary["deferred"] and summary["running_elsewhere"] == 1 and summary["n_trials"] == 5
    assert "other workers" in summary["message"] and not (tmp_path / "runs" / "shared" / "export").exists()
    monkeypatch.setattr(StrategyOptimizer, "running_elsewhere", real)
    done = run_study(cfg, lms)  # the last worker: nothing else runs
    assert not done.get("deferred") and done["n_trials"] == 5 and Path(done["export_dir"]).exists()
