"""``bbh:<task>``: the 27 BIG-Bench Hard tasks, from the upstream files or the Hugging Face hub.

``bbh:<task> --data FILE.json`` reads one upstream file (``{"examples": [{"input", "target"}, ...]}``);
``--data DIR`` reads ``DIR/<task>.json``; without ``--data`` the task is loaded from the hub
(``lukaemon/bbh``, the same files, with the ``hf`` extra). ``bbh:all`` pools every task found (in ``DIR``,
or all 27 from the hub); ``main.py evaluate`` then reports each task's accuracy and their macro average.

Each task is scored by its answer type (:data:`TASKS`): multiple choice (``(A)``..., where ``A``, ``(A)``,
``A)`` and the option's text all count as option A), True/False, Yes/No, valid/invalid, numbers, the
closing brackets of ``dyck_languages`` (spaces do not matter) and the sorted words of ``word_sorting``.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

from agentsearch.errors import DataError
from agentsearch.evaluators.answers import extract_answer, normalize_number, normalize_text
from agentsearch.evaluators.benchmarks.base import Benchmark, Example, Score
from agentsearch.evaluators.benchmarks.jsonl import _text_field, read_text

CHOICE = "multiple choice"
TRUE_FALSE = "True/False"
YES_NO = "Yes/No"
VALID_INVALID = "valid/invalid"
NUMBER = "number"
BRACKETS = "closing brackets"
WORDS = "sorted words"

#: The 27 tasks and their answer types.
TASKS: dict[str, str] = {
    "boolean_expressions": TRUE_FALSE,
    "causal_judgement": YES_NO,
    "date_understanding": CHOICE,
    "disambiguation_qa": CHOICE,
    "dyck_languages": BRACKETS,
    "formal_fallacies": VALID_INVALID,
    "geometric_shapes": CHOICE,
    "hyperbaton": CHOICE,
    "logical_deduction_five_objects": CHOICE,
    "logical_deduction_seven_objects": CHOICE,
    "logical_deduction_three_objects": CHOICE,
    "movie_recommendation": CHOICE,
    "multistep_arithmetic_two": NUMBER,
    "navigate": YES_NO,
    "object_counting": NUMBER,
    "penguins_in_a_table": CHOICE,
    "reasoning_about_colored_objects": CHOICE,
    "ruin_names": CHOICE,
    "salient_translation_error_detection": CHOICE,
    "snarks": CHOICE,
    "sports_understanding": YES_NO,
    "temporal_sequences": CHOICE,
    "tracking_shuffled_objects_five_objects": CHOICE,
    "tracking_shuffled_objects_seven_objects": CHOICE,
    "tracking_shuffled_objects_three_objects": CHOICE,
    "web_of_lies": YES_NO,
    "word_sorting": WORDS,
}

#: The two answers of each binary type, in the case the reports write them.
_BINARY: dict[str, tuple[str, str]] = {
    TRUE_FALSE: ("True", "False"),
    YES_NO: ("Yes", "No"),
    VALID_INVALID: ("valid", "invalid"),
}

_DESCRIPTIONS: dict[str, str] = {
    CHOICE: "one of the lettered options listed in the question, written like (B); 'B', '(B)', 'B)' and the "
    "option's own text all count as that option",
    TRUE_FALSE: "True or False (case does not matter)",
    YES_NO: "Yes or No (case does not matter)",
    VALID_INVALID: "valid or invalid: whether the argument is deductively valid",
    NUMBER: "an integer, compared as a number",
    BRACKETS: "the closing brackets that complete the sequence, e.g. ] ) }, and nothing else; compared bracket "
    "by bracket (spaces do not matter)",
    WORDS: "the words of the list in alphabetical order separated by spaces; compared word by word (case and "
    "commas do not matter)",
}

#: What a target of each type looks like (for the error naming a target that is not one).
_TARGETS: dict[str, str] = {
    CHOICE: "an option letter of the question like (A)",
    TRUE_FALSE: "True or False",
    YES_NO: "Yes or No",
    VALID_INVALID: "valid or invalid",
    NUMBER: "a number",
    BRACKETS: "a sequence of brackets",
    WORDS: "a list of words",
}

_OPTION_LINE = re.compile(r"^\s*\(([A-Z])\)\s*(.*?)\s*$", re.MULTILINE)
_LETTER_CASED = re.compile(r"^(?:(?:[Oo]ption|[Cc]hoice)\s+)?(?:\(([A-Za-z])\)|([A-Z])(?=\s*$|[).:,;\]]))")
_PAREN_LETTER = re.compile(r"\(([A-Z])\)")
_CHOICE_TARGET = re.compile(r"^\(([A-Z])\)$")
_BRACKET_CHARS = "()[]{}<>"
_BRACKET_RUN = re.compile(r"[()\[\]{}<>][()\[\]{}<>\s]*")
_WORD_SPLIT = re.compile(r"[\s,]+")
_NOT_VALID = re.compile(r"\bnot\s+(?:deductively\s+)?valid\b")


def options(question: str) -> dict[str, str]:
    """The lettered options of a multiple-choice input: ``{"A": "12/11/1937", ...}`` (after ``Options:``)."""
    tail = question.rsplit("Options:", 1)[-1]
    return {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(tail)}


def _read_choice(raw: str, opts: dict[str, str]) -> str | None:
    """The option letter a (extracted) answer names: a letter, the option's text, or a single ``(X)``."""
    text = raw.strip()
    m = _LETTER_CASED.match(text)
    if m is not None:
        letter = (m.group(1) or m.group(2)).upper()
        if not opts or letter in opts:
            return letter
    norm = normalize_text(text)
    by_text = [k for k, v in opts.items() if normalize_text(v) == norm]
    if len(by_text) == 1:
        return by_text[0]
    cited = {x for x in _PAREN_LETTER.findall(text) if not opts or x in opts}
    if len(cited) == 1:
        return cited.pop()
    inside = [k for k, v in opts.items() if len(normalize_text(v)) > 1 and re.search(
        rf"(?<!\w){re.escape(normalize_text(v))}(?!\w)", norm)]  # fmt: skip
    if len(inside) == 1:
        return inside[0]
    return None


def _read_binary(raw: str, kind: str) -> str | None:
    yes, no = _BINARY[kind]
    text = normalize_text(raw)
    if kind == VALID_INVALID:
        text = _NOT_VALID.sub("invalid", text)
    first = re.match(r"[a-z]+", text)
    words = {yes.lower(): yes, no.lower(): no}
    if first is not None and first.group(0) in words:
        return words[first.group(0)]
    found = {w for w in words if re.search(rf"\b{w}\b", text)}
    return words[found.pop()] if len(found) == 1 else None


def _read_brackets(raw: str) -> str | None:
    runs = _BRACKET_RUN.findall(raw)
    if not runs:
        return None
    return " ".join(c for c in runs[-1] if c in _BRACKET_CHARS)


def _read_words(raw: str) -> str | None:
    words = [w.strip(".;:'\"`()[]") for w in _WORD_SPLIT.split(raw.lower())]
    words = [w for w in words if w]
    return " ".join(words) or None


def read_answer(raw: str, kind: str, opts: dict[str, str] | None = None) -> str | None:
    """The canonical answer of type ``kind`` in an extracted answer ``raw`` (``(B)``, ``True``, ``Yes``,
    ``invalid``, ``-52``, ``] ) }``, ``apple banana``), or ``None`` when it names none."""
    if not raw or not raw.strip():
        return None
    if kind == CHOICE:
        letter = _read_choice(raw, opts or {})
        return f"({letter})" if letter else None
    if kind in _BINARY:
        return _read_binary(raw, kind)
    if kind == NUMBER:
        return normalize_number(raw)
    if kind == BRACKETS:
        return _read_brackets(raw)
    if kind == WORDS:
        return _read_words(raw)
    raise ValueError(f"unknown BBH answer type {kind!r}")  # pragma: no cover - TASKS holds only the kinds above


def _check_target(target: str, kind: str, question: str, where: str, task: str) -> str:
    """The target as scored; DataError when it is not an answer of the task's type (a wrong file)."""
    target = target.strip()
    expected = _TARGETS[kind]
    if kind == CHOICE:
        m = _CHOICE_TARGET.match(target)
        opts = options(question)
        ok = m is not None and (not opts or m.group(1) in opts)
    elif kind in _BINARY:
        ok = target.lower() in {w.lower() for w in _BINARY[kind]}
    elif kind == NUMBER:
        ok = normalize_number(target) is not None
    elif kind == BRACKETS:
        ok = all(c in _BRACKET_CHARS or c.isspace() for c in target)
    else:
        ok = bool(target)
    if not ok:
        raise DataError(f"{where}: target {target!r} is not {expected} (is this the {task} file?)")
    return target


def _unknown_task(task: str) -> DataError:
    close = difflib.get_close_matches(task, list(TASKS), n=3)
    hint = f"did you mean {' or '.join('bbh:' + c for c in close)}? " if close else ""
    return DataError(
        f"unknown bbh task {task!r}; {hint}expected one of the {len(TASKS)} BIG-Bench Hard tasks "
        "(e.g. bbh:date_understanding, bbh:boolean_expressions; `main.py benchmarks` lists them) or bbh:all"
    )


class BBH(Benchmark):
    """One BIG-Bench Hard task (``bbh:<task>``) or all of them (``bbh:all``), scored by answer type.

    ``data``: a task file (one task only), a directory of ``<task>.json`` files, or ``None`` (the hub).
    Ids are ``bbh-<task>-<index in the file>``; ``Example.meta`` holds ``task``, ``kind`` and, for
    multiple choice, the ``options``. ``bbh:all`` from a directory pools the task files found there
    (other files are ignored); its splits are taken over the pooled examples (not per task).
    """

    name = "bbh"
    HUB_ID = "lukaemon/bbh"

    @classmethod
    def create(cls, arg: str | None = None, *, data: str | Path | None = None, seed: int = 0) -> BBH:
        if not arg:
            raise DataError("benchmark 'bbh' names no task; e.g. bbh:date_understanding, or bbh:all")
        task = arg.strip().lower()
        if task != "all" and task not in TASKS:
            raise _unknown_task(arg.strip())
        return cls(None if task == "all" else task, data=data)

    @classmethod
    def names(cls) -> list[str]:
        return ["bbh:all", *(f"bbh:{t}" for t in TASKS)]

    @classmethod
    def availability(cls) -> tuple[str, str]:
        return "--data FILE.json or DIR (upstream files)", cls.HUB_ID

    def __init__(self, task: str | None, data: str | Path | None = None) -> None:
        super().__init__()
        if task is not None and task not in TASKS:
            raise _unknown_task(task)
        self.task = task
        self.name = f"bbh:{task or 'all'}"
        self.data = Path(data) if data is not None else None
        self.files: dict[str, Path] = {}
        if self.data is None:
            return
        if not self.data.exists():
            raise DataError(f"{self.data}: no such file or directory")
        if self.data.is_dir():
            wanted = [task] if task is not None else list(TASKS)
            self.files = {t: self.data / f"{t}.json" for t in wanted if (self.data / f"{t}.json").is_file()}
            if not self.files:
                what = f"{task}.json" if task is not None else "BIG-Bench Hard task file (<task>.json)"
                raise DataError(f"{self.data}: no {what} in this directory")
        else:
            if task is None:
                raise DataError(f"bbh:all needs --data DIR (a directory of <task>.json files), not a file: {self.data}")
            stem = self.data.stem
            if stem in TASKS and stem != task:
                raise DataError(f"{self.data}: this is the {stem} file, not {task} (use --benchmark bbh:{stem})")
            self.files = {task: self.data}

    @property
    def tasks(self) -> list[str]:
        """The tasks in the pool."""
        if self.data is not None:
            return list(self.files)
        return [self.task] if self.task is not None else list(TASKS)

    @property
    def source(self) -> str:
        if self.data is None:
            return f"{self.HUB_ID} ({self.task or 'all tasks'}, test)"
        return str(self.data)

    def examples(self) -> list[Example]:
        return self._cached(self._load)

    def _load(self) -> list[Example]:
        pool: list[Example] = []
        for task in self.tasks:
            rows = self._file_rows(self.files[task]) if self.data is not None else self._hub_rows(task)
            for i, (where, row) in enumerate(rows):
                pool.append(self._example(task, i, row, where))
        return pool

    @staticmethod
    def _example(task: str, index: int, row: Any, where: str) -> Example:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object with 'input' and 'target', got {type(row).__name__}")
        question = _text_field(row, "input", where)
        kind = TASKS[task]
        target = _check_target(_text_field(row, "target", where, numbers=True), kind, question, where, task)
        meta: dict[str, Any] = {"task": task, "kind": kind}
        if kind == CHOICE:
            meta["options"] = options(question)
        return Example(f"bbh-{task}-{index}", question.strip(), target, "", meta)

    @staticmethod
    def _file_rows(path: Path):
        text = read_text(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{e.lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        if not isinstance(data, dict):
            raise DataError(
                f"{path}: expected a JSON object with an 'examples' list (the upstream BBH format), "
                f"got {type(data).__name__}"
            )
        examples = data.get("examples")
        if not isinstance(examples, list):
            raise DataError(f"{path}: no 'examples' list (the upstream BBH format: {{\"examples\": [...]}})")
        if not examples:
            raise DataError(f"{path}: 'examples' is empty, no examples")
        for i, row in enumerate(examples):
            yield f"{path}: examples[{i}]", row

    def _hub_rows(self, task: str):
        try:
            import datasets  # optional dependency (the `hf` extra)
        except ImportError:
            raise DataError(
                f"{self.name} needs --data FILE.json or DIR offline, or `pip install 'agentsearch[hf]'` and "
                "network access"
            ) from None
        try:
            ds = datasets.load_dataset(self.HUB_ID, task, split="test")
        except Exception as e:  # noqa: BLE001 - network, auth, cache: all mean "cannot load"
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise DataError(
                f"{self.name}: cannot load {self.HUB_ID} ({task}) from the Hugging Face hub ({reason}); "
                "pass --data FILE.json or DIR"
            ) from None
        for i, row in enumerate(ds):
            yield f"{self.HUB_ID}[{task}][test][{i}]", dict(row)

    # -- scoring ------------------------------------------------------------------------------------

    def _kinds(self) -> list[str]:
        return list(dict.fromkeys(TASKS[t] for t in self.tasks))

    @property
    def answer_kind(self) -> str:
        return "number" if self._kinds() == [NUMBER] else "text"

    @property
    def metric_description(self) -> str:
        read = (
            "It is read from the reply (an 'Answer:' line, \\boxed{...}, 'the answer is ...') and compared "
            "with the gold answer exactly, after normalization."
        )
        kinds = self._kinds()
        if len(kinds) == 1:
            return f"The final answer is {_DESCRIPTIONS[kinds[0]]}. {read}"
        each = "; ".join(f"{kind}: {_DESCRIPTIONS[kind]}" for kind in kinds)
        return f"BIG-Bench Hard tasks of several answer types, each shown by the question's wording ({each}). {read}"

    def extract(self, prediction: str) -> str:
        raw = extract_answer(prediction)
        kinds = self._kinds()
        if len(kinds) == 1 and kinds[0] != CHOICE:
            return read_answer(raw, kinds[0]) or raw
        return raw

    def score(self, example: Example, prediction: str) -> Score:
        """The answer read by the example's task type; the record shows it canonical (``(B)``, ``True``)."""
        raw = extract_answer(prediction)
        kind = example.meta.get("kind") or TASKS[self.task or ""]
        read = read_answer(raw, kind, example.meta.get("options"))
        if read is None:
            return Score(False, 0.0, raw)
        gold = read_answer(example.answer, kind, example.meta.get("options"))
        if kind == BRACKETS and gold is not None:
            correct = read.replace(" ", "") == gold.replace(" ", "")
        else:
            correct = gold is not None and read.lower() == gold.lower()
        return Score(correct, 1.0 if correct else 0.0, read)

    def group(self, example: Example) -> str | None:
        return example.meta.get("task") if self.task is None else None

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tasks": self.tasks}
