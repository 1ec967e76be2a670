"""The forked helper of `grade submit` (grader/helper.py): faster, never different, nothing lost or left behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, bank_with, grade, parts_of, running
from grader import helper
from grader.bank import load_bank
from grader.grade import _helper_share, grade as grade_submission
from grader.options import Options
from grader.report import ExerciseResult, PartResult
from grader.submit import read_submission

pytestmark = pytest.mark.skipif(not helper.available(), reason="a helper needs Linux and two CPUs")

SAMPLE = ROOT / "examples" / "sample" / "answers.yaml"


def _part(name: str) -> PartResult:
    return PartResult(id=name, status="correct", score=1.0, max_score=1.0, answer="2*x", feedback="Right: ü ∂ 0.1")


def _gone(pid: int) -> bool:
    return not running({pid})


def test_a_helper_hands_back_what_its_work_returned() -> None:
    with helper.Helper(lambda: [_part("a"), _part("b")]) as helping:
        pid = helping.pid
        assert helping.results(PartResult, 30) == [_part("a"), _part("b")]
    assert _gone(pid)


def test_a_helper_that_fails_or_sends_the_wrong_data_gives_nothing() -> None:
    def fail() -> list[PartResult]:
        raise RuntimeError("boom")

    with helper.Helper(fail) as helping:
        assert helping.results(PartResult, 30) is None
    with helper.Helper(lambda: [_part("a")]) as helping:
        assert helping.results(ExerciseResult, 30) is None


def test_a_helper_past_its_time_is_killed() -> None:
    def hang() -> list[PartResult]:
        time.sleep(60)
        return []

    started = time.monotonic()
    with helper.Helper(hang) as helping:
        pid = helping.pid
        assert helping.results(PartResult, 0.5) is None
    assert time.monotonic() - started < 10
    assert _gone(pid)


def test_a_helper_dies_with_its_parent(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from grader.helper import Helper
        helping = Helper(lambda: time.sleep(60) or [])
        print(helping.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), Path(f"/proc/{pid}/status").read_text()


def _sample():
    entries = load_bank(None).select()
    return read_submission(SAMPLE, None, entries), entries


def test_a_submission_graded_with_a_helper_is_graded_exactly_as_without() -> None:
    prepared, entries = _sample()
    assert _helper_share(prepared, entries), "the sample should be large enough to share"
    alone = grade_submission(prepared, entries, Options())
    helped = grade_submission(prepared, entries, Options(helper=True))
    assert helped.model_dump() == alone.model_dump()


def test_when_the_helper_gives_nothing_its_share_is_graded_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection: the helper's results are lost (it died, timed out or sent garbage)."""
    prepared, entries = _sample()
    alone = grade_submission(prepared, entries, Options())
    monkeypatch.setattr(helper.Helper, "results", lambda self, model, seconds: None)
    helped = grade_submission(prepared, entries, Options(helper=True))
    assert helped.model_dump() == alone.model_dump()


def test_small_and_single_exercise_submissions_are_not_shared() -> None:
    prepared, entries = _sample()
    assert _helper_share(prepared, entries[:2]) == []
    assert _helper_share(prepared, entries[-1:]) == []


HOSTILE = {
    "import": "__import__('os').system('touch /tmp/pwned-helper')",
    "dunder": "x.__class__.__base__",
    "eval": "eval('1')",
    "deep": "(" * 5000 + "x" + ")" * 5000,
    "tower": "9^9^9^9",
    "huge": "x^99999999999",
    "calculus": "diff(x^2, x)",
    "lambda": "lambda: 1",
}


def test_hostile_answers_in_the_helpers_share_are_refused_and_nothing_is_left_behind(tmp_path: Path) -> None:
    """The last exercise goes to the helper; its hostile answers get the same verdicts as anywhere."""
    bank = bank_with(tmp_path, "a-honest.yaml",
        "id: honest\ntitle: honest\nkind: composite\nvariables: [x]\ndefine: {y: sin(x^2)}\n"
        "parts:\n  - {id: dydx, derivative: {of: y, wrt: x}}\n")
    (bank / "b-hostile.yaml").write_text(
        "id: hostile\ntitle: hostile\nkind: composite\nvariables: [x]\ndefine: {y: x^2}\nparts:\n"
        + "".join(f"  - {{id: {name}, derivative: {{of: y, wrt: x}}}}\n" for name in HOSTILE)
        + "  - {id: right, derivative: {of: y, wrt: x}}\n")
    answers = tmp_path / "answers.yaml"
    answers.write_text(json.dumps({"student": "mallory", "answers": {
        "honest": {"dydx": "2x cos(x^2)"}, "hostile": {**HOSTILE, "right": "2x"}}}))
    entries = load_bank(bank).select()
    assert [e.exercise.id for e in _helper_share(read_submission(answers, None, entries), entries)] == ["hostile"]

    run = grade("submit", answers, "--exercises", bank, "--format", "json")
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    parts = parts_of(run.json())
    assert parts[("honest", "dydx")]["status"] == "correct"
    assert parts[("hostile", "right")]["status"] == "correct"
    for name in HOSTILE:
        assert parts[("hostile", name)]["status"] in ("invalid", "incorrect"), (name, parts[("hostile", name)])
    assert not Path("/tmp/pwned-helper").exists()


def test_ctrl_c_is_left_to_the_parent_which_kills_the_helper_on_its_way_out() -> None:
    def hang() -> list[PartResult]:
        time.sleep(60)
        return []

    with pytest.raises(KeyboardInterrupt):
        with helper.Helper(hang) as helping:
            pid = helping.pid
            time.sleep(0.2)    # the helper has set up its signals
            os.kill(pid, signal.SIGINT)
            time.sleep(0.2)
            assert not _gone(pid), "Ctrl-C reaches the whole process group: the helper must not die of it alone"
            raise KeyboardInterrupt
    assert _gone(pid)


def test_submit_with_and_without_a_helper_prints_the_same_report() -> None:
    helped = grade("submit", SAMPLE, "--format", "json")
    alone = grade("submit", SAMPLE, "--format", "json", "--no-helper")
    assert helped.code == alone.code == 0, helped.err + alone.err
    assert helped.out == alone.out
