"""`grade batch`: grade a class folder, one sub-folder per submission, in parallel worker processes.

Why processes and not threads: grading is CPU-bound sympy and numpy work, and the per-check
time budgets (grader/budget.py) use SIGALRM, which only reaches a process's main thread. Each
worker grades one submission at a time in its main thread, and lives for the whole batch so
the per-process caches of compiled references (grader.grade) serve every submission it gets.

Why `fork` on Linux: a forked worker starts in milliseconds with sympy already imported and
the bank already parsed by the parent; nothing is pickled. Where fork is unsafe or missing
(macOS, Windows) we use `spawn`, and the same initializer receives the bank pickled once.

The output never depends on `jobs`: entries are returned in folder-name order, and nothing
about the run (time, process ids) goes into them.
"""
from __future__ import annotations

import gc
import multiprocessing
import multiprocessing.util
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from grader.bank import Entry, load_bank
from grader.errors import GraderError, InputError
from grader.launch import Launched, launch
from grader.options import Options
from grader.report import BatchEntry
from grader.sandbox import forking
from grader.submit import Prepared, read_submission

if TYPE_CHECKING:
    from multiprocessing.context import BaseContext

    from grader.sandbox import Limits

ANSWERS_FILE = "answers.yaml"
PR_SET_PDEATHSIG = 1
WORKER_DIED = "the grading process died while grading this submission (out of memory, or killed)"


# ---------------------------------------------------------------- which folders

@dataclass(frozen=True)
class Shard:
    """The K-th of N slices: the folder at 0-based position i of the sorted list belongs to slice (i mod N) + 1.

    Round-robin by position keeps slices within one folder of each other in size, which is what a
    CI matrix wants; every job of one run lists the same checkout, so the slices partition it.
    """

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise InputError(f"--shard must look like K/N (for example 1/4), got '{text}'")
        index, count = int(match[1]), int(match[2])
        if not 1 <= index <= count:
            raise InputError(f"--shard K/N needs 1 <= K <= N, got '{text}'")
        return cls(index, count)

    def holds(self, position: int) -> bool:
        return position % self.count == self.index - 1


def submission_folders(folder: Path) -> list[Path]:
    """Immediate sub-folders, sorted by name (code point order, the same on every machine); hidden ones skipped."""
    if not folder.is_dir():
        raise InputError("is not a folder of submissions", str(folder))
    try:
        found = sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    except OSError as exc:
        raise InputError(f"cannot list the submissions: {exc.strerror}", str(folder)) from None
    if not found:
        raise InputError(f"has no submission folders (expected one sub-folder per student, each with {ANSWERS_FILE})", str(folder))
    return found


# ---------------------------------------------------------------- submissions, one after another

@dataclass
class _Opened:
    """A submission folder read from disk, its sandboxes starting; or why it could not be read."""

    path: Path
    prepared: Prepared | None = None
    launched: Launched | None = None
    error: str | None = None


def _open(path: Path, entries: list[Entry], options: Options) -> _Opened:
    try:
        prepared = read_submission(path / ANSWERS_FILE, None, entries)
        if not prepared.student:
            prepared.student = path.name
        return _Opened(path, prepared, launch(prepared, entries, options.limits))
    except GraderError as exc:
        return _Opened(path, error=_one_line(str(exc)))
    except Exception as exc:  # noqa: BLE001 - one broken submission must not stop the class
        return _Opened(path, error=_internal(exc))


def _finish(opened: _Opened, entries: list[Entry], options: Options) -> BatchEntry:
    """Grade an opened submission and close its sandboxes. Never raises: whatever stops it becomes the entry's `error`."""
    if opened.prepared is None or opened.launched is None:
        return BatchEntry(folder=opened.path.name, error=opened.error)
    from grader.grade import grade   # sympy: imported while the first sandboxes start

    with opened.launched:
        try:
            report = grade(opened.prepared, entries, options, launched=opened.launched)
        except GraderError as exc:
            return BatchEntry(folder=opened.path.name, error=_one_line(str(exc)))
        except Exception as exc:  # noqa: BLE001 - one broken submission must not stop the class
            return BatchEntry(folder=opened.path.name, error=_internal(exc))
    return BatchEntry(folder=opened.path.name, report=report)


def grade_folders(paths: list[Path], entries: list[Entry], options: Options) -> Iterator[BatchEntry]:
    """Grade submission folders in order, each as its own entry.

    The next folder is read and its sandboxes launched before the current one is graded: a
    sandbox's start-up (a fresh interpreter importing numpy) then runs on the other core while
    this process grades, instead of being waited for.
    """
    opened: list[_Opened] = []   # read, sandboxes launched, not graded yet
    try:
        for path in paths:
            opened.append(_open(path, entries, options))
            if len(opened) == 2:
                yield _finish(opened.pop(0), entries, options)
        while opened:
            yield _finish(opened.pop(0), entries, options)
    finally:
        for pending in opened:
            if pending.launched is not None:
                pending.launched.close()


def _internal(exc: Exception) -> str:
    return f"internal error (please report it): {type(exc).__name__}: {_one_line(str(exc))}"


def _one_line(message: str) -> str:
    """Several problems (InvalidFiles) on one line, so every output format can hold the reason."""
    return "; ".join(line.strip() for line in message.splitlines() if line.strip())


# ---------------------------------------------------------------- worker processes

@dataclass(frozen=True)
class _Job:
    """What every worker needs, handed over once per worker rather than once per submission."""

    entries: list[Entry]
    options: Options


_JOB: _Job | None = None


def _start_worker(job: _Job) -> None:
    """Keep the job for the worker's lifetime; leave Ctrl-C to the parent, which stops the pool.

    The worker's fork server also lives as long as the worker, not one run of folders: starting
    one costs as much as grading a submission. It is stopped when the worker ends (a
    multiprocessing finalizer), and dies with it if the worker is killed (a parent-death signal).
    """
    global _JOB
    _JOB = job
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    lifetime = ExitStack()
    lifetime.enter_context(forking())
    multiprocessing.util.Finalize(lifetime, lifetime.close, exitpriority=1)


def _die_with_parent() -> None:
    """A worker of a batch killed by SIGTERM or SIGKILL would wait on its task queue for ever, with its
    fork server: ask Linux for SIGKILL when the batch process ends (its sandboxes then end too)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = multiprocessing.parent_process()
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent.pid:
        os._exit(1)


def _grade_in_worker(paths: list[Path]) -> list[BatchEntry]:
    assert _JOB is not None, "worker used before its initializer ran"
    return list(grade_folders(paths, _JOB.entries, _JOB.options))


def _chunks(paths: list[Path], workers: int) -> list[list[Path]]:
    """Runs of consecutive folders, one task each: a worker launches the next folder's sandboxes
    while it grades the current one. At least two runs per worker keep the load balanced, at most
    eight folders per run keep the progress bar moving."""
    size = max(1, min(8, len(paths) // (2 * workers)))
    return [paths[start:start + size] for start in range(0, len(paths), size)]


def _context() -> BaseContext:
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _pool(job: _Job, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_start_worker, initargs=(job,))


@contextmanager
def _frozen_heap() -> Iterator[None]:
    """Forked workers' garbage collections then skip the inherited heap: fewer copy-on-write page copies."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _grade_parallel(paths: list[Path], job: _Job, workers: int, tick: Callable[[], None]) -> dict[str, BatchEntry]:
    """Grade in a pool; if a worker dies, grade the unfinished folders again one pool each to find the culprit."""
    import grader.grade  # noqa: F401 - before the workers fork, so that each starts with sympy imported

    done: dict[str, BatchEntry] = {}
    with _frozen_heap():
        pool = _pool(job, workers)
        try:
            futures = {pool.submit(_grade_in_worker, chunk): chunk for chunk in _chunks(paths, workers)}
            for future in as_completed(futures):
                try:
                    graded = future.result()
                except BrokenProcessPool:
                    continue
                except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be sent back
                    graded = [BatchEntry(folder=path.name, error=_internal(exc)) for path in futures[future]]
                for entry in graded:
                    done[entry.folder] = entry
                    tick()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    for path in paths:
        if path.name not in done:
            done[path.name] = _grade_isolated(path, job)
            tick()
    return done


def _grade_isolated(path: Path, job: _Job) -> BatchEntry:
    pool = _pool(job, 1)
    try:
        return pool.submit(_grade_in_worker, [path]).result()[0]
    except BrokenProcessPool:
        return BatchEntry(folder=path.name, error=WORKER_DIED)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------- progress

class _Progress:
    """`[#####     ] 12/40` on stderr, redrawn in place; silent unless asked for and stderr is a terminal."""

    WIDTH = 30

    def __init__(self, total: int, enabled: bool, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and self.stream.isatty()
        self.total = total
        self.done = 0
        self._draw()

    def tick(self) -> None:
        self.done += 1
        self._draw()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def _draw(self) -> None:
        if not self.enabled:
            return
        filled = self.WIDTH * self.done // self.total if self.total else self.WIDTH
        self.stream.write(f"\r[{'#' * filled}{' ' * (self.WIDTH - filled)}] {self.done}/{self.total}")
        self.stream.flush()


# ---------------------------------------------------------------- the batch

def run_batch(folder: Path, exercises: Path | None, *, jobs: int | None, shard: str | None, progress: bool,
              limits: Limits | None = None) -> list[BatchEntry]:
    """Grade every submission folder under `folder` (or one shard of them); entries in folder-name order.

    `jobs` worker processes (default: the number of cores); with one job, or one submission,
    grading runs in this process. `limits` bounds student code (default: the sandbox's own).
    """
    chosen = Shard.parse(shard) if shard is not None else None
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    paths = submission_folders(folder)
    if chosen is not None:
        paths = [path for position, path in enumerate(paths) if chosen.holds(position)]
    job = _Job(load_bank(exercises).select(), Options() if limits is None else Options(limits=limits))
    workers = min(jobs or os.cpu_count() or 1, len(paths))
    bar = _Progress(len(paths), progress)
    try:
        done: dict[str, BatchEntry] = {}
        if workers <= 1:
            with forking():
                for entry in grade_folders(paths, job.entries, job.options):
                    done[entry.folder] = entry
                    bar.tick()
        else:
            done = _grade_parallel(paths, job, workers, bar.tick)
    finally:
        bar.close()
    return [done[path.name] for path in paths]
