"""Endpoint pools: one model alias served by several OpenAI-compatible endpoints.

Each call goes to the healthy endpoint with the fewest requests in flight. A call that fails with
a retryable error (connection refused, timeout, 5xx, rate limit) marks that endpoint unhealthy
for a cool-down and is retried on another one; only when every endpoint has failed does the call
fail (and the Evaluator records it on the example). Usage is metered once, under the alias.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.exceptions import is_retryable_lm_error

from agentsearch.evaluators.llm.lm import (
    DEFAULT_TIMEOUT_S,
    Endpoint,
    EndpointDown,
    EndpointGate,
    MeteredLM,
    MeteringMixin,
    lm_model_name,
)

log = logging.getLogger(__name__)


@dataclass
class Member:
    endpoint: Endpoint
    lm: dspy.LM
    in_flight: int = 0
    unhealthy_until: float = 0.0
    calls: int = 0
    failures: int = 0
    gate: EndpointGate | None = None

    @property
    def saturated(self) -> bool:
        return self.gate is not None and self.gate.full

    def healthy(self, now: float) -> bool:
        return now >= self.unhealthy_until and not (self.gate is not None and self.gate.is_open)


class _PoolRouter(dspy.LM):
    """A ``dspy.LM`` whose calls are routed to the pool's member LMs."""

    members: list[Member]
    cooldown_s: float
    _pool_lock: threading.Lock

    def _pick(self, tried: set[int]) -> Member | None:
        now = time.monotonic()
        with self._pool_lock:
            candidates = [m for i, m in enumerate(self.members) if i not in tried]
            if not candidates:
                return None
            healthy = [m for m in candidates if m.healthy(now)] or candidates  # all sick: try the least bad
            member = min(
                healthy, key=lambda m: (not m.healthy(now), m.saturated, m.in_flight, m.unhealthy_until, m.calls)
            )
            member.in_flight += 1
            member.calls += 1
            return member

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        tried: set[int] = set()
        last: Exception | None = None
        while (member := self._pick(tried)) is not None:
            tried.add(self.members.index(member))
            try:
                if member.gate is None:
                    return member.lm(*args, **kwargs)
                return member.gate.call(member.lm, *args, **kwargs)
            except Exception as exc:
                last = exc
                if not (is_retryable_lm_error(exc) or isinstance(exc, EndpointDown)):
                    raise
                with self._pool_lock:
                    member.failures += 1
                    member.unhealthy_until = time.monotonic() + self.cooldown_s
                log.warning("endpoint %s failed (%s); trying another", member.endpoint.api_base, type(exc).__name__)
            finally:
                with self._pool_lock:
                    member.in_flight -= 1
        assert last is not None
        raise last

    def stats(self) -> list[dict[str, Any]]:
        """Per-endpoint counters (no secrets)."""
        now = time.monotonic()
        return [
            {**m.endpoint.public(), "calls": m.calls, "failures": m.failures, "healthy": m.healthy(now)}
            for m in self.members
        ]


class PooledLM(MeteringMixin, _PoolRouter):
    """An alias spread over several endpoints; metered once per call under the alias."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        alias: str = "default",
        cache: bool = True,
        timeout: float = DEFAULT_TIMEOUT_S,
        num_retries: int = 1,
        cooldown_s: float = 30.0,
        gates: Mapping[str, EndpointGate] | None = None,
    ):
        if not endpoints:
            raise ValueError("a pool needs at least one endpoint")
        first = endpoints[0]
        super().__init__(
            lm_model_name(first),
            api_base=first.api_base.rstrip("/"),
            api_key=first.api_key or "not-needed",
            cache=cache,
            num_retries=num_retries,
            timeout=timeout,
            engine="lm15",
        )
        self.alias = alias
        self.cooldown_s = cooldown_s
        self._pool_lock = threading.Lock()
        self.members = [
            Member(
                e,
                dspy.LM(
                    lm_model_name(e),
                    api_base=e.api_base.rstrip("/"),
                    api_key=e.api_key or "not-needed",
                    cache=cache,
                    num_retries=num_retries,
                    timeout=timeout,
                    engine="lm15",
                ),
                gate=(gates or {}).get(e.api_base.rstrip("/")),
            )
            for e in endpoints
        ]


def build_lm(
    endpoint: Endpoint | list[Endpoint],
    *,
    cache: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
    num_retries: int = 3,
    gates: Mapping[str, EndpointGate] | None = None,
) -> dspy.LM:
    """A metered DSPy LM on DSPy's native client (not the LiteLLM path) for one OpenAI-compatible
    endpoint, or a :class:`PooledLM` spreading calls over several. ``gates`` (by base URL, no trailing
    slash) cap the requests in flight to each endpoint, across every LM built with the same gates."""
    if isinstance(endpoint, list):
        if len(endpoint) > 1:
            return PooledLM(
                endpoint,
                alias=endpoint[0].alias,
                cache=cache,
                timeout=timeout,
                num_retries=min(num_retries, 1),
                gates=gates,
            )
        endpoint = endpoint[0]
    return MeteredLM(
        lm_model_name(endpoint),
        alias=endpoint.alias,
        gate=(gates or {}).get(endpoint.api_base.rstrip("/")),
        api_base=endpoint.api_base.rstrip("/"),
        api_key=endpoint.api_key or "not-needed",
        cache=cache,
        num_retries=num_retries,
        timeout=timeout,
        engine="lm15",
    )
