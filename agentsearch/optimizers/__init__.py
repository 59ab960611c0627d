"""Optimizers: ask/tell strategies over agent graphs, by name in :data:`~agentsearch.optimizers.registry.STRATEGIES`;
``make_optimizer`` builds one."""

from __future__ import annotations

from typing import Any

from agentsearch.optimizers.registry import STRATEGIES

#: ``--optimizer`` names: Optuna samplers, then LLM-driven and evolutionary strategies (registration order).
OPTIMIZERS = tuple(STRATEGIES.names())
LLM_OPTIMIZERS = tuple(entry.name for entry in STRATEGIES if entry.llm)


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
    """The optimizer for ``--optimizer NAME``: its strategy run over the study store by
    :class:`~agentsearch.optimizers.proposal.StrategyOptimizer` (or, for an :class:`Optimizer` subclass
    registered as such, that class). ``kwargs`` are the study store's settings (storage, seed, ...)."""
    from agentsearch.optimizers.base import Optimizer
    from agentsearch.optimizers.proposal import StrategyOptimizer

    context = {
        "proposer_lm": proposer_lm,
        "task": task,
        "n_trials": n_trials,
        "demo_bootstrap": demo_bootstrap,
        "bootstrap_demos": bootstrap_demos,
    }
    entry = STRATEGIES.get(name)
    taken = {key: context[key] for key in entry.takes}
    if entry.sampler is not None:
        kwargs["sampler"] = entry.sampler
    target = entry.load()
    if isinstance(target, type) and issubclass(target, Optimizer):
        return target(space, **{**kwargs, **taken, **entry.options})
    return StrategyOptimizer(space, strategy=target(**taken, **entry.options), **kwargs)
