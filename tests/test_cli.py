"""The CLI as a user meets it: subprocesses against a standalone fake OpenAI-compatible server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentsearch.optimizers.base import OVER_BUDGET
from tests.conftest import QUESTIONS

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "COLUMNS": "200"}


def cli(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "main.py", *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def bad(*args: str, timeout: float = 60) -> str:
    """Run a command that must fail on bad input: exit 2, one line on stderr, no traceback."""
    proc = cli(*args, timeout=timeout, check=False)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "word_problems.jsonl"
    with path.open("w") as fh:
        for q, a in QUESTIONS.items():
            fh.write(json.dumps({"question": q, "answer": f"Work.\n#### {a}"}) + "\n")
    return path


def fake_server_process(data_file: Path, latency: float) -> tuple[subprocess.Popen, str]:
    """The fake OpenAI server in its own process (one the test may kill), answering ``data_file``; its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentsearch.testing.fake_server",
         "--port", "0", "--latency", str(latency), "--answers", str(data_file)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    return proc, line.split()[1]


@pytest.fixture(scope="module")
def server_url(data_file) -> str:
    proc, url = fake_server_process(data_file, latency=0.005)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_help_is_fast_and_imports_nothing_heavy():
    code = (
        "import agentsearch.cli, sys; heavy = {'dspy', 'mlflow', 'optuna', 'litellm', 'torch'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    assert "optimize" in cli("--help").stdout


def test_baselines_rank_as_reasoning_predicts(tmp_path, data_file, server_url):
    cli("baselines", "--out", str(tmp_path))
    assert {p.name for p in tmp_path.iterdir()} >= {"direct.yaml", "cot.yaml", "cot_sc5.yaml", "self_refine.yaml"}
    scores = {}
    for name in ("direct", "cot", "cot_sc5"):
        out = cli(
            "evaluate",
            "--agent",
            str(tmp_path / f"{name}.yaml"),
            "--benchmark",
            "jsonl",
            "--data",
            str(data_file),
            "--split",
            "test",
            "--val-size",
            "5",
            "--test-size",
            "40",
            "--model",
            "fake-model",
            "--api-base",
            server_url,
            "--no-cache",
            "--json",
        ).stdout
        result = json.loads(out)
        assert {"score", "n", "tokens_per_question", "calls_per_question", "wall_s"} <= set(result)
        assert result["n"] == 40 and result["n_errors"] == 0
        scores[name] = result["score"]
    assert scores["direct"] < scores["cot"] < scores["cot_sc5"], scores


def test_run_prints_the_answer(tmp_path, server_url):
    cli("baselines", "--out", str(tmp_path))
    q = next(iter(QUESTIONS))
    out = cli(
        "run",
        "--agent",
        str(tmp_path / "cot_sc5.yaml"),
        "--question",
        q,
        "--model",
        "fake-model",
        "--api-base",
        server_url,
    ).stdout.strip()
    assert out.isdigit()


def test_validate(tmp_path):
    cli("baselines", "--out", str(tmp_path))
    out = cli("validate", str(tmp_path / "cot.yaml")).stdout
    assert out.startswith("ok ") and "calls/question<=1" in out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("nodes: [\n  - id: a\n", "malformed"),
        ("nodes:\n  - {id: a, op: telepathy}\n", "field 'op'"),
        ("nodes:\n  - {id: a, op: cot, params: {temperature: 9}}\n", "params.temperature"),
        ("output: a\nnodes:\n  - {id: a, op: cot, inputs: [b]}\n  - {id: b, op: cot, inputs: [a]}\n", "cycle"),
    ],
)
def test_bad_graph_files(tmp_path, text, expected):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    line = bad("validate", str(path))
    assert str(path) in line and expected in line


def test_bad_dataset_and_endpoint(tmp_path, data_file, server_url):
    cli("baselines", "--out", str(tmp_path))
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "a?", "answer": "1"}\n{"question": "b?"}\n')
    common = ["--agent", str(tmp_path / "cot.yaml"), "--model", "fake-model"]
    line = bad("evaluate", *common, "--benchmark", "jsonl", "--data", str(data), "--api-base", server_url)
    assert f"{data}:2" in line and "answer" in line
    start = time.perf_counter()
    line = bad(
        "evaluate",
        *common,
        "--benchmark",
        "jsonl",
        "--data",
        str(data_file),
        "--split",
        "test",
        "--test-size",
        "10",
        "--api-base",
        "http://127.0.0.1:9/v1",
    )
    assert "cannot connect" in line and time.perf_counter() - start < 20
    assert "--val-size" in bad(
        "evaluate",
        *common,
        "--benchmark",
        "jsonl",
        "--data",
        str(data_file),
        "--api-base",
        server_url,
        "--val-size",
        "lots",
    )
    assert "No such option" in bad("evaluate", "--bogus")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    records = bad(*common_eval(tmp_path, data_file, server_url), "--records", str(a_dir))
    assert records.startswith(f"error: --records {a_dir}: is a directory")  # before any LLM call


def common_eval(tmp_path: Path, data_file: Path, url: str) -> list[str]:
    cli("baselines", "--out", str(tmp_path / "agents"))
    return ["evaluate", "--agent", str(tmp_path / "agents" / "cot.yaml"), "--benchmark", "jsonl", "--data",
            str(data_file), "--model", "fake-model", "--api-base", url, "--split", "test", "--val-size", "4",
            "--test-size", "4"]


def test_run_names_a_failing_endpoint_in_one_line(tmp_path):
    import subprocess as sp

    cli("baselines", "--out", str(tmp_path / "agents"))
    failing = sp.Popen([sys.executable, "-m", "agentsearch.testing.fake_server",
         "--port", "0", "--failure-rate", "1.0"], cwd=ROOT,
                       env=ENV, stdout=sp.PIPE, text=True)
    try:
        url = failing.stdout.readline().split()[1]
        line = bad("run", "--agent", str(tmp_path / "agents" / "cot.yaml"), "--question", "2 + 2?", "--model",
                   "fake-model", "--api-base", url, "--call-timeout", "5")
        assert line.startswith("error: the model endpoint failed:")
        # evaluate: examples the endpoint never answered are missing, not wrong; exit 1 says so
        proc = cli("evaluate", "--agent", str(tmp_path / "agents" / "cot.yaml"), "--benchmark",
                   "reasoning_gym:chain_sum", "--split", "val", "--limit", "3", "--model", "fake-model", "--api-base",
                   url, "--no-cache", "--json", check=False, timeout=300)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["n_missing"] == 3 and summary["n"] == 3 and summary["n_correct"] == 0
        assert "error: 3 of 3 examples got no answer" in proc.stderr
    finally:
        failing.terminate()
        failing.wait(timeout=10)


def test_optimize_bad_input(tmp_path, data_file, server_url):
    common = [
        "--benchmark",
        "jsonl",
        "--data",
        str(data_file),
        "--model",
        "fake-model",
        "--api-base",
        server_url,
        "--run-dir",
        str(tmp_path),
        "--val-size",
        "8",
        "--test-size",
        "8",
    ]
    assert "--test-size" in bad("optimize", *common, "--test-size", "100")
    assert "sampler" in bad("optimize", *common, "--sampler", "annealing")
    assert "pruner" in bad("optimize", *common, "--pruner", "sometimes")
    assert "level" in bad("optimize", *common, "--levels", "prompt,cosmic")
    assert "trials" in bad("optimize", *common, "--trials", "0")
    assert "--storage" in bad("optimize", *common, "--storage", "postgresql://nobody@127.0.0.1:9/none")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert bad("optimize", *common, "--run-dir", str(a_file)).startswith(f"error: --run-dir {a_file}: is a file")


def _optimize(run_dir: Path, data_file: Path, url: str, *extra: str, **kw) -> subprocess.CompletedProcess:
    return cli(
        "optimize",
        "--benchmark",
        "jsonl",
        "--data",
        str(data_file),
        "--model",
        "fake-model",
        "--api-base",
        url,
        "--val-size",
        "16",
        "--test-size",
        "16",
        "--min-batch",
        "4",
        "--concurrency",
        "4",
        "--seed",
        "1",
        "--run-dir",
        str(run_dir),
        *extra,
        **kw,
    )


def test_export_never_creates_a_study_store(tmp_path):
    """A read-only command with a wrong --run-dir says so, names the stores that exist, and creates nothing."""
    (tmp_path / "elsewhere").mkdir()
    line = bad("export", "--study", "s", "--out", str(tmp_path / "out"), "--run-dir", str(tmp_path / "nowhere"))
    assert f"--run-dir {tmp_path / 'nowhere'}: no study storage here (no optuna.db)" in line
    assert "study stores found: --run-dir" in line or "no optuna.db in or below" in line
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "out").exists()
    line = bad("export", "--study", "s", "--out", str(tmp_path / "out"), "--storage", str(tmp_path / "j.log"))
    assert "no such journal file" in line and not (tmp_path / "j.log").exists()
    assert "never creates a study store" in " ".join(cli("export", "--help").stdout.split())


def test_study_stores_hint_lists_the_stores_below_the_working_directory(tmp_path, monkeypatch):
    from agentsearch.errors import UserError
    from agentsearch.optimizers.store import open_existing_storage

    for store in ("runs", "other/runs"):
        (tmp_path / store).mkdir(parents=True)
        (tmp_path / store / "optuna.db").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"study stores found: --run-dir other/runs, runs$"):
        open_existing_storage(None, tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_optimize_export_and_reproduce(tmp_path, data_file, server_url):
    out = _optimize(tmp_path, data_file, server_url, "--trials", "8", "--study", "e2e", "--json").stdout
    summary = json.loads(out)
    for key in ("study", "best_val", "best_test", "baselines", "n_trials", "n_pruned", "calls", "export_dir"):
        assert key in summary, key
    assert summary["n_trials"] == 8 and set(summary["baselines"]) == {"direct", "cot", "cot_sc5", "self_refine"}
    assert summary["best_val"] >= max(v for v in summary["baselines_val"].values())
    # 8 trials: the 4 baselines in text, then in chat (each baseline in each searched format)
    assert all(fmts in (["text"], ["chat"]) for fmts in summary["baselines_format"].values())
    best = summary["test"]["best:0"]
    assert best["ci_low"] <= best["score"] <= best["ci_high"] and best["n"] == 16
    assert summary["comparisons"] and all(0 <= c["p_value"] <= 1 and c["verdict"] for c in summary["comparisons"])
    assert summary["selection"]["k"] == 3 and summary["selection"]["winner"] == summary["best_trial"]

    assert summary["reproduce"].endswith(f"--model fake-model --api-base {server_url}")  # the real command
    assert "MODEL" not in summary["reproduce"]
    export = tmp_path / "exported"
    cli("export", "--study", "e2e", "--out", str(export), "--run-dir", str(tmp_path))
    assert (export / "best.yaml").exists() and (export / "program.json").exists()
    exported = json.loads((export / "summary.json").read_text())
    assert exported["reproduce"].endswith(f"--model fake-model --api-base {server_url}")
    # the standalone agent.py: its endpoint defaults are the study's; it answers from any directory
    assert Path(summary["agent"]).exists() and Path(summary["mlflow_model"], "MLmodel").exists()
    env = {k: v for k, v in ENV.items() if k != "PYTHONPATH"}
    ran = subprocess.run(
        [sys.executable, str(export / "agent.py"), next(iter(QUESTIONS)), "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0 and json.loads(ran.stdout)["answer"], ran.stderr[-2000:]
    # the MLflow model logged to the study's parent run loads from the tracking store and answers
    import mlflow

    assert summary["agent_model_uri"].startswith("runs:/") and summary["agent_model_uri"].endswith("/agent_model")
    mlflow.set_tracking_uri(summary["tracking_uri"])
    try:
        model = mlflow.pyfunc.load_model(summary["agent_model_uri"])
    finally:
        mlflow.set_tracking_uri(None)
    assert model.predict({"question": [next(iter(QUESTIONS))]})[0]["answer"]
    # program.json is the state of the program compile_graph rebuilds from best.yaml; it loads into it
    from agentsearch.evaluators.operators.compile import compile_graph
    from agentsearch.search_space.graph import AgentGraph

    program = compile_graph(AgentGraph.load(export / "best.yaml"))
    program.load(str(export / "program.json"))
    assert [p.signature.instructions for p in program.predictors()] == [
        p.signature.instructions for p in compile_graph(AgentGraph.load(export / "best.yaml")).predictors()
    ]
    again = json.loads(
        cli(
            "evaluate",
            "--agent",
            str(export / "best.yaml"),
            "--benchmark",
            "jsonl",
            "--data",
            str(data_file),
            "--split",
            "test",
            "--seed",
            "1",
            "--val-size",
            "16",
            "--test-size",
            "16",
            "--model",
            "fake-model",
            "--api-base",
            server_url,
            "--run-dir",
            str(tmp_path),
            "--json",
        ).stdout
    )
    assert again["score"] == summary["best_test"]

    # the same study name with another benchmark is refused
    line = bad(
        "optimize",
        "--benchmark",
        "reasoning_gym:chain_sum",
        "--model",
        "fake-model",
        "--api-base",
        server_url,
        "--run-dir",
        str(tmp_path),
        "--study",
        "e2e",
        "--val-size",
        "16",
        "--test-size",
        "16",
    )
    assert "e2e" in line and "benchmark" in line


def test_resume_after_sigkill(tmp_path, data_file):
    """Kill the optimizer mid-study; resuming reaches the exact trial count with no trial lost or repeated."""
    slow, url = fake_server_process(data_file, latency=0.05)
    try:
        args = [
            sys.executable,
            "main.py",
            "optimize",
            "--benchmark",
            "jsonl",
            "--data",
            str(data_file),
            "--model",
            "fake-model",
            "--api-base",
            url,
            "--val-size",
            "16",
            "--test-size",
            "8",
            "--min-batch",
            "4",
            "--concurrency",
            "4",
            "--run-dir",
            str(tmp_path),
            "--study",
            "crashy",
            "--trials",
            "10",
            "--parallel",
            "2",
            "--no-tracking",
            "--formats",
            "text",
        ]
        victim = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        import optuna

        storage = f"sqlite:///{tmp_path / 'optuna.db'}"
        deadline = time.time() + 120
        finished_before: dict[int, tuple] = {}
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                trials = optuna.load_study(study_name="crashy", storage=storage).get_trials(deepcopy=False)
            except Exception:  # noqa: BLE001 - the study may not exist yet
                continue
            done = [t for t in trials if t.state.is_finished()]
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
            if len(done) >= 3 and running:
                finished_before = {t.number: (t.state, t.values) for t in done}
                break
        assert finished_before, "the study never got going"
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)

        proc = subprocess.run(args + ["--json"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)
        assert summary["n_trials"] == 10
        trials = optuna.load_study(study_name="crashy", storage=storage).get_trials(deepcopy=False)
        counted = [  # designs over --max-calls-per-question are pruned unrun and resampled: they do not count
            t
            for t in trials
            if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            and not t.user_attrs.get("reason", "").startswith(OVER_BUDGET)
        ]
        assert len(counted) == 10
        for number, (state, values) in finished_before.items():  # nothing finished was lost or redone
            assert trials[number].state == state and trials[number].values == values
        baselines = [t.user_attrs.get("origin", "").removesuffix(":retry") for t in counted]
        assert sorted(b for b in baselines if b.startswith("baseline:")) == sorted(
            f"baseline:{n}" for n in ("direct", "cot", "cot_sc5", "self_refine")
        )
        failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
        assert all("interrupted" in t.user_attrs.get("reason", "") for t in failed)
    finally:
        slow.terminate()
        slow.wait(timeout=10)


def test_ui_serves_the_study_runs(tmp_path, data_file, server_url):
    import socket
    import urllib.request

    _optimize(tmp_path, data_file, server_url, "--trials", "5", "--study", "ui", "--levels", "prompt")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opened = tmp_path / "opened.txt"  # --open hands the runs table's URL to the user's $BROWSER
    browser = f"{sys.executable} -c \"import sys; open('{opened}', 'w').write(sys.argv[1])\" %s"
    cmd = [sys.executable, "main.py", "ui", "--run-dir", str(tmp_path), "--port", str(port), "--open"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**ENV, "BROWSER": browser}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # printed once the UI answers: the study's runs table, then the study's own run
        url = proc.stdout.readline().strip()
        assert url.startswith(f"MLflow UI: http://127.0.0.1:{port}/#/experiments/1/runs?workflowType=machine_learning")
        assert "viewStateShareKey=" in url
        assert "study 'ui' (plots, summary): " in proc.stdout.readline()
        deadline = time.time() + 30
        while not opened.exists() and time.time() < deadline:
            time.sleep(0.5)
        assert opened.read_text() == url.removeprefix("MLflow UI: ")
        deadline, body = time.time() + 120, ""
        while time.time() < deadline:
            try:
                req = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/2.0/mlflow/runs/search", method="POST",
                    data=json.dumps({"experiment_ids": ["1"], "max_results": 50}).encode(),
                    headers={"Content-Type": "application/json"},
                )
                body = urllib.request.urlopen(req, timeout=5).read().decode()
                break
            except OSError:
                time.sleep(1)
        runs = json.loads(body)["runs"]
        names = {r["info"]["run_name"] for r in runs}
        assert "ui" in names and sum(n.startswith("ui/trial-") for n in names) == 5
    finally:
        proc.send_signal(signal.SIGTERM)  # as a user's kill would: the UI server must go with it
        proc.wait(timeout=60)
    time.sleep(1)
    alive = subprocess.run(["pgrep", "-f", f"mlflow server.*--port {port}"], capture_output=True, text=True)
    assert not alive.stdout.strip(), "no orphan MLflow server"


def test_ui_with_an_unknown_study_says_which_studies_exist(tmp_path):
    from agentsearch.runs.tracking import MlflowTracker, default_tracking_uri

    MlflowTracker(default_tracking_uri(tmp_path)).start_study("known", {}, {}, {})
    proc = cli("ui", "--run-dir", str(tmp_path), "--study", "nope", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--study nope: no such study" in proc.stderr and "(found: known)" in proc.stderr


def test_every_operator_runs_end_to_end_through_evaluate(tmp_path, data_file, server_url):
    """A one-node agent per solver, and each aggregator over two branches, scored by `main.py evaluate`."""
    from agentsearch.search_space.graph import AgentGraph
    from agentsearch.search_space.operators import OPERATORS

    for op, spec in OPERATORS.items():
        if spec.kind == "aggregator":
            graph = AgentGraph.from_dict({"name": op, "output": "x", "nodes": [
                {"id": "a", "op": "cot"}, {"id": "b", "op": "predict"}, {"id": "x", "op": op, "inputs": ["a", "b"]}]})
        else:
            graph = AgentGraph.single(op)
        path = graph.save(tmp_path / f"{op}.yaml")
        result = json.loads(cli(
            "evaluate", "--agent", str(path), "--benchmark", "jsonl", "--data", str(data_file), "--split", "test",
            "--val-size", "5",
            "--test-size", "3", "--model", "fake-model", "--api-base", server_url, "--no-cache", "--json",
        ).stdout)
        assert result["n"] == 3 and result["n_endpoint_errors"] == 0, (op, result)
        assert result["calls_per_question"] >= (0 if op == "vote" else 1), op


@pytest.mark.llm
@pytest.mark.timeout(900)
def test_real_embedded_model_search_end_to_end(tmp_path):
    """The default path on the real embedded CPU model: start it, search a little, test, export, stop."""
    pytest.importorskip("xllamacpp", reason="the local extra is not installed (pip install -e '.[local]')")
    proc = cli(
        "optimize", "--benchmark", "reasoning_gym:chain_sum", "--trials", "3", "--val-size", "2", "--test-size",
        "2", "--min-batch", "2", "--levels", "prompt", "--no-baselines", "--run-dir", str(tmp_path), "--study",
        "real", "--json", timeout=840,
    )
    summary = json.loads(proc.stdout)
    assert summary["n_trials"] == 3 and summary["calls"] > 0
    assert (Path(summary["export_dir"]) / "best.yaml").exists()
    assert "local" in proc.stderr  # it said which model it started
    out = cli("run", "--agent", str(Path(summary["export_dir"]) / "best.yaml"), "--question", "What is 2 + 3?",
              timeout=300).stdout.strip()
    assert out  # a real answer came back


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), KeyboardInterrupt()])
def test_the_entry_point_handles_bugs_and_ctrl_c(exc, tmp_path, monkeypatch, capsys):
    """A bug: one line naming a log file with the traceback, exit 1. Ctrl-C: 'interrupted', exit 130."""
    from agentsearch import cli as cli_module
    from agentsearch.search_space.graph import AgentGraph

    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(AgentGraph, "load", boom)
    monkeypatch.setenv("AGENTSEARCH_CACHE", str(tmp_path))
    code = cli_module.main(["validate", str(tmp_path / "agent.yaml")])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    if isinstance(exc, KeyboardInterrupt):
        assert code == 130 and lines == ["interrupted"]
        return
    assert code == 1 and len(lines) == 1 and "unexpected ZeroDivisionError: division by zero" in lines[0]
    (log,) = (tmp_path / "logs").iterdir()
    assert str(log) in lines[0] and "Traceback" in log.read_text() and "boom" in log.read_text()


def _break_endpoint_mid_study(tmp_path: Path, data_file: Path, study: str, fault: Callable[[Any], None]):
    """Run a study against the fake server in its own process; after 3 finished trials apply ``fault`` to the
    server's process. Returns the study's exit code, its stderr, the seconds from the fault to its exit, and
    its trials."""
    import optuna

    server, url = fake_server_process(data_file, latency=0.05)
    args = [
        sys.executable, "main.py", "optimize", "--benchmark", "jsonl", "--data", str(data_file),
        "--model", "fake-model", "--api-base", url, "--val-size", "16", "--test-size", "8", "--min-batch", "4",
        "--concurrency", "4", "--run-dir", str(tmp_path), "--study", study, "--trials", "30", "--parallel", "2",
        "--no-tracking", "--formats", "text",
    ]  # fmt: skip
    victim = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.3)
            try:
                trials = optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
            except Exception:  # noqa: BLE001 - not created yet
                continue
            if sum(t.state.is_finished() for t in trials) >= 3:
                break
        fault(server)
        faulted_at = time.time()
        _, stderr = victim.communicate(timeout=150)
        elapsed = time.time() - faulted_at
    finally:
        server.send_signal(signal.SIGCONT)
        server.kill()
        victim.kill()
    return victim.returncode, stderr, elapsed, optuna.load_study(study_name=study, storage=storage).get_trials()


def test_a_dead_endpoint_stops_the_study_fast(tmp_path, data_file):
    """The server dies mid-study: the endpoint's breaker opens after a few failed calls, the running and next
    trials FAIL (queued again, never scored) and the study stops with one line well within 30 s."""
    import optuna

    code, stderr, elapsed, trials = _break_endpoint_mid_study(tmp_path, data_file, "dies", lambda p: p.kill())
    assert code == 2, stderr
    assert elapsed < 30, elapsed
    last = stderr.strip().splitlines()[-1]
    assert "study 'dies' stopped" in last and "resume with --study dies" in last, last
    assert "Traceback" not in stderr
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all(t.value is None and t.user_attrs.get("reason") for t in failed)  # never scored
    for t in failed:  # each failed design is queued again once (a retry that fails too is not)
        origin = t.user_attrs["origin"]
        assert origin.endswith(":retry") or any(u.user_attrs.get("origin") == f"{origin}:retry" for u in trials)


def test_a_hung_endpoint_stops_the_study_within_30s(tmp_path, data_file):
    """The server freezes mid-study (SIGSTOP: connections are accepted, nothing is answered): the endpoint's
    watchdog finds no call finishing and no answer to a probe, abandons the waiting calls and opens the
    breaker; the study stops with one line within 30 s, not after the 120 s call timeout."""
    import optuna

    freeze = lambda p: p.send_signal(signal.SIGSTOP)  # noqa: E731
    code, stderr, elapsed, trials = _break_endpoint_mid_study(tmp_path, data_file, "hangs", freeze)
    assert code == 2, stderr
    assert elapsed < 30, elapsed
    last = stderr.strip().splitlines()[-1]
    assert "study 'hangs' stopped" in last and "resume with --study hangs" in last, last
    assert "stopped answering" in stderr or "hung" in stderr, stderr[-2000:]
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert failed and all(t.value is None for t in failed)  # never scored


@pytest.fixture
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server (Debian's postgresql package), run as the postgres user; skipped with the
    reason where that is not possible."""
    import shutil
    import socket as socket_mod

    initdb = shutil.which("initdb") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))), None)
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg 3 is not installed (pip install 'agentsearch[postgres]')")
    bindir = Path(initdb).resolve().parent
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run PostgreSQL as")
        run_as = ["runuser", "-u", "postgres", "--"]
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="agentsearch-pg-"))  # pytest's tmp dirs are private to root
    os.chmod(base, 0o777)
    data = base / "data"
    with socket_mod.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "agentsearch"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w", "-o",
         f"-p {port} -h 127.0.0.1 -k {base}", "start"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        yield f"postgresql://agentsearch@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("backend", ["journal", "postgresql"])
def test_workers_share_one_study_exactly(tmp_path, data_file, backend, request):
    """4 optimize processes on one --study and --storage (a journal file; a PostgreSQL server): the study
    ends with exactly --trials counted trials, no configuration evaluated twice, and no worker crashed."""
    workers = 4
    server, url = fake_server_process(data_file, latency=0.01)
    journal = tmp_path / "study.journal"
    storage_flag = str(journal) if backend == "journal" else request.getfixturevalue("postgres_url")
    args = [
        sys.executable, "main.py", "optimize", "--benchmark", "jsonl", "--data", str(data_file),
        "--model", "fake-model", "--api-base", url, "--val-size", "12", "--test-size", "8", "--min-batch", "4",
        "--concurrency", "4", "--study", "shared", "--storage", storage_flag, "--trials", "14",
        "--parallel", "2", "--formats", "text", "--json",
    ]  # fmt: skip
    # journal: all 4 workers log to one new MLflow store (they race to create its schema); PostgreSQL: none
    mlflow_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args += ["--tracking-uri", mlflow_uri] if backend == "journal" else ["--no-tracking"]
    try:
        procs = [
            subprocess.Popen(
                [*args, "--run-dir", str(tmp_path / f"w{i}")], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            for i in range(workers)
        ]
        outputs = [p.communicate(timeout=600) for p in procs]
    finally:
        server.kill()
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-2000:]
    summaries = [json.loads(stdout) for stdout, _ in outputs]
    finishers = [s for s in summaries if not s.get("deferred")]
    # the held-out test and export run once the study is done, by the worker(s) that found no other running
    assert finishers and all(s["n_trials"] == 14 and "best_test" in s for s in finishers), summaries
    assert all(s["running_elsewhere"] >= 1 and "other workers" in s["message"] for s in summaries if s.get("deferred"))
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if backend == "journal":
        storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    else:
        storage = optuna.storages.RDBStorage("postgresql+psycopg://" + storage_flag.split("://", 1)[1])
    trials = optuna.load_study(study_name="shared", storage=storage).get_trials()
    counted = [
        t
        for t in trials
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        and not t.user_attrs.get("reason", "").startswith(OVER_BUDGET)
    ]
    assert len(counted) == 14, [(t.number, t.state, t.user_attrs.get("reason")) for t in trials]
    evaluated = [t.user_attrs["config_hash"] for t in counted if "duplicate" not in t.user_attrs.get("reason", "")]
    assert len(evaluated) == len(set(evaluated))
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    baselines = [t.user_attrs["origin"] for t in trials if t.user_attrs.get("origin", "").startswith("baseline:")]
    assert sorted(baselines) == sorted(set(baselines))  # enqueued once, by the worker that created the study
    if backend == "journal":  # MLflow: one study run, exactly one finished child run per finished trial
        from mlflow.tracking import MlflowClient

        client = MlflowClient(mlflow_uri)
        runs = client.search_runs([client.get_experiment_by_name("agentsearch").experiment_id], max_results=1000)
        parents = [r for r in runs if r.data.tags.get("agentsearch.kind") == "study"]
        children = sorted(int(r.data.tags["agentsearch.trial"]) for r in runs if "agentsearch.trial" in r.data.tags)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert children == sorted(t.number for t in trials if t.state.is_finished())
        assert all(r.info.status == "FINISHED" for r in runs)
