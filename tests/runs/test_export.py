"""The export: the reproduce command, the files written (agent.py, the MLflow model), and the MLflow model
loading from a tracking store with no key stored anywhere."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from agentsearch.optimizers.base import FinishedTrial
from agentsearch.runs.export import export_study, reproduce_command
from agentsearch.search_space.baselines import baseline_graphs
from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy
from agentsearch.testing.operators import graph_for

QUESTION = "What is 17 * 23?"
KEY = "sk-test-secret-0123456789"  # in the environment while exporting and loading; must be stored nowhere

CONFIG = {"benchmark": "gsm8k", "seed": 1, "val_size": 16, "test_size": 16, "run_dir": "/r", "study": "s"}


def test_reproduce_is_the_real_command(tmp_path):
    endpoint = {"model": "fake-model", "api_base": ["http://h:1/v1"], "config": None}
    cmd = shlex.split(reproduce_command({**CONFIG, "model_flags": endpoint}, tmp_path / "best.yaml"))
    assert cmd[cmd.index("--model") + 1] == "fake-model" and cmd[cmd.index("--api-base") + 1] == "http://h:1/v1"
    run_config = tmp_path / "models.yaml"
    flags = {"model": "local", "api_base": [], "config": str(run_config)}
    cmd = shlex.split(reproduce_command({**CONFIG, "data": "d.jsonl", "model_flags": flags}, tmp_path / "best.yaml"))
    assert cmd[cmd.index("--config") + 1] == str(run_config) and "--model" not in cmd  # the run config, kept
    assert cmd[cmd.index("--data") + 1] == "d.jsonl" and cmd[cmd.index("--run-dir") + 1] == "/r"
    cmd = shlex.split(reproduce_command({**CONFIG, "model_flags": {"model": "local"}}, tmp_path / "best.yaml"))
    assert cmd[cmd.index("--model") + 1] == "local" and "MODEL" not in cmd and "URL" not in cmd


def trial(graph, number=3) -> FinishedTrial:
    return FinishedTrial(number, "COMPLETE", graph, {}, [0.5], {"val_score": 0.5}, "optuna")


@pytest.fixture
def server():
    policy = ReasoningPolicy({QUESTION: "391"})
    policy.p_direct = policy.p_reasoning = 1.0
    with FakeOpenAIServer(policy, latency=0.0) as srv:
        yield srv


def test_export_writes_agent_py_and_an_mlflow_model_that_loads(tmp_path, server, monkeypatch):
    import mlflow

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    flags = {"model": server.model, "api_base": [server.url], "config": None}
    config = {**CONFIG, "answer_kind": "number", "model_flags": flags}
    summary = export_study(tmp_path / "export", [trial(baseline_graphs()["cot_sc5"])], config, {})
    files = summary["files"]
    assert summary["agent_error"] is None and summary["mlflow_model_error"] is None
    assert Path(files["agent"]).name == "agent.py" and (tmp_path / "export" / "requirements.txt").exists()
    assert json.loads((tmp_path / "export" / "summary.json").read_text())["files"]["agent"] == files["agent"]

    # logged under a run as study.py logs it; loaded back from the tracking store by its runs:/ URI
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment).info.run_id
    client.log_artifacts(run, files["mlflow_model"], "agent_model")
    mlflow.set_tracking_uri(uri)
    try:
        model = mlflow.pyfunc.load_model(f"runs:/{run}/agent_model")
    finally:
        mlflow.set_tracking_uri(None)
    assert [p["answer"] for p in model.predict({"question": [QUESTION]})] == ["391"]
    assert server.n_requests == 5  # self-consistency over 5 samples: the real agent ran

    # another endpoint at load time; no model at all is a clear error
    other = mlflow.pyfunc.load_model(files["mlflow_model"], model_config={"model": "x", "api_base": server.url})
    assert other.predict({"question": QUESTION})[0]["answer"] == "391"
    with pytest.raises(ValueError, match="no model: load with model_config"):
        mlflow.pyfunc.load_model(files["mlflow_model"], model_config={"model": None})

    stored = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" for p in stored) and any(p.name == "agent.py" for p in stored)
    leaked = [str(p) for p in stored if KEY.encode() in p.read_bytes()]
    assert not leaked, f"the API key was stored in {leaked}"


def test_an_agent_that_cannot_be_exported_is_said_and_the_configs_still_are(tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    (out / "agent.py").write_text("# an earlier export's agent\n")
    summary = export_study(out, [trial(graph_for("experience"))], {**CONFIG, "model_flags": {}}, {})
    assert "its memory is not built" in summary["agent_error"]
    assert summary["files"]["agent"] is None and summary["files"]["mlflow_model"] is None
    assert not (out / "agent.py").exists()  # never a stale agent.py beside a new best.yaml
    assert (out / "best.yaml").exists() and (out / "program.json").exists()
