"""`grade batch` and `grade ci-template`: a small class graded through the real CLI and the library.

The class uses a three-exercise bank written here (one randomized, one with a code part), so
that every CLI run stays around a second. Students: alice (right, id in the file), bob (partly
wrong, id from the folder name), carol (empty answers.yaml), dave (broken YAML), erin (no
answers.yaml). A looping solution is graded through `run_batch` with small sandbox limits.
"""
from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from conftest import running
from grader import batch as batch_module
from grader import grade as grade_module
from grader.bank import load_bank
from grader.batch import WORKER_DIED, Shard, _Progress, run_batch
from grader.ci import ci_recipe
from grader.errors import InputError
from grader.options import Options
from grader.sandbox import Limits
from grader.variants import draw

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, str(ROOT / "cli.py")]
FOLDERS = ["alice", "bob", "carol", "dave", "erin"]
GRADED = ["alice", "bob", "carol"]
PARTS_PER_REPORT = 4
FORK_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the patched function reaches workers through fork")

BANK = {
    "01-power.yaml": """
        id: power
        title: Power of a quadratic
        kind: composite
        variables: [x]
        define:
          u: x^2 + 1
          y: u^3
        parts:
          - id: dydx
            points: 2
            derivative: {of: y, wrt: x}
    """,
    "02-scaled-sine.yaml": """
        id: scaled-sine
        title: Sine of a multiple
        kind: composite
        variables: [x]
        params:
          a: {choices: [2, 3]}
        define:
          y: sin(a*x)
        prompt: Let $y = \\sin({a} x)$.
        parts:
          - id: dydx
            derivative: {of: y, wrt: x}
    """,
    "03-bell.yaml": """
        id: bell
        title: Bell curve, in formula and in code
        kind: composite
        variables: [x]
        define:
          u: -(x^2)/2
          y: e^u
        parts:
          - id: formula
            derivative: {of: y, wrt: x}
          - id: code
            points: 2
            answer: function
            entry: dydx
            derivative: {of: y, wrt: x}
    """,
}

RIGHT_CODE = """
    import math


    def dydx(x):
        return -x * math.exp(-x * x / 2)
"""
WRONG_CODE = """
    import math


    def dydx(x):
        return math.exp(-x * x / 2)
"""
LOOPING_CODE = """
    def dydx(x):
        while True:
            pass
"""


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


def _answers(student: str | None, a: int, right: bool) -> str:
    header = f"student: {student}\n" if student else ""
    power = "6x(x^2+1)^2" if right else "3(x^2+1)^2"
    sine = f"{a} cos({a} x)" if right else "cos(x)"
    return header + textwrap.dedent(f"""
        answers:
          power:
            dydx: {power}
          scaled-sine:
            dydx: {sine}
          bell:
            formula: -x e^(-x^2/2)
    """).lstrip()


def _variant_a(bank_dir: Path, student: str) -> int:
    return int(draw(load_bank(bank_dir).get("scaled-sine").exercise, student)["a"])


@dataclass(frozen=True)
class Class:
    bank: Path
    folder: Path


@pytest.fixture(scope="module")
def klass(tmp_path_factory: pytest.TempPathFactory) -> Class:
    root = tmp_path_factory.mktemp("batch")
    bank = root / "bank"
    for name, text in BANK.items():
        _write(bank / name, text)
    folder = root / "class"
    _write(folder / "alice" / "answers.yaml", _answers("alice@example.edu", _variant_a(bank, "alice@example.edu"), right=True))
    _write(folder / "alice" / "solution.py", RIGHT_CODE)
    _write(folder / "bob" / "answers.yaml", _answers(None, _variant_a(bank, "bob"), right=False))
    _write(folder / "bob" / "solution.py", WRONG_CODE)
    _write(folder / "carol" / "answers.yaml", "")
    _write(folder / "dave" / "answers.yaml", "answers:\n  power: {dydx: [unclosed\n")
    _write(folder / "erin" / "solution.py", RIGHT_CODE)
    _write(folder / ".git" / "answers.yaml", "answers: {}\n")
    _write(folder / "README.txt", "not a submission\n")
    return Class(bank, folder)


def _grade(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def _batch(klass: Class, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return _grade("batch", klass.folder, "--exercises", klass.bank, *args)


_RUNS: dict[tuple, subprocess.CompletedProcess[str]] = {}


def _batch_once(klass: Class, *args: str) -> subprocess.CompletedProcess[str]:
    """Several tests read the same run; grade it once per test process."""
    key = (klass.folder, args)
    if key not in _RUNS:
        _RUNS[key] = _batch(klass, *args)
    return _RUNS[key]


def _json_entries(run: subprocess.CompletedProcess[str]) -> list[dict]:
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# ---------------------------------------------------------------- the CLI

def test_gradebook_matches_grade_submit_one_by_one(klass: Class, tmp_path: Path) -> None:
    out = tmp_path / "grades.csv"
    run = _batch(klass, "--jobs", "2", "--output", out)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""
    rows = {row["submission"]: row for row in csv.DictReader(io.StringIO(out.read_text(encoding="utf-8")))}
    assert list(rows) == FOLDERS
    assert rows["alice"]["student"] == "alice@example.edu"
    assert rows["bob"]["student"] == "bob"
    for folder in GRADED:
        extra = [] if folder == "alice" else ["--student", folder]
        alone = _grade("submit", klass.folder / folder / "answers.yaml", "--exercises", klass.bank, "--format", "json", *extra)
        assert alone.returncode == 0, alone.stderr
        report = json.loads(alone.stdout)
        assert (float(rows[folder]["score"]), float(rows[folder]["max_score"])) == (report["score"], report["max_score"])
        for exercise in report["exercises"]:
            assert float(rows[folder][exercise["id"]]) == exercise["score"]
    assert float(rows["alice"]["score"]) == float(rows["alice"]["max_score"]) == 6
    assert 0 < float(rows["bob"]["score"]) < 6
    assert float(rows["carol"]["score"]) == 0


def test_broken_submissions_are_listed_with_a_reason(klass: Class) -> None:
    entries = {e["folder"]: e for e in _json_entries(_batch_once(klass, "--format", "json", "--jobs", "2"))}
    assert set(entries) == set(FOLDERS)
    assert "YAML syntax" in entries["dave"]["error"] and "dave" in entries["dave"]["error"]
    assert "no such file" in entries["erin"]["error"] and "answers.yaml" in entries["erin"]["error"]
    assert all("error" not in entries[f] and entries[f]["report"] for f in GRADED)
    carol = entries["carol"]["report"]
    assert {p["status"] for e in carol["exercises"] for p in e["parts"]} == {"missing"}


def test_output_is_identical_whatever_the_jobs(klass: Class) -> None:
    one = _batch_once(klass, "--format", "json", "--jobs", "1")
    two = _batch_once(klass, "--format", "json", "--jobs", "2")
    assert one.returncode == two.returncode == 0, one.stderr + two.stderr
    assert one.stdout == two.stdout


def test_shards_partition_the_class(klass: Class) -> None:
    whole = _json_entries(_batch_once(klass, "--format", "json", "--jobs", "2"))
    first = _json_entries(_batch_once(klass, "--format", "json", "--shard", "1/2"))
    second = _json_entries(_batch_once(klass, "--format", "json", "--shard", "2/2"))
    assert [e["folder"] for e in first] == FOLDERS[0::2]
    assert [e["folder"] for e in second] == FOLDERS[1::2]
    assert sorted(first + second, key=lambda e: e["folder"]) == whole


def test_junit_has_one_testcase_per_part_and_fail_under_exits_1(klass: Class) -> None:
    run = _batch_once(klass, "--format", "junit", "--fail-under", "50")
    assert run.returncode == 1, run.stderr
    root = ET.fromstring(run.stdout)
    suites = {suite.get("name"): suite for suite in root.iter("testsuite")}
    assert set(suites) == {"alice@example.edu", "bob", "carol", "dave", "erin"}
    for name in ("alice@example.edu", "bob", "carol"):
        cases = suites[name].findall("testcase")
        assert len(cases) == PARTS_PER_REPORT
        assert {(c.get("classname"), c.get("name")) for c in cases} == {
            ("power", "dydx"), ("scaled-sine", "dydx"), ("bell", "formula"), ("bell", "code")}
    assert suites["dave"].find("testcase/error") is not None
    assert int(root.get("tests", "0")) == 3 * PARTS_PER_REPORT + 2


def test_gradescope_has_score_and_tests(klass: Class) -> None:
    items = {i["submission"]: i for i in _json_entries(_batch_once(klass, "--format", "gradescope"))}
    assert items["alice"]["score"] == 6
    assert len(items["alice"]["tests"]) == PARTS_PER_REPORT
    assert all({"name", "score", "max_score"} <= set(test) for test in items["bob"]["tests"])
    assert items["dave"]["score"] == 0 and items["dave"]["tests"] == []


def test_markdown_table_and_passing_shard(klass: Class) -> None:
    run = _batch_once(klass, "--format", "markdown", "--shard", "1/5", "--fail-under", "90")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert "| Submission | Student | Score | Note |" in lines
    assert [line for line in lines if line.startswith("| alice ")] == ["| alice | alice@example.edu | 6/6 | |"]
    assert not any(line.startswith("| bob ") for line in lines)
    under = _batch(klass, "--format", "markdown", "--shard", "2/5", "--fail-under", "90")
    assert under.returncode == 1, under.stderr


@pytest.mark.parametrize("args, message", [
    (["--shard", "3/2"], "1 <= K <= N"),
    (["--shard", "first"], "K/N"),
    (["--jobs", "0"], "--jobs"),
])
def test_bad_options_exit_2_with_a_message(klass: Class, args: list[str], message: str) -> None:
    run = _batch(klass, *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert run.stdout == ""


def test_a_folder_without_submissions_exits_2(tmp_path: Path) -> None:
    run = _grade("batch", tmp_path)
    assert run.returncode == 2
    assert "no submission folders" in run.stderr and "Traceback" not in run.stderr


# ---------------------------------------------------------------- the library

def _looping_class(root: Path, klass: Class) -> Path:
    folder = root / "loop-class"
    _write(folder / "alice" / "answers.yaml", (klass.folder / "alice" / "answers.yaml").read_text(encoding="utf-8"))
    _write(folder / "alice" / "solution.py", RIGHT_CODE)
    _write(folder / "frank" / "answers.yaml", "answers:\n  power: {dydx: 6x(x^2+1)^2}\n")
    _write(folder / "frank" / "solution.py", LOOPING_CODE)
    return folder


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_looping_solution_times_out_and_others_are_graded(klass: Class, tmp_path: Path, jobs: int) -> None:
    folder = _looping_class(tmp_path, klass)
    started = time.monotonic()
    entries = run_batch(folder, klass.bank, jobs=jobs, shard=None, progress=False,
                        limits=Limits(call_seconds=0.5, total_seconds=3.0, cpu_seconds=3))
    assert time.monotonic() - started < 20
    alice, frank = entries
    assert alice.report is not None and alice.report.score == 6
    assert frank.report is not None and frank.error is None
    statuses = {(e.id, p.id): p.status for e in frank.report.exercises for p in e.parts}
    assert statuses[("bell", "code")] == "timeout"
    assert statuses[("power", "dydx")] == "correct"


def test_the_next_students_sandbox_waits_out_a_slow_submission_without_losing_time(klass: Class, tmp_path: Path) -> None:
    """With --jobs 1 the next folder's sandbox starts while the current one is graded; a looping
    student before it must not use up the next student's total time budget."""
    folder = tmp_path / "slow-first"
    _write(folder / "aaron" / "answers.yaml", "answers:\n  power: {dydx: 6x(x^2+1)^2}\n")
    _write(folder / "aaron" / "solution.py", LOOPING_CODE)
    _write(folder / "zoe" / "answers.yaml", (klass.folder / "alice" / "answers.yaml").read_text(encoding="utf-8"))
    _write(folder / "zoe" / "solution.py", RIGHT_CODE)
    aaron, zoe = run_batch(folder, klass.bank, jobs=1, shard=None, progress=False,
                           limits=Limits(call_seconds=1.0, total_seconds=1.0, cpu_seconds=3))
    assert aaron.report is not None
    assert {p.status for e in aaron.report.exercises for p in e.parts if p.id == "code"} == {"timeout"}
    assert zoe.report is not None and zoe.report.score == 6


def _children() -> set[int]:
    """Live (not zombie) children of this process, from /proc."""
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        for pid in (task / "children").read_text().split():
            stat = Path(f"/proc/{pid}/stat")
            if stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z":
                found.add(int(pid))
    return found


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc")
def test_stopping_a_batch_early_leaves_no_sandboxrunning(klass: Class, tmp_path: Path) -> None:
    folder = tmp_path / "two"
    for name in ("ann", "ben"):
        _write(folder / name / "answers.yaml", "answers:\n  power: {dydx: 6x(x^2+1)^2}\n")
        _write(folder / name / "solution.py", RIGHT_CODE)
    before = _children()
    entries = load_bank(klass.bank).select()
    graded = batch_module.grade_folders(sorted(folder.iterdir()), entries, Options())
    first = next(graded)
    assert first.report is not None
    assert _children() - before, "ben's sandbox should be running while ann's entry is handed out"
    graded.close()
    assert _children() - before == set()


@pytest.mark.parametrize("jobs", [1, pytest.param(2, marks=FORK_ONLY)])
def test_an_unexpected_exception_is_recorded(klass: Class, monkeypatch: pytest.MonkeyPatch, jobs: int) -> None:
    real = grade_module.grade

    def grade_or_fail(prepared, entries, options, **keywords):
        if prepared.student == "bob":
            raise RuntimeError("boom")
        return real(prepared, entries, options, **keywords)

    monkeypatch.setattr(grade_module, "grade", grade_or_fail)
    entries = {e.folder: e for e in run_batch(klass.folder, klass.bank, jobs=jobs, shard=None, progress=False)}
    assert entries["bob"].report is None
    assert entries["bob"].error == "internal error (please report it): RuntimeError: boom"
    assert entries["alice"].report is not None and entries["carol"].report is not None


def _kill_the_worker_grading(student: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the worker process dies (as out of memory would) on this student's submission."""
    real = grade_module.grade

    def grade_or_die(prepared, entries, options, **keywords):
        if prepared.student == student:
            os._exit(9)
        return real(prepared, entries, options, **keywords)

    monkeypatch.setattr(grade_module, "grade", grade_or_die)


@FORK_ONLY
def test_a_dying_worker_costs_only_its_own_submission(klass: Class, monkeypatch: pytest.MonkeyPatch) -> None:
    _kill_the_worker_grading("bob", monkeypatch)
    entries = {e.folder: e for e in run_batch(klass.folder, klass.bank, jobs=2, shard=None, progress=False)}
    assert entries["bob"].error == WORKER_DIED
    assert entries["alice"].report is not None and entries["alice"].report.score == 6
    assert entries["carol"].report is not None
    assert "YAML syntax" in (entries["dave"].error or "")


@FORK_ONLY
def test_a_dying_worker_in_a_run_of_folders_costs_only_its_own_submission(klass: Class, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers get runs of consecutive folders; when one dies, the rest of its run is graded again."""
    folder = tmp_path / "twelve"
    names = [f"s{index:02d}" for index in range(12)]
    for name in names:
        _write(folder / name / "answers.yaml", "answers:\n  power: {dydx: 6x(x^2+1)^2}\n")
    _kill_the_worker_grading("s05", monkeypatch)
    assert len(batch_module._chunks([folder / name for name in names], 2)[0]) > 1
    entries = {e.folder: e for e in run_batch(folder, klass.bank, jobs=2, shard=None, progress=False)}
    assert entries["s05"].error == WORKER_DIED
    for name in names:
        if name != "s05":
            assert entries[name].report is not None, name
            assert entries[name].report.exercises[0].parts[0].status == "correct"


def test_the_student_id_comes_from_the_file_else_the_folder(klass: Class) -> None:
    entries = run_batch(klass.folder, klass.bank, jobs=1, shard="1/1", progress=False)
    students = {e.folder: e.report.student for e in entries if e.report is not None}
    assert students == {"alice": "alice@example.edu", "bob": "bob", "carol": "carol"}


def test_an_empty_shard_is_an_empty_list(klass: Class) -> None:
    assert run_batch(klass.folder, klass.bank, jobs=2, shard="7/7", progress=False) == []


def test_shard_rule() -> None:
    shard = Shard.parse(" 2 / 3 ")
    assert [p for p in range(9) if shard.holds(p)] == [1, 4, 7]
    with pytest.raises(InputError):
        Shard.parse("0/3")
    with pytest.raises(InputError):
        Shard.parse("1/0")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_terminal() -> None:
    screen = _Terminal()
    bar = _Progress(4, True, screen)
    for _ in range(4):
        bar.tick()
    bar.close()
    assert screen.getvalue().endswith(f"\r[{'#' * _Progress.WIDTH}] 4/4\n")
    assert f"\r[{'#' * 7}{' ' * 23}] 1/4" in screen.getvalue()
    quiet = io.StringIO()
    bar = _Progress(4, True, quiet)
    bar.tick()
    bar.close()
    assert quiet.getvalue() == ""


# ---------------------------------------------------------------- ci-template

def test_github_recipe_is_a_workflow_that_grades_and_uploads() -> None:
    text = ci_recipe("github")
    workflow = yaml.safe_load(text)
    assert "push" in workflow[True]  # YAML 1.1 reads the key `on` as true
    steps = workflow["jobs"]["grade"]["steps"]
    runs = "\n".join(step.get("run", "") for step in steps)
    assert 'grade submit answers.yaml --format markdown >> "$GITHUB_STEP_SUMMARY"' in runs
    assert "--format junit --output grade-junit.xml" in runs and "--fail-under" in runs
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["path"] == "grade-junit.xml"


def test_gradescope_recipe_is_valid_bash(tmp_path: Path) -> None:
    text = ci_recipe("gradescope")
    assert "--format gradescope --output \"$RESULTS\"" in text
    assert "RESULTS=/autograder/results/results.json" in text and "setup.sh" in text
    script = tmp_path / "run_autograder"
    script.write_text(text, encoding="utf-8")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0


def test_unknown_ci_kind() -> None:
    with pytest.raises(InputError, match="github, gradescope"):
        ci_recipe("jenkins")
    run = _grade("ci-template", "--kind", "jenkins")
    assert run.returncode == 2 and "unknown CI kind" in run.stderr


def test_hostile_strings_leave_every_format_valid(klass: Class, tmp_path: Path) -> None:
    """A student id with control characters and a spreadsheet formula, and code printing escapes and
    `]]>`: the JUnit file still parses, no terminal escape reaches text or Markdown, and the CSV
    cell is not a formula."""
    folder = tmp_path / "class"
    nasty = '=HYPERLINK("http://evil","x")\x01\x1b[31m'
    _write(folder / "mallory" / "answers.yaml", json.dumps({"student": nasty, "answers": {}}))
    _write(folder / "mallory" / "solution.py", 'print("\\x01\\x02\\x1b]]></system-out>", end="")\n' + textwrap.dedent(RIGHT_CODE))
    _write(folder / "alice" / "answers.yaml", _answers("alice@example.edu", _variant_a(klass.bank, "alice@example.edu"), right=True))
    _write(folder / "alice" / "solution.py", RIGHT_CODE)
    outputs = {}
    for fmt in ("junit", "text", "markdown", "csv", "json", "gradescope"):
        run = subprocess.run([*CLI, "batch", str(folder), "--exercises", str(klass.bank), "--format", fmt, "--jobs", "1"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        outputs[fmt] = run.stdout
    root = ET.fromstring(outputs["junit"])
    assert {suite.get("name") for suite in root.iter("testsuite")} == {"alice@example.edu", '=HYPERLINK("http://evil","x")\\x01\\x1b[31m'}
    assert any("\\x1b]]></system-out>" in (out.text or "") for out in root.iter("system-out"))
    for fmt in ("junit", "text", "markdown", "csv"):
        assert "\x1b" not in outputs[fmt] and "\x01" not in outputs[fmt], fmt
    rows = {row["submission"]: row for row in csv.DictReader(io.StringIO(outputs["csv"]))}
    assert rows["mallory"]["student"].startswith("'=HYPERLINK")
    assert json.loads(outputs["json"])[1]["report"]["student"] == nasty, "JSON keeps the data, escaped"
    json.loads(outputs["gradescope"])


def _descendants(root: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@FORK_ONLY
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_killed_batch_leaves_no_worker_fork_server_or_sandbox(klass: Class, tmp_path: Path, how: int) -> None:
    """Workers blocked on their task queue used to outlive a batch killed with SIGTERM or SIGKILL,
    with their fork servers: they now die with it, and their sandboxes with them."""
    folder = tmp_path / "class"
    for name in ("ann", "ben", "cal", "dee"):
        _write(folder / name / "answers.yaml", "answers:\n  power: {dydx: 6x(x^2+1)^2}\n")
        _write(folder / name / "solution.py", LOOPING_CODE)
    batch = subprocess.Popen([*CLI, "batch", str(folder), "--exercises", str(klass.bank), "--jobs", "2"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    spawned: set[int] = set()
    while len(spawned) < 4 and time.monotonic() < deadline:   # 2 workers and their fork servers, at least
        spawned |= _descendants(batch.pid)
        time.sleep(0.1)
    assert len(spawned) >= 4, spawned
    time.sleep(1.0)
    spawned |= _descendants(batch.pid)
    os.kill(batch.pid, how)
    batch.wait(timeout=30)
    deadline = time.monotonic() + 10
    while running(spawned) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(spawned), "processes of the batch outlived it"
