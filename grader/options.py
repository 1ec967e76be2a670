"""How to grade, chosen before any grading starts: kept apart from grader.grade so that the
commands that launch sandboxes first (`grade submit`, `grade batch`) can say how without
importing sympy."""
from __future__ import annotations

from dataclasses import dataclass, field

from grader.budget import DEFAULT_BUDGET
from grader.sandbox import Limits


@dataclass
class Options:
    """How to grade: the per-check budget, code limits, and whether to attach worked solutions."""

    budget: float = DEFAULT_BUDGET
    limits: Limits = field(default_factory=Limits)
    explain: bool = False
