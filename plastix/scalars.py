"""Type predicates for scalar arguments, shared by every layer: Python's and numpy's numbers
are accepted alike, bools are not numbers here."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["is_finite_real", "is_integer", "is_real"]


def is_integer(value: Any) -> bool:
    """An integer, Python's or numpy's, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A real number, Python's or numpy's (integers included), but not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_real(value: Any) -> bool:
    """A real number as :func:`is_real`, and finite (not NaN, not infinite)."""
    return is_real(value) and math.isfinite(value)
