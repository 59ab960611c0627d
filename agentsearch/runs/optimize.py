"""``optimize`` without the command line: flags to a :class:`StudyConfig`, then the study with its models.

The CLI parses and prints; everything between is here, so a script or a notebook runs the same study
(``study_config(...)``, then ``optimize(cfg, ModelFlags(...))``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentsearch.errors import UserError
from agentsearch.evaluators.benchmarks import SplitSpec
from agentsearch.evaluators.llm.models import ModelFlags
from agentsearch.runs.study import StudyConfig, default_study_name, parse_duration, prepare_study, run_study


def _names(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def study_config(
    *,
    benchmark: str,
    models: ModelFlags,
    run_dir: Path,
    study: str | None = None,
    data: str | None = None,
    val_size: str = "50",
    test_size: str = "100",
    optimizer: str | None = None,
    sampler: str | None = None,
    strategy: str | None = None,
    pruner: str | None = None,
    objectives: str = "accuracy",
    formats: str = "text,chat,xml,json",
    baselines: bool = True,
    baseline_names: str | None = None,
    time_budget: str | float | None = None,
    warn: Callable[[str], None] = lambda msg: None,
    **settings: Any,
) -> StudyConfig:
    """The study the ``optimize`` flags describe. Split sizes are counts or fractions as typed (``"50"``,
    ``"0.1"``); names are checked here, before any data is loaded (each check's error names its flag).
    ``settings`` are :class:`StudyConfig` fields as they are; ``warn`` gets one line per deprecated flag.
    ``time_budget``: seconds or a duration (``90s``, ``30m``, ``2h``, ``1h30m``).

    One flag names the search: ``optimizer`` (any strategy: an Optuna sampler, an LLM strategy, staged;
    default ``tpe``). The deprecated ``strategy`` (``staged``) and ``sampler`` map onto it; ``sampler`` next
    to a strategy that is not a sampler keeps its old meaning, the Optuna sampler that strategy falls back
    on (default ``tpe``). ``pruner`` None: ``sha``, or ``none`` for a multi-objective study (Optuna prunes
    single-objective studies only); given with several objectives it is ignored, with a warning."""
    from agentsearch.optimizers.base import parse_objectives
    from agentsearch.optimizers.registry import SAMPLERS, STRATEGIES
    from agentsearch.optimizers.store import make_pruner, make_sampler
    from agentsearch.search_space.baselines import check_baseline_names
    from agentsearch.search_space.space import SearchSpace

    if strategy is not None:
        if strategy != "staged":
            raise UserError(f"--strategy: unknown strategy {strategy!r} (choose from staged)")
        if optimizer not in (None, "staged"):
            raise UserError(f"--strategy staged and --optimizer {optimizer}: give one (--optimizer staged)")
        warn("--strategy is deprecated: use --optimizer staged")
        optimizer = "staged"
    if sampler is not None:
        make_sampler(sampler, 0, 1, 1)  # a bad --sampler: one line, now
        if optimizer is None:
            warn(f"--sampler is deprecated: use --optimizer {sampler}")
            optimizer = sampler
        elif optimizer in SAMPLERS:
            if optimizer != sampler:
                raise UserError(f"--sampler {sampler} and --optimizer {optimizer}: give one (--optimizer NAME)")
            warn(f"--sampler is deprecated: --optimizer {optimizer} alone says it")
        else:
            warn(
                f"--sampler is deprecated; here it keeps its old meaning: the Optuna sampler --optimizer "
                f"{optimizer} falls back on ({sampler})"
            )
    optimizer = optimizer or "tpe"
    STRATEGIES.get(optimizer)
    if optimizer in SAMPLERS:
        sampler = optimizer
    sampler = sampler or "tpe"
    parsed = parse_objectives(objectives)
    if pruner is not None:
        make_pruner(pruner, 1, 2)  # a bad --pruner: one line, now
        if len(parsed) > 1 and pruner != "none":
            warn(f"Optuna does not prune multi-objective studies: --pruner {pruner} is ignored")
    pruner = "none" if len(parsed) > 1 else (pruner or "sha")
    make_sampler(sampler, 0, len(parsed), 1)  # the sampler's own requirements (packages, objectives)
    SearchSpace.from_levels(settings.get("levels", "prompt,module,agent"))
    if time_budget is not None:
        settings["time_budget_s"] = parse_duration(str(time_budget))
    split = SplitSpec(
        seed=settings.get("seed", 0),
        val_size=SplitSpec.parse_size(val_size, "--val-size"),
        test_size=SplitSpec.parse_size(test_size, "--test-size"),
    )  # validates the sizes, naming the flag
    return StudyConfig(
        study=study or default_study_name(benchmark),
        benchmark=benchmark,
        data=data,
        val_size=split.val_size,
        test_size=split.test_size,
        objectives=parsed,
        optimizer=optimizer,
        sampler=sampler,
        pruner=pruner,
        formats=tuple(_names(formats)),
        baselines=baselines,
        baseline_names=check_baseline_names(_names(baseline_names)) if baseline_names is not None else None,
        run_dir=run_dir,
        aliases=models.aliases(),
        prices=models.prices(),
        model_flags=models.public(),
        **settings,
    )


def optimize(
    cfg: StudyConfig,
    models: ModelFlags,
    *,
    cache: bool = True,
    observer: Any = None,
    announce: Callable[[str], None] = lambda msg: None,
    progress: Callable[[int, int], None] | None = None,
    running: contextlib.AbstractContextManager[Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the study: data, space and storage are checked before any model server starts;
    then the models start, the study runs, and they stop. ``running`` (e.g. a progress display) is
    entered once the models run. Returns the summary. During the study stdout goes to stderr (DSPy's
    optimizers print from worker threads), so stdout carries only what the caller prints."""
    from agentsearch.evaluators.llm.lm import configure_cache

    prepared = prepare_study(cfg)
    configure_cache(cfg.run_dir / "cache" if cache else None)
    model_set = models.model_set(cfg.run_dir, cache=cache, announce=announce, progress=progress)
    with model_set, running or contextlib.nullcontext(), contextlib.redirect_stdout(sys.stderr):
        cfg.models = model_set.public()
        return run_study(prepared, model_set.lms, observer=observer, announce=announce)
