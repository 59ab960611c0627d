"""Hand-designed baseline agents: the yardstick every study starts from."""

from __future__ import annotations

from pathlib import Path

from agentsearch.search_space.graph import AgentGraph


def baseline_graphs() -> dict[str, AgentGraph]:
    """The hand-designed graphs, by name (the name is also the YAML file stem)."""
    return {
        "direct": AgentGraph.single("predict", name="direct", node_id="answer"),
        "cot": AgentGraph.single("cot", name="cot"),
        "cot_sc5": AgentGraph.single("self_consistency", name="cot_sc5", n=5, temperature=0.7),
        "self_refine": AgentGraph.single("self_refine", name="self_refine", rounds=2),
    }


def library_graphs() -> dict[str, AgentGraph]:
    """More hand-designed agents from the module library (written by ``main.py baselines``; not enqueued
    in studies, whose yardstick stays the four classic baselines)."""
    return {
        "debate": AgentGraph.single("debate", name="debate", agents=3, rounds=2),
        "least_to_most": AgentGraph.single("least_to_most", name="least_to_most"),
        "program_of_thought": AgentGraph.single("program_of_thought", name="program_of_thought", repairs=1),
    }


def write_baselines(out_dir: str | Path) -> list[Path]:
    """Write every hand-designed agent as ``<name>.yaml`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    graphs = {**baseline_graphs(), **library_graphs()}
    return [graph.save(out / f"{name}.yaml") for name, graph in graphs.items()]
