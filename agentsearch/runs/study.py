"""A whole study: data splits, optimizer, the search loop, MLflow, the held-out test, export.

The CLI (``main.py optimize``) builds a :class:`StudyConfig` and the LMs, then calls
:func:`run_study`; everything it reports comes back as a JSON-able summary.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dspy

from agentsearch.defaults import MAX_CALLS_PER_QUESTION, MIN_BATCH
from agentsearch.evaluators.benchmarks import Benchmark, Example, SplitSpec, get_benchmark
from agentsearch.evaluators.evaluator import Evaluator, ExampleRecord
from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.evaluators.operators.prepare import needs_preparation, prepare_graph
from agentsearch.optimizers.base import (
    Candidate,
    FinishedTrial,
    Optimizer,
    StrategyContext,
    TrialResult,
    parse_objectives,
)
from agentsearch.optimizers.registry import PROMPT_OPTIMIZER_CALLS, PROMPT_OPTIMIZERS, STRATEGIES
from agentsearch.optimizers.store import open_storage
from agentsearch.runs.loop import LoopStats, SearchLoop
from agentsearch.search_space.baselines import baseline_graphs, baseline_variants
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import FORMATS
from agentsearch.search_space.space import SearchSpace

log = logging.getLogger(__name__)

#: Tokens per LM call (prompt + completion) the projection assumes before a study has measured its own:
#: the demo study of issue 12 (embedded 0.5B model, reasoning_gym) measured ~265; long prompts (demos,
#: several formats) and long reasoning cost more. A resumed study uses what its trials measured.
TOKENS_PER_CALL_RANGE = (200, 450)
#: Operator knobs the cost model counts as a maximum: the loop they bound may end sooner (a reply judged
#: correct, a program that ran, no more subquestions). The low end of a projection sets them to their minimum.
EARLY_STOP_KNOBS = {
    "self_refine": "rounds",
    "least_to_most": "max_subquestions",
    "react": "max_iters",
    "program_of_thought": "repairs",
    "reflexion": "max_trials",
}


@dataclass
class StudyConfig:
    study: str
    benchmark: str
    data: str | None = None
    seed: int = 0
    val_size: int | float = 50
    test_size: int | float = 100
    trials: int = 20
    levels: str = "prompt,module,agent"
    sampler: str = "tpe"
    pruner: str | None = None  # None: sha, or none for a multi-objective study (Optuna prunes single-objective only)
    objectives: tuple[str, ...] = ("accuracy",)
    parallel: int = 2
    concurrency: int = 8
    min_batch: int = MIN_BATCH
    run_dir: Path = Path("runs")
    storage: str | None = None
    tracking_uri: str | None = None
    tracking: bool = True
    models: dict[str, dict[str, str]] = field(default_factory=dict)  # alias -> public endpoint info
    aliases: tuple[str, ...] = ("default",)  # model aliases nodes may be routed to (searched when several)
    max_calls_per_question: int | None = MAX_CALLS_PER_QUESTION
    baselines: bool = True
    optimizer: str | None = None  # None: the Optuna --sampler; else proposer | meta-agent | evolution | staged
    proposer_model: str = "default"  # alias of the LM that proposes (instructions, graphs, mutations)
    prompt_optimizer: str | None = None  # bootstrap | mipro | gepa: DSPy prompt optimization per candidate
    formats: tuple[str, ...] = FORMATS  # output formats searched; baselines are evaluated in each
    top_k: int = 3  # candidates re-evaluated on the full validation split before the test
    max_calls: int | None = None  # stop asking for trials once they cost this many LLM calls (proposers included)
    max_tokens: int | None = None  # ... once they cost this many tokens
    time_budget_s: float | None = None  # ... once this session has searched this long (seconds)
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # alias -> USD per 1M (input, output)
    baseline_names: tuple[str, ...] | None = None  # the baselines enqueued (None: all four)
    model_flags: dict[str, Any] = field(default_factory=dict)  # the CLI flags that chose the models (no keys)
    trace_examples: int = 2  # MLflow traces of the first N validation examples of each trial (0: no traces at all)

    def pruner_name(self) -> str:
        """The pruner the study runs: ``pruner``, else ``sha`` (``none`` with several objectives)."""
        return self.pruner if self.pruner is not None else ("none" if len(self.objectives) > 1 else "sha")

    def identity(self) -> dict[str, Any]:
        """What a resumed study must share with the stored one."""
        return {
            "benchmark": self.benchmark,
            "data": self.data,
            "seed": self.seed,
            "val_size": self.val_size,
            "test_size": self.test_size,
            "levels": sorted(s.strip() for s in self.levels.split(",") if s.strip()),
            "objectives": list(self.objectives),
            "aliases": list(self.aliases),
            "max_calls_per_question": self.max_calls_per_question,
            "formats": list(self.formats),
        }

    def public(self) -> dict[str, Any]:
        d = asdict(self)
        d["run_dir"] = str(self.run_dir)
        d["objectives"] = list(self.objectives)
        d["aliases"] = list(self.aliases)
        d["formats"] = list(self.formats)
        return d


def calls_range(graph: AgentGraph) -> tuple[int, int]:
    """LM calls per question of ``graph`` from the operators' cost models: (low, high). High is the cost
    model's bound; low sets the knobs that only bound a loop (:data:`EARLY_STOP_KNOBS`) to their minimum."""
    low = 0
    for node in graph.nodes:
        knob = EARLY_STOP_KNOBS.get(node.op)
        params = node.params
        if knob is not None and hasattr(params, knob):
            least = next((m.ge for m in type(params).model_fields[knob].metadata if hasattr(m, "ge")), 0)
            params = params.model_copy(update={knob: least})
        low += node.spec.calls(params, len(node.upstream))
    return low, graph.expected_calls()


def examples_per_trial(n_val: int, min_batch: int, pruner: str, survival: float = 0.5) -> float:
    """Validation questions a trial is expected to be scored on under the pruning schedule: every trial
    runs the first minibatch, and (``sha``, ``hyperband``, ``median``) about ``survival`` of those that
    reach a rung go on to the next one (Optuna's successive halving keeps the top 1/2 at each rung)."""
    from agentsearch.runs.loop import minibatch_schedule

    schedule = minibatch_schedule(n_val, min_batch)
    if pruner == "none" or not schedule:
        return float(n_val)
    expected, reach, before = 0.0, 1.0, 0
    for rung in schedule:
        expected += reach * (rung - before)
        before, reach = rung, reach * survival
    return expected


@dataclass
class Projection:
    """What the rest of a study is expected to cost: ranges (low, high) of LLM calls, tokens and dollars."""

    calls: tuple[int, int]
    tokens: tuple[int, int]
    examples_per_trial: float
    val_examples: int
    test_examples: int
    calls_per_question: tuple[float, float]
    proposer_calls: tuple[int, int] = (0, 0)
    usd: tuple[float, float] | None = None
    limits: tuple[str, ...] = ()  # the study limits that cap the projection

    def describe(self) -> str:
        def rng(pair: tuple[float, float], fmt: str = ",.0f") -> str:
            lo, hi = (format(v, fmt) for v in pair)
            return lo if lo == hi else f"{lo}-{hi}"

        extra = (
            f", of which {rng(self.proposer_calls)} by proposers/prompt optimizers" if any(self.proposer_calls) else ""
        )
        usd = f", ${rng(self.usd, ',.2f')}" if self.usd is not None else ""
        capped = f"; capped by {', '.join(self.limits)}" if self.limits else ""
        return (
            f"projected: {rng(self.calls)} LLM calls{extra}, {rng(self.tokens)} tokens{usd} "
            f"({rng(self.calls_per_question, '.1f')} calls/question in this space; "
            f"~{self.examples_per_trial:.0f} of {self.val_examples} val questions per trial under the pruning "
            f"schedule; {self.test_examples} test questions per tested agent{capped})"
        )


def project_budget(
    space: SearchSpace,
    cfg: StudyConfig,
    n_val: int,
    n_test: int,
    remaining: int,
    *,
    finished: list[FinishedTrial] | None = None,
    tested: bool = False,
) -> Projection | None:
    """The expected cost of what is left of a study, as a range, or None when nothing is left to run.

    From the operators' cost models (:func:`calls_range` of designs sampled from the space, and of the
    baselines still to run), the pruning schedule (:func:`examples_per_trial`), the top-k re-scoring on the
    whole validation split, the held-out test, the strategy's proposer calls, and tokens per call (what the
    study's own trials measured, else :data:`TOKENS_PER_CALL_RANGE`). The study limits cap it. ``$`` when
    the run config prices the aliases."""
    import optuna

    finished = finished or []
    if remaining <= 0 and tested:
        return None
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=cfg.seed))
    lows, highs = [], []
    for _ in range(200):
        trial = study.ask()
        graph = space.sample(trial)
        if not space.over_budget(graph):  # over-budget designs are never run
            lo, hi = calls_range(graph)
            lows.append(lo)
            highs.append(hi)
        study.tell(trial, 0.0)
    per_q = (sum(lows) / max(1, len(lows)), sum(highs) / max(1, len(highs)))
    # the baselines still to run (each in each searched format) cost what their graphs cost, not the space's mean
    done = {t.origin.removesuffix(":retry") for t in finished if t.counts}
    todo = [
        g for name, g in (baseline_variants(space.formats, space.primary_format, cfg.baseline_names) or {}).items()
        if f"baseline:{name}" not in done
    ] if cfg.baselines else []  # fmt: skip
    todo = todo[:remaining]
    n_searched = remaining - len(todo)
    per_trial = examples_per_trial(n_val, cfg.min_batch, cfg.pruner_name())
    search = [
        sum(calls_range(g)[i] for g in todo) * per_trial + per_q[i] * per_trial * n_searched for i in (0, 1)
    ]
    # selection: the top-k re-scored on the whole validation split, on the questions they have not run yet
    # (none, when the contenders were never pruned)
    top_k = cfg.top_k if len(cfg.objectives) == 1 else 0
    selection = [0.0, per_q[1] * max(0.0, n_val - per_trial) * top_k]
    # the test: each baseline once (its best format), the best agent(s), CoT-SC at the best's cost
    base = [g for name, g in baseline_graphs().items() if cfg.baseline_names is None or name in cfg.baseline_names]
    base = base if cfg.baselines else []
    agents = max(1, len(cfg.objectives)) + (1 if cfg.baselines else 0)
    test = [0.0, 0.0] if tested else [
        (sum(calls_range(g)[i] for g in base) + per_q[i] * agents) * n_test for i in (0, 1)
    ]  # fmt: skip
    strategy = STRATEGIES.get(cfg.optimizer or cfg.sampler)  # proposer calls, per trial and per study
    per_study = strategy.proposer_calls_per_study if not finished else 0
    proposer = (
        min(1.0, strategy.proposer_calls_per_trial) * n_searched + per_study,
        strategy.proposer_calls_per_trial * n_searched
        + per_study
        + PROMPT_OPTIMIZER_CALLS.get(cfg.prompt_optimizer or "", 0) * n_searched,
    )
    limits = []
    search_calls = [search[i] + proposer[i] for i in (0, 1)]
    if cfg.max_calls is not None:
        spent = int(sum(t.metrics.get("calls", 0) for t in finished))
        left = max(0, cfg.max_calls - spent)
        if search_calls[1] > left:
            limits.append(f"--max-calls {cfg.max_calls:,}")
        search_calls = [min(c, left) for c in search_calls]
    calls = (int(search_calls[0] + selection[0] + test[0]), int(search_calls[1] + selection[1] + test[1]))
    measured_calls = sum(t.metrics.get("calls", 0) for t in finished)
    if measured_calls >= 50:  # the study's own tokens/call, give or take a quarter
        per_call = sum(t.metrics.get("tokens", 0) for t in finished) / measured_calls
        tokens_per_call = (per_call * 0.8, per_call * 1.25)
    else:
        tokens_per_call = TOKENS_PER_CALL_RANGE
    tokens = [calls[i] * tokens_per_call[i] for i in (0, 1)]
    if cfg.max_tokens is not None:
        spent = int(sum(t.metrics.get("tokens", 0) for t in finished))
        left = max(0, cfg.max_tokens - spent)
        cap = left + (selection[1] + test[1]) * tokens_per_call[1]  # the limit stops the search, not the test
        if tokens[1] > cap:
            limits.append(f"--max-tokens {cfg.max_tokens:,}")
        tokens = [min(t, cap) for t in tokens]
    if cfg.time_budget_s is not None:
        limits.append(f"--time-budget {format_duration(cfg.time_budget_s)}")
    usd = None
    prices = [p for p in cfg.prices.values()]
    if prices:  # USD per million tokens; prompt and completion tokens are not told apart here
        usd = (tokens[0] * min(min(p) for p in prices) / 1e6, tokens[1] * max(max(p) for p in prices) / 1e6)
    return Projection(
        calls=calls,
        tokens=(int(tokens[0]), int(tokens[1])),
        examples_per_trial=per_trial,
        val_examples=n_val,
        test_examples=n_test,
        calls_per_question=per_q,
        proposer_calls=(int(proposer[0]), int(proposer[1])),
        usd=usd,
        limits=tuple(limits),
    )


def format_duration(seconds: float) -> str:
    """``90`` -> ``1m30s``; ``7200`` -> ``2h``."""
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s")) if v) or "0s"


def parse_duration(text: str, flag: str = "--time-budget") -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``2h``, ``1h30m``; a one-line error naming ``flag`` otherwise."""
    import re

    from agentsearch.errors import UserError

    value = text.strip().lower()
    match = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", value)
    if not value or match is None or not any(match.groups()):
        raise UserError(f"{flag} {text!r}: expected seconds or a duration like 90s, 30m, 2h, 1h30m")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    seconds = h * 3600 + m * 60 + s
    if seconds <= 0:
        raise UserError(f"{flag} {text!r}: must be more than 0")
    return seconds


@dataclass(frozen=True)
class StudySoFar:
    """What a resumed study had finished before this session (progress displays continue from it)."""

    finished: int  # trials that count toward --trials
    pruned: int
    best_val: float | None

    @classmethod
    def of(cls, trials: list[FinishedTrial]) -> StudySoFar:
        counted = [t for t in trials if t.counts]
        vals = [t.metrics["val_score"] for t in counted if t.state == "COMPLETE" and "val_score" in t.metrics]
        return cls(
            finished=len(counted),
            pruned=sum(t.state == "PRUNED" for t in counted),
            best_val=max(vals) if vals else None,
        )


class _Observers:
    """Fan-out of loop events; also tracks the best value for MLflow."""

    def __init__(self, observers: list[Any]):
        self.observers = [o for o in observers if o is not None]

    def study_resumed(self, so_far: StudySoFar) -> None:
        for o in self.observers:
            if hasattr(o, "study_resumed"):
                o.study_resumed(so_far)

    def trial_started(self, candidate: Candidate) -> None:
        for o in self.observers:
            if hasattr(o, "trial_started"):
                o.trial_started(candidate)

    def example_done(self, candidate: Candidate, record: ExampleRecord) -> None:
        for o in self.observers:
            if hasattr(o, "example_done"):
                o.example_done(candidate, record)

    def trial_finished(self, candidate: Candidate, result: TrialResult, records: list[ExampleRecord]) -> None:
        for o in self.observers:
            if hasattr(o, "trial_finished"):
                o.trial_finished(candidate, result, records)


class _MlflowObserver:
    def __init__(self, tracker: Any, parent_run_id: str, tracer: Any = None):
        self.tracker = tracker
        self.parent = parent_run_id
        self.tracer = tracer
        self.best: float | None = None

    def trial_finished(self, candidate: Candidate, result: TrialResult, records: list[ExampleRecord]) -> None:
        try:
            failed_prompts = candidate.info.get("prompt_optimizer_error")
            run_id = self.tracker.log_trial(
                self.parent,
                candidate.number,
                graph=candidate.graph,
                params=candidate.params,
                state=result.state,
                metrics=result.metrics,
                records=[asdict(r) for r in records],
                reason=result.reason,
                origin=candidate.origin,
                extra_tags={"agentsearch.prompt_optimizer_error": failed_prompts} if failed_prompts else None,
                start_time=result.started_at,
                end_time=result.ended_at,
                trace_ids=self.tracer.take(f"trial:{candidate.number}") if self.tracer is not None else (),
            )
            if candidate.info:  # how an LLM or evolution proposed it: the proposer's inputs and output
                text = json.dumps(candidate.info, indent=2, default=str)
                self.tracker.log_artifact_text(run_id, text, "proposal.json")
            score = result.metrics.get("val_score")
            if result.state == "COMPLETE" and score is not None and (self.best is None or score > self.best):
                self.best = score
                self.tracker.log_best(self.parent, score, candidate.number)
        except Exception:  # noqa: BLE001 - tracking must never crash a study
            log.exception("MLflow logging of trial %d failed", candidate.number)


def evaluate_on_test(
    graphs: Mapping[str, AgentGraph],
    lms: Mapping[str, dspy.BaseLM],
    bench: Benchmark,
    test: list,
    concurrency: int,
    cache: dict[str, dict[str, Any]],
    on_done: Callable[[str, dict[str, Any]], None] | None = None,
    executor: Executor | None = None,
    trace: Callable[[str, AgentGraph, Example], AbstractContextManager[Any] | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Score each graph once on the test split (results cached by config hash): accuracy with its 95%
    CI, tokens/question, the no-answer rate and the per-question outcomes (paired tests).

    Questions lost to endpoint failures (after retries) are *missing*, not wrong: the score is over the
    answered ones, ``n_missing`` says how many, and such a partial result is not cached (it is redone
    the next time the study is finalized). ``trace(label, graph, example)`` may wrap each example (MLflow
    traces)."""
    from agentsearch.runs.stats import accuracy_ci

    out: dict[str, dict[str, Any]] = {}
    for label, graph in graphs.items():
        key = graph.config_hash
        if key not in cache or "outcomes" not in cache[key]:
            program = compile_graph(graph, lms=lms, answer_kind=bench.answer_kind, executor=executor)
            hook = (lambda ex, label=label, graph=graph: trace(label, graph, ex)) if trace is not None else None
            result = Evaluator(bench.score, concurrency=concurrency, trace=hook).evaluate(program, test)
            s = result.summary()
            answered = [r for r in result.records if r.error_kind not in ("endpoint", "internal")]
            ci = accuracy_ci([r.correct for r in answered])
            entry = {
                "score": ci.accuracy,
                "n": len(answered),
                "n_missing": len(result.records) - len(answered),
                "n_errors": s["n_errors"],
                "tokens_per_question": s["tokens_per_question"],
                "calls_per_question": s["calls_per_question"],
                "no_answer_rate": s["no_answer_rate"],
                "ci_low": ci.ci_low,
                "ci_high": ci.ci_high,
                "outcomes": "".join(
                    "x" if r.error_kind in ("endpoint", "internal") else "1" if r.correct else "0"
                    for r in result.records
                ),
            }
            if entry["n_missing"]:
                first = next(r for r in result.records if r.error_kind in ("endpoint", "internal"))
                log.warning(
                    "%s: %d of %d test questions failed (%s); scored on the rest, not cached",
                    label,
                    entry["n_missing"],
                    len(result.records),
                    first.error,
                )
                out[label] = entry
                continue
            cache[key] = entry
            if on_done is not None:
                on_done(label, cache[key])
        out[label] = cache[key]
    return out


@dataclass
class PreparedStudy:
    """Everything of a study that needs no LM: validated data splits, space, optimizer (storage opened)."""

    cfg: StudyConfig
    bench: Benchmark
    val: list
    test: list
    train: list
    space: SearchSpace
    optimizer: Any

    @property
    def remaining(self) -> int:
        return max(0, self.cfg.trials - self.optimizer.n_finished())


def prepare_study(cfg: StudyConfig) -> PreparedStudy:
    """Validate the data, the space and the storage, and open (or resume) the Optuna study.

    Runs before any model server is started, so bad input fails in seconds.
    """
    objectives = parse_objectives(cfg.objectives)
    bench = get_benchmark(cfg.benchmark, data=cfg.data, seed=cfg.seed)
    splits = bench.split(SplitSpec(seed=cfg.seed, val_size=cfg.val_size, test_size=cfg.test_size))
    val, test = splits["val"], splits["test"]
    if not val or not test:
        from agentsearch.errors import UserError

        raise UserError("--val-size/--test-size: the validation and test splits must both be non-empty")
    space = SearchSpace.from_levels(
        cfg.levels,
        models=tuple(cfg.aliases),
        max_calls_per_question=cfg.max_calls_per_question,
        formats=tuple(cfg.formats),
    )
    if cfg.top_k < 1:
        from agentsearch.errors import UserError

        raise UserError(f"--top-k {cfg.top_k}: must be at least 1")
    storage = open_storage(cfg.storage, cfg.run_dir)
    if cfg.proposer_model not in cfg.aliases:
        from agentsearch.errors import UserError

        raise UserError(
            f"--proposer-model {cfg.proposer_model!r}: not a model alias (configured: {', '.join(cfg.aliases)})"
        )
    if cfg.prompt_optimizer is not None and cfg.prompt_optimizer not in PROMPT_OPTIMIZERS:
        from agentsearch.errors import UserError

        raise UserError(
            f"--prompt-optimizer: unknown {cfg.prompt_optimizer!r} (choose from {', '.join(PROMPT_OPTIMIZERS)})"
        )
    from agentsearch.optimizers import make_optimizer

    optimizer = make_optimizer(
        cfg.optimizer or cfg.sampler,
        space,
        task=task_description(bench),
        n_trials=cfg.trials,
        study_name=cfg.study,
        storage=storage,
        sampler=cfg.sampler,
        pruner=cfg.pruner_name(),
        objectives=objectives,
        seed=cfg.seed,
        min_resource=cfg.min_batch,
        max_resource=len(val),
        # the enqueued baselines are TPE's startup trials; without them, a few random ones
        startup_trials=4 if cfg.baselines else max(4, min(8, cfg.trials // 4)),
        bootstrap_demos=bool(splits["train"]),  # the proposer's demo sets, bootstrapped once the LMs run
        baselines=baseline_variants(space.formats, space.primary_format, cfg.baseline_names)
        if cfg.baselines
        else None,
        study_config=cfg.identity(),
    )
    return PreparedStudy(cfg, bench, val, test, splits["train"], space, optimizer)


def run_study(
    cfg: StudyConfig | PreparedStudy,
    lms: Mapping[str, dspy.BaseLM],
    *,
    observer: Any = None,
    announce: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Run (or resume) a study to ``cfg.trials`` finished trials, test the best once, export.

    Threads: ``parallel`` trials x ``concurrency`` examples, and one branch pool shared by every program of
    the study for the parallel branches of a graph (the LMs' endpoint gates cap the requests in flight)."""
    prepared = cfg if isinstance(cfg, PreparedStudy) else prepare_study(cfg)
    workers = max(2, prepared.cfg.parallel * prepared.cfg.concurrency)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agentsearch-branch") as branches:
        return _run_study(prepared, lms, observer=observer, announce=announce, branches=branches)


def _run_study(
    prepared: PreparedStudy,
    lms: Mapping[str, dspy.BaseLM],
    *,
    observer: Any,
    announce: Callable[[str], None],
    branches: Executor,
) -> dict[str, Any]:
    cfg, bench, val, test = prepared.cfg, prepared.bench, prepared.val, prepared.test
    space, optimizer, remaining = prepared.space, prepared.optimizer, prepared.remaining
    models = ", ".join(f"{a}={m.get('model')} at {m.get('api_base')}" for a, m in cfg.models.items())
    announce(f"study '{cfg.study}' on {bench.name}: {len(val)} val / {len(test)} test examples; models: {models}")
    if optimizer.resumed:
        announce(f"resuming study '{cfg.study}': {optimizer.n_finished()} trials finished, {remaining} to go")
        _Observers([observer]).study_resumed(StudySoFar.of(optimizer.trials()))
    attrs = optimizer.attrs()
    projection = project_budget(
        space, cfg, len(val), len(test), remaining, finished=optimizer.trials() if optimizer.resumed else [],
        tested=bool(attrs.get("test_results")),  # a finished study: its test results are stored (and reused)
    )  # fmt: skip
    if projection is not None:  # None: nothing left to run
        announce(projection.describe())
    if cfg.baselines and not optimizer.resumed:
        n_names = len(cfg.baseline_names or baseline_graphs())
        n_base = n_names * len(space.formats)
        announce(
            f"the first {min(n_base, cfg.trials)} trials are the {n_names} baselines in each of "
            f"{len(space.formats)} formats ({', '.join(space.formats)}); {max(0, cfg.trials - n_base)} of "
            f"--trials {cfg.trials} are left for the search"
        )

    tracker, parent, tracer = None, None, None
    if cfg.tracking:
        from agentsearch.runs.tracking import MlflowTracker, default_tracking_uri

        uri = cfg.tracking_uri or default_tracking_uri(cfg.run_dir)
        tracker = MlflowTracker(uri, experiment="agentsearch")
        parent = tracker.start_study(
            cfg.study,
            config=cfg.public(),
            space=space.describe(),
            budget={"trials": cfg.trials, "val_examples": len(val), "test_examples": len(test)},
            resume_run_id=optimizer.attrs().get("mlflow_run_id"),
        )
        optimizer.set_attr("mlflow_run_id", parent)
        if optimizer.resumed:  # a kill may have left trial runs RUNNING, missing or doubled: repair them
            repaired = tracker.reconcile(parent, optimizer.trials())
            if any(repaired.values()):
                announce(
                    "MLflow: repaired the runs of an interrupted session ("
                    + ", ".join(f"{v} {k}" for k, v in repaired.items() if v)
                    + ")"
                )
            _log_plots(tracker, parent, optimizer)
        if cfg.trace_examples > 0:
            tracer = tracker.tracer(cfg.trace_examples)
    with tracer if tracer is not None else nullcontext():
        return _search_and_test(prepared, lms, observer, announce, branches, tracker, parent, tracer)


def _search_and_test(
    prepared: PreparedStudy,
    lms: Mapping[str, dspy.BaseLM],
    observer: Any,
    announce: Callable[[str], None],
    branches: Executor,
    tracker: Any,
    parent: str | None,
    tracer: Any,
) -> dict[str, Any]:
    cfg, bench, val, test = prepared.cfg, prepared.bench, prepared.val, prepared.test
    optimizer, remaining = prepared.optimizer, prepared.remaining

    proposer_lm = lms[cfg.proposer_model]
    demo_bootstrap = None
    if prepared.train:
        from agentsearch.optimizers.instruction import bootstrap_demo_sets

        def demo_bootstrap() -> list[list[dict[str, str]]]:
            return bootstrap_demo_sets(lms["default"], prepared.train, bench.metric, answer_kind=bench.answer_kind)

    optimizer.bind(StrategyContext(proposer_lm=proposer_lm, demo_bootstrap=demo_bootstrap))

    def prepare(candidate: Candidate) -> AgentGraph:
        graph = candidate.graph
        if needs_preparation(graph):
            graph = prepare_graph(graph, lms, prepared.train, bench.metric, answer_kind=bench.answer_kind)
        if cfg.prompt_optimizer and not candidate.is_baseline:
            from agentsearch.optimizers.dspy_prompts import optimize_prompts

            graph = optimize_prompts(
                graph,
                lms,
                prepared.train,
                bench.metric,
                method=cfg.prompt_optimizer,
                seed=cfg.seed,
                proposer_lm=proposer_lm,
                answer_kind=bench.answer_kind,
                on_failure=lambda reason: candidate.info.update(prompt_optimizer_error=reason),
            )
        return graph

    loop = SearchLoop(
        optimizer,
        lambda g: compile_graph(g, lms=lms, answer_kind=bench.answer_kind, executor=branches),
        bench.score,
        val,
        n_trials=cfg.trials,
        parallel=cfg.parallel,
        concurrency=cfg.concurrency,
        min_batch=cfg.min_batch,
        max_calls_per_question=cfg.max_calls_per_question,
        prepare=prepare,
        max_calls=cfg.max_calls,
        max_tokens=cfg.max_tokens,
        time_budget_s=cfg.time_budget_s,
        observer=_Observers([observer, _MlflowObserver(tracker, parent, tracer) if tracker else None]),
        trace=_trial_tracing(tracer, cfg.study, val) if tracer is not None else None,
    )
    status = "FINISHED"
    try:
        stats = loop.run() if remaining > 0 else LoopStats()
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    except Exception:
        status = "FAILED"
        raise
    finally:
        if tracker is not None and status != "FINISHED":
            _log_plots(tracker, parent, optimizer)
            tracker.finish_study(parent, status=status)

    if stats.stopped_reason:
        announce(f"search stopped: {stats.stopped_reason}")
    elsewhere = optimizer.running_elsewhere(alive_only=True)
    if elsewhere:  # several workers share the study: the last one to finish selects, tests and exports, once
        message = (
            f"study '{cfg.study}': {elsewhere} trial(s) still run in other workers; the last worker to finish "
            f"selects, tests and exports (if none runs any more, run this command again to finish the study)"
        )
        announce(message)
        if tracker is not None:
            _log_plots(tracker, parent, optimizer)  # the study's run stays open for the other workers
        return {
            "study": cfg.study,
            "benchmark": bench.name,
            "deferred": True,
            "running_elsewhere": elsewhere,
            "n_trials": optimizer.n_finished(),
            "message": message,
        }
    summary = finalize_study(
        optimizer, cfg, bench, val, test, lms, stats, announce=announce, executor=branches,
        trace=_test_tracing(tracer, cfg.study) if tracer is not None else None,
    )  # fmt: skip
    if tracker is not None:
        summary["tracking_uri"] = tracker.tracking_uri
        _log_outcome(tracker, parent, optimizer, summary, tracer)
        for name in ("best.yaml", "agent.py", "requirements.txt", "summary.json", "program.json"):
            path = Path(summary["export_dir"]) / name
            if path.exists():
                tracker.log_artifact_file(parent, path, artifact_path="export")
        model_dir = Path(summary["export_dir"]) / "mlflow_model"
        if summary.get("mlflow_model") and model_dir.is_dir():
            try:  # the pyfunc model of agent.py: mlflow.pyfunc.load_model("runs:/<parent>/agent_model")
                tracker.client.log_artifacts(parent, str(model_dir), "agent_model")
                summary["agent_model_uri"] = f"runs:/{parent}/agent_model"
            except Exception as exc:  # noqa: BLE001 - tracking must never crash a study
                announce(f"warning: the agent's MLflow model was not logged ({type(exc).__name__}: {exc})")
        if summary.get("verdict"):
            tracker.set_tags(parent, {"agentsearch.verdict": summary["verdict"]})
        tracker.finish_study(parent, status="FINISHED", summary=_numeric_summary(summary))
    return summary


def _trial_tracing(tracer: Any, study: str, val: list) -> Callable[[Candidate, Example], Any]:
    """The loop's trace hook: the first ``tracer.per_trial`` validation examples of every trial."""
    sampled = {ex.id for i, ex in enumerate(val) if tracer.sampled(i)}

    def trace(candidate: Candidate, example: Example) -> Any:
        if example.id not in sampled:
            return None
        return tracer.example(
            f"trial:{candidate.number}",
            f"{study}/trial-{candidate.number}",
            {"question": example.question, "gold": example.answer, "example_id": example.id},
            {"agentsearch.study": study, "agentsearch.trial": str(candidate.number), "agentsearch.split": "val"},
        )

    return trace


def _test_tracing(tracer: Any, study: str) -> Callable[[str, AgentGraph, Example], Any]:
    """The final test's trace hook: every test example of the best agent(s) and the baselines."""

    def trace(label: str, graph: AgentGraph, example: Example) -> Any:
        return tracer.example(
            f"test:{graph.config_hash}",
            f"{study}/test/{label}",
            {"question": example.question, "gold": example.answer, "example_id": example.id},
            {"agentsearch.study": study, "agentsearch.agent": label, "agentsearch.split": "test",
             "agentsearch.config_hash": graph.config_hash},
        )  # fmt: skip

    return trace


def _log_plots(tracker: Any, parent: str, optimizer: Any) -> None:
    study = getattr(optimizer, "study", None)
    if study is None:
        return
    try:
        tracker.log_study_plots(parent, study)
    except Exception:  # noqa: BLE001 - tracking must never crash a study
        log.exception("MLflow: the study plots failed")


def _log_outcome(tracker: Any, parent: str, optimizer: Any, summary: Mapping[str, Any], tracer: Any) -> None:
    """The finished study in MLflow: best/Pareto tags, test scores on the tested trials, their test traces, the
    best agent's key metrics on the parent run, the plots."""
    try:
        tests = {h: e["score"] for h, e in optimizer.attrs().get("test_results", {}).items() if "score" in e}
        tracker.mark_trials(
            parent,
            best=[summary["best_trial"]],
            pareto=[p["trial"] for p in summary.get("pareto") or []],
            test_scores=tests,
        )
        tracker.log_metrics(parent, {
            "val_score": summary.get("best_val"),
            "test_score": summary.get("best_test"),
            "tokens_per_question": summary.get("best_tokens_per_question"),
            "calls": summary.get("calls"),
        })
        if tracer is not None:
            traces = tracer.take_prefix("test:")
            tracker.link_traces(parent, [t for ids in traces.values() for t in ids])
            runs = {r.data.tags.get("agentsearch.config_hash"): r for r in tracker.child_runs(parent)}
            for config_hash, ids in traces.items():
                run = runs.get(config_hash)
                if run is not None:
                    tracker.link_traces(run.info.run_id, ids)
    except Exception:  # noqa: BLE001 - tracking must never crash a study
        log.exception("MLflow: logging the study's outcome failed")
    _log_plots(tracker, parent, optimizer)


def finalize_study(
    optimizer: Optimizer,
    cfg: StudyConfig,
    bench: Benchmark,
    val: list,
    test: list,
    lms: Mapping[str, dspy.BaseLM],
    stats: LoopStats,
    announce: Callable[[str], None] = lambda msg: None,
    executor: Executor | None = None,
    trace: Callable[[str, AgentGraph, Example], AbstractContextManager[Any] | None] | None = None,
) -> dict[str, Any]:
    """Select the best agent (top-k on the full validation split), test it, the best format of each
    baseline and CoT-SC at its cost once on the held-out split, compare them, export; the summary."""
    from agentsearch.runs.report import (
        best_baseline_variants,
        compare_with_baselines,
        matched_cot_sc,
    )
    from agentsearch.runs.selection import select_best

    trials = optimizer.trials()
    attrs = optimizer.attrs()
    selection = None
    if len(cfg.objectives) == 1:
        store = dict(attrs.get("agentsearch.selection", {}))

        def complete(trial: FinishedTrial, examples: list) -> list[ExampleRecord]:
            if trial.graph is None:  # top_trials only picks trials with a graph
                raise ValueError(f"trial {trial.number} has no graph to evaluate")
            program = compile_graph(trial.graph, lms=lms, answer_kind=bench.answer_kind, executor=executor)
            return Evaluator(bench.score, concurrency=cfg.concurrency).evaluate(program, examples).records

        selection = select_best(trials, val, complete, k=cfg.top_k, store=store, announce=announce)
        # no contender could be completed (the endpoint failed): the search's own best, as it stands
        best = [selection.winner.trial] if selection is not None else optimizer.best()
        if selection is not None:
            from agentsearch.optimizers.store import SELECTED_ATTR

            optimizer.set_attr("agentsearch.selection", store)
            optimizer.set_attr(SELECTED_ATTR, selection.winner.trial.number)
    else:
        best = optimizer.best()
    if not best:
        from agentsearch.errors import UserError

        raise UserError(f"study '{cfg.study}': no trial completed, nothing to test or export")
    if selection is not None:
        for c in selection.contenders:
            announce(
                f"selection: trial {c.trial.number:>3} {c.val_score:.3f} on {c.n} val questions "
                f"({c.tokens_per_question:.0f} tokens/q)  {c.trial.origin}"
            )
        if selection.warning:
            announce(f"warning: {selection.warning}")

    cache: dict[str, dict[str, Any]] = dict(attrs.get("test_results", {}))
    graphs: dict[str, AgentGraph] = {}
    chosen = best_baseline_variants(trials) if cfg.baselines else {}
    for name, trial in chosen.items():
        if trial.graph is not None:  # best_baseline_variants only picks trials with a graph
            graphs[f"baseline:{name}"] = trial.graph
    best = [t for t in best if t.graph is not None]
    if not best:
        from agentsearch.errors import UserError

        raise UserError(f"study '{cfg.study}': the best trial has no stored graph; nothing to test or export")
    for i, trial in enumerate(best):
        graphs[f"best:{i}"] = trial.graph
    announce(f"held-out test: {len(test)} examples for {len(graphs)} agents (once each)")
    results = evaluate_on_test(graphs, lms, bench, test, cfg.concurrency, cache, executor=executor, trace=trace)
    sc = matched_cot_sc(results, graphs, chosen) if cfg.baselines else None
    if sc is not None and sc[0] not in results:
        label, graph = sc
        announce(f"held-out test: {graph.name} (CoT-SC at the best agent's tokens/question)")
        results.update(
            evaluate_on_test({label: graph}, lms, bench, test, cfg.concurrency, cache, executor=executor, trace=trace)
        )
        graphs[label] = graph
    optimizer.set_attr("test_results", cache)
    baselines_val = {name: t.metrics.get("val_score") for name, t in chosen.items()}
    comparisons = (
        compare_with_baselines(results, graphs, test, best_trial=best[0], baselines_val=baselines_val)
        if cfg.baselines
        else []
    )
    for c in comparisons:
        announce(c["verdict"])

    from agentsearch.runs.export import export_study

    export_dir = cfg.run_dir / cfg.study / "export"
    baselines_test = {k.split(":", 1)[1]: v["score"] for k, v in results.items() if k.startswith("baseline:")}
    config = {
        **cfg.identity(),
        "study": cfg.study,
        "objectives": list(cfg.objectives),
        "run_dir": str(cfg.run_dir),
        "model_flags": cfg.model_flags,
        "answer_kind": bench.answer_kind,
    }
    optimizer.set_attr("agentsearch.answer_kind", bench.answer_kind)  # for `main.py export` later
    if cfg.model_flags:
        optimizer.set_attr("agentsearch.model_flags", cfg.model_flags)  # for `main.py export` later
    selected_val = (
        {
            "val_score": selection.winner.val_score,
            "n_examples": float(selection.winner.n),
            "tokens_per_question": selection.winner.tokens_per_question,
        }
        if selection is not None
        else None
    )
    exported = export_study(export_dir, best, config, cache, baselines_test, selected_val=selected_val)
    if exported["agent_error"]:
        announce(f"warning: agent.py not written: {exported['agent_error']}")
    if exported["mlflow_model_error"]:
        announce(f"warning: the agent's MLflow model was not saved: {exported['mlflow_model_error']}")
    top = best[0]
    public = {label: _public_test(entry) for label, entry in results.items()}
    best_val = selection.winner.val_score if selection is not None else top.metrics.get("val_score")
    return {
        "study": cfg.study,
        "benchmark": bench.name,
        "best_val": best_val,
        "best_test": results["best:0"]["score"],
        "best_test_ci_low": results["best:0"].get("ci_low"),
        "best_test_ci_high": results["best:0"].get("ci_high"),
        "p_values": {c["vs"]: c["p_value"] for c in comparisons},
        "best_trial": top.number,
        "best_origin": top.origin,
        "best_summary": top.graph.summary() if top.graph else None,
        "best_tokens_per_question": results["best:0"].get("tokens_per_question"),
        "baselines": baselines_test,
        "baselines_val": baselines_val,
        "baselines_format": {name: sorted(t.graph.formats()) for name, t in chosen.items() if t.graph is not None},
        "verdict": " ".join(c["verdict"] + "." for c in comparisons) if comparisons else None,
        "comparisons": comparisons,
        "selection": selection.to_dict() if selection is not None else None,
        "pareto": [
            {"trial": t.number, "values": t.values, "test": results[f"best:{i}"]["score"]} for i, t in enumerate(best)
        ]
        if len(cfg.objectives) > 1
        else [],
        "n_trials": sum(t.counts for t in trials),
        "n_complete": sum(t.state == "COMPLETE" for t in trials),
        "n_pruned": sum(t.state == "PRUNED" and not t.rejected_unrun for t in trials),
        "n_over_budget": sum(t.rejected_unrun for t in trials),  # sampled over the calls/question cap: not run
        "n_failed": sum(t.state == "FAIL" for t in trials),
        "calls": int(sum(t.metrics.get("calls", 0) for t in trials)),
        "tokens": int(sum(t.metrics.get("tokens", 0) for t in trials)),
        "proposer_failures": int(attrs.get("agentsearch.proposer_failures", 0)),
        "prompt_optimizer_failures": sum(bool(t.metrics.get("prompt_optimizer_failed")) for t in trials),
        "session_calls": stats.calls,
        "selection_calls": selection.calls if selection is not None else 0,
        "stopped_reason": stats.stopped_reason,
        "trials_requested": cfg.trials,
        "wall_s": stats.wall_s,
        "export_dir": str(export_dir),
        "reproduce": exported["reproduce"],
        "agent": exported["files"]["agent"],
        "mlflow_model": exported["files"]["mlflow_model"],
        "test": public,
        "seed": cfg.seed,
        "val_size": cfg.val_size,
        "test_size": cfg.test_size,
    }


def _public_test(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A test result as reports show it (the per-question outcomes stay in the study)."""
    return {k: v for k, v in entry.items() if k != "outcomes"}


def _numeric_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k != "test"}


def task_description(bench: Benchmark) -> str:
    """What proposers are told the task is: the benchmark and two example questions."""
    examples = bench.examples()[:2]
    shown = "\n".join(f"Example question: {e.question[:400]}\nExample answer: {e.answer}" for e in examples)
    return f"Answer {bench.name} questions. {bench.metric_description}\n{shown}"


def default_study_name(benchmark: str) -> str:
    """A readable, unique-enough default study name."""
    import time

    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", benchmark)  # "math500:level=5" -> "math500-level-5"
    return f"{slug}-{time.strftime('%Y%m%d-%H%M%S')}-{random.randint(0, 999):03d}"


__all__ = ["StudyConfig", "run_study", "finalize_study", "project_budget", "default_study_name", "FinishedTrial"]
