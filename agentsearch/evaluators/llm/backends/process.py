"""Managed server subprocesses: start, wait for health, log to a file, stop with no orphans.

A :class:`ManagedServer` runs one command (an inference server such as the embedded llama.cpp
server or ``vllm serve``) as a child process:

* it is started in a new session (its own process group), with stdout and stderr appended to a log
  file, so the whole group can be killed at once and a crash of the server never takes our process
  down;
* on Linux the child gets ``PR_SET_PDEATHSIG`` (SIGTERM): if our process dies, even by SIGKILL, the
  kernel signals the server. Note that the kernel sends it when the *thread* that started the child
  exits, so call :meth:`ManagedServer.start` from a long-lived thread (e.g. the main thread);
* :meth:`ManagedServer.start` polls ``GET /health`` until it answers 200, failing with a one-line
  :class:`~agentsearch.errors.EndpointError` (with the last lines of the log) when the server exits
  early, or naming the log file when it is not healthy within the startup timeout;
* :meth:`ManagedServer.stop` sends SIGTERM to the group, then SIGKILL after a grace period; it runs
  on context-manager exit, on Ctrl-C (``KeyboardInterrupt`` unwinds through ``with``) and at
  interpreter exit (``atexit``).

This module is stdlib only and cheap to import.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

from agentsearch.errors import EndpointError, UserError

if TYPE_CHECKING:
    from agentsearch.evaluators.llm.lm import Endpoint

__all__ = [
    "ManagedServer",
    "ServerBackend",
    "check_port_free",
    "free_port",
    "http_status",
    "log_tail",
]

DEFAULT_HOST = "127.0.0.1"


class ServerBackend(Protocol):
    """How to launch one kind of OpenAI-compatible server for a GGUF model.

    A backend may also set ``health_path`` (default ``/health``): the route that answers 200 once
    the model is loaded.
    """

    name: str

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
        """The argv that serves ``model_path`` as ``alias`` on ``host:port`` until SIGTERM."""
        ...


# --------------------------------------------------------------------------------------------------
# Ports and HTTP
# --------------------------------------------------------------------------------------------------


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = DEFAULT_HOST) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(host: str, port: int, flag: str = "--port") -> None:
    """Raise a one-line :class:`UserError` naming ``flag`` when ``host:port`` cannot be bound."""
    if not 0 < port < 65536:
        raise UserError(f"{flag} {port}: not a TCP port (1-65535)")
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        # Like the servers themselves: a port left in TIME_WAIT by a previous server is usable.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"{flag} {port}: port already in use on {host} (pick another port or leave it unset)"
                ) from None
            raise UserError(f"{flag} {port}: cannot bind {host}:{port} ({exc.strerror or exc})") from None


# Loopback health checks must not go through $http_proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of ``GET url`` (never through a proxy), or None when nothing answers."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def log_tail(path: Path | None, lines: int = 5, max_chars: int = 400) -> str:
    """The last non-empty lines of a log file joined into one line (`` | `` between lines)."""
    if path is None:
        return ""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [ln.strip() for ln in data.splitlines() if ln.strip()][-lines:]
    text = " | ".join(kept)
    return text if len(text) <= max_chars else "..." + text[-max_chars:]


# --------------------------------------------------------------------------------------------------
# Child process setup
# --------------------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _pdeathsig_preexec(parent_pid: int, sig: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child receive ``sig`` when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


_LIVE: set[ManagedServer] = set()
_LIVE_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_all_at_exit)


# --------------------------------------------------------------------------------------------------
# ManagedServer
# --------------------------------------------------------------------------------------------------


class ManagedServer:
    """One server subprocess serving HTTP on ``host:port``, healthy when ``GET health_path`` is 200.

    ``command`` may contain the placeholder ``{port}`` (replaced by the chosen port), or be a
    callable ``port -> argv`` (useful when the port is picked here). ``port=None`` picks a free port;
    a given port that is in use raises a :class:`UserError` naming ``port_flag``.
    """

    def __init__(
        self,
        command: Sequence[str] | Callable[[int], Sequence[str]],
        *,
        name: str = "server",
        host: str = DEFAULT_HOST,
        port: int | None = None,
        port_flag: str = "--port",
        log_dir: Path | str | None = None,
        log_name: str | None = None,
        health_path: str = "/health",
        startup_timeout_s: float = 180.0,
        stop_timeout_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.port_flag = port_flag
        self.health_path = health_path if health_path.startswith("/") else "/" + health_path
        self.startup_timeout_s = float(startup_timeout_s)
        self.stop_timeout_s = float(stop_timeout_s)
        self._command = command
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._log_name = log_name or f"{name}.log"
        self.log_path: Path | None = None
        self.argv: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_fh: IO[bytes] | None = None
        self._lock = threading.RLock()

    # -- properties --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://host:port`` (no ``/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL, ``http://host:port/v1``."""
        return f"{self.base_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ManagedServer:
        """Start the server and wait until it is healthy (idempotent while running)."""
        with self._lock:
            if self.running:
                return self
            if self.port is None:
                self.port = free_port(self.host)
            else:
                check_port_free(self.host, self.port, self.port_flag)
            self.argv = self._build_argv(self.port)
            self.log_path = self._open_log()
            self._spawn()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after ``stop_timeout_s``; idempotent."""
        with self._lock:
            proc, self._proc = self._proc, None
            with _LIVE_LOCK:
                _LIVE.discard(self)
            if proc is not None:
                _terminate_group(proc, self.stop_timeout_s)
            if self._log_fh is not None:
                with contextlib.suppress(OSError):
                    self._log_fh.close()
                self._log_fh = None

    def __enter__(self) -> ManagedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; stop() is the contract
        with contextlib.suppress(Exception):
            if self._proc is not None and self._proc.poll() is None:
                self.stop()

    def log_tail(self, lines: int = 5) -> str:
        return log_tail(self.log_path, lines)

    def check_alive(self) -> None:
        """Raise an :class:`EndpointError` (with the log tail) if the server process has exited."""
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            raise EndpointError(self._exit_message(proc.returncode, "while serving"))

    # -- internals ---------------------------------------------------------------------------------
    def _build_argv(self, port: int) -> list[str]:
        raw = self._command(port) if callable(self._command) else self._command
        argv = [str(a).replace("{port}", str(port)) for a in raw]
        if not argv:
            raise UserError(f"{self.name}: empty server command")
        return argv

    def _open_log(self) -> Path:
        log_dir = self._log_dir
        if log_dir is None:
            log_dir = Path(tempfile.mkdtemp(prefix=f"agentsearch-{self.name}-"))
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            path = log_dir / self._log_name
            self._log_fh = open(path, "ab")  # closed in stop()
        except OSError as exc:
            raise UserError(f"{log_dir}: cannot write the {self.name} log ({exc.strerror or exc})") from None
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self._log_fh.write(f"[agentsearch {stamp}] starting: {' '.join(self.argv)}\n".encode())
        self._log_fh.flush()
        return path

    def _spawn(self) -> None:
        env = None
        if self._env is not None:
            env = {**os.environ, **self._env}
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log_fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self._cwd,
                start_new_session=True,
                close_fds=True,
                preexec_fn=_pdeathsig_preexec(os.getpid(), signal.SIGTERM),
            )
        except FileNotFoundError:
            self._close_log()
            raise UserError(f"{self.name}: command not found: {self.argv[0]}") from None
        except PermissionError:
            self._close_log()
            raise UserError(f"{self.name}: command not executable: {self.argv[0]}") from None
        with _LIVE_LOCK:
            _LIVE.add(self)

    def _close_log(self) -> None:
        if self._log_fh is not None:
            with contextlib.suppress(OSError):
                self._log_fh.close()
            self._log_fh = None

    def _exit_message(self, rc: int | None, when: str) -> str:
        how = f"was killed by signal {-rc}" if rc is not None and rc < 0 else f"exited with code {rc}"
        tail = self.log_tail()
        msg = f"{self.name} {how} {when} (log: {self.log_path})"
        return f"{msg}: {tail}" if tail else msg

    def _wait_healthy(self) -> None:
        proc = self._proc
        assert proc is not None
        url = self.base_url + self.health_path
        deadline = time.monotonic() + self.startup_timeout_s
        delay = 0.05
        while True:
            rc = proc.poll()
            if rc is not None:
                raise EndpointError(self._exit_message(rc, "during startup"))
            status = http_status(url, timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            if status == 200:
                # Another process could own the port: make sure ours is still the one running.
                rc = proc.poll()
                if rc is not None:
                    raise EndpointError(self._exit_message(rc, "during startup"))
                return
            if time.monotonic() >= deadline:
                got = f"last /health status {status}" if status is not None else "no answer on its port"
                raise EndpointError(
                    f"{self.name} not healthy after {self.startup_timeout_s:.0f}s ({got}); "
                    f"see its log: {self.log_path}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the child's process group; SIGKILL whatever is left after ``timeout`` seconds."""
    pgid = proc.pid  # start_new_session=True: the child leads its own group
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    # Kill stragglers (the leader ignoring SIGTERM, or grandchildren left behind by it).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    end = time.monotonic() + 2.0
    while _group_alive(pgid) and time.monotonic() < end:
        time.sleep(0.02)


class LaunchedServer:
    """What a launcher (the embedded server, vLLM) offers once started: a context manager around one
    :class:`ManagedServer`, its URL, served model name and :meth:`endpoint`. Subclasses implement
    :meth:`start` (setting ``self._server``) and :attr:`model_name`."""

    _server: ManagedServer | None = None

    def start(self) -> LaunchedServer:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def model_name(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> LaunchedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def server(self) -> ManagedServer:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server

    @property
    def url(self) -> str:
        """``http://HOST:PORT/v1``."""
        return self.server.url

    @property
    def pid(self) -> int | None:
        return self._server.pid if self._server is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._server.log_path if self._server is not None else None

    def endpoint(self, alias: str = "default") -> Endpoint:
        """The :class:`~agentsearch.evaluators.llm.lm.Endpoint` to pass to ``build_lm``."""
        from agentsearch.evaluators.llm.lm import Endpoint

        return Endpoint(model=self.model_name, api_base=self.url, api_key=None, alias=alias)
