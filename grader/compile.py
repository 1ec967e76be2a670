"""Turn an exercise and a student's variant into reference answers.

This is where instructor text meets the reference: definitions are parsed with our
own parser (never eval), the chain is built, and each part gets the expression,
vector, matrix or value it is graded against. Mistakes in the file are InputErrors
with the line they come from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from typing import Any

import sympy

from grader.equivalence import restricted
from grader.errors import InputError, MathSyntaxError
from grader.loader import Document
from grader.models import Exercise, Part
from grader.parse import Reading, read_expression
from grader.variants import Value
from reference.backprop import Network
from reference.chain import Chain, Derivative, symbol


@dataclass
class PartReference:
    """What one part is graded against."""

    part: Part
    shape: tuple[int, ...]                      # () scalar, (n,) vector, (m, n) matrix
    exprs: list[sympy.Expr]                     # flattened, in free variables only
    derivatives: list[Derivative] = field(default_factory=list)   # the chain-rule steps behind exprs, when known
    allowed: dict[str, sympy.Expr] = field(default_factory=dict)   # names the answer may use -> symbol or value
    point: dict[str, sympy.Expr] | None = None  # where a value part evaluates its derivatives
    step: tuple[sympy.Expr, sympy.Expr] | None = None  # (param value, lr) of a gradient-descent step part
    domains: list[tuple[sympy.Expr, ...]] = field(default_factory=list)  # per expr: pieces that must be real too (_domain)

    def finish(self, derivative_value: sympy.Expr) -> sympy.Expr:
        """What the part asks for, given a derivative: evaluated at the point, then stepped if a step part."""
        value = derivative_value.subs(self.point) if self.point is not None else derivative_value
        if self.step is not None:
            start, lr = self.step
            return start - lr * value
        return value

    def domain(self, index: int) -> tuple[sympy.Expr, ...]:
        """Where exprs[index] is judged: only where each of these is real too."""
        return self.domains[index] if self.domains else ()

    @property
    def is_constant(self) -> bool:
        return all(not e.free_symbols for e in self.exprs)


@dataclass
class Compiled:
    """One exercise for one variant: the chain and every part's reference."""

    exercise: Exercise
    params: dict[str, Value]
    chain: Chain | None
    network: Network | None
    parts: dict[str, PartReference]
    path: str = ""
    oracles: dict = field(default_factory=dict)  # (expr, seed) -> grader.grade.Oracle, filled while grading
    candidates: dict = field(default_factory=dict)  # mistake candidates with their values, filled by diagnosis
    typed_guards: dict[str, tuple[sympy.Expr, ...]] = field(default_factory=dict)  # per definition: see _domain

    @cached_property
    def variables(self) -> list[sympy.Symbol]:
        return [symbol(v) for v in self.exercise.variables]

    def expand(self, expr: sympy.Expr) -> sympy.Expr:
        """An answer that uses defined names, rewritten in free variables only."""
        return self.chain.expand(expr) if self.chain is not None else expr

    def domain(self, names: list[str]) -> tuple[sympy.Expr, ...]:
        """Where defined names exist (see _domain): an answer that uses them is defined only there."""
        return _domain(self.chain, self.typed_guards, names) if self.chain is not None else ()


def _number(value: Value) -> sympy.Expr:
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    return sympy.Integer(value)


def param_values(params: dict[str, Value]) -> dict[str, sympy.Expr]:
    return {name: _number(value) for name, value in params.items()}


class _Context:
    """Parses instructor text with the exercise's names, reporting FILE:LINE."""

    def __init__(self, exercise: Exercise, doc: Document | None, params: dict[str, Value]):
        self.exercise = exercise
        self.doc = doc
        self.names: dict[str, sympy.Expr] = param_values(params)
        for var in exercise.variables:
            self.names[var] = symbol(var)
        self.typed_guards: dict[str, tuple[sympy.Expr, ...]] = {}   # per definition, see _domain

    def fail(self, message: str, loc: tuple) -> InputError:
        path = self.doc.path if self.doc else self.exercise.id
        line = self.doc.line_of(loc) if self.doc else None
        return InputError(message, path, line)

    def parse(self, text: Any, loc: tuple, names: dict[str, sympy.Expr] | None = None) -> sympy.Expr:
        return self.read(text, loc, names).expr

    def read(self, text: Any, loc: tuple, names: dict[str, sympy.Expr] | None = None) -> Reading:
        if isinstance(text, bool) or not isinstance(text, (str, int, float)):
            raise self.fail(f"{_where(loc)}: expected a math expression, got {type(text).__name__}", loc)
        try:
            return read_expression(str(text), names if names is not None else self.names)
        except MathSyntaxError as exc:
            raise self.fail(f"{_where(loc)}: {exc}", loc) from None


def _where(loc: tuple) -> str:
    return ".".join(str(p) for p in loc)


def compile_exercise(exercise: Exercise, params: dict[str, Value], doc: Document | None = None) -> Compiled:
    """Parse definitions, build the chain and compute every part's reference."""
    ctx = _Context(exercise, doc, params)
    chain = _chain(ctx) if exercise.variables else None
    network = None
    if exercise.network is not None:
        spec = exercise.network
        try:
            network = Network.from_spec(spec.inputs, [layer.model_dump(exclude_none=True) for layer in spec.layers], spec.loss)
        except ValueError as exc:
            raise ctx.fail(f"network: {exc}", ("network",)) from None
    parts = {}
    for index, part in enumerate(exercise.parts):
        if part.answer == "backprop":
            parts[part.id] = PartReference(part, (), [])
        else:
            parts[part.id] = _part_reference(ctx, chain, part, ("parts", index))
    return Compiled(exercise, params, chain, network, parts, doc.path if doc else exercise.id, typed_guards=ctx.typed_guards)


def _chain(ctx: _Context) -> Chain:
    definitions: dict[str, sympy.Expr] = {}
    names = dict(ctx.names)
    for name, text in ctx.exercise.define.items():
        reading = ctx.read(text, ("define", name), names)
        definitions[name] = reading.expr
        ctx.typed_guards[name] = reading.guards
        names[name] = symbol(name)
    try:
        return Chain(ctx.exercise.variables, definitions)
    except ValueError as exc:
        raise ctx.fail(f"define: {exc}", ("define",)) from None


def _part_reference(ctx: _Context, chain: Chain | None, part: Part, loc: tuple) -> PartReference:
    known = set(ctx.exercise.variables) | set(ctx.exercise.define)
    allow = part.allow if part.allow is not None else list(ctx.exercise.variables)
    for name in allow:
        if name not in known and name not in ctx.exercise.params:
            raise ctx.fail(f"{_where(loc + ('allow',))}: '{name}' is not a variable or defined name", loc + ("allow",))
    allowed = {name: (ctx.names[name] if name in ctx.exercise.params else symbol(name)) for name in allow}
    if chain is None:
        raise ctx.fail(f"{_where(loc)}: this part needs `variables` and `define` in the exercise", loc)

    if part.derivative is not None:
        ref = _derivative_reference(ctx, chain, part, loc + ("derivative",))
    elif part.step is not None:
        ref = _step_reference(ctx, chain, part, loc + ("step",))
    else:
        ref = _expected_reference(ctx, chain, part, loc + ("expected",))
    ref.allowed = allowed
    _check_shape(ctx, part, ref, loc)
    return ref


def _name_check(ctx: _Context, chain: Chain, names: list[str], loc: tuple, role: str) -> None:
    for name in names:
        if name not in chain.variables and name not in chain.names:
            raise ctx.fail(f"{_where(loc)}: {role} '{name}' is neither a variable nor a defined name", loc)


def _derivative_reference(ctx: _Context, chain: Chain, part: Part, loc: tuple) -> PartReference:
    spec = part.derivative
    assert spec is not None
    ofs = spec.of if isinstance(spec.of, list) else [spec.of]
    wrts = spec.wrt if isinstance(spec.wrt, list) else [spec.wrt]
    _name_check(ctx, chain, ofs, loc + ("of",), "of:")
    _name_check(ctx, chain, wrts, loc + ("wrt",), "wrt:")
    derivatives = [chain.derivative(of, wrt) for of in ofs for wrt in wrts]
    exprs = [d.value for d in derivatives]
    if isinstance(spec.of, list) and isinstance(spec.wrt, list):
        shape: tuple[int, ...] = (len(ofs), len(wrts))
    elif isinstance(spec.of, list) or isinstance(spec.wrt, list):
        shape = (len(exprs),)
    else:
        shape = ()
    domains = [_domain(chain, ctx.typed_guards, [of]) for of in ofs for _ in wrts]
    ref = PartReference(part, shape, exprs, derivatives, domains=domains)
    if spec.at is not None:
        ref.point = {symbol(k): v for k, v in _point(ctx, chain, spec.at, loc + ("at",)).items()}
        ref.exprs = [ref.finish(e) for e in exprs]
    return ref


def _point(ctx: _Context, chain: Chain, at: dict, loc: tuple) -> dict[str, sympy.Expr]:
    missing = [v for v in chain.variables if v not in at]
    if missing:
        raise ctx.fail(f"{_where(loc)}: no value for {', '.join(missing)}", loc)
    constants = {k: v for k, v in ctx.names.items() if k in ctx.exercise.params}
    point = {}
    for name, value in at.items():
        if name not in chain.variables:
            raise ctx.fail(f"{_where(loc)}: '{name}' is not a variable", loc + (name,))
        point[name] = ctx.parse(value, loc + (name,), constants)
    return point


def _step_reference(ctx: _Context, chain: Chain, part: Part, loc: tuple) -> PartReference:
    spec = part.step
    assert spec is not None
    _name_check(ctx, chain, [spec.of], loc + ("of",), "of:")
    if spec.param not in chain.variables:
        raise ctx.fail(f"{_where(loc + ('param',))}: '{spec.param}' is not a variable", loc + ("param",))
    derivative = chain.derivative(spec.of, spec.param)
    point = _point(ctx, chain, spec.at, loc + ("at",))
    ref = PartReference(part, (), [], [derivative], domains=[_domain(chain, ctx.typed_guards, [spec.of])])
    ref.point = {symbol(k): v for k, v in point.items()}
    ref.step = (point[spec.param], sympy.Rational(str(spec.lr)))
    ref.exprs = [ref.finish(derivative.value)]
    return ref


def _expected_reference(ctx: _Context, chain: Chain, part: Part, loc: tuple) -> PartReference:
    names = dict(ctx.names)
    names.update({n: symbol(n) for n in ctx.exercise.define})
    expected = part.expected
    exprs: list[sympy.Expr] = []
    domains: list[tuple[sympy.Expr, ...]] = []

    def parsed(text: Any, where: tuple) -> sympy.Expr:
        reading = ctx.read(text, where, names)
        used = sorted(str(s) for s in reading.expr.free_symbols if str(s) in ctx.exercise.define)
        typed = tuple(chain.expand(guard) for guard in reading.guards)
        exprs.append(chain.expand(reading.expr))
        domains.append(_domain(chain, ctx.typed_guards, used, typed))
        return exprs[-1]

    if isinstance(expected, list) and expected and isinstance(expected[0], list):
        rows = [[parsed(t, loc + (i, j)) for j, t in enumerate(row)] for i, row in enumerate(expected)]
        if len({len(r) for r in rows}) != 1:
            raise ctx.fail(f"{_where(loc)}: matrix rows differ in length", loc)
        shape: tuple[int, ...] = (len(rows), len(rows[0]))
    elif isinstance(expected, list):
        for i, t in enumerate(expected):
            parsed(t, loc + (i,))
        shape = (len(exprs),)
    else:
        parsed(expected, loc)
        shape = ()
    return PartReference(part, shape, exprs, domains=domains)


def _domain(chain: Chain, typed_guards: dict[str, tuple[sympy.Expr, ...]], names: list[str],
            typed: tuple[sympy.Expr, ...] = ()) -> tuple[sympy.Expr, ...]:
    """Where the functions behind a reference exist: the roots, logs and inverse functions in the
    expansion of every defined name it is computed from, with those its text had before sympy
    simplified them (typed_guards: `sqrt(x)^4` is built as x^2), and those of the reference's own
    text (`typed`). The derivative sympy returns can be real more widely (d/dx ln(sqrt x) is
    1/(2x), real for x < 0 where ln(sqrt x) is not), and an answer written link by link,
    1/sqrt(x) * 1/(2 sqrt(x)), must not be judged where the function is not."""
    trees = list(typed)
    for name in names:
        for defined in chain.upstream(name):
            trees.append(chain.expand(defined))
            trees.extend(chain.expand(guard) for guard in typed_guards.get(defined, ()))
    pieces: dict[sympy.Expr, None] = {}
    for tree in trees:
        pieces.update((node, None) for node in sympy.preorder_traversal(tree) if restricted(node))
    return tuple(pieces)


def _check_shape(ctx: _Context, part: Part, ref: PartReference, loc: tuple) -> None:
    wanted = {"expression": 0, "value": 0, "vector": 1, "matrix": 2}.get(part.answer)
    if wanted is not None and len(ref.shape) != wanted:
        kinds = {0: "a single expression", 1: "a list (vector)", 2: "a list of lists (matrix)"}
        raise ctx.fail(
            f"{_where(loc)}: `answer: {part.answer}` needs a reference that is {kinds[wanted]}, "
            f"but this one is {kinds[len(ref.shape)]}",
            loc + ("answer",),
        )
    if part.answer == "value" and not ref.is_constant:
        raise ctx.fail(f"{_where(loc)}: `answer: value` needs a number: give `at` with a value for every variable", loc)
