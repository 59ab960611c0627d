"""The operator contract suite: every operator in the spec registry must pass all of these.

spec round trip; an implementation exists; it runs with DSPy's DummyLM and over real HTTP against
the fake server; it counts its LM calls honestly (meter == requests the server saw <= the spec's
cost model); it respects its knobs (instruction, temperature, max_tokens, demos, n, rounds).

The format contract: every operator runs in every output format (text, chat, xml, json) against the
fake server; replies with no markers at all, or in another format than asked, are scored wrong (a
``no_answer``), never a failed example or trial.
"""

from __future__ import annotations

import pytest
from dspy.utils.dummies import DummyLM

from agentsearch.evaluators.benchmarks import Example, Score
from agentsearch.evaluators.evaluator import Evaluator
from agentsearch.evaluators.llm.lm import MeteringMixin, metering
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.evaluators.operators.registry import IMPLEMENTATIONS
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import FORMATS, OPERATORS, LMParams
from agentsearch.testing.fake_server import format_chat_adapter, format_text
from agentsearch.testing.operators import OperatorContract, graph_for
from tests.conftest import QUESTIONS, make_lm

QUESTION = next(iter(QUESTIONS))
GOLD = QUESTIONS[QUESTION]


class MeteredDummyLM(MeteringMixin, DummyLM):
    """DSPy's DummyLM, metered like our real LMs."""


ALL_OPS = sorted(OPERATORS)

#: Every output field any operator asks for, so DummyLM can answer every signature.
DUMMY_FIELDS = {
    "reasoning": "2 + 2 = 4",
    "answer": "4",
    "critique": "fine",
    "is_correct": True,
    "score": 0.9,
    "subquestions": "What is 2 + 2?",
    "principle": "addition",
    "plan": "add",
    "solution": "2 + 2 = 4",
    "step": "Final answer: 4",
    "ranking": "1, 2",
    "best": 1,
    "code": "print(2 + 2)",
    "fixed_code": "print(4)",
    "confident": True,
    "reflection": "",
    "insights": "add carefully",
    "next_thought": "I know it",
    "next_tool_name": "finish",
    "next_tool_args": {},
}


for _op in ALL_OPS:  # the shipped contract suite, one class per operator: TestOperator_cot, ...
    globals()[f"TestOperator_{_op}"] = type(f"TestOperator_{_op}", (OperatorContract,), {"op": _op})


def test_every_implementation_has_a_spec():
    assert set(IMPLEMENTATIONS) == set(OPERATORS)


@pytest.mark.parametrize("op", ALL_OPS)
def test_runs_with_dummy_lm(op):
    lm = MeteredDummyLM({"": DUMMY_FIELDS})  # DummyLM answers in DSPy's chat format
    g = graph_for(op, fmt="chat")
    program = compile_graph(g, lms={"default": lm})
    with metering() as meter:
        pred = program(question="What is 2 + 2?")
    assert pred.answer == "4"
    assert 0 < meter.total.calls <= g.expected_calls()


@pytest.mark.parametrize("op", ALL_OPS)
def test_runs_over_http_and_counts_calls_honestly(op, fake_server):
    fake_server.policy.p_direct = fake_server.policy.p_reasoning = 1.0
    g = graph_for(op)
    program = compile_graph(g, lms={"default": make_lm(fake_server)})
    with metering() as meter:
        pred = program(question=QUESTION)
    assert pred.answer == GOLD
    assert meter.total.calls == fake_server.n_requests, "every LM call is metered, none invented"
    assert meter.total.calls <= g.expected_calls()
    assert meter.total.prompt_tokens > 0 and meter.total.completion_tokens > 0


@pytest.mark.parametrize("op", [o for o in ALL_OPS if issubclass(OPERATORS[o].params, LMParams)])
def test_respects_instruction_temperature_max_tokens_and_demos(op, fake_server):
    fake_server.policy.p_direct = fake_server.policy.p_reasoning = 1.0
    params = {
        "instruction": "Zebra instruction: answer like a careful accountant.",
        "temperature": 0.3,
        "max_tokens": 333,
        "demos": [{"question": "What is 1 + 1?", "answer": "2", "reasoning": "one plus one"}],
    }
    program = compile_graph(graph_for(op, **params), lms={"default": make_lm(fake_server)})
    program(question=QUESTION)
    own = [r for r in fake_server.requests if "Zebra instruction" in r["messages"][0]["content"]]
    assert own, "the node's instruction reaches the system prompt"
    for body in own:
        assert body.get("temperature") == 0.3
        assert body.get("max_completion_tokens", body.get("max_tokens")) == 333
    if OPERATORS[op].demos:
        assert any("What is 1 + 1?" in str(r["messages"]) for r in own), "demos are shown"


def test_self_consistency_makes_n_distinct_samples(fake_server):
    program = compile_graph(graph_for("self_consistency", n=7, temperature=0.9), lms={"default": make_lm(fake_server)})
    with metering() as meter:
        program(question=QUESTION)
    assert meter.total.calls == 7 == fake_server.n_requests


def test_self_consistency_votes_the_majority(fake_server):
    answers = iter(["5", "9", "5", "7", "5"])
    fake_server.policy = lambda req: {"reasoning": "r", "answer": next(answers)}
    program = compile_graph(graph_for("self_consistency", n=5, temperature=0.9), lms={"default": make_lm(fake_server)})
    assert program(question=QUESTION).answer == "5"


def test_self_refine_runs_k_rounds_until_judged_correct(fake_server):
    fake_server.policy = lambda req: {"reasoning": "r", "answer": "8", "critique": "wrong", "is_correct": "False"}
    program = compile_graph(graph_for("self_refine", rounds=3), lms={"default": make_lm(fake_server)})
    with metering() as meter:
        program(question=QUESTION)
    assert meter.total.calls == 1 + 2 * 3  # draft + (critique, revise) x 3

    fake_server.reset()
    fake_server.policy = lambda req: {"reasoning": "r", "answer": "8", "critique": "ok", "is_correct": "True"}
    with metering() as meter:
        program(question=QUESTION)
    assert meter.total.calls == 2  # draft + one critique that accepts it


def test_vote_makes_no_call_and_aggregate_reads_candidates(fake_server):
    answers = {"b1": "11", "b2": "11"}

    def policy(req):
        if "candidates" in req.last_user:
            assert "Answer: 11" in req.last_user  # the upstream solutions are shown
            return {"reasoning": "both agree", "answer": "11"}
        return {"reasoning": "r", "answer": answers["b2" if req.temperature else "b1"]}

    fake_server.policy = policy
    for op, extra_calls in (("vote", 0), ("aggregate", 1)):
        fake_server.reset()
        program = compile_graph(graph_for(op), lms={"default": make_lm(fake_server)})
        with metering() as meter:
            assert program(question=QUESTION).answer == "11"
        assert meter.total.calls == 2 + extra_calls


WIDE = AgentGraph.from_dict(
    {
        "output": "v",
        "nodes": [{"id": f"b{i}", "op": "cot", "params": {"temperature": 0.1 * i}} for i in range(1, 5)]
        + [{"id": "v", "op": "vote", "inputs": ["b1", "b2", "b3", "b4"]}],
    }
)


def test_branches_run_concurrently_on_the_shared_pool(fake_server):
    from concurrent.futures import ThreadPoolExecutor

    fake_server.latency = 0.3
    with ThreadPoolExecutor(max_workers=3) as branches:
        program = compile_graph(WIDE, lms={"default": make_lm(fake_server)}, executor=branches)
        assert program(question=QUESTION).answer == GOLD
    assert fake_server.max_in_flight == 4  # the first branch runs in the calling thread


def test_without_a_pool_branches_run_in_order(fake_server):
    fake_server.latency = 0.05
    program = compile_graph(WIDE, lms={"default": make_lm(fake_server)})
    assert program(question=QUESTION).answer == GOLD
    assert fake_server.max_in_flight == 1


def test_a_saturated_pool_only_makes_examples_wait(fake_server):
    """Eight examples at once, each with four branches, on a one-thread branch pool: no deadlock, all answered."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    fake_server.latency = 0.02
    examples = [Example(f"q{i}", QUESTION, GOLD) for i in range(8)]
    seen: set[str] = set()
    original = fake_server.policy

    def policy(req):  # which threads run branches while the examples run
        seen.update(t.name for t in threading.enumerate())
        return original(req)

    fake_server.policy = policy
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-branches") as branches:
        program = compile_graph(WIDE, lms={"default": make_lm(fake_server)}, executor=branches)
        result = Evaluator(_metric, concurrency=8, retries=0).evaluate(program, examples)
    assert len(result.records) == 8 and not any(r.error_kind for r in result.records)
    assert {n for n in seen if n.startswith("test-branches")} == {"test-branches_0"}
    assert not any("branch" in n and not n.startswith("test-branches") for n in seen)  # no pool per question


def test_an_endpoint_gate_caps_requests_in_flight(fake_server):
    from concurrent.futures import ThreadPoolExecutor

    from agentsearch.evaluators.llm.lm import Endpoint, EndpointGate
    from agentsearch.evaluators.llm.pool import build_lm

    fake_server.latency = 0.05
    gate = EndpointGate(3)
    endpoint = Endpoint(model=fake_server.model, api_base=fake_server.url)
    lm = build_lm(endpoint, cache=False, gates={fake_server.url: gate})
    examples = [Example(f"q{i}", QUESTION, GOLD) for i in range(6)]
    with ThreadPoolExecutor(max_workers=16) as branches:
        program = compile_graph(WIDE, lms={"default": lm}, executor=branches)
        result = Evaluator(_metric, concurrency=8, retries=0).evaluate(program, examples)
    assert len(result.records) == 6 and not any(r.error_kind for r in result.records)
    assert fake_server.max_in_flight == 3 and gate.peak == 3 and gate.in_flight == 0


def test_unknown_model_alias_is_a_graph_error(fake_server):
    from agentsearch.errors import GraphError

    g = AgentGraph.single("cot", model="big")
    with pytest.raises(GraphError, match="params.model"):
        compile_graph(g, lms={"default": make_lm(fake_server)})


@pytest.mark.parametrize("fmt", ["text", "chat"])
def test_sampling_operators_survive_unparseable_samples(fake_server, fmt):
    """A small model's garbled sample is skipped; the rest still vote. All garbled: no answer (text) or the
    example's parse error (chat), which the evaluator scores as wrong."""
    replies = iter(["garbage"] * 2 + [{"reasoning": "r", "answer": "5"}] * 3)
    fake_server.policy = lambda req: next(replies)
    g = graph_for("self_consistency", fmt=fmt, n=5, temperature=0.9)
    program = compile_graph(g, lms={"default": make_lm(fake_server)})
    assert program(question=QUESTION).answer == "5"

    from dspy.utils.exceptions import AdapterParseError

    fake_server.policy = lambda req: "garbage"
    if fmt == "text":
        assert program(question=QUESTION + " again").answer == ""
    else:
        with pytest.raises(AdapterParseError):
            program(question=QUESTION + " again")


# -- the format contract ------------------------------------------------------------------------------

LM_OPS = [o for o in ALL_OPS if issubclass(OPERATORS[o].params, LMParams)]


def _metric(example: Example, prediction: str) -> Score:
    from agentsearch.evaluators.answers import answers_match, extract_answer

    got = extract_answer(prediction)
    return Score(bool(got) and answers_match(got, example.answer), 0.0, got)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("op", ALL_OPS)
def test_every_operator_runs_in_every_format(op, fmt, fake_server):
    fake_server.policy.p_direct = fake_server.policy.p_reasoning = 1.0
    g = graph_for(op, fmt=fmt)
    program = compile_graph(g, lms={"default": make_lm(fake_server)})
    with metering() as meter:
        pred = program(question=QUESTION)
    assert pred.answer == GOLD, f"{op} in {fmt}"
    assert meter.total.calls == fake_server.n_requests <= g.expected_calls()
    asked = {b["messages"][0]["content"].count("[[ ## completed ## ]]") > 0 for b in fake_server.requests}
    if issubclass(OPERATORS[op].params, LMParams) and op != "react":  # ReAct's own prompts are DSPy's
        assert asked == {fmt == "chat"}, "the node's format decides the prompt"


def _no_markers(req):
    return "I think the question is about apples.\nLet me not say more."


def _wrong_format(fmt):
    """Replies in another format than the one asked for."""

    def policy(req):
        values = {"reasoning": "Tom has 1 apple.", "answer": "1", "is_correct": "False", "critique": "hmm"}
        return format_chat_adapter(values, req.output_fields) if fmt == "text" else format_text(values, [])

    return policy


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("op", LM_OPS)
@pytest.mark.parametrize("reply", ["no_markers", "wrong_format"])
def test_unusable_replies_are_wrong_answers_not_failures(op, fmt, reply, fake_server):
    fake_server.policy = _no_markers if reply == "no_markers" else _wrong_format(fmt)
    program = compile_graph(graph_for(op, fmt=fmt), lms={"default": make_lm(fake_server)})
    example = Example("q1", QUESTION, GOLD)
    result = Evaluator(_metric, concurrency=1, retries=0).evaluate(program, [example])
    record = result.records[0]
    assert not record.correct
    assert record.error_kind in (None, "model"), f"{op}/{fmt}: {record.error}"
    if reply == "no_markers":
        assert record.no_answer and record.extracted == "", f"{op}/{fmt}: {record.prediction!r}"


def test_upstream_solutions_render_the_same_whatever_their_format(fake_server):
    """An aggregator reads its upstream solutions as 'reasoning, then Answer: X', whichever format made them."""
    seen = []

    def policy(req):
        if "candidates" in req.last_user.lower():
            seen.append(req.last_user)
            return {"reasoning": "both say 11", "answer": "11"}
        return {"reasoning": "I add the numbers.", "answer": "11"}

    fake_server.policy = policy
    g = AgentGraph.from_dict(
        {
            "output": "x",
            "nodes": [
                {"id": "a", "op": "cot", "params": {"format": "text"}},
                {"id": "b", "op": "cot", "params": {"format": "chat", "temperature": 0.5}},
                {"id": "x", "op": "aggregate", "inputs": ["a", "b"], "params": {"format": "xml"}},
            ],
        }
    )
    assert compile_graph(g, lms={"default": make_lm(fake_server)})(question=QUESTION).answer == "11"
    (prompt,) = seen
    assert prompt.count("I add the numbers.\nAnswer: 11") == 2, prompt


def test_experience_memory_is_distilled_from_train_and_never_made_up(fake_server):
    from agentsearch.evaluators.benchmarks import Example
    from agentsearch.evaluators.operators.prepare import needs_preparation, prepare_graph

    train = [Example(f"t{i}", q, a) for i, (q, a) in enumerate(list(QUESTIONS.items())[:4])]
    lms = {"default": make_lm(fake_server)}
    graph = AgentGraph.single("experience", n_train=4)
    assert needs_preparation(graph)

    def metric(ex, answer):
        return answer == ex.answer

    fake_server.policy = lambda req: (
        {"insights": "1. Multiply before adding.\n2. Check the total."}
        if "insights" in req.output_names
        else {"reasoning": "r", "answer": "1"}
    )
    built = prepare_graph(graph, lms, train, metric)
    assert built.node("solve").params.insights == ("Multiply before adding.", "Check the total.")
    assert built.node("solve").params.built and not needs_preparation(built)

    fake_server.policy = lambda req: (  # nothing to distill
        {"insights": ""} if "insights" in req.output_names else {"reasoning": "r", "answer": "1"}
    )
    empty = prepare_graph(graph, lms, train, metric)
    params = empty.node("solve").params
    assert params.insights == () and params.built, "no invented insight"
    assert not needs_preparation(empty), "an empty memory is built once, not rebuilt every time"
    assert AgentGraph.from_text(empty.to_yaml()).node("solve").params.built
