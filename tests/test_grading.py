"""End-to-end grading through the real `grade` command on real files (issue 2)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, bank_with, grade, parts_of, submit_parts
from grader.grade import check
from grader.options import Options

TEXTBOOK = FIXTURES / "textbook"


def test_sample_submission_shows_every_status():
    run = grade("submit", ROOT / "examples/sample/answers.yaml", "--format", "json")
    assert run.code == 0, run.err
    report = run.json()
    assert report["student"] == "sample@example.edu"
    statuses = {p["status"] for p in parts_of(report).values()}
    assert {"correct", "incorrect", "invalid", "missing"} <= statuses
    assert 0 < report["score"] < report["max_score"]
    for exercise in report["exercises"]:
        assert exercise["score"] == pytest.approx(sum(p["score"] for p in exercise["parts"]))
        for part in exercise["parts"]:
            assert set(part) >= {"id", "status", "score", "max_score", "feedback"}


def test_textbook_answers_in_printed_form_are_all_accepted():
    run = grade("submit", TEXTBOOK / "right.yaml", "--exercises", TEXTBOOK / "bank", "--format", "json")
    assert run.code == 0, run.err
    report = run.json()
    assert report["score"] == report["max_score"], [p for p in parts_of(report).values() if p["status"] != "correct"]


def test_textbook_mistakes_are_all_rejected():
    run = grade("submit", TEXTBOOK / "wrong.yaml", "--exercises", TEXTBOOK / "bank", "--format", "json")
    assert run.code == 0, run.err
    parts = parts_of(run.json())
    assert all(p["status"] == "incorrect" for p in parts.values()), parts
    assert parts[("power-100", "dydx")]["mistake"] == "forgot-inner-derivative"
    assert parts[("stewart-total", "dzdt")]["mistake"] == "missing-path"
    assert parts[("stewart-total", "at0")]["mistake"] == "sign-error"


def test_feedback_says_what_was_understood_and_where_it_differs():
    run = grade("submit", TEXTBOOK / "wrong.yaml", "--exercises", TEXTBOOK / "bank", "--only", "power-100")
    assert run.code == 0
    assert "Read your answer as: 100*(x^3 - 1)^99" in run.out
    assert "at x = " in run.out
    assert "forgot-inner-derivative" in run.out


# Tricky pairs: (expected, answer, variables, equal?)
TRICKY = [
    ("sec(x)^2", "1 + tan^2 x", ["x"], True),
    ("cos(x/2)^2", "(1 + cos x)/2", ["x"], True),
    ("sin(2x)", "2 sin x cos x", ["x"], True),
    ("asin(x) + acos(x)", "pi/2", ["x"], True),
    ("pi/2", "asin(x) + acos(x)", ["x"], False),
    ("1/sqrt(1 - x^2)", "-d", ["x", "d"], False),
    ("sqrt(x - 3)", "sqrt(x-3) |x| / x", ["x"], True),
    ("1/(2 sqrt(x))", "sqrt(x)/(2x)", ["x"], True),
    ("2 ln|x|", "ln(x^2)", ["x"], True),
    ("sin(x)", "x - x^3/6 + x^5/120", ["x"], False),
    ("x", "x + 10^-5", ["x"], False),
    ("0", "x/10^20", ["x"], False),
    ("pi/2", "atan(x) + atan(1/x)", ["x"], False),
    ("(x+1)^20", "x^20 + 20x^19 + 190x^18 + 1140x^17 + 4845x^16 + 15504x^15 + 38760x^14 + 77520x^13"
     " + 125970x^12 + 167960x^11 + 184756x^10 + 167960x^9 + 125970x^8 + 77520x^7 + 38760x^6"
     " + 15504x^5 + 4845x^4 + 1140x^3 + 190x^2 + 20x + 1", ["x"], True),
    ("(1 - cos x)/x^2", "2 sin^2(x/2)/x^2", ["x"], True),
    ("2 sin(x) cos(x)", "sin^2(x)'", ["x"], None),
    ("e^x", "exp(x)", ["x"], True),
    ("2x", "2 x", ["x"], True),
    ("sin(x)^2", "sin^2(x)", ["x"], True),
    ("1/x", "ln'(x)", ["x"], None),
    ("6x(x^2+1)^2", "6x^5 + 12x^3 + 6x", ["x"], True),
    ("x y cos(x y^2)", "xy cos(xy^2)", ["x", "y"], True),
    # an answer's own huge intermediates never widen the tolerance, and honest cancellation still passes
    ("2x", "2x + 7 + cosh(100)^2 - sinh(100)^2", ["x"], False),
    ("2x", "2x + 10^9 + 10^40(sin(x)^2 + cos(x)^2) - 10^40", ["x"], False),
    ("2x", "2x + x^100/10^31", ["x"], False),
    ("2x", "2x + 1 + cosh(100)^2 - sinh(100)^2 - 2", ["x"], True),
    ("x^2", "(x + 10^20)^2 - 10^40 - 2*10^20 x", ["x"], True),
    # the answer as typed decides its domain, not sympy's simplified form of it
    ("2x", "2 e^(ln x)", ["x"], False),
    ("2x", "2 sqrt(x)^2", ["x"], False),
    ("1", "sqrt(x)^2/x", ["x"], False),
    ("x", "x + y - y + 0*ln(y)", ["x", "y"], False),
    ("x", "x + y - y", ["x", "y"], True),
    ("2 sqrt(x)", "2 sqrt(x)^2/sqrt(x)", ["x"], True),
    # look-alikes that differ only far from the origin: the answer's own challenge points go there
    ("2x", "2x + e^(x - 200)", ["x"], False),
    ("2x", "2x + (|x - 10| + x - 10)", ["x"], False),
    ("2x", "2x - (|x + 10| - x - 10)", ["x"], False),
    # honest forms whose pieces leave the computable range far out (sech(x^2) at x = 1000 is 10^-434000)
    ("2x(1 - tanh(x^2)^2)", "2x sech^2(x^2)", ["x"], True),
    ("3x^2 (1 - tanh(x^3)^2)", "3x^2 sech^2(x^3)", ["x"], True),
    ("2x e^(-x^2)/(1 + e^(-x^2))^2", "2x e^(x^2)/(e^(x^2) + 1)^2", ["x"], True),
    ("y (1 - tanh(x y)^2)", "y sech(x y)^2", ["x", "y"], True),
    # guards survive sympy turning the typed piece into a product: log(x, 2) is log(x)/log(2)
    ("2x", "2*10^(log10(x))", ["x"], False),
    ("2x", "sqrt(4x)^2/2", ["x"], False),
    ("2x", "2x + 0*log(x, 2)", ["x"], False),
    ("2x", "2x + 0*cbrt(8x)", ["x"], True),
    # a reference that is exactly 0: rounding noise shrinks with more digits, a real value does not
    ("0", "sin(x)^2 + cos(x)^2 - 1", ["x"], True),
    ("0", "(e^x/(e^x + e^y))(1 - e^x/(e^x + e^y)) - e^x e^y/(e^x + e^y)^2", ["x", "y"], True),
    ("0", "x/10^60", ["x"], False),
]


@pytest.mark.parametrize("expected, answer, variables, equal", TRICKY)
def test_tricky_pairs(expected, answer, variables, equal):
    result = check(expected, answer, variables, Options())
    if equal is None:
        assert result.status == "invalid"
    else:
        assert result.status == ("correct" if equal else "incorrect"), result.feedback


@pytest.mark.parametrize("answer", ["diff(x^2, x)", "Derivative(x^2, x)", "integrate(2x, x)", "limit(x, x, 0)",
                                    "Subs(x, x, 1)", "d/dx(x^2)", "d/dx x^2", "dy/dx", "∫ 2x dx", "∂/∂x x^2"])
def test_answers_that_ask_the_system_to_do_the_calculus_are_not_answers(answer):
    result = check("2x", answer, ["x"], Options())
    assert result.status == "invalid"
    assert "calculus" in result.feedback


def test_check_command_line_with_a_leading_minus_and_json():
    run = grade("check", "--var", "x", "--format", "json", "--", "-sin(x)", "-sin x")
    assert run.code == 0, run.err
    part = run.json()
    assert part["status"] == "correct"
    assert set(part) >= {"id", "status", "score", "max_score", "answer", "feedback"}


def test_an_undefined_answer_is_wrong_and_the_feedback_says_so():
    result = check("x", "x (asin(x) + acos(x)) 2/pi", ["x"], Options())
    assert result.status == "incorrect"
    assert "not defined" in result.feedback


HOSTILE = {
    "injection": "__import__('os').system('touch /tmp/pwned-grading')",
    "attribute": "().__class__.__bases__[0].__subclasses__()",
    "lambda": "(lambda: 1)()",
    "huge-power": "10^10^10",
    "factorial": "factorial(10^9)",
    "deep": "(" * 10000 + "x" + ")" * 10000,
    "megabyte": "x+" * 500_000 + "x",
    "unknown": "q + 2w",
    "string": "'2x'",
    "tower": "9^9^9^9",
}


def test_an_answer_built_to_vanish_at_every_sample_point_is_still_wrong():
    """The sample points are public (this source computes them): 2x plus a polynomial that is zero at
    each of them agrees at all 16. The answer's own challenge points, seeded by its text, do not."""
    from fractions import Fraction

    from grader.equivalence import RealFunction, sample
    from grader.grade import seed_of
    from reference.chain import symbol

    x = symbol("x")
    points = [point for point, _ in sample(RealFunction(2 * x, [x]), 1, seed=seed_of("check", "answer"))]
    factors = []
    for (coordinate,) in points:
        value = Fraction(float(coordinate))
        factors.append(f"(x - {value.numerator}/{value.denominator})")
    crafted = "2x + " + "".join(factors)
    first, again = grade("check", "2x", crafted, "--format", "json"), grade("check", "2x", crafted, "--format", "json")
    assert first.code == 0, first.err
    assert first.json()["status"] == "incorrect"
    assert first.out == again.out, "the challenge points come from the answer's text: the verdict is reproducible"


@pytest.mark.parametrize("k", range(12))
def test_a_difference_far_out_is_caught_whatever_the_answer_text(k: int):
    """Each text seeds its own challenge points; at a far one the answer's value dwarfs the reference,
    which is a plain difference, not a cancellation that would need more digits to judge."""
    from grader.grade import check
    from grader.options import Options

    spaced = " " * (k % 3)
    result = check(f"2x + {k}", f"2x +{spaced}{k} + e^(x{spaced}-{spaced}200)", ["x"], Options())
    assert result.status == "incorrect", result.feedback


def test_an_answer_that_cannot_be_computed_at_most_points_is_incorrect_and_says_so():
    """Not a problem of the exercise (the reference is fine): the answer's pieces leave the range we compute."""
    run = grade("check", "2x", "2x + sech(e^(x^2 + 20))", "--format", "json")
    assert run.code == 0, run.err
    part = run.json()
    assert part["status"] == "incorrect"
    assert "too large or too small to compute at more than 4 sample points" in part["feedback"]


@pytest.mark.parametrize("expected, answer, status, says", [
    # an error hidden where a factor is out of range: more than MAX_SKIPPED points cannot be skipped
    ("2x", "2x + (|x^2 - 1| + x^2 - 1)(1 + sech(10^6 x^2))", "incorrect", "too large or too small to compute"),
    # out of range must not hide undefined: ln(1 - x^2) is not real for |x| > 1
    ("2x", "2x + e^(-10^6 x^2) ln(1 - x^2)", "incorrect", "not defined everywhere"),
    ("2x", "2x + (|x^2 - 1| + x^2 - 1)/cosh(10^6 x^2) asin(x)", "incorrect", "not defined everywhere"),
    # a constant multiple beyond a float: no crash
    ("2x", "10^309 x", "incorrect", "It does not match"),
    # honest cancellation that would need more than MAX_DPS digits far out: those points are not judged
    ("1", "cosh(x)^2 - sinh(x)^2", "correct", "Correct"),
    ("2x", "2x + cosh(3x)^2 - sinh(3x)^2 - 1", "correct", "Correct"),
])
def test_out_of_range_points_never_hide_a_wrong_or_undefined_answer(expected: str, answer: str, status: str, says: str):
    run = grade("check", expected, answer, "--format", "json")
    assert run.code == 0, run.err
    part = run.json()
    assert part["status"] == status, part
    assert says in part["feedback"], part["feedback"]


def test_an_answer_undefined_as_typed_says_which_piece(tmp_path: Path):
    run = grade("check", "2x", "2 e^(ln x)", "--format", "json")
    assert run.code == 0, run.err
    part = run.json()
    assert part["status"] == "incorrect" and part["understood"] == "2*x"
    assert "As you typed it, your answer also takes ln(x), which must be real too" in part["feedback"]


def test_hostile_answers_are_refused_quickly_and_the_rest_is_graded(tmp_path: Path):
    file = tmp_path / "answers.yaml"
    bank = bank_with(tmp_path, "hostile.yaml",
        "id: hostile\ntitle: hostile\nkind: composite\nvariables: [x]\ndefine: {y: x^2}\nparts:\n"
        + "".join(f"  - {{id: {name}, derivative: {{of: y, wrt: x}}}}\n" for name in HOSTILE)
        + "  - {id: honest, derivative: {of: y, wrt: x}}\n")
    payload = {"student": "mallory", "answers": {"hostile": {**HOSTILE, "honest": "2x"}}}
    file.write_text(json.dumps(payload))
    started = time.monotonic()
    run = grade("submit", file, "--exercises", bank, "--format", "json")
    elapsed = time.monotonic() - started
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    parts = parts_of(run.json())
    assert parts[("hostile", "honest")]["status"] == "correct"
    for name in HOSTILE:
        assert parts[("hostile", name)]["status"] in ("invalid", "incorrect"), (name, parts[("hostile", name)])
    assert not Path("/tmp/pwned-grading").exists()
    assert elapsed < 30


def test_broken_answers_file_is_one_clear_message_with_its_line(tmp_path: Path):
    file = tmp_path / "answers.yaml"
    file.write_text("student: a\nanswers:\n  power-of-quadratic:\n    dydx: [unclosed\n")
    run = grade("submit", file)
    assert run.code == 2
    assert f"{file}:" in run.err and "Traceback" not in run.err + run.out


def _alias_bomb(depth: int) -> str:
    """`a0` holds 10 values, each `aK` ten `a(K-1)`: a few lines that stand for 10**depth values."""
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 10)}]" for k in range(1, depth + 1)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text, says", [
    ("student: a\n" + _alias_bomb(9) + "answers: {}\n", "more than 100000 values once its YAML aliases"),
    ("student: a\nloop: &loop [1, *loop]\nanswers: {}\n", "a YAML alias (*name) refers to a value that contains it"),
])
def test_yaml_alias_bombs_are_refused_at_once_with_their_line(tmp_path: Path, text: str, says: str):
    file = tmp_path / "answers.yaml"
    file.write_text(text)
    started = time.monotonic()
    run = grade("submit", file)
    assert run.code == 2, run.out + run.err
    assert f"{file}:" in run.err and says in run.err
    assert "Traceback" not in run.err + run.out
    assert time.monotonic() - started < 20


def test_an_alias_bomb_in_an_exercise_file_stops_validate_with_its_line(tmp_path: Path):
    bank = bank_with(tmp_path, "bomb.yaml", _alias_bomb(9) + "id: bomb\ntitle: bomb\nkind: composite\nparts: []\n")
    run = grade("validate", bank)
    assert run.code == 2, run.out + run.err
    assert "bomb.yaml:" in run.err + run.out and "more than 100000 values" in run.err + run.out
    assert "Traceback" not in run.err + run.out


@pytest.mark.parametrize("answer, says", [
    ("[" * 50000 + "]" * 50000, "nested more than 100 deep"),
    ("9" * 5000, "Exceeds the limit (4300 digits)"),
])
def test_absurd_yaml_values_are_refused_with_their_line(tmp_path: Path, answer: str, says: str):
    """50000 nested `[` crashed libyaml's composer (a segfault); a 5000-digit integer raised ValueError."""
    file = tmp_path / "answers.yaml"
    file.write_text(f"answers:\n  power-of-quadratic:\n    dydx: {answer}\n")
    run = grade("submit", file)
    assert run.code == 2, (run.code, run.err[-300:])
    assert f"{file}:3:" in run.err and says in run.err and "Traceback" not in run.err


def test_block_nesting_past_the_limit_is_refused_not_a_recursion_error(tmp_path: Path):
    file = tmp_path / "answers.yaml"
    file.write_text("answers:\n" + "".join(" " * (i + 1) + f"k{i}:\n" for i in range(300)) + " " * 302 + "x\n")
    run = grade("submit", file)
    assert run.code == 2 and "nested more than 100 deep" in run.err, run.err[-300:]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")
@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_an_answers_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path: Path, kind: str):
    """A FIFO blocked the grader; a link to /dev/zero grew its memory without end."""
    file = tmp_path / "answers.yaml"
    if kind == "fifo":
        os.mkfifo(file)
    else:
        file.symlink_to("/dev/zero")
    run = grade("submit", file, timeout=30)
    assert run.code == 2 and "is not a regular file" in run.err, run.err


@pytest.mark.parametrize("how", ["dotdot", "absolute", "symlink"])
def test_code_from_outside_the_submission_folder_is_not_run(tmp_path: Path, how: str):
    """One student must not be graded on a classmate's solution.py (or on any file of the machine)."""
    alice, judy = tmp_path / "alice", tmp_path / "judy"
    alice.mkdir()
    judy.mkdir()
    (alice / "solution.py").write_text((ROOT / "examples/sample/solution.py").read_text())
    code = {"dotdot": "code: ../alice/solution.py\n", "absolute": f"code: {alice / 'solution.py'}\n", "symlink": ""}[how]
    if how == "symlink":
        (judy / "solution.py").symlink_to(alice / "solution.py")
    (judy / "answers.yaml").write_text(f"student: judy\n{code}answers: {{}}\n")
    run = grade("submit", judy / "answers.yaml", "--only", "gaussian-in-code", "--format", "json")
    assert run.code == 0, run.err
    assert "outside the submission's folder" in run.err
    assert {part["status"] for part in parts_of(run.json()).values()} == {"missing"}


@pytest.mark.parametrize("option", [["--budget", "0"], ["--budget", "nan"], ["--budget", "inf"], ["--code-timeout", "-5"],
                                    ["--code-timeout", "nan"], ["--fail-under", "nan"], ["--fail-under", "101"]])
def test_nonsense_limits_are_usage_errors(option: list[str]):
    run = grade("submit", ROOT / "examples/sample/answers.yaml", *option)
    assert run.code == 2, (option, run.code, run.err)
    assert "Invalid value for" in run.err and "Traceback" not in run.err


def test_output_to_a_folder_is_a_usage_error(tmp_path: Path):
    run = grade("submit", ROOT / "examples/sample/answers.yaml", "--output", tmp_path)
    assert run.code == 2 and "is a folder" in run.err and "Traceback" not in run.err


def test_plain_aliases_still_work(tmp_path: Path):
    file = tmp_path / "answers.yaml"
    file.write_text("answers:\n  power-of-quadratic:\n    dydx: &same 6x(x^2+1)^2\n  sine-of-square:\n    dydx: *same\n")
    run = grade("submit", file, "--answered", "--format", "json")
    assert run.code == 0, run.err
    parts = parts_of(run.json())
    assert parts[("power-of-quadratic", "dydx")]["status"] == "correct"
    assert parts[("sine-of-square", "dydx")]["answer"] == "6x(x^2+1)^2"


def test_missing_answers_file_exits_2(tmp_path: Path):
    run = grade("submit", tmp_path / "nope.yaml")
    assert run.code == 2
    assert "no such file" in run.err


def test_answers_for_unknown_exercises_are_reported_with_their_line(tmp_path: Path):
    file = tmp_path / "answers.yaml"
    file.write_text("answers:\n  power-of-quadratic:\n    dydx: 6x(x^2+1)^2\n  no-such-exercise:\n    a: 1\n")
    run = grade("submit", file, "--only", "power-of-quadratic", "--format", "json")
    assert run.code == 0
    assert f"{file}:4:" in run.err
    assert parts_of(run.json())[("power-of-quadratic", "dydx")]["status"] == "correct"


def test_fail_under_exits_1_and_formats_render(tmp_path: Path):
    sample = ROOT / "examples/sample/answers.yaml"
    assert grade("submit", sample, "--only", "sine-of-square", "--fail-under", "50").code == 1
    assert grade("submit", sample, "--only", "power-of-quadratic", "--fail-under", "50").code == 0
    out = tmp_path / "report.json"
    run = grade("submit", sample, "--only", "power-of-quadratic", "--format", "json", "--output", out)
    assert run.code == 0 and run.out == ""
    assert json.loads(out.read_text())["score"] == 4


def test_usage_errors_exit_2():
    assert grade("submit", "--format", "pdf").code == 2
    assert grade("no-such-command").code == 2
    assert grade("show", "no-such-exercise").code == 2


def test_list_and_show_use_the_index_and_notice_a_changed_bank(tmp_path: Path):
    bank = tmp_path / "bank"
    bank.mkdir()
    source = (TEXTBOOK / "bank" / "power-100.yaml").read_text()
    (bank / "a.yaml").write_text(source)
    first = grade("list", "--exercises", bank, "--format", "json")
    assert [e["id"] for e in first.json()] == ["power-100"]
    assert grade("list", "--exercises", bank, "--format", "json").out == first.out
    (bank / "a.yaml").write_text(source.replace("title: (x^3 - 1)^100", "title: renamed"))
    (bank / "b.yaml").write_text(source.replace("id: power-100", "id: second"))
    again = grade("list", "--exercises", bank, "--format", "json").json()
    assert [(e["id"], e["title"]) for e in again] == [("power-100", "renamed"), ("second", "(x^3 - 1)^100")]
    (bank / "b.yaml").write_text("id: [broken\n")
    broken = grade("show", "second", "--exercises", bank)
    assert broken.code == 2 and "b.yaml:" in broken.err and "YAML syntax" in broken.err


def test_an_answer_is_judged_where_the_function_exists_not_only_where_its_simplified_derivative_does(tmp_path: Path):
    """sympy's d/dx ln(sqrt x) is 1/(2x), real for x < 0 where ln(sqrt x) is not: the link-by-link answer
    1/sqrt(x) * 1/(2 sqrt(x)) is right, and the reference is not judged for x < 0. Each component on the
    domain of its own function; roots sympy simplified away while reading (sqrt(x)^4) still count."""
    bank = bank_with(tmp_path, "domain.yaml",
                     "id: domain\ntitle: domains\nkind: composite\nvariables: [x]\n"
                     "define: {u: sqrt(x), y: ln(u), w: u^4, c: ln(cos(x)), s: sqrt(x)^4, h: ln(x), k: x^2, q: ln(x)}\n"
                     "parts:\n"
                     "  - {id: dy, derivative: {of: y, wrt: x}}\n  - {id: dw, derivative: {of: w, wrt: x}}\n"
                     "  - {id: dc, derivative: {of: c, wrt: x}}\n  - {id: named, derivative: {of: y, wrt: x}, allow: [x, u]}\n"
                     "  - {id: ds, derivative: {of: s, wrt: x}}\n  - {id: typed, expected: '1/sqrt(x) * 1/(2 sqrt(x))'}\n"
                     "  - {id: wrong, derivative: {of: y, wrt: x}}\n"
                     "  - {id: apart, answer: vector, derivative: {of: [h, k], wrt: x}}\n"
                     "  - {id: borrowed, derivative: {of: k, wrt: x}, allow: [x, q]}\n")
    parts = submit_parts(tmp_path, bank, "answers:\n  domain:\n    dy: 1/sqrt(x) * 1/(2 sqrt(x))\n    dw: 4 (sqrt(x))^3 * 1/(2 sqrt(x))\n"
                       "    dc: -sin(x)/sqrt(1 - sin(x)^2)\n    named: 1/u * 1/(2 sqrt(x))\n"
                       "    ds: 4 sqrt(x)^3 * 1/(2 sqrt(x))\n    typed: 1/sqrt(x) * 1/(2 sqrt(x))\n    wrong: 1/x\n"
                       "    apart: [1/x, 2 abs(x)]\n    borrowed: 2 e^q\n")
    status = {p: parts[("domain", p)]["status"] for p in ("dy", "dw", "dc", "named", "ds", "typed", "wrong", "apart", "borrowed")}
    assert status == {"dy": "correct", "dw": "correct", "dc": "correct", "named": "correct", "ds": "correct",
                      "typed": "correct", "wrong": "incorrect", "apart": "incorrect", "borrowed": "incorrect"}, parts
    assert "x = -" not in parts[("domain", "wrong")]["feedback"], "no point outside the function's domain is shown"
    assert parts[("domain", "apart")]["score"] == 0.5, "d(x^2)/dx is judged for x < 0 too, where ln(x) is not real"


def test_a_domain_never_widens_the_tolerance(tmp_path: Path):
    """softplus(y) = ln(1 + e^y) is huge far out: its size must not enter the reference's scale."""
    bank = bank_with(tmp_path, "soft.yaml",
                     "id: soft\ntitle: softplus\nkind: gradient\nvariables: [x, y]\ndefine: {s: ln(1 + e^y), f: x^2 + s}\n"
                     "parts:\n  - {id: dfdx, derivative: {of: f, wrt: x}}\n")
    parts = submit_parts(tmp_path, bank, 'answers:\n  soft: {dfdx: "2x + e^(y - 200)"}\n')
    assert parts[("soft", "dfdx")]["status"] == "incorrect", parts


def test_a_definition_out_of_range_far_out_does_not_hide_a_difference_there(tmp_path: Path):
    """ln(1 + e^(-y^2)) is real everywhere but beyond what we compute for |y| > 850: the far challenge points,
    where an added e^(x - 200) shows, must still be judged, whatever the answer's spelling."""
    spellings = ["2x + e^(x - 200)", "2 x + e^(x-200)", "2*x + e^(x - 200)", "2x+e^(x-200)", "e^(x - 200) + 2x",
                 "2x + exp(x - 200)", "x + x + e^(x - 200)", "2x + e^(-200 + x)"]
    bank = bank_with(tmp_path, "gauss.yaml",
                     "id: gauss\ntitle: gauss\nkind: gradient\nvariables: [x, y]\n"
                     "define: {g: e^(-y^2), s: ln(1 + g), f: x^2 + s}\nparts:\n"
                     + "".join(f"  - {{id: d{i}, derivative: {{of: f, wrt: x}}}}\n" for i in range(len(spellings))))
    parts = submit_parts(tmp_path, bank, "answers:\n  gauss:\n" + "".join(f'    d{i}: "{text}"\n' for i, text in enumerate(spellings)))
    assert {parts[("gauss", f"d{i}")]["status"] for i in range(len(spellings))} == {"incorrect"}, parts


def test_a_gradient_on_a_simplex_of_four_probabilities_is_graded(tmp_path: Path):
    """The log barrier lives only where p, q, r, t > 0 and p + q + r + t < 1: a sliver of [-10, 10]^4."""
    bank = bank_with(tmp_path, "simplex.yaml",
                     "id: simplex\ntitle: log barrier\nkind: gradient\nvariables: [p, q, r, t]\n"
                     "define: {s: 1 - p - q - r - t, f: ln(p) + ln(q) + ln(r) + ln(t) + ln(s)}\n"
                     "parts:\n  - {id: g, answer: vector, derivative: {of: f, wrt: [p, q, r, t]}}\n")
    parts = submit_parts(tmp_path, bank, 'answers:\n  simplex: {g: "[1/p - 1/s, 1/q - 1/s, 1/r - 1/s, 1/t - 1/s]"}\n'.replace(
        "1/s", "1/(1 - p - q - r - t)"))
    assert parts[("simplex", "g")]["status"] == "correct", parts


def test_an_unquoted_small_or_large_number_is_read_as_the_digits_typed(tmp_path: Path):
    """YAML makes -0.0000453999 a float, which Python writes as -4.53999e-05: its e is not Euler's number."""
    bank = bank_with(tmp_path, "small.yaml",
        "id: small\ntitle: small numbers\nkind: composite\nvariables: [x]\ndefine: {y: e^(-x)}\nparts:\n"
        "  - {id: slope, answer: value, derivative: {of: y, wrt: x, at: {x: 10}}}\n"
        "  - {id: tiny, expected: 1/50000}\n  - {id: huge, expected: 10^17}\n")
    parts = submit_parts(tmp_path, bank, "answers:\n  small: {slope: -0.0000453999, tiny: 0.00002, huge: 100000000000000000.0}\n")
    assert [parts[("small", p)]["status"] for p in ("slope", "tiny", "huge")] == ["correct"] * 3, parts


def test_a_jacobian_may_be_typed_as_one_text_or_as_yaml_rows(tmp_path: Path):
    bank = bank_with(tmp_path, "jacobian.yaml",
        "id: jac\ntitle: a Jacobian\nkind: gradient\nvariables: [x, y]\ndefine: {f: x^2 y, g: sin(x y)}\n"
        "parts:\n  - {id: m, answer: matrix, derivative: {of: [f, g], wrt: [x, y]}}\n")
    scores = {}
    for name, answer in {"text": '"[[2xy, x^2], [y cos(xy), x cos(xy)]]"',
                         "rows": "[[2xy, x^2], [y cos(xy), x cos(xy)]]",
                         "row-texts": '["[2xy, x^2]", "[y cos(xy), x cos(xy)]"]',
                         "one-wrong": '"[[2xy, x^2], [y cos(xy), cos(xy)]]"'}.items():
        (tmp_path / f"{name}.yaml").write_text(f"answers:\n  jac:\n    m: {answer}\n")
        run = grade("submit", tmp_path / f"{name}.yaml", "--exercises", bank, "--format", "json")
        assert run.code == 0, run.err
        scores[name] = parts_of(run.json())[("jac", "m")]
    assert [scores[n]["status"] for n in ("text", "rows", "row-texts")] == ["correct"] * 3
    wrong = scores["one-wrong"]
    assert wrong["status"] == "incorrect" and wrong["score"] == 0.75
    assert wrong["mistake"] == "forgot-inner-derivative" and "∂g/∂y" in wrong["feedback"]


def test_a_matrix_answer_must_have_the_matrix_shape(tmp_path: Path):
    """The entries of a 3x2 Jacobian in the right order are still wrong as 2 rows of 3, 6 rows of 1, or unarranged."""
    bank = bank_with(tmp_path, "jacobian.yaml",
        "id: jac\ntitle: a Jacobian\nkind: total\nvariables: [r, t]\n"
        "define: {x: r cos(t), y: r sin(t), z: r t}\n"
        "parts:\n  - {id: m, answer: matrix, derivative: {of: [x, y, z], wrt: [r, t]}}\n"
        "  - {id: column, answer: matrix, derivative: {of: [x, y], wrt: [r]}}\n")
    entries = '"cos t", "-r sin t", "sin t", "r cos t", "t", "r"'
    cases = {
        "right": ('"[[cos t, -r sin t], [sin t, r cos t], [t, r]]"', "correct", ""),
        "transposed-shape": ('"[[cos t, -r sin t, sin t], [r cos t, t, r]]"', "incorrect", "got 2 rows of 3"),
        "flat": (f"[{entries}]", "incorrect", "got 6 entries not in rows"),
        "one-row": (f'"[[{entries.replace(chr(34), "")}]]"', "incorrect", "got 1 row of 6"),
        "ragged": ('"[[cos t, -r sin t], [sin t], [r cos t, t, r]]"', "incorrect", "your rows have different lengths"),
    }
    for name, (answer, status, says) in cases.items():
        column = '"[cos t, sin t]"'
        (tmp_path / f"{name}.yaml").write_text(f"answers:\n  jac:\n    m: {answer}\n    column: {column}\n")
        run = grade("submit", tmp_path / f"{name}.yaml", "--exercises", bank, "--format", "json")
        assert run.code == 0, run.err
        parts = parts_of(run.json())
        assert parts[("jac", "m")]["status"] == status, (name, parts[("jac", "m")])
        assert says in parts[("jac", "m")]["feedback"], (name, parts[("jac", "m")]["feedback"])
        assert parts[("jac", "column")]["status"] == "correct", "a flat list is fine for a one-column matrix"
    (tmp_path / "row.yaml").write_text('answers:\n  jac:\n    column: ["(r*0 + 1)*cos(t)", "(sin(t))"]\n')
    run = grade("submit", tmp_path / "row.yaml", "--exercises", bank, "--format", "json")
    assert parts_of(run.json())[("jac", "column")]["status"] == "correct", "entries in parentheses are not rows"


def test_check_reports_a_bad_expected_side_or_variable_name_clearly():
    unknown = grade("check", "2y", "2y")
    assert unknown.code == 2 and "EXPECTED '2y': unknown name 'y'" in unknown.err and "--var" in unknown.err
    assert "Traceback" not in unknown.err
    bad_name = grade("check", "--var", "1x", "x", "x")
    assert bad_name.code == 2 and "is not a variable name" in bad_name.err


def test_an_unquoted_absolute_value_gets_a_quoting_hint(tmp_path: Path):
    file = tmp_path / "answers.yaml"
    file.write_text("answers:\n  log-absolute-value:\n    dfdx: |x|/x\n")
    run = grade("submit", file)
    assert run.code == 2
    assert f"{file}:3:" in run.err and "must be quoted" in run.err


def test_a_budget_that_runs_out_while_the_answer_is_read_is_a_timeout_not_an_unreadable_answer(tmp_path: Path):
    long_sum = " + ".join(f"sin({k}x)" for k in range(1, 150))   # about 50 ms to read, cold
    file = tmp_path / "answers.yaml"
    file.write_text(f"answers:\n  power-100:\n    dydx: {long_sum}\n")
    run = grade("submit", file, "--exercises", TEXTBOOK / "bank", "--budget", "0.005", "--format", "json")
    assert run.code == 0, run.err
    part = parts_of(run.json())[("power-100", "dydx")]
    assert part["status"] == "timeout", part["feedback"]


def test_a_chain_mistake_in_one_term_of_a_sum_is_named(tmp_path: Path):
    bank = bank_with(tmp_path, "sum.yaml", "id: sum\ntitle: a sum of composites\nkind: composite\nvariables: [x]\n"
                                   "define: {y: sin(2x) + cos(x^2) + x^3}\nparts:\n  - {id: d, derivative: {of: y, wrt: x}}\n")
    (tmp_path / "answers.yaml").write_text('answers:\n  sum:\n    d: "2cos(2x) - sin(x^2) + 3x^2"\n')
    run = grade("submit", tmp_path / "answers.yaml", "--exercises", bank, "--format", "json")
    part = parts_of(run.json())[("sum", "d")]
    assert part["status"] == "incorrect" and part["mistake"] == "forgot-inner-derivative"
    assert "In the term cos(x^2)" in part["feedback"] and "du/dx = 2*x" in part["feedback"]


def test_a_check_past_its_budget_is_a_timeout_and_the_rest_is_graded(tmp_path: Path):
    file = tmp_path / "answers.yaml"
    file.write_text("answers:\n  power-100:\n    dydx: 300x^2 (x^3-1)^99\n")
    run = grade("submit", file, "--exercises", TEXTBOOK / "bank", "--budget", "0.000001", "--format", "json")
    assert run.code == 0, run.err
    parts = parts_of(run.json())
    assert parts[("power-100", "dydx")]["status"] == "timeout"
    assert "took longer than" in parts[("power-100", "dydx")]["feedback"]
    assert parts[("ln-abs", "dydx")]["status"] == "missing"
