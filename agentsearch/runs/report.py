"""What a finished study reports: the best agent against the baselines, on the same test questions.

* Each baseline is tested in its best output format (the highest validation score among its
  variants; ties go to the primary format): the search must beat well-formatted baselines.
* CoT-SC at matched cost: self-consistency over chain-of-thought with as many samples as make its
  tokens/question closest to the best agent's (from the ``cot_sc5`` baseline's tokens per sample,
  in that baseline's best format). The audits of this field found searched agents losing to exactly
  this baseline.
* The strongest baseline is the one with the best *validation* score (the test split picks nothing:
  choosing the comparator by its test score would favour it by chance).
* The comparisons are paired (the same test questions): the difference in accuracy with its 95%
  bootstrap CI and the exact McNemar p-value, with a verdict in plain words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentsearch.optimizers.base import FinishedTrial
from agentsearch.runs.stats import paired_comparison
from agentsearch.search_space.baselines import COT_SC, baseline_graphs, cot_sc, split_variant
from agentsearch.search_space.graph import AgentGraph

#: The most samples a matched CoT-SC gets (an agent costing more is compared with this many).
MAX_SC_SAMPLES = 16


def best_baseline_variants(trials: Sequence[FinishedTrial]) -> dict[str, FinishedTrial]:
    """Each baseline's best complete variant by validation score (ties: the primary format, then the
    earlier trial), by baseline name."""
    found: dict[str, list[tuple[float, int, int, FinishedTrial]]] = {}
    for t in trials:
        if not t.is_baseline or t.state != "COMPLETE" or t.graph is None or t.metrics.get("val_score") is None:
            continue
        name, fmt = split_variant(t.origin.split(":", 1)[1].removesuffix(":retry"))
        found.setdefault(name, []).append((-float(t.metrics["val_score"]), fmt is not None, t.number, t))
    order = list(baseline_graphs())
    names = sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))
    return {name: min(found[name], key=lambda x: x[:3])[3] for name in names}


def matched_cot_sc(
    results: Mapping[str, Mapping[str, Any]],
    graphs: Mapping[str, AgentGraph],
    chosen: Mapping[str, FinishedTrial],
) -> tuple[str, AgentGraph] | None:
    """``(label, graph)`` of CoT-SC with the sample count whose cost matches the best agent's; None
    without a tested ``cot_sc5`` baseline. The label is the baseline's own when 5 samples match."""
    label = f"baseline:{COT_SC}"
    if COT_SC not in chosen or label not in results or "best:0" not in results:
        return None
    per_sample = float(results[label]["tokens_per_question"]) / 5
    if per_sample <= 0:
        return None
    n = max(1, min(MAX_SC_SAMPLES, round(float(results["best:0"]["tokens_per_question"]) / per_sample)))
    if n == 5:
        return label, graphs[label]
    fmt = next(iter(graphs[label].formats()))
    return f"matched:cot_sc{n}", cot_sc(n, fmt)


def _outcomes(entry: Mapping[str, Any], test: Sequence[Any]) -> dict[str, bool]:
    text = str(entry.get("outcomes", ""))
    return {ex.id: ch == "1" for ex, ch in zip(test, text, strict=False) if ch != "x"}


def compare_with_baselines(
    results: Mapping[str, Mapping[str, Any]],
    graphs: Mapping[str, AgentGraph],
    test: Sequence[Any],
    best_trial: FinishedTrial | None = None,
    baselines_val: Mapping[str, float | None] | None = None,
) -> list[dict[str, Any]]:
    """Paired comparisons of the best agent (``best:0``) with the strongest baseline (by validation
    score: ``baselines_val``) and with CoT-SC at matched cost, on the test split; each with its verdict."""
    if "best:0" not in results:
        return []
    best = _outcomes(results["best:0"], test)
    best_hash = graphs["best:0"].config_hash
    best_tpq = float(results["best:0"]["tokens_per_question"])
    out: list[dict[str, Any]] = []
    is_baseline = best_trial is not None and best_trial.is_baseline
    others = [
        label for label in results if label.startswith("baseline:") and graphs[label].config_hash != best_hash
    ]
    vals = dict(baselines_val or {})
    top = None
    if others:

        def strength(lb: str) -> tuple[float, float]:
            val = vals.get(lb.split(":", 1)[1])
            return (-1.0 if val is None else float(val), -float(results[lb]["tokens_per_question"]))

        top = max(others, key=strength)
        name = top.split(":", 1)[1]
        cmp = paired_comparison(best, _outcomes(results[top], test), "best", name)
        verdict = cmp.verdict(keep=name)
        if is_baseline:
            verdict = f"the best agent on validation is the baseline {best_trial.origin.split(':', 1)[1]}; " + verdict
        out.append(_entry("strongest baseline", name, cmp, best_tpq, results[top], verdict))
    sc_labels = [lb for lb in results if lb.startswith("matched:")] or (
        [f"baseline:{COT_SC}"] if f"baseline:{COT_SC}" in results else []
    )
    for label in sc_labels:
        if graphs[label].config_hash == best_hash:
            continue
        sc_tpq = float(results[label]["tokens_per_question"])
        cost = f"CoT-SC at matched cost: {best_tpq:.0f} vs {sc_tpq:.0f} tokens/question"
        if sc_tpq < best_tpq / 1.5:
            cost += f" ({graphs[label].name} is the most samples compared)"
        if label == top:  # the strongest baseline is the matched CoT-SC: one comparison, said once
            out[-1]["kind"] = "strongest baseline; CoT-SC at matched cost"
            out[-1]["verdict"] += f"; {cost}"
            continue
        name = graphs[label].name
        cmp = paired_comparison(best, _outcomes(results[label], test), "best", name)
        verdict = f"{cmp.verdict(keep=name)}; {cost}"
        out.append(_entry("CoT-SC at matched cost", name, cmp, best_tpq, results[label], verdict))
    return out


def _entry(
    kind: str, name: str, cmp: Any, best_tpq: float, other: Mapping[str, Any], verdict: str
) -> dict[str, Any]:
    return {
        "kind": kind,
        "vs": name,
        **cmp.to_dict(),
        "best_tokens_per_question": best_tpq,
        "vs_tokens_per_question": float(other["tokens_per_question"]),
        "verdict": verdict,
    }
