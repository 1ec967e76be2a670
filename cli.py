"""The `grade` command: parse options, call the library, render. Nothing else lives here.

Imports are lazy so that `grade --help`, `grade list` and `grade show` never load sympy.
"""
from __future__ import annotations

import gc
import math
import os
import sys
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(
    name="grade",
    help="Grade chain-rule, total-derivative, gradient and backprop exercises.\n\n"
    "Students: `grade list`, `grade show ID`, `grade init`, then `grade submit`.\n"
    "Instructors: `grade new`, `grade validate`, `grade schema`. CI: `grade batch`, `grade ci-template`.\n\n"
    "Exit codes: 0 graded; 1 graded but under --fail-under; 2 bad input or usage.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(str, Enum):
    text = "text"
    json = "json"
    junit = "junit"
    gradescope = "gradescope"
    markdown = "markdown"
    csv = "csv"


class ListFormat(str, Enum):
    text = "text"
    json = "json"


ExercisesOpt = typer.Option(None, "--exercises", help="A folder of exercise YAML files (default: the bundled bank).", show_default=False)
StudentOpt = typer.Option(None, "--student", help="Student id: selects the variant of randomized exercises (overrides answers.yaml).")
FormatOpt = typer.Option(Format.text, "--format", help="Output format.")
OutputOpt = typer.Option(None, "--output", "-o", help="Write the output to this file (atomically) instead of stdout.")


def _seconds(value: Optional[float]) -> Optional[float]:
    """Budgets and time-outs: finite and positive (nan, inf, 0 and negatives are usage errors)."""
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise typer.BadParameter(f"must be a number of seconds above 0 and at most {MAX_SECONDS:g}, got {value}")
    return value


def _percentage(value: Optional[float]) -> Optional[float]:
    if value is not None and not (math.isfinite(value) and 0 <= value <= 100):
        raise typer.BadParameter(f"must be a percentage from 0 to 100, got {value}")
    return value


MAX_SECONDS = 3600.0
FailUnderOpt = typer.Option(None, "--fail-under", callback=_percentage,
                            help="Exit 1 when the score is under this percentage (0-100).")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _emit(text: str, output: Optional[Path]) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    from grader.files import write_atomic

    write_atomic(output, text)


def _bank(exercises: Optional[Path]):
    from grader.bank import load_bank

    return load_bank(exercises)


@app.command("list")
def list_(
    exercises: Optional[Path] = ExercisesOpt,
    kind: Optional[List[str]] = typer.Option(None, "--kind", help="Only this kind (repeatable): composite, total, gradient, backprop, update."),
    tag: Optional[List[str]] = typer.Option(None, "--tag", help="Only exercises with this tag (repeatable)."),
    format: ListFormat = typer.Option(ListFormat.text, "--format", help="text, or json: a list of {id, title, kind, points, params}."),
) -> None:
    """List the exercises of the bank, with kind and points."""
    from grader.bank import summaries
    from grader.index import select
    from grader.render.listing import listing

    typer.echo(listing(select(summaries(exercises), kinds=kind, tags=tag), format.value), nl=False)


@app.command()
def show(
    exercise_id: str = typer.Argument(..., metavar="ID", help="Exercise id (see `grade list`)."),
    student: Optional[str] = StudentOpt,
    solution: bool = typer.Option(False, "--solution", help="Also print the worked solution of every part."),
    exercises: Optional[Path] = ExercisesOpt,
) -> None:
    """Print one exercise's prompt for this student's variant."""
    from grader.bank import summaries
    from grader.render.prompt import show_exercise

    found = {s.id: s for s in summaries(exercises)}
    if exercise_id not in found:
        _bank(exercises).get(exercise_id)
    full = _bank(exercises).get(exercise_id) if solution else None
    typer.echo(show_exercise(found[exercise_id], student, full), nl=False)


@app.command()
def init(
    output: Path = typer.Option(Path("answers.yaml"), "--output", "-o", help="Where to write the answers file."),
    student: Optional[str] = typer.Option(None, "--student", help="Your student id, written into the file."),
    exercises: Optional[Path] = ExercisesOpt,
    exercise: Optional[List[str]] = typer.Option(None, "--exercise", help="Only these exercise ids (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
) -> None:
    """Write an answers.yaml to fill in (and solution.py stubs for code parts)."""
    from grader.scaffold import write_init

    bank = _bank(exercises)
    for path in write_init(bank.select(ids=exercise), output, student, force):
        typer.echo(f"wrote {path}")


@app.command()
def submit(
    answers: Path = typer.Argument(Path("answers.yaml"), help="The answers file (code is read from solution.py beside it)."),
    student: Optional[str] = StudentOpt,
    exercises: Optional[Path] = ExercisesOpt,
    only: Optional[List[str]] = typer.Option(None, "--only", help="Grade only these exercise ids (repeatable)."),
    answered: bool = typer.Option(False, "--answered", help="Grade only the exercises named in the answers file."),
    format: Format = FormatOpt,
    output: Optional[Path] = OutputOpt,
    fail_under: Optional[float] = FailUnderOpt,
    explain: bool = typer.Option(False, "--explain", help="Add the worked solution to every part that is not correct."),
    budget: float = typer.Option(2.0, "--budget", callback=_seconds, help="Seconds allowed for checking one answer."),
    code_timeout: float = typer.Option(5.0, "--code-timeout", callback=_seconds, help="Seconds one call of the student's code may take (30 s in all per code file)."),
    helper: bool = typer.Option(True, "--helper/--no-helper", help="Let a forked helper grade about half of the typed exercises on a second core (Linux, 2+ CPUs). Same report either way; --no-helper when other jobs already fill the cores."),
) -> None:
    """Grade a submission: every exercise of the bank (unanswered ones are `missing`)."""
    from grader.submit import run_submit

    _without_cycle_collector()

    report = run_submit(answers, _bank(exercises), student=student, only=only, answered=answered, explain=explain,
                        budget=budget, code_timeout=code_timeout, helper=helper)
    from grader.render import render

    _emit(render(report, format.value), output)
    for problem in report.errors:
        typer.echo(f"warning: {problem}", err=True)
    _exit_for(report.score, report.max_score, fail_under)


def _without_cycle_collector() -> None:
    """For one student's run (submit, check): it builds a large heap once and keeps nearly all of it
    to the end, so the collector would walk it some ten times (35 ms) and free next to nothing; peak
    memory is the same without it, hostile submissions included. Longer runs keep it (batch,
    validate over a large bank): there, cycles from recursive closures add up."""
    gc.disable()


def _exit_for(score: float, max_score: float, fail_under: Optional[float]) -> None:
    if fail_under is not None and max_score > 0 and 100 * score / max_score < fail_under:
        raise typer.Exit(1)


@app.command()
def check(
    expected: str = typer.Argument(..., help="The reference expression."),
    answer: str = typer.Argument(..., help="The answer to compare with it."),
    var: Optional[List[str]] = typer.Option(None, "--var", help="A variable of the expressions (repeatable; default x)."),
    format: ListFormat = typer.Option(ListFormat.text, "--format", help="text, or json: one part object of the report."),
) -> None:
    """One-off equivalence check: is ANSWER equal to EXPECTED on EXPECTED's real domain?

    Put `--` before expressions that start with a minus: grade check --var x -- "-sin(x)" "-sin x"
    """
    from grader.grade import check as run_check
    from grader.options import Options
    from grader.render import render_part

    _without_cycle_collector()
    result = run_check(expected, answer, var or ["x"], Options())
    typer.echo(render_part(result, format.value), nl=False)


@app.command()
def validate(
    paths: Optional[List[Path]] = typer.Argument(None, help="Exercise files or folders (default: the bundled bank)."),
    variants: int = typer.Option(6, "--variants", help="How many variants of a randomized exercise to check."),
) -> None:
    """Instructors: check exercise files: schema, references, variants, question tests."""
    from grader.validate import run_validate

    lines, failed = run_validate(paths or None, variants)
    for line in lines:
        typer.echo(line, err=line.startswith(("error", "warning")) or ":" in line.split(" ")[0])
    if failed:
        raise typer.Exit(2)


@app.command()
def schema(output: Optional[Path] = OutputOpt) -> None:
    """Print the JSON Schema of the exercise format (for editors: yaml-language-server)."""
    from grader.schema import schema_text

    _emit(schema_text(), output)


@app.command()
def new(
    kind: str = typer.Argument(..., help="composite, total, gradient, backprop or update."),
    exercise_id: str = typer.Argument(..., metavar="ID", help="The new exercise's id ([a-z0-9-]+)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="File to write (default ID.yaml)."),
) -> None:
    """Instructors: write a commented template exercise that validates as written."""
    from grader.scaffold import write_template

    typer.echo(f"wrote {write_template(kind, exercise_id, output)}")


@app.command()
def batch(
    folder: Path = typer.Argument(..., help="A folder with one sub-folder per submission (answers.yaml, solution.py)."),
    exercises: Optional[Path] = ExercisesOpt,
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", help="Worker processes (default: the number of cores)."),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: grade only the K-th of N deterministic slices (1-based)."),
    format: Format = typer.Option(Format.csv, "--format", help="Output format (csv: the gradebook)."),
    output: Optional[Path] = OutputOpt,
    fail_under: Optional[float] = typer.Option(None, "--fail-under", callback=_percentage, help="Exit 1 when any graded submission is under this percentage."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar on stderr."),
) -> None:
    """CI: grade every submission folder under FOLDER, in parallel."""
    from grader.batch import run_batch
    from grader.render import render_batch

    entries = run_batch(folder, exercises, jobs=jobs, shard=shard, progress=progress)
    _emit(render_batch(entries, format.value), output)
    if fail_under is not None:
        for entry in entries:
            if entry.report is None:
                raise typer.Exit(1)
            _exit_for(entry.report.score, entry.report.max_score, fail_under)


@app.command("ci-template")
def ci_template(kind: str = typer.Option("github", "--kind", help="github (Actions workflow) or gradescope (run_autograder).")) -> None:
    """Print a CI recipe: a GitHub Actions workflow, or a Gradescope run_autograder script."""
    from grader.ci import ci_recipe

    typer.echo(ci_recipe(kind), nl=False)


def main() -> None:
    """Entry point: user-facing failures are one message on stderr and exit code 2, never a traceback."""
    # A grade run builds a large heap once (sympy, references) and frees little of it: with the
    # default thresholds (700, 10, 10) the collector runs some 300 times, about 0.1 s in all.
    gc.set_threshold(20_000, 50, 100)
    code = _run()
    # Skip the interpreter's teardown, which frees that heap object by object (about 0.25 s,
    # longer than grading 100 answers). Every output file and sandbox is closed by now.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1
    os._exit(code)


def _run() -> int:
    """Run the command; its exit code."""
    from grader.errors import GraderError

    try:
        code = app(standalone_mode=False)
    except GraderError as exc:
        typer.echo(f"error: {exc}" if "\n" not in str(exc) else str(exc), err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: no traceback for users
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return 2
        typer.echo(f"internal error (please report it): {type(exc).__name__}: {exc}", err=True)
        return 3
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    main()
