"""The operator registry: every operator name mapped to its ``dspy.Module`` implementation.

A new operator is its spec (:data:`agentsearch.search_space.operators.OPERATORS`), its module in a
family file of this package, and one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from agentsearch.evaluators.operators.acting import ProgramOfThoughtOp, ReActOp
from agentsearch.evaluators.operators.aggregators import AggregateOp, FuseOp, JudgeOp, RankOp, VoteOp
from agentsearch.evaluators.operators.base import OperatorModule
from agentsearch.evaluators.operators.prompting import (
    CoTOp,
    LeastToMostOp,
    PlanAndSolveOp,
    PredictOp,
    SelfConsistencyOp,
    SelfRefineOp,
    StepBackOp,
)
from agentsearch.evaluators.operators.reflection import ExperienceOp, ReflexionOp
from agentsearch.evaluators.operators.sampling import BestOfNOp, DebateOp, PRMBeamOp
from agentsearch.search_space.graph import NodeConfig

IMPLEMENTATIONS: dict[str, Callable[[NodeConfig], OperatorModule]] = {
    "predict": PredictOp,
    "cot": CoTOp,
    "self_consistency": SelfConsistencyOp,
    "self_refine": SelfRefineOp,
    "vote": VoteOp,
    "aggregate": AggregateOp,
    "least_to_most": LeastToMostOp,
    "step_back": StepBackOp,
    "plan_and_solve": PlanAndSolveOp,
    "best_of_n": BestOfNOp,
    "prm_beam": PRMBeamOp,
    "debate": DebateOp,
    "fuse": FuseOp,
    "rank": RankOp,
    "judge": JudgeOp,
    "react": ReActOp,
    "program_of_thought": ProgramOfThoughtOp,
    "reflexion": ReflexionOp,
    "experience": ExperienceOp,
}


def build_operator(node: NodeConfig, answer_kind: str = "text") -> OperatorModule:
    """The module for one node (its operator's implementation, configured by its params); ``answer_kind`` is
    the benchmark's (an operator may work differently for code, e.g. program of thought tests the function)."""
    module = IMPLEMENTATIONS[node.op](node)
    module.answer_kind = answer_kind
    return module
