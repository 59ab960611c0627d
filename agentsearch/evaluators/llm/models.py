"""Model aliases: which LMs a run uses, from CLI flags or a run config (YAML).

A run config names aliases; each alias is served by one or more OpenAI-compatible endpoints (an
endpoint pool) or by a launcher we start and stop (``local``: the embedded llama.cpp server on the
CPU; ``vllm:<hf-id-or-path>``: vLLM on a GPU)::

    models:
      default:
        launcher: local            # or: vllm:Qwen/Qwen2.5-7B-Instruct
      big:
        endpoints:
          - {api_base: http://10.0.0.5:8000/v1, model: qwen-72b, api_key_env: BIG_KEY}
          - {api_base: http://10.0.0.6:8000/v1, model: qwen-72b, api_key_env: BIG_KEY}
        price: {input: 0.40, output: 1.20}   # optional: USD per million tokens, for optimize's $ estimate

API keys are read from environment variables at start; they are never stored in configs, logs,
MLflow or exports. Graph nodes choose an alias with ``params.model`` (default ``default``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentsearch.errors import EndpointError, UserError
from agentsearch.evaluators.llm.lm import DEFAULT_TIMEOUT_S, Endpoint, EndpointGate, check_endpoint
from agentsearch.evaluators.llm.pool import build_lm

log = logging.getLogger(__name__)

#: The packaged embedded models (``--local-model-size``); see docs/performance.md for how they compare.
LOCAL_MODEL_SIZES = ("0.5b", "1.5b")
#: Seconds one call to the embedded CPU model may take before it is retried (see ModelSet.call_timeout).
LOCAL_TIMEOUT_S = 600.0
#: Requests in flight at once to a launched vLLM server (it batches them; more only queue in its scheduler).
VLLM_MAX_IN_FLIGHT = 256


class EndpointSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_base: str = Field(pattern=r"^https?://")
    model: str = Field(min_length=1)
    api_key_env: str | None = None
    max_in_flight: int = Field(32, ge=1, le=4096)  # requests in flight to this endpoint at once, from all aliases


class VllmSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tensor_parallel_size: int | None = Field(None, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=256)
    extra_args: tuple[str, ...] = ()


class PriceSpec(BaseModel):
    """What an alias's tokens cost, in USD per million tokens (the provider's list price)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: float = Field(ge=0)  # prompt tokens
    output: float = Field(ge=0)  # completion tokens


class ModelSpec(BaseModel):
    """One alias: endpoints (a pool) or a launcher; ``price`` (optional) gives ``optimize`` a $ estimate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    endpoints: tuple[EndpointSpec, ...] = ()
    launcher: str | None = Field(None, pattern=r"^(local|vllm:.+)$")
    local_model: str | None = None
    local_model_size: Literal["0.5b", "1.5b"] | None = None  # the packaged model to serve (default: 0.5b)
    parallel: int | None = Field(None, ge=1, le=64)
    threads: int | None = Field(None, ge=1, le=256)
    vllm: VllmSpec = VllmSpec()
    price: PriceSpec | None = None

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if bool(self.endpoints) == bool(self.launcher):
            raise ValueError("give either 'endpoints' or 'launcher' (local | vllm:<model>)")
        return self


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    models: dict[str, ModelSpec] = Field(min_length=1)

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        from agentsearch.configfiles import load_yaml, read_text

        path = Path(path)
        data = load_yaml(read_text(path), str(path))
        try:
            return cls.model_validate(data or {})
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise UserError(f"{path}: field '{loc}': {err['msg']}") from None


def spec_from_flags(
    model: str,
    api_bases: list[str],
    local_model: str | None = None,
    parallel: int | None = None,
    local_model_size: str | None = None,
) -> ModelSpec:
    """The ``default`` alias from CLI flags: ``--api-base`` (repeatable) or a launcher in ``--model``."""
    if local_model_size is not None and local_model_size not in LOCAL_MODEL_SIZES:
        raise UserError(f"--local-model-size {local_model_size!r}: expected one of {', '.join(LOCAL_MODEL_SIZES)}")
    if local_model_size is not None and local_model is not None:
        raise UserError("--local-model-size picks a packaged model; --local-model gives your own: use one")
    if model == "local" or model.startswith("vllm:"):
        if api_bases:
            raise UserError(f"--model {model} starts its own server: drop --api-base")
        return ModelSpec(launcher=model, local_model=local_model, parallel=parallel, local_model_size=local_model_size)
    if not api_bases:
        raise UserError(f"--model {model}: give --api-base URL for it, or use --model local (the embedded CPU model)")
    for url in api_bases:
        if not url.startswith(("http://", "https://")):
            raise UserError(f"--api-base {url!r}: expected an http(s):// URL")
    return ModelSpec(endpoints=tuple(EndpointSpec(api_base=u, model=model, api_key_env=None) for u in api_bases))


def _key(spec: EndpointSpec, alias: str, fallback: str | None) -> str | None:
    if spec.api_key_env is None:
        return fallback
    value = os.environ.get(spec.api_key_env)
    if not value:
        raise UserError(f"models.{alias}: api_key_env: ${spec.api_key_env} is not set")
    return value


class ModelSet:
    """Starts what the aliases need (launchers), checks endpoints, and builds one LM per alias.

    Use as a context manager: launched servers stop on exit, Ctrl-C or error.
    """

    def __init__(
        self,
        specs: Mapping[str, ModelSpec],
        *,
        run_dir: Path,
        cache: bool = True,
        timeout: float | None = None,
        api_key: str | None = None,
        announce: Callable[[str], None] = lambda msg: None,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.specs = dict(specs)
        self.run_dir = run_dir
        self.cache = cache
        self.timeout = timeout
        self.api_key = api_key
        self.announce = announce
        self.progress = progress
        self.endpoints: dict[str, list[Endpoint]] = {}
        self.lms: dict[str, Any] = {}
        #: One gate per base URL, shared by every alias calling it: requests in flight never exceed what the
        #: server serves at once (a launched embedded server's slots, vLLM's batch, an endpoint's max_in_flight).
        self.gates: dict[str, EndpointGate] = {}
        self._stack = ExitStack()

    def _gate(self, api_base: str, limit: int) -> None:
        key = api_base.rstrip("/")
        if key in self.gates:  # two aliases on one URL: the stricter limit holds
            limit = min(limit, self.gates[key].limit)
        self.gates[key] = EndpointGate(limit, name=key)

    def __enter__(self) -> ModelSet:
        try:
            for alias, spec in self.specs.items():
                eps = self._launch(alias, spec) if spec.launcher else self._connect(alias, spec)
                self.endpoints[alias] = eps
            for alias, spec in self.specs.items():
                self.lms[alias] = build_lm(
                    self.endpoints[alias], cache=self.cache, timeout=self.call_timeout(spec), gates=self.gates
                )
        except BaseException:
            self._stack.close()
            raise
        return self

    def call_timeout(self, spec: ModelSpec) -> float:
        """Seconds one LM call may take: ``timeout`` if given; else 120 s for endpoints and 600 s for the
        embedded CPU model, whose 4 slots share 2 cores (a 1,024-token reply takes about 2 minutes there
        even on an idle machine)."""
        if self.timeout is not None:
            return self.timeout
        return LOCAL_TIMEOUT_S if spec.launcher == "local" else DEFAULT_TIMEOUT_S

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _connect(self, alias: str, spec: ModelSpec) -> list[Endpoint]:
        eps = [
            Endpoint(model=e.model, api_base=e.api_base, api_key=_key(e, alias, self.api_key), alias=alias)
            for e in spec.endpoints
        ]
        reachable, errors = [], []
        for ep in eps:
            try:
                check_endpoint(ep)
                reachable.append(ep)
            except EndpointError as exc:
                errors.append(str(exc))
        if not reachable:
            raise EndpointError(errors[0] if len(errors) == 1 else f"models.{alias}: no endpoint answers ({errors[0]})")
        for msg in errors:
            self.announce(f"warning: {msg}; using the other endpoints of '{alias}'")
        for e in spec.endpoints:
            self._gate(e.api_base, e.max_in_flight)
        return eps if len(reachable) == len(eps) else reachable

    def _launch(self, alias: str, spec: ModelSpec) -> list[Endpoint]:
        log_dir = self.run_dir / "servers"
        if spec.launcher == "local":
            from agentsearch.evaluators.llm.backends.local import LocalServer, LocalServerConfig

            server = LocalServer(
                LocalServerConfig(
                    model_path=Path(spec.local_model) if spec.local_model else None,
                    model_size=spec.local_model_size,
                    parallel=spec.parallel,
                    threads=spec.threads,
                    log_dir=log_dir,
                ),
                progress=self.progress,
            )
            slots = server.parallel  # llama.cpp's slots: more requests would only queue and time out
        else:
            from agentsearch.evaluators.llm.backends.vllm import VllmServer

            v = spec.vllm
            server = VllmServer(
                spec.launcher.removeprefix("vllm:"),
                tensor_parallel_size=v.tensor_parallel_size,  # type: ignore[union-attr]
                gpu_memory_utilization=v.gpu_memory_utilization,
                max_model_len=v.max_model_len,
                extra_args=tuple(v.extra_args),
                log_dir=log_dir,
            )
            slots = VLLM_MAX_IN_FLIGHT
        self.announce(f"starting the {spec.launcher} server for '{alias}' (log: {log_dir})")
        self._stack.enter_context(server)
        endpoint = server.endpoint(alias)
        self._gate(endpoint.api_base, slots)
        self.announce(f"'{alias}' is served by {endpoint.model} at {endpoint.api_base}")
        return [endpoint]

    def public(self) -> dict[str, dict[str, Any]]:
        """What may be logged: models and URLs per alias, never keys."""
        return {
            alias: {
                "model": eps[0].model,
                "api_base": ", ".join(e.api_base for e in eps),
                "launcher": self.specs[alias].launcher or "",
            }
            for alias, eps in self.endpoints.items()
        }


@dataclass(frozen=True)
class ModelFlags:
    """How a command chose its models: the same flags for ``evaluate``, ``run`` and ``optimize``
    (``--model``, ``--api-base``, ``--api-key``, ``--config``, ``--local-model``, ``--local-model-size``,
    ``--call-timeout``). :meth:`public` is what a study stores (never the key); :meth:`argv` gives the flags back."""

    model: str = "local"
    api_base: tuple[str, ...] = ()
    api_key: str | None = field(default=None, repr=False)
    config: Path | None = None
    local_model: str | None = None
    local_model_size: str | None = None
    timeout: float | None = None

    def specs(self) -> dict[str, ModelSpec]:
        """The aliases and how each is served (a run config, plus ``default`` from ``--api-base``)."""
        if self.config is not None:
            specs = dict(RunConfig.load(self.config).models)
            if self.api_base:
                specs["default"] = spec_from_flags(self.model, list(self.api_base))
            return specs
        spec = spec_from_flags(
            self.model, list(self.api_base), local_model=self.local_model, local_model_size=self.local_model_size
        )
        return {"default": spec}

    def prices(self) -> dict[str, tuple[float, float]]:
        """USD per million (prompt, completion) tokens of the aliases a run config prices."""
        return {a: (s.price.input, s.price.output) for a, s in self.specs().items() if s.price is not None}

    def aliases(self) -> tuple[str, ...]:
        """The model aliases, ``default`` first."""
        return tuple(sorted(self.specs(), key=lambda n: (n != "default", n)))

    def key(self) -> str | None:
        """The API key: ``--api-key``, else ``$AGENTSEARCH_API_KEY``, else ``$OPENAI_API_KEY``."""
        return self.api_key or os.environ.get("AGENTSEARCH_API_KEY") or os.environ.get("OPENAI_API_KEY")

    def model_set(
        self,
        run_dir: Path,
        *,
        cache: bool,
        announce: Callable[[str], None] = lambda msg: None,
        progress: Callable[[int, int], None] | None = None,
    ) -> ModelSet:
        """The :class:`ModelSet` (a context manager: launched servers stop on exit)."""
        return ModelSet(
            self.specs(),
            run_dir=run_dir,
            cache=cache,
            timeout=self.timeout,
            api_key=self.key(),
            announce=announce,
            progress=progress,
        )

    def public(self) -> dict[str, Any]:
        """What a study stores to reproduce its models (paths absolute, no key)."""
        return {
            "model": self.model,
            "api_base": list(self.api_base),
            "config": str(self.config.resolve()) if self.config is not None else None,
            "local_model": self.local_model,
            "local_model_size": self.local_model_size,
        }

    @classmethod
    def from_public(cls, flags: Mapping[str, Any]) -> ModelFlags:
        return cls(
            model=str(flags.get("model") or "local"),
            api_base=tuple(str(u) for u in flags.get("api_base") or ()),
            config=Path(flags["config"]) if flags.get("config") else None,
            local_model=flags.get("local_model"),
            local_model_size=flags.get("local_model_size"),
        )

    def argv(self) -> list[str]:
        """The command-line flags that choose these models again (never a key: keys come from the environment)."""
        if self.config is not None:
            return ["--config", str(self.config), *(a for u in self.api_base for a in ("--api-base", u))]
        out = ["--model", self.model]
        if self.model == "local":
            if self.local_model:
                out += ["--local-model", str(self.local_model)]
            if self.local_model_size:
                out += ["--local-model-size", str(self.local_model_size)]
        for url in self.api_base:
            out += ["--api-base", url]
        return out
