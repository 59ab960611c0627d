"""Output formats on a real model: accuracy, no-answer rate, tokens/question and tokens/s of each format.

The embedded CPU model (``--size 0.5b|1.5b``) answers the same GSM8K questions through the ``direct``
and ``cot`` baselines in each output format (text, chat, xml, json). The formats are interleaved in
rounds of ``--round`` questions, so machine load hits them alike; DSPy's cache is off. Questions come
from the *train* part of the split that ``bench/real_quality.py`` uses (seed 0, test 150, val 40), so
choosing the default format here never looks at that bench's held-out questions.

    python bench/formats.py                         # 0.5B, 30 questions, direct + cot, all formats
    python bench/formats.py --size 1.5b --n 30
    python bench/formats.py --record tests/fixtures/replies.jsonl   # keep the raw replies (fixtures)
    python bench/formats.py --benchmark reasoning_gym:chain_sum --formats text   # the demo task

Prints one row per (operator, format) and the machine load; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


class _Recorder:
    """A DSPy callback keeping every LM call's messages and raw reply."""

    def __init__(self) -> None:
        from dspy.utils.callback import BaseCallback

        self._lock = threading.Lock()
        self._open: dict[str, Any] = {}
        self.calls: list[dict[str, Any]] = []
        recorder = self

        class _CB(BaseCallback):
            def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
                with recorder._lock:
                    recorder._open[call_id] = inputs.get("messages")

            def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
                with recorder._lock:
                    messages = recorder._open.pop(call_id, None)
                    if outputs:
                        reply = outputs[0] if isinstance(outputs, list) else outputs
                        reply = reply.get("text", "") if isinstance(reply, dict) else str(reply)
                        recorder.calls.append({"messages": messages, "reply": reply})

        self.callback = _CB()


def load_questions(name: str, path: Path, n: int, seed: int = 0) -> tuple[Any, list[Any]]:
    """The benchmark and ``n`` questions of its train split (the split bench/real_quality.py uses)."""
    from agentsearch.evaluators.benchmarks import SplitSpec, get_benchmark

    bench = get_benchmark(name, data=str(path) if name == "gsm8k" else None, seed=seed)
    return bench, bench.split(SplitSpec(seed=seed, val_size=40, test_size=150))["train"][:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="0.5b", choices=("0.5b", "1.5b"), help="the packaged embedded model")
    ap.add_argument("--benchmark", default="gsm8k", help="gsm8k (--data) or reasoning_gym:<task>")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K JSONL")
    ap.add_argument("--n", type=int, default=30, help="questions per (operator, format)")
    ap.add_argument("--ops", default="direct,cot", help="baselines to run (direct, cot)")
    ap.add_argument("--formats", default="text,chat,xml,json")
    ap.add_argument("--round", type=int, default=10, help="questions per interleaved round")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--record", type=Path, default=None, help="write every raw reply here (JSONL)")
    ap.add_argument("--json", type=Path, default=None, help="write the table here")
    args = ap.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import logging

    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    import dspy

    from agentsearch.evaluators.evaluator import Evaluator
    from agentsearch.evaluators.llm.lm import configure_cache
    from agentsearch.evaluators.llm.models import ModelSet, spec_from_flags
    from agentsearch.evaluators.operators.compile import compile_graph
    from agentsearch.search_space.baselines import baseline_graphs

    bench, questions = load_questions(args.benchmark, args.data, args.n)
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    base = baseline_graphs()
    configure_cache(None)
    recorder = _Recorder()
    stats: dict[tuple[str, str], dict[str, Any]] = {}
    records: dict[tuple[str, str], list[Any]] = {}
    load_before = os.getloadavg()
    started = time.time()
    spec = spec_from_flags("local", [], local_model_size=args.size)
    with ModelSet({"default": spec}, run_dir=ROOT / "runs" / "bench-formats", cache=False, announce=print) as models:
        lm = models.lms["default"]
        for start in range(0, len(questions), args.round):
            chunk = questions[start : start + args.round]
            for op in ops:
                for fmt in formats:
                    graph = base[op].model_copy(
                        update={
                            "nodes": tuple(
                                n.model_copy(update={"params": n.params.model_copy(update={"format": fmt})})
                                for n in base[op].nodes
                            )
                        }
                    )
                    program = compile_graph(graph, lms={"default": lm}, answer_kind=bench.answer_kind)
                    t0 = time.perf_counter()
                    with dspy.context(callbacks=[recorder.callback]):
                        result = Evaluator(bench.score, concurrency=args.concurrency).evaluate(program, chunk)
                    wall = time.perf_counter() - t0
                    s = stats.setdefault((op, fmt), {"wall_s": 0.0, "completion_tokens": 0})
                    s["wall_s"] += wall
                    s["completion_tokens"] += sum(r.completion_tokens for r in result.records)
                    records.setdefault((op, fmt), []).extend(result.records)
                    print(
                        f"  round {start // args.round + 1}: {op:<7} {fmt:<5} "
                        f"{sum(r.correct for r in result.records)}/{len(chunk)} in {wall:.0f}s",
                        flush=True,
                    )
                    if args.record is not None:
                        _record(args.record, recorder, op, fmt, args.size, result.records)
        served = models.public()
    load_after = os.getloadavg()

    rows = []
    for (op, fmt), recs in records.items():
        n = len(recs)
        s = stats[(op, fmt)]
        rows.append(
            {
                "op": op,
                "format": fmt,
                "n": n,
                "correct": sum(r.correct for r in recs),
                "accuracy": sum(r.correct for r in recs) / n,
                "no_answer_rate": sum(r.no_answer for r in recs) / n,
                "tokens_per_question": sum(r.tokens for r in recs) / n,
                "completion_tokens_per_question": s["completion_tokens"] / n,
                "completion_tokens_per_s": s["completion_tokens"] / s["wall_s"] if s["wall_s"] else 0.0,
                "wall_s": s["wall_s"],
            }
        )
    print(f"\nmodel: {served['default']['model']} ({args.size}); {len(questions)} {bench.name} train questions per row")
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; total {time.time() - started:.0f} s"
    )
    head = (
        f"{'op':<7} {'format':<6} {'correct':>8} {'acc':>6} {'no answer':>9} {'tokens/q':>9} {'tok/s':>6} "
        f"{'wall s':>7}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['op']:<7} {r['format']:<6} {r['correct']:>4}/{r['n']:<3} {r['accuracy']:>6.2f} "
            f"{r['no_answer_rate']:>9.2f} {r['tokens_per_question']:>9.0f} {r['completion_tokens_per_s']:>6.1f} "
            f"{r['wall_s']:>7.0f}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"size": args.size, "rows": rows}, indent=2))
    return 0


def _record(path: Path, recorder: _Recorder, op: str, fmt: str, size: str, recs: list[Any]) -> None:
    """Append the raw reply of each record (matched by its question) to ``path``."""
    calls, recorder.calls = recorder.calls, []
    by_question: dict[str, str] = {}
    for call in calls:
        user = next((m["content"] for m in reversed(call["messages"] or []) if m.get("role") == "user"), "")
        for r in recs:
            if r.question in str(user):
                by_question[r.question] = call["reply"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for r in recs:
            if r.question not in by_question:
                continue
            row = {
                "model": size,
                "op": op,
                "format": fmt,
                "id": r.id,
                "question": r.question,
                "gold": r.gold,
                "reply": by_question[r.question],
                "parsed": r.prediction,
                "error": r.error,
            }
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
