"""Small stand-ins shared by the compare experiment's tests."""

import numpy as np
import torch

TINY_COMPARE = {
    "n_train": 24,
    "n_test": 12,
    "hidden": (6,),
    "epochs": 1,
    "presentation_ms": 10.0,
    "settle_ms": 2.0,
    "dt_ms": 1.0,
    "window": 4,
    "bptt_batch": 12,
}
"""Overrides for a compare run of a few seconds: 24 + 12 samples, 6 hidden units, 10 ms
presentations at 1 ms, one epoch."""


class CompareContext:
    """The parts of a RunContext the compare arms use: seed, random generator, work folder,
    progress and a metrics log."""

    def __init__(self, seed: int = 0, workdir=None):
        self.seed, self.rows = seed, []
        self.rng = np.random.default_rng(seed)
        self.workdir = workdir
        self.build_cache = None

    def progress(self, iterable, desc=None, total=None):
        return iterable

    def log(self, **row):
        self.rows.append(row)


def compare_data(n_train: int, n_test: int = 6, n_in: int = 5, n_classes: int = 3):
    """Torch features in [0, 1]; labels cycle through the classes."""
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n_train + n_test, n_in, generator=gen)
    y = torch.arange(n_train + n_test) % n_classes
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]
