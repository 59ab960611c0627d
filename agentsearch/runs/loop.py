"""The one search loop: ask candidates, evaluate them on growing validation minibatches, tell results.

``parallel`` candidates are evaluated at once (ask/tell from the main thread, evaluations in worker
threads). Each candidate is scored on the first 4, 8, 16, ... validation examples (``min_batch``, default 4); after each
minibatch its running score is reported to the optimizer, which may prune it. A trial whose
examples failed (endpoint errors after retries) is recorded as FAIL with the reason, never scored,
and queued again; too many consecutive failures stop the study cleanly so it can be resumed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import dspy

from agentsearch.defaults import MIN_BATCH
from agentsearch.evaluators.benchmarks import Example
from agentsearch.evaluators.evaluator import EvalResult, Evaluator, ExampleRecord
from agentsearch.evaluators.llm.lm import metering
from agentsearch.optimizers.base import OVER_BUDGET, Candidate, Optimizer, TrialResult
from agentsearch.search_space.graph import AgentGraph

log = logging.getLogger(__name__)

ProgramFactory = Callable[[AgentGraph], dspy.Module]


def minibatch_schedule(n: int, first: int = MIN_BATCH) -> list[int]:
    """Cumulative example counts at which a candidate is scored: first, 2*first, 4*first, ..., n."""
    if n <= 0:
        return []
    steps, size = [], max(1, first)
    while size < n:
        steps.append(size)
        size *= 2
    steps.append(n)
    return steps


class LoopObserver(Protocol):
    """Progress hooks (the CLI's progress bar, MLflow logging). All optional."""

    def trial_started(self, candidate: Candidate) -> None: ...
    def example_done(self, candidate: Candidate, record: ExampleRecord) -> None: ...
    def trial_finished(self, candidate: Candidate, result: TrialResult, records: list[ExampleRecord]) -> None: ...


#: The reason of a trial closed unrun because other workers had taken the study's last trials.
SURPLUS = "not run: the study's --trials were taken by other workers"


class StudyStopped(Exception):
    """The loop stopped early (too many consecutive failures); the study can be resumed."""


@dataclass
class LoopStats:
    finished: int = 0
    complete: int = 0
    pruned: int = 0
    rejected: int = 0  # over the calls/question budget, not run (resampled; not counted as trials)
    failed: int = 0
    duplicates: int = 0
    calls: int = 0  # LM calls spent in this session (cache hits are free)
    tokens: int = 0
    design_calls: int = 0  # what the finished trials cost (cache hits, preparation and proposers included)
    design_tokens: int = 0
    wall_s: float = 0.0
    stopped_reason: str | None = None
    by_model: dict[str, dict[str, float]] = field(default_factory=dict)

    def add_usage(self, records: Sequence[ExampleRecord]) -> None:
        """What this session spent (cache hits are free)."""
        self.calls += sum(r.calls - r.cached_calls for r in records)
        self.tokens += sum(r.spent_tokens for r in records)


class SearchLoop:
    """Runs an optimizer until the study holds ``n_trials`` finished (complete or pruned) trials."""

    def __init__(
        self,
        optimizer: Optimizer,
        program_factory: ProgramFactory,
        metric: Callable[[Example, str], bool],
        val_examples: Sequence[Example],
        *,
        n_trials: int,
        parallel: int = 1,
        concurrency: int = 8,
        min_batch: int = MIN_BATCH,
        max_consecutive_failures: int = 3,
        max_consecutive_rejected: int = 200,
        observer: LoopObserver | None = None,
        max_calls_per_question: int | None = None,
        prepare: Callable[[Candidate], AgentGraph] | None = None,
        max_calls: int | None = None,
        trace: Callable[[Candidate, Example], AbstractContextManager[Any] | None] | None = None,
        max_tokens: int | None = None,
        time_budget_s: float | None = None,
    ):
        if n_trials <= 0:
            raise ValueError("n_trials must be > 0")
        self.optimizer = optimizer
        self.program_factory = program_factory
        self.metric = metric
        self.val = list(val_examples)
        self.n_trials = n_trials
        self.parallel = max(1, parallel)
        self.concurrency = concurrency
        self.schedule = minibatch_schedule(len(self.val), min_batch)
        self.max_consecutive_failures = max_consecutive_failures
        self.max_consecutive_rejected = max_consecutive_rejected
        self.observer = observer
        self.max_calls_per_question = max_calls_per_question
        self.max_calls = max_calls
        self.max_tokens = max_tokens
        self.time_budget_s = time_budget_s
        # a resumed study has spent its earlier trials' calls and tokens already
        earlier = [t for t in optimizer.trials() if t.state in ("COMPLETE", "PRUNED")]
        self._calls_before = int(sum(t.metrics.get("calls", 0.0) for t in earlier))
        self._tokens_before = int(sum(t.metrics.get("tokens", 0.0) for t in earlier))
        self._start: float | None = None
        self.prepare = prepare
        self.trace = trace  # e.g. MLflow traces of a sample of each trial's examples
        self.stats = LoopStats()
        self._cancel = threading.Event()

    # -- evaluation of one candidate --------------------------------------------------------------

    def evaluate_candidate(self, candidate: Candidate) -> tuple[TrialResult, list[ExampleRecord]]:
        graph = candidate.graph
        expected = graph.expected_calls()
        if self.max_calls_per_question is not None and expected > self.max_calls_per_question:
            reason = f"{OVER_BUDGET}: up to {expected} LM calls/question > {self.max_calls_per_question} (not run)"
            return TrialResult(
                "PRUNED",
                {"val_score": 0.0, "n_examples": 0.0, "expected_calls": float(expected)},
                reason=reason,
                step=0,
            ), []
        prep: dict[str, float] = {}
        if self.prepare is not None:  # e.g. experience memory, DSPy prompt optimizers (on the train split)
            with metering() as meter:
                graph = candidate.graph = self.prepare(candidate)
            usage = meter.total
            if usage.calls:
                prep = {"prepare_calls": float(usage.calls), "prepare_tokens": float(usage.design_tokens)}
                self.stats.calls += usage.calls - usage.cached_calls  # spent now (cache hits are free)
                self.stats.tokens += usage.tokens
        if candidate.info.get("prompt_optimizer_error"):
            prep["prompt_optimizer_failed"] = 1.0
        known = self.optimizer.complete_metrics(graph.config_hash)  # from the study: other workers' too
        if known is not None:  # the score is reused; this trial itself cost nothing (beyond its preparation)
            metrics = {**known, "calls": prep.get("prepare_calls", 0.0), "tokens": prep.get("prepare_tokens", 0.0)}
            return TrialResult("COMPLETE", metrics, reason="duplicate config: result reused"), []
        result, records = self._evaluate(candidate, graph)
        result.examples = example_sample(records)
        result.outcomes = "".join("1" if r.correct else "0" for r in records)
        if prep:
            result.metrics.update(prep)
            result.metrics["calls"] = result.metrics.get("calls", 0.0) + prep.get("prepare_calls", 0.0)
            result.metrics["tokens"] = result.metrics.get("tokens", 0.0) + prep.get("prepare_tokens", 0.0)
        return result, records

    def _evaluate(self, candidate: Candidate, graph: AgentGraph) -> tuple[TrialResult, list[ExampleRecord]]:
        program = self.program_factory(graph)
        observer = self.observer

        def progress(done: int, total: int, record: ExampleRecord) -> None:
            if observer is not None:
                observer.example_done(candidate, record)

        trace = self.trace
        evaluator = Evaluator(
            self.metric,
            concurrency=self.concurrency,
            progress=progress,
            trace=(lambda example: trace(candidate, example)) if trace is not None else None,
        )
        records: list[ExampleRecord] = []
        for step in self.schedule:
            if self._cancel.is_set():
                return TrialResult("FAIL", _metrics(records), reason="interrupted"), records
            batch = self.val[len(records) : step]
            result: EvalResult = evaluator.evaluate(program, batch, cancel=self._cancel)
            records.extend(result.records)
            errors = [r for r in records if r.error_kind in ("endpoint", "internal")]
            if errors:
                reason = f"{len(errors)} of {len(records)} examples failed after retries; first: {errors[0].error}"
                return TrialResult("FAIL", _metrics(records), reason=reason, step=len(records)), records
            metrics = _metrics(records)
            if step < len(self.val) and self.optimizer.should_prune(candidate, step, metrics["val_score"]):
                metrics["pruned_step"] = float(step)
                return TrialResult("PRUNED", metrics, reason=f"pruned after {step} examples", step=step), records
        return TrialResult("COMPLETE", _metrics(records), step=len(records)), records

    def _guarded(self, candidate: Candidate) -> tuple[TrialResult, list[ExampleRecord]]:
        started = time.time()
        try:
            if self.observer is not None:
                self.observer.trial_started(candidate)
            result, records = self.evaluate_candidate(candidate)
        except Exception as exc:  # noqa: BLE001 - a broken candidate fails its trial, not the study
            log.exception("trial %d crashed", candidate.number)
            result, records = TrialResult("FAIL", {}, reason=f"{type(exc).__name__}: {exc}"[:2000]), []
        result.started_at, result.ended_at = started, time.time()
        return result, records

    # -- the loop ------------------------------------------------------------------------------

    def _remaining(self, in_flight: Mapping[Future, Candidate]) -> int:
        """Trials still to finish for ``n_trials``, counted in the study itself: several workers may share it
        (their running trials count, so the study's total is ``n_trials``, not each worker's)."""
        return self.n_trials - self.optimizer.n_finished() - self.optimizer.running_elsewhere() - len(in_flight)

    def _surplus(self, candidate: Candidate, in_flight: Mapping[Future, Candidate]) -> bool:
        """Workers sharing a study may ask for the last trial at once: trial numbers decide, the lower ones
        run, a surplus one is closed unrun (FAIL, reason SURPLUS, not queued again)."""
        if self.optimizer.taken_before(candidate.number) + len(in_flight) < self.n_trials:
            return False
        self.optimizer.tell(candidate, TrialResult("FAIL", {}, reason=SURPLUS))
        return True

    def run(self) -> LoopStats:
        start = self._start = time.perf_counter()
        consecutive_failures = 0
        consecutive_rejected = 0
        in_flight: dict[Future, Candidate] = {}
        pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="agentsearch-trial")
        try:
            while (self._remaining(in_flight) > 0 and not self.budget_spent()) or in_flight:
                # a spent call budget: finish what runs, ask nothing new
                while len(in_flight) < self.parallel and not self.budget_spent() and self._remaining(in_flight) > 0:
                    candidate = self.optimizer.ask()
                    if self._surplus(candidate, in_flight):
                        break
                    in_flight[pool.submit(self._guarded, candidate)] = candidate
                if not in_flight:
                    break
                done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
                for future in done:
                    candidate = in_flight.pop(future)
                    result, records = future.result()
                    self._finish(candidate, result, records)
                    if result.state == "FAIL":
                        consecutive_failures += 1
                        self._requeue(candidate)
                    elif result.state == "PRUNED" and result.step == 0:  # over budget, not run: sample again
                        consecutive_rejected += 1
                        if consecutive_rejected >= self.max_consecutive_rejected:
                            self.stats.stopped_reason = (
                                f"{consecutive_rejected} designs in a row were over --max-calls-per-question "
                                f"{self.max_calls_per_question}; raise it or narrow the space (--levels)"
                            )
                            self._cancel.set()
                            self._drain(in_flight)
                            raise StudyStopped(self.stats.stopped_reason)
                    else:
                        consecutive_failures = consecutive_rejected = 0
                if consecutive_failures >= self.max_consecutive_failures:
                    self.stats.stopped_reason = (
                        f"{consecutive_failures} trials failed in a row (last: {result.reason}); "
                        "the study is saved and can be resumed"
                    )
                    self._cancel.set()
                    self._drain(in_flight)
                    raise StudyStopped(self.stats.stopped_reason)
            if self._remaining(in_flight) > 0 and self.budget_spent():
                self.stats.stopped_reason = self.limit_reached()
        except KeyboardInterrupt:
            self._cancel.set()
            self.stats.stopped_reason = "interrupted"
            self._drain(in_flight)
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.optimizer.close()
            self.stats.wall_s += time.perf_counter() - start
        return self.stats

    def budget_spent(self) -> bool:
        """True once a study limit is reached (``max_calls``, ``max_tokens``, ``time_budget_s``; None: none)."""
        return self.limit_reached() is not None

    def limit_reached(self) -> str | None:
        """Which study limit stops new trials, in words (None while none is reached). Calls and tokens count
        the study's trials, earlier sessions' too; time counts this session's search."""
        calls = self._calls_before + self.stats.design_calls
        if self.max_calls is not None and calls >= self.max_calls:
            return f"call budget reached: {calls:,} of {self.max_calls:,} LLM calls (--max-calls)"
        tokens = self._tokens_before + self.stats.design_tokens
        if self.max_tokens is not None and tokens >= self.max_tokens:
            return f"token budget reached: {tokens:,} of {self.max_tokens:,} tokens (--max-tokens)"
        if self.time_budget_s is not None and self._start is not None:
            elapsed = time.perf_counter() - self._start
            if elapsed >= self.time_budget_s:
                return f"time budget reached: searched {elapsed:,.0f} s of {self.time_budget_s:,.0f} s (--time-budget)"
        return None

    def _drain(self, in_flight: dict[Future, Candidate]) -> None:
        """Cancel running evaluations; record them as FAIL (interrupted) and queue them again."""
        for future, candidate in list(in_flight.items()):
            try:
                result, records = future.result()
            except Exception as exc:  # noqa: BLE001
                result, records = TrialResult("FAIL", {}, reason=f"{type(exc).__name__}: {exc}"), []
            if result.state != "FAIL":
                self._finish(candidate, result, records)
                continue
            result.reason = "interrupted"
            self._finish(candidate, result, records)
            self._requeue(candidate)
        in_flight.clear()

    def _requeue(self, candidate: Candidate) -> None:
        self.optimizer.requeue(candidate)

    def _finish(self, candidate: Candidate, result: TrialResult, records: list[ExampleRecord]) -> None:
        self.optimizer.tell(candidate, result)  # may charge proposer calls to the result's metrics
        self.stats.add_usage(records)
        if result.state == "FAIL":  # what the failed attempt spent (its retry is charged again, as it runs again)
            self.stats.design_calls += sum(r.calls - r.cached_calls for r in records)
            self.stats.design_tokens += sum(r.spent_tokens for r in records)
        else:
            self.stats.design_calls += int(result.metrics.get("calls", 0.0))
            self.stats.design_tokens += int(result.metrics.get("tokens", 0.0))
        if result.state == "COMPLETE":
            self.stats.complete += 1
            self.stats.finished += 1
            if result.reason and result.reason.startswith("duplicate"):
                self.stats.duplicates += 1
        elif result.state == "PRUNED" and result.step == 0:
            self.stats.rejected += 1
        elif result.state == "PRUNED":
            self.stats.pruned += 1
            self.stats.finished += 1
        else:
            self.stats.failed += 1
        if self.observer is not None:
            self.observer.trial_finished(candidate, result, records)


def _metrics(records: Sequence[ExampleRecord]) -> dict[str, Any]:
    n = len(records)
    if n == 0:
        return {"n_examples": 0.0}
    return {
        "val_score": sum(r.correct for r in records) / n,
        "tokens_per_question": sum(r.tokens for r in records) / n,
        "calls_per_question": sum(r.calls for r in records) / n,
        "latency_per_question_s": sum(r.latency_s for r in records) / n,
        "n_examples": float(n),
        "n_errors": float(sum(r.error is not None for r in records)),
        "n_model_errors": float(sum(r.error_kind == "model" for r in records)),
        "no_answer_rate": sum(r.no_answer for r in records) / n,
        "calls": float(sum(r.calls for r in records)),
        "tokens": float(sum(r.tokens for r in records)),
    }


def example_sample(records: Sequence[ExampleRecord], failed: int = 6, passed: int = 3) -> list[dict[str, Any]]:
    """A few failed and passed examples of a trial (what prompt proposers learn from)."""

    def brief(r: ExampleRecord) -> dict[str, Any]:
        return {
            "question": r.question[:1500],
            "gold": r.gold[:200],
            "prediction": r.prediction[:200],
            "correct": r.correct,
            "reasoning": r.reasoning[:800],
            **({"detail": r.detail[:300]} if r.detail else {}),
        }

    wrong = [brief(r) for r in records if not r.correct and not r.error_kind == "endpoint"][:failed]
    right = [brief(r) for r in records if r.correct][:passed]
    return wrong + right
