"""Compile an :class:`AgentGraph` into a runnable ``dspy.Module``.

Nodes run in topological order (networkx); the nodes of one topological generation are
independent, so with ``parallel=True`` they run concurrently, each in a copy of the caller's
context (DSPy settings and the active usage meter follow them). Each node runs under the DSPy
adapter of its ``format`` param (:mod:`agentsearch.evaluators.operators.formats`); ``answer_kind`` is what the
benchmark's answers are (``number`` lets the text format read a reply's last number as a last resort).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import dspy

from agentsearch.errors import GraphError
from agentsearch.evaluators.operators.base import NodeOutput, OperatorModule
from agentsearch.evaluators.operators.formats import DEFAULT_FORMAT, make_adapter
from agentsearch.evaluators.operators.registry import build_operator
from agentsearch.search_space.graph import AgentGraph


class GraphProgram(dspy.Module):
    """The DSPy program of one agent graph: ``program(question=...) -> Prediction(answer, reasoning)``."""

    def __init__(
        self,
        graph: AgentGraph,
        lms: Mapping[str, dspy.BaseLM] | None = None,
        parallel: bool = True,
        answer_kind: str = "text",
    ):
        super().__init__()
        self.graph = graph
        self.parallel = parallel
        self.answer_kind = answer_kind
        # Unusable output is the agent's failure (a wrong answer, no silent retries), see Evaluator.
        self._adapters = {
            node.id: make_adapter(getattr(node.params, "format", DEFAULT_FORMAT), answer_kind) for node in graph.nodes
        }
        self.nodes: dict[str, OperatorModule] = {node.id: build_operator(node) for node in graph.nodes}
        self._generations = graph.topological_generations()
        self._inputs = {node.id: node.upstream for node in graph.nodes}
        if lms is not None:
            for node in graph.nodes:
                alias = getattr(node.params, "model", None)
                if alias is None:
                    continue
                if alias not in lms:
                    known = ", ".join(sorted(lms)) or "none"
                    raise GraphError(
                        f"graph '{graph.name}': node '{node.id}': field 'params.model': unknown model alias "
                        f"'{alias}' (configured: {known})"
                    )
                self.nodes[node.id].set_lm(lms[alias])

    def _run_node(self, node_id: str, question: str, outputs: Mapping[str, NodeOutput]) -> NodeOutput:
        upstream = [outputs[ref] for ref in self._inputs[node_id]]
        with dspy.context(adapter=self._adapters[node_id]):
            return self.nodes[node_id](question=question, upstream=upstream)

    def forward(self, question: str) -> dspy.Prediction:
        outputs: dict[str, NodeOutput] = {}
        for generation in self._generations:
            if len(generation) == 1 or not self.parallel:
                for node_id in generation:
                    outputs[node_id] = self._run_node(node_id, question, outputs)
                continue
            with ThreadPoolExecutor(max_workers=len(generation), thread_name_prefix="agentsearch-branch") as pool:
                futures = {
                    node_id: pool.submit(contextvars.copy_context().run, self._run_node, node_id, question, outputs)
                    for node_id in generation
                }
                for node_id, future in futures.items():
                    outputs[node_id] = future.result()
        final = outputs[self.graph.output]
        return dspy.Prediction(answer=final.answer, reasoning=final.reasoning)


def compile_graph(
    graph: AgentGraph, lms: Mapping[str, dspy.BaseLM] | None = None, parallel: bool = True, answer_kind: str = "text"
) -> GraphProgram:
    """Build the program for ``graph``; ``lms`` maps model aliases to LMs (None: use dspy's configured LM);
    ``answer_kind`` is the benchmark's (:attr:`~agentsearch.evaluators.benchmarks.Benchmark.answer_kind`)."""
    return GraphProgram(graph, lms=lms, parallel=parallel, answer_kind=answer_kind)
