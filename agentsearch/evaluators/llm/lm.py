"""LM clients: DSPy's native LM engine pointed at OpenAI-compatible endpoints, with per-call metering.

Every LM call made while a :class:`Meter` is active (see :func:`metering`) is counted: calls, calls
answered from DSPy's cache, billed prompt/completion tokens (cache hits bill none), latency and
failures, broken down by model alias. Metering is per context (``contextvars``), so concurrent
examples in an evaluation each get their own numbers.

A cache hit costs nothing now, but the design it belongs to still costs what the call cost when it
was made: each call's usage is kept beside its response in DSPy's cache (same store, same lifetime),
and a hit reports it as ``cached_prompt_tokens``/``cached_completion_tokens``. A design's cost
(objectives, summaries, comparisons) is :attr:`ModelUsage.design_tokens`; what was spent now is
:attr:`ModelUsage.tokens`.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import LMError
from dspy.utils.usage_tracker import UsageTracker

from agentsearch.errors import EndpointError

DEFAULT_TIMEOUT_S = 120.0

log = logging.getLogger(__name__)


@dataclass
class ModelUsage:
    calls: int = 0
    cached_calls: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached_prompt_tokens: int = 0  # what the calls answered from the cache cost when they were made
    cached_completion_tokens: int = 0

    def add(self, other: ModelUsage) -> None:
        self.calls += other.calls
        self.cached_calls += other.cached_calls
        self.failed_calls += other.failed_calls
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.latency_s += other.latency_s
        self.cached_prompt_tokens += other.cached_prompt_tokens
        self.cached_completion_tokens += other.cached_completion_tokens

    @property
    def tokens(self) -> int:
        """Tokens billed now (cache hits bill none)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def cached_tokens(self) -> int:
        return self.cached_prompt_tokens + self.cached_completion_tokens

    @property
    def design_tokens(self) -> int:
        """What the calls cost the design, cache hits at the price they were made at."""
        return self.tokens + self.cached_tokens


@dataclass
class Meter:
    """Thread-safe accumulator of LM usage, by model alias."""

    by_model: dict[str, ModelUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, alias: str, usage: ModelUsage) -> None:
        with self._lock:
            self.by_model.setdefault(alias, ModelUsage()).add(usage)

    def merge(self, other: Meter) -> None:
        for alias, usage in other.by_model.items():
            self.record(alias, usage)

    @property
    def total(self) -> ModelUsage:
        out = ModelUsage()
        with self._lock:
            for usage in self.by_model.values():
                out.add(usage)
        return out


_METER: contextvars.ContextVar[Meter | None] = contextvars.ContextVar("agentsearch_meter", default=None)


def current_meter() -> Meter | None:
    """The meter active in this context (None outside :func:`metering`)."""
    return _METER.get()


@contextmanager
def metering(meter: Meter | None = None) -> Iterator[Meter]:
    """Count every LM call made inside the block (in this context and contexts copied from it)."""
    meter = meter if meter is not None else Meter()
    token = _METER.set(meter)
    try:
        yield meter
    finally:
        _METER.reset(token)


class MeteringMixin:
    """Mix into any ``dspy.BaseLM`` subclass: each call is reported to the active :class:`Meter`."""

    alias: str = "default"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        meter = _METER.get()
        if meter is None:
            return super().__call__(*args, **kwargs)
        tracker = UsageTracker()
        parent = dspy.settings.usage_tracker
        start = time.perf_counter()
        usage = ModelUsage(calls=1)
        try:
            with dspy.context(usage_tracker=tracker):
                return super().__call__(*args, **kwargs)
        except BaseException:
            usage.failed_calls = 1
            raise
        finally:
            usage.latency_s = time.perf_counter() - start
            entries = [e for es in tracker.usage_data.values() for e in es]
            if entries:
                usage.prompt_tokens = sum(int(e.get("prompt_tokens") or 0) for e in entries)
                usage.completion_tokens = sum(int(e.get("completion_tokens") or 0) for e in entries)
                _remember_usage(self, args, kwargs, usage)
            elif not usage.failed_calls:
                usage.cached_calls = 1  # DSPy adds no usage for cache hits
                usage.cached_prompt_tokens, usage.cached_completion_tokens = _recall_usage(self, args, kwargs)
            if parent is not None:
                for lm_name, es in tracker.usage_data.items():
                    parent.usage_data[lm_name].extend(es)
            meter.record(self.alias, usage)


def _usage_key(lm: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The cache request under which a call's usage is kept (None when the call is not cached)."""
    merged = {**getattr(lm, "kwargs", {}), **kwargs}
    if not merged.get("cache", getattr(lm, "cache", False)):
        return None
    prompt = args[0] if args else merged.pop("prompt", None)
    messages = args[1] if len(args) > 1 else merged.pop("messages", None)
    config = {k: v for k, v in merged.items() if not k.startswith("api_") and k not in ("cache", "callbacks")}
    return {"agentsearch_usage": 1, "model": getattr(lm, "model", ""), "prompt": prompt, "messages": messages,
            "config": config}


def _remember_usage(lm: Any, args: tuple[Any, ...], kwargs: dict[str, Any], usage: ModelUsage) -> None:
    key = _usage_key(lm, args, kwargs)
    if key is None:
        return
    try:
        dspy.cache.put(key, {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens})
    except Exception:  # noqa: BLE001 - bookkeeping must never fail a call (e.g. an unhashable request)
        return


def _recall_usage(lm: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    key = _usage_key(lm, args, kwargs)
    if key is None:
        return 0, 0
    try:
        got = dspy.cache.get(key)
    except Exception:  # noqa: BLE001
        return 0, 0
    if not isinstance(got, dict):
        return 0, 0
    return int(got.get("prompt_tokens") or 0), int(got.get("completion_tokens") or 0)


class EndpointDown(LMError):
    """The endpoint's circuit breaker is open: it failed ``threshold`` calls in a row (after the LM client's
    retries), so calls fail at once instead of waiting on a dead server. Recorded as an endpoint error."""


class EndpointGate:
    """At most ``limit`` requests in flight to one endpoint, shared by every LM calling that base URL, and
    the endpoint's circuit breaker.

    Held around one LM call only (a leaf: no call waits for another gate while holding one, so gates
    cannot deadlock). Waiting for a slot does not count against the call's timeout. A call answered
    from DSPy's cache passes through too, holding its slot for microseconds.

    Breaker: ``threshold`` calls in a row that fail on the endpoint (connection, timeout, 5xx, rate limit,
    auth; after the client's own retries) open it for ``cooldown_s``: calls then raise :class:`EndpointDown`
    at once, so a study whose server died stops in seconds (its trials FAIL and are queued again, never
    scored). After the cool-down one call is let through; its success closes the breaker.

    Hang watchdog (when ``name`` is the endpoint's http(s) base URL): an endpoint that accepts connections
    but never answers would hold every call for the whole call timeout (minutes). When calls have waited
    ``stall_s`` with none finishing meanwhile, the gate asks ``GET <base>/models`` with ``probe_timeout_s``;
    any HTTP answer (even 401 or 404) means the server is alive and merely slow, and nothing happens. No
    answer opens the breaker and abandons the calls waiting on it: they raise :class:`EndpointDown` at once
    (their requests are left to time out in the background). A server whose HTTP front answers while its
    completions are stuck is not detected this way; its calls end at the call timeout.
    """

    def __init__(
        self,
        limit: int,
        *,
        threshold: int = 3,
        cooldown_s: float = 30.0,
        name: str = "",
        stall_s: float = 10.0,
        probe_timeout_s: float = 4.0,
    ) -> None:
        if limit < 1:
            raise ValueError(f"an endpoint gate needs at least one slot, got {limit}")
        self.limit = limit
        self.threshold, self.cooldown_s, self.name = threshold, cooldown_s, name
        self.stall_s, self.probe_timeout_s = stall_s, probe_timeout_s
        self.watched = name.startswith(("http://", "https://")) and stall_s > 0
        self._starts: dict[int, float] = {}  # in-flight calls: id -> monotonic start
        self._last_done = time.monotonic()
        self._abandon_before = float("-inf")  # calls started before this were abandoned (the endpoint hung)
        self._watchdog: threading.Thread | None = None
        self._tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()  # calls for the gate's daemon workers
        self._idle = 0  # workers waiting for a call
        self.hangs = 0  # times the watchdog found the endpoint not answering
        self._slots = threading.BoundedSemaphore(limit)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0  # the most requests that were ever in flight at once
        self.failures_in_a_row = 0
        self.opened = 0  # times the breaker opened
        self.last_error = ""
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return self.failures_in_a_row >= self.threshold and time.monotonic() < self._open_until

    def check(self) -> None:
        """Raise :class:`EndpointDown` while the breaker is open."""
        if self.is_open:
            raise EndpointDown(
                f"endpoint {self.name or '?'} is down: {self.failures_in_a_row} calls in a row failed "
                f"(last: {self.last_error}); not calling it for {self.cooldown_s:.0f}s"
            )

    def succeeded(self) -> None:
        with self._lock:
            self.failures_in_a_row = 0

    def failed(self, exc: BaseException) -> None:
        """A call failed on the endpoint (after the client's retries)."""
        with self._lock:
            self.failures_in_a_row += 1
            self.last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200]
            if self.failures_in_a_row >= self.threshold:
                if time.monotonic() >= self._open_until:
                    self.opened += 1
                self._open_until = time.monotonic() + self.cooldown_s

    def __enter__(self) -> EndpointGate:
        self._slots.acquire()
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.in_flight -= 1
        self._slots.release()

    @property
    def full(self) -> bool:
        return self.in_flight >= self.limit

    # A copied LM (DSPy deep-copies programs) still shares its endpoint's gate; an unpickled one gets its own.
    def __copy__(self) -> EndpointGate:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> EndpointGate:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_new_gate, (self.limit, self.threshold, self.cooldown_s, self.name, self.stall_s, self.probe_timeout_s))

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in a slot, through the breaker (and, for a watched endpoint, abandoned if
        the watchdog finds the endpoint hung)."""
        self.check()
        with self:
            try:
                result = self._watched_call(fn, args, kwargs) if self.watched else fn(*args, **kwargs)
            except Exception as exc:
                if is_endpoint_failure(exc):
                    self.failed(exc)
                raise
        self.succeeded()
        return result

    def _watched_call(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the call in a daemon thread (with this context: metering, DSPy settings, tracing) and wait for
        it, or for the watchdog to abandon it."""
        done = threading.Event()
        box: dict[str, Any] = {}
        context = contextvars.copy_context()

        def run() -> None:
            try:
                box["result"] = context.run(fn, *args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                box["error"] = exc
            finally:
                done.set()

        started = time.monotonic()
        token = id(done)
        with self._lock:
            self._starts[token] = started
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="agentsearch-watchdog", daemon=True)
                self._watchdog.start()
        self._run_in_worker(run)
        try:
            while not done.wait(0.25):
                if started < self._abandon_before:
                    raise EndpointDown(
                        f"endpoint {self.name} stopped answering: no call finished in {self.stall_s:.0f}s and "
                        f"GET {self.name}/models got no answer in {self.probe_timeout_s:.0f}s; the call is abandoned"
                    )
        finally:
            with self._lock:
                self._starts.pop(token, None)
                if done.is_set():
                    self._last_done = time.monotonic()
        if "error" in box:
            raise box["error"]
        return box["result"]

    def _run_in_worker(self, task: Any) -> None:
        """Hand ``task`` to an idle daemon worker of this gate, starting one if none is idle (threads are
        reused: starting one per call costs more client CPU than the call's own bookkeeping)."""
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1
        self._tasks.put(task)
        if start:
            threading.Thread(target=self._work, name="agentsearch-call", daemon=True).start()

    def _work(self) -> None:
        while True:
            self._tasks.get()()
            with self._lock:
                self._idle += 1

    def _watch(self) -> None:
        """The watchdog: probe the endpoint when calls have waited ``stall_s`` and none finished meanwhile."""
        while True:
            time.sleep(min(1.0, self.stall_s / 4))
            with self._lock:
                oldest = min(self._starts.values(), default=None)
                quiet_since = self._last_done
            now = time.monotonic()
            if oldest is None or now - oldest < self.stall_s or now - quiet_since < self.stall_s:
                continue
            if probe_endpoint(self.name, self.probe_timeout_s):
                with self._lock:  # alive, only slow: look again after another stall_s
                    self._last_done = max(self._last_done, time.monotonic())
                continue
            log.warning("endpoint %s: no answer to calls in %.0fs nor to a probe; abandoning them", self.name,
                        self.stall_s)
            with self._lock:
                self.hangs += 1
                self._abandon_before = time.monotonic()
                self.last_error = f"hung: no call finished in {self.stall_s:.0f}s and no answer to a probe"
                if self.failures_in_a_row < self.threshold or time.monotonic() >= self._open_until:
                    self.opened += 1
                self.failures_in_a_row = max(self.failures_in_a_row, self.threshold)
                self._open_until = time.monotonic() + self.cooldown_s
                self._last_done = time.monotonic()


def _new_gate(
    limit: int, threshold: int, cooldown_s: float, name: str, stall_s: float = 10.0, probe_timeout_s: float = 4.0
) -> EndpointGate:
    return EndpointGate(
        limit, threshold=threshold, cooldown_s=cooldown_s, name=name, stall_s=stall_s, probe_timeout_s=probe_timeout_s
    )


def probe_endpoint(api_base: str, timeout: float) -> bool:
    """Whether ``GET <api_base>/models`` gets any HTTP answer (an error status counts: the server answers)
    within ``timeout`` seconds. No credentials are sent."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_base.rstrip('/')}/models", timeout=timeout) as reply:  # noqa: S310
            reply.read(1)
        return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):  # refused, reset, timed out, unreachable, or not a URL
        return False


def is_endpoint_failure(exc: BaseException) -> bool:
    """Whether a failed call says the endpoint is unwell (not that the request or the output was bad)."""
    from dspy.utils.exceptions import (
        LMAuthError,
        LMInvalidRequestError,
        LMTransportError,
        LMUnexpectedError,
        is_retryable_lm_error,
    )

    if isinstance(exc, LMInvalidRequestError | EndpointDown):
        return False
    return is_retryable_lm_error(exc) or isinstance(exc, LMAuthError | LMTransportError | LMUnexpectedError)


class GatedMixin:
    """Mix in before :class:`MeteringMixin`: each call waits for a slot of ``gate`` (None: no limit) and goes
    through its breaker, so metering measures the call, not the wait."""

    gate: EndpointGate | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.gate is None:
            return super().__call__(*args, **kwargs)  # type: ignore[misc]
        return self.gate.call(super().__call__, *args, **kwargs)  # type: ignore[misc]


class MeteredLM(GatedMixin, MeteringMixin, dspy.LM):
    """``dspy.LM`` that reports each call to the active :class:`Meter` under its alias; with a ``gate``,
    at most ``gate.limit`` of its (and its endpoint's other LMs') calls are in flight at once."""

    def __init__(self, model: str, *, alias: str = "default", gate: EndpointGate | None = None, **kwargs: Any):
        super().__init__(model, **kwargs)
        self.alias = alias
        self.gate = gate


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible endpoint serving one model. ``api_key`` is never logged or saved."""

    model: str
    api_base: str
    api_key: str | None = field(default=None, repr=False)
    alias: str = "default"

    def public(self) -> dict[str, str]:
        return {"alias": self.alias, "model": self.model, "api_base": self.api_base}


def lm_model_name(endpoint: Endpoint) -> str:
    """DSPy's model string for an OpenAI-compatible endpoint, declared to DSPy's native client.

    Each base URL becomes a declared lm15 provider (``agentsearch-<hash>``; idempotent). Two effects:
    DSPy skips its per-call price lookup (an unlisted model id scans the whole price map, which
    more than halved our throughput: see docs/performance.md), and the response cache key names the
    endpoint (DSPy's cache key ignores ``api_base``).
    """
    import hashlib

    from dspy.lm15 import AccessPolicy, OpenAIChatCompat, ProviderDefinition, register_provider

    base = endpoint.api_base.rstrip("/")
    provider = "agentsearch-" + hashlib.sha1(base.encode("utf-8")).hexdigest()[:10]
    register_provider(
        ProviderDefinition.chat(
            AccessPolicy(provider=provider, base_url=base), compat=OpenAIChatCompat(), placeholder_key="not-needed"
        )
    )
    return f"{provider}/{endpoint.model.removeprefix('openai/')}"


def configure_cache(cache_dir: str | Path | None) -> None:
    """Put DSPy's response cache in ``cache_dir`` (e.g. the run directory), or turn it off (None)."""
    if cache_dir is None:
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
        return
    path = Path(cache_dir)
    path.mkdir(parents=True, exist_ok=True)
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(path))


def check_endpoint(endpoint: Endpoint, timeout: float = 5.0) -> list[str]:
    """Fail fast (seconds) with a one-line :class:`EndpointError` if the endpoint can't be used.

    Returns the model ids the server lists (empty when it has no ``/models`` route).
    """
    import httpx

    url = endpoint.api_base.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    try:
        resp = httpx.get(url, headers=headers, timeout=timeout)
    except httpx.ConnectError:
        raise EndpointError(f"--api-base {endpoint.api_base}: cannot connect (is the server running?)") from None
    except httpx.TimeoutException:
        raise EndpointError(f"--api-base {endpoint.api_base}: no answer within {timeout:.0f}s") from None
    except httpx.HTTPError as exc:
        raise EndpointError(f"--api-base {endpoint.api_base}: {type(exc).__name__}: {exc}") from None
    if resp.status_code in (401, 403):
        raise EndpointError(
            f"--api-base {endpoint.api_base}: the server rejected the API key (HTTP {resp.status_code})"
        )
    if resp.status_code == 404:
        return []
    if resp.status_code >= 400:
        raise EndpointError(f"--api-base {endpoint.api_base}: GET /models answered HTTP {resp.status_code}")
    try:
        return [m.get("id", "") for m in resp.json().get("data", [])]
    except (ValueError, AttributeError):
        raise EndpointError(
            f"--api-base {endpoint.api_base}: not an OpenAI-compatible API (bad /models reply)"
        ) from None
