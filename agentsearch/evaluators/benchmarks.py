"""Benchmarks: where examples come from, how they are split, and how an answer is scored.

A :class:`Benchmark` holds a fixed *pool* of :class:`Example` (``examples()``), splits it into
``train``/``val``/``test`` (``split(spec)``, ``load(name, spec)``) and scores a prediction:
``score(example, prediction) -> Score(correct, value, extracted)`` returns the final answer it read
too (as AFlow's ``calculate_score`` does), so records and reports show what was compared;
``extracted == ""`` is a reply with no answer (``no_answer``). ``metric(...)`` is ``score(...).correct``.
``answer_kind`` (``number`` or ``text``) says what the answers are; the text output format reads a
reply's last number as a last resort only for ``number`` benchmarks.

Splits (:class:`SplitSpec`, :func:`split_examples`):

* Defaults: ``val_size=50``, ``test_size=100``, ``train_size=None`` (the rest of the pool; for
  ``reasoning_gym:*`` benchmarks ``None`` means 200, see :class:`ReasoningGym`), ``seed=0``.
* A size is a count (an ``int``) or a fraction of the pool (a ``float`` in (0, 1), rounded half up).
  A whole ``float`` such as ``50.0`` is read as a count (``1.0`` is refused as ambiguous).
* The pool is ordered by ``sha256(f"{seed}:{example.id}")``, then ``test`` is taken first, then
  ``val``, then ``train``; within a split the examples keep that hashed (shuffled) order. The three
  splits never overlap, and they depend only on the seed, the sizes and the example ids: not on the
  machine, the Python version or the order of the lines in a data file. Same flags, same split.
  Growing ``--train-size`` never changes ``test`` or ``val``.
* Sizes that do not fit the pool raise :class:`~agentsearch.errors.DataError` naming the flag, e.g.
  ``--test-size 9000 exceeds the 7473 examples of gsm8k``.

Benchmarks (:func:`get_benchmark` by name, :func:`list_benchmarks`):

* ``gsm8k`` -- :class:`GSM8K`, grade-school math; ``--data FILE.jsonl`` in the Hugging Face
  ``openai/gsm8k`` format, or the hub through the optional ``datasets`` package.
* ``jsonl`` -- :class:`JSONL`, any JSONL file with ``question`` and ``answer`` fields (needs ``--data``).
* ``reasoning_gym:<task>`` -- :class:`ReasoningGym`, procedurally generated offline, e.g.
  ``reasoning_gym:basic_arithmetic``, ``reasoning_gym:chain_sum``, ``reasoning_gym:products``,
  ``reasoning_gym:leg_counting``, ``reasoning_gym:gsm_symbolic``.

Every bad dataset input raises ``DataError`` with a one-line message naming the file and line
(``data.jsonl:17: no 'answer' field``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import math
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import answers_match, extract_answer, normalize_number

__all__ = [
    "GSM8K",
    "JSONL",
    "SPLITS",
    "Benchmark",
    "Example",
    "ReasoningGym",
    "Score",
    "SplitSpec",
    "get_benchmark",
    "list_benchmarks",
    "split_examples",
]

log = logging.getLogger(__name__)

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

    @property
    def no_answer(self) -> bool:
        return not self.extracted.strip()


# --------------------------------------------------------------------------------------------------
# splits

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


# --------------------------------------------------------------------------------------------------
# base class


class Benchmark(ABC):
    """A pool of examples with deterministic splits and a pass/fail metric."""

    name: str = "benchmark"

    def __init__(self) -> None:
        self._cache_lock = threading.Lock()
        self._pool: list[Example] | None = None

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

    def describe(self) -> dict[str, Any]:
        """Name, pool size and source, for logs."""
        return {"name": self.name, "size": len(self.examples()), "source": self.source}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"


# --------------------------------------------------------------------------------------------------
# JSONL files

_GSM8K_CALC = re.compile(r"<<[^<>]*>>")


def _read_records(path: Path):
    """Yield ``(line_no, record)`` for the non-blank lines of a JSONL file; DataError on bad input."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a JSONL file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    found = False
    # split("\n"), not splitlines(): U+2028 and friends may appear raw inside JSON strings.
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        found = True
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{line_no}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
        yield line_no, record
    if not found:
        raise DataError(f"{path}: empty file, no examples")


def _text_field(record: dict, key: str, where: str, *, numbers: bool = False) -> str:
    if key not in record:
        raise DataError(f"{where}: no {key!r} field")
    value = record[key]
    if numbers and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise DataError(f"{where}: empty {key!r} field")
    return value


def _gold(raw: str, where: str) -> tuple[str, str]:
    """(final answer, solution) from an answer field: ``#### N`` / ``\\boxed{N}`` are extracted."""
    if "####" in raw or "\\boxed" in raw or "\\fbox" in raw:
        answer = extract_answer(raw)
        if not answer:
            raise DataError(f"{where}: empty final answer in 'answer' field")
        return answer, raw.strip()
    return raw.strip(), ""


class JSONL(Benchmark):
    """Any JSONL file of ``{"question": ..., "answer": ...}`` objects.

    * ``answer``: a string (or a JSON number); a ``#### N`` or ``\\boxed{N}`` answer is reduced to its
      final answer and the full text kept as the solution. An optional ``solution`` field wins.
    * ``id`` (optional, string or integer): must be unique. Without it, the id is ``q`` + the first
      12 hex digits of the sha1 of the question (``-2``, ``-3``... for repeated questions), so that
      splits do not depend on the order of the lines.
    * Other fields go to ``Example.meta``. Blank lines are skipped.
    """

    name = "jsonl"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file")

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def label(self) -> str:
        return str(self.path)

    def examples(self) -> list[Example]:
        return self._cached(self._read)

    def _read(self) -> list[Example]:
        out: list[Example] = []
        first_line: dict[str, int] = {}
        for line_no, record in _read_records(self.path):
            where = f"{self.path}:{line_no}"
            question = _text_field(record, "question", where)
            answer, solution = _gold(_text_field(record, "answer", where, numbers=True), where)
            if record.get("solution") is not None:
                solution = _text_field(record, "solution", where)
            if record.get("id") is not None:
                raw_id = record["id"]
                if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
                    raise DataError(f"{where}: 'id' must be a non-empty string or an integer")
                ex_id = str(raw_id).strip()
                if ex_id in first_line:
                    raise DataError(f"{where}: duplicate id {ex_id!r} (first on line {first_line[ex_id]})")
            else:
                base = "q" + hashlib.sha1(question.encode()).hexdigest()[:12]
                ex_id, k = base, 1
                while ex_id in first_line:
                    k += 1
                    ex_id = f"{base}-{k}"
            first_line[ex_id] = line_no
            meta = {k: v for k, v in record.items() if k not in ("question", "answer", "solution", "id")}
            out.append(Example(ex_id, question.strip(), answer, solution, meta))
        return out


class GSM8K(Benchmark):
    """GSM8K (``openai/gsm8k``, config ``main``): grade-school math word problems, integer answers.

    With ``data``: a JSONL file in the hub's format (``question``, ``answer`` ending in ``#### N``);
    ids are ``gsm8k-<line number>``. Without: the hub through ``datasets`` (optional dependency), the
    pool being the train split then the test split (ids ``gsm8k-train-<i>``, ``gsm8k-test-<i>``).
    ``Example.answer`` is the canonical number (``"1,080"`` becomes ``"1080"``); ``Example.solution``
    is the reasoning with the calculator annotations (``<<48/2=24>>``) removed.
    """

    name = "gsm8k"
    HUB_ID = "openai/gsm8k"
    answer_kind = "number"

    def __init__(self, data: str | Path | None = None) -> None:
        super().__init__()
        self.data = Path(data) if data is not None else None
        if self.data is not None and not self.data.exists():
            raise DataError(f"{self.data}: no such file")

    @property
    def source(self) -> str:
        return str(self.data) if self.data is not None else f"{self.HUB_ID} (main)"

    def examples(self) -> list[Example]:
        return self._cached(self._read_file if self.data is not None else self._read_hub)

    @staticmethod
    def _example(ex_id: str, question: str, raw_answer: str, where: str) -> Example:
        answer, _ = _gold(raw_answer, where)
        answer = normalize_number(answer) or answer
        solution = _GSM8K_CALC.sub("", raw_answer).strip()
        return Example(ex_id, question.strip(), answer, solution)

    def _read_file(self) -> list[Example]:
        assert self.data is not None
        out = []
        for line_no, record in _read_records(self.data):
            where = f"{self.data}:{line_no}"
            question = _text_field(record, "question", where)
            raw = _text_field(record, "answer", where, numbers=True)
            out.append(self._example(f"gsm8k-{line_no}", question, raw, where))
        return out

    def _read_hub(self) -> list[Example]:
        try:
            import datasets  # optional dependency
        except ImportError:
            raise DataError(
                "gsm8k needs --data FILE.jsonl offline, or `pip install datasets` and network access"
            ) from None
        try:
            ds = datasets.load_dataset(self.HUB_ID, "main")
        except Exception as e:  # noqa: BLE001 - network, auth, cache: all mean "cannot load"
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise DataError(
                f"gsm8k: cannot load {self.HUB_ID} from the Hugging Face hub ({reason}); pass --data FILE.jsonl"
            ) from None
        out = []
        for split in ("train", "test"):
            for i, row in enumerate(ds[split]):
                where = f"{self.HUB_ID}[{split}][{i}]"
                question = _text_field(row, "question", where)
                raw = _text_field(row, "answer", where, numbers=True)
                out.append(self._example(f"gsm8k-{split}-{i}", question, raw, where))
        return out


# --------------------------------------------------------------------------------------------------
# reasoning-gym


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


# --------------------------------------------------------------------------------------------------
# registry

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
