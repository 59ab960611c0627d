"""Benchmarks by name: :data:`BENCHMARKS`, :func:`get_benchmark`, :func:`list_benchmarks`.

A new benchmark is its module (a :class:`~agentsearch.evaluators.benchmarks.base.Benchmark` subclass,
with ``create`` when it takes ``:ARG`` or ``--data``) and one ``BENCHMARKS.add`` line here; a plug-in
outside the package calls ``BENCHMARKS.add(BenchmarkEntry(..., target=MyBenchmark))``. The
``--benchmark`` help text and error messages are made from the entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agentsearch.errors import DataError
from agentsearch.evaluators.benchmarks.base import Benchmark
from agentsearch.registry import Entry, Registry


@dataclass(frozen=True)
class BenchmarkEntry(Entry):
    """``usage`` is how the name is written on the command line (``reasoning_gym:<task>``), default the name."""

    usage: str = ""

    def hint(self) -> str:
        usage = self.usage or self.name
        return f"{usage} ({self.help})" if self.help else usage


def _unknown(name: str) -> DataError:
    return DataError(f"unknown benchmark {name!r}; expected {names_hint()}")


BENCHMARKS: Registry[BenchmarkEntry] = Registry("benchmark", "--benchmark", error=_unknown)
BENCHMARKS.add(BenchmarkEntry("gsm8k", "", "agentsearch.evaluators.benchmarks.gsm8k:GSM8K"))
BENCHMARKS.add(BenchmarkEntry("jsonl", "with --data FILE.jsonl", "agentsearch.evaluators.benchmarks.jsonl:JSONL"))
BENCHMARKS.add(
    BenchmarkEntry(
        "reasoning_gym",
        "e.g. reasoning_gym:basic_arithmetic",
        "agentsearch.evaluators.benchmarks.reasoning_gym:ReasoningGym",
        aliases=("reasoning-gym", "rg"),
        usage="reasoning_gym:<task>",
    )
)
BENCHMARKS.add(
    BenchmarkEntry(
        "math500",
        "MATH-500; filters e.g. math500:level=5,subject=geometry",
        "agentsearch.evaluators.benchmarks.math500:MATH500",
        aliases=("math-500",),
        usage="math500[:filters]",
    )
)
BENCHMARKS.add(
    BenchmarkEntry(
        "bbh", "BIG-Bench Hard, e.g. bbh:date_understanding", "agentsearch.evaluators.benchmarks.bbh:BBH",
        usage="bbh:<task>|all",
    )
)  # fmt: skip
BENCHMARKS.add(BenchmarkEntry("humaneval", "Python code", "agentsearch.evaluators.benchmarks.humaneval:HumanEval"))


def names_hint() -> str:
    """The registered benchmarks in words, for help text and errors."""
    hints = [entry.hint() for entry in BENCHMARKS]
    return hints[0] if len(hints) == 1 else f"{', '.join(hints[:-1])} or {hints[-1]}"


def list_benchmarks() -> list[str]:
    """Every benchmark name :func:`get_benchmark` accepts."""
    return [name for entry in BENCHMARKS for name in entry.load().names()]


def get_benchmark(name: str, data: str | Path | None = None, seed: int = 0) -> Benchmark:
    """The benchmark called ``name`` (``family`` or ``family:arg``); ``data`` is its file, ``seed`` the generator
    seed of procedural benchmarks (reasoning_gym). The split seed is :attr:`SplitSpec.seed`."""
    family, _, arg = (name or "").strip().partition(":")
    cls = BENCHMARKS.get(family.strip().lower()).load()
    return cls.create(arg.strip() or None, data=data, seed=seed)
