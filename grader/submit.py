"""Read a student's submission from disk: answers.yaml, and the code files beside it.

An exercise's code is read from `<exercise-id>.py` beside answers.yaml when that file
exists, else from the answers file's `code:` entry (default `solution.py`): several
backprop exercises may then all ask for `backward` without clashing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.bank import Bank, Entry
from grader.errors import InputError
from grader.loader import Document, load, read_regular
from grader.models import Submission
from grader.report import Report

MAX_CODE_BYTES = 256 * 1024


@dataclass
class Prepared:
    """A submission read from disk: answers, student id, code sources, problems found on the way."""

    answers: dict[str, dict[str, Any]]
    student: str | None
    code: dict[str, tuple[Path, str]] = field(default_factory=dict)   # exercise id -> (file, source)
    problems: list[str] = field(default_factory=list)


def _read_code(path: Path, folder: Path, problems: list[str]) -> str | None:
    """The code file's text, if it is a regular file inside the submission's folder (a link out of
    it, say to a classmate's solution.py, is not run) of at most MAX_CODE_BYTES."""
    if not path.resolve().is_relative_to(folder.resolve()):
        problems.append(f"{path}: outside the submission's folder (a link, .. or an absolute path); not run")
        return None
    try:
        return read_regular(path, MAX_CODE_BYTES).decode("utf-8")
    except InputError as exc:
        problems.append(f"{path}: {exc.message}; not run")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: cannot read ({type(exc).__name__})")
    return None


def prepare(submission: Submission, doc: Document, folder: Path, student: str | None, entries: list[Entry],
            bank_ids: set[str] | None = None) -> Prepared:
    """Match answers to the exercises being graded and find the code of every code exercise.

    Answers for exercises of the bank that are not being graded (`--only`) are skipped quietly;
    answers for exercises the bank does not have are reported with their line.
    """
    by_id = {e.exercise.id: e for e in entries}
    prepared = Prepared({}, student or submission.student)
    for exercise_id, parts in submission.answers.items():
        line = doc.line_of(("answers", exercise_id))
        if exercise_id not in by_id:
            if bank_ids is None or exercise_id not in bank_ids:
                prepared.problems.append(f"{doc.path}:{line}: no exercise '{exercise_id}' in the bank; its answers were ignored")
            continue
        known = {p.id for p in by_id[exercise_id].exercise.parts}
        for part_id in parts or {}:
            if part_id not in known:
                prepared.problems.append(f"{doc.path}:{doc.line_of(('answers', exercise_id, part_id))}: "
                                         f"exercise '{exercise_id}' has no part '{part_id}'")
        prepared.answers[exercise_id] = dict(parts or {})
    default = folder / (submission.code or "solution.py")
    sources: dict[Path, str | None] = {}
    for entry in entries:
        if not any(p.answer in ("function", "backprop") for p in entry.exercise.parts):
            continue
        own = folder / f"{entry.exercise.id}.py"
        path = own if own.is_file() else default
        if path not in sources:
            sources[path] = _read_code(path, folder, prepared.problems) if path.is_file() else None
        if sources[path] is not None:
            prepared.code[entry.exercise.id] = (path, sources[path])  # type: ignore[assignment]
    if submission.code and not default.is_file():
        prepared.problems.append(f"{doc.path}:{doc.line_of(('code',))}: code file {default} does not exist")
    return prepared


def read_submission(answers: Path, student: str | None, entries: list[Entry], bank_ids: set[str] | None = None) -> Prepared:
    if answers.is_dir():
        answers = answers / "answers.yaml"
    submission, doc = load(answers, Submission)
    return prepare(submission, doc, answers.parent, student, entries, bank_ids)


def run_submit(answers: Path, bank: Bank, *, student: str | None = None, only: list[str] | None = None,
               answered: bool = False, explain: bool = False, budget: float | None = None,
               code_timeout: float | None = None, helper: bool = True) -> Report:
    """`grade submit`: read, grade, return the report model.

    The code files' sandboxes are launched before the grader itself (sympy) is imported, so the
    children start up on another core while this process imports; with `helper`, a forked
    helper grades a share of the typed exercises on another core (grader/helper.py).
    """
    from grader.launch import launch
    from grader.sandbox import Limits

    entries = bank.select(ids=only)
    prepared = read_submission(answers, student, entries, set(bank.entries))
    if answered:
        entries = [e for e in entries if e.exercise.id in prepared.answers or e.exercise.id in prepared.code]
        if not entries:
            raise InputError("answers none of the bank's exercises", str(answers))
    limits = Limits() if code_timeout is None else Limits(call_seconds=code_timeout)
    with launch(prepared, entries, limits) as launched:
        from grader.grade import grade
        from grader.options import Options

        options = Options(explain=explain, limits=limits, helper=helper)
        if budget is not None:
            options.budget = budget
        return grade(prepared, entries, options, launched=launched)
