"""Runs a :class:`~agentsearch.optimizers.base.Strategy` on a study: :class:`StrategyOptimizer`.

Every strategy, built in or not, runs here over one :class:`~agentsearch.optimizers.store.StudyStore`:
a proposal is checked against the space, deduplicated and queued in the study (or, for a define-by-run
proposal, sampled on the trial the study opens), so resume, reports, MLflow and export are the same for
all. The strategy's LM calls are metered here, once for every strategy, and charged to the trial they
produced (``proposer_calls``, ``proposer_tokens``), so budgets and projections include them; a raising
``propose`` is a proposer failure (:class:`ProposerFailures`).
"""

from __future__ import annotations

import logging
import random
from typing import Any

from agentsearch.evaluators.llm.lm import Meter, metering
from agentsearch.optimizers.base import (
    AdaptsSpace,
    Archive,
    Binds,
    Candidate,
    FinishedTrial,
    Optimizer,
    Proposal,
    Strategy,
    StrategyContext,
    TrialResult,
)
from agentsearch.optimizers.store import Design, StudyStore

log = logging.getLogger(__name__)


class StrategyOptimizer(Optimizer):
    """A strategy over the study store, with the whole :class:`Optimizer` contract.

    ``strategy`` is the strategy object or a class called with no arguments; the other keyword arguments
    make the store (study name, storage, sampler, pruner, objectives, seed, baselines, ...). When nothing
    is queued, :meth:`ask` runs the strategy's ``propose`` under a meter; its usage is charged to the trial
    asked next. A proposal outside the space is dropped (the sampler proposes); one that duplicates a
    trial of the study is asked again, up to ``max_attempts`` times.
    """

    max_attempts: int = 4

    def __init__(self, space: Any, *, strategy: Any, seed: int = 0, **store: Any) -> None:
        self.strategy: Strategy = strategy() if isinstance(strategy, type) else strategy
        if not isinstance(self.strategy, Strategy):
            raise TypeError(f"{self.strategy!r} is not a Strategy (name, propose, told)")
        if isinstance(self.strategy, AdaptsSpace):
            space = self.strategy.adapt(space)
        self.space = space
        self.name = self.strategy.name
        self.seed = seed
        self.store = StudyStore(space, seed=seed, **store)
        self.objectives = self.store.objectives
        self.resumed = self.store.resumed
        self.failures = ProposerFailures(self)
        self._pending_usage: dict[int, Meter] = {}

    # -- the study, as the store keeps it ------------------------------------------------------------

    @property
    def study(self) -> Any:
        """The Optuna study (for reports and tests; strategies read :meth:`archive`)."""
        return self.store.study

    @property
    def pool(self) -> Any:
        return self.store.pool

    def archive(self) -> Archive:
        return self.store.archive()

    def bind(self, context: StrategyContext) -> None:
        if isinstance(self.strategy, Binds):
            self.strategy.bind(context)

    def requeue(self, candidate: Candidate) -> None:
        self.store.requeue(candidate)

    def taken_before(self, number: int) -> int:
        return self.store.taken_before(number)

    def complete_metrics(self, config_hash: str) -> dict[str, float] | None:
        return self.store.complete_metrics(config_hash)

    def running_elsewhere(self, before: int | None = None, alive_only: bool = False) -> int:
        return self.store.running_elsewhere(before, alive_only)

    def attrs(self) -> dict[str, Any]:
        return self.store.attrs()

    def set_attr(self, key: str, value: Any) -> None:
        self.store.set_attr(key, value)

    def should_prune(self, candidate: Candidate, step: int, value: float) -> bool:
        return self.store.should_prune(candidate, step, value)

    def trials(self) -> list[FinishedTrial]:
        return self.store.trials()

    def best(self) -> list[FinishedTrial]:
        return self.store.best()

    def n_finished(self) -> int:
        return self.store.n_finished()

    def close(self) -> None:
        self.store.close()

    # -- ask / tell ---------------------------------------------------------------------------------

    def ask(self) -> Candidate:
        meter: Meter | None = None
        design: Design | None = None
        if self.store.n_waiting() == 0:
            meter = Meter()
            with metering(meter):
                try:
                    design = self._propose()
                except Exception as exc:  # noqa: BLE001 - recorded with the trial; the study stops if it always fails
                    self.failures.record(exc)
                else:
                    usage = meter.total
                    if usage.calls > usage.failed_calls:  # the proposer answered: the count starts again
                        self.failures.succeeded()
        candidate = self.store.ask(design)
        self.failures.mark(candidate)
        if meter is not None and meter.total.calls:
            self._pending_usage[candidate.number] = meter
        return candidate

    def _propose(self) -> Design | None:
        """Ask the strategy; queue its design (or return its define-by-run sampler). None: the sampler's turn."""
        archive = self.store.archive()
        for attempt in range(self.max_attempts):
            rng = random.Random(self.seed + archive.n_total + attempt)
            out = self.strategy.propose(archive, self.space, rng)
            if out is None:
                return None
            proposal = out if isinstance(out, Proposal) else Proposal(graph=out)
            if proposal.pool is not None:
                self.store.set_pool(proposal.pool)
            for key, value in proposal.attrs.items():
                self.store.set_attr(key, value)
            origin = proposal.origin or self.name
            info = {"proposer": self.name, **proposal.info} if proposal.info else {}
            if proposal.sample is not None:
                sample = proposal.sample
                return lambda trial, pool: (sample(trial, pool), origin)
            if proposal.params is not None:
                self.store.enqueue_params(proposal.params, origin, info)
                return None
            if proposal.graph is None:
                return None
            outside = self.space.check(proposal.graph)
            if outside is not None:
                log.info("%s proposed a design outside the space (%s); the sampler proposes", self.name, outside)
                return None
            if proposal.graph.config_hash in archive.seen:
                log.info("%s proposal %d is a duplicate of a trial; rejected", self.name, attempt + 1)
                continue
            self.store.enqueue(proposal.graph, origin=origin, info=info or {"proposer": self.name})
            return None
        return None

    def tell(self, candidate: Candidate, result: TrialResult) -> None:
        charge_proposer(result, self._pending_usage.pop(candidate.number, None))
        proposer_failed_metric(result, candidate)
        self.store.tell(candidate, result)
        stored = self.store.finished(candidate.number)
        if stored is not None:
            self.strategy.told(stored)


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
