"""What an exported ``agent.py`` needs besides the operators: the node record the operator code reads, LMs
built from flags, and the command line.

This module never imports agentsearch and uses only the standard library and DSPy: the exporter
(:mod:`agentsearch.runs.standalone`) copies its definitions into ``agent.py``, which runs with only
``dspy`` installed. agentsearch itself does not use it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dspy


@dataclass(frozen=True)
class OperatorSpec:
    """The part of an operator's spec its code reads: the instruction used when a node sets none."""

    name: str
    default_instruction: str = ""


@dataclass(frozen=True)
class NodeConfig:
    """One node of the agent graph: its id, operator, inputs (``question`` or upstream node ids), params."""

    id: str
    op: str
    params: Any
    spec: OperatorSpec
    inputs: tuple[str, ...] = ("question",)

    @property
    def upstream(self) -> tuple[str, ...]:
        """Upstream node ids (the question excluded)."""
        return tuple(i for i in self.inputs if i != "question")


def use_lms(nodes: Mapping[str, dspy.Module], lms: Mapping[str, dspy.BaseLM] | None) -> None:
    """Run each node on the LM of its model alias (``params.model``); ``lms=None``: DSPy's configured LM."""
    if lms is None:
        return
    for node_id, module in nodes.items():
        alias = getattr(module.params, "model", None)
        if alias is None:
            continue  # a node without LM calls (vote)
        if alias not in lms:
            known = ", ".join(sorted(lms)) or "none"
            raise ValueError(f"node '{node_id}' runs on model alias '{alias}', which has no LM (given: {known})")
        module.set_lm(lms[alias])


def make_lm(model: str, api_base: str | None = None, api_key_env: str | None = None) -> dspy.LM:
    """A DSPy LM. With ``api_base`` the model is served by an OpenAI-compatible endpoint (vLLM, llama.cpp,
    ``main.py serve``, ...); without it ``model`` is a LiteLLM model string (``openai/gpt-4o-mini``). The key
    is read from the environment (``api_key_env``, else ``AGENTSEARCH_API_KEY``, else ``OPENAI_API_KEY``)."""
    names = [api_key_env] if api_key_env else ["AGENTSEARCH_API_KEY", "OPENAI_API_KEY"]
    key = next((os.environ[n] for n in names if os.environ.get(n)), None)
    if api_key_env and key is None:
        raise ValueError(f"--api-key-env {api_key_env}: ${api_key_env} is not set")
    if api_base:
        name = model if model.startswith("openai/") else f"openai/{model}"
        return dspy.LM(name, api_base=api_base.rstrip("/"), api_key=key or "not-needed")
    return dspy.LM(model, api_key=key) if key else dspy.LM(model)


def main(
    agent_class: type[dspy.Module],
    argv: Sequence[str] | None = None,
    *,
    aliases: Sequence[str] = ("default",),
    model: str | None = None,
    api_base: str | None = None,
) -> int:
    """``python agent.py QUESTION``: print the agent's answer. ``model`` and ``api_base`` are the defaults
    (the endpoint the agent was searched on); ``$AGENT_MODEL`` and ``$AGENT_API_BASE`` override them, flags
    override both. ``aliases`` are the model aliases the graph's nodes run on."""
    parser = argparse.ArgumentParser(description=(agent_class.__doc__ or "").strip().splitlines()[0])
    parser.add_argument("question", help="the question ('-' reads it from stdin)")
    parser.add_argument(
        "--model",
        default=os.environ.get("AGENT_MODEL") or model,
        help="model name at --api-base, or a LiteLLM model string without it (default: $AGENT_MODEL, else %(default)s)",
    )
    parser.add_argument(
        "--api-base",
        default=os.environ.get("AGENT_API_BASE") or api_base,
        help="OpenAI-compatible endpoint URL (default: $AGENT_API_BASE, else %(default)s)",
    )
    parser.add_argument(
        "--api-key-env",
        default=None,
        help="environment variable holding the API key (default: AGENTSEARCH_API_KEY, else OPENAI_API_KEY); "
        "a key is never stored in this file",
    )
    parser.add_argument(
        "--lm",
        action="append",
        default=[],
        metavar="ALIAS=MODEL",
        help="the model of another alias the graph uses (same endpoint and key); repeatable",
    )
    parser.add_argument("--state", default=None, help="load a saved DSPy state (program.json of the export)")
    parser.add_argument("--json", action="store_true", help="print the answer and the reasoning as JSON")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("no model: give --model (and --api-base for an OpenAI-compatible endpoint) or set $AGENT_MODEL")
    question = sys.stdin.read().strip() if args.question == "-" else args.question
    names = {"default": args.model}
    for item in args.lm:
        alias, sep, name = item.partition("=")
        if not sep or not alias or not name:
            parser.error(f"--lm {item!r}: expected ALIAS=MODEL")
        names[alias] = name
    missing = [a for a in aliases if a not in names]
    if missing:
        parser.error(f"the graph runs on model alias(es) {', '.join(missing)}: give --lm ALIAS=MODEL for each")
    try:
        lms = {alias: make_lm(name, args.api_base, args.api_key_env) for alias, name in names.items()}
    except ValueError as exc:
        parser.error(str(exc))
    dspy.configure(lm=lms["default"])
    agent = agent_class(lms=lms)
    if args.state:
        agent.load(args.state)
    prediction = agent(question=question)
    if args.json:
        sys.stdout.write(json.dumps({"answer": prediction.answer, "reasoning": prediction.reasoning}, indent=2) + "\n")
    else:
        sys.stdout.write(f"{prediction.answer}\n")
    return 0
