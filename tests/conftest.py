"""Shared helpers: run the real `grade` command line in a child process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


def grade(*args: str, cwd: Path | None = None, timeout: float = 120) -> Run:
    """The real CLI, as a user runs it (python cli.py == the installed `grade` entry point)."""
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def bank_with(folder: Path, name: str, text: str) -> Path:
    """A bank folder `folder/bank` holding one exercise file (more can be written into it)."""
    bank = folder / "bank"
    bank.mkdir()
    (bank / name).write_text(text)
    return bank


def submit_parts(folder: Path, bank: Path, answers: str) -> dict[tuple[str, str], dict]:
    """`grade submit` of an answers.yaml holding `answers`, against `bank`: its parts by (exercise, part)."""
    file = folder / "answers.yaml"
    file.write_text(answers)
    run = grade("submit", file, "--exercises", bank, "--format", "json")
    assert run.code == 0, run.err
    return parts_of(run.json())


def running(pids: set[int]) -> set[int]:
    """Those of `pids` not yet ended, from /proc (a zombie waiting for its reaper has ended)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def parts_of(report: dict) -> dict[tuple[str, str], dict]:
    return {(e["id"], p["id"]): p for e in report["exercises"] for p in e["parts"]}


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Each test session gets its own bank-index cache, inherited by every `grade` it runs."""
    os.environ["CHAIN_GRADER_CACHE"] = str(tmp_path_factory.mktemp("cache"))
