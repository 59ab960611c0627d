"""The evolutionary optimizer: mutation operators, crossover, selection, and the optimizer end to end."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from dspy.utils.dummies import DummyLM

from agentsearch.errors import UserError
from agentsearch.evaluators.llm.lm import MeteringMixin
from agentsearch.optimizers.evolution import (
    MUTATIONS,
    Evolution,
    _pool_texts,
    analyze,
    crossover_branches,
    crossover_configs,
)
from agentsearch.optimizers.proposal import StrategyOptimizer
from agentsearch.optimizers.store import open_storage
from agentsearch.search_space.baselines import baseline_graphs
from agentsearch.search_space.graph import ENTRY, AgentGraph
from agentsearch.search_space.operators import OPERATORS
from agentsearch.search_space.space import SearchSpace
from agentsearch.testing.optimizers import OptimizerContract
from tests.optimizers import test_contract as contract
from tests.optimizers.test_contract import complete

SPACE = SearchSpace()
SEEDS = range(8)


def _g(output: str, *nodes: dict, name: str = "g") -> AgentGraph:
    return AgentGraph.from_dict({"name": name, "output": output, "nodes": list(nodes)})


GRAPHS: dict[str, AgentGraph] = {
    "single": AgentGraph.single("cot"),
    "three_vote": _g(
        "agg",
        {"id": "b1s1", "op": "cot", "params": {"temperature": 0.2}},
        {"id": "b2s1", "op": "self_consistency", "params": {"n": 3}},
        {"id": "b3s1", "op": "predict"},
        {"id": "agg", "op": "vote", "inputs": ["b1s1", "b2s1", "b3s1"]},
    ),
    "chain_final": _g(
        "final",
        {"id": "b1s1", "op": "plan_and_solve"},
        {"id": "b1s2", "op": "cot", "inputs": ["b1s1"], "params": {"instruction": "Check the plan."}},
        {"id": "final", "op": "self_refine", "inputs": ["b1s2"], "params": {"rounds": 1}},
    ),
    "user_odd_ids": _g(  # a branch of two steps, the entry read by the judge, a verify stage at the exit
        "polish",
        {"id": "Draft-1", "op": "cot"},
        {"id": "alt_x", "op": "self_consistency", "params": {"n": 3, "temperature": 0.5}},
        {"id": "critic", "op": "self_refine", "inputs": ["Draft-1"]},
        {"id": "JUDGE", "op": "judge", "inputs": [ENTRY, "critic", "alt_x"]},
        {"id": "polish", "op": "reflexion", "inputs": ["JUDGE"], "params": {"max_trials": 1}},
    ),
    "diamond": _g(  # two branches sharing their first node
        "merge",
        {"id": "p", "op": "plan_and_solve"},
        {"id": "x", "op": "cot", "inputs": ["p"]},
        {"id": "y", "op": "cot", "inputs": [ENTRY, "p"], "params": {"temperature": 0.4}},
        {"id": "merge", "op": "fuse", "inputs": ["x", "y"]},
    ),
}

#: Which mutations apply to which graphs (True) or must answer None (False).
APPLIES = {
    "swap_op": dict.fromkeys(GRAPHS, True),
    "knobs": dict.fromkeys(GRAPHS, True),
    "instruction": dict.fromkeys(GRAPHS, True),
    "add_branch": {"single": True, "three_vote": False, "chain_final": True, "user_odd_ids": True, "diamond": True},
    "remove_branch": {"single": False, "three_vote": True, "chain_final": False, "user_odd_ids": True,
                      "diamond": True},
    "change_aggregator": {"single": False, "three_vote": True, "chain_final": False, "user_odd_ids": True,
                          "diamond": True},
    "add_final": {"single": True, "three_vote": True, "chain_final": False, "user_odd_ids": False,
                  "diamond": True},
    "remove_final": {"single": False, "three_vote": False, "chain_final": True, "user_odd_ids": True,
                     "diamond": False},
    "change_final": {"single": False, "three_vote": False, "chain_final": True, "user_odd_ids": True,
                     "diamond": False},
}


def test_every_mutation_kind_is_covered():
    assert set(APPLIES) == set(MUTATIONS)


def test_analyze_reads_branches_aggregator_and_final():
    shape = analyze(GRAPHS["user_odd_ids"])
    assert (shape.final, shape.agg, shape.core) == ("polish", "JUDGE", "JUDGE")
    assert shape.tips == ("critic", "alt_x")
    assert shape.branches == (("Draft-1", "critic"), ("alt_x",))
    diamond = analyze(GRAPHS["diamond"])
    assert diamond.final is None and diamond.branches == (("p", "x"), ("p", "y"))
    single = analyze(GRAPHS["single"])
    assert (single.agg, single.final, single.tips) == (None, None, ("solve",))
    refine_only = analyze(AgentGraph.single("self_refine"))  # no upstream: a solver, not a final stage
    assert refine_only.final is None


@pytest.mark.parametrize("graph_name", sorted(GRAPHS))
@pytest.mark.parametrize("kind", sorted(MUTATIONS))
def test_mutation_gives_a_valid_new_graph_or_none(kind, graph_name):
    graph, mutate = GRAPHS[graph_name], MUTATIONS[kind]
    for seed in SEEDS:
        child = mutate(graph, random.Random(seed), SPACE)
        if not APPLIES[kind][graph_name]:
            assert child is None, f"{kind} should not apply to {graph_name}"
            continue
        assert isinstance(child, AgentGraph), f"{kind} gave nothing on {graph_name} (seed {seed})"
        child.check()
        again = AgentGraph.from_text(child.to_yaml())
        assert again == child
        assert child.config_hash != graph.config_hash
        assert mutate(graph, random.Random(seed), SPACE) == child  # reproducible for a seed


def test_add_branch_introduces_an_aggregator_and_keeps_the_final_stage():
    child = MUTATIONS["add_branch"](GRAPHS["single"], random.Random(0), SPACE)
    shape = analyze(child)
    assert shape.agg == "agg" and shape.width == 2 and child.output == "agg"
    assert child.node("agg").op in SPACE.aggregators and "b2s1" in {n.id for n in child.nodes}
    child = MUTATIONS["add_branch"](GRAPHS["chain_final"], random.Random(1), SPACE)
    shape = analyze(child)
    assert child.output == "final" and child.node("final").upstream == ("agg",)
    assert shape.width == 2 and shape.branches[0] == ("b1s1", "b1s2")
    child = MUTATIONS["add_branch"](GRAPHS["user_odd_ids"], random.Random(2), SPACE)
    assert analyze(child).width == 3 and child.node("JUDGE").inputs[0] == ENTRY


def test_remove_branch_keeps_one_and_drops_a_lone_aggregator():
    for seed in SEEDS:
        child = MUTATIONS["remove_branch"](GRAPHS["three_vote"], random.Random(seed), SPACE)
        assert analyze(child).width == 2 and child.node("agg").op == "vote"
        child = MUTATIONS["remove_branch"](GRAPHS["user_odd_ids"], random.Random(seed), SPACE)
        assert "JUDGE" not in {n.id for n in child.nodes} and child.output == "polish"
        assert child.node("polish").upstream[0] in ("critic", "alt_x")
        child = MUTATIONS["remove_branch"](GRAPHS["diamond"], random.Random(seed), SPACE)
        assert {n.id for n in child.nodes} in ({"p", "x"}, {"p", "y"})  # the shared node stays


def test_swap_operator_carries_common_params_only():
    graph = AgentGraph.single("self_consistency", n=5, temperature=0.4, instruction="Be careful.", max_tokens=300)
    for seed in SEEDS:
        child = MUTATIONS["swap_op"](graph, random.Random(seed), SPACE)
        node = child.nodes[0]
        assert node.op != "self_consistency" and node.op in SPACE.solvers
        assert (node.params.temperature, node.params.instruction, node.params.max_tokens) == (0.4, "Be careful.", 300)
        for knob, domain in node.spec.knobs.items():
            value = getattr(node.params, knob)
            default = node.spec.params.model_fields[knob].default
            assert value == default or value in _domain(domain)
    # the op's default instruction plus a style follows the new op's default
    styled = AgentGraph.single("cot", instruction=OPERATORS["cot"].default_instruction + " Think step by step.")
    for seed in SEEDS:
        node = MUTATIONS["swap_op"](styled, random.Random(seed), SPACE).nodes[0]
        assert node.params.instruction == f"{node.spec.default_instruction} Think step by step."


def _domain(domain: tuple) -> list:
    return list(range(domain[1], domain[2] + 1, domain[3])) if domain[0] == "int" else list(domain[1])


def test_knobs_stay_in_their_domains():
    grid = SPACE.temperatures()
    for name, graph in GRAPHS.items():
        for seed in range(20):
            child = MUTATIONS["knobs"](graph, random.Random(seed), SPACE)
            changed = [n for n in child.nodes if n.params != graph.node(n.id).params]
            assert len(changed) == 1, name
            node, old = changed[0], graph.node(changed[0].id)
            diff = [k for k in type(node.params).model_fields if getattr(node.params, k) != getattr(old.params, k)]
            assert len(diff) == 1
            value = getattr(node.params, diff[0])
            assert value in (grid if diff[0] == "temperature" else _domain(node.spec.knobs[diff[0]]))


def test_instruction_from_the_pool_without_an_lm():
    graph = GRAPHS["chain_final"]
    for seed in SEEDS:
        child = MUTATIONS["instruction"](graph, random.Random(seed), SPACE)
        changed = [n for n in child.nodes if n.params != graph.node(n.id).params]
        assert len(changed) == 1 and changed[0].spec.kind == "solver"
        assert changed[0].params.instruction in _pool_texts(SPACE, changed[0].op)


def test_mutations_respect_the_space():
    narrow = SearchSpace(aggregators=("vote",), finals=("none",), max_width=2, solvers=("cot", "predict"))
    assert MUTATIONS["change_aggregator"](GRAPHS["three_vote"], random.Random(0), narrow) is None
    assert MUTATIONS["add_final"](GRAPHS["single"], random.Random(0), narrow) is None
    assert MUTATIONS["remove_final"](GRAPHS["chain_final"], random.Random(0), SearchSpace(finals=("self_refine",))) \
        is None
    assert MUTATIONS["add_branch"](GRAPHS["diamond"], random.Random(0), narrow) is None  # max_width 2
    for seed in SEEDS:
        assert MUTATIONS["swap_op"](GRAPHS["single"], random.Random(seed), narrow).nodes[0].op == "predict"
    assert SearchSpace(temperature=(0.2, 0.6)).temperatures() == [0.2, 0.3, 0.4, 0.5, 0.6]


@pytest.mark.parametrize("pair", [("three_vote", "user_odd_ids"), ("single", "diamond"), ("chain_final", "single")])
def test_crossover_branches_mixes_both_parents(pair):
    a, b = (GRAPHS[n] for n in pair)

    def configs(graph: AgentGraph, ids) -> set[str]:
        return {repr((graph.node(i).op, graph.node(i).params)) for i in ids}

    for seed in SEEDS:
        child = crossover_branches(a, b, random.Random(seed), SPACE)
        child.check()
        shape = analyze(child)
        assert shape.agg == "agg" and 2 <= shape.width <= SPACE.max_width
        assert child.config_hash not in (a.config_hash, b.config_hash)
        branch_configs = [configs(child, br) for br in shape.branches]
        from_a = set().union(*(configs(a, br) for br in analyze(a).branches))
        from_b = set().union(*(configs(b, br) for br in analyze(b).branches))
        assert any(c <= from_a for c in branch_configs) and any(c <= from_b for c in branch_configs)
        assert len({n.id for n in child.nodes}) == len(child.nodes)


def test_crossover_branches_respects_max_width():
    space = SearchSpace(max_width=2)
    for seed in SEEDS:
        child = crossover_branches(GRAPHS["three_vote"], GRAPHS["diamond"], random.Random(seed), space)
        assert analyze(child).width == 2
    assert crossover_branches(GRAPHS["single"], GRAPHS["diamond"], random.Random(0), SearchSpace(max_width=1)) \
        is None


def test_crossover_configs_takes_a_topology_and_b_configs():
    a = _g("agg", {"id": "b1s1", "op": "cot"}, {"id": "b2s1", "op": "predict"},
           {"id": "agg", "op": "vote", "inputs": ["b1s1", "b2s1"]})
    b = _g("agg", {"id": "b1s1", "op": "self_consistency", "params": {"n": 3}},
           {"id": "b2s1", "op": "step_back", "params": {"temperature": 0.3}},
           {"id": "agg", "op": "fuse", "inputs": ["b1s1", "b2s1"]})
    seen = set()
    for seed in SEEDS:
        child = crossover_configs(a, b, random.Random(seed), SPACE)
        child.check()
        assert [(n.id, n.inputs) for n in child.nodes] == [(n.id, n.inputs) for n in a.nodes]
        taken = {n.id for n in child.nodes if n.op == b.node(n.id).op}
        assert taken and taken != {"b1s1", "b2s1", "agg"} and child != a and child != b
        seen |= taken
    assert seen == {"b1s1", "b2s1", "agg"}
    assert crossover_configs(a, GRAPHS["user_odd_ids"], random.Random(0), SPACE) is None  # no shared ids


# -- the optimizer ------------------------------------------------------------------------------


def make(path: Path, objectives=("accuracy",), baselines=None, study="s", space=None, seed=1, **kwargs):
    """The factory for the contract suite (and these tests): the Evolution strategy over a study store."""
    return StrategyOptimizer(
        space or SearchSpace(), strategy=Evolution(**kwargs), study_name=study,
        storage=open_storage(str(path / "study.log"), path), sampler="tpe", pruner="sha", objectives=objectives,
        seed=seed, min_resource=2, max_resource=8, startup_trials=3, baselines=baselines,
    )


class TestEvolutionContract(OptimizerContract):
    """The shared contract suite, run on this module's factory (the contract module runs the registry's)."""

    make = staticmethod(make)


def _run(opt, n: int) -> list:
    out = []
    for _ in range(n):
        c = opt.ask()
        out.append(c)
        opt.tell(c, complete(c))
    return out


def test_end_to_end_baselines_then_new_valid_children_and_resume(tmp_path):
    base = baseline_graphs()
    opt = make(tmp_path, baselines=base)
    assert opt.name == "evolution"
    cands = _run(opt, 18)
    assert [c.origin for c in cands[: len(base)]] == [f"baseline:{n}" for n in base]
    evo = [c for c in cands if c.origin.startswith("evolution:")]
    assert len(evo) >= 10
    assert {c.origin.split(":")[1] for c in evo} <= {"mutate", "crossover"}
    assert len({c.origin for c in evo}) >= 3  # several kinds of operators at work
    assert len({c.graph.config_hash for c in cands}) == len(cands)  # every child is new
    for c in evo:
        c.graph.check()
        assert not opt.space.over_budget(c.graph)
        parents = c.info["parents"]
        assert parents and all(p < c.number for p in parents)
        assert c.info["mutations"] or c.origin == "evolution:crossover"
    by_number = {t.number: t for t in opt.trials()}
    assert all(by_number[p].state == "COMPLETE" for c in evo for p in c.info["parents"])

    again = make(tmp_path, baselines=base)
    assert again.resumed and [t.number for t in again.trials()] == [t.number for t in opt.trials()]
    c = again.ask()
    assert c.origin.startswith("evolution:") and c.graph.config_hash not in {x.graph.config_hash for x in cands}
    again.tell(c, complete(c))
    assert len(again.trials()) == len(cands) + 1


def test_waits_for_two_complete_trials(tmp_path):
    opt = make(tmp_path)
    first = opt.ask()
    assert first.origin == "tpe"
    assert opt.strategy.propose(opt.archive(), opt.space, random.Random(0)) is None
    opt.tell(first, complete(first))
    second = opt.ask()
    assert second.origin == "tpe"
    opt.tell(second, contract.TrialResult("PRUNED", {"val_score": 0.0}, step=2))  # pruned: not a parent
    third = opt.ask()
    assert not third.origin.startswith("evolution:")
    opt.tell(third, complete(third))
    assert opt.ask().origin.startswith("evolution:")


def test_same_seed_same_run(tmp_path):
    runs = []
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        cands = _run(make(tmp_path / sub, baselines=baseline_graphs(), seed=7), 10)
        runs.append([(c.origin, c.graph.config_hash) for c in cands])
    assert runs[0] == runs[1]


def test_levels_pick_the_mutations(tmp_path):
    opt = make(tmp_path, space=SearchSpace.from_levels("prompt"))
    assert opt.strategy.kinds(opt.space) == ("instruction",)
    with pytest.raises(UserError, match="unknown mutation"):
        make(tmp_path, study="t", mutations=("teleport",))


class MeteredDummyLM(MeteringMixin, DummyLM):
    """DSPy's DummyLM, metered like the real LMs."""


class BrokenLM(MeteringMixin, DummyLM):
    def forward(self, *args, **kwargs):
        raise RuntimeError("proposer endpoint down")


REWRITE = "Compute every quantity twice before answering; give only the final number in the answer field."


def test_llm_rewrites_the_instruction_and_its_calls_are_metered(tmp_path):
    lm = MeteredDummyLM([{"improved_instruction": REWRITE}] * 3)
    base = {"cot": AgentGraph.single("cot", name="cot"), "direct": AgentGraph.single("predict", name="direct")}
    opt = make(tmp_path, baselines=base, proposer_lm=lm, mutations=("instruction",), crossover_rate=0.0,
               mutation_rate=0.0, task="grade-school math word problems")
    _run(opt, 2)
    c = opt.ask()
    assert c.origin == "evolution:mutate:instruction"
    assert [n.params.instruction for n in c.graph.nodes] == [REWRITE]
    opt.tell(c, complete(c))
    trial = opt.trials()[-1]
    assert trial.metrics["proposer_calls"] == 1.0
    assert all("proposer_calls" not in t.metrics for t in opt.trials()[:2])


def test_failing_proposer_lm_falls_back_to_the_pool(tmp_path):
    base = {"cot": AgentGraph.single("cot", name="cot"), "direct": AgentGraph.single("predict", name="direct")}
    opt = make(tmp_path, baselines=base, proposer_lm=BrokenLM([]), mutations=("instruction",), crossover_rate=0.0)
    _run(opt, 2)
    c = opt.ask()
    assert c.origin == "evolution:mutate:instruction"
    node = c.graph.nodes[0]
    assert node.params.instruction in _pool_texts(SPACE, node.op)


def test_multi_objective_parents_come_from_the_pareto_front(tmp_path):
    opt = make(tmp_path, objectives=("accuracy", "tokens"), baselines=baseline_graphs())
    checked = 0
    for _ in range(16):
        front = {t.number for t in opt.best()}
        c = opt.ask()
        if c.origin.startswith("evolution:"):
            parents = c.info["parents"]
            assert set(parents) <= front, (parents, front)
            checked += 1
        opt.tell(c, complete(c))
    assert checked >= 8


def test_tournament_picks_the_best_of_its_contestants(tmp_path):
    opt = make(tmp_path, baselines=baseline_graphs(), tournament=4)
    _run(opt, 4)
    pool = opt.strategy.parent_pool(opt.archive())
    assert len(pool) == 4
    best = max(pool, key=lambda t: t.values[0])
    assert all(opt.strategy.select(pool, random.Random(s)) is best for s in range(5))  # everyone competes
    opt.strategy.tournament = 1
    picks = {opt.strategy.select(pool, random.Random(s)).number for s in range(40)}
    assert len(picks) > 1


def test_new_nodes_speak_the_spaces_formats() -> None:
    """Evolution draws new nodes with the space's own sampler: a --formats chat study stays in chat."""
    from agentsearch.search_space.space import RandomTrial

    space = SearchSpace(formats=("chat",))
    seen = 0
    for seed in range(30):
        rng = random.Random(seed)
        graph = space.sample(RandomTrial(rng))
        for name, mutate in MUTATIONS.items():
            child = mutate(graph, rng, space)
            if child is None:
                continue
            seen += 1
            for node in child.nodes:
                if "format" in node.spec.params.model_fields:
                    assert node.params.format == "chat", (name, node)
    assert seen > 50


def test_random_trial_draws_from_the_samplers_domains() -> None:
    from agentsearch.search_space.space import RandomTrial

    space = SearchSpace(temperature=(0.2, 0.6))
    rng = random.Random(0)
    temps = {space.solver_node(RandomTrial(rng), "b1s1", [ENTRY])["params"]["temperature"] for _ in range(200)}
    assert temps == set(space.temperatures()) == {0.2, 0.3, 0.4, 0.5, 0.6}
