"""Is the student's expression the reference expression, on the reference's real domain?

Symbolic simplification is slow and unpredictable, so the verdict is numeric: both expressions
are compiled once into trees of closures that evaluate with mpmath at DPS (50) digits, with
strict real-only semantics, and compared at `count` random points where the reference is
defined. Everything is deterministic for a given `seed`.

mpmath's global context is used with its precision raised temporarily (`mpmath.workdps`), so
evaluation is not safe to run concurrently with other mpmath work in another thread. Nothing
here installs a time limit; wrap a check in `grader.budget.time_budget` to bound it.
"""
from __future__ import annotations

import functools
import itertools
import math
import operator
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import mpmath
import sympy
from sympy.core.function import AppliedUndef
from sympy.core.relational import Relational

DPS = 50
"""Decimal digits of every evaluation."""

EXPR_REL_TOL = 1e-30
"""Largest accepted |reference - answer|, relative to the larger of the two values and the largest
magnitude the reference saw (never the answer's: an answer cannot widen its own tolerance with
huge intermediates such as cosh(100)^2 - sinh(100)^2).

Rounding at 50 digits leaves errors near 1e-50 of the largest intermediate; 20 digits of
headroom absorb the amplification of cancellation-heavy but equal forms (expanded (x+1)**30
near x = -1, (1 - cos x)/x**2 at small x). An answer whose own intermediates are so large that
its rounding could reach the tolerance is evaluated again with more digits (`evaluate`).
Perturbations at or above 1e-20 of the scale are rejected, which covers x/10**20 against 0
(the difference is exactly 1e-20 of |x|).
"""

MAX_DPS = 1000
"""Most digits an answer is ever evaluated with; a point that would need more is out of range."""

GUARD_DIGITS = 5
"""How far below the tolerance an answer's rounding must stay."""

VALUE_REL_TOL = 1e-6
"""Relative tolerance of numeric `value` answers: students type rounded decimals."""

VALUE_ABS_FLOOR = 1e-9
"""Absolute tolerance used instead, only when the expected value is exactly 0."""

MIN_POINTS = 4
"""Fewer defined sample points than this and the reference counts as having no domain."""

MAX_CANDIDATES = 2000
"""Candidate points tried while looking for the reference's domain."""

_GLOBAL_ONLY = 200
"""Candidates drawn before sampling also searches near the points already found."""

_MAX_MAG = 1 << 20
"""Intermediates must lie within 2**±_MAX_MAG (about 10**±315000); beyond is Undefined."""

_EXP_LIMIT = _MAX_MAG * math.log(2)
"""exp(a) leaves the range above for |a| beyond this, so we refuse before computing it."""

_MAX_TRIG_MAG = 1 << 12
"""Periodic functions of arguments above 2**this need pi to thousands of bits: Undefined."""

_NO_MAG = -_MAX_MAG - 1
"""Magnitude marker meaning "no nonzero value seen yet"."""

_ZERO = mpmath.mpf(0)
_HALF = mpmath.mpf(0.5)
_ONE = mpmath.mpf(1)


class Undefined(Exception):
    """A value is not real, not finite, or out of range: the expression is undefined there."""


class OutOfRange(Undefined):
    """A value beyond what we compute (magnitudes past 2**±_MAX_MAG, exp of a huge argument, the
    sine of a huge angle): not a point outside the domain, only one this evaluator cannot judge.
    sech(x^2) at x = 1000 is 10**-434000, real but out of range, while the same derivative written
    1 - tanh(x^2)^2 is computed as 0 there."""


OUT_OF_RANGE = ("out of range",)
"""What `evaluate(..., skip_out_of_range=True)` gives at such a point: the caller does not judge there."""


class _State:
    """Scratch of one evaluation: the point, and log2 of the largest magnitude seen so far."""

    __slots__ = ("point", "mag")

    def __init__(self, point: tuple[mpmath.mpf, ...], mag: int):
        self.point = point
        self.mag = mag


Node = Callable[[_State], mpmath.mpf]
Test = Callable[[_State], bool]


def _in_range(ok: bool) -> None:
    if not ok:
        raise OutOfRange


def _require(ok: bool) -> None:
    if not ok:
        raise Undefined


def _admit(state: _State, value: object) -> mpmath.mpf:
    """Accept an intermediate only if it is a finite real in range, and widen the scale."""
    if type(value) is not mpmath.mpf:
        raise Undefined
    _, man, exp, bc = value._mpf_
    if not man:
        _require(not exp and not bc)
        return value
    mag = exp + bc
    if mag > state.mag:
        _in_range(mag <= _MAX_MAG)
        state.mag = mag
    else:
        _in_range(mag >= -_MAX_MAG)
    return value


def _scale(mag: int) -> mpmath.mpf:
    return _ZERO if mag == _NO_MAG else mpmath.ldexp(_ONE, mag)


def _reciprocal(value: mpmath.mpf) -> mpmath.mpf:
    _require(bool(value))
    return 1 / value


def _int_power(base: mpmath.mpf, n: int) -> mpmath.mpf:
    _require(n >= 0 or bool(base))
    return base**n


def _exp(a: mpmath.mpf) -> mpmath.mpf:
    _in_range(abs(a) <= _EXP_LIMIT)
    return mpmath.exp(a)


def _log(a: mpmath.mpf) -> mpmath.mpf:
    _require(a > 0)
    return mpmath.log(a)


def _log_base(a: mpmath.mpf, base: mpmath.mpf) -> mpmath.mpf:
    _require(base > 0 and base != 1)
    return _log(a) / mpmath.log(base)


def _periodic(a: mpmath.mpf) -> mpmath.mpf:
    """Pass through an argument small enough for cheap reduction modulo pi."""
    _in_range(mpmath.mag(a) <= _MAX_TRIG_MAG)
    return a


def _sin(a: mpmath.mpf) -> mpmath.mpf:
    return mpmath.sin(_periodic(a))


def _cos(a: mpmath.mpf) -> mpmath.mpf:
    return mpmath.cos(_periodic(a))


def _tan(a: mpmath.mpf) -> mpmath.mpf:
    return mpmath.tan(_periodic(a))


def _cot(a: mpmath.mpf) -> mpmath.mpf:
    return _reciprocal(_tan(a))


def _sec(a: mpmath.mpf) -> mpmath.mpf:
    return _reciprocal(_cos(a))


def _csc(a: mpmath.mpf) -> mpmath.mpf:
    return _reciprocal(_sin(a))


def _asin(a: mpmath.mpf) -> mpmath.mpf:
    _require(-1 <= a <= 1)
    return mpmath.asin(a)


def _acos(a: mpmath.mpf) -> mpmath.mpf:
    _require(-1 <= a <= 1)
    return mpmath.acos(a)


def _asec(a: mpmath.mpf) -> mpmath.mpf:
    return _acos(_reciprocal(a))


def _acsc(a: mpmath.mpf) -> mpmath.mpf:
    return _asin(_reciprocal(a))


def _sinh(a: mpmath.mpf) -> mpmath.mpf:
    _in_range(abs(a) <= _EXP_LIMIT)
    return mpmath.sinh(a)


def _cosh(a: mpmath.mpf) -> mpmath.mpf:
    _in_range(abs(a) <= _EXP_LIMIT)
    return mpmath.cosh(a)


def _coth(a: mpmath.mpf) -> mpmath.mpf:
    return _reciprocal(mpmath.tanh(a))


def _sech(a: mpmath.mpf) -> mpmath.mpf:
    return _reciprocal(_cosh(a))


def _csch(a: mpmath.mpf) -> mpmath.mpf:
    return _reciprocal(_sinh(a))


def _acosh(a: mpmath.mpf) -> mpmath.mpf:
    _require(a >= 1)
    return mpmath.acosh(a)


def _atanh(a: mpmath.mpf) -> mpmath.mpf:
    _require(-1 < a < 1)
    return mpmath.atanh(a)


def _acoth(a: mpmath.mpf) -> mpmath.mpf:
    return _atanh(_reciprocal(a))


def _asech(a: mpmath.mpf) -> mpmath.mpf:
    _require(a > 0)
    return _acosh(_reciprocal(a))


def _acsch(a: mpmath.mpf) -> mpmath.mpf:
    return mpmath.asinh(_reciprocal(a))


def _heaviside(a: mpmath.mpf, at_zero: mpmath.mpf = _HALF) -> mpmath.mpf:
    if a > 0:
        return _ONE
    return _ZERO if a < 0 else at_zero


def _dirac_delta(a: mpmath.mpf, order: mpmath.mpf = _ZERO) -> mpmath.mpf:
    """DiracDelta and its derivatives vanish away from the origin and are undefined at it."""
    _require(bool(a))
    return _ZERO


def _atan2(y: mpmath.mpf, x: mpmath.mpf) -> mpmath.mpf:
    _require(bool(x) or bool(y))
    return mpmath.atan2(y, x)


_UNARY: dict[type, Callable[[mpmath.mpf], mpmath.mpf]] = {
    sympy.exp: _exp,
    sympy.log: _log,
    sympy.Abs: abs,
    sympy.sign: mpmath.sign,
    sympy.sin: _sin,
    sympy.cos: _cos,
    sympy.tan: _tan,
    sympy.cot: _cot,
    sympy.sec: _sec,
    sympy.csc: _csc,
    sympy.asin: _asin,
    sympy.acos: _acos,
    sympy.atan: mpmath.atan,
    sympy.acot: mpmath.acot,
    sympy.asec: _asec,
    sympy.acsc: _acsc,
    sympy.sinh: _sinh,
    sympy.cosh: _cosh,
    sympy.tanh: mpmath.tanh,
    sympy.coth: _coth,
    sympy.sech: _sech,
    sympy.csch: _csch,
    sympy.asinh: mpmath.asinh,
    sympy.acosh: _acosh,
    sympy.atanh: _atanh,
    sympy.acoth: _acoth,
    sympy.asech: _asech,
    sympy.acsch: _acsch,
    sympy.Heaviside: _heaviside,
    sympy.DiracDelta: _dirac_delta,
}

_BINARY: dict[type, Callable[[mpmath.mpf, mpmath.mpf], mpmath.mpf]] = {
    sympy.log: _log_base,
    sympy.atan2: _atan2,
    sympy.Heaviside: _heaviside,
    sympy.DiracDelta: _dirac_delta,
}

_COMPARISONS: dict[str, Callable[[mpmath.mpf, mpmath.mpf], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def _undefined(state: _State) -> mpmath.mpf:
    raise Undefined


class RealFunction:
    """expr compiled once: a tree of closures evaluating with mpmath, real-only.

    Any intermediate that is not real, not finite, or beyond 10**±315000 makes the whole value
    Undefined, even if later operations would bring it back (sqrt(-x)*sqrt(-x) is undefined
    for x > 0). Non-integer powers of negative bases are undefined (principal roots), as in
    sympy. A Float stands for the decimal it prints as, so 0.1 means 1/10 to 50 digits.
    Functions without a hand-written rule are evaluated by `sympy.lambdify(..., "mpmath")`
    on their (real-checked) arguments; non-function nodes such as Derivative or Integral,
    and undefined functions f(x), raise TypeError at construction. `guards` are expressions
    that must be defined too (their values and magnitudes are not used): what the writer typed
    before sympy simplified it (grader.parse.Reading), or what a reference is computed from.
    """

    def __init__(self, expr: sympy.Expr, variables: Sequence[sympy.Symbol], dps: int = DPS,
                 guards: Sequence[sympy.Expr] = ()):
        self.expr = expr
        self.variables = tuple(variables)
        self.dps = dps
        self.guards = tuple(guards)
        self._index = {symbol: i for i, symbol in enumerate(self.variables)}
        stray = sympy.Add(expr, *self.guards, evaluate=False).free_symbols - set(self.variables)
        if stray:
            names = ", ".join(sorted(map(str, stray)))
            allowed = ", ".join(map(str, self.variables)) or "none"
            raise ValueError(f"{expr} uses {names}; the variables are {allowed}")
        self._base_mag = _NO_MAG
        with mpmath.workdps(dps):
            self._root = self._compile(expr)
            self._guards = [self._compile_apart(guard) for guard in self.guards]
        self._pieces: list[Node] | None = None   # compiled on first need (defined_pieces)

    def __call__(self, point: Sequence[mpmath.mpf]) -> tuple[mpmath.mpf, mpmath.mpf]:
        """(value, scale), or raise Undefined.

        scale bounds the largest |intermediate value| seen (constants included) from above,
        within a factor of 2; it feeds the scale-aware zero test of `compare`.
        """
        if len(point) != len(self.variables):
            raise ValueError(f"expected {len(self.variables)} coordinates, got {len(point)}")
        context = mpmath.mp
        saved = context.prec
        context.dps = self.dps
        try:
            coordinates = tuple(c if type(c) is mpmath.mpf else mpmath.mpf(c) for c in point)
            for guard in self._guards:
                try:
                    guard(_State(coordinates, _NO_MAG))
                except OutOfRange:
                    continue   # beyond what we compute is not undefined (as in defined_pieces); its value is unused
            state = _State(coordinates, self._base_mag)
            value = self._root(state)
            return value, _scale(state.mag)
        finally:
            context.prec = saved

    def defined_pieces(self, point: Sequence[mpmath.mpf]) -> bool:
        """At a point where the whole is out of range: whether every piece with a restricted domain
        (a root, a log, an inverse function, a non-integer power) is defined there, each on its own.
        Out of range must not hide undefined: in e^(-10^6 x^2) ln(1 - x^2) the first factor is out
        of range for |x| > 1, where the log is not real."""
        if self._pieces is None:
            nodes = {node for tree in (self.expr, *self.guards) for node in sympy.preorder_traversal(tree)
                     if restricted(node)}
            with mpmath.workdps(self.dps):
                self._pieces = [self._compile_apart(node) for node in nodes]
        with mpmath.workdps(self.dps):
            state = _State(tuple(mpmath.mpf(c) for c in point), self._base_mag)
            for piece in self._pieces:
                try:
                    piece(state)
                except OutOfRange:
                    continue
                except Undefined:
                    return False
        return True

    def _compile_apart(self, expr: sympy.Basic) -> Node:
        """A piece that only has to be defined (a guard): neither its constants nor, in __call__,
        its intermediates join the scale, which sets the tolerance of a reference's values."""
        kept = self._base_mag
        try:
            return self._compile(expr)
        finally:
            self._base_mag = kept

    def _compile(self, expr: sympy.Basic) -> Node:
        node = self._build(expr)
        if expr.free_symbols:
            return node
        return self._fold(node)

    def _fold(self, node: Node) -> Node:
        """Evaluate a constant subtree now; its magnitudes join every later evaluation's scale."""
        state = _State((), _NO_MAG)
        try:
            value = node(state)
        except Undefined:
            return _undefined
        self._base_mag = max(self._base_mag, state.mag)

        def constant(state: _State) -> mpmath.mpf:
            return value

        return constant

    def _build(self, expr: sympy.Basic) -> Node:
        if isinstance(expr, sympy.Symbol):
            return self._symbol(expr)
        if expr.is_Atom:
            return self._number(expr)
        if isinstance(expr, sympy.Add):
            return self._add(expr)
        if isinstance(expr, sympy.Mul):
            return self._mul(expr)
        if isinstance(expr, sympy.Pow):
            return self._pow(expr)
        if isinstance(expr, sympy.Piecewise):
            return self._piecewise(expr)
        if isinstance(expr, (sympy.Min, sympy.Max)):
            return self._extremum(expr)
        if isinstance(expr, AppliedUndef):
            raise TypeError(f"cannot evaluate the undefined function {expr.func}")
        if isinstance(expr, sympy.Function):
            rules = {1: _UNARY, 2: _BINARY}.get(len(expr.args), {})
            rule = rules.get(expr.func)
            if rule is None:
                return self._lambdified(expr)
            return self._apply(rule, expr.args)
        raise TypeError(f"cannot evaluate {type(expr).__name__} expressions numerically: {expr}")

    def _symbol(self, symbol: sympy.Symbol) -> Node:
        index = self._index[symbol]

        def variable(state: _State) -> mpmath.mpf:
            return _admit(state, state.point[index])

        return variable

    def _number(self, atom: sympy.Basic) -> Node:
        if atom.is_Rational:
            value = mpmath.mpf(int(atom.p)) / int(atom.q)
        elif atom.is_Float:
            value = mpmath.mpf(str(atom))
        else:
            approx = atom.evalf(self.dps + 10)
            if not approx.is_Float:
                return _undefined
            value = mpmath.mpf(str(approx))

        def number(state: _State) -> mpmath.mpf:
            return _admit(state, value)

        return number

    def _add(self, expr: sympy.Add) -> Node:
        terms = [self._compile(arg) for arg in expr.args]
        if len(terms) == 2:   # one rounding either way; fsum's generality costs more than the sum
            left, right = terms

            def add_two(state: _State) -> mpmath.mpf:
                return _admit(state, left(state) + right(state))

            return add_two

        def add(state: _State) -> mpmath.mpf:
            return _admit(state, mpmath.fsum([term(state) for term in terms]))

        return add

    def _mul(self, expr: sympy.Mul) -> Node:
        first, *rest = [self._compile(arg) for arg in expr.args]

        def mul(state: _State) -> mpmath.mpf:
            product = first(state)
            for factor in rest:
                product = _admit(state, product * factor(state))
            return product

        return mul

    def _extremum(self, expr: sympy.Min | sympy.Max) -> Node:
        pick = min if isinstance(expr, sympy.Min) else max
        args = [self._compile(arg) for arg in expr.args]

        def extremum(state: _State) -> mpmath.mpf:
            return pick([arg(state) for arg in args])

        return extremum

    def _pow(self, expr: sympy.Pow) -> Node:
        base = self._compile(expr.base)
        exponent = expr.exp
        if exponent.is_Integer:
            n = int(exponent)

            def integer_power(state: _State) -> mpmath.mpf:
                return _admit(state, _int_power(base(state), n))

            return integer_power
        if exponent.is_Rational:
            p, q = int(exponent.p), int(exponent.q)
            root = mpmath.sqrt if q == 2 else (lambda b: mpmath.root(b, q))

            def rational_power(state: _State) -> mpmath.mpf:
                b = base(state)
                _require(b > 0 or (not b and p > 0))
                return _admit(state, root(b) ** p) if b else b

            return rational_power
        power_of = self._compile(exponent)

        def power(state: _State) -> mpmath.mpf:
            b = base(state)
            e = power_of(state)
            if b > 0:
                return _admit(state, _exp(e * mpmath.log(b)))
            if mpmath.isint(e):
                return _admit(state, _int_power(b, int(e)))
            _require(not b and e > 0)
            return b

        return power

    def _apply(self, rule: Callable[..., mpmath.mpf], args: tuple[sympy.Basic, ...]) -> Node:
        if len(args) == 1:
            arg = self._compile(args[0])

            def unary(state: _State) -> mpmath.mpf:
                return _admit(state, rule(arg(state)))

            return unary
        left, right = (self._compile(a) for a in args)

        def binary(state: _State) -> mpmath.mpf:
            return _admit(state, rule(left(state), right(state)))

        return binary

    def _lambdified(self, expr: sympy.Function) -> Node:
        """Unknown function: mpmath evaluates the head, our compiler its arguments."""
        dummies = [sympy.Dummy() for _ in expr.args]
        head = sympy.lambdify(dummies, expr.func(*dummies), "mpmath")
        args = [self._compile(arg) for arg in expr.args]

        def lambdified(state: _State) -> mpmath.mpf:
            values = [arg(state) for arg in args]
            try:
                value = mpmath.mpmathify(head(*values))
            except (ArithmeticError, ValueError) as error:
                raise Undefined from error
            return _admit(state, value)

        return lambdified

    def _piecewise(self, expr: sympy.Piecewise) -> Node:
        pieces = [(self._compile(piece.expr), self._test(piece.cond)) for piece in expr.args]

        def piecewise(state: _State) -> mpmath.mpf:
            for value, holds in pieces:
                if holds(state):
                    return value(state)
            raise Undefined

        return piecewise

    def _test(self, cond: sympy.Basic) -> Test:
        """Compile a Piecewise condition; a condition that cannot be evaluated is Undefined."""
        if cond is sympy.true or cond is sympy.false:
            truth = bool(cond)
            return lambda state: truth
        if isinstance(cond, Relational):
            relation = _COMPARISONS[cond.rel_op]
            lhs, rhs = self._compile(cond.lhs), self._compile(cond.rhs)
            return lambda state: relation(lhs(state), rhs(state))
        if isinstance(cond, (sympy.And, sympy.Or)):
            combine = all if isinstance(cond, sympy.And) else any
            parts = [self._test(arg) for arg in cond.args]
            return lambda state: combine(part(state) for part in parts)
        if isinstance(cond, sympy.Not):
            inner = self._test(cond.args[0])
            return lambda state: not inner(state)
        raise TypeError(f"cannot evaluate the condition {cond}")


def _draw(rng: random.Random) -> float:
    """One coordinate from a mix of scales; never 0 or an exact integer."""
    while True:
        kind = rng.randrange(4)
        if kind == 0:
            value = rng.uniform(-2, 2)
        elif kind == 1:
            value = rng.uniform(-10, 10)
        elif kind == 2:
            value = rng.choice((-1, 1)) * 10 ** rng.uniform(-3, 3)
        else:
            value = rng.randint(-10, 10) + rng.choice((-1, 1)) * 10 ** rng.uniform(-4, -1)
        if not value.is_integer():
            return value


def _near(rng: random.Random, center: tuple[float, ...]) -> tuple[float, ...]:
    """A candidate close to a point already known to be in the domain (narrow bands)."""
    moved = []
    for c in center:
        while True:
            value = c + rng.gauss(0, 1) * max(abs(c), 1e-3) * 10 ** rng.uniform(-4, 0)
            if not value.is_integer():
                break
        moved.append(value)
    return tuple(moved)


def _scan_steps(n_vars: int) -> list[float]:
    """Steps of Roberts' R_n sequence, an additive recurrence that fills the n-cube evenly."""
    ratio = 2.0
    for _ in range(60):
        ratio = (1 + ratio) ** (1 / (n_vars + 1))
    return [ratio ** -(i + 1) % 1 for i in range(n_vars)]


def _candidates(
    rng: random.Random, n_vars: int, found: list[tuple[float, ...]]
) -> Iterator[tuple[float, ...]]:
    """Endless candidate points; reads `found` (the hits so far) to decide where to look.

    The first _GLOBAL_ONLY are random draws. After that, every other candidate is still a
    random draw; the rest search near a random hit or, while there is none, scan [-10, 10]
    per coordinate with a low-discrepancy sequence: in one variable 1350 scan points leave
    no gap wider than 0.025, so narrow bands inside [-10, 10] are not missed by bad luck.
    """
    steps = _scan_steps(n_vars)
    starts = [rng.random() for _ in range(n_vars)]
    scanned = 0
    for attempt in itertools.count():
        if attempt < _GLOBAL_ONLY or (attempt % 2 == 0 and (found or attempt % 4 == 0)):
            yield tuple(_draw(rng) for _ in range(n_vars))
        elif found:
            yield _near(rng, rng.choice(found))
        else:
            scanned += 1
            yield _scan_point(starts, steps, scanned, (-10, 10))


_SMALL_BOXES = ((-1, 1), (0, 1))
"""Where small domains of several variables live: a unit ball; probabilities on a simplex."""


def _in_small_boxes(rng: random.Random, n_vars: int, found: list[tuple[float, ...]]) -> Iterator[tuple[float, ...]]:
    """More candidates for a domain of several variables that _candidates did not fill: scans of
    [-1, 1]^n and [0, 1]^n in turn, and near the hits. Independent draws per coordinate hit the
    simplex of 4 probabilities about once in 10^5 tries, a scan of [0, 1]^4 once in 24."""
    steps = _scan_steps(n_vars)
    starts = [rng.random() for _ in range(n_vars)]
    scanned = 0
    for attempt in itertools.count():
        if found and attempt % 2:
            yield _near(rng, rng.choice(found))
        else:
            scanned += 1
            yield _scan_point(starts, steps, scanned, _SMALL_BOXES[scanned % 2])


def _scan_point(starts: list[float], steps: list[float], index: int, box: tuple[float, float]) -> tuple[float, ...]:
    low, high = box
    return tuple(low + (high - low) * ((start + index * step) % 1) for start, step in zip(starts, steps))


def sample(
    reference: RealFunction, n_vars: int, *, seed: int = 0, count: int = 16
) -> list[tuple[tuple[mpmath.mpf, ...], tuple[mpmath.mpf, mpmath.mpf]]]:
    """Up to `count` points where `reference` is defined, found deterministically from `seed`,
    each with the reference's (value, scale) there: finding a point means evaluating it.

    Random draws mix uniform [-2, 2], uniform [-10, 10], signed log-uniform magnitudes in
    [1e-3, 1e3] and small integers offset by 1e-4..1e-1, independently per coordinate; see
    _candidates for how half-lines and narrow bands are filled. At most MAX_CANDIDATES are
    tried, and in two or more variables half as many more in small boxes (_in_small_boxes)
    when those left points to find; a domain none of them hits is reported by returning
    fewer points.
    """
    rng = random.Random(seed)
    found: list[tuple[float, ...]] = []
    samples = []
    candidates: Iterator[tuple[float, ...]] = itertools.islice(_candidates(rng, n_vars, found), MAX_CANDIDATES)
    if n_vars > 1:
        candidates = itertools.chain(candidates, itertools.islice(_in_small_boxes(rng, n_vars, found), MAX_CANDIDATES // 2))
    with mpmath.workdps(DPS):
        for candidate in candidates:
            if any(c.is_integer() for c in candidate):
                continue
            point = tuple(mpmath.mpf(c) for c in candidate)
            try:
                value = reference(point)
            except Undefined:
                continue
            found.append(candidate)
            samples.append((point, value))
            if len(samples) >= count:
                break
    return samples


RESTRICTED_FUNCTIONS = (sympy.log, sympy.asin, sympy.acos, sympy.asec, sympy.acsc, sympy.acosh, sympy.atanh,
                        sympy.acoth, sympy.asech)
"""Functions not defined for every real argument on a whole interval (poles such as tan's are single points)."""


def restricted(node: sympy.Basic) -> bool:
    """A piece whose real domain is not all reals on a whole interval: such a function of a variable, or a
    non-integer power of one."""
    if not node.free_symbols:
        return False
    return isinstance(node, RESTRICTED_FUNCTIONS) or (node.is_Pow and not node.exp.is_Integer)


MAX_SKIPPED = 4
"""Sample points (of 16) where an answer may be out of range and still be judged on the rest."""

CHALLENGE_POINTS = 2
"""Extra points an answer that matched at every sample point is also checked at (see `challenge`)."""

CHALLENGE_TRIES = 40
"""Candidates tried for them: a reference defined only on a sliver may leave an answer without any."""


def challenge(reference: RealFunction, around: Sequence[Sequence[mpmath.mpf]], seed: int, far: bool = True,
              ) -> Iterator[tuple[tuple[mpmath.mpf, ...], tuple[mpmath.mpf, mpmath.mpf]]]:
    """More points of the reference's domain, with its values there, for one answer: the caller
    takes as many as it can judge (CHALLENGE_POINTS), at most CHALLENGE_TRIES candidates in all.

    The sample points are the same for every answer, and anyone can compute them from this
    source, so an answer can be built to agree at all of them (add a polynomial vanishing there).
    The caller seeds these points with a hash of the answer itself: to agree at them, an answer
    would have to contain the points that its own text selects. They are looked for far out
    first, one with every coordinate in [10^3, 10^4] and one in [-10^4, -10^3], where an added
    e^(x - 200) or |x - 10| + x - 10 shows, well past the sample points' [-10, 10] (from 100 on,
    e^(x - 200) was still below the tolerance up to x = 136); then anywhere (±10^u, u in [-1, 4]) and near a
    sample point (`around`), for references defined only on a narrow domain. With `far` off
    (answers computed in float64, whose values far out may underflow to 0 like the reference's),
    only near a sample point."""
    rng = random.Random(seed)
    found = 0
    for attempt in range(CHALLENGE_TRIES):
        if far and attempt < 4:
            sign = 1 if not found else -1
            candidate = tuple(sign * _off_integer(rng, 3, 4) for _ in reference.variables)
        elif (far and attempt % 2 == 0) or not around:
            candidate = tuple(rng.choice((-1, 1)) * _off_integer(rng, -1, 4) for _ in reference.variables)
        else:
            candidate = _near(rng, tuple(float(c) for c in rng.choice(list(around))))
        with mpmath.workdps(DPS):
            point = tuple(mpmath.mpf(c) for c in candidate)
            try:
                value = reference(point)
            except Undefined:
                continue
        found += 1
        yield point, value


def _off_integer(rng: random.Random, low: float, high: float) -> float:
    """10^u for u uniform in [low, high], never an exact integer."""
    while True:
        value = 10 ** rng.uniform(low, high)
        if not value.is_integer():
            return value


def evaluate(
    fn: RealFunction,
    points: Sequence[Sequence[mpmath.mpf]],
    against: Sequence[tuple[mpmath.mpf, mpmath.mpf] | None] | None = None,
    skip_out_of_range: bool = False,
) -> list:
    """(value, scale) at each point, None where `fn` is undefined (and OUT_OF_RANGE where it is
    only beyond what we compute, with `skip_out_of_range`).

    With `against` (the reference's values at the same points), a point where `fn`'s own
    intermediates dwarf the reference, so that rounding at fn.dps digits could reach the
    tolerance, is evaluated again with as many more digits as that takes (at most MAX_DPS).
    """
    results: list = []
    for index, point in enumerate(points):
        try:
            result = fn(point)
            reference = against[index] if against is not None else None
            digits = _digits_needed(result, reference, fn.dps)
            if digits is not None:
                _in_range(digits <= MAX_DPS)
                result = RealFunction(fn.expr, fn.variables, dps=digits, guards=fn.guards)(point)
            elif reference is not None and not reference[0] and not reference[1] and result[0]:
                result = _zero_if_noise(fn, point, result)
        except OutOfRange:
            result = OUT_OF_RANGE if skip_out_of_range and fn.defined_pieces(point) else None
        except Undefined:
            result = None
        results.append(result)
    return results


def _zero_if_noise(fn: RealFunction, point: Sequence[mpmath.mpf],
                   result: tuple[mpmath.mpf, mpmath.mpf]) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Where the reference is exactly 0, no tolerance scales: an answer that cancels to 0 leaves
    only rounding noise (1e-52 at 50 digits), which shrinks as digits are added, while a real
    value, however small (x/10^60), does not. So evaluate again with twice the digits: 0 if the
    value fell by more than the tolerance's 30 orders, else the value as it is. Enough digits
    means: rounding (scale times 10^-digits) far below the tolerance relative to the value."""
    value, scale = result
    lost = math.ceil((mpmath.mag(scale) - mpmath.mag(value)) * _LOG10_2) if scale else 0
    digits = max(2 * fn.dps, fn.dps + lost - int(math.log10(EXPR_REL_TOL)) + GUARD_DIGITS)
    _in_range(digits <= MAX_DPS)
    precise = RealFunction(fn.expr, fn.variables, dps=digits, guards=fn.guards)(point)
    with mpmath.workdps(DPS):
        return (_ZERO, result[1]) if abs(precise[0]) <= _tolerance(EXPR_REL_TOL) * abs(result[0]) else result


def _digits_needed(answer: tuple[mpmath.mpf, mpmath.mpf], reference: tuple[mpmath.mpf, mpmath.mpf] | None,
                   dps: int) -> int | None:
    """More digits for an answer whose rounding (its scale times 10**-dps) could reach the
    tolerance relative to the reference; None when `dps` is enough (or nothing would be).
    Compared in binary exponents (mpmath.mag), which costs next to nothing for the usual answer."""
    if reference is None:
        return None
    (value, scale), (expected, expected_scale) = answer, reference
    if scale <= expected_scale * _ROOM:   # the usual answer: no bigger than the reference's own intermediates
        return None
    floor = max((mpmath.mag(v) for v in (expected, expected_scale) if v), default=None)
    if not scale or floor is None:
        return None
    if value and mpmath.mag(value) > max(floor + _ROOM_BITS, mpmath.mag(scale) - (dps - GUARD_DIGITS - 5) / _LOG10_2):
        return None   # its value dwarfs the reference and its own rounding: different at any precision
    lost = math.ceil((mpmath.mag(scale) - floor) * _LOG10_2)
    needed = lost - int(math.log10(EXPR_REL_TOL)) + GUARD_DIGITS
    return needed if needed > dps else None


_LOG10_2 = math.log10(2)
_ROOM = mpmath.mpf(10) ** 10
_ROOM_BITS = 34
"""log2 of _ROOM, rounded up."""
"""Answers whose scale is within 10^10 of the reference's need no more digits than DPS: 50 - 10 > 30 + GUARD_DIGITS."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one comparison, with words a student can act on."""

    equal: bool
    reason: str
    """"equal" | "differs" | "undefined" (the answer is undefined where the reference is
    defined) | "no-domain" (the reference is undefined almost everywhere we looked) | "out-of-range" (the
    answer is beyond what we compute at most points, grader.grade)."""
    detail: str
    """Where and how the answer is wrong; "" when equal."""


def _show(value: mpmath.mpf, digits: int = 4) -> str:
    return mpmath.nstr(value, digits)


def _where(point: Sequence[mpmath.mpf], variables: Sequence[sympy.Symbol]) -> str:
    return ", ".join(f"{name} = {_show(c)}" for name, c in zip(variables, point))


def _distinct(expected: mpmath.mpf, got: mpmath.mpf) -> tuple[str, str]:
    """Both values with just enough digits to tell them apart."""
    for digits in (4, 8, 16, 24, 32, 40):
        shown = _show(expected, digits), _show(got, digits)
        if shown[0] != shown[1]:
            return shown
    return _show(expected, DPS), _show(got, DPS)


def _plainness(point: Sequence[mpmath.mpf]) -> float:
    """How far a point's coordinates are from magnitude 1 (0 is plainest), in decades."""
    return max((abs(math.log10(abs(float(c)))) for c in point if c), default=0.0)


def _close(ref: tuple[mpmath.mpf, mpmath.mpf], ans: tuple[mpmath.mpf, mpmath.mpf], rel_tol: float) -> bool:
    """Within rel_tol of the larger value or of the reference's scale; the answer's scale never counts."""
    (expected, expected_scale), (got, _got_scale) = ref, ans
    return abs(expected - got) <= _tolerance(rel_tol) * max(abs(expected), abs(got), expected_scale)


@functools.lru_cache(maxsize=8)
def _tolerance(rel_tol: float) -> mpmath.mpf:
    """rel_tol as an mpf once: a float times an mpf converts the float on every call."""
    return mpmath.mpf(rel_tol)


def matches_at(
    ref_values: Sequence[tuple[mpmath.mpf, mpmath.mpf] | None],
    ans_values: Sequence[tuple[mpmath.mpf, mpmath.mpf] | None],
    *,
    rel_tol: float = EXPR_REL_TOL,
) -> bool:
    """The answer is defined and close wherever the reference is defined, however few such points."""
    with mpmath.workdps(DPS):
        return all(ans is not None and _close(ref, ans, rel_tol) for ref, ans in zip(ref_values, ans_values) if ref is not None)


def agrees(
    ref_values: Sequence[tuple[mpmath.mpf, mpmath.mpf] | None],
    ans_values: Sequence[tuple[mpmath.mpf, mpmath.mpf] | None],
    *,
    rel_tol: float = EXPR_REL_TOL,
) -> bool:
    """`compare(...).equal` without the report: stops at the first point where they differ.

    Diagnosis tries many mistaken answers against one student answer, and most differ at the
    first point; finding the plainest failing point for a message would only be wasted there."""
    checked = 0
    with mpmath.workdps(DPS):
        for ref, ans in zip(ref_values, ans_values):
            if ref is None:
                continue
            if ans is None or not _close(ref, ans, rel_tol):
                return False
            checked += 1
    return checked >= MIN_POINTS


def compare(
    ref_values: Sequence[tuple[mpmath.mpf, mpmath.mpf] | None],
    ans_values: Sequence[tuple[mpmath.mpf, mpmath.mpf] | None],
    points: Sequence[Sequence[mpmath.mpf]],
    variables: Sequence[sympy.Symbol],
    *,
    rel_tol: float = EXPR_REL_TOL,
) -> Verdict:
    """Equal only if, at every point where the reference is defined, the answer is defined and
    |ref - ans| <= rel_tol * max(|ref|, |ans|, scale_ref, scale_ans); of the failing points, the
    one whose coordinates are closest to magnitude 1 is reported (the easiest to check by hand).
    Points where the reference is undefined are skipped."""
    checked = 0
    failures: list[tuple[float, int]] = []
    with mpmath.workdps(DPS):
        for index, (ref, ans) in enumerate(zip(ref_values, ans_values)):
            if ref is None:
                continue
            checked += 1
            if ans is None:
                failures.append((_plainness(points[index]), index))
                continue
            if not _close(ref, ans, rel_tol):
                failures.append((_plainness(points[index]), index))
        if failures:
            index = min(failures)[1]
            where, expected = _where(points[index], variables), ref_values[index][0]
            if ans_values[index] is None:
                return Verdict(False, "undefined", f"at {where}, your answer is undefined but the expected value is {_show(expected)}")
            shown_expected, shown_got = _distinct(expected, ans_values[index][0])
            return Verdict(False, "differs", f"at {where}, your answer is {shown_got} but the expected value is {shown_expected}")
    if checked < MIN_POINTS:
        detail = (
            f"the expected answer is defined at only {checked} of the sample points "
            f"(at least {MIN_POINTS} are needed), so answers cannot be checked"
        )
        return Verdict(False, "no-domain", detail)
    return Verdict(True, "equal", "")


def equivalent(
    reference: sympy.Expr,
    answer: sympy.Expr,
    variables: Sequence[sympy.Symbol],
    *,
    seed: int = 0,
    count: int = 16,
) -> Verdict:
    """Does `answer` equal `reference` wherever the reference is defined (real domain)?

    Raises ValueError if either expression uses a symbol outside `variables`, TypeError if
    it contains something that cannot be evaluated numerically (see RealFunction).
    """
    samples = sample(RealFunction(reference, variables), len(variables), seed=seed, count=count)
    points = [point for point, _ in samples]
    reference_values = [value for _, value in samples]
    answer_values = evaluate(RealFunction(answer, variables), points, reference_values)
    return compare(reference_values, answer_values, points, variables)


def _constant_value(value: sympy.Expr | float) -> mpmath.mpf | None:
    """The real value of a constant, or None if it has none."""
    if isinstance(value, (int, float)):
        number = mpmath.mpf(value)
        return number if mpmath.isfinite(number) else None
    if value.free_symbols:
        names = ", ".join(sorted(map(str, value.free_symbols)))
        raise ValueError(f"{value} is not a constant: it uses {names}")
    try:
        return RealFunction(value, ())(())[0]
    except Undefined:
        return None


def values_close(
    expected: sympy.Expr | float, got: sympy.Expr | float, *, rel_tol: float = VALUE_REL_TOL
) -> bool:
    """Is the numeric answer `got` within rel_tol of `expected` (relative to |expected|)?

    When expected is exactly 0 the test is |got| <= VALUE_ABS_FLOOR instead. Raises
    ValueError if `expected` is not a finite real constant; an undefined `got` is not close.
    """
    with mpmath.workdps(DPS):
        want = _constant_value(expected)
        if want is None:
            raise ValueError(f"the expected value {expected} is not a finite real number")
        have = _constant_value(got)
        if have is None:
            return False
        if not want:
            return abs(have) <= VALUE_ABS_FLOOR
        return abs(have - want) <= rel_tol * abs(want)
