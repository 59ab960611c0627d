"""The search space: define-by-run sampling, levels, the topology grammar, encoding, budget."""

from __future__ import annotations

import collections

import optuna
import pytest

from agentsearch.errors import UserError
from agentsearch.search_space.baselines import baseline_graphs
from agentsearch.search_space.graph import ENTRY, AgentGraph
from agentsearch.search_space.space import SOLVERS, SearchSpace, graph_from_params

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sample(space: SearchSpace, n: int = 200, seed: int = 0):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(n):
        trial = study.ask()
        graph = space.sample(trial)
        yield trial, graph
        study.tell(trial, 0.0)


def test_every_sample_is_valid_and_rebuilt_exactly_from_its_params():
    space = SearchSpace()
    for trial, graph in _sample(space):
        graph.check()
        assert graph_from_params(space, trial.params) == graph


def test_grammar_covers_widths_depths_aggregators_and_finals():
    space = SearchSpace()
    widths, aggs, finals, chains = collections.Counter(), collections.Counter(), collections.Counter(), 0
    for trial, graph in _sample(space, 300):
        widths[trial.params["agent.width"]] += 1
        finals[trial.params["agent.final"]] += 1
        if "agent.aggregator" in trial.params:
            aggs[trial.params["agent.aggregator"]] += 1
        chains += any(set(n.inputs) - {ENTRY} and n.op in SOLVERS and n.id.startswith("b") for n in graph.nodes)
    assert set(widths) == {1, 2, 3}
    assert set(aggs) == {"vote", "fuse", "rank", "judge", "aggregate"}
    assert set(finals) == {"none", "self_refine", "reflexion"}
    assert chains > 0, "branches of depth 2 chain two operators"


def test_parameter_names_are_hierarchical():
    names = set()
    for trial, _ in _sample(SearchSpace(), 100):
        names |= set(trial.params)
    assert {
        "agent.width",
        "agent.final",
        "node.b1s1.op",
        "node.b1s1.temperature",
        "prompt.b1s1.instruction",
        "prompt.b1s1.style",
    } <= names
    assert any(n.startswith("node.b1s1.self_consistency.") for n in names)


def test_levels_off_hold_defaults():
    for trial, graph in _sample(SearchSpace.from_levels("prompt"), 30):
        assert [n.op for n in graph.nodes] == ["cot"] and all(k.startswith("prompt.") for k in trial.params)
    for _, graph in _sample(SearchSpace.from_levels("module"), 30):
        assert len(graph.nodes) == 1 and graph.nodes[0].params.instruction is None
    for _, graph in _sample(SearchSpace.from_levels("agent"), 30):
        assert {n.op for n in graph.nodes if n.id.startswith("b")} == {"cot"}


def test_several_models_make_routing_searchable():
    space = SearchSpace(models=("default", "big"))
    routed = collections.Counter()
    for _, graph in _sample(space, 100):
        routed.update(getattr(n.params, "model", None) for n in graph.nodes)
    assert routed["default"] and routed["big"]


def test_baselines_are_encoded_when_the_space_holds_them():
    full = SearchSpace()
    for name, graph in baseline_graphs().items():
        params = full.encode(graph)
        assert params is not None, name
        assert graph_from_params(full, params).config_hash == graph.config_hash
    prompt_only = SearchSpace.from_levels("prompt")
    assert prompt_only.encode(baseline_graphs()["cot"]) is not None
    assert prompt_only.encode(baseline_graphs()["cot_sc5"]) is None  # not expressible: run as a fixed graph


def test_budget_flags_costly_designs():
    space = SearchSpace(max_calls_per_question=6)
    over = [g for _, g in _sample(space, 100) if space.over_budget(g)]
    assert over and all(g.expected_calls() > 6 for g in over)
    assert not SearchSpace(max_calls_per_question=None).over_budget(over[0])


def test_bad_levels():
    with pytest.raises(UserError, match="unknown level 'cosmic'"):
        SearchSpace.from_levels("prompt,cosmic")
    with pytest.raises(UserError, match="at least one"):
        SearchSpace.from_levels("")


def test_describe_lists_every_sampled_parameter():
    space = SearchSpace()
    described = {row["name"] for row in space.describe()}
    generic = {n.replace("b<i>s<j>", "b1s1") for n in described} | {n.replace("b<i>", "b1") for n in described}
    for trial, _ in _sample(space, 100):
        for name in trial.params:
            canon = (
                name.replace("b2s", "b1s")
                .replace("b3s", "b1s")
                .replace("s2.", "s1.")
                .replace("agent.b2.", "agent.b1.")
                .replace("agent.b3.", "agent.b1.")
                .replace("node.agg.", "node.b1s1.")
            )
            assert canon in generic, name


def test_check_says_why_a_graph_is_outside_the_space():
    space = SearchSpace(formats=("text",), models=("default",), max_calls_per_question=6)
    assert space.check(AgentGraph.single("cot")) is None
    assert "too expensive" in space.check(AgentGraph.single("self_consistency", n=7))
    assert "format 'chat' is not searched" in space.check(AgentGraph.single("cot", format="chat"))
    assert "unknown model alias 'big'" in space.check(AgentGraph.single("cot", model="big"))
    narrow = SearchSpace(solvers=("cot",), aggregators=("vote",), finals=("none",))
    assert "operator 'react' is not in this search space" in narrow.check(AgentGraph.single("react"))


def test_the_prompt_pool_is_an_explicit_immutable_input_of_sample():
    from dataclasses import FrozenInstanceError

    from agentsearch.search_space.space import EMPTY_POOL, PromptPool

    space = SearchSpace.from_levels("prompt", proposal_slots=2, demo_slots=1, formats=("text",))
    pool, at = EMPTY_POOL.with_instruction("Use the numbers twice.")
    assert at == 0 and EMPTY_POOL.instructions == () and pool.with_instruction("Use the numbers twice.")[1] == -1
    pool = pool.with_demo_sets([[{"question": "1+1?", "answer": "2"}]])
    params = {
        "prompt.b1s1.instruction": len(space.instructions),
        "prompt.b1s1.style": "plain",
        "prompt.b1s1.demos": 1,
    }
    with_pool = graph_from_params(space, params, pool).nodes[0].params
    without = graph_from_params(space, params).nodes[0].params
    assert with_pool.instruction == "Use the numbers twice." and len(with_pool.demos) == 1
    assert not without.instruction and not without.demos  # an unfilled slot is the default
    assert PromptPool.from_dict(pool.to_dict()) == pool
    with pytest.raises(FrozenInstanceError):
        pool.instructions = ()  # type: ignore[misc]
