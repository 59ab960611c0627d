"""Tests for answer extraction, normalization, comparison and voting."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentsearch.evaluators.answers import (
    answers_match,
    extract_answer,
    majority_vote,
    normalize_number,
    normalize_text,
)

# --------------------------------------------------------------------------------------------------
# extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72", "72"),
        ("#### 1,080", "1,080"),
        ("work\n####   -5  \n", "-5"),
        ("#### 72\n\nHope this helps!", "72"),
        ("first #### 1 then #### 2", "2"),
        ("#### \\boxed{9}", "9"),
        ("So the result is \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        ("\\boxed{a{b}c} and finally \\boxed{7}", "7"),
        ("\\fbox{3}", "3"),
        ("$\\boxed{12}$", "12"),
        ("truncated \\boxed{12", "12"),
        ("The answer is 42.", "42"),
        ("The answer is: 7\nBecause 3 + 4 = 7.", "7"),
        ("Answer: B", "B"),
        ("Final answer: **12**", "12"),
        ("I think the final answer is $5$.", "5"),
        ("Reasoning... The final answer is 18 dollars.", "18 dollars"),
        ("the answer is 3. Wait, the answer is 4.", "4"),
        ("  just 5  ", "just 5"),
        ("**72**", "72"),
        ("", ""),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_none_is_empty():
    assert extract_answer(None) == ""  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# normalize_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("72", "72"),
        ("1,234", "1234"),
        ("1,234,567", "1234567"),
        ("1,234.50", "1234.5"),
        ("$1,234.50", "1234.5"),
        ("\\$5", "5"),
        ("$ 18", "18"),
        ("12 apples", "12"),
        ("5 dollars", "5"),
        ("18 dollars per hour", "18"),
        ("\\text{5 apples}", "5"),
        ("10\\text{ cm}", "10"),
        ("50%", "50"),
        ("50\\%", "50"),
        ("**72**", "72"),
        ("7.0", "7"),
        ("7.00", "7"),
        ("3.50", "3.5"),
        ("+7", "7"),
        ("-5", "-5"),
        ("−5", "-5"),  # unicode minus
        ("-0", "0"),
        ("-0.50", "-0.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("1e3", "1000"),
        ("1.5e-3", "0.0015"),
        ("10{,}000", "10000"),
        ("3/4", "0.75"),
        ("-3/4", "-0.75"),
        ("\\frac{3}{4}", "0.75"),
        ("\\dfrac{9}{4}", "2.25"),
        ("\\frac34", "0.75"),
        ("\\frac{1}{3}", "1/3"),
        ("2/6", "1/3"),
        ("\\boxed{72}", "72"),
        ("x = 5", "5"),
        ("2 + 3 = 5", "5"),
        ("The answer is 42.", "42"),
        ("3rd", "3"),
        # several numbers: the last one is canonical
        ("5 apples and 3 pears", "3"),
        ("1, 5", "5"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
    ],
)
def test_normalize_number(text, expected):
    assert normalize_number(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Paris",
        "B",
        "1,5",  # ambiguous: European decimal comma or a list; documented as not a number
        "12,34",
        "1234,567",
        "1/0",
        "x^2+3",
        "2x",
        "5m",
        "5-3",
        "5 - 3",
        "0.1 + 0.2",
        "3 x 4",
        "3:30",
        "\\sqrt{2}",
        "2^{10}",
        "(1, 5)",
        "[1, 2]",
        "1e99999",
    ],
)
def test_normalize_number_not_a_number(text):
    assert normalize_number(text) is None


# --------------------------------------------------------------------------------------------------
# normalize_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"The answer is Paris."', "paris"),
        ("  Hello   World ", "hello world"),
        ("Answer: Yes!", "yes"),
        ("(B)", "b"),
        ("\\text{Monday}", "monday"),
        ("'yes'", "yes"),
        ("**True**", "true"),
        ("", ""),
    ],
)
def test_normalize_text(text, expected):
    assert normalize_text(text) == expected


# --------------------------------------------------------------------------------------------------
# answers_match


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("72", "72"),
        ("72.0", "72"),
        ("$72", "72"),
        ("72 dollars", "72"),
        ("1,080", "1080"),
        ("1080", "1,080"),
        ("-5", "-5"),
        ("0.50", "0.5"),
        ("1/2", "0.5"),
        ("\\frac{1}{2}", "0.5"),
        ("0.5", "\\frac{1}{2}"),
        ("\\dfrac{79}{173}", "\\frac{79}{173}"),
        ("0.1", "0.1000000000001"),  # within 1e-9 relative
        ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
        ("\\frac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}"),
        ("2x+1", "1+2x"),
        ("(1, 5)", "(1,5)"),
        ("\\{1,5\\}", "\\{5,1\\}"),
        ("Paris", "paris"),
        ("The answer is Paris.", "Paris"),
        ("(B)", "B"),
    ],
)
def test_answers_match(prediction, gold):
    assert answers_match(prediction, gold)


@pytest.mark.parametrize(
    ("prediction", "gold"),
    [
        ("73", "72"),
        ("7.2", "72"),
        ("0.333333", "1/3"),  # numbers compare exactly
        ("1,5", "1.5"),  # ambiguous comma is not 1.5
        ("", "72"),
        ("72", ""),
        ("3", "x^2+3"),  # an expression is not its last number
        ("5", "(1, 5)"),  # a tuple is not its last number
        ("tab", "bat"),  # words never go through sympy (a*b*t == b*a*t)
        ("London", "Paris"),
        ("2^{2^{2^{20}}}", "5"),  # a power tower must not hang sympy
        ("10^{10^{10}}", "10"),
    ],
)
def test_answers_do_not_match(prediction, gold):
    assert not answers_match(prediction, gold)


def test_answers_match_tolerates_none():
    assert not answers_match(None, "1")  # type: ignore[arg-type]
    assert not answers_match("1", None)  # type: ignore[arg-type]


def test_answers_match_from_threads():
    cases = [
        ("\\frac{1}{2}", "0.5", True),
        ("\\sqrt{8}", "2\\sqrt{2}", True),
        ("x^2 - 1", "(x-1)(x+1)", True),
        ("1,080", "1080", True),
        ("73", "72", False),
        ("Paris", "paris", True),
        ("\\frac{2}{3}", "0.5", False),
        ("\\pi/2", "\\frac{\\pi}{2}", True),
    ] * 8
    results: dict[int, bool] = {}
    threads: set[str] = set()

    def check(i: int) -> None:
        threads.add(threading.current_thread().name)
        prediction, gold, _ = cases[i]
        results[i] = answers_match(prediction, gold)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(check, range(len(cases))))
    assert all(threading.main_thread().name != name for name in threads)
    assert [results[i] for i in range(len(cases))] == [expected for _, _, expected in cases]


def test_answers_match_numeric_path_is_fast():
    import time

    start = time.perf_counter()
    for i in range(2000):
        assert answers_match(f"{i:,} apples", str(i))
    assert time.perf_counter() - start < 2.0


# --------------------------------------------------------------------------------------------------
# majority_vote


def test_majority_vote_groups_equal_numbers():
    assert majority_vote(["5", "5.0", "$5", "6", "6"]) == "5"


def test_majority_vote_groups_texts():
    assert majority_vote(["Paris", "London", "paris.", "PARIS"]) == "Paris"


def test_majority_vote_tie_goes_to_first_seen():
    assert majority_vote(["a", "b"]) == "a"
    assert majority_vote(["b", "a", "a", "b"]) == "b"
    assert majority_vote(["1,000", "1000", "x", "x"]) == "1,000"


def test_majority_vote_returns_original_text_of_first_member():
    assert majority_vote(["1000.0", "1,000", "7"]) == "1000.0"
    assert majority_vote(["\\frac{1}{2}", "0.5", "1"]) == "\\frac{1}{2}"


def test_majority_vote_ignores_empty():
    assert majority_vote(["", "  ", "3", "", ""]) == "3"
    assert majority_vote(["", "  "]) == ""
    assert majority_vote([]) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-$5", "-5"),
        ("-\\$5", "-5"),
        ("1/2, so", "0.5"),
        ("1/1024", "0.0009765625"),
        ("-0.125", "-0.125"),
        (f"1/{2**40}", "0.0000000000009094947017729282379150390625"),
        ("1234.5600", "1234.56"),
        ("2.5e2", "250"),
    ],
)
def test_normalize_number_exact_decimals_and_signs(text, expected):
    assert normalize_number(text) == expected
