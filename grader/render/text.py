"""Plain text for a terminal: a table of parts, then the feedback of every part that is not correct."""
from __future__ import annotations

from grader.report import BatchEntry, PartResult, Report

MARKS = {"correct": "✓", "incorrect": "✗", "invalid": "?", "missing": "-", "error": "!", "timeout": "⏱"}


def _points(score: float, max_score: float) -> str:
    return f"{score:g}/{max_score:g}"


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def part(result: PartResult) -> str:
    lines = [f"{MARKS[result.status]} {result.status}"]
    if result.feedback:
        lines.append(result.feedback)
    if result.mistake:
        lines.append(f"(mistake: {result.mistake})")
    return "\n".join(lines) + "\n"


def report(rep: Report) -> str:
    rows = [(f"{e.id}", p.id, f"{MARKS[p.status]} {p.status}", _points(p.score, p.max_score)) for e in rep.exercises for p in e.parts]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("exercise", "part", "status", "score"))]
    header = ("exercise", "part", "status", "score")
    out = [f"Student: {rep.student or '(none)'}", ""]
    out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    out.append("  ".join("-" * w for w in widths))
    out.extend("  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows)
    percent = 100 * rep.score / rep.max_score if rep.max_score else 0.0
    out += ["", f"Score: {_points(rep.score, rep.max_score)} ({percent:.1f}%)"]
    details = []
    for ex in rep.exercises:
        for p in ex.parts:
            if p.status == "correct" and not p.output:
                continue
            if p.status == "missing":
                continue
            block = [f"{ex.id} / {p.id}: {p.status}" + (f" [{p.mistake}]" if p.mistake else "")]
            if p.answer is not None:
                block.append(f"    your answer: {p.answer}")
            if p.feedback:
                block.append(_indent(p.feedback, "    "))
            if p.gradients:
                block.append("    gradients: " + ", ".join(f"{k} {MARKS.get(v, v)}" for k, v in p.gradients.items()))
            if p.output:
                block.append("    your code printed:")
                block.append(_indent(p.output.rstrip(), "      | "))
            if p.solution:
                block.append("    worked solution:")
                block.append(_indent("\n".join(p.solution), "      "))
            details.append("\n".join(block))
    if details:
        out += ["", "Feedback", "--------", *("\n".join([d, ""]) for d in details)]
    if rep.errors:
        out += ["", "Problems with the submission:", *(f"  {e}" for e in rep.errors)]
    return "\n".join(out).rstrip() + "\n"


def batch(entries: list[BatchEntry]) -> str:
    out = []
    for entry in entries:
        if entry.report is None:
            out.append(f"{entry.folder}: not graded: {entry.error}")
        else:
            rep = entry.report
            out.append(f"{entry.folder}: {rep.student or entry.folder}: {_points(rep.score, rep.max_score)}")
    return "\n".join(out) + "\n"
