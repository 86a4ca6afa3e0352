"""Jaeger's linear short-term memory capacity of a reservoir (Jaeger 2002, GMD report 152).

For an i.i.d. scalar input ``u_t`` and the reservoir state ``x_t``, the memory function is

    MC_k = max_w corr^2(u_{t-k}, w^T x_t),    MC = sum_{k >= 1} MC_k  <=  N,

the squared correlation between the input ``k`` steps ago and its best linear reconstruction
from the current state. Here ``w`` is fitted by ridge regression on the first part of the
sequence and ``corr^2`` is measured on the held-out rest, so finite-sample over-fitting does not
inflate the capacity (a linear reservoir with well-conditioned weights then comes close to N).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from plastix.scalars import is_finite_real, is_integer

from .esn import ESNWeights, run_esn
from .readouts import RidgeReadout

__all__ = [
    "MemoryCurve",
    "delayed_inputs",
    "memory_capacity",
    "memory_curve",
    "squared_correlation",
]


@dataclass(frozen=True)
class MemoryCurve:
    """``r2[i]`` is ``MC_k`` for ``k = delays[i]``; ``capacity`` is their sum."""

    delays: np.ndarray
    r2: np.ndarray

    @property
    def capacity(self) -> float:
        return float(self.r2.sum())


def squared_correlation(prediction: Tensor, target: Tensor) -> Tensor:
    """Column-wise ``corr^2 = cov(p, y)^2 / (var p var y)`` of ``(T, K)`` tensors (0 where a
    column is constant)."""
    if prediction.shape != target.shape or prediction.ndim != 2:
        raise ValueError(
            f"prediction, target: shapes {tuple(prediction.shape)} and {tuple(target.shape)} "
            "must be equal (T, K)"
        )
    p = prediction - prediction.mean(0)
    y = target - target.mean(0)
    cov = (p * y).sum(0)
    var = (p * p).sum(0) * (y * y).sum(0)
    return torch.where(var > 0, cov * cov / var.clamp_min(1e-300), torch.zeros_like(cov))


def delayed_inputs(inputs: Tensor, delays: np.ndarray) -> Tensor:
    """``D[t, i] = u_{t - delays[i]}`` for ``t >= max(delays)``; inputs ``(T,)``, returns
    ``(T - max(delays), len(delays))`` aligned with ``t = max(delays) .. T - 1``."""
    longest = int(delays.max())
    steps = inputs.shape[0]
    return torch.stack([inputs[longest - k : steps - k] for k in delays], 1)


def _check_delays(delays, max_delay: int | None) -> np.ndarray:
    if delays is None:
        if not is_integer(max_delay) or max_delay < 1:
            raise ValueError(f"max_delay: expected an int >= 1, got {max_delay!r}")
        return np.arange(1, int(max_delay) + 1)
    arr = np.asarray(delays)
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0:
        raise ValueError(f"delays: expected a 1-D list of non-negative ints, got {delays!r}")
    return arr


def memory_curve(
    states: Tensor,
    inputs: Tensor,
    max_delay: int | None = None,
    delays=None,
    washout: int = 100,
    train_fraction: float = 0.5,
    ridge: float = 1e-9,
) -> MemoryCurve:
    """``MC_k`` for each delay from a state sequence ``states (T, N)`` driven by
    ``inputs (T,)``: one ridge readout per delay (solved jointly), trained on the first
    ``train_fraction`` of the post-washout steps and scored on the rest.

    Delays default to ``1 .. max_delay`` (Jaeger 2002); pass ``delays`` to choose them.
    """
    delays_arr = _check_delays(delays, max_delay)
    if states.ndim != 2 or inputs.ndim != 1 or states.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"states, inputs: shapes {tuple(states.shape)} and {tuple(inputs.shape)} are not "
            "(T, N) and (T,)"
        )
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction: {train_fraction} must be in (0, 1)")
    if not is_integer(washout) or washout < 0:
        raise ValueError(f"washout: expected an int >= 0, got {washout!r}")
    start = max(int(washout), int(delays_arr.max()))
    usable = states.shape[0] - start
    n_train = int(usable * train_fraction)
    if n_train < states.shape[1] + 2 or usable - n_train < 10:
        raise ValueError(
            f"inputs: {states.shape[0]} steps leave {usable} after washout/max delay; too few to "
            f"fit {states.shape[1]} units and score (use a longer sequence)"
        )
    x = states.to(torch.float64)
    u = inputs.to(torch.float64)
    targets = delayed_inputs(u, delays_arr)[start - int(delays_arr.max()) :]
    feats = x[start:]
    readout = RidgeReadout(x.shape[1], len(delays_arr), ridge=ridge, fit_bias=True)
    readout.fit(feats[:n_train], targets[:n_train])
    r2 = squared_correlation(readout.predict(feats[n_train:]), targets[n_train:])
    return MemoryCurve(delays=delays_arr, r2=r2.numpy())


def memory_capacity(
    weights: ESNWeights,
    n_steps: int = 5000,
    max_delay: int | None = None,
    delays=None,
    washout: int = 100,
    input_range: float = 1.0,
    seed: int = 0,
    ridge: float = 1e-9,
) -> MemoryCurve:
    """Drive a one-input reservoir with ``u_t ~ U(-input_range, input_range)`` (seeded) for
    ``n_steps`` and return its memory curve (:func:`memory_curve`). Default delays
    ``1 .. 2N``."""
    if not isinstance(weights, ESNWeights):
        raise TypeError(f"weights: expected ESNWeights, got {type(weights).__name__}")
    if weights.n_inputs != 1:
        raise ValueError(
            f"weights: memory capacity needs a one-input reservoir, got n_inputs={weights.n_inputs}"
        )
    if weights.n_feedback:
        raise ValueError("weights: memory capacity is defined without output feedback")
    if not is_integer(n_steps) or n_steps < 1:
        raise ValueError(f"n_steps: expected an int >= 1, got {n_steps!r}")
    n_steps = int(n_steps)
    if not is_finite_real(input_range) or input_range <= 0:
        raise ValueError(f"input_range: expected a finite number > 0, got {input_range!r}")
    if not is_integer(seed):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    if delays is None and max_delay is None:
        max_delay = 2 * weights.n_units
    delays = _check_delays(delays, max_delay)
    gen = torch.Generator().manual_seed(int(seed))  # int(): torch refuses numpy integers
    u = (2 * torch.rand(n_steps, 1, generator=gen, dtype=torch.float64) - 1) * input_range
    states, _ = run_esn(weights, u.to(weights.dtype), generator=gen)
    return memory_curve(states, u[:, 0], delays=delays, washout=washout, ridge=ridge)
