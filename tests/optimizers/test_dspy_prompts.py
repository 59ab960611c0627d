"""DSPy prompt optimizers as a prompt-level step (agentsearch.optimizers.dspy_prompts), offline.

Every test runs against the fake OpenAI-compatible server; the numbers of LM calls noted below are
what these settings make (deterministic: temperature 0, seeded optimizers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import dspy
import pytest
from dspy.utils.exceptions import LMError

from agentsearch.errors import GraphError, UserError
from agentsearch.evaluators.answers import answers_match, extract_answer
from agentsearch.evaluators.benchmarks import Example
from agentsearch.evaluators.llm.lm import metering
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.optimizers.dspy_prompts import PROMPT_OPTIMIZERS, optimize_prompts
from agentsearch.search_space.graph import AgentGraph
from agentsearch.testing.fake_server import ConstantPolicy, FakeOpenAIServer, ReasoningPolicy
from tests.conftest import QUESTIONS, make_lm

ITEMS = list(QUESTIONS.items())
#: What the proposer/reflection LM answers: an instruction the fake task model rewards (keywords).
NEW_INSTRUCTION = "Think step by step, verify each calculation carefully, then give only the final number."


def metric(example: Example, prediction: str) -> bool:
    return answers_match(extract_answer(prediction), example.answer)


def examples(n: int, start: int = 0) -> list[Example]:
    chosen = ITEMS[start:start + n]
    return [Example(id=f"q{i}", question=q, answer=a) for i, (q, a) in enumerate(chosen, start)]


def perfect(server: FakeOpenAIServer) -> FakeOpenAIServer:
    server.policy = ReasoningPolicy(QUESTIONS, p_direct=1.0, p_reasoning=1.0)
    return server


@pytest.fixture
def proposer() -> Iterator[FakeOpenAIServer]:
    """A second endpoint for the proposer/reflection LM: always answers NEW_INSTRUCTION."""
    with FakeOpenAIServer(ConstantPolicy(NEW_INSTRUCTION)) as server:
        yield server


def user_messages(body: dict) -> list[str]:
    return [str(m.get("content")) for m in body["messages"] if m.get("role") == "user"]


# -- bootstrap --------------------------------------------------------------------------------------


def test_bootstrap_writes_demos_from_correct_traces(fake_server: FakeOpenAIServer) -> None:
    perfect(fake_server)
    lm = make_lm(fake_server)
    graph = AgentGraph.single("cot")
    train = examples(8)
    with metering() as meter:
        out = optimize_prompts(graph, {"default": lm}, train, metric, method="bootstrap", max_demos=3)
    # one call per train example tried; it stops after max_demos correct traces
    assert fake_server.n_requests == 3
    assert meter.total.calls == 3  # every call went through our (metered) LM

    demos = out.node("solve").params.demos
    assert len(demos) == 3
    gold = {ex.question: ex.answer for ex in train}
    for demo in demos:
        assert gold[demo.question] == demo.answer
        assert "step by step" in demo.reasoning
    assert out.node("solve").params.instruction is None  # bootstrap leaves the instruction alone
    assert out.config_hash != graph.config_hash
    assert AgentGraph.from_text(out.to_yaml()) == out
    assert graph.node("solve").params.demos == ()  # the input graph is untouched (frozen)

    # the exported config, compiled again, shows the demos in its prompt
    fake_server.reset()
    question, answer = ITEMS[40]
    pred = compile_graph(out, lms={"default": lm})(question=question)
    assert pred.answer == answer
    (body,) = fake_server.requests
    users = user_messages(body)
    assert len(users) == 4  # three demos, then the question
    for demo, text in zip(demos, users, strict=False):
        assert demo.question in text
    replies = [str(m.get("content")) for m in body["messages"] if m.get("role") == "assistant"]
    assert [d.reasoning in r and d.answer in r for d, r in zip(demos, replies, strict=True)] == [True] * 3


def test_bootstrap_without_a_correct_trace_returns_the_graph(fake_server: FakeOpenAIServer) -> None:
    fake_server.policy = ReasoningPolicy(QUESTIONS, p_direct=0.0, p_reasoning=0.0)
    graph = AgentGraph.single("cot", temperature=0.0)
    out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(5), metric, method="bootstrap")
    assert fake_server.n_requests == 5  # tried every train example (capped by the budget)
    assert out is graph


def test_bootstrap_caps_the_train_examples_tried(fake_server: FakeOpenAIServer) -> None:
    fake_server.policy = ReasoningPolicy(QUESTIONS, p_direct=0.0, p_reasoning=0.0)
    optimize_prompts(AgentGraph.single("cot"), {"default": make_lm(fake_server)}, examples(40), metric,
                     method="bootstrap", budget="light")
    assert fake_server.n_requests == 16  # the light budget's train cap, not the 40 given


def test_bootstrap_multi_predictor_and_multi_node(fake_server: FakeOpenAIServer) -> None:
    perfect(fake_server)
    graph = AgentGraph.from_dict({
        "name": "mix", "output": "v",
        "nodes": [
            {"id": "a", "op": "self_refine", "params": {"rounds": 1}},
            {"id": "b", "op": "predict"},
            {"id": "v", "op": "vote", "inputs": ["a", "b"]},
        ],
    })
    out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(6), metric, method="bootstrap",
                           max_demos=2)
    # self_refine: draft + critique (judged correct, so no revise) per example; predict: 1; two examples
    assert fake_server.n_requests == 6
    a, b = out.node("a").params.demos, out.node("b").params.demos
    assert len(a) == 2 and all(d.reasoning for d in a)  # from the draft predictor (chain of thought)
    assert len(b) == 2 and all(d.reasoning == "" for d in b)  # predict has no reasoning field
    assert {d.question for d in a} == {d.question for d in b}
    assert out.node("v") == graph.node("v")
    assert AgentGraph.from_text(out.to_yaml()) == out


def test_each_node_runs_on_its_own_model(fake_server: FakeOpenAIServer) -> None:
    perfect(fake_server)
    with FakeOpenAIServer(ReasoningPolicy(QUESTIONS, p_direct=1.0, p_reasoning=1.0)) as strong:
        lms = {"default": make_lm(fake_server), "strong": make_lm(strong)}
        graph = AgentGraph.single("cot", model="strong")
        with metering() as meter:
            out = optimize_prompts(graph, lms, examples(4), metric, method="bootstrap", max_demos=2)
        assert strong.n_requests == 2 and fake_server.n_requests == 0
        assert meter.total.calls == 2
        assert len(out.node("solve").params.demos) == 2
        assert out.node("solve").params.model == "strong"


def test_existing_instruction_and_demos_are_kept_by_bootstrap(fake_server: FakeOpenAIServer) -> None:
    perfect(fake_server)
    graph = AgentGraph.single("cot", instruction="Solve it. Answer with a number.",
                              demos=[{"question": "1+1?", "answer": "2"}])
    out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(4), metric, method="bootstrap",
                           max_demos=2)
    params = out.node("solve").params
    assert params.instruction == "Solve it. Answer with a number."
    assert len(params.demos) == 2 and "1+1?" not in {d.question for d in params.demos}


def test_nothing_to_store_means_no_lm_call(fake_server: FakeOpenAIServer) -> None:
    perfect(fake_server)
    graph = AgentGraph.single("react")  # its spec takes no demos, and bootstrap writes no instruction
    out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(4), metric, method="bootstrap")
    assert out is graph and fake_server.n_requests == 0


# -- mipro and gepa ---------------------------------------------------------------------------------


def _noisy(server: FakeOpenAIServer) -> None:
    # 20% correct, 90% with the keywords of NEW_INSTRUCTION ("verify", "carefully"; not "step by step", which every
    # text-format prompt says): a default prompt that happens to score 100% on a few questions is unlikely
    server.policy = ReasoningPolicy(
        QUESTIONS, p_direct=0.2, p_reasoning=0.2, instruction_bonus=0.7, bonus_keywords=("verify", "carefully")
    )


def test_mipro_light_runs_end_to_end(fake_server: FakeOpenAIServer, proposer: FakeOpenAIServer) -> None:
    _noisy(fake_server)
    graph = AgentGraph.single("cot")
    with metering() as meter:
        out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(10), metric, method="mipro",
                               budget="light", max_demos=2, proposer_lm=make_lm(proposer))
    # 5 train / 5 val: 6 demo-set bootstraps (<= 5 calls each), then the default program and 10 trials
    # scored on the 5 val examples: 66 calls here
    assert 40 <= fake_server.n_requests <= 6 * 5 + 11 * 5
    assert 1 <= proposer.n_requests <= 20  # program/module descriptions + 3 instructions: 11 here
    assert meter.total.calls == fake_server.n_requests + proposer.n_requests
    assert out != graph
    params = out.node("solve").params
    assert params.demos or params.instruction == NEW_INSTRUCTION
    for demo in params.demos:
        assert demo.answer == QUESTIONS[demo.question]
    assert AgentGraph.from_text(out.to_yaml()) == out


def test_mipro_on_a_multi_node_graph(fake_server: FakeOpenAIServer, proposer: FakeOpenAIServer) -> None:
    _noisy(fake_server)
    graph = AgentGraph.from_dict({
        "name": "refine", "output": "r",
        "nodes": [{"id": "s", "op": "cot"}, {"id": "r", "op": "self_refine", "inputs": ["s"],
                                              "params": {"rounds": 1}}],
    })
    out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(6), metric, method="mipro",
                           max_demos=1, proposer_lm=make_lm(proposer))
    assert AgentGraph.from_text(out.to_yaml()) == out
    assert [n.id for n in out.nodes] == ["s", "r"]
    # trials capped at 10 (DSPy's auto formula over all 4 predictors would give 41): 90 calls here
    assert fake_server.n_requests <= 150
    assert proposer.n_requests <= 60  # instructions are proposed for every predictor: 38 here
    assert out.node("s").params.demos or out.node("s").params.instruction == NEW_INSTRUCTION


def test_gepa_evolves_the_instruction(fake_server: FakeOpenAIServer, proposer: FakeOpenAIServer) -> None:
    _noisy(fake_server)
    graph = AgentGraph.single("cot")
    with metering() as meter:
        out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(10), metric, method="gepa",
                               budget="light", proposer_lm=make_lm(proposer))
    # max_metric_calls = 2 * 5 val + 2 * 3 * 4 rounds = 34 program runs (GEPA may finish its last
    # round): 34 calls here
    assert fake_server.n_requests <= 34 + 6
    assert 1 <= proposer.n_requests <= 4  # one reflection per round: 3 here
    assert meter.total.calls == fake_server.n_requests + proposer.n_requests
    params = out.node("solve").params
    assert params.instruction == NEW_INSTRUCTION
    assert params.demos == ()  # GEPA only evolves instructions
    assert out.config_hash != graph.config_hash
    assert AgentGraph.from_text(out.to_yaml()) == out
    # the exported instruction is what the compiled program sends
    fake_server.reset()
    compile_graph(out, lms={"default": make_lm(fake_server)})(question=ITEMS[50][0])
    assert NEW_INSTRUCTION in str(fake_server.requests[0]["messages"][0]["content"])


def test_gepa_drops_an_instruction_over_the_limit(
    fake_server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    _noisy(fake_server)
    with FakeOpenAIServer(ConstantPolicy("Think step by step carefully. " * 400)) as verbose:  # 12000 chars
        graph = AgentGraph.single("cot")
        with caplog.at_level(logging.WARNING, logger="agentsearch.optimizers.dspy_prompts"):
            out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(10), metric,
                                   method="gepa", proposer_lm=make_lm(verbose))
        assert verbose.n_requests >= 1
    assert "optimized instruction not kept" in caplog.text  # over LMParams' 8000-character limit
    assert out is graph


def test_experience_insights_are_not_folded_into_the_instruction(
    fake_server: FakeOpenAIServer, proposer: FakeOpenAIServer
) -> None:
    # an experience node shows its insights after the instruction; an optimized instruction that drops
    # them cannot be stored (the node would show the insights twice or lose them), so it is not kept
    _noisy(fake_server)
    graph = AgentGraph.single("experience", insights=["Multiply before adding."])
    lms = {"default": make_lm(fake_server)}
    out = optimize_prompts(graph, lms, examples(10), metric, method="gepa", proposer_lm=make_lm(proposer))
    assert proposer.n_requests >= 1
    assert out.node("solve").params.instruction is None
    assert out.node("solve").params.insights == ("Multiply before adding.",)
    perfect(fake_server)
    out = optimize_prompts(graph, lms, examples(4), metric, method="bootstrap", max_demos=2)
    assert len(out.node("solve").params.demos) == 2
    assert out.node("solve").params.insights == ("Multiply before adding.",)


def test_gepa_uses_the_default_lm_without_a_proposer(fake_server: FakeOpenAIServer) -> None:
    _noisy(fake_server)
    out = optimize_prompts(AgentGraph.single("predict"), {"default": make_lm(fake_server)}, examples(6),
                           metric, method="gepa")
    assert AgentGraph.from_text(out.to_yaml()) == out
    assert fake_server.n_requests <= 2 * 3 + 2 * 3 * 4 + 6 + 4


# -- errors -----------------------------------------------------------------------------------------


def test_unknown_method_is_a_user_error(fake_server: FakeOpenAIServer) -> None:
    with pytest.raises(UserError, match="--prompt-optimizer"):
        optimize_prompts(AgentGraph.single("cot"), {"default": make_lm(fake_server)}, examples(4), metric,
                         method="copro")
    assert PROMPT_OPTIMIZERS == ("bootstrap", "mipro", "gepa")


@pytest.mark.parametrize("method", PROMPT_OPTIMIZERS)
def test_empty_train_is_a_user_error(fake_server: FakeOpenAIServer, method: str) -> None:
    with pytest.raises(UserError, match="train"):
        optimize_prompts(AgentGraph.single("cot"), {"default": make_lm(fake_server)}, [], metric,
                         method=method)
    assert fake_server.n_requests == 0


def test_unknown_budget_and_model_alias_are_user_errors(fake_server: FakeOpenAIServer) -> None:
    lms = {"default": make_lm(fake_server)}
    with pytest.raises(UserError, match="budget"):
        optimize_prompts(AgentGraph.single("cot"), lms, examples(4), metric, method="mipro", budget="huge")
    with pytest.raises(GraphError, match="unknown model alias"):
        optimize_prompts(AgentGraph.single("cot", model="nope"), lms, examples(4), metric, method="bootstrap")


@pytest.mark.parametrize("method", PROMPT_OPTIMIZERS)
def test_endpoint_errors_propagate_and_stop_the_calls(
    fake_server: FakeOpenAIServer, proposer: FakeOpenAIServer, method: str
) -> None:
    perfect(fake_server)
    fake_server.set_failure_rate(1.0, 500)
    with pytest.raises(LMError):
        optimize_prompts(AgentGraph.single("cot"), {"default": make_lm(fake_server)}, examples(8), metric,
                         method=method, proposer_lm=make_lm(proposer))
    # the first failure stops every later program call; only those already in flight in DSPy's
    # evaluation threads (num_threads=4) reach the server
    assert fake_server.n_requests <= 4


def test_dspy_failures_leave_the_graph_unchanged(
    fake_server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self, student, **kwargs):
        raise RuntimeError("optimizer bug")

    monkeypatch.setattr(dspy.BootstrapFewShot, "compile", broken)
    graph = AgentGraph.single("cot")
    failures: list[str] = []
    with caplog.at_level(logging.WARNING, logger="agentsearch.optimizers.dspy_prompts"):
        out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(4), metric,
                               method="bootstrap", on_failure=failures.append)
    assert out is graph
    assert "optimizer bug" in caplog.text and "unchanged" in caplog.text
    assert failures == ["bootstrap failed: RuntimeError: optimizer bug"]  # the trial is marked with it


def test_unparseable_model_output_does_not_kill_the_step(fake_server: FakeOpenAIServer) -> None:
    fake_server.policy = lambda request: "no fields here"  # the ChatAdapter cannot parse this
    graph = AgentGraph.single("cot")
    out = optimize_prompts(graph, {"default": make_lm(fake_server)}, examples(4), metric, method="bootstrap")
    assert out is graph


def test_global_lm_is_left_alone(fake_server: FakeOpenAIServer) -> None:
    perfect(fake_server)
    before = dspy.settings.lm
    optimize_prompts(AgentGraph.single("cot"), {"default": make_lm(fake_server)}, examples(3), metric,
                     method="bootstrap")
    assert dspy.settings.lm is before
