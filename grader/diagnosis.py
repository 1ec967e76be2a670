"""Name the chain-rule mistake behind a wrong answer.

Mistakes are never guessed from the answer's text. For each known mistake we
generate the answer it would produce, from the reference computation itself
(drop a path, drop an inner derivative, evaluate the outer derivative at the wrong
place, run backprop with a wrong piece), and compare the student's answer with it
by the same numeric equivalence used for grading. The most specific match wins.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import combinations
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from grader import arrays
from grader.equivalence import RealFunction, compare, evaluate
from grader.parse import to_text
from reference.backprop import Activation, ActivationFn, Linear, Loss, Network, one_hot, softmax
from reference.chain import Derivative, Link, Path, peel, symbol

if TYPE_CHECKING:
    from grader.compile import Compiled, PartReference
    from grader.grade import Draw, Oracle

MAX_PATHS_FOR_SUBSETS = 5
PEEL_DEPTH = 4

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


# ---------------------------------------------------------------- expressions

def _product(factors: list[sympy.Expr]) -> sympy.Expr:
    return sympy.Mul(*factors)


def _route(path: Path) -> str:
    names = path.names()
    if len(names) == 2:
        return f"the direct dependence of {names[0]} on {names[1]} (∂{names[0]}/∂{names[1]})"
    through = ", ".join(names[1:-1])
    factors = " · ".join(f"∂{link.node}/∂{link.input}" for link in path.links)
    return f"the path through {through}: {factors}"


def _peel_mistakes(expr: sympy.Expr, var: sympy.Symbol, depth: int = 0) -> list[Candidate]:
    """Mistakes inside one composite expression f(g(x)), at every depth of nesting."""
    step = peel(expr, var) if depth < PEEL_DEPTH else None
    if step is None:
        return []
    u = step.placeholder
    outer_at_inner = step.outer_derivative.subs(u, step.inner)
    inner_text = to_text(step.inner)
    found = []
    if step.inner_derivative != 1:
        found.append(Candidate("forgot-inner-derivative",
                  f"You differentiated {to_text(step.outer)} (with {u} = {inner_text}) but did not multiply by "
                  f"the inner derivative d{u}/d{var} = {to_text(step.inner_derivative)}.",
                  outer_at_inner))
    if u in step.outer_derivative.free_symbols:
        found.append(Candidate("derivative-inside",
                  f"You put the inner derivative inside: you wrote {to_text(step.outer_derivative)} at {u} = "
                  f"{to_text(step.inner_derivative)} instead of multiplying {to_text(step.outer_derivative)} at "
                  f"{u} = {inner_text} by {to_text(step.inner_derivative)}.",
                  step.outer_derivative.subs(u, step.inner_derivative)))
        found.append(Candidate("product-of-derivatives",
                  f"You evaluated the outer derivative {to_text(step.outer_derivative)} at {var} instead of at "
                  f"{u} = {inner_text}, then multiplied by {to_text(step.inner_derivative)}.",
                  step.outer_derivative.subs(u, var) * step.inner_derivative))
    for deeper in _peel_mistakes(step.inner, var, depth + 1):
        found.append(Candidate(deeper.mistake, deeper.message, outer_at_inner * deeper.expr))
    return found


def _link_mistakes(path: Path, chain: Any, wrt_symbol: sympy.Symbol, composite: bool) -> list[Candidate]:
    """Chain-rule mistakes along one path: a dropped inner factor, or a link differentiated wrongly.

    f'(g'(x)) and f'(x) g'(x) are composite-chain mistakes: only generated when the path is the only one.
    """
    links = path.links
    subs = [link.substituted for link in links]
    found: list[Candidate] = []
    for k in range(1, len(links)):
        dropped = links[k]
        if dropped.local == 1:
            continue
        found.append(Candidate(
            "forgot-inner-derivative",
            f"You differentiated {links[k - 1].node} with respect to {links[k - 1].input} but did not multiply by "
            f"the inner derivative d{dropped.node}/d{dropped.input} = {to_text(dropped.local)}.",
            _product(subs[:k] + subs[k + 1:])))
        if k < len(links) - 1:
            found.append(Candidate(
                "forgot-inner-derivative",
                f"You stopped the chain at d{links[k - 1].node}/d{links[k - 1].input}: the factors "
                + " · ".join(f"d{link.node}/d{link.input}" for link in links[k:]) + " are missing.",
                _product(subs[:k])))
    if composite and len(links) >= 2 and symbol(links[0].input) in links[0].local.free_symbols:
        top = links[0]
        inner = _product(subs[1:])
        placeholder = symbol(top.input)
        found.append(Candidate(
            "derivative-inside",
            f"You put the inner derivative inside: d{top.node}/d{top.input} = {to_text(top.local)} evaluated at "
            f"{to_text(inner)} instead of at {top.input}, and not multiplied by it.",
            chain.expand(top.local.subs(placeholder, inner))))
        found.append(Candidate(
            "product-of-derivatives",
            f"You evaluated d{top.node}/d{top.input} = {to_text(top.local)} at {wrt_symbol} instead of at "
            f"{top.input} = {to_text(chain.expand(placeholder))}.",
            chain.expand(top.local.subs(placeholder, wrt_symbol)) * inner))
    for k, link in enumerate(links):
        node_expr = chain.expression(link.node)
        for wrong in _peel_mistakes(node_expr, symbol(link.input)):
            found.append(Candidate(wrong.mistake, wrong.message,
                                   _product(subs[:k] + [chain.expand(wrong.expr)] + subs[k + 1:])))
    return found


def expression_candidates(chain: Any, derivative: Derivative) -> list[Candidate]:
    """Every mistaken answer for one derivative, most specific first."""
    paths = derivative.paths
    found: list[Candidate] = []
    wrt_is_variable = derivative.wrt in chain.variables
    if len(paths) > 1:
        if wrt_is_variable and derivative.direct != 0:
            others = sorted({n for p in paths if len(p.links) > 1 for n in p.names()[1:-1]})
            found.append(Candidate(
                "partial-for-total",
                f"You gave only the direct partial ∂{derivative.of}/∂{derivative.wrt}, but {derivative.of} also "
                f"depends on {derivative.wrt} through {', '.join(others)}.",
                derivative.direct))
        if len(paths) <= MAX_PATHS_FOR_SUBSETS:
            for size in range(len(paths) - 1, 0, -1):
                for kept in combinations(range(len(paths)), size):
                    missing = [paths[i] for i in range(len(paths)) if i not in kept]
                    words = "; ".join(_route(p) for p in missing)
                    found.append(Candidate(
                        "missing-path",
                        f"Your d{derivative.of}/d{derivative.wrt} leaves out {words}.",
                        sympy.Add(*[paths[i].term for i in kept])))
    wrt = symbol(derivative.wrt)
    for index, path in enumerate(paths):
        rest = [p.term for i, p in enumerate(paths) if i != index]
        for wrong in _link_mistakes(path, chain, wrt, composite=len(paths) == 1):
            found.append(Candidate(wrong.mistake, wrong.message, sympy.Add(wrong.expr, *rest)))
    return found


def _defined(values: list) -> bool:
    return sum(v is not None for v in values) >= max(3, len(values) // 2)


def _matches(candidate_values: list, answer_values: list, orc: "Oracle") -> bool:
    keep = [i for i, v in enumerate(candidate_values) if v is not None]
    if len(keep) < max(3, len(candidate_values) // 2):
        return False
    verdict = compare([candidate_values[i] for i in keep], [answer_values[i] for i in keep],
                      [orc.points[i] for i in keep], orc.variables)
    return verdict.equal


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
    if any(abs(r - first) > 1e-9 * max(abs(first), 1) for r in ratios):
        return None
    nice = Fraction(float(first)).limit_denominator(1000)
    return nice if abs(float(nice) - float(first)) <= 1e-9 * max(abs(float(first)), 1) else float(first)


def _scaled(ratio: Fraction | float | None) -> Finding | None:
    if ratio is None or ratio == 1 or ratio == 0:
        return None
    if ratio == -1:
        return Finding("sign-error", describe("sign-error"))
    shown = str(ratio) if isinstance(ratio, Fraction) else f"{ratio:.4g}"
    return Finding("constant-factor", f"Your answer is {shown} times the right one: check the constant factors.")


_CANDIDATES: dict[tuple, list[tuple[Candidate, list]]] = {}


def _evaluated_candidates(compiled: "Compiled", ref: "PartReference", index: int, orc: "Oracle") -> list[tuple[Candidate, list]]:
    """Candidates of one component with their values at the oracle's points, computed once per variant."""
    key = (id(compiled), ref.part.id, index)
    if key not in _CANDIDATES:
        result = []
        if ref.derivatives and compiled.chain is not None:
            seen: list[list] = [orc.values]
            for candidate in expression_candidates(compiled.chain, ref.derivatives[index]):
                expr = ref.finish(candidate.expr)
                values = evaluate(RealFunction(expr, orc.variables), orc.points)
                if not _defined(values) or any(_same(values, other, orc) for other in seen):
                    continue
                seen.append(values)
                result.append((candidate, values))
        _CANDIDATES[key] = result
    return _CANDIDATES[key]


def _same(a: list, b: list, orc: "Oracle") -> bool:
    return _matches(a, b, orc)


def diagnose_expression(compiled: "Compiled", ref: "PartReference", index: int, orc: "Oracle", answer_values: list) -> Finding | None:
    """The mistake that explains a wrong expression answer, if a known one does."""
    if not all(v is not None for v in answer_values):
        return None
    for candidate, values in _evaluated_candidates(compiled, ref, index, orc):
        if _matches(values, answer_values, orc):
            return Finding(candidate.mistake, candidate.message)
    return _scaled(_ratio(orc.values, answer_values))


def diagnose_value(compiled: "Compiled", ref: "PartReference", got: sympy.Expr, tolerance: float) -> Finding | None:
    """Value answers: the same candidates evaluated at the part's point, then sign and constant factors."""
    from grader.equivalence import values_close

    if ref.step is not None:
        start, lr = ref.step
        uphill = 2 * start - ref.exprs[0]
        if values_close(uphill, got, rel_tol=tolerance):
            return Finding("sign-error", f"You stepped uphill: the step is {start} - lr · dL/d(param), not plus.")
    if ref.derivatives and compiled.chain is not None:
        for candidate in expression_candidates(compiled.chain, ref.derivatives[0]):
            wrong = ref.finish(candidate.expr)
            if wrong.free_symbols or values_close(ref.exprs[0], wrong, rel_tol=tolerance):
                continue
            if values_close(wrong, got, rel_tol=tolerance):
                return Finding(candidate.mistake, candidate.message)
    if ref.step is None:
        expected = ref.exprs[0]
        if values_close(-expected, got, rel_tol=tolerance) and not values_close(expected, 0, rel_tol=tolerance):
            return Finding("sign-error", describe("sign-error"))
    return None


# ---------------------------------------------------------------- backprop

def _variant_backward(network: Network, data: "Draw") -> dict[str, np.ndarray]:
    return network.backward(data.params, data.x, data.y)


class _MseWithoutTwo(Loss):
    def backward(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (out - y) / out.size


class _SoftmaxWithoutOneHot(Loss):
    def backward(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        return softmax(out) / len(y)


class _NoBatchMean(Loss):
    def backward(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        scale = out.size if self.name == "mse" else len(y)
        return Loss.backward(self, out, y) * scale


class _PreActivationInput(Network):
    """dW_k computed from the pre-activation z instead of the activation's output."""

    def cached_input(self, tape, position):  # type: ignore[override]
        layer = self.layers[position]
        if isinstance(layer, Linear) and position > 0 and isinstance(self.layers[position - 1], Activation):
            return tape[position - 1]
        return tape[position]


_WRONG_DERIVATIVES: dict[str, list[tuple[str, Any]]] = {
    "sigmoid": [("s(z) instead of s(z)(1 - s(z))", lambda fn: fn.f),
                ("s(a)(1 - s(a)) of the output a instead of the input z", lambda fn: lambda z: fn.df(fn.f(z))),
                ("1 - s(z)", lambda fn: lambda z: 1 - fn.f(z))],
    "tanh": [("1 - tanh(z) instead of 1 - tanh(z)^2", lambda fn: lambda z: 1 - np.tanh(z)),
             ("1 - z^2 instead of 1 - tanh(z)^2", lambda fn: lambda z: 1 - z**2),
             ("tanh'(a) of the output a instead of the input z", lambda fn: lambda z: fn.df(fn.f(z)))],
    "relu": [("relu(z) instead of the step 1[z > 0]", lambda fn: fn.f)],
    "softplus": [("softplus(z) itself instead of its derivative s(z)", lambda fn: fn.f),
                 ("e^z instead of s(z) = 1/(1 + e^-z)", lambda fn: np.exp)],
    "identity": [],
}


def _activation_variants(network: Network) -> list[tuple[str, str, Network]]:
    found = []
    positions = [i for i, layer in enumerate(network.layers) if isinstance(layer, Activation) and layer.fn.name != "identity"]
    for i in positions:
        layer = network.layers[i]
        assert isinstance(layer, Activation)
        name = layer.fn.name
        ones = Activation(ActivationFn(name, layer.fn.f, np.ones_like))
        found.append(("missing-activation-derivative",
                      f"You did not multiply by {name}'(z) at layer {i + 1} when backpropagating through the {name}.",
                      replace(network, layers=network.layers[:i] + (ones,) + network.layers[i + 1:])))
        for words, make in _WRONG_DERIVATIVES.get(name, []):
            wrong = Activation(ActivationFn(name, layer.fn.f, make(layer.fn)))
            found.append(("wrong-activation-derivative",
                          f"You used {words} as the {name} derivative at layer {i + 1}.",
                          replace(network, layers=network.layers[:i] + (wrong,) + network.layers[i + 1:])))
    if len(positions) > 1:
        layers = tuple(Activation(ActivationFn(l.fn.name, l.fn.f, np.ones_like)) if i in positions else l
                       for i, l in enumerate(network.layers))
        found.append(("missing-activation-derivative", "You did not multiply by any activation derivative.",
                      replace(network, layers=layers)))
    return found


def _network_variants(network: Network) -> list[tuple[str, str, Network]]:
    loss = network.loss.name
    found = _activation_variants(network)
    if loss == "mse":
        found.append(("mse-missing-factor-2", describe("mse-missing-factor-2"),
                      replace(network, loss=_MseWithoutTwo("mse"))))
    else:
        found.append(("softmax-missing-onehot", describe("softmax-missing-onehot"),
                      replace(network, loss=_SoftmaxWithoutOneHot(loss))))
    found.append(("missing-batch-mean", describe("missing-batch-mean"), replace(network, loss=_NoBatchMean(loss))))
    if any(isinstance(l, Activation) for l in network.layers):
        found.append(("wrong-layer-input", describe("wrong-layer-input"),
                      _PreActivationInput(network.inputs, network.layers, network.loss)))
    return found


def _shape_findings(name: str, want: np.ndarray, got: np.ndarray, batch: int) -> Finding | None:
    if name.startswith("W") and got.shape == want.shape[::-1] and arrays.close(want.T, got):
        return Finding("transposed-gradient", f"d{name} is transposed: expected shape {want.shape}, got {got.shape}.")
    if name.startswith("W") and got.shape == want.shape and want.shape[0] == want.shape[1] and arrays.close(want.T, got):
        return Finding("transposed-gradient", f"d{name} is transposed (W{name[1:]} is square, so only the values show it).")
    if name.startswith("b"):
        if got.ndim == 2 and got.shape[1:] == want.shape and arrays.close(want, got.sum(axis=0)):
            return Finding("bias-not-summed", f"d{name} has one row per example {got.shape}: sum it over the batch to get shape {want.shape}.")
        if got.shape == want.shape and arrays.close(want / batch, got):
            return Finding("bias-not-summed", f"d{name} is averaged over the batch; sum it instead (the loss already divides by N).")
    return None


def diagnose_backprop(compiled: "Compiled", part: Any, data: "Draw", got: dict[str, np.ndarray]) -> list[Finding]:
    """One finding per explained wrong gradient (the most specific mistake for each)."""
    network = compiled.network
    assert network is not None
    lr = part.update.lr if part.update else None
    reference = network.backward(data.params, data.x, data.y)
    findings: list[Finding] = []
    variants = None
    for name, array in got.items():
        want_grad = reference[name]
        got_grad = (data.params[name] - array) / lr if lr and array.shape == want_grad.shape else array
        if lr is not None and array.shape == want_grad.shape:
            if arrays.close(data.params[name] + lr * want_grad, array):
                findings.append(Finding("sign-error", f"{name}: you stepped uphill (params + lr · grad); the step is params - lr · grad."))
                continue
        found = _shape_findings(name, want_grad, got_grad, len(data.x))
        if found is None:
            if variants is None:
                variants = [(m, msg, _variant_backward(v, data)) for m, msg, v in _network_variants(network)]
            for mistake, message, grads in variants:
                if not arrays.close(want_grad, grads[name]) and arrays.close(grads[name], got_grad):
                    found = Finding(mistake, f"{name}: {message}")
                    break
        if found is None and got_grad.shape == want_grad.shape and arrays.close(-want_grad, got_grad):
            found = Finding("sign-error", f"d{name} has the wrong sign.")
        if found is not None:
            findings.append(found)
    return findings


__all__ = ["Finding", "describe", "diagnose_expression", "diagnose_value", "diagnose_backprop", "expression_candidates",
           "one_hot"]


def undetectable(compiled: "Compiled", ref: "PartReference", index: int, orc: "Oracle") -> list[str]:
    """Mistake ids whose wrong answer equals the right one in this part (validate warns about them)."""
    if not ref.derivatives or compiled.chain is None:
        return []
    blind = []
    for candidate in expression_candidates(compiled.chain, ref.derivatives[index]):
        values = evaluate(RealFunction(ref.finish(candidate.expr), orc.variables), orc.points)
        if _defined(values) and _matches(values, orc.values, orc) and candidate.mistake not in blind:
            blind.append(candidate.mistake)
    return blind
