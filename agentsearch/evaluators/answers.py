"""Answer extraction and comparison for reasoning benchmarks.

Public API:

* :func:`extract_answer` -- the final answer in a model output or a gold solution
  (after the last ``####``, else the last ``\\boxed{...}``/``\\fbox{...}``, else the text after the last
  "The answer is" / "Answer:" / "Final answer:" marker, else the whole text).
* :func:`normalize_number` -- a canonical string for a numeric answer, or ``None``.
* :func:`normalize_text` -- a canonical string for a free-text answer.
* :func:`answers_match` -- is a (extracted) prediction equal to a gold answer?
* :func:`majority_vote` -- the most common answer of several (self-consistency).
* :func:`extract_code` -- the Python code in a reply (fenced, bare, or a function body alone).

Numeric conventions (see :func:`normalize_number`):

* ``"1,234"`` is one thousand two hundred thirty-four: a comma is a thousands separator only when
  it is well formed (groups of exactly three digits after a first group of one to three digits).
  Any other comma between digits (``"1,5"``, ``"12,34"``, ``"1234,567"``) is **ambiguous** (European
  decimal comma? a list?) and the text is not a number (``None``); comparison then falls back to
  math-verify and text equality.
* When the text holds several numbers (``"5 apples and 3 pears"``) the canonical number is the
  **last** one (``"3"``): chain-of-thought answers end with their result. If the text has an ``=``,
  only what follows the last ``=`` is read (``"2+3=5"`` is 5). A text that is an expression rather
  than a number (``"x^2+3"``, ``"2x"``, ``"5-3"``, ``"3 x 4"``, ``"\\sqrt{2}"``) is not a number.
* ``%`` is dropped (``"50%"`` is 50, not 0.5); ``$``, ``\\$``, ``**``, ``\\text{...}`` wrappers and unit
  words after the number are ignored; a leading ``+`` and trailing zeros are dropped (``"+7.0"`` is
  ``"7"``, ``"3.50"`` is ``"3.5"``); ``-0`` is ``"0"``.
* Fractions ``3/4``, ``\\frac{3}{4}`` (also ``\\dfrac``/``\\tfrac``) become a decimal when it is exact
  (``"0.75"``), otherwise the reduced fraction (``"1/3"``). Mixed numbers (``1 1/2``) are not
  supported (they read as the last number, ``1/2``).

:func:`answers_match` compares numbers exactly (rationals, with a 1e-9 relative tolerance for float
noise), then normalized text, then -- only for math-looking answers -- math-verify (``\\frac{1}{2}``
equals ``0.5``, ``\\sqrt{2}/2`` equals ``\\frac{\\sqrt{2}}{2}``). math-verify is called with
``parsing_timeout=None`` and ``timeout_seconds=None``: its timeouts use ``signal.alarm``, which only
works in the main thread (and would cancel pytest-timeout's alarm). Instead, inputs that could make
sympy hang (power towers, huge factorials/binomials, very long texts) skip math-verify, and calls
are serialized by a lock (sympy/antlr parsing is not documented as thread-safe) and memoized.
All functions here are thread-safe.
"""

from __future__ import annotations

import ast
import functools
import logging
import re
import textwrap
import threading
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from fractions import Fraction

__all__ = [
    "answers_match",
    "clean_answer",
    "code_blocks",
    "defines_code",
    "extract_answer",
    "extract_code",
    "last_number",
    "majority_vote",
    "marked_answer",
    "normalize_number",
    "normalize_text",
]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# extraction

_ANSWER_MARKER = re.compile(
    r"(?:\bthe\s+final\s+answer\s+is|\bfinal\s+answer\s*(?:is)?\s*[:：]?|\bthe\s+answer\s+is"
    r"|\banswer\s*[:：])\s*[:：]?\s*",
    re.IGNORECASE,
)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_NO_BRACE = re.compile(r"\\boxed\s+([^\s$]+)")
_TRAILING = " \t\r\n.,;:!?。"


def _balanced(text: str, start: int) -> str | None:
    """Content of the brace group whose ``{`` is just before ``start``; None if never closed."""
    depth = 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
    return None


def _last_boxed(text: str) -> str | None:
    matches = list(_BOXED.finditer(text))
    for m in reversed(matches):
        content = _balanced(text, m.end())
        if content is not None:
            return content
    if matches:  # unclosed (truncated output): take the rest
        return text[matches[-1].end() :]
    bare = _BOXED_NO_BRACE.findall(text)  # "\\boxed 5"
    return bare[-1] if bare else None


def _strip_wrappers(ans: str) -> str:
    """Strip markdown bold, math delimiters and trailing punctuation around a short answer."""
    prev = None
    while prev != ans:
        prev = ans
        ans = ans.strip().rstrip(_TRAILING).strip()
        for left, right in (("**", "**"), ("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if ans.startswith(left) and ans.endswith(right) and len(ans) >= len(left) + len(right):
                ans = ans[len(left) : len(ans) - len(right)]
        if len(ans) >= 2 and ans[0] == "$" and ans[-1] == "$" and ans.count("$") == 2:
            ans = ans[1:-1]
        if ans.startswith("**"):  # "**72** apples" or a dangling bold marker
            ans = ans[2:]
        ans = ans.replace("**", "")
    return ans


def extract_answer(text: str) -> str:
    """The final answer in ``text`` (a model output or a gold solution), stripped.

    Priority: the text after the last ``####`` (its first non-empty line); else the content of the
    last ``\\boxed{...}`` / ``\\fbox{...}`` (balanced braces); else the text after the last answer
    marker ("The answer is", "Answer:", "Final answer:"; its first non-empty line); else the whole
    text. Markdown bold, ``$...$`` delimiters and trailing punctuation are stripped.
    """
    if text is None:
        return ""
    text = str(text)
    if "####" in text:
        tail = text.rsplit("####", 1)[1]
        line = next((ln for ln in tail.splitlines() if ln.strip()), "")
        boxed = _last_boxed(line)
        return _strip_wrappers(boxed if boxed is not None else line)
    boxed = _last_boxed(text)
    if boxed is not None:
        return _strip_wrappers(boxed)
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        tail = text[markers[-1].end() :]
        line = next((ln for ln in tail.splitlines() if ln.strip()), "")
        return _strip_wrappers(line)
    return _strip_wrappers(text)


def clean_answer(text: str) -> str:
    """A short answer as written on an answer line: the content of its ``\\boxed{}`` if it has one,
    markdown bold, math delimiters and trailing punctuation stripped (``"**\\boxed{72}**."`` is ``"72"``)."""
    if text is None:
        return ""
    text = str(text).strip()
    boxed = _last_boxed(text)
    return _strip_wrappers(boxed if boxed is not None else text)


def marked_answer(text: str) -> str:
    """The answer a reply states without an answer line: the last ``\\boxed{...}``, else the line after
    the last "the answer is" / "final answer" marker; ``""`` when there is neither."""
    if text is None:
        return ""
    text = str(text)
    boxed = _last_boxed(text)
    if boxed is not None:
        return _strip_wrappers(boxed)
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        tail = text[markers[-1].end() :]
        return _strip_wrappers(next((ln for ln in tail.splitlines() if ln.strip()), ""))
    return ""


# --------------------------------------------------------------------------------------------------
# numbers

_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}")
_LATEX_FRAC_SHORT = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)(?!\d)")
_LATEX_TEXT = re.compile(
    r"\\(?:boxed|fbox|text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_LATEX_NOISE = re.compile(r"\\[,!;: ()\[\]]|\\left|\\right|\\displaystyle|\\%|\\\$")
# A number token: optional sign (only at a word start), digits with well-formed thousands commas or
# plain digits, optional decimals, optional exponent; or an integer fraction a/b.
_NUM = re.compile(
    r"(?<![\w.)\]}])(?P<sign>[-+]?)"
    r"(?:(?P<num>\d+)\s*/\s*(?P<den>\d+)(?![\d.]|,\d)"
    r"|(?P<int>\d{1,3}(?:,\d{3})+|\d+)?(?P<frac>\.\d+)?(?P<exp>[eE][-+]?\d+(?![\w.]))?)"
)
_SIGN_DOLLAR = re.compile(r"([-+])\s*\\?\$")
_OPERATOR_GAP = re.compile(r"[NV]\s*[-+*/×÷·:<>]\s*[NV(]")
_TUPLE = re.compile(r"[(\[]\s*N(?:\s*[,;]\s*N)+\s*[)\]]")
_TIMES_GAP = re.compile(r"N\s*[xX×]\s*N")
_GLUED_LETTER = re.compile(r"N[A-Za-z](?![A-Za-z])|(?<![A-Za-z])[A-Za-z]N")
_SINGLE_LETTER = re.compile(r"(?<![A-Za-z])(?![aAI](?![A-Za-z]))[A-Za-z](?![A-Za-z])")


def _latex_cleanup(s: str) -> str:
    s = s.replace("−", "-").replace("–", "-").replace("\u2009", "").replace("\u202f", "")
    s = s.replace("{,}", ",")
    s = _SIGN_DOLLAR.sub(r"\1", s)  # "-$5" is -5
    s = _LATEX_FRAC.sub(r"\1/\2", s)
    s = _LATEX_FRAC_SHORT.sub(r"\1/\2", s)
    prev = None
    while prev != s:
        prev = s
        s = _LATEX_TEXT.sub(r" \1 ", s)
    s = _LATEX_NOISE.sub(" ", s)
    return s.replace("**", " ").replace("$", " ").replace("%", " ")


def _parse_numbers(text: str) -> list[Fraction] | None:
    """All numbers in ``text`` (in order); None when the text is an expression or ambiguous."""
    if text is None:
        return None
    s = _latex_cleanup(str(text))
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    values: list[Fraction] = []
    spans: list[tuple[int, int]] = []
    for m in _NUM.finditer(s):
        if not m.group(0) or not (m.group("num") or m.group("int") or m.group("frac")):
            continue
        try:
            if m.group("num") is not None:
                den = int(m.group("den"))
                if den == 0:
                    return None
                value = Fraction(int(m.group("num")), den)
            else:
                literal = (m.group("int") or "0").replace(",", "") + (m.group("frac") or "")
                exp = m.group("exp") or ""
                if len(exp.lstrip("eE+-")) > 3:
                    return None  # 1e99999: not an answer, and costly to expand
                literal += exp
                value = Fraction(Decimal(literal))
        except (InvalidOperation, ValueError, OverflowError):
            return None
        if m.group("sign") == "-":
            value = -value
        values.append(value)
        spans.append(m.span())
    if not values:
        return None
    # Replace the number tokens by "N" to look at what is around them.
    parts, last = [], 0
    for a, b in spans:
        parts.append(s[last:a])
        parts.append("N")
        last = b
    parts.append(s[last:])
    shape = "".join(parts)
    if "N,N" in shape:
        return None  # a comma between digits that is not a thousands separator: "1,5"
    if _TUPLE.search(shape):
        return None  # "(1, 5)", "[2, 3]": a tuple, interval or list
    if any(c in shape for c in "\\^_{}[]|"):
        return None  # LaTeX commands, powers, subscripts: an expression
    if _GLUED_LETTER.search(shape):
        return None  # "2x", "x2"
    if _TIMES_GAP.search(shape) or _OPERATOR_GAP.search(_SINGLE_LETTER.sub("V", shape)):
        return None  # "5-3", "x + 3", "3 x 4", "3:30"
    return values


def _canonical(value: Fraction) -> str:
    """``"1234"``, ``"-0.5"``, ``"2.25"`` for exact decimals; the reduced fraction (``"1/3"``) otherwise."""
    twos, fives, den = 0, 0, value.denominator
    while den % 2 == 0:
        den, twos = den // 2, twos + 1
    while den % 5 == 0:
        den, fives = den // 5, fives + 1
    if den != 1:
        return f"{value.numerator}/{value.denominator}"
    if value.denominator == 1:
        return str(value.numerator)
    places = max(twos, fives)  # 2^a 5^b divides 10^max(a, b): exactly that many decimal places
    digits = str(abs(value.numerator) * 10**places // value.denominator).rjust(places + 1, "0")
    out = (digits[:-places] + "." + digits[-places:]).rstrip("0").rstrip(".")
    return ("-" if value < 0 else "") + out


@functools.lru_cache(maxsize=65536)
def _number(text: str) -> tuple[Fraction, int] | None:
    """(the last number, how many numbers) of ``text``, or None."""
    values = _parse_numbers(text)
    if not values:
        return None
    return values[-1], len(values)


def normalize_number(text: str) -> str | None:
    """Canonical string of the number ``text`` holds (``"$1,234.50"`` gives ``"1234.5"``), else None.

    Several numbers: the last one counts. See the module docstring for commas, ``%``, fractions.
    """
    if text is None:
        return None
    got = _number(str(text))
    return None if got is None else _canonical(got[0])


_ANY_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def last_number(text: str) -> str | None:
    """The canonical form of the last number written in ``text`` (``"... so she has $1,080."`` gives
    ``"1080"``), or None. The last-resort reading of a reply that states no answer."""
    if text is None:
        return None
    found = _ANY_NUMBER.findall(_latex_cleanup(str(text)))
    return normalize_number(found[-1]) if found else None


# --------------------------------------------------------------------------------------------------
# text

_QUOTES = "\"'`“”‘’«»"
_TEXT_PREFIX = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)?\s*[:：]?\s*", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """Lowercased, whitespace collapsed, "the answer is", wrappers, quotes and punctuation stripped."""
    if text is None:
        return ""
    s = str(text)
    prev = None
    while prev != s:
        prev = s
        s = _LATEX_TEXT.sub(r"\1", s)
    s = " ".join(s.replace("**", "").split()).lower()
    prev = None
    while prev != s:
        prev = s
        s = _TEXT_PREFIX.sub("", s)
        s = s.strip(_QUOTES + " .,;:!?。")
        if len(s) >= 2 and s[0] == "$" and s[-1] == "$":
            s = s[1:-1].strip()
        if len(s) >= 2 and (s[0], s[-1]) in (("(", ")"), ("[", "]"), ("{", "}")):
            inner = s[1:-1]
            if inner.count(s[0]) == inner.count(s[-1]) and s[0] not in inner:
                s = inner.strip()
    return s


# --------------------------------------------------------------------------------------------------
# comparison

_MV_LOCK = threading.Lock()
_MATHY = re.compile(r"[\d\\^=+*/]")
_WORD = re.compile(r"[A-Za-z]{2,}")
_LATEX_CMD = re.compile(r"\\[A-Za-z]+")
_POWER_TOWER = re.compile(r"\^[^+\-=,;]*\^")
_BIG_FACTORIAL = re.compile(r"(?:\d{4,}|[)}])\s*!")
_BINOM = re.compile(r"\\(?:[dt]?binom|choose)")
_BIG_EXPONENT = re.compile(r"\^\s*\{?\s*\(?\s*\d{6,}")
_MAX_MV_LEN = 300


class _DropTimeoutWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DropTimeoutWarning())


def _math_verify_safe(s: str) -> bool:
    """Whether ``s`` looks like math (not words) and is cheap enough for math-verify/sympy."""
    if not s or len(s) > _MAX_MV_LEN or not _MATHY.search(s):
        return False
    if _WORD.search(_LATEX_CMD.sub(" ", _LATEX_TEXT.sub(r" \1 ", s))):
        return False  # words: "Monday" would parse as M*o*n*d*a*y
    if _POWER_TOWER.search(s) or _BIG_FACTORIAL.search(s) or _BIG_EXPONENT.search(s):
        return False
    if _BINOM.search(s) and re.search(r"\d{4,}", s):
        return False
    return True


def _as_math(s: str) -> str:
    return s if "$" in s else f"${s}$"


@functools.lru_cache(maxsize=16384)
def _math_verify_equal(prediction: str, gold: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:  # pragma: no cover - math-verify is a dependency
        return False
    try:
        with _MV_LOCK:
            gold_parsed = parse(_as_math(gold), parsing_timeout=None)
            pred_parsed = parse(_as_math(prediction), parsing_timeout=None)
            if not gold_parsed or not pred_parsed:
                return False
            return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - a grader must never crash the evaluation
        log.debug("math-verify failed on %r vs %r", prediction, gold, exc_info=True)
        return False


def _numbers_equal(a: Fraction, b: Fraction) -> bool:
    if a == b:
        return True
    return abs(a - b) <= Fraction(1, 10**9) * max(abs(a), abs(b))


def answers_match(prediction: str, gold: str) -> bool:
    """Whether the (already extracted) ``prediction`` equals the ``gold`` answer.

    1. Numbers: when the gold answer is a single number and the prediction holds a number (its last
       one), compare them exactly (relative tolerance 1e-9); the result is final.
    2. Normalized text equality (:func:`normalize_text`).
    3. math-verify, for math-looking answers only (LaTeX, fractions, expressions, sets, intervals).
    """
    if prediction is None or gold is None:
        return False
    prediction, gold = str(prediction).strip(), str(gold).strip()
    if not prediction or not gold:
        return False
    g = _number(gold)
    if g is not None and g[1] == 1:
        p = _number(prediction)
        if p is not None:
            return _numbers_equal(p[0], g[0])
    p_text, g_text = normalize_text(prediction), normalize_text(gold)
    if p_text and p_text == g_text:
        return True
    if _math_verify_safe(prediction) and _math_verify_safe(gold):
        return _math_verify_equal(prediction, gold)
    return False


# --------------------------------------------------------------------------------------------------
# voting


def _vote_key(answer: str) -> str:
    if "\n" in answer.strip():  # code, several lines: never a number ("return 5" is not 5)
        return "c" + "\n".join(line.rstrip() for line in answer.strip().splitlines() if line.strip())
    got = _number(answer)
    if got is not None:
        return "#" + _canonical(got[0])
    text = normalize_text(answer)
    return "t" + text if text else ""


def majority_vote(answers: Iterable[str]) -> str:
    """The most common answer, grouping equal numbers (``"1,000"``, ``"1000.0"``) and equal texts.

    Ties go to the group seen first; the original text of that group's first member is returned.
    Empty answers are ignored; ``""`` when nothing is left.
    """
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for answer in answers:
        if answer is None:
            continue
        answer = str(answer)
        key = _vote_key(answer) if answer.strip() else ""
        if not key:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, answer)
    if not counts:
        return ""
    best = max(counts.values())
    for key, n in counts.items():  # dicts keep insertion order: first occurrence wins ties
        if n == best:
            return first[key]
    return ""  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# code

_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE)
_CODE_START = re.compile(r"^(?:async\s+def|def|class|import|from\s+\S+\s+import|@)\b", re.MULTILINE)
_DEFINES = re.compile(r"^[ \t]*(?:async[ \t]+)?(?:def|class)[ \t]", re.MULTILINE)
_NOT_PYTHON = frozenset({"text", "txt", "output", "console", "bash", "sh", "shell", "json", "plaintext"})


def _parses(code: str) -> bool:
    try:
        ast.parse(textwrap.dedent(code))
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    return True


def defines_code(code: str) -> bool:
    """Whether ``code`` has a ``def`` or ``class`` statement (a function, not just a body or a usage line)."""
    return _DEFINES.search(code) is not None


def code_blocks(text: str) -> list[tuple[int, str]]:
    """``(start, code)`` of each fenced block (```python ... ```) of ``text``, in order; an unclosed last
    fence (a reply cut off by the token limit) runs to the end. Blocks tagged as output or shell are left out;
    the code keeps its indentation (a function body stays indented)."""
    out = []
    for m in _FENCE.finditer(str(text or "")):
        if m.group(1).lower() in _NOT_PYTHON:
            continue
        code = m.group(2).strip("\n").rstrip()
        if code.strip():
            out.append((m.start(), code))
    return out


def extract_code(text: str) -> str:
    """The Python code in a model's reply, leniently (small models write it every which way):

    1. fenced blocks: the last one that defines something (``def``/``class``), else the last one;
    2. no fence: from the first ``def``/``import``/``class`` line, the longest run of lines that parses
       (prose before and after is dropped), else everything from that line (code with a syntax error);
    3. else the reply itself when it parses as Python (a bare function body, kept indented);
    4. else ``""`` (no code).
    """
    text = str(text or "")
    blocks = code_blocks(text)
    if blocks:
        defining = [code for _, code in blocks if defines_code(code)]
        return (defining or [blocks[-1][1]])[-1]
    lines = text.replace("\r\n", "\n").split("\n")
    start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is not None:
        for end in range(len(lines), start, -1):
            chunk = "\n".join(lines[start:end]).rstrip()
            if chunk and _parses(chunk):
                return chunk
        return "\n".join(lines[start:]).rstrip()  # code with a syntax error is still the reply's code
    body = text.strip("\n").rstrip()
    return body if body.strip() and _parses(body) else ""
