"""The operator library: every operator name mapped to its ``dspy.Module`` implementation."""

from __future__ import annotations

from collections.abc import Callable

from agentsearch.evaluators.operators import V1_IMPLEMENTATIONS, OperatorModule
from agentsearch.evaluators.operators_more import IMPLEMENTATIONS_MORE
from agentsearch.search_space.graph import NodeConfig

IMPLEMENTATIONS: dict[str, Callable[[NodeConfig], OperatorModule]] = {**V1_IMPLEMENTATIONS, **IMPLEMENTATIONS_MORE}


def build_operator(node: NodeConfig) -> OperatorModule:
    """The module for one node (its operator's implementation, configured by its params)."""
    return IMPLEMENTATIONS[node.op](node)
