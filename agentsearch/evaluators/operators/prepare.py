"""Preparation: build what some operators need from the train split before evaluation.

``experience`` nodes distill insights from solved and failed train examples (ExpeL). The result is
written into the node's params, so the prepared graph (what is stored, logged and exported) carries
its memory and never touches the train split again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dspy

from agentsearch.search_space.graph import AgentGraph


def needs_preparation(graph: AgentGraph) -> bool:
    """True when a node must be built from training data first (an experience node whose memory is not built)."""
    return any(_unbuilt(node) for node in graph.nodes)


def _unbuilt(node: Any) -> bool:
    p = node.params
    return node.spec.needs_train and not getattr(p, "built", False) and not getattr(p, "insights", ())


def prepare_graph(
    graph: AgentGraph,
    lms: Mapping[str, dspy.BaseLM],
    train: Sequence[Any],
    metric: Callable[[Any, str], bool],
    answer_kind: str = "text",
) -> AgentGraph:
    """The graph with every node that needs training data built (insights distilled from ``train``)."""
    from agentsearch.evaluators.operators.reflection import build_insights

    if not train:
        from agentsearch.errors import DataError

        raise DataError(f"graph '{graph.name}': an experience node needs a train split (it is empty)")
    nodes = []
    for node in graph.nodes:
        if _unbuilt(node):
            node = build_insights(node, lms[getattr(node.params, "model", "default")], train, metric, answer_kind)
        nodes.append(node)
    return graph.model_copy(update={"nodes": tuple(nodes)})
