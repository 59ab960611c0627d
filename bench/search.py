"""Search quality at an equal LLM-call budget, on the fake server's design-dependent accuracy.

Two comparisons, each over several optimizer seeds (same validation split, same fake server for
every arm; the only thing a seed changes is the optimizer's):

1. **Sampler**: ``tpe`` (our default) vs ``random``. Each run goes one trial at a time until its
   cumulative LLM calls reach the budget ``B``; a trial's score counts only if the calls spent up to
   and including it fit in ``B`` (the same rule for both arms). Reported per arm: the final best
   validation score within ``B``, and the calls the arm needed to first reach random search's final
   best of the same seed. Goal: TPE gets there in at most ``B / 3``.
2. **Pruning**: ``sha`` (our default) vs ``none``, both with TPE, the same number of finished trials.
   Reported: calls used and final best. Goal: pruning saves at least 60% of the calls.

Setup: the default :class:`SearchSpace` (prompt, module and agent levels), the real
:class:`SearchLoop` and the strategies over the study store (in-memory Optuna storage), one trial at a time
(``parallel=1``, so the budget is counted exactly), 8 concurrent examples per trial, validation
minibatches 8/16/32, DSPy cache off, no hand-written baselines enqueued (``--baselines`` adds them
to every run), an in-process :class:`FakeOpenAIServer` with :class:`ReasoningPolicy` (no latency)
over GSM8K questions (``--data``; synthetic questions if the file is absent). "Best" is the best
validation score of a COMPLETE trial (a pruned trial's partial score never counts). The loop gets
the options ``run_study`` passes (the space's calls/question cap: candidates over it are pruned
unrun; ``experience`` nodes built on a train split), and calls are the loop's own count (examples
plus preparation). Runs are not bit-reproducible: at temperature > 0 the fake server's draws follow
the calls' arrival order. Run::

    python bench/search.py                    # 5 seeds; B = 3000 calls; 20 trials per pruning arm
    python bench/search.py --out curves.json  # also write every run's best-so-far curve
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


MIN_BATCH = [4]  # first validation minibatch (--min-batch)


def _fake_server_module() -> Any:
    """``agentsearch.testing.fake_server`` (the repository root on sys.path, so the bench runs from anywhere)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import agentsearch.testing.fake_server as fake_server

    return fake_server


def load_splits(data: Path | None, n_val: int, n_train: int, seed: int) -> tuple[list[Any], list[Any], str]:
    """(val, train, source): a seeded split of GSM8K, or synthetic questions if ``data`` is absent.

    ``train`` only feeds operators built from training data (``experience``), as in a real study.
    """
    from agentsearch.evaluators.benchmarks import Example, SplitSpec, get_benchmark

    if data is not None and data.exists():
        bench = get_benchmark("gsm8k", data=str(data), seed=seed)
        splits = bench.split(SplitSpec(seed=seed, val_size=n_val, test_size=0, train_size=n_train))
        return splits["val"], splits["train"], str(data)
    rng = random.Random(seed)
    out = []
    for i in range(n_val + n_train):
        a, b, c = rng.randint(2, 90), rng.randint(2, 9), rng.randint(2, 12)
        q = f"Item {i}: Tom has {a} apples and buys {b} bags of {c} apples each. How many apples has he?"
        out.append(Example(id=f"syn-{i}", question=q, answer=str(a + b * c)))
    return out[:n_val], out[n_val:], "synthetic"


@dataclass
class Point:
    """One finished trial of a run."""

    trial: int
    state: str
    score: float | None  # val_score of a COMPLETE trial
    calls: int  # calls this trial spent (0 for a duplicate config)
    cum_calls: int  # calls of the run so far, this trial included
    best: float | None  # best COMPLETE score so far, this trial included
    rejected: bool = False  # pruned unrun by the per-question call cap (no calls)
    duplicate: bool = False  # a config evaluated before: result reused (no calls)


@dataclass
class Run:
    arm: str
    seed: int
    points: list[Point] = field(default_factory=list)
    server_requests: int = 0
    wall_s: float = 0.0
    stopped: str | None = None
    test_best: float | None = None  # test score of the run's best validation design (optimizer comparison)

    @property
    def calls(self) -> int:
        return self.points[-1].cum_calls if self.points else 0

    def best_within(self, budget: float) -> float | None:
        """Best score among the trials whose cumulative calls fit in ``budget``."""
        best = None
        for p in self.points:
            if p.cum_calls > budget:
                break
            best = p.best
        return best

    def calls_to_reach(self, target: float | None, budget: float) -> float:
        """Cumulative calls at the first trial (within ``budget``) whose best is >= target; inf if none."""
        if target is None:
            return float("inf")
        for p in self.points:
            if p.cum_calls > budget:
                break
            if p.best is not None and p.best >= target - 1e-12:
                return float(p.cum_calls)
        return float("inf")


class _Recorder:
    """Loop observer: one Point per finished (COMPLETE or PRUNED) trial; calls from ``loop.stats``."""

    def __init__(self, run: Run):
        self.run = run
        self.best: float | None = None
        self.cum = 0
        self.proposer = 0
        self.loop: Any = None

    def trial_started(self, candidate: Any) -> None:
        pass

    def example_done(self, candidate: Any, record: Any) -> None:
        pass

    def trial_finished(self, candidate: Any, result: Any, records: list[Any]) -> None:
        # the loop's own count: every example's calls plus any preparation calls (failed trials too)
        proposer = int(result.metrics.get("proposer_calls", 0))  # LLM-driven optimizers pay for proposals
        self.proposer += proposer
        calls = self.loop.stats.calls + self.proposer - self.cum
        self.cum = self.loop.stats.calls + self.proposer
        if result.state == "FAIL":
            return
        score = result.metrics.get("val_score") if result.state == "COMPLETE" else None
        if score is not None and (self.best is None or score > self.best):
            self.best = score
        rejected = result.state == "PRUNED" and not result.metrics.get("n_examples")
        duplicate = (result.reason or "").startswith("duplicate")
        self.run.points.append(
            Point(candidate.number, result.state, score, calls, self.cum, self.best, rejected, duplicate)
        )


def one_run(
    arm: str,
    sampler: str,
    pruner: str,
    seed: int,
    val: list[Any],
    train: list[Any],
    *,
    budget: int | None,
    trials: int | None,
    max_trials: int,
    startup: int,
    baselines: bool,
    concurrency: int,
    test: list[Any] | None = None,
) -> Run:
    """One search with a fresh fake server and in-memory study, until ``budget`` calls or ``trials`` trials."""

    from agentsearch.evaluators.benchmarks import get_benchmark
    from agentsearch.evaluators.llm.lm import Endpoint
    from agentsearch.evaluators.llm.pool import build_lm
    from agentsearch.evaluators.operators.compile import compile_graph
    from agentsearch.runs.loop import SearchLoop, StudyStopped
    from agentsearch.search_space.baselines import baseline_graphs
    from agentsearch.search_space.space import SearchSpace

    fake = _fake_server_module()

    policy = fake.ReasoningPolicy({ex.question: ex.answer for ex in [*val, *train, *(test or [])]})
    run = Run(arm, seed)
    start = time.perf_counter()
    with fake.FakeOpenAIServer(policy, latency=0.0, seed=0) as server:
        lms = {"default": build_lm(Endpoint(model=server.model, api_base=server.url), cache=False)}
        space = SearchSpace()
        kwargs = dict(
            study_name=f"{arm}-{seed}",
            storage=None,
            pruner=pruner,
            seed=seed,
            min_resource=MIN_BATCH[0],
            max_resource=len(val),
            startup_trials=startup,
            baselines=baseline_graphs() if baselines else None,
        )
        from agentsearch.optimizers import make_optimizer
        from agentsearch.optimizers.base import StrategyContext

        # an Optuna sampler, or an LLM-driven or evolutionary strategy whose proposer is the same (fake) LLM
        opt = make_optimizer(
            sampler,
            space,
            sampler="tpe",
            task="Answer grade-school math word problems.",
            n_trials=max_trials,
            **kwargs,
        )
        opt.bind(StrategyContext(proposer_lm=lms["default"]))
        metric = get_benchmark("gsm8k", data=None).metric
        recorder = _Recorder(run)
        loop = SearchLoop(
            opt,
            lambda g: compile_graph(g, lms=lms),
            metric,
            val,
            n_trials=1,
            parallel=1,
            concurrency=concurrency,
            min_batch=MIN_BATCH[0],
            observer=recorder,  # type: ignore[arg-type]
            **_study_loop_options(space, lms, train, metric),
        )
        recorder.loop = loop
        while len(run.points) < max_trials:
            if budget is not None and recorder.cum >= budget:
                break
            if trials is not None and len(run.points) >= trials:
                break
            loop.n_trials = opt.n_finished() + 1
            try:
                loop.run()
            except StudyStopped as exc:  # 3 failed trials in a row: report it, keep what was done
                run.stopped = str(exc)
                break
        run.server_requests = server.n_requests
        if test:
            best = [t for t in opt.trials() if t.state == "COMPLETE" and t.graph is not None]
            if best:
                from agentsearch.evaluators.evaluator import Evaluator

                top = max(best, key=lambda t: (t.values[0], -t.number))
                program = compile_graph(top.graph, lms=lms)
                run.test_best = Evaluator(metric, concurrency=concurrency).evaluate(program, test).score
    run.wall_s = time.perf_counter() - start
    return run


def _study_loop_options(space: Any, lms: Any, train: list[Any], metric: Any) -> dict[str, Any]:
    """The SearchLoop options ``run_study`` passes (per-question call cap, train-split preparation),
    where this version of the loop has them."""
    import inspect

    from agentsearch.runs.loop import SearchLoop

    accepted = inspect.signature(SearchLoop).parameters
    out: dict[str, Any] = {}
    if "max_calls_per_question" in accepted:
        out["max_calls_per_question"] = getattr(space, "max_calls_per_question", None)
    if "prepare" in accepted:
        from agentsearch.evaluators.operators.prepare import needs_preparation, prepare_graph

        def prepare(item: Any) -> Any:  # the loop passes a Candidate (or, in older loops, its graph)
            graph = getattr(item, "graph", item)
            return prepare_graph(graph, lms, train, metric) if needs_preparation(graph) else graph

        out["prepare"] = prepare
    return out


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _calls(x: float) -> str:
    return "never" if x == float("inf") else f"{x:,.0f}"


def _run_line(r: Run, budget: int | None) -> str:
    pts = r.points
    sha = sum(p.state == "PRUNED" and not p.rejected for p in pts)
    rejected = sum(p.rejected for p in pts)
    dup = sum(p.duplicate for p in pts)
    best = r.best_within(budget) if budget is not None else (pts[-1].best if pts else None)
    return (
        f"  seed {r.seed} {r.arm:<9} {len(pts):3d} trials ({sha} pruned, {rejected} over the call cap, "
        f"{dup} duplicates), {r.calls:6,} calls (server saw {r.server_requests:,}), "
        f"best {best if best is not None else '-'}, {r.wall_s:.0f}s" + (f"; STOPPED: {r.stopped}" if r.stopped else "")
    )


def sampler_comparison(args: argparse.Namespace, common: dict[str, Any], runs: list[Run]) -> None:
    B = args.budget
    print(
        f"\n## sampler: tpe vs random, {B:,} LLM calls per run, pruner {args.sampler_pruner}, seeds 0..{args.seeds - 1}"
    )
    arms: dict[str, list[Run]] = {"tpe": [], "random": []}
    for seed in range(args.seeds):
        for arm in ("tpe", "random") if seed % 2 == 0 else ("random", "tpe"):  # interleaved
            r = one_run(arm, arm, args.sampler_pruner, seed, budget=B, trials=None, **common)
            arms[arm].append(r)
            runs.append(r)
            print(_run_line(r, B))
    fractions = (0.25, 0.5, 0.75, 1.0)
    print(
        f"\nbest validation score so far (median over seeds; 0 = no complete trial yet) after a fraction "
        f"of the budget B = {B:,} calls"
    )
    print(f"{'sampler':<8}" + "".join(f"{f'{f:.0%} B':>9}" for f in fractions))
    for arm, rs in arms.items():
        print(f"{arm:<8}" + "".join(f"{_med([r.best_within(f * B) or 0.0 for r in rs]):9.3f}" for f in fractions))
    print(
        f"\n{'sampler':<8} {'final best (per seed)':<34} {'median':>6}  "
        f"{'calls to reach random final best (per seed)':<46} {'median':>7} {'/ B':>5}"
    )
    reach_tpe = float("nan")
    for arm, rs in arms.items():
        finals = [r.best_within(B) or 0.0 for r in rs]
        reach = [r.calls_to_reach(rand.best_within(B), B) for r, rand in zip(rs, arms["random"], strict=True)]
        med = _med(reach)
        reach_tpe = med if arm == "tpe" else reach_tpe
        print(
            f"{arm:<8} {', '.join(f'{f:.3f}' for f in finals):<34} {_med(finals):6.3f}  "
            f"{', '.join(_calls(x) for x in reach):<46} {_calls(med):>7} {med / B:5.2f}"
        )
    k = args.startup
    startup = [r.points[k - 1].cum_calls for r in arms["tpe"] if len(r.points) >= k]
    if startup:
        print(
            f"TPE's first {k} trials are its random startup: they used a median {_med(startup):,.0f} calls "
            f"({_med(startup) / B:.2f} B)"
        )
    verdict = "met" if reach_tpe <= B / 3 else "NOT met"
    print(
        f"goal: tpe reaches random's final best within B/3 = {B / 3:,.0f} calls (median over seeds): "
        f"{verdict} ({_calls(reach_tpe)})"
    )


def mipro_run(seed: int, val: list[Any], train: list[Any], test: list[Any], concurrency: int) -> Run:
    """MIPROv2 on a plain CoT program: one prompt optimization on the train split, then val and test."""
    from agentsearch.evaluators.benchmarks import get_benchmark
    from agentsearch.evaluators.evaluator import Evaluator
    from agentsearch.evaluators.llm.lm import Endpoint, metering
    from agentsearch.evaluators.llm.pool import build_lm
    from agentsearch.evaluators.operators.compile import compile_graph
    from agentsearch.optimizers.dspy_prompts import optimize_prompts
    from agentsearch.search_space.baselines import baseline_graphs

    fake = _fake_server_module()
    policy = fake.ReasoningPolicy({ex.question: ex.answer for ex in [*val, *train, *test]})
    run = Run("mipro", seed)
    start = time.perf_counter()
    metric = get_benchmark("gsm8k", data=None).metric
    with fake.FakeOpenAIServer(policy, latency=0.0, seed=seed) as server:
        lms = {"default": build_lm(Endpoint(model=server.model, api_base=server.url), cache=False)}
        with metering() as meter, contextlib.redirect_stdout(sys.stderr):
            graph = optimize_prompts(baseline_graphs()["cot"], lms, train, metric, method="mipro", seed=seed)
        result = Evaluator(metric, concurrency=concurrency).evaluate(compile_graph(graph, lms=lms), val)
        calls = meter.total.calls + result.calls
        run.points.append(Point(0, "COMPLETE", result.score, calls, calls, result.score, False, False))
        run.test_best = Evaluator(metric, concurrency=concurrency).evaluate(compile_graph(graph, lms=lms), test).score
        run.server_requests = server.n_requests
    run.wall_s = time.perf_counter() - start
    return run


OPTIMIZER_ARMS = ("tpe", "random", "meta-agent", "evolution", "staged", "mipro")


def optimizer_comparison(args: argparse.Namespace, common: dict[str, Any], runs: list[Run], test: list[Any]) -> None:
    B = args.opt_budget
    print(
        f"\n## optimizers at an equal LLM-call budget B = {B:,} (proposer calls included), pruner sha, "
        f"seeds 0..{args.opt_seeds - 1}; the proposer LLM is the fake server, which cannot design"
    )
    arms: dict[str, list[Run]] = {a: [] for a in OPTIMIZER_ARMS}
    for seed in range(args.opt_seeds):
        for arm in OPTIMIZER_ARMS:
            if arm == "mipro":
                r = mipro_run(seed, common["val"], common["train"], test, common["concurrency"])
            else:
                r = one_run(arm, arm, "sha", seed, budget=B, trials=None, test=test, **common)
            arms[arm].append(r)
            runs.append(r)
            print(_run_line(r, B))
    fractions = (0.25, 0.5, 0.75, 1.0)
    print(
        f"\n{'optimizer':<11}"
        + "".join(f"{f'val@{f:.0%}B':>10}" for f in fractions)
        + f"{'test of best':>14}{'calls used':>12}"
    )
    for arm, rs in arms.items():
        vals = "".join(f"{_med([r.best_within(f * B) or 0.0 for r in rs]):10.3f}" for f in fractions)
        tests = _med([r.test_best for r in rs if r.test_best is not None])
        print(f"{arm:<11}{vals}{tests:14.3f}{_med([min(r.calls, B) for r in rs]):12,.0f}")


def pruning_comparison(args: argparse.Namespace, common: dict[str, Any], runs: list[Run]) -> None:
    n, sampler = args.trials, args.pruning_sampler
    print(f"\n## pruning: sha vs none, sampler {sampler}, {n} finished trials per run, seeds 0..{args.seeds - 1}")
    arms: dict[str, list[Run]] = {"sha": [], "none": []}
    for seed in range(args.seeds):
        for pruner in ("sha", "none") if seed % 2 == 0 else ("none", "sha"):
            r = one_run(f"{sampler}+{pruner}", sampler, pruner, seed, budget=None, trials=n, **common)
            arms[pruner].append(r)
            runs.append(r)
            print(_run_line(r, None))
    print(f"\n{'pruner':<7} {'calls used (per seed)':<40} {'median':>7}  {'final best (per seed)':<34} {'median':>6}")
    for pruner, rs in arms.items():
        calls = [r.calls for r in rs]
        finals = [r.points[-1].best or 0.0 for r in rs]
        print(
            f"{pruner:<7} {', '.join(f'{c:,}' for c in calls):<40} {_med(calls):7,.0f}  "
            f"{', '.join(f'{f:.3f}' for f in finals):<34} {_med(finals):6.3f}"
        )
    pairs = list(zip(arms["sha"], arms["none"], strict=True))
    saved = [1 - s.calls / o.calls if o.calls else float("nan") for s, o in pairs]
    dbest = [(s.points[-1].best or 0.0) - (o.points[-1].best or 0.0) for s, o in pairs]
    print(
        f"calls saved by sha (per seed): {', '.join(f'{x:.0%}' for x in saved)}; median {_med(saved):.0%}; "
        f"final best sha - none: median {_med(dbest):+.3f}"
    )
    print(f"goal: pruning saves >= 60% of calls: {'met' if _med(saved) >= 0.6 else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K JSONL (synthetic if absent)")
    ap.add_argument("--val", type=int, default=32, help="validation examples")
    ap.add_argument("--train", type=int, default=48, help="train examples (for operators built from data)")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the data split (the same for all runs)")
    ap.add_argument("--seeds", type=int, default=5, help="optimizer seeds 0..N-1 per arm")
    ap.add_argument("--budget", type=int, default=3000, help="LLM calls per run in the sampler comparison")
    ap.add_argument("--sampler-pruner", default="sha", help="pruner of both arms of the sampler comparison")
    ap.add_argument("--trials", type=int, default=20, help="finished trials per run in the pruning comparison")
    ap.add_argument(
        "--pruning-sampler",
        default="tpe",
        help="sampler of both pruning arms (random: both arms get the same candidates)",
    )
    ap.add_argument("--startup", type=int, default=8, help="random startup trials of TPE")
    ap.add_argument("--max-trials", type=int, default=400, help="safety cap on the trials of one budgeted run")
    ap.add_argument("--concurrency", type=int, default=8, help="examples evaluated at once in a trial")
    ap.add_argument("--baselines", action="store_true", help="enqueue the hand-written baselines in every run")
    ap.add_argument("--only", choices=("sampler", "pruning", "optimizers"), default=None, help="run one comparison")
    ap.add_argument("--min-batch", type=int, default=4, help="first validation minibatch (4: 4/8/16/32/...)")
    ap.add_argument("--opt-budget", type=int, default=1500, help="LLM calls per run in the optimizer comparison")
    ap.add_argument("--opt-seeds", type=int, default=3, help="seeds per optimizer in the optimizer comparison")
    ap.add_argument("--test", type=int, default=32, help="test examples (optimizer comparison)")
    ap.add_argument("--out", type=Path, default=None, help="write every run's curve (JSON) here")
    args = ap.parse_args(argv)

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price map
    MIN_BATCH[0] = args.min_batch
    logging.getLogger("agentsearch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="optuna")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from agentsearch.evaluators.llm.lm import configure_cache

    configure_cache(None)
    val, train, source = load_splits(args.data, args.val, args.train + args.test, args.split_seed)
    train, test = train[: args.train], train[args.train :]
    print(
        f"val {len(val)} / train {len(train)} examples ({source}, split seed {args.split_seed}); "
        f"baselines {'enqueued' if args.baselines else 'not enqueued'}; TPE startup trials {args.startup}; "
        f"{os.cpu_count()} CPUs"
    )
    common = {
        "val": val,
        "train": train,
        "max_trials": args.max_trials,
        "startup": args.startup,
        "baselines": args.baselines,
        "concurrency": args.concurrency,
    }
    runs: list[Run] = []
    t0 = time.perf_counter()
    if args.only in (None, "sampler"):
        sampler_comparison(args, common, runs)
    if args.only in (None, "pruning"):
        pruning_comparison(args, common, runs)
    if args.only in (None, "optimizers"):
        optimizer_comparison(args, common, runs, test)
    print(f"\n(total {time.perf_counter() - t0:.0f}s)")
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                [
                    {
                        "arm": r.arm,
                        "seed": r.seed,
                        "server_requests": r.server_requests,
                        "wall_s": r.wall_s,
                        "points": [p.__dict__ for p in r.points],
                    }
                    for r in runs
                ],
                indent=1,
            )
        )
        print(f"curves -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
