"""Hand-designed baseline agents: the yardstick every study starts from.

A study evaluates each baseline in every output format it searches (``cot`` in the primary format,
``cot@chat``, ``cot@xml``, ...): the search must beat well-formatted baselines, not broken ones, so
reports compare the best agent with the best format of each baseline.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import DEFAULT_FORMAT

#: The baseline every report compares at matched cost (self-consistency over chain-of-thought).
COT_SC = "cot_sc5"


def baseline_graphs(fmt: str = DEFAULT_FORMAT) -> dict[str, AgentGraph]:
    """The hand-designed graphs in output format ``fmt``, by name (the name is also the YAML file stem)."""
    graphs = {
        "direct": AgentGraph.single("predict", name="direct", node_id="answer"),
        "cot": AgentGraph.single("cot", name="cot"),
        COT_SC: cot_sc(5),
        "self_refine": AgentGraph.single("self_refine", name="self_refine", rounds=2),
    }
    return {name: g.with_format(fmt) for name, g in graphs.items()}


def cot_sc(n: int, fmt: str = DEFAULT_FORMAT) -> AgentGraph:
    """Chain-of-thought with self-consistency over ``n`` samples at temperature 0.7."""
    return AgentGraph.single("self_consistency", name=f"cot_sc{n}", n=n, temperature=0.7).with_format(fmt)


def baseline_variants(
    formats: Sequence[str], primary: str = DEFAULT_FORMAT, names: Sequence[str] | None = None
) -> dict[str, AgentGraph]:
    """Every baseline (or those in ``names``) in every format, keyed ``name`` (the primary format: the
    yardsticks, first) and ``name@format`` (the others)."""
    order = [primary] + [f for f in formats if f != primary]
    out: dict[str, AgentGraph] = {}
    for fmt in order:
        for name, graph in baseline_graphs(fmt).items():
            if names is None or name in names:
                out[name if fmt == primary else f"{name}@{fmt}"] = graph
    return out


def check_baseline_names(names: Sequence[str]) -> tuple[str, ...]:
    """The names, validated (UserError naming the flag for an unknown one)."""
    from agentsearch.errors import UserError

    known = list(baseline_graphs())
    for name in names:
        if name not in known:
            raise UserError(f"--baselines: unknown baseline {name!r} (choose from {', '.join(known)})")
    if not names:
        raise UserError(f"--baselines: name at least one of {', '.join(known)} (or use --no-baselines)")
    return tuple(dict.fromkeys(names))


def split_variant(key: str) -> tuple[str, str | None]:
    """``"cot@chat"`` -> ``("cot", "chat")``; ``"cot"`` -> ``("cot", None)`` (the primary format)."""
    name, _, fmt = key.partition("@")
    return name, fmt or None


def library_graphs() -> dict[str, AgentGraph]:
    """More hand-designed agents from the module library (written by ``main.py baselines``; not enqueued
    in studies, whose yardstick stays the four classic baselines)."""
    return {
        "debate": AgentGraph.single("debate", name="debate", agents=3, rounds=2).with_format(DEFAULT_FORMAT),
        "least_to_most": AgentGraph.single("least_to_most", name="least_to_most").with_format(DEFAULT_FORMAT),
        "program_of_thought": AgentGraph.single(
            "program_of_thought", name="program_of_thought", repairs=1
        ).with_format(DEFAULT_FORMAT),
    }


def write_baselines(out_dir: str | Path) -> list[Path]:
    """Write every hand-designed agent as ``<name>.yaml`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graphs = {**baseline_graphs(), **library_graphs()}
    return [graph.save(out / f"{name}.yaml") for name, graph in graphs.items()]
