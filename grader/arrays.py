"""Judge numeric arrays returned by student code: plain numpy, no sympy, no student objects."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARRAY_REL_TOL = 1e-4
"""Normwise relative error allowed for code answers: float32 internals (~1e-7) pass, any planted bug (O(1)) fails."""


@dataclass(frozen=True)
class ArrayVerdict:
    ok: bool
    problem: str = ""          # "" when ok; otherwise student-readable
    error: float = float("nan")  # normwise relative error, when shapes matched


def as_array(value: object) -> np.ndarray | None:
    """Decoded plain data (float, list, ndarray) as a float64 array, or None if it is not numeric."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.dtype == np.float64 else None


def compare(expected: np.ndarray, got: object, *, rel_tol: float = ARRAY_REL_TOL) -> ArrayVerdict:
    """Shape first, then finiteness, then the normwise relative error ||got - expected|| / ||expected||."""
    array = as_array(got)
    if array is None:
        return ArrayVerdict(False, f"is not numbers (got {type(got).__name__})")
    if array.shape != expected.shape:
        return ArrayVerdict(False, f"has shape {array.shape}, expected {expected.shape}")
    if not np.all(np.isfinite(array)):
        return ArrayVerdict(False, "contains inf or nan")
    scale = max(float(np.linalg.norm(expected)), 1e-12)
    error = float(np.linalg.norm(array - expected)) / scale
    if error <= rel_tol:
        return ArrayVerdict(True, error=error)
    return ArrayVerdict(False, f"has the right shape but wrong values (relative error {error:.2g})", error)


def close(expected: np.ndarray, got: np.ndarray, *, rel_tol: float = ARRAY_REL_TOL) -> bool:
    """Same shape and normwise close: how mistake candidates are matched."""
    if got.shape != expected.shape:
        return False
    return float(np.linalg.norm(got - expected)) <= rel_tol * max(float(np.linalg.norm(expected)), 1e-12)
