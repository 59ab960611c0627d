"""Optimizers: ask/tell strategies over agent graphs. ``make_optimizer`` builds one by name."""

from __future__ import annotations

from typing import Any

#: ``--optimizer`` names: Optuna samplers, then LLM-driven and evolutionary strategies.
OPTIMIZERS = ("tpe", "random", "gp", "cmaes", "nsga2", "proposer", "meta-agent", "evolution", "staged")
LLM_OPTIMIZERS = ("proposer", "meta-agent", "evolution")


def make_optimizer(
    name: str,
    space: Any,
    *,
    proposer_lm: Any = None,
    task: str = "",
    n_trials: int = 20,
    demo_bootstrap: Any = None,
    bootstrap_demos: bool = False,
    **kwargs: Any,
) -> Any:
    """The optimizer for ``--optimizer NAME``; ``kwargs`` go to the Optuna study (storage, seed, ...)."""
    from agentsearch.errors import UserError
    from agentsearch.optimizers.optuna_opt import SAMPLERS, OptunaOptimizer

    if name in SAMPLERS:
        return OptunaOptimizer(space, **{**kwargs, "sampler": name})
    if name == "proposer":
        from agentsearch.optimizers.instruction import InstructionProposer

        return InstructionProposer(
            space,
            proposer_lm=proposer_lm,
            task=task,
            demo_bootstrap=demo_bootstrap,
            bootstrap_demos=bootstrap_demos,
            **kwargs,
        )
    if name == "meta-agent":
        from agentsearch.optimizers.meta_agent import MetaAgentOptimizer

        return MetaAgentOptimizer(space, proposer_lm=proposer_lm, task=task, **kwargs)
    if name == "evolution":
        from agentsearch.optimizers.evolution import EvolutionaryOptimizer

        return EvolutionaryOptimizer(space, proposer_lm=proposer_lm, task=task, **kwargs)
    if name == "staged":
        from agentsearch.optimizers.staged import StagedOptimizer

        return StagedOptimizer(space, n_trials=n_trials, **kwargs)
    raise UserError(f"--optimizer: unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")
