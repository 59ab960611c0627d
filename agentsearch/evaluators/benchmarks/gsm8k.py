"""``gsm8k``: grade-school math, from a JSONL file or the Hugging Face hub."""

from __future__ import annotations

import re
from pathlib import Path

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import normalize_number
from agentsearch.evaluators.benchmarks.base import Benchmark, Example, existing_file
from agentsearch.evaluators.benchmarks.jsonl import _gold, _read_records, _text_field

_GSM8K_CALC = re.compile(r"<<[^<>]*>>")


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

    @classmethod
    def create(cls, arg: str | None = None, *, data: str | Path | None = None, seed: int = 0) -> GSM8K:
        if arg:
            raise DataError(f"benchmark 'gsm8k' takes no ':{arg}'")
        return cls(data)

    @classmethod
    def availability(cls) -> tuple[str, str]:
        return "--data FILE.jsonl", cls.HUB_ID

    def __init__(self, data: str | Path | None = None) -> None:
        super().__init__()
        self.data = existing_file(data)

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
