"""Model servers that agentsearch starts and stops itself.

* :mod:`~agentsearch.evaluators.llm.backends.local`: the embedded CPU server (llama.cpp through the
  ``xllamacpp`` wheel) for a local GGUF model, found or unpacked by ``resolve_model``;
* :mod:`~agentsearch.evaluators.llm.backends.vllm`: ``vllm serve`` on GPU machines;
* :mod:`~agentsearch.evaluators.llm.backends.process`: the shared subprocess machinery
  (:class:`ManagedServer`: free port, health wait, log file, no orphans).

Importing this package is cheap (no DSPy, no native libraries), and its names are loaded lazily so
that the server process (``python -m agentsearch.evaluators.llm.backends.local serve``) does not import
its own module twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentsearch.evaluators.llm.backends.local import (
        LocalServer,
        LocalServerConfig,
        ResolvedModel,
        XllamacppBackend,
        resolve_model,
    )
    from agentsearch.evaluators.llm.backends.process import ManagedServer, ServerBackend
    from agentsearch.evaluators.llm.backends.vllm import VllmServer

_WHERE = {
    "LocalServer": "local",
    "LocalServerConfig": "local",
    "ResolvedModel": "local",
    "XllamacppBackend": "local",
    "resolve_model": "local",
    "ManagedServer": "process",
    "ServerBackend": "process",
    "VllmServer": "vllm",
}

__all__ = [
    "LocalServer",
    "LocalServerConfig",
    "ManagedServer",
    "ResolvedModel",
    "ServerBackend",
    "VllmServer",
    "XllamacppBackend",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
