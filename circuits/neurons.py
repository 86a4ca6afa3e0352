"""Leaky integrate-and-fire (LIF) neuron parameters and their Brian2 equations.

Current-based LIF with an exponentially decaying synaptic input (Gerstner, Kistler, Naud &
Paninski, *Neuronal Dynamics*, 2014, ch. 1.3 and 1.4)::

    tau_m dv/dt = (v_rest - v) + I_syn + I_ext          (unless refractory)
    tau_syn dI_syn/dt = -I_syn
    v > v_th  ->  v = v_reset, refractory for t_ref

``I_syn`` and ``I_ext`` are in volts (the voltage they would drive at steady state, i.e. R*I),
so a presynaptic spike of weight ``w`` adds ``w * w_unit`` to ``I_syn``.

Leaky integrators without threshold (NIR's LI node) are built by
:mod:`plastix.circuits.feedforward` (``NeuronParams("LI")``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from brian2 import Quantity, ms, mV, second, volt

from plastix.scalars import is_finite_real

__all__ = [
    "LIFParams",
    "lif_equations",
    "lif_rate",
    "surrogate_derivative",
]


def _default(value: Quantity):
    """A dataclass field defaulting to a Brian2 quantity (quantities are arrays, so unhashable)."""
    return field(default_factory=lambda: value)


def _check_quantity(name: str, value: object, unit: Quantity, positive: bool) -> None:
    if not isinstance(value, Quantity) or not value.has_same_dimensions(unit):
        raise TypeError(
            f"{name}: expected a Brian2 quantity in units of {unit!r} (e.g. {unit!r}), "
            f"got {value!r}"
        )
    if not np.isfinite(float(value)):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    if positive and float(value) <= 0:
        raise ValueError(f"{name}: must be > 0, got {value!r}")


@dataclass(frozen=True)
class LIFParams:
    """Parameters of a current-based LIF neuron (see the module docstring for the equations).

    ``surrogate_beta`` sets the steepness of the surrogate derivative used by plasticity
    rules as the postsynaptic term (:func:`surrogate_derivative`).
    """

    tau_m: Quantity = _default(10 * ms)
    tau_syn: Quantity = _default(5 * ms)
    v_rest: Quantity = _default(-65 * mV)
    v_reset: Quantity = _default(-65 * mV)
    v_th: Quantity = _default(-50 * mV)
    t_ref: Quantity = _default(2 * ms)
    surrogate_beta: float = 5.0

    def __post_init__(self) -> None:
        for name in ("tau_m", "tau_syn"):
            _check_quantity(name, getattr(self, name), second, positive=True)
        _check_quantity("t_ref", self.t_ref, second, positive=False)
        if float(self.t_ref) < 0:
            raise ValueError(f"t_ref: must be >= 0, got {self.t_ref!r}")
        for name in ("v_rest", "v_reset", "v_th"):
            _check_quantity(name, getattr(self, name), volt, positive=False)
        if float(self.v_th) <= float(self.v_rest):
            raise ValueError(
                f"v_th: {self.v_th!r} must lie above v_rest {self.v_rest!r}; raise v_th"
            )
        if float(self.v_reset) >= float(self.v_th):
            raise ValueError(
                f"v_reset: {self.v_reset!r} must lie below v_th {self.v_th!r}; lower v_reset"
            )
        beta = self.surrogate_beta
        if not is_finite_real(beta) or beta <= 0:
            raise ValueError(f"surrogate_beta: must be a finite number > 0, got {beta!r}")

    @property
    def v_span(self) -> Quantity:
        """Distance from rest to threshold, ``v_th - v_rest`` (the voltage scale)."""
        return self.v_th - self.v_rest

    def namespace(self) -> dict[str, Quantity | float]:
        """Constants for the Brian2 equations of :func:`lif_equations`."""
        return {
            "tau_m": self.tau_m,
            "tau_syn": self.tau_syn,
            "v_rest": self.v_rest,
            "v_reset": self.v_reset,
            "v_th": self.v_th,
            "t_ref": self.t_ref,
            "v_span": self.v_span,
            "surrogate_beta": float(self.surrogate_beta),
        }


def lif_equations() -> str:
    """Brian2 model of the LIF neuron; ``psi`` is the surrogate derivative (dimensionless).

    ``psi = 1 / (1 + beta |v - v_th| / (v_th - v_rest))^2`` (the fast-sigmoid derivative of
    SuperSpike, Zenke & Ganguli 2018, with the voltage measured in units of ``v_th - v_rest``).
    """
    return """
    dv/dt = (v_rest - v + I_syn + I_ext) / tau_m : volt (unless refractory)
    dI_syn/dt = -I_syn / tau_syn : volt
    I_ext : volt
    psi = 1.0 / (1.0 + surrogate_beta * abs(v - v_th) / v_span)**2 : 1
    """


def surrogate_derivative(v: np.ndarray, params: LIFParams) -> np.ndarray:
    """NumPy twin of ``psi`` in :func:`lif_equations` (``v`` in volts, as floats)."""
    scale = float(params.v_span)
    return (
        1.0
        / (1.0 + params.surrogate_beta * np.abs(np.asarray(v) - float(params.v_th)) / scale) ** 2
    )


def lif_rate(i_ext: np.ndarray | float, params: LIFParams) -> np.ndarray:
    """Analytic firing rate (Hz) of the LIF neuron under a constant drive ``i_ext`` (volts).

    ``r = 1 / (t_ref + tau_m ln((v_rest + I - v_reset) / (v_rest + I - v_th)))`` when
    ``v_rest + I > v_th``, else 0 (the f-I curve of the LIF, Gerstner et al. 2014, eq. 1.13,
    with reset ``v_reset``).
    """
    drive = float(params.v_rest) + np.asarray(i_ext, dtype=float)
    v_th, v_reset = float(params.v_th), float(params.v_reset)
    rate = np.zeros_like(drive)
    above = drive > v_th
    isi = float(params.t_ref) + float(params.tau_m) * np.log(
        (drive[above] - v_reset) / (drive[above] - v_th)
    )
    rate[above] = 1.0 / isi
    return rate if rate.ndim else np.float64(rate)
