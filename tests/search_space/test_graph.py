"""AgentGraph: validation, round trips, identity, rendering."""

from __future__ import annotations

import json

import networkx as nx
import pytest

from agentsearch.errors import GraphError
from agentsearch.search_space.baselines import baseline_graphs, library_graphs, write_baselines
from agentsearch.search_space.graph import ENTRY, AgentGraph

BRANCHES = {
    "name": "branches",
    "output": "agg",
    "nodes": [
        {"id": "b1", "op": "cot", "params": {"temperature": 0.3}},
        {"id": "b2", "op": "self_consistency", "params": {"n": 3}},
        {"id": "b3", "op": "predict"},
        {"id": "agg", "op": "vote", "inputs": ["b1", "b2", "b3"]},
    ],
}


def test_valid_graph_builds_a_networkx_dag():
    g = AgentGraph.from_dict(BRANCHES)
    dg = g.to_networkx()
    assert isinstance(dg, nx.DiGraph) and nx.is_directed_acyclic_graph(dg)
    assert set(dg.successors(ENTRY)) == {"b1", "b2", "b3"}
    assert set(dg.predecessors("agg")) == {"b1", "b2", "b3"}
    assert g.topological_generations() == [["b1", "b2", "b3"], ["agg"]]
    assert g.expected_calls() == 1 + 3 + 1 + 0


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_round_trip_keeps_identity(fmt, tmp_path):
    g = AgentGraph.from_dict(BRANCHES)
    path = g.save(tmp_path / f"g.{fmt}")
    again = AgentGraph.load(path)
    assert again == g and again.config_hash == g.config_hash
    assert again.to_dict() == g.to_dict()


def test_hash_is_stable_and_ignores_names_and_default_spelling():
    a = AgentGraph.single("cot", name="x")
    b = AgentGraph.from_dict({"name": "y", "nodes": [{"id": "solve", "op": "cot", "params": {"temperature": 0.0}}]})
    assert a.config_hash == b.config_hash
    c = AgentGraph.single("cot", temperature=0.5)
    assert c.config_hash != a.config_hash
    # pinned: a change in canonical form would silently change every stored candidate's identity
    assert AgentGraph.single("cot").config_hash == "5bba32d63d18e30b"  # since the `format` param


def test_hash_ignores_node_ids_but_not_wiring():
    renamed = json.loads(json.dumps(BRANCHES).replace('"b1"', '"x9"').replace('"agg"', '"final"'))
    assert AgentGraph.from_dict(renamed).config_hash == AgentGraph.from_dict(BRANCHES).config_hash
    rewired = json.loads(json.dumps(BRANCHES))
    rewired["nodes"][2]["inputs"] = ["b1"]  # b3 now reads b1's solution
    assert AgentGraph.from_dict(rewired).config_hash != AgentGraph.from_dict(BRANCHES).config_hash


def test_graph_is_frozen_and_hashable():
    g = AgentGraph.from_dict(BRANCHES)
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="frozen"):
        g.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        g.nodes[0].params.temperature = 1.0  # type: ignore[misc]
    assert len({g, AgentGraph.from_dict(BRANCHES)}) == 1


def _bad(mutate):
    data = json.loads(json.dumps(BRANCHES))
    mutate(data)
    with pytest.raises(GraphError) as exc:
        AgentGraph.from_dict(data, source="f.yaml")
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("f.yaml")
    return msg


def test_unknown_operator_names_node_and_field():
    msg = _bad(lambda d: d["nodes"][0].update(op="telepathy"))
    assert "node 'b1'" in msg and "field 'op'" in msg and "telepathy" in msg


def test_param_out_of_range_names_node_and_field():
    msg = _bad(lambda d: d["nodes"][1]["params"].update(n=0))
    assert "node 'b2'" in msg and "params.n" in msg


def test_param_of_wrong_type():
    msg = _bad(lambda d: d["nodes"][0]["params"].update(temperature="hot"))
    assert "params.temperature" in msg


def test_unknown_param_rejected():
    msg = _bad(lambda d: d["nodes"][2].update(params={"rounds": 2}))
    assert "node 'b3'" in msg and "params.rounds" in msg


def test_cycle_reported():
    def mutate(d):
        d["nodes"][0]["inputs"] = ["agg"]

    assert "cycle" in _bad(mutate)


def test_dangling_node_reported():
    msg = _bad(lambda d: d["nodes"].append({"id": "lonely", "op": "cot"}))
    assert "node 'lonely'" in msg and "dangling" in msg


def test_missing_exit_reported():
    msg = _bad(lambda d: d.pop("output"))
    assert "field 'output'" in msg
    msg = _bad(lambda d: d.update(output="nowhere"))
    assert "nowhere" in msg


def test_unknown_input_and_duplicate_id():
    assert "unknown node 'zz'" in _bad(lambda d: d["nodes"][3].update(inputs=["b1", "zz"]))
    assert "duplicate" in _bad(lambda d: d["nodes"][1].update(id="b1"))


def test_aggregator_arity():
    msg = _bad(lambda d: d["nodes"][3].update(inputs=["b1"]))
    assert "at least 2" in msg


def test_malformed_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nnodes: [\n  - id: a\n")
    with pytest.raises(GraphError) as exc:
        AgentGraph.load(path)
    assert str(exc.value).startswith(f"{path}:") and "malformed" in str(exc.value)


def test_baselines_written_and_valid(tmp_path):
    paths = write_baselines(tmp_path)
    names = {p.stem for p in paths}
    assert names == {"direct", "cot", "cot_sc5", "self_refine", "debate", "least_to_most", "program_of_thought"}
    for p in paths:
        assert AgentGraph.load(p) == {**baseline_graphs(), **library_graphs()}[p.stem]
    sc5 = AgentGraph.load(tmp_path / "cot_sc5.yaml")
    assert sc5.nodes[0].op == "self_consistency" and sc5.nodes[0].params.n == 5
    assert "n: 5" in (tmp_path / "cot_sc5.yaml").read_text()  # human-editable: the knob is visible


def test_render_png(tmp_path):
    path = AgentGraph.from_dict(BRANCHES).render_png(tmp_path / "g.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000


def test_picture_boxes_fit_their_labels_and_show_every_knob(tmp_path):
    """Every node's box holds its whole label (knobs included), no two boxes overlap, all lie inside the axes."""
    import matplotlib.pyplot as plt

    graph = AgentGraph.from_dict({
        "name": "wide",
        "output": "final",
        "nodes": [
            {"id": "search_with_a_long_id", "op": "prm_beam", "params": {"beam_width": 2, "expansions": 3, "depth": 4}},
            {"id": "sc", "op": "self_consistency", "params": {"n": 5, "temperature": 0.7}},
            {"id": "final", "op": "judge", "inputs": ["search_with_a_long_id", "sc"]},
        ],
    })
    fig = graph.figure()
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        texts = [t for t in ax.texts if t.get_bbox_patch() is not None]
        labels = {t.get_text().splitlines()[0]: t.get_text() for t in texts}
        assert set(labels) == {"question", "search_with_a_long_id", "sc", "final"}
        assert "expansions=3" in labels["search_with_a_long_id"] and "depth=4" in labels["search_with_a_long_id"]
        assert "n=5" in labels["sc"]
        axes_box = ax.get_window_extent(renderer)
        boxes = []
        for t in texts:
            text_box = t.get_window_extent(renderer)
            box = t.get_bbox_patch().get_window_extent(renderer)
            assert box.x0 <= text_box.x0 and text_box.x1 <= box.x1 and box.y0 <= text_box.y0 and text_box.y1 <= box.y1
            assert axes_box.x0 <= box.x0 and box.x1 <= axes_box.x1 and axes_box.y0 <= box.y0 and box.y1 <= axes_box.y1
            boxes.append(box)
        for i, a in enumerate(boxes):
            assert not any(a.overlaps(b) for b in boxes[i + 1 :]), "boxes overlap"
    finally:
        plt.close(fig)
    svg = graph.render_png(tmp_path / "g.svg")
    assert svg.read_text().lstrip().startswith("<?xml")


def test_copy_with_new_nodes_gets_a_new_identity_and_is_validated():
    g = AgentGraph.single("cot")
    other = AgentGraph.single("cot", temperature=0.5)
    copy = g.model_copy(update={"nodes": other.nodes})
    assert copy.config_hash == other.config_hash != g.config_hash
    with pytest.raises(GraphError, match="unknown exit node"):
        g.model_copy(update={"output": "nowhere"})
    assert g.model_copy(update={"name": "renamed"}).config_hash == g.config_hash
