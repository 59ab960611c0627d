"""Hostile code against the sandbox: the child is contained and the test process is unharmed."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agentsearch.evaluators.tools.sandbox import SandboxLimits, SandboxResult, run_python

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is tested on Linux")

REPO = Path(__file__).resolve().parents[2]
FAST = SandboxLimits(cpu_s=1, wall_s=3)


def has(result: SandboxResult, mechanism: str) -> bool:
    return any(m == mechanism or m.startswith(mechanism + ":") for m in result.isolation)


def assert_parent_healthy() -> None:
    """The test process can still start processes and threads and is not limited."""
    out = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "42"
    done = threading.Event()
    threading.Thread(target=done.set).start()
    assert done.wait(5)


@pytest.fixture(scope="module")
def probe() -> SandboxResult:
    """One harmless run: which mechanisms this machine offers."""
    return run_python("pass")


# ---- ordinary code ---------------------------------------------------------------------------------


def test_prints_result() -> None:
    result = run_python("import math\nprint(math.comb(10, 3) + 1)")
    assert result.ok, result
    assert result.stdout == "121\n"
    assert result.stderr == ""
    assert result.returncode == 0
    assert not result.timed_out and result.killed_reason is None
    assert result.network in ("netns", "socket-blocked")
    assert has(result, "rlimits") and has(result, "setsid")


def test_stdlib_works() -> None:
    code = """
import math, fractions, itertools, re, collections, functools, decimal, statistics, json, heapq, datetime
import random, string, bisect, operator, typing, dataclasses, cmath, numbers
print(fractions.Fraction(1, 3) + fractions.Fraction(1, 6))
print(sum(1 for _ in itertools.permutations(range(4))))
print(re.findall(r"\\d+", "a1b22c333"))
print(decimal.Decimal(1) / decimal.Decimal(8), statistics.median([3, 1, 2]), json.dumps({"a": [1]}))
print(collections.Counter("abca").most_common(1))
"""
    result = run_python(code)
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == [
        "1/2",
        "24",
        "['1', '22', '333']",
        '0.125 2 {"a": [1]}',
        "[('a', 2)]",
    ]


def test_stdin_argv_exit_and_tracebacks() -> None:
    result = run_python("import sys\nprint(sys.stdin.read().upper(), sys.argv)", stdin="hello ü")
    assert result.ok and result.stdout == "HELLO Ü ['main.py']\n"

    result = run_python("print('partial')\nexit(3)")
    assert result.returncode == 3 and not result.ok and result.killed_reason is None
    assert result.stdout == "partial\n"

    result = run_python("x = 1\n1 / 0\n")
    assert result.returncode == 1 and not result.ok
    assert "ZeroDivisionError" in result.stderr
    assert 'File "main.py", line 2' in result.stderr and "1 / 0" in result.stderr
    assert "_sandbox_child" not in result.stderr  # the bootstrap frame is hidden

    result = run_python("def f(:\n  pass")
    assert result.returncode == 1 and "SyntaxError" in result.stderr


def test_big_stdin() -> None:
    data = "x" * 300_000
    result = run_python("import sys\nprint(len(sys.stdin.read()))", stdin=data)
    assert result.ok and result.stdout == "300000\n"


def test_main_module_and_isolated_mode() -> None:
    code = "import sys\nprint(__name__, sys.flags.isolated, sys.flags.no_site, 'site' in sys.modules)"
    result = run_python(code)
    assert result.ok and result.stdout == "__main__ 1 1 False\n"


def test_working_directory_is_private_and_removed() -> None:
    code = """
import contextlib
import os
open('scratch.txt', 'w').write('hi')
os.mkdir('d')
print(os.getcwd())
print(sorted(os.listdir('.')))
"""
    result = run_python(code)
    assert result.ok, result.stderr
    workdir, listing = result.stdout.splitlines()
    assert listing == "['d', 'main.py', 'scratch.txt']"
    assert not os.path.exists(workdir)


# ---- file system -------------------------------------------------------------------------------------


def test_cannot_write_outside_workdir(probe: SandboxResult, tmp_path: Path) -> None:
    if not (has(probe, "landlock") or has(probe, "uid")):
        pytest.skip(f"neither Landlock nor a uid drop is available here ({probe.isolation})")
    token = uuid.uuid4().hex
    targets = [
        Path("/tmp") / f"x_{token}",
        Path.home() / f"x_{token}",
        REPO / f"x_{token}",
        tmp_path / f"x_{token}",
    ]
    if not has(probe, "landlock"):  # a dedicated uid alone cannot protect world-writable /tmp
        targets = [t for t in targets if not str(t).startswith("/tmp")]
    code = "import sys\nfor p in sys.argv_targets:\n    try:\n        open(p, 'w').write('pwned')\n"
    code += "        print('WROTE', p)\n    except OSError as exc:\n        print('denied', type(exc).__name__)\n"
    code = f"import sys\nsys.argv_targets = {[str(t) for t in targets]!r}\n" + code
    result = run_python(code)
    assert result.ok, result.stderr
    assert "WROTE" not in result.stdout
    assert result.stdout.count("denied") == len(targets)
    for target in targets:
        assert not target.exists()


def test_cannot_delete_or_rename_outside(probe: SandboxResult, tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    tmp_path.chmod(0o777)  # even a world-writable directory is protected (by Landlock)
    if not has(probe, "landlock"):
        pytest.skip(f"Landlock is not available here ({probe.isolation})")
    code = f"""
import os, shutil
for op in (lambda: os.remove({str(victim)!r}), lambda: os.rename({str(victim)!r}, 'stolen'),
           lambda: shutil.rmtree({str(tmp_path)!r})):
    try:
        op()
        print('DONE')
    except OSError:
        print('denied')
"""
    result = run_python(code)
    assert "DONE" not in result.stdout, result
    assert victim.read_text() == "keep"


def test_secret_files_are_not_readable(probe: SandboxResult) -> None:
    if not has(probe, "landlock"):
        pytest.skip(f"Landlock is not available here ({probe.isolation})")
    # The repository (and home directories) are outside the read allow-list.
    result = run_python(f"print(open({str(REPO / 'pyproject.toml')!r}).read()[:20])")
    assert not result.ok and "PermissionError" in result.stderr
    result = run_python("import os\nprint(os.listdir('/'))")
    assert not result.ok and "PermissionError" in result.stderr


def test_file_size_limit() -> None:
    code = "f = open('big', 'wb')\ntry:\n    f.write(b'x' * 3_000_000); f.flush()\nexcept OSError as e:\n"
    code += "    print('EFBIG', e.errno)\n"
    result = run_python(code, limits=SandboxLimits(file_bytes=100_000))
    assert "EFBIG 27" in result.stdout, result


def test_disk_quota(probe: SandboxResult) -> None:
    if not has(probe, "tmpfs"):
        pytest.skip(f"no private mount namespace here ({probe.isolation})")
    code = """
n = 0
try:
    for i in range(1000):
        with open(f'f{i}', 'wb') as fh:
            fh.write(b'x' * 500_000)
        n += 1
except OSError as e:
    print('full after', n, e.errno)
"""
    result = run_python(code, limits=SandboxLimits(disk_bytes=4_000_000))
    assert "full after" in result.stdout, result
    assert int(result.stdout.split()[2]) <= 8


# ---- network ------------------------------------------------------------------------------------------


def test_no_network_even_to_localhost() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = f"""
import socket
try:
    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)
    s.sendall(b'leak')
    print('CONNECTED')
except OSError as exc:
    print('blocked', type(exc).__name__, exc)
try:
    socket.getaddrinfo('example.com', 80)
    print('RESOLVED')
except OSError as exc:
    print('dns blocked')
"""
    try:
        result = run_python(code)
        assert "CONNECTED" not in result.stdout and "RESOLVED" not in result.stdout, result
        assert "blocked" in result.stdout
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert result.network in ("netns", "socket-blocked")


def test_no_udp_and_no_listening(probe: SandboxResult) -> None:
    code = """
import socket
try:
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(b'x', ('8.8.8.8', 53))
    print('SENT')
except OSError as exc:
    print('blocked')
try:
    s = socket.socket()
    s.bind(('0.0.0.0', 0)); s.listen()
    print('LISTENING', s.getsockname())
except OSError:
    print('blocked')
"""
    result = run_python(code)
    assert "SENT" not in result.stdout
    if probe.network == "socket-blocked" or has(probe, "landlock"):
        assert "LISTENING" not in result.stdout  # in a private netns, listening is harmless anyway


# ---- processes ----------------------------------------------------------------------------------------


def test_fork_bomb_is_contained() -> None:
    code = "import os\nwhile True:\n    os.fork()\n"
    result = run_python(code, limits=FAST)
    assert not result.ok
    assert result.duration_s < 5
    assert_parent_healthy()


def test_fork_bomb_with_some_processes_allowed(probe: SandboxResult) -> None:
    if not has(probe, "uid"):
        pytest.skip("max_procs > 0 is only enforced with a dedicated uid (the tests do not run as root)")
    code = """
import os, time
n = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        n += 1
except OSError:
    print('forks', n)
"""
    result = run_python(code, limits=SandboxLimits(max_procs=3, wall_s=3))
    assert result.stdout == "forks 3\n", result
    assert_parent_healthy()


def test_os_system_and_subprocess_fail() -> None:
    marker = Path("/tmp") / f"touched_{uuid.uuid4().hex}"
    code = f"""
import os, subprocess
print('system', os.system('touch {marker}'))
try:
    subprocess.run(['touch', '{marker}'])
    print('SPAWNED')
except OSError as exc:
    print('subprocess', type(exc).__name__)
"""
    result = run_python(code)
    assert "SPAWNED" not in result.stdout, result
    assert "system 0" not in result.stdout  # glibc's system() reports 127 (or -1) when it cannot spawn
    assert not marker.exists()


def test_subprocess_allowed_but_still_confined(probe: SandboxResult) -> None:
    if not has(probe, "landlock"):
        pytest.skip(f"Landlock is not available here ({probe.isolation})")
    marker = Path("/tmp") / f"touched_{uuid.uuid4().hex}"
    code = f"""
import subprocess, os
r = subprocess.run(['touch', '{marker}'], capture_output=True, text=True)
print('rc', r.returncode)
r = subprocess.run(['sh', '-c', 'kill -9 {os.getpid()}; echo rc=$?'], capture_output=True, text=True)
print(r.stdout.strip())
"""
    result = run_python(code, limits=SandboxLimits(max_procs=4))
    assert "rc 1" in result.stdout, result
    assert "rc=1" in result.stdout
    assert not marker.exists()


def test_threads_are_processes_too() -> None:
    code = "import threading\nthreading.Thread(target=print, args=('thread ran',)).start()\n"
    result = run_python(code)
    assert "thread ran" not in result.stdout
    assert "RuntimeError" in result.stderr  # can't start new thread


def test_cannot_kill_parent() -> None:
    code = f"""
import os
for what in ('os.kill(os.getppid(), 9)', 'os.kill(os.getppid(), 15)',
             'os.killpg(os.getpgid(os.getppid()), 9)', 'os.kill({os.getpid()}, 9)',
             'os.killpg({os.getpgrp()}, 9)', 'os.kill(1, 9)'):
    try:
        eval(what)
        print('SENT', what)
    except OSError as exc:
        print('denied', type(exc).__name__)
os.kill(-1, 9)  # every process we may signal except ourselves: none (Linux returns 0 all the same)
print('kill(-1) done')
"""
    result = run_python(code)
    assert "SENT" not in result.stdout, result
    assert result.stdout.count("denied") == 6
    assert result.ok and "kill(-1) done" in result.stdout
    assert_parent_healthy()


def test_infinite_loop_hits_cpu_limit() -> None:
    result = run_python("print('start')\nwhile True:\n    pass\n", limits=SandboxLimits(cpu_s=0.5, wall_s=10))
    assert result.timed_out and result.killed_reason == "cpu limit", result
    assert result.stdout == "start\n"
    # Raised in the code: output and a traceback pointing at the loop survive.
    assert result.stderr.endswith("CPUTimeLimitExceeded: CPU time limit of 0.5 s exceeded\n"), result.stderr
    assert 'File "main.py", line 2' in result.stderr and "<string>" not in result.stderr
    assert result.returncode == 1
    assert 0.4 <= result.cpu_time_s < 1.5


def test_swallowed_cpu_limit_still_killed() -> None:
    code = "while True:\n    try:\n        while True:\n            pass\n"
    code += "    except BaseException:\n        pass\n"
    # Killed by RLIMIT_CPU at ceil(cpu_s + 0.5) = 1 CPU second; the wall limit leaves room for a busy machine.
    result = run_python(code, limits=SandboxLimits(cpu_s=0.3, wall_s=20))
    assert result.timed_out and result.killed_reason == "cpu limit", result
    assert result.returncode == -9
    assert 0.5 < result.cpu_time_s < 2  # rusage may read a little below the kernel's limit check


def test_sleep_hits_wall_clock() -> None:
    result = run_python("import time\nprint('a')\ntime.sleep(60)", limits=SandboxLimits(wall_s=1))
    assert result.timed_out and result.killed_reason == "wall-clock timeout"
    assert result.stdout == "a\n"  # stdout is line-buffered: partial output survives the kill
    assert result.returncode == -9
    assert 0.9 < result.duration_s < 3


# ---- memory and output ----------------------------------------------------------------------------------


def test_huge_string_is_contained() -> None:
    result = run_python("x = ' ' * 10**10\nprint(len(x))", limits=FAST)
    assert not result.ok and result.killed_reason == "memory limit", result
    assert "MemoryError" in result.stderr


def test_growing_list_is_contained() -> None:
    code = "x = []\nwhile True:\n    x.append(bytearray(10**6))\n"
    result = run_python(code, limits=SandboxLimits(memory_mb=256, wall_s=5))
    assert not result.ok and result.killed_reason == "memory limit", result
    assert result.duration_s < 5


def test_huge_output_is_capped() -> None:
    result = run_python("while True:\n    print('spam' * 100)\n", limits=SandboxLimits(output_bytes=10_000))
    assert not result.ok and result.killed_reason == "output limit"
    assert len(result.stdout) + len(result.stderr) <= 10_000
    assert result.stdout.startswith("spam")
    assert result.duration_s < 3

    result = run_python("import sys\nsys.stderr.write('e' * 10**7)", limits=SandboxLimits(output_bytes=5_000))
    assert result.killed_reason == "output limit" and len(result.stderr) == 5_000


def test_binary_garbage_output() -> None:
    result = run_python("import sys\nsys.stdout.buffer.write(bytes(range(256)))")
    assert result.ok and len(result.stdout) == 256


# ---- environment and secrets ---------------------------------------------------------------------------


def test_environment_holds_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-fake-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("PYTHONPATH", "/nonexistent-injected")
    code = """
import contextlib
import os
print(sorted(os.environ))
for path in (f'/proc/{os.getppid()}/environ', '/proc/self/environ', f'/proc/{os.getppid()}/cmdline'):
    try:
        print(open(path, 'rb').read())
    except OSError as exc:
        print('denied', path)
import sys
print(sys.path)
"""
    result = run_python(code)
    assert result.ok, result.stderr
    assert secret not in result.stdout
    assert "OPENAI_API_KEY" not in result.stdout
    assert "nonexistent-injected" not in result.stdout
    assert eval(result.stdout.splitlines()[0]) == ["HOME", "LANG", "LC_ALL", "PATH", "TMPDIR"]


# ---- concurrency and overhead ----------------------------------------------------------------------------


def test_concurrent_calls() -> None:
    def job(i: int) -> SandboxResult:
        return run_python(f"import sys\nprint({i} * {i}, sys.stdin.read())", stdin=str(i))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(24)))
    for i, result in enumerate(results):
        assert result.ok, result
        assert result.stdout == f"{i * i} {i}\n"


def test_concurrent_hostile_calls_do_not_interfere() -> None:
    snippets = [
        ("import os\nwhile True:\n    os.fork()", False),
        ("print(sum(range(1000)))", True),
        ("x = ' ' * 10**10", False),
        ("import time\ntime.sleep(30)", False),
        ("print('ok')", True),
    ] * 2
    limits = SandboxLimits(cpu_s=1, wall_s=2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda s: run_python(s[0], limits=limits), snippets))
    for (_, should_pass), result in zip(snippets, results, strict=True):
        assert result.ok == should_pass, result


def test_overhead_is_small() -> None:
    run_python("pass")
    start = time.perf_counter()
    for _ in range(5):
        assert run_python("pass").ok
    per_call = (time.perf_counter() - start) / 5
    assert per_call < 0.5  # about 40 ms on a 2-core VM; generous for loaded CI machines


def test_missing_interpreter_is_reported() -> None:
    result = run_python("print(1)", python="/nonexistent/python3")
    assert not result.ok and result.returncode is None and result.killed_reason == "sandbox error"


# ---- fallbacks and parent death ---------------------------------------------------------------------------


#: What a machine without namespaces or Landlock gets: the audit-hook network block (and the uid).
BARE = frozenset({"netns", "landlock"})


def test_socket_blocked_fallback() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    attempts = [
        f"socket.create_connection(('127.0.0.1', {port}), timeout=2)",
        "socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        "_socket.socket()",
        "socket.getaddrinfo('localhost', 80)",
        "ctypes.CDLL(None).socket(2, 1, 0)",
        "ctypes.pythonapi.PyRun_SimpleString",
        "os.execv('/bin/true', ['true'])",
    ]
    code = "import socket, _socket, ctypes, os\n"
    for attempt in attempts:
        code += f"try:\n    {attempt}\n    print('ALLOWED', {attempt!r})\nexcept Exception as exc:\n"
        code += "    print('blocked', type(exc).__name__)\n"
    try:
        result = run_python(code, disable=BARE)
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert result.network == "socket-blocked"
    assert "netns" not in result.isolation and not has(result, "landlock")
    assert "ALLOWED" not in result.stdout, result
    assert result.stdout.count("blocked") == len(attempts)
    # The ordinary stdlib still works with the audit hook installed.
    result = run_python("import fractions, json\nprint(json.dumps(str(fractions.Fraction(3, 9))))", disable=BARE)
    assert result.ok and result.stdout == '"1/3"\n'


def test_uid_alone_still_protects_home_and_repo(probe: SandboxResult) -> None:
    if not has(probe, "uid"):
        pytest.skip("the tests do not run as root: no dedicated uid")
    token = uuid.uuid4().hex
    targets = [Path.home() / f"x_{token}", REPO / f"x_{token}"]
    code = "import sys\n" + "".join(
        f"try:\n    open({str(t)!r}, 'w')\n    print('WROTE')\nexcept OSError:\n    print('denied')\n" for t in targets
    )
    code += "import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept OSError:\n    print('denied')\n"
    result = run_python(code, disable=BARE)
    assert result.stdout == "denied\n" * 3, result
    assert not any(t.exists() for t in targets)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc/<pid>/task/<tid>/children")
def test_child_dies_with_its_parent(tmp_path: Path) -> None:
    module = REPO / "agentsearch" / "evaluators" / "tools" / "sandbox.py"
    helper = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('sb', {str(module)!r})\n"
        "sb = importlib.util.module_from_spec(spec); sys.modules['sb'] = sb; spec.loader.exec_module(sb)\n"
        "sb.run_python('import time\\ntime.sleep(60)', limits=sb.SandboxLimits(wall_s=60, cpu_s=60))\n"
    )
    # The killed helper cannot remove its working directory: keep it under tmp_path (a 0700 directory
    # the sandbox's uid cannot traverse, which the sandbox must cope with).
    parent = subprocess.Popen([sys.executable, "-c", helper], env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        deadline = time.monotonic() + 20
        children: list[int] = []
        while not children and time.monotonic() < deadline:
            time.sleep(0.05)
            children = _children(parent.pid)
        assert children, "the sandbox child never started"
        time.sleep(0.3)  # let the bootstrap reach the user code (PR_SET_PDEATHSIG is set by then)
        assert all(_alive(c) for c in children)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 5
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(c) for c in children)
    assert [p.name[:20] for p in tmp_path.iterdir()] == ["agentsearch-sandbox-"]


def test_threads_allowed_with_max_procs() -> None:
    code = "import threading\nt = threading.Thread(target=print, args=('thread ran',))\nt.start()\nt.join()\n"
    result = run_python(code, limits=SandboxLimits(max_procs=2))
    assert result.ok and result.stdout == "thread ran\n", result


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="cpu_s"):
        SandboxLimits(cpu_s=0)
    with pytest.raises(ValueError, match="max_procs"):
        SandboxLimits(max_procs=-1)


def test_disable_names_only_known_mechanisms() -> None:
    with pytest.raises(ValueError, match="unknown mechanism"):
        run_python("print(1)", disable=frozenset({"apparmor"}))


def _unix_listener(tmp_path_factory: pytest.TempPathFactory) -> tuple[socket.socket, str]:
    """A world-connectable pathname unix socket, as a local database or daemon would have."""
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="as-unix-", dir="/tmp"), "s.sock")
    os.chmod(os.path.dirname(path), 0o755)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o777)
    server.listen(5)
    server.settimeout(0.5)
    return server, path


@pytest.mark.parametrize("disable", [frozenset(), BARE])
def test_pathname_unix_sockets_are_unreachable(disable: frozenset[str], probe: SandboxResult, tmp_path_factory) -> None:
    if not has(probe, "seccomp"):
        pytest.skip("no seccomp filter on this machine (see SandboxResult.isolation)")
    server, path = _unix_listener(tmp_path_factory)
    code = (
        "import socket\ntry:\n    s = socket.socket(socket.AF_UNIX)\n    s.connect(" + repr(path) + ")\n"
        "    print('CONNECTED')\nexcept OSError as exc:\n    print('refused', exc.errno)\n"
    )
    try:
        result = run_python(code, disable=disable)
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()
    assert "CONNECTED" not in result.stdout, result
    assert "refused" in result.stdout or "PermissionError" in result.stdout, result


def test_without_the_filter_the_socket_is_reachable(probe: SandboxResult, tmp_path_factory) -> None:
    """What the filter closes: the same code connects when seccomp is switched off (so the test above can fail)."""
    if not has(probe, "seccomp") or not has(probe, "uid"):
        pytest.skip("needs the seccomp filter and a dedicated uid (root) to show the difference")
    server, path = _unix_listener(tmp_path_factory)
    code = "import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect(" + repr(path) + ")\nprint('CONNECTED')\n"
    try:
        result = run_python(code, disable=frozenset({"seccomp"}))
    finally:
        server.close()
    assert "CONNECTED" in result.stdout, result
