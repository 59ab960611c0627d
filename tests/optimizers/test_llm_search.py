"""LLM-driven strategies end to end against the fake server: instruction proposer, meta-agent, staged."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentsearch.evaluators.benchmarks import Example
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.optimizers import make_optimizer
from agentsearch.optimizers.base import StrategyContext
from agentsearch.optimizers.store import open_storage
from agentsearch.runs.loop import SearchLoop
from agentsearch.search_space.baselines import baseline_graphs
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.space import SearchSpace
from tests.conftest import QUESTIONS, make_lm

VAL = [Example(id=f"q{i}", question=q, answer=a) for i, (q, a) in enumerate(list(QUESTIONS.items())[:8])]
TRAIN = [Example(id=f"t{i}", question=q, answer=a) for i, (q, a) in enumerate(list(QUESTIONS.items())[20:40])]

NOVEL = """name: novel
output: j
nodes:
  - id: x
    op: plan_and_solve
  - id: y
    op: step_back
    params: {temperature: 0.3}
  - id: j
    op: judge
    inputs: [x, y]
"""


def metric(example: Example, prediction: str) -> bool:
    return prediction.strip() == example.answer


class ProposerPolicy:
    """The fake server's task policy, plus scripted replies for the proposer's signatures."""

    def __init__(self, task_policy, graphs: list[str] | None = None, instruction: str = ""):
        self.task_policy = task_policy
        self.graphs = list(graphs or [])
        self.instruction = instruction
        self.design_calls = 0

    def __call__(self, req):
        names = req.output_names
        if "yaml" in names:
            self.design_calls += 1
            return {"yaml": self.graphs.pop(0) if self.graphs else NOVEL}
        if "new_instruction" in names:
            return {"new_instruction": self.instruction}
        return self.task_policy(req)


def _run(name: str, tmp_path: Path, server, n_trials: int, space: SearchSpace | None = None, **kw):
    lms = {"default": make_lm(server)}
    opt = make_optimizer(
        name,
        space or SearchSpace(),
        study_name="s",
        storage=open_storage(str(tmp_path / "s.log"), tmp_path),
        sampler="tpe",
        pruner="none",
        seed=0,
        min_resource=4,
        max_resource=8,
        startup_trials=3,
        baselines=baseline_graphs(),
        task="Answer word problems.",
        n_trials=n_trials,
        **kw,
    )
    opt.bind(StrategyContext(proposer_lm=lms["default"]))
    loop = SearchLoop(
        opt, lambda g: compile_graph(g, lms=lms), metric, VAL, n_trials=n_trials, min_batch=4, concurrency=4
    )
    loop.run()
    return opt


def test_meta_agent_repairs_invalid_yaml_and_evaluates_a_novel_graph(tmp_path, fake_server):
    policy = ProposerPolicy(fake_server.policy, graphs=["nodes: [", "nodes:\n  - {id: a, op: telepathy}\n", NOVEL])
    fake_server.policy = policy
    opt = _run("meta-agent", tmp_path, fake_server, n_trials=6)
    meta = [t for t in opt.trials() if t.origin == "meta-agent"]
    assert meta, [t.origin for t in opt.trials()]
    first = meta[0]
    assert first.graph.config_hash == AgentGraph.from_text(NOVEL).config_hash
    assert first.graph.config_hash not in {g.config_hash for g in baseline_graphs().values()}
    assert first.state in ("COMPLETE", "PRUNED") and first.metrics["proposer_calls"] >= 3  # 2 repairs + success
    assert policy.design_calls >= 3
    proposal = opt.study.trials[first.number].user_attrs["proposal"]  # kept with the trial, logged to MLflow
    assert proposal["proposer"] == "meta-agent" and len(proposal["attempts"]) == 3
    assert "malformed" in proposal["attempts"][0]["rejected"] and "telepathy" in proposal["attempts"][1]["rejected"]


def test_meta_agent_never_evaluates_a_duplicate(tmp_path, fake_server):
    cot = baseline_graphs()["cot"].to_yaml()
    fake_server.policy = ProposerPolicy(fake_server.policy, graphs=[cot] * 20)
    opt = _run("meta-agent", tmp_path, fake_server, n_trials=6)
    hashes = [t.graph.config_hash for t in opt.trials() if t.state == "COMPLETE"]
    assert not [t for t in opt.trials() if t.origin == "meta-agent"]  # every proposal was the cot baseline
    assert hashes.count(baseline_graphs()["cot"].config_hash) == 1


def test_instruction_proposer_adds_instructions_to_the_pool(tmp_path, fake_server):
    text = "Carefully verify each step by step calculation before giving the final answer."
    fake_server.policy = ProposerPolicy(fake_server.policy, instruction=text)
    space = SearchSpace.from_levels("prompt,module")
    opt = _run("proposer", tmp_path, fake_server, n_trials=10, space=space)
    proposed = [t for t in opt.trials() if t.origin == "proposer:instruction"]
    assert proposed
    assert any(text in (n.params.instruction or "") for t in proposed for n in t.graph.nodes)
    assert opt.study.user_attrs["prompt_pool"]["instructions"] == [text]
    proposal = opt.study.trials[proposed[0].number].user_attrs["proposal"]
    assert proposal["new_instruction"] == text and proposal["failures"]
    # a resumed study keeps its pool
    again = make_optimizer(
        "proposer",
        space,
        study_name="s",
        storage=open_storage(str(tmp_path / "s.log"), tmp_path),
        sampler="tpe",
        seed=0,
    )
    assert list(again.pool.instructions) == [text]


def test_staged_runs_prompt_then_topology_then_refine(tmp_path, fake_server):
    opt = _run("staged", tmp_path, fake_server, n_trials=14)
    origins = [t.origin for t in opt.trials() if not t.origin.startswith("baseline:")]
    stages = [o.split(":")[1] for o in origins]
    assert stages == sorted(stages, key=["prompt", "topology", "refine"].index), stages
    assert {"prompt", "topology", "refine"} <= set(stages)


@pytest.mark.parametrize("name", ["meta-agent", "proposer", "staged", "evolution", "tpe+bootstrap"])
def test_strategy_runs_from_the_cli_to_export(name, tmp_path, questions_file):
    import json
    import subprocess
    import sys

    from tests.test_cli import ENV, ROOT

    optimizer, _, prompt_optimizer = name.partition("+")
    cmd = ["optimize", "--benchmark", "jsonl", "--data", str(questions_file), "--model", "fake-model"]
    cmd += ["--optimizer", optimizer, "--trials", "7", "--val-size", "8", "--test-size", "8", "--min-batch", "4"]
    cmd += ["--run-dir", str(tmp_path), "--study", "x", "--no-tracking", "--json"]
    if prompt_optimizer:
        cmd += ["--prompt-optimizer", prompt_optimizer]
    server = subprocess.Popen(
        [sys.executable, "-m", "agentsearch.testing.fake_server", "--port", "0", "--answers", str(questions_file)],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        url = server.stdout.readline().split()[1]
        proc = subprocess.run(
            [sys.executable, "main.py", *cmd, "--api-base", url],
            cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        summary = json.loads(proc.stdout)  # stdout is the JSON summary alone, whatever DSPy prints
        assert summary["n_trials"] == 7 and Path(summary["export_dir"], "best.yaml").exists()
        if prompt_optimizer:
            best = AgentGraph.load(Path(summary["export_dir"], "best.yaml"))
            assert summary["best_origin"].startswith("baseline:") or any(
                getattr(n.params, "demos", ()) for n in best.nodes
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_proposer_that_always_fails_stops_the_study_and_each_failure_is_recorded(tmp_path, fake_server):
    from agentsearch.errors import ProposerError
    from agentsearch.testing.fake_server import FakeOpenAIServer

    with FakeOpenAIServer() as broken:
        broken.set_failure_rate(1.0, status=500)
        lms = {"default": make_lm(fake_server)}
        opt = make_optimizer(
            "meta-agent",
            SearchSpace(),
            study_name="s",
            storage=open_storage(str(tmp_path / "s.log"), tmp_path),
            sampler="tpe",
            pruner="none",
            seed=0,
            min_resource=4,
            max_resource=8,
            startup_trials=3,
            baselines=baseline_graphs(),
            task="Answer word problems.",
            n_trials=12,
        )
        opt.bind(StrategyContext(proposer_lm=make_lm(broken)))
        loop = SearchLoop(
            opt, lambda g: compile_graph(g, lms=lms), metric, VAL, n_trials=12, min_batch=4, concurrency=4
        )
        with pytest.raises(ProposerError, match="meta-agent: the proposer failed 3 times in a row"):
            loop.run()
    assert opt.study.user_attrs["agentsearch.proposer_failures"] == 3
    sampled = [t for t in opt.trials() if not t.origin.startswith("baseline:")]
    assert sampled and all(t.metrics.get("proposer_failed") == 1.0 for t in sampled)
    assert all("LM" in opt.study.trials[t.number].user_attrs["proposal"]["proposer_error"] for t in sampled)


def test_bootstrapped_demo_sets_are_sampled_by_the_proposer(tmp_path, fake_server):
    """The demo sets are bootstrapped after the optimizer exists (the LMs start later); their choices are
    in the space from the start, so trials do use them."""
    from agentsearch.optimizers.instruction import bootstrap_demo_sets

    fake_server.policy.p_reasoning = 1.0
    lms = {"default": make_lm(fake_server)}
    train = TRAIN
    opt = make_optimizer(
        "proposer", SearchSpace.from_levels("prompt", formats=("text",)), study_name="s",
        storage=open_storage(str(tmp_path / "s.log"), tmp_path), sampler="random", pruner="none", seed=0,
        min_resource=4, max_resource=8, startup_trials=3, baselines=None, task="Answer word problems.",
        n_trials=12, bootstrap_demos=True,
    )  # fmt: skip
    assert opt.space.demo_slots == 2
    opt.bind(StrategyContext(demo_bootstrap=lambda: bootstrap_demo_sets(lms["default"], train, metric)))
    loop = SearchLoop(opt, lambda g: compile_graph(g, lms=lms), metric, VAL, n_trials=12, min_batch=4, concurrency=4)
    loop.run()
    assert opt.pool.demo_sets, "demo sets were bootstrapped"
    with_demos = [t for t in opt.trials() if t.graph and any(getattr(n.params, "demos", ()) for n in t.graph.nodes)]
    assert with_demos, "and some trials sampled them"
