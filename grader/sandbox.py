"""Run student code in a separate, locked-down process and get back plain data only.

The grader never imports, calls or compares anything the student created. A child process
(grader/sandbox_child.py, started by path with ``python -I -S``) runs solution.py; the parent
talks to it over two dedicated pipes, enforces every timeout itself, kills the child's whole
process group when anything goes wrong, and decodes each reply strictly into floats, numpy
arrays, lists and dicts. Whatever the child says is data: a forged score printed by the student
is just captured output, and a message in a CallResult is text the student may have chosen.

The parent only ever blocks in one poll loop that watches the result pipe and the student's
output pipe together, so output is drained while we wait without a reader thread to leak.
See sandbox_child.py for the protocol and the child's own defences.
"""
from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import numpy as np

from grader import forkserver

CHILD_SCRIPT = Path(__file__).resolve().with_name("sandbox_child.py")
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
MAX_SOURCE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_ELEMENTS = 4_000_000
MAX_TEXT = 2000
STARTUP_SECONDS = 10.0
EXIT_GRACE_SECONDS = 1.0
READ_CHUNK = 1 << 16
TRUNCATION_NOTICE = "\n... [output truncated]"
NON_FINITE = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan")}
LIBRARIES = tuple(path for path in site.getsitepackages() if os.path.isdir(path))
"""Where the child finds numpy. It starts without `site` (-S): that shortens every start-up
(by a quarter in some installs) and runs no .pth file of site-packages in the child."""
CHILD_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class Limits:
    """Budgets for one submission; wall times are enforced by the parent, the rest by the kernel."""

    call_seconds: float = 5.0
    total_seconds: float = 30.0
    cpu_seconds: int = 30
    memory_bytes: int = 1 << 30
    output_bytes: int = 8192


@dataclass(frozen=True)
class CallResult:
    """The outcome of one call: plain data on "ok", a student-readable reason otherwise."""

    status: Literal["ok", "error", "timeout", "crash"]
    value: object = None
    message: str = ""
    traceback: str = ""


class UnsupportedValue(ValueError):
    """A well-formed reply naming a type the protocol cannot carry: the student's mistake."""


class _Failure(Exception):
    """A call or load that did not produce a reply; status says which CallResult it becomes."""

    def __init__(self, status: Literal["error", "timeout", "crash"], message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def encode(value: object) -> dict:
    """Tag a grader-side argument for the child; a type we cannot send is a grader bug."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "iu":
            return {"i": value.astype(np.int64).tolist(), "s": list(value.shape)}
        data = np.asarray(value, dtype=np.float64)
        return {"a": _named_nested(data.tolist()), "s": list(data.shape)}
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("booleans are not sandbox arguments")
    if isinstance(value, (int, np.integer)):
        return {"n": int(value)}
    if isinstance(value, (float, np.floating)):
        return {"f": _named(float(value))}
    if isinstance(value, (list, tuple)):
        return {"l": [encode(item) for item in value]}
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {"d": {key: encode(item) for key, item in value.items()}}
    raise TypeError(f"cannot send a {type(value).__name__} to the sandbox")


def _named(number: float) -> float | str:
    if number != number:
        return "nan"
    if number in (float("inf"), float("-inf")):
        return "inf" if number > 0 else "-inf"
    return number


def _named_nested(items):
    if isinstance(items, list):
        return [_named_nested(item) for item in items]
    return _named(items)


def decode(value: object) -> object:
    """Turn a tagged reply into plain data, accepting nothing outside the format.

    Raises UnsupportedValue for a well-formed {"x": type name} and ValueError for anything else.
    """
    return _Decoder().value(value, 0)


class _Decoder:
    """Strict, bounded decoding: depth, element count and every leaf type are checked."""

    def __init__(self) -> None:
        self.elements = 0

    def count(self, number: int) -> None:
        self.elements += number
        if self.elements > MAX_ELEMENTS:
            raise ValueError("too many elements")

    def value(self, node: object, depth: int) -> object:
        if depth > MAX_DEPTH:
            raise ValueError("nested too deeply")
        if type(node) is not dict:
            raise ValueError("a value must be a tagged object")
        self.count(1)
        keys = set(node)
        if keys == {"f"}:
            return self.number(node["f"])
        if keys == {"a", "s"}:
            shape = self.shape(node["s"])
            return np.array(self.grid(node["a"], shape, self.number), dtype=np.float64).reshape(shape)
        if keys == {"i", "s"}:
            shape = self.shape(node["s"])
            return np.array(self.grid(node["i"], shape, self.integer), dtype=np.int64).reshape(shape)
        if keys == {"l"} and type(node["l"]) is list:
            return [self.value(item, depth + 1) for item in node["l"]]
        if keys == {"d"} and type(node["d"]) is dict:
            return {self.text(key): self.value(item, depth + 1) for key, item in node["d"].items()}
        if keys == {"x"} and type(node["x"]) is str:
            raise UnsupportedValue(node["x"][:100])
        raise ValueError("unknown value tag")

    @staticmethod
    def text(key: object) -> str:
        if type(key) is not str:
            raise ValueError("dict keys must be strings")
        return key

    @staticmethod
    def number(leaf: object) -> float:
        if type(leaf) is str and leaf in NON_FINITE:
            return NON_FINITE[leaf]
        if type(leaf) is float or type(leaf) is int:
            try:
                return float(leaf)
            except OverflowError as error:
                raise ValueError("number out of range") from error
        raise ValueError("a number must be a JSON number or inf/-inf/nan")

    @staticmethod
    def integer(leaf: object) -> int:
        if type(leaf) is not int or not -(2**63) <= leaf < 2**63:
            raise ValueError("an integer array holds int64 values only")
        return leaf

    def shape(self, shape: object) -> tuple[int, ...]:
        if type(shape) is not list or len(shape) > MAX_DEPTH:
            raise ValueError("a shape must be a short list")
        if not all(type(size) is int and 0 <= size <= MAX_ELEMENTS for size in shape):
            raise ValueError("a shape holds non-negative ints")
        total = 1
        for size in shape:
            total *= size
            self.count(size)
        self.count(total)
        return tuple(shape)

    def grid(self, items: object, shape: tuple[int, ...], leaf) -> list:
        """Flatten nested lists that must match `shape` exactly, checking every leaf."""
        level = [items]
        for size in shape:
            following = []
            for row in level:
                if type(row) is not list or len(row) != size:
                    raise ValueError("array data does not match its shape")
                following.extend(row)
            level = following
        return [leaf(item) for item in level]


@contextmanager
def forking() -> Iterator[None]:
    """Within: sandboxes are forked from a warm fork server (grader/forkserver.py), for code
    that starts many of them, such as `grade batch`."""
    with forkserver.serving(CHILD_SCRIPT, CHILD_ENVIRONMENT, LIBRARIES):
        yield


@dataclass(frozen=True)
class _Adopted:
    """A child forked by the fork server and handed to us: what we use of a Popen."""

    pid: int

    def wait(self) -> None:
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            return


@dataclass
class _Child:
    """One running child and the parent's ends of its pipes."""

    process: subprocess.Popen | _Adopted
    requests: int
    results: int
    output: int | None
    inbox: bytearray = field(default_factory=bytearray)

    def kill(self) -> None:
        """Kill everything the child started, then reap it; nothing may outlive the sandbox.

        Where the child made a PID namespace, its only child is that namespace's PID 1: killing
        it ends every process inside, and the child reaps it before ending the same way, so no
        zombie is handed to the system's init. Then the whole process group gets SIGKILL before
        the child is reaped, so the group id cannot be reused meanwhile.
        """
        pid = self.process.pid
        inits = _children_of(pid)
        for init in inits:
            _kill_quietly(os.kill, init)
        if inits:
            _exit_status(pid, EXIT_GRACE_SECONDS)
        _kill_quietly(os.killpg, pid)
        _kill_quietly(os.kill, pid)
        self.process.wait()
        if isinstance(self.process, _Adopted):
            for init in inits:
                _reap_if_ours(init)

    def close_pipes(self) -> None:
        for fd in (self.requests, self.results, self.output):
            if fd is not None:
                os.close(fd)
        self.output = None


@dataclass
class _Resources:
    """What a sandbox holds outside Python; released on close, or by a finalizer if never closed."""

    workdir: str | None = None
    children: list[_Child] = field(default_factory=list)

    def release(self) -> None:
        for child in self.children:
            child.kill()
            child.close_pipes()
        self.children.clear()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


class Sandbox:
    """One child process per submission, reused for all calls, restarted after a timeout or crash."""

    def __init__(self, source: str, *, limits: Limits = Limits(), protected: Sequence[Path]) -> None:
        self._source = source
        self._limits = limits
        self._protected = tuple(str(Path(path).resolve()) for path in protected)
        self._resources = _Resources()
        self._release = weakref.finalize(self, self._resources.release)
        self._child: _Child | None = None
        self._deadline: float | None = None
        self._ready_at: float | None = None   # started ahead of its first call: the wait is not the student's time
        self._load_failure: _Failure | None = None
        self._defences: dict[str, bool] = {}
        self._output = bytearray()
        self._truncated = False
        self._next_id = 0
        self._closed = False

    def __enter__(self) -> Sandbox:
        self._start_if_needed()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the process group and remove the working directory; safe to call twice."""
        if self._child is not None:
            self._destroy()
        self._release()
        self._closed = True

    @property
    def fingerprint(self) -> str:
        """A digest of the student's file: seeds the challenge points of function parts (grader.grade)."""
        return hashlib.sha256(self._source.encode("utf-8", errors="replace")).hexdigest()

    @property
    def load_error(self) -> str | None:
        """Why solution.py could not be loaded (exception, timeout or crash), else None."""
        self._start_if_needed()
        return None if self._load_failure is None else self._load_failure.message

    @property
    def output(self) -> str:
        """Everything the student printed so far, capped at Limits.output_bytes."""
        text = self._output.decode("utf-8", errors="replace")
        return text + TRUNCATION_NOTICE if self._truncated else text

    @property
    def defences(self) -> dict[str, bool]:
        """Which lock-downs the last child reported active, before any student code ran."""
        return dict(self._defences)

    def call(self, entry: str, *args: object) -> CallResult:
        """Call `entry(*args)` in the child; never raises for anything the student did."""
        if self._closed:
            raise RuntimeError("the sandbox is closed")
        payload = [encode(arg) for arg in args]
        self._start_if_needed()
        if self._ready_at is not None:
            self._deadline += time.monotonic() - self._ready_at
            self._ready_at = None
        if self._load_failure is not None:
            failure = self._load_failure
            first_line = failure.message.splitlines()[0] if failure.message else ""
            return CallResult(failure.status, message=f"solution.py could not be loaded: {first_line}")
        try:
            if self._child is not None and (self._child.inbox or self._pending(self._child.results)):
                self._destroy()
            self._ensure_child()
            return self._exchange(entry, payload)
        except _Failure as failure:
            if self._child is not None:
                self._destroy()
            return CallResult(failure.status, message=failure.message)

    def _start_if_needed(self) -> None:
        if self._deadline is None and not self._closed:
            try:
                self._ensure_child()
            except _Failure:
                pass

    def _ensure_child(self) -> None:
        """Start (or restart) the child and load solution.py; a load failure sticks."""
        if self._child is not None:
            return
        if self._load_failure is not None:
            raise self._load_failure
        if self._deadline is None:
            self._deadline = time.monotonic() + self._limits.total_seconds
        if time.monotonic() >= self._deadline:
            raise _Failure("timeout", self._budget_message())
        if len(self._source.encode("utf-8", errors="replace")) > MAX_SOURCE_BYTES:
            message = f"solution.py is larger than {MAX_SOURCE_BYTES} bytes"
            self._load_failure = _Failure("error", message)
            raise self._load_failure
        self._spawn()
        try:
            self._handshake()
        except _Failure as failure:
            if self._child is not None:
                self._destroy()
            self._load_failure = failure
            raise
        if self._next_id == 0:
            self._ready_at = time.monotonic()

    def _spawn(self) -> None:
        resources = self._resources
        if resources.workdir is None:
            resources.workdir = tempfile.mkdtemp(prefix="chain-grader-sandbox-")
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        output_read, output_write = os.pipe()
        try:
            pid = forkserver.spawn(resources.workdir, request_read, result_write, output_write)
            process: subprocess.Popen | _Adopted = _Adopted(pid) if pid is not None else subprocess.Popen(
                [sys.executable, "-I", "-S", str(CHILD_SCRIPT), str(request_read), str(result_write)],
                stdin=subprocess.DEVNULL,
                stdout=output_write,
                stderr=output_write,
                pass_fds=(request_read, result_write),
                cwd=resources.workdir,
                env=CHILD_ENVIRONMENT,
                start_new_session=True,
            )
        except BaseException:
            for fd in (request_write, result_read, output_read):
                os.close(fd)
            raise
        finally:
            for fd in (request_read, result_write, output_write):
                os.close(fd)
        for fd in (request_write, result_read, output_read):
            os.set_blocking(fd, False)
        self._child = _Child(process, request_write, result_read, output_read)
        resources.children.append(self._child)

    def _handshake(self) -> None:
        start_deadline = min(self._deadline, time.monotonic() + STARTUP_SECONDS)
        setup = {
            "source": self._source,
            "protected": list(self._protected),
            "libraries": list(LIBRARIES),
            "cpu_seconds": int(self._limits.cpu_seconds),
            "grader": os.getpid(),
            "memory_bytes": int(self._limits.memory_bytes),
        }
        try:
            self._send(setup, start_deadline, "starting")
            started = self._receive(start_deadline, "starting")
        except _Failure as failure:
            raise _Failure(failure.status, f"the sandbox did not start: {failure.message}") from None
        if set(started) != {"started"} or type(started["started"]) is not dict:
            raise self._broken("the sandbox did not start")
        self._defences = {str(key): value is True for key, value in started["started"].items()}
        load_deadline = min(self._deadline, time.monotonic() + self._limits.call_seconds)
        loaded = self._receive(load_deadline, "loading solution.py")
        if loaded == {"loaded": True}:
            return
        if set(loaded) == {"load_error"} and type(loaded["load_error"]) is str:
            raise _Failure("error", loaded["load_error"][:MAX_TEXT])
        raise self._broken("sent a malformed reply while loading")

    def _exchange(self, entry: str, payload: list) -> CallResult:
        child = self._child
        self._next_id += 1
        request_id = self._next_id
        deadline = min(self._deadline, time.monotonic() + self._limits.call_seconds)
        self._send({"id": request_id, "entry": entry, "args": payload}, deadline, "the call")
        reply = self._receive(deadline, "the call")
        if child.inbox:
            raise self._broken("wrote extra data to the grader's channel")
        if reply.get("id") != request_id or type(reply.get("id")) is not int:
            raise self._broken("answered out of turn")
        if set(reply) == {"id", "ok"}:
            try:
                return CallResult("ok", value=decode(reply["ok"]))
            except UnsupportedValue as unsupported:
                return CallResult(
                    "error",
                    message=f"returned an unsupported value ({unsupported}); "
                    "return floats, numpy arrays, lists or dicts of those",
                )
            except ValueError as error:
                raise self._broken(f"sent a malformed value ({error})") from None
        if set(reply) == {"id", "error", "traceback"}:
            error, trace = reply["error"], reply["traceback"]
            if type(error) is str and type(trace) is str:
                return CallResult("error", message=error[:MAX_TEXT], traceback=trace[-MAX_TEXT:])
        raise self._broken("sent a malformed reply")

    def _send(self, message: dict, deadline: float, phase: str) -> None:
        text = json.dumps(message, allow_nan=False, separators=(",", ":"))
        data = memoryview(text.encode() + b"\n")
        child = self._child
        while data:
            ready = self._wait(deadline, phase, write=True)
            if child.requests in ready:
                try:
                    data = data[os.write(child.requests, data[:READ_CHUNK]):]
                except BlockingIOError:
                    continue
                except OSError:
                    raise self._broken() from None

    def _receive(self, deadline: float, phase: str) -> dict:
        """Read one line from the result pipe, draining student output while waiting."""
        child = self._child
        while (end := child.inbox.find(b"\n")) < 0:
            if len(child.inbox) > MAX_MESSAGE_BYTES:
                raise self._broken(f"sent a reply larger than {MAX_MESSAGE_BYTES} bytes")
            if child.results in self._wait(deadline, phase, write=False):
                chunk = self._read(child.results)
                if chunk == b"":
                    raise self._broken()
                child.inbox += chunk
        line = bytes(child.inbox[:end])
        del child.inbox[: end + 1]
        if end > MAX_MESSAGE_BYTES:
            raise self._broken(f"sent a reply larger than {MAX_MESSAGE_BYTES} bytes")
        try:
            message = json.loads(line, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            raise self._broken("sent garbage instead of a reply") from None
        if type(message) is not dict:
            raise self._broken("sent garbage instead of a reply")
        return message

    def _wait(self, deadline: float, phase: str, *, write: bool) -> set[int]:
        """Poll until the watched pipe is ready, draining output meanwhile; enforce the deadline."""
        child = self._child
        poller = select.poll()
        watched = child.requests if write else child.results
        poller.register(watched, select.POLLOUT if write else select.POLLIN)
        if child.output is not None:
            poller.register(child.output, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Failure("timeout", self._timeout_message(phase))
            events = poller.poll(max(1, int(remaining * 1000) + 1))
            ready = set()
            for fd, _event in events:
                if fd == child.output:
                    self._drain_output(until_empty=False)
                    if child.output is None:
                        poller.unregister(fd)
                else:
                    ready.add(fd)
            if ready:
                return ready

    def _drain_output(self, *, until_empty: bool) -> None:
        child = self._child
        while child.output is not None:
            chunk = self._read(child.output)
            if chunk is None:
                return
            if chunk == b"":
                os.close(child.output)
                child.output = None
                return
            room = self._limits.output_bytes - len(self._output)
            if len(chunk) > room:
                self._truncated = True
            self._output += chunk[: max(room, 0)]
            if not until_empty:
                return

    @staticmethod
    def _read(fd: int) -> bytes | None:
        try:
            return os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return None
        except OSError:
            return b""

    @staticmethod
    def _pending(fd: int) -> bool:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0))

    def _broken(self, reason: str | None = None) -> _Failure:
        """A protocol violation or a dead child: find out how it ended, then kill the group."""
        ended = _exit_status(self._child.process.pid, EXIT_GRACE_SECONDS if reason is None else 0.0)
        if reason is None:
            reason = _death_reason(ended, self._limits) if ended else "closed the grader's channel"
        self._destroy()
        return _Failure("crash", reason)

    def _destroy(self) -> None:
        """Kill and reap the current child, keeping whatever it printed last."""
        child = self._child
        child.kill()
        self._drain_output(until_empty=True)
        child.close_pipes()
        self._resources.children.remove(child)
        self._child = None

    def _timeout_message(self, phase: str) -> str:
        if time.monotonic() >= self._deadline:
            return self._budget_message()
        if phase == "starting":
            return f"no answer within {STARTUP_SECONDS:g} s"
        if phase == "loading solution.py":
            return f"loading solution.py took longer than {self._limits.call_seconds:g} s"
        return f"took longer than {self._limits.call_seconds:g} s"

    def _budget_message(self) -> str:
        return f"used up the total time budget of {self._limits.total_seconds:g} s for this submission"


def _exit_status(pid: int, grace: float) -> tuple[int, int] | None:
    """(si_code, si_status) once our child `pid` exited, without reaping it: its pid stays ours.

    Waits on a pidfd where Linux has them (readable the moment the child exits), else in 5 ms
    naps: closing a sandbox waits here once per submission, which a batch pays per student.
    """
    give_up = time.monotonic() + grace
    watch = _pidfd(pid)
    poller = select.poll()
    if watch is not None:
        poller.register(watch, select.POLLIN)
    try:
        while True:
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
            except ChildProcessError:
                return None
            if info is not None and info.si_pid == pid:
                return info.si_code, info.si_status
            left = give_up - time.monotonic()
            if left <= 0:
                return None
            if watch is None:
                time.sleep(min(0.005, left))
            else:
                poller.poll(left * 1000)
    finally:
        if watch is not None:
            os.close(watch)


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _reap_if_ours(pid: int) -> None:
    """A namespace's PID 1 outlived by its parent is handed to us when we are a child subreaper
    (a fork server is in use); reap it if it has ended, never wait for it."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return


def _kill_quietly(kill, pid: int) -> None:
    try:
        kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _children_of(pid: int) -> list[int]:
    """Live or unreaped children of `pid`, from /proc (empty if it is gone)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(number) for number in children.read().split()]
    except (OSError, ValueError):
        return []


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _death_reason(ended: tuple[int, int], limits: Limits) -> str:
    """A student-readable cause for a child that died on its own."""
    code, status = ended
    if code == os.CLD_EXITED:
        return f"the process exited with code {status} instead of answering"
    if status == signal.SIGXCPU:
        return f"used up the CPU time limit of {limits.cpu_seconds} s"
    if status == signal.SIGXFSZ:
        return "tried to write a file"
    if status == signal.SIGKILL:
        return f"the process was killed (memory limit {limits.memory_bytes // 2**20} MB or CPU limit?)"
    try:
        name = signal.Signals(status).name
    except ValueError:
        name = f"signal {status}"
    return f"the process crashed ({name})"
