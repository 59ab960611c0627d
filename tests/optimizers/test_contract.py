"""The contract suite (agentsearch.testing.optimizers), run against every strategy of the registry.

A new optimizer joins by adding a factory to ``FACTORIES``; the factory receives the storage path
(so persistence can be checked), the objectives and the baselines to enqueue. Third parties subclass
:class:`~agentsearch.testing.optimizers.OptimizerContract` the same way.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest

from agentsearch.optimizers.base import Candidate, Optimizer, StrategyContext, TrialResult
from agentsearch.optimizers.proposal import StrategyOptimizer
from agentsearch.optimizers.samplers import SamplerStrategy
from agentsearch.optimizers.store import open_storage
from agentsearch.search_space.graph import ENTRY, AgentGraph
from agentsearch.search_space.space import SearchSpace
from agentsearch.testing.optimizers import OptimizerContract, complete, scripted_proposer

Factory = Callable[..., Optimizer]


def _optuna(sampler: str) -> Factory:
    def make(path: Path, objectives=("accuracy",), baselines=None, study="s", space=None) -> Optimizer:
        return StrategyOptimizer(
            space or SearchSpace(),
            strategy=SamplerStrategy(sampler),
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


for _name, _make in FACTORIES.items():  # one contract class per strategy: TestContract_tpe, ...
    globals()[f"TestContract_{_name.replace('-', '_')}"] = type(
        f"TestContract_{_name.replace('-', '_')}",
        (OptimizerContract,),
        {"make": staticmethod(_make), "multi_objective": _name in MULTI},
    )


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


def test_every_registered_strategy_runs_the_contract():
    from agentsearch.optimizers.registry import STRATEGIES

    needs_torch = {"gp"} if importlib.util.find_spec("torch") is None else set()
    assert set(STRATEGIES.names()) - needs_torch == set(FACTORIES)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_built_in_strategy_is_a_protocol_object_over_the_study_store(name, tmp_path):
    """The loop owns one kind of optimizer: a Strategy (propose/told, no storage) run over the study store."""
    from agentsearch.optimizers.base import Strategy
    from agentsearch.optimizers.store import StudyStore

    opt = FACTORIES[name](tmp_path)
    assert type(opt) is StrategyOptimizer and isinstance(opt.strategy, Strategy)
    assert isinstance(opt.store, StudyStore) and not hasattr(opt.strategy, "study")


class _Hillclimber:
    """A strategy written against the Strategy protocol alone: no base class, no storage, no Optuna."""

    name = "hillclimb"

    def __init__(self) -> None:
        self.heard: list[int] = []

    def propose(self, archive, space, rng):
        best = max(archive.complete(), key=lambda t: t.values[0], default=None)
        if best is None:
            return None  # nothing learned yet: the space's sampler proposes
        from agentsearch.search_space.space import RandomTrial

        for _ in range(20):  # a neighbour: the best graph with one solver re-drawn by the space
            node = space.solver_node(RandomTrial(rng), "b1s1", [ENTRY])
            graph = AgentGraph.from_dict({"name": "hill", "output": "b1s1", "nodes": [node]})
            if graph.config_hash not in archive.seen:
                return graph
        return None

    def told(self, trial) -> None:
        self.heard.append(trial.number)


def _protocol_strategy(path: Path, objectives=("accuracy",), baselines=None, study="s", space=None) -> Optimizer:
    return StrategyOptimizer(
        space or SearchSpace(), strategy=_Hillclimber, study_name=study,
        storage=open_storage(str(path / "study.log"), path), sampler="tpe", pruner="sha", objectives=objectives,
        seed=1, min_resource=2, max_resource=8, startup_trials=3, baselines=baselines,
    )  # fmt: skip


class TestContract_protocol_strategy(OptimizerContract):
    """A strategy implementing only the Strategy protocol passes the whole contract."""

    make = staticmethod(_protocol_strategy)


def test_a_protocol_strategy_proposes_hears_and_runs_a_study_from_one_registry_line(
    tmp_path, fake_server, questions_file
):
    from agentsearch.optimizers.registry import STRATEGIES, StrategyEntry
    from agentsearch.runs.study import StudyConfig, run_study
    from tests.conftest import make_lm

    opt = _protocol_strategy(tmp_path / "unit")
    origins = []
    for _ in range(8):
        c = opt.ask()
        origins.append(c.origin)
        opt.tell(c, complete(c))
    assert "hillclimb" in origins and opt.strategy.heard == [t.number for t in opt.trials()]

    STRATEGIES.add(  # the one registry line
        StrategyEntry("hillclimb", "a test strategy", "agentsearch.optimizers.proposal:StrategyOptimizer",
                      options={"strategy": _Hillclimber})
    )  # fmt: skip
    try:
        cfg = StudyConfig(
            study="hill", benchmark="jsonl", data=str(questions_file), optimizer="hillclimb", trials=5,
            val_size=8, test_size=8, run_dir=tmp_path / "run", tracking=False, min_batch=4, parallel=1,
            concurrency=4, formats=("text",), levels="module", baseline_names=("cot",),
        )  # fmt: skip
        summary = run_study(cfg, {"default": make_lm(fake_server)})
    finally:
        STRATEGIES.remove("hillclimb")
    assert summary["n_trials"] == 5
