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
from agentsearch.runs.study import StudyConfig, default_study_name, prepare_study, run_study


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
    strategy: str | None = None,
    optimizer: str | None = None,
    objectives: str = "accuracy",
    formats: str = "text,chat,xml,json",
    baselines: bool = True,
    baseline_names: str | None = None,
    **settings: Any,
) -> StudyConfig:
    """The study the ``optimize`` flags describe. Split sizes are counts or fractions as typed (``"50"``,
    ``"0.1"``); ``--strategy staged`` is ``--optimizer staged``; names are checked here, before any data is
    loaded (each check's error names its flag). ``settings`` are :class:`StudyConfig` fields as they are."""
    from agentsearch.optimizers.base import parse_objectives
    from agentsearch.optimizers.store import make_pruner, make_sampler
    from agentsearch.optimizers.registry import STRATEGIES
    from agentsearch.search_space.baselines import check_baseline_names
    from agentsearch.search_space.space import SearchSpace

    if strategy is not None:
        if strategy != "staged":
            raise UserError(f"--strategy: unknown strategy {strategy!r} (choose from staged)")
        optimizer = optimizer or "staged"
    if optimizer is not None:
        STRATEGIES.get(optimizer)
    make_sampler(settings.get("sampler", "tpe"), 0, 1, 1)  # a bad --sampler / --pruner: one line, now
    make_pruner(settings.get("pruner", "sha"), 1, 2)
    SearchSpace.from_levels(settings.get("levels", "prompt,module,agent"))
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
        objectives=parse_objectives(objectives),
        optimizer=optimizer,
        formats=tuple(_names(formats)),
        baselines=baselines,
        baseline_names=check_baseline_names(_names(baseline_names)) if baseline_names is not None else None,
        run_dir=run_dir,
        aliases=models.aliases(),
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
