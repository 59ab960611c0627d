"""Statistics for reports: accuracy with a bootstrap CI, paired comparisons, verdicts in plain words.

Every test score a study reports carries n, a 95% bootstrap confidence interval and tokens/question
(where every answer is right, or every one wrong, the bootstrap's interval collapses to a point: there
the Wilson score interval is reported instead); two agents scored on the same questions are compared
with a paired test: the exact McNemar test on the questions where exactly one of them is right (the
p-value), and a paired bootstrap of the difference in accuracy (its CI). A difference counts as
significant when both agree (p < 0.05 and a CI that excludes 0). scipy does the work
(``scipy.stats.bootstrap``, ``binomtest``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

ALPHA = 0.05
LEVEL = 0.95
RESAMPLES = 10_000


@dataclass(frozen=True)
class Accuracy:
    """An accuracy with its bootstrap confidence interval."""

    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float

    def describe(self) -> str:
        return f"{self.accuracy:.3f} (95% CI {self.ci_low:.3f}-{self.ci_high:.3f}, n={self.n})"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bootstrap_mean_ci(values: Sequence[float], level: float, seed: int) -> tuple[float, float]:
    import numpy as np
    from scipy import stats

    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return (math.nan, math.nan)
    if np.all(data == data[0]):  # no spread: the interval is the point (scipy would warn and give NaN)
        return (float(data[0]), float(data[0]))
    res = stats.bootstrap(
        (data,),
        np.mean,
        confidence_level=level,
        n_resamples=RESAMPLES,
        method="percentile",
        random_state=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def accuracy_ci(outcomes: Sequence[bool], level: float = LEVEL, seed: int = 0) -> Accuracy:
    """Accuracy of ``outcomes`` (one bool per question) with a percentile bootstrap CI."""
    n = len(outcomes)
    correct = int(sum(bool(o) for o in outcomes))
    if n == 0:
        return Accuracy(0, 0, 0.0, 0.0, 1.0)
    if correct in (0, n):  # the bootstrap has nothing to resample: Wilson's interval is not a point
        from scipy import stats

        ci = stats.binomtest(correct, n).proportion_ci(confidence_level=level, method="wilson")
        return Accuracy(n, correct, correct / n, float(ci.low), float(ci.high))
    low, high = _bootstrap_mean_ci([float(bool(o)) for o in outcomes], level, seed)
    return Accuracy(n, correct, correct / n, low, high)


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on the same questions: accuracy difference (a - b), its CI, McNemar's p."""

    a: str
    b: str
    n: int
    accuracy_a: float
    accuracy_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    a_only: int  # questions only a got right
    b_only: int  # questions only b got right

    @property
    def significant(self) -> bool:
        """The exact test and the interval agree: p < 0.05 and the CI of the difference excludes 0."""
        return self.p_value < ALPHA and (self.ci_low > 0 or self.ci_high < 0)

    @property
    def p_value_text(self) -> str:
        return format_p(self.p_value)

    @property
    def winner(self) -> str | None:
        """``a``'s or ``b``'s name when the difference is significant, else None."""
        if not self.significant or self.diff == 0:
            return None
        return self.a if self.diff > 0 else self.b

    def verdict(self, keep: str | None = None) -> str:
        """One sentence, e.g. "best beats cot_sc5 by +6.0 points (95% CI +1.5 to +10.5, p = 0.01, n = 150)".

        ``keep``: what to keep when ``a`` does not significantly beat ``b`` (e.g. the baseline's name)."""
        stats = (
            f"{100 * self.diff:+.1f} points, 95% CI {100 * self.ci_low:+.1f} to {100 * self.ci_high:+.1f}, "
            f"{format_p(self.p_value)}, n = {self.n}"
        )
        if self.winner == self.a:
            return f"{self.a} beats {self.b} by {100 * self.diff:+.1f} points ({stats.split(', ', 1)[1]})"
        tail = f": keep {keep}" if keep else ""
        if self.winner == self.b:
            return f"{self.a} is worse than {self.b} ({stats}){tail}"
        return f"no significant difference between {self.a} and {self.b} ({stats}){tail}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


def format_p(p: float) -> str:
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.2f}" if p >= 0.1 else f"p = {p:.3f}"


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (a binomial test at 1/2)."""
    from scipy import stats

    if a_only + b_only == 0:
        return 1.0
    return float(stats.binomtest(a_only, a_only + b_only, 0.5).pvalue)


def paired_comparison(
    a: Mapping[str, bool],
    b: Mapping[str, bool],
    name_a: str = "a",
    name_b: str = "b",
    level: float = LEVEL,
    seed: int = 0,
) -> Comparison:
    """Compare two agents on the questions both answered (``{question_id: correct}`` each)."""
    ids = sorted(set(a) & set(b))
    xa = [bool(a[i]) for i in ids]
    xb = [bool(b[i]) for i in ids]
    n = len(ids)
    a_only = sum(p and not q for p, q in zip(xa, xb, strict=True))
    b_only = sum(q and not p for p, q in zip(xa, xb, strict=True))
    acc_a = sum(xa) / n if n else 0.0
    acc_b = sum(xb) / n if n else 0.0
    diffs = [float(p) - float(q) for p, q in zip(xa, xb, strict=True)]
    low, high = _bootstrap_mean_ci(diffs, level, seed) if n else (math.nan, math.nan)
    return Comparison(
        name_a, name_b, n, acc_a, acc_b, acc_a - acc_b, low, high, mcnemar_exact(a_only, b_only), a_only, b_only
    )


def questions_to_separate(
    a: Mapping[str, bool], b: Mapping[str, bool], alpha: float = ALPHA, power: float = 0.8
) -> int | None:
    """About how many questions a paired test needs to find the observed difference of ``a`` and ``b``
    significant with probability ``power`` (normal approximation); None when they tie."""
    from scipy import stats

    ids = sorted(set(a) & set(b))
    if not ids:
        return None
    d = [float(bool(a[i])) - float(bool(b[i])) for i in ids]
    mean = sum(d) / len(d)
    if mean == 0:
        return None
    var = sum((x - mean) ** 2 for x in d) / len(d)
    z = float(stats.norm.ppf(1 - alpha / 2)) + float(stats.norm.ppf(power))
    return max(len(d) + 1, math.ceil(z * z * max(var, 1e-9) / (mean * mean)))


def outcomes_by_id(records: Sequence[Any]) -> dict[str, bool]:
    """``{example id: correct}`` of evaluation records (dicts or objects), examples lost to endpoint
    failures left out (they say nothing about the agent)."""
    out: dict[str, bool] = {}
    for r in records:
        get = r.get if isinstance(r, Mapping) else lambda k, r=r: getattr(r, k, None)
        if get("error_kind") in ("endpoint", "internal"):
            continue
        out[str(get("id"))] = bool(get("correct"))
    return out
