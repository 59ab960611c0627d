"""Search strategies by name (``--optimizer``): data only, so the CLI reads it without importing Optuna.

A new strategy is its module and one ``STRATEGIES.add`` line here: a class whose objects have ``name``,
``propose(archive, space, rng)`` and ``told(trial)`` (the :class:`~agentsearch.optimizers.base.Strategy`
protocol), registered as ``StrategyEntry(name, help, "my.module:MyStrategy")`` and run over the study by
:class:`~agentsearch.optimizers.proposal.StrategyOptimizer`, as every built-in strategy is; or a full
:class:`~agentsearch.optimizers.base.Optimizer` subclass, called with the study's settings. ``takes`` names
what of the study's context the constructor accepts (``proposer_lm``, ``task``, ``n_trials``,
``demo_bootstrap``, ``bootstrap_demos``); ``options`` are fixed constructor arguments; ``sampler`` the Optuna
sampler of the study (default: ``--sampler``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentsearch.registry import Entry, Registry

#: ``--sampler`` names (Optuna samplers) and ``--pruner`` names.
SAMPLERS = ("tpe", "random", "gp", "cmaes", "nsga2")
PRUNERS = ("sha", "hyperband", "median", "none")
#: ``--prompt-optimizer`` names (DSPy optimizers run per candidate) and their upper-bound calls per candidate.
PROMPT_OPTIMIZER_CALLS = {"bootstrap": 16, "mipro": 80, "gepa": 80}
PROMPT_OPTIMIZERS = tuple(PROMPT_OPTIMIZER_CALLS)


@dataclass(frozen=True)
class StrategyEntry(Entry):
    """A strategy: ``llm`` when it proposes with the proposer model; upper-bound proposer calls for the
    budget projection (per trial, and once per study); ``options`` are fixed constructor arguments;
    ``sampler`` the study's Optuna sampler (default: ``--sampler``). Built by
    :func:`agentsearch.optimizers.make_optimizer`."""

    takes: tuple[str, ...] = ()
    llm: bool = False
    proposer_calls_per_trial: float = 0.0
    proposer_calls_per_study: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)
    sampler: str | None = None


STRATEGIES: Registry[StrategyEntry] = Registry("optimizer", "--optimizer")
for _sampler in SAMPLERS:
    STRATEGIES.add(
        StrategyEntry(
            _sampler,
            f"Optuna's {_sampler} sampler over the space",
            "agentsearch.optimizers.samplers:SamplerStrategy",
            options={"name": _sampler},
            sampler=_sampler,
        )
    )
STRATEGIES.add(
    StrategyEntry(
        "proposer",
        "TPE over LLM-written instructions and bootstrapped demos (MIPRO-style)",
        "agentsearch.optimizers.instruction:InstructionProposer",
        takes=("proposer_lm", "task", "demo_bootstrap", "bootstrap_demos"),
        llm=True,
        proposer_calls_per_trial=1.0,
        proposer_calls_per_study=16,
    )
)
STRATEGIES.add(
    StrategyEntry(
        "meta-agent",
        "an LLM writes whole graphs from the archive (ADAS-style)",
        "agentsearch.optimizers.meta_agent:MetaAgent",
        takes=("proposer_lm", "task"),
        llm=True,
        proposer_calls_per_trial=3.0,  # a design and up to two repairs
    )
)
STRATEGIES.add(
    StrategyEntry(
        "evolution",
        "mutation and crossover of graphs (AFlow/EvoFlow-style)",
        "agentsearch.optimizers.evolution:Evolution",
        takes=("proposer_lm", "task"),
        llm=True,
        proposer_calls_per_trial=1.0,
    )
)
STRATEGIES.add(
    StrategyEntry(
        "staged",
        "prompts, then topology, then prompts again (MASS-style)",
        "agentsearch.optimizers.staged:Staged",
        takes=("n_trials",),
    )
)
del _sampler
