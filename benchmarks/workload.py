"""The workload both benchmarks time: a bank of at least N parts and one submission answering it.

The bank is the bundled one, plus copies of its exercises (in file order) under new ids until it
has enough parts; the submission is examples/sample (answers.yaml and solution.py, so code parts
run in a real sandbox) with the same answers under the copies' ids. Copies compile their own
references, as distinct exercises would.
"""
from __future__ import annotations

import compileall
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "cli.py")]
SAMPLE = ROOT / "examples" / "sample"
BUNDLED = ROOT / "exercises"
COPY_SUFFIX = "-copy"

sys.path.insert(0, str(ROOT))
from grader.bank import load_bank  # noqa: E402 - the checkout's grader, whatever is installed


def compile_checkout() -> None:
    """Write the checkout's .pyc files, as `pip install` does for an installed grade.

    Python writes them on first import anyway, unless PYTHONDONTWRITEBYTECODE is set (some
    containers set it); then every run would recompile our 8000 lines and time that instead.
    """
    for package in ("grader", "reference", "exercises"):
        compileall.compile_dir(ROOT / package, quiet=1)
    compileall.compile_file(ROOT / "cli.py", quiet=1)


def build_bank(folder: Path, parts: int) -> list[str]:
    """The bundled bank, then copies of its exercises under new ids until it has `parts` parts; returns the copied ids."""
    shutil.copytree(BUNDLED, folder, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    count = sum(len(entry.exercise.parts) for entry in load_bank(folder).entries.values())
    copied: list[str] = []
    for entry in load_bank(folder).entries.values():
        if count >= parts:
            break
        source = Path(entry.path)
        text = re.sub(r"^id: *(\S+)", rf"id: \g<1>{COPY_SUFFIX}", source.read_text(encoding="utf-8"), count=1, flags=re.M)
        (folder / f"copy-{source.name}").write_text(text, encoding="utf-8")
        copied.append(entry.exercise.id)
        count += len(entry.exercise.parts)
    return copied


def build_submission(folder: Path, copied: list[str]) -> Path:
    """examples/sample, answering the copied exercises exactly as their originals; returns its answers.yaml."""
    shutil.copytree(SAMPLE, folder)
    answers_file = folder / "answers.yaml"
    data = yaml.safe_load(answers_file.read_text(encoding="utf-8"))
    for exercise_id in copied:
        if exercise_id in data["answers"]:
            data["answers"][exercise_id + COPY_SUFFIX] = dict(data["answers"][exercise_id])
    answers_file.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return answers_file


def count_parts(bank: Path) -> int:
    return sum(len(entry.exercise.parts) for entry in load_bank(bank).entries.values())


_MEASURE_PEAK = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_memory_mb(command: list[str]) -> float:
    """Max RSS of the largest process in the command's tree (the command, a worker, a sandbox).

    Measured from a fresh helper process, whose waited-for descendants are only this command's,
    so nothing timed earlier in this run counts; Linux reports KiB.
    """
    done = subprocess.run([sys.executable, "-c", _MEASURE_PEAK, *command], capture_output=True, text=True, check=True)
    return int(done.stdout.strip()) / 1024
