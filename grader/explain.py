"""Worked solutions, built from the reference's own steps.

Composite derivatives: outer derivative, inner derivative, product, substitute back.
Total derivatives: the tree of paths and their sum. Backprop: the layer-by-layer
local derivatives from reference/backprop.py.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from grader.parse import to_text
from reference.backprop import explain as explain_network
from reference.chain import Derivative, Path, peel, symbol

if TYPE_CHECKING:
    from grader.compile import Compiled, PartReference


def _simplified(expr: sympy.Expr) -> str:
    """A tidy final form (factored when that is shorter), for display only."""
    factored = sympy.factor(expr)
    return to_text(factored if sympy.count_ops(factored) <= sympy.count_ops(expr) else expr)


def _single_link(compiled: "Compiled", derivative: Derivative) -> list[str]:
    """One definition y = f(g(x)): peel it into outer and inner."""
    link = derivative.paths[0].links[0]
    expr = compiled.chain.expression(link.node)
    step = peel(expr, symbol(link.input))
    d = f"d{derivative.of}/d{derivative.wrt}"
    if step is None:
        return [f"{derivative.of} = {to_text(expr)}", f"{d} = {_simplified(derivative.value)}"]
    u = step.placeholder
    return [
        f"Write {derivative.of} = f({u}) with {u} = {to_text(step.inner)} and f({u}) = {to_text(step.outer)}.",
        f"1. Outer derivative: f'({u}) = {to_text(step.outer_derivative)}",
        f"2. Inner derivative: d{u}/d{link.input} = {to_text(step.inner_derivative)}",
        f"3. Product: {d} = f'({u}) · d{u}/d{link.input} = ({to_text(step.outer_derivative)}) · ({to_text(step.inner_derivative)})",
        f"4. Substitute back {u} = {to_text(step.inner)}: {d} = {_simplified(derivative.value)}",
    ]


def _chain_steps(path: Path, derivative: Derivative) -> list[str]:
    """A chain of definitions y <- u <- x: each link's local derivative, product, substitution."""
    lines = [f"{n}. Link d{link.node}/d{link.input} = {to_text(link.local)}" for n, link in enumerate(path.links, 1)]
    factors = " · ".join(f"d{link.node}/d{link.input}" for link in path.links)
    locals_ = " · ".join(f"({to_text(link.local)})" for link in path.links)
    n = len(path.links)
    lines.append(f"{n + 1}. Product: d{derivative.of}/d{derivative.wrt} = {factors} = {locals_}")
    lines.append(f"{n + 2}. Substitute back every definition: d{derivative.of}/d{derivative.wrt} = {_simplified(derivative.value)}")
    return lines


def _paths(derivative: Derivative) -> list[str]:
    d = f"d{derivative.of}/d{derivative.wrt}"
    lines = [f"{d} is the sum over every path from {derivative.of} to {derivative.wrt}:"]
    for path in derivative.paths:
        names = " → ".join(path.names())
        factors = " · ".join(f"∂{link.node}/∂{link.input}" for link in path.links)
        values = " · ".join(f"({to_text(link.substituted)})" for link in path.links)
        lines.append(f"  {names}: {factors} = {values}")
    lines.append(f"Sum: {d} = {_simplified(derivative.value)}")
    return lines


def derivative_lines(compiled: "Compiled", derivative: Derivative) -> list[str]:
    if not derivative.paths:
        return [f"d{derivative.of}/d{derivative.wrt} = 0 ({derivative.of} does not depend on {derivative.wrt})"]
    if len(derivative.paths) > 1:
        return _paths(derivative)
    path = derivative.paths[0]
    return _single_link(compiled, derivative) if len(path.links) == 1 else _chain_steps(path, derivative)


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
        lines.extend(derivative_lines(compiled, derivative))
    if ref.point is not None:
        where = ", ".join(f"{k} = {to_text(v)}" for k, v in ref.point.items())
        if ref.step is not None:
            start, lr = ref.step
            lines.append(f"At {where}: step = {to_text(start)} - {to_text(lr)} · (derivative) = {to_text(ref.exprs[0])} ≈ {float(ref.exprs[0]):.6g}")
        else:
            lines.append(f"At {where}: {to_text(ref.exprs[0])} ≈ {float(ref.exprs[0]):.6g}")
    return lines
