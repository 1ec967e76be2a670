"""Worked solutions through the real CLI: `grade show ID --solution` and `grade submit --explain`.

Expressions are read back from the printed lines with the grader's own parser and compared
with sympy, so the tests pin the mathematics of each step, not its typography.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sympy
import yaml

from grader.parse import parse_expression
from reference.chain import symbol

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mistakes"
CLI = [sys.executable, str(ROOT / "cli.py")]
x, t, u, v = (symbol(name) for name in "xtuv")


def _run(*args: str) -> str:
    run = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def _math(text: str, *names: str) -> sympy.Expr:
    """A printed expression, read by the student parser (· is the printed product)."""
    return parse_expression(text.replace("·", "*").strip(), {name: symbol(name) for name in names})


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    return sympy.simplify(a - b) == 0


def _line(lines: list[str], start: str) -> str:
    found = [line.strip() for line in lines if line.strip().startswith(start)]
    assert len(found) == 1, f"expected one line starting {start!r} in {lines}"
    return found[0]


def _value(lines: list[str], start: str, *names: str) -> sympy.Expr:
    """The expression after the last '=' of the line starting with `start`."""
    return _math(_line(lines, start).rsplit("=", 1)[1], *names)


def _shown_solutions(output: str) -> dict[str, list[str]]:
    """`grade show --solution` output: the worked lines of each part, by part id."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.split("Worked solution", 1)[1].splitlines():
        if line.startswith("(") and line.endswith(")"):
            current = sections.setdefault(line[1:-1], [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return sections


def _check_worked_example(lines: list[str]) -> None:
    """y = (x^2 + 1)^3: outer 3u^2, inner 2x, their product, and 6x(x^2 + 1)^2 after substituting u."""
    assert _same(_value(lines, "1. Outer derivative", "u"), 3 * u**2)
    assert _same(_value(lines, "2. Inner derivative", "x"), 2 * x)
    assert _same(_value(lines, "3. Product", "u", "x"), 3 * u**2 * 2 * x)
    substitute = _line(lines, "4. Substitute back")
    assignment = substitute.removeprefix("4. Substitute back").split(":", 1)[0]
    name, inner = assignment.split("=")
    assert (name.strip(), _same(_math(inner, "x"), x**2 + 1)) == ("u", True)
    assert _same(_value(lines, "4. Substitute back", "x"), 6 * x * (x**2 + 1) ** 2)
    assert [line.split(".", 1)[0] for line in lines if line[:1].isdigit()] == ["1", "2", "3", "4"]


def test_show_solution_of_the_worked_example_has_the_four_steps() -> None:
    _check_worked_example(_shown_solutions(_run("show", "power-of-quadratic", "--solution"))["dydx"])


def test_submit_explain_attaches_the_solution_to_wrong_parts_only(tmp_path: Path) -> None:
    answers = tmp_path / "answers.yaml"
    answers.write_text(yaml.safe_dump({"answers": {"power-of-quadratic": {
        "dydu": "3u^2", "dudx": "2x", "dydx": "3(x^2+1)^2"}}}), encoding="utf-8")
    report = json.loads(_run("submit", str(answers), "--only", "power-of-quadratic", "--explain", "--format", "json"))
    parts = {p["id"]: p for p in report["exercises"][0]["parts"]}
    assert parts["dydx"]["status"] == "incorrect"
    _check_worked_example(parts["dydx"]["solution"])
    assert parts["dydu"].get("solution") is None and parts["dudx"].get("solution") is None
    text = _run("submit", str(answers), "--only", "power-of-quadratic", "--explain")
    assert "worked solution:" in text and "1. Outer derivative" in text


@pytest.fixture(scope="module")
def explained(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    """Wrong answers to fixture exercises of every kind, graded once with --explain."""
    wrong = {"sine-of-square": {"forgot": "cos(x^2)"}, "cube-of-log": {"outer": "3v^2"},
             "three-paths": {"only-x": "4x"}, "values": {"slope": 12}, "no-solution": {"dydx": "3(x^2+1)^2"},
             "gradient": {"one-forgot": ["e^(xy)", "x e^(xy)"]}}
    answers = tmp_path_factory.mktemp("explain") / "answers.yaml"
    answers.write_text(yaml.safe_dump({"answers": wrong}), encoding="utf-8")
    report = json.loads(_run("submit", str(answers), "--exercises", str(FIXTURES / "bank"), "--answered",
                             "--explain", "--format", "json"))
    return {(e["id"], p["id"]): p for e in report["exercises"] for p in e["parts"]}


def test_one_line_composite_is_peeled_into_outer_and_inner(explained: dict) -> None:
    lines = explained[("sine-of-square", "forgot")]["solution"]
    assert "y = sin(u), u = x^2" in _line(lines, "Read it as a chain")
    assert _same(_value(lines, "1. Outer derivative", "u"), sympy.cos(u))
    assert _same(_value(lines, "2. Inner derivative", "x"), 2 * x)
    assert _same(_value(lines, "4. Substitute back", "x"), 2 * x * sympy.cos(x**2))


def test_longer_chain_lists_every_inner_link(explained: dict) -> None:
    lines = explained[("cube-of-log", "outer")]["solution"]
    inner = _line(lines, "2. Inner derivatives, link by link").split(":", 1)[1]
    links = {label.strip(): _math(expr, "u", "x") for label, expr in (item.split("=") for item in inner.split(";"))}
    assert set(links) == {"dv/du", "du/dx"}
    assert _same(links["dv/du"], 1 / u) and _same(links["du/dx"], 2 * x)
    assert _same(_value(lines, "3. Product", "u", "v", "x"), 3 * v**2 / u * 2 * x)
    assert _same(_value(lines, "4. Substitute back", "x"), 6 * x * sympy.log(x**2 + 1) ** 2 / (x**2 + 1))


def test_total_derivative_shows_each_path_and_their_sum(explained: dict) -> None:
    lines = explained[("three-paths", "only-x")]["solution"]
    names = ("x", "y", "z", "t")
    paths = {line.split(":")[0].strip(): _math(line.rsplit("=", 1)[1], *names) for line in lines if "→" in line}
    assert set(paths) == {"w → x → t", "w → y → t", "w → z → t"}
    y, z, x_ = symbol("y"), symbol("z"), symbol("x")
    assert _same(paths["w → x → t"], 2 * x_ * 2)
    assert _same(paths["w → y → t"], z * sympy.exp(t))
    assert _same(paths["w → z → t"], -y * sympy.sin(t))
    assert _same(_value(lines, "Sum:", *names), sum(paths.values()))
    w = (2 * t) ** 2 + sympy.exp(t) * sympy.cos(t)
    assert _same(_value(lines, "Substitute back", "t"), sympy.diff(w, t))


def test_value_part_ends_with_the_number(explained: dict) -> None:
    lines = explained[("values", "slope")]["solution"]
    assert _same(_value(lines, "4. Substitute back", "x"), 6 * x * (x**2 + 1) ** 2)
    assert _line(lines, "At x = 1").endswith("24 ≈ 24")


def test_gradient_labels_each_component(explained: dict) -> None:
    lines = explained[("gradient", "one-forgot")]["solution"]
    assert [line for line in lines if line.endswith(":") and "/" in line] == ["∂f/∂x:", "∂f/∂y:"]


def test_solution_false_hides_the_worked_solution(explained: dict) -> None:
    assert explained[("no-solution", "dydx")]["status"] == "incorrect"
    assert explained[("no-solution", "dydx")].get("solution") is None
    shown = _run("show", "no-solution", "--solution", "--exercises", str(FIXTURES / "bank"))
    assert "turned off" in shown and "Outer derivative" not in shown


def test_backprop_solution_goes_layer_by_layer_from_the_loss_down() -> None:
    lines = _shown_solutions(_run("show", "three-layers", "--solution", "--exercises", str(FIXTURES / "networks")))
    steps = lines["no-sigmoid-derivative"]
    assert _line(steps, "Forward:") == ("Forward: z1 = x @ W1 + b1, h1 = tanh(z1), z2 = h1 @ W2 + b2, "
                                        "h2 = sigmoid(z2), z3 = h2 @ W3 + b3")
    gradients = [line.split(" = ")[0] for line in steps if line.startswith("dL/dW") or line.startswith("dL/db")]
    assert gradients == ["dL/dW3", "dL/db3", "dL/dW2", "dL/db2", "dL/dW1", "dL/db1"]
    assert _line(steps, "dL/dW2") == "dL/dW2 = h1^T @ delta2"
    assert "sigmoid'(z2)" in _line(steps, "delta2 =") and "tanh'(z1)" in _line(steps, "delta1 =")


def test_update_solution_ends_with_the_step() -> None:
    lines = _shown_solutions(_run("show", "network-step", "--solution", "--exercises", str(FIXTURES / "networks")))
    assert lines["uphill"][-1] == "Then step every parameter: P ← P - 0.1 · dL/dP"


def test_a_variable_differentiated_by_itself_is_one() -> None:
    lines = _shown_solutions(_run("show", "two-paths", "--solution", "--exercises", str(FIXTURES / "bank")))
    assert lines["dtdt"] == ["dt/dt = 1"]


def test_a_product_is_worked_with_the_product_rule_and_the_chain_rule_inside_its_factor() -> None:
    lines = _shown_solutions(_run("show", "product-rule", "--student", "alice", "--solution"))["dydx"]
    rule = _line(lines, "Product rule for x^2*e^(2*x)")
    terms = rule.split(":", 1)[1].strip().removeprefix("[").removesuffix("]")
    assert _same(_math(terms, "x"), 2 * x * sympy.exp(2 * x) + 2 * x**2 * sympy.exp(2 * x))
    assert _same(_value(lines, "Chain rule inside e^(2*x)", "x"), 2 * sympy.exp(2 * x))
    assert _same(_value(lines, "So dy/dx", "x"), (2 * x + 2 * x**2) * sympy.exp(2 * x))
