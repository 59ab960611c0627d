"""The cost model of every operator: LM calls and tokens per question at default knobs.

Each operator runs as a one-node agent (aggregators over two `cot` branches, whose cost is included)
on the same questions against the fake OpenAI-compatible server in tests/ (in-process, no latency,
DSPy's cache off). The table shows the spec's upper bound next to what the meter measured; it is the
cost model the optimizer's budget (``--max-calls-per-question``) and projections rely on. Accuracy
here is the fake server's (it rewards reasoning, sampling and aggregation), not a real model's.

    python bench/operators.py                  # 24 questions per operator
    python bench/operators.py --questions 48 --json ops.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="GSM8K JSONL (synthetic if absent)")
    ap.add_argument("--questions", type=int, default=24)
    ap.add_argument("--json", type=Path, default=None, help="write the table here")
    args = ap.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    from agentsearch.evaluators.benchmarks import GSM8K, Example
    from agentsearch.evaluators.evaluator import Evaluator
    from agentsearch.evaluators.llm.lm import Endpoint, configure_cache
    from agentsearch.evaluators.llm.pool import build_lm
    from agentsearch.evaluators.operators.compile import compile_graph
    from agentsearch.search_space.graph import AgentGraph
    from agentsearch.search_space.operators import OPERATORS
    from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy

    if args.data.exists():
        bench = GSM8K(args.data)
        examples = bench.examples()[: args.questions]
        metric = bench.metric
    else:
        examples = [Example(id=str(i), question=f"What is {i} plus {i + 7}?", answer=str(2 * i + 7))
                    for i in range(args.questions)]
        metric = GSM8K().metric
    configure_cache(None)
    rows = []
    with FakeOpenAIServer(ReasoningPolicy({e.question: e.answer for e in examples})) as server:
        lm = build_lm(Endpoint(model="fake-model", api_base=server.url), cache=False)
        for op, spec in OPERATORS.items():
            if spec.kind == "aggregator":
                graph = AgentGraph.from_dict({"name": op, "output": "x", "nodes": [
                    {"id": "a", "op": "cot"}, {"id": "b", "op": "cot", "params": {"temperature": 0.7}},
                    {"id": "x", "op": op, "inputs": ["a", "b"]}]})
            else:
                graph = AgentGraph.single(op)
            result = Evaluator(metric, concurrency=8).evaluate(compile_graph(graph, lms={"default": lm}), examples)
            rows.append({
                "operator": op, "kind": spec.kind, "spec_calls": graph.expected_calls(),
                "calls_per_question": result.calls_per_question, "tokens_per_question": result.tokens_per_question,
                "accuracy_fake_server": result.score, "errors": result.n_errors,
            })
    print(f"{len(examples)} questions per operator; aggregators include their two cot branches (2 calls)\n")
    print(f"{'operator':<20} {'kind':<11} {'spec calls/q':>13} {'measured calls/q':>17} {'tokens/q':>9} "
          f"{'acc (fake)':>11}")
    for r in rows:
        print(f"{r['operator']:<20} {r['kind']:<11} {r['spec_calls']:>13} {r['calls_per_question']:>17.2f} "
              f"{r['tokens_per_question']:>9.0f} {r['accuracy_fake_server']:>11.2f}")
    over = [r["operator"] for r in rows if r["calls_per_question"] > r["spec_calls"] + 1e-9]
    print(f"\noperators whose measured calls exceed the spec's bound: {over or 'none'}")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
