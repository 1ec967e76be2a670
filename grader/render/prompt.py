"""`grade show`: an exercise's prompt for one student's variant, with LaTeX made readable in a terminal."""
from __future__ import annotations

import re

from typing import TYPE_CHECKING

from grader.index import Summary
from grader.variants import Value, draw, format_value

if TYPE_CHECKING:
    from grader.bank import Entry

_COMMANDS = {
    r"\cdot": "·", r"\times": "×", r"\partial": "∂", r"\to": "→", r"\rightarrow": "→", r"\leftarrow": "←",
    r"\sin": "sin", r"\cos": "cos", r"\tan": "tan", r"\sec": "sec", r"\csc": "csc", r"\cot": "cot",
    r"\arcsin": "arcsin", r"\arccos": "arccos", r"\arctan": "arctan", r"\sinh": "sinh", r"\cosh": "cosh",
    r"\tanh": "tanh", r"\ln": "ln", r"\log": "log", r"\exp": "exp", r"\pi": "π", r"\theta": "θ",
    r"\alpha": "α", r"\beta": "β", r"\sigma": "σ", r"\eta": "η", r"\lambda": "λ", r"\nabla": "∇",
    r"\mathcal{L}": "L", r"\top": "ᵀ", r"\ldots": "…", r"\dots": "…", r"\le": "≤", r"\ge": "≥",
    r"\neq": "≠", r"\approx": "≈", r"\in": "∈", r"\mathbb{R}": "ℝ", r"\sum": "Σ", r"\odot": "⊙",
    r"\left.": "", r"\right.": "", r"\left": "", r"\right": "", r"\bigl": "", r"\bigr": "", r"\Bigl": "", r"\Bigr": "", r"\big": "",
    r"\,": " ", r"\;": " ", r"\ ": " ", r"\qquad": "    ", r"\quad": "  ", r"\!": "", r"\ne": "≠",
    r"\mid": "|", r"\vert": "|", r"\hat": "", r"\bar": "", r"\tilde": "", r"\vec": "",
}
_FRACTION = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_SQRT = re.compile(r"\\sqrt\{([^{}]*)\}")
_WRAPPERS = re.compile(r"\\(?:mathrm|text|operatorname|mathbf|boldsymbol|mathit)\{([^{}]*)\}")
_GROUP_POWER = re.compile(r"([\^_])\{([^{}]*)\}")


def _atom(text: str) -> str:
    """Keep a single number or name bare; wrap anything longer (2x, x+1) in parentheses."""
    return text if re.fullmatch(r"[A-Za-z]+|\d+(\.\d+)?|[^\x00-\x7f]", text) else f"({text})"


def terminal_math(text: str) -> str:
    """LaTeX inside $...$ to plain readable text: \\frac{a}{b} -> a/b, x^{2} -> x^2, \\sin -> sin."""

    def convert(match: re.Match) -> str:
        math = match.group(1)
        for _ in range(4):
            math = _WRAPPERS.sub(r"\1", math)
            math = _FRACTION.sub(lambda m: f"{_atom(m.group(1))}/{_atom(m.group(2))}", math)
            math = _SQRT.sub(r"√(\1)", math)
            math = _GROUP_POWER.sub(lambda m: m.group(1) + _atom(m.group(2)), math)
        for command in sorted(_COMMANDS, key=len, reverse=True):
            math = math.replace(command, _COMMANDS[command])
        math = re.sub(r"\\[A-Za-z]+", lambda m: m.group(0)[1:], math)
        return math.replace("{", "").replace("}", "")

    text = re.sub(r"\$\$(.+?)\$\$", convert, text, flags=re.S)
    return re.sub(r"\$(.+?)\$", convert, text, flags=re.S)


def fill(text: str, params: dict[str, Value]) -> str:
    """Replace {name} by the student's value of the param `name` (other braces are left alone)."""
    if not params:
        return text
    pattern = re.compile(r"\{(" + "|".join(re.escape(n) for n in params) + r")\}")
    return pattern.sub(lambda m: format_value(params[m.group(1)]), text)


def show_exercise(exercise: Summary, student: str | None, full: "Entry | None" = None) -> str:
    """The prompt of this student's variant; with the full entry, also the worked solution."""
    params = draw(exercise, student)
    out = [f"{exercise.title}  [{exercise.id}, {exercise.kind}, {exercise.points:g} points]", ""]
    if exercise.prompt:
        out += [terminal_math(fill(exercise.prompt.strip(), params)), ""]
    for part in exercise.parts:
        how = {"function": f"code: define `{part.entry}` in solution.py",
               "backprop": f"code: define `{part.entry}` in solution.py"}.get(part.answer, f"answer: {part.answer}")
        out.append(f"({part.id}) {terminal_math(fill(part.prompt.strip(), params)) if part.prompt else ''}  [{part.points:g} pt, {how}]")
    if full is not None:
        out += ["", *_solutions(full, params)]
    return "\n".join(out).rstrip() + "\n"


def _solutions(entry: Entry, params: dict[str, Value]) -> list[str]:
    from grader.explain import solution_lines
    from grader.grade import compiled_for

    if not entry.exercise.solution:
        return ["Worked solutions are turned off for this exercise."]
    compiled = compiled_for(entry, params)
    lines = ["Worked solution", "---------------"]
    for part in entry.exercise.parts:
        lines.append(f"({part.id})")
        lines += [f"  {line}" for line in solution_lines(compiled, compiled.parts[part.id])]
    return lines
