"""A warm interpreter that forks the sandbox children of a batch.

Starting a sandbox child means a fresh interpreter and a numpy import: about 75 ms of CPU,
nearly as much as grading the submission's hundred typed answers, and `grade batch` starts
one per submission. So a batch process (the main one with `--jobs 1`, each worker otherwise)
keeps a fork server: sandbox_child.py in server mode, an interpreter that has imported numpy
and nothing else and never runs student code. For each sandbox it forks a fresh child, which
then locks itself down exactly as a freshly started child does.

The child must be our own child, so that we reap it, read how it ended and kill its process
group with no risk of pid reuse. The fork server forks twice and the middle process ends at
once; while `serving`, this process is a child subreaper (Linux prctl), so the orphan is
handed to us. Where any of this is unavailable, `spawn` returns None and sandboxes start the
ordinary way.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
REPLY_SECONDS = 10.0


class ForkServer:
    """One fork server process and the control socket to it; safe to use from several threads."""

    def __init__(self, child_script: Path, environment: dict[str, str], libraries: tuple[str, ...]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(child_script), "--fork-server", str(theirs.fileno()), str(os.getpid()),
                 *libraries],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), env=environment, cwd="/", start_new_session=True,
            )
        finally:
            theirs.close()
        ours.settimeout(REPLY_SECONDS)
        self._socket = ours
        self._lock = threading.Lock()

    def spawn(self, workdir: str, request_fd: int, result_fd: int, output_fd: int) -> int | None:
        """A sandbox child forked with these pipes and working folder: its pid, now our child."""
        with self._lock:
            try:
                socket.send_fds(self._socket, [workdir.encode()], [request_fd, result_fd, output_fd])
                reply = self._socket.recv(32)
            except OSError:
                return None
        return int(reply) if reply.isdigit() and int(reply) > 0 else None

    def close(self) -> None:
        self._socket.close()
        self.process.kill()
        self.process.wait()


_servers: dict[int, ForkServer] = {}
"""The running fork server of each process id that has one."""


@contextmanager
def serving(child_script: Path, environment: dict[str, str], libraries: tuple[str, ...]) -> Iterator[None]:
    """Within: this process's `spawn` forks sandbox children from a fork server, where the
    platform allows. On leaving, the server is stopped and this process is a plain parent again."""
    if os.getpid() in _servers or not _set_subreaper(True):
        yield
        return
    try:
        _servers[os.getpid()] = ForkServer(child_script, environment, libraries)
    except OSError:
        _set_subreaper(False)
        yield
        return
    try:
        yield
    finally:
        server = _servers.pop(os.getpid(), None)
        if server is not None:
            server.close()
        _set_subreaper(False)


def spawn(workdir: str, request_fd: int, result_fd: int, output_fd: int) -> int | None:
    """The pid of a sandbox child forked by this process's fork server, or None if it has none
    (or it failed: it is then stopped, and the caller starts the child the ordinary way)."""
    server = _servers.get(os.getpid())
    if server is None:
        return None
    pid = server.spawn(workdir, request_fd, result_fd, output_fd)
    if pid is None and _servers.pop(os.getpid(), None) is server:
        server.close()
    return pid


def _set_subreaper(on: bool) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False
