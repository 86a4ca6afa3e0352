"""Checks of class labels shared by the torch trainers, scorers and harnesses."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_labels"]


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
