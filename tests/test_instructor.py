"""The instructor's side of the real command line: validate, new, show, init, schema, list.

Every broken exercise file must come back as `FILE:LINE: message` with exit code 2, never a
traceback, and nothing in the file may run. The broken files are small YAML texts whose wrong
line carries the marker `# <-`, so the expected line number is read from the text itself.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from grader.bank import load_bank

ROOT = Path(__file__).resolve().parents[1]
BANK = ROOT / "exercises"
MARK = "# <-"
SUMMARY = re.compile(r"(\d+) files, (\d+) exercises checked: (\d+) problems?, (\d+) warnings?")


def grade(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the real CLI; no run in this file may ever print a traceback."""
    run = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)],
                         capture_output=True, text=True, cwd=cwd or ROOT, timeout=120)
    assert "Traceback" not in run.stdout + run.stderr, run.stdout + run.stderr
    return run


def marked_line(text: str) -> int:
    """The 1-based line of `text` that carries the marker."""
    return next(number for number, line in enumerate(text.splitlines(), 1) if MARK in line)


def bank_files() -> list[Path]:
    return sorted(BANK.glob("*.yaml"))


def bank_data() -> list[dict]:
    return [yaml.safe_load(path.read_text()) for path in bank_files()]


# (case, exercise text with the wrong line marked, fragments the message must contain)
BROKEN = [
    ("yaml-syntax", """\
        id: yaml-syntax
        title: An unclosed list
        kind: composite
        variables: [x
        define:  # <- the list is still open when the next key starts
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["YAML syntax"]),
    ("missing-title", """\
        id: missing-title  # <- the exercise has no title
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["missing required key 'title'"]),
    ("missing-part-id", """\
        id: missing-part-id
        title: A part without an id
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - points: 2  # <-
            derivative: {of: y, wrt: x}
        """, ["parts[0]", "missing required key 'id'"]),
    ("unknown-kind", """\
        id: unknown-kind
        title: A kind we do not have
        kind: chain-rule  # <-
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["kind", "'composite'"]),
    ("unknown-key", """\
        id: unknown-key
        title: A misspelt key
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            pionts: 2  # <-
            derivative: {of: y, wrt: x}
        """, ["unknown key 'pionts'"]),
    ("unknown-name-in-define", """\
        id: unknown-name-in-define
        title: A definition naming nothing we know
        kind: composite
        variables: [x]
        define:
          y: x^2 + q  # <-
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["define.y", "unknown name 'q'"]),
    ("unknown-name-in-of", """\
        id: unknown-name-in-of
        title: The derivative of an undefined name
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: z, wrt: x}  # <-
        """, ["'z' is neither a variable nor a defined name"]),
    ("unknown-name-in-allow", """\
        id: unknown-name-in-allow
        title: Allowing an unknown name
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
            allow: [x, q]  # <-
        """, ["'q' is not a variable or defined name"]),
    ("unparseable-definition", """\
        id: unparseable-definition
        title: An unclosed bracket
        kind: composite
        variables: [x]
        define:
          y: (x^2 + 1  # <-
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["define.y", "never closed"]),
    ("failing-question-test", """\
        id: failing-question-test
        title: A question test that fails
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        tests:
          - {part: d, answer: "2x", expect: correct}
          - {part: d, answer: "3x", expect: correct}  # <-
        """, ["'3x'", "expected correct, got incorrect"]),
    ("test-names-missing-part", """\
        id: test-names-missing-part
        title: A question test for a part that does not exist
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        tests:
          - {part: d, answer: "2x", expect: correct}
          - {part: e, answer: "2x", expect: correct}  # <-
        """, ["part 'e'", "does not have"]),
    ("wrt-unknown-symbol", """\
        id: wrt-unknown-symbol
        title: A derivative with respect to nothing we know
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: t}  # <-
        """, ["wrt", "'t' is neither a variable nor a defined name"]),
    ("unsafe-tag", """\
        id: unsafe-tag
        title: !!python/object/apply:os.system ["touch PROBE"]  # <-
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["python/object/apply:os.system", "not allowed"]),
    ("code-in-definition", """\
        id: code-in-definition
        title: Python where math belongs
        kind: composite
        variables: [x]
        define:
          y: __import__('os').system('touch PROBE')  # <-
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["define.y"]),
    ("reversed-integers", """\
        id: reversed-integers
        title: A range upside down
        kind: composite
        variables: [x]
        params:
          a: {integers: [9, 1]}  # <-
        define:
          y: x^a
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["params.a", "range is reversed: 9 > 1"]),
    ("reversed-decimals", """\
        id: reversed-decimals
        title: A decimal range upside down
        kind: composite
        variables: [x]
        params:
          a: {decimals: [2.5, 0.5], places: 1}  # <-
        define:
          y: a x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["params.a", "range is reversed"]),
    ("variant-divides-by-zero", """\
        id: variant-divides-by-zero
        title: One variant divides by zero
        kind: composite
        variables: [x]
        params:
          a: {integers: [0, 3]}
        define:
          y: x^2 / a  # <-
        parts:
          - id: d
            derivative: {of: y, wrt: x}
        """, ["with a = 0", "division by zero"]),
    ("variant-evaluates-at-a-pole", """\
        id: variant-evaluates-at-a-pole
        title: One variant evaluates 1/x at x = 0
        kind: composite
        variables: [x]
        params:
          a: {choices: [0, 1, 2]}
        define:
          y: 1/x
        parts:
          - id: d
            answer: value
            derivative: {of: y, wrt: x, at: {x: a}}  # <-
        """, ["with a = 0", "not a real number"]),
    ("duplicate-part-id", """\
        id: duplicate-part-id
        title: Two parts with one id
        kind: composite
        variables: [x]
        define:
          y: x^2
        parts:
          - id: d
            derivative: {of: y, wrt: x}
          - id: d  # <-
            derivative: {of: y, wrt: x}
        """, ["duplicate part id 'd'"]),
    ("point-outside-the-domain", """\
        id: point-outside-the-domain
        title: The slope of ln(sqrt x) at x = -2
        kind: composite
        variables: [x]
        define:
          u: sqrt(x)
          y: ln(u)
        parts:
          - id: slope
            answer: value
            derivative: {of: y, wrt: x, at: {x: -2}}  # <- 1/(2x) computes, but ln(sqrt x) is not real there
        """, ["at x = -2 the function is not real"]),
]


@pytest.mark.parametrize(("case", "text", "fragments"), BROKEN, ids=[case for case, _, _ in BROKEN])
def test_a_broken_file_is_reported_at_its_line(tmp_path: Path, case: str, text: str, fragments: list[str]) -> None:
    probe = tmp_path / "pwned"
    text = textwrap.dedent(text).replace("PROBE", str(probe))
    file = tmp_path / f"{case}.yaml"
    file.write_text(text)
    run = grade("validate", file)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    problem = next((line for line in output.splitlines() if line.startswith(f"{file}:{marked_line(text)}: ")), None)
    assert problem is not None, f"no {file.name}:{marked_line(text)}: in\n{output}"
    for fragment in fragments:
        assert fragment in problem, problem
    assert SUMMARY.search(run.stdout), run.stdout
    assert not probe.exists(), "the file's content was executed"


def test_every_problem_of_every_file_is_reported_in_one_run(tmp_path: Path) -> None:
    files = {
        "a-syntax.yaml": "id: a\ntitle: [unclosed\nkind: composite\n",
        "b-two-problems.yaml": ("id: b\nkind: composite\nvariables: [x]\ndefine: {y: x^2}\n"
                                "parts:\n  - id: d\n    pionts: 1\n    derivative: {of: y, wrt: x}\n"),
        "c-failing-test.yaml": ("id: c\ntitle: C\nkind: composite\nvariables: [x]\ndefine: {y: x^2}\n"
                                "parts:\n  - id: d\n    derivative: {of: y, wrt: x}\n"
                                "tests:\n  - {part: d, answer: \"x\", expect: correct}\n"),
        "d-good.yaml": ("id: d\ntitle: D\nkind: composite\nvariables: [x]\ndefine: {y: x^2}\n"
                        "parts:\n  - id: d\n    derivative: {of: y, wrt: x}\n"),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    run = grade("validate", tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    expected = [
        ("a-syntax.yaml", 3, "YAML syntax"),
        ("b-two-problems.yaml", 1, "missing required key 'title'"),
        ("b-two-problems.yaml", 7, "unknown key 'pionts'"),
        ("c-failing-test.yaml", 10, "expected correct, got incorrect"),
    ]
    for name, line, fragment in expected:
        prefix = f"{tmp_path / name}:{line}: "
        assert any(row.startswith(prefix) and fragment in row for row in output.splitlines()), f"{prefix}{fragment}\n{output}"
    assert "d-good.yaml" not in output
    summary = SUMMARY.search(run.stdout)
    assert summary is not None and summary.groups()[:3] == ("4", "2", "4"), run.stdout


@pytest.fixture(scope="module")
def bank_validation() -> subprocess.CompletedProcess:
    return grade("validate")


def test_the_bundled_bank_validates(bank_validation: subprocess.CompletedProcess) -> None:
    assert bank_validation.returncode == 0, bank_validation.stdout + bank_validation.stderr
    summary = SUMMARY.search(bank_validation.stdout)
    assert summary is not None, bank_validation.stdout
    assert summary.group(1) == summary.group(2) == str(len(bank_files()))
    assert summary.group(3) == "0"


KINDS = ["composite", "total", "gradient", "backprop", "update"]


def test_every_template_of_grade_new_validates_as_written(tmp_path: Path) -> None:
    written = []
    for kind in KINDS:
        path = tmp_path / f"my-{kind}.yaml"
        run = grade("new", kind, f"my-{kind}", "-o", path)
        assert run.returncode == 0, run.stderr
        assert path.read_text().startswith("# yaml-language-server: $schema=schema.json\n")
        assert yaml.safe_load(path.read_text())["kind"] == kind
        written.append(path)
    run = grade("validate", *written)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = SUMMARY.search(run.stdout)
    assert summary is not None and summary.groups()[:3] == ("5", "5", "0"), run.stdout


@pytest.mark.parametrize(("kind", "exercise_id", "message"), [
    ("composite", "Bad_Id", "must be lower-case words"),
    ("chain", "good-id", "unknown kind 'chain'"),
])
def test_grade_new_refuses_a_bad_id_or_kind(tmp_path: Path, kind: str, exercise_id: str, message: str) -> None:
    target = tmp_path / "new.yaml"
    run = grade("new", kind, exercise_id, "-o", target)
    assert run.returncode == 2
    assert message in run.stderr
    assert not target.exists()


def test_show_gives_each_student_the_variant_of_the_documented_sha256_rule() -> None:
    """Anyone can recompute a variant: sha256("student\\0exercise\\0param") mod the number of values."""
    values = [1, 2, 3, 4]  # total-at-a-point: `a: {integers: [1, 4]}`, shown in its prompt as `y = t^2 + {a}`
    shown: dict[str, str] = {}
    for student in ["alice", *(f"student-{k}" for k in range(9))]:
        run = grade("show", "total-at-a-point", "--student", student)
        assert run.returncode == 0, run.stderr
        digest = hashlib.sha256(f"{student}\x00total-at-a-point\x00a".encode()).digest()
        assert f"y = t^2 + {values[int.from_bytes(digest, 'big') % len(values)]}," in run.stdout
        shown[student] = run.stdout
    assert len(set(shown.values())) >= 2
    assert grade("show", "total-at-a-point", "--student", "alice").stdout == shown["alice"]


def test_show_solution_prints_a_worked_solution() -> None:
    run = grade("show", "total-at-a-point", "--student", "alice", "--solution")
    assert run.returncode == 0, run.stderr
    solution = run.stdout.partition("Worked solution")[2]
    assert solution, run.stdout
    assert "dz/dt" in solution and re.search(r"\b20\b", solution), solution  # alice's a = 2: the rate is 20


def test_init_names_every_exercise_and_its_empty_submission_grades(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yaml"
    run = grade("init", "-o", answers)
    assert run.returncode == 0, run.stderr
    bank = load_bank()
    assert set(yaml.safe_load(answers.read_text())["answers"]) == set(bank.entries)
    assert (tmp_path / "solution.py").exists()

    run = grade("submit", answers, "--format", "json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert [e["id"] for e in report["exercises"]] == list(bank.entries)
    for exercise in report["exercises"]:
        answer_types = {part.id: part.answer for part in bank.entries[exercise["id"]].exercise.parts}
        for part in exercise["parts"]:
            # typed parts are left blank; code parts are stubs returning zeros, which are wrong
            wanted = "incorrect" if answer_types[part["id"]] in ("function", "backprop") else "missing"
            assert part["status"] == wanted, (exercise["id"], part)
    assert report["score"] == 0

    again = grade("init", "-o", answers)
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert grade("init", "-o", answers, "--force").returncode == 0


@pytest.fixture(scope="module")
def schema_text() -> str:
    run = grade("schema")
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_the_schema_is_json_schema_that_accepts_every_bundled_exercise(schema_text: str) -> None:
    schema = json.loads(schema_text)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path, data in zip(bank_files(), bank_data()):
        problems = [error.message for error in validator.iter_errors(data)]
        assert not problems, (path.name, problems)


def test_the_bundled_schema_file_is_what_grade_schema_prints(schema_text: str) -> None:
    """exercises/schema.json is what editors load beside the bundled bank: it must not lag the models."""
    assert (ROOT / "exercises" / "schema.json").read_text(encoding="utf-8") == schema_text


def test_the_schema_rejects_unknown_keys(schema_text: str) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(schema_text))
    exercise = bank_data()[0]
    assert validator.is_valid(exercise)
    assert not validator.is_valid({**exercise, "pionts": 2})
    assert not validator.is_valid({**exercise, "parts": [{**exercise["parts"][0], "pionts": 2}]})


def test_every_bundled_exercise_names_the_committed_schema(schema_text: str) -> None:
    for path in bank_files():
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema="), path.name
        target = path.parent / first.split("$schema=", 1)[1].strip()
        assert target.read_text() == schema_text, f"{target} is stale: run `grade schema -o {target}`"


def test_the_complete_examples_of_the_authoring_guide_fit_the_schema(schema_text: str) -> None:
    guide = (ROOT / "docs" / "authoring.md").read_text()
    blocks = [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", guide, re.S)]
    examples = [block for block in blocks if isinstance(block, dict) and {"id", "parts"} <= set(block)]
    assert len(examples) >= 2
    validator = jsonschema.Draft202012Validator(json.loads(schema_text))
    for example in examples:
        assert validator.is_valid(example), (example["id"], [e.message for e in validator.iter_errors(example)])


def _listed(*args: str) -> list[dict]:
    run = grade("list", "--format", "json", *args)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_list_json_has_the_contract_fields() -> None:
    listed = _listed()
    assert [item["id"] for item in listed] == [data["id"] for data in bank_data()]
    for item, data in zip(listed, bank_data()):
        assert {"id", "title", "kind", "points", "params"} <= set(item)
        assert (item["title"], item["kind"]) == (data["title"], data["kind"])
        assert item["points"] == sum(part.get("points", 1) for part in data["parts"])
        assert sorted(item["params"]) == sorted(data.get("params", {}))


def test_list_filters_by_kind_and_tag() -> None:
    data = bank_data()
    backprop = [d["id"] for d in data if d["kind"] == "backprop"]
    sigmoid = [d["id"] for d in data if "sigmoid" in d.get("tags", [])]
    assert backprop and sigmoid and set(sigmoid) - set(backprop)
    assert [item["id"] for item in _listed("--kind", "backprop")] == backprop
    assert [item["id"] for item in _listed("--tag", "sigmoid")] == sigmoid
    assert [item["id"] for item in _listed("--kind", "backprop", "--tag", "sigmoid")] == [i for i in backprop if i in sigmoid]
    text = grade("list", "--kind", "backprop")
    assert text.returncode == 0 and all(i in text.stdout for i in backprop)
    assert "power-of-quadratic" not in text.stdout
