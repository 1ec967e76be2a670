"""Name the chain-rule mistake behind a wrong answer.

Mistakes are never guessed from the answer's text. For each known mistake we generate the
answer it would produce, from the reference computation itself (drop a path, drop an inner
derivative, evaluate an outer derivative at the wrong place, run backprop with a wrong piece),
and compare the student's answer with it by the same numeric equivalence used for grading.
Candidates come most specific first and the first match wins: a plain constant multiple of the
right answer (sign-error, constant-factor) is named only when no candidate explains it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import combinations
from typing import TYPE_CHECKING, Any, Callable

import mpmath
import numpy as np
import sympy

from grader import arrays
from grader.equivalence import EXPR_REL_TOL, RealFunction, agrees, evaluate, values_close
from grader.errors import BudgetExceeded
from grader.parse import to_text
from reference.backprop import Activation, ActivationFn, Linear, Loss, Network, softmax, tape_names
from reference.chain import Chain, Derivative, Link, Path, peel, symbol

if TYPE_CHECKING:
    from grader.compile import Compiled, PartReference
    from grader.grade import Draw, Oracle

MAX_PATHS_FOR_SUBSETS = 5
"""Up to this many paths every proper subset is a missing-path candidate (2^n - 2 of them)."""

PEEL_DEPTH = 4
"""How many compositions deep one definition is peeled (sin(exp(cos(x^2))) is 3)."""

DESCRIPTIONS = {
    "forgot-inner-derivative": "You differentiated the outer function but did not multiply by the derivative of the inside.",
    "derivative-inside": "You put the inner derivative inside the outer derivative, f'(g'(x)), instead of multiplying: f'(g(x)) g'(x).",
    "product-of-derivatives": "You multiplied f'(x) by g'(x): the outer derivative must be evaluated at the inner function, f'(g(x)).",
    "missing-path": "Your total derivative leaves out a path: add one term per path from the output to the variable.",
    "partial-for-total": "You gave only the direct partial derivative where the total derivative (through every path) was asked.",
    "sign-error": "Your answer is the right one times -1: check the signs.",
    "constant-factor": "Your answer is the right one times a constant: check the constant factors.",
    "missing-activation-derivative": "You backpropagated through an activation without multiplying by its derivative.",
    "wrong-activation-derivative": "You used the wrong formula for an activation's derivative.",
    "transposed-gradient": "A weight gradient is transposed: dW = h^T @ delta has the shape of W.",
    "wrong-layer-input": "A weight gradient uses the wrong cached value: dW_k needs the input that layer k received (after the activation).",
    "bias-not-summed": "A bias gradient must be summed over the batch: db = delta.sum(axis=0).",
    "missing-batch-mean": "The loss is a mean over the batch: its gradient carries the factor 1/N.",
    "mse-missing-factor-2": "d/dz (z - y)^2 = 2 (z - y): the factor 2 is missing.",
    "softmax-missing-onehot": "The softmax cross-entropy gradient is softmax(out) - onehot(y): subtract the one-hot targets.",
    "product-rule-missing-term": "You left out a term of the product rule: (f g)' = f' g + f g', one term per factor.",
    "product-rule-multiplied": "You multiplied the derivatives of the factors: (f g)' is f' g + f g', not f' g'.",
}


@dataclass(frozen=True)
class Finding:
    mistake: str
    message: str


@dataclass(frozen=True)
class Candidate:
    """A wrong answer a known mistake produces, in free variables."""

    mistake: str
    message: str
    expr: sympy.Expr


def describe(mistake: str) -> str:
    return DESCRIPTIONS[mistake]


# ---------------------------------------------------------------- chain-rule steps

@dataclass(frozen=True)
class Step:
    """One factor of a chain-rule product: `top` as `function` of `bottom`, differentiated.

    `bottom` is a name of the chain or a placeholder (u, v, ...) that a peeled composite
    introduces; `inner` is what it stands for, in the chain's names.
    """

    top: str
    bottom: str
    function: sympy.Expr
    local: sympy.Expr
    inner: sympy.Expr

    @property
    def label(self) -> str:
        """d top/d bottom, or with ∂ when `function` has other inputs held fixed."""
        d = "∂" if self.function.free_symbols - {symbol(self.bottom)} else "d"
        return f"{d}{self.top}/{d}{self.bottom}"

    def value(self, chain: Chain) -> sympy.Expr:
        """This factor in free variables: the local derivative at bottom = inner."""
        return chain.expand(self.local.xreplace({symbol(self.bottom): self.inner}))


def _fresh(taken: set[str]) -> str:
    """A placeholder name the chain and this path do not use yet: u, v, w, u1, u2, ..."""
    for name in ("u", "v", "w"):
        if name not in taken:
            return name
    index = 1
    while f"u{index}" in taken:
        index += 1
    return f"u{index}"


def path_steps(chain: Chain, path: Path) -> list[Step]:
    """The factors of one path, outermost first, every composite definition peeled into links.

    y = sin(x^2) on one line becomes dy/du = cos(u) and du/dx = 2x, exactly as if the
    exercise had defined u = x^2 and y = sin(u), so one-line composites and link-by-link
    definitions are taught and diagnosed the same way.
    """
    taken = set(chain.variables) | set(chain.names)
    steps: list[Step] = []
    for link in path.links:
        var = symbol(link.input)
        top, function = link.node, chain.expression(link.node)
        for _ in range(PEEL_DEPTH):
            peeled = peel(function, var)
            if peeled is None:
                break
            name = _fresh(taken)
            taken.add(name)
            placeholder = {peeled.placeholder: symbol(name)}
            steps.append(Step(top, name, peeled.outer.xreplace(placeholder),
                              peeled.outer_derivative.xreplace(placeholder), peeled.inner))
            top, function = name, peeled.inner
        steps.append(Step(top, link.input, function, sympy.diff(function, var), var))
    return steps


def _d(top: str, wrt: str, expr: sympy.Expr) -> str:
    """d top/d wrt, written with ∂ when `expr` also depends on other variables."""
    d = "∂" if expr.free_symbols - {symbol(wrt)} else "d"
    return f"{d}{top}/{d}{wrt}"


def _stands_for(chain: Chain, step: Step) -> str:
    """'(with u = x^2 + 1)' for a step whose bottom is an intermediate, '' for a free variable."""
    if step.bottom in chain.variables:
        return ""
    return f" (with {step.bottom} = {to_text(chain.expand(step.inner))})"


def _term_mistakes(term: sympy.Expr, var: sympy.Symbol, depth: int = 0) -> list[tuple[str, str, sympy.Expr]]:
    """Chain-rule mistakes inside one composite term f(g(var)): (mistake, words, wrong d term/d var)."""
    peeled = peel(term, var) if depth < PEEL_DEPTH else None
    if peeled is None:
        return []
    u, inner, inner_derivative = peeled.placeholder, peeled.inner, peeled.inner_derivative
    at_inner = peeled.outer_derivative.xreplace({u: inner})
    where = f"{to_text(peeled.outer)} (with {u} = {to_text(inner)})"
    found = []
    if inner_derivative != 1:
        found.append(("forgot-inner-derivative",
                      f"You differentiated {where} but did not multiply by d{u}/d{var} = {to_text(inner_derivative)}.",
                      at_inner))
    if u in peeled.outer_derivative.free_symbols:
        found.append(("derivative-inside",
                      f"You put the inner derivative inside {to_text(peeled.outer_derivative)}: evaluated at "
                      f"{u} = {to_text(inner_derivative)} instead of at {u} = {to_text(inner)}, and not multiplied by it.",
                      peeled.outer_derivative.xreplace({u: inner_derivative})))
        found.append(("product-of-derivatives",
                      f"You evaluated {to_text(peeled.outer_derivative)} at {var} instead of at {u} = {to_text(inner)}, "
                      f"then multiplied by {to_text(inner_derivative)}.",
                      peeled.outer_derivative.xreplace({u: var}) * inner_derivative))
    for mistake, words, wrong in _term_mistakes(inner, var, depth + 1):
        found.append((mistake, words, at_inner * wrong))
    return found


def _sum_mistakes(chain: Chain, steps: list[Step]) -> list[Candidate]:
    """A step that differentiates a sum: a chain-rule mistake in one of its composite terms, the others right.

    peel() stops at sin(x) + e^(x y), so these are the mistakes a whole-step view misses.
    """
    values = [step.value(chain) for step in steps]
    found: list[Candidate] = []
    for k, step in enumerate(steps):
        bottom = symbol(step.bottom)
        if not isinstance(step.function, sympy.Add):
            continue
        for term in step.function.args:
            for mistake, words, wrong in _term_mistakes(term, bottom):
                local = step.local - sympy.diff(term, bottom) + wrong
                wrong_value = chain.expand(local.xreplace({bottom: step.inner}))
                found.append(Candidate(mistake, f"In the term {to_text(term)}, {words[0].lower()}{words[1:]}",
                                       sympy.Mul(*(values[:k] + [wrong_value] + values[k + 1:]))))
    return found


def product_terms(function: sympy.Expr, var: sympy.Symbol) -> list[tuple[sympy.Expr, sympy.Expr, list[sympy.Expr]]]:
    """The products in a step's function: (term, constant factor, factors in var) for the function
    itself or each term of a sum, when two or more factors depend on var. A factor 1/g makes it
    a quotient, not taught as a product here."""
    found = []
    for term in function.args if isinstance(function, sympy.Add) else (function,):
        constant, varying = term.as_independent(var, as_Add=False)
        factors = list(varying.args) if isinstance(varying, sympy.Mul) else [varying]
        if len(factors) >= 2 and not any(f.is_Pow and f.exp.is_negative for f in factors):
            found.append((term, constant, factors))
    return found


def _product_mistakes(term: sympy.Expr, constant: sympy.Expr, factors: list[sympy.Expr],
                      var: sympy.Symbol) -> list[tuple[str, str, sympy.Expr]]:
    """Mistakes in differentiating one product c f g ...: (mistake, words, wrong d term/d var)."""
    derivatives = [sympy.diff(f, var) for f in factors]
    terms = [constant * derivatives[i] * sympy.Mul(*(factors[:i] + factors[i + 1:])) for i in range(len(factors))]
    shown = to_text(term)
    found = []
    for i, factor in enumerate(factors):
        if terms[i] != 0:
            found.append(("product-rule-missing-term",
                          f"In {shown}, you left out the product rule's term where {to_text(factor)} is differentiated, "
                          f"{to_text(terms[i])}: (f g)' = f' g + f g' has one term per factor.",
                          sympy.Add(*(terms[:i] + terms[i + 1:]))))
    found.append(("product-rule-multiplied",
                  f"You multiplied the derivatives of the factors of {shown}, "
                  f"{' and '.join(to_text(d) for d in derivatives)}: (f g)' is f' g + f g', one term per factor.",
                  constant * sympy.Mul(*derivatives)))
    for i, factor in enumerate(factors):
        others = constant * sympy.Mul(*(factors[:i] + factors[i + 1:]))
        for mistake, words, wrong in _term_mistakes(factor, var):
            found.append((mistake, f"In the factor {to_text(factor)} of {shown}, {words[0].lower()}{words[1:]}",
                          sympy.Add(*(terms[:i] + terms[i + 1:])) + others * wrong))
    return found


def _product_step_mistakes(chain: Chain, steps: list[Step]) -> list[Candidate]:
    """A step that differentiates a product (or a sum with products): a slip of the product
    rule, or a chain-rule mistake inside one factor, everything else right."""
    values = [step.value(chain) for step in steps]
    found: list[Candidate] = []
    for k, step in enumerate(steps):
        bottom = symbol(step.bottom)
        for term, constant, factors in product_terms(step.function, bottom):
            for mistake, words, wrong in _product_mistakes(term, constant, factors, bottom):
                local = step.local - sympy.diff(term, bottom) + wrong
                wrong_value = chain.expand(local.xreplace({bottom: step.inner}))
                found.append(Candidate(mistake, words, sympy.Mul(*(values[:k] + [wrong_value] + values[k + 1:]))))
    return found


def _step_mistakes(chain: Chain, steps: list[Step], wrt: str, composite: bool) -> list[Candidate]:
    """Mistakes along one path: a dropped inner factor, or an outer derivative evaluated at the wrong place.

    f'(g'(x)) and f'(x) g'(x) are mistakes of a composite chain: generated only when the
    derivative has a single path.
    """
    values = [step.value(chain) for step in steps]
    wrt_symbol = symbol(wrt)
    found: list[Candidate] = []
    for k in range(1, len(steps) - 1):
        dropped = sympy.Mul(*values[k:])
        if dropped == 1:
            continue
        outer = steps[k - 1]
        found.append(Candidate(
            "forgot-inner-derivative",
            f"You differentiated {to_text(outer.function)}{_stands_for(chain, outer)} but did not multiply by "
            f"the inner derivative {_d(outer.bottom, wrt, dropped)} = {to_text(dropped)}.",
            sympy.Mul(*values[:k])))
    for k in range(1, len(steps)):
        if values[k] == 1:
            continue
        outer = steps[k - 1]
        found.append(Candidate(
            "forgot-inner-derivative",
            f"You differentiated {to_text(outer.function)}{_stands_for(chain, outer)} but did not multiply by "
            f"{steps[k].label} = {to_text(steps[k].local)}.",
            sympy.Mul(*(values[:k] + values[k + 1:]))))
    if not composite:
        return found
    for k in range(len(steps) - 1):
        step = steps[k]
        placeholder = symbol(step.bottom)
        if placeholder not in step.local.free_symbols:
            continue
        prefix = values[:k]
        inner_derivative = sympy.Mul(*values[k + 1:])
        inner = chain.expand(step.inner)
        inside = chain.expand(step.local.xreplace({placeholder: inner_derivative}))
        found.append(Candidate(
            "derivative-inside",
            f"You put the inner derivative inside: you evaluated {step.label} = {to_text(step.local)} at "
            f"{step.bottom} = {to_text(inner_derivative)} instead of at {step.bottom} = {to_text(inner)}, "
            f"and did not multiply by {to_text(inner_derivative)}.",
            sympy.Mul(*prefix, inside)))
        if inner != wrt_symbol:
            at_variable = chain.expand(step.local.xreplace({placeholder: wrt_symbol}))
            found.append(Candidate(
                "product-of-derivatives",
                f"You evaluated {step.label} = {to_text(step.local)} at {wrt} instead of at "
                f"{step.bottom} = {to_text(inner)}, then multiplied by {to_text(inner_derivative)}.",
                sympy.Mul(*prefix, at_variable, inner_derivative)))
    return found


# ---------------------------------------------------------------- paths of a total derivative

def _through(path: Path) -> str:
    """'the path through y' or 'the direct term ∂z/∂t'."""
    names = path.names()
    if len(names) == 2:
        return f"the direct term ∂{names[0]}/∂{names[1]}"
    return "the path through " + " and ".join(names[1:-1])


def link_label(chain: Chain, link: Link) -> str:
    """∂z/∂y where z has other inputs held fixed, dy/dt where t is its only input."""
    d = "∂" if len(chain.inputs(link.node)) > 1 else "d"
    return f"{d}{link.node}/{d}{link.input}"


def _factors(chain: Chain, path: Path) -> str:
    """∂z/∂y · dy/dt: the path's factors."""
    return " · ".join(link_label(chain, link) for link in path.links)


def _missing_words(chain: Chain, missing: list[Path]) -> str:
    if len(missing) == 1:
        path = missing[0]
        return _through(path) if len(path.links) == 1 else f"{_through(path)}: {_factors(chain, path)}"
    return " or ".join(_through(p) if len(p.links) == 1 else f"{_through(p)} ({_factors(chain, p)})" for p in missing)


def _path_candidates(chain: Chain, derivative: Derivative) -> list[Candidate]:
    """partial-for-total, then every proper subset of the paths (most paths kept first)."""
    paths = derivative.paths
    d = _d(derivative.of, derivative.wrt, derivative.value)
    found: list[Candidate] = []
    if derivative.wrt in chain.variables and derivative.direct != 0:
        others = sorted({n for p in paths if len(p.links) > 1 for n in p.names()[1:-1]})
        found.append(Candidate(
            "partial-for-total",
            f"You gave only the direct partial ∂{derivative.of}/∂{derivative.wrt}, but {derivative.of} also "
            f"depends on {derivative.wrt} through {' and '.join(others)}: {d} needs one term per path.",
            derivative.direct))
    if len(paths) > MAX_PATHS_FOR_SUBSETS:
        return found
    for size in range(len(paths) - 1, 0, -1):
        for kept in combinations(range(len(paths)), size):
            have = " and ".join(_through(paths[i]) for i in kept)
            missing = [paths[i] for i in range(len(paths)) if i not in kept]
            found.append(Candidate(
                "missing-path",
                f"Your {d} has {have} but not {_missing_words(chain, missing)}.",
                sympy.Add(*[paths[i].term for i in kept])))
    return found


def expression_candidates(chain: Chain, derivative: Derivative) -> list[Candidate]:
    """Every mistaken answer for one derivative, most specific first."""
    paths = derivative.paths
    found = _path_candidates(chain, derivative) if len(paths) > 1 else []
    for index, path in enumerate(paths):
        rest = [p.term for i, p in enumerate(paths) if i != index]
        for wrong in _step_mistakes(chain, path_steps(chain, path), derivative.wrt, composite=len(paths) == 1):
            found.append(Candidate(wrong.mistake, wrong.message, sympy.Add(wrong.expr, *rest)))
        for wrong in _sum_mistakes(chain, path_steps(chain, path)) + _product_step_mistakes(chain, path_steps(chain, path)):
            found.append(Candidate(wrong.mistake, wrong.message, sympy.Add(wrong.expr, *rest)))
    return found


# ---------------------------------------------------------------- matching expression answers

def _defined(values: list) -> bool:
    return sum(v is not None for v in values) >= max(3, len(values) // 2)


def _matches(candidate_values: list, answer_values: list, rel_tol: float = EXPR_REL_TOL) -> bool:
    """Equal wherever the candidate is defined (the answer may be undefined where the candidate is)."""
    if not _defined(candidate_values):
        return False
    return agrees(candidate_values, answer_values, rel_tol=rel_tol)


def _ratio(reference: list, answer: list) -> Fraction | float | None:
    """The constant c with answer = c * reference at every point, if there is one."""
    ratios = []
    for ref, ans in zip(reference, answer):
        if ref is None or ans is None:
            return None
        r_value, r_scale = ref
        a_value = ans[0]
        if abs(r_value) <= 1e-12 * max(abs(r_scale), 1):
            if abs(a_value) > 1e-12 * max(abs(r_scale), 1):
                return None
            continue
        ratios.append(a_value / r_value)
    if len(ratios) < 3:
        return None
    first = ratios[0]
    if any(abs(r - first) > 1e-9 * max(abs(first), 1) for r in ratios) or not math.isfinite(float(first)):
        return None   # not a constant multiple, or one beyond a float (10^309 times the right answer)
    nice = Fraction(float(first)).limit_denominator(1000)
    return nice if abs(float(nice) - float(first)) <= 1e-9 * max(abs(float(first)), 1) else float(first)


def _scaled(ratio: Fraction | float | None) -> Finding | None:
    if ratio is None or ratio == 1 or ratio == 0:
        return None
    if ratio == -1:
        return Finding("sign-error", describe("sign-error"))
    shown = str(ratio) if isinstance(ratio, Fraction) else f"{ratio:.4g}"
    return Finding("constant-factor", f"Your answer is {shown} times the right one: check the constant factors.")


def _cache_key(compiled: "Compiled", ref: "PartReference", index: int, where: tuple) -> tuple:
    """By content, never by id(): validate compiles afresh per test and ids of dead objects are reused."""
    return (compiled.path, compiled.exercise.id, tuple(sorted(compiled.params.items())), ref.part.id, index,
            ref.exprs[index], where)


def _candidates_of(compiled: "Compiled", ref: "PartReference", index: int) -> list[Candidate]:
    if not ref.derivatives or compiled.chain is None:
        return []
    return expression_candidates(compiled.chain, ref.derivatives[index])


def _fingerprint(values: list) -> tuple:
    """Values rounded to 15 digits: candidates with equal fingerprints are the same answer."""
    return tuple(None if v is None else mpmath.nstr(v[0], 15) for v in values)


def _evaluated_candidates(compiled: "Compiled", ref: "PartReference", index: int, orc: "Oracle") -> list[tuple[Candidate, list]]:
    """Candidates of one component with their values at the oracle's points, distinct from each other and the reference.

    Kept on the compiled variant, so the reference cache carries them to the next run.
    """
    key = _cache_key(compiled, ref, index, tuple(tuple(point) for point in orc.points))
    if key not in compiled.candidates:
        result: list[tuple[Candidate, list]] = []
        seen = {_fingerprint(orc.values)}
        for candidate in _candidates_of(compiled, ref, index):
            values = evaluate(RealFunction(ref.finish(candidate.expr), orc.variables), orc.points)
            fingerprint = _fingerprint(values)
            if not _defined(values) or fingerprint in seen:
                continue
            seen.add(fingerprint)
            result.append((candidate, values))
        compiled.candidates[key] = result
    return compiled.candidates[key]


def diagnose_expression(compiled: "Compiled", ref: "PartReference", index: int, orc: "Oracle", answer_values: list,
                        rel_tol: float = EXPR_REL_TOL) -> Finding | None:
    """The mistake that explains a wrong answer, if a known one does.

    `answer_values` are the answer at the oracle's points: an expression's exact values, or the
    floats a student's function returned (then compared with a float tolerance, `rel_tol`).
    Best effort: if building the candidates runs out of the check's time budget, the answer
    is still graded (incorrect, unexplained) instead of timing out.
    """
    try:
        candidates = _evaluated_candidates(compiled, ref, index, orc)
    except BudgetExceeded:
        candidates = []
    for candidate, values in candidates:
        if _matches(values, answer_values, rel_tol):
            return Finding(candidate.mistake, candidate.message)
    return _scaled(_ratio(orc.values, answer_values))


def _value_candidates(compiled: "Compiled", ref: "PartReference") -> list[tuple[Candidate, sympy.Expr]]:
    """Candidates of a value part, evaluated at its point (and stepped): only finite real numbers."""
    key = _cache_key(compiled, ref, 0, ("value",))
    if key not in compiled.candidates:
        result = []
        for candidate in _candidates_of(compiled, ref, 0):
            wrong = ref.finish(candidate.expr)
            if not wrong.free_symbols and evaluate(RealFunction(wrong, []), [()])[0] is not None:
                result.append((candidate, wrong))
        compiled.candidates[key] = result
    return compiled.candidates[key]


def diagnose_value(compiled: "Compiled", ref: "PartReference", got: sympy.Expr, tolerance: float) -> Finding | None:
    """Value answers: the same candidates evaluated at the part's point, then the sign.

    A step part checks the uphill step first: it is the mistake of the step itself, while a
    candidate would blame the derivative the step was taken with.
    """
    expected = ref.exprs[0]
    if ref.step is not None:
        start, _ = ref.step
        if values_close(2 * start - expected, got, rel_tol=tolerance):
            return Finding("sign-error", f"You stepped uphill: the step is {to_text(start)} - lr · (derivative), not plus.")
    try:
        candidates = _value_candidates(compiled, ref)
    except BudgetExceeded:
        candidates = []
    for candidate, wrong in candidates:
        if not values_close(expected, wrong, rel_tol=tolerance) and values_close(wrong, got, rel_tol=tolerance):
            return Finding(candidate.mistake, candidate.message)
    if ref.step is None and not values_close(expected, 0, rel_tol=tolerance) and values_close(-expected, got, rel_tol=tolerance):
        return Finding("sign-error", describe("sign-error"))
    return None


def undetectable(compiled: "Compiled", ref: "PartReference", index: int, orc: "Oracle") -> list[str]:
    """Mistake ids whose wrong answer equals the right one in this part (validate warns about them)."""
    blind = []
    for candidate in _candidates_of(compiled, ref, index):
        values = evaluate(RealFunction(ref.finish(candidate.expr), orc.variables), orc.points)
        if _matches(values, orc.values) and candidate.mistake not in blind:
            blind.append(candidate.mistake)
    return blind


# ---------------------------------------------------------------- backprop

@dataclass(frozen=True)
class _Cause:
    """Why one gradient is wrong. Shared causes (a layer, the loss) name every gradient they explain."""

    mistake: str
    text: str
    own: bool = False   # the text already names its one gradient


class _SoftmaxWithoutOneHot(Loss):
    def backward(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        return softmax(out) / len(y)


@dataclass(frozen=True)
class _UnsummedBias(Linear):
    """A linear layer reporting delta itself, one row per example, as its bias gradient."""

    def backward(self, grad_out: np.ndarray, h: np.ndarray, params: Any) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        grad_h, grads = Linear.backward(self, grad_out, h, params)
        grads[self.bias] = grad_out
        return grad_h, grads


_WRONG_DERIVATIVES: dict[str, list[tuple[str, Callable[[ActivationFn], Callable]]]] = {
    "sigmoid": [("s(z) instead of s(z)(1 - s(z))", lambda fn: fn.f),
                ("s(h)(1 - s(h)) of the output h instead of the input z", lambda fn: lambda z: fn.df(fn.f(z))),
                ("1 - s(z) instead of s(z)(1 - s(z))", lambda fn: lambda z: 1 - fn.f(z))],
    "tanh": [("1 - tanh(z) instead of 1 - tanh(z)^2", lambda fn: lambda z: 1 - np.tanh(z)),
             ("1 - z^2 instead of 1 - tanh(z)^2", lambda fn: lambda z: 1 - z**2),
             ("1 - tanh(h)^2 of the output h instead of the input z", lambda fn: lambda z: fn.df(fn.f(z)))],
    "relu": [("relu(z) instead of the step 1[z > 0]", lambda fn: fn.f)],
    "softplus": [("softplus(z) itself instead of its derivative s(z) = 1/(1 + e^-z)", lambda fn: fn.f),
                 ("e^z instead of s(z) = 1/(1 + e^-z)", lambda fn: np.exp)],
    "identity": [],
}


def _with_layer(network: Network, position: int, layer: Any) -> Network:
    return replace(network, layers=network.layers[:position] + (layer,) + network.layers[position + 1:])


def _activation_variants(network: Network, names: list[str]) -> list[tuple[_Cause, Network]]:
    """Backprop with one activation's derivative dropped or replaced, then with every one dropped."""
    found = []
    positions = [i for i, layer in enumerate(network.layers)
                 if isinstance(layer, Activation) and layer.fn.name != "identity"]
    for i in positions:
        fn = network.layers[i].fn
        z, h = names[i], names[i + 1]
        found.append((_Cause("missing-activation-derivative",
                             f"you backpropagated through {h} = {fn.name}({z}) without multiplying by {fn.name}'({z})."),
                      _with_layer(network, i, Activation(ActivationFn(fn.name, fn.f, np.ones_like)))))
        for words, make in _WRONG_DERIVATIVES[fn.name]:
            found.append((_Cause("wrong-activation-derivative", f"for {fn.name}'({z}) you used {words}."),
                          _with_layer(network, i, Activation(ActivationFn(fn.name, fn.f, make(fn))))))
    if len(positions) > 1:
        layers = tuple(Activation(ActivationFn(layer.fn.name, layer.fn.f, np.ones_like)) if i in positions else layer
                       for i, layer in enumerate(network.layers))
        derivatives = ", ".join(f"{network.layers[i].fn.name}'({names[i]})" for i in positions)
        found.append((_Cause("missing-activation-derivative", f"you multiplied by none of the activation derivatives ({derivatives})."),
                      replace(network, layers=layers)))
    return found


def _loss_scales(network: Network, batch: int) -> list[tuple[float, _Cause]]:
    """Gradients scaled as a whole: what a slip in dL/dout does to every gradient."""
    if network.loss.name != "mse":
        return [(batch, _Cause("missing-batch-mean",
                               f"{batch} times too large: the loss is a mean over the B = {batch} examples, "
                               f"so dL/dout = (softmax(out) - onehot(y)) / {batch}."))]
    outputs = network.outputs
    size = batch * outputs
    return [
        (size, _Cause("missing-batch-mean", f"{size} times too large: the mse is a mean over all B·K = {size} elements "
                                            f"of out, so dL/dout = 2 (out - y) / {size}.")),
        (batch, _Cause("missing-batch-mean", f"{batch} times too large: the 1/B of the batch mean is missing; the mse "
                                             f"averages over all B·K = {size} elements of out.")),
        (outputs, _Cause("missing-batch-mean", f"{outputs} times too large: you divided by the batch size B = {batch}, "
                                               f"but the mse averages over all B·K = {size} elements of out.")),
        (0.5, _Cause("mse-missing-factor-2", "half the right value: d/dout (out - y)^2 = 2 (out - y), the factor 2 is missing.")),
    ]


@dataclass(frozen=True)
class _Backprop:
    """Everything a gradient is compared with: the reference, the tape, deltas, and the mistaken variants."""

    network: Network
    names: list[str]
    reference: dict[str, np.ndarray]
    tape: list[np.ndarray]
    deltas: dict[str, np.ndarray]
    variants: list[tuple[_Cause, dict[str, np.ndarray]]]
    batch: int

    @classmethod
    def build(cls, network: Network, data: "Draw") -> "_Backprop":
        def run(variant: Network) -> dict[str, np.ndarray]:
            return variant.backward(data.params, data.x, data.y)

        names = tape_names(network)
        unsummed = replace(network, layers=tuple(_UnsummedBias(l.index, l.inputs, l.outputs) if isinstance(l, Linear) else l
                                                 for l in network.layers))
        variants = [(cause, run(variant)) for cause, variant in _activation_variants(network, names)]
        if network.loss.name == "softmax_cross_entropy":
            variants.append((_Cause("softmax-missing-onehot", "dL/dout must be (softmax(out) - onehot(y)) / B: "
                                                              "the one-hot targets were not subtracted."),
                             run(replace(network, loss=_SoftmaxWithoutOneHot(network.loss.name)))))
        return cls(network, names, run(network), network.trace(data.params, data.x), run(unsummed), variants, len(data.x))


def _shape_cause(bp: _Backprop, name: str, got: np.ndarray) -> _Cause | None:
    """Mistakes that show in the shape: a transposed weight gradient, an unsummed bias gradient."""
    want = bp.reference[name]
    label = f"d{name}"
    if name.startswith("W") and got.shape != want.shape and arrays.close(want.T, got):
        return _Cause("transposed-gradient", f"{label} is transposed: expected shape {want.shape}, got {got.shape}; "
                                             f"d{name} = h^T @ delta has the shape of {name}.", own=True)
    if name.startswith("b"):
        delta = bp.deltas[name]
        if arrays.close(delta, got):
            return _Cause("bias-not-summed", f"{label} has one row per example, shape {got.shape}: sum delta over the "
                                             f"batch (axis 0) to get shape {want.shape}.", own=True)
        if arrays.close(delta.sum(axis=1), got):
            return _Cause("bias-not-summed", f"{label} is summed over the wrong axis (shape {got.shape}): sum delta over "
                                             f"the batch, axis 0, to get shape {want.shape}.", own=True)
    return None


def _layer_input_cause(bp: _Backprop, name: str, got: np.ndarray) -> _Cause | None:
    """dW_k = h^T @ delta_k computed with some other cached array of the tape in place of h."""
    position = next(i for i, l in enumerate(bp.network.layers) if isinstance(l, Linear) and l.weight == name)
    layer = bp.network.layers[position]
    delta = bp.deltas[layer.bias]
    right = bp.names[position]
    for source, cached in enumerate(bp.tape):
        if source == position or arrays.close(cached, bp.tape[position]):
            continue
        if arrays.close(cached.T @ delta, got):
            used = bp.names[source]
            role = " (the pre-activation)" if source == position - 1 and isinstance(bp.network.layers[source], Activation) else ""
            return _Cause("wrong-layer-input",
                          f"d{name} was computed from {used}{role} instead of {right}, the input layer {layer.index} "
                          f"received on the forward pass: d{name} = {right}^T @ delta{layer.index}.", own=True)
    return None


def _nice(value: float) -> Fraction | float:
    nice = Fraction(value).limit_denominator(100)
    return nice if abs(float(nice) - value) <= 1e-6 * max(abs(value), 1) else value


def _scale_cause(bp: _Backprop, name: str, got: np.ndarray, update: bool) -> _Cause | None:
    """The gradient is a constant times the right one: sign, the loss's 1/N or factor 2, an averaged bias."""
    want = bp.reference[name]
    norm = float(np.vdot(want, want))
    if got.shape != want.shape or norm == 0:
        return None
    scale = float(np.vdot(want, got)) / norm
    if scale == 0 or not arrays.close(scale * want, got):
        return None

    def near(target: float) -> bool:
        return abs(scale - target) <= 1e-4 * abs(target)

    if near(-1):
        if update:
            return _Cause("sign-error", "you stepped uphill: P + lr · dL/dP; a step is P - lr · dL/dP.")
        loss = "2 (out - y) / N" if bp.network.loss.name == "mse" else "(softmax(out) - onehot(y)) / B"
        return _Cause("sign-error", f"the right values times -1: check the signs, starting with dL/dout = {loss}.")
    if name.startswith("b") and near(1 / bp.batch):
        return _Cause("bias-not-summed", f"d{name} is averaged over the batch: sum delta over it instead "
                                         f"(the loss's mean already divides by N).", own=True)
    for factor, cause in _loss_scales(bp.network, bp.batch):
        if factor != 1 and near(factor):
            return cause
    shown = _nice(scale)
    return _Cause("constant-factor", f"d{name} is {shown if isinstance(shown, Fraction) else f'{shown:.4g}'} times the right one.",
                  own=True)


def _gradient_cause(bp: _Backprop, name: str, got: np.ndarray, update: bool) -> _Cause | None:
    """The most specific explanation of one wrong gradient, or None."""
    want = bp.reference[name]
    cause = _shape_cause(bp, name, got)
    if cause is None and name.startswith("W"):
        cause = _layer_input_cause(bp, name, got)
    if cause is None:
        for variant_cause, grads in bp.variants:
            if not arrays.close(want, grads[name]) and arrays.close(grads[name], got):
                cause = variant_cause
                break
    if cause is None and name.startswith("W") and got.shape == want.shape and arrays.close(want.T, got):
        cause = _Cause("transposed-gradient", f"d{name} is transposed: {name} is square, so the shape is right but the "
                                              f"values are those of d{name}^T; d{name} = h^T @ delta.", own=True)
    return cause or _scale_cause(bp, name, got, update)


def _as_gradient(got: np.ndarray, param: np.ndarray, lr: float | None) -> np.ndarray | None:
    """The gradient a returned array implies: itself, or (param - new) / lr for an update part."""
    if lr is None:
        return got
    try:
        np.broadcast_shapes(param.shape, got.shape)
    except ValueError:
        return None
    return (param - got) / lr


def diagnose_backprop(compiled: "Compiled", part: Any, data: "Draw", got: dict[str, np.ndarray]) -> list[Finding]:
    """Findings for the wrong gradients, most specific mistake for each; gradients with one cause share a finding."""
    network = compiled.network
    assert network is not None
    lr = part.update.lr if part.update else None
    bp = _Backprop.build(network, data)
    grouped: dict[_Cause, list[str]] = {}
    for name in bp.reference:
        if name not in got:
            continue
        gradient = _as_gradient(got[name], data.params[name], lr)
        cause = _gradient_cause(bp, name, gradient, lr is not None) if gradient is not None else None
        if cause is not None:
            grouped.setdefault(cause, []).append(name if lr is not None else f"d{name}")
    return [Finding(cause.mistake, cause.text if cause.own else f"{', '.join(labels)}: {cause.text}")
            for cause, labels in grouped.items()]


__all__ = ["Candidate", "Finding", "Step", "describe", "diagnose_backprop", "diagnose_expression", "diagnose_value",
           "expression_candidates", "link_label", "path_steps", "undetectable"]
