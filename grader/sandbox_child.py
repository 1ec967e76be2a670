"""The untrusted side of grader/sandbox.py: runs one student's solution.py and answers calls.

Started by path as ``python -I -S sandbox_child.py REQUEST_FD RESULT_FD``, never as part of the
project: it imports only the standard library and numpy, so nothing the grader knows (reference
answers, scoring code) is ever loaded into the process that runs student code. Without `site`,
no .pth file of site-packages runs here either; the parent names the site-packages folders.
`grade batch` instead starts it once as ``--fork-server`` (see serve_forks): numpy imported,
nothing else, and each child forked from it goes through the same main() below.

Before any student code runs, the process locks itself down in layers, none trusted alone:

1. Linux namespaces where we may create them (we run as root): no network; a new PID
   namespace in which student code runs, unable to name any process outside; a
   private mount table in which every mount is read-only and device-less, and the project root
   and /proc are covered by empty tmpfs (after numpy is imported, so its own imports work);
2. resource limits: CPU seconds, address space, file size 0, few open files, no core dumps;
3. every capability is dropped, also for anything exec'd, so none of the above can be undone;
4. an audit hook refuses file writes, reads outside the Python library directories, starting
   processes, signals, socket and ctypes use, rewriting the hook, and imports of the project and
   of modules that act without audit events. Audit hooks cannot be removed, but a determined
   attacker can reach around Python-level checks; that is why the kernel-level layers exist and
   why the parent kills the whole process group and decodes every reply as plain data.

Protocol: one JSON object per line. The parent first sends the set-up message
``{"source", "protected", "libraries", "cpu_seconds", "memory_bytes"}`` (protected: paths student code may not
read; libraries: the site-packages folders to import numpy from); the child answers
``{"started": {defence: bool}}`` once locked down, then ``{"loaded": true}`` or
``{"load_error": text}`` after running the module code. Each request
``{"id", "entry", "args"}`` gets ``{"id", "ok": value}`` or ``{"id", "error", "traceback"}``.
Values are tagged plain data: ``{"f": float}``, ``{"n": int}``,
``{"a": nested floats, "s": shape}``, ``{"i": nested ints, "s": shape}``, ``{"l": [...]}``,
``{"d": {...}}``, ``{"x": type name}``;
non-finite floats travel as the strings "inf", "-inf" and "nan".
"""
from __future__ import annotations

import json
import linecache
import math
import os
import re
import resource
import select
import signal
import stat
import sys
import time
import traceback
import types

STUDENT_FILENAME = "solution.py"
MAX_REPLY_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 32
TRACEBACK_LINES = 5
MAX_TEXT = 500
OPEN_FILES = 64
NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}

BLOCKED_MODULES = frozenset({
    "_multiprocessing", "_posixshmem", "_posixsubprocess", "_testbuffer", "_testcapi",
    "_testimportmultiple", "_testinternalcapi", "_testmultiphase", "_xxinterpchannels",
    "_xxsubinterpreters", "_xxtestfuzz", "_signal", "cli", "exercises", "grader", "multiprocessing",
    "posix", "pty", "reference", "resource",
})
KEPT_LOADED = frozenset({"posix", "_signal"})
BLOCKED_EVENTS = frozenset({
    "fcntl.ioctl", "os.chmod", "os.chown", "os.fork", "os.forkpty", "os.kill", "os.killpg",
    "os.link", "os.mkdir", "os.remove", "os.removexattr", "os.rename", "os.rmdir", "os.setxattr",
    "os.symlink", "os.system", "os.truncate", "os.utime", "pty.spawn", "resource.prlimit",
    "resource.setrlimit", "signal.pthread_kill", "subprocess.Popen",
})
BLOCKED_PREFIXES = (
    "_posixsubprocess.", "ctypes.", "ftplib.", "http.", "os.exec", "os.pidfd", "os.posix_spawn",
    "os.spawn", "shutil.", "smtplib.", "socket.", "urllib.", "webbrowser.",
)
UNAUDITED_KILLERS = {
    "os": "pidfd_open", "posix": "pidfd_open",
    "signal": "pidfd_send_signal", "_signal": "pidfd_send_signal",
}
PROTECTED_ATTRIBUTES = frozenset({"__code__", "__defaults__", "__kwdefaults__"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
WRITE_MODES = frozenset("wax+")
READABLE_DEVICES = frozenset({"/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"})

PR_SET_PDEATHSIG = 1
PARENT_CHECK_SECONDS = 0.1
"""How often the waiting outer process checks that the grader is still there."""
CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x20, 0x400, 0x800, 0x1000
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 0x4000, 0x40000, 0x200000, 0x1000000
KEPT_MOUNT_OPTIONS = {
    "noexec": MS_NOEXEC, "noatime": MS_NOATIME, "nodiratime": MS_NODIRATIME,
    "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME,
}
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
CAPABILITY_VERSION_3 = 0x20080522


def set_limits(cpu_seconds: int, memory_bytes: int) -> None:
    """Hard limits the kernel enforces even if every Python-level check is bypassed."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def library_roots(protected: tuple[str, ...]) -> tuple[str, ...]:
    """Directories imports read from, minus any inside a protected path (the grader, the reference)."""
    roots = []
    for entry in sys.path:
        if entry and os.path.isdir(entry):
            root = os.path.realpath(entry)
            if not any(within(root, guarded) for guarded in protected) and root not in roots:
                roots.append(root)
    return tuple(roots)


def open_libc():
    """ctypes and the C library, used only here, before any student code runs."""
    try:
        import ctypes

        return ctypes, ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None, None


def enter_namespaces(libc) -> dict[str, bool]:
    """New network, mount and PID namespaces, each allowed to fail alone.

    The new mount table is made private before anything is mounted: otherwise our mounts would
    propagate back to the host, so if that fails no mount is ever touched.
    """
    if libc is None:
        return {"network": False, "filesystem": False, "processes": False}
    network = libc.unshare(CLONE_NEWNET) == 0
    private = (
        libc.unshare(CLONE_NEWNS) == 0
        and libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0
    )
    processes = libc.unshare(CLONE_NEWPID) == 0
    return {"network": network, "filesystem": private, "processes": processes}


def run_in_pid_namespace(channel: Channel, libc, grader: int) -> None:
    """Fork twice so that student code runs as PID 2 of the new PID namespace; return in it.

    There it can name no process outside (not the grader, not anything else), and everything it
    starts dies with the namespace's PID 1. PID 1 itself only reaps the worker and passes on its
    wait status, because PID 1 ignores every signal it has no handler for (even the CPU limit's),
    while the worker, an ordinary process, gets them all. This outer process waits for PID 1
    and then ends exactly as the worker did, so the parent sees the real cause.

    If the grader itself dies (killed, out of memory), nobody would stop the student's code until
    its CPU limit: so this outer process, which runs no student code, watches its parent while it
    waits, and kills PID 1 (and with it the namespace) once the grader is gone; PID 1 dies with
    this process (a parent-death signal).
    """
    status_read, status_write = os.pipe()
    init = os.fork()
    if init == 0:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        os.close(status_read)
        worker = os.fork()
        if worker == 0:
            os.close(status_write)
            return
        channel.close()
        _pid, status = os.waitpid(worker, 0)
        os.write(status_write, str(status).encode())
        os._exit(0)
    os.close(status_write)
    channel.close()
    ended = _exit_watch(init)
    while not os.waitpid(init, os.WNOHANG)[0]:
        if os.getppid() != grader:
            os.kill(init, signal.SIGKILL)
            os.waitpid(init, 0)
            os._exit(1)
        ended(PARENT_CHECK_SECONDS)
    report = os.read(status_read, 32)
    end_like(int(report) if report else None)


def _exit_watch(pid: int):
    """wait(seconds): returns when `pid` has exited or the time is up; on a pidfd where Linux has
    them, so that PID 1's end is noticed at once, else by sleeping."""
    try:
        poller = select.poll()
        poller.register(os.pidfd_open(pid), select.POLLIN)
    except (AttributeError, OSError):
        return time.sleep
    return lambda seconds: poller.poll(seconds * 1000)


def end_like(status: int | None) -> None:
    """Exit with the worker's code, or die of its signal (SIGKILL when it vanished unreported)."""
    if status is not None and not os.WIFSIGNALED(status):
        os._exit(os.WEXITSTATUS(status))
    number = signal.SIGKILL if status is None else os.WTERMSIG(status)
    if number not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(number, signal.SIG_DFL)
    os.kill(os.getpid(), number)
    os._exit(1)


def mount_points() -> list[tuple[bytes, int]]:
    """Every mount point with the options a read-only remount must keep."""
    with open("/proc/self/mountinfo", "rb") as table:
        lines = table.read().splitlines()
    unescape = re.compile(rb"\\([0-7]{3})")
    points = []
    for line in lines:
        fields = line.split(b" ")
        point = unescape.sub(lambda match: bytes([int(match.group(1), 8)]), fields[4])
        options = fields[5].decode("ascii", "replace").split(",")
        flags = sum(flag for name, flag in KEPT_MOUNT_OPTIONS.items() if name in options)
        points.append((point, flags))
    return points


def lock_filesystem(libc, protected: tuple[str, ...], visible: tuple[str, ...]) -> bool:
    """In our private mount table: all mounts read-only and device-less, protected paths and /proc hidden."""
    complete = True
    for point, flags in mount_points():
        remount = MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | flags
        complete &= libc.mount(None, point, None, remount, None) == 0
    covers = ["/proc"]
    for guarded in protected:
        if guarded != "/" and os.path.isdir(guarded) and not any(within(path, guarded) for path in visible):
            covers.append(guarded)
        elif os.path.exists(guarded):
            complete = False
    for target in covers:
        covered = libc.mount(
            b"tmpfs", os.fsencode(target), b"tmpfs",
            MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, b"size=4k,mode=0555",
        )
        complete &= covered == 0
    return complete


def drop_capabilities(libc, ctypes) -> bool:
    """Give up every capability, also for anything exec'd later, so namespaces and limits stay put."""
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    dropped = libc.capset(header, data) == 0
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    return dropped


def forget_dangerous_modules() -> None:
    """Drop blocked modules numpy already loaded, so importing them again reaches the audit hook.

    pidfd_open and pidfd_send_signal can signal any process without an audit event, so they
    are removed; posix and _signal stay loaded (os and signal need them) but may not be
    imported afresh, which would bring those functions back. _posixsubprocess starts processes without any audit event, so it is replaced
    by a stub: libraries that merely import subprocess (numpy.testing, sympy) still load, and
    starting a process through subprocess fails on its own audit event.
    """
    for name in list(sys.modules):
        if name not in KEPT_LOADED and not BLOCKED_MODULES.isdisjoint(name.split(".")):
            del sys.modules[name]
    for module, function in UNAUDITED_KILLERS.items():
        if hasattr(sys.modules.get(module), function):
            delattr(sys.modules[module], function)
    stub = types.ModuleType("_posixsubprocess")
    stub.fork_exec = refuse_fork_exec
    sys.modules["_posixsubprocess"] = stub


def refuse_fork_exec(*args: object) -> None:
    raise PermissionError("the grader's sandbox forbids starting processes")


def make_path_check(roots: tuple[str, ...], files: frozenset[str], protected: tuple[str, ...]):
    """A path check that resolves symlinks itself and reads no global name student code could swap."""

    def allowed(
        path, _roots=roots, _files=files, _protected=protected, _lstat=os.lstat, _readlink=os.readlink,
        _islink=stat.S_ISLNK, _type=type, _str=str, _OSError=OSError,
    ) -> bool:
        if _type(path) is not _str or not path.startswith("/"):
            return False
        pending = path.split("/")[::-1]
        parts = []
        links = 0
        while pending:
            name = pending.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if parts:
                    parts.pop()
                continue
            parts.append(name)
            current = "/" + "/".join(parts)
            try:
                is_link = _islink(_lstat(current).st_mode)
                target = _readlink(current) if is_link else ""
            except _OSError:
                is_link = False
            if is_link:
                links += 1
                if links > 40:
                    return False
                parts.pop()
                if target.startswith("/"):
                    parts.clear()
                pending.extend(target.split("/")[::-1])
        resolved = "/" + "/".join(parts)
        if resolved in _files:
            return True
        for guarded in _protected:
            if resolved == guarded or resolved.startswith(guarded + "/"):
                return False
        for root in _roots:
            if resolved == root or resolved.startswith(root + "/"):
                return True
        return False

    return allowed


def make_audit_hook(allowed):
    """The hook binds everything it uses as defaults: student code can reach no name it looks up.

    Student code can still find the hook (gc, tracebacks), so rewriting the code or defaults of
    any function defined here is refused too.
    """

    def hook(
        event, args, _allowed=allowed, _events=BLOCKED_EVENTS, _prefixes=BLOCKED_PREFIXES,
        _modules=BLOCKED_MODULES, _attributes=PROTECTED_ATTRIBUTES, _write_flags=WRITE_FLAGS,
        _write_modes=WRITE_MODES, _type=type, _str=str, _int=int, _denied=PermissionError,
        _function=types.FunctionType, _own_globals=globals(),
    ) -> None:
        if event == "open":
            path, mode, flags = args
            if mode is not None and (_type(mode) is not _str or not _write_modes.isdisjoint(mode)):
                raise _denied("the grader's sandbox forbids writing files")
            if _type(flags) is not _int or flags & _write_flags:
                raise _denied("the grader's sandbox forbids writing files")
            if _type(path) is not _int and not _allowed(path):
                raise _denied(f"the grader's sandbox forbids reading {path!r}")
        elif event == "os.listdir" or event == "os.scandir":
            path = args[0]
            if _type(path) is not _int and not _allowed(path):
                raise _denied(f"the grader's sandbox forbids listing {path!r}")
        elif event == "import":
            name = args[0]
            if _type(name) is not _str or not _modules.isdisjoint(name.split(".")):
                raise _denied(f"the grader's sandbox forbids importing {name!r}")
        elif event == "object.__setattr__":
            target, attribute = args[0], args[1]
            ours = _type(target) is _function and target.__globals__ is _own_globals
            if ours and attribute in _attributes:
                raise _denied("the grader's sandbox forbids rewriting its own functions")
        elif event in _events or event.startswith(_prefixes):
            raise _denied(f"the grader's sandbox forbids {event}")

    return hook


def describe(error: BaseException) -> str:
    """'Type: message (line N)', the line being the last one of solution.py in the traceback."""
    try:
        text = str(error).strip()
    except Exception:
        text = "<unprintable message>"
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_code.co_filename == STUDENT_FILENAME:
            line = frame.tb_lineno
        frame = frame.tb_next
    summary = f"{type(error).__name__}: {text}" if text else type(error).__name__
    summary = summary.splitlines()[0] if summary.strip() else type(error).__name__
    if isinstance(line, int):
        summary = f"{summary[:MAX_TEXT]} (line {line})"
    return summary[:MAX_TEXT + 20]


def traceback_tail(error: BaseException) -> str:
    """The last lines of the traceback, starting at the student's own frames."""
    frame = error.__traceback__
    while frame is not None and frame.tb_frame.f_code.co_filename != STUDENT_FILENAME:
        frame = frame.tb_next
    try:
        lines = "".join(traceback.format_exception(type(error), error, frame)).splitlines()
    except Exception:
        return ""
    return "\n".join(line[:MAX_TEXT] for line in lines[-TRACEBACK_LINES:])


def named(number: float):
    if math.isfinite(number):
        return number
    return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")


def named_nested(items):
    if isinstance(items, list):
        return [named_nested(item) for item in items]
    return named(items)


def numpy_kit(np) -> types.SimpleNamespace:
    """The numpy names the codec needs, taken before student code can monkeypatch the module."""
    return types.SimpleNamespace(
        ndarray=np.ndarray, generic=np.generic, float64=np.float64, int64=np.int64,
        array=np.array, asarray=np.asarray, isfinite=np.isfinite,
    )


def encode(value, kit: types.SimpleNamespace, depth: int = 0) -> dict:
    """Best-effort plain encoding of a student value; the parent re-validates every byte."""
    if depth > MAX_DEPTH:
        raise ValueError("the return value is nested too deeply")
    kind = type(value)
    if kind is bool or kind is int or kind is float:
        return {"f": named(float(value))}
    if isinstance(value, kit.generic) and value.dtype.kind in "biuf":
        return {"f": named(float(kit.float64(value)))}
    if isinstance(value, kit.ndarray):
        if value.dtype.kind not in "biufO":
            return {"x": f"ndarray of {value.dtype}"}
        data = kit.asarray(value, dtype=kit.float64)
        items = data.tolist()
        if not kit.isfinite(data).all():
            items = named_nested(items)
        return {"a": items, "s": list(data.shape)}
    if isinstance(value, (list, tuple)):
        return {"l": [encode(item, kit, depth + 1) for item in value]}
    if isinstance(value, dict) and all(type(key) is str for key in value):
        return {"d": {key: encode(item, kit, depth + 1) for key, item in value.items()}}
    return {"x": str(kind.__name__)[:100]}


def decode(node, kit: types.SimpleNamespace):
    """Arguments from the parent, which wrote them itself: arrays arrive as fresh writeable copies."""
    ((tag, value),) = ((key, item) for key, item in node.items() if key != "s")
    if tag == "f":
        return NON_FINITE[value] if isinstance(value, str) else float(value)
    if tag == "n":
        return int(value)
    if tag == "a":
        return kit.array(value, dtype=kit.float64).reshape(node["s"])
    if tag == "i":
        return kit.array(value, dtype=kit.int64).reshape(node["s"])
    if tag == "l":
        return [decode(item, kit) for item in value]
    if tag == "d":
        return {key: decode(item, kit) for key, item in value.items()}
    raise ValueError(f"unknown argument tag {tag!r}")


class Channel:
    """The two dedicated pipes; student output goes to fds 1 and 2, never here."""

    def __init__(self, request_fd: int, result_fd: int) -> None:
        self.requests = os.fdopen(request_fd, "rb")
        self.result_fd = result_fd

    def receive(self) -> dict | None:
        line = self.requests.readline()
        return json.loads(line) if line else None

    def close(self) -> None:
        self.requests.close()
        os.close(self.result_fd)

    def send(self, message: dict) -> None:
        data = json.dumps(message, allow_nan=False, separators=(",", ":")).encode() + b"\n"
        view = memoryview(data)
        while view:
            view = view[os.write(self.result_fd, view):]


def flush_output() -> None:
    """Student prints must reach the output pipe before the reply that follows them."""
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass


def load(source: str) -> types.ModuleType:
    """Run the module code as solution.py; tracebacks can quote it without reading any file."""
    lines = source.splitlines(True)
    linecache.cache[STUDENT_FILENAME] = (len(source), None, lines, STUDENT_FILENAME)
    module = types.ModuleType("solution")
    module.__file__ = STUDENT_FILENAME
    sys.modules["solution"] = module
    exec(compile(source, STUDENT_FILENAME, "exec"), module.__dict__)
    return module


def answer(module: types.ModuleType, request: dict, kit: types.SimpleNamespace) -> dict:
    reply = {"id": request["id"]}
    name = request["entry"]
    entry = module.__dict__.get(name)
    if not callable(entry):
        reply.update(error=f"solution.py defines no function `{name}`", traceback="")
        return reply
    try:
        args = [decode(arg, kit) for arg in request["args"]]
        reply["ok"] = encode(entry(*args), kit)
        size = len(json.dumps(reply, allow_nan=False, separators=(",", ":")))
        if size > MAX_REPLY_BYTES:
            reply.pop("ok")
            reply.update(error=f"the return value is too large ({size} bytes encoded)", traceback="")
    except BaseException as error:
        reply.pop("ok", None)
        reply.update(error=describe(error), traceback=traceback_tail(error))
    return reply


def serve(channel: Channel, module: types.ModuleType, kit: types.SimpleNamespace) -> None:
    while (request := channel.receive()) is not None:
        reply = answer(module, request, kit)
        flush_output()
        channel.send(reply)


def main(argv: list[str]) -> None:
    channel = Channel(int(argv[1]), int(argv[2]))
    setup = channel.receive()
    cpu_seconds = int(setup["cpu_seconds"])
    ctypes, libc = open_libc()
    defences = enter_namespaces(libc)
    if defences["processes"]:
        run_in_pid_namespace(channel, libc, int(setup["grader"]))
    set_limits(cpu_seconds, int(setup["memory_bytes"]))
    sys.dont_write_bytecode = True
    sys.path.extend(path for path in setup["libraries"] if type(path) is str and path not in sys.path)
    import numpy

    kit = numpy_kit(numpy)
    protected = tuple(os.path.realpath(path) for path in setup["protected"])
    roots = library_roots(protected)
    if defences["filesystem"]:
        defences["filesystem"] = lock_filesystem(libc, protected, roots + (os.getcwd(),))
    defences["capabilities"] = libc is not None and drop_capabilities(libc, ctypes)
    forget_dangerous_modules()
    sys.addaudithook(make_audit_hook(make_path_check(roots, READABLE_DEVICES, protected)))
    defences["audit_hook"] = True
    channel.send({"started": defences})
    try:
        module = load(setup["source"])
    except BaseException as error:
        flush_output()
        channel.send({"load_error": "\n".join([describe(error), traceback_tail(error)]).strip()})
        return
    flush_output()
    channel.send({"loaded": True})
    serve(channel, module, kit)


def serve_forks(control_fd: int, grader: int, libraries: list[str]) -> None:
    """Fork-server mode (grader/forkserver.py): import numpy once, then fork a sandbox child
    for each request, until the grader closes the control socket. Runs no student code, and
    dies with the grader (a parent-death signal): it never outlives the process it serves.

    A request is the child's working folder, with its request, result and output pipes
    attached. The reply is the child's pid. The child is forked twice so that it is orphaned
    at once and handed to the grader, a child subreaper, which then owns it as if it had
    started it itself.
    """
    import socket

    _, libc = open_libc()
    if libc is None or libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0 or os.getppid() != grader:
        return
    sys.path.extend(path for path in libraries if path not in sys.path)
    import numpy  # noqa: F401 - imported once here, for every child forked from here

    control = socket.socket(fileno=control_fd)
    while True:
        try:
            message, fds, _flags, _address = socket.recv_fds(control, 4096, 3)
        except OSError:
            return
        if not message:
            return
        pid = fork_sandbox(control, message.decode(), fds) if len(fds) == 3 else 0
        for fd in fds:
            os.close(fd)
        control.sendall(str(pid).encode())


def fork_sandbox(control, workdir: str, fds: list[int]) -> int:
    """Fork twice; the grandchild becomes the sandbox, the middle process ends at once."""
    report_read, report_write = os.pipe()
    middle = os.fork()
    if middle == 0:
        try:
            child = os.fork()
            if child == 0:
                os.close(report_read)
                os.close(report_write)
                control.close()
                become_sandbox(workdir, *fds)
            os.write(report_write, str(child).encode())
        finally:
            os._exit(0)
    os.close(report_write)
    os.waitpid(middle, 0)
    report = os.read(report_read, 32)
    os.close(report_read)
    return int(report) if report.isdigit() else 0


def become_sandbox(workdir: str, request_fd: int, result_fd: int, output_fd: int) -> None:
    """What `Popen(..., cwd=workdir, start_new_session=True, stdout=stderr=output)` would set up,
    then the ordinary child's main(); never returns."""
    status = 0
    try:
        os.setsid()
        os.chdir(workdir)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        keep = {0, 1, 2, request_fd, result_fd}
        for fd in range(3, max(keep)):
            if fd not in keep:
                try:
                    os.close(fd)
                except OSError:
                    continue
        os.closerange(max(keep) + 1, os.sysconf("SC_OPEN_MAX"))
        main(["", str(request_fd), str(result_fd)])
    except BaseException:
        traceback.print_exc()
        status = 1
    finally:
        flush_output()
        os._exit(status)


if __name__ == "__main__":
    if sys.argv[1] == "--fork-server":
        serve_forks(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
    else:
        main(sys.argv)
    os._exit(0)
