"""Operator specifications: the typed knobs of every operator an agent graph can use.

A spec is data only (no LM, no DSPy): its name, what it does, a pydantic model of its parameters
(with the valid ranges the search space samples from), how many upstream branches it accepts and
how many LM calls it makes per question. The implementations (small ``dspy.Module`` classes) live
in :mod:`agentsearch.evaluators.operators` and are looked up by the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Demo(BaseModel):
    """One few-shot demonstration shown to a node's predictor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    answer: str
    reasoning: str = ""


class OpParams(BaseModel):
    """Base of every operator's parameter model: frozen, unknown fields rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LMParams(OpParams):
    """Parameters shared by every operator that calls an LM."""

    instruction: str | None = Field(
        None, description="task instruction (prompt level); None uses the operator's default", max_length=8000
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="sampling temperature")
    max_tokens: int = Field(1024, ge=16, le=32768, description="completion token limit per call")
    model: str = Field("default", min_length=1, description="model alias the node runs on")
    demos: tuple[Demo, ...] = Field((), description="few-shot demonstrations (prompt level)")


class SelfConsistencyParams(LMParams):
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    n: int = Field(5, ge=1, le=64, description="number of sampled reasoning paths")


class SelfRefineParams(LMParams):
    rounds: int = Field(2, ge=1, le=10, description="critique -> revise rounds (stops early when judged correct)")


class VoteParams(OpParams):
    """Majority vote over upstream answers; no LM call, so no LM knobs."""


Kind = Literal["solver", "aggregator"]


@dataclass(frozen=True)
class OperatorSpec:
    """What an operator is, what it accepts, and what it costs."""

    name: str
    summary: str
    params: type[OpParams]
    kind: Kind = "solver"
    min_inputs: int = 0  # upstream *node* inputs required (the question is always available)
    max_inputs: int | None = None
    calls: Callable[[OpParams, int], int] = lambda params, n_inputs: 1  # LM calls per question (upper bound)
    default_instruction: str = ""

    def validate_params(self, raw: object) -> OpParams:
        """Validate a raw mapping into this operator's frozen params (raises pydantic ValidationError)."""
        return self.params.model_validate(raw or {})


_SOLVE = (
    "Solve the question. Put only the final answer (a number or a short phrase, no units or "
    "explanation) in the answer field."
)

OPERATORS: dict[str, OperatorSpec] = {
    spec.name: spec
    for spec in [
        OperatorSpec(
            name="predict",
            summary="answer directly in one call, no reasoning",
            params=LMParams,
            default_instruction=_SOLVE,
        ),
        OperatorSpec(
            name="cot",
            summary="chain of thought: reason step by step, then answer (1 call)",
            params=LMParams,
            default_instruction=_SOLVE,
        ),
        OperatorSpec(
            name="self_consistency",
            summary="n chain-of-thought samples at a temperature, majority vote over normalized answers",
            params=SelfConsistencyParams,
            calls=lambda p, k: p.n,  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
        ),
        OperatorSpec(
            name="self_refine",
            summary="draft (or take the upstream answer), then critique -> revise for k rounds",
            params=SelfRefineParams,
            max_inputs=1,
            calls=lambda p, k: (0 if k else 1) + 2 * p.rounds,  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
        ),
        OperatorSpec(
            name="vote",
            summary="majority vote over the upstream answers (no LM call)",
            params=VoteParams,
            kind="aggregator",
            min_inputs=2,
            calls=lambda p, k: 0,
        ),
        OperatorSpec(
            name="aggregate",
            summary="an LM reads the upstream solutions and writes the final answer (1 call)",
            params=LMParams,
            kind="aggregator",
            min_inputs=2,
            default_instruction=(
                "Several solutions to the question are given; some may be wrong. Check them, decide "
                "which reasoning is right, and put only the final answer in the answer field."
            ),
        ),
    ]
}


def get_operator(name: str) -> OperatorSpec:
    """The spec of an operator by name (KeyError if unknown)."""
    return OPERATORS[name]


def operator_names() -> list[str]:
    return sorted(OPERATORS)
