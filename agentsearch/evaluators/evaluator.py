"""Evaluator: run a program over examples concurrently and score it.

Each example runs in its own thread with its own usage meter. A failure on one example never
crashes the evaluation; it is recorded on the example (``error``, ``error_kind``):

- ``endpoint``: the LM endpoint failed (connection, timeout, 5xx, rate limit, auth) even after the
  LM client's retries (the one retry layer; the example is not run again), or its circuit breaker is
  open. A score built on such examples is not trustworthy: the search loop fails the trial instead of
  scoring it.
- ``model``: the model's output could not be used (unparseable output, context window exceeded).
  That is the agent's fault, so the example counts as answered wrongly (``no_answer``); it is not retried.

A record keeps the prediction, the answer the benchmark extracted from it (``extracted``; empty: the
reply had no answer, ``no_answer``) and the score's ``value`` (partial credit where a scorer gives it).
- ``internal``: anything else (a bug); retried, recorded, and treated like ``endpoint``.
- ``scoring``: the benchmark's scorer failed on the prediction; the example counts as wrong and the
  record says why (it is not the endpoint's fault, so the trial stands).
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import dspy

from agentsearch.evaluators.benchmarks import Example, Score
from agentsearch.evaluators.llm.lm import Meter, metering

log = logging.getLogger(__name__)

#: ``metric(example, prediction)``: a :class:`~agentsearch.evaluators.benchmarks.Score` (e.g.
#: ``Benchmark.score``), or a plain bool.
Metric = Callable[[Example, str], "Score | bool"]

#: ``trace(example)``: None (the example is not traced) or a context manager the example runs in (e.g. an MLflow
#: trace of its LM calls); what it yields, if callable, is given the finished :class:`ExampleRecord`.
TraceHook = Callable[[Example], "AbstractContextManager[Any] | None"]


@dataclass
class ExampleRecord:
    """The outcome of one example."""

    id: str
    question: str
    gold: str
    prediction: str = ""
    correct: bool = False
    prompt_tokens: int = 0  # billed now
    completion_tokens: int = 0
    cached_tokens: int = 0  # what the calls answered from the cache cost when they were made
    calls: int = 0
    cached_calls: int = 0
    latency_s: float = 0.0
    attempts: int = 1
    error: str | None = None
    error_kind: str | None = None  # "endpoint" | "model" | "internal"
    reasoning: str = ""
    extracted: str = ""  # the final answer the benchmark read from the prediction
    value: float = 0.0  # the score (1.0/0.0, or partial credit); only `correct` counts toward accuracy
    no_answer: bool = False  # the reply had no extractable answer (or could not be parsed)
    detail: str = ""  # the scorer's reason (e.g. which test failed), when it gives one

    @property
    def tokens(self) -> int:
        """The design's cost on this example: tokens billed now plus those of its cached calls."""
        return self.prompt_tokens + self.completion_tokens + self.cached_tokens

    @property
    def spent_tokens(self) -> int:
        """Tokens billed now (cache hits bill none)."""
        return self.prompt_tokens + self.completion_tokens


@dataclass
class EvalResult:
    """Per-example records and aggregates of one evaluation."""

    records: list[ExampleRecord]
    wall_s: float
    usage_by_model: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def n_correct(self) -> int:
        return sum(r.correct for r in self.records)

    @property
    def n_errors(self) -> int:
        return sum(r.error is not None for r in self.records)

    @property
    def n_no_answer(self) -> int:
        return sum(r.no_answer for r in self.records)

    @property
    def no_answer_rate(self) -> float:
        """Share of examples whose reply had no extractable answer."""
        return self.n_no_answer / self.n if self.n else 0.0

    @property
    def n_endpoint_errors(self) -> int:
        """Examples lost to endpoint (or internal) failures: their score says nothing about the agent."""
        return sum(r.error_kind in ("endpoint", "internal") for r in self.records)

    @property
    def n_missing(self) -> int:
        """Examples with no answer because the endpoint (or our code) failed after retries: they are
        missing, not wrong, and the score leaves them out."""
        return self.n_endpoint_errors

    @property
    def n_answered(self) -> int:
        return self.n - self.n_missing

    @property
    def score(self) -> float:
        """Accuracy over the answered examples (missing ones say nothing about the agent)."""
        return self.n_correct / self.n_answered if self.n_answered else 0.0

    @property
    def calls(self) -> int:
        return sum(r.calls for r in self.records)

    @property
    def tokens(self) -> int:
        return sum(r.tokens for r in self.records)

    @property
    def spent_tokens(self) -> int:
        return sum(r.spent_tokens for r in self.records)

    @property
    def tokens_per_question(self) -> float:
        return self.tokens / self.n if self.n else 0.0

    @property
    def calls_per_question(self) -> float:
        return self.calls / self.n if self.n else 0.0

    @property
    def latency_per_question(self) -> float:
        return sum(r.latency_s for r in self.records) / self.n if self.n else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "n": self.n,
            "n_correct": self.n_correct,
            "n_errors": self.n_errors,
            "n_endpoint_errors": self.n_endpoint_errors,
            "n_missing": self.n_missing,
            "n_no_answer": self.n_no_answer,
            "no_answer_rate": self.no_answer_rate,
            "tokens_per_question": self.tokens_per_question,
            "calls_per_question": self.calls_per_question,
            "latency_per_question_s": self.latency_per_question,
            "calls": self.calls,
            "tokens": self.tokens,
            "spent_tokens": self.spent_tokens,
            "wall_s": self.wall_s,
            "usage_by_model": self.usage_by_model,
        }

    def by_group(self, groups: Mapping[str, str]) -> dict[str, dict[str, Any]]:
        """Accuracy per group (``groups``: example id → its task, see ``Benchmark.group``), groups sorted by
        name: ``n``, ``n_answered``, ``n_correct``, ``n_no_answer`` and ``score`` (over the answered, as
        :attr:`score`). Records without a group are left out."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.records:
            name = groups.get(r.id)
            if name is None:
                continue
            g = out.setdefault(name, {"n": 0, "n_answered": 0, "n_correct": 0, "n_no_answer": 0})
            g["n"] += 1
            g["n_answered"] += r.error_kind not in ("endpoint", "internal")
            g["n_correct"] += r.correct
            g["n_no_answer"] += r.no_answer
        for g in out.values():
            g["score"] = g["n_correct"] / g["n_answered"] if g["n_answered"] else 0.0
        return dict(sorted(out.items()))

    def records_as_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.records]


def error_kind(exc: BaseException) -> str:
    """Classify a failure: ``endpoint`` (infrastructure), ``model`` (unusable output) or ``internal``."""
    from dspy.utils.exceptions import AdapterParseError, ContextWindowExceededError, LMError

    if isinstance(exc, AdapterParseError | ContextWindowExceededError):
        return "model"
    if isinstance(exc, LMError):
        return "endpoint"
    return "internal"


class Evaluator:
    """Scores a program on examples with a thread pool.

    ``progress`` (optional) is called as ``progress(done, total, record)`` after each example; ``trace``
    (optional, a :data:`TraceHook`) wraps the examples it chooses.
    """

    def __init__(
        self,
        metric: Metric,
        concurrency: int = 8,
        retries: int = 1,
        retry_backoff_s: float = 0.5,
        progress: Callable[[int, int, ExampleRecord], None] | None = None,
        trace: TraceHook | None = None,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.metric = metric
        self.concurrency = concurrency
        self.retries = retries
        self.retry_backoff_s = retry_backoff_s
        self.progress = progress
        self.trace = trace

    def _run_one(self, program: dspy.Module, example: Example, meter: Meter) -> ExampleRecord:
        wrapper = self.trace(example) if self.trace is not None else None
        with wrapper if wrapper is not None else nullcontext() as done:
            record = self._run(program, example, meter)
            if callable(done):
                done(record)
        return record

    def _run(self, program: dspy.Module, example: Example, meter: Meter) -> ExampleRecord:
        record = ExampleRecord(id=example.id, question=example.question, gold=example.answer)
        start = time.perf_counter()
        with metering(meter):
            for attempt in range(self.retries + 1):
                record.attempts = attempt + 1
                try:
                    with dspy.context(disable_history=True):
                        pred = program(question=example.question)
                    record.prediction = str(getattr(pred, "answer", "") or "").strip()
                    record.reasoning = str(getattr(pred, "reasoning", "") or "")
                    record.error = record.error_kind = None
                    break
                except Exception as exc:  # noqa: BLE001 - any failure is recorded on the example
                    record.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
                    record.error_kind = error_kind(exc)
                    if record.error_kind == "model":
                        break  # the agent's own failure: the example is simply wrong
                    if record.error_kind == "endpoint":
                        break  # the LM client retried the call already (one retry layer); a dead endpoint fails fast
                    log.warning("example %s attempt %d failed: %s", example.id, attempt + 1, record.error)
                    if attempt < self.retries:
                        time.sleep(self.retry_backoff_s * (2**attempt))
        if record.error is None:
            try:
                scored = self.metric(example, record.prediction)
                if isinstance(scored, Score):
                    record.correct, record.value, record.extracted = scored.correct, scored.value, scored.extracted
                    record.detail = scored.detail
                    if scored.error:  # the scorer failed: counted wrong, and the record says why
                        record.error, record.error_kind = scored.error[:500], "scoring"
                else:
                    record.correct = bool(scored)
                    record.value, record.extracted = float(record.correct), record.prediction
                record.no_answer = not record.extracted.strip()
            except Exception as exc:  # noqa: BLE001 - a metric failure is this example's error
                record.error = f"metric failed: {type(exc).__name__}: {exc}"[:500]
                record.error_kind = "internal"
        elif record.error_kind == "model":
            record.no_answer = True  # unparseable output: the agent gave no answer
        total = meter.total
        record.calls, record.cached_calls = total.calls, total.cached_calls
        record.prompt_tokens, record.completion_tokens = total.prompt_tokens, total.completion_tokens
        record.cached_tokens = total.cached_tokens
        record.latency_s = time.perf_counter() - start
        return record

    def evaluate(
        self, program: dspy.Module, examples: Sequence[Example], cancel: threading.Event | None = None
    ) -> EvalResult:
        """Score ``program`` on ``examples``. Setting ``cancel`` skips the examples not yet started
        (they are recorded with error ``cancelled``)."""
        start = time.perf_counter()
        meters = [Meter() for _ in examples]
        records: list[ExampleRecord | None] = [None] * len(examples)
        done = 0
        lock = threading.Lock()

        def task(i: int) -> None:
            nonlocal done
            if cancel is not None and cancel.is_set():
                ex = examples[i]
                rec = ExampleRecord(
                    id=ex.id, question=ex.question, gold=ex.answer, error="cancelled", error_kind="internal"
                )
            else:
                rec = self._run_one(program, examples[i], meters[i])
            with lock:
                records[i] = rec
                done += 1
                count = done
            if self.progress is not None:
                self.progress(count, len(examples), rec)

        if self.concurrency == 1 or len(examples) <= 1:
            for i in range(len(examples)):
                task(i)
        else:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(examples))) as pool:
                futures = [pool.submit(contextvars.copy_context().run, task, i) for i in range(len(examples))]
                for f in futures:
                    f.result()
        by_model = Meter()
        for m in meters:
            by_model.merge(m)
        usage = {alias: {**asdict(u), "tokens": u.tokens} for alias, u in by_model.by_model.items()}
        return EvalResult(
            records=[r for r in records if r is not None], wall_s=time.perf_counter() - start, usage_by_model=usage
        )
