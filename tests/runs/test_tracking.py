"""MlflowTracker against a real (temporary) SQLite MLflow store; offline."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from agentsearch.runs.tracking import (
    KEY_METRICS,
    KEY_TAGS,
    MAX_PARAM_LEN,
    MlflowTracker,
    default_tracking_uri,
    flatten,
    redact,
)
from agentsearch.search_space.graph import AgentGraph

SECRET = "sk-THIS-IS-A-SECRET-123"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory) -> MlflowTracker:
    # One store for the module: creating/migrating a fresh SQLite store takes seconds.
    return MlflowTracker(default_tracking_uri(tmp_path_factory.mktemp("run")))


@pytest.fixture
def graph() -> AgentGraph:
    return AgentGraph.single("cot", name="x")


def records(n: int) -> list[dict]:
    return [
        {
            "id": f"ex{i}", "question": f"What is {i}+1? " + "long " * 1000, "gold": str(i + 1),
            "prediction": str(i + 1 if i % 2 else i), "correct": bool(i % 2), "prompt_tokens": 10,
            "completion_tokens": 5, "calls": 1, "cached_calls": 0, "latency_s": 0.25, "attempts": 1,
            "error": None if i else "TimeoutError: boom", "reasoning": "because", "extracted": str(i),
            "no_answer": False,
        }
        for i in range(n)
    ]


def artifact_texts(tracker: MlflowTracker, run_id: str) -> dict[str, str]:
    root = Path(urlparse(tracker.client.get_run(run_id).info.artifact_uri).path)
    return {
        p.relative_to(root).as_posix(): p.read_bytes().decode("utf-8", "replace")
        for p in root.rglob("*") if p.is_file()
    }


def assert_no_secret(tracker: MlflowTracker, run_id: str) -> None:
    run = tracker.client.get_run(run_id)
    for k, v in {**run.data.params, **run.data.tags}.items():
        assert "api_key" not in k.lower() and SECRET not in k and SECRET not in v, k
    for name, text in artifact_texts(tracker, run_id).items():
        assert SECRET not in text, name


# -- helpers ----------------------------------------------------------------------------------


def test_default_tracking_uri_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(Path("runs/r1"))
    assert uri == f"sqlite:///{tmp_path.resolve()}/runs/r1/mlflow.db"
    assert uri.startswith("sqlite:////")


def test_tracker_uri_and_artifact_root_are_absolute(tracker):
    assert tracker.tracking_uri.startswith("sqlite:////")
    db = Path(tracker.tracking_uri.removeprefix("sqlite:///"))
    assert db.is_absolute() and db.exists()
    assert tracker.artifact_root == db.parent / "mlartifacts"
    exp = tracker.client.get_experiment(tracker.experiment_id)
    assert exp.name == "agentsearch"
    assert exp.artifact_location == tracker.artifact_root.as_uri()
    # a second tracker on the same store reuses the experiment
    assert MlflowTracker(tracker.tracking_uri).experiment_id == tracker.experiment_id


def test_flatten():
    flat = flatten({"a": {"b": {"c": 1}}, "l": [1, "x"], "t": (2,), "n": None, "e": {}, "p": Path("/x")})
    assert flat == {"a.b.c": "1", "l": '[1, "x"]', "t": "[2]", "n": "None", "e": "{}", "p": "/x"}
    assert flatten({"k": 1}, prefix="budget.") == {"budget.k": "1"}
    long = flatten({"s": "y" * 10_000})["s"]
    assert len(long) == MAX_PARAM_LEN and long.endswith("...")


def test_redact():
    cfg = {
        "api_key": SECRET, "OPENAI_API_KEY": SECRET, "apikey": SECRET, "key": SECRET,
        "client_secret": SECRET, "hf_token": SECRET, "password": SECRET,
        "lm": {"model": "m", "max_tokens": 256, "headers": {"Authorization": f"Bearer {SECRET}"}},
        "models": [{"alias": "a", "api_key": SECRET}],
        "tokens_per_question": 3.0, "key_points": 2, "monkey": 1,
    }
    out = redact(cfg)
    assert out == {
        "lm": {"model": "m", "max_tokens": 256, "headers": {}},
        "models": [{"alias": "a"}],
        "tokens_per_question": 3.0, "key_points": 2, "monkey": 1,
    }
    assert SECRET not in json.dumps(out)
    assert cfg["api_key"] == SECRET  # input untouched


def test_import_does_not_import_mlflow():
    code = "import agentsearch.runs.tracking, sys; assert 'mlflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# -- studies and trials -----------------------------------------------------------------------


def test_study_and_complete_trial(tracker, graph):
    config = {"lm": {"model": "qwen", "api_key": SECRET, "temperature": 0.0}, "seeds": [1, 2]}
    space = {"ops": ["cot", "predict"], "auth": {"api_key": SECRET}}
    parent = tracker.start_study("study-a", config, space, {"trials": 20, "max_cost": 1.5})

    run = tracker.client.get_run(parent)
    assert run.info.run_name == "study-a" and run.info.status == "RUNNING"
    assert run.data.tags["agentsearch.study"] == "study-a"
    assert run.data.tags["agentsearch.kind"] == "study"
    assert run.data.params["lm.model"] == "qwen"
    assert run.data.params["seeds"] == "[1, 2]"
    assert run.data.params["budget.trials"] == "20"
    space_logged = json.loads(artifact_texts(tracker, parent)["search_space.json"])
    assert space_logged == {"ops": ["cot", "predict"], "auth": {}}

    started = time.time() - 30.0
    child = tracker.log_trial(
        parent, 3, graph=graph, params={"op": "cot", "lm": {"temperature": 0.7, "api_key": SECRET}},
        state="COMPLETE",
        metrics={"val_score": 0.5, "tokens_per_question": 15.0, "n_examples": 4, "skip": None,
                 "nan": float("nan"), "n_errors": 1.0},
        records=records(4), origin="baseline:cot", start_time=started, end_time=started + 5.5,
    )
    run = tracker.client.get_run(child)
    assert run.info.run_name == "study-a/trial-3" and run.info.status == "FINISHED"
    # the run lasts as long as the trial ran (5.5 s, 30 s ago), not as long as logging it took
    assert run.info.start_time == int(started * 1000)
    assert run.info.end_time - run.info.start_time == 5500
    tags = run.data.tags
    assert tags["mlflow.parentRunId"] == parent
    assert tags["agentsearch.study"] == "study-a"
    assert tags["agentsearch.trial"] == "3"
    assert tags["agentsearch.state"] == "COMPLETE"
    assert tags["agentsearch.origin"] == "baseline:cot"
    assert tags["agentsearch.config_hash"] == graph.config_hash
    assert tags["agentsearch.graph"] == graph.summary()
    assert "agentsearch.reason" not in tags
    assert run.data.params == {
        "op": "cot", "lm.temperature": "0.7", "graph.name": "x", "graph.hash": graph.config_hash,
        "graph.nodes": "1", "graph.formats": "text",
    }
    # errors: the stable name of the failed-example count (a column of the runs table)
    assert run.data.metrics == {
        "val_score": 0.5, "tokens_per_question": 15.0, "n_examples": 4.0, "n_errors": 1.0, "errors": 1.0,
    }

    files = artifact_texts(tracker, child)
    assert {"graph.yaml", "graph.png", "predictions.json"} <= set(files)
    assert AgentGraph.from_text(files["graph.yaml"]) == graph
    table = json.loads(files["predictions.json"])
    assert table["columns"] == [
        "id", "question", "gold", "prediction", "extracted", "correct", "no_answer", "reasoning", "calls", "tokens",
        "latency_s", "error", "detail",
    ]
    assert len(table["data"]) == 4
    row = dict(zip(table["columns"], table["data"][0], strict=True))
    assert row["id"] == "ex0" and row["tokens"] == 15 and row["error"].startswith("TimeoutError")
    assert row["extracted"] == "0" and row["reasoning"] == "because" and row["no_answer"] is False
    assert len(row["question"]) <= 2000

    assert [r.info.run_id for r in tracker.child_runs(parent)] == [child]
    assert_no_secret(tracker, parent)
    assert_no_secret(tracker, child)


def test_pruned_and_failed_trials(tracker, graph):
    parent = tracker.start_study("study-b", {}, [], {})
    pruned = tracker.log_trial(
        parent, 0, graph=graph, params={"op": "cot"}, state="PRUNED",
        metrics={"val_score": 0.1, "pruned_step": 2}, records=records(2), reason="pruned at step 2",
        origin="tpe",
    )
    failed = tracker.log_trial(
        parent, 1, graph=graph, params={"op": "cot"}, state="FAIL", metrics={}, reason="GraphError: bad",
    )
    runs = {r.info.run_id: r for r in tracker.child_runs(parent)}
    assert list(runs) == [pruned, failed]
    assert runs[pruned].info.status == "FINISHED"
    assert runs[pruned].data.tags["agentsearch.state"] == "PRUNED"
    assert runs[pruned].data.tags["agentsearch.reason"] == "pruned at step 2"
    assert runs[pruned].data.metrics["pruned_step"] == 2
    assert runs[failed].info.status == "FAILED"
    assert runs[failed].data.tags["agentsearch.state"] == "FAIL"
    assert runs[failed].data.tags["agentsearch.reason"] == "GraphError: bad"
    assert "predictions.json" not in artifact_texts(tracker, failed)


class _NoPng:
    """A graph whose drawing fails (e.g. a broken matplotlib backend)."""

    def __init__(self, graph: AgentGraph):
        self._graph = graph

    def __getattr__(self, name):
        return getattr(self._graph, name)

    def render_png(self, path):
        raise RuntimeError("no backend")


def test_png_failure_is_only_a_warning(tracker, graph, caplog):
    parent = tracker.start_study("study-c", {}, {}, {})
    with caplog.at_level(logging.WARNING, logger="agentsearch.runs.tracking"):
        child = tracker.log_trial(
            parent, 0, graph=_NoPng(graph), params={}, state="COMPLETE", metrics={"v": 1}
        )
    assert "could not render graph" in caplog.text
    files = artifact_texts(tracker, child)
    assert "graph.yaml" in files and "graph.png" not in files
    assert tracker.client.get_run(child).info.status == "FINISHED"


def test_best_metrics_and_finish(tracker):
    parent = tracker.start_study("study-d", {}, {}, {})
    for step, value in [(0, 0.2), (3, 0.5), (7, 0.6)]:
        tracker.log_best(parent, value, step)
    tracker.log_metrics(parent, {"n_complete": 8, "bad": None}, step=8)
    tracker.log_artifact_text(parent, "hello", "notes/readme.txt")
    tracker.finish_study(
        parent, summary={"best_value": 0.6, "n_trials": 8, "best": {"name": "x", "api_key": SECRET},
                         "usage": {"qwen": {"calls": 12}}},
    )
    history = tracker.client.get_metric_history(parent, "best_val_score")
    assert [(m.step, m.value) for m in history] == [(0, 0.2), (3, 0.5), (7, 0.6)]
    run = tracker.client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["final.best_value"] == 0.6
    assert run.data.metrics["final.usage.qwen.calls"] == 12
    assert run.data.metrics["n_complete"] == 8 and "bad" not in run.data.metrics
    files = artifact_texts(tracker, parent)
    assert json.loads(files["summary.json"])["best"] == {"name": "x"}
    assert files["notes/readme.txt"] == "hello"
    assert_no_secret(tracker, parent)


def test_resume_reopens_the_same_parent(tracker, graph, caplog):
    config = {"seed": 1, "lm": {"model": "qwen"}}
    parent = tracker.start_study("study-e", config, {}, {"trials": 10})
    tracker.log_trial(parent, 0, graph=graph, params={}, state="COMPLETE", metrics={"val_score": 0.3})
    tracker.finish_study(parent, status="KILLED")
    assert tracker.client.get_run(parent).info.status == "KILLED"

    with caplog.at_level(logging.WARNING, logger="agentsearch.runs.tracking"):
        again = tracker.start_study(
            "study-e", {**config, "seed": 2, "extra": "new"}, {}, {"trials": 10}, resume_run_id=parent
        )
    assert again == parent
    run = tracker.client.get_run(parent)
    assert run.info.status == "RUNNING"
    assert run.data.params["seed"] == "1"  # MLflow params are immutable: the first value stays
    assert run.data.params["extra"] == "new"
    # issue 12: resuming must not print MLflow warnings; this session's value is kept as a tag instead
    assert run.data.tags["agentsearch.param.seed"] == "2" and not caplog.records
    tracker.log_trial(parent, 1, graph=graph, params={}, state="COMPLETE", metrics={"val_score": 0.4})
    assert [r.data.tags["agentsearch.trial"] for r in tracker.child_runs(parent)] == ["0", "1"]
    studies = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string="tags.`agentsearch.study` = 'study-e' AND tags.`agentsearch.kind` = 'study'",
    )
    assert [r.info.run_id for r in studies] == [parent]


def test_concurrent_trials(tracker, graph):
    parent = tracker.start_study("study-f", {}, {}, {})
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            tracker.log_trial(
                parent, i, graph=graph, params={"i": i}, state="COMPLETE", metrics={"val_score": i / 8},
                records=records(3), origin="tpe",
            )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    runs = tracker.child_runs(parent)
    assert [r.data.tags["agentsearch.trial"] for r in runs] == [str(i) for i in range(8)]
    assert all(r.info.status == "FINISHED" for r in runs)
    assert [r.data.metrics["val_score"] for r in runs] == [i / 8 for i in range(8)]
    for r in runs:
        names = {a.path for a in tracker.client.list_artifacts(r.info.run_id)}
        assert {"graph.yaml", "graph.png", "predictions.json"} <= names


# -- UI server --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_ui_command_starts_and_serves(tracker, tmp_path):
    parent = tracker.start_study("study-ui", {}, {}, {})
    port = _free_port()
    cmd = tracker.ui_command(port=port)
    assert cmd[:4] == [sys.executable, "-m", "mlflow", "server"]
    assert cmd[cmd.index("--backend-store-uri") + 1] == tracker.tracking_uri
    assert cmd[cmd.index("--artifacts-destination") + 1] == tracker.artifact_root.as_uri()

    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    logfile = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(cmd, env=env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "mlflow server did not come up"
            time.sleep(0.5)

        req = urllib.request.Request(
            f"{base}/api/2.0/mlflow/experiments/search", data=json.dumps({"max_results": 10}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            names = [e["name"] for e in json.load(resp)["experiments"]]
        assert "agentsearch" in names
        listing = f"{base}/api/2.0/mlflow/artifacts/list?run_id={parent}"
        with urllib.request.urlopen(listing, timeout=10) as resp:
            assert "search_space.json" in [f["path"] for f in json.load(resp)["files"]]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server spawns uvicorn and a job runner
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        try:  # whatever of the group is still there
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        logfile.close()


# -- the study's outcome: tags, test scores, plots, the runs view ----------------------------


def test_best_and_pareto_tags_and_test_scores_follow_the_study(tracker):
    parent = tracker.start_study("study-tags", {}, {}, {})
    graphs = [AgentGraph.single("cot", name="a"), AgentGraph.single("predict", name="b"),
              AgentGraph.single("cot", name="c", temperature=0.5)]
    for i, g in enumerate(graphs):
        tracker.log_trial(parent, i, graph=g, params={}, state="COMPLETE", metrics={"val_score": i / 4})
    tracker.log_trial(parent, 3, graph=graphs[0], params={}, state="PRUNED", metrics={"val_score": 0.0})
    tracker.mark_trials(parent, best=[1], pareto=[1, 2], test_scores={graphs[1].config_hash: 0.7})

    def view() -> dict[int, tuple[dict, dict]]:
        return {
            int(r.data.tags["agentsearch.trial"]): (r.data.tags, r.data.metrics) for r in tracker.child_runs(parent)
        }

    runs = view()
    assert [n for n, (tags, _) in runs.items() if tags.get("agentsearch.best") == "true"] == [1]
    assert [n for n, (tags, _) in runs.items() if tags.get("agentsearch.pareto") == "true"] == [1, 2]
    assert runs[1][1]["test_score"] == 0.7 and "test_score" not in runs[0][1]
    assert runs[3][0]["agentsearch.state"] == "PRUNED"
    assert tracker.client.get_run(parent).data.tags["agentsearch.best_trial"] == "1"

    # a later session selects another trial: the tags move, they are not left on the old one
    tracker.mark_trials(parent, best=[2], pareto=[])
    runs = view()
    assert [n for n, (tags, _) in runs.items() if "agentsearch.best" in tags] == [2]
    assert not any("agentsearch.pareto" in tags for tags, _ in runs.values())


def _optuna_study(n_complete: int, directions: tuple[str, ...] = ("maximize",)):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(directions), sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(n_complete + 1):
        trial = study.ask()
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_categorical("op", ["cot", "predict"])
        if len(directions) == 1:
            for step in (4, 8):
                trial.report(x * step / 8, step)
        if i == n_complete:  # one pruned trial as well
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, [x + (y == "cot"), 100 * x][: len(directions)])
    return study


def test_study_plots_are_logged_in_the_study_run(tracker):
    import optuna

    parent = tracker.start_study("study-plots", {}, {}, {})
    study = _optuna_study(6)
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        study.set_metric_names(["val accuracy"])
    logged = tracker.log_study_plots(parent, study)
    assert logged == ["plots/optimization_history.png", "plots/param_importances.png", "plots/intermediate_values.png"]
    files = {a.path for a in tracker.client.list_artifacts(parent, "plots")}
    assert files == set(logged)
    root = Path(urlparse(tracker.client.get_run(parent).info.artifact_uri).path)
    assert all((root / f).read_bytes()[:4] == b"\x89PNG" and (root / f).stat().st_size > 5000 for f in logged)

    two = tracker.start_study("study-pareto", {}, {}, {})
    assert "plots/pareto_front.png" in tracker.log_study_plots(two, _optuna_study(5, ("maximize", "minimize")))


def test_impossible_plots_are_skipped_with_a_log_line(tracker, caplog):
    parent = tracker.start_study("study-early", {}, {}, {})
    with caplog.at_level(logging.INFO, logger="agentsearch.runs.tracking"):
        logged = tracker.log_study_plots(parent, _optuna_study(1))  # importances need 2 complete trials
    assert "plots/param_importances.png" not in logged and "plots/optimization_history.png" in logged
    assert "no param importances plot yet (1 complete trial(s); importances need 2)" in caplog.text
    # nothing complete yet: only the pruned trial's intermediate values can be drawn
    with caplog.at_level(logging.INFO, logger="agentsearch.runs.tracking"):
        assert tracker.log_study_plots(parent, _optuna_study(0)) == ["plots/intermediate_values.png"]
    assert "no optimization history plot yet (no complete trial)" in caplog.text


def test_runs_view_url_is_a_shared_view_of_the_study_trials(tracker):
    parent = tracker.start_study("study-view", {}, {}, {})
    url = tracker.runs_view_url("http://127.0.0.1:5000/", "study-view")
    prefix = f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}/runs?workflowType=machine_learning"
    assert url.startswith(prefix + "&viewStateShareKey=")
    key = url.rsplit("=", 1)[1]
    state = json.loads(tracker.client.get_experiment(tracker.experiment_id).tags[f"mlflow.sharedViewState.{key}"])
    assert state["selectedColumns"] == [f"metrics.`{m}`" for m in KEY_METRICS] + [f"tags.`{t}`" for t in KEY_TAGS]
    assert state["orderByKey"] == "metrics.`val_score`" and state["orderByAsc"] is False
    # the filter picks exactly the study's trials
    tracker.log_trial(parent, 0, graph=None, params={}, state="COMPLETE", metrics={"val_score": 1.0})
    found = tracker.client.search_runs([tracker.experiment_id], filter_string=state["searchFilter"])
    assert [r.info.run_name for r in found] == ["study-view/trial-0"]
    assert tracker.study_run("study-view") == parent and "study-view" in tracker.study_names()
    assert tracker.study_run_url("http://h:1", parent) == (
        f"http://h:1/#/experiments/{tracker.experiment_id}/runs/{parent}/artifacts/plots/optimization_history.png"
        "?workflowType=machine_learning"
    )


def test_a_trace_that_cannot_start_leaves_the_example_untraced(tracker, monkeypatch, caplog):
    import mlflow

    def broken(*args, **kwargs):
        raise RuntimeError("tracing backend down")

    monkeypatch.setattr(mlflow, "start_span", broken)
    ran = []
    with tracker.tracer(1) as tracer, caplog.at_level(logging.WARNING, logger="agentsearch.runs.tracking"):
        with tracer.example("trial:0", "s/trial-0", {"question": "q"}, {}) as outcome:
            ran.append(outcome)
    assert ran == [None] and tracer.take("trial:0") == []
    assert "could not start a trace for s/trial-0: tracing backend down" in caplog.text
