"""``reasoning_gym:<task>``: procedurally generated tasks, scored by reasoning-gym."""

from __future__ import annotations

import difflib
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import extract_answer
from agentsearch.evaluators.benchmarks.base import Benchmark, Example, Score, SplitSpec, split_examples

log = logging.getLogger(__name__)


def _reasoning_gym_tasks() -> list[str]:
    try:
        from reasoning_gym.factory import DATASETS
    except ImportError:  # pragma: no cover - reasoning-gym is a dependency
        return []
    return sorted(DATASETS)


_RG_EXAMPLES = ("basic_arithmetic", "chain_sum", "products", "leg_counting", "gsm_symbolic")


class ReasoningGym(Benchmark):
    """A reasoning-gym task, generated offline: ``reasoning_gym.create_dataset(task, size, seed)``.

    ``size`` is the pool size and ``seed`` the generator's seed (not the split seed). Items depend
    only on ``(seed, index)``, so ids are ``<task>-<seed>-<index>``. ``Example.meta`` is the
    reasoning-gym entry (``question``, ``answer``, ``metadata``).

    :meth:`split`: ``train_size=None`` means 200 (:attr:`DEFAULT_TRAIN_SIZE`), not "the rest"; when all
    three sizes are counts the pool grows to ``test + val + train`` if ``size`` is smaller, so any
    requested count can be generated.

    :meth:`metric` uses the task's own scorer on the extracted answer and counts only a perfect score
    (reasoning-gym gives partial credit, e.g. 0.8 for ``"72.0"`` against ``"72"`` on some tasks).
    """

    DEFAULT_TRAIN_SIZE = 200

    @classmethod
    def create(cls, arg: str | None = None, *, data: str | Path | None = None, seed: int = 0) -> ReasoningGym:
        if data is not None:
            raise DataError(f"reasoning_gym:{arg or ''} is generated, it takes no --data (got {data})")
        if not arg:
            raise DataError("benchmark 'reasoning_gym' names no task; e.g. reasoning_gym:basic_arithmetic")
        return cls(arg, seed=seed)

    @classmethod
    def names(cls) -> list[str]:
        return [f"reasoning_gym:{t}" for t in _reasoning_gym_tasks()]

    @classmethod
    def availability(cls) -> tuple[str, str]:
        return "generated", ""

    def __init__(self, task: str, size: int = 500, seed: int = 0) -> None:
        super().__init__()
        tasks = _reasoning_gym_tasks()
        if task not in tasks:
            close = difflib.get_close_matches(task, tasks, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise DataError(
                f"unknown reasoning_gym task {task!r}; {hint}valid tasks include "
                f"{', '.join(_RG_EXAMPLES)} ({len(tasks)} in all, see list_benchmarks())"
            )
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise DataError(f"reasoning_gym:{task}: size must be a positive integer, got {size!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise DataError(f"reasoning_gym:{task}: seed must be an integer, got {seed!r}")
        self.task, self.size, self.seed = task, size, seed
        self.name = f"reasoning_gym:{task}"
        self._datasets: dict[int, Any] = {}
        self._pools: dict[int, list[Example]] = {}

    @property
    def source(self) -> str:
        return f"reasoning_gym.create_dataset({self.task!r}, size={self.size}, seed={self.seed})"

    def _dataset(self, size: int) -> Any:
        with self._cache_lock:
            ds = self._datasets.get(size)
            if ds is None:
                import reasoning_gym

                try:
                    ds = reasoning_gym.create_dataset(self.task, size=size, seed=self.seed)
                except Exception as e:  # noqa: BLE001 - a task needing extra config or data
                    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    raise DataError(f"{self.name}: cannot create the dataset ({reason})") from None
                self._datasets[size] = ds
            return ds

    def _generate(self, size: int) -> list[Example]:
        if size not in self._pools:
            ds = self._dataset(size)
            pool = []
            for idx in range(size):
                try:
                    entry = ds[idx]
                except Exception as e:  # noqa: BLE001
                    reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                    raise DataError(f"{self.name}: cannot generate item {idx} ({reason})") from None
                pool.append(
                    Example(
                        id=f"{self.task}-{self.seed}-{idx}",
                        question=str(entry["question"]),
                        answer=str(entry["answer"]),
                        meta=entry,
                    )
                )
            with self._cache_lock:
                self._pools.setdefault(size, pool)
        return list(self._pools[size])

    def examples(self) -> list[Example]:
        return self._generate(self.size)

    def split(self, spec: SplitSpec) -> dict[str, list[Example]]:
        if spec.train_size is None:
            spec = replace(spec, train_size=self.DEFAULT_TRAIN_SIZE)
        sizes = (spec.test_size, spec.val_size, spec.train_size)
        pool_size = self.size
        if all(isinstance(s, int) for s in sizes):
            pool_size = max(pool_size, sum(sizes))  # type: ignore[arg-type]
        return split_examples(self._generate(pool_size), spec, self.name)

    def score(self, example: Example, prediction: str) -> Score:
        """The task's own scorer on the extracted answer; only a perfect 1.0 is correct."""
        entry = example.meta
        if not entry or "answer" not in entry:
            return super().score(example, prediction)
        extracted = extract_answer(prediction)
        if not extracted:
            return Score(False, 0.0, "")
        try:
            value = float(self._dataset(self.size).score_answer(answer=extracted, entry=entry))
        except Exception as exc:  # noqa: BLE001 - a scorer crash is a wrong answer, recorded as such
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            log.warning("%s: the scorer failed on example %s (%s); scored wrong", self.name, example.id, reason)
            return Score(False, 0.0, extracted, error=f"scoring error: {reason}")
        return Score(value == 1.0, value, extracted)

    @property
    def metric_description(self) -> str:
        return (
            f"The final answer is read from the reply (an 'Answer:' line, \\boxed{{...}}, 'the answer is ...') "
            f"and scored by reasoning-gym's own scorer for {self.task}; only a perfect score counts as correct."
        )

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "task": self.task, "generator_seed": self.seed}
