"""Export the best agents of a study as configs and as standalone code (never pickles of live programs).

``best.yaml`` runs with ``main.py run`` / ``main.py evaluate``; ``agent.py`` is the same agent as
readable DSPy code that runs with only ``dspy`` installed (``python agent.py QUESTION``, see
:mod:`agentsearch.runs.standalone`; ``requirements.txt`` pins dspy); ``pareto/`` holds the Pareto
agents of a multi-objective study; ``program.json`` is the DSPy state (``program.save``: each
predictor's instructions and demos) of the best agent's program, which loads into agent.py's
``Agent`` and into agentsearch's ``compile_graph(AgentGraph.load("best.yaml"))``; ``mlflow_model/`` is
agent.py as an MLflow pyfunc model (:mod:`agentsearch.runs.agent_model`: its LM is configured when it
loads, no key stored); ``summary.json`` says how to reproduce the reported scores, with the exact
``main.py evaluate`` command.
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentsearch.optimizers.base import FinishedTrial


def reproduce_command(config: Mapping[str, Any], agent_path: Path) -> str:
    """The ``main.py evaluate`` command that reproduces the reported test score."""
    parts = ["python", "main.py", "evaluate", "--agent", str(agent_path), "--benchmark", str(config["benchmark"])]
    if config.get("data"):
        parts += ["--data", str(config["data"])]
    parts += [
        "--split",
        "test",
        "--seed",
        str(config["seed"]),
        "--val-size",
        str(config["val_size"]),
        "--test-size",
        str(config["test_size"]),
    ]
    if config.get("run_dir"):
        parts += ["--run-dir", str(config["run_dir"])]  # the run's response cache: exact replay of sampling
    parts += model_flags(config.get("model_flags") or {})
    return shlex.join(parts)


def model_flags(flags: Mapping[str, Any]) -> list[str]:
    """The CLI flags that chose the study's models (a run config, an endpoint, or the embedded model);
    never a key (keys come from the environment)."""
    from agentsearch.evaluators.llm.models import ModelFlags

    return ModelFlags.from_public(flags).argv()


def export_study(
    out_dir: str | Path,
    best: list[FinishedTrial],
    config: Mapping[str, Any],
    test_results: Mapping[str, Mapping[str, Any]],
    baselines_test: Mapping[str, float | None] | None = None,
    selected_val: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write best.yaml, agent.py (with requirements.txt), mlflow_model/, pareto/*.yaml, program.json and
    summary.json; returns what was written (``agent_error``/``mlflow_model_error``: why one was not).
    ``config["answer_kind"]`` is the benchmark's (``text`` when not given)."""
    from agentsearch.evaluators.operators.compile import compile_graph
    from agentsearch.runs.standalone import ExportError, write_agent

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not best or best[0].graph is None:
        raise ValueError("the study has no complete trial to export")
    top = best[0]
    best_graph = top.graph.model_copy(update={"name": "best", "description": f"trial {top.number} ({top.origin})"})
    best_path = best_graph.save(out / "best.yaml")
    answer_kind = str(config.get("answer_kind") or "text")
    compile_graph(best_graph, answer_kind=answer_kind).save(str(out / "program.json"))
    agent_path: Path | None = None
    agent_error = None
    try:
        agent_path = write_agent(
            out,
            best_graph,
            answer_kind,
            model_flags=config.get("model_flags") or {},
            title=f"study '{config.get('study')}', trial {top.number} ({top.origin}), {config.get('benchmark')}",
        )
    except ExportError as exc:  # said in the summary and by the caller; the configs are still exported
        agent_error = str(exc)
        (out / "agent.py").unlink(missing_ok=True)  # never a stale agent.py of an earlier export
    model_path = out / "mlflow_model"
    model_error = None
    if agent_path is not None:
        from agentsearch.runs.agent_model import model_defaults, save_agent_model

        aliases = sorted(best_graph.models(), key=lambda a: (a != "default", a))
        try:
            save_agent_model(agent_path, model_path, aliases=aliases, **model_defaults(config.get("model_flags") or {}))
        except Exception as exc:  # noqa: BLE001 - reported in the summary; agent.py and the configs stand
            model_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if (agent_path is None or model_error is not None) and model_path.exists():
        shutil.rmtree(model_path)  # never a stale or half-written model beside a new best.yaml
    pareto_paths = []
    if len(best) > 1 or len(config.get("objectives", [])) > 1:
        for i, trial in enumerate(best):
            if trial.graph is None:
                continue
            g = trial.graph.model_copy(update={"name": f"pareto-{i}", "description": f"trial {trial.number}"})
            pareto_paths.append(str(g.save(out / "pareto" / f"pareto-{i}-trial{trial.number}.yaml")))

    def entry(trial: FinishedTrial, val: Mapping[str, Any] | None = None) -> dict[str, Any]:
        graph = trial.graph
        test = test_results.get(graph.config_hash) if graph is not None else None
        return {
            "trial": trial.number,
            "origin": trial.origin,
            "config_hash": graph.config_hash if graph is not None else None,
            "summary": graph.summary() if graph is not None else None,
            "values": trial.values,
            "val": {**trial.metrics, **(val or {})},
            "test": {k: v for k, v in test.items() if k != "outcomes"} if test else None,
        }

    summary = {
        "study": config.get("study"),
        "benchmark": config.get("benchmark"),
        "data": config.get("data"),
        "seed": config.get("seed"),
        "val_size": config.get("val_size"),
        "test_size": config.get("test_size"),
        "objectives": config.get("objectives"),
        "best": entry(top, selected_val),  # its full-validation score when the selection completed it
        "pareto": [entry(t) for t in best] if pareto_paths else [],
        "baselines_test": dict(baselines_test or {}),
        "reproduce": reproduce_command(config, best_path),
        "agent_error": agent_error,
        "mlflow_model_error": model_error,
        "files": {
            "best": str(best_path),
            "agent": str(agent_path) if agent_path is not None else None,
            "mlflow_model": str(model_path) if agent_path is not None and model_error is None else None,
            "program": str(out / "program.json"),
            "pareto": pareto_paths,
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return summary
