"""Brian2 layers of the feed-forward IB circuit: sample timing, LIF layers, the rate readout,
dense plastic projections and spike monitors.

Time is cut into *slots*, one per sample: ``presentation`` with the stimulus on, then ``gap``.
Inside a slot the *learning window* runs from ``settle`` after onset to the end of the
presentation, so the transient from the previous sample is not learned from. Every group
computes ``slot_step = timestep(t, dt) % slot_steps`` (integer arithmetic, identical on every
backend and whether a run covers one slot or many) and::

    in_window = [settle_steps <= slot_step < on_steps]
    gate      = in_window * learn(t)          (learn: one 0/1 value per slot, a TimedArray)

and fires the custom event ``sample_end`` at the last step of each slot; an ``EventMonitor``
records the per-sample accumulators there, after that step's resets (which count its spikes)
and before the ``sample_end`` operations clear them (both in the ``after_resets`` slot, the
monitor first). Rates used for learning and for ξ are spike counts inside the window divided
by the window length.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from brian2 import (
    Hz,
    NeuronGroup,
    Quantity,
    Synapses,
    TimedArray,
    ms,
    second,
)

from plastix.scalars import is_integer

from .neurons import LIFParams, lif_equations

__all__ = [
    "DenseProjection",
    "LIFLayer",
    "RateReadout",
    "SampleTiming",
    "learn_schedule",
]


def _time(value: Quantity, name: str) -> float:
    if not isinstance(value, Quantity) or not value.has_same_dimensions(second):
        raise TypeError(f"{name}: expected a Brian2 time such as 50*ms, got {value!r}")
    if value.size != 1 or not np.isfinite(float(value)):
        raise ValueError(f"{name}: expected one finite time, got {value!r}")
    return float(value)


def _positive(value: Quantity, name: str, unit: Quantity, example: str) -> None:
    if not isinstance(value, Quantity) or not value.has_same_dimensions(unit):
        raise TypeError(f"{name}: expected a Brian2 quantity such as {example}, got {value!r}")
    if value.size != 1 or not (np.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name}: expected one finite value > 0, got {value!r}")


def _steps(value: float, dt: float, name: str) -> int:
    steps = round(value / dt)
    if abs(steps * dt - value) > 1e-9 * max(1.0, value):
        raise ValueError(
            f"{name}: {value * 1e3:g} ms is not a multiple of dt = {dt * 1e3:g} ms; "
            "choose durations that are whole numbers of time steps"
        )
    return steps


@dataclass(frozen=True)
class SampleTiming:
    """How long each sample is shown and when learning happens (see the module docstring)."""

    presentation: Quantity = field(default_factory=lambda: 50 * ms)
    gap: Quantity = field(default_factory=lambda: 0 * ms)
    settle: Quantity = field(default_factory=lambda: 10 * ms)
    dt: Quantity = field(default_factory=lambda: 0.5 * ms)

    def __post_init__(self) -> None:
        dt = _time(self.dt, "dt")
        if not dt > 0:
            raise ValueError(f"dt: must be > 0, got {self.dt!r}")
        present = _time(self.presentation, "presentation")
        gap = _time(self.gap, "gap")
        settle = _time(self.settle, "settle")
        if gap < 0 or settle < 0:
            raise ValueError(f"gap / settle: must be >= 0, got {self.gap!r} / {self.settle!r}")
        on = _steps(present, dt, "presentation")
        _steps(gap, dt, "gap")
        start = _steps(settle, dt, "settle")
        if start >= on:
            raise ValueError(
                f"settle: {self.settle!r} leaves no learning window inside the presentation "
                f"of {self.presentation!r}; use settle < presentation"
            )

    @property
    def slot_steps(self) -> int:
        return round(float(self.presentation + self.gap) / float(self.dt))

    @property
    def on_steps(self) -> int:
        return round(float(self.presentation) / float(self.dt))

    @property
    def settle_steps(self) -> int:
        return round(float(self.settle) / float(self.dt))

    @property
    def slot(self) -> Quantity:
        """Onset-to-onset time, an exact multiple of dt."""
        return self.slot_steps * self.dt

    @property
    def window(self) -> Quantity:
        """Length of the learning window (``presentation - settle``)."""
        return (self.on_steps - self.settle_steps) * self.dt

    def namespace(self, learn: TimedArray) -> dict:
        return {
            "slot_steps": self.slot_steps,
            "on_steps": self.on_steps,
            "settle_steps": self.settle_steps,
            "window": self.window,
            "learn": learn,
        }

    @staticmethod
    def equations() -> str:
        """The ``in_window`` and ``gate`` subexpressions (module docstring)."""
        return """
        in_window = int((timestep(t, dt) % slot_steps) >= settle_steps) * int((timestep(t, dt) % slot_steps) < on_steps) : 1
        gate = in_window * learn(t) : 1
        """  # noqa: E501

    @staticmethod
    def sample_end_event() -> dict[str, str]:
        return {"sample_end": "(timestep(t, dt) % slot_steps) == slot_steps - 1"}


def learn_schedule(mask: np.ndarray, timing: SampleTiming, name: str = "learn") -> TimedArray:
    """A TimedArray with one value per slot: 1 where the sample is learned from, else 0."""
    mask = np.asarray(mask, dtype=float).reshape(-1)
    if mask.size == 0 or not np.all((mask == 0) | (mask == 1)):
        raise ValueError("mask: expected a non-empty sequence of 0/1 values, one per sample")
    return TimedArray(mask, dt=timing.slot, name=name)


class LIFLayer:
    """A population of LIF neurons (:mod:`.neurons`) with the variables the IB rule needs.

    Variables: ``v``, ``I_syn``, ``I_ext`` and ``psi`` (surrogate derivative) from
    :func:`lif_equations`; ``modulation`` (the modulatory signal ξ); ``n_spikes`` (spikes inside
    this sample's learning window); ``in_window`` / ``gate`` (:class:`SampleTiming`);
    ``rate_mean``, the neuron's long-run rate in units of ``rate_norm``: a trace that decays
    with ``tau_mean`` and jumps by ``1 / (tau_mean rate_norm)`` per spike, so its mean is
    ``r / rate_norm``. Downstream rules use ``rate - rate_mean`` (the covariance rule,
    Sejnowski 1977, J Math Biol 4), which centres the rates as the rate reference's LayerNorm
    does. It carries over from sample to sample (it is not part of :meth:`initial_state`).
    At the end of each sample the membrane, synaptic current and trace return to rest, so
    every sample starts from the same state whether a run holds one sample or many.
    ``z_last`` holds the previous sample's window rate in units of ``z_rate`` (set at its end);
    ``rtrace`` is a spike trace (decay ``tau_trace``, +1 per spike), ``rtrace / tau_trace`` the
    instantaneous rate estimate read by downstream synapses.
    ``extra_equations`` / ``extra_namespace`` extend the model (e.g. for a ξ-modulator).
    """

    def __init__(
        self,
        n: int,
        params: LIFParams,
        timing: SampleTiming,
        learn: TimedArray,
        name: str,
        rate_norm: Quantity = 100 * Hz,
        tau_mean: Quantity = 2 * second,
        z_rate: Quantity = 100 * Hz,
        tau_trace: Quantity = 20 * ms,
        extra_equations: str = "",
        extra_namespace: dict | None = None,
    ):
        if not is_integer(n) or n < 1:
            raise ValueError(f"n: layer size must be an int >= 1, got {n!r}")
        n = int(n)
        if not isinstance(params, LIFParams) or not isinstance(timing, SampleTiming):
            raise TypeError("params, timing: expected a LIFParams and a SampleTiming")
        for label, value, unit, example in (
            ("rate_norm", rate_norm, Hz, "100*Hz"),
            ("tau_mean", tau_mean, second, "2*second"),
            ("z_rate", z_rate, Hz, "100*Hz"),
            ("tau_trace", tau_trace, second, "20*ms"),
        ):
            _positive(value, label, unit, example)
        self.n = n
        self.params = params
        self.timing = timing
        self.namespace = {
            **params.namespace(),
            **timing.namespace(learn),
            "mean_jump": 1.0 / float(tau_mean * rate_norm),
            "tau_mean": tau_mean,
            "z_scale": 1.0 / float(timing.window * z_rate),
            "tau_trace": tau_trace,
            **(extra_namespace or {}),
        }
        eqs = lif_equations() + timing.equations()
        eqs += "\nmodulation : 1\nn_spikes : 1\ndrate_mean/dt = -rate_mean / tau_mean : 1\n"
        eqs += "z_last : 1\ndrtrace/dt = -rtrace / tau_trace : 1\n" + extra_equations
        self.group = NeuronGroup(
            n,
            eqs,
            threshold="v > v_th",
            reset="v = v_reset\nn_spikes += in_window\nrate_mean += mean_jump\nrtrace += 1",
            refractory="t_ref",
            events=timing.sample_end_event(),
            namespace=self.namespace,
            method="exact",
            dt=timing.dt,
            name=name,
        )
        self.group.run_on_event(
            "sample_end",
            "z_last = n_spikes * z_scale\nn_spikes = 0\nv = v_rest\nI_syn = 0 * volt\nrtrace = 0\n"
            "lastspike = -1e4 * second\nnot_refractory = True",  # as at the start of a run
            when="after_resets",
        )
        self.group.v = params.v_rest

    def initial_state(self) -> dict[str, float]:
        """Values a sample starts from (standalone runs start here; runtime resets to it)."""
        return {"v": float(self.params.v_rest), "I_syn": 0.0, "n_spikes": 0.0, "rtrace": 0.0}

    def reset_state(self) -> None:
        for var, value in self.initial_state().items():
            setattr(self.group, var + "_", value)


class RateReadout:
    """Rate readout population with a softmax over its units (the last, classifier layer).

    Unit ``k`` computes the logit ``a_k + b_k``, where ``a_k = sum_j W_kj r_j / rate_norm`` is
    written by :class:`DenseProjection` (``a_post = ... (summed)``) from presynaptic rate
    traces, and ``b_k`` is a bias. ``p_k = exp(a_k + b_k) / Z`` with ``Z = sum_m exp(a_m +
    b_m)`` a summed variable over all-to-all synapses inside the population. The label of the
    current sample enters as ``y = label(t, i)``. ``abar`` is the logit averaged over the
    learning window (the prediction is its argmax); ``bias_acc = integral gate (y - p) dt``
    and, at each sample's end, ``b += eta_online * bias_acc`` (the delta rule of
    softmax cross-entropy, e.g. Bishop 2006, eq. 4.109).
    """

    def __init__(
        self,
        n: int,
        timing: SampleTiming,
        learn: TimedArray,
        label: TimedArray,
        name: str = "readout",
    ):
        if not is_integer(n) or n < 2:
            raise ValueError(f"n: a readout needs an int >= 2 classes, got {n!r}")
        n = int(n)
        self.n = n
        self.timing = timing
        self.namespace = {**timing.namespace(learn), "label": label}
        eqs = (
            timing.equations()
            + """
        a : 1
        b : 1
        y = label(t, i) : 1
        logit = clip(a + b, -50, 50) : 1
        p = exp(logit) / Z : 1
        Z : 1
        dabar/dt = in_window * logit / window : 1
        dbias_acc/dt = gate * (y - p) : second
        eta_online : Hz (shared)
        """
        )
        self.group = NeuronGroup(
            n,
            eqs,
            events=timing.sample_end_event(),
            namespace=self.namespace,
            method="euler",
            dt=timing.dt,
            name=name,
        )
        self.group.run_on_event(
            "sample_end",
            "b += eta_online * bias_acc\nabar = 0\nbias_acc = 0 * second",
            when="after_resets",
        )
        # Z_k = sum_m exp(logit_m), summed over all-to-all synapses within the readout
        self.normaliser = Synapses(
            self.group,
            self.group,
            "Z_post = exp(logit_pre) : 1 (summed)",
            namespace=self.namespace,
            dt=timing.dt,
            name=f"{name}_norm",
        )
        self.normaliser.connect()
        # Z must be summed after the logits' own summed input ``a`` (same slot, order
        # target.order - 1 for both by default), and before the state update reads p
        self.normaliser.summed_updaters["Z_post"].order = self.group.order - 0.5
        self.group.Z = n  # sum of exp(0): a finite p before the first summation

    @property
    def objects(self) -> list:
        return [self.group, self.normaliser]

    def initial_state(self) -> dict[str, float]:
        return {"abar": 0.0, "bias_acc": 0.0}

    def reset_state(self) -> None:
        for var, value in self.initial_state().items():
            setattr(self.group, var + "_", value)


class DenseProjection:
    """All-to-all ``Synapses`` from ``source`` to ``target`` in a fixed pre-major order.

    Synapse ``s = j_pre * n_post + i_post``, so ``w`` reshaped to ``(n_pre, n_post)`` and
    transposed is the ``(n_post, n_pre)`` matrix of ``torch.nn.Linear``.
    """

    def __init__(
        self,
        source: NeuronGroup,
        target: NeuronGroup,
        model: str,
        on_pre: str,
        namespace: dict,
        name: str,
        method: str | None = "euler",
        on_post: str | None = None,
        on_event: dict[str, str] | None = None,
    ):
        kwargs: dict = {"method": method} if method is not None else {}
        if on_post:
            kwargs["on_post"] = on_post
        if on_event:
            kwargs["on_event"] = on_event
        self.n_pre, self.n_post = len(source), len(target)
        self.synapses = Synapses(
            source,
            target,
            model=model,
            on_pre=on_pre,
            namespace=namespace,
            name=name,
            dt=target.clock.dt,
            **kwargs,
        )
        pre = np.repeat(np.arange(self.n_pre), self.n_post)
        post = np.tile(np.arange(self.n_post), self.n_pre)
        self.synapses.connect(i=pre, j=post)

    def to_matrix(self, flat: np.ndarray) -> np.ndarray:
        """Synapse-ordered values -> ``(n_post, n_pre)``."""
        return np.asarray(flat, dtype=float).reshape(self.n_pre, self.n_post).T.copy()

    def to_flat(self, matrix: np.ndarray) -> np.ndarray:
        """``(n_post, n_pre)`` -> synapse-ordered values."""
        matrix = np.asarray(matrix, dtype=float)
        if matrix.shape != (self.n_post, self.n_pre):
            raise ValueError(
                f"matrix: shape {matrix.shape}; expected (n_post, n_pre) = "
                f"({self.n_post}, {self.n_pre})"
            )
        return matrix.T.reshape(-1).copy()
