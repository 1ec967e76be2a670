"""Per-student variants of an exercise, stable across runs, machines and versions.

The draw for a param is a pure function of (student, exercise id, param name):
SHA-256 of the UTF-8 text "student\\x00exercise\\x00param", read as a big-endian
integer, modulo the number of values the param can take. No random-number
generator state is involved, so a course can recompute any student's variant
with nothing but hashlib. The default student (none given) is "".
"""
from __future__ import annotations

import hashlib
from decimal import Decimal
from fractions import Fraction
from itertools import islice, product

from collections.abc import Mapping
from typing import Any, Protocol

Value = int | Fraction


class HasParams(Protocol):
    """An exercise model, or the light summary `grade show` reads from the index."""

    id: str
    params: Mapping[str, Any]


def _field(spec: Any, name: str) -> Any:
    """Param specs arrive as models (grading) or as plain dicts (the index): read either."""
    return spec.get(name) if isinstance(spec, Mapping) else getattr(spec, name)


def values(spec: Any) -> list[Value]:
    """Every value a param can take, in a fixed order."""
    if _field(spec, "choices") is not None:
        return [_exact(v) for v in _field(spec, "choices")]
    if _field(spec, "integers") is not None:
        low, high = _field(spec, "integers")
        excluded = set(_field(spec, "exclude") or ())
        return [n for n in range(low, high + 1) if n not in excluded]
    low, high = _field(spec, "decimals")
    scale = 10 ** (_field(spec, "places") if _field(spec, "places") is not None else 1)
    first, last = round(Decimal(str(low)) * scale), round(Decimal(str(high)) * scale)
    return [Fraction(int(k), scale) for k in range(int(first), int(last) + 1)]


def _exact(value: int | float) -> Value:
    return value if isinstance(value, int) else Fraction(Decimal(str(value)))


def draw(exercise: HasParams, student: str | None) -> dict[str, Value]:
    """This student's values of every param of the exercise."""
    who = student or ""
    chosen: dict[str, Value] = {}
    for name, spec in exercise.params.items():
        options = values(spec)
        digest = hashlib.sha256(f"{who}\x00{exercise.id}\x00{name}".encode()).digest()
        chosen[name] = options[int.from_bytes(digest, "big") % len(options)]
    return chosen


def all_variants(exercise: HasParams, limit: int = 24) -> list[dict[str, Value]]:
    """Every combination when there are few; else a fixed sample drawn for students "v0", "v1", ..."""
    names = list(exercise.params)
    pools = [values(exercise.params[name]) for name in names]
    total = 1
    for pool in pools:
        total *= len(pool)
    if total <= limit:
        return [dict(zip(names, combo)) for combo in product(*pools)]
    sample = [draw(exercise, f"v{k}") for k in range(limit * 4)]
    unique = {tuple(sorted(v.items())): v for v in sample}
    return list(islice(unique.values(), limit))


def format_value(value: Value) -> str:
    """How a param shows in a prompt: 3, -2, 0.5 (never 1/2 for a decimal)."""
    if isinstance(value, int):
        return str(value)
    if value.denominator == 1:
        return str(value.numerator)
    decimal = Decimal(value.numerator) / Decimal(value.denominator)
    return format(decimal.normalize(), "f")
