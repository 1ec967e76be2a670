"""Wall-clock budgets that really interrupt runaway pure-Python work (sympy, mpmath).

A student answer like ``sin(exp(exp(exp(x))))`` can keep mpmath busy for minutes; a thread
pool cannot cancel that, but a SIGALRM handler raising inside the running code can. Signals
only reach the main thread, so in any other thread ``time_budget`` runs the block without a
timer: callers who grade in worker threads must bound work some other way (e.g. processes).
"""
from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from grader.errors import BudgetExceeded

DEFAULT_BUDGET = 2.0
"""Seconds allowed for one check (one answer against one reference)."""

_FIRE_NOW = 1e-6
"""Timer delay used to re-arm an outer budget whose deadline already passed."""


@dataclass
class _Alarm:
    """One armed budget; `active` turns False as soon as its block is left."""

    seconds: float
    active: bool = True

    def fire(self, signum: int, frame: object) -> None:
        if self.active:
            raise BudgetExceeded(f"the check ran past its {self.seconds:g} s time budget")


def _signals_usable() -> bool:
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise BudgetExceeded inside the block once `seconds` of wall time have passed.

    Budgets nest: an inner budget never extends an outer one, whichever deadline comes first
    fires. The previous SIGALRM handler and ITIMER_REAL timer are restored on exit, with the
    outer timer shortened by the time spent inside.
    """
    if seconds <= 0:
        raise ValueError(f"a time budget must be positive, got {seconds!r}")
    if not _signals_usable():
        yield
        return
    started = time.monotonic()
    outer_delay, outer_interval = signal.getitimer(signal.ITIMER_REAL)
    if 0 < outer_delay <= seconds:
        yield
        return
    alarm = _Alarm(seconds)
    outer_handler = signal.signal(signal.SIGALRM, alarm.fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        try:
            alarm.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
        finally:
            restored = signal.SIG_DFL if outer_handler is None else outer_handler
            signal.signal(signal.SIGALRM, restored)
            if outer_delay > 0:
                remaining = outer_delay - (time.monotonic() - started)
                signal.setitimer(signal.ITIMER_REAL, max(remaining, _FIRE_NOW), outer_interval)
