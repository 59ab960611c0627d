"""The optimizer contract suite, for agentsearch's strategies and yours (as optuna/testing/pytest_samplers.py).

Subclass :class:`OptimizerContract` in a test module under a name pytest collects (``Test...``) and
implement :meth:`~OptimizerContract.make`; every test of the suite then runs against your optimizer::

    from agentsearch.testing.optimizers import OptimizerContract

    class TestMyStrategy(OptimizerContract):
        multi_objective = False

        def make(self, path, objectives=("accuracy",), baselines=None, study="s", space=None):
            return StrategyOptimizer(space or SearchSpace(), strategy=MyStrategy(), study_name=study,
                                     storage=open_storage(str(path / "study.log"), path),
                                     objectives=objectives, baselines=baselines)

``make`` gets the directory the study must live in (so that a second ``make`` on the same path is
the same study, resumed), the objectives and the baselines to enqueue. Scores come from
:func:`complete`, a deterministic stand-in for evaluation; an LLM-driven strategy can be given
:func:`scripted_proposer` as its proposer model so that it really proposes. Needs pytest (a dev
dependency); the product never imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentsearch.optimizers.base import Candidate, Optimizer, TrialResult
from agentsearch.search_space.baselines import baseline_graphs
from agentsearch.search_space.graph import AgentGraph


def fake_score(graph: AgentGraph) -> tuple[float, float]:
    """A deterministic stand-in for evaluation: reasoning helps, samples cost tokens."""
    acc, tokens = 0.3, 0.0
    for node in graph.nodes:
        acc += {"cot": 0.2, "self_consistency": 0.3, "self_refine": 0.25, "aggregate": 0.05}.get(node.op, 0.0)
        tokens += 100 * node.expected_calls()
    return min(acc, 1.0), tokens


def complete(c: Candidate) -> TrialResult:
    """A COMPLETE result for ``c`` scored by :func:`fake_score`."""
    acc, tokens = fake_score(c.graph)
    return TrialResult("COMPLETE", {"val_score": acc, "tokens_per_question": tokens, "calls_per_question": 1.0})


def scripted_proposer(n: int = 400) -> Any:
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


class OptimizerContract:
    """What the search loop and the study rely on from every optimizer (see the module docstring)."""

    #: Whether the optimizer supports several objectives (a Pareto set from ``best()``).
    multi_objective: bool = True
    #: Whether its state is durable: a second ``make`` on the same path resumes the study.
    durable: bool = True

    def make(
        self,
        path: Path,
        objectives: tuple[str, ...] = ("accuracy",),
        baselines: dict[str, AgentGraph] | None = None,
        study: str = "s",
        space: Any = None,
    ) -> Optimizer:
        raise NotImplementedError("a contract subclass implements make()")

    def test_ask_returns_valid_distinct_candidates(self, tmp_path: Path) -> None:
        opt = self.make(tmp_path)
        seen = set()
        for _ in range(6):
            c = opt.ask()
            assert isinstance(c, Candidate) and isinstance(c.graph, AgentGraph)
            c.graph.check()
            assert c.number not in seen
            seen.add(c.number)
            opt.tell(c, complete(c))
        assert [t.number for t in opt.trials()] == sorted(seen)

    def test_tell_records_every_state(self, tmp_path: Path) -> None:
        opt = self.make(tmp_path)
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

    def test_baselines_come_first(self, tmp_path: Path) -> None:
        base = baseline_graphs()
        opt = self.make(tmp_path, baselines=base)
        got = []
        for _ in range(len(base)):
            c = opt.ask()
            got.append((c.origin, c.graph.config_hash))
            opt.tell(c, complete(c))
        assert got == [(f"baseline:{n}", g.config_hash) for n, g in base.items()]

    def test_best_is_the_top_score(self, tmp_path: Path) -> None:
        opt = self.make(tmp_path)
        for _ in range(8):
            c = opt.ask()
            opt.tell(c, complete(c))
        best = opt.best()
        top = max(t.values[0] for t in opt.trials() if t.state == "COMPLETE")  # type: ignore[index]
        assert len(best) == 1 and best[0].values[0] == top and best[0].graph is not None  # type: ignore[index]

    def test_state_survives_a_new_process(self, tmp_path: Path) -> None:
        if not self.durable:
            pytest.skip("this optimizer keeps its state in memory")
        opt = self.make(tmp_path, baselines=baseline_graphs())
        for _ in range(3):
            c = opt.ask()
            opt.tell(c, complete(c))
        again = self.make(tmp_path, baselines=baseline_graphs())
        assert again.resumed
        assert [t.number for t in again.trials()] == [t.number for t in opt.trials()]
        c = again.ask()  # the 4th baseline is still queued, not enqueued twice
        assert c.origin == "baseline:self_refine"
        again.tell(c, complete(c))
        assert sum(t.origin.startswith("baseline:") for t in again.trials()) == 4

    def test_interrupted_trial_is_requeued(self, tmp_path: Path) -> None:
        if not self.durable:
            pytest.skip("this optimizer keeps its state in memory")
        opt = self.make(tmp_path)
        c = opt.ask()  # left RUNNING, as if the process was killed
        again = self.make(tmp_path)
        failed = [t for t in again.trials() if t.state == "FAIL"]
        assert [t.number for t in failed] == [c.number] and "interrupted" in (failed[0].reason or "")
        redo = again.ask()
        assert redo.graph == c.graph

    def test_multi_objective_gives_a_pareto_set(self, tmp_path: Path) -> None:
        if not self.multi_objective:
            pytest.skip("single-objective")
        opt = self.make(tmp_path, objectives=("accuracy", "tokens"))
        for _ in range(10):
            c = opt.ask()
            opt.tell(c, complete(c))
        front = opt.best()
        assert front
        done = [t for t in opt.trials() if t.state == "COMPLETE"]
        for t in front:  # nobody strictly dominates a Pareto member
            assert not any(
                o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values  # type: ignore[index]
                for o in done
            )
        assert not opt.should_prune(opt.ask(), 2, 0.1)  # Optuna does not prune multi-objective studies
