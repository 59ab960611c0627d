"""``jsonl``: any JSONL file of question/answer records (and the JSONL readers GSM8K shares)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import extract_answer
from agentsearch.evaluators.benchmarks.base import Benchmark, Example


def read_text(path: Path) -> str:
    """A data file's text (gzip-compressed if its name ends in .gz; a UTF-8 BOM dropped); DataError naming the
    file when it can't be read as UTF-8."""
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8-sig") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None


def _read_records(path: Path, what: str = "examples"):
    """Yield ``(line_no, record)`` for the non-blank lines of a JSONL file; DataError on bad input."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a JSONL file")
    text = read_text(path)
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
        raise DataError(f"{path}: empty file, no {what}")


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

    @classmethod
    def create(cls, arg: str | None = None, *, data: str | Path | None = None, seed: int = 0) -> JSONL:
        if arg:
            raise DataError(f"benchmark 'jsonl' takes no ':{arg}'")
        if data is None:
            raise DataError("benchmark jsonl needs --data FILE.jsonl")
        return cls(data)

    @classmethod
    def availability(cls) -> tuple[str, str]:
        return "--data FILE.jsonl", ""

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
