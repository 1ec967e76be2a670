"""User-facing failures. Each is a value the user can act on, rendered once at the CLI boundary."""
from __future__ import annotations


class GraderError(Exception):
    """Base of every failure the user can fix; the CLI prints it and exits 2."""


class InputError(GraderError):
    """A file the user gave us is wrong. Carries FILE:LINE so an editor can jump there."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None):
        self.message = message
        self.file = file
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.file is None:
            return self.message
        if self.line is None:
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}: {self.message}"


class MathSyntaxError(GraderError):
    """Math text we refuse to read; `position` is the 0-based offset of the offending character."""

    def __init__(self, message: str, text: str = "", position: int | None = None):
        self.message = message
        self.text = text
        self.position = position
        super().__init__(message)

    def __str__(self) -> str:
        if self.position is None:
            return self.message
        return f"{self.message} (at character {self.position + 1})"


class BudgetExceeded(GraderError):
    """A check ran past its time budget and was stopped."""


class InvalidFiles(GraderError):
    """Several problems found at once (validation reports every problem, not only the first)."""

    def __init__(self, problems: list[InputError]):
        self.problems = problems
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)
