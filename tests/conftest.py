"""Shared fixtures: offline environment, the fake OpenAI-compatible server, LMs pointed at it."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import pytest  # noqa: E402

pytest.register_assert_rewrite("agentsearch.testing")  # the shipped contract suites report like tests

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

from agentsearch.testing.fake_server import FakeOpenAIServer, ReasoningPolicy  # noqa: E402

GSM8K_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"

#: Small synthetic word problems with exact answers (the fake server knows the answers).
QUESTIONS = {
    f"Tom has {a} apples and buys {b} more bags with {c} apples each. How many apples does Tom have now?": str(
        a + b * c
    )
    for a, b, c in [(3 + i, 2 + i % 4, 5 + i % 7) for i in range(60)]
}


@pytest.fixture(autouse=True)
def _dspy_cache_off() -> Iterator[None]:
    """Tests never read or write DSPy's on-disk cache unless they configure one themselves."""
    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    yield


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A fake server answering the synthetic QUESTIONS; accuracy depends on the agent's design."""
    with FakeOpenAIServer(ReasoningPolicy(QUESTIONS), latency=0.0) as server:
        yield server


@pytest.fixture
def questions_file(tmp_path: Path) -> Path:
    """QUESTIONS as a JSONL dataset (GSM8K style answers)."""
    import json

    path = tmp_path / "questions.jsonl"
    with path.open("w") as fh:
        for q, a in QUESTIONS.items():
            fh.write(json.dumps({"question": q, "answer": f"We compute it.\n#### {a}"}) + "\n")
    return path


def make_lm(server: FakeOpenAIServer, cache: bool = False, num_retries: int = 0, timeout: float = 10.0):
    from agentsearch.evaluators.llm.lm import Endpoint
    from agentsearch.evaluators.llm.pool import build_lm

    return build_lm(
        Endpoint(model=server.model, api_base=server.url), cache=cache, num_retries=num_retries, timeout=timeout
    )
