"""Renderers: turn report models into text, JSON, JUnit, Gradescope, Markdown or CSV.

Each format lives in its own module and takes either one Report (`grade submit`) or a
list of BatchEntry (`grade batch`). Renderers only read the models; they decide nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grader.report import BatchEntry, PartResult, Report

import re

FORMATS = ("text", "json", "junit", "gradescope", "markdown", "csv")

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
"""Characters a student can put into a report (their id, answers, what their code printed) that
would break a format or a terminal: not allowed in XML 1.0, or terminal escapes (ESC, CSI)."""


def visible(text: str) -> str:
    """Control characters written out as \\xNN, so a report is valid XML and prints no escape sequence."""
    return _CONTROLS.sub(lambda found: f"\\x{ord(found.group()):02x}", text)


def render(report: Report, fmt: str) -> str:
    from grader.render import gradebook, gradescope, junit, markdown, text

    if fmt == "json":
        return report.model_dump_json(indent=2, exclude_none=True) + "\n"
    return _safe(fmt, {
        "text": text.report,
        "junit": junit.report,
        "gradescope": gradescope.report,
        "markdown": markdown.report,
        "csv": gradebook.report,
    }[fmt](report))


def _safe(fmt: str, output: str) -> str:
    """Our own renderers write no control character but newlines: any other came from a student.
    JSON formats escape them already."""
    return output if fmt in ("json", "gradescope") else visible(output)


def render_batch(entries: list[BatchEntry], fmt: str) -> str:
    from grader.render import gradebook, gradescope, junit, markdown, text

    if fmt == "json":
        items = [e.model_dump(mode="json", exclude_none=True) for e in entries]
        import json

        return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
    return _safe(fmt, {
        "text": text.batch,
        "junit": junit.batch,
        "gradescope": gradescope.batch,
        "markdown": markdown.batch,
        "csv": gradebook.batch,
    }[fmt](entries))


def render_part(part: PartResult, fmt: str) -> str:
    """`grade check`: one part object."""
    from grader.render import text

    if fmt == "json":
        return part.model_dump_json(indent=2, exclude_none=True) + "\n"
    return visible(text.part(part))
