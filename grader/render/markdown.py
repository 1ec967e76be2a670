"""GitHub-flavoured Markdown, e.g. for a job summary ($GITHUB_STEP_SUMMARY)."""
from __future__ import annotations

from grader.render.text import MARKS
from grader.report import BatchEntry, Report


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def report(rep: Report) -> str:
    percent = 100 * rep.score / rep.max_score if rep.max_score else 0.0
    lines = [f"## Chain-rule grade: {rep.score:g} / {rep.max_score:g} ({percent:.1f}%)", ""]
    if rep.student:
        lines += [f"Student: `{rep.student}`", ""]
    lines += ["| Exercise | Part | Status | Score | Feedback |", "| --- | --- | --- | ---: | --- |"]
    for exercise in rep.exercises:
        for part in exercise.parts:
            feedback = part.feedback + (f" (`{part.mistake}`)" if part.mistake else "")
            lines.append(f"| {exercise.id} | {part.id} | {MARKS[part.status]} {part.status} | "
                         f"{part.score:g}/{part.max_score:g} | {_cell(feedback)} |")
    if rep.errors:
        lines += ["", "**Problems with the submission:**", "", *(f"- {_cell(e)}" for e in rep.errors)]
    return "\n".join(lines) + "\n"


def batch(entries: list[BatchEntry]) -> str:
    lines = ["## Class grades", "", "| Submission | Student | Score | Note |", "| --- | --- | ---: | --- |"]
    for entry in entries:
        if entry.report is None:
            lines.append(f"| {entry.folder} | | 0 | not graded: {_cell(entry.error or '')} |")
        else:
            rep = entry.report
            lines.append(f"| {entry.folder} | {_cell(rep.student or entry.folder)} | {rep.score:g}/{rep.max_score:g} | |")
    return "\n".join(lines) + "\n"
