"""Search quality on a real model: does the search beat the best baseline and CoT-SC at matched cost?

Every arm is a real study (``run_study``: the search loop with pruning, the top-k selection on the
full validation split, the held-out test, the paired comparisons) on the embedded CPU model, at an
equal LLM-call budget per arm (``--max-calls``; proposer calls included; the baselines, enqueued
first in every arm, are paid by every arm alike):

* ``baselines``: direct, cot, cot_sc5 and self_refine, each in its best output format on validation
  (they are the first trials of every search arm; this row reads them from the first arm);
* ``tpe``: TPE over the default space (all three levels);
* ``random``: random search over the same space;
* ``proposer``: the LLM-driven instruction proposer with the embedded model as its own proposer.

All arms use the same splits, share the response cache (a design evaluated by two arms costs the
machine once but is charged to both), and report held-out accuracy with a 95% bootstrap CI,
tokens/question, the calls the search spent, wall time, and the paired p-values (exact McNemar)
against the best baseline and against CoT-SC at the best agent's tokens/question.

    python bench/real_quality.py                         # GSM8K: val 40, test 150; + reasoning_gym:basic_arithmetic
    python bench/real_quality.py --quick                 # val 20, test 60, one benchmark, a small budget
    python bench/real_quality.py --size 1.5b

Data: GSM8K from ``../shared/data/gsm8k/train.jsonl`` (split seed 0; the held-out test split is never
used for anything but the final test). Record results with the command, date and load in
docs/performance.md, whatever they show.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
SEARCH_ARMS = ("tpe", "random", "proposer")


def _bench_args(name: str, data: Path) -> dict[str, Any]:
    return {"benchmark": name, "data": str(data) if name == "gsm8k" else None}


def run_arm(
    arm: str, bench_name: str, args: argparse.Namespace, lms: Any, run_dir: Path, log: Any
) -> tuple[dict[str, Any], float]:
    from agentsearch.runs.study import StudyConfig, run_study

    slug = bench_name.replace(":", "-")
    cfg = StudyConfig(
        study=f"{slug}-{arm}-{args.size}-v{args.val}-t{args.test}-b{args.max_calls}",
        **_bench_args(bench_name, args.data),
        seed=0,
        val_size=args.val,
        test_size=args.test,
        trials=args.max_trials,
        levels=args.levels,
        sampler=arm if arm in ("tpe", "random") else "tpe",
        optimizer=None if arm in ("tpe", "random") else arm,
        parallel=1,
        concurrency=args.concurrency,
        min_batch=4,
        run_dir=run_dir,
        tracking=False,
        baselines=True,
        max_calls_per_question=args.max_calls_per_question,
        formats=tuple(args.formats.split(",")),
        top_k=3,
        max_calls=args.max_calls,
    )
    class Trials:  # one log line per finished trial
        def trial_finished(self, candidate: Any, result: Any, records: Any) -> None:
            m = result.metrics
            val = f"val {m['val_score']:.3f} on {int(m.get('n_examples', 0))}" if "val_score" in m else ""
            log(f"trial {candidate.number:>3} {result.state:<8} {val:<15} {candidate.origin:<18} "
                f"{candidate.graph.summary()}" + (f" ({result.reason})" if result.reason else ""))

    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_study(cfg, lms, announce=log, observer=Trials())
    return summary, time.perf_counter() - start


def _p(summary: dict[str, Any], kind: str) -> str:
    for c in summary.get("comparisons") or []:
        if kind in c["kind"]:
            return f"{c['p_value']:.3f} ({100 * c['diff']:+.1f} vs {c['vs']})"
    return "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="0.5b", choices=("0.5b", "1.5b"), help="the packaged embedded model")
    ap.add_argument("--model", default="local", help="'local' (the embedded model) or a model served at --api-base")
    ap.add_argument("--api-base", default=None, help="an OpenAI-compatible endpoint instead of the embedded model")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K JSONL")
    ap.add_argument("--benchmarks", default="gsm8k,reasoning_gym:basic_arithmetic")
    ap.add_argument("--quick", action="store_true", help="defaults val 20, test 60, the first benchmark, 600 calls")
    ap.add_argument("--val", type=int, default=None, help="validation questions (default 40; --quick 20)")
    ap.add_argument("--test", type=int, default=None, help="held-out test questions (default 150; --quick 60)")
    ap.add_argument("--max-calls", type=int, default=None, help="LLM-call budget per arm (default 1500; --quick 600)")
    ap.add_argument("--max-trials", type=int, default=200)
    ap.add_argument("--max-calls-per-question", type=int, default=8)
    ap.add_argument("--levels", default="prompt,module,agent")
    ap.add_argument("--formats", default="text", help="formats searched (bench/formats.py measures them all)")
    ap.add_argument("--arms", default=",".join(SEARCH_ARMS))
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "real-quality")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    quick = {"val": 20, "test": 60, "max_calls": 600} if args.quick else {"val": 40, "test": 150, "max_calls": 1500}
    for key, value in quick.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.benchmarks = args.benchmarks.split(",")[0]
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    from agentsearch.evaluators.llm.lm import configure_cache
    from agentsearch.evaluators.llm.models import ModelSet, spec_from_flags

    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    configure_cache(run_dir / "cache")
    logfile = (run_dir / "bench.log").open("a", encoding="utf-8")

    def log(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, file=sys.stderr, flush=True)
        logfile.write(line + "\n")
        logfile.flush()

    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    started = time.time()
    if args.api_base:
        spec = spec_from_flags(args.model, [args.api_base])
    else:
        spec = spec_from_flags(args.model, [], local_model_size=args.size)
    with ModelSet({"default": spec}, run_dir=run_dir, cache=True, announce=log) as models:
        model_name = models.public()["default"]["model"]
        for bench_name in [b.strip() for b in args.benchmarks.split(",") if b.strip()]:
            for arm in arms:
                log(f"== {bench_name}: arm {arm}")
                summary, wall = run_arm(arm, bench_name, args, models.lms, run_dir, log)
                results[f"{bench_name}/{arm}"] = {"summary": summary, "wall_s": wall}
                log(f"== {bench_name}/{arm}: best test {summary['best_test']:.3f} in {wall:.0f}s; {summary['verdict']}")
    load_after = os.getloadavg()

    print(f"\nmodel: {model_name} ({args.size}); val {args.val}, test {args.test}, budget {args.max_calls:,} calls/arm")
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; total {time.time() - started:.0f} s; "
        f"formats searched: {args.formats}"
    )
    head = (
        f"{'benchmark':<32} {'arm':<22} {'test acc':>8} {'95% CI':>13} {'tok/q':>6} {'calls':>6} {'wall s':>7}  "
        f"{'p vs best baseline':<28} {'p vs CoT-SC matched':<28}"
    )
    print(head)
    print("-" * len(head))
    for key, r in results.items():
        bench_name, arm = key.split("/", 1)
        s = r["summary"]
        if arm == arms[0]:
            for name in s["baselines"]:
                t = s["test"][f"baseline:{name}"]
                fmt = ",".join(s["baselines_format"].get(name, []))
                print(
                    f"{bench_name:<32} {'baseline ' + name + ' (' + fmt + ')':<22} {t['score']:8.3f} "
                    f"{t['ci_low']:6.3f}-{t['ci_high']:.3f} {t['tokens_per_question']:6.0f} {'-':>6} {'-':>7}"
                )
        for label, t in s["test"].items():
            if label.startswith("matched:"):  # CoT-SC at this arm's best agent's cost
                print(
                    f"{bench_name:<32} {label.split(':')[1] + ' (matched, ' + arm + ')':<22} {t['score']:8.3f} "
                    f"{t['ci_low']:6.3f}-{t['ci_high']:.3f} {t['tokens_per_question']:6.0f} {'-':>6} {'-':>7}"
                )
        t = s["test"]["best:0"]
        print(
            f"{bench_name:<32} {arm + ' best (t' + str(s['best_trial']) + ')':<22} {t['score']:8.3f} "
            f"{t['ci_low']:6.3f}-{t['ci_high']:.3f} {t['tokens_per_question']:6.0f} {s['calls']:6,} "
            f"{r['wall_s']:7.0f}  {_p(s, 'strongest baseline'):<28} {_p(s, 'CoT-SC at matched cost'):<28}"
        )
    print("\nverdicts:")
    for key, r in results.items():
        s = r["summary"]
        print(f"  {key}: best = {s['best_summary']} ({s['best_origin']})")
        for c in s.get("comparisons") or []:
            print(f"    {c['verdict']}")
        if (s.get("selection") or {}).get("warning"):
            print(f"    warning: {s['selection']['warning']}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args), "model": model_name, "results": results}, default=str,
                                        indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
