"""Brian2 circuit description <-> snntorch network, with the same discrete-time dynamics.

A :class:`~plastix.circuits.feedforward.FeedForwardSpec` becomes ``nn.Linear`` layers feeding
``snn.Leaky`` (LIF, IF, LI) or ``snn.Synaptic`` (CubaLIF) neurons. The conversion is exact
for the Brian2 form of :func:`~plastix.circuits.feedforward.build_brian2` (exact integration
with step ``dt``): per neuron, with ``u = v - v_leak`` (``v - v_reset`` for IF) measured in
units of ``theta = v_th - v_leak`` (``v_th - v_reset`` for IF; 1 volt for LI)::

    LIF      beta = exp(-dt / tau_mem)
             mem[n] = beta mem[n-1] + W' s[n] + b'
             W' = beta R W / (tau_mem theta),   b' = (1 - beta) R b / theta
    CubaLIF  alpha = exp(-dt / tau_syn),  kappa = R tau_syn (alpha - beta) / (tau_syn - tau_mem)
             (R dt beta / tau_mem when tau_syn = tau_mem)
             syn[n] = alpha syn[n-1] + W' s[n] + b',  mem[n] = beta mem[n-1] + syn[n]
             W' = kappa W / (tau_syn theta),  b' = (1 - alpha)(1 - beta) R b / theta
    IF       beta = 1,  W' = R W / theta,  b' = R b dt / theta
    LI       as LIF without threshold (theta = 1 V)

The state of layer ``k`` before step 0 is Brian2's state after its step ``k``, before any
input can reach it: one update after rest, ``mem = b'`` (LIF, IF, LI) or
``mem = syn = ((1 - beta) R - kappa) b / theta`` (CubaLIF), then ``k`` steps driven by
``W' s + b'``, ``s`` the spikes layer ``k - 1`` emitted in its own steps ``0..k - 1`` — all
run through the layer's snntorch neuron, with threshold and reset, so a neuron that fires
from its bias before any input does so as in Brian2 and passes the spikes on.

Threshold 1; ``reset="value"`` -> ``reset_mechanism="zero"`` (requires ``v_reset = v_leak``),
``"subtract"`` -> ``"subtract"``; ``reset_delay=False`` (reset in the step of the spike, as
Brian2 does). These follow from solving the linear equations over one step (exact
integration, Rotter & Diesmann, *Biol. Cybern.* 81:381, 1999), given that Brian2 delivers a
spike in the step it is emitted, after the postsynaptic threshold test and reset.

**Timing.** snntorch passes a spike to the next layer within the same step; Brian2 one step
later. With the same input raster, Brian2 layer ``k`` (0-based) at step ``n + k + 1`` equals
snntorch layer ``k`` at step ``n``: spikes, and membranes at threshold time (before the
reset; snntorch records ``beta mem[n-1] + W' s[n] + b'``, Synaptic ``beta mem[n-1] + syn[n]``).

**Where the two are identical** (checked in ``tests/test_bridges.py`` and
``tests/test_bridge_fidelity.py``): every model with ``reset="value"``; with
``reset="subtract"`` as long as no membrane is still above threshold after its reset (one
step's input below one threshold). Otherwise snntorch's
``reset_delay=False`` bookkeeping withholds the next spike while Brian2 fires, and only spike
counts stay close. Ties at threshold could split float64 rounding either way. snntorch
neurons have no refractory period: ``refractory > 0`` is refused unless
``drop_refractory=True`` (then the dynamics differ).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import snntorch as snn
import torch
import torch.nn.functional as F
from brian2 import Quantity, second, volt
from torch import Tensor, nn

from plastix.bridges.checks import check_labels, check_positive
from plastix.circuits.feedforward import (
    SPIKING,
    FeedForwardSpec,
    LayerSpec,
    NeuronParams,
)
from plastix.scalars import is_integer, is_real

__all__ = [
    "BPTTConfig",
    "DiscreteLayer",
    "SnnTorchFeedForward",
    "SnnTorchRecord",
    "bernoulli_raster",
    "continuous_layer",
    "discretise",
    "discretise_layer",
    "evaluate_snntorch",
    "from_snntorch",
    "readout_logits",
    "to_snntorch",
    "train_bptt",
]


def _dt_seconds(dt: Quantity | float, name: str = "dt") -> float:
    if isinstance(dt, Quantity):
        if not dt.has_same_dimensions(second):
            raise TypeError(f"{name}: expected a time such as 1*ms, got {dt!r}")
        value = float(dt)
    elif is_real(dt):
        value = float(dt)
    else:
        raise TypeError(f"{name}: expected a Brian2 time or seconds as a float, got {dt!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: must be a positive time step, got {dt!r}")
    return value


@dataclass(frozen=True)
class DiscreteLayer:
    """Per-step parameters of one layer (see the module docstring).

    ``weight = weight_scale[:, None] * W`` and ``bias = bias_scale * b`` are the snntorch
    ``nn.Linear`` parameters; the initial states are ``mem = init_gain * bias`` and (CubaLIF)
    ``syn = init_gain * bias``; the membrane in volts is ``v = v_offset + v_scale * mem``.
    """

    model: str
    weight: np.ndarray
    bias: np.ndarray
    beta: np.ndarray
    alpha: np.ndarray | None
    reset: Literal["zero", "subtract", "none"]
    weight_scale: np.ndarray
    bias_scale: np.ndarray
    init_gain: np.ndarray
    v_offset: np.ndarray
    v_scale: np.ndarray


def _kappa_over_r(tau_mem, tau_syn, alpha, beta, dt):
    """``kappa / R``: response of ``v`` after one step to unit ``I_s`` (exact propagator)."""
    equal = tau_syn == tau_mem
    safe = np.where(equal, 1.0, tau_syn - tau_mem)
    return np.where(equal, dt * beta / tau_mem, tau_syn * (alpha - beta) / safe)


def discretise_layer(layer: LayerSpec, dt: float, drop_refractory: bool = False) -> DiscreteLayer:
    """:class:`DiscreteLayer` of ``layer`` for time step ``dt`` (seconds)."""
    p = layer.neuron
    n = layer.n_out
    v = p.values(n)
    if p.model in SPIKING and np.any(v["refractory"] > 0) and not drop_refractory:
        raise ValueError(
            f"refractory: layer {layer.name!r} has refractory = {p.refractory!r}, but snntorch "
            "neurons have none; set refractory=0*ms, or pass drop_refractory=True to convert "
            "anyway (the dynamics then differ)"
        )
    if p.model in ("LIF", "CubaLIF") and np.any(v["v_reset"] != v["v_leak"]):
        raise ValueError(
            f"v_reset: layer {layer.name!r} resets to {p.v_reset!r} but rests at "
            f"{p.v_leak!r}; snntorch resets to its resting value 0 — set v_reset = v_leak"
        )
    R = v["R"]
    reset = {"value": "zero", "subtract": "subtract"}[p.reset] if p.model in SPIKING else "none"
    alpha = None
    init_gain = np.ones(n)
    if p.model == "IF":
        theta = v["v_th"] - v["v_reset"]
        beta = np.ones(n)
        w_scale, b_scale = R / theta, R * dt / theta
        offset = v["v_reset"]
    else:
        tau = v["tau_mem"]
        beta = np.exp(-dt / tau)
        if p.model == "LI":
            theta = np.ones(n)
        else:
            theta = v["v_th"] - v["v_leak"]
            if np.any(theta <= 0):
                raise ValueError(
                    f"v_th: layer {layer.name!r} has v_th <= v_leak; snntorch's threshold "
                    "must lie above rest"
                )
        offset = v["v_leak"]
        if p.model == "CubaLIF":
            tau_syn = v["tau_syn"]
            alpha = np.exp(-dt / tau_syn)
            kappa = R * _kappa_over_r(tau, tau_syn, alpha, beta, dt)
            w_scale = kappa / (tau_syn * theta)
            b_scale = (1 - alpha) * (1 - beta) * R / theta
            init_gain = ((1 - beta) * R - kappa) / ((1 - alpha) * (1 - beta) * R)
        else:
            w_scale = beta * R / (tau * theta)
            b_scale = (1 - beta) * R / theta
    return DiscreteLayer(
        model=p.model,
        weight=w_scale[:, None] * layer.weight,
        bias=b_scale * layer.bias_or_zero,
        beta=beta,
        alpha=alpha,
        reset=reset,
        weight_scale=w_scale,
        bias_scale=b_scale,
        init_gain=init_gain,
        v_offset=offset,
        v_scale=theta,
    )


def discretise(
    spec: FeedForwardSpec, dt: Quantity | float, drop_refractory: bool = False
) -> list[DiscreteLayer]:
    """Per-step parameters of every layer of ``spec`` for time step ``dt``."""
    if not isinstance(spec, FeedForwardSpec):
        raise TypeError(f"spec: expected a FeedForwardSpec, got {type(spec).__name__}")
    step = _dt_seconds(dt)
    return [discretise_layer(layer, step, drop_refractory) for layer in spec.layers]


def continuous_layer(
    weight: np.ndarray,
    bias: np.ndarray | None,
    *,
    beta: np.ndarray,
    alpha: np.ndarray | None,
    threshold: np.ndarray | None,
    reset: Literal["zero", "subtract", "none"],
    dt: float,
    gain: np.ndarray | float = 1.0,
    v_leak: np.ndarray | float = 0.0,
    v_reset: np.ndarray | float | None = None,
    name: str = "",
) -> LayerSpec:
    """The continuous layer whose Brian2 form steps ``u = v - v_leak`` (volts) as
    ``u[n] = beta u[n-1] + gain (W s[n] + b)`` (``syn[n] = alpha syn[n-1] + gain (W s + b)``,
    ``u[n] = beta u[n-1] + syn[n]`` when ``alpha`` is given), i.e. the inverse of
    :func:`discretise_layer` with ``weight_scale = gain``: ``tau = -dt / ln(beta)`` and ``R``
    chosen so that the weights stay ``W``. ``beta = 1`` gives IF; ``reset="none"`` gives LI
    (no threshold). Threshold and voltages are in volts; ``v_reset`` defaults to ``v_leak``.
    """
    weight = np.asarray(weight, dtype=float)
    n = weight.shape[0]

    def per_neuron(x, what):
        arr = np.broadcast_to(np.asarray(x, dtype=float), (n,)).astype(float)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what}: must be finite, got {x!r}")
        return arr

    beta = per_neuron(beta, "beta")
    gain = per_neuron(gain, "gain")
    v_leak = per_neuron(v_leak, "v_leak")
    v_reset = v_leak if v_reset is None else per_neuron(v_reset, "v_reset")
    b = np.zeros(n) if bias is None else per_neuron(bias, "bias")
    if np.any(beta <= 0) or np.any(beta > 1):
        raise ValueError(f"beta: decay factors must lie in (0, 1], got {beta}")
    if np.any(gain <= 0):
        raise ValueError(f"gain: must be > 0, got {gain}")
    if reset == "none" and alpha is not None:
        raise ValueError("alpha: a non-spiking (LI) layer has no synaptic current; pass None")
    integrate = beta == 1.0
    if integrate.any() and (not integrate.all() or alpha is not None or reset == "none"):
        raise ValueError(
            "beta: 1 (no leak, IF) is only supported for a whole spiking layer without a "
            "synaptic current"
        )
    spiking = reset != "none"
    if spiking:
        if threshold is None:
            raise ValueError("threshold: a spiking layer needs its threshold (volts)")
        v_th = v_leak + per_neuron(threshold, "threshold")
    common = {
        "v_leak": v_leak * volt,
        "v_reset": v_reset * volt,
        "reset": "subtract" if reset == "subtract" else "value",
    }
    if spiking:
        common["v_th"] = v_th * volt
    if integrate.all():
        # IF: u[n] = u[n-1] + R W s + R b dt  ->  R = gain
        neuron = NeuronParams("IF", R=gain * volt, **common)
        return LayerSpec(weight, neuron, b / dt, name=name)
    tau = -dt / np.log(beta)
    if alpha is None:
        # LIF / LI: u[n] = beta u[n-1] + beta R/tau W s + (1 - beta) R b
        R = gain * tau / beta
        model = "LIF" if spiking else "LI"
        neuron = NeuronParams(model, tau_mem=tau * second, R=R * volt * second, **common)
        return LayerSpec(weight, neuron, gain * b / ((1 - beta) * R), name=name)
    alpha = per_neuron(alpha, "alpha")
    if np.any(alpha <= 0) or np.any(alpha >= 1):
        raise ValueError(f"alpha: synaptic decay factors must lie in (0, 1), got {alpha}")
    tau_syn = -dt / np.log(alpha)
    # CubaLIF: kappa / tau_syn = gain  ->  R = gain tau_syn / (kappa / R)
    R = gain * tau_syn / _kappa_over_r(tau, tau_syn, alpha, beta, dt)
    neuron = NeuronParams(
        "CubaLIF", tau_mem=tau * second, tau_syn=tau_syn * second, R=R * volt * second, **common
    )
    bias_c = gain * b / ((1 - alpha) * (1 - beta) * R)
    return LayerSpec(weight, neuron, bias_c, name=name)


@dataclass
class SnnTorchRecord:
    """Per layer: ``spikes (T, B, n)`` (None for LI) and ``membranes (T, B, n)`` at threshold
    time (before the reset) in units of the layer's ``v_scale`` above ``v_offset``
    (threshold 1)."""

    spikes: list[Tensor | None]
    membranes: list[Tensor]


class SnnTorchFeedForward(nn.Module):
    """``nn.Linear`` -> ``snn.Leaky`` / ``snn.Synaptic`` per layer, converted from a
    :class:`FeedForwardSpec` at step ``dt`` (module docstring). ``forward`` takes a spike
    raster ``(T, B, n_in)`` and returns a :class:`SnnTorchRecord`; :meth:`to_spec` maps the
    (possibly trained) weights back."""

    def __init__(
        self,
        spec: FeedForwardSpec,
        dt: Quantity | float,
        *,
        spike_grad: Callable | None = None,
        drop_refractory: bool = False,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.spec = spec
        self.dt = _dt_seconds(dt)
        self.discrete = discretise(spec, self.dt, drop_refractory)
        self.linears = nn.ModuleList()
        self.neurons = nn.ModuleList()
        for k, (layer, d) in enumerate(zip(spec.layers, self.discrete, strict=True)):
            linear = nn.Linear(layer.n_in, layer.n_out, dtype=dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.as_tensor(d.weight, dtype=dtype))
                linear.bias.copy_(torch.as_tensor(d.bias, dtype=dtype))
            self.linears.append(linear)
            beta = torch.as_tensor(d.beta, dtype=dtype)
            spiking = d.reset != "none"
            threshold = torch.full((layer.n_out,), 1.0 if spiking else math.inf, dtype=dtype)
            kwargs = dict(
                threshold=threshold,
                spike_grad=spike_grad,
                reset_mechanism=d.reset,
                reset_delay=False,
            )
            if d.alpha is None:
                self.neurons.append(snn.Leaky(beta=beta, **kwargs))
            else:
                alpha = torch.as_tensor(d.alpha, dtype=dtype)
                self.neurons.append(snn.Synaptic(alpha=alpha, beta=beta, **kwargs))
            self.register_buffer(f"init_gain{k}", torch.as_tensor(d.init_gain, dtype=dtype))

    def forward(self, x: Tensor) -> SnnTorchRecord:
        if x.ndim != 3 or x.shape[-1] != self.spec.n_in:
            raise ValueError(
                f"x: expected a raster (T, B, {self.spec.n_in}), got shape {tuple(x.shape)}"
            )
        x = x.to(self.linears[0].weight.dtype)
        batch = x.shape[1]
        state = [[s.expand(batch, -1) for s in layer] for layer in self._initial_states()]
        spikes: list[list[Tensor]] = [[] for _ in self.linears]
        membranes: list[list[Tensor]] = [[] for _ in self.linears]
        for step in range(x.shape[0]):
            s = x[step]
            for k, (linear, neuron) in enumerate(zip(self.linears, self.neurons, strict=True)):
                current = linear(s)
                out = neuron(current, *state[k])
                membranes[k].append(self._threshold_time(k, current, state[k][-1], out))
                # snntorch's spike function returns float32 whatever the state dtype
                s, state[k] = out[0].to(x.dtype), list(out[1:])
                spikes[k].append(s)
        return SnnTorchRecord(
            spikes=[
                torch.stack(sp) if d.reset != "none" else None
                for sp, d in zip(spikes, self.discrete, strict=True)
            ],
            membranes=[torch.stack(m) for m in membranes],
        )

    def _initial_states(self) -> list[list[Tensor]]:
        """Every layer's state before step 0, ``[mem]`` or ``[syn, mem]`` (module docstring):
        layer ``k``'s neuron run from zero through Brian2's steps ``0..k``, driven by
        ``init_gain * b'`` at step 0 and then by the spikes layer ``k - 1`` emitted in its
        steps ``0..k - 1``."""
        states: list[list[Tensor]] = []
        passed: list[Tensor] = []
        for k, (linear, neuron) in enumerate(zip(self.linears, self.neurons, strict=True)):
            zero = torch.zeros_like(linear.bias)
            rest = [zero] if self.discrete[k].alpha is None else [zero, zero]
            out = neuron(linear.bias * getattr(self, f"init_gain{k}"), *rest)
            emitted = [out[0].to(zero.dtype)]
            for s in passed:
                out = neuron(linear(s), *out[1:])
                emitted.append(out[0].to(zero.dtype))
            states.append(list(out[1:]))
            passed = emitted
        return states

    def _threshold_time(self, k: int, current: Tensor, mem_prev: Tensor, out) -> Tensor:
        """Layer ``k``'s membrane after the step's update, before any reset:
        ``beta mem[n-1] + I[n]`` (Leaky; Synaptic: ``+ syn[n]``), Brian2's ``v`` at threshold
        time given the same state before the step."""
        if self.discrete[k].reset == "none":
            return out[-1]
        drive = current if self.discrete[k].alpha is None else out[1]
        return self.neurons[k].beta.clamp(0, 1) * mem_prev + drive

    def to_spec(self) -> FeedForwardSpec:
        """The :class:`FeedForwardSpec` with this network's current weights and biases."""
        weights, biases = [], []
        for linear, d in zip(self.linears, self.discrete, strict=True):
            w = linear.weight.detach().cpu().double().numpy()
            b = linear.bias.detach().cpu().double().numpy()
            weights.append(w / d.weight_scale[:, None])
            biases.append(b / d.bias_scale)
        return self.spec.with_weights(weights, biases)

    def membrane_volts(self, k: int, membrane: Tensor) -> Tensor:
        """Layer ``k``'s membrane record converted to volts."""
        d = self.discrete[k]
        scale = torch.as_tensor(d.v_scale, dtype=membrane.dtype, device=membrane.device)
        offset = torch.as_tensor(d.v_offset, dtype=membrane.dtype, device=membrane.device)
        return offset + scale * membrane


def to_snntorch(
    spec: FeedForwardSpec,
    dt: Quantity | float,
    *,
    spike_grad: Callable | None = None,
    drop_refractory: bool = False,
    dtype: torch.dtype = torch.float32,
) -> SnnTorchFeedForward:
    """The snntorch network simulating ``spec``'s Brian2 form at step ``dt`` (module doc)."""
    return SnnTorchFeedForward(
        spec, dt, spike_grad=spike_grad, drop_refractory=drop_refractory, dtype=dtype
    )


def _per_neuron(value, n: int) -> np.ndarray:
    arr = value.detach().cpu().double().numpy() if isinstance(value, Tensor) else value
    return np.broadcast_to(np.asarray(arr, dtype=float), (n,)).astype(float).copy()


def from_snntorch(net: nn.Module, dt: Quantity | float | None = None) -> FeedForwardSpec:
    """A :class:`FeedForwardSpec` simulating ``net`` in Brian2 at step ``dt``.

    ``net``: a :class:`SnnTorchFeedForward` (its own parameters; ``dt`` must match or be None)
    or an ``nn.Sequential`` of ``nn.Linear`` followed by ``snn.Leaky`` / ``snn.Synaptic``
    (optionally ``nn.Flatten`` first), built with ``reset_delay=False`` (snntorch's default
    ``True`` resets one step late, which no Brian2 reset reproduces) and without
    ``init_hidden``; ``graded_spikes_factor != 1``, ``inhibition`` and ``state_quant`` are
    refused. snntorch's dimensionless membrane is read as volts (rest 0 V, threshold
    ``threshold`` V); ``Leaky(beta=1)`` becomes IF, a last ``Leaky(reset_mechanism="none")``
    becomes LI.

    Without biases the Brian2 form runs exactly as the Sequential started from zero (within
    the limits of the module docstring). With a bias it does not: the Sequential starts layer
    ``k`` at ``mem = syn = 0`` at its step 0, where the Brian2 form has already integrated
    ``k + 1`` bias-only steps from rest (the state :class:`SnnTorchFeedForward` starts from).
    The membrane offset decays as ``beta**n`` (and ``alpha**n`` for Synaptic), never for
    ``Leaky(beta=1)`` with ``reset_mechanism="subtract"``; a spike it moves changes all that
    follows (a neuron firing from its bias alone stays a step ahead for good).
    """
    if isinstance(net, SnnTorchFeedForward):
        if dt is not None and not math.isclose(_dt_seconds(dt), net.dt, rel_tol=1e-12):
            raise ValueError(f"dt: {dt!r} differs from the network's dt = {net.dt} s")
        return net.to_spec()
    if not isinstance(net, nn.Sequential):
        raise TypeError(
            f"net: expected a SnnTorchFeedForward or an nn.Sequential of Linear and snntorch "
            f"neurons, got {type(net).__name__}"
        )
    if dt is None:
        raise ValueError("dt: a plain snntorch network has no time step; pass dt (e.g. 1*ms)")
    step = _dt_seconds(dt)
    where = [i for i, m in enumerate(net) if not isinstance(m, nn.Flatten | nn.Identity)]
    modules = [net[i] for i in where]
    if len(modules) % 2 or not modules:
        raise ValueError(
            "net: expected alternating nn.Linear and snn.Leaky/snn.Synaptic modules, got "
            f"{[type(m).__name__ for m in net]}"
        )
    layers = []
    for k in range(0, len(modules), 2):
        linear, neuron = modules[k], modules[k + 1]
        at = where[k + 1]  # the neuron's index in net
        if not isinstance(linear, nn.Linear) or not isinstance(neuron, snn.Leaky | snn.Synaptic):
            raise ValueError(
                f"net[{where[k]}], net[{at}]: expected nn.Linear then snn.Leaky/snn.Synaptic, got "
                f"{type(linear).__name__}, {type(neuron).__name__}"
            )
        n = linear.out_features
        reset = neuron.reset_mechanism
        if (
            neuron.reset_delay
            and reset != "none"
            and (reset == "subtract" or isinstance(neuron, snn.Synaptic))
        ):
            raise ValueError(
                f"net[{at}]: reset_delay=True with reset_mechanism={reset!r} resets one step "
                "late, which no Brian2 reset reproduces; build it with reset_delay=False"
            )
        graded = _per_neuron(neuron.graded_spikes_factor, n)
        for setting, used, why in (
            (
                "graded_spikes_factor",
                np.any(graded != 1),
                f"= {graded[0] if np.all(graded == graded[0]) else graded} scales the spikes, "
                "Brian2's have height 1; build it with 1 (scale the next layer's weights instead)",
            ),
            (
                "inhibition",
                neuron.inhibition,
                "= True lets only the largest membrane of a sample spike, which no Brian2 layer "
                "does; build it with inhibition=False",
            ),
            (
                "state_quant",
                neuron.state_quant not in (False, None),
                "quantises the state every step, which the Brian2 form does not; build it "
                "without state_quant",
            ),
        ):
            if used:
                raise ValueError(f"net[{at}] (layer{k // 2}): {setting} {why}")
        w = linear.weight.detach().cpu().double().numpy()
        b = linear.bias.detach().cpu().double().numpy() if linear.bias is not None else np.zeros(n)
        beta = _per_neuron(neuron.beta, n)
        if np.any(beta <= 0):
            raise ValueError(
                f"net[{at}].beta: decay factors must lie in (0, 1] (snntorch clips values "
                f"above 1 to 1), got {beta}"
            )
        beta = np.minimum(beta, 1.0)
        # no clipping: continuous_layer refuses (and reports) any alpha outside (0, 1)
        alpha = _per_neuron(neuron.alpha, n) if isinstance(neuron, snn.Synaptic) else None
        threshold = _per_neuron(neuron.threshold, n) if reset != "none" else None
        layers.append(
            continuous_layer(
                w,
                b,
                beta=beta,
                alpha=alpha,
                threshold=threshold,
                reset=reset,
                dt=step,
                name=f"layer{k // 2}",
            )
        )
    return FeedForwardSpec(layers[0].n_in, tuple(layers))


# -- input encoding, decoding, training ------------------------------------------------------


def _check_spike_probability(p_max: Any) -> None:
    if not is_real(p_max) or not 0.0 < p_max <= 1.0:
        raise ValueError(f"p_max: spike probability per step must lie in (0, 1], got {p_max!r}")


def bernoulli_raster(
    x: Tensor, steps: int, p_max: float, generator: torch.Generator | None = None
) -> Tensor:
    """Rate coding: ``(T, B, d)`` spikes with ``P(spike) = p_max * x`` per step, ``x`` in
    [0, 1] ``(B, d)`` — the discrete form of a Poisson encoder with rate ``p_max / dt``."""
    if x.ndim != 2:
        raise ValueError(f"x: expected (B, d) features in [0, 1], got shape {tuple(x.shape)}")
    if x.numel() and not bool(((x >= 0) & (x <= 1)).all()):
        raise ValueError(
            "x: features must lie in [0, 1] (spike probability p_max * x); normalise them, "
            "e.g. pixels / 255"
        )
    _check_spike_probability(p_max)
    if not is_integer(steps) or steps < 1:
        raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
    p = (x * p_max).expand(int(steps), *x.shape)
    return torch.bernoulli(p, generator=generator)


def readout_logits(
    net: SnnTorchFeedForward, record: SnnTorchRecord, start: int = 0, offset: Tensor | None = None
) -> Tensor:
    """Class scores ``(B, n_out)``: the last layer's membrane in volts above rest averaged
    over steps ``start..T-1`` (LI readout), or its spike counts over those steps; plus
    ``offset`` (e.g. a logit bias kept outside the neuron dynamics)."""
    k = len(net.discrete) - 1
    if net.discrete[k].reset == "none":
        mem = record.membranes[k][start:]
        scale = torch.as_tensor(net.discrete[k].v_scale, dtype=mem.dtype, device=mem.device)
        logits = (mem * scale).mean(0)
    else:
        logits = record.spikes[k][start:].sum(0)
    return logits if offset is None else logits + offset


@dataclass(frozen=True)
class BPTTConfig:
    """Surrogate-gradient BPTT (Neftci, Mostafa & Zenke, *IEEE SPM* 36:51, 2019): cross-
    entropy on :func:`readout_logits` over the steps from ``settle`` on, minibatches of
    ``batch``, Adam with ``lr`` unless another optimizer is given; inputs are
    :func:`bernoulli_raster` with ``p_max`` per step."""

    steps: int = 50
    settle: int = 10
    p_max: float = 0.1
    lr: float = 2e-3
    batch: int = 32

    def __post_init__(self) -> None:
        for name in ("steps", "batch"):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        if not is_integer(self.settle) or not 0 <= self.settle < self.steps:
            raise ValueError(f"settle: must lie in [0, steps={self.steps}), got {self.settle}")
        object.__setattr__(self, "settle", int(self.settle))
        _check_spike_probability(self.p_max)
        check_positive("lr", self.lr, "e.g. lr=2e-3")


def _check_xy(x: Tensor, y: Tensor, spec: FeedForwardSpec) -> None:
    if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != spec.n_in:
        raise ValueError(
            f"x: expected (n, {spec.n_in}) features in [0, 1], got {getattr(x, 'shape', x)}"
        )
    if not isinstance(y, Tensor) or y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise ValueError(f"y: expected {x.shape[0]} int64 labels, got {getattr(y, 'shape', y)}")
    n_out = spec.layers[-1].n_out
    check_labels(
        y, n_out, f"the output layer has {n_out} neurons; give class indices 0..{n_out - 1}"
    )


def train_bptt(
    net: SnnTorchFeedForward,
    x: Tensor,
    y: Tensor,
    cfg: BPTTConfig,
    *,
    generator: torch.Generator | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    order: Sequence[int] | Tensor | None = None,
    offset: Tensor | None = None,
    loss_weights: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> dict[str, float]:
    """One epoch of surrogate-gradient BPTT on ``x (n, d)`` in [0, 1] with labels ``y (n,)``.

    ``order``: the samples to train on, in order (default: a shuffled permutation), e.g. a
    pruning sampler's epoch. ``offset``: trainable logit bias added by :func:`readout_logits`
    (include it in ``optimizer``). ``loss_weights(indices, per_sample_loss) -> weights`` is
    called after each batch's forward (a pruning sampler's ``update``). Returns ``{"loss",
    "seconds", "samples"}``.
    """
    _check_xy(x, y, net.spec)
    if optimizer is None:
        params = list(net.parameters()) + ([offset] if offset is not None else [])
        optimizer = torch.optim.Adam([p for p in params if p.requires_grad], lr=cfg.lr)
    idx = (
        torch.randperm(x.shape[0], generator=generator)
        if order is None
        else torch.as_tensor(order, dtype=torch.int64)
    )
    start, total, batches = time.perf_counter(), 0.0, 0
    for begin in range(0, len(idx), cfg.batch):
        sel = idx[begin : begin + cfg.batch]
        raster = bernoulli_raster(x[sel], cfg.steps, cfg.p_max, generator)
        logits = readout_logits(net, net(raster), cfg.settle, offset)
        per_sample = F.cross_entropy(logits, y[sel], reduction="none")
        weights = loss_weights(sel, per_sample.detach()) if loss_weights is not None else None
        loss = (
            per_sample.mean() if weights is None else (per_sample * weights.to(per_sample)).mean()
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        batches += 1
    return {
        "loss": total / max(batches, 1),
        "seconds": time.perf_counter() - start,
        "samples": float(len(idx)),
    }


def evaluate_snntorch(
    net: SnnTorchFeedForward,
    x: Tensor,
    y: Tensor,
    cfg: BPTTConfig,
    *,
    generator: torch.Generator | None = None,
    offset: Tensor | None = None,
    raster: Tensor | None = None,
    batch: int = 256,
) -> tuple[float, Tensor]:
    """``(accuracy, logits)`` on ``x, y`` with fresh :func:`bernoulli_raster` inputs, or with
    a given ``raster (T, n, d)`` (e.g. the one a Brian2 evaluation also sees)."""
    _check_xy(x, y, net.spec)
    outs = []
    with torch.no_grad():
        for begin in range(0, x.shape[0], batch):
            sl = slice(begin, begin + batch)
            r = (
                bernoulli_raster(x[sl], cfg.steps, cfg.p_max, generator)
                if raster is None
                else raster[:, sl]
            )
            outs.append(readout_logits(net, net(r), cfg.settle, offset))
    logits = torch.cat(outs)
    return float((logits.argmax(-1) == y).double().mean()), logits
