"""Search strategies by name (``--optimizer``): data only, so the CLI reads it without importing Optuna.

A new strategy is its module and one ``STRATEGIES.add`` line here: either an object with ``name``,
``propose(archive, space, rng)`` and ``told(trial)`` (the :class:`~agentsearch.optimizers.base.Strategy`
protocol), registered as ``StrategyEntry(name, help, "agentsearch.optimizers.proposal:StrategyOptimizer",
options={"strategy": MyStrategy})``, or a full :class:`~agentsearch.optimizers.base.Optimizer`.
``takes`` names what of the study's context its constructor accepts (``proposer_lm``, ``task``,
``n_trials``, ``demo_bootstrap``, ``bootstrap_demos``); everything else it gets is the Optuna study's
settings (storage, sampler, pruner, seed, ...).
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
    budget projection (per trial, and once per study); ``options`` are fixed constructor arguments."""

    takes: tuple[str, ...] = ()
    llm: bool = False
    proposer_calls_per_trial: float = 0.0
    proposer_calls_per_study: int = 0
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self, space: Any, *, context: Mapping[str, Any], **study: Any) -> Any:
        """The strategy over ``space``: ``study`` are the Optuna study's settings, ``context`` what it may take."""
        taken = {key: context[key] for key in self.takes if key in context}
        return self.load()(space, **{**study, **taken, **self.options})


STRATEGIES: Registry[StrategyEntry] = Registry("optimizer", "--optimizer")
for _sampler in SAMPLERS:
    STRATEGIES.add(
        StrategyEntry(
            _sampler,
            f"Optuna's {_sampler} sampler over the space",
            "agentsearch.optimizers.optuna_opt:OptunaOptimizer",
            options={"sampler": _sampler},
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
        "agentsearch.optimizers.meta_agent:MetaAgentOptimizer",
        takes=("proposer_lm", "task"),
        llm=True,
        proposer_calls_per_trial=3.0,  # a design and up to two repairs
    )
)
STRATEGIES.add(
    StrategyEntry(
        "evolution",
        "mutation and crossover of graphs (AFlow/EvoFlow-style)",
        "agentsearch.optimizers.evolution:EvolutionaryOptimizer",
        takes=("proposer_lm", "task"),
        llm=True,
        proposer_calls_per_trial=1.0,
    )
)
STRATEGIES.add(
    StrategyEntry(
        "staged",
        "prompts, then topology, then prompts again (MASS-style)",
        "agentsearch.optimizers.staged:StagedOptimizer",
        takes=("n_trials",),
    )
)
del _sampler
