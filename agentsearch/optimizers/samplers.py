"""The Optuna samplers as strategies (``--optimizer tpe``, ``random``, ``gp``, ``cmaes``, ``nsga2``).

The study store's Optuna sampler does the work: this strategy never proposes a design of its own, so
every trial after the baselines is sampled from the space by the sampler it is named after.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from agentsearch.optimizers.base import Archive, FinishedTrial


@dataclass
class SamplerStrategy:
    """Leave every choice to the study's sampler (registered with ``sampler=`` its own name)."""

    name: str = "tpe"

    def propose(self, archive: Archive, space: Any, rng: random.Random) -> None:
        return None

    def told(self, trial: FinishedTrial) -> None:
        return None
