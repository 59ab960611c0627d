"""Output formats: how an LM-calling node talks to its model (a prompt-level dimension of the search).

Every LM node has a ``format`` param (see :class:`~agentsearch.search_space.operators.LMParams`):

- ``text`` (:class:`TextAdapter`, ours): the instruction, natural step-by-step reasoning, and the
  outputs as labelled final lines (``Answer: 42``), parsed leniently. Small models follow this far
  better than field markers (docs/performance.md has the measurements).
- ``chat``: DSPy's ``ChatAdapter`` (``[[ ## field ## ]]`` sections), without its silent JSON retry.
- ``xml``: DSPy's ``XMLAdapter`` (``<field>...</field>``).
- ``json``: DSPy's ``JSONAdapter`` (a JSON object; structured outputs where the server supports them).

Programs stay DSPy programs: the format only chooses the ``dspy.Adapter`` a node's predictors run
under (:func:`make_adapter`).
"""

from __future__ import annotations

import json
import math
import re
import textwrap
import typing
from typing import Any, Literal

import dspy

from agentsearch.evaluators.answers import (
    clean_answer,
    code_blocks,
    defines_code,
    extract_code,
    last_number,
    marked_answer,
)
from agentsearch.search_space.operators import DEFAULT_FORMAT, FORMATS

__all__ = ["ANSWER_KINDS", "CODE_ANSWER", "DEFAULT_FORMAT", "FORMATS", "TextAdapter", "for_answer_kind", "make_adapter"]

#: What a benchmark's answers are: ``number`` lets the text format fall back to a reply's last number;
#: ``code``: every answer field asks for Python code (:func:`for_answer_kind`) and is read as code.
ANSWER_KINDS = ("text", "number", "code")

#: What an answer field asks for when the answers are code.
CODE_ANSWER = "the complete Python function (its def line and body) in a ```python code block"


def for_answer_kind(signature: type[dspy.Signature], answer_kind: str) -> type[dspy.Signature]:
    """``signature`` with its answer fields asking for what the benchmark's answers are: for ``code``, the
    complete function in a fenced block instead of "the final answer only (a number or a short phrase)"."""
    if answer_kind != "code":
        return signature
    for name in signature.output_fields:
        if _is_answer(name):
            signature = signature.with_updated_fields(name, desc=CODE_ANSWER)
    return signature


class _AnswerKind:
    """Mixin for DSPy's adapters: the signature of every call asks for the benchmark's kind of answer."""

    answer_kind = "text"

    def __call__(self, lm, lm_kwargs, signature, demos, inputs):  # type: ignore[no-untyped-def]
        return super().__call__(lm, lm_kwargs, for_answer_kind(signature, self.answer_kind), demos, inputs)  # type: ignore[misc]

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):  # type: ignore[no-untyped-def]
        return await super().acall(lm, lm_kwargs, for_answer_kind(signature, self.answer_kind), demos, inputs)  # type: ignore[misc]


class CodeChatAdapter(_AnswerKind, dspy.ChatAdapter):
    answer_kind = "code"


class CodeXMLAdapter(_AnswerKind, dspy.XMLAdapter):
    answer_kind = "code"


class CodeJSONAdapter(_AnswerKind, dspy.JSONAdapter):
    answer_kind = "code"


def make_adapter(fmt: str, answer_kind: str = "text") -> dspy.Adapter:
    """The DSPy adapter for a node's ``format``; ``answer_kind`` is the benchmark's (see :data:`ANSWER_KINDS`)."""
    if answer_kind not in ANSWER_KINDS:
        raise ValueError(f"answer_kind must be one of {ANSWER_KINDS}, got {answer_kind!r}")
    code = answer_kind == "code"
    if fmt == "text":
        return TextAdapter(answer_kind=answer_kind)
    if fmt == "chat":
        # no silent JSON-adapter retry: it would double a call's cost behind the cost model's back
        return (CodeChatAdapter if code else dspy.ChatAdapter)(use_json_adapter_fallback=False)
    if fmt == "xml":
        return (CodeXMLAdapter if code else dspy.XMLAdapter)(use_json_adapter_fallback=False)
    if fmt == "json":
        return CodeJSONAdapter() if code else dspy.JSONAdapter()
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def proposer_adapter() -> dspy.Adapter:
    """The adapter LLM proposers (instructions, graphs, mutations) write in: the text format, which the
    small embedded models follow; a stronger proposer reads it as easily."""
    return TextAdapter(answer_kind="text")


# -- the text format ---------------------------------------------------------------------------

REASONING = "reasoning"
_TRUE = re.compile(r"\b(?:yes|true|correct|right|confident|certain)\b", re.IGNORECASE)
_FALSE = re.compile(
    r"\b(?:no|not|false|incorrect|wrong|doubt\w*|unsure|uncertain|error)\b|\bisn't\b|\bn't\b", re.IGNORECASE
)
_CHAT_HEADER = re.compile(r"^[ \t]*\[\[ ## \w+ ## \]\][ \t]*$", re.MULTILINE)
_NUMBER = re.compile(r"-?\d{1,30}(?:\.\d{1,30})?")
# "Answer:" before bare code; unindented and with a colon, so that "answer = 5" in the code is no label
_CODE_LABEL = re.compile(r"^(?:\*\*|__|#+[ \t]*)?(?:final[ \t]+)?answer(?:\*\*|__)?\s*[:：](?:\*\*|__)?", re.I | re.M)


def label(name: str) -> str:
    """A field's label in the text format: ``is_correct`` -> ``Is correct``."""
    return name.replace("_", " ").strip().capitalize()


def _desc(field: Any) -> str:
    desc = (field.json_schema_extra or {}).get("desc") or ""
    return "" if desc.startswith("${") else str(desc)


def _is_answer(name: str) -> bool:
    return name == "answer" or name.endswith("_answer")


def _one_line(name: str, annotation: Any) -> bool:
    """Fields whose value is one line: answers and typed values (a verdict, a score, a choice)."""
    return _is_answer(name) or annotation in (bool, int, float) or typing.get_origin(annotation) is Literal


def _hint(name: str, field: Any) -> str:
    ann = field.annotation
    desc = _desc(field)
    if ann is bool:
        kind = "yes or no"
    elif ann in (int, float):
        kind = "a number"
    elif typing.get_origin(ann) is Literal:
        kind = "one of: " + ", ".join(str(a) for a in typing.get_args(ann))
    elif ann is str:
        kind = ""
    else:
        kind = "JSON"
    parts = [p for p in (desc, kind) if p]
    return "; ".join(parts) or name.replace("_", " ")


class TextAdapter(_AnswerKind, dspy.Adapter):
    """Natural text in, natural reasoning and labelled lines out; lenient parsing.

    The system message is the node's instruction, then what to write: 'Think step by step, then end
    your reply with a final line of the form "Answer: <...>".' (one labelled line per output field
    when there are several; ``Reply in this form:`` when the signature has no ``reasoning`` field).
    The form is written inline: given ``Answer: <...>`` on a line of its own, the 0.5B model starts
    its reply with it and reasons afterwards (measured in docs/performance.md). Inputs are the
    question text alone, or labelled blocks (``Question:``, ``Context (...):``). Demos are rendered
    as the same user/assistant turns.

    Parsing: each output field is read from its last ``Label:`` line (markdown decoration and case
    ignored); a one-line field (answers, verdicts, scores, choices) is the rest of that line, other
    fields run to the next label. The text before the labels is the reasoning. An answer without
    its label is taken from ``\\boxed{...}``, then "the answer is ...", then, for benchmarks whose
    answers are numbers (``answer_kind="number"``), the reply's last number; a single output field
    without its label is the whole reply. What cannot be found is ``None`` (an answer: ``""``, which
    the evaluator records as ``no_answer``): a reply never raises a parse error.

    Code answers (``answer_kind="code"``): the answer fields ask for the function in a fenced block, which is
    asked for last; the answer is the reply's last fenced block that defines something (else its last block,
    else the code after the last ``Answer:`` label, else code found amid prose: :func:`extract_code`),
    the other fields are read from the text before it, and labels inside code are never fields.
    """

    def __init__(self, answer_kind: str = "text", callbacks: list | None = None):
        super().__init__(callbacks=callbacks)
        if answer_kind not in ANSWER_KINDS:
            raise ValueError(f"answer_kind must be one of {ANSWER_KINDS}, got {answer_kind!r}")
        self.answer_kind = answer_kind

    # -- formatting ---------------------------------------------------------------------------

    def format_field_description(self, signature: type[dspy.Signature]) -> str:
        return ""

    def format_task_description(self, signature: type[dspy.Signature]) -> str:
        return textwrap.dedent(signature.instructions or "").strip()

    def format_field_structure(self, signature: type[dspy.Signature]) -> str:
        outputs = {n: f for n, f in signature.output_fields.items() if n != REASONING}
        if self.answer_kind == "code" and any(_is_answer(n) for n in outputs):
            return self._code_structure(signature, outputs)
        lines = "\n".join(f"{label(n)}: <{_hint(n, f)}>" for n, f in outputs.items())
        if REASONING in signature.output_fields:
            if len(outputs) == 1:
                # inline, not on a line of its own: a small model given that line first writes it first
                return f'Think step by step, then end your reply with a final line of the form "{lines}".'
            return f"Think step by step, then end your reply with these labelled parts, each on a new line:\n{lines}"
        return f"Reply in this form:\n{lines}"

    def _code_structure(self, signature: type[dspy.Signature], outputs: dict[str, Any]) -> str:
        others = "\n".join(f"{label(n)}: <{_hint(n, f)}>" for n, f in outputs.items() if not _is_answer(n))
        think = REASONING in signature.output_fields
        if others:
            lead = "Think step by step, then reply" if think else "Reply"
            return f"{lead} with these labelled parts, each on a new line:\n{others}\nthen, last, {CODE_ANSWER}."
        return f"Think step by step, then end your reply with {CODE_ANSWER}." if think else f"Reply with {CODE_ANSWER}."

    def format_system_message(self, signature: type[dspy.Signature]) -> str:
        parts = [self.format_task_description(signature), self.format_field_structure(signature)]
        return "\n\n".join(p for p in parts if p)

    def format_user_message_content(
        self,
        signature: type[dspy.Signature],
        inputs: dict[str, Any],
        prefix: str = "",
        suffix: str = "",
        main_request: bool = False,
    ) -> str:
        from dspy.adapters.utils import format_field_value

        fields = [(n, f) for n, f in signature.input_fields.items() if n in inputs]
        if len(fields) == 1 and fields[0][0] == "question":
            body = format_field_value(field_info=fields[0][1], value=inputs["question"])
        else:
            blocks = []
            for name, field in fields:
                desc = _desc(field)
                head = f"{label(name)} ({desc}):" if desc else f"{label(name)}:"
                blocks.append(f"{head}\n{format_field_value(field_info=field, value=inputs[name])}")
            body = "\n\n".join(blocks)
        return "\n\n".join(p for p in (prefix, body, suffix) if p).strip()

    def format_assistant_message_content(
        self,
        signature: type[dspy.Signature],
        outputs: dict[str, Any],
        missing_field_message: str | None = None,
    ) -> str:
        parts = []
        if REASONING in signature.output_fields:
            reasoning = outputs.get(REASONING)
            parts.append(str(reasoning if reasoning is not None else missing_field_message or "").strip())
        for name in signature.output_fields:
            if name == REASONING:
                continue
            value = outputs.get(name, missing_field_message)
            text = "yes" if value is True else "no" if value is False else "" if value is None else str(value)
            if self.answer_kind == "code" and _is_answer(name) and text:
                parts.append(f"```python\n{extract_code(text) or text.strip()}\n```")
                continue
            parts.append(f"{label(name)}: {text}".rstrip())
        return "\n".join(p for p in parts if p)

    # -- parsing ------------------------------------------------------------------------------

    def parse(self, signature: type[dspy.Signature], completion: str) -> dict[str, Any]:
        answers = [n for n in signature.output_fields if _is_answer(n)]
        if self.answer_kind == "code" and answers:
            return self._parse_code(signature, str(completion or ""), answers)
        text = _from_json(_from_xml(str(completion or ""), signature), signature).replace("[[ ## completed ## ]]", "")
        names = [n for n in signature.output_fields if n != REASONING]
        found = {n: m for n in names if (m := _last_label(text, n)) is not None}
        starts = sorted(m.start() for m in found.values())
        # a reply in DSPy's chat format anyway: any "[[ ## field ## ]]" header ends the field before it
        boundaries = sorted({*starts, *(m.start() for m in _CHAT_HEADER.finditer(text))})
        out: dict[str, Any] = {}
        for name in names:
            annotation = signature.output_fields[name].annotation
            match = found.get(name)
            raw: str | None
            if match is not None:
                raw = _value_at(text, match, boundaries, _one_line(name, annotation))
            elif len(names) == 1 and not _is_answer(name):
                raw = text  # a principle, a plan, code: the whole reply is the field
            else:
                raw = None
            if _is_answer(name):
                direct = REASONING not in signature.output_fields and len(names) == 1
                out[name] = self._answer(raw, text, direct)
            else:
                out[name] = _typed(raw, annotation, whole=text if len(names) == 1 else None)
        lead = re.sub(r"^\s*\[\[ ## reasoning ## \]\]\s*", "", text[: starts[0]] if starts else text).strip()
        if REASONING in signature.output_fields:
            out[REASONING] = lead
        elif (
            lead
            and names[0] not in found
            and not _is_answer(names[0])
            and signature.output_fields[names[0]].annotation is str
        ):
            out[names[0]] = lead  # "The arithmetic is right.\nIs correct: yes": the unlabelled first field
        return out

    def _parse_code(self, signature: type[dspy.Signature], text: str, answers: list[str]) -> dict[str, Any]:
        """A code reply: the answer is its code, the other fields are read from the prose before it."""
        blocks = code_blocks(text)
        labels = None if blocks else list(_CODE_LABEL.finditer(text))
        label_at = labels[-1] if labels else None
        if blocks:
            defining = [b for b in blocks if defines_code(b[1])]
            start, code = (defining or blocks)[-1]
        elif label_at is not None:  # "Answer:" then bare code
            start, code = label_at.start(), extract_code(text[label_at.end() :])
        else:
            start, code = len(text), extract_code(text)
            if code:
                start = text.find(code.split("\n", 1)[0]) if code.split("\n", 1)[0] in text else 0
        prose = text[:start]
        prose = re.sub(r"(?:^|\n)[^\n]*\b(?:final\s+)?answer\b[^\n]*[:：]\s*$", "", prose, flags=re.IGNORECASE)
        rest = signature
        for name in answers:
            rest = rest.delete(name)
        out: dict[str, Any] = {name: code for name in answers}
        if any(n != REASONING for n in rest.output_fields):
            out.update(self.parse(rest, prose))
        elif REASONING in rest.output_fields:
            out[REASONING] = prose.strip()
        return out

    def _answer(self, raw: str | None, text: str, direct: bool = False) -> str:
        if raw is not None and raw.strip():
            value = raw.strip()
            if value.startswith("<") and value.endswith(">") and len(value) > 2:
                value = value[1:-1]  # "Answer: <720>": the template's brackets copied
            return clean_answer(value)
        got = marked_answer(text)
        if got:
            return got
        if direct and text.strip() and "\n" not in text.strip():
            return clean_answer(text)  # asked for the answer alone, the model wrote just that ("13")
        if self.answer_kind == "number":
            return last_number(text) or ""
        return ""


def _from_json(text: str, signature: type[dspy.Signature]) -> str:
    """A reply written as a JSON object (DSPy's JSON format) rewritten as labelled lines."""
    names = list(signature.output_fields)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start or not any(f'"{n}"' in text[start:end] for n in names):
        return text
    import json_repair

    try:
        obj = json_repair.loads(text[start : end + 1])
    except Exception:  # noqa: BLE001 - not JSON after all: read the text as it is
        return text
    if not isinstance(obj, dict) or not any(n in obj for n in names if n != REASONING):
        return text  # no output field besides the reasoning (a truncated object): read the reply as it is
    parts = []
    for name in names:
        if name in obj:
            value = obj[name] if isinstance(obj[name], str) else json.dumps(obj[name])
            parts.append(value.strip() if name == REASONING else f"{label(name)}: {value.strip()}")
    return "\n".join(parts)


def _from_xml(text: str, signature: type[dspy.Signature]) -> str:
    """A reply written as ``<field>...</field>`` elements (DSPy's XML format) rewritten as labelled lines."""
    names = [n for n in signature.output_fields if n != REASONING]
    if not any(f"</{n}>" in text for n in names):
        return text
    parts = []
    for name in signature.output_fields:
        m = re.search(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
        if m is not None:
            value = m.group(1).strip()
            parts.append(value if name == REASONING else f"{label(name)}: {value}")
    return "\n".join(parts)


def _label_pattern(name: str) -> re.Pattern[str]:
    names = {re.escape(label(name)), re.escape(name), re.escape(name.replace("_", " "))}
    if _is_answer(name):
        names |= {r"final\s+answer"}
    alt = "|".join(sorted(names, key=len, reverse=True))
    # "Answer: 5", "**Answer:** 5", "### Final answer: 5", "- answer = 5"; and, from a model that answers in
    # DSPy's chat format anyway, a "[[ ## answer ## ]]" header line
    return re.compile(
        rf"^[ \t>#*\-_]*(?:\*\*|__)?(?:{alt})(?:\*\*|__)?[ \t]*(?:\([^)\n]*\))?[ \t]*[:：=][ \t]*(?:\*\*|__)?[ \t]*"
        rf"|^[ \t]*\[\[ ## {re.escape(name)} ## \]\][ \t]*\n?",
        re.IGNORECASE | re.MULTILINE,
    )


def _last_label(text: str, name: str) -> re.Match[str] | None:
    matches = list(_label_pattern(name).finditer(text))
    return matches[-1] if matches else None


def _value_at(text: str, match: re.Match[str], starts: list[int], one_line: bool) -> str:
    rest = text[match.end() :]
    if one_line:
        for line in rest.split("\n"):
            if line.strip():
                return line.strip()
        return ""
    end = next((s for s in starts if s > match.start()), None)
    return (text[match.end() : end] if end is not None else rest).strip()


def _typed(raw: str | None, annotation: Any, whole: str | None = None) -> Any:
    """Lenient conversion of a field's text to its annotation; None when it can't be read."""
    if annotation is str:
        return None if raw is None else raw.strip()
    source = raw if raw is not None else whole
    if source is None:
        return None
    if annotation is bool:
        head = source.strip().split("\n", 1)[0]
        no, yes = _FALSE.search(head), _TRUE.search(head)
        if no and (not yes or no.start() <= yes.start()):
            return False
        return True if yes else None
    if annotation in (int, float):
        m = _NUMBER.search(source)
        if m is None:
            return None
        if annotation is int:
            return int(m.group().split(".")[0])
        value = float(m.group())
        if not math.isfinite(value):
            return None
        if "%" in source[m.end() : m.end() + 2] and 1 < value <= 100:
            value /= 100
        return value
    if typing.get_origin(annotation) is Literal:
        allowed = typing.get_args(annotation)
        cleaned = source.strip().strip("`'\"*").strip()
        for a in allowed:
            if str(a).lower() == cleaned.lower():
                return a
        hits = [a for a in allowed if re.search(rf"\b{re.escape(str(a))}\b", source, re.IGNORECASE)]
        return hits[0] if len(hits) == 1 else None
    from dspy.adapters.utils import parse_value

    try:  # dicts, lists, models: DSPy's own (json-repairing) parser
        return parse_value(source.strip(), annotation)
    except Exception:  # noqa: BLE001 - unreadable: the field is missing
        return None
