"""A plain description of a feed-forward spiking network and its Brian2 form.

:class:`FeedForwardSpec` holds layer sizes, weights, biases and per-layer neuron parameters
with units; :func:`build_brian2` turns it into ``NeuronGroup`` / ``Synapses`` / monitors that
run on every Brian2 device (runtime, cpp_standalone, cuda_standalone: only equations, no
Python during the run). The same description is what :mod:`plastix.bridges.snntorch_bridge`
and :mod:`plastix.bridges.nir_bridge` convert.

The neuron models are those of the Neuromorphic Intermediate Representation (Pedersen et al.,
*Nature Communications* 15:8122, 2024), in continuous time with SI units. A layer receives
``I(t) = W S(t) + b``, where ``S_j(t) = sum_k delta(t - t_jk)`` are the presynaptic spike
trains (Dirac deltas of unit area, so ``I`` is in 1/s and the bias ``b`` is a constant rate)::

    LIF      tau_mem dv/dt = (v_leak - v) + R I               R in volt*second
    CubaLIF  tau_syn dI_s/dt = -I_s + I,
             tau_mem dv/dt = (v_leak - v) + R I_s             R in volt*second
    LI       tau_mem dv/dt = (v_leak - v) + R I  (no spikes)  R in volt*second
    IF       dv/dt = R I                                      R in volt

A spike through weight ``w`` therefore moves ``v`` by ``R w / tau_mem`` (LIF, LI), ``R w``
(IF), or ``I_s`` by ``w / tau_syn`` (CubaLIF). Spiking: ``v > v_th`` emits a spike and resets
``v = v_reset`` (``reset="value"``) or ``v -= v_th - v_reset`` (``reset="subtract"``), then
``v`` is held for ``refractory`` (Brian2's clamp: synaptic input to ``v`` arriving in the
spike's step or during the refractory period is discarded; CubaLIF's ``I_s`` keeps
integrating; a layer's refractory periods are all 0 or all > 0). Neurons start at rest:
``v = v_leak`` (``v_reset`` for IF), ``I_s = 0``.

The Brian2 form integrates these linear equations exactly and delivers spikes in the step in
which they were emitted, after the postsynaptic threshold test and reset (slot
``after_resets``); a spike therefore acts on the next step's threshold test (one step per
layer from input to output; see :mod:`plastix.bridges.snntorch_bridge` for the exact
discrete-time equivalent).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from brian2 import (
    Network,
    NeuronGroup,
    Quantity,
    SpikeGeneratorGroup,
    SpikeMonitor,
    StateMonitor,
    Synapses,
    ms,
    mV,
    second,
    volt,
)

from plastix.scalars import is_integer

__all__ = [
    "MODELS",
    "FeedForwardCircuit",
    "FeedForwardSpec",
    "LayerSpec",
    "NeuronParams",
    "build_brian2",
    "cuba_lif_from_lifparams",
    "from_ib_circuit",
    "raster_to_spike_times",
    "run_raster",
]

NeuronModel = Literal["LIF", "CubaLIF", "LI", "IF"]
MODELS: tuple[str, ...] = ("LIF", "CubaLIF", "LI", "IF")
ResetMode = Literal["value", "subtract"]
RESETS: tuple[str, ...] = ("value", "subtract")
SPIKING: tuple[str, ...] = ("LIF", "CubaLIF", "IF")

# Parameters that define each model (the rest of the dataclass is ignored for that model).
MODEL_FIELDS: dict[str, tuple[str, ...]] = {
    "LIF": ("tau_mem", "v_leak", "v_th", "v_reset", "R", "refractory", "reset"),
    "CubaLIF": ("tau_mem", "tau_syn", "v_leak", "v_th", "v_reset", "R", "refractory", "reset"),
    "LI": ("tau_mem", "v_leak", "R"),
    "IF": ("v_th", "v_reset", "R", "refractory", "reset"),
}

_UNITS = {
    "tau_mem": second,
    "tau_syn": second,
    "v_leak": volt,
    "v_th": volt,
    "v_reset": volt,
    "refractory": second,
}


def _si(value: object, name: str, unit: Quantity) -> np.ndarray:
    """A scalar or 1-D Brian2 quantity as a float array in SI units, with checks."""
    if not isinstance(value, Quantity) or not value.has_same_dimensions(unit):
        raise TypeError(
            f"{name}: expected a Brian2 quantity in units of {unit!r} (scalar or one value per "
            f"neuron), got {value!r}"
        )
    arr = np.asarray(value / unit, dtype=float)
    if arr.ndim > 1:
        raise ValueError(f"{name}: expected a scalar or a 1-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite, got {value!r}")
    return arr


def _default(value: Quantity):
    return field(default_factory=lambda: value)


@dataclass(frozen=True, eq=False)
class NeuronParams:
    """Neuron model and parameters of one layer (equations in the module docstring).

    Every quantity may be a scalar or an array with one value per neuron. ``R=None`` picks
    ``10 mV*ms`` for the leaky models (with ``tau_mem = 10 ms`` a unit weight moves ``v`` by
    1 mV) and ``1 mV`` for IF. Fields a model does not use (``MODEL_FIELDS``) are ignored.
    """

    model: NeuronModel = "LIF"
    tau_mem: Quantity = _default(10 * ms)
    tau_syn: Quantity = _default(5 * ms)
    v_leak: Quantity = _default(0 * mV)
    v_th: Quantity = _default(10 * mV)
    v_reset: Quantity = _default(0 * mV)
    R: Quantity | None = None
    refractory: Quantity = _default(0 * ms)
    reset: ResetMode = "value"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model: {self.model!r} is not one of {MODELS}")
        if self.reset not in RESETS:
            raise ValueError(f"reset: {self.reset!r} is not one of {RESETS}")
        if self.R is None:
            object.__setattr__(self, "R", 1 * mV if self.model == "IF" else 10 * mV * ms)
        values = {name: _si(getattr(self, name), name, unit) for name, unit in _UNITS.items()}
        r_unit = volt if self.model == "IF" else volt * second
        values["R"] = _si(self.R, "R", r_unit)
        if np.any(values["R"] <= 0):
            raise ValueError(f"R: must be > 0, got {self.R!r}")
        for name in ("tau_mem", "tau_syn"):
            if name in MODEL_FIELDS[self.model] and np.any(values[name] <= 0):
                raise ValueError(f"{name}: must be > 0, got {getattr(self, name)!r}")
        if np.any(values["refractory"] < 0):
            raise ValueError(f"refractory: must be >= 0, got {self.refractory!r}")
        held = values["refractory"] > 0
        if self.model in SPIKING and held.any() and not held.all():
            raise ValueError(
                f"refractory: {self.refractory!r} mixes 0 and > 0 in one layer; Brian2's "
                "refractory clamp covers the whole group and would hold the zero ones for the "
                "step of each spike too — give every neuron of the layer a refractory period "
                "> 0, or none"
            )
        if self.model in SPIKING and np.any(values["v_reset"] >= values["v_th"]):
            raise ValueError(
                f"v_reset: {self.v_reset!r} must lie below v_th {self.v_th!r}, otherwise the "
                "neuron fires on every step; lower v_reset or raise v_th"
            )
        sizes = {a.size for a in values.values() if a.ndim == 1}
        if len(sizes) > 1:
            raise ValueError(
                f"NeuronParams: per-neuron arrays have different lengths {sorted(sizes)}; "
                "give every array one value per neuron"
            )

    def values(self, n: int | None = None) -> dict[str, np.ndarray]:
        """The model's parameters as float arrays in SI units (broadcast to ``n`` neurons)."""
        out = {}
        for name in MODEL_FIELDS[self.model]:
            if name == "reset":
                continue
            unit = volt if self.model == "IF" else volt * second
            arr = _si(getattr(self, name), name, _UNITS.get(name, unit))
            out[name] = arr if n is None else np.broadcast_to(arr, (n,)).astype(float)
        return out

    @property
    def size(self) -> int | None:
        """Number of neurons fixed by per-neuron arrays, or None when every value is scalar."""
        sizes = {a.size for a in self.values().values() if a.ndim == 1}
        return sizes.pop() if sizes else None

    def same_as(self, other: NeuronParams, n: int, rtol: float = 0.0) -> bool:
        """True when both define the same neurons (model, reset and every model parameter,
        compared per neuron; ``rtol=0`` asks for identical floats)."""
        if not isinstance(other, NeuronParams) or self.model != other.model:
            return False
        if self.model in SPIKING and self.reset != other.reset:
            return False
        a, b = self.values(n), other.values(n)
        return all(np.allclose(a[k], b[k], rtol=rtol, atol=0.0) for k in a)


@dataclass(frozen=True, eq=False)
class LayerSpec:
    """One layer: ``weight (n_out, n_in)`` (the ``torch.nn.Linear`` layout, dimensionless),
    ``bias (n_out,)`` in 1/s (None: zero) and the neurons receiving ``W S + b``."""

    weight: np.ndarray
    neuron: NeuronParams = field(default_factory=NeuronParams)
    bias: np.ndarray | None = None
    name: str = ""

    def __post_init__(self) -> None:
        w = np.array(self.weight, dtype=float)
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(f"weight: expected a non-empty (n_out, n_in) matrix, got {w.shape}")
        if not np.all(np.isfinite(w)):
            raise ValueError("weight: contains NaN or infinite values")
        object.__setattr__(self, "weight", w)
        if not isinstance(self.neuron, NeuronParams):
            raise TypeError(f"neuron: expected NeuronParams, got {type(self.neuron).__name__}")
        if self.bias is not None:
            b = np.array(self.bias, dtype=float)
            if b.shape != (w.shape[0],) or not np.all(np.isfinite(b)):
                raise ValueError(
                    f"bias: expected {w.shape[0]} finite values (one per output), got shape "
                    f"{b.shape}"
                )
            object.__setattr__(self, "bias", b)
        size = self.neuron.size
        if size is not None and size != w.shape[0]:
            raise ValueError(
                f"neuron: per-neuron parameters have {size} values but the layer has "
                f"{w.shape[0]} outputs"
            )
        if self.neuron.model == "CubaLIF":
            v = self.neuron.values(w.shape[0])
            equal = v["tau_syn"] == v["tau_mem"]
            if equal.any() and not equal.all():
                raise ValueError(
                    "tau_syn: equals tau_mem for some neurons of a CubaLIF layer but not all; "
                    "Brian2's exact solution differs between the two cases — make them all "
                    "equal or all different"
                )

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    @property
    def bias_or_zero(self) -> np.ndarray:
        return np.zeros(self.n_out) if self.bias is None else self.bias

    def same_as(self, other: LayerSpec, rtol: float = 0.0) -> bool:
        return (
            isinstance(other, LayerSpec)
            and self.weight.shape == other.weight.shape
            and np.allclose(self.weight, other.weight, rtol=rtol, atol=0.0)
            and np.allclose(self.bias_or_zero, other.bias_or_zero, rtol=rtol, atol=0.0)
            and self.neuron.same_as(other.neuron, self.n_out, rtol)
        )


@dataclass(frozen=True, eq=False)
class FeedForwardSpec:
    """``n_in`` input channels followed by ``layers``; each layer's ``n_in`` is the previous
    layer's ``n_out``. LI (non-spiking) layers may only come last."""

    n_in: int
    layers: tuple[LayerSpec, ...]

    def __post_init__(self) -> None:
        if not is_integer(self.n_in):
            raise TypeError(f"n_in: expected an int, got {self.n_in!r}")
        if self.n_in < 1:
            raise ValueError(f"n_in: expected >= 1 input channels, got {self.n_in}")
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("layers: need at least one layer")
        named = []
        width = int(self.n_in)
        for k, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                raise TypeError(f"layers[{k}]: expected LayerSpec, got {type(layer).__name__}")
            if layer.n_in != width:
                raise ValueError(
                    f"layers[{k}].weight: shape {layer.weight.shape} takes {layer.n_in} inputs "
                    f"but the previous layer has {width} outputs"
                )
            if layer.neuron.model == "LI" and k != len(layers) - 1:
                raise ValueError(
                    f"layers[{k}]: an LI layer emits no spikes, so it can only be the last layer"
                )
            named.append(layer if layer.name else replace(layer, name=f"layer{k}"))
            width = layer.n_out
        names = [layer.name for layer in named]
        if len(set(names)) != len(names):
            raise ValueError(f"layers: layer names must be unique, got {names}")
        object.__setattr__(self, "n_in", int(self.n_in))
        object.__setattr__(self, "layers", tuple(named))

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.n_in, *(layer.n_out for layer in self.layers))

    def same_as(self, other: FeedForwardSpec, rtol: float = 0.0) -> bool:
        """Same architecture, weights, biases and neurons (``rtol=0``: identical floats)."""
        return (
            isinstance(other, FeedForwardSpec)
            and self.sizes == other.sizes
            and all(a.same_as(b, rtol) for a, b in zip(self.layers, other.layers, strict=True))
        )

    def with_weights(
        self, weights: list[np.ndarray], biases: list[np.ndarray | None] | None = None
    ) -> FeedForwardSpec:
        """The same network with new weights (and biases, where given)."""
        if len(weights) != len(self.layers):
            raise ValueError(f"weights: {len(weights)} matrices for {len(self.layers)} layers")
        biases = biases if biases is not None else [layer.bias for layer in self.layers]
        layers = tuple(
            replace(layer, weight=w, bias=b)
            for layer, w, b in zip(self.layers, weights, biases, strict=True)
        )
        return FeedForwardSpec(self.n_in, layers)


def cuba_lif_from_lifparams(params, w_unit: Quantity) -> NeuronParams:
    """The CubaLIF equivalent of :class:`plastix.circuits.neurons.LIFParams` with synaptic
    jumps ``I_syn += w * w_unit``: ``v_leak = v_rest`` and ``R = w_unit * tau_syn`` (their
    ``I_syn`` in volts is ``R I_s`` here)."""
    for name in ("tau_m", "tau_syn", "v_rest", "v_reset", "v_th", "t_ref"):
        if not hasattr(params, name):
            raise TypeError(f"params: expected a LIFParams (missing {name!r}), got {params!r}")
    _si(w_unit, "w_unit", volt)
    return NeuronParams(
        model="CubaLIF",
        tau_mem=params.tau_m,
        tau_syn=params.tau_syn,
        v_leak=params.v_rest,
        v_th=params.v_th,
        v_reset=params.v_reset,
        R=w_unit * params.tau_syn,
        refractory=params.t_ref,
        reset="value",
    )


def from_ib_circuit(spec, weights) -> tuple[FeedForwardSpec, np.ndarray]:
    """The :class:`plastix.circuits.ib_network.IBCircuit` with ``weights`` as a feed-forward
    description, plus its readout bias (a logit offset, outside the neuron dynamics).

    Hidden layers: :func:`cuba_lif_from_lifparams`. Readout: the circuit's logit
    ``a_k = sum_j W_kj trace_j / (tau_pre rate_norm)``, whose presynaptic ``trace`` jumps by 1
    per spike and decays by ``1 - dt / tau_pre`` per step (Euler), is an LI layer (volts read
    as logits) with ``tau = -dt / ln(1 - dt / tau_pre)`` and ``R = tau * 1 V / (tau_pre
    rate_norm)``. The circuit's prediction is the argmax of ``a + b`` averaged over the
    learning window.
    """
    weights.check(spec)
    dt = float(spec.timing.dt)
    tau_pre = float(spec.readout_tau_pre)
    if dt >= tau_pre:
        raise ValueError(f"readout_tau_pre: {spec.readout_tau_pre!r} must exceed dt = {dt} s")
    tau = -dt / np.log1p(-dt / tau_pre)
    hidden = cuba_lif_from_lifparams(spec.lif, spec.w_unit)
    layers = [
        LayerSpec(np.asarray(w, dtype=float), hidden, name=f"hidden{k}")
        for k, w in enumerate(weights.hidden)
    ]
    readout = NeuronParams(
        "LI",
        tau_mem=tau * second,
        v_leak=0 * volt,
        R=tau / (tau_pre * float(spec.readout_rate_norm)) * volt * second,
    )
    layers.append(LayerSpec(np.asarray(weights.readout, dtype=float), readout, name="readout"))
    return FeedForwardSpec(int(spec.n_input), tuple(layers)), np.asarray(weights.bias, float)


# -- Brian2 ---------------------------------------------------------------------------------

_CONSTANTS = {
    "tau_mem": "second",
    "tau_syn": "second",
    "v_leak": "volt",
    "v_th": "volt",
    "v_reset": "volt",
    "refractory": "second",
}
# Brian2 reserves ``refractory``; the constant is called ``t_ref`` in the equations.
_BRIAN_NAME = {"refractory": "t_ref"}


def _equations(params: NeuronParams, equal_taus: bool, refractory: bool) -> str:
    """Brian2 model string; every parameter is a per-neuron constant, ``b`` is the bias.

    ``(unless refractory)`` only for a layer with refractory periods (all > 0: NeuronParams
    refuses a mix with 0): Brian2 also discards synaptic increments of such a variable while
    the target is refractory, which includes the step of the spike itself even for a zero
    refractory period.
    """
    model = params.model
    unless = " (unless refractory)" if refractory else ""
    if model in ("LIF", "LI"):
        body = f"dv/dt = (v_leak - v + R * b) / tau_mem : volt{unless}\n"
    elif model == "CubaLIF":
        tau_syn = "tau_mem" if equal_taus else "tau_syn"
        body = (
            f"dv/dt = (v_leak - v + R * I) / tau_mem : volt{unless}\n"
            f"dI/dt = (b - I) / {tau_syn} : Hz\n"
        )
    else:  # IF
        body = f"dv/dt = R * b : volt{unless}\n"
    r_unit = "volt" if model == "IF" else "volt * second"
    consts = [f"R : {r_unit} (constant)", "b : Hz (constant)"]
    consts += [
        f"{_BRIAN_NAME.get(k, k)} : {_CONSTANTS[k]} (constant)"
        for k in MODEL_FIELDS[model]
        if k in _CONSTANTS
    ]
    return body + "\n".join(consts)


def _on_pre(model: str) -> str:
    return {
        "LIF": "v_post += w * R_post / tau_mem_post",
        "LI": "v_post += w * R_post / tau_mem_post",
        "IF": "v_post += w * R_post",
        "CubaLIF": "I_post += w / tau_syn_post",
    }[model]


def raster_to_spike_times(raster: np.ndarray, dt: Quantity) -> tuple[np.ndarray, Quantity]:
    """``(indices, times)`` for a ``SpikeGeneratorGroup`` from a boolean raster ``(T, n)`` or
    ``(T, copies, n)`` (channel ``c * n + j`` for copy ``c``); step ``s`` fires at ``s * dt``."""
    raster = np.asarray(raster)
    if raster.ndim not in (2, 3):
        raise ValueError(f"raster: expected (T, n) or (T, copies, n), got shape {raster.shape}")
    if raster.dtype != bool and not np.all((raster == 0) | (raster == 1)):
        raise ValueError("raster: expected 0/1 (or bool) entries: one spike at most per step")
    flat = raster.reshape(raster.shape[0], -1).astype(bool)
    steps, idx = np.nonzero(flat)
    return idx.astype(np.int64), steps * _si(dt, "dt", second).item() * second


@dataclass
class FeedForwardCircuit:
    """The Brian2 objects of one :class:`FeedForwardSpec` (``copies`` independent replicas
    side by side: neuron ``c * n + i`` of a group is neuron ``i`` of copy ``c``)."""

    spec: FeedForwardSpec
    copies: int
    dt: Quantity
    input_group: object
    groups: list[NeuronGroup]
    synapses: list[Synapses]
    spike_monitors: dict[str, SpikeMonitor]
    state_monitors: dict[str, StateMonitor]
    network: Network

    def spike_raster(self, name: str, n_steps: int) -> np.ndarray:
        """Recorded spikes of layer ``name`` as a bool array ``(n_steps, copies, n)``."""
        mon = self.spike_monitors[name]
        n = len(mon.source) // self.copies
        out = np.zeros((n_steps, self.copies * n), dtype=bool)
        steps = np.round(np.asarray(mon.t_[:]) / float(self.dt)).astype(np.int64)
        keep = steps < n_steps
        out[steps[keep], np.asarray(mon.i[:])[keep]] = True
        return out.reshape(n_steps, self.copies, n)

    def membrane(self, name: str) -> np.ndarray:
        """Recorded ``v`` (volts) of layer ``name`` as ``(n_steps, copies, n)``."""
        mon = self.state_monitors[name]
        # a copy: from Brian2 2.10 on, a runtime monitor's arrays are views into memory that
        # is freed with the monitor, so a view returned from here would read garbage later
        v = np.array(mon.v_[:]).T
        return v.reshape(v.shape[0], self.copies, -1)


def _positive_int(value: object, name: str) -> int:
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


def build_brian2(
    spec: FeedForwardSpec,
    inputs: np.ndarray | object,
    dt: Quantity,
    *,
    copies: int = 1,
    record_spikes: bool | str | tuple[str, ...] = True,
    record_membrane: bool | str | tuple[str, ...] = False,
    name: str = "ff",
) -> FeedForwardCircuit:
    """Brian2 objects for ``spec`` driven by ``inputs``; create them after choosing the device.

    ``inputs``: a 0/1 raster ``(T, n_in)`` or ``(T, copies, n_in)`` (step ``s`` at time
    ``s * dt``, fed through a ``SpikeGeneratorGroup``), or any Brian2 group with
    ``copies * n_in`` neurons that emits spikes (e.g. ``PoissonEncoder.group``).
    ``record_spikes`` / ``record_membrane``: True for every layer, a layer name or a tuple of
    layer names (membranes are recorded at every step; LI layers have no spikes). Every object
    gets ``dt`` as its clock step. Returns a :class:`FeedForwardCircuit` whose ``network`` holds
    everything; run it with ``circuit.network.run(T * dt)``.
    """
    if not isinstance(spec, FeedForwardSpec):
        raise TypeError(f"spec: expected a FeedForwardSpec, got {type(spec).__name__}")
    step = _si(dt, "dt", second)
    if step.ndim or step <= 0:
        raise ValueError(f"dt: expected one positive time step, got {dt!r}")
    copies = _positive_int(copies, "copies")
    layer_names = [layer.name for layer in spec.layers]

    def chosen(flag, what: str) -> set[str]:
        if flag is True:
            return set(layer_names)
        if flag is False:
            return set()
        names = {flag} if isinstance(flag, str) else set(flag)
        unknown = names - set(layer_names)
        if unknown:
            raise ValueError(f"{what}: unknown layer names {sorted(unknown)}; have {layer_names}")
        return names

    spiking_names = chosen(record_spikes, "record_spikes")
    membrane_names = chosen(record_membrane, "record_membrane")

    if isinstance(inputs, np.ndarray) or isinstance(inputs, list | tuple):
        raster = np.asarray(inputs)
        expected = (spec.n_in,) if copies == 1 and raster.ndim == 2 else (copies, spec.n_in)
        if tuple(raster.shape[1:]) != expected:
            raise ValueError(
                f"inputs: raster shape {raster.shape}; expected (T, {spec.n_in}) or "
                f"(T, {copies}, {spec.n_in}) for copies={copies}"
            )
        indices, times = raster_to_spike_times(raster, dt)
        input_group = SpikeGeneratorGroup(
            copies * spec.n_in, indices, times, dt=dt, name=f"{name}_input"
        )
    else:
        if not hasattr(inputs, "N") or len(inputs) != copies * spec.n_in:
            raise ValueError(
                f"inputs: expected a raster or a Brian2 group of copies * n_in = "
                f"{copies * spec.n_in} neurons, got {inputs!r}"
            )
        input_group = inputs

    groups: list[NeuronGroup] = []
    synapses: list[Synapses] = []
    spike_monitors: dict[str, SpikeMonitor] = {}
    state_monitors: dict[str, StateMonitor] = {}
    source = input_group
    for layer in spec.layers:
        params = layer.neuron
        n = layer.n_out
        values = params.values(n)
        equal_taus = params.model == "CubaLIF" and bool(
            np.all(values["tau_syn"] == values["tau_mem"])
        )
        kwargs = {}
        refractory = params.model in SPIKING and bool(np.any(values["refractory"] > 0))
        if params.model in SPIKING:
            kwargs["threshold"] = "v > v_th"
            kwargs["reset"] = (
                "v = v_reset" if params.reset == "value" else "v = v - (v_th - v_reset)"
            )
        if refractory:
            kwargs["refractory"] = "t_ref"
        group = NeuronGroup(
            copies * n,
            _equations(params, equal_taus, refractory),
            # IF has a constant derivative, which Euler integrates exactly
            method="euler" if params.model == "IF" else "exact",
            dt=dt,
            name=f"{name}_{layer.name}",
            namespace={},
            **kwargs,
        )
        group.R_ = np.tile(values["R"], copies)
        group.b_ = np.tile(layer.bias_or_zero, copies)
        for key in MODEL_FIELDS[params.model]:
            if key in _CONSTANTS:
                setattr(group, _BRIAN_NAME.get(key, key) + "_", np.tile(values[key], copies))
        group.v_ = np.tile(values["v_reset"] if params.model == "IF" else values["v_leak"], copies)
        syn = Synapses(
            source,
            group,
            "w : 1 (constant)",
            on_pre=_on_pre(params.model),
            dt=dt,
            name=f"{name}_{layer.name}_syn",
            namespace={},
        )
        pre = np.repeat(np.arange(copies * layer.n_in), n)
        post = (np.repeat(np.arange(copies), layer.n_in * n) * n) + np.tile(
            np.arange(n), copies * layer.n_in
        )
        syn.connect(i=pre, j=post)
        syn.w_ = np.tile(layer.weight.T.reshape(-1), copies)
        # deliver after the postsynaptic reset, so input arriving in a spike's step survives it
        syn.pre.when = "after_resets"
        groups.append(group)
        synapses.append(syn)
        if layer.name in spiking_names and params.model in SPIKING:
            spike_monitors[layer.name] = SpikeMonitor(group, name=f"{name}_{layer.name}_spikes")
        if layer.name in membrane_names:
            # recorded at threshold time: after this step's update, before synaptic input
            state_monitors[layer.name] = StateMonitor(
                group, "v", record=True, dt=dt, when="thresholds", name=f"{name}_{layer.name}_v"
            )
        source = group

    objects = [input_group, *groups, *synapses, *spike_monitors.values(), *state_monitors.values()]
    return FeedForwardCircuit(
        spec=spec,
        copies=copies,
        dt=dt,
        input_group=input_group,
        groups=groups,
        synapses=synapses,
        spike_monitors=spike_monitors,
        state_monitors=state_monitors,
        network=Network(*objects),
    )


def run_raster(
    spec: FeedForwardSpec,
    raster: np.ndarray,
    dt: Quantity,
    *,
    extra_steps: int | None = None,
    record_membrane: bool | str | tuple[str, ...] = False,
    backend: str | None = None,
    directory=None,
    name: str = "ff",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Simulate ``spec`` on a 0/1 raster ``(T, copies, n_in)`` for ``T + extra_steps`` steps
    (default: one extra step per layer, the spike transit time).

    ``backend``: None runs on the current Brian2 device (runtime); a name (``numpy``,
    ``cython``, ``cpp_standalone``, ``cuda_standalone``, ``auto``) activates it through
    :func:`plastix.circuits.backend.activate_backend` for this run (``directory``: the
    standalone build folder). Returns ``(spikes, membranes)``: per layer name,
    ``(steps, copies, n)`` bool rasters (spiking layers) and membranes in volts at threshold
    time (the layers in ``record_membrane``).
    """
    raster = np.asarray(raster)
    if raster.ndim != 3:
        raise ValueError(f"raster: expected (T, copies, n_in), got shape {raster.shape}")
    extra = len(spec.layers) if extra_steps is None else extra_steps
    if not is_integer(extra) or extra < 0:
        raise ValueError(f"extra_steps: expected an int >= 0, got {extra_steps!r}")
    n_steps = raster.shape[0] + int(extra)

    def simulate(run) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        circuit = build_brian2(
            spec, raster, dt, copies=raster.shape[1], record_membrane=record_membrane, name=name
        )
        run(circuit.network, n_steps * dt)
        spikes = {k: circuit.spike_raster(k, n_steps) for k in circuit.spike_monitors}
        membranes = {k: circuit.membrane(k) for k in circuit.state_monitors}
        return spikes, membranes

    if backend is None:
        return simulate(lambda net, duration: net.run(duration, namespace={}))
    from .backend import activate_backend

    with activate_backend(backend, directory=directory) as sim:

        def run(net, duration) -> None:
            sim.run_network(net, duration, namespace={})
            sim.build(run=True)

        return simulate(run)
