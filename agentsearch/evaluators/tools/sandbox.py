"""Run untrusted, LLM-written Python in a locked-down child process.

Used by the ``program_of_thought`` operator and ReAct's ``python`` tool.  Every call
gets its own process and its own temporary working directory; nothing is shared with the optimizer
process, and the child cannot signal it.

The child is ``python -I -S -B -X utf8 -c <bootstrap>`` (isolated mode: no ``PYTHON*`` env vars, no
user or system site-packages, no ``.pyc`` writes).  The bootstrap runs first, while the interpreter
still has the parent's privileges, locks the process down, then runs the user's code as
``__main__`` (file name ``main.py`` in the working directory, so tracebacks show source lines).
Each mechanism is applied when the machine supports it, and the result says which were used
(:attr:`SandboxResult.isolation`):

``setsid``
    New session and process group (the child is not in our group; a timeout kills its whole group).
``rlimits``
    ``RLIMIT_CPU`` (backstop), ``RLIMIT_AS`` (memory), ``RLIMIT_NPROC`` (fork bombs; threads count
    too), ``RLIMIT_FSIZE`` (largest file), ``RLIMIT_NOFILE``, ``RLIMIT_CORE=0``.  CPU time is first
    enforced with a precise ``ITIMER_PROF`` that raises ``CPUTimeLimitExceeded`` in the user code
    (so buffered output and a traceback survive); the rlimit (``ceil(cpu_s + 0.5)`` s, SIGKILL) ends
    it if the code swallows that exception.
``netns``
    A fresh, empty network namespace (``unshare(CLONE_NEWNET)``; as root directly, otherwise inside
    a new user namespace when unprivileged user namespaces are allowed).  Only a down loopback
    exists: nothing can be reached, not even 127.0.0.1 of the host.  Where no namespace can be made
    the child blocks socket creation with an audit hook (``network="socket-blocked"``); Landlock
    (below) additionally denies TCP bind/connect at the kernel level when available.
``tmpfs``
    With a private mount namespace the working directory is a size-limited tmpfs
    (:attr:`SandboxLimits.disk_bytes`) that disappears with the process.
``landlock:<abi>``
    Linux Landlock (unprivileged, kernel >= 5.13): writes only inside the working directory, reads
    only of system directories (``/usr``, ``/lib*``, ``/bin``, ``/etc``, a few ``/dev`` nodes,
    ``/proc/self``) and the interpreter's own prefix - so no home directories, repositories or
    credential files; no TCP (ABI >= 4); no signals to or abstract-socket connections with
    processes outside the sandbox (ABI >= 6).  Landlock also forbids ptrace-style access to other
    processes (``/proc/<parent>/environ``).
``seccomp:no-unix-sockets``
    A seccomp filter (x86_64, aarch64) makes ``socket(AF_UNIX, ...)`` fail with ``EACCES``: the
    network namespace and Landlock do not cover ``connect()`` to a pathname unix socket (a database's
    ``/tmp/.s.PGSQL.5432``, ``/run/docker.sock``), so without it sandboxed code could talk to local
    servers. ``socketpair`` (unnamed, connected to nothing) is still allowed.
``uid:<n>``
    When we are root, the child drops to a dedicated unprivileged uid/gid (unique per concurrent
    call, in a high unused range) and loses every capability, so ``RLIMIT_NPROC`` is really
    enforced (it is ignored for root) and file permissions apply.  The interpreter may live where
    that uid cannot traverse (e.g. ``/root/.pyenv``): the stdlib directories are then kept open and
    put on ``sys.path`` as ``/proc/self/fd/<n>``.
``no_new_privs``, ``pdeathsig``
    ``PR_SET_NO_NEW_PRIVS`` (setuid binaries give nothing) and ``PR_SET_PDEATHSIG=SIGKILL`` (the
    child dies with the thread that started it).

The environment holds only ``PATH``, ``LANG``/``LC_ALL`` and ``HOME``/``TMPDIR`` (the working
directory): no API keys.  Output (stdout + stderr together) is read incrementally and the process
group is killed once :attr:`SandboxLimits.output_bytes` is exceeded.  A wall-clock timeout kills
the process group too.

Root without both a uid drop and Landlock is refused (``killed_reason="sandbox unavailable"``); on
other systems (macOS, old kernels, no user namespaces) the sandbox runs with what is available and
says so in ``isolation``.

Notes for callers: ``-S`` means no site-packages (stdlib only).  ``exit()``/``quit()`` are provided.
With ``max_procs=0`` neither processes nor threads can be started (``os.system`` returns non-zero,
``subprocess`` and ``threading`` raise).  Without a network namespace (``socket-blocked``) the audit
hook also refuses ``ctypes`` and new processes, whatever ``max_procs`` says.  With ``max_procs > 0``
processes that leave the process group are killed afterwards only when we are root (by uid).  If the
optimizer itself is SIGKILLed mid-call the child dies too (``pdeathsig``) but its working directory
(just ``main.py`` when it was a tmpfs) stays in the temp directory.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field

__all__ = ["SandboxLimits", "SandboxResult", "run_python"]


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one :func:`run_python` call."""

    cpu_s: float = 5
    """CPU time (user + system) of the child."""
    wall_s: float = 10
    """Wall-clock time from start to kill, interpreter start-up included."""
    memory_mb: int = 512
    """Address space (``RLIMIT_AS``); exceeding it raises ``MemoryError`` in the child."""
    output_bytes: int = 64_000
    """stdout + stderr together; the child is killed once more is written."""
    file_bytes: int = 1_000_000
    """Largest file the child may write (``RLIMIT_FSIZE``; writes beyond raise ``OSError(EFBIG)``)."""
    max_procs: int = 0
    """Extra processes *or threads* the child may start (0: none).  Exact with a dedicated uid (we are
    root) or a user namespace; otherwise counted against all the user's processes at start-up."""
    disk_bytes: int = 8_000_000
    """Total size of the working directory when it can be a private tmpfs (mount namespace)."""

    def __post_init__(self) -> None:
        for name in ("cpu_s", "wall_s", "memory_mb", "output_bytes", "file_bytes", "disk_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SandboxLimits.{name} must be positive, got {getattr(self, name)!r}")
        if self.max_procs < 0:
            raise ValueError(f"SandboxLimits.max_procs must be >= 0, got {self.max_procs!r}")


@dataclass(frozen=True)
class SandboxResult:
    """What happened to one :func:`run_python` call."""

    ok: bool
    """Exit status 0 and no limit hit."""
    stdout: str
    stderr: str
    returncode: int | None
    """Exit status; negative: killed by that signal; ``None``: never started."""
    timed_out: bool
    """The wall-clock or the CPU-time limit was hit."""
    killed_reason: str | None
    """``"wall-clock timeout"``, ``"cpu limit"``, ``"memory limit"``, ``"output limit"``,
    ``"signal SIGSEGV"``..., ``"sandbox unavailable"``/``"sandbox error"``; ``None`` otherwise."""
    duration_s: float
    network: str
    """``"netns"`` (own empty network namespace) or ``"socket-blocked"`` (audit hook refuses
    sockets); ``"unknown"`` if the child died before its set-up finished."""
    isolation: tuple[str, ...] = field(default=())
    """Mechanisms that were applied (see the module documentation)."""
    cpu_time_s: float = 0.0
    """CPU time the child used."""


# --------------------------------------------------------------------------------------------------
# The child side.  This function is never called in the optimizer process: its source is sent to the
# child interpreter with ``-c``.  It must be self-contained (imports inside, no module globals).
# --------------------------------------------------------------------------------------------------


def _sandbox_child() -> None:  # pragma: no cover - runs in the child interpreter
    import math
    import os
    import sys

    workdir, cpu_s, disabled, *numbers = sys.argv[1:]
    cpu_s, disabled = float(cpu_s), set(disabled.split(","))
    uid, gid, mem, fsize, disk, nofile, max_procs, status_fd, ppid = map(int, numbers)
    applied = ["setsid"]
    network = "socket-blocked"
    main_path = os.path.join(workdir, "main.py")
    with open(main_path, "rb") as fh:
        source = fh.read()
    os.umask(0o077)

    libc = None
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
        except Exception:
            libc = None

    def fail(message: str) -> None:
        os.write(2, ("sandbox: " + message + "\n").encode())
        os._exit(125)

    # ---- namespaces: network (and mount, for a private tmpfs working directory) ----------------
    CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
    have_mountns = in_userns = False
    if libc is not None and "netns" not in disabled:
        real_uid, real_gid = os.getuid(), os.getgid()
        attempts = (
            [CLONE_NEWNET | CLONE_NEWNS, CLONE_NEWNET]
            if real_uid == 0
            else [CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWNS, CLONE_NEWUSER | CLONE_NEWNET]
        )
        for flags in attempts:
            if libc.unshare(ctypes.c_int(flags)) != 0:
                continue
            if flags & CLONE_NEWUSER:
                in_userns = True
                try:  # map ourselves to ourselves, so files we create keep our uid
                    for name, text in (
                        ("setgroups", "deny"),
                        ("uid_map", f"{real_uid} {real_uid} 1"),
                        ("gid_map", f"{real_gid} {real_gid} 1"),
                    ):
                        with open(f"/proc/self/{name}", "w") as fh:
                            fh.write(text)
                except OSError as exc:
                    fail(f"user namespace map failed: {exc}")
            network = "netns"
            applied.append("netns")
            have_mountns = bool(flags & CLONE_NEWNS)
            break

    if have_mountns:
        MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 16384, 1 << 18
        libc.mount.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.c_ulong,
            ctypes.c_char_p,
        ]
        if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0:
            owner = (uid, gid) if uid >= 0 else (os.getuid(), os.getgid())
            opts = f"size={max(disk, 65536)},nr_inodes=4096,mode=0700,uid={owner[0]},gid={owner[1]}"
            if libc.mount(b"tmpfs", workdir.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts.encode()) == 0:
                applied.append("tmpfs")
                with open(main_path, "wb") as fh:
                    fh.write(source)
                if uid >= 0:
                    os.chown(main_path, uid, gid)
    os.chdir(workdir)

    # ---- stdlib reachable for the unprivileged uid ---------------------------------------------
    read_roots = []
    for entry in sys.path:
        if entry and os.path.exists(entry):
            read_roots.append(os.path.realpath(entry))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}:
        read_roots.append(os.path.realpath(prefix))
    read_roots.append(os.path.dirname(os.path.realpath(sys.executable)))
    if uid >= 0:

        def reachable(path: str) -> bool:
            parts = os.path.realpath(path).split("/")
            for i in range(1, len(parts) + 1):
                st = os.stat("/".join(parts[:i]) or "/")
                if st.st_uid == uid:
                    bits = st.st_mode >> 6
                elif st.st_gid == gid:
                    bits = st.st_mode >> 3
                else:
                    bits = st.st_mode
                need = 0o5 if i == len(parts) else 0o1
                if bits & need != need:
                    return False
            return True

        new_path, remap = [], {}
        for entry in sys.path:
            if entry and os.path.isdir(entry) and not reachable(entry):
                fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
                remap[entry] = remap[os.path.realpath(entry)] = entry = f"/proc/self/fd/{fd}"
            new_path.append(entry)
        sys.path[:] = new_path
        sys.path_importer_cache.clear()
        for mod in list(sys.modules.values()):  # packages already imported (encodings, ctypes...)
            search = getattr(mod, "__path__", None)
            if isinstance(search, list):
                for i, entry in enumerate(search):
                    for old, new in remap.items():
                        if entry == old or entry.startswith(old + "/"):
                            search[i] = new + entry[len(old) :]
                            break

    # ---- resource limits --------------------------------------------------------------------------
    try:
        import resource

        def setlimit(which: int, soft: int, hard: int | None = None) -> None:
            hard = soft if hard is None else hard
            cur_soft, cur_hard = resource.getrlimit(which)
            if cur_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(which, (soft, hard))

        # ITIMER_PROF raises at cpu_s; the rlimit kills (SIGKILL, soft == hard) 0.5 to 1.5 s later.
        setlimit(resource.RLIMIT_CPU, math.ceil(cpu_s + 0.5))
        setlimit(resource.RLIMIT_AS, mem)
        setlimit(resource.RLIMIT_FSIZE, fsize)
        setlimit(resource.RLIMIT_NOFILE, nofile)
        setlimit(resource.RLIMIT_CORE, 0)
        # RLIMIT_NPROC counts the processes and threads of our uid, per user namespace.  With a
        # dedicated uid or in a new user namespace that is exactly 1 now; otherwise it is every
        # process of the user on the machine, counted here (racy, but it bounds a fork bomb).
        if uid >= 0 or in_userns:
            nproc = 1 + max_procs
        elif max_procs <= 0:
            nproc = 0
        else:
            mine = os.getuid()
            nproc = max_procs
            for entry in os.listdir("/proc"):
                try:
                    nproc += entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == mine
                except OSError:  # the process ended while we counted: it no longer uses a slot
                    continue
        setlimit(resource.RLIMIT_NPROC, nproc)
        applied.append("rlimits")
    except Exception as exc:
        fail(f"rlimits failed: {exc!r}")

    # ---- Landlock ---------------------------------------------------------------------------------
    PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
    if libc is not None:
        libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            applied.append("no_new_privs")
        libc.syscall.restype = ctypes.c_long
        abi = libc.syscall(ctypes.c_long(444), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
        if abi >= 1 and "landlock" not in disabled:

            class RulesetAttr(ctypes.Structure):
                _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

            class PathBeneath(ctypes.Structure):
                _pack_ = 1
                _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

            EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1, 2, 4, 8
            handled = (1 << 13) - 1
            if abi >= 2:
                handled |= 1 << 13  # REFER
            if abi >= 3:
                handled |= 1 << 14  # TRUNCATE
            if abi >= 5:
                handled |= 1 << 15  # IOCTL_DEV
            file_rights = EXECUTE | WRITE_FILE | READ_FILE | (1 << 14) | (1 << 15)
            attr = RulesetAttr(handled, 0, 0)
            size = 8
            if abi >= 4:
                attr.net, size = 3, 16  # BIND_TCP | CONNECT_TCP, and no port is allowed
            if abi >= 6:
                attr.scoped, size = 3, 24  # ABSTRACT_UNIX_SOCKET | SIGNAL
            ruleset = libc.syscall(ctypes.c_long(444), ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
            if ruleset < 0:
                fail(f"landlock_create_ruleset failed: errno {ctypes.get_errno()}")

            def allow(path: str, rights: int) -> None:
                try:
                    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
                except OSError:
                    return
                try:
                    import stat

                    if not stat.S_ISDIR(os.fstat(fd).st_mode):
                        rights &= file_rights
                    rule = PathBeneath(rights & handled, fd)
                    if (
                        libc.syscall(
                            ctypes.c_long(445),
                            ctypes.c_int(ruleset),
                            ctypes.c_int(1),
                            ctypes.byref(rule),
                            ctypes.c_uint32(0),
                        )
                        != 0
                    ):
                        fail(f"landlock_add_rule({path}) failed: errno {ctypes.get_errno()}")
                finally:
                    os.close(fd)

            read_exec = READ_FILE | READ_DIR | EXECUTE
            for path in (
                "/usr",
                "/lib",
                "/lib64",
                "/lib32",
                "/libx32",
                "/bin",
                "/sbin",
                "/opt",
                "/nix",
                *read_roots,
            ):
                allow(path, read_exec)
            for path in ("/etc", "/proc/self", "/sys/devices/system/cpu", "/usr/share/zoneinfo"):
                allow(path, READ_FILE | READ_DIR)
            for path in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"):
                allow(path, READ_FILE | WRITE_FILE)
            allow(workdir, handled & ~EXECUTE)
            if libc.syscall(ctypes.c_long(446), ctypes.c_int(ruleset), ctypes.c_uint32(0)) != 0:
                fail(f"landlock_restrict_self failed: errno {ctypes.get_errno()}")
            os.close(ruleset)
            applied.append(f"landlock:{abi}")

        # ---- seccomp: no unix sockets (neither the network namespace nor Landlock covers connect() on a
        # pathname socket such as /tmp/.s.PGSQL.5432 or /run/docker.sock) ----------------------------------
        import platform

        arch = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198)}.get(platform.machine())
        if arch is not None and "seccomp" not in disabled:

            class SockFilter(ctypes.Structure):
                _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                            ("k", ctypes.c_uint32)]  # fmt: skip

            class SockFprog(ctypes.Structure):
                _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]

            LD_ABS, JEQ, RET = 0x20, 0x15, 0x06  # BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JEQ|BPF_K, BPF_RET|BPF_K
            ALLOW, DENY = 0x7FFF0000, 0x00050000 | 13  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EACCES
            audit_arch, nr_socket = arch
            program = [
                (LD_ABS, 0, 0, 4),  # seccomp_data.arch
                (JEQ, 0, 6, audit_arch),  # another ABI: allow (it has no socket() at this number)
                (LD_ABS, 0, 0, 0),  # seccomp_data.nr
                (JEQ, 1, 0, nr_socket),
                (JEQ, 0, 3, nr_socket | 0x40000000),  # the x32 ABI's socket()
                (LD_ABS, 0, 0, 16),  # seccomp_data.args[0] (low half): the address family
                (JEQ, 0, 1, 1),  # AF_UNIX
                (RET, 0, 0, DENY),
                (RET, 0, 0, ALLOW),
            ]
            filters = (SockFilter * len(program))(*[SockFilter(*insn) for insn in program])
            fprog = SockFprog(len(program), filters)
            libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
            if libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) == 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
                applied.append("seccomp:no-unix-sockets")  # (a kernel without seccomp: not in isolation)
            libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

    # ---- drop privileges ----------------------------------------------------------------------------
    if uid >= 0:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        except OSError as exc:
            if not any(m.startswith("landlock") for m in applied):
                fail(f"cannot drop root privileges ({exc}) and Landlock is unavailable")
        else:
            applied.append(f"uid:{uid}")
    elif os.geteuid() == 0 and not any(m.startswith("landlock") for m in applied):
        fail("refusing to run as root without Landlock")
    if libc is not None and libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0) == 0:  # after setuid, which resets it
        applied.append("pdeathsig")
    if os.getppid() != ppid:
        os._exit(125)

    # ---- no network without a namespace: refuse sockets (and the ways around the hook) -------------
    if network != "netns":
        blocked = {"socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.getaddrinfo"}
        blocked |= {
            "ctypes.dlopen",
            "ctypes.dlsym",
            "ctypes.dlsym/handle",
            "ctypes.cdata",
            "ctypes.call_function",
        }
        blocked |= {
            "os.exec",
            "os.posix_spawn",
            "os.spawn",
            "os.system",
            "subprocess.Popen",
            "os.fork",
            "os.forkpty",
        }

        def audit(event: str, args: tuple) -> None:
            if event in blocked:
                raise PermissionError(
                    f"{event}: disabled in the sandbox (no network namespace here, so sockets, ctypes "
                    "and new processes are refused)"
                )

        sys.addaudithook(audit)

    # ---- CPU time: precise timer first, rlimit as backstop --------------------------------------------
    import _signal as signal  # the `signal` module imports enum: 5 ms

    class CPUTimeLimitExceeded(BaseException):
        __module__, __qualname__ = "builtins", "CPUTimeLimitExceeded"  # a plain name in tracebacks

    def on_cpu_limit(signum: int, frame: object) -> None:
        raise CPUTimeLimitExceeded(f"CPU time limit of {cpu_s:g} s exceeded")

    signal.signal(signal.SIGPROF, on_cpu_limit)
    signal.signal(signal.SIGXCPU, on_cpu_limit)
    signal.setitimer(signal.ITIMER_PROF, cpu_s)

    os.write(status_fd, f"{network} {' '.join(applied)}\n".encode())
    os.close(status_fd)

    # ---- run the user's code ------------------------------------------------------------------------
    import builtins

    def _exit(code: object = None) -> None:
        raise SystemExit(code)

    builtins.exit = builtins.quit = _exit
    module = type(sys)("__main__")
    module.__file__ = "main.py"
    module.__builtins__ = builtins
    sys.modules["__main__"] = module
    sys.argv = ["main.py"]
    sys.stdout.reconfigure(line_buffering=True)
    try:
        code = compile(source, "main.py", "exec", dont_inherit=True)
    except SyntaxError as exc:
        sys.excepthook(type(exc), exc, None)
        sys.exit(1)
    try:
        exec(code, module.__dict__)
    except SystemExit:
        raise
    except BaseException as exc:
        # Hide the bootstrap's frames: this one, and the signal handler's at the end.
        tb = exc.__traceback__.tb_next if exc.__traceback__ else None
        last = tb
        while last is not None and last.tb_next is not None:
            if last.tb_next.tb_frame.f_code.co_filename == "<string>":
                last.tb_next = None
            else:
                last = last.tb_next
        sys.excepthook(type(exc), exc.with_traceback(tb), tb)
        sys.exit(1)


# --------------------------------------------------------------------------------------------------
# The parent side.
# --------------------------------------------------------------------------------------------------


@functools.cache
def _child_source() -> str:
    """The bootstrap's source, sent to the child with ``-c``."""
    return textwrap.dedent(inspect.getsource(_sandbox_child)) + "\n_sandbox_child()\n"


#: Dedicated uids for sandboxes started by root: an unused range (above systemd's container range,
#: below 2**31), offset per optimizer process, one uid per concurrent call.
_UID_BASE = 1_900_000_000 + (os.getpid() % 40_000) * 1_000
_UID_SLOTS = 1_000
_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()

_SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
#: Isolation mechanisms a caller may switch off to reproduce a machine without them (``run_python(disable=)``).
MECHANISMS = frozenset({"netns", "landlock", "seccomp"})
_NOFILE = 128
_POST_EXIT_GRACE_S = 1.0
_CPU_MARKER = b"CPUTimeLimitExceeded: CPU time limit of "


def _acquire_uid() -> int:
    with _uid_lock:
        for slot in range(_UID_SLOTS):
            uid = _UID_BASE + slot
            if uid not in _uids_in_use:
                _uids_in_use.add(uid)
                return uid
    raise RuntimeError("too many concurrent sandboxes")


def _release_uid(uid: int) -> None:
    with _uid_lock:
        _uids_in_use.discard(uid)


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid`` (children that left the process group with setsid)."""
    for _ in range(5):
        found = False
        try:
            entries = os.listdir("/proc")
        except OSError:
            return
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status", "rb") as fh:
                    for line in fh:
                        if line.startswith(b"Uid:"):
                            if int(line.split()[1]) == uid:
                                found = True
                                os.kill(int(entry), signal.SIGKILL)
                            break
            except (OSError, ValueError):
                continue
        if not found:
            return
        time.sleep(0.01)


def _rmtree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):  # the code may have taken permissions away from its own directories
        for root, dirs, _ in os.walk(path):
            for name in dirs:
                full = os.path.join(root, name)
                if not os.path.islink(full):
                    with contextlib.suppress(OSError):
                        os.chmod(full, 0o700)
        shutil.rmtree(path, ignore_errors=True)


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _failed(message: str, reason: str, started: float) -> SandboxResult:
    return SandboxResult(
        ok=False,
        stdout="",
        stderr=message,
        returncode=None,
        timed_out=False,
        killed_reason=reason,
        duration_s=time.monotonic() - started,
        network="unknown",
    )


def run_python(
    code: str,
    *,
    stdin: str = "",
    limits: SandboxLimits = SandboxLimits(),
    python: str = sys.executable,
    disable: frozenset[str] = frozenset(),
) -> SandboxResult:
    """Run ``code`` (a Python module's source) in a sandboxed child interpreter and return what it did.

    Never raises for anything the code does; safe to call from many threads at once. ``disable`` names
    isolation mechanisms (of :data:`MECHANISMS`) not to use, to reproduce a machine without network
    namespaces or Landlock; the remaining layers still apply.
    """
    unknown = set(disable) - MECHANISMS
    if unknown:
        raise ValueError(f"disable: unknown mechanism(s) {sorted(unknown)}; known: {sorted(MECHANISMS)}")
    started = time.monotonic()
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0 and sys.platform.startswith("linux")
    uid = _acquire_uid() if is_root else -1
    workdir = tempfile.mkdtemp(prefix="agentsearch-sandbox-")
    status_r = status_w = -1
    try:
        main_path = os.path.join(workdir, "main.py")
        with open(main_path, "w", encoding="utf-8") as fh:
            fh.write(code)
        if uid >= 0:
            os.chown(workdir, uid, uid)
            os.chown(main_path, uid, uid)
        os.chmod(workdir, 0o700)

        status_r, status_w = os.pipe()
        argv = [
            python, "-I", "-S", "-B", "-X", "utf8", "-c", _child_source(),
            workdir, repr(float(limits.cpu_s)), ",".join(sorted(disable)) or "-",
            *map(str, (uid, uid, int(limits.memory_mb) * 2**20, int(limits.file_bytes), int(limits.disk_bytes),
                       _NOFILE, max(0, int(limits.max_procs)), status_w, os.getpid())),
        ]  # fmt: skip
        env = {"PATH": _SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=env,
                close_fds=True,
                pass_fds=(status_w,),
                start_new_session=True,
            )
        except OSError as exc:
            return _failed(f"cannot start {python!r}: {exc}", "sandbox error", started)
        finally:
            os.close(status_w)
            status_w = -1
        try:
            return _supervise(proc, stdin.encode("utf-8"), status_r, limits, started)
        finally:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
    finally:
        for fd in (status_r, status_w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if uid >= 0:
            if limits.max_procs > 0:
                _kill_uid(uid)
            _release_uid(uid)
        _rmtree(workdir)


def _supervise(
    proc: subprocess.Popen, stdin_data: bytes, status_r: int, limits: SandboxLimits, started: float
) -> SandboxResult:
    pid = proc.pid
    deadline = started + float(limits.wall_s)
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": [], "status": []}
    total_output = 0
    killed_reason: str | None = None
    status: int | None = None  # the raw wait status; -1: lost (someone else reaped the child)
    rusage = None

    def kill_group() -> None:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)

    def reap(block: bool) -> bool:
        """Collect the exit status once the child has exited (or wait for that)."""
        nonlocal status, rusage
        if status is not None:
            return True
        try:
            # WNOWAIT: the zombie keeps its pid, so the process group id cannot be recycled while we
            # kill whatever the code left behind in its group.
            exited = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG))
            if exited is None:
                return False
            kill_group()
            _, status, rusage = os.wait4(pid, 0)
        except ChildProcessError:
            status = -1
        return True

    sel = selectors.DefaultSelector()
    pidfd = -1
    try:
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr.fileno(), selectors.EVENT_READ, "stderr")
        sel.register(status_r, selectors.EVENT_READ, "status")
        stdin_fd = proc.stdin.fileno()
        stdin_view = memoryview(stdin_data)
        if stdin_data:
            os.set_blocking(stdin_fd, False)
            sel.register(stdin_fd, selectors.EVENT_WRITE, "stdin")
        else:
            proc.stdin.close()
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                pidfd = os.pidfd_open(pid)
                sel.register(pidfd, selectors.EVENT_READ, "exit")
        grace_until = math.inf
        while True:
            open_pipes = [k for k in sel.get_map().values() if k.data in ("stdout", "stderr", "status")]
            now = time.monotonic()
            if status is not None and (not open_pipes or now >= grace_until):
                break
            if status is None and now >= deadline:
                killed_reason = "wall-clock timeout"
                kill_group()
                reap(block=True)
                break
            timeout = (grace_until if status is not None else deadline) - now
            if pidfd < 0 and status is None:
                timeout = min(timeout, 0.02)
            for key, _ in sel.select(max(timeout, 0.0)):
                name = key.data
                if name == "exit":
                    sel.unregister(key.fd)
                    continue
                if name == "stdin":
                    try:
                        written = os.write(key.fd, stdin_view[:65536])
                    except (BrokenPipeError, BlockingIOError) as exc:
                        written = 0 if isinstance(exc, BlockingIOError) else len(stdin_view)
                    stdin_view = stdin_view[written:]
                    if not stdin_view:
                        sel.unregister(key.fd)
                        proc.stdin.close()
                    continue
                try:
                    data = os.read(key.fd, 65536)
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(key.fd)
                    continue
                if name != "status":
                    room = limits.output_bytes - total_output
                    total_output += len(data)
                    if len(data) > room:
                        chunks[name].append(data[: max(room, 0)])
                        killed_reason = killed_reason or "output limit"
                        break
                chunks[name].append(data)
            if killed_reason == "output limit":
                kill_group()
                reap(block=True)
                break
            if status is None and reap(block=False):
                grace_until = time.monotonic() + _POST_EXIT_GRACE_S
    finally:
        sel.close()
        if pidfd >= 0:
            os.close(pidfd)
        if status is None:  # an unexpected error above: never leave the child running
            kill_group()
            reap(block=True)
    duration = time.monotonic() - started

    assert status is not None
    returncode: int | None
    if status == -1:
        returncode, killed_reason = None, killed_reason or "sandbox error"
    elif os.WIFSIGNALED(status):
        returncode = -os.WTERMSIG(status)
    else:
        returncode = os.WEXITSTATUS(status)
    proc.returncode = -1 if returncode is None else returncode  # we reaped it ourselves

    stdout = b"".join(chunks["stdout"]).decode("utf-8", errors="replace")
    stderr_bytes = b"".join(chunks["stderr"])
    stderr = stderr_bytes.decode("utf-8", errors="replace")
    status_line = b"".join(chunks["status"]).decode("ascii", errors="replace").split()
    network = status_line[0] if status_line else "unknown"
    isolation = tuple(status_line[1:])
    cpu_time = (rusage.ru_utime + rusage.ru_stime) if rusage is not None else 0.0

    if killed_reason is None:
        # The child raises CPUTimeLimitExceeded at cpu_s (ITIMER_PROF); RLIMIT_CPU kills it with SIGKILL
        # at ceil(cpu_s + 0.5) if the code swallows that.  (rusage may show slightly less CPU time than
        # the tick-sampled timer saw, so the exception itself is the evidence.)
        if returncode != 0 and _CPU_MARKER in stderr_bytes[-4000:]:
            killed_reason = "cpu limit"
        elif returncode in (-signal.SIGKILL, -signal.SIGXCPU) and cpu_time >= 0.9 * limits.cpu_s:
            killed_reason = "cpu limit"
        elif returncode != 0 and b"MemoryError" in stderr_bytes[-2000:]:
            killed_reason = "memory limit"
        elif returncode == 125 and not status_line:
            killed_reason = "sandbox unavailable"
        elif returncode is not None and returncode < 0:
            killed_reason = f"signal {_signal_name(-returncode)}"
    timed_out = killed_reason in ("wall-clock timeout", "cpu limit")
    return SandboxResult(
        ok=returncode == 0 and killed_reason is None,
        stdout=stdout,
        stderr=stderr,
        returncode=returncode,
        timed_out=timed_out,
        killed_reason=killed_reason,
        duration_s=duration,
        network=network,
        isolation=isolation,
        cpu_time_s=cpu_time,
    )


def _errno_name(code: int) -> str:  # pragma: no cover - helper for debugging
    return errno.errorcode.get(code, str(code))
