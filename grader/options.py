"""How to grade, chosen before any grading starts: kept apart from grader.grade so that the
commands that launch sandboxes first (`grade submit`, `grade batch`) can say how without
importing sympy."""
from __future__ import annotations

from dataclasses import dataclass, field

from grader.budget import DEFAULT_BUDGET
from grader.sandbox import Limits


@dataclass
class Options:
    """How to grade: the per-check budget, code limits, whether to attach worked solutions, and
    whether a forked helper may grade a share of the exercises on another core (grader/helper.py:
    worth it for one student's submission, not inside `grade batch`, whose workers fill the cores)."""

    budget: float = DEFAULT_BUDGET
    limits: Limits = field(default_factory=Limits)
    explain: bool = False
    helper: bool = False
