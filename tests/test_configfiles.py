"""Config files are read safely: size, encoding, malformed YAML, YAML bombs, deep nesting, in under a second."""

from __future__ import annotations

import time

import pytest

from agentsearch.errors import GraphError, UserError
from agentsearch.evaluators.llm.models import RunConfig
from agentsearch.search_space.graph import AgentGraph

BOMB = """name: lol
description: &a9 [&a8 [&a7 [&a6 [&a5 [&a4 [&a3 [&a2 [&a1 [&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]]]]]]]]]]
nodes: [{id: s, op: cot}]
"""


def _bomb(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + f"\nname: *a{levels}\nnodes: [{{id: s, op: cot}}]\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"name: x\nnodes: [{id: s, op: cot}]\ndescription: caf\xe9\n", "not UTF-8 text (byte"),
        (_bomb().encode(), "expand to more than"),
        (("a: " + "[" * 50_000 + "]" * 50_000 + "\n").encode(), "nested deeper than"),
        (b"name: x\n  nodes: [\n", "malformed YAML/JSON"),
        (b"x: &r [*r]\n", "a recursive YAML alias"),
    ],
    ids=["latin-1", "billion-laughs", "deep", "malformed", "recursive"],
)
def test_hostile_graph_and_run_config_files_fail_fast_with_one_line(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    for load, kind in ((AgentGraph.load, GraphError), (RunConfig.load, UserError)):
        start = time.perf_counter()
        with pytest.raises(kind) as info:
            load(path)
        assert time.perf_counter() - start < 5, "refused at once, not after expanding the bomb"
        text = str(info.value)
        assert text.startswith(str(path)) and message in text and "\n" not in text


def test_big_files_are_refused_before_reading(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: x\ndescription: " + "y" * 2_000_000 + "\nnodes: [{id: s, op: cot}]\n")
    with pytest.raises(GraphError, match="a config file is at most 1,000,000 bytes"):
        AgentGraph.load(path)


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "ok.yaml"
    text = "name: x\noutput: v\nnodes:\n  - {id: a, op: cot, params: &p {temperature: 0.5}}\n" \
           "  - {id: b, op: cot, params: *p}\n  - {id: v, op: vote, inputs: [a, b]}\n"
    path.write_text(text, encoding="utf-8")
    graph = AgentGraph.load(path)
    assert graph.node("b").params.temperature == 0.5
