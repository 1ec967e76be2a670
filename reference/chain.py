"""The reference chain rule, small enough to read in one sitting.

A `Chain` holds free variables and named definitions such as u = x**2 + 1, y = u**3. Each
definition is a node of a dependency graph, and each edge carries a local derivative
(dy/du = 3*u**2).
The derivative of one node with respect to another is the sum, over every path between them,
of the product of the local derivatives along that path. `backward` computes the same sum the
way backpropagation does: one node at a time, in reverse topological order.

`peel` does the same job for a single expression such as sin(x**2). It splits off the outermost
function so that a composite written on one line can still be taught as a chain.

Only sympy and the standard library are imported. The grader depends on this module, and
never the other way round.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import sympy


def symbol(name: str) -> sympy.Symbol:
    """The one symbol for a name. Names are real, so log(exp(x)) == x as a student expects."""
    return sympy.Symbol(name, real=True)


@dataclass(frozen=True)
class Link:
    """One edge of the chain: how `node` moves with its direct `input`, other inputs fixed."""

    node: str
    input: str
    local: sympy.Expr
    substituted: sympy.Expr


@dataclass(frozen=True)
class Path:
    """One route from the differentiated node down to `wrt`; it adds the product of its links."""

    links: tuple[Link, ...]
    term: sympy.Expr

    def names(self) -> tuple[str, ...]:
        """The nodes visited, outermost first; empty for the trivial path from a name to itself."""
        if not self.links:
            return ()
        return (self.links[0].node,) + tuple(link.input for link in self.links)


@dataclass(frozen=True)
class Derivative:
    """d(of)/d(wrt) with the paths that explain it, for worked solutions and mistake detection."""

    of: str
    wrt: str
    value: sympy.Expr
    paths: tuple[Path, ...]
    direct: sympy.Expr


class Chain:
    """Free variables plus named definitions: the dependency graph the chain rule walks."""

    def __init__(self, variables: Sequence[str], definitions: Mapping[str, sympy.Expr]) -> None:
        self.variables: tuple[str, ...] = tuple(variables)
        self._locals: dict[tuple[str, str], sympy.Expr] = {}  # each edge is differentiated once
        _check_names(self.variables, tuple(definitions))
        given = self.variables + tuple(definitions)
        known = set(given)
        self._definitions: dict[str, sympy.Expr] = {}
        self._inputs: dict[str, tuple[str, ...]] = {}
        for name, expr in definitions.items():
            expr = _with_real_symbols(_as_expression(name, expr), known)
            used = _names_in(expr)
            unknown = sorted(used - known)
            if unknown:
                listed = ", ".join(repr(other) for other in unknown)
                raise ValueError(f"the definition of {name!r} uses unknown symbols: {listed}")
            self._definitions[name] = expr
            self._inputs[name] = tuple(other for other in given if other in used)
        self.names: tuple[str, ...] = _topological_order(self._inputs)
        self._inputs.update({name: () for name in self.variables})
        self._expansions: dict[sympy.Symbol, sympy.Expr] = {}
        for name in self.names:
            self._expansions[symbol(name)] = self._definitions[name].xreplace(self._expansions)

    def expression(self, name: str) -> sympy.Expr:
        """The name's own definition, in its direct inputs; a variable is just its symbol."""
        self._check(name)
        return self._definitions.get(name, symbol(name))

    def inputs(self, name: str) -> tuple[str, ...]:
        """The names appearing directly in `name`'s definition, in the order they were given."""
        self._check(name)
        return self._inputs[name]

    def upstream(self, name: str) -> tuple[str, ...]:
        """`name` and every defined name it is computed from, however deep (free variables left out)."""
        self._check(name)
        found: dict[str, None] = {}
        waiting = [name]
        while waiting:
            current = waiting.pop()
            if current in self._definitions and current not in found:
                found[current] = None
                waiting.extend(self._inputs[current])
        return tuple(found)

    def expand(self, expr_or_name: sympy.Expr | str) -> sympy.Expr:
        """Substitute every definition, however deep, so the result is in free variables only."""
        if isinstance(expr_or_name, str):
            return self.expression(expr_or_name).xreplace(self._expansions)
        expr = _with_real_symbols(_sympy_number(expr_or_name), set(self._inputs))
        return expr.xreplace(self._expansions)

    def local(self, node: str, input: str) -> sympy.Expr:
        """dN/dM, N's other direct inputs held fixed, in N's own symbols; 0 if M is no input."""
        self._check(input)
        if input not in self.inputs(node):
            return sympy.S.Zero
        if (node, input) not in self._locals:
            self._locals[(node, input)] = sympy.diff(self.expression(node), symbol(input))
        return self._locals[(node, input)]

    def backward(self, of: str) -> dict[str, sympy.Expr]:
        """d(of)/d(name) for every name, as backpropagation computes it.

        The adjoint of `of` is 1. Visiting nodes in reverse topological order, each node passes
        its adjoint times its local derivative to each of its inputs, so a node's adjoint is
        complete before it is passed on; a node with adjoint 0 has nothing to pass. The adjoint
        of a defined name treats that name as independent; that of a variable is the total
        derivative. Adjoints are summed in each node's own symbols and expanded at the end.
        """
        self._check(of)
        adjoints = {name: sympy.S.Zero for name in self.variables + self.names}
        adjoints[of] = sympy.S.One
        for node in reversed(self.names):
            if adjoints[node] == 0:
                continue
            for used in self.inputs(node):
                adjoints[used] += adjoints[node] * self.local(node, used)
        return {name: self.expand(adjoint) for name, adjoint in adjoints.items()}

    def derivative(self, of: str, wrt: str) -> Derivative:
        """d(of)/d(wrt): total for a variable `wrt`, cut at `wrt` when it is a defined name."""
        return self._derivative(of, wrt, self.backward(of))

    def gradient(self, of: str, wrt: Sequence[str]) -> list[Derivative]:
        """The derivative of `of` with respect to each name in `wrt`, sharing one backward pass."""
        adjoints = self.backward(of)
        return [self._derivative(of, name, adjoints) for name in wrt]

    def value_at(
        self, expr: sympy.Expr | str, point: Mapping[str, float | int | sympy.Expr]
    ) -> sympy.Expr:
        """`expr` expanded, variables replaced by the given values, evaluated exactly by sympy."""
        strangers = [name for name in point if name not in self.variables]
        if strangers:
            listed = ", ".join(repr(name) for name in strangers)
            raise ValueError(f"a point gives values to free variables only, not to {listed}")
        values = {symbol(name): _sympy_number(value) for name, value in point.items()}
        return self.expand(expr).xreplace(values)

    def _derivative(self, of: str, wrt: str, adjoints: Mapping[str, sympy.Expr]) -> Derivative:
        self._check(wrt)
        paths = tuple(self._path(route) for route in self._routes(of, wrt))
        direct = self.expand(self.local(of, wrt))
        return Derivative(of=of, wrt=wrt, value=adjoints[wrt], paths=paths, direct=direct)

    def _routes(self, of: str, wrt: str) -> list[tuple[str, ...]]:
        """Every sequence of names from `of` down to `wrt`: depth first, inputs in given order."""
        if of == wrt:
            return [(wrt,)]
        return [(of,) + route for used in self.inputs(of) for route in self._routes(used, wrt)]

    def _path(self, route: tuple[str, ...]) -> Path:
        links = tuple(self._link(node, used) for node, used in zip(route, route[1:]))
        return Path(links=links, term=sympy.Mul(*(link.substituted for link in links)))

    def _link(self, node: str, used: str) -> Link:
        local = self.local(node, used)
        return Link(node=node, input=used, local=local, substituted=self.expand(local))

    def _check(self, name: str) -> None:
        if name not in self._inputs:
            raise ValueError(f"{name!r} is neither a free variable nor a defined name")


def _check_names(variables: tuple[str, ...], defined: tuple[str, ...]) -> None:
    for name in variables + defined:
        if not isinstance(name, str) or not name:
            raise ValueError(f"names must be non-empty strings, not {name!r}")
    for index, name in enumerate(variables):
        if name in variables[:index]:
            raise ValueError(f"the free variable {name!r} is listed twice")
    for name in defined:
        if name in variables:
            raise ValueError(f"{name!r} is both a free variable and a defined name")


def _sympy_number(value: object) -> sympy.Basic:
    """A sympy object from a sympy object or a Python number; text is refused (nothing here parses)."""
    if isinstance(value, sympy.Basic):
        return value
    if isinstance(value, bool):
        raise TypeError(f"not a number or expression: {value!r}")
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, float):
        return sympy.Float(value)
    if isinstance(value, Fraction):
        return sympy.Rational(value.numerator, value.denominator)
    raise TypeError(f"not a number or expression: {value!r}")


def _as_expression(name: str, value: object) -> sympy.Expr:
    try:
        expr = _sympy_number(value)
    except TypeError:
        raise ValueError(f"the definition of {name!r} is not an expression: {value!r}") from None
    if not isinstance(expr, sympy.Expr):
        raise ValueError(f"the definition of {name!r} is not an expression: {expr}")
    return expr


def _names_in(expr: sympy.Expr) -> set[str]:
    return {str(free) for free in expr.free_symbols}


def _with_real_symbols(expr: sympy.Expr, known: set[str]) -> sympy.Expr:
    """Swap any symbol spelled like a known name for symbol(name), whatever its assumptions."""
    swaps = {free: symbol(str(free)) for free in expr.free_symbols if str(free) in known}
    swaps = {old: new for old, new in swaps.items() if old != new}
    return expr.xreplace(swaps) if swaps else expr


def _topological_order(inputs: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """Defined names, each after its inputs (the given order if it already is one); no cycles."""
    order: list[str] = []

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in order:
            return
        if name in trail:
            cycle = trail[trail.index(name):] + (name,)
            raise ValueError("the definitions form a cycle: " + " -> ".join(cycle))
        for used in inputs[name]:
            if used in inputs:
                visit(used, trail + (name,))
        order.append(name)

    for name in inputs:
        visit(name, ())
    return tuple(order)


@dataclass(frozen=True)
class Step:
    """One peeled link f(g(x)): outer f in a placeholder u, inner g, and both derivatives."""

    outer: sympy.Expr
    inner: sympy.Expr
    outer_derivative: sympy.Expr
    inner_derivative: sympy.Expr
    placeholder: sympy.Symbol


def peel(expr: sympy.Expr, var: sympy.Symbol) -> Step | None:
    """Split the outermost composition f(g(var)) off `expr`, or None if there is none.

    The composition is a one-argument function (sin, exp, log, ...), a power g**n, or n**g, with
    g more than `var` itself. Constant factors and addends stay in the outer function:
    1 + 5*cos(2*x) peels to outer 1 + 5*cos(u), inner 2*x. Products of two factors that both
    depend on `var` and sums of such terms are not compositions, and neither are polynomial
    powers var**n. Peel the inner expression again for the next link.
    """
    expr = _sympy_number(expr)
    if var not in expr.free_symbols:
        return None
    shift, scaled = expr.as_independent(var, as_Add=True)
    scale, core = scaled.as_independent(var, as_Add=False)
    u = _placeholder(expr)
    if isinstance(core, sympy.Pow):
        base, exponent = core.args
        if var not in exponent.free_symbols and base != var:
            outer, inner = u**exponent, base
        elif var not in base.free_symbols and exponent != var:
            outer, inner = base**u, exponent
        else:
            return None
    elif _is_unary_application(core) and core.args[0] != var:
        outer, inner = core.func(u), core.args[0]
    else:
        return None
    outer = shift + scale * outer
    return Step(
        outer=outer,
        inner=inner,
        outer_derivative=sympy.diff(outer, u),
        inner_derivative=sympy.diff(inner, var),
        placeholder=u,
    )


def _is_unary_application(expr: sympy.Expr) -> bool:
    if not isinstance(expr, sympy.Function) or len(expr.args) != 1:
        return False
    return isinstance(expr.args[0], sympy.Expr)


def _placeholder(expr: sympy.Expr) -> sympy.Symbol:
    """u, unless `expr` already uses that name; then v, w, u1, u2, ..."""
    taken = _names_in(expr)
    candidates = itertools.chain(("u", "v", "w"), (f"u{index}" for index in itertools.count(1)))
    return symbol(next(name for name in candidates if name not in taken))
