"""Benchmarks by name: :func:`get_benchmark`, :func:`list_benchmarks`."""

from __future__ import annotations

from pathlib import Path

from agentsearch.errors import DataError
from agentsearch.evaluators.benchmarks.base import Benchmark
from agentsearch.evaluators.benchmarks.gsm8k import GSM8K
from agentsearch.evaluators.benchmarks.jsonl import JSONL
from agentsearch.evaluators.benchmarks.reasoning_gym import ReasoningGym, _reasoning_gym_tasks

_NAMES_HINT = "gsm8k, jsonl (with --data FILE.jsonl) or reasoning_gym:<task> (e.g. reasoning_gym:basic_arithmetic)"


def list_benchmarks() -> list[str]:
    """Every benchmark name :func:`get_benchmark` accepts."""
    return ["gsm8k", "jsonl"] + [f"reasoning_gym:{t}" for t in _reasoning_gym_tasks()]


def get_benchmark(name: str, data: str | Path | None = None, seed: int = 0) -> Benchmark:
    """The benchmark called ``name``; ``data`` is its file, ``seed`` the generator seed of procedural
    benchmarks (reasoning_gym). The split seed is :attr:`SplitSpec.seed`."""
    key = (name or "").strip()
    lowered = key.lower()
    if lowered == "gsm8k":
        return GSM8K(data)
    if lowered == "jsonl":
        if data is None:
            raise DataError("benchmark jsonl needs --data FILE.jsonl")
        return JSONL(data)
    if lowered.startswith(("reasoning_gym:", "reasoning-gym:", "rg:")):
        task = key.split(":", 1)[1].strip()
        if data is not None:
            raise DataError(f"{key} is generated, it takes no --data (got {data})")
        if not task:
            raise DataError(f"benchmark {key!r} names no task; e.g. reasoning_gym:basic_arithmetic")
        return ReasoningGym(task, seed=seed)
    raise DataError(f"unknown benchmark {name!r}; expected {_NAMES_HINT}")
