"""The information-bottleneck (IB) three-factor rule as a plastix rule plugin.

Daruwalla & Lipasti (2024, Front. Comput. Neurosci. 18:1240348; arXiv 2111.13187) train each
hidden layer with ``dW_ij = -eta * xi_i * f'(u_i) * x_j``: a local Hebbian term (presynaptic
rate times the postsynaptic derivative) gated by a per-neuron modulatory signal ``xi_i``, the
gradient of the layer's HSIC bottleneck objective with respect to the layer output
(:func:`plastix.plasticity.hsic.modulatory_signal`). The postsynaptic term of the spiking
forms is the surrogate derivative ``psi`` of SuperSpike (Zenke & Ganguli 2018); the structure
is that of three-factor rules with eligibility traces (Gerstner et al. 2018, Front. Neural
Circuits 12:53). Two Brian2 forms (parameter ``update``):

``"per_sample"`` (default) — ξ arrives once per sample (from Python, or from a ξ-modulator at
the sample's end). The eligibility is accumulated at presynaptic spikes, event-driven::

    on a presynaptic spike:  E += gate_post * psi_post / rate_norm
    at the sample's end:     W <- clip(W - eta * xi * E, w_min, w_max),  E <- 0

A spike train of rate ``r_j`` delivers ``r_j T`` spikes in ``T``, so ``E -> T (r_j /
rate_norm) <psi_i>`` (for a presynaptic train independent of ``psi``) and the drift is
``dW/dt = -eta * xi * <psi> * r_pre / rate_norm``: the torch rate form
(:meth:`IBThreeFactor.rate_update`). The end-of-sample step is
:func:`apply_eligibility_update` in Python and :meth:`IBThreeFactor.brian2_sample_update` in
Brian2.

``"continuous"`` — ξ(t) is read at every step (clock-driven, Euler)::

    dpre_trace/dt = -pre_trace / tau_pre,   pre_trace += 1 per presynaptic spike
    tau_elig de/dt = -e + (pre_trace / tau_pre) / rate_norm * psi_post
    dw/dt = -eta * gate_post * modulation_post * e             (clipped to [w_min, w_max])
    dE/dt = gate_post * e                                       (integrated eligibility)

``pre_trace / tau_pre`` estimates the presynaptic rate; for stationary inputs ``e -> (r_pre /
rate_norm) <psi_post>``: the same rate form. ``tau_elig`` is the eligibility's decay.

Contract with the postsynaptic group: it defines ``psi`` (the postsynaptic term, e.g. the
surrogate derivative of :func:`plastix.circuits.neurons.lif_equations`), ``gate`` (1 while
learning is on, else 0) and, for the continuous form, ``modulation`` (ξ, one value per neuron;
Brian2 reserves the names ``xi*`` for noise). The caller merges the constants these use into
the synapses' namespace. ξ is a neuron variable rather than a synaptic one, so
:attr:`Brian2Form.modulator` is None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from brian2 import Hz, Quantity, ms

from .rules import Brian2Form, Rule, param, rate_tensors

__all__ = ["IBThreeFactor", "apply_eligibility_update"]

_POSITIVE_TIME = {"min": 0 * ms, "min_exclusive": True}


@dataclass
class IBThreeFactor(Rule):
    """IB three-factor rule: dW_ij/dt = -eta * xi_i * psi_i * r_j / rate_norm (Daruwalla &
    Lipasti 2024), with an eligibility and a surrogate-derivative postsynaptic term."""

    eta: Quantity = param(1.0 * Hz, "learning rate (per second)", unit=Hz, min=0 * Hz)
    update: Literal["per_sample", "continuous"] = param(
        "per_sample", "when ξ is applied: at each sample's end, or at every step"
    )
    tau_pre: Quantity = param(
        20 * ms, "presynaptic rate-trace time constant (continuous form)", **_POSITIVE_TIME
    )
    tau_elig: Quantity = param(
        5 * ms, "eligibility decay time constant (continuous form)", **_POSITIVE_TIME
    )
    rate_norm: Quantity = param(
        100 * Hz, "presynaptic rate counted as 1", min=0 * Hz, min_exclusive=True
    )
    w_min: float = param(-5.0, "lower weight bound")
    w_max: float = param(5.0, "upper weight bound")

    def namespace(self) -> dict[str, Quantity | float]:
        return {
            "eta": self.eta,
            "tau_pre": self.tau_pre,
            "tau_elig": self.tau_elig,
            "rate_norm": self.rate_norm,
            "w_min": self.w_min,
            "w_max": self.w_max,
        }

    def brian2_form(self) -> Brian2Form:
        """Synapse model of the chosen ``update`` (see the module docstring)."""
        if self.update == "per_sample":
            return Brian2Form(
                model="w : 1\nelig_sum : second",
                on_pre="elig_sum += gate_post * psi_post / rate_norm",
                on_post="",
                namespace=self.namespace(),
            )
        model = "\n".join(
            [
                "dw/dt = (clip(w - dt * eta * gate_post * modulation_post * elig, w_min, w_max)"
                " - w) / dt : 1 (clock-driven)",
                "dpre_trace/dt = -pre_trace / tau_pre : 1 (clock-driven)",
                "delig/dt = ((pre_trace / tau_pre) / rate_norm * psi_post - elig) / tau_elig"
                " : 1 (clock-driven)",
                "delig_sum/dt = gate_post * elig : second (clock-driven)",
            ]
        )
        return Brian2Form(
            model=model,
            on_pre="pre_trace += 1",
            on_post="",
            namespace=self.namespace(),
            method="euler",
            modulator=None,
        )

    def brian2_sample_update(self, modulator: str, gate: str = "1") -> str:
        """Brian2 statements applying one sample's update at its end, with ξ in the
        expression ``modulator`` (e.g. ``"res_xi_post"``): ``w <- clip(w - eta * gate * xi *
        E)``, then ``E <- 0``; the in-simulation twin of :func:`apply_eligibility_update`."""
        return (
            f"w = clip(w - eta * ({gate}) * ({modulator}) * elig_sum, "
            "w_min, w_max)\nelig_sum = 0 * second"
        )

    def rate_update(
        self,
        pre_rate: torch.Tensor,
        post_rate: torch.Tensor,
        weight: torch.Tensor,
        modulator: torch.Tensor | float | None = None,
        *,
        post_term: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``dW/dt = -eta * mean_batch(xi_i * f'_i * r_j) / rate_norm``, shape (n_post, n_pre).

        ``modulator`` is ξ (per post neuron, per sample, or a scalar; None counts as 1).
        ``post_term`` is ``f'(post)`` (same shape as ``post_rate``): the mean surrogate
        derivative of a spiking neuron, or a rate network's activation derivative; by default
        the derivative of a threshold-linear (ReLU-like) f-I curve, ``1[post_rate > 0]``.
        """
        pre, post, _ = rate_tensors(pre_rate, post_rate, weight)
        dtype = pre.dtype
        if post_term is None:
            factor = (post > 0).to(dtype)
        else:
            factor = torch.as_tensor(post_term, dtype=dtype)
            if factor.shape != post.shape:
                raise ValueError(
                    f"post_term: shape {tuple(factor.shape)} differs from post_rate's "
                    f"{tuple(post.shape)}; fix: one f'(post) value per post rate"
                )
        xi = 1.0 if modulator is None else modulator
        scale = -float(self.eta) / float(self.rate_norm)
        return scale * self.batch_outer(factor, pre, xi)


def apply_eligibility_update(
    weight: np.ndarray, elig_sum: np.ndarray, xi: np.ndarray, rule: IBThreeFactor
) -> np.ndarray:
    """``W <- clip(W - eta * xi[:, None] * E, w_min, w_max)`` for one sample.

    weight and elig_sum (``E``, in seconds) are ``(n_post, n_pre)``; xi is ``(n_post,)``.
    This is the integral of the Brian2 form's ``dw/dt`` over the learning window with ξ held
    at the value computed for that sample.
    """
    weight = np.asarray(weight, dtype=float)
    elig_sum = np.asarray(elig_sum, dtype=float)
    xi = np.asarray(xi, dtype=float)
    if weight.ndim != 2:
        raise ValueError(f"weight: shape {weight.shape}; expected (n_post, n_pre)")
    if elig_sum.shape != weight.shape:
        raise ValueError(f"elig_sum: shape {elig_sum.shape} differs from weight {weight.shape}")
    if not (np.all(np.isfinite(xi)) and np.all(np.isfinite(elig_sum))):
        raise ValueError("xi, elig_sum: contain NaN or inf; the weights would become NaN")
    if xi.shape != (weight.shape[0],):
        raise ValueError(f"xi: shape {xi.shape}; expected ({weight.shape[0]},), one per post")
    step = float(rule.eta) * xi[:, None] * elig_sum
    return np.clip(weight - step, rule.w_min, rule.w_max)
