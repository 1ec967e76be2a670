"""Pydantic models of what users write: exercise files and submissions.

These models check shape only (fields, types, ranges). Whether the math in them
makes sense (names defined, no cycles, references computable) is checked when an
exercise is compiled against the reference (`grader/compile.py`).
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

Id = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=80)]
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=40)]
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=60)]
Number = Union[int, float]

KINDS = ("composite", "total", "gradient", "backprop", "update")
ANSWER_TYPES = ("expression", "value", "vector", "matrix", "function", "backprop")
CODE_ANSWERS = ("function", "backprop")
MISTAKE_IDS = (
    "forgot-inner-derivative",
    "derivative-inside",
    "product-of-derivatives",
    "missing-path",
    "partial-for-total",
    "sign-error",
    "constant-factor",
    "missing-activation-derivative",
    "wrong-activation-derivative",
    "transposed-gradient",
    "wrong-layer-input",
    "bias-not-summed",
    "missing-batch-mean",
    "mse-missing-factor-2",
    "softmax-missing-onehot",
    "product-rule-missing-term",
    "product-rule-multiplied",
)
MistakeId = Literal[MISTAKE_IDS]  # type: ignore[valid-type]


class LocatedError(ValueError):
    """A check over the whole exercise that knows which entry is wrong, so the message gets that entry's line."""

    def __init__(self, message: str, loc: tuple[str | int, ...]):
        super().__init__(message)
        self.loc = loc


class Strict(BaseModel):
    """Unknown keys are mistakes (a typo such as `pionts` must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ParamSpec(Strict):
    """One randomized parameter: exactly one of `choices`, `integers`, `decimals`."""

    choices: list[Number] | None = Field(None, min_length=1, description="Pick one of these values.")
    integers: tuple[int, int] | None = Field(None, description="Inclusive range [low, high] of integers.")
    exclude: list[int] = Field(default_factory=list, description="Integers never drawn (with `integers`).")
    decimals: tuple[float, float] | None = Field(None, description="Inclusive range [low, high] of decimals.")
    places: int = Field(1, ge=0, le=6, description="Decimal places of a `decimals` draw.")

    @model_validator(mode="after")
    def _one_kind(self) -> "ParamSpec":
        given = [k for k in ("choices", "integers", "decimals") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a param needs exactly one of `choices`, `integers`, `decimals`")
        for key in ("integers", "decimals"):
            bounds = getattr(self, key)
            if bounds is not None and bounds[0] > bounds[1]:
                raise ValueError(f"`{key}` range is reversed: {bounds[0]} > {bounds[1]}")
        if self.integers is not None:
            low, high = self.integers
            if high - low + 1 <= len(set(self.exclude) & set(range(low, high + 1))):
                raise ValueError("`exclude` removes every integer of the range")
        return self


class DerivativeSpec(Strict):
    """The reference is a derivative computed by reference/chain.py."""

    of: Name | list[Name] = Field(description="A defined name (or a list of names, for a Jacobian matrix).")
    wrt: Name | list[Name] = Field(description="A free variable (total derivative), a defined name (partial), or a list (gradient).")
    at: dict[Name, Number | str] | None = Field(None, description="Evaluate the derivative at this point (with `answer: value`).")


class StepSpec(Strict):
    """A scalar gradient-descent step: param - lr * d(of)/d(param), evaluated at `at`."""

    of: Name = Field(description="The loss: a defined name.")
    param: Name = Field(description="The variable being updated.")
    lr: float = Field(gt=0, description="Learning rate.")
    at: dict[Name, Number | str] = Field(description="Values of every variable.")


class UpdateSpec(Strict):
    """A network step answered as code: the entry returns the updated params."""

    lr: float = Field(gt=0, description="Learning rate of the step params - lr * grads.")


class Part(Strict):
    id: Id
    prompt: str = ""
    points: float = Field(1.0, gt=0, le=1000)
    answer: Literal[ANSWER_TYPES] = "expression"  # type: ignore[valid-type]
    derivative: DerivativeSpec | None = None
    expected: str | list[str] | list[list[str]] | None = Field(
        None, description="An explicit reference in math notation (instead of `derivative`)."
    )
    step: StepSpec | None = None
    update: UpdateSpec | None = None
    allow: list[Name] | None = Field(None, description="Names the answer may use (default: the variables).")
    tolerance: float | None = Field(None, gt=0, lt=1, description="Relative tolerance of a value answer.")
    entry: Identifier | None = Field(None, description="Function name in solution.py for code answers.")
    partial: dict[MistakeId, float] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="Partial credit (0..1) for an answer explained by a known mistake."
    )

    @field_validator("partial")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for key, fraction in value.items():
            if not 0 <= fraction <= 1:
                raise ValueError(f"partial credit for {key} must be between 0 and 1")
        return value

    @model_validator(mode="after")
    def _one_reference(self) -> "Part":
        if self.answer == "backprop":
            if self.derivative or self.expected or self.step:
                raise ValueError("a backprop part takes its reference from `network`, not derivative/expected/step")
        else:
            given = [k for k in ("derivative", "expected", "step") if getattr(self, k) is not None]
            if len(given) != 1:
                raise ValueError("a part needs exactly one of `derivative`, `expected`, `step`")
            if self.update is not None:
                raise ValueError("`update` belongs to `answer: backprop` parts")
        if self.answer in CODE_ANSWERS and self.entry is None:
            raise ValueError(f"`answer: {self.answer}` needs `entry`, the function name in solution.py")
        if self.answer not in CODE_ANSWERS and self.entry is not None:
            raise ValueError("`entry` is only for `answer: function` or `answer: backprop`")
        if self.step is not None and self.answer != "value":
            raise ValueError("a `step` part is answered as `answer: value`")
        if self.derivative is not None and self.derivative.at is not None and self.answer != "value":
            raise ValueError("`derivative.at` needs `answer: value`")
        return self


class Layer(Strict):
    linear: int | None = Field(None, ge=1, le=64)
    activation: Literal["sigmoid", "tanh", "relu", "identity", "softplus"] | None = None

    @model_validator(mode="after")
    def _one(self) -> "Layer":
        if (self.linear is None) == (self.activation is None):
            raise ValueError("a layer is either {linear: N} or {activation: NAME}")
        return self


class NetworkSpec(Strict):
    inputs: int = Field(ge=1, le=64)
    layers: list[Layer] = Field(min_length=1)
    loss: Literal["mse", "softmax_cross_entropy"]
    batch: int = Field(4, ge=1, le=256)

    @model_validator(mode="after")
    def _has_linear(self) -> "NetworkSpec":
        if not any(layer.linear for layer in self.layers):
            raise ValueError("a network needs at least one linear layer")
        return self


class QuestionTest(Strict):
    """A question test run by `grade validate`: this answer must get this verdict."""

    part: Id
    answer: str | float | int | list | None = None
    code: str | None = Field(None, description="Python source of a solution, for code parts.")
    expect: Literal["correct", "incorrect", "invalid", "error", "timeout"]
    mistake: MistakeId | None = None  # type: ignore[valid-type]
    student: str | None = Field(None, description="Variant to test (default: several).")

    @model_validator(mode="after")
    def _one_answer(self) -> "QuestionTest":
        if (self.answer is None) == (self.code is None):
            raise ValueError("a test gives exactly one of `answer` or `code`")
        return self


class Exercise(Strict):
    id: Id
    title: str = Field(min_length=1, max_length=200)
    kind: Literal[KINDS]  # type: ignore[valid-type]
    tags: list[str] = Field(default_factory=list)
    variables: list[Name] = Field(default_factory=list)
    params: dict[Name, ParamSpec] = Field(default_factory=dict)
    define: dict[Name, str] = Field(default_factory=dict)
    network: NetworkSpec | None = None
    prompt: str = ""
    solution: bool = Field(True, description="Whether worked solutions may be shown.")
    parts: list[Part] = Field(min_length=1)
    tests: list[QuestionTest] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> "Exercise":
        seen: set[str] = set()
        for index, part in enumerate(self.parts):
            if part.id in seen:
                raise LocatedError(f"duplicate part id '{part.id}'", ("parts", index, "id"))
            seen.add(part.id)
        names = [*self.variables, *self.params, *self.define]
        clash = sorted({n for n in names if names.count(n) > 1})
        if clash:
            where: tuple[str, ...] = ("variables",)
            for section in ("params", "define"):  # point at the later of the two uses
                if clash[0] in getattr(self, section):
                    where = (section, clash[0])
            raise LocatedError(f"names used twice among variables, params and define: {', '.join(clash)}", where)
        for index, test in enumerate(self.tests):
            if test.part not in seen:
                raise LocatedError(f"test names part '{test.part}', which this exercise does not have", ("tests", index, "part"))
        for index, part in enumerate(self.parts):
            if part.answer == "backprop" and self.network is None:
                raise LocatedError("`answer: backprop` parts need a `network`", ("parts", index, "answer"))
        if self.kind in ("composite", "total", "gradient") and not self.variables:
            raise LocatedError(f"a {self.kind} exercise needs `variables`", ("kind",))
        return self

    @property
    def points(self) -> float:
        return sum(part.points for part in self.parts)


class Submission(Strict):
    """A student's answers.yaml."""

    student: str | None = Field(None, max_length=200)
    code: str | None = Field(None, description="Path of the code file, relative to answers.yaml.")
    answers: dict[str, dict[str, str | float | int | list | None] | None] = Field(default_factory=dict)
