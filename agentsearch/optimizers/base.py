"""What a search strategy is, and what the search loop asks of the optimizer that runs one.

A :class:`Strategy` proposes designs: ``propose(archive, space, rng)`` and ``told(trial)``, nothing else.
:class:`~agentsearch.optimizers.proposal.StrategyOptimizer` runs it over the study store
(:mod:`agentsearch.optimizers.store`), giving the loop the :class:`Optimizer` contract: ``ask() ->
Candidate`` / ``tell(candidate, result)`` and the study's views. Nothing here evaluates anything: the one
search loop in :mod:`agentsearch.runs.loop` does. A new strategy is one module, never a new loop.
"""

from __future__ import annotations

import math
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from agentsearch.search_space.graph import AgentGraph

#: Objective names and their directions.
OBJECTIVES: dict[str, Literal["maximize", "minimize"]] = {
    "accuracy": "maximize",
    "tokens": "minimize",
    "calls": "minimize",
}

State = Literal["COMPLETE", "PRUNED", "FAIL"]

#: How the reason of a design rejected unrun (over ``--max-calls-per-question``) starts.
OVER_BUDGET = "over budget"


def parse_objectives(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    from agentsearch.errors import UserError

    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    items = [s for s in items if s]
    for name in items:
        if name not in OBJECTIVES:
            raise UserError(f"--objectives: unknown objective {name!r} (choose from {', '.join(OBJECTIVES)})")
    if not items or items[0] != "accuracy" or len(set(items)) != len(items):
        raise UserError("--objectives: must start with 'accuracy', each objective once (e.g. accuracy,tokens)")
    return tuple(items)


@dataclass
class Candidate:
    """One proposal: a trial number, the graph to evaluate, the parameters that produced it."""

    number: int
    graph: AgentGraph
    params: dict[str, Any] = field(default_factory=dict)
    origin: str = ""  # e.g. "baseline:cot", "tpe", "random"
    handle: Any = field(default=None, repr=False)  # optimizer-private (e.g. an optuna.Trial)
    info: dict[str, Any] = field(default_factory=dict)  # how it was proposed (logged with the trial)

    @property
    def is_baseline(self) -> bool:
        return self.origin.startswith("baseline:")

    @property
    def is_yardstick(self) -> bool:
        """A baseline in its primary format (``baseline:cot``, not ``baseline:cot@chat``): never pruned."""
        return self.is_baseline and "@" not in self.origin


@dataclass
class TrialResult:
    """The outcome of evaluating a candidate on the validation split."""

    state: State
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    step: int | None = None  # examples evaluated (the last minibatch size), for pruned trials
    examples: list[dict[str, Any]] = field(default_factory=list)  # a sample of failed/passed examples
    outcomes: str = ""  # "1"/"0" per validation example evaluated, in validation order (paired statistics)
    started_at: float | None = None  # when the trial really ran (seconds since the epoch), for its MLflow run
    ended_at: float | None = None

    def values(self, objectives: tuple[str, ...]) -> list[float]:
        """Objective values from metrics: accuracy -> val_score, tokens -> tokens_per_question, ..."""
        key = {"accuracy": "val_score", "tokens": "tokens_per_question", "calls": "calls_per_question"}
        out = [float(self.metrics[key[o]]) for o in objectives]
        if any(math.isnan(v) for v in out):
            raise ValueError("objective value is NaN")
        return out


@dataclass
class FinishedTrial:
    """A finished trial as the optimizer stores it (for reports, resume and export)."""

    number: int
    state: State
    graph: AgentGraph | None
    params: dict[str, Any]
    values: list[float] | None
    metrics: dict[str, float]
    origin: str
    reason: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)
    outcomes: str = ""  # "1"/"0" per validation example evaluated, in validation order

    @property
    def is_baseline(self) -> bool:
        return self.origin.startswith("baseline:")

    @property
    def rejected_unrun(self) -> bool:
        """Pruned before any question: over the calls/question budget (see :data:`OVER_BUDGET`)."""
        return self.state == "PRUNED" and (self.reason or "").startswith(OVER_BUDGET)

    @property
    def counts(self) -> bool:
        """Whether it counts toward ``--trials``: evaluated (COMPLETE, or PRUNED after some questions)."""
        return self.state in ("COMPLETE", "PRUNED") and not self.rejected_unrun


def pareto_front(trials: list[FinishedTrial], objectives: tuple[str, ...]) -> list[FinishedTrial]:
    """The complete trials no other complete trial dominates, best first on the first objective (one
    objective: the best one)."""
    done = [t for t in trials if t.state == "COMPLETE" and t.values is not None]
    if not done:
        return []
    if len(objectives) == 1:
        return [max(done, key=lambda t: (t.values[0], -t.number))]  # type: ignore[index]
    signs = [1.0 if OBJECTIVES[o] == "maximize" else -1.0 for o in objectives]

    def dominates(a: FinishedTrial, b: FinishedTrial) -> bool:
        va = [s * v for s, v in zip(signs, a.values, strict=True)]  # type: ignore[arg-type]
        vb = [s * v for s, v in zip(signs, b.values, strict=True)]  # type: ignore[arg-type]
        return all(x >= y for x, y in zip(va, vb, strict=True)) and any(x > y for x, y in zip(va, vb, strict=True))

    front = [t for t in done if not any(dominates(o, t) for o in done if o is not t)]
    return sorted(front, key=lambda t: (-t.values[0], t.number))  # type: ignore[index]


@dataclass(frozen=True)
class Archive:
    """The study as a :class:`Strategy` reads it: the evaluated trials (COMPLETE or PRUNED, with a graph),
    the config hashes of every trial so far (a proposal must be new), the objectives, the number of trials
    in the study, how many of them count toward ``--trials`` (evaluated, or running now), how many are
    baselines, the study's prompt pool and its attributes."""

    trials: tuple[FinishedTrial, ...]
    seen: frozenset[str]
    objectives: tuple[str, ...] = ("accuracy",)
    n_total: int = 0
    n_taken: int = 0
    n_baselines: int = 0
    pool: Any = None  # a PromptPool
    attrs: Mapping[str, Any] = field(default_factory=dict)  # the study's attributes (read-only)

    def complete(self) -> list[FinishedTrial]:
        return [t for t in self.trials if t.state == "COMPLETE" and t.values is not None]

    def front(self) -> list[FinishedTrial]:
        """The best complete trial (one objective) or the Pareto set (several)."""
        return pareto_front(list(self.trials), self.objectives)


@dataclass(frozen=True)
class Proposal:
    """What a strategy proposes, when more than a graph: at most one of ``graph`` (a design to evaluate),
    ``params`` (values of the space's parameters; the study's sampler chooses the rest) and ``sample``
    (a define-by-run sampler, ``sample(trial, pool) -> graph``, run on the trial the study opens: the study's
    Optuna sampler picks each value it suggests); none of them: the space's sampler proposes. ``origin``
    names the trial's source (default: the strategy's name), ``info`` how it was proposed (kept with the
    trial), ``pool`` the study's prompt pool from now on (instructions or demos the strategy added), and
    ``attrs`` study attributes to store."""

    graph: AgentGraph | None = None
    params: Mapping[str, Any] | None = None
    sample: Callable[[Any, Any], AgentGraph] | None = None
    origin: str = ""
    info: Mapping[str, Any] = field(default_factory=dict)
    pool: Any = None
    attrs: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Strategy(Protocol):
    """A search strategy: propose the next design from what the study has seen, and hear how trials ended.

    :class:`~agentsearch.optimizers.proposal.StrategyOptimizer` runs it on a
    :class:`~agentsearch.optimizers.store.StudyStore` (storage, resume, baselines, retries, pruning,
    reports), meters its LM calls and checks its proposals against the space. Every built-in strategy is
    one: the Optuna samplers (``propose`` returns None: the study's sampler samples the space), staged
    search, evolution, the meta-agent and the instruction proposer. Optional: :class:`Binds` (the proposer
    model once the study's models run) and :class:`AdaptsSpace`."""

    name: str

    def propose(self, archive: Archive, space: Any, rng: random.Random) -> AgentGraph | Proposal | None:
        """The next design (a graph of ``space``, or a :class:`Proposal`), or None: the space's sampler."""

    def told(self, trial: FinishedTrial) -> None:
        """A trial finished (any state)."""


@dataclass(frozen=True)
class StrategyContext:
    """What a strategy may use once the study's models run (:meth:`Optimizer.bind`): the model that writes
    proposals, and a function bootstrapping few-shot demo sets from the train split (None: no train split)."""

    proposer_lm: Any = None
    demo_bootstrap: Callable[[], list[list[dict[str, str]]]] | None = None


@runtime_checkable
class Binds(Protocol):
    """A strategy that uses the study's context (the proposer model, demo bootstrapping) once models run."""

    def bind(self, context: StrategyContext) -> None: ...


@runtime_checkable
class AdaptsSpace(Protocol):
    """A strategy that needs more of the space than the user's flags give (e.g. slots for proposed
    instructions): the study is created over ``adapt(space)``. May raise a one-line UserError."""

    def adapt(self, space: Any) -> Any: ...


class Optimizer(ABC):
    """Ask/tell optimizer over agent graphs: the whole contract the search loop and the study use.

    A subclass implements :meth:`ask`, :meth:`tell` and :meth:`trials`; everything else has a working
    default for an optimizer that keeps its state in memory (nothing to resume, failed candidates not
    retried, study attributes in a dict). :class:`~agentsearch.optimizers.proposal.StrategyOptimizer`
    overrides them with the durable :class:`~agentsearch.optimizers.store.StudyStore`.
    """

    name: str = "optimizer"
    objectives: tuple[str, ...] = ("accuracy",)
    #: True when the optimizer continues a study that already has trials.
    resumed: bool = False

    def bind(self, context: StrategyContext) -> None:  # noqa: B027 - optional hook
        """Receive what the study provides once its models run (LLM-driven strategies keep the proposer)."""

    def requeue(self, candidate: Candidate) -> None:  # noqa: B027 - optional hook
        """Evaluate ``candidate`` again later (it failed on endpoint errors or was interrupted). Default:
        not retried."""

    def taken_before(self, number: int) -> int:
        """Trials counting toward ``--trials`` that come before trial ``number``: finished ones, and those
        other workers run with a lower number (one consistent read of the study)."""
        return self.n_finished() + self.running_elsewhere(before=number)

    def complete_metrics(self, config_hash: str) -> dict[str, float] | None:
        """The metrics of a complete trial of this exact design, if the study has one."""
        for t in self.trials():
            if t.state == "COMPLETE" and t.graph is not None and t.graph.config_hash == config_hash and t.metrics:
                return dict(t.metrics)
        return None

    def running_elsewhere(self, before: int | None = None, alive_only: bool = False) -> int:
        """Trials of this study other workers are running now (numbered below ``before``, if given;
        ``alive_only``: not those of workers that are gone). Default: none (one process per study)."""
        return 0

    def attrs(self) -> dict[str, Any]:
        """The study's attributes (MLflow run id, selection, test results, ...): a copy."""
        return dict(self.__dict__.get("_attrs", {}))

    def set_attr(self, key: str, value: Any) -> None:
        """Store one study attribute (JSON-serializable)."""
        self.__dict__.setdefault("_attrs", {})[key] = value

    @abstractmethod
    def ask(self) -> Candidate:
        """The next candidate to evaluate."""

    @abstractmethod
    def tell(self, candidate: Candidate, result: TrialResult) -> None:
        """Record the result of a candidate returned by :meth:`ask`."""

    def should_prune(self, candidate: Candidate, step: int, value: float) -> bool:
        """Report an intermediate score after ``step`` examples; True means stop evaluating it."""
        return False

    @abstractmethod
    def trials(self) -> list[FinishedTrial]:
        """Every finished trial (COMPLETE, PRUNED, FAIL), in trial-number order."""

    def best(self) -> list[FinishedTrial]:
        """The best complete trial (single objective) or the Pareto set (several objectives)."""
        return pareto_front(self.trials(), self.objectives)

    def n_finished(self) -> int:
        """Trials that count toward ``--trials``: evaluated ones, COMPLETE or PRUNED (failed ones are redone;
        designs over the calls/question budget, rejected unrun, are resampled)."""
        return sum(t.counts for t in self.trials())

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (called once by the loop at the end)."""
