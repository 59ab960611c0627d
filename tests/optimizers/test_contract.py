"""One contract suite, run against every optimizer (like optuna/testing/pytest_samplers.py).

A new optimizer joins by adding a factory to ``FACTORIES``; the factory receives the storage path
(so persistence can be checked), the objectives and the baselines to enqueue.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from agentsearch.optimizers.base import Candidate, Optimizer, StrategyContext, TrialResult
from agentsearch.optimizers.optuna_opt import OptunaOptimizer, open_storage
from agentsearch.search_space.baselines import baseline_graphs
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.space import SearchSpace

Factory = Callable[..., Optimizer]


def _optuna(sampler: str) -> Factory:
    def make(path: Path, objectives=("accuracy",), baselines=None, study="s", space=None) -> Optimizer:
        return OptunaOptimizer(
            space or SearchSpace(),
            study_name=study,
            storage=open_storage(str(path / "study.log"), path),
            sampler=sampler,
            pruner="sha",
            objectives=objectives,
            seed=1,
            min_resource=2,
            max_resource=8,
            startup_trials=3,
            baselines=baselines,
        )

    return make


def scripted_proposer(n: int = 400):
    """A proposer LM with a new valid answer for every proposer signature on each call: a YAML graph (the
    meta-agent), an instruction (the instruction proposer) and a rewritten instruction (evolution)."""
    from dspy.utils.dummies import DummyLM

    answers = [
        {
            "yaml": f"name: scripted-{k}\noutput: a\nnodes:\n  - {{id: a, op: cot, params: {{max_tokens: {200 + k}}}}}",
            "new_instruction": f"Solve the problem carefully; variant {k}.",
            "improved_instruction": f"Work through the problem carefully; variant {k}.",
        }
        for k in range(1, n)
    ]
    return DummyLM(answers)


def _proposing(name: str) -> Factory:
    """LLM/evolution strategies, with a scripted proposer LM: they must honour the whole contract."""

    def make(path: Path, objectives=("accuracy",), baselines=None, study="s", space=None) -> Optimizer:
        from agentsearch.optimizers import make_optimizer

        opt = make_optimizer(
            name, space or SearchSpace(), study_name=study, storage=open_storage(str(path / "study.log"), path),
            sampler="tpe", pruner="sha", objectives=objectives, seed=1, min_resource=2, max_resource=8,
            startup_trials=3, baselines=baselines, n_trials=12,
        )
        opt.bind(StrategyContext(proposer_lm=scripted_proposer()))
        return opt

    return make


FACTORIES: dict[str, Factory] = {name: _optuna(name) for name in ("tpe", "random", "cmaes", "nsga2")}
FACTORIES.update({name: _proposing(name) for name in ("evolution", "meta-agent", "proposer", "staged")})
if importlib.util.find_spec("torch") is not None:
    FACTORIES["gp"] = _optuna("gp")
MULTI = {"tpe", "random", "nsga2", "gp", "evolution", "meta-agent", "proposer", "staged"}


def fake_score(graph: AgentGraph) -> tuple[float, float]:
    """A deterministic stand-in for evaluation: reasoning helps, samples cost tokens."""
    acc, tokens = 0.3, 0.0
    for node in graph.nodes:
        acc += {"cot": 0.2, "self_consistency": 0.3, "self_refine": 0.25, "aggregate": 0.05}.get(node.op, 0.0)
        tokens += 100 * node.expected_calls()
    return min(acc, 1.0), tokens


def complete(c: Candidate) -> TrialResult:
    acc, tokens = fake_score(c.graph)
    return TrialResult("COMPLETE", {"val_score": acc, "tokens_per_question": tokens, "calls_per_question": 1.0})


@pytest.fixture(params=sorted(FACTORIES))
def factory(request) -> tuple[str, Factory]:
    return request.param, FACTORIES[request.param]


def test_ask_returns_valid_distinct_candidates(factory, tmp_path):
    _, make = factory
    opt = make(tmp_path)
    seen = set()
    for _ in range(6):
        c = opt.ask()
        assert isinstance(c, Candidate) and isinstance(c.graph, AgentGraph)
        c.graph.check()
        assert c.number not in seen
        seen.add(c.number)
        opt.tell(c, complete(c))
    assert [t.number for t in opt.trials()] == sorted(seen)


@pytest.mark.parametrize("name", ["meta-agent", "proposer", "evolution"])
def test_llm_driven_strategies_really_propose(name, tmp_path):
    """With a proposer LM that answers, the LLM-driven rows propose (not the sampler standing in for them)."""
    opt = FACTORIES[name](tmp_path)
    origins = []
    for _ in range(10):
        c = opt.ask()
        origins.append(c.origin)
        opt.tell(c, complete(c))
    proposed = [o for o in origins if o not in ("tpe", "random")]
    assert proposed, origins
    assert not getattr(getattr(opt, "failures", None), "in_a_row", 0)


def test_tell_records_every_state(factory, tmp_path):
    _, make = factory
    opt = make(tmp_path)
    c1, c2, c3 = opt.ask(), opt.ask(), opt.ask()
    opt.tell(c1, complete(c1))
    opt.should_prune(c2, 2, 0.0)  # reports the running score; whether it prunes is the optimizer's call
    opt.tell(c2, TrialResult("PRUNED", {"val_score": 0.0, "n_examples": 2.0, "pruned_step": 2.0}, reason="pruned"))
    opt.tell(c3, TrialResult("FAIL", {}, reason="endpoint down"))
    states = {t.number: t.state for t in opt.trials()}
    assert states == {c1.number: "COMPLETE", c2.number: "PRUNED", c3.number: "FAIL"}
    failed = next(t for t in opt.trials() if t.state == "FAIL")
    assert failed.reason == "endpoint down"
    assert opt.n_finished() == 2  # failed trials don't count toward the budget


def test_baselines_come_first(factory, tmp_path):
    _, make = factory
    base = baseline_graphs()
    opt = make(tmp_path, baselines=base)
    got = []
    for _ in range(len(base)):
        c = opt.ask()
        got.append((c.origin, c.graph.config_hash))
        opt.tell(c, complete(c))
    assert got == [(f"baseline:{n}", g.config_hash) for n, g in base.items()]


def test_best_is_the_top_score(factory, tmp_path):
    _, make = factory
    opt = make(tmp_path)
    for _ in range(8):
        c = opt.ask()
        opt.tell(c, complete(c))
    best = opt.best()
    top = max(t.values[0] for t in opt.trials() if t.state == "COMPLETE")
    assert len(best) == 1 and best[0].values[0] == top and best[0].graph is not None


def test_state_survives_a_new_process(factory, tmp_path):
    name, make = factory
    opt = make(tmp_path, baselines=baseline_graphs())
    for _ in range(3):
        c = opt.ask()
        opt.tell(c, complete(c))
    again = make(tmp_path, baselines=baseline_graphs())
    assert again.resumed
    assert [t.number for t in again.trials()] == [t.number for t in opt.trials()]
    c = again.ask()  # the 4th baseline is still queued, not enqueued twice
    assert c.origin == "baseline:self_refine"
    again.tell(c, complete(c))
    assert sum(t.origin.startswith("baseline:") for t in again.trials()) == 4


def test_interrupted_trial_is_requeued(factory, tmp_path):
    _, make = factory
    opt = make(tmp_path)
    c = opt.ask()  # left RUNNING, as if the process was killed
    again = make(tmp_path)
    failed = [t for t in again.trials() if t.state == "FAIL"]
    assert [t.number for t in failed] == [c.number] and "interrupted" in failed[0].reason
    redo = again.ask()
    assert redo.graph == c.graph


def test_multi_objective_gives_a_pareto_set(factory, tmp_path):
    name, make = factory
    if name not in MULTI:
        pytest.skip(f"{name} is single-objective")
    opt = make(tmp_path, objectives=("accuracy", "tokens"))
    for _ in range(10):
        c = opt.ask()
        opt.tell(c, complete(c))
    front = opt.best()
    assert front
    done = [t for t in opt.trials() if t.state == "COMPLETE"]
    for t in front:  # nobody strictly dominates a Pareto member
        assert not any(o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in done)
    assert not any(opt.should_prune(opt.ask(), 2, 0.1) for _ in range(1))


def test_sampler_learns_beyond_random_on_a_simple_space(tmp_path):
    """TPE concentrates on the better operators after its startup trials."""
    space = SearchSpace.from_levels("module")
    opt = _optuna("tpe")(tmp_path, space=space)
    ops = []
    for _ in range(30):
        c = opt.ask()
        ops.append(c.graph.nodes[0].op)
        opt.tell(c, complete(c))
    late = ops[15:]
    assert late.count("predict") <= 3  # the worst operator is rarely proposed late


class _OnlyTheAbstractMethods(Optimizer):
    """A strategy implementing only what Optimizer declares abstract: random designs, trials in memory."""

    def __init__(self, space: SearchSpace, *, seed: int = 0, objectives=("accuracy",), **study: object) -> None:
        import random

        self.space, self.objectives, self.rng = space, tuple(objectives), random.Random(seed)
        self._trials: list = []
        self._asked = 0

    def ask(self) -> Candidate:
        from agentsearch.search_space.space import RandomTrial

        self._asked += 1
        return Candidate(self._asked - 1, self.space.sample(RandomTrial(self.rng)), origin="only-abstract")

    def tell(self, candidate: Candidate, result: TrialResult) -> None:
        from agentsearch.optimizers.base import FinishedTrial

        values = result.values(self.objectives) if result.state == "COMPLETE" else None
        self._trials.append(
            FinishedTrial(candidate.number, result.state, candidate.graph, {}, values, dict(result.metrics),
                          candidate.origin, result.reason, outcomes=result.outcomes)
        )  # fmt: skip

    def trials(self):
        return sorted(self._trials, key=lambda t: t.number)


def test_a_strategy_implementing_only_the_abstract_methods_runs_a_whole_study(tmp_path, fake_server, questions_file):
    """The Optimizer base class is the whole contract: registered with one line, such a class runs a study
    (search, selection, held-out test, export) without the study or the loop reaching for anything else."""
    from agentsearch.optimizers.registry import STRATEGIES, StrategyEntry
    from agentsearch.runs.study import StudyConfig, run_study
    from tests.conftest import make_lm

    STRATEGIES.add(StrategyEntry("only-abstract", "a test strategy", _OnlyTheAbstractMethods))
    try:
        cfg = StudyConfig(
            study="abstract", benchmark="jsonl", data=str(questions_file), optimizer="only-abstract", trials=4,
            val_size=8, test_size=8, run_dir=tmp_path / "run", tracking=False, baselines=False, min_batch=4, parallel=2,
            concurrency=4, formats=("text",), levels="prompt,module",
        )  # fmt: skip
        summary = run_study(cfg, {"default": make_lm(fake_server)})
    finally:
        STRATEGIES.remove("only-abstract")
    assert summary["n_trials"] == 4 and summary["test"]["best:0"]["n"] == 8
    assert (Path(summary["export_dir"]) / "best.yaml").exists()
