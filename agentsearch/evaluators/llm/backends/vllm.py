"""vLLM launcher: ``vllm serve MODEL`` as a managed subprocess (GPU machines).

::

    with VllmServer("Qwen/Qwen2.5-7B-Instruct", tensor_parallel_size=2, log_dir=run_dir) as server:
        lm = build_lm(server.endpoint())

The served model name is a unique alias (``vllm-<model>-<hash>``): DSPy's cache key ignores the URL,
so the alias must identify the model (and the flags that change its weights or numerics).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agentsearch.errors import UserError
from agentsearch.evaluators.llm.backends.process import DEFAULT_HOST, LaunchedServer, ManagedServer

if TYPE_CHECKING:
    pass

__all__ = ["VLLM_INSTALL_HINT", "VllmServer", "vllm_alias"]

VLLM_MODEL_FLAG = "--vllm-model"
VLLM_PORT_FLAG = "--vllm-port"
VLLM_INSTALL_HINT = 'pip install "agentsearch[vllm]" (or: pip install vllm)'

# Flags of `vllm serve` that change what the model answers; they go into the alias hash.
_IDENTITY_FLAGS = ("--revision", "--tokenizer", "--tokenizer-revision", "--quantization", "-q", "--dtype",
                   "--kv-cache-dtype", "--hf-overrides", "--load-format", "--generation-config")


def _identity_args(extra_args: Sequence[str]) -> list[str]:
    out: list[str] = []
    args = list(extra_args)
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in _IDENTITY_FLAGS:
            out.append(arg if eq else f"{name}={args[i + 1] if i + 1 < len(args) else ''}")
    return out


def vllm_alias(model: str, extra_args: Sequence[str] = ()) -> str:
    """``vllm-<model slug>-<8 hex>``: unique per model and per flags that change its answers."""
    key = "\x00".join([model, *_identity_args(extra_args)])
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    base = model.rstrip("/").rsplit("/", 1)[-1] or model
    slug = re.sub(r"[^a-z0-9._-]+", "-", base.lower()).strip("-.")[:48].rstrip("-.") or "model"
    return f"vllm-{slug}-{digest}"


class VllmServer(LaunchedServer):
    """``vllm serve MODEL --served-model-name ALIAS --enable-prefix-caching ...`` until stopped."""

    def __init__(
        self,
        model: str,
        *,
        tensor_parallel_size: int | None = None,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        extra_args: Sequence[str] = (),
        port: int | None = None,
        log_dir: Path | str | None = None,
        startup_timeout_s: float = 900.0,
        host: str = DEFAULT_HOST,
        executable: str = "vllm",
        stop_timeout_s: float = 30.0,
    ) -> None:
        if not model:
            raise UserError(f"{VLLM_MODEL_FLAG}: empty model name")
        self.model = model
        self.tensor_parallel_size = tensor_parallel_size
        self.gpu_memory_utilization = gpu_memory_utilization
        self.max_model_len = max_model_len
        self.extra_args = tuple(str(a) for a in extra_args)
        self.host = host
        self.port = port
        self.log_dir = log_dir
        self.startup_timeout_s = startup_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.executable = executable
        self.alias = vllm_alias(model, self.extra_args)
        self._server: ManagedServer | None = None
        if tensor_parallel_size is not None and tensor_parallel_size < 1:
            raise UserError(f"--tensor-parallel-size {tensor_parallel_size}: must be at least 1")
        if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
            raise UserError(f"--gpu-memory-utilization {gpu_memory_utilization}: must be in (0, 1]")
        if max_model_len is not None and max_model_len < 1:
            raise UserError(f"--max-model-len {max_model_len}: must be at least 1")

    def command(self, port: int) -> list[str]:
        """The argv of ``vllm serve`` for ``port`` (the executable resolved on PATH)."""
        exe = shutil.which(self.executable)
        if exe is None:
            raise UserError(
                f"{VLLM_MODEL_FLAG} {self.model}: the `{self.executable}` command is not on PATH; "
                f"install vLLM: {VLLM_INSTALL_HINT}"
            )
        argv = [exe, "serve", self.model, "--served-model-name", self.alias, "--enable-prefix-caching",
                "--host", self.host, "--port", str(port)]
        if self.tensor_parallel_size is not None:
            argv += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.gpu_memory_utilization is not None:
            argv += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        if self.max_model_len is not None:
            argv += ["--max-model-len", str(self.max_model_len)]
        return argv + list(self.extra_args)

    def start(self) -> VllmServer:
        """Start ``vllm serve`` and wait until ``/health`` answers 200."""
        if self._server is not None and self._server.running:
            return self
        if shutil.which(self.executable) is None:  # fail before touching ports or logs
            self.command(0)
        self._server = ManagedServer(
            self.command, name="vllm", host=self.host, port=self.port, port_flag=VLLM_PORT_FLAG,
            log_dir=self.log_dir, log_name="vllm-server.log", startup_timeout_s=self.startup_timeout_s,
            stop_timeout_s=self.stop_timeout_s,
        )
        self._server.start()
        return self

    @property
    def model_name(self) -> str:
        return self.alias
