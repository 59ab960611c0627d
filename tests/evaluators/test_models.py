"""Model aliases, run configs and endpoint pools (against real HTTP fake servers)."""

from __future__ import annotations

import pytest

from agentsearch.errors import EndpointError, UserError
from agentsearch.evaluators.evaluator import Evaluator
from agentsearch.evaluators.llm.lm import Endpoint, metering
from agentsearch.evaluators.llm.models import ModelSet, RunConfig, spec_from_flags
from agentsearch.evaluators.llm.pool import PooledLM, build_lm
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.search_space.graph import AgentGraph
from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy
from tests.conftest import QUESTIONS

Q = next(iter(QUESTIONS))


@pytest.fixture
def two_servers():
    with (
        FakeOpenAIServer(ReasoningPolicy(QUESTIONS), latency=0.05) as a,
        FakeOpenAIServer(ReasoningPolicy(QUESTIONS), latency=0.05) as b,
    ):
        yield a, b


def _pool(a, b, **kw) -> PooledLM:
    eps = [Endpoint(model="fake-model", api_base=s.url) for s in (a, b)]
    return build_lm(eps, cache=False, num_retries=0, timeout=5, **kw)


def test_pool_spreads_load_least_in_flight(two_servers):
    a, b = two_servers
    lm = _pool(a, b)
    assert isinstance(lm, PooledLM)
    program = compile_graph(AgentGraph.single("cot"), lms={"default": lm})
    from agentsearch.evaluators.benchmarks import Example

    examples = [Example(id=str(i), question=q, answer=ans) for i, (q, ans) in enumerate(QUESTIONS.items())][:24]
    result = Evaluator(lambda e, p: p == e.answer, concurrency=8).evaluate(program, examples)
    assert result.n_errors == 0 and result.calls == 24
    assert a.n_requests + b.n_requests == 24
    assert min(a.n_requests, b.n_requests) >= 6, (a.n_requests, b.n_requests)


def test_pool_survives_a_failing_endpoint(two_servers):
    a, b = two_servers
    a.set_failure_rate(1.0)
    lm = _pool(a, b)
    program = compile_graph(AgentGraph.single("cot"), lms={"default": lm})
    with metering() as meter:
        answers = [program(question=Q).answer for _ in range(6)]
    assert all(ans == answers[0] for ans in answers)
    assert meter.total.calls == 6 and meter.total.failed_calls == 0  # metered once per logical call
    stats = {s["api_base"]: s for s in lm.stats()}
    assert stats[a.url]["failures"] >= 1 and not stats[a.url]["healthy"]
    assert b.n_requests == 6
    # the sick endpoint is skipped during its cool-down: no further requests were sent to it
    assert a.n_requests == 1


def test_pool_fails_only_when_every_endpoint_fails(two_servers):
    a, b = two_servers
    a.set_failure_rate(1.0)
    b.set_failure_rate(1.0)
    program = compile_graph(AgentGraph.single("predict"), lms={"default": _pool(a, b)})
    with pytest.raises(Exception):  # noqa: B017 - the LM error surfaces; the Evaluator records it per example
        program(question=Q)


def test_graph_nodes_route_to_aliases_and_cost_is_per_alias(two_servers):
    small, big = two_servers
    lms = {
        "default": build_lm(Endpoint(model="small-model", api_base=small.url, alias="default"), cache=False),
        "big": build_lm(Endpoint(model="big-model", api_base=big.url, alias="big"), cache=False),
    }
    g = AgentGraph.from_dict(
        {
            "output": "agg",
            "nodes": [
                {"id": "a", "op": "cot"},
                {"id": "b", "op": "cot", "params": {"temperature": 0.4}},
                {"id": "agg", "op": "aggregate", "inputs": ["a", "b"], "params": {"model": "big"}},
            ],
        }
    )
    with metering() as meter:
        compile_graph(g, lms=lms)(question=Q)
    assert meter.by_model["default"].calls == 2 and meter.by_model["big"].calls == 1
    assert small.n_requests == 2 and big.n_requests == 1
    assert big.requests[0]["model"] == "big-model"


def test_run_config_validation(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("models:\n  default:\n    endpoints:\n      - {api_base: ftp://x, model: m}\n")
    with pytest.raises(UserError, match=r"run.yaml: field 'models.default.endpoints.0.api_base'"):
        RunConfig.load(path)
    path.write_text("models:\n  default: {launcher: local, endpoints: [{api_base: 'http://x/v1', model: m}]}\n")
    with pytest.raises(UserError, match="either 'endpoints' or 'launcher'"):
        RunConfig.load(path)
    path.write_text("models:\n  default: {launcher: tpu}\n")
    with pytest.raises(UserError, match="launcher"):
        RunConfig.load(path)
    with pytest.raises(UserError, match="no such file"):
        RunConfig.load(tmp_path / "missing.yaml")


def test_api_key_comes_from_the_environment_and_is_never_public(tmp_path, fake_server, monkeypatch):
    path = tmp_path / "run.yaml"
    path.write_text(
        f"models:\n  default:\n    endpoints:\n      - {{api_base: '{fake_server.url}', model: fake-model, "
        f"api_key_env: MY_TEST_KEY}}\n"
    )
    cfg = RunConfig.load(path)
    with pytest.raises(UserError, match=r"\$MY_TEST_KEY is not set"):
        ModelSet(cfg.models, run_dir=tmp_path).__enter__()
    monkeypatch.setenv("MY_TEST_KEY", "sk-secret-123")
    with ModelSet(cfg.models, run_dir=tmp_path, cache=False) as models:
        compile_graph(AgentGraph.single("predict"), lms=models.lms)(question=Q)
        assert "sk-secret-123" not in repr(models.public())
    assert fake_server.requests  # the call went through with the key


def test_unreachable_endpoints(tmp_path, fake_server):
    spec = spec_from_flags("fake-model", [fake_server.url, "http://127.0.0.1:9/v1"])
    announced = []
    with ModelSet({"default": spec}, run_dir=tmp_path, announce=announced.append) as models:
        assert [e.api_base for e in models.endpoints["default"]] == [fake_server.url]
    assert any("cannot connect" in m for m in announced)
    with pytest.raises(EndpointError, match="cannot connect"):
        ModelSet({"default": spec_from_flags("m", ["http://127.0.0.1:9/v1"])}, run_dir=tmp_path).__enter__()


def test_flags(tmp_path):
    assert spec_from_flags("local", []).launcher == "local"
    assert spec_from_flags("vllm:Qwen/Qwen2.5-1.5B-Instruct", []).launcher == "vllm:Qwen/Qwen2.5-1.5B-Instruct"
    with pytest.raises(UserError, match="--api-base"):
        spec_from_flags("gpt-x", [])
    with pytest.raises(UserError, match="drop --api-base"):
        spec_from_flags("local", ["http://x/v1"])


def test_the_embedded_model_gets_a_longer_call_timeout(tmp_path):
    from agentsearch.evaluators.llm.models import LOCAL_TIMEOUT_S, ModelSet, spec_from_flags

    local, remote = spec_from_flags("local", []), spec_from_flags("m", ["http://127.0.0.1:9/v1"])
    assert ModelSet({}, run_dir=tmp_path).call_timeout(local) == LOCAL_TIMEOUT_S == 600
    assert ModelSet({}, run_dir=tmp_path).call_timeout(remote) == 120
    assert ModelSet({}, run_dir=tmp_path, timeout=30).call_timeout(local) == 30  # --timeout wins
    assert spec_from_flags("local", [], local_model_size="1.5b").local_model_size == "1.5b"


def test_one_gate_per_endpoint_shared_by_aliases(tmp_path, fake_server):
    """Two aliases on one URL share one gate (the stricter limit); a pool member gets its endpoint's gate."""
    from agentsearch.evaluators.llm.models import EndpointSpec, ModelSpec

    url = fake_server.url
    specs = {
        "default": ModelSpec(endpoints=(EndpointSpec(api_base=url, model=fake_server.model, max_in_flight=5),)),
        "judge": ModelSpec(endpoints=(EndpointSpec(api_base=url, model=fake_server.model, max_in_flight=2),)),
        "pool": ModelSpec(
            endpoints=(
                EndpointSpec(api_base=url, model=fake_server.model),
                EndpointSpec(api_base=url + "/", model=fake_server.model),
            )
        ),
    }
    with ModelSet(specs, run_dir=tmp_path, cache=False) as models:
        (gate,) = models.gates.values()
        assert gate.limit == 2
        assert models.lms["default"].gate is gate and models.lms["judge"].gate is gate
        assert all(m.gate is gate for m in models.lms["pool"].members)
        fake_server.latency = 0.05
        program = compile_graph(AgentGraph.single("self_consistency", n=3), lms=models.lms)
        from agentsearch.evaluators.benchmarks import Example

        examples = [Example(f"q{i}", q, a) for i, (q, a) in enumerate(list(QUESTIONS.items())[:6])]
        Evaluator(lambda ex, pred: False, concurrency=6, retries=0).evaluate(program, examples)
    assert fake_server.max_in_flight == 2


def test_endpoint_max_in_flight_is_checked(tmp_path):
    with pytest.raises(UserError, match="max_in_flight"):
        path = tmp_path / "models.yaml"
        endpoint = "{api_base: 'http://x/v1', model: m, max_in_flight: 0}"
        path.write_text(f"models:\n  default:\n    endpoints:\n      - {endpoint}\n")
        RunConfig.load(path)


def test_model_flags_round_trip_and_aliases(tmp_path):
    """The same flags for evaluate, run and optimize: stored without the key, given back as argv."""
    from pathlib import Path

    from agentsearch.evaluators.llm.models import ModelFlags

    flags = ModelFlags(model="local", local_model_size="1.5b", api_key="secret", timeout=30.0)
    assert flags.argv() == ["--model", "local", "--local-model-size", "1.5b"]
    assert "secret" not in repr(flags) and "secret" not in str(flags.public())
    assert ModelFlags.from_public(flags.public()).argv() == flags.argv()
    assert flags.aliases() == ("default",)
    endpoint = ModelFlags(model="m", api_base=("http://a/v1", "http://b/v1"))
    assert endpoint.argv() == ["--model", "m", "--api-base", "http://a/v1", "--api-base", "http://b/v1"]
    cfg = tmp_path / "run.yaml"
    cfg.write_text("models:\n  judge: {launcher: local}\n  default: {launcher: local}\n")
    with_config = ModelFlags(config=cfg)
    assert with_config.aliases() == ("default", "judge")
    assert ModelFlags.from_public(with_config.public()).config == Path(str(cfg.resolve()))
    with pytest.raises(UserError, match="--api-base"):
        ModelFlags(model="gpt-x").specs()


def test_the_breaker_opens_after_failures_in_a_row_and_closes_on_success(fake_server):
    import time

    from agentsearch.evaluators.llm.lm import Endpoint, EndpointDown, EndpointGate

    gate = EndpointGate(4, threshold=3, cooldown_s=0.5, name=fake_server.url)
    lm = build_lm(Endpoint(model=fake_server.model, api_base=fake_server.url), cache=False, num_retries=0,
                  gates={fake_server.url: gate})  # fmt: skip
    fake_server.set_failure_rate(1.0, status=503)
    for _ in range(3):
        with pytest.raises(Exception, match="503|Server|LM"):
            lm("hi")
    sent = fake_server.n_requests
    with pytest.raises(EndpointDown, match="3 calls in a row failed"):
        lm("hi")
    assert fake_server.n_requests == sent and gate.opened == 1  # refused without calling the server
    fake_server.set_failure_rate(0.0)
    time.sleep(0.6)  # the cool-down: one call is let through, and its success closes the breaker
    assert lm("hi") and not gate.is_open and gate.failures_in_a_row == 0

    from agentsearch.evaluators.evaluator import error_kind

    assert error_kind(EndpointDown("x")) == "endpoint"


@pytest.fixture
def silent_endpoint():
    """A base URL whose server accepts connections and never answers (a hung endpoint)."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    listener.close()


def test_a_hung_endpoint_is_found_by_the_watchdog_and_its_calls_abandoned(silent_endpoint):
    """Calls to a server that accepts but never answers are abandoned once they waited ``stall_s`` and a probe
    got no answer: EndpointDown within seconds, not after the call timeout; the breaker is open."""
    import time

    from agentsearch.evaluators.llm.lm import Endpoint, EndpointDown, EndpointGate

    gate = EndpointGate(4, threshold=3, cooldown_s=30, name=silent_endpoint, stall_s=1.0, probe_timeout_s=0.5)
    lm = build_lm(Endpoint(model="m", api_base=silent_endpoint), cache=False, num_retries=0, timeout=60,
                  gates={silent_endpoint: gate})  # fmt: skip
    start = time.monotonic()
    with pytest.raises(EndpointDown, match="stopped answering"):
        lm("hi")
    assert time.monotonic() - start < 5 and gate.hangs == 1 and gate.is_open
    with pytest.raises(EndpointDown, match="down"):  # the next call is refused at once
        lm("hi")


def test_a_slow_endpoint_that_answers_the_probe_is_left_alone(fake_server):
    """A call slower than ``stall_s`` to a server that answers HTTP is not abandoned (slow is not hung)."""
    from agentsearch.evaluators.llm.lm import Endpoint, EndpointGate, Meter, metering

    gate = EndpointGate(4, name=fake_server.url, stall_s=0.5, probe_timeout_s=0.5)
    lm = build_lm(Endpoint(model=fake_server.model, api_base=fake_server.url), cache=False, num_retries=0,
                  gates={fake_server.url: gate})  # fmt: skip
    fake_server.hang_next(1, 2.5)
    with metering(Meter()) as meter:  # the call runs in the watchdog's thread: metering still sees it
        assert lm("hi")
    assert gate.hangs == 0 and not gate.is_open and meter.total.calls == 1
