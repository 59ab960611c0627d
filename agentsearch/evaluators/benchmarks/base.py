"""Benchmark base: examples, scores, deterministic splits (see the package docstring)."""

from __future__ import annotations

import hashlib
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import answers_match, extract_answer, normalize_number

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    """One benchmark item. ``meta`` is excluded from equality and hashing (it may hold dicts)."""

    id: str
    question: str
    answer: str
    solution: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Score:
    """How a prediction scored: ``correct`` (what accuracy counts), ``value`` (1.0/0.0, or a scorer's
    partial credit; only 1.0 is correct) and ``extracted``, the final answer read from the prediction
    (``""``: the reply had no answer)."""

    correct: bool
    value: float
    extracted: str
    error: str | None = None  # the scorer itself failed (the prediction is counted wrong, and says why)
    detail: str = ""  # why the answer scored so, when there is more to say (a failed test, a timeout)

    @property
    def no_answer(self) -> bool:
        return not self.extracted.strip()


_FLAGS = {"val_size": "--val-size", "test_size": "--test-size", "train_size": "--train-size"}


def _check_size(value: Any, attr: str, allow_none: bool) -> int | float | None:
    flag = _FLAGS[attr]
    if value is None:
        if allow_none:
            return None
        raise DataError(f"{flag} is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{flag} {value!r}: expected a count (an integer) or a fraction in (0, 1)")
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{flag} {value}: expected a count ≥ 0 or a fraction in (0, 1)")
        if 0 < value < 1:
            return value
        if value == 1.0:
            raise DataError(f"{flag} 1.0 is ambiguous: use a fraction in (0, 1) or an integer count")
        if not value.is_integer():
            raise DataError(f"{flag} {value}: a fraction must be in (0, 1); a count must be whole")
        return int(value)
    if value < 0:
        raise DataError(f"{flag} {value}: must be ≥ 0")
    return value


def _resolve(value: int | float, n: int) -> int:
    if isinstance(value, float):  # a fraction: exact decimal arithmetic, rounded half up
        return math.floor(Fraction(repr(value)) * n + Fraction(1, 2))
    return value


def _fmt(value: int | float, n: int) -> str:
    return f"{value} ({_resolve(value, n)})" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class SplitSpec:
    """How to split a pool: sizes are counts or fractions of the pool; ``train_size=None`` = the rest."""

    seed: int = 0
    val_size: int | float = 50
    test_size: int | float = 100
    train_size: int | float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise DataError(f"--seed {self.seed!r}: expected an integer")
        for attr in ("val_size", "test_size", "train_size"):
            object.__setattr__(self, attr, _check_size(getattr(self, attr), attr, attr == "train_size"))

    @staticmethod
    def parse_size(text: str, flag: str = "--size") -> int | float:
        """Parse a command-line size: ``"50"`` is a count, ``"0.2"`` a fraction."""
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise DataError(f"{flag} {text!r}: expected a count or a fraction in (0, 1)") from None

    def counts(self, pool_size: int, label: str = "the pool") -> tuple[int, int, int]:
        """``(test, val, train)`` counts for a pool of ``pool_size``; DataError if they do not fit."""
        n = pool_size
        test, val = _resolve(self.test_size, n), _resolve(self.val_size, n)
        where = f"the {n} examples of {label}"
        for attr, count in (("test_size", test), ("val_size", val)):
            if count > n:
                raise DataError(f"{_FLAGS[attr]} {_fmt(getattr(self, attr), n)} exceeds {where}")
        if self.train_size is None:
            if test + val > n:
                raise DataError(
                    f"--test-size {_fmt(self.test_size, n)} + --val-size {_fmt(self.val_size, n)} "
                    f"= {test + val} exceeds {where}"
                )
            return test, val, n - test - val
        train = _resolve(self.train_size, n)
        if train > n:
            raise DataError(f"--train-size {_fmt(self.train_size, n)} exceeds {where}")
        if test + val + train > n:
            raise DataError(
                f"--test-size {_fmt(self.test_size, n)} + --val-size {_fmt(self.val_size, n)} + "
                f"--train-size {_fmt(self.train_size, n)} = {test + val + train} exceeds {where}"
            )
        return test, val, train


def _order_key(seed: int, example_id: str) -> str:
    return hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()


def split_examples(pool: Sequence[Example], spec: SplitSpec, label: str = "the pool") -> dict[str, list[Example]]:
    """Split ``pool`` into ``{"train", "val", "test"}`` (see the module docstring)."""
    seen: set[str] = set()
    for ex in pool:
        if ex.id in seen:
            raise DataError(f"{label}: duplicate example id {ex.id!r}")
        seen.add(ex.id)
    test_n, val_n, train_n = spec.counts(len(pool), label)
    ordered = sorted(pool, key=lambda ex: _order_key(spec.seed, ex.id))
    return {
        "train": ordered[test_n + val_n : test_n + val_n + train_n],
        "val": ordered[test_n : test_n + val_n],
        "test": ordered[:test_n],
    }


def existing_file(data: str | Path | None) -> Path | None:
    """``--data`` as a path (None: none given); DataError when the file does not exist."""
    if data is None:
        return None
    path = Path(data)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    return path


class Benchmark(ABC):
    """A pool of examples with deterministic splits and a pass/fail metric."""

    name: str = "benchmark"

    def __init__(self) -> None:
        self._cache_lock = threading.Lock()
        self._pool: list[Example] | None = None

    @classmethod
    def create(cls, arg: str | None = None, *, data: str | Path | None = None, seed: int = 0) -> Benchmark:
        """The benchmark for ``--benchmark NAME[:ARG] [--data FILE]`` (``seed``: the generator seed of procedural
        benchmarks). By default a benchmark takes neither an ``:ARG`` nor ``--data``; override to accept them."""
        if arg:
            raise DataError(f"benchmark {cls.name!r} takes no ':{arg}'")
        if data is not None:
            raise DataError(f"benchmark {cls.name!r} takes no --data (got {data})")
        return cls()

    @classmethod
    def names(cls) -> list[str]:
        """Every ``--benchmark`` value this class answers to (one per task for families of tasks)."""
        return [cls.name]

    @classmethod
    def availability(cls) -> tuple[str, str]:
        """``(offline, hub)`` for ``main.py benchmarks``: how to run it without network (``""``: it cannot),
        and the Hugging Face dataset it loads when online without ``--data`` (``""``: none). By default a
        benchmark ships its data (it takes no ``--data``)."""
        return "built in", ""

    @abstractmethod
    def examples(self) -> list[Example]:
        """The whole pool, in a fixed order."""

    @property
    def source(self) -> str:
        """Where the examples come from (a file path, a hub id, a generator)."""
        return self.name

    @property
    def label(self) -> str:
        """How error messages name this benchmark."""
        return self.name

    def _cached(self, load: Callable[[], list[Example]]) -> list[Example]:
        """``load()`` once per instance (thread-safe); a copy of the cached list."""
        # setdefault: also works for subclasses that do not call Benchmark.__init__
        lock = self.__dict__.setdefault("_cache_lock", threading.Lock())
        if self.__dict__.get("_pool") is None:
            with lock:
                if self.__dict__.get("_pool") is None:
                    self._pool = load()
        return list(self._pool)

    def split(self, spec: SplitSpec) -> dict[str, list[Example]]:
        """``{"train", "val", "test"}`` lists of examples, disjoint and deterministic."""
        return split_examples(self.examples(), spec, self.label)

    def load(self, split: str, spec: SplitSpec) -> list[Example]:
        """One split: ``"train"``, ``"val"`` or ``"test"``."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected train, val or test")
        return self.split(spec)[split]

    @property
    def answer_kind(self) -> str:
        """``number`` when every answer of the pool is a number, else ``text``."""
        kind = self.__dict__.get("_answer_kind")
        if kind is None:
            pool = self.examples()
            numeric = bool(pool) and all(normalize_number(ex.answer) is not None for ex in pool)
            kind = self.__dict__["_answer_kind"] = "number" if numeric else "text"
        return kind

    @property
    def metric_description(self) -> str:
        """How an answer is scored, in words (what LLM proposers are told)."""
        if self.answer_kind == "number":
            return (
                "The final answer is a number. It is read from the reply (an 'Answer:' line, \\boxed{...}, "
                "'the answer is ...', else the last number) and compared with the gold answer as a number "
                "(1,080 = 1080.0; 3/4 = 0.75)."
            )
        return (
            "The final answer is a short text read from the reply (an 'Answer:' line, \\boxed{...}, "
            "'the answer is ...') and compared with the gold answer after normalization (case, spacing, "
            "punctuation; numbers as numbers, math expressions by math-verify)."
        )

    def extract(self, prediction: str) -> str:
        """The final answer in ``prediction`` as this benchmark compares it (``""``: none)."""
        text = extract_answer(prediction)
        if self.answer_kind == "number":
            return normalize_number(text) or text
        return text

    def score(self, example: Example, prediction: str) -> Score:
        """Score ``prediction`` against the gold answer; returns the extracted answer too."""
        extracted = self.extract(prediction)
        correct = bool(extracted) and answers_match(extracted, example.answer)
        return Score(correct, 1.0 if correct else 0.0, extracted)

    def metric(self, example: Example, prediction: str) -> bool:
        """Whether the final answer in ``prediction`` matches the gold answer."""
        return self.score(example, prediction).correct

    def group(self, example: Example) -> str | None:
        """The task ``example`` belongs to in a benchmark of several tasks (``bbh:all``), for per-task and
        macro-averaged scores; ``None`` for a single-task benchmark."""
        return None

    def describe(self) -> dict[str, Any]:
        """Name, pool size and source, for logs."""
        return {"name": self.name, "size": len(self.examples()), "source": self.source}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"
