"""``math500``: MATH-500 (the PRM800K test split of MATH), from a JSONL file or the Hugging Face hub.

Filters are arguments of the name, so a study stores and resumes them with the benchmark:
``math500:level=5``, ``math500:level=4-5``, ``math500:subject=geometry``,
``math500:subject=algebra+number_theory,level=1-3`` (``+`` joins values, ``,`` joins filters).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from agentsearch.errors import DataError
from agentsearch.evaluators.benchmarks.base import Benchmark, Example
from agentsearch.evaluators.benchmarks.jsonl import _read_records, _text_field

#: MATH's seven subjects, as the dataset writes them.
SUBJECTS = (
    "Algebra",
    "Counting & Probability",
    "Geometry",
    "Intermediate Algebra",
    "Number Theory",
    "Prealgebra",
    "Precalculus",
)
LEVELS = (1, 2, 3, 4, 5)
_LEVEL_TEXT = re.compile(r"^(?:level\s*)?([1-5])$", re.IGNORECASE)


def _slug(subject: str) -> str:
    """``"Counting & Probability"``, ``"counting_and_probability"``, ``"Counting-and-probability"`` → one key."""
    return re.sub(r"[^a-z]+", "_", subject.lower().replace("&", " and ")).strip("_")


_BY_SLUG = {_slug(s): s for s in SUBJECTS}


def _parse_levels(value: str, where: str) -> frozenset[int]:
    levels: set[int] = set()
    for part in value.split("+"):
        lo, sep, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise DataError(f"{where}: level {part.strip()!r}: expected 1 to 5, a range like 4-5, or 3+5") from None
        if not (1 <= a <= b <= 5):
            raise DataError(f"{where}: level {part.strip()!r}: levels run from 1 to 5")
        levels.update(range(a, b + 1))
    return frozenset(levels)


def _parse_subjects(value: str, where: str) -> frozenset[str]:
    subjects: set[str] = set()
    for part in value.split("+"):
        subject = _BY_SLUG.get(_slug(part))
        if subject is None:
            raise DataError(
                f"{where}: unknown subject {part.strip()!r}; expected one of {', '.join(sorted(_BY_SLUG))}"
            )
        subjects.add(subject)
    return frozenset(subjects)


def _level(value: Any, where: str) -> int:
    """A record's level: ``3`` or ``"Level 3"`` (the original MATH files)."""
    if isinstance(value, int) and not isinstance(value, bool) and value in LEVELS:
        return value
    m = _LEVEL_TEXT.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        raise DataError(f"{where}: 'level' must be 1 to 5 (or 'Level 1' to 'Level 5'), got {value!r}")
    return int(m.group(1))


class MATH500(Benchmark):
    """MATH-500 (``HuggingFaceH4/MATH-500``, split ``test``): competition math, LaTeX answers.

    With ``data``: a JSONL file in the hub's format (``problem``, ``answer``, and ``solution``,
    ``subject``, ``level``, ``unique_id``); without: the hub through ``datasets`` (the ``hf`` extra).
    Ids are the ``unique_id`` (``test/algebra/1265.json``), so splits do not depend on the order of the
    lines; a record without one gets ``math500-`` + the sha1 of its problem. ``Example.meta`` holds
    ``subject`` and ``level``.

    Scoring: the final answer is the last ``\\boxed{...}`` of the reply, else its answer line
    (:func:`~agentsearch.evaluators.answers.extract_answer`), compared with the gold answer by
    :func:`~agentsearch.evaluators.answers.answers_match` (numbers exactly, then normalized text, then
    math-verify: ``\\frac{14}{3}`` = ``14/3``, ``(3, \\frac{\\pi}{2})`` = ``\\left(3,\\dfrac{\\pi}{2}\\right)``,
    ``\\text{(C)}`` = ``C``).
    """

    name = "math500"
    HUB_ID = "HuggingFaceH4/MATH-500"
    answer_kind = "text"  # LaTeX: a reply's last number is no answer to "(3, \frac{\pi}{2})"

    @classmethod
    def create(cls, arg: str | None = None, *, data: str | Path | None = None, seed: int = 0) -> MATH500:
        levels: frozenset[int] | None = None
        subjects: frozenset[str] | None = None
        for item in (arg or "").split(","):
            if not item.strip():
                continue
            key, eq, value = item.partition("=")
            key = key.strip().lower()
            where = f"math500:{arg}"
            if not eq or not value.strip():
                raise DataError(f"{where}: expected filters like level=5 or subject=geometry, got {item.strip()!r}")
            if key == "level" and levels is None:
                levels = _parse_levels(value, where)
            elif key == "subject" and subjects is None:
                subjects = _parse_subjects(value, where)
            elif key in ("level", "subject"):
                example = "level=4+5" if key == "level" else "subject=algebra+geometry"
                raise DataError(f"{where}: {key} given twice (join several values with +, e.g. {example})")
            else:
                raise DataError(f"{where}: unknown filter {key!r}; expected level=... or subject=...")
        return cls(data, levels=levels, subjects=subjects)

    @classmethod
    def availability(cls) -> tuple[str, str]:
        return "--data FILE.jsonl", cls.HUB_ID

    def __init__(
        self,
        data: str | Path | None = None,
        levels: frozenset[int] | set[int] | None = None,
        subjects: frozenset[str] | set[str] | None = None,
    ) -> None:
        super().__init__()
        self.data = Path(data) if data is not None else None
        if self.data is not None:
            if not self.data.exists():
                raise DataError(f"{self.data}: no such file")
            if self.data.is_dir():
                raise DataError(f"{self.data}: is a directory, expected a MATH-500 JSONL file")
        self.levels = frozenset(levels) if levels else None
        self.subjects = frozenset(subjects) if subjects else None
        filters = []
        if self.levels:
            filters.append("level=" + "+".join(str(v) for v in sorted(self.levels)))
        if self.subjects:
            filters.append("subject=" + "+".join(sorted(_slug(s) for s in self.subjects)))
        self.name = "math500" + (":" + ",".join(filters) if filters else "")

    @property
    def source(self) -> str:
        return str(self.data) if self.data is not None else f"{self.HUB_ID} (test)"

    def examples(self) -> list[Example]:
        return self._cached(self._load)

    def _load(self) -> list[Example]:
        rows = self._file_rows() if self.data is not None else self._hub_rows()
        pool: list[Example] = []
        first: dict[str, str] = {}
        for where, record in rows:
            ex = self._example(record, where)
            if ex.id in first:
                raise DataError(f"{where}: duplicate unique_id {ex.id!r} (first at {first[ex.id]})")
            first[ex.id] = where
            if self._keep(ex, where):
                pool.append(ex)
        if not pool:
            raise DataError(f"{self.name}: no problem of {self.source} matches the filters")
        return pool

    def _file_rows(self):
        assert self.data is not None
        for line_no, record in _read_records(self.data):
            yield f"{self.data}:{line_no}", record

    def _hub_rows(self):
        try:
            import datasets  # optional dependency (the `hf` extra)
        except ImportError:
            raise DataError(
                "math500 needs --data FILE.jsonl offline, or `pip install 'agentsearch[hf]'` and network access"
            ) from None
        try:
            ds = datasets.load_dataset(self.HUB_ID, split="test")
        except Exception as e:  # noqa: BLE001 - network, auth, cache: all mean "cannot load"
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise DataError(
                f"math500: cannot load {self.HUB_ID} from the Hugging Face hub ({reason}); pass --data FILE.jsonl"
            ) from None
        for i, row in enumerate(ds):
            yield f"{self.HUB_ID}[test][{i}]", dict(row)

    @staticmethod
    def _example(record: dict, where: str) -> Example:
        problem = _text_field(record, "problem", where)
        answer = _text_field(record, "answer", where, numbers=True).strip()
        solution = _text_field(record, "solution", where) if record.get("solution") is not None else ""
        meta: dict[str, Any] = {}
        if record.get("subject") is not None:
            subject = _text_field(record, "subject", where)
            meta["subject"] = _BY_SLUG.get(_slug(subject), subject.strip())
        if record.get("level") is not None:
            meta["level"] = _level(record["level"], where)
        if record.get("unique_id") is not None:
            ex_id = _text_field(record, "unique_id", where, numbers=True).strip()
        else:
            ex_id = "math500-" + hashlib.sha1(problem.encode()).hexdigest()[:12]
        return Example(ex_id, problem.strip(), answer, solution.strip(), meta)

    def _keep(self, ex: Example, where: str) -> bool:
        if self.levels is not None:
            if "level" not in ex.meta:
                raise DataError(f"{where}: no 'level' field (needed by the level filter)")
            if ex.meta["level"] not in self.levels:
                return False
        if self.subjects is not None:
            if "subject" not in ex.meta:
                raise DataError(f"{where}: no 'subject' field (needed by the subject filter)")
            if ex.meta["subject"] not in self.subjects:
                return False
        return True

    @property
    def metric_description(self) -> str:
        return (
            "The final answer is a math expression in LaTeX: a number, a fraction such as \\frac{14}{3}, a root, "
            "a multiple of \\pi, a tuple or interval such as (3, \\frac{\\pi}{2}), an expression, or a word or "
            "choice in \\text{...} such as \\text{(C)}. It is read from the last \\boxed{...} of the reply, else "
            "its answer line ('Answer: ...', 'the final answer is ...'), and compared with the gold answer by "
            "math-verify: equivalent forms count (\\frac{1}{2} = 1/2 = 0.5; spacing, \\dfrac and \\left( \\right) "
            "do not matter), a different value or order does not."
        )

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        if self.levels:
            info["levels"] = sorted(self.levels)
        if self.subjects:
            info["subjects"] = sorted(self.subjects)
        return info
