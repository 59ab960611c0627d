"""Evaluator: concurrency, per-example records, retries, failure kinds, the run-dir cache."""

from __future__ import annotations

from agentsearch.evaluators.benchmarks import Example
from agentsearch.evaluators.evaluator import Evaluator
from agentsearch.evaluators.llm.lm import configure_cache
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.search_space.graph import AgentGraph
from tests.conftest import QUESTIONS, make_lm

EXAMPLES = [Example(id=f"q{i}", question=q, answer=a) for i, (q, a) in enumerate(QUESTIONS.items())][:20]


def metric(example: Example, prediction: str) -> bool:
    return prediction == example.answer


def _run(server, graph=None, concurrency=4, **lm_kw):
    program = compile_graph(graph or AgentGraph.single("cot"), lms={"default": make_lm(server, **lm_kw)})
    return Evaluator(metric, concurrency=concurrency, retry_backoff_s=0.01).evaluate(program, EXAMPLES)


def test_records_and_aggregates(fake_server):
    fake_server.policy.p_reasoning = 1.0
    result = _run(fake_server)
    assert result.n == 20 and result.score == 1.0 and result.n_errors == 0
    assert result.calls == 20 == fake_server.n_requests and result.calls_per_question == 1.0
    rec = result.records[0]
    assert rec.id == "q0" and rec.prediction == rec.gold and rec.correct
    assert rec.prompt_tokens > 0 and rec.completion_tokens > 0 and rec.latency_s > 0
    assert result.tokens_per_question == sum(r.tokens for r in result.records) / 20
    assert result.summary()["usage_by_model"]["default"]["calls"] == 20
    assert [r.id for r in result.records] == [e.id for e in EXAMPLES]  # order kept under concurrency


def test_concurrency_is_bounded(fake_server):
    fake_server.latency = 0.05
    _run(fake_server, concurrency=3)
    assert fake_server.max_in_flight == 3


def test_endpoint_failure_is_retried_then_recorded_never_raised(fake_server):
    fake_server.fail_next(1, status=500)
    result = _run(fake_server, concurrency=1, num_retries=1)
    assert result.n_errors == 0 and result.records[0].attempts == 1  # the LM client retried the call: fine

    fake_server.fail_next(1, status=500)
    result = _run(fake_server, concurrency=1)  # no client retries: recorded, the example is not run again
    assert result.n_endpoint_errors == 1 and result.records[0].attempts == 1

    fake_server.set_failure_rate(1.0, status=503)
    result = _run(fake_server)
    assert result.n == 20 and result.n_errors == 20 and result.n_endpoint_errors == 20
    assert all(r.error_kind == "endpoint" and not r.correct for r in result.records)
    assert "LMServerError" in result.records[0].error or "LM" in result.records[0].error


def test_unusable_model_output_is_a_wrong_answer_not_an_endpoint_failure(fake_server):
    fake_server.policy = lambda req: "I refuse to follow any format.\nNo."
    result = _run(fake_server, graph=AgentGraph.single("cot", format="chat"))  # DSPy's adapter: a parse error
    assert result.n_errors == 20 and result.n_endpoint_errors == 0
    assert all(r.error_kind == "model" and r.attempts == 1 and not r.correct for r in result.records)
    assert result.n_no_answer == 20 and result.no_answer_rate == 1.0

    result = _run(fake_server)  # the text format reads what it can: here nothing, so no answer
    assert result.n_errors == 0 and result.n_no_answer == 20 and result.score == 0.0
    assert result.summary()["no_answer_rate"] == 1.0


def test_cache_lives_in_the_run_dir_and_can_be_off(fake_server, tmp_path):
    configure_cache(tmp_path / "cache")
    try:
        first = _run(fake_server, cache=True)
        n = fake_server.n_requests
        second = _run(fake_server, cache=True)
        assert fake_server.n_requests == n, "a cached evaluation sends nothing"
        assert [r.prediction for r in second.records] == [r.prediction for r in first.records]
        assert sum(r.cached_calls for r in second.records) == 20 and second.spent_tokens == 0
        # a cached call is free now, but the design still costs what it cost when the call was made
        assert second.tokens == first.tokens > 0
        assert [r.tokens for r in second.records] == [r.tokens for r in first.records]
        assert any((tmp_path / "cache").iterdir())
    finally:
        configure_cache(None)
    _run(fake_server, cache=False)
    assert fake_server.n_requests == n + 20


def test_trace_hook_wraps_the_chosen_examples_and_gets_their_records(fake_server):
    from contextlib import contextmanager

    entered, outcomes = [], {}

    @contextmanager
    def around(example):
        entered.append(example.id)
        yield lambda record: outcomes.__setitem__(example.id, (record.prediction, record.correct))

    def hook(example):
        return around(example) if example.id in ("q0", "q3") else None  # None: not wrapped

    program = compile_graph(AgentGraph.single("cot"), lms={"default": make_lm(fake_server)})
    result = Evaluator(metric, concurrency=4, trace=hook).evaluate(program, EXAMPLES)
    assert sorted(entered) == ["q0", "q3"] and set(outcomes) == {"q0", "q3"}
    by_id = {r.id: r for r in result.records}
    assert all(outcomes[i] == (by_id[i].prediction, by_id[i].correct) for i in outcomes)
    assert result.n == 20 and result.n_errors == 0
