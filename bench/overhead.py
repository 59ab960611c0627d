"""Evaluation throughput: LM calls/s of our Evaluator vs dspy.Evaluate vs a raw httpx client.

All contenders run the same compiled ``cot`` program (one LM call per question) on the same
questions, at the same concurrency, against the fake OpenAI-compatible server started in a
separate process (so its CPU is not charged to the client's GIL). DSPy's cache is off everywhere.

Contenders:

* ``ours: Evaluator + lm15``         -- :class:`agentsearch.evaluators.evaluator.Evaluator` with the LM
  from ``build_lm`` (DSPy's native lm15 client, metered);
* ``ours: + endpoint gate``           -- the same LM behind its endpoint's gate, as in a study (in-flight cap,
  circuit breaker, hang watchdog: each call runs in its own thread);
* ``dspy.Evaluate + dspy.LM (lm15)``  -- ``dspy.Evaluate(num_threads=C)`` on the same program with the LM a DSPy
  user writes, ``dspy.LM("openai/<model>", api_base=...)`` (DSPy's built-in lm15 client): the peer of the target;
* ``dspy.Evaluate + lm15 (same LM)`` -- ``dspy.Evaluate(num_threads=C)`` on the same program and LM object;
* ``dspy.Evaluate + litellm``         -- ``dspy.Evaluate`` with ``dspy.LM(..., engine="litellm")``, what a
  typical DSPy user gets when lm15 cannot represent a request;
* ``ours: Evaluator + litellm``       -- our Evaluator on that LiteLLM LM (splits evaluator from client cost);
* ``raw httpx (ceiling)``             -- an ``httpx.Client`` posting the same chat requests (the prompts
  DSPy's ChatAdapter builds, made before timing) from C threads.

Each round runs every contender once on the same questions, in a rotated order (interleaved);
the table reports the median over rounds. Before each measurement DSPy's call histories are cleared
and the garbage collector run, so no contender inherits another's heap. The client is one Python
process, so its throughput is bounded by its CPU per call (GIL): "client CPU ms/call" is the
load-robust number to compare when the machine is noisy. Run::

    python bench/overhead.py                       # 3 rounds x 320 questions, 32-way, 20 ms latency
    python bench/overhead.py --ablations           # + contenders with DSPy's cost estimate / history off
    python bench/overhead.py --profile prof.pstats # + a per-thread CPU profile (cProfile) of our path
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import logging
import os
import pstats
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


# -- data and server ----------------------------------------------------------------------------


def load_questions(data: Path | None, n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """(id, question, gold) for ``n`` GSM8K questions from ``data``, or synthetic ones if it is absent."""
    if data is not None and data.exists():
        from agentsearch.evaluators.benchmarks import get_benchmark

        pool = get_benchmark("gsm8k", data=str(data)).examples()
        picked = random.Random(seed).sample(pool, min(n, len(pool)))
        return [(e.id, e.question, e.answer) for e in picked]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b, c = rng.randint(2, 90), rng.randint(2, 9), rng.randint(2, 12)
        q = f"Item {i}: Tom has {a} apples and buys {b} bags of {c} apples each. How many apples has he?"
        out.append((f"syn-{i}", q, str(a + b * c)))
    return out


class ServerProcess:
    """``python -m agentsearch.testing.fake_server`` in its own process; ``url`` once it printed READY."""

    def __init__(self, answers: Path, latency: float):
        cmd = [sys.executable, "-m", "agentsearch.testing.fake_server", "--port", "0", "--latency", str(latency),
               "--answers", str(answers)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            self.proc.kill()
            raise RuntimeError(f"fake server did not start (got {line!r})")
        self.url = line.split(" ", 1)[1]

    def cpu_s(self) -> float | None:
        """User+system CPU seconds the server process used so far (Linux /proc), or None."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- contenders --------------------------------------------------------------------------------


@dataclass
class Outcome:
    calls: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float | None
    correct: int
    failures: int

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.wall_s if self.wall_s > 0 else 0.0


@dataclass
class Contender:
    label: str
    run: Callable[[], tuple[int, int, int]]  # -> (calls, correct, failures)
    outcomes: list[Outcome] = field(default_factory=list)

    def median_rate(self) -> float:
        return statistics.median(o.calls_per_s for o in self.outcomes)

    def median_cpu_ms(self) -> float:
        return statistics.median(1000 * o.cpu_s / o.calls for o in self.outcomes if o.calls)

    def median_server_cpu_ms(self) -> float:
        vals = [1000 * o.server_cpu_s / o.calls for o in self.outcomes
                if o.calls and o.server_cpu_s is not None]
        return statistics.median(vals) if vals else float("nan")


@contextmanager
def no_cost_estimate() -> Iterator[None]:
    """Skip DSPy's advisory per-call USD cost estimate (an ablation; patched only inside the block)."""
    from dspy.clients import execution

    original = execution._price_result
    execution._price_result = lambda *args, **kwargs: None
    try:
        yield
    finally:
        execution._price_result = original


class Bench:
    """The contenders over one server, and the objects whose state is reset between measurements."""

    def __init__(self, url: str, questions: list[tuple[str, str, str]], concurrency: int, ablations: bool):
        import dspy
        import httpx

        from agentsearch.evaluators.benchmarks import Example, get_benchmark
        from agentsearch.evaluators.evaluator import Evaluator
        from agentsearch.evaluators.llm.lm import Endpoint, EndpointGate, MeteredLM, configure_cache
        from agentsearch.evaluators.llm.pool import build_lm
        from agentsearch.evaluators.operators.compile import compile_graph
        from agentsearch.search_space.baselines import baseline_graphs

        configure_cache(None)
        metric = get_benchmark("gsm8k", data=None).metric  # answer matching only; loads no data
        graph = baseline_graphs()["cot"]

        lm15 = build_lm(Endpoint(model="fake-model", api_base=url), cache=False)
        # a study's path: the LM behind its endpoint's gate (in-flight cap, breaker, hang watchdog)
        gated = build_lm(Endpoint(model="fake-model", api_base=url), cache=False,
                         gates={url.rstrip("/"): EndpointGate(concurrency, name=url.rstrip("/"))})
        litellm_kw = {"api_base": url, "api_key": "not-needed", "cache": False, "num_retries": 3,
                      "timeout": 120.0, "engine": "litellm"}
        litellm = dspy.LM("openai/fake-model", **litellm_kw)  # what a dspy user writes, on LiteLLM
        default_kw = {**litellm_kw, "engine": "auto"}
        default = dspy.LM("openai/fake-model", **default_kw)  # what a dspy user writes: auto picks lm15
        litellm_metered = MeteredLM("openai/fake-model", **litellm_kw)  # the same, counted by our meter
        prog_lm15 = compile_graph(graph, lms={"default": lm15})
        prog_gated = compile_graph(graph, lms={"default": gated})
        prog_litellm = compile_graph(graph, lms={"default": litellm})
        prog_default = compile_graph(graph, lms={"default": default})
        prog_litellm_metered = compile_graph(graph, lms={"default": litellm_metered})
        self.lms = [lm15, gated, litellm, litellm_metered, default]
        self.programs = [prog_lm15, prog_gated, prog_litellm, prog_litellm_metered, prog_default]

        examples = [Example(id=i, question=q, answer=a) for i, q, a in questions]
        devset = [dspy.Example(question=q, answer=a).with_inputs("question") for _, q, a in questions]

        def dspy_metric(example: dspy.Example, pred: dspy.Prediction, trace: object = None) -> bool:
            return metric(example, str(getattr(pred, "answer", "") or ""))  # type: ignore[arg-type]

        def ours(program: dspy.Module, cost: bool = True) -> Callable[[], tuple[int, int, int]]:
            def run() -> tuple[int, int, int]:
                with no_cost_estimate() if not cost else nullcontext():
                    res = Evaluator(metric, concurrency=concurrency).evaluate(program, examples)
                return res.calls, res.n_correct, res.n_errors
            return run

        def dspy_evaluate(
            program: dspy.Module, cost: bool = True, history: bool = True
        ) -> Callable[[], tuple[int, int, int]]:
            def run() -> tuple[int, int, int]:
                ev = dspy.Evaluate(devset=devset, metric=dspy_metric, num_threads=concurrency,
                                   display_progress=False, max_errors=len(devset) + 1)
                with no_cost_estimate() if not cost else nullcontext():
                    with dspy.context(disable_history=True) if not history else nullcontext():
                        res = ev(program)
                failed = sum(1 for _, pred, _ in res.results if not getattr(pred, "answer", None))
                correct = sum(bool(score) for _, _, score in res.results)
                # a cot program makes one call per question (our path counts calls and checks it)
                return len(devset), correct, failed
            return run

        # raw httpx: the exact prompts DSPy's ChatAdapter sends, built before timing
        predictor = prog_lm15.predictors()[0]
        adapter = dspy.ChatAdapter()
        bodies = [
            {"model": "fake-model", "temperature": 0.0,
             "messages": adapter.format(predictor.signature, demos=[], inputs={"question": q})}
            for _, q, _ in questions
        ]
        golds = [a for _, _, a in questions]
        client = httpx.Client(
            base_url=url, timeout=120.0,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        answer_re = re.compile(r"\[\[ ## answer ## \]\]\s*(.*?)\s*(?:\[\[|$)", re.S)

        def raw() -> tuple[int, int, int]:
            def one(i: int) -> tuple[bool, bool]:
                try:
                    resp = client.post("/chat/completions", json=bodies[i])
                    resp.raise_for_status()
                    text = resp.json()["choices"][0]["message"]["content"]
                except (httpx.HTTPError, KeyError, ValueError):
                    return False, True
                m = answer_re.search(text)
                return bool(m and m.group(1).strip() == golds[i]), False

            with ThreadPoolExecutor(max_workers=min(concurrency, len(bodies))) as pool:
                results = list(pool.map(one, range(len(bodies))))
            return len(bodies), sum(c for c, _ in results), sum(f for _, f in results)

        self.contenders = [
            Contender(OURS, ours(prog_lm15)),
            Contender(GATED, ours(prog_gated)),
            Contender(DSPY_DEFAULT, dspy_evaluate(prog_default)),
            Contender(DSPY_LM15, dspy_evaluate(prog_lm15)),
            Contender(DSPY_LITELLM, dspy_evaluate(prog_litellm)),
            Contender("ours: Evaluator + litellm", ours(prog_litellm_metered)),
            Contender(RAW, raw),
        ]
        if ablations:
            self.contenders += [
                Contender("ablation: ours, no cost estimate", ours(prog_lm15, cost=False)),
                Contender("ablation: dspy.Eval(lm15), no cost est.", dspy_evaluate(prog_lm15, cost=False)),
                Contender("ablation: dspy.Eval(lm15), no history", dspy_evaluate(prog_lm15, history=False)),
            ]

    def reset(self) -> None:
        """Forget DSPy's call histories (global, per LM, per module) and collect garbage."""
        from dspy.clients import base_lm

        base_lm.GLOBAL_HISTORY.clear()
        for lm in self.lms:
            lm.history.clear()
        for program in self.programs:
            for module in [program, *(m for _, m in program.named_sub_modules())]:
                if isinstance(getattr(module, "history", None), list):
                    module.history.clear()
        gc.collect()

    def get(self, label: str) -> Contender:
        return next(c for c in self.contenders if c.label == label)


OURS = "ours: Evaluator + lm15"
GATED = "ours: + endpoint gate (study path)"
DSPY_LM15 = "dspy.Evaluate + lm15 (same LM)"
DSPY_DEFAULT = "dspy.Evaluate + dspy.LM (lm15)"
DSPY_LITELLM = "dspy.Evaluate + litellm"
RAW = "raw httpx (ceiling)"


def measure(contender: Contender, server: ServerProcess) -> Outcome:
    s0, c0, t0 = server.cpu_s(), time.process_time(), time.perf_counter()
    calls, correct, failures = contender.run()
    wall, cpu, s1 = time.perf_counter() - t0, time.process_time() - c0, server.cpu_s()
    server_cpu = s1 - s0 if s0 is not None and s1 is not None else None
    return Outcome(calls, wall, cpu, server_cpu, correct, failures)


# -- profiling ----------------------------------------------------------------------------------


def profile_threads(run: Callable[[], object], repeat: int, out: Path) -> pstats.Stats:
    """CPU profile (per-thread CPU clock) of ``run`` over every thread it starts; saved to ``out``.

    cProfile instruments every call, which inflates many small calls (e.g. dict.get) far more than
    big ones: read it for where the time goes, and take the real sizes from ``--ablations``.
    """
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_new_thread(frame: object, event: str, arg: object) -> None:
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(prof)
        prof.enable()  # replaces this hook for the rest of the thread

    main = cProfile.Profile(time.thread_time)
    threading.setprofile(start_in_new_thread)
    main.enable()
    try:
        for _ in range(repeat):
            run()
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(main)
    with lock:
        for prof in profiles:
            try:
                stats.add(prof)
            except TypeError:  # a thread that recorded nothing
                pass
    stats.dump_stats(str(out))
    return stats


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K JSONL (synthetic if absent)")
    ap.add_argument("--questions", type=int, default=320, help="questions per contender per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--latency", type=float, default=0.02, help="fake server latency per call, seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablations", action="store_true",
                    help="also run contenders with DSPy's cost estimate or call history turned off")
    ap.add_argument("--profile", type=Path, default=None,
                    help="after the rounds, write a CPU profile (pstats) of 3 evaluations on our path here")
    ap.add_argument("--json", type=Path, default=None, help="write the raw outcomes here")
    args = ap.parse_args(argv)

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price map
    logging.getLogger("dspy.evaluate.evaluate").setLevel(logging.WARNING)  # its "Average Metric" line
    questions = load_questions(args.data, args.questions, args.seed)
    source = str(args.data) if args.data is not None and args.data.exists() else "synthetic"
    with tempfile.TemporaryDirectory() as tmp:
        answers = Path(tmp) / "answers.jsonl"
        answers.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for _, q, a in questions))
        server = ServerProcess(answers, args.latency)
        try:
            bench = Bench(server.url, questions, args.concurrency, args.ablations)
            contenders = bench.contenders
            print(f"{len(questions)} questions ({source}), {args.concurrency}-way, "
                  f"latency {args.latency * 1000:.0f} ms, {args.rounds} rounds, {os.cpu_count()} CPUs")
            for c in contenders:  # warm-up: imports, connection pools, first-call paths
                bench.reset()
                c.run()
            for r in range(args.rounds):
                k = r % len(contenders)
                for c in contenders[k:] + contenders[:k]:
                    bench.reset()
                    o = measure(c, server)
                    c.outcomes.append(o)
                    print(f"  round {r + 1}: {c.label:<42} {o.calls_per_s:7.1f} calls/s  {o.calls} calls "
                          f"{o.wall_s:5.2f}s  {o.failures} failed  {o.correct} correct")
            if args.profile is not None:
                bench.reset()
                stats = profile_threads(bench.get(OURS).run, repeat=3, out=args.profile)
        finally:
            server.close()

    base_default = bench.get(DSPY_DEFAULT).median_rate()
    base_lm15 = bench.get(DSPY_LM15).median_rate()
    base_litellm = bench.get(DSPY_LITELLM).median_rate()
    ceiling = bench.get(RAW).median_rate()
    print()
    header = (f"{'contender':<42} {'calls/s':>8} {'vs dspy.Eval(dspy.LM)':>22} {'vs dspy.Eval(litellm)':>22} "
              f"{'vs raw httpx':>13} {'client CPU ms/call':>19} {'server CPU ms/call':>19}")
    print(header)
    print("-" * len(header))
    for c in contenders:
        rate = c.median_rate()
        print(f"{c.label:<42} {rate:8.1f} {rate / base_default:21.2f}x {rate / base_litellm:21.2f}x "
              f"{rate / ceiling:12.2f}x {c.median_cpu_ms():19.2f} {c.median_server_cpu_ms():19.2f}")
    print(f"(medians of {args.rounds} interleaved rounds; latency-bound ideal "
          f"{args.concurrency / args.latency:.0f} calls/s)")
    ours = bench.get(OURS).median_rate()
    for label, base in (("dspy.Evaluate + dspy.LM (lm15)", base_default), ("dspy.Evaluate + our LM", base_lm15),
                        ("dspy.Evaluate + litellm", base_litellm)):
        ratio = ours / base
        print(f"target ours >= 1.5x {label}: {ratio:.2f}x ({'met' if ratio >= 1.5 else 'NOT met'})")
    if args.profile is not None:
        print(f"\nCPU profile of '{OURS}' (3 evaluations, all threads) -> {args.profile}; top by own time:")
        stats.sort_stats("tottime").print_stats(15)
    if args.json is not None:
        raw = {c.label: [o.__dict__ for o in c.outcomes] for c in contenders}
        args.json.write_text(json.dumps(raw, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
