"""Read math typed by students (and instructors) into sympy expressions, without eval.

Text is untrusted, so nothing here calls eval, exec, sympify or parse_expr: a
hand-written tokenizer and recursive-descent parser call sympy's constructors
for a whitelist of names, and every error is a MathSyntaxError pointing at the
offending character of the original text.

Conventions a student will notice (feedback shows `to_text` of the result, so
the reading is always visible):

* Precedence, loosest first: `+ -`, explicit `* /` (left to right), unary
  sign, implicit product, power (`^` or `**`, right-associative).  So
  `1/2x` is 1/(2x), `-x^2` is -(x^2), `2x^2` is 2*(x^2), `2^3^2` is 2^9,
  `e^-x^2` is e^(-(x^2)) and `e^2x` is (e^2)*x.
* A function written without brackets takes the implicit product that
  follows it (numbers, names, powers, bracketed groups), stopping at an
  explicit operator or at the next function: `sin 2x + 1` is sin(2x) + 1,
  `sin x cos x` is sin(x)*cos(x), `sin x^2` is sin(x^2).  A bracket right
  after the name holds the whole argument: `sin(x)y` is sin(x)*y, and
  `sin(x)^2` is (sin x)^2.
* `sin^2 x` is (sin x)^2, while `sin^-1 x` is asin(x) (same for the other
  trigonometric and hyperbolic functions).
* Letters typed together split into allowed names, longest match first:
  `xsinx` is x*sin(x).  Digits inside such a run only follow a function
  name (`sin2x` is sin(2x)); `x2` is refused rather than guessed.
* Numbers are exact: `0.1` is 1/10.  There is no scientific notation,
  because `2e` must mean 2 times Euler's number.
* `|` opens an absolute value where an operand is expected and, after an
  operand, closes the innermost open one: `|x - |y||`, `|2x|sin x`.
* Two bare numbers in a row (`2 3`) are refused rather than multiplied.
* Names in `symbols` shadow the constants `e`, `pi` and function names.
* Unicode is read as typed: superscripts (`x²`, `x⁻¹`, `sin²x`), `√x`, `π`,
  Greek letters as their names (`θ` is `theta`), `−`, `·`, `×`, `÷`, and
  full-width forms (NFKC).  Subscripts and underscores are refused.

Limits, checked before sympy computes anything: MAX_LENGTH characters,
MAX_TOKENS tokens, MAX_DEPTH levels of nesting (brackets, bars, functions,
exponents), MAX_NUMBER_DIGITS digits per number, exponents of size at most
MAX_EXPONENT (also for the argument of sinh and the like), numeric powers
estimated with logs to stay under MAX_POWER_DIGITS digits (MAX_TOTAL_DIGITS in
the whole expression), and every variable-free value (pi^e, e^1000) between
10^-MAX_POWER_DIGITS and 10^MAX_POWER_DIGITS, because sympy evaluates such
values numerically whenever it needs their sign.  sympy's
automatic evaluation costs about a millisecond per function of a fresh
argument and is superlinear for some nestings, so a CPU budget
(CPU_BUDGET_SECONDS) backs up the structural caps.
"""
from __future__ import annotations

import math
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import mpmath
import sympy
from sympy.printing.str import StrPrinter

from grader.equivalence import restricted
from grader.errors import BudgetExceeded, MathSyntaxError

MAX_LENGTH = 2000
MAX_TOKENS = 1000
MAX_DEPTH = 25
MAX_CUBE_ROOT_NESTING = 4
MAX_NUMBER_DIGITS = 30
MAX_EXPONENT = 1000
MAX_POWER_DIGITS = 1000
MAX_TOTAL_DIGITS = 3000
CPU_BUDGET_SECONDS = 0.1

_BUILDERS: dict[str, Callable[[sympy.Expr], sympy.Expr]] = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan,
    "sec": sympy.sec, "csc": sympy.csc, "cot": sympy.cot,
    "asin": sympy.asin, "acos": sympy.acos, "atan": sympy.atan,
    "asec": sympy.asec, "acsc": sympy.acsc, "acot": sympy.acot,
    "sinh": sympy.sinh, "cosh": sympy.cosh, "tanh": sympy.tanh,
    "sech": sympy.sech, "csch": sympy.csch, "coth": sympy.coth,
    "asinh": sympy.asinh, "acosh": sympy.acosh, "atanh": sympy.atanh,
    "asech": sympy.asech, "acsch": sympy.acsch, "acoth": sympy.acoth,
    "ln": sympy.log,
    "log10": lambda arg: sympy.log(arg, 10),
    "log2": lambda arg: sympy.log(arg, 2),
    "sqrt": sympy.sqrt,
    "cbrt": lambda arg: sympy.real_root(arg, 3),
    "abs": sympy.Abs,
    "sign": sympy.sign,
}

# Spellings students type, mapped to the canonical names above ("exp" and
# "log" are built by the parser itself: exp goes through the power checks,
# log may take a base).
_TRIGONOMETRIC = ("sin", "cos", "tan", "sec", "csc", "cot")
_HYPERBOLIC = ("sinh", "cosh", "tanh", "sech", "csch", "coth")
_FUNCTION_NAMES: dict[str, str] = {
    **{name: name for name in _BUILDERS},
    "exp": "exp", "log": "log", "sgn": "sign", "cosec": "csc", "cosech": "csch", "arccosec": "acsc",
    **{"arc" + name: "a" + name for name in _TRIGONOMETRIC + _HYPERBOLIC},
    **{"ar" + name: "a" + name for name in _HYPERBOLIC},
}

# Functions that grow like e^x: sympy evaluates them numerically when it needs a
# sign, which takes seconds once the argument is astronomically large.
_EXPONENTIAL = frozenset(("sinh", "cosh", "tanh", "sech", "csch", "coth"))

# `sin^-1 x` means asin(x): the inverse, not the reciprocal.
_INVERSES = {name: "a" + name for name in _TRIGONOMETRIC + _HYPERBOLIC}

_CALCULUS = ("diff", "Derivative", "derivative", "integrate", "Integral", "integral",
             "int", "Subs", "limit", "Limit", "lim", "sum", "Sum")

_CONSTANTS: dict[str, sympy.Expr] = {"e": sympy.E, "pi": sympy.pi}

_GREEK = {
    "α": "alpha", "β": "beta", "γ": "gamma", "δ": "delta", "ε": "epsilon",
    "ζ": "zeta", "η": "eta", "θ": "theta", "ϑ": "theta", "ι": "iota",
    "κ": "kappa", "λ": "lambda", "μ": "mu", "ν": "nu", "ξ": "xi",
    "ο": "omicron", "π": "pi", "ρ": "rho", "σ": "sigma", "ς": "sigma",
    "τ": "tau", "υ": "upsilon", "φ": "phi", "ϕ": "phi", "χ": "chi",
    "ψ": "psi", "ω": "omega",
}

_ROOT_SIGNS = {"√": "sqrt", "∛": "cbrt"}

_SPECIAL: dict[str, str] = {}
_SPECIAL.update(dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63", "-"))
_SPECIAL.update(dict.fromkeys("\u00b7\u00d7\u22c5\u2217\u2219\u2022\u2715\u2716", "*"))
_SPECIAL.update(dict.fromkeys("\u00f7\u2215\u2044", "/"))
_SPECIAL.update({"\u27e8": "<", "\u27e9": ">", "\u2329": "<", "\u232a": ">",
                 "\u3008": "<", "\u3009": ">", "\u2223": "|"})
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"

_QUOTES = "'\"`\u2018\u2019\u201c\u201d\u00b4\u2032\u2033"
_REFUSED_CHARACTERS = {
    "=": "'=' is not allowed: type only the expression itself, without 'y ='",
    ";": "';' is not allowed: type a single expression",
    ":": "':' is not allowed here",
    "\\": "backslash commands (LaTeX such as \\frac or \\sqrt) are not understood: "
          "type plain math like (a)/(b) or sqrt(x)",
    "@": "'@' is not an operator here: use * to multiply",
    "!": "factorials ('!') are not supported",
    "<": "'<' is not allowed: type an expression, not a comparison",
    ">": "'>' is not allowed: type an expression, not a comparison",
    "_": "underscores and subscripts (like x_1) are not allowed",
}
_REFUSED_CHARACTERS.update(dict.fromkeys(
    _QUOTES, "quotes and primes are not allowed: type the math itself"))

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {close: open_ for open_, close in _OPENERS.items()}
_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_UNDEFINED = frozenset((sympy.zoo, sympy.nan, sympy.oo, -sympy.oo))


@dataclass(frozen=True)
class _Token:
    """One lexical unit; `pos` is the offset of its first character in the original text."""

    kind: str  # num, name, func, op, open, close, bar, comma, end
    text: str
    pos: int
    value: object = None


class _Vocabulary:
    """Every name a run of letters may split into, for one call's `symbols`."""

    def __init__(self, symbols: Mapping[str, sympy.Expr]):
        entries: dict[str, tuple[str, object]] = {}
        entries.update((name, ("func", canonical)) for name, canonical in _FUNCTION_NAMES.items())
        entries.update((word, ("calc", word)) for word in _CALCULUS)
        entries.update((name, ("name", value)) for name, value in _CONSTANTS.items())
        allowed = []
        for name, value in symbols.items():
            if not isinstance(value, sympy.Basic):
                raise TypeError(f"symbols[{name!r}] must be a sympy expression, not {type(value).__name__}")
            if isinstance(name, str) and _NAME_PATTERN.fullmatch(name):
                entries[name] = ("name", value)
                allowed.append(name)
        self.entries = entries
        self.allowed = sorted(allowed)
        self.longest = max(len(name) for name in entries)

    def unknown(self, part: str, text: str, pos: int) -> MathSyntaxError:
        """The error for a name nobody allowed, listing what is allowed."""
        if _LEIBNIZ.match(text, pos):
            return MathSyntaxError(_ASKS_FOR_CALCULUS.format("d/dx"), text, pos)
        if self.allowed:
            message = f"unknown name '{part}': this part allows {', '.join(self.allowed)}"
        else:
            message = f"unknown name '{part}': this part allows no variable names"
        if part.lower() in _FUNCTION_NAMES and part != part.lower():
            message += f" (function names are lower case: {part.lower()})"
        elif match := re.fullmatch(r"([A-Za-z]+)([0-9]+)", part):
            letters, digits = match.groups()
            message += f" (write {letters}^{digits} for a power or {letters}*{digits} for a product)"
        return MathSyntaxError(message, text, pos)


@dataclass(frozen=True)
class Reading:
    """An expression as sympy built it, and the pieces the writer typed that sympy's own
    simplification may have dropped (sqrt(x)^2 is x, e^(ln x) is x, 0*ln(y) is 0): square roots,
    logarithms, inverse functions and non-integer powers of a variable. The answer as typed is
    defined only where each of them is."""

    expr: sympy.Expr
    guards: tuple[sympy.Expr, ...] = ()
    text: str = ""
    """What was read (the whole list, for a component of one): seeds the answer's challenge points."""


def parse_expression(text: str, symbols: Mapping[str, sympy.Expr]) -> sympy.Expr:
    """Read one expression; a top-level comma is refused as a list."""
    return _parse(text, symbols, vector=False)[0].expr


def read_expression(text: str, symbols: Mapping[str, sympy.Expr]) -> Reading:
    """parse_expression, keeping the guards of what was typed (see Reading)."""
    return _parse(text, symbols, vector=False)[0]


def read_vector(text: str, symbols: Mapping[str, sympy.Expr]) -> list[Reading]:
    """Read `[a, b]`, `(a, b)`, `<a, b>` or a bare `a, b` into its components, each with its guards."""
    return _parse(text, symbols, vector=True)


def _parse(text: str, symbols: Mapping[str, sympy.Expr], vector: bool) -> list[Reading]:
    if not isinstance(text, str):
        raise TypeError(f"math text must be a str, not {type(text).__name__}")
    vocabulary = _Vocabulary(symbols)
    if len(text) > MAX_LENGTH:
        raise MathSyntaxError(
            f"this answer is too long ({len(text)} characters; at most {MAX_LENGTH})", text, MAX_LENGTH)
    try:
        chars, where = _normalize(text)
        if vector:
            chars = _strip_angle_brackets(chars, where, text)
        tokens = _tokenize(chars, where, text, vocabulary)
        if vector:
            tokens = _strip_outer_brackets(tokens)
        return _Parser(tokens, text, vector).parse()
    except (MathSyntaxError, BudgetExceeded):
        raise
    except Exception as exc:  # untrusted input: whatever sympy or Python throws becomes a refusal
        raise MathSyntaxError("could not read this expression", text, None) from exc


# --- normalization ---------------------------------------------------------

def _plain(ch: str) -> str:
    """One character in the ASCII-ish alphabet the tokenizer reads."""
    if ch in _SPECIAL:
        return _SPECIAL[ch]
    if ch.isspace() or ch in _INVISIBLE:
        return " "
    return "".join(_SPECIAL.get(c, c) for c in unicodedata.normalize("NFKC", ch))


def _normalize(text: str) -> tuple[str, list[int]]:
    """Map Unicode typography to plain text, remembering each character's original offset.

    Superscripts are turned into `^(...)` before NFKC, which would flatten `x²` into `x2`.
    """
    out: list[str] = []
    where: list[int] = []

    def emit(piece: str, index: int) -> None:
        out.extend(piece)
        where.extend([index] * len(piece))

    in_superscript = False
    for index, ch in enumerate(text):
        tag = unicodedata.decomposition(ch).split(" ", 1)[0]
        if tag == "<super>":
            if not in_superscript:
                emit("^(", index)
                in_superscript = True
            emit(_plain(ch), index)
            continue
        if in_superscript:
            emit(")", index - 1)
            in_superscript = False
        if tag == "<sub>":
            raise MathSyntaxError("subscripts (like x₁) are not allowed", text, index)
        if tag == "<fraction>":
            emit("(" + _plain(ch) + ")", index)
        else:
            emit(_plain(ch), index)
    if in_superscript:
        emit(")", len(text) - 1)
    if len(out) > 4 * MAX_LENGTH:
        raise MathSyntaxError(f"this answer is too long (at most {MAX_LENGTH} characters)", text, 0)
    return "".join(out), where


def _strip_angle_brackets(chars: str, where: list[int], text: str) -> str:
    """Blank out the `<` and `>` around a vector, the only place they are allowed."""
    stripped = chars.strip(" ")
    if not stripped:
        return chars
    first = chars.index(stripped[0])
    last = chars.rindex(stripped[-1])
    opens, closes = stripped[0] == "<", stripped[-1] == ">"
    if opens and not closes:
        raise MathSyntaxError("'<' is never closed with '>'", text, where[first])
    if closes and not opens:
        raise MathSyntaxError("'>' has no matching '<'", text, where[last])
    if opens and closes and first != last:
        return " " + chars[first + 1:last] + " "
    return chars


# --- tokenizer -------------------------------------------------------------

def _tokenize(chars: str, where: list[int], text: str, vocabulary: _Vocabulary) -> list[_Token]:
    """Split normalized text into tokens, checking bracket balance and depth on the way."""
    tokens: list[_Token] = []
    stack: list[tuple[str, int]] = []
    i = 0
    n = len(chars)
    while i < n:
        ch = chars[i]
        pos = where[i]
        if ch == " ":
            i += 1
            continue
        if (ch.isascii() and ch.isdigit()) or ch == ".":
            i = _read_number(chars, where, text, i, tokens)
        elif ch.isascii() and ch.isalpha():
            i = _read_name_run(chars, where, text, i, vocabulary, tokens)
        elif ch in "+-/^":
            tokens.append(_Token("op", ch, pos))
            i += 1
        elif ch == "*":
            if i + 1 < n and chars[i + 1] == "*":
                tokens.append(_Token("op", "^", pos, "**"))
                i += 2
            else:
                tokens.append(_Token("op", "*", pos))
                i += 1
        elif ch in _OPENERS:
            stack.append((ch, pos))
            if len(stack) > MAX_DEPTH:
                raise MathSyntaxError(f"brackets are nested too deeply (at most {MAX_DEPTH} levels)", text, pos)
            tokens.append(_Token("open", ch, pos))
            i += 1
        elif ch in _CLOSERS:
            if not stack:
                raise MathSyntaxError(f"'{ch}' has no matching '{_CLOSERS[ch]}'", text, pos)
            opener, opened_at = stack.pop()
            if _OPENERS[opener] != ch:
                raise MathSyntaxError(
                    f"'{ch}' does not match the '{opener}' at character {opened_at + 1}", text, pos)
            tokens.append(_Token("close", ch, pos))
            i += 1
        elif ch == "|":
            tokens.append(_Token("bar", ch, pos))
            i += 1
        elif ch == ",":
            tokens.append(_Token("comma", ch, pos))
            i += 1
        elif ch in _GREEK:
            tokens.append(_greek_token(ch, pos, text, vocabulary))
            i += 1
        elif ch in _ROOT_SIGNS:
            tokens.append(_Token("func", ch, pos, _ROOT_SIGNS[ch]))
            i += 1
        else:
            raise MathSyntaxError(_refusal_message(ch, chars[:i]), text, pos)
        if len(tokens) > MAX_TOKENS:
            raise MathSyntaxError(f"this expression is too long (more than {MAX_TOKENS} parts)", text, pos)
    if stack:
        opener, opened_at = stack[-1]
        raise MathSyntaxError(f"'{opener}' is never closed", text, opened_at)
    tokens.append(_Token("end", "", len(text)))
    return tokens


_ASKS_FOR_CALCULUS = "{}(...) asks the grader to do the calculus: write the derivative itself"
_LEIBNIZ = re.compile(r"d\s*[A-Za-z]*\s*/\s*d\s*[A-Za-z]")
"""d/dx(...) or dy/dx typed as an answer: a request for a derivative, not one."""


def _refusal_message(ch: str, before: str) -> str:
    if ch in "∫∂∇":
        return _ASKS_FOR_CALCULUS.format(ch)
    if ch == "_" and before.endswith("log"):
        return "underscores are not allowed: write log(x, b) for the logarithm of x in base b"
    if ch in _REFUSED_CHARACTERS:
        return _REFUSED_CHARACTERS[ch]
    shown = f"'{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"
    return f"unexpected character {shown}"


def _read_number(chars: str, where: list[int], text: str, start: int, tokens: list[_Token]) -> int:
    """Read `12`, `0.5`, `.5` or `2.` as an exact Rational."""
    n = len(chars)
    i = start
    while i < n and chars[i].isascii() and chars[i].isdigit():
        i += 1
    whole = chars[start:i]
    fraction = ""
    if i < n and chars[i] == ".":
        point = i
        if start == point and start > 0 and (chars[start - 1].isalnum() or chars[start - 1] in _CLOSERS):
            raise MathSyntaxError("unexpected '.': a '.' only belongs inside a number like 0.5", text, where[point])
        i += 1
        while i < n and chars[i].isascii() and chars[i].isdigit():
            i += 1
        fraction = chars[point + 1:i]
        if not whole and not fraction:
            raise MathSyntaxError("unexpected '.': a '.' only belongs inside a number like 0.5", text, where[point])
        if i < n and chars[i] == ".":
            raise MathSyntaxError("a number can have only one decimal point", text, where[i])
        if not fraction and i < n and chars[i].isascii() and chars[i].isalpha():
            raise MathSyntaxError("unexpected '.' before a name: decimal numbers look like 2.5", text, where[point])
    if len(whole) + len(fraction) > MAX_NUMBER_DIGITS:
        raise MathSyntaxError(f"numbers can have at most {MAX_NUMBER_DIGITS} digits", text, where[start])
    scale = 10 ** len(fraction)
    value = sympy.Rational(int(whole or "0") * scale + int(fraction or "0"), scale)
    tokens.append(_Token("num", chars[start:i], where[start], value))
    return i


def _read_name_run(chars: str, where: list[int], text: str, start: int,
                   vocabulary: _Vocabulary, tokens: list[_Token]) -> int:
    """Read a run of letters and digits and split it into allowed names, longest first."""
    match = _NAME_PATTERN.match(chars, start)
    end = match.end()
    run = match.group()
    for offset, piece, kind, value in _split_run(run, vocabulary, text, [where[start + k] for k in range(len(run))]):
        pos = where[start + offset]
        if kind == "calc":
            raise MathSyntaxError(
                _ASKS_FOR_CALCULUS.format(piece), text, pos)
        if kind == "num":
            if len(piece) > MAX_NUMBER_DIGITS:
                raise MathSyntaxError(f"numbers can have at most {MAX_NUMBER_DIGITS} digits", text, pos)
            value = sympy.Integer(int(piece))
        tokens.append(_Token(kind, piece, pos, value))
    return end


def _split_run(run: str, vocabulary: _Vocabulary, text: str,
               positions: list[int]) -> list[tuple[int, str, str, object]]:
    """Split `run` into vocabulary pieces, preferring the longest piece at each step.

    Digits may stand alone only right after a function name (`sin2x`).  The
    search state is (offset, previous piece was a function); `ok` holds which
    suffixes can still be split, so the walk never backtracks.
    """
    n = len(run)
    entries = vocabulary.entries
    ok = [[False, False] for _ in range(n + 1)]
    ok[n] = [True, True]

    def steps(i: int, after_function: bool) -> Iterator[tuple[int, str, str, object]]:
        if run[i].isdigit():
            if after_function:
                j = i
                while j < n and run[j].isdigit():
                    j += 1
                yield j, run[i:j], "num", None
            return
        for length in range(min(vocabulary.longest, n - i), 0, -1):
            piece = run[i:i + length]
            if piece in entries:
                kind, value = entries[piece]
                yield i + length, piece, kind, value

    for i in range(n - 1, -1, -1):
        for flag in (False, True):
            ok[i][flag] = any(ok[j][kind == "func"] for j, _, kind, _ in steps(i, flag))

    if not ok[0][False]:
        raise _unsplittable(run, steps, ok, vocabulary, text, positions)
    pieces = []
    i, flag = 0, False
    while i < n:
        j, piece, kind, value = next(step for step in steps(i, flag) if ok[step[0]][step[2] == "func"])
        pieces.append((i, piece, kind, value))
        i, flag = j, kind == "func"
    return pieces


def _unsplittable(run: str, steps: Callable, ok: list[list[bool]], vocabulary: _Vocabulary,
                  text: str, positions: list[int]) -> MathSyntaxError:
    """Name the part of `run` that no allowed name covers."""
    n = len(run)
    reached = {(0, False)}
    frontier = [(0, False)]
    while frontier:
        i, flag = frontier.pop()
        if i == n:
            continue
        for j, _, kind, _ in steps(i, flag):
            state = (j, kind == "func")
            if state not in reached:
                reached.add(state)
                frontier.append(state)
    start = max(i for i, _ in reached if i < n)
    stop = next((j for j in range(start + 1, n) if ok[j][False] and not run[j].isdigit()), n)
    if run[start].isdigit():
        start, stop = 0, n
    return vocabulary.unknown(run[start:stop], text, positions[start])


def _greek_token(ch: str, pos: int, text: str, vocabulary: _Vocabulary) -> _Token:
    name = _GREEK[ch]
    kind, value = vocabulary.entries.get(name, ("", None))
    if kind != "name":
        raise vocabulary.unknown(ch, text, pos)
    return _Token("name", ch, pos, value)


def _strip_outer_brackets(tokens: list[_Token]) -> list[_Token]:
    """Drop one pair of brackets around a whole vector, so `(a, b)` reads as a list."""
    if tokens[0].kind != "open" or len(tokens) < 4:
        return tokens
    depth = 0
    for index, token in enumerate(tokens):
        if token.kind == "open":
            depth += 1
        elif token.kind == "close":
            depth -= 1
            if depth == 0:
                return tokens[1:index] + tokens[index + 1:] if index == len(tokens) - 2 else tokens
    return tokens


# --- parser ----------------------------------------------------------------

class _Parser:
    """Recursive descent over tokens, building sympy objects with size and depth checks."""

    def __init__(self, tokens: list[_Token], text: str, vector: bool):
        self.tokens = tokens
        self.text = text
        self.vector = vector
        self.i = 0
        self.depth = 0
        self.cube_roots = 0
        self.deadline = time.thread_time() + CPU_BUDGET_SECONDS
        self.bars = [0]  # open '|' per bracket level: a '|' after an operand closes one
        self.sizes: dict[sympy.Basic, float] = {}
        self.symbolic_memo: dict[sympy.Basic, bool] = {}
        self.guards: list[sympy.Expr] = []   # see Reading; of the component being read

    # token helpers

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def at_op(self, ops: str) -> bool:
        token = self.tokens[self.i]
        return token.kind == "op" and token.text in ops

    def fail(self, message: str, pos: int | None) -> MathSyntaxError:
        return MathSyntaxError(message, self.text, pos)

    @contextmanager
    def nested(self, pos: int, cube_root: bool = False) -> Iterator[None]:
        """Count nesting explicitly so deep input is refused long before Python's recursion limit.

        sympy writes a real cube root with its argument twice (sign(a)*|a|^(1/3)), so
        nested cube roots double in size and get their own, smaller cap.
        """
        self.depth += 1
        self.cube_roots += cube_root
        try:
            if self.depth > MAX_DEPTH:
                raise self.fail(f"this expression is nested too deeply (at most {MAX_DEPTH} levels)", pos)
            if self.cube_roots > MAX_CUBE_ROOT_NESTING:
                raise self.fail(f"cube roots are nested too deeply (at most {MAX_CUBE_ROOT_NESTING} levels)", pos)
            yield
        finally:
            self.depth -= 1
            self.cube_roots -= cube_root

    def starts_operand(self) -> bool:
        """Whether the next token can begin another factor of an implicit product."""
        token = self.peek()
        return token.kind in ("num", "name", "func", "open") or (token.kind == "bar" and self.bars[-1] == 0)

    # grammar

    def parse(self) -> list[Reading]:
        if self.peek().kind == "end":
            raise self.fail("empty answer: type an expression", 0)
        items = [self.component()]
        while self.peek().kind == "comma":
            comma = self.advance()
            if not self.vector:
                raise self.fail("a list where one expression was expected: remove the ','", comma.pos)
            if self.peek().kind in ("end", "comma"):
                raise self.fail("a component is missing after ','", comma.pos)
            items.append(self.component())
        if self.peek().kind != "end":
            raise self.missing(self.peek())
        return items

    def component(self) -> Reading:
        self.guards = []
        expr = self.expression()
        return Reading(expr, tuple(dict.fromkeys(g for g in self.guards if not expr.has(g))), self.text)

    def guard(self, value: sympy.Expr) -> sympy.Expr:
        """Remember the pieces whose domain is not all reals in what was just built, in case sympy
        simplifies them away later: log(x, 2) is built as log(x)/log(2), sqrt(4x) as 2*sqrt(x)."""
        if self.symbolic(value):
            self.guards.extend(node for node in sympy.preorder_traversal(value) if restricted(node))
        return value

    def expression(self) -> sympy.Expr:
        start = self.peek().pos
        terms = [self.term()]
        while self.at_op("+-"):
            op = self.advance()
            term = self.term()
            terms.append(self.negate(term, op.pos) if op.text == "-" else term)
        return self.add(terms, start)

    def term(self) -> sympy.Expr:
        start = self.peek().pos
        factors = [self.signed()]
        while self.at_op("*/"):
            op = self.advance()
            factor = self.signed()
            if op.text == "/":
                if factor == 0:
                    raise self.fail("division by zero", op.pos)
                factor = self.power(factor, sympy.S.NegativeOne, op.pos)
            factors.append(factor)
        return self.multiply(factors, start)

    def signs(self) -> bool:
        """Consume leading + and - signs; True when they amount to a minus."""
        negative = False
        while self.at_op("+-"):
            negative ^= self.advance().text == "-"
        return negative

    def signed(self) -> sympy.Expr:
        start = self.peek().pos
        negative = self.signs()
        value = self.implicit_product()
        return self.negate(value, start) if negative else value

    def implicit_product(self) -> sympy.Expr:
        start = self.peek().pos
        factors = [self.factor()]
        while self.starts_operand():
            self.refuse_adjacent_numbers()
            factors.append(self.factor())
        return self.multiply(factors, start)

    def refuse_adjacent_numbers(self) -> None:
        """`2 3` is ambiguous (6? 23?), but in `x^2 3x` or `x^-2 3` the 2 is an exponent: a product."""
        previous, token = self.tokens[self.i - 1], self.peek()
        before = self.i - 2
        while before >= 0 and self.tokens[before].kind == "op" and self.tokens[before].text in "+-":
            before -= 1
        exponent = before >= 0 and self.tokens[before].kind == "op" and self.tokens[before].text == "^"
        if previous.kind == "num" and token.kind == "num" and not exponent:
            raise self.fail(
                f"two numbers in a row ('{previous.text} {token.text}'): write {previous.text}*{token.text}, "
                f"or {previous.text}{token.text} if you meant one number", token.pos)

    def factor(self) -> sympy.Expr:
        if self.peek().kind == "func":
            return self.function()
        return self.power_factor()

    def power_factor(self) -> sympy.Expr:
        base = self.primary()
        if self.at_op("^"):
            caret = self.advance()
            return self.power(base, self.exponent(caret), caret.pos)
        return base

    def exponent(self, caret: _Token) -> sympy.Expr:
        """What follows `^`: signs, then one operand with its own powers (right-associative)."""
        with self.nested(caret.pos):
            start = self.peek().pos
            negative = self.signs()
            token = self.peek()
            if token.kind == "func":
                value = self.function()
            elif token.kind in ("num", "name", "open", "bar"):
                value = self.power_factor()
            else:
                raise self.fail(f"'{caret.value or caret.text}' needs an exponent after it", caret.pos)
            return self.negate(value, start) if negative else value

    def primary(self) -> sympy.Expr:
        token = self.peek()
        if token.kind in ("num", "name"):
            self.advance()
            return token.value
        if token.kind == "open":
            return self.group()[0]
        if token.kind == "bar":
            return self.absolute()
        raise self.missing(token)

    def group(self, function: str | None = None, arguments: int = 1) -> list[sympy.Expr]:
        """A bracketed expression, or up to `arguments` comma-separated ones for a function.

        The brackets of a function call are the function's own nesting level, not another one.
        """
        opener = self.advance()
        with self.nested(opener.pos) if function is None else nullcontext():
            if self.peek().kind == "close":
                raise self.fail(f"empty brackets '{opener.text}{_OPENERS[opener.text]}'", opener.pos)
            self.bars.append(0)
            items = [self.expression()]
            while self.peek().kind == "comma":
                comma = self.advance()
                if len(items) >= arguments:
                    if function is None:
                        raise self.fail("a list where one expression was expected: remove the ','", comma.pos)
                    raise self.fail(f"{function}(...) takes {_count(arguments)}", comma.pos)
                items.append(self.expression())
            if self.peek().kind != "close":
                raise self.missing(self.peek())
            self.advance()
            self.bars.pop()
            return items

    def absolute(self) -> sympy.Expr:
        opener = self.advance()
        with self.nested(opener.pos):
            self.bars[-1] += 1
            inner = self.expression()
            if self.peek().kind != "bar":
                raise self.fail("'|' is never closed", opener.pos)
            self.advance()
            self.bars[-1] -= 1
            return self.call("abs", [inner], opener.pos)

    def function(self) -> sympy.Expr:
        token = self.advance()
        name, typed = token.value, token.text
        with self.nested(token.pos, cube_root=name == "cbrt"):
            power = None
            if self.at_op("^"):
                name, power = self.function_power(name, typed)
            if self.peek().kind == "open":
                value = self.call(name, self.group(typed, 2 if name == "log" else 1), token.pos)
                if self.at_op("^"):
                    caret = self.advance()
                    if power is not None:
                        raise self.fail(
                            f"'{typed}' already has a power: use brackets, like ({typed}^2(x))^3", caret.pos)
                    value = self.power(value, self.exponent(caret), caret.pos)
            else:
                value = self.call(name, [self.bare_argument(typed, token.pos)], token.pos)
            if power is not None:
                value = self.power(value, power, token.pos)
            return value

    def function_power(self, name: str, typed: str) -> tuple[str, sympy.Expr | None]:
        """Read `sin^2` or `sin^-1`; -1 on a trigonometric or hyperbolic function means its inverse."""
        caret = self.advance()
        negative = self.signs()
        token = self.peek()
        if token.kind == "num":
            self.advance()
            power = token.value
        elif token.kind == "open":
            power = self.group()[0]
        else:
            power = None
        if power is None or not power.is_Rational:
            raise self.fail(
                f"after '{typed}^' write a number, like {typed}^2(x); for other powers write ({typed}(x))^...",
                caret.pos)
        if negative:
            power = -power
        if power == -1:
            if name not in _INVERSES:
                raise self.fail(
                    f"'{typed}^-1' is ambiguous: write 1/{typed}(x) for the reciprocal "
                    "or the inverse function by name", caret.pos)
            return _INVERSES[name], None
        return name, power

    def bare_argument(self, typed: str, pos: int) -> sympy.Expr:
        """The argument of a function written without brackets: `sin 2x` or `sin x cos x`."""
        start = self.peek().pos
        negative = self.signs()
        token = self.peek()
        if token.kind == "func":
            value = self.function()
        elif token.kind in ("num", "name", "open", "bar"):
            factors = [self.power_factor()]
            while self.peek().kind != "func" and self.starts_operand():
                self.refuse_adjacent_numbers()
                factors.append(self.power_factor())
            value = self.multiply(factors, start)
        else:
            raise self.fail(f"{typed} needs an argument, like {typed}(x)", pos)
        return self.negate(value, start) if negative else value

    def missing(self, token: _Token) -> MathSyntaxError:
        """The error for a token that cannot start or continue an operand here."""
        previous = self.tokens[self.i - 1] if self.i > 0 else None
        if previous is not None and previous.kind == "op":
            return self.fail(f"'{previous.value or previous.text}' needs something after it", previous.pos)
        if token.kind == "op":
            return self.fail(f"'{token.value or token.text}' needs something before it", token.pos)
        if token.kind == "comma":
            return self.fail("something is missing before ','", token.pos)
        if token.kind == "end":
            return self.fail("the expression ends too early", token.pos)
        return self.fail(f"unexpected '{token.text}'", token.pos)

    # construction with caps

    def size(self, expr: sympy.Basic) -> float:
        """Roughly how many decimal digits the numbers inside `expr` have in total."""
        known = self.sizes.get(expr)
        if known is None:
            if expr.is_Rational:
                known = math.log10(abs(expr.p) or 1) + math.log10(expr.q)
            else:
                known = sum(self.size(arg) for arg in expr.args)
            self.sizes[expr] = known
        return known

    def coefficient_size(self, base: sympy.Basic) -> float:
        """Digits of the part of `base` that a numeric power would actually compute."""
        if base.is_Rational:
            return self.size(base)
        if base.is_Pow and base.base.is_Rational and base.exp.is_Rational:
            return self.size(base.base) * abs(base.exp.p) / base.exp.q
        if base.is_Mul:
            return sum(self.coefficient_size(arg) for arg in base.args)
        return 0.0

    def checked(self, value: sympy.Expr, pos: int) -> sympy.Expr:
        """Refuse undefined or oversized results, and stop once the CPU budget is spent.

        sympy's automatic evaluation is not linear for every shape (nested |...|,
        towers of powers), so a budget backs up the structural caps.
        """
        if time.thread_time() > self.deadline:
            raise self.fail("this expression is too complicated to read", pos)
        if value in _UNDEFINED or ((value.is_Add or value.is_Mul) and any(a in _UNDEFINED for a in value.args)):
            raise self.fail("this is undefined (division by zero or a similar problem)", pos)
        if self.size(value) > MAX_TOTAL_DIGITS:
            raise self.fail("the numbers in this expression get too large", pos)
        if not value.is_Rational and not self.symbolic(value):
            magnitude = self.log10_abs(value)
            if magnitude > MAX_POWER_DIGITS:
                raise self.fail(f"this number is too large (about 10^{magnitude:.0f})", pos)
            if magnitude < -MAX_POWER_DIGITS:
                raise self.fail(f"this number is too close to zero (about 10^{magnitude:.0f})", pos)
        return value

    def symbolic(self, expr: sympy.Basic) -> bool:
        """Whether `expr` contains a variable; memoized so a deep tree is walked once."""
        known = self.symbolic_memo.get(expr)
        if known is None:
            known = expr.is_Symbol or any(self.symbolic(arg) for arg in expr.args)
            self.symbolic_memo[expr] = known
        return known

    def log10_abs(self, number: sympy.Expr) -> float:
        """log10 of the size of a variable-free value, from a 15-digit numerical evaluation.

        sympy evaluates numbers like these whenever it needs a sign, so every one
        is kept between 10^-1000 and 10^1000 where it is born: evaluating it is then cheap.
        """
        approx = number.evalf(15)
        logs = [float(mpmath.log10(abs(mpmath.mpf(part))))
                for part in approx.as_real_imag() if part.is_Float and part != 0]
        return max(logs, default=-math.inf)

    def exceeds(self, number: sympy.Expr, limit: int) -> bool:
        """Whether a variable-free value is larger than `limit` in absolute value."""
        if number.is_Rational:
            return abs(number.p) > limit * number.q
        return self.log10_abs(number) > math.log10(limit)

    def refuse_large(self, parts: list[sympy.Expr], pos: int) -> None:
        if sum(self.size(part) for part in parts) > MAX_TOTAL_DIGITS:
            raise self.fail("the numbers in this expression get too large", pos)

    def add(self, terms: list[sympy.Expr], pos: int) -> sympy.Expr:
        if len(terms) == 1:
            return terms[0]
        self.refuse_large(terms, pos)
        return self.checked(sympy.Add(*terms), pos)

    def multiply(self, factors: list[sympy.Expr], pos: int) -> sympy.Expr:
        if len(factors) == 1:
            return factors[0]
        self.refuse_large(factors, pos)
        return self.checked(sympy.Mul(*factors), pos)

    def negate(self, value: sympy.Expr, pos: int) -> sympy.Expr:
        return self.multiply([sympy.S.NegativeOne, value], pos)

    def power(self, base: sympy.Expr, exponent: sympy.Expr, pos: int) -> sympy.Expr:
        """Build base^exponent only after estimating, with logs, how big the result would be."""
        if not self.symbolic(exponent) and self.exceeds(exponent, MAX_EXPONENT):
            raise self.fail(f"this exponent is too large (at most {MAX_EXPONENT} in size)", pos)
        if exponent.is_Rational:
            growth = self.coefficient_size(base) * abs(exponent.p) / exponent.q
        elif base is sympy.E:
            growth = self.log_growth(exponent, pos)
        else:
            growth = 0.0
        if growth > MAX_POWER_DIGITS:
            raise self.fail(
                f"this power would be a number with about {growth:.0f} digits (at most {MAX_POWER_DIGITS})", pos)
        self.refuse_large([base, exponent], pos)
        if base.is_Mul and base.free_symbols and exponent.is_Number and exponent != -1:
            # sympy would distribute (a/b)^9 into a^9/b^9 and lose the composition the writer
            # typed: keep it, so worked solutions and mistake models see outer(inner).
            return self.guard(self.checked(sympy.Pow(base, exponent, evaluate=False), pos))
        return self.guard(self.checked(sympy.Pow(base, exponent), pos))

    def log_growth(self, exponent: sympy.Expr, pos: int) -> float:
        """sympy turns e^(k ln a) into a^k, so estimate that number's digits before building it."""
        logs = exponent.atoms(sympy.log)
        if not logs:
            return 0.0
        scale = 1.0
        for number in exponent.atoms(sympy.Rational):
            if abs(number.p) > MAX_EXPONENT * number.q:
                raise self.fail(f"this exponent is too large (at most {MAX_EXPONENT} in size)", pos)
            scale = max(scale, abs(number.p) / number.q)
        return scale * sum(self.size(log.args[0]) for log in logs)

    def call(self, name: str, args: list[sympy.Expr], pos: int) -> sympy.Expr:
        if name == "exp":
            return self.power(sympy.E, args[0], pos)
        if name == "log" and len(args) == 2:
            base = args[1]
            if base.is_Rational and (base <= 0 or base == 1):
                raise self.fail("the base of a logarithm must be positive and not 1", pos)
            return self.guard(self.checked(sympy.log(args[0], base), pos))
        if name in _EXPONENTIAL and not self.symbolic(args[0]) and self.exceeds(args[0], MAX_EXPONENT):
            raise self.fail(f"the argument of {name} is too large (at most {MAX_EXPONENT} in size)", pos)
        builder = _BUILDERS["ln" if name == "log" else name]
        return self.guard(self.checked(builder(args[0]), pos))


def _count(arguments: int) -> str:
    return "one argument" if arguments == 1 else f"at most {arguments} arguments"


# --- printing --------------------------------------------------------------

_CBRT = sympy.Function("cbrt")


class _StudentPrinter(StrPrinter):
    """Render the way a student types: ^, sqrt, e^x, ln, |x|."""

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exponent = expr.base, expr.exp
        if exponent is sympy.S.Half:
            return f"sqrt({self._print(base)})"
        if exponent.is_Rational and exponent.is_negative:
            if exponent == -1:
                return "1/" + self._base(base)
            # A power binds tighter than '/', so the denominator needs no brackets.
            return "1/" + self._print(sympy.Pow(base, -exponent, evaluate=False))
        return f"{self._base(base)}^{self._exponent(exponent)}"

    def _base(self, base: sympy.Expr) -> str:
        text = self._print(base)
        simple = (base.is_Symbol or (base.is_Integer and base >= 0) or base in (sympy.pi, sympy.E)
                  or (isinstance(base, sympy.Function) and not isinstance(base, sympy.exp)))
        return text if simple else f"({text})"

    def _exponent(self, exponent: sympy.Expr) -> str:
        text = self._print(exponent)
        simple = exponent.is_Symbol or (exponent.is_Integer and exponent >= 0) or exponent in (sympy.pi, sympy.E)
        return text if simple else f"({text})"

    def _print_exp(self, expr: sympy.exp) -> str:
        return f"e^{self._exponent(expr.args[0])}"

    def _print_Exp1(self, expr: sympy.Expr) -> str:
        return "e"

    def _print_Pi(self, expr: sympy.Expr) -> str:
        return "pi"

    def _print_ImaginaryUnit(self, expr: sympy.Expr) -> str:
        return "i"

    def _print_log(self, expr: sympy.log) -> str:
        return f"ln({self._print(expr.args[0])})"

    def _print_Abs(self, expr: sympy.Abs) -> str:
        return f"|{self._print(expr.args[0])}|"

    def _print_Mul(self, expr: sympy.Mul) -> str:
        """Show sympy's real cube root, sign(a)*|a|^(1/3), as cbrt(a)."""
        factors = list(expr.args)
        for sign in [f for f in factors if isinstance(f, sympy.sign)]:
            root = next((f for f in factors
                         if f.is_Pow and f.exp == sympy.Rational(1, 3)
                         and isinstance(f.base, sympy.Abs) and f.base.args[0] == sign.args[0]), None)
            if root is not None:
                factors.remove(sign)
                factors.remove(root)
                factors.append(_CBRT(sign.args[0]))
        if len(factors) == len(expr.args):
            return super()._print_Mul(expr)
        if len(factors) == 1:
            return self._print(factors[0])
        return super()._print_Mul(sympy.Mul(*factors, evaluate=False))


def to_text(expr: sympy.Expr) -> str:
    """What the system understood, written back in the syntax students type."""
    return _StudentPrinter().doprint(expr)


def _warm_up() -> None:
    """Build each function once at import.

    sympy imports some modules on first use; without this the first student's
    answer would pay for them out of its CPU budget.
    """
    x = sympy.Symbol("x", real=True)
    for builder in _BUILDERS.values():
        builder(x - 1)
    sympy.Pow(x + 1, x - 1)
    sympy.sign(sympy.pi - 3)


_warm_up()
