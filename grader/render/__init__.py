"""Renderers: turn report models into text, JSON, JUnit, Gradescope, Markdown or CSV.

Each format lives in its own module and takes either one Report (`grade submit`) or a
list of BatchEntry (`grade batch`). Renderers only read the models; they decide nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from grader.report import BatchEntry, PartResult, Report

FORMATS = ("text", "json", "junit", "gradescope", "markdown", "csv")


def render(report: Report, fmt: str) -> str:
    from grader.render import gradebook, gradescope, junit, markdown, text

    if fmt == "json":
        return report.model_dump_json(indent=2, exclude_none=True) + "\n"
    return {
        "text": text.report,
        "junit": junit.report,
        "gradescope": gradescope.report,
        "markdown": markdown.report,
        "csv": gradebook.report,
    }[fmt](report)


def render_batch(entries: list[BatchEntry], fmt: str) -> str:
    from grader.render import gradebook, gradescope, junit, markdown, text

    if fmt == "json":
        items = [e.model_dump(mode="json", exclude_none=True) for e in entries]
        import json

        return json.dumps(items, indent=2, ensure_ascii=False) + "\n"
    return {
        "text": text.batch,
        "junit": junit.batch,
        "gradescope": gradescope.batch,
        "markdown": markdown.batch,
        "csv": gradebook.batch,
    }[fmt](entries)


def render_part(part: PartResult, fmt: str) -> str:
    """`grade check`: one part object."""
    from grader.render import text

    if fmt == "json":
        return part.model_dump_json(indent=2, exclude_none=True) + "\n"
    return text.part(part)
