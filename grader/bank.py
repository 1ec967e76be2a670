"""The exercise bank: every YAML file of a folder, loaded and checked for shape.

Deliberately free of sympy so that `grade list` and `grade show` start fast.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from grader.errors import InputError, InvalidFiles

if TYPE_CHECKING:
    from grader.index import Summary
    from grader.loader import Document
    from grader.models import Exercise


def bundled_dir() -> Path:
    """The bank shipped with the package (also after a non-editable `pip install .`)."""
    import exercises

    return Path(exercises.__file__).parent


@dataclass(frozen=True)
class Entry:
    exercise: Exercise
    doc: Document

    @property
    def path(self) -> str:
        return self.doc.path


@dataclass(frozen=True)
class Bank:
    folder: Path
    entries: dict[str, Entry]

    def get(self, exercise_id: str) -> Entry:
        try:
            return self.entries[exercise_id]
        except KeyError:
            known = ", ".join(sorted(self.entries)[:8])
            raise InputError(f"no exercise '{exercise_id}' in {self.folder} (try `grade list`; e.g. {known})") from None

    def select(self, ids: list[str] | None = None, kinds: list[str] | None = None, tags: list[str] | None = None) -> list[Entry]:
        chosen = [self.get(i) for i in ids] if ids else list(self.entries.values())
        if kinds:
            chosen = [e for e in chosen if e.exercise.kind in kinds]
        if tags:
            chosen = [e for e in chosen if set(tags) & set(e.exercise.tags)]
        return chosen


def exercise_files(paths: list[Path]) -> list[Path]:
    """YAML files named directly or found (recursively) in the folders named, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.y*ml") if p.suffix in (".yaml", ".yml")))
        elif path.exists():
            files.append(path)
        else:
            raise InputError("no such file or folder", str(path))
    return files


def load_files(files: list[Path]) -> tuple[dict[str, Entry], list[InputError]]:
    """Load every file; collect every problem instead of stopping at the first."""
    from grader.loader import load
    from grader.models import Exercise

    entries: dict[str, Entry] = {}
    problems: list[InputError] = []
    for file in files:
        try:
            exercise, doc = load(file, Exercise)
        except InvalidFiles as exc:
            problems.extend(exc.problems)
            continue
        except InputError as exc:
            problems.append(exc)
            continue
        if exercise.id in entries:
            problems.append(InputError(f"exercise id '{exercise.id}' is also used by {entries[exercise.id].path}", str(file), doc.line_of(("id",))))
            continue
        entries[exercise.id] = Entry(exercise, doc)
    return entries, problems


def load_bank(folder: Path | None = None) -> Bank:
    """The bank in `folder` (default: the bundled one); any broken file stops us with every problem listed.
    An unchanged bank is read back from the cache (grader/index.py) instead of parsed again."""
    from grader import index

    folder = folder if folder is not None else bundled_dir()
    if not folder.is_dir():
        raise InputError("is not a folder of exercise files", str(folder))
    files = exercise_files([folder])
    cached = index.read_bank(folder, files)
    if cached is not None:
        return Bank(folder, cached)
    entries, problems = load_files(files)
    if problems:
        raise InvalidFiles(problems)
    if not entries:
        raise InputError("contains no exercise files (*.yaml)", str(folder))
    bank = Bank(folder, dict(sorted(entries.items(), key=lambda kv: _order_key(kv[1]))))
    index.write_bank(folder, files, bank.entries)
    return bank


def summaries(folder: Path | None = None) -> list["Summary"]:
    """Light summaries of every exercise (list, show): from the index when the bank is unchanged."""
    from grader import index

    folder = folder if folder is not None else bundled_dir()
    files = exercise_files([folder]) if folder.is_dir() else []
    cached = index.read(folder, files)
    if cached is not None:
        return cached
    bank = load_bank(folder)
    result = [summarize(entry) for entry in bank.entries.values()]
    index.write(folder, files, result)
    return result


def summarize(entry: Entry) -> "Summary":
    from grader.index import PartSummary, Summary

    exercise = entry.exercise
    return Summary(
        id=exercise.id, title=exercise.title, kind=exercise.kind, tags=list(exercise.tags), prompt=exercise.prompt,
        params={name: spec.model_dump() for name, spec in exercise.params.items()},
        parts=[PartSummary(p.id, p.prompt, p.points, p.answer, p.entry) for p in exercise.parts],
        points=exercise.points, path=entry.path,
    )


def _order_key(entry: Entry) -> tuple:
    """Bank order: file name order (files are numbered from the single chain rule up to backprop)."""
    return (Path(entry.path).name,)
