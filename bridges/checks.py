"""Argument checks shared by the torch-side modules: class labels, seeds, positive numbers,
Adam's betas."""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor

from plastix.scalars import is_integer, is_real

__all__ = ["check_adam_betas", "check_labels", "check_positive", "check_seed", "plain_seed"]


def check_labels(y: Tensor, n_classes: int, fix: str, name: str = "y") -> None:
    """Refuse class labels outside ``[0, n_classes)``: ValueError naming the offending value
    (the smallest if negative, else the largest) and ``fix``."""
    if y.numel() == 0:
        return
    low, high = int(y.min()), int(y.max())
    if low < 0 or high >= n_classes:
        raise ValueError(
            f"{name}: labels must lie in [0, {n_classes}); got {low if low < 0 else high}; {fix}"
        )


def plain_seed(seed: Any) -> Any:
    """A numpy integer seed as a Python int (torch generators refuse numpy scalars); any other
    value is passed on unchanged, for torch to accept or refuse."""
    return int(seed) if is_integer(seed) else seed


def check_seed(seed: Any) -> None:
    """Refuse a seed that is not an integer (Python's or numpy's; not a bool): TypeError."""
    if not is_integer(seed):
        raise TypeError(f"seed must be an int, got {seed!r}")


def check_positive(name: str, value: Any, hint: str) -> None:
    """Refuse anything but a finite real number > 0 (bools too): ValueError naming ``name``,
    the value and ``hint``."""
    if not is_real(value) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}; {hint}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}; {hint}")


def check_adam_betas(name: str, betas: Any) -> None:
    """Refuse anything but two real numbers in ``[0, 1)`` (Adam's decay rates)."""
    if (
        not isinstance(betas, tuple | list)
        or len(betas) != 2
        or not all(is_real(b) and 0 <= b < 1 for b in betas)
    ):
        raise ValueError(f"{name}: expected two numbers in [0, 1), got {betas!r}")
