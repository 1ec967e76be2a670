"""Worked solutions, built from the reference's own steps.

Composite derivatives: outer derivative, inner derivative, product, substitute back (the
same peeled links diagnosis uses, so feedback and solution name the same u). Total
derivatives: every path with its product, the sum, then the substitution. Backprop: the
layer-by-layer local derivatives from reference/backprop.py.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import sympy

from grader.diagnosis import Step, link_label, path_steps, product_terms
from grader.parse import to_text
from reference.backprop import explain as explain_network
from reference.chain import Chain, Derivative, peel, symbol

if TYPE_CHECKING:
    from grader.compile import Compiled, PartReference

FACTOR_MAX_OPS = 60
"""Larger results are shown as computed: sympy.factor on them costs more than it tidies."""


def _tidy(expr: sympy.Expr) -> str:
    """A tidy final form (factored when that is no longer), for display only."""
    if sympy.count_ops(expr) > FACTOR_MAX_OPS:
        return to_text(expr)
    factored = sympy.factor(expr)
    return to_text(factored if sympy.count_ops(factored) <= sympy.count_ops(expr) else expr)


def _substitutions(chain: Chain, names: Iterable[str]) -> str:
    """'u = x^2 + 1, v = sin(u)...' for the defined names a step used, in definition order."""
    used = set(names)
    return ", ".join(f"{name} = {to_text(chain.expand(name))}" for name in chain.names if name in used)


def _defined_names(chain: Chain, expr: sympy.Expr) -> list[str]:
    return [str(s) for s in expr.free_symbols if str(s) in chain.names]


def derivative_label(chain: Chain | None, derivative: Derivative) -> str:
    """∂f/∂x in a gradient or for a cut at a defined name, dy/dx for a one-variable derivative."""
    single = chain is not None and len(chain.variables) == 1 and derivative.wrt in chain.variables
    d = "d" if single else "∂"
    return f"{d}{derivative.of}/{d}{derivative.wrt}"


def _product_lines(step: Step) -> list[str]:
    """The product rule for each product in a step's function, and the chain rule inside each composite factor."""
    var = symbol(step.bottom)
    lines = []
    for term, constant, factors in product_terms(step.function, var):
        derivatives = [sympy.diff(factor, var) for factor in factors]
        terms = [" · ".join(f"({to_text(derivatives[j] if j == i else factor)})" for j, factor in enumerate(factors))
                 for i in range(len(factors))]
        scale = "" if constant == 1 else f"{to_text(constant)} · "
        lines.append(f"Product rule for {to_text(term)}, one term per factor: {scale}[{' + '.join(terms)}]")
        for factor, derivative in zip(factors, derivatives):
            peeled = peel(factor, var)
            if peeled is not None:
                u = peeled.placeholder
                lines.append(f"  Chain rule inside {to_text(factor)} = {to_text(peeled.outer)} with {u} = "
                             f"{to_text(peeled.inner)}: ({to_text(peeled.outer_derivative.xreplace({u: peeled.inner}))}) · "
                             f"({to_text(peeled.inner_derivative)}) = {to_text(derivative)}")
    return lines


def _composite(chain: Chain, derivative: Derivative) -> list[str]:
    """One path: the chain as links, then the four steps of the chain rule."""
    steps = path_steps(chain, derivative.paths[0])
    d = derivative_label(chain, derivative)
    if not steps:
        return [f"{d} = 1"]
    if len(steps) == 1:
        step = steps[0]
        products = _product_lines(step)
        if products:
            lines = [f"{step.top} = {to_text(step.function)}", *products, f"So {step.label} = {to_text(step.local)}"]
        else:
            lines = [f"{step.top} = {to_text(step.function)}, so {step.label} = {to_text(step.local)}"]
        if _defined_names(chain, step.local):
            lines.append(f"Substitute back {_substitutions(chain, _defined_names(chain, step.local))}: "
                         f"{step.label} = {_tidy(derivative.value)}")
        return lines
    outer, inner = steps[0], steps[1:]
    links = ", ".join(f"{s.top} = {to_text(s.function)}" for s in steps)
    inner_words = "; ".join(f"{s.label} = {to_text(s.local)}" for s in inner)
    placeholders = {s.bottom: s.inner for s in steps[:-1]}
    back = ", ".join(f"{name} = {to_text(chain.expand(inner_expr))}" for name, inner_expr in placeholders.items())
    products = [f"   {line}" for step in steps for line in _product_lines(step)]
    return [
        f"Read it as a chain of links: {links}",
        f"1. Outer derivative: {outer.label} = {to_text(outer.local)}",
        f"2. Inner derivative{'s, link by link' if len(inner) > 1 else ''}: {inner_words}",
        *products,
        f"3. Product: {d} = {' · '.join(s.label for s in steps)} = {' · '.join(f'({to_text(s.local)})' for s in steps)}",
        f"4. Substitute back {back}: {d} = {_tidy(derivative.value)}",
    ]


def _paths(chain: Chain, derivative: Derivative) -> list[str]:
    """Several paths: one product per path, their sum in the chain's names, then in the variables."""
    d = derivative_label(chain, derivative)
    lines = [f"{d} is the sum over every path from {derivative.of} to {derivative.wrt}, one product per path:"]
    terms = []
    for path in derivative.paths:
        labels = " · ".join(link_label(chain, link) for link in path.links)
        locals_ = [link.local for link in path.links]
        terms.append(sympy.Mul(*locals_))
        product = " · ".join(f"({to_text(e)})" for e in locals_) if len(locals_) > 1 else to_text(locals_[0])
        lines.append(f"  {' → '.join(path.names())}: {labels} = {product}")
    total = sympy.Add(*terms)
    lines.append(f"Sum: {d} = {to_text(total)}")
    names = _defined_names(chain, total)
    if names:
        lines.append(f"Substitute back {_substitutions(chain, names)}: {d} = {_tidy(derivative.value)}")
    return lines


def derivative_lines(compiled: "Compiled", derivative: Derivative) -> list[str]:
    """The worked steps of one derivative."""
    chain = compiled.chain
    assert chain is not None
    if not derivative.paths:
        return [f"{derivative_label(chain, derivative)} = 0 ({derivative.of} does not depend on {derivative.wrt})"]
    if len(derivative.paths) > 1:
        return _paths(chain, derivative)
    return _composite(chain, derivative)


def solution_lines(compiled: "Compiled", ref: "PartReference") -> list[str]:
    """The worked solution of one part, as lines of plain text with math in student notation."""
    part = ref.part
    if part.answer == "backprop":
        lines = explain_network(compiled.network)
        if part.update:
            lines.append(f"Then step every parameter: P ← P - {part.update.lr:g} · dL/dP")
        return lines
    if not ref.derivatives:
        return [f"Expected: {', '.join(to_text(e) for e in ref.exprs)}"]
    lines: list[str] = []
    for derivative in ref.derivatives:
        if len(ref.derivatives) > 1:
            lines.append(f"{derivative_label(compiled.chain, derivative)}:")
            lines.extend(f"  {line}" for line in derivative_lines(compiled, derivative))
        else:
            lines.extend(derivative_lines(compiled, derivative))
    if ref.point is not None:
        where = ", ".join(f"{k} = {to_text(v)}" for k, v in ref.point.items())
        if ref.step is not None:
            start, lr = ref.step
            lines.append(f"At {where}: step = {to_text(start)} - {to_text(lr)} · (derivative) = "
                         f"{to_text(ref.exprs[0])} ≈ {float(ref.exprs[0]):.6g}")
        else:
            lines.append(f"At {where}: {to_text(ref.exprs[0])} ≈ {float(ref.exprs[0]):.6g}")
    return lines


