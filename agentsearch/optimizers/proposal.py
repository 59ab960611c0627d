"""Proposal-based optimizers: strategies that write whole candidate graphs (an LLM meta-agent, evolution).

They keep all state in the same durable Optuna study as the samplers: a proposal is enqueued as a
fixed graph and asked back as a trial, so resume, reports, MLflow and export work unchanged. The
proposer's own LM calls are metered and charged to the trial they produced (``proposer_calls``,
``proposer_tokens``), so budgets and projections include them.
"""

from __future__ import annotations

import logging
import random
from abc import abstractmethod
from typing import Any

from agentsearch.evaluators.llm.lm import Meter, metering
from agentsearch.optimizers.base import Archive, Candidate, FinishedTrial, Strategy, StrategyContext, TrialResult
from agentsearch.optimizers.optuna_opt import OptunaOptimizer
from agentsearch.search_space.graph import AgentGraph

log = logging.getLogger(__name__)


class ProposingOptimizer(OptunaOptimizer):
    """The one place proposer LM calls are metered, charged and their failures counted, for every strategy
    that proposes with an LLM (graphs: :class:`ProposalOptimizer`; instructions: the instruction proposer).

    When nothing is queued, :meth:`ask` runs :meth:`_proposal_step` (which may enqueue a proposal) under a
    meter; the usage is charged to the trial asked next (``proposer_calls``, ``proposer_tokens``, and in its
    ``calls``/``tokens``). A step that raises is a proposer failure (:class:`ProposerFailures`); one whose
    LM answered at least once resets the count.
    """

    proposer_lm: Any = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._pending_usage: dict[int, Meter] = {}
        self.failures = ProposerFailures(self)

    def bind(self, context: StrategyContext) -> None:
        self.proposer_lm = context.proposer_lm

    @abstractmethod
    def _proposal_step(self) -> None:
        """Propose (enqueue) what comes next, if anything; may call the proposer LM."""

    def ask(self) -> Candidate:
        meter: Meter | None = None
        if self.n_waiting() == 0:
            meter = Meter()
            with metering(meter):
                try:
                    self._proposal_step()
                except Exception as exc:  # noqa: BLE001 - recorded with the trial; the study stops if it always fails
                    self.failures.record(exc)
                else:
                    usage = meter.total
                    if usage.calls > usage.failed_calls:  # the proposer answered: the count starts again
                        self.failures.succeeded()
        candidate = super().ask()
        self.failures.mark(candidate)
        if meter is not None and meter.total.calls:
            self._pending_usage[candidate.number] = meter
        return candidate

    def tell(self, candidate: Candidate, result: TrialResult) -> None:
        charge_proposer(result, self._pending_usage.pop(candidate.number, None))
        proposer_failed_metric(result, candidate)
        super().tell(candidate, result)


class ProposalOptimizer(ProposingOptimizer):
    """Base: ``propose()`` writes the next graph from the archive; queued trials (baselines) go first.

    Subclasses implement :meth:`propose`. ``max_attempts`` proposals that are invalid or duplicates
    of evaluated graphs are rejected without evaluation; after that the space's sampler fills in.
    """

    max_attempts: int = 4

    @abstractmethod
    def propose(self, archive: list[FinishedTrial]) -> tuple[Any, ...] | None:
        """``(graph, origin)`` or ``(graph, origin, info)`` (how it was proposed: the proposer's inputs and
        output, logged with the trial), or None to let the sampler decide."""

    def archive(self) -> list[FinishedTrial]:
        """Evaluated trials with a graph: what proposers learn from."""
        return [t for t in self.trials() if t.graph is not None and t.state in ("COMPLETE", "PRUNED")]

    def seen_hashes(self) -> set[str]:
        """Config hashes of every trial so far (finished, running or queued): proposals must be new."""
        seen = set()
        for t in self.study.get_trials(deepcopy=False):
            h = t.user_attrs.get("config_hash")
            if h:
                seen.add(h)
            elif t.user_attrs.get("fixed_graph"):
                seen.add(AgentGraph.from_text(t.user_attrs["fixed_graph"]).config_hash)
        return seen

    def _proposal_step(self) -> None:
        proposal = self._propose_new()
        if proposal is not None:
            graph, origin, info = proposal
            self.enqueue(graph, origin=origin, info=info)

    def _propose_new(self) -> tuple[AgentGraph, str, dict[str, Any]] | None:
        seen = self.seen_hashes()
        archive = self.archive()
        for attempt in range(self.max_attempts):
            proposal = self.propose(archive)
            if proposal is None:
                return None
            graph, origin = proposal[0], proposal[1]
            if graph.config_hash in seen:
                log.info("%s proposal %d is a duplicate of an evaluated graph; rejected", self.name, attempt + 1)
                continue
            info = dict(proposal[2]) if len(proposal) > 2 else {}
            return graph, origin, {"proposer": self.name, **info}
        return None


class StrategyOptimizer(ProposalOptimizer):
    """Runs any :class:`~agentsearch.optimizers.base.Strategy` (``propose``/``told`` only) on the study:
    ``strategy`` is the strategy object or a class called with no arguments. Its proposals are checked
    against the space, deduplicated and queued like every proposer's; a raising ``propose`` is a proposer
    failure (recorded, and the study stops after 3 in a row)."""

    def __init__(self, space: Any, *, strategy: Any, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(space, seed=seed, **kwargs)
        self.strategy: Strategy = strategy() if isinstance(strategy, type) else strategy
        if not isinstance(self.strategy, Strategy):
            raise TypeError(f"{self.strategy!r} is not a Strategy (name, propose, told)")
        self.name = self.strategy.name
        self.seed = seed

    def propose(self, archive: list[FinishedTrial]) -> tuple[Any, ...] | None:
        view = Archive(
            trials=tuple(archive),
            seen=frozenset(self.seen_hashes()),
            objectives=self.objectives,
            n_total=len(self.study.get_trials(deepcopy=False)),
        )
        graph = self.strategy.propose(view, self.space, random.Random(self.seed + view.n_total))
        if graph is None:
            return None
        outside = self.space.check(graph)
        if outside is not None:
            log.info("%s proposed a design outside the space (%s); the sampler proposes", self.name, outside)
            return None
        return graph, self.name

    def tell(self, candidate: Candidate, result: TrialResult) -> None:
        super().tell(candidate, result)
        from agentsearch.optimizers.optuna_opt import finished_trial

        frozen = self.study.get_trials(deepcopy=False)
        stored = next((t for t in frozen if t.number == candidate.number), None)
        if stored is not None and stored.state.is_finished():
            self.strategy.told(finished_trial(stored))


class ProposerFailures:
    """Proposer failures of a strategy: each is logged, recorded with the trial the sampler ran instead
    (``info["proposer_error"]`` and the ``proposer_failed`` metric) and counted in the study; after
    ``limit`` in a row the study stops with :class:`~agentsearch.errors.ProposerError` (a broken
    proposer model must not quietly turn an LLM-driven study into a TPE study)."""

    ATTR = "agentsearch.proposer_failures"

    def __init__(self, optimizer: Any, limit: int = 3):
        self.optimizer = optimizer
        self.limit = limit
        self.in_a_row = 0
        self._last: str | None = None

    def record(self, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        log.warning("%s: the proposer failed (%s); the sampler proposes this trial", self.optimizer.name, reason)
        self.in_a_row += 1
        self._last = reason
        study = self.optimizer.study
        study.set_user_attr(self.ATTR, int(study.user_attrs.get(self.ATTR, 0)) + 1)
        if self.in_a_row >= self.limit:
            from agentsearch.errors import ProposerError

            raise ProposerError(
                f"--optimizer {self.optimizer.name}: the proposer failed {self.in_a_row} times in a row "
                f"(last: {reason}); check --proposer-model, or resume with another --optimizer"
            )

    def succeeded(self) -> None:
        self.in_a_row = 0

    def mark(self, candidate: Candidate) -> None:
        """The next trial after a failure says it was sampled because the proposer failed."""
        if self._last is not None:
            candidate.info["proposer_error"] = self._last
            candidate.info.setdefault("proposer", self.optimizer.name)
            if candidate.handle is not None:  # kept with the trial in the study, as proposals are
                candidate.handle.set_user_attr("proposal", dict(candidate.info))
            self._last = None


def proposer_failed_metric(result: TrialResult, candidate: Candidate) -> None:
    if candidate.info.get("proposer_error"):
        result.metrics["proposer_failed"] = 1.0


def charge_proposer(result: TrialResult, meter: Meter | None) -> None:
    """Add the proposer's LM usage behind a trial to its metrics: it counts in budgets and reports."""
    if meter is None:
        return
    usage = meter.total
    result.metrics["proposer_calls"] = float(usage.calls)
    result.metrics["proposer_tokens"] = float(usage.design_tokens)
    result.metrics["calls"] = result.metrics.get("calls", 0.0) + usage.calls
    result.metrics["tokens"] = result.metrics.get("tokens", 0.0) + usage.design_tokens
