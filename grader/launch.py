"""Start the sandboxes of a submission's code files early, in background threads.

A sandbox's start-up (a fresh interpreter importing numpy, locking itself down, loading
the student's file) takes longer than grading a hundred typed answers. Started before the
grader imports sympy (`grade submit`), or while the previous submission of a batch is
graded (`grade batch`), it runs on another core and is ready when the first code part
needs it. Nothing here imports sympy.
"""
from __future__ import annotations

import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from grader.sandbox import Limits, Sandbox

if TYPE_CHECKING:
    from grader.bank import Entry
    from grader.submit import Prepared


def protected_paths() -> list[Path]:
    """What student code may not read: the whole checkout when running from one (tests, examples
    and all); in an installed package, the grader's, the reference's and the bank's own folders
    (their parent is site-packages, which holds numpy and must stay readable)."""
    import exercises
    import reference

    packages = [Path(module.__file__).resolve().parent for module in (sys.modules[__package__], reference, exercises)]
    root = packages[0].parent
    return [root] if (root / "pyproject.toml").is_file() else packages


def open_sandbox(source: str, limits: Limits) -> Sandbox:
    """A started sandbox for one code file (the caller closes it)."""
    return Sandbox(source, limits=limits, protected=protected_paths()).__enter__()


class Launched:
    """The sandboxes of one submission's code files, keyed by file, each starting in its own thread.

    Use it as a context manager: leaving it closes every sandbox (kills its process group).
    """

    def __init__(self, sources: dict[Path, str], limits: Limits) -> None:
        self._starting: dict[Path, Future[Sandbox]] = {}
        if sources:
            pool = ThreadPoolExecutor(max_workers=len(sources))
            self._starting = {path: pool.submit(open_sandbox, source, limits) for path, source in sources.items()}
            pool.shutdown(wait=False)

    def get(self, path: Path) -> Sandbox:
        """The sandbox of a code file, once started (waits for its start-up)."""
        return self._starting[path].result()

    def close(self) -> None:
        for future in self._starting.values():
            if future.exception() is None:
                future.result().close()

    def __enter__(self) -> Launched:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def launch(prepared: Prepared, entries: list[Entry], limits: Limits) -> Launched:
    """Start a sandbox for every code file that the chosen exercises will call."""
    sources = {prepared.code[e.exercise.id][0]: prepared.code[e.exercise.id][1]
               for e in entries if e.exercise.id in prepared.code}
    return Launched(sources, limits)
