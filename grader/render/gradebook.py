"""CSV gradebook: one row per student: id, score, max, one column per exercise, and an error column."""
from __future__ import annotations

import csv
import io

from grader.report import BatchEntry, Report


def _rows(entries: list[tuple[str, str, Report | None, str]]) -> str:
    exercise_ids: list[str] = []
    for _, _, rep, _ in entries:
        for exercise in rep.exercises if rep else []:
            if exercise.id not in exercise_ids:
                exercise_ids.append(exercise.id)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", "submission", "score", "max_score", *exercise_ids, "error"])
    for folder, student, rep, error in entries:
        scores = {e.id: f"{e.score:g}" for e in rep.exercises} if rep else {}
        total = (f"{rep.score:g}", f"{rep.max_score:g}") if rep else ("0", "")
        writer.writerow([_cell(student), _cell(folder), *total, *(scores.get(i, "") for i in exercise_ids), _cell(error)])
    return buffer.getvalue()


def _cell(text: str) -> str:
    """A text cell that a spreadsheet will not run as a formula (=HYPERLINK(...) as a student id)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def report(rep: Report) -> str:
    return _rows([("", rep.student or "", rep, "; ".join(rep.errors))])


def batch(entries: list[BatchEntry]) -> str:
    return _rows([(e.folder, (e.report.student if e.report else None) or e.folder, e.report, e.error or "") for e in entries])
