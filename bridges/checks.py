"""Argument checks shared by the torch-side modules: class labels and seeds."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from plastix.scalars import is_integer

__all__ = ["check_labels", "plain_seed"]


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
