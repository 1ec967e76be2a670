"""Gradescope's results.json: score, and one test per part with name, score, max_score, status, output."""
from __future__ import annotations

import json

from grader.report import BatchEntry, Report


def results(rep: Report) -> dict:
    tests = []
    for exercise in rep.exercises:
        for part in exercise.parts:
            output = part.feedback
            if part.mistake:
                output += f"\n(mistake: {part.mistake})"
            if part.output:
                output += "\n\nYour code printed:\n" + part.output
            if part.solution:
                output += "\n\nWorked solution:\n" + "\n".join(part.solution)
            tests.append({
                "name": f"{exercise.id} / {part.id}",
                "name_format": "text",
                "score": part.score,
                "max_score": part.max_score,
                "status": "passed" if part.status == "correct" else "failed",
                "output": output,
                "output_format": "text",
                "tags": [part.status] + ([part.mistake] if part.mistake else []),
            })
    return {
        "score": rep.score,
        "output": "\n".join(rep.errors) if rep.errors else f"Score: {rep.score:g}/{rep.max_score:g}",
        "output_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def report(rep: Report) -> str:
    return json.dumps(results(rep), indent=2, ensure_ascii=False) + "\n"


def batch(entries: list[BatchEntry]) -> str:
    items = []
    for entry in entries:
        if entry.report is not None:
            items.append({"submission": entry.folder, **results(entry.report)})
        else:
            items.append({"submission": entry.folder, "score": 0.0, "output": f"Not graded: {entry.error}", "tests": []})
    return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
