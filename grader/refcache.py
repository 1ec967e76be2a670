"""Reference results kept across runs: a student resubmits dozens of times an evening.

Compiling an exercise (parsing definitions, differentiating, sampling the reference's
domain) costs far more than reading the result back, so each compiled variant is
pickled into the user's cache folder (see grader/index.py for the folder and how to
turn caching off). The key covers the exercise file's bytes, the variant's params and
the grader's own source files (size and mtime) and the versions of Python, sympy and
mpmath, so an edited exercise or an upgraded grader never reads a stale result (nodes are
read back as stored, unevaluated: see _Pickler). The cache holds only what we computed ourselves
from instructor files; nothing a student wrote is stored or loaded here.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

import mpmath
import sympy
from sympy.core import function

from grader.index import cache_dir, code_stamp

if TYPE_CHECKING:
    from grader.compile import Compiled
    from grader.loader import Document
    from grader.variants import Value


def _path(text: str, params: dict[str, "Value"]) -> Path | None:
    where = cache_dir()
    if where is None:
        return None
    key = f"{code_stamp()}\x00{sympy.__version__}\x00{mpmath.__version__}\x00{text}\x00{sorted(params.items())!r}"
    return where / "refs" / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.pickle"


def _source(doc: "Document") -> str | None:
    try:
        return Path(doc.path).read_text(encoding="utf-8")
    except OSError:
        return None


_FUNCTIONS = getattr(function, "DefinedFunction", function.Function)


def _rebuilt_plainly(cls: type) -> bool:
    """Classes whose nodes are exactly their class and arguments: sums, products, powers and the
    named functions (sin, exp, log, ...), which share their constructor."""
    return cls in (sympy.Add, sympy.Mul, sympy.Pow) or (
        issubclass(cls, _FUNCTIONS) and cls.__new__ is _FUNCTIONS.__new__)


def _rebuild(cls: type, args: tuple) -> sympy.Basic:
    return cls(*args, evaluate=False)


class _Pickler(pickle.Pickler):
    """Sympy unpickles an expression by calling each node's class on its arguments, which
    simplifies every node again: most of the time of reading a variant back. The stored
    arguments are already simplified, so common nodes are rebuilt with evaluate=False, which
    gives the same expression (same arguments, in the same order) about twice as fast. Passed
    as an argument (which sympy's constructor cache keys on), not through sympy's global
    evaluate switch, which empties that whole cache each time it is flipped."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, sympy.Basic) and _rebuilt_plainly(type(obj)):
            return _rebuild, (type(obj), obj.args)
        return NotImplemented


def load(doc: "Document", params: dict[str, "Value"]) -> "Compiled | None":
    text = _source(doc)
    path = _path(text, params) if text is not None else None
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            return pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError, ValueError):
        return None


def save(doc: "Document", params: dict[str, "Value"], compiled: "Compiled") -> None:
    """Best effort, atomic: a read-only home or a full disk only means no cache."""
    text = _source(doc)
    path = _path(text, params) if text is not None else None
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        with temporary.open("wb") as handle:
            _Pickler(handle, protocol=pickle.HIGHEST_PROTOCOL).dump(compiled)
        os.replace(temporary, path)
    except (OSError, pickle.PicklingError, TypeError, AttributeError):
        return
