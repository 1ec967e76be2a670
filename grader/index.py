"""Small on-disk caches of a bank, so that no run parses an unchanged bank again.

Loading a bank properly means YAML parsing and pydantic validation (whose import and
model set-up alone cost several times a bare Python start). The light commands only
need a summary of each exercise, so after a full load we store the summaries as JSON
in the user's cache folder, keyed by the bank folder and checked against every file's
size and modification time: any change to the bank means a full load again. The
grading commands need the whole loaded bank: it is pickled beside the summaries,
checked against every file's bytes and this grader's own code (see `code_stamp`).
Set CHAIN_GRADER_CACHE to another folder, or to "off" to disable caching.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

INDEX_VERSION = 1


@dataclass(frozen=True)
class PartSummary:
    id: str
    prompt: str
    points: float
    answer: str
    entry: str | None


@dataclass(frozen=True)
class Summary:
    """What list and show need of an exercise; attribute names match grader.models.Exercise."""

    id: str
    title: str
    kind: str
    tags: list[str]
    prompt: str
    params: dict[str, dict[str, Any]]
    parts: list[PartSummary]
    points: float
    path: str

    @classmethod
    def from_plain(cls, data: dict[str, Any]) -> "Summary":
        return cls(**{**data, "parts": [PartSummary(**p) for p in data["parts"]]})


def cache_dir() -> Path | None:
    setting = os.environ.get("CHAIN_GRADER_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    if setting:
        return Path(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chain-grader"


@lru_cache(maxsize=1)
def code_stamp() -> str:
    """Python's version and the sizes and mtimes of the grader's and the reference's sources: a
    cache written by other code (an edited or upgraded grader) is never read back."""
    root = Path(__file__).resolve().parent.parent
    stamps = [sys.version]
    for package in ("grader", "reference"):
        for file in sorted((root / package).glob("*.py")):
            info = file.stat()
            stamps.append(f"{file.name}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("|".join(stamps).encode()).hexdigest()


def _stamp(files: list[Path]) -> list[list]:
    stamps = []
    for file in files:
        info = file.stat()
        stamps.append([str(file), info.st_size, info.st_mtime_ns])
    return stamps


def _index_file(folder: Path) -> Path | None:
    where = cache_dir()
    if where is None:
        return None
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:24]
    return where / f"index-{key}.json"


def read(folder: Path, files: list[Path]) -> list[Summary] | None:
    """The cached summaries, if the cache exists and every file is unchanged."""
    path = _index_file(folder)
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != INDEX_VERSION or data.get("files") != _stamp(files):
            return None
        return [Summary.from_plain(item) for item in data["exercises"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write(folder: Path, files: list[Path], summaries: list[Summary]) -> None:
    """Best effort: a read-only home or a full disk only means no cache."""
    path = _index_file(folder)
    if path is None:
        return
    payload = {"version": INDEX_VERSION, "files": _stamp(files), "exercises": [asdict(s) for s in summaries]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(payload), encoding="utf-8")
        os.replace(temporary, path)
    except OSError:
        return


def _bank_file(folder: Path) -> Path | None:
    index = _index_file(folder)
    return index.with_name(index.name.replace("index-", "bank-", 1)).with_suffix(".pickle") if index else None


def _contents_key(files: list[Path]) -> str | None:
    """A digest of every file's path and bytes, of this grader and of pydantic (the models' pickles)."""
    from pydantic import VERSION

    from grader.loader import MAX_FILE_BYTES, read_regular

    digest = hashlib.sha256(f"{code_stamp()}\x00{VERSION}".encode())
    for file in files:
        try:
            data = read_regular(file, MAX_FILE_BYTES)
        except OSError:
            return None
        digest.update(f"\x00{file}\x00{len(data)}\x00".encode())
        digest.update(data)
    return digest.hexdigest()


def read_bank(folder: Path, files: list[Path]) -> Any:
    """The entries of a bank loaded earlier from exactly these files' bytes by this grader, else None."""
    path = _bank_file(folder)
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            stored = pickle.load(handle)
        key = _contents_key(files)
        return stored["entries"] if key is not None and stored["key"] == key else None
    except Exception:  # noqa: BLE001 - a damaged or foreign cache file only means a full load
        return None


def write_bank(folder: Path, files: list[Path], entries: Any) -> None:
    """Best effort, atomic: a read-only home or a full disk only means no cache."""
    path = _bank_file(folder)
    key = _contents_key(files)
    if path is None or key is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            pickle.dump({"key": key, "entries": entries}, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temporary, path)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        return


def select(summaries: list[Summary], kinds: list[str] | None = None, tags: list[str] | None = None) -> list[Summary]:
    chosen = summaries
    if kinds:
        chosen = [s for s in chosen if s.kind in kinds]
    if tags:
        chosen = [s for s in chosen if set(tags) & set(s.tags)]
    return chosen
