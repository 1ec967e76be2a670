"""Code answers end to end: real solution files, the real CLI, the real child process (issue 3)."""
from __future__ import annotations

import glob
import shutil
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, grade, parts_of

BANK = FIXTURES / "code_bank"
SOLUTIONS = FIXTURES / "solutions"
GOOD = sorted(p.name for p in SOLUTIONS.glob("good_*.py"))
HOSTILE = sorted(p.name for p in SOLUTIONS.glob("hostile_*.py"))


def submit(tmp_path: Path, solution: str | Path, *extra: str) -> tuple[dict, float]:
    folder = tmp_path / "student"
    folder.mkdir()
    (folder / "answers.yaml").write_text("student: s1\nanswers:\n  square-chain:\n    formula: 2x cos(x^2)\n")
    shutil.copy(SOLUTIONS / solution, folder / "solution.py")
    started = time.monotonic()
    run = grade("submit", folder / "answers.yaml", "--exercises", BANK, "--format", "json", "--code-timeout", "1", *extra)
    elapsed = time.monotonic() - started
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    return run.json(), elapsed


def orphaned_sandboxes(settle: float = 3.0) -> list[str]:
    """Sandbox processes whose grader has gone (reparented to init) and that are still there after
    `settle` seconds: leaks. A test elsewhere that kills a batch worker on purpose leaves orphans
    that end within milliseconds, once they read end-of-file from the dead grader's pipes."""
    deadline = time.monotonic() + settle
    while (found := _orphans()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def _orphans() -> list[str]:
    found = []
    for proc in glob.glob("/proc/[0-9]*"):
        try:
            text = Path(proc, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            status = Path(proc, "status").read_text()
        except OSError:
            continue
        parent = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        if "sandbox_child.py" in text and parent == "1":
            found.append(text)
    return found


@pytest.mark.parametrize("solution", GOOD)
def test_correct_solutions_and_their_harmless_variants_score_full_marks(tmp_path: Path, solution: str):
    report, _ = submit(tmp_path, solution)
    parts = parts_of(report)
    assert parts[("square-chain", "code")]["status"] == "correct", parts[("square-chain", "code")]
    grads = parts[("relu-net", "grads")]
    assert grads["status"] == "correct", grads["feedback"]
    assert grads["gradients"] == {"W1": "correct", "b1": "correct", "W2": "correct", "b2": "correct"}
    assert report["score"] == report["max_score"]


@pytest.mark.parametrize("solution", HOSTILE)
def test_hostile_solutions_are_contained_and_never_correct(tmp_path: Path, solution: str):
    before = set(glob.glob("/tmp/pwned-e2e-*"))
    report, elapsed = submit(tmp_path, solution)
    parts = parts_of(report)
    assert parts[("square-chain", "formula")]["status"] == "correct"
    assert parts[("square-chain", "code")]["status"] in ("incorrect", "error", "timeout")
    grads = parts[("relu-net", "grads")]
    assert grads["status"] in ("incorrect", "error", "timeout")
    assert grads["score"] == 0
    assert elapsed < 45
    assert set(glob.glob("/tmp/pwned-e2e-*")) == before
    assert orphaned_sandboxes() == []


def test_a_class_of_good_and_hostile_solutions_through_grade_batch(tmp_path: Path):
    """`grade batch` forks its sandboxes from a fork server: the same containment must hold there."""
    klass = tmp_path / "class"
    for solution in GOOD + HOSTILE:
        folder = klass / Path(solution).stem
        folder.mkdir(parents=True)
        (folder / "answers.yaml").write_text("student: s1\nanswers:\n  square-chain:\n    formula: 2x cos(x^2)\n")
        shutil.copy(SOLUTIONS / solution, folder / "solution.py")
    before = set(glob.glob("/tmp/pwned-e2e-*"))
    run = grade("batch", klass, "--exercises", BANK, "--jobs", "2", "--no-progress", "--format", "json")
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    reports = {entry["folder"]: entry["report"] for entry in run.json()}
    assert set(reports) == {Path(name).stem for name in GOOD + HOSTILE}
    for name, report in reports.items():
        statuses = {(e["id"], p["id"]): p["status"] for e in report["exercises"] for p in e["parts"]}
        expected = "correct" if name.startswith("good_") else None
        for part in (("square-chain", "code"), ("relu-net", "grads")):
            if expected:
                assert statuses[part] == expected, (name, part)
            else:
                assert statuses[part] in ("incorrect", "error", "timeout"), (name, part)
    assert set(glob.glob("/tmp/pwned-e2e-*")) == before
    assert orphaned_sandboxes() == []


def test_forged_output_is_shown_as_the_students_output_only(tmp_path: Path):
    report, _ = submit(tmp_path, "hostile_forged.py")
    code = parts_of(report)[("square-chain", "code")]
    assert code["status"] == "incorrect"
    assert '"score": 100' in code["output"]
    assert report["student"] == "s1" and report["score"] < report["max_score"]


def test_a_timeout_names_the_limit(tmp_path: Path):
    report, _ = submit(tmp_path, "hostile_loop.py")
    code = parts_of(report)[("square-chain", "code")]
    assert code["status"] == "timeout"
    assert "1 s" in code["feedback"]


def test_state_kept_between_calls_is_caught(tmp_path: Path):
    source = (SOLUTIONS / "good_plain.py").read_text().replace(
        "def backward(params, x, y):\n",
        "CALLS = []\n\n\ndef backward(params, x, y):\n    CALLS.append(1)\n    if len(CALLS) > 1:\n        params = {k: v * 2 for k, v in params.items()}\n")
    (tmp_path / "stateful.py").write_text(source)
    report, _ = submit(tmp_path, tmp_path / "stateful.py")
    grads = parts_of(report)[("relu-net", "grads")]
    assert grads["status"] == "incorrect"
    assert "second call" in grads["feedback"]


def test_a_function_answer_is_diagnosed_like_an_expression(tmp_path: Path):
    (tmp_path / "forgot.py").write_text("import math\n\n\ndef dydx(x):\n    return math.cos(x * x)\n")
    report, _ = submit(tmp_path, tmp_path / "forgot.py")
    code = parts_of(report)[("square-chain", "code")]
    assert code["status"] == "incorrect"
    assert code["mistake"] == "forgot-inner-derivative"
    assert "du/dx = 2*x" in code["feedback"]


def test_a_table_of_answers_at_the_public_sample_points_is_not_a_derivative(tmp_path: Path):
    """The sample points can be computed from this source: a solution.py returning the right value
    at each of them (and 0 elsewhere) passes them all, but not its own challenge points."""
    from grader.bank import load_bank
    from grader.grade import compiled_for, oracle, seed_of
    from grader.variants import draw

    entry = load_bank(None).entries["gaussian-in-code"]
    compiled = compiled_for(entry, draw(entry.exercise, "sam"))
    ref = compiled.parts["code"]
    orc = oracle(compiled, ref.exprs[0], seed_of("gaussian-in-code", "code"))
    table = {float(point[0]): float(value[0]) for point, value in zip(orc.points, orc.values)}
    (tmp_path / "solution.py").write_text(f"TABLE = {table!r}\n\ndef dydx(x):\n    return TABLE.get(x, 0.0)\n")
    (tmp_path / "answers.yaml").write_text("student: sam\nanswers: {}\n")
    run = grade("submit", tmp_path / "answers.yaml", "--only", "gaussian-in-code", "--format", "json")
    assert run.code == 0, run.err
    part = parts_of(run.json())[("gaussian-in-code", "code")]
    assert part["status"] == "incorrect", part
    assert "your function returned 0" in part["feedback"]


def test_a_function_part_is_called_only_where_every_component_exists(tmp_path: Path):
    """[d(x^2)/dx, d ln(sqrt x)/dx] written with math.sqrt is right whichever component comes first; a function
    that is wrong everywhere is never right for want of points."""
    bank = tmp_path / "bank"
    bank.mkdir()
    (bank / "vec.yaml").write_text(
        "id: vec\ntitle: two derivatives\nkind: composite\nvariables: [x]\ndefine: {k: x^2, u: sqrt(x), y: ln(u)}\n"
        "parts:\n  - {id: ky, answer: function, entry: ky, derivative: {of: [k, y], wrt: x}}\n"
        "  - {id: yk, answer: function, entry: yk, derivative: {of: [y, k], wrt: x}}\n"
        "  - {id: zero, answer: function, entry: zero, derivative: {of: [k, y], wrt: x}}\n")
    (tmp_path / "answers.yaml").write_text("code: solution.py\nanswers: {}\n")
    (tmp_path / "solution.py").write_text(
        "import math\n\ndef ky(x):\n    return [2 * x, 1 / math.sqrt(x) / (2 * math.sqrt(x))]\n\n"
        "def yk(x):\n    return [1 / math.sqrt(x) / (2 * math.sqrt(x)), 2 * x]\n\n"
        "def zero(x):\n    return [0.0, 0.0]\n")
    run = grade("submit", tmp_path / "answers.yaml", "--exercises", bank, "--format", "json")
    assert run.code == 0, run.err
    parts = parts_of(run.json())
    assert [parts[("vec", p)]["status"] for p in ("ky", "yk", "zero")] == ["correct", "correct", "incorrect"], run.out
