"""Stimulus schedules and Poisson input encoding.

A schedule shows samples one after another: sample ``n`` occupies the slot
``[n (T_p + T_g), n (T_p + T_g) + T_p)`` with its values, followed by a gap of ``T_g`` with
zeros. It is stored as a Brian2 ``TimedArray`` whose time step divides both ``T_p`` and
``T_g``, so that the same table works on every backend (runtime, cpp_standalone,
cuda_standalone) and can be swapped between standalone runs with ``run_args``.

The Poisson encoder fires neuron ``i`` with probability ``rate_i(t) dt`` per step, where
``rate_i(t) = rate_min + (rate_max - rate_min) * s_i(t)`` and ``s(t)`` is the schedule (values
in [0, 1]); this is rate coding with inhomogeneous Poisson spike trains (Gerstner et al.,
*Neuronal Dynamics*, 2014, ch. 7.2; Brian2's ``PoissonGroup`` with a TimedArray rate).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
from brian2 import Hz, NeuronGroup, Quantity, TimedArray, ms, second

from plastix.scalars import is_integer

__all__ = [
    "PoissonEncoder",
    "Schedule",
    "make_schedule",
    "schedule_table",
]


def _check_time(name: str, value: object, allow_zero: bool) -> float:
    if not isinstance(value, Quantity) or not value.has_same_dimensions(second):
        raise TypeError(f"{name}: expected a Brian2 time such as 50*ms, got {value!r}")
    seconds = float(value)
    if not np.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}: must be finite and {bound}, got {value!r}")
    return seconds


def _whole_steps(name: str, seconds: float, dt: float) -> int:
    steps = round(seconds / dt)
    if abs(steps * dt - seconds) > 1e-9 * max(seconds, dt):
        raise ValueError(
            f"{name}: {seconds * 1e3:g} ms is not a whole number of time steps of "
            f"dt = {dt * 1e3:g} ms; choose a multiple of dt"
        )
    return steps


def schedule_table(
    samples: np.ndarray, presentation: Quantity, gap: Quantity, dt: Quantity
) -> tuple[np.ndarray, Quantity]:
    """Rows of a stimulus table and its time step for samples shown in sequence.

    samples: ``(n_samples, n_channels)`` values. The table step is the largest multiple of the
    simulation step ``dt`` that divides both ``presentation`` and ``gap`` (so that Brian2's
    time grids align exactly). Returns ``(table, step)``; each sample fills ``k`` rows
    (``k step = presentation + gap``), the first ``presentation / step`` with its values and
    the rest with zeros.
    """
    samples = np.asarray(samples, dtype=float)
    if samples.ndim != 2 or samples.shape[0] == 0:
        raise ValueError(
            f"samples: shape {samples.shape}; expected (n_samples >= 1, n_channels); "
            "flatten images first"
        )
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples: contains NaN or infinite values")
    step_s = _check_time("dt", dt, allow_zero=False)
    on = _whole_steps("presentation", _check_time("presentation", presentation, False), step_s)
    off = _whole_steps("gap", _check_time("gap", gap, allow_zero=True), step_s)
    unit = gcd(on, off)
    on_rows, rows = on // unit, (on + off) // unit
    table = np.zeros((samples.shape[0] * rows, samples.shape[1]))
    view = table.reshape(samples.shape[0], rows, samples.shape[1])
    view[:, :on_rows, :] = samples[:, None, :]
    return table, unit * dt


@dataclass(frozen=True)
class Schedule:
    """A sample sequence as a TimedArray (``values(t, i)``), with its timing."""

    values: TimedArray
    n_samples: int
    presentation: Quantity
    gap: Quantity
    dt: Quantity

    @property
    def slot(self) -> Quantity:
        """Time from one sample onset to the next (presentation + gap)."""
        return self.presentation + self.gap

    @property
    def duration(self) -> Quantity:
        return self.n_samples * self.slot

    def table(self, samples: np.ndarray) -> np.ndarray:
        """A table of the same shape for new samples (for standalone ``run_args``)."""
        samples = np.asarray(samples, dtype=float)
        if samples.shape[0] != self.n_samples:
            raise ValueError(
                f"samples: {samples.shape[0]} samples, but this schedule was built for "
                f"{self.n_samples}; a standalone build has fixed duration — pad or rebuild"
            )
        table, _ = schedule_table(samples, self.presentation, self.gap, self.dt)
        return table


def make_schedule(
    samples: np.ndarray,
    presentation: Quantity,
    gap: Quantity = 0 * ms,
    dt: Quantity = 0.1 * ms,
    name: str = "stimulus",
) -> Schedule:
    """Build a :class:`Schedule` (a ``TimedArray`` named ``name``) from ``(n, channels)``;
    ``dt`` is the simulation time step the groups reading it use."""
    table, step = schedule_table(samples, presentation, gap, dt)
    values = TimedArray(table, dt=step, name=name)
    return Schedule(values, len(samples), presentation, gap, dt)


class PoissonEncoder:
    """Poisson spike trains whose rates follow a :class:`Schedule`.

    A ``NeuronGroup`` (not a ``PoissonGroup``) so that it can carry further variables and so
    the schedule's TimedArray appears in its equations:
    ``rate = rate_min + (rate_max - rate_min) * schedule(t, i)``, spike when
    ``rand() < rate * dt``.
    """

    def __init__(
        self,
        schedule: Schedule,
        n_channels: int,
        rate_max: Quantity = 100 * Hz,
        rate_min: Quantity = 0 * Hz,
        name: str = "input",
    ):
        if not is_integer(n_channels) or n_channels < 1:
            raise ValueError(f"n_channels: expected an int >= 1, got {n_channels!r}")
        n_channels = int(n_channels)
        for label, rate in (("rate_max", rate_max), ("rate_min", rate_min)):
            if not isinstance(rate, Quantity) or not rate.has_same_dimensions(Hz):
                raise TypeError(f"{label}: expected a Brian2 rate such as 100*Hz, got {rate!r}")
            if not float(rate) >= 0:
                raise ValueError(f"{label}: must be >= 0, got {rate!r}")
        if float(rate_max) < float(rate_min):
            raise ValueError(f"rate_max: {rate_max!r} is below rate_min {rate_min!r}")
        width = schedule.values.values.shape[1]
        if width != n_channels:
            raise ValueError(
                f"n_channels: {n_channels} does not match the schedule's {width} channels"
            )
        values = np.asarray(schedule.values.values)
        if values.size and (values.min() < 0 or values.max() > 1):
            raise ValueError(
                f"schedule: values span [{values.min():g}, {values.max():g}]; an encoder maps "
                "[0, 1] to [rate_min, rate_max], so normalise the samples (e.g. pixels / 255)"
            )
        if float(rate_max * schedule.dt) > 1:
            raise ValueError(
                f"rate_max: {rate_max!r} x dt = {float(rate_max * schedule.dt):g} > 1 spike per "
                "step, so the train saturates at one spike per step; lower rate_max or dt"
            )
        self.schedule = schedule
        self.rate_max = rate_max
        self.rate_min = rate_min
        self.group = NeuronGroup(
            n_channels,
            "rate = rate_min + (rate_max - rate_min) * stimulus(t, i) : Hz",
            threshold="rand() < rate * dt",
            dt=schedule.dt,
            namespace={
                "stimulus": schedule.values,
                "rate_min": rate_min,
                "rate_max": rate_max,
            },
            name=name,
        )

    def expected_counts(self, samples: np.ndarray) -> np.ndarray:
        """Mean spike count per sample and channel during the presentation window."""
        samples = np.asarray(samples, dtype=float)
        rate = float(self.rate_min) + (float(self.rate_max) - float(self.rate_min)) * samples
        return rate * float(self.schedule.presentation)
