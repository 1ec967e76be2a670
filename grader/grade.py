"""Grading: the one place that wires parse, reference, equivalence, sandbox and diagnosis together.

Data flows one way: exercise models -> compiled references -> checks -> report model.
Every part is graded on its own: a bad answer (unreadable, hostile, too slow, or
code that crashes) becomes that part's status and never stops the others.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from contextlib import nullcontext
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import mpmath
import numpy as np
import sympy

from grader import arrays, diagnosis, helper, refcache
from grader.bank import Entry
from grader.budget import time_budget
from grader.compile import Compiled, PartReference, compile_exercise
from grader.equivalence import (CHALLENGE_POINTS, MAX_SKIPPED, MIN_POINTS, OUT_OF_RANGE, RealFunction, Verdict, challenge, compare, evaluate,
                                 matches_at, sample, values_close, VALUE_REL_TOL)
from grader.errors import BudgetExceeded, GraderError, InputError, MathSyntaxError
from grader.launch import Launched, launch
from grader.models import Exercise, Part
from grader.options import Options
from grader.parse import Reading, parse_expression, read_expression, read_vector, to_text
from grader.report import ExerciseResult, PartResult, Report, total
from grader.sandbox import CallResult, Sandbox
from grader.variants import Value, draw
from reference.backprop import gradient_step, init_params, numerical_gradient, sample_batch

if TYPE_CHECKING:
    from grader.loader import Document
    from grader.submit import Prepared

MAX_ANSWER_CHARS = 1000
"""Longer answers are shown truncated in reports (the parser refuses them anyway)."""

HELPER_MIN_PARTS = 8
"""A helper (grader/helper.py) grades at least this many parts, or is not forked: below that the fork costs more than it saves."""
HELPER_SLACK_SECONDS = 5.0
"""How much longer than its parts' budgets a helper may take before the parent grades its share itself."""


def seed_of(*words: str) -> int:
    """A stable seed from words (student, exercise, part): same draw on every machine."""
    return int.from_bytes(hashlib.sha256("\x00".join(words).encode()).digest()[:8], "big")


# ---------------------------------------------------------------- compiled references, cached

_COMPILED: dict[tuple, tuple[Compiled, Document]] = {}
_STORED: dict[tuple, tuple[int, int]] = {}
"""What the disk cache holds of each variant (sample points, mistake candidates): save only what grew."""


def _contents(compiled: Compiled) -> tuple[int, int]:
    return len(compiled.oracles), len(compiled.candidates)


def _key(path: str, exercise_id: str, params: dict[str, Value]) -> tuple:
    return (path, exercise_id, tuple(sorted(params.items())))


def compiled_for(entry: Entry, params: dict[str, Value]) -> Compiled:
    """Reference results per (exercise file, variant): from memory, else the disk cache, else computed."""
    key = _key(entry.path, entry.exercise.id, params)
    if key not in _COMPILED:
        cached = refcache.load(entry.doc, params)
        if cached is None or cached.exercise != entry.exercise:
            cached = compile_exercise(entry.exercise, params, entry.doc)
            _STORED[key] = (-1, -1)
        else:
            _STORED[key] = _contents(cached)
        _COMPILED[key] = (cached, entry.doc)
    return _COMPILED[key][0]


def save_compiled() -> None:
    """Persist what this run computed (new variants, sample points, candidates) for the next run."""
    for key, (compiled, doc) in _COMPILED.items():
        if _contents(compiled) != _STORED[key]:
            refcache.save(doc, compiled.params, compiled)
            _STORED[key] = _contents(compiled)


@dataclass
class Oracle:
    """One reference expression on its domain, with its sample points and values there."""

    expr: sympy.Expr
    variables: list[sympy.Symbol]
    points: list
    values: list
    domain: tuple[sympy.Expr, ...] = ()
    """Pieces that must be real too (PartReference.domain): at the sample points, and at any further point."""

    @property
    def reference(self) -> RealFunction:
        """The reference as evaluated, for further points of its domain (compiled once per process)."""
        return _reference_function(self.expr, self.variables, self.domain)


def oracle(compiled: Compiled, expr: sympy.Expr, seed: int, domain: tuple[sympy.Expr, ...] = ()) -> Oracle:
    """The reference's sample points and values, computed once per variant (and kept in the cache),
    on its domain: where it is real and so is every piece of `domain`."""
    key = (expr, seed, domain)
    if key not in compiled.oracles:
        variables = compiled.variables
        samples = sample(_reference_function(expr, variables, domain), len(variables), seed=seed)
        compiled.oracles[key] = Oracle(expr, variables, [point for point, _ in samples], [value for _, value in samples],
                                       domain)
    return compiled.oracles[key]


def judge(compiled: Compiled, expr: sympy.Expr, answer: Reading, seed: int,
          domain: tuple[sympy.Expr, ...] = ()) -> tuple[Verdict, Oracle, list]:
    """Compare an answer with a reference on the reference's real domain (the answer as typed: see Reading).

    Points where the answer is only out of range (equivalence.OutOfRange) are not judged. An
    answer that matches at every sample point is also checked at points of its own
    (equivalence.challenge), seeded by its text: the sample points are public. The values
    returned, for diagnosis, are those at the sample points (None where not judged)."""
    ref = oracle(compiled, expr, seed, domain)
    function = RealFunction(answer.expr, ref.variables, guards=answer.guards)
    values = evaluate(function, ref.points, ref.values, skip_out_of_range=True)
    judged = [i for i, value in enumerate(values) if value is not OUT_OF_RANGE]
    points, expected, got = ([ref.points[i] for i in judged], [ref.values[i] for i in judged], [values[i] for i in judged])
    verdict = compare(expected, got, points, ref.variables)
    if len(values) - len(judged) > MAX_SKIPPED:
        verdict = _out_of_range(ref, values)
    if verdict.equal:
        extra = _challenge_points(ref, function, _answer_seed(seed, answer))
        if not matches_at([value for _, value, _ in extra], [answer_value for _, _, answer_value in extra]):
            verdict = compare(expected + [value for _, value, _ in extra], got + [value for _, _, value in extra],
                              points + [point for point, _, _ in extra], ref.variables)
    return verdict, ref, [None if value is OUT_OF_RANGE else value for value in values]


def _challenge_points(ref: Oracle, function: RealFunction, seed: int) -> list[tuple]:
    """(point, reference value, answer value) at up to CHALLENGE_POINTS points where both can be computed."""
    found = []
    for point, expected in challenge(ref.reference, ref.points, seed):
        value = evaluate(function, [point], [expected], skip_out_of_range=True)[0]
        if value is not OUT_OF_RANGE:
            found.append((point, expected, value))
            if len(found) == CHALLENGE_POINTS:
                break
    return found


def _out_of_range(ref: Oracle, values: list) -> Verdict:
    where = next(point for point, value in zip(ref.points, values) if value is OUT_OF_RANGE)
    shown = ", ".join(f"{name} = {mpmath.nstr(c, 4)}" for name, c in zip(ref.variables, where))
    return Verdict(False, "out-of-range",
                   f"your answer's values are too large or too small to compute at more than {MAX_SKIPPED} sample "
                   f"points (at {shown}, for one): write it so that its pieces stay in range")


_REFERENCE_FUNCTIONS: dict[tuple, RealFunction] = {}
"""Compiled references, for challenge points: one per expression, variables and domain."""


def _reference_function(expr: sympy.Expr, variables: list[sympy.Symbol], domain: tuple[sympy.Expr, ...]) -> RealFunction:
    key = (expr, tuple(variables), domain)
    if key not in _REFERENCE_FUNCTIONS:
        _REFERENCE_FUNCTIONS[key] = RealFunction(expr, variables, guards=domain)
    return _REFERENCE_FUNCTIONS[key]


def _answer_seed(seed: int, answer: Reading) -> int:
    """From the text as typed: an answer cannot contain the points its own text selects."""
    return _seed_of_text(seed, answer.text)


def _seed_of_text(seed: int, text: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\x00{text}".encode()).digest()[:8], "big")


# ---------------------------------------------------------------- one part

def _result(part: Part, status: str, feedback: str, answer: Any = None, fraction: float = 0.0, **extra: Any) -> PartResult:
    shown = None if answer is None else _show(answer)
    return PartResult(
        id=part.id, status=status, score=round(part.points * fraction, 6), max_score=part.points,
        answer=shown, feedback=feedback, **extra,
    )


def _show(answer: Any) -> str:
    text = answer if isinstance(answer, str) else str(answer)
    return text if len(text) <= MAX_ANSWER_CHARS else text[:MAX_ANSWER_CHARS] + "…"


def grade_part(compiled: Compiled, ref: PartReference, answer: Any, student: str, options: Options,
               sandbox: Sandbox | None = None) -> PartResult:
    """Grade one part; every failure becomes this part's status."""
    part = ref.part
    seed = seed_of(compiled.exercise.id, part.id)
    try:
        if part.answer == "backprop":
            result = _grade_backprop(compiled, part, student, sandbox)
        elif part.answer == "function":
            result = _grade_function(compiled, ref, seed, sandbox)
        elif answer is None or (isinstance(answer, str) and not answer.strip()):
            result = _result(part, "missing", "No answer given.")
        else:
            with time_budget(options.budget):
                result = _grade_typed(compiled, ref, answer, seed)
    except BudgetExceeded:
        result = _result(part, "timeout", f"Checking this answer took longer than {options.budget:g} s, so it was stopped.", answer)
    except MathSyntaxError as exc:
        result = _result(part, "invalid", f"Could not read your answer: {exc}", answer)
    if options.explain and result.status != "correct" and compiled.exercise.solution:
        from grader.explain import solution_lines

        result.solution = solution_lines(compiled, ref)
    return result


def _text_of(answer: str | int | float) -> str:
    """The text to read for one answer. YAML hands unquoted numbers over as int or float, and
    str() writes small and large floats as 4.5e-05, whose e would be read as Euler's number:
    such a float is written out in plain decimals, the digits the student typed."""
    if isinstance(answer, float) and math.isfinite(answer):
        return format(Decimal(repr(answer)), "f")
    return str(answer)


def _grade_typed(compiled: Compiled, ref: PartReference, answer: Any, seed: int) -> PartResult:
    part = ref.part
    if part.answer == "value":
        return _grade_value(compiled, ref, answer)
    if part.answer == "expression":
        if not isinstance(answer, (str, int, float)) or isinstance(answer, bool):
            return _result(part, "invalid", "Expected one expression, got a list.", answer)
        reading = _expanded(compiled, read_expression(_text_of(answer), ref.allowed))
        return _grade_expression(compiled, ref, 0, reading, answer, seed)
    return _grade_components(compiled, ref, answer, seed)


def _expanded(compiled: Compiled, reading: Reading) -> Reading:
    """An answer in free variables only (defined names substituted), with the guards it still needs:
    those typed, and where the defined names it uses exist (`2 e^u` with u = ln x is 2x for x > 0 only)."""
    expr = compiled.expand(reading.expr)
    used = sorted(str(s) for s in reading.expr.free_symbols if str(s) in compiled.exercise.define)
    guards = dict.fromkeys([compiled.expand(guard) for guard in reading.guards] + list(compiled.domain(used)))
    return Reading(expr, tuple(guard for guard in guards if not expr.has(guard)), reading.text)


def _judge_component(compiled: Compiled, ref: PartReference, index: int, answer: Reading,
                     seed: int) -> tuple[Verdict, diagnosis.Finding | None]:
    """The verdict on one expression and, when it is wrong, the known mistake that explains it."""
    verdict, orc, values = judge(compiled, ref.exprs[index], answer, seed, ref.domain(index))
    if verdict.reason == "no-domain":
        raise InputError(f"{compiled.path}: part {ref.part.id}: the reference is not real anywhere we looked")
    if verdict.equal:
        return verdict, None
    return verdict, diagnosis.diagnose_expression(compiled, ref, index, orc, values)


def _grade_expression(compiled: Compiled, ref: PartReference, index: int, reading: Reading, answer: Any, seed: int) -> PartResult:
    part = ref.part
    understood = to_text(reading.expr)
    verdict, found = _judge_component(compiled, ref, index, reading, seed)
    if verdict.equal:
        return _result(part, "correct", "Correct.", answer, 1.0, understood=understood)
    feedback = _wrong_feedback(verdict, understood, found)
    if verdict.reason == "undefined" and reading.guards:
        feedback += (f"\nAs you typed it, your answer also takes {', '.join(to_text(g) for g in reading.guards)}, "
                     f"which must be real too (the simplified form above hides it).")
    fraction = part.partial.get(found.mistake, 0.0) if found else 0.0
    return _result(part, "incorrect", feedback, answer, fraction, understood=understood,
                   mistake=found.mistake if found else None)


def _wrong_feedback(verdict: Verdict, understood: str, found: diagnosis.Finding | None) -> str:
    lines = [f"Read your answer as: {understood}"]
    if found:
        lines.append(found.message)
    if verdict.reason == "undefined":
        lines.append(f"Your answer is not defined everywhere the derivative is: {verdict.detail}.")
    elif verdict.detail:
        lines.append(f"It does not match: {verdict.detail}.")
    return "\n".join(lines)


def _grade_value(compiled: Compiled, ref: PartReference, answer: Any) -> PartResult:
    part = ref.part
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        return _result(part, "invalid", "Expected a number.", answer)
    constants = {name: value for name, value in ref.allowed.items() if not value.free_symbols}
    got = parse_expression(_text_of(answer), constants)
    tolerance = part.tolerance or VALUE_REL_TOL
    understood = to_text(got)
    if values_close(ref.exprs[0], got, rel_tol=tolerance):
        return _result(part, "correct", "Correct.", answer, 1.0, understood=understood)
    found = diagnosis.diagnose_value(compiled, ref, got, tolerance)
    lines = [f"Read your answer as: {understood}"]
    if found:
        lines.append(found.message)
    lines.append(f"That is not within {tolerance:g} (relative) of the expected value.")
    fraction = part.partial.get(found.mistake, 0.0) if found else 0.0
    return _result(part, "incorrect", "\n".join(lines), answer, fraction, understood=understood,
                   mistake=found.mistake if found else None)


def _matrix_rows(text: str) -> list[str] | None:
    """"[[a, b], [c, d]]" split into its row texts "[a, b]", "[c, d]" (None if it is not that shape)."""
    inner = text.strip()
    if not (inner.startswith("[") and inner.endswith("]")):
        return None
    inner = inner[1:-1]
    rows, depth, start = [], 0, None
    for index, char in enumerate(inner):
        if char in "([{":
            if depth == 0:
                start = index
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0 and start is not None:
                rows.append(inner[start:index + 1])
                start = None
        elif depth == 0 and not (char.isspace() or char == ","):
            return None
    return rows if rows and depth == 0 else None


def _component_texts(ref: PartReference, answer: Any) -> tuple[list[Any], tuple[int, ...] | None]:
    """An answer's components, flattened row by row (YAML lists, or one text "[a, b]" / "[[a, b], [c, d]]"),
    and the shape they were given in: (rows, columns) for a list of rows, None for rows of different lengths."""
    if len(ref.shape) == 2:
        rows = _matrix_rows(answer) if isinstance(answer, str) else answer
        if isinstance(rows, list) and rows and all(_is_row(row) for row in rows):
            parsed = [row if isinstance(row, list) else read_vector(row, ref.allowed) for row in rows]
            lengths = {len(row) for row in parsed}
            return [item for row in parsed for item in row], (len(parsed), lengths.pop()) if len(lengths) == 1 else None
    if isinstance(answer, list):
        return list(answer), (len(answer),)
    if isinstance(answer, str):
        items = list(read_vector(answer, ref.allowed))
        return items, (len(items),)
    return [answer], (1,)


def _is_row(item: Any) -> bool:
    """A YAML list, or a bracketed list such as "[a, b]" or "(a, b)"; "a" and "(x+1)*2" are one entry each."""
    if isinstance(item, list):
        return True
    if not isinstance(item, str) or item.strip()[:1] not in ("[", "(", "<"):
        return False
    depth = 0
    for char in item.strip():
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        elif char == "," and depth == 1:
            return True
    return item.strip()[:1] in ("[", "<")


def _shape_problem(expected: tuple[int, ...], given: tuple[int, ...] | None, count: int) -> str | None:
    """Why the answer's shape is not the reference's; a flat list is fine where the matrix is one row or one column."""
    if len(expected) < 2:
        return None if count == expected[0] else f"Expected {expected[0]} components, got {count}."
    rows, columns = expected
    wanted = f"Expected a {rows}×{columns} matrix: {rows} row{'s' if rows > 1 else ''} of {columns}"
    if given is None:
        return f"{wanted}; your rows have different lengths."
    if given == expected or (len(given) == 1 and min(rows, columns) == 1 and count == rows * columns):
        return None
    if len(given) == 1:
        return f"{wanted}, written as a list of rows such as [[a, b], [c, d]]; got {count} entries not in rows."
    return f"{wanted}; got {given[0]} row{'s' if given[0] > 1 else ''} of {given[1]}."


def _grade_components(compiled: Compiled, ref: PartReference, answer: Any, seed: int) -> PartResult:
    """Vectors and matrices: every component on its own, credit in proportion."""
    part = ref.part
    items, shape = _component_texts(ref, answer)
    problem = _shape_problem(ref.shape, shape, len(items))
    if problem is not None:
        return _result(part, "incorrect", problem, answer)
    labels = _labels(compiled, ref)
    readings = []
    for index, item in enumerate(items):
        if isinstance(item, Reading):
            readings.append(_expanded(compiled, item))
        elif isinstance(item, bool) or not isinstance(item, (str, int, float)):
            return _result(part, "invalid", f"Component {labels[index]} is not an expression.", answer)
        else:
            readings.append(_expanded(compiled, read_expression(_text_of(item), ref.allowed)))
    shown = "[" + ", ".join(to_text(reading.expr) for reading in readings) + "]"
    lines, mistakes = [], []
    for index, reading in enumerate(readings):
        verdict, found = _judge_component(compiled, ref, index, reading, seed + index)
        if verdict.equal:
            continue
        lines.append(f"{labels[index]}: {found.message if found else verdict.detail or 'not equal'}")
        if found:
            mistakes.append(found.mistake)
    if not lines:
        return _result(part, "correct", "Correct.", answer, 1.0, understood=shown)
    fraction = (len(items) - len(lines)) / len(items)
    mistake = mistakes[0] if mistakes else None
    if mistake in part.partial:
        fraction = max(fraction, part.partial[mistake])
    feedback = "\n".join([f"Read your answer as: {shown}", f"{len(lines)} of {len(items)} components are wrong:", *lines])
    return _result(part, "incorrect", feedback, answer, fraction, understood=shown, mistake=mistake)


def _labels(compiled: Compiled, ref: PartReference) -> list[str]:
    """How components are named in feedback: ∂f/∂x for a partial, df/dt for a total derivative."""
    if ref.derivatives and len(ref.derivatives) == len(ref.exprs):
        partial = len(compiled.variables) > 1
        return [f"∂{d.of}/∂{d.wrt}" if partial else f"d{d.of}/d{d.wrt}" for d in ref.derivatives]
    return [f"component {i + 1}" for i in range(len(ref.exprs))]


# ---------------------------------------------------------------- code answers

def _code_failure(part: Part, call: CallResult, sandbox: Sandbox) -> PartResult:
    status = "timeout" if call.status == "timeout" else "error"
    output = sandbox.output or None
    return _result(part, status, f"Your code did not return an answer: {call.message}", part.entry, output=output)


FUNCTION_REL_TOL = 1e-6
"""Relative tolerance of a student's function against the reference (float64 arithmetic)."""


def _grade_function(compiled: Compiled, ref: PartReference, seed: int, sandbox: Sandbox | None) -> PartResult:
    """Call the student's function at the reference's sample points, one float per variable."""
    part = ref.part
    if sandbox is None:
        return _result(part, "missing", f"No code file with a function `{part.entry}`.")
    domain = tuple(dict.fromkeys(piece for index in range(len(ref.exprs)) for piece in ref.domain(index)))
    orc = oracle(compiled, ref.exprs[0], seed, domain)
    # a challenge point (see judge), seeded by the student's file: a table of answers at the public
    # sample points does not pass (one is enough here: student code is not looked at far out)
    extra = list(itertools.islice(challenge(orc.reference, orc.points, _seed_of_text(seed, sandbox.fingerprint), far=False), 1))
    points = orc.points + [point for point, _ in extra]
    columns = [orc.values + [value for _, value in extra]] + [evaluate(RealFunction(e, orc.variables), points)
                                                              for e in ref.exprs[1:]]
    returned: list[float] = []
    judged = 0
    for index, point in enumerate(points):
        if any(column[index] is None for column in columns):
            continue
        judged += 1
        args = [float(v) for v in point]
        call = sandbox.call(part.entry, *args)
        if call.status != "ok":
            return _code_failure(part, call, sandbox)
        got = arrays.as_array(call.value)
        row = [float(column[index][0]) for column in columns]
        want = np.array(row if ref.shape else row[0])
        verdict = arrays.compare(want, got if got is not None else call.value, rel_tol=FUNCTION_REL_TOL)
        if not verdict.ok:
            where = ", ".join(f"{v} = {a:.4g}" for v, a in zip(compiled.exercise.variables, args))
            shown = np.array2string(got, precision=6) if got is not None else "not a number"
            lines = [f"At {where} your function returned {shown}, expected {np.array2string(want, precision=6)} ({verdict.problem})."]
            found = (_diagnose_function(compiled, ref, orc, sandbox, returned, got)
                     if not ref.shape and index < len(orc.points) else None)
            if found:
                lines.append(found.message)
            return _result(part, "incorrect", "\n".join(lines), part.entry, output=sandbox.output or None,
                           mistake=found.mistake if found else None)
        if not ref.shape and index < len(orc.points):
            returned.append(float(got))
    if judged < MIN_POINTS:
        raise InputError(f"{compiled.path}: part {part.id}: the reference is not real anywhere we looked")
    return _result(part, "correct", f"Correct at {judged} sampled points.", part.entry, 1.0, output=sandbox.output or None)


def _diagnose_function(compiled: Compiled, ref: PartReference, orc: Oracle, sandbox: Sandbox,
                       returned: list[float], got: np.ndarray | None) -> diagnosis.Finding | None:
    """Finish sampling the student's function, then ask which known mistake its values match."""
    if got is None or got.shape != ():
        return None
    values = returned + [float(got)]
    for point in orc.points[len(values):]:
        call = sandbox.call(ref.part.entry, *[float(v) for v in point])
        array = arrays.as_array(call.value) if call.status == "ok" else None
        if array is None or array.shape != () or not np.isfinite(array):
            return None
        values.append(float(array))
    answer = [(mpmath.mpf(v), mpmath.mpf(abs(v))) for v in values]
    return diagnosis.diagnose_expression(compiled, ref, 0, orc, answer, rel_tol=FUNCTION_REL_TOL)


@dataclass(frozen=True)
class Draw:
    """The data a backprop part hands to the student: plain float64 arrays, seeded by student and exercise."""

    params: dict[str, np.ndarray]
    x: np.ndarray
    y: np.ndarray
    expected: dict[str, np.ndarray]


_DRAWS: dict[tuple, Draw] = {}


def backprop_draw(compiled: Compiled, part: Part, student: str) -> Draw:
    key = (compiled.path, compiled.exercise.id, part.id, student)
    if key not in _DRAWS:
        network = compiled.network
        assert network is not None and compiled.exercise.network is not None
        rng = np.random.default_rng(seed_of(student, compiled.exercise.id, part.id))
        params = init_params(network, rng)
        x, y = sample_batch(network, compiled.exercise.network.batch, rng, params)
        grads = network.backward(params, x, y)
        numeric = numerical_gradient(network, params, x, y)
        for name, grad in grads.items():
            if not arrays.close(grad, numeric[name], rel_tol=1e-5):
                raise GraderError(f"{compiled.path}: reference gradient {name} disagrees with finite differences")
        expected = gradient_step(params, grads, part.update.lr) if part.update else grads
        _DRAWS[key] = Draw(params, x, y, expected)
    return _DRAWS[key]


def _grade_backprop(compiled: Compiled, part: Part, student: str, sandbox: Sandbox | None) -> PartResult:
    """Each parameter is its own verdict; credit in proportion to the right ones."""
    if sandbox is None:
        return _result(part, "missing", f"No code file with a function `{part.entry}`.")
    data = backprop_draw(compiled, part, student)
    args: list[Any] = [data.params, data.x, data.y] + ([part.update.lr] if part.update else [])
    first = sandbox.call(part.entry, *args)
    if first.status != "ok":
        return _code_failure(part, first, sandbox)
    second = sandbox.call(part.entry, *args)
    if second.status != "ok":
        return _code_failure(part, second, sandbox)
    what = "updated parameter" if part.update else "gradient"
    if not isinstance(first.value, dict):
        return _result(part, "incorrect", f"`{part.entry}` must return a dict mapping {', '.join(data.expected)} to arrays.",
                       part.entry, output=sandbox.output or None,
                       gradients={name: "incorrect" for name in data.expected})
    verdicts: dict[str, str] = {}
    lines: list[str] = []
    got_arrays: dict[str, np.ndarray] = {}
    for name, want in data.expected.items():
        if name not in first.value:
            verdicts[name] = "missing"
            lines.append(f"{name}: missing from the returned dict.")
            continue
        verdict = arrays.compare(want, first.value[name])
        again = arrays.compare(want, second.value[name]) if isinstance(second.value, dict) and name in second.value else verdict
        if verdict.ok and not again.ok:
            verdicts[name] = "incorrect"
            lines.append(f"{name}: a second call with the same inputs returned something else (state kept between calls?).")
            continue
        verdicts[name] = "correct" if verdict.ok else "incorrect"
        if not verdict.ok:
            lines.append(f"{name} {verdict.problem}.")
            array = arrays.as_array(first.value[name])
            if array is not None:
                got_arrays[name] = array
    extra = sorted(set(first.value) - set(data.expected))
    right = sum(v == "correct" for v in verdicts.values())
    fraction = right / len(verdicts)
    output = sandbox.output or None
    if right == len(verdicts):
        return _result(part, "correct", f"Every {what} is correct.", part.entry, 1.0, gradients=verdicts, output=output)
    found = diagnosis.diagnose_backprop(compiled, part, data, got_arrays) if got_arrays else []
    mistake = None
    for finding in found:
        lines.append(finding.message)
        mistake = mistake or finding.mistake
    if extra:
        lines.append(f"(Ignored extra keys: {', '.join(extra)}.)")
    if mistake and mistake in part.partial:
        fraction = max(fraction, part.partial[mistake])
    wrong = [n for n, v in verdicts.items() if v != "correct"]
    feedback = f"Wrong {what}s: {', '.join(wrong)}.\n" + "\n".join(lines)
    return _result(part, "incorrect", feedback, part.entry, fraction, gradients=verdicts, mistake=mistake, output=output)


# ---------------------------------------------------------------- a whole submission

def grade_exercise(entry: Entry, answers: dict[str, Any], student: str, options: Options, sandbox: Sandbox | None) -> ExerciseResult:
    exercise = entry.exercise
    compiled = compiled_for(entry, draw(exercise, student))
    results = [grade_part(compiled, compiled.parts[p.id], answers.get(p.id), student, options, sandbox) for p in exercise.parts]
    score, max_score = total(results)
    return ExerciseResult(id=exercise.id, title=exercise.title, score=score, max_score=max_score, parts=results)


def grade(prepared: "Prepared", entries: list[Entry], options: Options, launched: Launched | None = None) -> Report:
    """Grade the chosen exercises for one student; each code file runs in its own sandbox.

    Sandboxes already `launched` by the caller are used (and left to the caller to close);
    otherwise they are started here, in the background, and closed at the end. With
    `options.helper`, a forked helper grades a share of the exercises without code meanwhile.
    """
    student = prepared.student or ""
    share = _helper_share(prepared, entries) if options.helper and helper.available() else []
    with (nullcontext(launched) if launched is not None else launch(prepared, entries, options.limits)) as sandboxes:

        def grade_all(chosen: list[Entry]) -> list[ExerciseResult]:
            results = []
            for entry in chosen:
                code = prepared.code.get(entry.exercise.id)
                sandbox = sandboxes.get(code[0]) if code is not None else None
                results.append(grade_exercise(entry, prepared.answers.get(entry.exercise.id, {}), student, options, sandbox))
            return results

        def in_helper() -> list[ExerciseResult]:
            results = grade_all(share)
            save_compiled()
            return results

        shared_ids = [entry.exercise.id for entry in share]
        with helper.Helper(in_helper) if share else nullcontext() as helping:
            results = grade_all([entry for entry in entries if entry.exercise.id not in shared_ids])
            if helping is not None:
                seconds = options.budget * sum(len(entry.exercise.parts) for entry in share) + HELPER_SLACK_SECONDS
                shared = helping.results(ExerciseResult, seconds)
                if shared is None or [result.id for result in shared] != shared_ids:
                    shared = grade_all(share)
                results += shared
    save_compiled()
    by_id = {result.id: result for result in results}
    results = [by_id[entry.exercise.id] for entry in entries]
    score, max_score = total(results)
    return Report(student=prepared.student, score=score, max_score=max_score, exercises=results, errors=prepared.problems)


def _helper_share(prepared: "Prepared", entries: list[Entry]) -> list[Entry]:
    """Exercises without code, from the end of the list, until they hold half the parts (code
    parts count double: calls into the sandbox and gradient checks cost more); none when the
    share would be too small to pay for the fork, or would leave this process nothing to do."""
    weights = {e.exercise.id: sum(2 if p.answer in ("function", "backprop") else 1 for p in e.exercise.parts)
               for e in entries}
    half = sum(weights.values()) / 2
    share: list[Entry] = []
    weight = 0
    for entry in reversed(entries):
        if weight >= half:
            break
        if entry.exercise.id not in prepared.code and weights[entry.exercise.id] == len(entry.exercise.parts):
            share.append(entry)
            weight += weights[entry.exercise.id]
    return share[::-1] if weight >= HELPER_MIN_PARTS and len(share) < len(entries) else []


@dataclass
class CheckReference:
    """`grade check`'s expected expression, compiled: what a grading run computes once per
    exercise variant and keeps (in memory and in the reference cache) for every answer."""

    compiled: Compiled
    part: PartReference

    def sample(self) -> None:
        """Sample the reference now and keep what the reference cache keeps (the points and values,
        not the reference compiled for challenge points): the state in which a grading run with a
        warm cache meets its first answer. Otherwise the first answer samples it, within its own
        time budget. benchmarks/bench_speed.py times both ways."""
        seed = seed_of(self.compiled.exercise.id, self.part.part.id)
        for index, expr in enumerate(self.part.exprs):
            oracle(self.compiled, expr, seed, self.part.domain(index))
            _REFERENCE_FUNCTIONS.pop((expr, tuple(self.compiled.variables), self.part.domain(index)), None)


def check_reference(expected: str, variables: list[str]) -> CheckReference:
    """Compile EXPECTED as a one-part exercise in the given variables."""
    from reference.chain import symbol

    names = variables or ["x"]
    for name in names:
        if not name.isascii() or not name.isalnum() or not name[0].isalpha():
            raise InputError(f"--var {name!r} is not a variable name (letters and digits, starting with a letter)")
    exercise = Exercise(id="check", title="check", kind="composite", variables=list(dict.fromkeys(names)),
                        parts=[Part(id="answer", expected=expected)])
    try:
        compiled = compile_exercise(exercise, {}, None)
    except InputError as exc:
        reason = exc.message.removeprefix("parts.0.expected: ")
        raise InputError(f"EXPECTED {expected!r}: {reason} (name its variables with --var)") from None
    ref = compiled.parts["answer"]
    ref.allowed = {v: symbol(v) for v in exercise.variables}
    return CheckReference(compiled, ref)


def check_answer(reference: CheckReference, answer: str, options: Options) -> PartResult:
    """Grade one answer against a prepared reference, exactly as a part of a submission is graded."""
    return grade_part(reference.compiled, reference.part, answer, "", options)


def check(expected: str, answer: str, variables: list[str], options: Options) -> PartResult:
    """`grade check`: one-off equivalence of two expressions in the given variables."""
    return check_answer(check_reference(expected, variables), answer, options)
