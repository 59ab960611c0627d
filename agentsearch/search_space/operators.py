"""Operator specifications: the typed knobs of every operator an agent graph can use.

A spec is data only (no LM, no DSPy): its name, what it does, a pydantic model of its parameters
(with the valid ranges the search space samples from), how many upstream branches it accepts and
how many LM calls it makes per question. The implementations (small ``dspy.Module`` classes) live
in :mod:`agentsearch.evaluators.operators` and are looked up by the same name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: Output formats of LM nodes (see :mod:`agentsearch.evaluators.operators.formats`); a prompt-level search dimension.
FORMATS: tuple[str, ...] = ("text", "chat", "xml", "json")
#: The format of nodes that do not set one, chosen by measurement on the embedded models
#: (docs/performance.md, "Output formats"): the small models follow only the natural ``text`` format.
DEFAULT_FORMAT = "text"
Format = Literal["text", "chat", "xml", "json"]


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
    format: Format = Field(
        DEFAULT_FORMAT,
        description="output format (prompt level): text = natural reasoning + 'Answer: ...' lines; chat/xml/json = "
        "DSPy's ChatAdapter/XMLAdapter/JSONAdapter",
    )


class SelfConsistencyParams(LMParams):
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    n: int = Field(5, ge=1, le=64, description="number of sampled reasoning paths")


class SelfRefineParams(LMParams):
    rounds: int = Field(2, ge=1, le=10, description="critique -> revise rounds (stops early when judged correct)")


class VoteParams(OpParams):
    """Majority vote over upstream answers; no LM call, so no LM knobs."""


class LeastToMostParams(LMParams):
    max_subquestions: int = Field(4, ge=1, le=8, description="most subquestions solved before the final answer")


class BestOfNParams(LMParams):
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    n: int = Field(4, ge=2, le=16, description="candidates sampled; an LLM verifier scores each, the best wins")


class PRMBeamParams(LMParams):
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature of proposed steps")
    beam_width: int = Field(2, ge=1, le=4, description="partial solutions kept after each step")
    expansions: int = Field(2, ge=2, le=4, description="next steps proposed per kept partial solution")
    depth: int = Field(3, ge=1, le=6, description="most reasoning steps before the answer")


class DebateParams(LMParams):
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")
    agents: int = Field(3, ge=2, le=5, description="debaters")
    rounds: int = Field(2, ge=1, le=3, description="rounds (the first is independent solving)")
    final: Literal["vote", "judge"] = Field("vote", description="how the debate ends: majority vote or an LLM judge")


class ReActParams(LMParams):
    tools: tuple[Literal["calculator", "python"], ...] = Field(("calculator",), min_length=1)
    max_iters: int = Field(4, ge=1, le=10, description="most tool-use steps")


class ProgramOfThoughtParams(LMParams):
    repairs: int = Field(1, ge=0, le=2, description="rounds in which the error is shown back for a fix")
    timeout_s: float = Field(5.0, gt=0, le=30, description="wall-clock limit of the generated program")


class ReflexionParams(LMParams):
    max_trials: int = Field(2, ge=1, le=3, description="self-check -> reflect -> retry rounds")


class ExperienceParams(LMParams):
    insights: tuple[str, ...] = Field((), description="distilled lessons (built on the train split, then frozen)")
    built: bool = Field(False, description="the memory was built from the train split (it may hold no insight)")
    n_train: int = Field(8, ge=2, le=64, description="train examples solved to build the memory")
    max_insights: int = Field(5, ge=1, le=12, description="most insights kept")


Kind = Literal["solver", "aggregator"]

#: A searchable knob: ("int", low, high, step) or ("cat", choices).
Knob = tuple


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
    knobs: dict[str, Knob] = field(default_factory=dict)  # what the module-level search samples, beyond temperature
    needs_train: bool = False  # built from the train split before evaluation (see evaluators.prepare)
    demos: bool = True  # whether few-shot demos (question -> answer) apply to its main predictor
    final: bool = False  # may run as the graph's final stage (refining or verifying the aggregated answer)

    def validate_params(self, raw: object) -> OpParams:
        """Validate a raw mapping into this operator's frozen params (raises pydantic ValidationError)."""
        return self.params.model_validate(raw or {})


_SOLVE = "Solve the question."

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
            knobs={"n": ("int", 3, 7, 2)},
        ),
        OperatorSpec(
            name="self_refine",
            summary="draft (or take the upstream answer), then critique -> revise for k rounds",
            params=SelfRefineParams,
            max_inputs=1,
            calls=lambda p, k: (0 if k else 1) + 2 * p.rounds,  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
            knobs={"rounds": ("int", 1, 3, 1)},
            final=True,
        ),
        OperatorSpec(
            name="least_to_most",
            summary="decompose into simpler subquestions, solve them in order, then answer",
            params=LeastToMostParams,
            calls=lambda p, k: 2 + p.max_subquestions,  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
            knobs={"max_subquestions": ("int", 2, 5, 1)},
        ),
        OperatorSpec(
            name="step_back",
            summary="state the general principle behind the question first, then solve with it (2 calls)",
            params=LMParams,
            calls=lambda p, k: 2,
            default_instruction=_SOLVE,
        ),
        OperatorSpec(
            name="plan_and_solve",
            summary="devise a plan, carry it out step by step, then answer (1 call)",
            params=LMParams,
            default_instruction=(
                "First understand the problem, extract the relevant quantities and devise a plan. Then carry out "
                "the plan step by step, calculating carefully. Give only the final answer as the answer."
            ),
        ),
        OperatorSpec(
            name="best_of_n",
            summary="n sampled solutions; an LLM verifier scores each; the highest score wins",
            params=BestOfNParams,
            calls=lambda p, k: 2 * p.n,  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
            knobs={"n": ("int", 2, 6, 2)},
        ),
        OperatorSpec(
            name="prm_beam",
            summary="step-level beam search: propose next steps, an LLM scores partial solutions, keep the best",
            params=PRMBeamParams,
            calls=lambda p, k: p.depth * 2 * p.beam_width * p.expansions + 1,  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
            knobs={"beam_width": ("int", 1, 2, 1), "expansions": ("int", 2, 3, 1), "depth": ("int", 2, 4, 1)},
        ),
        OperatorSpec(
            name="debate",
            summary="m agents solve, read each other's answers and revise for r rounds; vote or judge at the end",
            params=DebateParams,
            calls=lambda p, k: p.agents * p.rounds + (p.final == "judge"),  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
            knobs={"agents": ("int", 2, 3, 1), "rounds": ("int", 1, 2, 1), "final": ("cat", ("vote", "judge"))},
        ),
        OperatorSpec(
            name="react",
            demos=False,
            summary="ReAct: reason and act with tools (calculator, sandboxed python), then answer",
            params=ReActParams,
            calls=lambda p, k: p.max_iters + 1,  # type: ignore[attr-defined]
            default_instruction=(
                "Solve the question. Use the tools for any arithmetic. Finish when you know the final answer; put "
                "only the final answer as the answer."
            ),
            knobs={
                "tools": ("cat", (("calculator",), ("python",), ("calculator", "python"))),
                "max_iters": ("int", 2, 6, 2),
            },
        ),
        OperatorSpec(
            name="program_of_thought",
            demos=False,
            summary="the LLM writes Python that computes the answer; it runs in the sandbox; errors get repaired "
            "(code answers: it writes the function, tests it on the question's examples, repairs failures)",
            params=ProgramOfThoughtParams,
            calls=lambda p, k: 1 + p.repairs,  # type: ignore[attr-defined]
            default_instruction=(
                "Write a short, self-contained Python 3 program that computes the answer to the question and "
                "prints only the final answer (a number or a short phrase) on its last line. Use only the "
                "standard library; no input(), files or network."
            ),
            knobs={"repairs": ("int", 0, 2, 1)},
        ),
        OperatorSpec(
            name="reflexion",
            summary="answer, self-check; on doubt reflect on the mistake and retry with the reflection",
            params=ReflexionParams,
            calls=lambda p, k: 1 + 2 * p.max_trials,  # type: ignore[attr-defined]
            default_instruction=_SOLVE,
            knobs={"max_trials": ("int", 1, 2, 1)},
            final=True,
        ),
        OperatorSpec(
            name="experience",
            summary="chain of thought guided by insights distilled from solved and failed train examples (ExpeL)",
            params=ExperienceParams,
            default_instruction=_SOLVE,
            needs_train=True,
            knobs={"n_train": ("int", 4, 12, 4)},
        ),
        OperatorSpec(
            name="vote",
            summary="majority vote over the upstream answers (no LM call)",
            params=VoteParams,
            kind="aggregator",
            demos=False,
            min_inputs=2,
            calls=lambda p, k: 0,
        ),
        OperatorSpec(
            name="fuse",
            summary="Archon fuser: merge the upstream candidates' strongest parts into one improved solution",
            params=LMParams,
            kind="aggregator",
            min_inputs=2,
            default_instruction=(
                "Several candidate solutions are given; some may be wrong. Combine their correct parts into a "
                "single, better solution and give only its final answer as the answer."
            ),
        ),
        OperatorSpec(
            name="rank",
            demos=False,
            summary="Archon ranker: an LLM orders the upstream candidates by quality; the top one is the answer",
            params=LMParams,
            kind="aggregator",
            min_inputs=2,
            default_instruction="Rank the candidate solutions from most to least likely to be correct.",
        ),
        OperatorSpec(
            name="judge",
            demos=False,
            summary="an LLM judge picks the best upstream candidate; its answer is the answer",
            params=LMParams,
            kind="aggregator",
            min_inputs=2,
            default_instruction="Judge which candidate solution is correct. Check each one's reasoning.",
        ),
        OperatorSpec(
            name="aggregate",
            summary="an LM reads the upstream solutions and writes the final answer (1 call)",
            params=LMParams,
            kind="aggregator",
            min_inputs=2,
            default_instruction=(
                "Several solutions to the question are given; some may be wrong. Check them, decide "
                "which reasoning is right, and give only the final answer as the answer."
            ),
        ),
    ]
}


def get_operator(name: str) -> OperatorSpec:
    """The spec of an operator by name (KeyError if unknown)."""
    return OPERATORS[name]


def operator_names() -> list[str]:
    return sorted(OPERATORS)
