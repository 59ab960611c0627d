"""Tests for the fake OpenAI-compatible server (agentsearch/testing/fake_server.py)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Literal

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of cost maps

import dspy
import httpx
import pytest

from agentsearch.testing.fake_server import (
    ChatRequest,
    ConstantPolicy,
    FakeOpenAIServer,
    ReasoningPolicy,
    chat_requests_from_body,
    format_chat_adapter,
    load_answers_jsonl,
    parse_signature_fields,
)
from tests.conftest import GSM8K_TRAIN

REPO = Path(__file__).resolve().parents[1]
GSM8K = GSM8K_TRAIN
ENGINES = ["lm15", "litellm"]


def synthetic_answers(n: int = 200) -> dict[str, str]:
    templates = [
        "What is {a} plus {b}? Add the two numbers together and report only the final total.",
        "A farmer has {a} apples and buys {b} more apples at the market. How many apples now?",
        "Compute the sum of {a} and {b}, showing your work if needed, then give the result.",
    ]
    out: dict[str, str] = {}
    for i in range(n):
        a, b = 3 * i + 1, 7 * i + 2
        out[templates[i % len(templates)].format(a=a, b=b)] = str(a + b)
    return out


def make_lm(server: FakeOpenAIServer, engine: str = "lm15", **kwargs) -> dspy.LM:
    kwargs.setdefault("num_retries", 0)
    return dspy.LM(
        "openai/fake-model", api_base=server.url, api_key="x", cache=False, engine=engine, **kwargs
    )


def dspy_body(signature, inputs: dict, **extra) -> dict:
    """A chat completion request body exactly as DSPy's ChatAdapter would format it."""
    messages = dspy.ChatAdapter().format(
        dspy.Signature(signature) if isinstance(signature, str) else signature, demos=[], inputs=inputs
    )
    return {"model": "fake-model", "messages": messages, **extra}


def one_request(signature, inputs: dict, **extra) -> ChatRequest:
    return chat_requests_from_body(dspy_body(signature, inputs, **extra))[0]


def content_of(reply: dict, i: int = 0) -> str:
    return reply["choices"][i]["message"]["content"]


@pytest.fixture
def server():
    with FakeOpenAIServer() as s:
        yield s


# ------------------------------------------------------------------------------------------------
# HTTP surface
# ------------------------------------------------------------------------------------------------


def test_health_models_and_404(server: FakeOpenAIServer) -> None:
    with httpx.Client(base_url=server.base_url) as c:
        for path in ("/health", "/v1/health"):
            r = c.get(path)
            assert r.status_code == 200 and r.json() == {"status": "ok"}
        models = c.get("/v1/models").json()
        assert models["object"] == "list"
        assert [m["id"] for m in models["data"]] == ["fake-model"]
        for r in (c.get("/v1/nope"), c.post("/v1/nope", json={})):
            assert r.status_code == 404
            assert r.json()["error"]["type"] == "not_found_error"
    assert server.url == f"http://127.0.0.1:{server.port}/v1"


def test_chat_completion_shape_usage_and_n(server: FakeOpenAIServer) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Say something."},
    ]
    with httpx.Client(base_url=server.url) as c:
        reply = c.post("/chat/completions", json={"model": "m1", "messages": messages, "n": 3}).json()
        bad = c.post("/chat/completions", content=b"not json", headers={"content-type": "application/json"})
    assert reply["id"].startswith("chatcmpl-") and reply["object"] == "chat.completion"
    assert isinstance(reply["created"], int) and reply["model"] == "m1"
    assert len(reply["choices"]) == 3
    assert [ch["index"] for ch in reply["choices"]] == [0, 1, 2]
    assert all(
        ch["finish_reason"] == "stop" and ch["message"]["role"] == "assistant" for ch in reply["choices"]
    )
    assert content_of(reply) == "42"  # the default ConstantPolicy, no DSPy fields → verbatim answer
    usage = reply["usage"]
    assert usage["prompt_tokens"] == math.ceil(len("You are terse.Say something.") / 4)
    assert usage["completion_tokens"] == 3 * math.ceil(len("42") / 4)
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert server.n_requests == 1 and server.requests[0]["n"] == 3
    assert bad.status_code == 400 and "error" in bad.json()


def test_streaming_sse(server: FakeOpenAIServer) -> None:
    body = {
        "model": "fake-model",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.Client(base_url=server.url) as c:
        r = c.post("/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(ch["choices"][0]["delta"].get("content", "") for ch in chunks if ch["choices"])
    assert text == "42"
    assert chunks[-1]["usage"]["total_tokens"] > 0
    assert any(ch["choices"] and ch["choices"][0]["finish_reason"] == "stop" for ch in chunks)


def test_completions_endpoint(server: FakeOpenAIServer) -> None:
    with httpx.Client(base_url=server.url) as c:
        reply = c.post("/completions", json={"model": "fake-model", "prompt": "2+2=", "n": 2}).json()
    assert reply["object"] == "text_completion"
    assert [ch["text"] for ch in reply["choices"]] == ["42", "42"]


# ------------------------------------------------------------------------------------------------
# DSPy ChatAdapter format
# ------------------------------------------------------------------------------------------------


def test_parse_signature_fields_and_format() -> None:
    class Sig(dspy.Signature):
        """Judge."""

        question: str = dspy.InputField(desc="the question")
        candidates: list[str] = dspy.InputField()
        score: float = dspy.OutputField()
        label: Literal["yes", "no way"] = dspy.OutputField()

    req = one_request(dspy.ChainOfThought(Sig).predict.signature, {"question": "q?", "candidates": ["a"]})
    assert req.input_fields == [("question", "str"), ("candidates", "list[str]")]
    assert req.output_fields == [
        ("reasoning", "str"),
        ("score", "float"),
        ("label", "Literal['yes', 'no way']"),
    ]
    assert parse_signature_fields("no dspy here") == ([], [])
    assert req.input_sections() == {"question": "q?", "candidates": '["a"]'}
    text = format_chat_adapter({"score": "0.7"}, req.output_fields)
    assert text.startswith("[[ ## reasoning ## ]]\n")
    assert "[[ ## score ## ]]\n0.7\n\n[[ ## label ## ]]\nyes\n\n[[ ## completed ## ]]\n" in text


@pytest.mark.parametrize("engine", ENGINES)
def test_chain_of_thought_round_trip(engine: str) -> None:
    answers = synthetic_answers(5)
    seen: list[ChatRequest] = []
    policy = ReasoningPolicy(answers, p_direct=1.0, p_reasoning=1.0)

    def recording(req: ChatRequest):
        seen.append(req)
        return policy(req)

    with FakeOpenAIServer(recording) as server, dspy.context(lm=make_lm(server, engine)):
        cot = dspy.ChainOfThought("question -> answer")
        for q, gold in answers.items():
            pred = cot(question=q)
            assert pred.answer == gold
            assert pred.reasoning.startswith("Let me think step by step.")
    assert seen[0].output_fields == [("reasoning", "str"), ("answer", "str")]
    assert seen[0].input_fields == [("question", "str")]
    assert seen[0].temperature is None
    assert seen[-1].call_index == len(answers) - 1


@pytest.mark.parametrize("engine", ENGINES)
def test_missing_fields_filled_by_type(engine: str) -> None:
    class Sig(dspy.Signature):
        """Answer with metadata."""

        question: str = dspy.InputField()
        answer: str = dspy.OutputField()
        score: float = dspy.OutputField()
        count: int = dspy.OutputField()
        ok: bool = dspy.OutputField()
        tags: list[str] = dspy.OutputField()
        label: Literal["alpha", "beta"] = dspy.OutputField()

    with FakeOpenAIServer(lambda req: {"answer": "hello"}) as server:
        lm = make_lm(server, engine)
        with dspy.context(lm=lm, adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
            pred = dspy.Predict(Sig)(question="q")
        assert (pred.answer, pred.score, pred.count, pred.ok, pred.tags, pred.label) == (
            "hello",
            0.5,
            1,
            True,
            [],
            "alpha",
        )
        with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
            pred = dspy.Predict(Sig)(question="q")
        assert (pred.answer, pred.score, pred.ok, pred.label) == ("hello", 0.5, True, "alpha")


def test_string_policy_is_verbatim() -> None:
    with FakeOpenAIServer(lambda req: "[[ ## answer ## ]]\nverbatim\n\n[[ ## completed ## ]]") as server:
        with dspy.context(lm=make_lm(server)):
            assert dspy.Predict("question -> answer")(question="q").answer == "verbatim"
        with httpx.Client(base_url=server.url) as c:
            reply = c.post("/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}).json()
        assert content_of(reply).startswith("[[ ## answer ## ]]\nverbatim")


# ------------------------------------------------------------------------------------------------
# Fault injection, latency, concurrency
# ------------------------------------------------------------------------------------------------


def test_fail_next(server: FakeOpenAIServer) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    server.fail_next(2, status=503)
    with httpx.Client(base_url=server.url) as c:
        statuses = [c.post("/chat/completions", json=body).status_code for _ in range(3)]
        server.fail_next(1, status=429)
        r = c.post("/chat/completions", json=body)
    assert statuses == [503, 503, 200]
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert server.n_requests == 4  # failed requests are recorded too


@pytest.mark.parametrize("engine", ENGINES)
def test_fail_next_surfaces_in_dspy(server: FakeOpenAIServer, engine: str) -> None:
    lm = make_lm(server, engine)
    server.fail_next(1, status=500)
    with pytest.raises(Exception, match="500"):
        lm("hi")
    assert lm("hi") == ["42"]


def test_failure_rate_is_seeded() -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}

    def run(seed: int) -> list[int]:
        with FakeOpenAIServer(seed=seed) as s, httpx.Client(base_url=s.url) as c:
            s.set_failure_rate(0.5, status=502)
            return [c.post("/chat/completions", json=body).status_code for _ in range(40)]

    first = run(1)
    assert first == run(1)
    assert set(first) == {200, 502} and 8 <= first.count(502) <= 32


def test_latency_and_hang(server: FakeOpenAIServer) -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=server.url, timeout=5) as c:
        c.get("/models")
        server.latency = 0.15
        t0 = time.perf_counter()
        assert c.post("/chat/completions", json=body).status_code == 200
        assert 0.15 <= time.perf_counter() - t0 < 1.0
        t0 = time.perf_counter()
        assert c.get("/health").status_code == 200  # latency applies to completions only
        assert time.perf_counter() - t0 < 0.1
        server.latency = 0.0
    server.hang_next(1, 5.0)
    with httpx.Client(base_url=server.url, timeout=0.3) as c, pytest.raises(httpx.ReadTimeout):
        c.post("/chat/completions", json=body)
    with httpx.Client(base_url=server.url, timeout=2) as c:
        assert c.post("/chat/completions", json=body).status_code == 200


def test_max_in_flight_counts_concurrency() -> None:
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    with FakeOpenAIServer(latency=0.3) as server:

        def call() -> None:
            with httpx.Client(base_url=server.url, timeout=5) as c:
                c.post("/chat/completions", json=body)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert server.max_in_flight == 8
        assert server.n_requests == 8


def test_concurrent_clients_overlap() -> None:
    """Clients are served at once, not one after another (no absolute timing: machines are noisy)."""
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    with FakeOpenAIServer(latency=1.0) as server:
        barrier = threading.Barrier(8)

        def worker() -> None:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                barrier.wait()
                assert c.post("/chat/completions", json=body).status_code == 200

        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert server.max_in_flight == 8 and server.n_requests == 8


# ------------------------------------------------------------------------------------------------
# ReasoningPolicy
# ------------------------------------------------------------------------------------------------


def _accuracy(program: dspy.Module, answers: dict[str, str]) -> float:
    return sum(program(question=q).answer == gold for q, gold in answers.items()) / len(answers)


def test_reasoning_beats_direct_end_to_end() -> None:
    answers = synthetic_answers(200)
    with FakeOpenAIServer(ReasoningPolicy(answers, p_direct=0.3, p_reasoning=0.6)) as server:
        with dspy.context(lm=make_lm(server)):
            direct = _accuracy(dspy.Predict("question -> answer"), answers)
            cot = _accuracy(dspy.ChainOfThought("question -> answer"), answers)
            again = _accuracy(dspy.Predict("question -> answer"), answers)
    assert 0.18 <= direct <= 0.42
    assert 0.45 <= cot <= 0.75
    assert cot > direct + 0.15
    assert again == direct  # temperature None → deterministic per prompt


def test_instruction_bonus_and_cap() -> None:
    answers = synthetic_answers(3)
    q = next(iter(answers))
    policy = ReasoningPolicy(answers, p_direct=0.3, p_reasoning=0.9, instruction_bonus=0.1)
    plain = dspy.Signature("question -> answer")
    assert policy.accuracy(one_request(plain, {"question": q})) == pytest.approx(0.3)
    careful = plain.with_instructions("Think CAREFULLY about the question.")
    assert policy.accuracy(one_request(careful, {"question": q})) == pytest.approx(0.4)
    cot = dspy.ChainOfThought(careful).predict.signature
    assert policy.accuracy(one_request(cot, {"question": q})) == pytest.approx(0.95)


def test_temperature_controls_determinism() -> None:
    answers = synthetic_answers(3)
    q = next(iter(answers))
    policy = ReasoningPolicy(answers, p_direct=0.5)
    sig = dspy.Signature("question -> answer")
    greedy = {
        policy(r)["answer"]
        for i in range(20)
        for r in chat_requests_from_body(dspy_body(sig, {"question": q}, temperature=0.0), call_index=i)
    }
    assert len(greedy) == 1
    sampled = [
        policy(r)["answer"]
        for i in range(200)
        for r in chat_requests_from_body(dspy_body(sig, {"question": q}, temperature=1.0), call_index=i)
    ]
    counts = Counter(sampled)
    assert 60 <= counts[answers[q]] <= 140
    wrong = [a for a in sampled if a != answers[q]]
    assert max(Counter(wrong).values()) <= 0.1 * len(wrong)  # wrong answers rarely coincide


def test_majority_of_candidates_is_followed() -> None:
    answers = synthetic_answers(100)
    policy = ReasoningPolicy(answers, p_direct=1.0, p_reasoning=1.0)

    class Aggregate(dspy.Signature):
        """Pick the best final answer among candidates."""

        question: str = dspy.InputField()
        candidates: list[str] = dspy.InputField()
        answer: str = dspy.OutputField()

    followed = 0
    for q in answers:
        cands = ["Answer: 777", "answer: 777", "answer: 5"]
        req = one_request(Aggregate, {"question": q, "candidates": cands})
        assert sorted(policy.candidate_answers(req, policy.find_question(req.last_user)[0])) == [
            "5",
            "777",
            "777",
        ]
        followed += policy(req)["answer"] == "777"
    assert 80 <= followed <= 98  # majority_prob = 0.9

    q, gold = next(iter(answers.items()))
    # no strict majority → the normal draw (p=1 → gold)
    req = one_request(Aggregate, {"question": q, "candidates": ["answer: 1", "answer: 2"]})
    assert policy(req)["answer"] == gold
    # plain candidate lists (no "answer:" prefix) in a field named like candidates also count
    req = one_request(Aggregate, {"question": q, "candidates": ["9", "9", "3"]})
    assert policy.candidate_answers(req, policy.find_question(req.last_user)[0]) == ["9", "9", "3"]
    str_field = dspy.Signature("question, candidates -> answer")
    req = one_request(str_field, {"question": q, "candidates": ["reasoning... answer: 9", "answer = 9", "3"]})
    assert policy.candidate_answers(req, policy.find_question(req.last_user)[0]) == ["9", "9"]


def test_unknown_question_and_field_values() -> None:
    policy = ReasoningPolicy(synthetic_answers(3))

    class Judge(dspy.Signature):
        """Judge."""

        question: str = dspy.InputField()
        answer: str = dspy.OutputField()
        critique: str = dspy.OutputField()
        score: float = dspy.OutputField()
        is_correct: bool = dspy.OutputField()

    out = policy(
        one_request(dspy.ChainOfThought(Judge).predict.signature, {"question": "Never seen before?"})
    )
    assert out["answer"] == "0"
    assert out["reasoning"].startswith("Let me think step by step.")
    assert out["critique"] and 0.0 <= float(out["score"]) <= 1.0
    assert out["is_correct"] == "True"


def test_question_found_with_demos_and_whitespace() -> None:
    answers = synthetic_answers(10)
    items = list(answers.items())
    policy = ReasoningPolicy(answers, p_direct=1.0)
    sig = dspy.Signature("question -> answer")
    demos = [
        dspy.Example(question=items[1][0], answer=items[1][1]),
        dspy.Example(question=items[2][0], answer="x"),
    ]
    messages = dspy.ChatAdapter().format(sig, demos=demos, inputs={"question": items[5][0]})
    req = chat_requests_from_body({"messages": messages})[0]
    assert policy(req)["answer"] == items[5][1]
    spaced = "  " + items[7][0].replace(" ", "\n ", 3)
    assert policy.find_question(f"Question: {spaced}\nThanks")[1] == items[7][1]


def test_load_answers_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    rows = [
        {"question": "Q one?", "answer": "She has 3.\nThen 1,000 more.\n#### 1,003"},
        {"question": "Q two?", "answer": "7"},
        {"question": "Q three?", "answer": "a #### b #### 12 "},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_answers_jsonl(path) == {"Q one?": "1003", "Q two?": "7", "Q three?": "12"}


def test_real_gsm8k_questions_are_found() -> None:
    answers = load_answers_jsonl(GSM8K)
    assert len(answers) > 7000
    policy = ReasoningPolicy(answers, p_direct=1.0, p_reasoning=1.0)
    sig = dspy.ChainOfThought("question -> answer").predict.signature
    for q in list(answers)[::700]:
        assert policy(one_request(sig, {"question": q}))["answer"] == answers[q]


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def _start_cli(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentsearch.testing.fake_server", "--port", "0", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline().strip()
    assert line.startswith("READY http://127.0.0.1:"), (
        line,
        proc.stderr.read() if proc.poll() is not None else "",
    )
    return proc, line.split()[1]


def test_cli_ready_and_sigterm(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    path.write_text(
        json.dumps(
            {"question": "What is the meaning of everything, asked for the CLI test?", "answer": "#### 7"}
        )
        + "\n"
    )
    proc, url = _start_cli(
        "--latency", "0.01", "--answers", str(path), "--p-direct", "1.0", "--model", "cli-m"
    )
    try:
        with httpx.Client(base_url=url, timeout=5) as c:
            assert c.get("/health").json() == {"status": "ok"}
            assert c.get("/models").json()["data"][0]["id"] == "cli-m"
            body = dspy_body(
                "question -> answer",
                {"question": "What is the meaning of everything, asked for the CLI test?"},
            )
            assert "[[ ## answer ## ]]\n7\n" in content_of(c.post("/chat/completions", json=body).json())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_default_policy_and_sigint() -> None:
    proc, url = _start_cli()
    try:
        with httpx.Client(base_url=url, timeout=5) as c:
            body = {"messages": [{"role": "user", "content": "anything"}]}
            assert content_of(c.post("/chat/completions", json=body).json()) == "42"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stop_closes_keepalive_connections() -> None:
    server = FakeOpenAIServer(ConstantPolicy("1")).start()
    with httpx.Client(base_url=server.url, timeout=2) as c:
        assert c.get("/health").status_code == 200
        server.stop()
        with pytest.raises(httpx.TransportError):
            c.get("/health")
