"""Statistics against known answers; the top-k selection; the report's baselines and verdicts."""

from __future__ import annotations

import math

import pytest

from agentsearch.evaluators.benchmarks import Example
from agentsearch.evaluators.evaluator import ExampleRecord
from agentsearch.optimizers.base import FinishedTrial
from agentsearch.runs.report import best_baseline_variants, compare_with_baselines, matched_cot_sc
from agentsearch.runs.selection import select_best, top_trials
from agentsearch.runs.stats import (
    accuracy_ci,
    format_p,
    mcnemar_exact,
    outcomes_by_id,
    paired_comparison,
    questions_to_separate,
)
from agentsearch.search_space.baselines import baseline_graphs, cot_sc
from agentsearch.search_space.graph import AgentGraph

# -- statistics ------------------------------------------------------------------------------------


def test_mcnemar_exact_matches_the_binomial_by_hand():
    # 10 vs 2 discordant pairs: p = 2 * P(X <= 2 | n = 12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_exact(2, 10) == pytest.approx(2 * 79 / 4096)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)


def test_bootstrap_ci_agrees_with_the_normal_approximation():
    outcomes = [True] * 90 + [False] * 60  # p = 0.6, n = 150
    acc = accuracy_ci(outcomes)
    half = 1.96 * math.sqrt(0.6 * 0.4 / 150)
    assert acc.accuracy == 0.6 and acc.n == 150 and acc.correct == 90
    assert acc.ci_low == pytest.approx(0.6 - half, abs=0.015)
    assert acc.ci_high == pytest.approx(0.6 + half, abs=0.015)
    assert accuracy_ci(outcomes) == acc  # seeded: the same interval every time
    assert "0.600 (95% CI" in acc.describe()


def test_all_right_or_all_wrong_gets_wilsons_interval_not_a_point():
    perfect = accuracy_ci([True] * 12)
    assert perfect.accuracy == 1.0 == perfect.ci_high and perfect.ci_low == pytest.approx(0.7575, abs=1e-3)
    zero = accuracy_ci([False] * 5)
    assert zero.ci_low == 0.0 and zero.ci_high == pytest.approx(0.4345, abs=1e-3)
    assert accuracy_ci([]).n == 0


def test_paired_comparison_and_verdicts():
    ids = [f"q{i}" for i in range(100)]
    a = {i: k < 70 for k, i in enumerate(ids)}  # 70%
    b = {i: k < 50 for k, i in enumerate(ids)}  # 50%, and every question b gets right a gets right too
    cmp = paired_comparison(a, b, "best", "cot_sc5")
    assert cmp.n == 100 and cmp.a_only == 20 and cmp.b_only == 0
    assert cmp.diff == pytest.approx(0.2) and cmp.p_value == pytest.approx(mcnemar_exact(20, 0))
    assert cmp.ci_low > 0.1 and cmp.ci_high < 0.3 and cmp.significant and cmp.winner == "best"
    assert cmp.verdict("cot_sc5").startswith("best beats cot_sc5 by +20.0 points (95% CI +")
    worse = paired_comparison(b, a, "best", "cot_sc5")
    assert worse.winner == "cot_sc5" and worse.verdict("cot_sc5").endswith(": keep cot_sc5")
    close = paired_comparison({i: k < 52 for k, i in enumerate(ids)}, b, "best", "cot")
    assert not close.significant and close.verdict("cot").startswith("no significant difference between best and cot")
    assert "p = 0.50" in close.verdict("cot") and close.verdict("cot").endswith(": keep cot")
    # 5 to 0 discordant: the bootstrap CI excludes 0 but the exact test does not reject; not significant
    few = paired_comparison({i: k < 5 for k, i in enumerate(ids)}, {i: False for i in ids}, "best", "cot")
    assert few.p_value == pytest.approx(0.0625) and few.ci_low > 0 and not few.significant


def test_only_shared_questions_are_compared_and_failures_left_out():
    recs = [
        {"id": "a", "correct": True, "error_kind": None},
        {"id": "b", "correct": False, "error_kind": "endpoint"},
        {"id": "c", "correct": False, "error_kind": "model"},
    ]
    assert outcomes_by_id(recs) == {"a": True, "c": False}
    cmp = paired_comparison({"a": True, "c": False}, {"a": False, "z": True})
    assert cmp.n == 1 and cmp.a_only == 1


def test_questions_to_separate():
    a = {str(i): i < 24 for i in range(40)}
    b = {str(i): i < 22 for i in range(40)}
    need = questions_to_separate(a, b)
    assert need is not None and need > 40
    # at the size it names (80% power), the same rates are significant
    scale = math.ceil(need / 40)
    big_a = {f"{k}-{j}": v for j in range(scale) for k, v in a.items()}
    big_b = {f"{k}-{j}": v for j in range(scale) for k, v in b.items()}
    assert paired_comparison(big_a, big_b).significant
    assert questions_to_separate(a, a) is None
    assert format_p(0.0001) == "p < 0.001" and format_p(0.0123) == "p = 0.012" and format_p(0.41) == "p = 0.41"


# -- selection -------------------------------------------------------------------------------------

VAL = [Example(f"v{i}", f"q{i}", str(i)) for i in range(10)]


def _trial(number, state, score, n, outcomes="", origin="tpe", graph=None, tokens=100.0):
    graph = graph or AgentGraph.single("cot", temperature=round(0.1 * (number % 10), 1))
    metrics = {"val_score": score, "n_examples": float(n), "tokens_per_question": tokens}
    return FinishedTrial(number, state, graph, {}, [score] if state == "COMPLETE" else None, metrics, origin,
                         outcomes=outcomes)


def test_top_trials_rank_by_score_then_cost_one_per_config():
    g = AgentGraph.single("cot", temperature=0.5)
    trials = [
        _trial(0, "COMPLETE", 0.5, 10, "1" * 5 + "0" * 5),
        _trial(1, "PRUNED", 0.75, 4, "1110"),
        _trial(2, "COMPLETE", 0.5, 10, "1" * 5 + "0" * 5, tokens=50.0),
        _trial(3, "COMPLETE", 0.9, 10, "1" * 9 + "0", graph=g),
        _trial(4, "COMPLETE", 0.9, 10, "1" * 9 + "0", graph=g),  # a duplicate config
        _trial(5, "FAIL", 1.0, 10),
        _trial(6, "PRUNED", 0.0, 0),  # over budget, never run
    ]
    assert [t.number for t in top_trials(trials, 4)] == [3, 1, 2, 0]


def test_pruned_contenders_are_completed_on_the_full_split_and_the_winner_chosen_there():
    trials = [
        _trial(0, "COMPLETE", 0.6, 10, "1111110000"),
        _trial(1, "PRUNED", 1.0, 4, "1111"),  # lucky on its first 4 questions
        _trial(2, "COMPLETE", 0.5, 10, "1111100000"),
    ]
    asked = []

    def complete(trial, examples):
        asked.append((trial.number, [e.id for e in examples]))
        return [ExampleRecord(e.id, e.question, e.answer, correct=False, prompt_tokens=10) for e in examples]

    store: dict = {}
    sel = select_best(trials, VAL, complete, k=2, store=store)
    assert asked == [(1, [f"v{i}" for i in range(4, 10)])]  # only the questions it was not scored on
    assert [c.trial.number for c in sel.contenders] == [0, 1]
    assert sel.winner.trial.number == 0 and sel.winner.val_score == 0.6
    assert sel.contenders[1].val_score == 0.4 and sel.contenders[1].completed == 6
    assert sel.warning and "too small to separate" in sel.warning and "--val-size" in sel.warning
    # a finished study keeps what it completed
    assert store["1"]["outcomes"] == "1111000000"
    again = select_best(trials, VAL, lambda t, e: pytest.fail("re-evaluated"), k=2, store=store)
    assert again.winner.trial.number == 0


def test_a_clear_winner_carries_no_warning():
    val = [Example(f"v{i}", f"q{i}", "1") for i in range(60)]
    trials = [_trial(0, "COMPLETE", 0.9, 60, "1" * 54 + "0" * 6), _trial(1, "COMPLETE", 0.3, 60, "1" * 18 + "0" * 42)]
    sel = select_best(trials, val, lambda t, e: [], k=3)
    assert sel.winner.trial.number == 0 and sel.warning is None and sel.comparison.significant


# -- report ----------------------------------------------------------------------------------------


def test_each_baseline_is_reported_in_its_best_format():
    base = baseline_graphs()
    trials = [
        _trial(0, "COMPLETE", 0.3, 10, origin="baseline:cot", graph=base["cot"]),
        _trial(1, "COMPLETE", 0.5, 10, origin="baseline:cot@chat", graph=base["cot"].with_format("chat")),
        _trial(2, "COMPLETE", 0.4, 10, origin="baseline:direct", graph=base["direct"]),
        _trial(3, "COMPLETE", 0.4, 10, origin="baseline:direct@xml", graph=base["direct"].with_format("xml")),
        _trial(4, "PRUNED", 0.9, 4, origin="baseline:cot_sc5@json", graph=base["cot_sc5"].with_format("json")),
        _trial(5, "COMPLETE", 0.9, 10, origin="tpe"),
    ]
    chosen = best_baseline_variants(trials)
    assert list(chosen) == ["direct", "cot"]  # in the baselines' order; a pruned variant never counts
    assert chosen["cot"].number == 1  # the better format wins
    assert chosen["direct"].number == 2  # a tie goes to the primary format


def test_cot_sc_is_matched_to_the_best_agents_cost_and_compared_on_the_same_questions():
    base = baseline_graphs()
    test = [Example(f"t{i}", f"q{i}", "1") for i in range(100)]
    graphs = {
        "baseline:cot": base["cot"],
        "baseline:cot_sc5": base["cot_sc5"].with_format("chat"),
        "best:0": AgentGraph.single("debate", agents=3, rounds=2),
    }
    results = {
        "baseline:cot": {"score": 0.5, "tokens_per_question": 300.0, "outcomes": "1" * 50 + "0" * 50},
        "baseline:cot_sc5": {"score": 0.6, "tokens_per_question": 1500.0, "outcomes": "1" * 60 + "0" * 40},
        "best:0": {"score": 0.8, "tokens_per_question": 2700.0, "outcomes": "1" * 80 + "0" * 20},
    }
    chosen = {"cot": None, "cot_sc5": None}
    label, graph = matched_cot_sc(results, graphs, chosen)
    assert label == "matched:cot_sc9" and graph == cot_sc(9, "chat")  # 2700 / (1500 / 5) = 9 samples
    results[label] = {"score": 0.62, "tokens_per_question": 2650.0, "outcomes": "1" * 62 + "0" * 38}
    graphs[label] = graph
    comparisons = compare_with_baselines(results, graphs, test, baselines_val={"cot": 0.7, "cot_sc5": 0.8})
    assert [c["vs"] for c in comparisons] == ["cot_sc5", "cot_sc9"]  # the strongest on validation
    assert comparisons[0]["kind"] == "strongest baseline" and comparisons[0]["a_only"] == 20
    assert comparisons[0]["verdict"].startswith("best beats cot_sc5 by +20.0 points")
    assert "CoT-SC at matched cost: 2700 vs 2650 tokens/question" in comparisons[1]["verdict"]
    # the comparator is chosen on validation, never by its test score
    by_val = compare_with_baselines(results, graphs, test, baselines_val={"cot": 0.9, "cot_sc5": 0.8})
    assert by_val[0]["vs"] == "cot"
    # five samples match: the baseline itself is the comparison, said once
    results["best:0"]["tokens_per_question"] = 1400.0
    del results[label], graphs[label]
    assert matched_cot_sc(results, graphs, chosen)[0] == "baseline:cot_sc5"
    once = compare_with_baselines(results, graphs, test, baselines_val={"cot": 0.7, "cot_sc5": 0.8})
    assert len(once) == 1 and once[0]["kind"] == "strongest baseline; CoT-SC at matched cost"
    assert "CoT-SC at matched cost: 1400 vs 1500 tokens/question" in once[0]["verdict"]
