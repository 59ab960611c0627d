"""DSPy prompt optimizers as a prompt-level step: ``--prompt-optimizer bootstrap|mipro|gepa``.

:func:`optimize_prompts` compiles a candidate's program, runs one of DSPy's teleprompters on the
TRAIN split, and writes what it found back into the graph config: each node's ``instruction`` and
its few-shot ``demos`` (``Demo(question, answer, reasoning)``). The result is still a typed config
(stored, logged and exported as YAML), never a pickled program.

* ``bootstrap`` -- ``dspy.BootstrapFewShot``: demos from the node's own correct traces.
* ``mipro`` -- ``dspy.MIPROv2``: proposed instructions and bootstrapped demo sets, searched with TPE.
* ``gepa`` -- ``dspy.GEPA``: instructions evolved by a reflection LM from the metric's feedback.

It runs per candidate inside a search, so the work is bounded: the train split is sampled down to
``_BUDGETS[budget]`` examples (and a validation part split off for ``mipro``/``gepa``), and GEPA runs
on a fixed number of metric calls instead of its own ``auto`` budget.

Mapping back: a node's instruction and demos come from its *prompt* predictors (the ones the operator
builds from the node's instruction, that read ``question`` and write ``answer``; e.g. ``draft`` and
``revise`` of ``self_refine``, never its fixed ``critique``). The instruction is taken from the first
of them the optimizer changed, the demos from the first that has demos. Demos are written only for
operators whose spec has ``demos=True``, instructions only for params with an ``instruction`` field.
What the optimizer does to other predictors has no place in the config and is dropped.

Errors: an unknown method or an empty train split is a :class:`~agentsearch.errors.UserError`; an
LM endpoint failure (``dspy.utils.exceptions.LMError``) propagates; any other failure inside DSPy
is logged as a warning and the graph comes back unchanged (a prompt step never kills a study).

LM calls: every program call goes through the node's own LM from ``lms`` (by its ``model`` alias);
DSPy's ``settings.lm`` is set to ``lms["default"]`` only for the duration of the call, and the
proposer/reflection calls use ``proposer_lm`` (else the default LM). The active usage meter
(:func:`agentsearch.evaluators.llm.lm.metering`) follows the calls into DSPy's worker threads.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import ContextWindowExceededError, LMError
from pydantic import ValidationError

from agentsearch.errors import UserError
from agentsearch.evaluators.benchmarks import Example
from agentsearch.evaluators.llm.lm import Meter, current_meter, metering
from agentsearch.evaluators.operators.compile import GraphProgram
from agentsearch.optimizers.registry import PROMPT_OPTIMIZERS
from agentsearch.search_space.graph import AgentGraph, NodeConfig
from agentsearch.search_space.operators import Demo

log = logging.getLogger(__name__)


#: What the operators show for a demo without reasoning (see OperatorModule._predictor).
_OMITTED = "(omitted)"


@dataclass(frozen=True)
class _Budget:
    train: int  # most train examples used (bootstrap tries at most this many)
    val: int  # most examples scored per full evaluation (mipro, gepa)
    mipro_candidates: int  # MIPROv2's N (its auto presets: 6, 12, 18)
    mipro_trials: int  # most MIPROv2 trials (each scores one instruction/demo combination on val)
    gepa_rounds: int  # reflection rounds GEPA is budgeted for


#: ``budget`` -> caps. MIPROv2's own ``auto`` presets size the search by *all* predictors (also those
#: the config cannot store, e.g. self_refine's critique) and use up to 100+ validation examples; here
#: the same formula runs over the storable predictors only, capped.
_BUDGETS: dict[str, _Budget] = {
    "light": _Budget(train=16, val=8, mipro_candidates=6, mipro_trials=10, gepa_rounds=4),
    "medium": _Budget(train=32, val=16, mipro_candidates=12, mipro_trials=20, gepa_rounds=8),
    "heavy": _Budget(train=64, val=32, mipro_candidates=18, mipro_trials=40, gepa_rounds=16),
}


# -- the program DSPy optimizes ---------------------------------------------------------------------


class _Shared:
    """State shared by a program and every copy DSPy makes of it (deepcopy returns the same object)."""

    def __init__(self, node_lms: Mapping[str, dspy.BaseLM], meter: Meter | None):
        self.node_lms = dict(node_lms)
        self.meter = meter
        self.lm_error: LMError | None = None
        self._lock = threading.Lock()

    def fail(self, exc: LMError) -> None:
        with self._lock:
            if self.lm_error is None:
                self.lm_error = exc

    def __deepcopy__(self, memo: dict[int, Any]) -> _Shared:
        return self

    def __copy__(self) -> _Shared:
        return self


class _OptProgram(GraphProgram):
    """The graph's program, made safe for DSPy's teleprompters.

    * The per-node LMs are not stored on the predictors (DSPy's ``reset_copy`` sets them to None and
      its ``deepcopy`` would copy the LM clients); each node runs inside ``dspy.context(lm=...)``.
    * The caller's usage meter is re-entered in DSPy's worker threads (they do not copy contextvars).
    * The first LM endpoint error is remembered; later calls fail at once (no more LM calls) and
      :func:`optimize_prompts` re-raises it after the optimizer returns.
    """

    def __init__(
        self, graph: AgentGraph, lms: Mapping[str, dspy.BaseLM], meter: Meter | None, answer_kind: str = "text"
    ):
        super().__init__(graph, lms=lms, parallel=True, answer_kind=answer_kind)  # validates aliases, sets LMs
        node_lms = {}
        for node_id, module in self.nodes.items():
            lms_used = {id(p.lm): p.lm for p in module.predictors() if p.lm is not None}
            if lms_used:
                node_lms[node_id] = next(iter(lms_used.values()))
            for predictor in module.predictors():
                predictor.lm = None
        self._shared = _Shared(node_lms, meter)

    def _run_node(self, node_id: str, question: str, outputs: Mapping[str, Any]) -> Any:
        lm = self._shared.node_lms.get(node_id)
        with dspy.context(lm=lm) if lm is not None else nullcontext():
            return super()._run_node(node_id, question, outputs)

    def forward(self, question: str) -> dspy.Prediction:
        shared = self._shared
        if shared.lm_error is not None:
            raise shared.lm_error
        meter = shared.meter
        with metering(meter) if meter is not None and current_meter() is None else nullcontext():
            try:
                return super().forward(question)
            except ContextWindowExceededError:
                raise  # the prompt's fault (e.g. too many demos): a failed example, not an endpoint error
            except LMError as exc:
                shared.fail(exc)
                raise


# -- examples and metrics ---------------------------------------------------------------------------


def _to_dspy(examples: Sequence[Example]) -> list[dspy.Example]:
    return [dspy.Example(question=ex.question, answer=ex.answer).with_inputs("question") for ex in examples]


class _Metrics:
    """Our ``metric(example, prediction_text) -> bool`` in DSPy's metric shapes."""

    def __init__(self, examples: Sequence[Example], metric: Callable[[Example, str], bool]):
        self._by_key = {(ex.question, ex.answer): ex for ex in examples}
        self._metric = metric

    def _ours(self, gold: Any) -> Example:
        key = (str(gold.question), str(gold.answer))
        return self._by_key.get(key) or Example(id="", question=key[0], answer=key[1])

    def _answer(self, pred: Any) -> str:
        value = getattr(pred, "answer", None)
        return "" if value is None else str(value).strip()

    def passed(self, gold: Any, pred: Any, trace: Any = None) -> bool:
        """DSPy metric for BootstrapFewShot / MIPROv2."""
        return bool(self._metric(self._ours(gold), self._answer(pred)))

    def feedback(
        self, gold: Any, pred: Any, trace: Any = None, pred_name: str | None = None, pred_trace: Any = None
    ) -> dspy.Prediction:
        """GEPA's feedback metric: the score and a sentence saying what was right or wrong."""
        example = self._ours(gold)
        answer = self._answer(pred)
        if self._metric(example, answer):
            return dspy.Prediction(score=1.0, feedback=f"Correct: the final answer {answer!r} is right.")
        text = f"Wrong: the final answer was {answer!r}, the correct answer is {example.answer!r}."
        if example.solution:
            text += f" A correct solution: {example.solution[:1500]}"
        return dspy.Prediction(score=0.0, feedback=text)


class _MappableRoundRobin:
    """GEPA component selector: cycles through the predictors whose instruction maps to the config."""

    def __init__(self, names: Sequence[str]):
        self.names = list(names)
        self._next: dict[int, int] = {}

    def __call__(self, state: Any, trajectories: Any, subsample_scores: Any, candidate_idx: int,
                 candidate: dict[str, str]) -> list[str]:
        names = [n for n in self.names if n in candidate] or list(candidate)
        i = self._next.get(candidate_idx, 0)
        self._next[candidate_idx] = i + 1
        return [names[i % len(names)]]


# -- mapping the optimized program back to the config -----------------------------------------------


def _prompt_predictors(module: dspy.Module) -> list[str]:
    """Names (within a node module) of the predictors built from the node's instruction and demos."""
    instruction = getattr(module, "instruction", None)
    named = [
        (name, p) for name, p in module.named_predictors()
        if "question" in p.signature.input_fields and "answer" in p.signature.output_fields
    ]
    own = [name for name, p in named if instruction and p.signature.instructions == instruction]
    return own or [name for name, _ in named[:1]]


def _demo_dicts(demos: Sequence[Any]) -> list[dict[str, Any]]:
    return [dict(d.items()) if hasattr(d, "items") else dict(d) for d in demos]


def _to_demos(demos: Sequence[Any]) -> tuple[Demo, ...]:
    out = []
    for d in _demo_dicts(demos):
        question, answer = d.get("question"), d.get("answer")
        if question is None or answer is None or not str(question).strip() or not str(answer).strip():
            continue
        reasoning = str(d.get("reasoning") or "").strip()
        out.append(Demo(question=str(question), answer=str(answer).strip(),
                        reasoning="" if reasoning == _OMITTED else reasoning))
    return tuple(out)


def _map_node(
    node: NodeConfig, before: dspy.Module, after: dspy.Module, keep_empty_demos: bool
) -> NodeConfig:
    """``node`` with the instruction/demos of the optimized module ``after`` (``before``: as compiled)."""
    params = node.params
    fields = type(params).model_fields
    names = _prompt_predictors(before)
    if not names:
        return node
    old = dict(before.named_predictors())
    new = dict(after.named_predictors())
    update: dict[str, Any] = {}

    if "instruction" in fields:
        effective = getattr(before, "instruction", "") or ""
        base = getattr(params, "instruction", None) or node.spec.default_instruction
        suffix = effective[len(base):] if effective.startswith(base) else ""  # e.g. experience insights
        for name in names:
            if name not in new or name not in old:
                continue
            text = new[name].signature.instructions
            if text == old[name].signature.instructions:
                continue
            if suffix:
                if not text.endswith(suffix):
                    log.info("node '%s': optimized instruction drops the node's insights; not kept", node.id)
                    break
                text = text[: -len(suffix)]
            text = text.strip()
            if text and text != base:
                update["instruction"] = text
            break

    if "demos" in fields and node.spec.demos:
        for name in names:
            if name not in new or name not in old:
                continue
            demos = new[name].demos or []
            if _demo_dicts(demos) == _demo_dicts(old[name].demos or []):
                continue  # untouched (e.g. GEPA): keep the config's demos as they are
            mapped = _to_demos(demos)
            if mapped or not (keep_empty_demos or demos):
                update["demos"] = mapped
            break

    while update:
        data = params.model_dump(exclude_unset=True)
        data.update(update)
        try:
            new_params = node.spec.validate_params(data)
        except ValidationError as exc:  # e.g. an instruction over the length limit
            dropped = "instruction" if "instruction" in update else "demos"
            log.warning("node '%s': optimized %s not kept (%s)", node.id, dropped, _first_line(exc))
            update.pop(dropped)
            continue
        return node.model_copy(update={"params": new_params})
    return node


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _map_back(graph: AgentGraph, before: GraphProgram, after: dspy.Module, method: str) -> AgentGraph:
    after_nodes = getattr(after, "nodes", None)
    if not isinstance(after_nodes, Mapping):
        log.warning("graph '%s': the %s optimizer returned an unexpected program; graph unchanged",
                    graph.name, method)
        return graph
    nodes = []
    for node in graph.nodes:
        if node.id in after_nodes:
            node = _map_node(node, before.nodes[node.id], after_nodes[node.id],
                             keep_empty_demos=(method == "bootstrap"))
        nodes.append(node)
    if all(a is b for a, b in zip(nodes, graph.nodes, strict=True)):
        return graph
    return graph.model_copy(update={"nodes": tuple(nodes)})


# -- the step -------------------------------------------------------------------------------------


def _split(train: list[Example], valset: Sequence[Example] | None, cap: _Budget,
           rng: random.Random) -> tuple[list[Example], list[Example]]:
    """(train, val) for optimizers that score candidates: val from ``valset`` or split off train."""
    if valset:
        val = list(valset)
        if len(val) > cap.val:
            val = rng.sample(val, cap.val)
        return train, val
    if len(train) < 2:
        return train, list(train)
    n_val = min(cap.val, len(train) // 2)
    return train[n_val:], train[:n_val]


def optimize_prompts(
    graph: AgentGraph,
    lms: Mapping[str, dspy.BaseLM],
    train: Sequence[Example],
    metric: Callable[[Example, str], bool],
    *,
    method: str,
    seed: int = 0,
    max_demos: int = 3,
    budget: str = "light",
    proposer_lm: dspy.BaseLM | None = None,
    valset: Sequence[Example] | None = None,
    num_threads: int = 4,
    answer_kind: str = "text",
    on_failure: Callable[[str], None] | None = None,
) -> AgentGraph:
    """``graph`` with the instructions/demos DSPy's ``method`` optimizer found on ``train``.

    ``budget`` (light|medium|heavy) caps the examples used (see ``_BUDGETS``); ``max_demos`` is the
    most bootstrapped demos per node; ``proposer_lm`` writes MIPRO's instructions and GEPA's
    reflections (default: ``lms["default"]``); ``valset`` (optional) scores MIPRO/GEPA candidates,
    else part of ``train`` is held out for it. Returns ``graph`` itself when nothing changed.
    """
    if method not in PROMPT_OPTIMIZERS:
        known = ", ".join(PROMPT_OPTIMIZERS)
        raise UserError(f"--prompt-optimizer: unknown {method!r} (choose from {known})")
    if budget not in _BUDGETS:
        raise UserError(f"prompt optimizer budget: unknown {budget!r} (choose from {', '.join(_BUDGETS)})")
    if not train:
        raise UserError(f"--prompt-optimizer {method}: needs a train split (it is empty)")
    if max_demos < 0:
        raise UserError(f"prompt optimizer: max_demos must be >= 0, got {max_demos}")
    if not lms:
        raise UserError("prompt optimizer: no model configured")
    default_lm = lms["default"] if "default" in lms else next(iter(lms.values()))
    reflection_lm = proposer_lm or default_lm
    # a bad alias is the user's error: raised here
    program = _OptProgram(graph, lms, meter=current_meter(), answer_kind=answer_kind)
    if not _mappable(graph, program, method):
        return graph  # no prompt the config could store: nothing to optimize, no LM call

    cap = _BUDGETS[budget]
    rng = random.Random(seed)
    pool = list(train)
    if len(pool) > cap.train:
        pool = rng.sample(pool, cap.train)
    metrics = _Metrics(list(train) + list(valset or ()), metric)

    try:
        with dspy.context(lm=default_lm):
            optimized = _run(method, program, pool, valset, metrics, cap, seed=seed, max_demos=max_demos,
                             reflection_lm=reflection_lm, num_threads=num_threads, rng=rng)
    except Exception as exc:  # noqa: BLE001 - a prompt step must never kill a study
        if program._shared.lm_error is not None:
            raise program._shared.lm_error from exc
        if isinstance(exc, LMError) and not isinstance(exc, ContextWindowExceededError):
            raise
        reason = f"{method} failed: {type(exc).__name__}: {_first_line(exc)}"[:500]
        log.warning("graph '%s': %s; the graph is evaluated unchanged", graph.name, reason)
        if on_failure is not None:
            on_failure(reason)  # the trial says so (metric, user attr, MLflow tag)
        return graph
    if program._shared.lm_error is not None:
        raise program._shared.lm_error
    return _map_back(graph, program, optimized, method)


def _mappable(graph: AgentGraph, program: GraphProgram, method: str) -> list[str]:
    """Full names of the predictors whose optimized prompt the config can store (for ``method``)."""
    names = []
    for node in graph.nodes:
        fields = type(node.params).model_fields
        instruction = "instruction" in fields and method != "bootstrap"
        demos = "demos" in fields and node.spec.demos and method != "gepa"
        if instruction or demos:
            names += [f"nodes['{node.id}'].{name}" for name in _prompt_predictors(program.nodes[node.id])]
    return names


def _run(
    method: str,
    program: _OptProgram,
    pool: list[Example],
    valset: Sequence[Example] | None,
    metrics: _Metrics,
    cap: _Budget,
    *,
    seed: int,
    max_demos: int,
    reflection_lm: dspy.BaseLM,
    num_threads: int,
    rng: random.Random,
) -> dspy.Module:
    if method == "bootstrap":
        if max_demos == 0:
            return program
        teleprompter = dspy.BootstrapFewShot(
            metric=metrics.passed, max_bootstrapped_demos=max_demos, max_labeled_demos=0, max_rounds=1,
            max_errors=len(pool) + 1,  # unusable model output fails that example, not the step
        )
        return teleprompter.compile(program, trainset=_to_dspy(pool))

    train, val = _split(pool, valset, cap, rng)
    if method == "mipro":
        # DSPy's auto formula: trials = max(2 * variables * log2(N), 1.5 * N), variables = 2 per predictor
        # (instruction + demo set; 1 when zero-shot), over the storable predictors, capped.
        n = cap.mipro_candidates
        variables = max(1, len(_mappable(program.graph, program, "mipro"))) * (2 if max_demos else 1)
        trials = min(cap.mipro_trials, int(max(2 * variables * math.log2(n), 1.5 * n)))
        teleprompter = dspy.MIPROv2(
            metric=metrics.passed, prompt_model=reflection_lm, task_model=dspy.settings.lm,
            max_bootstrapped_demos=max_demos, max_labeled_demos=0, auto=None, num_candidates=n,
            num_threads=num_threads, max_errors=len(train) + len(val) + 1, seed=seed, verbose=False,
            track_stats=False,
        )
        # as its auto presets do: half the candidates are instructions when demo sets are searched too
        teleprompter.num_instruct_candidates = max(1, n // 2) if max_demos else n
        return teleprompter.compile(program, trainset=_to_dspy(train), valset=_to_dspy(val),
                                    num_trials=trials, minibatch=False)

    # gepa: a fixed number of metric calls (program runs): the seed's full evaluation, then rounds
    # of (3 on the parent + 3 on the child) plus a full evaluation of each accepted child.
    minibatch = max(1, min(3, len(train)))
    max_calls = 2 * len(val) + 2 * minibatch * cap.gepa_rounds
    teleprompter = dspy.GEPA(
        metric=metrics.feedback, max_metric_calls=max_calls, reflection_lm=reflection_lm,
        reflection_minibatch_size=minibatch,
        component_selector=_MappableRoundRobin(_mappable(program.graph, program, "gepa")),
        use_merge=False, num_threads=num_threads, seed=seed, warn_on_score_mismatch=False,
    )
    return teleprompter.compile(program, trainset=_to_dspy(train), valset=_to_dspy(val))
