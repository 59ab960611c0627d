"""Registries: names, aliases, errors naming the flag, lazy targets; the strategies are one line each."""

from __future__ import annotations

import pytest

from agentsearch.errors import UserError
from agentsearch.registry import Entry, Registry


def test_lookup_aliases_order_and_errors() -> None:
    reg: Registry[Entry] = Registry("widget", "--widget")
    reg.add(Entry("b", "the b", "json:dumps", aliases=("bee",)))
    reg.add(Entry("a", "the a", len))
    assert reg.names() == ["b", "a"] and reg.help() == "b | a" and len(reg) == 2
    assert reg.get("bee").name == "b" and "bee" in reg and "c" not in reg
    import json

    assert reg.get("b").load() is json.dumps and reg.get("a").load() is len
    with pytest.raises(UserError, match=r"--widget: unknown widget 'c' \(choose from b, a\)"):
        reg.get("c")
    with pytest.raises(ValueError, match="'bee' is already registered"):
        reg.add(Entry("bee", "clash", len))
    reg.remove("b")
    assert "bee" not in reg and reg.names() == ["a"]


def test_strategies_are_registered_and_build() -> None:
    from agentsearch.optimizers import LLM_OPTIMIZERS, OPTIMIZERS, make_optimizer
    from agentsearch.optimizers.registry import SAMPLERS, STRATEGIES
    from agentsearch.search_space.space import SearchSpace

    assert OPTIMIZERS[: len(SAMPLERS)] == SAMPLERS
    assert set(LLM_OPTIMIZERS) == {"proposer", "meta-agent", "evolution"}
    for entry in STRATEGIES:  # every target imports
        assert callable(entry.load()), entry.name
    opt = make_optimizer("random", SearchSpace(), storage=None, seed=0, study_name="reg")
    assert opt.store.sampler_name == "random" and opt.name == "random"
    with pytest.raises(UserError, match="--optimizer: unknown optimizer 'nope'"):
        make_optimizer("nope", SearchSpace())


def test_cli_help_lists_the_registries() -> None:
    from typer.testing import CliRunner

    from agentsearch.cli import app
    from agentsearch.evaluators.benchmarks import BENCHMARKS
    from agentsearch.optimizers.registry import STRATEGIES

    text = " ".join(CliRunner().invoke(app, ["optimize", "--help"], terminal_width=400).output.split())
    for name in [*STRATEGIES.names(), *BENCHMARKS.names()]:
        assert name in text, name
