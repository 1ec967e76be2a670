"""`grade validate`: everything an instructor can get wrong in an exercise file, reported at once.

Per file: YAML and schema. Per variant (every combination when few, a seeded sample
when many): definitions parse, references compute and are real somewhere, derivatives
agree with finite differences. Then the question tests, on several variants (a test answer may name params: each
variant's values are substituted). Warnings
name mistake models that cannot be told apart from the right answer in some part.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import mpmath
import sympy

from grader import diagnosis
from grader.bank import Entry, bundled_dir, exercise_files, load_files
from grader.compile import Compiled, compile_exercise, param_values
from grader.errors import BudgetExceeded, GraderError, InputError
from grader.equivalence import RealFunction, Undefined
from grader.grade import grade_part, oracle, seed_of
from grader.options import Options
from grader.launch import open_sandbox
from grader.sandbox import forking
from grader.variants import Value, all_variants, draw, format_value


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _variant_words(params: dict[str, Value]) -> str:
    return ("with " + ", ".join(f"{k} = {format_value(v)}" for k, v in params.items()) + ": ") if params else ""


def _check_reference(entry: Entry, compiled: Compiled, params: dict[str, Value], found: Findings) -> None:
    """Every part's reference is real somewhere and matches finite differences."""
    doc = entry.doc
    for index, part in enumerate(entry.exercise.parts):
        ref = compiled.parts[part.id]
        if part.answer == "backprop":
            continue
        reference_key = next(k for k in ("derivative", "expected", "step") if getattr(part, k) is not None)
        line = doc.line_of(("parts", index, reference_key))
        for k, expr in enumerate(ref.exprs):
            if ref.is_constant:
                if not expr.is_finite or expr.has(mpmath.inf) or not expr.is_real:
                    found.errors.append(f"{doc.path}:{line}: {_variant_words(params)}part {part.id}: the reference value {expr} is not a real number")
                elif (outside := _outside_domain(ref, k)) is not None:
                    found.errors.append(f"{doc.path}:{line}: {_variant_words(params)}part {part.id}: {outside}")
                continue
            orc = oracle(compiled, expr, seed_of(entry.exercise.id, part.id) + k, ref.domain(k))
            if len(orc.points) < 4:
                found.errors.append(f"{doc.path}:{line}: {_variant_words(params)}part {part.id}: the reference is not real "
                                    "anywhere we looked (division by zero or a square root of a negative?)")
                continue
            if ref.derivatives and ref.point is None:
                problem = _finite_difference(compiled, ref.derivatives[k], orc)
                if problem:
                    found.errors.append(f"{doc.path}:{line}: {_variant_words(params)}part {part.id}: {problem}")
            if ref.derivatives:
                for mistake in diagnosis.undetectable(compiled, ref, k, orc):
                    _once(found.warnings, f"{doc.path}:{line}: warning: part {part.id}: mistake '{mistake}' gives the right "
                                          "answer here, so it cannot be detected")


def _outside_domain(ref, index: int) -> str | None:
    """A value or step part's point where the function is not real: sympy still computes a number
    there from the simplified derivative (d/dx ln(sqrt x) = 1/(2x) at x = -2), but it means nothing."""
    if ref.point is None:
        return None
    variables = sorted(ref.point, key=str)
    coordinates = [mpmath.mpf(str(sympy.N(ref.point[v], 60))) for v in variables]
    for piece in ref.domain(index):
        try:
            RealFunction(sympy.S.Zero, variables, guards=[piece])(coordinates)
        except Undefined:
            shown = ", ".join(f"{v} = {ref.point[v]}" for v in variables)
            return f"at {shown} the function is not real ({piece} is not), so its derivative is meaningless there"
    return None


def _once(lines: list[str], line: str) -> None:
    if line not in lines:
        lines.append(line)


def _finite_difference(compiled: Compiled, derivative, orc) -> str | None:
    """The reference derivative against a numerical derivative of the expanded function."""
    if compiled.chain is None or derivative.wrt not in compiled.chain.variables:
        return None
    function = RealFunction(compiled.chain.expand(derivative.of), orc.variables)
    position = [str(v) for v in orc.variables].index(derivative.wrt)
    with mpmath.workdps(30):
        for point, value in zip(orc.points[:4], orc.values[:4]):
            if value is None:
                continue

            def along(t, point=point):
                moved = list(point)
                moved[position] = t
                return function(moved)[0]

            try:
                numeric = mpmath.diff(along, point[position])
            except Exception:  # noqa: BLE001 - a point where the function is not differentiable numerically
                continue
            if abs(numeric - value[0]) > mpmath.mpf("1e-8") * max(1, abs(value[0])):
                return (f"the reference d{derivative.of}/d{derivative.wrt} disagrees with finite differences at "
                        f"{point[position]:.4g} ({float(value[0]):.6g} vs {float(numeric):.6g})")
    return None


def _run_tests(entry: Entry, variants: list[tuple[str, dict[str, Value]]], found: Findings) -> None:
    exercise, doc = entry.exercise, entry.doc
    options = Options()
    for index, test in enumerate(exercise.tests):
        line = doc.line_of(("tests", index))
        runs = [(test.student, draw(exercise, test.student))] if test.student is not None else variants
        for student, params in runs:
            compiled = compile_exercise(exercise, params, doc)
            ref = replace(compiled.parts[test.part], allowed={**param_values(params), **compiled.parts[test.part].allowed})
            sandbox = open_sandbox(test.code, options.limits) if test.code is not None else None
            try:
                result = grade_part(compiled, ref, test.answer, student or "", options, sandbox)
            finally:
                if sandbox is not None:
                    sandbox.__exit__(None, None, None)
            shown = test.answer if test.code is None else "its code"
            if result.status != test.expect:
                feedback = result.feedback.replace("\n", " / ")
                found.errors.append(f"{doc.path}:{line}: {_variant_words(params)}test of part {test.part} with {shown!r}: "
                                    f"expected {test.expect}, got {result.status} ({feedback})")
                break
            if test.mistake is not None and result.mistake != test.mistake:
                found.errors.append(f"{doc.path}:{line}: {_variant_words(params)}test of part {test.part} with {shown!r}: "
                                    f"expected mistake {test.mistake}, got {result.mistake or 'none'}")
                break


def validate_entry(entry: Entry, variant_count: int) -> Findings:
    found = Findings()
    exercise = entry.exercise
    params_list = all_variants(exercise, limit=variant_count) if exercise.params else [{}]
    good: list[tuple[str, dict[str, Value]]] = []
    for params in params_list:
        try:
            compiled = compile_exercise(exercise, params, entry.doc)
            _check_reference(entry, compiled, params, found)
            good.append(("", params))
        except InputError as exc:
            found.errors.append(f"{_prefix(exc, params)}")
            if not exercise.params:
                break
        except (BudgetExceeded, GraderError, ZeroDivisionError, ValueError) as exc:
            found.errors.append(f"{entry.path}:1: {_variant_words(params)}the reference cannot be computed ({exc})")
    if good and not found.errors:
        _run_tests(entry, good[:3], found)
    return found


def _prefix(exc: InputError, params: dict[str, Value]) -> str:
    if not params:
        return str(exc)
    where = f"{exc.file}:{exc.line}: " if exc.line else f"{exc.file}: "
    return where + _variant_words(params) + exc.message


def run_validate(paths: list[Path] | None, variant_count: int) -> tuple[list[str], bool]:
    """Lines to print and whether anything is wrong (the CLI exits 2 then)."""
    files = exercise_files(paths or [bundled_dir()])
    entries, problems = load_files(files)
    errors = [str(p) for p in problems]
    warnings: list[str] = []
    with forking():
        for entry in entries.values():
            found = validate_entry(entry, variant_count)
            errors += found.errors
            warnings += found.warnings
    summary = (f"{len(files)} files, {len(entries)} exercises checked: "
               f"{len(errors)} problem{'s' if len(errors) != 1 else ''}, {len(warnings)} warning{'s' if len(warnings) != 1 else ''}")
    return [*errors, *warnings, summary], bool(errors) or not files
