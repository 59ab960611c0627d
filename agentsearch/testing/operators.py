"""The operator contract suite: what every operator of the library (and yours) must do.

Subclass :class:`OperatorContract` under a name pytest collects and set ``op`` to the operator's
name (its spec in :data:`~agentsearch.search_space.operators.OPERATORS`, its module registered in
:data:`~agentsearch.evaluators.operators.registry.IMPLEMENTATIONS`)::

    from agentsearch.testing.operators import OperatorContract

    class TestMyOperator(OperatorContract):
        op = "my_operator"

Every test then runs against a fake OpenAI-compatible server (no model, no network): the spec and the
implementation exist and agree, the node survives a YAML round trip, and the operator answers in
every output format with every LM call metered and no more calls than its spec declares. Needs
pytest (a dev dependency); the product never imports this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agentsearch.evaluators.llm.lm import Endpoint, metering
from agentsearch.evaluators.llm.pool import build_lm
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.evaluators.operators.registry import IMPLEMENTATIONS
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import FORMATS, OPERATORS, LMParams
from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy

#: One question the fake server knows the answer to.
QUESTION = "Tom has 3 apples and buys 2 more bags with 5 apples each. How many apples does Tom have now?"
ANSWER = "13"


def graph_for(op: str, fmt: str | None = None, **params: Any) -> AgentGraph:
    """The smallest valid graph exercising ``op`` (an aggregator gets two upstream branches); ``fmt``: the
    output format of every LM node."""
    spec = OPERATORS[op]
    lm_format = {"format": fmt} if fmt else {}
    if fmt and issubclass(spec.params, LMParams):
        params = {**params, **lm_format}
    if spec.kind == "aggregator":
        nodes = [
            {"id": "b1", "op": "cot", "params": lm_format},
            {"id": "b2", "op": "cot", "params": {"temperature": 0.5, **lm_format}},
            {"id": "x", "op": op, "inputs": ["b1", "b2"], "params": params},
        ]
        return AgentGraph.from_dict({"name": op, "output": "x", "nodes": nodes})
    return AgentGraph.from_dict({"name": op, "output": "x", "nodes": [{"id": "x", "op": op, "params": params}]})


class OperatorContract:
    """Set ``op``; see the module docstring."""

    op: str = ""

    @pytest.fixture
    def server(self) -> Iterator[FakeOpenAIServer]:
        policy = ReasoningPolicy({QUESTION: ANSWER})
        policy.p_direct = policy.p_reasoning = 1.0  # a model that is always right: failures are the operator's
        with FakeOpenAIServer(policy, latency=0.0) as server:
            yield server

    def test_spec_and_implementation_agree(self) -> None:
        spec = OPERATORS.get(self.op)
        assert spec is not None, f"operator {self.op!r} has no spec in OPERATORS"
        assert self.op in IMPLEMENTATIONS, f"operator {self.op!r} has a spec but no implementation"
        assert spec.summary and spec.params.model_config.get("frozen")
        node = graph_for(self.op).node("x")
        assert spec.calls(node.params, len(node.upstream)) >= 0

    def test_survives_a_yaml_round_trip(self) -> None:
        g = graph_for(self.op)
        again = AgentGraph.from_text(g.to_yaml())
        assert again == g and again.node("x").params == g.node("x").params

    @pytest.mark.parametrize("fmt", FORMATS)
    def test_answers_in_every_format_with_honest_metering(self, fmt: str, server: FakeOpenAIServer) -> None:
        g = graph_for(self.op, fmt=fmt)
        lm = build_lm(Endpoint(model=server.model, api_base=server.url), cache=False, num_retries=0, timeout=10.0)
        program = compile_graph(g, lms={"default": lm})
        with metering() as meter:
            pred = program(question=QUESTION)
        assert pred.answer == ANSWER, f"{self.op} in {fmt}"
        assert meter.total.calls == server.n_requests, "every LM call is metered, none invented"
        assert meter.total.calls <= g.expected_calls(), "no more calls than the spec declares"
