"""The standalone agent.py: generated for every operator, the same prompts as agentsearch's program, and run
in a fresh virtual environment holding only dspy (no agentsearch)."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import dspy
import pytest

from agentsearch.evaluators.operators.compile import compile_graph
from agentsearch.runs.standalone import DSPY_REQUIREMENT, THIRD_PARTY, ExportError, generate_agent, write_agent
from agentsearch.search_space.baselines import baseline_variants
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.operators import FORMATS, OPERATORS
from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy
from agentsearch.testing.operators import graph_for

QUESTION = "Tom has 3 apples and buys 2 more bags with 5 apples each. How many apples does Tom have now?"
ANSWER = "13"


def exportable(op: str) -> AgentGraph:
    """The smallest graph using ``op``; an experience node with its memory built (as a study stores it)."""
    if OPERATORS[op].needs_train:
        return graph_for(op, insights=("Add the bags' apples to the apples Tom had.",), built=True)
    return graph_for(op)


def load_module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as `import agent` would: dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server():
    policy = ReasoningPolicy({QUESTION: ANSWER})
    policy.p_direct = policy.p_reasoning = 1.0  # always right: a wrong answer is the export's fault
    with FakeOpenAIServer(policy, latency=0.0) as srv:
        yield srv


def test_agent_py_imports_no_agentsearch_and_carries_the_graph(tmp_path):
    graph = AgentGraph.from_dict(
        {
            "name": "mix",
            "output": "v",
            "nodes": [
                {"id": "a-1", "op": "cot", "params": {"instruction": "Think like an accountant.\nBe exact."}},
                {
                    "id": "b",
                    "op": "self_consistency",
                    "params": {"n": 3, "format": "chat", "demos": [{"question": "1+1?", "answer": "2"}]},
                },
                {"id": "v", "op": "vote", "inputs": ["a-1", "b"]},
            ],
        }
    )
    path = write_agent(tmp_path, graph, "number", model_flags={"model": "m", "api_base": ["http://h:1/v1"]})
    source = path.read_text()
    imported = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in ast.walk(ast.parse(source))
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    assert "agentsearch" not in imported and imported - set(sys.stdlib_module_names) <= THIRD_PARTY
    assert "'Think like an accountant.\\n'\n" in source and "Demo(question='1+1?', answer='2')" in source
    assert "make_adapter('chat', self.answer_kind)" in source and "n=3" in source
    nodes = load_module(path, "agent_mix").Agent().nodes
    assert nodes["a-1"].instruction == "Think like an accountant.\nBe exact."
    assert [d.question for d in nodes["b"].params.demos] == ["1+1?"] and nodes["b"].params.format == "chat"
    assert "api_base='http://h:1/v1'" in source and "model='m'" in source
    assert (tmp_path / "requirements.txt").read_text().strip() == DSPY_REQUIREMENT
    assert_self_contained(path)


def assert_self_contained(path: Path) -> None:
    """Everything agent.py uses is defined or imported in it (pyflakes' undefined and redefined names)."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.skip("ruff is not installed beside this python")
    done = subprocess.run([str(ruff), "check", "--isolated", "--select", "F821,F811", str(path)], capture_output=True)
    assert done.returncode == 0, done.stdout.decode()


@pytest.mark.parametrize("op", sorted(OPERATORS))
def test_every_operator_exports_and_asks_what_agentsearch_asks(op, server, tmp_path):
    """agent.py sends the model exactly the requests agentsearch's compiled program sends."""
    graph = exportable(op)
    path = write_agent(tmp_path, graph, "number")
    assert_self_contained(path)
    agent = load_module(path, f"agent_{op}")
    lm = dspy.LM(f"openai/{server.model}", api_base=server.url, api_key="x", cache=False)
    ours = compile_graph(graph, lms={"default": lm}, answer_kind="number")(question=QUESTION)
    sent = [(r["messages"], r.get("temperature"), r.get("max_tokens")) for r in server.requests]
    server.reset()
    theirs = agent.Agent(lms={"default": lm})(question=QUESTION)
    assert [(r["messages"], r.get("temperature"), r.get("max_tokens")) for r in server.requests] == sent
    assert (theirs.answer, theirs.reasoning) == (ours.answer, ours.reasoning)
    if op not in ("program_of_thought", "react"):  # the fake model writes no program and calls no tool
        assert theirs.answer == ANSWER


def test_one_graph_with_every_operator_exports(tmp_path):
    """All operators in one file: no two copied definitions clash, and the module imports."""
    solvers = [op for op, spec in OPERATORS.items() if spec.kind == "solver"]
    nodes = [{"id": f"s_{op}", "op": op, "params": exportable(op).node("x").params.model_dump()} for op in solvers]
    aggregators = [op for op, spec in OPERATORS.items() if spec.kind == "aggregator" and op != "aggregate"]
    nodes += [{"id": f"a_{op}", "op": op, "inputs": [f"s_{s}" for s in solvers]} for op in aggregators]
    nodes.append({"id": "out", "op": "aggregate", "inputs": [f"a_{op}" for op in aggregators]})
    graph = AgentGraph.from_dict({"name": "everything", "output": "out", "nodes": nodes})
    path = write_agent(tmp_path, graph, "number")
    assert_self_contained(path)
    agent = load_module(path, "agent_everything").Agent()
    assert {type(m).__name__ for m in agent.nodes.values()} >= {"ReActOp", "ProgramOfThoughtOp", "BestOfNOp"}


def test_the_export_state_loads_into_agent(tmp_path):
    graph = baseline_variants(["text"])["self_refine"]
    program = compile_graph(graph)
    program.save(str(tmp_path / "program.json"))
    agent = load_module(write_agent(tmp_path, graph), "agent_state").Agent()
    agent.load(str(tmp_path / "program.json"))  # the same named predictors: agentsearch's state fits
    assert [n for n, _ in agent.named_predictors()] == [n for n, _ in program.named_predictors()]


def test_code_needing_more_than_dspy_is_refused():
    """answers_match grades with math-verify (not installed with dspy): an operator using it could not be
    carried, and the collector says so rather than writing an agent.py that fails later."""
    from agentsearch.runs.standalone import _Collector

    with pytest.raises(ExportError, match="imports math_verify, which dspy does not install"):
        _Collector("node 'x'").add("agentsearch.evaluators.answers", "answers_match")
    with pytest.raises(ExportError, match="needs agentsearch.evaluators.llm.lm.Endpoint, which agent.py cannot carry"):
        _Collector("node 'x'").add("agentsearch.evaluators.llm.lm", "Endpoint")


def test_unexportable_agents_fail_clearly():
    unbuilt = graph_for("experience")
    with pytest.raises(ExportError, match=r"node 'x' \(experience\): its memory is not built"):
        generate_agent(unbuilt)
    with pytest.raises(ExportError, match="answer kind"):
        generate_agent(graph_for("cot"), "float")


# -- in a virtual environment with only dspy ----------------------------------------------------------


@pytest.fixture(scope="session")
def dspy_only_python(tmp_path_factory) -> Path:
    """A fresh venv with only dspy installed (pip, from the configured index or cache; about 30 s once per
    session). Skipped, saying why, where dspy cannot be installed."""
    root = tmp_path_factory.mktemp("dspy-only") / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(root)
    python = root / "bin" / "python"
    try:
        done = subprocess.run(
            # offline: fail fast (skipped below), never hang on retries
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            + ["--retries", "0", "--timeout", "20", DSPY_REQUIREMENT],
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip install {DSPY_REQUIREMENT} took over 240 s")
    if done.returncode != 0:
        pytest.skip(f"cannot install {DSPY_REQUIREMENT} into a fresh venv: {done.stderr.strip().splitlines()[-1:]}")
    probe = subprocess.run([str(python), "-c", "import agentsearch"], capture_output=True, env=_clean_env(), cwd=root)
    assert probe.returncode != 0, "the venv must not see agentsearch"
    return python


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONNOUSERSITE": "1", **extra})
    return env


@pytest.mark.venv
@pytest.mark.timeout(600)
def test_baselines_run_with_only_dspy(dspy_only_python, server, tmp_path):
    """Every baseline in every format: `python agent.py QUESTION` prints the right answer, its key from the env."""
    env = _clean_env(HOME=str(tmp_path), OPENAI_API_KEY="sk-test-not-stored")
    for name, graph in baseline_variants(FORMATS).items():
        out = tmp_path / name.replace("@", "-")
        path = write_agent(out, graph, "number", model_flags={"model": server.model, "api_base": [server.url]})
        assert "sk-test-not-stored" not in path.read_text()
        done = subprocess.run(
            [str(dspy_only_python), str(path), QUESTION, "--json"],
            capture_output=True,
            text=True,
            cwd=out,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
        assert json.loads(done.stdout)["answer"] == ANSWER, name


@pytest.mark.venv
@pytest.mark.timeout(600)
def test_every_operator_runs_with_only_dspy(dspy_only_python, server, tmp_path):
    """Each operator's agent.py imports and answers in the dspy-only venv (flags here, no stored defaults)."""
    env = _clean_env(HOME=str(tmp_path))
    failures = []
    for op in sorted(OPERATORS):
        path = write_agent(tmp_path / op, exportable(op), "number")
        done = subprocess.run(
            [str(dspy_only_python), str(path), QUESTION, "--model", server.model, "--api-base", server.url],
            capture_output=True,
            text=True,
            cwd=tmp_path / op,
            env=env,
            timeout=120,
        )
        expected = done.returncode == 0 and (done.stdout.strip() == ANSWER or op in ("program_of_thought", "react"))
        if not expected:
            failures.append(f"{op}: rc={done.returncode} out={done.stdout[-200:]!r} err={done.stderr[-1500:]}")
    assert not failures, "\n".join(failures)


@pytest.mark.venv
def test_agent_py_without_a_model_says_what_to_give(dspy_only_python, tmp_path):
    path = write_agent(tmp_path, graph_for("cot"))
    done = subprocess.run(
        [str(dspy_only_python), str(path), QUESTION],
        capture_output=True,
        text=True,
        env=_clean_env(HOME=str(tmp_path)),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2 and "no model: give --model" in done.stderr
