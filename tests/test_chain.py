"""The reference chain rule checked three independent ways: sympy's diff of the expansion,
central finite differences, and the sum over paths against the backward pass."""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from reference.chain import Chain, Derivative, peel, symbol

t, x, y, s = (symbol(name) for name in ("t", "x", "y", "s"))
u, v, w, a, b, c, r = (symbol(name) for name in ("u", "v", "w", "a", "b", "c", "r"))

RNG_SEED = 20240
STEP = 1e-6


def same(left: sympy.Expr, right: sympy.Expr) -> bool:
    return sympy.simplify(left - right) == 0


def expand_except(chain: Chain, name: str, keep: str) -> sympy.Expr:
    """`name` with every definition substituted except `keep`, left an independent symbol."""
    if name == keep:
        return symbol(keep)
    swaps = {symbol(other): chain.expression(other) for other in chain.names if other != keep}
    expr = chain.expression(name)
    while expr.free_symbols & set(swaps):
        expr = expr.xreplace(swaps)
    return expr


def random_points(chain: Chain, count: int = 4) -> list[dict[str, float]]:
    rng = np.random.default_rng(RNG_SEED)
    return [
        {name: float(rng.uniform(0.2, 1.3)) for name in chain.variables} for _ in range(count)
    ]


def numeric(chain: Chain, expr: sympy.Expr, extra: tuple[str, ...] = ()) -> Callable[..., float]:
    names = chain.variables + extra
    function = sympy.lambdify([symbol(name) for name in names], expr, "numpy")
    return lambda values: float(function(*(values[name] for name in names)))


def assert_matches_finite_differences(chain: Chain, derivative: Derivative) -> None:
    """Vary `wrt` alone; for a defined name, other definitions keep following the variables."""
    of, wrt = derivative.of, derivative.wrt
    value = numeric(chain, derivative.value)
    if wrt in chain.variables:
        function = numeric(chain, chain.expand(of))
        start: Callable[[dict[str, float]], float] = lambda point: point[wrt]
    else:
        function = numeric(chain, expand_except(chain, of, wrt), (wrt,))
        start = numeric(chain, chain.expand(wrt))
    for point in random_points(chain):
        here = start(point)
        ahead = function({**point, wrt: here + STEP})
        behind = function({**point, wrt: here - STEP})
        estimate = (ahead - behind) / (2 * STEP)
        assert value(point) == pytest.approx(estimate, rel=1e-5, abs=1e-6), (of, wrt, point)


def assert_consistent(chain: Chain, derivative: Derivative) -> None:
    """Path terms add up to the value, and the value is the derivative of the expansion."""
    assert same(sum((path.term for path in derivative.paths), sympy.S.Zero), derivative.value)
    for path in derivative.paths:
        assert path.term == sympy.Mul(*(link.substituted for link in path.links))
    wrt = derivative.wrt
    if wrt in chain.variables:
        assert same(derivative.value, sympy.diff(chain.expand(derivative.of), symbol(wrt)))
    else:
        cut = sympy.diff(expand_except(chain, derivative.of, wrt), symbol(wrt))
        assert same(derivative.value, chain.expand(cut))
    assert derivative.value.free_symbols <= {symbol(name) for name in chain.variables}
    assert_matches_finite_differences(chain, derivative)


WORKED = Chain(["x"], {"u": x**2 + 1, "y": u**3})
DEPTH_THREE = Chain(["x"], {"u": x**2 + 1, "v": sympy.sin(u), "y": sympy.exp(v)})
DEPTH_FOUR = Chain(
    ["x"], {"u": 3 * x, "v": u**2 + 1, "w": sympy.log(v), "y": sympy.sqrt(w + 2)}
)
TWO_PATHS = Chain(["t"], {"x": sympy.exp(2 * t), "y": t**3 + 1, "z": x * sympy.sin(y)})
THREE_PATHS = Chain(["t"], {"x": sympy.cos(t), "y": sympy.sin(t), "z": x**2 * y + t})
DIAMOND = Chain(["t"], {"a": t**2, "b": sympy.sin(a), "c": sympy.exp(a), "z": b * c})
PLANE = Chain(
    ["x", "y"], {"r": sympy.sqrt(x**2 + y**2), "s": x * y, "f": r**2 * sympy.sin(s) + x}
)
CHAINS = {
    "worked": WORKED,
    "depth three": DEPTH_THREE,
    "depth four": DEPTH_FOUR,
    "two paths": TWO_PATHS,
    "three paths": THREE_PATHS,
    "diamond": DIAMOND,
    "plane": PLANE,
}


def test_symbol_is_real_and_unique_per_name() -> None:
    assert symbol("x") == x
    assert symbol("x").is_real


def test_worked_example_links_value_and_expansion() -> None:
    derivative = WORKED.derivative("y", "x")
    (path,) = derivative.paths
    assert path.names() == ("y", "u", "x")
    outer, inner = path.links
    assert (outer.node, outer.input, outer.local) == ("y", "u", 3 * u**2)
    assert same(outer.substituted, 3 * (x**2 + 1) ** 2)
    assert (inner.node, inner.input, inner.local, inner.substituted) == ("u", "x", 2 * x, 2 * x)
    assert same(derivative.value, 6 * x * (x**2 + 1) ** 2)
    assert derivative.direct == 0
    assert same(WORKED.expand("y"), (x**2 + 1) ** 3)
    assert WORKED.expression("y") == u**3
    assert WORKED.expression("x") == x
    assert WORKED.local("y", "u") == 3 * u**2
    assert WORKED.local("y", "x") == 0
    assert WORKED.inputs("y") == ("u",)
    assert_consistent(WORKED, derivative)


@pytest.mark.parametrize("label", sorted(CHAINS))
def test_every_derivative_agrees_with_diff_and_finite_differences(label: str) -> None:
    chain = CHAINS[label]
    for of in chain.names:
        for wrt in chain.variables + chain.names:
            assert_consistent(chain, chain.derivative(of, wrt))


def test_depth_three_and_four_are_single_paths_through_every_link() -> None:
    assert DEPTH_THREE.derivative("y", "x").paths[0].names() == ("y", "v", "u", "x")
    (path,) = DEPTH_FOUR.derivative("y", "x").paths
    assert path.names() == ("y", "w", "v", "u", "x")
    assert [link.local for link in path.links] == [
        1 / (2 * sympy.sqrt(w + 2)),
        1 / v,
        2 * u,
        3,
    ]


def test_two_paths_each_carry_their_own_product() -> None:
    derivative = TWO_PATHS.derivative("z", "t")
    assert [path.names() for path in derivative.paths] == [("z", "x", "t"), ("z", "y", "t")]
    via_x, via_y = (path.term for path in derivative.paths)
    assert same(via_x, 2 * sympy.exp(2 * t) * sympy.sin(t**3 + 1))
    assert same(via_y, sympy.exp(2 * t) * sympy.cos(t**3 + 1) * 3 * t**2)
    assert derivative.direct == 0


def test_direct_edge_comes_first_and_is_the_direct_partial() -> None:
    derivative = THREE_PATHS.derivative("z", "t")
    assert [path.names() for path in derivative.paths] == [
        ("z", "t"),
        ("z", "x", "t"),
        ("z", "y", "t"),
    ]
    assert derivative.direct == 1
    assert derivative.paths[0].term == 1


def test_diamond_reaches_the_shared_name_by_two_routes() -> None:
    derivative = DIAMOND.derivative("z", "t")
    assert [path.names() for path in derivative.paths] == [
        ("z", "b", "a", "t"),
        ("z", "c", "a", "t"),
    ]
    through_a = DIAMOND.derivative("z", "a")
    assert [path.names() for path in through_a.paths] == [("z", "b", "a"), ("z", "c", "a")]
    assert same(through_a.value, (sympy.cos(t**2) + sympy.sin(t**2)) * sympy.exp(t**2))


def test_partial_with_respect_to_a_defined_name_cuts_the_graph_there() -> None:
    chain = Chain(["t"], {"x": t**2, "y": sympy.sin(t), "z": x**2 * y})
    derivative = chain.derivative("z", "x")
    assert same(derivative.value, 2 * t**2 * sympy.sin(t))
    assert [path.names() for path in derivative.paths] == [("z", "x")]
    assert same(derivative.direct, derivative.value)
    assert_consistent(chain, derivative)


def test_direct_partial_holds_the_other_inputs_fixed() -> None:
    derivative = TWO_PATHS.derivative("z", "x")
    assert same(derivative.direct, sympy.sin(t**3 + 1))
    assert THREE_PATHS.derivative("z", "x").direct == 2 * sympy.cos(t) * sympy.sin(t)


def test_gradient_of_a_function_of_two_variables() -> None:
    gradient = PLANE.gradient("f", ["x", "y"])
    assert [(derivative.of, derivative.wrt) for derivative in gradient] == [("f", "x"), ("f", "y")]
    plain = (x**2 + y**2) * sympy.sin(x * y) + x
    for derivative, variable in zip(gradient, (x, y)):
        assert same(derivative.value, sympy.diff(plain, variable))
        assert_consistent(PLANE, derivative)
    assert gradient[0] == PLANE.derivative("f", "x")


@pytest.mark.parametrize("label", sorted(CHAINS))
def test_backward_gives_every_adjoint(label: str) -> None:
    chain = CHAINS[label]
    of = chain.names[-1]
    adjoints = chain.backward(of)
    assert list(adjoints) == list(chain.variables + chain.names)
    assert adjoints[of] == 1
    for name, adjoint in adjoints.items():
        assert same(adjoint, chain.derivative(of, name).value)
        cut = sympy.diff(expand_except(chain, of, name), symbol(name))
        assert same(adjoint, chain.expand(cut)), name


def test_backward_adjoint_values_on_the_diamond() -> None:
    adjoints = DIAMOND.backward("z")
    assert same(adjoints["b"], sympy.exp(t**2))
    assert same(adjoints["c"], sympy.sin(t**2))
    assert same(adjoints["t"], 2 * t * (sympy.cos(t**2) + sympy.sin(t**2)) * sympy.exp(t**2))
    upstream = DIAMOND.backward("b")
    assert upstream["z"] == 0
    assert upstream["c"] == 0
    assert same(upstream["t"], 2 * t * sympy.cos(t**2))


def test_trivial_derivatives() -> None:
    itself = THREE_PATHS.derivative("t", "t")
    assert itself.value == 1
    assert [path.names() for path in itself.paths] == [()]
    assert itself.paths[0].term == 1
    assert itself.direct == 0
    name_itself = THREE_PATHS.derivative("x", "x")
    assert name_itself.value == 1
    assert sum(path.term for path in name_itself.paths) == 1
    for of, wrt in (("t", "x"), ("x", "z"), ("x", "y")):
        unrelated = THREE_PATHS.derivative(of, wrt)
        assert (unrelated.value, unrelated.paths, unrelated.direct) == (0, (), 0)
    plane = PLANE.derivative("s", "x")
    assert plane.value == y


def test_definitions_may_come_in_any_acyclic_order() -> None:
    chain = Chain(["x"], {"y": u**3, "u": x**2 + 1})
    assert chain.names == ("u", "y")
    assert same(chain.derivative("y", "x").value, 6 * x * (x**2 + 1) ** 2)


def test_symbols_built_without_assumptions_are_made_real() -> None:
    plain_x, plain_u = sympy.symbols("x u")
    chain = Chain(["x"], {"u": plain_x**2, "y": sympy.sin(plain_u)})
    assert chain.expression("y") == sympy.sin(u)
    assert chain.expand(plain_u + 1) == x**2 + 1
    assert same(chain.derivative("y", "x").value, 2 * x * sympy.cos(x**2))


def test_value_at_substitutes_exactly() -> None:
    derivative = WORKED.derivative("y", "x")
    assert WORKED.value_at(derivative.value, {"x": 1}) == 24
    assert WORKED.value_at(derivative.value, {"x": sympy.Rational(1, 2)}) == sympy.Rational(75, 16)
    assert WORKED.value_at("y", {"x": 2}) == 125
    assert WORKED.value_at(u * x, {"x": 3}) == 30
    assert THREE_PATHS.value_at("y", {"t": 1}) == sympy.sin(1)
    with pytest.raises(ValueError, match="'u'"):
        WORKED.value_at(u, {"u": 1})


def test_cycle_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="cycle: a -> b -> a"):
        Chain(["t"], {"a": b + 1, "b": a})
    with pytest.raises(ValueError, match="cycle: a -> a"):
        Chain(["t"], {"a": a * t})


def test_unknown_symbol_is_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="'w'"):
        Chain(["x"], {"u": x + w})


@pytest.mark.parametrize(
    ("variables", "definitions", "message"),
    [
        (["x", "x"], {"u": x}, "listed twice"),
        (["x"], {"x": x**2}, "both a free variable and a defined name"),
        (["x"], {"u": sympy.Eq(x, 1)}, "not an expression"),
        ([""], {}, "non-empty"),
    ],
)
def test_malformed_chains_are_rejected(
    variables: list[str], definitions: Mapping[str, sympy.Expr], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Chain(variables, definitions)


def test_unknown_names_in_queries_are_rejected() -> None:
    for query in (
        lambda: WORKED.derivative("y", "q"),
        lambda: WORKED.derivative("q", "x"),
        lambda: WORKED.backward("q"),
        lambda: WORKED.expression("q"),
        lambda: WORKED.local("y", "q"),
    ):
        with pytest.raises(ValueError, match="'q'"):
            query()


@pytest.mark.parametrize(
    ("expr", "outer", "inner"),
    [
        (sympy.sin(x**2), sympy.sin(u), x**2),
        ((x**2 + 1) ** 3, u**3, x**2 + 1),
        (sympy.exp(3 * x), sympy.exp(u), 3 * x),
        (5 * sympy.cos(2 * x), 5 * sympy.cos(u), 2 * x),
        (sympy.sqrt(1 + x**2), sympy.sqrt(u), 1 + x**2),
        (sympy.log(sympy.sin(x)), sympy.log(u), sympy.sin(x)),
        (2 ** (x**2), 2**u, x**2),
        (1 / sympy.sin(x), 1 / u, sympy.sin(x)),
        (1 + 5 * sympy.cos(2 * x), 1 + 5 * sympy.cos(u), 2 * x),
        (y * sympy.sin(x * y), y * sympy.sin(u), x * y),
    ],
)
def test_peel_splits_off_the_outermost_function(
    expr: sympy.Expr, outer: sympy.Expr, inner: sympy.Expr
) -> None:
    step = peel(expr, x)
    assert step is not None
    assert step.placeholder == u
    assert (step.outer, step.inner) == (outer, inner)
    assert step.outer_derivative == sympy.diff(outer, u)
    assert step.inner_derivative == sympy.diff(inner, x)
    assert step.outer.xreplace({u: step.inner}) == expr


@pytest.mark.parametrize(
    "expr",
    [x**2, x, 3 * x**2 + x, x * sympy.sin(x), sympy.sin(x), sympy.Integer(4), x**x, y**2],
)
def test_peel_finds_no_composition(expr: sympy.Expr) -> None:
    assert peel(expr, x) is None


def test_repeated_peeling_gives_every_link() -> None:
    links = []
    expr = sympy.exp(sympy.sin(x**2))
    while (step := peel(expr, x)) is not None:
        links.append(step.outer)
        expr = step.inner
    links.append(expr)
    assert links == [sympy.exp(u), sympy.sin(u), x**2]


def test_placeholder_avoids_names_in_use() -> None:
    step = peel(sympy.sin(u**2), u)
    assert step is not None
    assert step.placeholder == v
    assert step.outer == sympy.sin(v)


MENU: list[Callable[[sympy.Expr], sympy.Expr]] = [
    sympy.sin,
    sympy.cos,
    sympy.exp,
    lambda arg: arg**2,
    lambda arg: arg**3 + 1,
    lambda arg: sympy.sqrt(arg**2 + 1),
    lambda arg: sympy.log(arg**2 + 1),
    lambda arg: 1 / (1 + arg**2),
]
POINTS = np.array([-0.9, -0.35, 0.15, 0.6, 1.1])


def assert_numerically_equal(
    variables: list[sympy.Symbol], left: sympy.Expr, right: sympy.Expr
) -> None:
    grid = np.meshgrid(*(POINTS + shift for shift in np.linspace(0, 0.2, len(variables))))
    with np.errstate(all="ignore"):
        expected = np.broadcast_to(sympy.lambdify(variables, right, "numpy")(*grid), grid[0].shape)
        actual = np.broadcast_to(sympy.lambdify(variables, left, "numpy")(*grid), grid[0].shape)
    assume(np.all(np.isfinite(expected)))
    np.testing.assert_allclose(actual, expected, rtol=1e-8, atol=1e-10)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, len(MENU) - 1), min_size=1, max_size=4))
def test_random_chain_path_product_is_the_derivative(choices: list[int]) -> None:
    definitions: dict[str, sympy.Expr] = {}
    previous = x
    for depth, choice in enumerate(choices, start=1):
        definitions[f"u{depth}"] = MENU[choice](previous)
        previous = symbol(f"u{depth}")
    chain = Chain(["x"], definitions)
    derivative = chain.derivative(str(previous), "x")
    (path,) = derivative.paths
    assert len(path.links) == len(choices)
    expected = sympy.diff(chain.expand(str(previous)), x)
    assert_numerically_equal([x], path.term, expected)
    assert_numerically_equal([x], derivative.value, expected)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(MENU) - 1),
            st.integers(0, len(MENU) - 1),
            st.booleans(),
            st.integers(0, 9),
            st.integers(0, 9),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_random_graph_paths_sum_to_the_total_derivative(
    nodes: list[tuple[int, int, bool, int, int]],
) -> None:
    names = [s, t]
    definitions: dict[str, sympy.Expr] = {}
    for index, (first, second, multiply, left, right) in enumerate(nodes):
        one, other = MENU[first](names[left % len(names)]), MENU[second](names[right % len(names)])
        definitions[f"n{index}"] = one * other if multiply else one + other
        names.append(symbol(f"n{index}"))
    chain = Chain(["s", "t"], definitions)
    last = str(names[-1])
    for variable in ("s", "t"):
        derivative = chain.derivative(last, variable)
        expected = sympy.diff(chain.expand(last), symbol(variable))
        total = sum((path.term for path in derivative.paths), sympy.S.Zero)
        assert_numerically_equal([s, t], total, expected)
        assert_numerically_equal([s, t], derivative.value, expected)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, len(MENU) - 1), min_size=1, max_size=4), st.integers(1, 3))
def test_random_composite_peels_into_a_chain_rule_step(choices: list[int], scale: int) -> None:
    expr: sympy.Expr = x
    for choice in choices:
        expr = MENU[choice](expr)
    expr = scale * expr
    while (step := peel(expr, x)) is not None:
        assert step.outer.xreplace({step.placeholder: step.inner}) == expr
        product = step.outer_derivative.xreplace({step.placeholder: step.inner})
        assert_numerically_equal([x], product * step.inner_derivative, sympy.diff(expr, x))
        expr = step.inner


def test_upstream_lists_a_name_and_every_definition_it_is_computed_from() -> None:
    x = symbol("x")
    u, v = symbol("u"), symbol("v")
    chain = Chain(["x", "t"], {"u": sympy.sqrt(x), "v": u**4, "y": sympy.log(u) + v, "z": x**2})
    assert set(chain.upstream("y")) == {"y", "u", "v"}
    assert chain.upstream("z") == ("z",)
    assert chain.upstream("x") == ()
    assert chain.expand("v") == x**2, "sympy simplifies sqrt(x)^4: only upstream still shows the root"
    with pytest.raises(ValueError):
        chain.upstream("nope")
