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


def write_baselines(out_dir: str | Path) -> list[Path]:
    """Write every baseline as ``<name>.yaml`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [graph.save(out / f"{name}.yaml") for name, graph in baseline_graphs().items()]
