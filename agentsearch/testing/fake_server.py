"""A fake OpenAI-compatible HTTP server for tests and benchmarks (stdlib only).

In-process use::

    with FakeOpenAIServer(ReasoningPolicy(answers), latency=0.02) as server:
        lm = dspy.LM("openai/fake-model", api_base=server.url, api_key="x", cache=False)

Standalone use (prints ``READY http://127.0.0.1:PORT/v1`` once listening, stops on SIGTERM/SIGINT)::

    python -m agentsearch.testing.fake_server --port 0 --latency 0.02 --answers train.jsonl

Replies to DSPy prompts use the ChatAdapter wire format (verified against dspy 3.4.1)::

    [[ ## reasoning ## ]]
    ...

    [[ ## answer ## ]]
    42

    [[ ## completed ## ]]

Output field names and types are read from the system message written by DSPy's ChatAdapter
(``Your output fields are:\\n1. `reasoning` (str): ...``). When the system message is the
JSONAdapter's instead (a ``JSON object`` is requested and there is no ``[[ ## completed ## ]]``
marker), a policy's dict is returned as a JSON object; for DSPy's XMLAdapter, as ``<field>`` elements.
agentsearch's text format (``agentsearch.evaluators.operators.formats.TextAdapter``: 'Think step by step,
then end your reply with a final line of the form "Answer: <...>".') is answered in kind: the
reasoning, then one ``Label: value`` line per output field.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import signal
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "ChatRequest",
    "ConstantPolicy",
    "FakeOpenAIServer",
    "Policy",
    "ReasoningPolicy",
    "answer_field_name",
    "chat_requests_from_body",
    "default_field_value",
    "format_chat_adapter",
    "format_text",
    "format_xml_adapter",
    "load_answers_jsonl",
    "parse_signature_fields",
]


# --------------------------------------------------------------------------------------------------
# Request model and DSPy prompt parsing
# --------------------------------------------------------------------------------------------------


@dataclass
class ChatRequest:
    """One chat completion request as seen by a policy (one per returned choice)."""

    messages: list[dict[str, Any]]
    system: str = ""
    user: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    n: int = 1
    model: str = "fake-model"
    output_fields: list[tuple[str, str]] = field(default_factory=list)
    input_fields: list[tuple[str, str]] = field(default_factory=list)
    call_index: int = 0
    rng: random.Random = field(default_factory=random.Random)
    choice_index: int = 0
    last_user: str = ""
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        """Names of the output fields, in prompt order."""
        return [name for name, _ in self.output_fields]

    text_mode: bool = False  # the prompt is agentsearch's text format

    @property
    def json_mode(self) -> bool:
        """True when the prompt is DSPy's JSONAdapter format rather than the ChatAdapter format."""
        return not self.text_mode and _is_json_prompt(self.system, self.body)

    @property
    def xml_mode(self) -> bool:
        """True when the prompt is DSPy's XMLAdapter format."""
        return not self.text_mode and not self.json_mode and _is_xml_prompt(self.system)

    @property
    def format(self) -> str:
        """The output format the prompt asks for: ``text``, ``json``, ``xml`` or ``chat``."""
        return "text" if self.text_mode else "json" if self.json_mode else "xml" if self.xml_mode else "chat"

    def input_sections(self) -> dict[str, str]:
        """The input fields of the last user message: ``[[ ## name ## ]]`` sections (chat, json),
        ``<name>`` elements (xml) or ``Label:`` blocks (text)."""
        if self.text_mode:
            return split_text_sections(self.last_user)
        if self.xml_mode:
            return split_xml_sections(self.last_user)
        return split_sections(self.last_user)


Policy = Callable[[ChatRequest], "dict[str, Any] | str"]

_FIELD_LINE_RE = re.compile(r"^\d+\. `(\w+)` \((.+?)\):(?: |$)", re.MULTILINE)
_SECTION_RE = re.compile(r"^\[\[ ## (\w+) ## \]\][ \t]*$", re.MULTILINE)


def _block(system: str, start: str, end: str) -> str:
    i = system.find(start)
    if i < 0:
        return ""
    i += len(start)
    j = system.find(end, i)
    return system[i:] if j < 0 else system[i:j]


def parse_signature_fields(system: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(input_fields, output_fields) as (name, type-string) lists, parsed from a DSPy system message."""
    if "Your output fields are:" not in system:
        return [], []
    inputs = _block(system, "Your input fields are:\n", "Your output fields are:")
    outputs = _block(system, "Your output fields are:\n", "All interactions will be structured")
    return _FIELD_LINE_RE.findall(inputs), _FIELD_LINE_RE.findall(outputs)


def split_sections(text: str) -> dict[str, str]:
    """Map each ``[[ ## name ## ]]`` header in ``text`` to the stripped text that follows it."""
    matches = list(_SECTION_RE.finditer(text))
    out: dict[str, str] = {}
    for k, m in enumerate(matches):
        if k + 1 < len(matches):
            end = matches[k + 1].start()
        else:  # the last section stops at the adapter's "Respond with ..." reminder
            end = text.find("\n\nRespond with ", m.end())
            end = len(text) if end < 0 else end
        out.setdefault(m.group(1), text[m.end() : end].strip())
    return out


def _is_json_prompt(system: str, body: dict[str, Any]) -> bool:
    if "[[ ## completed ## ]]" in system:
        return False
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema"):
        return True
    return "JSON object" in system and "Your output fields are:" in system


def _is_xml_prompt(system: str) -> bool:
    return "[[ ## completed ## ]]" not in system and bool(re.search(r"^<\w+>$", system, re.MULTILINE))


_TEXT_STRUCTURE_RE = re.compile(
    r"(?:end your reply with these labelled parts[^\n]*:|Reply in this form:)\n((?:[^\n]+: <[^\n]*>\n?)+)\s*$"
    r'|end your reply with a final line of the form "([^\n]+: <[^\n]*>)"\.\s*$'
)
_TEXT_FIELD_RE = re.compile(r"^([^\n:<]+): <([^\n]*)>$", re.MULTILINE)
_TEXT_SECTION_RE = re.compile(r"^([A-Z][A-Za-z0-9 ]*?)(?: \([^\n]*\))?:[ \t]*$", re.MULTILINE)
_XML_SECTION_RE = re.compile(r"<(\w+)>\n?(.*?)\n?</\1>", re.DOTALL)


def _text_type(hint: str) -> str:
    if hint.endswith("yes or no"):
        return "bool"
    if hint.endswith("a number"):
        return "float"
    if "one of: " in hint:
        choices = hint.rsplit("one of: ", 1)[1].split(", ")
        return "Literal[" + ", ".join(repr(c) for c in choices) + "]"
    if hint.endswith("JSON"):
        return "dict"
    return "str"


def parse_text_format(system: str) -> list[tuple[str, str]] | None:
    """Output fields (name, type) of an agentsearch text-format prompt, or None when it is not one.

    A leading ``reasoning`` field is added when the prompt asks for reasoning first."""
    m = _TEXT_STRUCTURE_RE.search(system)
    if m is None:
        return None
    block = m.group(1) if m.group(1) is not None else m.group(2)
    fields = [
        (name.strip().lower().replace(" ", "_"), _text_type(hint)) for name, hint in _TEXT_FIELD_RE.findall(block)
    ]
    if "Think step by step, then" in system[max(0, m.start() - 40) : m.start()]:
        fields.insert(0, ("reasoning", "str"))
    return fields


def split_text_sections(text: str) -> dict[str, str]:
    """Map each ``Label:`` (or ``Label (desc):``) line of a text-format message to the text below it."""
    matches = list(_TEXT_SECTION_RE.finditer(text))
    out: dict[str, str] = {}
    for k, m in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(text)
        out.setdefault(m.group(1).strip().lower().replace(" ", "_"), text[m.end() : end].strip())
    return out


def split_xml_sections(text: str) -> dict[str, str]:
    """Map each top-level ``<name>...</name>`` element of a message to its text."""
    out: dict[str, str] = {}
    for m in _XML_SECTION_RE.finditer(text):
        out.setdefault(m.group(1), m.group(2).strip())
    return out


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
        )
    return str(content)


def _request_rng(
    messages_key: bytes, seed: int, temperature: float | None, index: int, choice: int
) -> random.Random:
    # temperature 0/None: the messages alone decide (n choices are identical, as with lm15's
    # fan-out of n into n identical requests); temperature > 0: an independent draw per call/choice.
    h = hashlib.blake2b(messages_key, digest_size=16)
    salt = f"|{seed}|" + (f"t{index}|{choice}" if temperature else "")
    h.update(salt.encode())
    return random.Random(int.from_bytes(h.digest(), "big"))


def chat_requests_from_body(
    body: dict[str, Any], *, seed: int = 0, call_index: int = 0, default_model: str = "fake-model"
) -> list[ChatRequest]:
    """The ChatRequest for each of the ``n`` choices of a chat completion request body."""
    messages = body.get("messages") or []
    system_parts: list[str] = []
    user_parts: list[str] = []
    for m in messages:
        role = m.get("role")
        text = _content_text(m.get("content"))
        if role in ("system", "developer"):
            system_parts.append(text)
        elif role == "user":
            user_parts.append(text)
    system = "\n\n".join(system_parts)
    inputs, outputs = parse_signature_fields(system)
    text_fields = None if outputs else parse_text_format(system)
    if text_fields is not None:
        outputs = text_fields
    temperature = body.get("temperature")
    n = max(1, int(body.get("n") or 1))
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    key = "\x00".join(f"{m.get('role')}\x01{_content_text(m.get('content'))}" for m in messages).encode()
    return [
        ChatRequest(
            messages=messages,
            system=system,
            user="\n\n".join(user_parts),
            temperature=temperature,
            max_tokens=max_tokens,
            n=n,
            model=str(body.get("model") or default_model),
            output_fields=outputs,
            input_fields=inputs,
            call_index=call_index,
            rng=_request_rng(key, seed, temperature, call_index, c),
            choice_index=c,
            last_user=user_parts[-1] if user_parts else "",
            body=body,
            text_mode=text_fields is not None,
        )
        for c in range(n)
    ]


# --------------------------------------------------------------------------------------------------
# Formatting replies
# --------------------------------------------------------------------------------------------------

_LITERAL_RE = re.compile(r"^Literal\[(.*)\]$")
DEFAULT_SENTENCE = "This is a placeholder response."


def _literal_first(type_str: str) -> str | None:
    m = _LITERAL_RE.match(type_str.strip())
    if not m:
        return None
    inner = m.group(1).strip()
    if inner[:1] in ("'", '"'):
        end = inner.find(inner[0], 1)
        return inner[1:end] if end > 0 else inner[1:]
    return inner.split(",", 1)[0].strip()


def _base_type(type_str: str) -> str:
    t = type_str.strip()
    for prefix in ("Optional[", "Union["):
        if t.startswith(prefix):
            t = t[len(prefix) :].split(",", 1)[0].rstrip("]").strip()
    return t.split("[", 1)[0].strip().lower()


def default_field_value(type_str: str) -> str:
    """A value that DSPy parses for an output field of this type (``str`` → a short sentence)."""
    lit = _literal_first(type_str)
    if lit is not None:
        return lit
    base = _base_type(type_str)
    if base == "float":
        return "0.5"
    if base == "int":
        return "1"
    if base == "bool":
        return "True"
    if base in ("list", "tuple", "set"):
        return "[]"
    if base == "dict":
        return "{}"
    return DEFAULT_SENTENCE


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def complete_fields(values: dict[str, Any], output_fields: list[tuple[str, str]]) -> dict[str, str]:
    """Fields in prompt order, missing ones filled by type; extra keys from ``values`` are kept after."""
    out: dict[str, str] = {}
    for name, type_str in output_fields:
        out[name] = _value_text(values[name]) if name in values else default_field_value(type_str)
    for name, value in values.items():
        if name not in out:
            out[name] = _value_text(value)
    return out


def format_chat_adapter(values: dict[str, Any], output_fields: list[tuple[str, str]] = ()) -> str:
    """Render field values in DSPy's ChatAdapter format, ending with the ``completed`` marker."""
    full = complete_fields(values, list(output_fields))
    parts = [f"[[ ## {name} ## ]]\n{text}" for name, text in full.items()]
    parts.append("[[ ## completed ## ]]\n")
    return "\n\n".join(parts)


def format_json_adapter(values: dict[str, Any], output_fields: list[tuple[str, str]] = ()) -> str:
    """Render field values as the JSON object DSPy's JSONAdapter expects."""
    full = complete_fields(values, list(output_fields))
    obj: dict[str, Any] = {}
    types = dict(output_fields)
    for name, text in full.items():
        base = _base_type(types.get(name, "str"))
        if base != "str" and _literal_first(types.get(name, "")) is None:
            try:
                obj[name] = json.loads(text if base != "bool" else text.lower())
                continue
            except ValueError:
                pass
        obj[name] = text
    return json.dumps(obj, ensure_ascii=False)


def format_xml_adapter(values: dict[str, Any], output_fields: list[tuple[str, str]] = ()) -> str:
    """Render field values as DSPy's XMLAdapter expects: one ``<name>`` element per field."""
    full = complete_fields(values, list(output_fields))
    return "\n".join(f"<{name}>\n{text}\n</{name}>" for name, text in full.items())


def format_text(values: dict[str, Any], output_fields: list[tuple[str, str]] = ()) -> str:
    """Render field values in agentsearch's text format: the reasoning, then ``Label: value`` lines."""
    full = complete_fields(values, list(output_fields))
    lines = []
    if "reasoning" in full:
        lines.append(full.pop("reasoning"))
    lines.extend(f"{name.replace('_', ' ').capitalize()}: {text}" for name, text in full.items())
    return "\n".join(lines)


def approx_tokens(text: str) -> int:
    """Approximate token count: ceil(chars / 4)."""
    return math.ceil(len(text) / 4)


# --------------------------------------------------------------------------------------------------
# Policies
# --------------------------------------------------------------------------------------------------

ANSWER_FIELD_NAMES = ("answer", "final_answer", "solution", "response", "output", "result", "prediction")
REASONING_FIELD_NAMES = frozenset({"reasoning", "rationale", "thought", "thinking", "chain_of_thought"})
_AUX_FIELD_HINTS = ("reason", "rational", "thought", "critique", "feedback", "score", "confiden", "correct")
_CODE_FIELDS = ("code", "fixed_code", "program")


def answer_field_name(output_fields: list[tuple[str, str]]) -> str | None:
    """The output field that carries the answer.

    The first of ``ANSWER_FIELD_NAMES`` present; else the last output field that is not auxiliary
    (reasoning/critique/feedback/score/confidence/correctness-like); else None.
    """
    names = [n for n, _ in output_fields]
    for cand in ANSWER_FIELD_NAMES:
        if cand in names:
            return cand
    for name in reversed(names):
        low = name.lower()
        if not any(h in low for h in _AUX_FIELD_HINTS) and not low.startswith("next_tool") and low not in _CODE_FIELDS:
            return name
    return None


def _aux_value(name: str, type_str: str, answer: str, rng: random.Random) -> str:
    """Values for output fields other than the answer (see ReasoningPolicy docstring)."""
    low = name.lower()
    base = _base_type(type_str)
    if low == "next_tool_name":  # DSPy ReAct: finish at once (the extract step then gives the answer)
        return "finish"
    if low == "next_tool_args":
        return "{}"
    if low in _CODE_FIELDS:  # program-of-thought: a program printing the chosen answer
        return f"```python\nprint({answer!r})\n```"
    if low in REASONING_FIELD_NAMES or "reason" in low or "thought" in low:
        return f"Let me think step by step. Working through the problem, the result is {answer}."
    if "critique" in low or "feedback" in low:
        return "The reasoning looks plausible; double-check the arithmetic."
    if base in ("float", "int") and ("score" in low or "confiden" in low or "prob" in low):
        return f"{rng.random():.2f}" if base == "float" else "1"
    return default_field_value(type_str)


class ConstantPolicy:
    """Answers ``answer`` in the answer field; other fields get plausible defaults."""

    def __init__(self, answer: str = "42") -> None:
        self.answer = answer

    def __call__(self, request: ChatRequest) -> dict[str, str] | str:
        fields = request.output_fields
        if not fields:
            return self.answer
        ans_name = answer_field_name(fields)
        out = {n: _aux_value(n, t, self.answer, request.rng) for n, t in fields if n != ans_name}
        if ans_name is not None:
            out[ans_name] = self.answer
        return out


def _norm_ws(text: str) -> str:
    return " ".join(text.split())


def normalize_answer(text: str) -> str:
    """Answer normalization used for comparisons: strip, drop ``,`` ``$`` and a trailing period."""
    t = text.strip().replace(",", "").replace("$", "").strip()
    if t.endswith(".") and len(t) > 1:
        t = t[:-1]
    if t.endswith(".0") and t[:-2].lstrip("-").isdigit():
        t = t[:-2]
    return t


# "answer: 17", "Answer = 17", "final answer: 17", "The answer is 17".
_CANDIDATE_RE = re.compile(r"\banswer(?:\s+is|\s*[:=])\s*\$?\s*(-?[\w.,/]+)", re.IGNORECASE)
_LIST_ITEM_RE = re.compile(r"^\[\d+\]\s*«+\s*(.*?)\s*»+\s*$", re.MULTILINE)


class ReasoningPolicy:
    """A deterministic-per-prompt policy whose accuracy depends on the agent design.

    Per request (``answers`` maps question text → gold answer):

    * Question lookup (in the last user message, so few-shot demos are ignored): a whitespace-
      normalized ``[[ ## field ## ]]`` section or line equal to a known question; else each known
      question's first ``key_chars`` normalized characters looked up against the text starting at
      each line/section (dict lookups, no scan); else a substring scan over all keys. Unknown
      question → answer ``unknown_answer`` ("0").
    * Base accuracy: ``p_reasoning`` if an output field is reasoning-like (``reasoning``,
      ``rationale``, ``thought``...), else ``p_direct``; plus ``instruction_bonus`` when the system
      or user text contains any of ``bonus_keywords`` (case-insensitive); the bonus cannot lift p
      above ``max_p`` (0.95), while a base p set above it (e.g. 1.0 in tests) is kept. Note that
      few-shot demos or upstream reasoning containing "step by step" also earn the bonus.
    * Aggregation: candidate answers from upstream agents are detected in the input sections of the
      last user message other than the one holding the question: every match of ``answer: X``,
      ``answer = X`` or ``answer is X`` (case-insensitive). If none match, items of a section whose
      name contains ``candidate``/``answers``/``proposals``/``attempts``/``solutions`` are used
      whole (JSON lists or DSPy ``[1] «x»`` lists, items of at most 40 chars). When at least two
      candidates exist and a strict majority agree, the majority answer is given with probability
      ``majority_prob`` (0.9); otherwise the base draw.
    * Correct → the gold answer; wrong → gold ± rng.randint(1, 99) for numeric gold (kept
      non-negative for non-negative gold), else a random int in 0..999 other than the gold, so
      independent wrong answers rarely coincide.
    * Other output fields: reasoning-like → "Let me think step by step. ..."; ``critique``/
      ``feedback`` → a short sentence; numeric ``score``/``confidence``-like → a number in [0, 1];
      bool fields (e.g. ``is_correct``, ``confident``) → "True"; anything else → a default by type.

    The rng is the request's (deterministic per prompt at temperature 0/None, an independent draw
    per call otherwise), so with temperature 0 a given prompt always gets the same reply.
    """

    CANDIDATE_SECTION_HINTS = ("candidate", "answers", "proposals", "attempts", "solutions")

    def __init__(
        self,
        answers: dict[str, str],
        p_direct: float = 0.3,
        p_reasoning: float = 0.6,
        instruction_bonus: float = 0.1,
        bonus_keywords: Iterable[str] = ("carefully", "verify"),
        majority_prob: float = 0.9,
        max_p: float = 0.95,
        unknown_answer: str = "0",
        key_chars: int = 60,
    ) -> None:
        self.answers = dict(answers)
        self.p_direct = p_direct
        self.p_reasoning = p_reasoning
        self.instruction_bonus = instruction_bonus
        self.bonus_keywords = tuple(k.lower() for k in bonus_keywords)
        self.majority_prob = majority_prob
        self.max_p = max_p
        self.unknown_answer = unknown_answer
        self.key_chars = key_chars
        self._index: dict[str, list[tuple[str, str]]] = {}
        self._full: dict[str, str] = {}
        for question, gold in self.answers.items():
            norm = _norm_ws(question)
            self._full[norm] = str(gold)
            self._index.setdefault(norm[:key_chars], []).append((norm, str(gold)))

    # -- lookup ------------------------------------------------------------------------------------
    def _resolve(self, key: str, text: str) -> str | None:
        entries = self._index.get(key)
        if not entries:
            return None
        if len(entries) == 1:
            return entries[0][1]
        norm = _norm_ws(text)
        best = max(entries, key=lambda e: len(e[0]) if e[0] in norm else -1)
        return best[1] if best[0] in norm else entries[0][1]

    def find_question(self, text: str) -> tuple[str, str] | None:
        """(normalized question key, gold) for the known question appearing in ``text``, or None.

        Tries, in order: a whole ``[[ ## field ## ]]`` section or line equal to a question; the
        ``key_chars``-prefix key of the text starting at each line/section; a substring scan over
        all keys (longest match wins).
        """
        k = self.key_chars
        for section in split_sections(text).values():
            norm = _norm_ws(section)
            if norm in self._full:
                return norm[:k], self._full[norm]
        starts = [0]
        starts.extend(m.end() for m in re.finditer(r"\n|\]\]", text))
        for pos in starts:
            end = text.find("\n", pos)
            line = _norm_ws(text[pos:] if end < 0 else text[pos:end])
            if line in self._full:
                return line[:k], self._full[line]
            key = _norm_ws(text[pos : pos + 3 * k].lstrip(" \t\n«\"'"))[:k]
            gold = self._resolve(key, text[pos:]) if key else None
            if gold is not None:
                return key, gold
        norm = _norm_ws(text)
        hits = [key for key in self._index if key in norm]
        if hits:
            key = max(hits, key=len)
            gold = self._resolve(key, text)
            if gold is not None:
                return key, gold
        return None

    def candidate_answers(self, request: ChatRequest, question_key: str | None) -> list[str]:
        """Candidate answers from upstream agents in the last user message (see class docstring)."""
        sections = request.input_sections() or {"_": request.last_user}
        other = {
            name: text
            for name, text in sections.items()
            if not (question_key and question_key in _norm_ws(text))
        }
        found: list[str] = []
        for text in other.values():
            found.extend(normalize_answer(m) for m in _CANDIDATE_RE.findall(text))
        found = [f for f in found if f]
        if found:
            return found
        for name, text in other.items():
            if not any(h in name.lower() for h in self.CANDIDATE_SECTION_HINTS):
                continue
            items: list[str] = []
            try:
                parsed = json.loads(text)
                if isinstance(parsed, list):
                    items = [str(x) for x in parsed]
            except ValueError:
                items = _LIST_ITEM_RE.findall(text)
            found.extend(normalize_answer(i) for i in items if 0 < len(i.strip()) <= 40)
        return [f for f in found if f]

    # -- policy ------------------------------------------------------------------------------------
    def wrong_answer(self, gold: str, rng: random.Random) -> str:
        """A wrong answer drawn from a wide range around the gold."""
        g = normalize_answer(gold)
        offset = rng.randint(1, 99) * (1 if rng.random() < 0.5 else -1)
        try:
            v = int(g)
        except ValueError:
            try:
                fv = float(g)
            except ValueError:
                r = str(rng.randint(0, 999))
                return r if r != g else str(int(r) + 1)
            w = fv + offset
            if fv >= 0 and w < 0:
                w = fv - offset
            return f"{w:g}"
        w = v + offset
        if v >= 0 and w < 0:
            w = v - offset
        return str(w)

    def accuracy(self, request: ChatRequest) -> float:
        """Probability of a correct answer for this request (before aggregation)."""
        names = {n.lower() for n in request.output_names}
        base = self.p_reasoning if names & REASONING_FIELD_NAMES else self.p_direct
        p = base
        if self.instruction_bonus and self.bonus_keywords:
            low = request.system.lower()
            low_user = request.user.lower()
            if any(k in low or k in low_user for k in self.bonus_keywords):
                p += self.instruction_bonus
        # the bonus cannot lift p above max_p; an explicit base p above it (e.g. 1.0) is kept
        return min(p, max(base, self.max_p))

    def choose_answer(self, request: ChatRequest) -> str:
        """The answer text for this request."""
        rng = request.rng
        found = self.find_question(request.last_user or request.user)
        if found is None:
            return self.unknown_answer
        key, gold = found
        cands = self.candidate_answers(request, key)
        u_major = rng.random()
        if len(cands) >= 2:
            top, count = Counter(cands).most_common(1)[0]
            if 2 * count > len(cands) and u_major < self.majority_prob:
                return top
        if rng.random() < self.accuracy(request):
            return normalize_answer(gold)
        return self.wrong_answer(gold, rng)

    def __call__(self, request: ChatRequest) -> dict[str, str] | str:
        answer = self.choose_answer(request)
        fields = request.output_fields
        if not fields:
            return answer
        ans_name = answer_field_name(fields)
        out = {n: _aux_value(n, t, answer, request.rng) for n, t in fields if n != ans_name}
        if ans_name is not None:
            out[ans_name] = answer
        return out


def load_answers_jsonl(path: str | Path) -> dict[str, str]:
    """Read ``{"question", "answer"}`` lines; GSM8K-style golds keep the text after the last ``####``."""
    answers: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            row = json.loads(line)
            gold = str(row["answer"])
            if "####" in gold:
                gold = gold.rsplit("####", 1)[1]
            answers[str(row["question"])] = gold.strip().replace(",", "")
    return answers


# --------------------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------------------

def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"


_ERROR_TYPES = {
    400: ("invalid_request_error", None), 401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None), 404: ("not_found_error", None),
    429: ("rate_limit_error", "rate_limit_exceeded"), 503: ("service_unavailable", None),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """An OpenAI-style error object."""
    fallback = ("server_error" if status >= 500 else "invalid_request_error", None)
    etype, code = _ERROR_TYPES.get(status, fallback)
    msg = message or f"Fake server error ({status} {_phrase(status)})".strip()
    return {"error": {"message": msg, "type": etype, "param": None, "code": code}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    sys_version = ""
    disable_nagle_algorithm = True
    fake: FakeOpenAIServer  # set on a per-server subclass
    hdrs: dict[str, str]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def setup(self) -> None:
        super().setup()
        self.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.fake._track(self.connection, add=False)

    def handle_one_request(self) -> None:
        """A lean HTTP/1.1 request parser (the stdlib's email-based header parsing is ~10x slower)."""
        try:
            line = self.rfile.readline(65537)
            if not line:
                self.close_connection = True
                return
            parts = line.decode("latin-1").split()
            if len(parts) != 3 or len(line) > 65536:
                self.close_connection = True
                self._json(400, error_body(400, "Malformed request line."))
                return
            self.command, self.path, self.request_version = parts
            hdrs: dict[str, str] = {}
            while True:
                h = self.rfile.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                hdrs[k.strip().lower()] = v.strip()
            self.hdrs = hdrs
            conn = hdrs.get("connection", "").lower()
            self.close_connection = conn == "close" or (
                self.request_version == "HTTP/1.0" and conn != "keep-alive"
            )
            if hdrs.get("expect", "").lower() == "100-continue":
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if self.command == "GET":
                self.do_GET()
            elif self.command == "POST":
                self.do_POST()
            else:
                self._read_raw()
                self._json(405, error_body(405, f"Method {self.command} not allowed."))
        except (TimeoutError, ConnectionError, ValueError):
            self.close_connection = True

    def _read_raw(self) -> bytes:
        if self.hdrs.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline(65537).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.hdrs.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    # -- io ----------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        head = (
            f"HTTP/1.1 {status} {_phrase(status)}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'close' if self.close_connection else 'keep-alive'}\r\n\r\n"
        ).encode("latin-1")
        self.wfile.write(head + body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode())

    def _read_body(self) -> dict[str, Any] | None:
        raw = self._read_raw()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._json(400, error_body(400, "Request body must be a JSON object."))
            return None
        return body

    # -- routes ------------------------------------------------------------------------------------
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        elif path in ("/v1/models", "/models"):
            created = int(self.fake.started_at)
            data = [
                {"id": m, "object": "model", "created": created, "owned_by": "fake"} for m in self.fake.models
            ]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, error_body(404, f"Unknown path: {self.path}"))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path in ("/v1/chat/completions", "/chat/completions"):
            body = self._read_body()
            if body is not None:
                status, payload, ctype = self.fake._handle_chat(body)
                self._send(status, payload, ctype)
        elif path in ("/v1/completions", "/completions"):
            body = self._read_body()
            if body is not None:
                status, payload, ctype = self.fake._handle_completion(body)
                self._send(status, payload, ctype)
        else:
            self._read_raw()
            self._json(404, error_body(404, f"Unknown path: {self.path}"))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True


class FakeOpenAIServer:
    """An OpenAI-compatible chat completions server driven by a policy, for tests and benchmarks."""

    def __init__(
        self,
        policy: Policy | None = None,
        latency: float = 0.0,
        model: str = "fake-model",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        self.policy: Policy = policy if policy is not None else ConstantPolicy("42")
        self.latency = latency
        self.model = model
        self.models = [model]
        self.host = host
        self.port = port
        self.seed = seed
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self.in_flight = 0
        self.started_at = time.time()
        self._lock = threading.Lock()
        self._calls = 0
        self._fail_queue: list[int] = []
        self._hang_queue: list[float] = []
        self._failure_rate = 0.0
        self._failure_status = 500
        self._failure_rng = random.Random(seed)
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIServer:
        """Bind and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        handler = type("FakeHandler", (_Handler,), {"fake": self})
        self._stopping.clear()
        self._httpd = _Server((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self.started_at = time.time()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port`` (no ``/v1``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI base URL, ``http://host:port/v1``."""
        return f"{self.base_url}/v1"

    # -- controls ----------------------------------------------------------------------------------
    @property
    def n_requests(self) -> int:
        """Number of chat/completion requests received."""
        return len(self.requests)

    def fail_next(self, n: int, status: int = 500) -> None:
        """Make the next ``n`` chat requests fail with ``status`` (OpenAI error JSON)."""
        with self._lock:
            self._fail_queue.extend([status] * n)

    def set_failure_rate(self, p: float, status: int = 500) -> None:
        """Make each chat request fail with probability ``p`` (seeded RNG)."""
        with self._lock:
            self._failure_rate = p
            self._failure_status = status

    def hang_next(self, n: int, seconds: float) -> None:
        """Make the next ``n`` chat requests wait ``seconds`` before replying (interrupted by stop())."""
        with self._lock:
            self._hang_queue.extend([seconds] * n)

    def reset(self) -> None:
        """Forget recorded requests, counters and pending failures/hangs."""
        with self._lock:
            self.requests.clear()
            self.max_in_flight = 0
            self._fail_queue.clear()
            self._hang_queue.clear()
            self._failure_rate = 0.0

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # -- request handling --------------------------------------------------------------------------
    def _admit(self, body: dict[str, Any]) -> tuple[int, int | None, float]:
        """Record the request; return (call index, failure status or None, hang seconds)."""
        with self._lock:
            self.requests.append(body)
            index = self._calls
            self._calls += 1
            self.in_flight += 1
            if self.in_flight > self.max_in_flight:
                self.max_in_flight = self.in_flight
            fail = self._fail_queue.pop(0) if self._fail_queue else None
            if fail is None and self._failure_rate > 0 and self._failure_rng.random() < self._failure_rate:
                fail = self._failure_status
            hang = self._hang_queue.pop(0) if self._hang_queue else 0.0
        return index, fail, hang

    def _release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _wait(self, hang: float) -> None:
        if hang > 0:
            self._stopping.wait(hang)
        latency = self.latency
        if latency > 0:
            time.sleep(latency)

    def _reply_text(self, req: ChatRequest) -> str:
        out = self.policy(req)
        if isinstance(out, str):
            return out
        fmt = req.format
        if fmt == "text":
            return format_text(out, req.output_fields)
        if fmt == "json":
            return format_json_adapter(out, req.output_fields)
        if fmt == "xml":
            return format_xml_adapter(out, req.output_fields)
        return format_chat_adapter(out, req.output_fields)

    def _handle_chat(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        index, fail, hang = self._admit(body)
        try:
            self._wait(hang)
            if fail is not None:
                return fail, json.dumps(error_body(fail)).encode(), "application/json"
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return 400, json.dumps(error_body(400, "'messages' must be a non-empty list.")).encode(), \
                    "application/json"
            reqs = chat_requests_from_body(body, seed=self.seed, call_index=index, default_model=self.model)
            texts = [self._reply_text(r) for r in reqs]
            prompt_tokens = approx_tokens("".join(_content_text(m.get("content")) for m in messages))
            completion_tokens = sum(approx_tokens(t) for t in texts)
            model = reqs[0].model
            rid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
            created = int(time.time())
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
            if body.get("stream"):
                return 200, _sse_chat(rid, created, model, texts, usage, body), "text/event-stream"
            resp = {
                "id": rid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": i,
                        "message": {"role": "assistant", "content": t},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                    for i, t in enumerate(texts)
                ],
                "usage": usage,
                "system_fingerprint": "fake",
            }
            return 200, json.dumps(resp).encode(), "application/json"
        except Exception as exc:  # a policy bug must surface as a 500, not a dropped connection
            return 500, json.dumps(error_body(500, f"policy error: {exc!r}")).encode(), "application/json"
        finally:
            self._release()

    def _handle_completion(self, body: dict[str, Any]) -> tuple[int, bytes, str]:
        prompt = body.get("prompt", "")
        if isinstance(prompt, list):
            prompt = "\n".join(str(p) for p in prompt)
        chat_body = dict(body, messages=[{"role": "user", "content": str(prompt)}])
        chat_body.pop("stream", None)
        status, payload, ctype = self._handle_chat(chat_body)
        if status != 200:
            return status, payload, ctype
        resp = json.loads(payload)
        resp["object"] = "text_completion"
        resp["id"] = resp["id"].replace("chatcmpl-", "cmpl-")
        resp["choices"] = [
            {"index": c["index"], "text": c["message"]["content"], "logprobs": None, "finish_reason": "stop"}
            for c in resp["choices"]
        ]
        return 200, json.dumps(resp).encode(), "application/json"


def _sse_chat(
    rid: str, created: int, model: str, texts: list[str], usage: dict[str, int], body: dict[str, Any]
) -> bytes:
    """A complete SSE stream (role chunk, content chunks, finish chunk, optional usage, [DONE])."""

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> str:
        obj = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": choices, **extra}
        return f"data: {json.dumps(obj)}\n\n"

    events: list[str] = []
    for i, text in enumerate(texts):
        first = {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        events.append(chunk([first]))
        for start in range(0, len(text), 64):
            piece = text[start : start + 64]
            events.append(chunk([{"index": i, "delta": {"content": piece}, "finish_reason": None}]))
        events.append(chunk([{"index": i, "delta": {}, "finish_reason": "stop"}]))
    opts = body.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage"):
        events.append(chunk([], usage=usage))
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the server standalone until SIGTERM/SIGINT."""
    ap = argparse.ArgumentParser(prog="python -m agentsearch.testing.fake_server", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds slept before each chat reply")
    ap.add_argument("--answers", default=None, help="JSONL of {question, answer}; enables ReasoningPolicy")
    ap.add_argument("--p-direct", type=float, default=0.3)
    ap.add_argument("--p-reasoning", type=float, default=0.6)
    ap.add_argument("--instruction-bonus", type=float, default=0.1)
    ap.add_argument("--failure-rate", type=float, default=0.0)
    ap.add_argument("--failure-status", type=int, default=500)
    ap.add_argument("--model", default="fake-model")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    policy: Policy
    if args.answers:
        policy = ReasoningPolicy(
            load_answers_jsonl(args.answers),
            p_direct=args.p_direct,
            p_reasoning=args.p_reasoning,
            instruction_bonus=args.instruction_bonus,
        )
    else:
        policy = ConstantPolicy("42")
    server = FakeOpenAIServer(policy, latency=args.latency, model=args.model, host=args.host,
                              port=args.port, seed=args.seed)
    if args.failure_rate > 0:
        server.set_failure_rate(args.failure_rate, args.failure_status)

    done = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    sys.stdout.write(f"READY {server.url}\n")
    sys.stdout.flush()
    try:
        done.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
