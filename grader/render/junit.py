"""JUnit XML: one testcase per part (classname = exercise id), as GitLab and GitHub test reporters read it.

incorrect, invalid and missing parts are <failure>s; error and timeout are <error>s. Scores go
in each suite's <properties> (the strict JUnit schema allows none inside a testcase).
"""
from __future__ import annotations

from xml.etree import ElementTree as ET

from grader.report import BatchEntry, Report

FAILURES = ("incorrect", "invalid", "missing")
ERRORS = ("error", "timeout")


def _suite(parent: ET.Element, name: str, rep: Report) -> None:
    parts = [(e, p) for e in rep.exercises for p in e.parts]
    suite = ET.SubElement(parent, "testsuite", {
        "name": name,
        "tests": str(len(parts)),
        "failures": str(sum(p.status in FAILURES for _, p in parts)),
        "errors": str(sum(p.status in ERRORS for _, p in parts)),
        "skipped": "0",
        "time": "0",
    })
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "score", "value": f"{rep.score:g}"})
    ET.SubElement(properties, "property", {"name": "max_score", "value": f"{rep.max_score:g}"})
    for exercise, part in parts:
        case = ET.SubElement(suite, "testcase", {"classname": exercise.id, "name": part.id, "time": "0"})
        telling = [line for line in part.feedback.splitlines() if not line.startswith("Read your answer as")]
        first_line = (telling or [part.status])[0]
        body = part.feedback + (f"\nmistake: {part.mistake}" if part.mistake else "")
        if part.status in FAILURES:
            ET.SubElement(case, "failure", {"message": first_line, "type": part.status}).text = body
        elif part.status in ERRORS:
            ET.SubElement(case, "error", {"message": first_line, "type": part.status}).text = body
        if part.output:
            ET.SubElement(case, "system-out").text = part.output


def _document(root: ET.Element) -> str:
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _totals(root: ET.Element) -> None:
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in root.findall("testsuite"))))


def report(rep: Report) -> str:
    root = ET.Element("testsuites", {"name": "chain-grader"})
    _suite(root, rep.student or "submission", rep)
    _totals(root)
    return _document(root)


def batch(entries: list[BatchEntry]) -> str:
    root = ET.Element("testsuites", {"name": "chain-grader"})
    for entry in entries:
        if entry.report is not None:
            _suite(root, entry.report.student or entry.folder, entry.report)
        else:
            suite = ET.SubElement(root, "testsuite", {"name": entry.folder, "tests": "1", "failures": "0", "errors": "1", "skipped": "0", "time": "0"})
            case = ET.SubElement(suite, "testcase", {"classname": entry.folder, "name": "submission", "time": "0"})
            ET.SubElement(case, "error", {"message": entry.error or "not graded", "type": "submission"}).text = entry.error
    _totals(root)
    return _document(root)
