"""Known mistakes, named through the real CLI on small exercise files.

tests/fixtures/mistakes/bank holds expression, value and vector exercises whose parts all
ask the same derivative, so one submission can answer each part with a different mistake.
tests/fixtures/mistakes/networks holds backprop exercises whose parts each call a different
planted bug from tests/fixtures/mistakes/solutions/<exercise-id>.py. One `grade submit` per
folder grades every case (module-scoped fixtures); each case is then its own test.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from grader.models import MISTAKE_IDS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "mistakes"
CLI = [sys.executable, str(ROOT / "cli.py")]


@dataclass(frozen=True)
class Case:
    """One answer to one part, the mistake it must be named as (None: no mistake), and words the feedback must say."""

    exercise: str
    part: str
    answer: Any
    mistake: str | None
    says: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.exercise}/{self.part}"


WRONG = [
    # one-line composite y = sin(x^2)
    Case("sine-of-square", "forgot", "cos(x^2)", "forgot-inner-derivative",
         ("You differentiated sin(u) (with u = x^2) but did not multiply by du/dx = 2*x",)),
    Case("sine-of-square", "inside", "cos(2x)", "derivative-inside", ("at u = 2*x instead of at u = x^2",)),
    Case("sine-of-square", "product", "2x cos(x)", "product-of-derivatives", ("cos(u) at x instead of at u = x^2",)),
    Case("sine-of-square", "sign", "-2x cos(x^2)", "sign-error"),
    Case("sine-of-square", "half", "x cos(x^2)", "constant-factor", ("1/2 times the right one",)),
    Case("sine-of-square", "double", "4x cos(x^2)", "constant-factor", ("2 times the right one",)),
    Case("sine-of-square", "random", "x^3 + 1", None),
    Case("sine-of-square", "credit", "cos(x^2)", "forgot-inner-derivative"),
    Case("sine-of-square", "credit-other-mistake", "-2x cos(x^2)", "sign-error"),
    # a linear inside: forgetting its derivative is also 1/3 of the right answer; the specific mistake wins
    Case("linear-inside", "one-line", "cos(3x)", "forgot-inner-derivative", ("did not multiply by dv/dx = 3",)),
    Case("linear-inside", "linked", "cos(3x)", "forgot-inner-derivative", ("did not multiply by du/dx = 3",)),
    # depth 3 on one line: y = e^(sin(x^2))
    Case("exp-sin-square", "outer", "e^(sin(x^2))", "forgot-inner-derivative",
         ("You differentiated e^u (with u = sin(x^2))", "du/dx = 2*x*cos(x^2)")),
    Case("exp-sin-square", "middle", "2x e^(sin(x^2))", "forgot-inner-derivative", ("did not multiply by du/dv = cos(v)",)),
    Case("exp-sin-square", "deeper", "cos(x^2) e^(sin(x^2))", "forgot-inner-derivative",
         ("You differentiated sin(v) (with v = x^2) but did not multiply by dv/dx = 2*x",)),
    Case("exp-sin-square", "inside-deeper", "e^(sin(x^2)) cos(2x)", "derivative-inside", ("at v = 2*x instead of at v = x^2",)),
    # depth 3 link by link: u = x^2 + 1, v = ln(u), y = v^3
    Case("cube-of-log", "outer", "3v^2", "forgot-inner-derivative",
         ("You differentiated v^3 (with v = ln(x^2 + 1))", "dv/dx = 2*x/(x^2 + 1)")),
    Case("cube-of-log", "middle", "3v^2 * 2x", "forgot-inner-derivative", ("did not multiply by dv/du = 1/u",)),
    Case("cube-of-log", "deeper", "3v^2/u", "forgot-inner-derivative",
         ("You differentiated ln(u) (with u = x^2 + 1) but did not multiply by du/dx = 2*x",)),
    Case("cube-of-log", "inside", "3 (2x/(x^2+1))^2", "derivative-inside"),
    Case("cube-of-log", "product", "3x^2 * 2x/(x^2+1)", "product-of-derivatives"),
    Case("cube-of-log", "sign", "-6x v^2/u", "sign-error"),
    Case("cube-of-log", "third", "2x v^2/u", "constant-factor", ("1/3 times the right one",)),
    # total derivatives
    Case("two-paths", "without-y", "2t y", "missing-path",
         ("Your dz/dt has the path through x but not the path through y: ∂z/∂y · dy/dt",)),
    Case("two-paths", "without-x", "x cos t", "missing-path", ("not the path through x: ∂z/∂x · dx/dt",)),
    Case("two-paths", "forgot", "y + x cos(t)", "forgot-inner-derivative", ("did not multiply by dx/dt = 2*t",)),
    Case("two-paths", "sign", "-2t y - x cos(t)", "sign-error"),
    Case("three-paths", "without-z", "4x + z e^t", "missing-path",
         ("has the path through x and the path through y but not the path through z: ∂w/∂z · dz/dt",)),
    Case("three-paths", "only-x", "4x", "missing-path", ("not the path through y (∂w/∂y · dy/dt) or the path through z",)),
    Case("direct-dependence", "partial", "x", "partial-for-total", ("only the direct partial ∂z/∂t",)),
    Case("direct-dependence", "without-direct", "2t^2", "missing-path", ("not the direct term ∂z/∂t",)),
    # values: a slope at a point, a gradient-descent step
    Case("values", "slope", -24, "sign-error"),
    Case("values", "slope-forgot", 12, "forgot-inner-derivative", ("did not multiply by du/dx = 2*x",)),
    Case("values", "step", 0.6, "sign-error", ("stepped uphill",)),
    Case("values", "step-forgot", 1.2, "forgot-inner-derivative", ("did not multiply by dr/dw = 2",)),
    # products: y = x^2 e^(3x), z = x cos(x) + x^2
    Case("product", "without-power-term", "3x^2 e^(3x)", "product-rule-missing-term",
         ("In x^2*e^(3*x), you left out the product rule's term where x^2 is differentiated, 2*x*e^(3*x)",)),
    Case("product", "without-exp-term", "2x e^(3x)", "product-rule-missing-term",
         ("the product rule's term where e^(3*x) is differentiated, 3*x^2*e^(3*x)",)),
    Case("product", "multiplied", "6x e^(3x)", "product-rule-multiplied",
         ("You multiplied the derivatives of the factors of x^2*e^(3*x), 2*x and 3*e^(3*x)",)),
    Case("product", "forgot-inside-factor", "(x^2 + 2x) e^(3x)", "forgot-inner-derivative",
         ("In the factor e^(3*x) of x^2*e^(3*x), you differentiated e^u (with u = 3*x) but did not multiply by du/dx = 3",)),
    Case("product", "in-a-sum", "cos(x) + 2x", "product-rule-missing-term",
         ("In x*cos(x), you left out the product rule's term where cos(x) is differentiated",)),
    # a gradient, component by component
    Case("gradient", "one-forgot", ["e^(xy)", "x e^(xy)"], "forgot-inner-derivative",
         ("1 of 2 components are wrong", "∂f/∂x: You differentiated e^u", "∂u/∂x = y")),
    Case("gradient", "both-signs", ["-y e^(xy)", "-x e^(xy)"], "sign-error"),
]

RIGHT = [
    Case("sine-of-square", "right", "2x cos(x^2)", None),
    Case("two-paths", "right", "2t y + x cos(t)", None),
    Case("product", "right", "(3x^2 + 2x) e^(3x)", None),
]


def _submit(answers: Path, exercises: Path) -> dict[tuple[str, str], dict]:
    """One `grade submit --format json` run: every part of the report by (exercise, part)."""
    run = subprocess.run([*CLI, "submit", str(answers), "--exercises", str(exercises), "--answered", "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    return {(e["id"], p["id"]): p for e in report["exercises"] for p in e["parts"]}


@pytest.fixture(scope="module")
def answered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    """The expression, value and vector cases, answered in one submission."""
    answers: dict[str, dict[str, Any]] = {}
    for case in WRONG + RIGHT:
        answers.setdefault(case.exercise, {})[case.part] = case.answer
    path = tmp_path_factory.mktemp("answers") / "answers.yaml"
    path.write_text(yaml.safe_dump({"answers": answers}, allow_unicode=True), encoding="utf-8")
    return _submit(path, FIXTURES / "bank")


@pytest.mark.parametrize("case", WRONG, ids=lambda c: c.name)
def test_wrong_answer_names_its_mistake(answered: dict, case: Case) -> None:
    part = answered[(case.exercise, case.part)]
    assert part["status"] == "incorrect"
    assert part.get("mistake") == case.mistake, part["feedback"]
    for words in case.says:
        assert words in part["feedback"]


@pytest.mark.parametrize("case", RIGHT, ids=lambda c: c.name)
def test_right_answer_gets_full_points_and_no_mistake(answered: dict, case: Case) -> None:
    part = answered[(case.exercise, case.part)]
    assert (part["status"], part.get("mistake"), part["score"]) == ("correct", None, part["max_score"])


def test_partial_credit_goes_to_the_named_mistake_only(answered: dict) -> None:
    credited = answered[("sine-of-square", "credit")]
    other = answered[("sine-of-square", "credit-other-mistake")]
    assert (credited["score"], credited["max_score"]) == (1.0, 2.0)
    assert (other["score"], other["max_score"]) == (0.0, 2.0)


def test_gradient_credit_counts_right_components(answered: dict) -> None:
    assert answered[("gradient", "one-forgot")]["score"] == 0.5
    assert answered[("gradient", "both-signs")]["score"] == 0.0


def test_unexplained_answers_get_no_mistake_words(answered: dict) -> None:
    feedback = answered[("sine-of-square", "random")]["feedback"]
    assert "You differentiated" not in feedback and "times the right one" not in feedback


@dataclass(frozen=True)
class Bug:
    """A planted bug: the part calling it, its mistake, and exactly the gradients it breaks."""

    exercise: str
    part: str
    mistake: str | None
    broken: frozenset[str]
    says: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.exercise}/{self.part}"


HIDDEN = frozenset({"W1", "b1"})
EVERY = frozenset({"W1", "b1", "W2", "b2"})

BUGS = [
    Bug("sigmoid-mse", "no-sigmoid-derivative", "missing-activation-derivative", HIDDEN,
        ("dW1, db1: you backpropagated through h1 = sigmoid(z1) without multiplying by sigmoid'(z1)",)),
    Bug("sigmoid-mse", "sigmoid-as-derivative", "wrong-activation-derivative", HIDDEN, ("s(z) instead of s(z)(1 - s(z))",)),
    Bug("sigmoid-mse", "transposed-w1", "transposed-gradient", frozenset({"W1"}),
        ("dW1 is transposed: expected shape (3, 4), got (4, 3)",)),
    Bug("sigmoid-mse", "pre-activation-w2", "wrong-layer-input", frozenset({"W2"}),
        ("dW2 was computed from z1 (the pre-activation) instead of h1",)),
    Bug("sigmoid-mse", "input-for-w2", "wrong-layer-input", frozenset({"W2"}), ("dW2 was computed from x instead of h1",)),
    Bug("sigmoid-mse", "unsummed-b2", "bias-not-summed", frozenset({"b2"}), ("db2 has one row per example, shape (5, 2)",)),
    Bug("sigmoid-mse", "averaged-b1", "bias-not-summed", frozenset({"b1"}), ("db1 is averaged over the batch",)),
    Bug("sigmoid-mse", "b1-over-units", "bias-not-summed", frozenset({"b1"}), ("db1 is summed over the wrong axis (shape (5,))",)),
    Bug("sigmoid-mse", "w1-mean-twice", "constant-factor", frozenset({"W1"}), ("dW1 is 1/5 times the right one",)),
    Bug("sigmoid-mse", "no-mean", "missing-batch-mean", EVERY, ("10 times too large",)),
    Bug("sigmoid-mse", "batch-only-mean", "missing-batch-mean", EVERY, ("2 times too large: you divided by the batch size B = 5",)),
    Bug("sigmoid-mse", "outputs-only-mean", "missing-batch-mean", EVERY, ("5 times too large: the 1/B of the batch mean is missing",)),
    Bug("sigmoid-mse", "no-factor-2", "mse-missing-factor-2", EVERY),
    Bug("sigmoid-mse", "target-minus-output", "sign-error", EVERY),
    Bug("sigmoid-mse", "noise", None, frozenset({"W1"})),
    Bug("relu-softmax", "no-onehot", "softmax-missing-onehot", EVERY),
    Bug("relu-softmax", "no-mean", "missing-batch-mean", EVERY, ("6 times too large",)),
    Bug("relu-softmax", "relu-as-derivative", "wrong-activation-derivative", HIDDEN, ("relu(z) instead of the step",)),
    Bug("relu-softmax", "no-relu-derivative", "missing-activation-derivative", HIDDEN),
    Bug("square-tanh", "transposed-w2", "transposed-gradient", frozenset({"W2"}), ("W2 is square",)),
    Bug("square-tanh", "one-minus-z-squared", "wrong-activation-derivative", HIDDEN, ("1 - z^2 instead of 1 - tanh(z)^2",)),
    Bug("three-layers", "no-sigmoid-derivative", "missing-activation-derivative", EVERY,
        ("through h2 = sigmoid(z2) without multiplying by sigmoid'(z2)",)),
    Bug("three-layers", "no-tanh-derivative", "missing-activation-derivative", HIDDEN, ("through h1 = tanh(z1)",)),
    Bug("three-layers", "pre-activation-w3", "wrong-layer-input", frozenset({"W3"}), ("dW3 was computed from z2",)),
    Bug("network-step", "uphill", "sign-error", EVERY, ("W1, b1, W2, b2: you stepped uphill",)),
    Bug("network-step", "no-sigmoid-derivative", "missing-activation-derivative", HIDDEN),
]


@pytest.fixture(scope="module")
def planted() -> dict[tuple[str, str], dict]:
    """Every planted bug, graded in one submission (code from solutions/<exercise-id>.py)."""
    return _submit(FIXTURES / "solutions" / "answers.yaml", FIXTURES / "networks")


@pytest.mark.parametrize("bug", BUGS, ids=lambda b: b.name)
def test_planted_bug_names_its_mistake_and_the_gradients_it_breaks(planted: dict, bug: Bug) -> None:
    part = planted[(bug.exercise, bug.part)]
    assert part["status"] == "incorrect"
    assert part.get("mistake") == bug.mistake, part["feedback"]
    assert {name for name, verdict in part["gradients"].items() if verdict != "correct"} == bug.broken
    for words in bug.says:
        assert words in part["feedback"]


def test_right_backprop_gets_no_mistake(planted: dict) -> None:
    part = planted[("sigmoid-mse", "right")]
    assert (part["status"], part.get("mistake")) == ("correct", None)
    assert set(part["gradients"].values()) == {"correct"}


def test_every_catalogue_mistake_is_exercised() -> None:
    named = {c.mistake for c in WRONG} | {b.mistake for b in BUGS}
    assert named - {None} == set(MISTAKE_IDS)


def test_fixture_question_tests_pass_validate() -> None:
    """validate compiles every test's variant afresh, so it also checks that cached candidates never go stale."""
    run = subprocess.run([*CLI, "validate", str(FIXTURES / "bank")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 problems, 0 warnings" in run.stdout
