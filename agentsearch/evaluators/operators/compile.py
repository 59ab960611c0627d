"""Compile an :class:`AgentGraph` into a runnable ``dspy.Module``.

Nodes run in topological order (networkx); the nodes of one topological generation are
independent, so given an ``executor`` (one branch pool shared by every program of a run) they run
concurrently: the first in the calling thread, the others on the pool, each in a copy of the
caller's context (DSPy settings and the active usage meter follow them). Branch tasks never submit
to the pool themselves, so a saturated pool only makes the example wait. Without an executor (or
with ``parallel=False``) a generation runs in order. Each node runs under the DSPy
adapter of its ``format`` param (:mod:`agentsearch.evaluators.operators.formats`); ``answer_kind`` is what the
benchmark's answers are (``number`` lets the text format read a reply's last number as a last resort).
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from concurrent.futures import Executor, wait

import dspy

from agentsearch.errors import GraphError
from agentsearch.evaluators.operators.base import NodeOutput, OperatorModule
from agentsearch.evaluators.operators.formats import DEFAULT_FORMAT, make_adapter
from agentsearch.evaluators.operators.registry import build_operator
from agentsearch.search_space.graph import AgentGraph


class _Shared:
    """Holds the branch pool: a copied program (DSPy deep-copies programs) shares its run's pool."""

    def __init__(self, executor: Executor | None) -> None:
        self.executor = executor

    def __deepcopy__(self, memo: dict[int, object]) -> _Shared:
        return self


class GraphProgram(dspy.Module):
    """The DSPy program of one agent graph: ``program(question=...) -> Prediction(answer, reasoning)``."""

    def __init__(
        self,
        graph: AgentGraph,
        lms: Mapping[str, dspy.BaseLM] | None = None,
        parallel: bool = True,
        answer_kind: str = "text",
        executor: Executor | None = None,
    ):
        super().__init__()
        self.graph = graph
        self.parallel = parallel
        self._branches = _Shared(executor)
        self.answer_kind = answer_kind
        # Unusable output is the agent's failure (a wrong answer, no silent retries), see Evaluator.
        self._adapters = {
            node.id: make_adapter(getattr(node.params, "format", DEFAULT_FORMAT), answer_kind) for node in graph.nodes
        }
        self.nodes: dict[str, OperatorModule] = {node.id: build_operator(node, answer_kind) for node in graph.nodes}
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
            executor = self._branches.executor
            if len(generation) == 1 or not self.parallel or executor is None:
                for node_id in generation:
                    outputs[node_id] = self._run_node(node_id, question, outputs)
                continue
            first, *rest = generation
            run = self._run_node
            futures = {
                node_id: executor.submit(contextvars.copy_context().run, run, node_id, question, outputs)
                for node_id in rest
            }
            try:
                done = {first: self._run_node(first, question, outputs)}
                for node_id, future in futures.items():
                    done[node_id] = future.result()
            except BaseException:
                for future in futures.values():
                    future.cancel()  # a branch failed: what has not started need not run
                wait(list(futures.values()))  # what runs finishes, so its calls are metered with this example
                raise
            outputs.update(done)
        final = outputs[self.graph.output]
        return dspy.Prediction(answer=final.answer, reasoning=final.reasoning)


def compile_graph(
    graph: AgentGraph,
    lms: Mapping[str, dspy.BaseLM] | None = None,
    parallel: bool = True,
    answer_kind: str = "text",
    executor: Executor | None = None,
) -> GraphProgram:
    """Build the program for ``graph``; ``lms`` maps model aliases to LMs (None: use dspy's configured LM);
    ``answer_kind`` is the benchmark's (:attr:`~agentsearch.evaluators.benchmarks.Benchmark.answer_kind`);
    ``executor`` runs a generation's branches concurrently (None: in order)."""
    return GraphProgram(graph, lms=lms, parallel=parallel, answer_kind=answer_kind, executor=executor)
