"""A real browser on `main.py ui`: headless Chromium loads the printed URLs of a study's store and the page shows
the runs table with the key metric columns and the best-trial tag, the study's plots and the best trial's traces.

Needs Chromium (Debian: ``apt-get install chromium``); skipped, saying so, where it is not installed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import QUESTIONS

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium here (Debian: apt-get install chromium)"),
    pytest.mark.timeout(600),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dom(url: str, profile: Path, ready: str, tries: int = 3) -> str:
    """The page's DOM once its scripts ran and it shows ``ready`` (virtual time lets the UI's requests finish; on a
    loaded machine they may not have, so the page is loaded again, at most ``tries`` times)."""
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        f"--user-data-dir={profile}", "--window-size=3000,1000", "--virtual-time-budget=25000", "--dump-dom", url,
    ]  # fmt: skip
    for _ in range(tries):
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=True).stdout
        if ready in dom:
            break
    return dom


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A finished fake-server study, and `main.py ui` on its run directory: the lines it printed."""
    from agentsearch.runs.study import StudyConfig, run_study
    from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy
    from tests.conftest import make_lm

    tmp = tmp_path_factory.mktemp("browser")
    data = tmp / "questions.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": f"#### {a}"}) + "\n" for q, a in QUESTIONS.items()))
    cfg = StudyConfig(
        study="browser", benchmark="jsonl", data=str(data), seed=1, val_size=8, test_size=4, trials=5, parallel=2,
        concurrency=4, min_batch=4, run_dir=tmp / "runs", trace_examples=1, baseline_names=("direct", "cot"),
    )  # fmt: skip
    with FakeOpenAIServer(ReasoningPolicy(QUESTIONS), latency=0.0) as server:
        summary = run_study(cfg, {"default": make_lm(server)})

    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "main.py", "ui", "--run-dir", str(cfg.run_dir), "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        lines = [proc.stdout.readline().strip() for _ in range(3)]  # printed once the UI answers
        assert all(lines), lines
        yield summary, lines, tmp / "chromium"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        time.sleep(0.5)


def _url(line: str) -> str:
    return line[line.index("http://") :]


def test_runs_table_shows_the_trials_with_metric_columns_and_the_best_tag(ui):
    summary, lines, profile = ui
    assert lines[0].startswith("MLflow UI: http://127.0.0.1:") and "workflowType=machine_learning" in lines[0]
    dom = _dom(_url(lines[0]), profile, ready="matching runs")
    for column in ("val_score", "test_score", "tokens_per_question", "calls", "errors", "agentsearch.best",
                   "agentsearch.state"):  # fmt: skip
        assert column in dom, f"no {column} column in the runs table"
    assert "browser/trial-0" in dom and f"browser/trial-{summary['best_trial']}" in dom
    assert ">true<" in dom  # the best trial's tag value, in its cell
    assert "matching runs" in dom


def test_study_run_shows_the_plots(ui):
    _, lines, profile = ui
    assert lines[1].startswith("study 'browser' (plots, summary): ")
    dom = _dom(_url(lines[1]), profile, ready="plots/optimization_history.png")
    assert 'alt="plots/optimization_history.png" src="blob:' in dom  # the plot is shown, not just listed


def test_best_trial_shows_the_traces_of_its_lm_calls(ui):
    summary, lines, profile = ui
    assert lines[2].startswith(f"best trial {summary['best_trial']} (traces of its LM calls): ")
    dom = _dom(_url(lines[2]), profile, ready="Tom has")
    assert dom.count("tr-") >= 1 and "Tom has" in dom  # a trace row with the example's question as its request
    assert "&quot;extracted&quot;" in dom or '"extracted"' in dom  # and the outcome as its response
