"""The report model: what grading produced, before any renderer formats it."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["correct", "incorrect", "invalid", "missing", "error", "timeout"]


class PartResult(BaseModel):
    id: str
    status: Status
    score: float
    max_score: float
    answer: str | None = None
    feedback: str = ""
    understood: str | None = Field(None, description="How the grader read the answer, in plain math.")
    mistake: str | None = None
    gradients: dict[str, str] | None = None
    output: str | None = Field(None, description="What the student's code printed (capped).")
    solution: list[str] | None = Field(None, description="Worked solution lines (with --explain).")


class ExerciseResult(BaseModel):
    id: str
    title: str = ""
    score: float
    max_score: float
    parts: list[PartResult]


class Report(BaseModel):
    student: str | None = None
    score: float
    max_score: float
    exercises: list[ExerciseResult]
    errors: list[str] = Field(default_factory=list, description="Problems with the submission itself.")


class BatchEntry(BaseModel):
    folder: str
    report: Report | None = None
    error: str | None = Field(None, description="Why this submission could not be graded at all.")


def total(results: list[PartResult] | list[ExerciseResult]) -> tuple[float, float]:
    return round(sum(r.score for r in results), 6), round(sum(r.max_score for r in results), 6)
