"""Choosing the winner before the test split is touched.

Most candidates of a search were pruned after a few validation questions, and even complete ones
were scored on a small split: a noisy validation set picks the wrong design. So the top ``k``
candidates (one per distinct config) are re-evaluated on the *full* validation split (the loop's
per-example outcomes and the response cache make that cost only the questions not yet asked), and
the winner is chosen on those complete scores; ties go to the cheaper design (fewer
tokens/question), then to the earlier trial. The contenders are the best complete trial and the
``k - 1`` others with the best smoothed validation score ``(correct + 1) / (n + 2)``, which ranks a
pruned trial's 4 of 4 (0.83) above a complete 28 of 40 (0.69) but not far above: it gets its full
evaluation, and the complete trial keeps its place. A contender whose evaluation fails (endpoint
errors) is left out and named in the report.

When the winner does not significantly beat the runner-up on the validation questions (a paired
test), the selection carries a warning with about how many questions would separate them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentsearch.evaluators.benchmarks import Example
from agentsearch.evaluators.evaluator import ExampleRecord
from agentsearch.optimizers.base import FinishedTrial
from agentsearch.runs.stats import Comparison, paired_comparison, questions_to_separate

log = logging.getLogger(__name__)

#: Candidates re-evaluated on the full validation split by default (``--top-k``).
DEFAULT_TOP_K = 3

#: ``complete(trial, examples) -> records``: evaluate a trial's graph on more validation examples.
Completer = Callable[[FinishedTrial, Sequence[Example]], list[ExampleRecord]]


@dataclass
class Contender:
    """A top candidate with its score on the full validation split."""

    trial: FinishedTrial
    val_score: float
    n: int
    tokens_per_question: float
    outcomes: dict[str, bool] = field(repr=False)
    completed: int = 0  # validation questions evaluated now (it had been pruned or scored partly)

    def to_dict(self) -> dict[str, Any]:
        t = self.trial
        return {
            "trial": t.number,
            "origin": t.origin,
            "summary": t.graph.summary() if t.graph is not None else None,
            "state": t.state,
            "search_val_score": t.metrics.get("val_score"),
            "search_n": int(t.metrics.get("n_examples", 0)),
            "val_score": self.val_score,
            "n": self.n,
            "tokens_per_question": self.tokens_per_question,
            "completed_now": self.completed,
        }


@dataclass
class Selection:
    """The winner, the contenders it was chosen from, and how clearly the validation split separated them."""

    winner: Contender
    contenders: list[Contender]
    k: int
    comparison: Comparison | None = None  # winner vs runner-up on the validation questions
    warning: str | None = None
    dropped: list[dict[str, Any]] = field(default_factory=list)  # contenders whose evaluation failed
    calls: int = 0  # LLM calls the re-evaluation made (cache hits included)

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "winner": self.winner.trial.number,
            "contenders": [c.to_dict() for c in self.contenders],
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "warning": self.warning,
            "dropped": self.dropped,
            "calls": self.calls,
        }


def _smoothed(t: FinishedTrial) -> float:
    n = float(t.metrics.get("n_examples", 0.0))
    return (float(t.metrics["val_score"]) * n + 1.0) / (n + 2.0)


def top_trials(trials: Sequence[FinishedTrial], k: int) -> list[FinishedTrial]:
    """The contenders, one per config: the best complete trial (by validation score; ties: fewer
    tokens/question, earlier), then the best others by smoothed score, ``k`` in all. Complete and pruned
    trials evaluated on at least one question are eligible."""
    eligible = [
        t
        for t in trials
        if t.state in ("COMPLETE", "PRUNED")
        and t.graph is not None
        and t.metrics.get("n_examples", 0) > 0
        and t.metrics.get("val_score") is not None
    ]

    def tie(t: FinishedTrial) -> tuple[float, int, int]:
        return (t.metrics.get("tokens_per_question", 0.0), -len(t.outcomes), t.number)

    complete = sorted((t for t in eligible if t.state == "COMPLETE"), key=lambda t: (-t.metrics["val_score"], *tie(t)))
    ranked = complete[:1] + sorted(eligible, key=lambda t: (-_smoothed(t), *tie(t)))
    out: list[FinishedTrial] = []
    seen: set[str] = set()
    for t in ranked:
        h = t.graph.config_hash  # type: ignore[union-attr]
        if h in seen:
            continue
        seen.add(h)
        out.append(t)
        if len(out) == k:
            break
    return out


def select_best(
    trials: Sequence[FinishedTrial],
    val: Sequence[Example],
    complete: Completer,
    k: int = DEFAULT_TOP_K,
    store: MutableMapping[str, Any] | None = None,
    announce: Callable[[str], None] = lambda msg: None,
) -> Selection | None:
    """Re-evaluate the top ``k`` on the full validation split and pick the winner (None: no candidate).

    ``store`` keeps completed evaluations by trial number (the study's user attributes), so a
    finished study does not redo them.
    """
    store = store if store is not None else {}
    contenders: list[Contender] = []
    dropped: list[dict[str, Any]] = []
    calls = [0]

    def counted(t: FinishedTrial, examples: Sequence[Example]) -> list[ExampleRecord]:
        records = complete(t, examples)
        calls[0] += sum(r.calls for r in records)
        return records

    for t in top_trials(trials, max(1, k)):
        c = _full_val(t, val, counted, store, announce, dropped)
        if c is not None:
            contenders.append(c)
    if not contenders:
        return None
    ranked = sorted(contenders, key=lambda c: (-c.val_score, c.tokens_per_question, c.trial.number))
    winner = ranked[0]
    selection = Selection(winner, ranked, k, dropped=dropped, calls=calls[0])
    if len(ranked) > 1:
        runner = ranked[1]
        a, b = f"trial {winner.trial.number}", f"trial {runner.trial.number}"
        cmp = paired_comparison(winner.outcomes, runner.outcomes, a, b)
        selection.comparison = cmp
        if not cmp.significant:
            need = questions_to_separate(winner.outcomes, runner.outcomes)
            size = (
                f"about {need} validation questions would separate a difference this size (--val-size)"
                if need is not None
                else "they tie on these questions: no split size separates them"
            )
            selection.warning = (
                f"the validation split ({len(val)} questions) is too small to separate the top candidates: "
                f"{a} {winner.val_score:.3f} vs {b} {runner.val_score:.3f} ({cmp.p_value_text}); {size}"
            )
    if dropped:
        left = ", ".join(f"trial {d['trial']}" for d in dropped)
        note = f"left out of the selection because their validation run failed: {left}"
        selection.warning = f"{selection.warning}; {note}" if selection.warning else note
    return selection


def _full_val(
    t: FinishedTrial,
    val: Sequence[Example],
    complete: Completer,
    store: MutableMapping[str, Any],
    announce: Callable[[str], None],
    dropped: list[dict[str, Any]],
) -> Contender | None:
    n_val = len(val)
    saved = store.get(str(t.number))
    if saved is not None and len(saved.get("outcomes", "")) == n_val:
        outcomes = _outcomes(val, saved["outcomes"])
        return Contender(t, sum(outcomes.values()) / n_val, n_val, float(saved["tokens_per_question"]), outcomes, 0)
    done = t.outcomes if len(t.outcomes) == int(t.metrics.get("n_examples", -1)) else ""
    if len(done) == n_val:
        outcomes = _outcomes(val, done)
        tpq = float(t.metrics.get("tokens_per_question", 0.0))
        return Contender(t, sum(outcomes.values()) / n_val, n_val, tpq, outcomes, 0)
    rest = list(val[len(done) :])
    announce(f"selection: trial {t.number} ({t.origin}) on the {len(rest)} validation questions it was not scored on")
    records = complete(t, rest)
    if any(r.error_kind in ("endpoint", "internal") for r in records):
        first = next(r for r in records if r.error_kind in ("endpoint", "internal"))
        log.warning("trial %d could not be completed on the validation split: %s", t.number, first.error)
        announce(f"selection: trial {t.number} left out (its evaluation failed: {first.error})")
        dropped.append({"trial": t.number, "origin": t.origin, "error": first.error})
        return None
    text = done + "".join("1" if r.correct else "0" for r in records)
    spent_before = float(t.metrics.get("tokens_per_question", 0.0)) * len(done)
    tpq = (spent_before + sum(r.tokens for r in records)) / n_val
    store[str(t.number)] = {"outcomes": text, "tokens_per_question": tpq}
    outcomes = _outcomes(val, text)
    return Contender(t, sum(outcomes.values()) / n_val, n_val, tpq, outcomes, len(rest))


def _outcomes(val: Sequence[Example], text: str) -> dict[str, bool]:
    return {ex.id: ch == "1" for ex, ch in zip(val, text, strict=False)}
