"""The feed-forward spiking IB circuit: Poisson input -> LIF hidden layers -> rate readout.

Hidden projections carry the IB three-factor rule (:mod:`plastix.plasticity.ib_rule`); the
readout is trained with the softmax cross-entropy delta rule on presynaptic rates,
``dW_kj/dt = eta_r * gate * (y_k - p_k) * r_j / rate_norm`` (as the last layer of the rate
reference, Daruwalla & Lipasti 2024), where ``r_j`` is the presynaptic rate minus its long-run
mean (:class:`~plastix.circuits.layers.LIFLayer`'s ``rate_mean``, the covariance rule's
centring). The two sides read ``r_j`` differently: the logits from the rate trace ``rtrace``
(time constant ``tau_pre``, reset at every sample end, so it lags the spikes early in the
window: about 0.6-0.75 of the window rate on average at the default timing), the update from
the spikes themselves; and ``rate_mean`` averages whole slots, settle included, so neither
side is zero-mean within the window. The update is therefore a delta rule with the forward
pass's sign structure, not its exact gradient. Forms that are exact gradients (of the
cross-entropy integrated over the window, or of the cross-entropy of the window-averaged
logits, rates centred on their window mean) were measured on 2026-12-06: on digits as good or
better, on a 1000/1000 Fashion-MNIST subset with IB-trained hidden layers 4-6 points worse
(readout rates 0.4-2.5/s, trace time constants 2-20 ms), so this form stays. All of it is
Brian2 equations, so the circuit builds for runtime, cpp_standalone and cuda_standalone alike.
Weight updates are applied at the end of each sample; the training modes differ in who
supplies ξ: :class:`ExactXiTrainer` (Python computes the exact ξ after each sample: the
reference) and :class:`CompiledEpochTrainer` (a ξ-modulator reservoir inside the simulation,
:class:`ReservoirXi`, whole epochs as single runs).

Weights are exchanged as :class:`CircuitWeights` in the ``torch.nn.Linear`` layout
``(n_post, n_pre)``.
"""

from __future__ import annotations

import gc
import hashlib
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from brian2 import (
    EventMonitor,
    Hz,
    Network,
    NeuronGroup,
    Quantity,
    SpikeMonitor,
    TimedArray,
    ms,
    mV,
    second,
)

from plastix.plasticity.ib_rule import IBThreeFactor, apply_eligibility_update
from plastix.reservoirs.xi_modulator import KernelMemoryModulator, XiModulator
from plastix.scalars import is_integer

from .encoders import PoissonEncoder, make_schedule
from .kernel_memory import (
    LAYER_NORM_EQUATIONS,
    KernelMemoryXi,
    check_fits_layer,
    check_kernel_memory_modulator,
)
from .layers import DenseProjection, LIFLayer, RateReadout, SampleTiming, learn_schedule
from .neurons import LIFParams

__all__ = [
    "CircuitWeights",
    "CompiledEpochTrainer",
    "ExactXiTrainer",
    "PassResult",
    "WorkingMemory",
    "XiSettings",
    "layer_xi",
    "IBCircuit",
    "IBCircuitSpec",
    "SampleRecord",
    "init_weights",
]


def _positive_int(value: object, name: str) -> int:
    if not is_integer(value) or value < 1:
        raise ValueError(f"{name}: expected an int >= 1, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class IBCircuitSpec:
    """Architecture and physics of the circuit.

    ``w_unit``: the jump of ``I_syn`` per unit weight. ``input_rate``: Poisson rate of an input
    channel at value 1. ``readout_eta`` (per second), ``readout_tau_pre`` and
    ``readout_rate_norm`` configure the readout's delta rule and its rate traces.
    ``rate_mean_tau``: averaging time of the hidden neurons' ``rate_mean``. ``plastic=False``
    builds the same circuit with static synapses (the speed baseline).
    """

    n_input: int = 64
    hidden: tuple[int, ...] = (100,)
    n_classes: int = 10
    lif: LIFParams = field(default_factory=LIFParams)
    timing: SampleTiming = field(default_factory=SampleTiming)
    rule: IBThreeFactor = field(default_factory=IBThreeFactor)
    input_rate: Quantity = field(default_factory=lambda: 100 * Hz)
    w_unit: Quantity = field(default_factory=lambda: 1 * mV)
    readout_eta: Quantity = field(default_factory=lambda: 5 * Hz)
    readout_tau_pre: Quantity = field(default_factory=lambda: 20 * ms)
    readout_rate_norm: Quantity = field(default_factory=lambda: 100 * Hz)
    rate_mean_tau: Quantity = field(default_factory=lambda: 1 * second)
    plastic: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_input", _positive_int(self.n_input, "n_input"))
        object.__setattr__(self, "n_classes", _positive_int(self.n_classes, "n_classes"))
        if self.n_classes < 2:
            raise ValueError(f"n_classes: need >= 2, got {self.n_classes!r}")
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise ValueError(
                f"hidden: expected a non-empty tuple of layer sizes, got {self.hidden!r}"
            )
        hidden = tuple(_positive_int(n, f"hidden[{k}]") for k, n in enumerate(self.hidden))
        object.__setattr__(self, "hidden", hidden)
        for name, kind in (("lif", LIFParams), ("timing", SampleTiming), ("rule", IBThreeFactor)):
            value = getattr(self, name)
            if not isinstance(value, kind):
                raise TypeError(
                    f"{name}: expected an instance of {kind.__name__}, got "
                    f"{type(value).__name__}; omit it for the default {kind.__name__}()"
                )
        for name, unit in (
            ("input_rate", Hz),
            ("w_unit", mV),
            ("readout_eta", Hz),
            ("readout_tau_pre", ms),
            ("readout_rate_norm", Hz),
            ("rate_mean_tau", second),
        ):
            value = getattr(self, name)
            if not isinstance(value, Quantity) or not value.has_same_dimensions(unit):
                raise TypeError(f"{name}: expected a Brian2 quantity in {unit!r}, got {value!r}")
            magnitude = float(value)
            if not math.isfinite(magnitude):
                raise ValueError(f"{name}: must be finite, got {value!r}")
            if magnitude < 0 or (name != "readout_eta" and magnitude == 0):
                raise ValueError(f"{name}: must be positive, got {value!r}")

    @property
    def layer_sizes(self) -> tuple[int, ...]:
        return (self.n_input, *self.hidden, self.n_classes)

    def static(self) -> IBCircuitSpec:
        """The same circuit with static synapses."""
        return replace(self, plastic=False)


@dataclass
class CircuitWeights:
    """Hidden weight matrices ``(n_post, n_pre)``, the readout matrix and its bias."""

    hidden: list[np.ndarray]
    readout: np.ndarray
    bias: np.ndarray

    def copy(self) -> CircuitWeights:
        return CircuitWeights(
            [w.copy() for w in self.hidden], self.readout.copy(), self.bias.copy()
        )

    def check(self, spec: IBCircuitSpec) -> None:
        sizes = spec.layer_sizes
        if len(self.hidden) != len(spec.hidden):
            raise ValueError(
                f"weights: {len(self.hidden)} hidden matrices for {len(spec.hidden)} layers"
            )
        for k, w in enumerate(self.hidden):
            if w.shape != (sizes[k + 1], sizes[k]):
                raise ValueError(
                    f"weights.hidden[{k}]: shape {w.shape}, expected {(sizes[k + 1], sizes[k])}"
                )
        if self.readout.shape != (spec.n_classes, sizes[-2]):
            raise ValueError(
                f"weights.readout: shape {self.readout.shape}, "
                f"expected {(spec.n_classes, sizes[-2])}"
            )
        if self.bias.shape != (spec.n_classes,):
            raise ValueError(f"weights.bias: shape {self.bias.shape}, expected ({spec.n_classes},)")
        named = [(f"hidden[{k}]", w) for k, w in enumerate(self.hidden)]
        for name, w in [*named, ("readout", self.readout), ("bias", self.bias)]:
            if not np.all(np.isfinite(w)):
                raise ValueError(f"weights.{name}: contains NaN or inf")


def init_weights(
    spec: IBCircuitSpec, rng: np.random.Generator, mean: float = 1.0, spread: float = 2.0
) -> CircuitWeights:
    """Random initial weights.

    Hidden: ``W_ij ~ N(mean * 64 / n_pre, (spread * sqrt(64 / n_pre))^2)`` (clipped to the
    rule's bounds): the mean drive and its spread across neurons do not depend on the fan-in
    (the values are those of a 64-input layer); readout: ``N(0, 1/n_pre)``; bias 0.
    """
    if not (np.isfinite(mean) and np.isfinite(spread) and spread >= 0):
        raise ValueError(f"mean, spread: {mean!r}, {spread!r}; give finite values, spread >= 0")
    sizes = spec.layer_sizes
    hidden = []
    for k in range(len(spec.hidden)):
        n_pre, n_post = sizes[k], sizes[k + 1]
        scale = 64.0 / n_pre
        w = rng.normal(mean * scale, spread * np.sqrt(scale), size=(n_post, n_pre))
        hidden.append(np.clip(w, spec.rule.w_min, spec.rule.w_max))
    readout = rng.normal(0.0, 1.0 / np.sqrt(sizes[-2]), size=(spec.n_classes, sizes[-2]))
    return CircuitWeights(hidden, readout, np.zeros(spec.n_classes))


@dataclass
class SampleRecord:
    """What one slot produced: window spike counts per hidden layer, readout logits averaged
    over the window and the accumulated bias update."""

    counts: list[np.ndarray]
    logits: np.ndarray
    bias_acc: np.ndarray


# ------------------------------------------------------------------------------------------
# The ξ-modulator inside the simulation (Brian2 form of a trained XiModulator)
# ------------------------------------------------------------------------------------------

#: Scheduling at each sample boundary (``groups`` slot of the slot clock), in this order:
#: layer statistics, reservoir inputs, reservoir step, readout, ξ statistics, weight update.
_ORDER = {
    "z_copy": -70,
    "z_stats": -60,
    "res_in": -50,
    "res_step": -40,
    "xi_read": -30,
    "xi_stats": -20,
    "xi_copy": -15,
}
_ORDER_UPDATE = -10
_LN_EPS = 1e-5

#: The modulated LIF layer only receives ξ (see :class:`ReservoirXi`).
RESERVOIR_LAYER_EQUATIONS = "res_xi : 1\n"

#: The per-neuron side of the modulator, on the slot clock.
_MODULATOR_EQUATIONS = (
    LAYER_NORM_EQUATIONS
    + """
xr : 1
g = mod_scale * (xr + c0_tab(prev_label(t - half_slot) * second) + c1_tab(prev_label(t - half_slot) * second) * z_norm) : 1
"""  # noqa: E501
)


def _check_modulator(modulator, n_neurons: int, n_classes: int, n_input: int):
    """Check that ``modulator`` has a Brian2 form for a layer of ``n_neurons``; returns its
    config. Kernel-memory modulators go to :mod:`plastix.circuits.kernel_memory`."""
    if isinstance(modulator, KernelMemoryModulator):
        return check_kernel_memory_modulator(modulator, n_neurons, n_classes, n_input)
    if not isinstance(modulator, XiModulator):
        raise TypeError(
            "xi_modulators: expected XiModulator or KernelMemoryModulator, got "
            f"{type(modulator).__name__}"
        )
    cfg = modulator.config
    if cfg.architecture != "factorised" or getattr(cfg, "window_products", False):
        raise ValueError(
            f"xi_modulators: architecture {cfg.architecture!r} (window_products="
            f"{getattr(cfg, 'window_products', False)}) has no Brian2 form here; fit one with "
            "XiModulatorConfig(architecture='factorised') and no window products"
        )
    check_fits_layer(modulator, n_neurons, n_classes)
    return cfg


def modulator_tables(modulator) -> dict[str, np.ndarray]:
    """The factorised, label-gated modulator (Daruwalla & Lipasti 2024 reservoir; plastix
    :mod:`~plastix.reservoirs.xi_modulator`) rewritten for one-hot labels ``l``.

    Neuron ``i``'s reservoir input ``e = [y, y z_i, z_i]`` gives the drive
    ``W_in e + b = A[l] + B[l] z_i + b`` with ``A[l, m] = W_in[m, l]`` and ``B[l, m] =
    W_in[m, C + l] + W_in[m, 2C]``; its gated readout over ``[s, e]`` is
    ``xi_hat_i = Wg[l] . s_i + c0[l] + c1[l] z_i`` with ``Wg[l] = W_l[:N]``,
    ``c0[l] = W_l[N + l] + b_l`` and ``c1[l] = W_l[N + C + l] + W_l[N + 2C]``.
    """
    cfg = modulator.config
    c, n = cfg.n_classes, cfg.n_units
    w_in = modulator.weights.input.detach().double().cpu().numpy()  # (N, 2C + 1)
    labels = np.arange(c)
    tables = {
        "A": w_in[:, :c].T.copy(),
        "B": (w_in[:, c : 2 * c] + w_in[:, 2 * c : 2 * c + 1]).T.copy(),
        "bias": modulator.weights.bias.detach().double().cpu().numpy(),
        "recurrent": modulator.weights.recurrent.detach().double().cpu().numpy(),
    }
    readouts = modulator.readouts if cfg.gated else [modulator.readouts[0]] * c
    weight = np.stack([r.weight.detach().double().cpu().numpy()[0] for r in readouts])  # (C, F)
    bias = np.array([float(r.bias.detach().double().cpu().numpy()[0]) for r in readouts])
    tables["Wg"] = weight[:, :n].copy()
    tables["c0"] = weight[labels, n + labels] + bias
    tables["c1"] = weight[labels, n + c + labels] + weight[:, n + 2 * c]
    return tables


class ReservoirXi:
    """ξ for one LIF layer from a trained factorised ξ-modulator, inside the simulation.

    Every neuron ``i`` has its own copy of the modulator's reservoir (``N`` units, the same
    weights), stepped once per sample at the sample boundary on a clock of period ``slot``:
    ``s_i <- (1 - a) s_i + a f(W s_i + A[l] + B[l] z_i + b)``, with ``l`` the label and
    ``z_i`` the LayerNorm of the layer's window rates of the sample that just ended (the
    modulator was trained on LayerNorm'd activity). The gated readout gives ``xi_hat`` and
    ``g = xi_scale * xi_hat`` (``mod_scale`` in the equations: Brian2 reserves ``xi*``), ξ
    with respect to the normalised rates; the LayerNorm VJP maps it back to the rates,
    ``res_xi = (g - mean g - z mean(g z)) / std``, which is copied into the layer. The
    per-neuron quantities live in a slot-clock group ``units`` (summed variables run on their
    target's clock, so nothing here costs anything between sample boundaries); all sums over
    neurons are summed variables and nothing runs in Python, so it builds for every backend.
    """

    def __init__(self, modulator, layer: LIFLayer, n_classes: int, prev_label, name: str):
        from brian2 import Synapses

        cfg = _check_modulator(modulator, layer.n, n_classes, 0)
        tables = modulator_tables(modulator)
        n, units = layer.n, cfg.n_units
        slot = layer.timing.slot
        weights = modulator.weights
        namespace = {
            "n_layer": n,
            "ln_eps": _LN_EPS,
            "mod_scale": float(cfg.xi_scale),
            "c0_tab": TimedArray(tables["c0"], dt=1 * second, name=f"{name}_c0"),
            "c1_tab": TimedArray(tables["c1"], dt=1 * second, name=f"{name}_c1"),
            "A_tab": TimedArray(tables["A"], dt=1 * second, name=f"{name}_A"),
            "B_tab": TimedArray(tables["B"], dt=1 * second, name=f"{name}_B"),
            "Wg_tab": TimedArray(tables["Wg"], dt=1 * second, name=f"{name}_Wg"),
            "prev_label": prev_label,
            "half_slot": slot / 2,
            "leak": float(weights.leak),
        }
        self.units = NeuronGroup(
            n, _MODULATOR_EQUATIONS, namespace=namespace, dt=slot, name=f"{name}_units"
        )
        self.units.z_sq_sum = 1.0  # a finite std before the first sample
        activation = "tanh(drive)" if weights.activation == "tanh" else "drive"
        self.reservoir = NeuronGroup(
            n * units,
            """
            s : 1
            zin : 1
            rec : 1
            b_r : 1 (constant)
            m : integer (constant)
            drive = rec + A_tab(prev_label(t - half_slot) * second, m) + B_tab(prev_label(t - half_slot) * second, m) * zin + b_r : 1
            """,  # noqa: E501
            namespace=namespace,
            dt=slot,
            name=f"{name}_res",
        )
        self.reservoir.m = np.tile(np.arange(units), n)
        self.reservoir.b_r = np.tile(tables["bias"], n)
        self.reservoir.run_regularly(
            f"s = (1 - leak) * s + leak * {activation}",
            dt=slot,
            when="groups",
            order=_ORDER["res_step"],
            name=f"{name}_res_step",
        )
        one_to_one = {"i": np.arange(n), "j": np.arange(n)}
        self.synapses = {
            "z_copy": (layer.group, self.units, "z_in_post = z_last_pre : 1 (summed)", one_to_one),
            "z_stats": (
                self.units,
                self.units,
                "z_sum_post = z_in_pre : 1 (summed)\nz_sq_sum_post = z_in_pre**2 : 1 (summed)",
                None,
            ),
            "res_in": (
                self.units,
                self.reservoir,
                "zin_post = z_norm_pre : 1 (summed)",
                {"i": np.repeat(np.arange(n), units), "j": np.arange(n * units)},
            ),
            "xi_read": (
                self.reservoir,
                self.units,
                "xr_post = Wg_tab(prev_label(t - half_slot) * second, m_pre) * s_pre : 1 (summed)",
                {"i": np.arange(n * units), "j": np.repeat(np.arange(n), units)},
            ),
            "xi_stats": (
                self.units,
                self.units,
                "g_sum_post = g_pre : 1 (summed)\ngn_sum_post = g_pre * z_norm_pre : 1 (summed)",
                None,
            ),
            "xi_copy": (
                self.units,
                layer.group,
                "res_xi_post = res_xi_pre : 1 (summed)",
                one_to_one,
            ),
        }
        built = {}
        for key, (source, target, model, pairs) in self.synapses.items():
            syn = Synapses(
                source, target, model, namespace=namespace, dt=slot, name=f"{name}_{key}"
            )
            if pairs is None:
                syn.connect()
            else:
                syn.connect(i=pairs["i"], j=pairs["j"])
            for updater in syn.summed_updaters.values():
                updater.order = _ORDER[key]
            built[key] = syn
        post_m, pre_m = np.nonzero(tables["recurrent"])
        blocks = np.arange(n)[:, None] * units
        recurrent = Synapses(
            self.reservoir,
            self.reservoir,
            "w : 1 (constant)\nrec_post = w * s_pre : 1 (summed)",
            namespace=namespace,
            dt=slot,
            name=f"{name}_rec",
        )
        recurrent.connect(i=(blocks + pre_m).ravel(), j=(blocks + post_m).ravel())
        recurrent.w = np.tile(tables["recurrent"][post_m, pre_m], n)
        for updater in recurrent.summed_updaters.values():
            updater.order = _ORDER["res_in"]
        built["recurrent"] = recurrent
        self.synapses = built

    @property
    def objects(self) -> list:
        return [self.units, self.reservoir, *self.synapses.values()]


_READOUT_MODEL = """
w : 1
acc : second
acc_last : second
a_post = w * (rtrace_pre / (tau_pre * rate_norm) - rate_mean_pre) : 1 (summed)
"""
# A presynaptic spike is 1 / rate_norm of rate-time, so ``acc`` sums
# integral gate (y - p) r / rate_norm dt; the centring term -rate_mean * integral gate (y - p)
# dt = -rate_mean * bias_acc is added at the readout's sample_end event, which also applies
# the sample's update (eta_online > 0) and keeps it in ``acc_last`` for a Python loop.
_READOUT_ON_PRE = "acc += gate_post * (y_post - p_post) / rate_norm"
_READOUT_ON_SAMPLE_END = """
acc_last = acc - rate_mean_pre * bias_acc_post
w += eta_online_post * acc_last
acc = 0 * second
"""

_STATIC_READOUT_MODEL = """
w : 1
a_post = w * (rtrace_pre / (tau_pre * rate_norm) - rate_mean_pre) : 1 (summed)
"""


class IBCircuit:
    """Brian2 objects of the circuit for a fixed sequence of ``n_slots`` samples.

    ``samples (n_slots, n_input)`` in [0, 1], ``labels (n_slots,)`` ints, ``learn (n_slots,)``
    0/1. Create it after selecting the Brian2 device. In standalone mode the stimulus, label
    and learn tables and all weights can be replaced per run with :meth:`run_args`.

    ``xi_modulators`` (one trained :class:`~plastix.reservoirs.xi_modulator.XiModulator` per
    hidden layer) puts ξ inside the simulation (:class:`ReservoirXi`): at each sample boundary
    every hidden projection applies the rule's end-of-sample update
    (:meth:`~plastix.plasticity.ib_rule.IBThreeFactor.brian2_sample_update`) with that ξ, for
    samples whose ``learn`` flag is 1 — the whole pass runs with no Python between samples.
    """

    def __init__(
        self,
        spec: IBCircuitSpec,
        samples: np.ndarray,
        labels: np.ndarray,
        learn: np.ndarray,
        weights: CircuitWeights,
        *,
        record_spikes: bool = True,
        name: str = "ib",
        xi_modulators: list | None = None,
    ):
        samples = np.asarray(samples, dtype=float)
        labels = np.asarray(labels)
        if samples.ndim != 2 or samples.shape[1] != spec.n_input:
            raise ValueError(f"samples: shape {samples.shape}; expected (n, {spec.n_input})")
        if labels.shape != (len(samples),):
            raise ValueError(f"labels: shape {labels.shape}; expected ({len(samples)},)")
        weights.check(spec)
        self.spec = spec
        self.n_slots = len(samples)
        timing = spec.timing
        self.stimulus = make_schedule(
            samples, timing.presentation, timing.gap, timing.dt, name=f"{name}_stimulus"
        )
        self.label = TimedArray(self.label_table(labels), dt=timing.slot, name=f"{name}_label")
        self.label_index = TimedArray(
            labels.astype(float), dt=timing.slot, name=f"{name}_label_index"
        )
        self.learn = learn_schedule(learn, timing, name=f"{name}_learn")
        if xi_modulators is not None and len(xi_modulators) != len(spec.hidden):
            raise ValueError(
                f"xi_modulators: {len(xi_modulators)} modulators for {len(spec.hidden)} layers"
            )
        if xi_modulators is not None and not spec.plastic:
            raise ValueError(
                "xi_modulators: a static circuit (plastic=False) has nothing to modulate"
            )
        extra = [("", None)] * len(spec.hidden)
        if xi_modulators is not None:
            for mod, n in zip(xi_modulators, spec.hidden, strict=True):
                _check_modulator(mod, n, spec.n_classes, spec.n_input)
            extra = [(RESERVOIR_LAYER_EQUATIONS, {"half_slot": timing.slot / 2})] * len(spec.hidden)
        self.encoder = PoissonEncoder(
            self.stimulus, spec.n_input, rate_max=spec.input_rate, name=f"{name}_input"
        )
        self.layers = [
            LIFLayer(
                n,
                spec.lif,
                timing,
                self.learn,
                name=f"{name}_hidden{k}",
                rate_norm=spec.readout_rate_norm,
                tau_mean=spec.rate_mean_tau,
                z_rate=spec.rule.rate_norm,
                tau_trace=spec.readout_tau_pre,
                extra_equations=extra[k][0],
                extra_namespace=extra[k][1],
            )
            for k, n in enumerate(spec.hidden)
        ]
        self.modulators: list[ReservoirXi | KernelMemoryXi] = []
        for k, (mod, layer) in enumerate(zip(xi_modulators or [], self.layers, strict=False)):
            if isinstance(mod, XiModulator):
                xi = ReservoirXi(mod, layer, spec.n_classes, self.label_index, f"{name}_xi{k}")
            else:
                xi = KernelMemoryXi(
                    mod,
                    layer,
                    spec.n_classes,
                    self.stimulus.values,
                    spec.n_input,
                    self.label_index,
                    timing,
                    f"{name}_xi{k}",
                )
            self.modulators.append(xi)
        self.readout = RateReadout(
            spec.n_classes, timing, self.learn, self.label, name=f"{name}_readout"
        )
        self.readout.group.eta_online = 0 * Hz
        sources = [self.encoder.group] + [layer.group for layer in self.layers]
        self.projections: list[DenseProjection] = []
        for k, layer in enumerate(self.layers):
            self.projections.append(self._hidden_projection(sources[k], layer, f"{name}_w{k}"))
            if self.modulators:
                self.projections[-1].synapses.run_regularly(
                    spec.rule.brian2_sample_update("res_xi_post", gate="learn(t - half_slot)"),
                    dt=timing.slot,
                    when="groups",
                    order=_ORDER_UPDATE,
                    name=f"{name}_w{k}_xi_update",
                )
        self.readout_projection = self._readout_projection(sources[-1], f"{name}_wout")
        self.set_weights(weights)
        # read after the last step's resets (which count its spikes), before the sample_end
        # operations of the same slot clear the accumulators
        at_sample_end = {"when": "after_resets", "order": -1}
        self.count_monitors = [
            EventMonitor(
                layer.group, "sample_end", ["n_spikes"], name=f"{name}_cnt{k}", **at_sample_end
            )
            for k, layer in enumerate(self.layers)
        ]
        self.readout_monitor = EventMonitor(
            self.readout.group,
            "sample_end",
            ["abar", "bias_acc"],
            name=f"{name}_out",
            **at_sample_end,
        )
        self.spike_monitors: dict[str, SpikeMonitor] = {}
        if record_spikes:
            self.spike_monitors["input"] = SpikeMonitor(self.encoder.group, name=f"{name}_sp_in")
            for k, layer in enumerate(self.layers):
                self.spike_monitors[f"hidden{k}"] = SpikeMonitor(
                    layer.group, name=f"{name}_sp_h{k}"
                )
        self.network = Network(self.objects)

    # -- construction ---------------------------------------------------------------------

    def label_table(self, labels: np.ndarray) -> np.ndarray:
        """One-hot rows, one per slot (held through the gap)."""
        labels = np.asarray(labels)
        if labels.size and not np.all(np.mod(labels, 1) == 0):
            raise ValueError(f"labels: expected whole class indices, got {labels[:5]}")
        if labels.min() < 0 or labels.max() >= self.spec.n_classes:
            raise ValueError(f"labels: values must lie in [0, {self.spec.n_classes})")
        table = np.zeros((len(labels), self.spec.n_classes))
        table[np.arange(len(labels)), labels.astype(int)] = 1.0
        return table

    def _hidden_projection(self, source, layer: LIFLayer, name: str) -> DenseProjection:
        effect = "I_syn_post += w * w_unit"
        namespace = {**layer.namespace, "w_unit": self.spec.w_unit}
        if not self.spec.plastic:
            return DenseProjection(source, layer.group, "w : 1", effect, namespace, name, None)
        form = self.spec.rule.brian2_form()
        kwargs = form.synapses_kwargs(on_pre_effect=effect)
        namespace.update(kwargs["namespace"])
        return DenseProjection(
            source,
            layer.group,
            kwargs["model"],
            kwargs["on_pre"],
            namespace,
            name,
            kwargs.get("method"),
            on_post=kwargs["on_post"],
        )

    def _readout_projection(self, source, name: str) -> DenseProjection:
        namespace = {
            **self.readout.namespace,
            "tau_pre": self.spec.readout_tau_pre,
            "rate_norm": self.spec.readout_rate_norm,
        }
        if not self.spec.plastic:
            return DenseProjection(
                source, self.readout.group, _STATIC_READOUT_MODEL, "", namespace, name, None
            )
        return DenseProjection(
            source,
            self.readout.group,
            _READOUT_MODEL,
            _READOUT_ON_PRE,
            namespace,
            name,
            None,
            on_post=_READOUT_ON_SAMPLE_END,
            on_event={"post": "sample_end"},
        )

    @property
    def objects(self) -> list:
        objs = [self.encoder.group]
        objs += [layer.group for layer in self.layers]
        objs += self.readout.objects
        for modulator in self.modulators:
            objs += modulator.objects
        objs += [p.synapses for p in self.projections]
        objs.append(self.readout_projection.synapses)
        objs += self.count_monitors
        objs.append(self.readout_monitor)
        objs += list(self.spike_monitors.values())
        return objs

    # -- weights -----------------------------------------------------------------------------

    def set_weights(self, weights: CircuitWeights) -> None:
        """Assign weights (runtime, or initial values before a standalone build)."""
        weights.check(self.spec)
        for proj, w in zip(self.projections, weights.hidden, strict=True):
            proj.synapses.w[:] = proj.to_flat(w)
        self.readout_projection.synapses.w[:] = self.readout_projection.to_flat(weights.readout)
        self.readout.group.b[:] = weights.bias

    def run_duration(self, n_slots: int) -> Quantity:
        """Simulated time for ``n_slots`` samples. With in-simulation ξ a sample's hidden
        update runs at the next slot boundary, so the run goes one step past the last slot
        for the last sample's update to happen."""
        duration = n_slots * self.spec.timing.slot
        return duration + self.spec.timing.dt if self.modulators else duration

    def get_weights(self) -> CircuitWeights:
        hidden = [p.to_matrix(p.synapses.w[:]) for p in self.projections]
        readout = self.readout_projection.to_matrix(self.readout_projection.synapses.w[:])
        return CircuitWeights(hidden, readout, np.array(self.readout.group.b[:], dtype=float))

    def get_rate_means(self) -> list[np.ndarray]:
        """Each hidden layer's ``rate_mean`` (long-run rate / rate_norm), copied: the group's
        own array keeps changing as the network runs."""
        return [np.array(layer.group.rate_mean[:], dtype=float) for layer in self.layers]

    def set_rate_means(self, means: list[np.ndarray]) -> None:
        for layer, m in zip(self.layers, means, strict=True):
            layer.group.rate_mean[:] = m

    def eligibility(self) -> list[np.ndarray]:
        """Integrated eligibility ``E`` (seconds) per hidden projection, ``(n_post, n_pre)``."""
        return [p.to_matrix(p.synapses.elig_sum[:]) for p in self.projections]

    def readout_accumulator(self) -> np.ndarray:
        """The readout's delta-rule sum for the last sample, ``(n_out, n_pre)``:
        ``integral gate (y_k - p_k) (r_j / rate_norm - m_j) dt`` (``m``: the last hidden
        layer's rate_mean)."""
        return self.readout_projection.to_matrix(self.readout_projection.synapses.acc_last[:])

    # -- running -----------------------------------------------------------------------------

    def reset_state(self) -> None:
        """Put every state variable back to the values a fresh (standalone) run starts from."""
        for layer in self.layers:
            layer.reset_state()
        self.readout.reset_state()
        if self.spec.plastic:
            for proj in self.projections:
                syn = proj.synapses
                syn.elig_sum_ = 0.0
                if self.spec.rule.update == "continuous":
                    syn.pre_trace_ = 0.0
                    syn.elig_ = 0.0
            self.readout_projection.synapses.acc_ = 0.0
            self.readout_projection.synapses.acc_last_ = 0.0

    def run_args(
        self,
        weights: CircuitWeights | None = None,
        samples: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        learn: np.ndarray | None = None,
        eta_online: Quantity | None = None,
        rate_means: list[np.ndarray] | None = None,
    ) -> dict:
        """``run_args`` for ``device.run`` replacing whatever is given (standalone only)."""
        args: dict = {}
        if rate_means is not None:
            for layer, m in zip(self.layers, rate_means, strict=True):
                args[layer.group.rate_mean] = np.asarray(m, dtype=float)
        if weights is not None:
            weights.check(self.spec)
            for proj, w in zip(self.projections, weights.hidden, strict=True):
                args[proj.synapses.w] = proj.to_flat(w)
            args[self.readout_projection.synapses.w] = self.readout_projection.to_flat(
                weights.readout
            )
            args[self.readout.group.b] = np.asarray(weights.bias, dtype=float)
        if samples is not None:
            args[self.stimulus.values] = self.stimulus.table(samples)
        if labels is not None:
            if len(labels) != self.n_slots:
                raise ValueError(f"labels: {len(labels)} values for {self.n_slots} slots")
            args[self.label] = self.label_table(labels)
            if self.modulators:
                args[self.label_index] = np.asarray(labels, dtype=float)
        if learn is not None:
            learn = np.asarray(learn, dtype=float).reshape(-1)
            if learn.shape != (self.n_slots,):
                raise ValueError(f"learn: {learn.shape} values for {self.n_slots} slots")
            args[self.learn] = learn
        if eta_online is not None:
            args[self.readout.group.eta_online] = eta_online
        return args

    def records(self, first: int = 0) -> list[SampleRecord]:
        """Per-slot records from the sample-end monitors, from event number ``first`` on."""
        counts = [np.asarray(m.n_spikes[:], dtype=float) for m in self.count_monitors]
        idx = [np.asarray(m.i[:]) for m in self.count_monitors]
        logits = np.asarray(self.readout_monitor.abar[:], dtype=float)
        bias_acc = np.asarray(self.readout_monitor.bias_acc_[:], dtype=float)
        out_idx = np.asarray(self.readout_monitor.i[:])
        n_out = self.spec.n_classes
        n_events = len(logits) // n_out
        result = []
        for s in range(first, n_events):
            sel = slice(s * n_out, (s + 1) * n_out)
            order = np.argsort(out_idx[sel])
            layer_counts = []
            for c, i, n in zip(counts, idx, self.spec.hidden, strict=True):
                block = slice(s * n, (s + 1) * n)
                layer_counts.append(c[block][np.argsort(i[block])])
            result.append(SampleRecord(layer_counts, logits[sel][order], bias_acc[sel][order]))
        return result


# ------------------------------------------------------------------------------------------
# Exact-ξ training: a per-sample loop computes ξ from recorded rates (the reference mode)
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class XiSettings:
    """How ξ is computed from the working memory of the last ``window`` samples.

    ``gamma`` / ``sigmas`` / ``method``: :func:`plastix.plasticity.hsic.modulatory_signal`.
    ``site="norm"`` computes ξ for the layer-normalised rates ``n = (z - mean z) / std z`` and
    maps it back to the rates through the LayerNorm vector-Jacobian product (as the rate
    reference does with its LayerNorm, ``xi_site="norm"``); ``site="rate"`` uses the
    normalised rates ``z = r / rate_norm`` directly.
    """

    gamma: float = 2.0
    sigmas: tuple[float, float, float] = (0.5, 0.1, 1.0)
    window: int = 8
    method: str = "exact"
    site: str = "norm"

    def __post_init__(self) -> None:
        from plastix.plasticity.hsic import XI_METHODS, check_gamma, check_sigmas

        if not is_integer(self.window) or self.window < 2:
            raise ValueError(f"window: B = {self.window!r}; the IB rule needs B >= 2")
        object.__setattr__(self, "window", int(self.window))
        if self.site not in ("norm", "rate"):
            raise ValueError(f"site: {self.site!r} is not one of 'norm', 'rate'")
        if self.method not in XI_METHODS:
            raise ValueError(f"method: {self.method!r} is not one of {', '.join(XI_METHODS)}")
        check_gamma(self.gamma)
        check_sigmas(self.sigmas)


class WorkingMemory:
    """The last ``window`` samples: inputs, one-hot labels and each layer's rates."""

    def __init__(self, window: int):
        self.window = window
        self.items: list[tuple[np.ndarray, np.ndarray, list[np.ndarray]]] = []

    def push(self, x: np.ndarray, y_onehot: np.ndarray, rates: list[np.ndarray]) -> None:
        self.items.append((x, y_onehot, rates))
        if len(self.items) > self.window:
            self.items.pop(0)

    @property
    def full(self) -> bool:
        return len(self.items) == self.window


def _layer_norm(z: np.ndarray, eps: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    mean = z.mean(-1, keepdims=True)
    std = np.sqrt(z.var(-1, keepdims=True) + eps)
    return (z - mean) / std, std


def layer_xi(x: np.ndarray, y: np.ndarray, z: np.ndarray, settings: XiSettings) -> np.ndarray:
    """ξ for the current (last) sample of a window: ``x (B, dx)``, ``y (B, dy)``, ``z (B, n)``.

    With ``site="norm"``: ``g = modulatory_signal(x, y, LN(z))`` and
    ``xi = (g - mean g - n_B mean(g n_B)) / std(z_B)`` (the LayerNorm VJP, Ba et al. 2016).
    """
    from plastix.plasticity.hsic import modulatory_signal

    if settings.site == "rate":
        xi = modulatory_signal(x, y, z, settings.gamma, settings.sigmas, settings.method)
        return np.asarray(xi, dtype=float)
    n, std = _layer_norm(z)
    g = np.asarray(
        modulatory_signal(x, y, n, settings.gamma, settings.sigmas, settings.method), dtype=float
    )
    n_last = n[-1]
    return (g - g.mean() - n_last * np.mean(g * n_last)) / std[-1, 0]


@dataclass
class PassResult:
    """One pass over a sequence of samples (a training epoch or an evaluation)."""

    predictions: np.ndarray
    labels: np.ndarray
    mean_rates: list[np.ndarray]
    wall_s: float
    spikes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels)) if len(self.labels) else 0.0

    @property
    def samples_per_s(self) -> float:
        return len(self.labels) / self.wall_s if self.wall_s > 0 else float("nan")


class _CircuitTrainer:
    """What both trainers share: the circuit's weights, backend, build folders, seeds, rate
    means and warm-up, and the standalone device held until :meth:`close`."""

    def __init__(
        self,
        spec,
        weights,
        *,
        backend,
        directory,
        cache_root,
        project_cache,
        seed,
        raster_samples,
        warmup,
    ):
        from .backend import resolve_backend

        self.spec = spec
        self.weights = weights.copy()
        self.backend = resolve_backend(backend)
        self.build_folders = dict(
            directory=directory, cache_root=cache_root, project_cache=project_cache
        )
        self.seed = int(seed)
        self.raster_samples = int(raster_samples)
        self.rate_means = [np.zeros(n) for n in spec.hidden]
        self.warmup = _warmup_samples(spec) if warmup is None else int(warmup)
        self._runs = 0
        self._standalone: _StandaloneCircuit | None = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._standalone is not None:
            self._standalone.close()
            self._standalone = None

    def _next_seed(self) -> int:
        """The random seed of the next simulation run (one per run, derived from ``seed``)."""
        self._runs += 1
        return (self.seed * 1_000_003 + self._runs) % (2**31 - 1)


class ExactXiTrainer(_CircuitTrainer):
    """The reference mode: after every sample, Python computes ξ for each hidden layer from
    the working memory (:func:`layer_xi`) and applies ``W <- clip(W - eta xi E)``
    (:func:`plastix.plasticity.ib_rule.apply_eligibility_update`) with the eligibility ``E``
    the simulation integrated; the readout gets ``W_out += eta_r acc`` and ``b += eta_r
    bias_acc`` (its cross-entropy delta rule, integrated over the window).

    Every sample starts from the same initial state. On the runtime backends (``runtime``,
    ``numpy``, ``cython``) a pass is one Brian2 run with a ``NetworkOperation`` at each sample
    boundary (record, update, state reset). On ``cpp_standalone`` / ``cuda_standalone`` a
    one-sample circuit is built ONCE and re-run per sample with ``run_args`` (stimulus, label,
    learn flag, all weights and, on cpp_standalone, a per-run random seed). Use it as a
    context manager: standalone backends hold the Brian2 device until :meth:`close`.
    ``directory`` / ``cache_root`` / ``project_cache`` go to
    :func:`plastix.circuits.backend.activate_backend`.
    ``warmup`` samples (default: three ``rate_mean_tau``) open the first training pass
    without learning, so the rate means the readout centres on have settled.
    """

    def __init__(
        self,
        spec: IBCircuitSpec,
        weights: CircuitWeights,
        xi: XiSettings,
        *,
        backend: str = "runtime",
        directory=None,
        cache_root=None,
        project_cache=None,
        seed: int = 0,
        raster_samples: int = 3,
        warmup: int | None = None,
    ):
        weights.check(spec)
        if not spec.plastic:
            raise ValueError("spec: plastic=False has no eligibility to learn from; use plastic")
        super().__init__(
            spec,
            weights,
            backend=backend,
            directory=directory,
            cache_root=cache_root,
            project_cache=project_cache,
            seed=seed,
            raster_samples=raster_samples,
            warmup=warmup,
        )
        self.xi = xi
        self.memory = WorkingMemory(xi.window)
        self._warmed = False

    def skip_warmup(self) -> None:
        """Learn from the first sample on (e.g. when resuming with settled rate means)."""
        self._warmed = True

    # -- public ----------------------------------------------------------------------------

    def train_epoch(self, x: np.ndarray, y: np.ndarray) -> PassResult:
        """One pass with learning; predictions are made before each sample's update. The
        first ``warmup`` samples of the first training pass are shown without learning."""
        learn = np.ones(len(x))
        if not self._warmed:
            learn[: self.warmup] = 0.0
            self._warmed = True
        return self._pass(x, y, learn, remember=True)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> PassResult:
        """One pass without learning (the samples do not enter the working memory)."""
        return self._pass(x, y, np.zeros(len(x)), remember=False)

    # -- internals -------------------------------------------------------------------------

    def _remember(self, x: np.ndarray, label: int, record: SampleRecord) -> None:
        """Put a training sample into the working memory (warm-up samples too, so that
        learning starts with a full window of ``B`` samples)."""
        spec = self.spec
        scale = float(spec.timing.window) * float(spec.rule.rate_norm)
        onehot = np.zeros(spec.n_classes)
        onehot[label] = 1.0
        self.memory.push(np.asarray(x, dtype=float), onehot, [c / scale for c in record.counts])

    def _learn(self, record: SampleRecord, elig, acc) -> None:
        """Apply the sample's updates: hidden layers by ξ over the full window (none before
        the memory holds ``B`` samples), the readout by its accumulated delta rule."""
        spec = self.spec
        if self.memory.full:
            xs = np.stack([item[0] for item in self.memory.items])
            ys = np.stack([item[1] for item in self.memory.items])
            for k in range(len(spec.hidden)):
                zs = np.stack([item[2][k] for item in self.memory.items])
                xi = layer_xi(xs, ys, zs, self.xi)
                self.weights.hidden[k] = apply_eligibility_update(
                    self.weights.hidden[k], elig[k], xi, spec.rule
                )
        eta_r = float(spec.readout_eta)
        self.weights.readout = self.weights.readout + eta_r * acc
        self.weights.bias = self.weights.bias + eta_r * record.bias_acc

    def _pass(self, x: np.ndarray, y: np.ndarray, learn: np.ndarray, remember: bool) -> PassResult:
        from .backend import is_standalone

        x = np.asarray(x, dtype=float)
        y = np.asarray(y)
        if x.ndim != 2 or x.shape[1] != self.spec.n_input or len(y) != len(x) or len(x) == 0:
            raise ValueError(
                f"x, y: shapes {x.shape}, {y.shape}; expected (n >= 1, {self.spec.n_input}), (n,)"
            )
        start = time.perf_counter()
        if is_standalone(self.backend):
            records, spikes = self._standalone_pass(x, y, learn, remember)
        else:
            records, spikes = self._runtime_pass(x, y, learn, remember)
        return _pass_result(self.spec, records, y, time.perf_counter() - start, spikes)

    def _runtime_pass(self, x, y, learn: np.ndarray, remember: bool):
        from brian2 import NetworkOperation
        from brian2 import seed as brian_seed

        from .backend import activate_backend

        n = len(x)
        records: list[SampleRecord] = []
        with activate_backend(self.backend) as sim:
            brian_seed(self._next_seed())
            circuit = IBCircuit(self.spec, x, y, learn, self.weights)
            circuit.set_rate_means(self.rate_means)
            slot = self.spec.timing.slot

            def finish_sample(k: int) -> None:
                record = circuit.records(k)[0]
                records.append(record)
                if remember:
                    self._remember(x[k], int(y[k]), record)
                if learn[k]:
                    self._learn(record, circuit.eligibility(), circuit.readout_accumulator())
                    circuit.set_weights(self.weights)
                if k + 1 == self.raster_samples:
                    for monitor in circuit.spike_monitors.values():
                        monitor.active = False

            def at_boundary(t) -> None:
                k = int(round(float(t[:]) / float(slot)))
                if k > 0:
                    finish_sample(k - 1)
                    circuit.reset_state()

            circuit.network.add(NetworkOperation(at_boundary, dt=slot, when="start"))
            gc.freeze()  # Network.run calls gc.collect(); keep it from rescanning the whole heap
            try:
                sim.run_network(circuit.network, n * slot, namespace={})
            finally:
                gc.unfreeze()
            finish_sample(n - 1)
            self.rate_means = circuit.get_rate_means()
            spikes = _first_spikes(circuit, self.raster_samples * float(slot))
        return records, spikes

    def _standalone_pass(self, x, y, learn: np.ndarray, remember: bool):
        if self._standalone is None:
            self._standalone = _StandaloneCircuit(
                self.spec, self.weights, self.backend, **self.build_folders
            )
        runner = self._standalone
        records: list[SampleRecord] = []
        spikes: dict[str, tuple[list, list]] = {}
        slot = float(self.spec.timing.slot)
        for k in range(len(x)):
            runner.run(
                self.weights,
                self.rate_means,
                x[k : k + 1],
                y[k : k + 1],
                learn[k],
                self._next_seed(),
            )
            circuit = runner.circuit
            self.rate_means = circuit.get_rate_means()
            record = circuit.records(0)[0]
            records.append(record)
            if k < self.raster_samples:
                for key, (i, t) in _first_spikes(circuit, slot).items():
                    store = spikes.setdefault(key, ([], []))
                    store[0].append(i)
                    store[1].append(t + k * slot)
            if remember:
                self._remember(x[k], int(y[k]), record)
            if learn[k]:
                self._learn(record, circuit.eligibility(), circuit.readout_accumulator())
        joined = {key: (np.concatenate(i), np.concatenate(t)) for key, (i, t) in spikes.items()}
        return records, joined


def _warmup_samples(spec: IBCircuitSpec) -> int:
    """Samples to show before learning starts: three ``rate_mean_tau`` (rates centred), rounded
    up to whole samples (after rounding away float error: 3 x 0.1 s / 20 ms is 15, not 16)."""
    return int(np.ceil(round(3 * float(spec.rate_mean_tau) / float(spec.timing.slot), 9)))


def _first_spikes(circuit: IBCircuit, cutoff_s: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Spikes of every monitor before ``cutoff_s`` (seconds) as ``(indices, times_s)``."""
    out = {}
    for key, monitor in circuit.spike_monitors.items():
        t = np.asarray(monitor.t_[:], dtype=float)
        keep = t < cutoff_s
        out[key] = (np.asarray(monitor.i[:])[keep], t[keep])
    return out


def _pass_result(spec, records, labels, wall_s, spikes) -> PassResult:
    predictions = np.array([int(np.argmax(r.logits)) for r in records], dtype=int)
    window = float(spec.timing.window)
    mean_rates = [
        np.mean([r.counts[k] for r in records], axis=0) / window for k in range(len(spec.hidden))
    ]
    return PassResult(predictions, np.asarray(labels).astype(int), mean_rates, wall_s, spikes)


def _circuit_cache_key(spec, n_slots: int, xi_modulators) -> str:
    """Name of a circuit's cached builds: its structure (layer sizes, plasticity, update mode,
    sample slots, modulator configs). Circuits that differ only in values (rates, timing)
    share it, and a build seeded from another's project recompiles only what differs (for a
    new learning rate: main.cpp)."""
    configs = [m.config for m in xi_modulators] if xi_modulators is not None else None
    shape = (spec.n_input, spec.hidden, spec.n_classes, spec.plastic, spec.rule.update)
    digest = hashlib.sha256(repr((shape, n_slots, configs)).encode()).hexdigest()[:16]
    return f"ib-circuit-{digest}"


class _StandaloneCircuit:
    """A circuit of ``n_slots`` samples built once on a standalone backend and re-run with
    ``run_args``; ``spec`` with ``plastic=False`` builds the static-synapse variant."""

    def __init__(
        self,
        spec,
        weights,
        backend,
        directory=None,
        cache_root=None,
        project_cache=None,
        n_slots=1,
        codegen_only=False,
        xi_modulators=None,
    ):
        from contextlib import ExitStack

        from .backend import activate_backend

        self._stack = ExitStack()
        try:
            self.sim = self._stack.enter_context(
                activate_backend(
                    backend,
                    directory=directory,
                    cache_root=cache_root,
                    project_cache=project_cache,
                    cache_key=_circuit_cache_key(spec, n_slots, xi_modulators)
                    if cache_root is not None or project_cache is not None
                    else None,
                    codegen_only=codegen_only,
                )
            )
            self.circuit = IBCircuit(
                spec,
                np.zeros((n_slots, spec.n_input)),
                np.zeros(n_slots, dtype=int),
                np.ones(n_slots),
                weights,
                xi_modulators=xi_modulators,
            )
            self.seed_group = self.sim.add_run_seed(self.circuit.network)
            duration = self.circuit.run_duration(n_slots)
            self.sim.run_network(self.circuit.network, duration, namespace={})
            self.sim.build(run=False)
        except BaseException:
            self._stack.close()
            raise

    def run(self, weights, rate_means, x, y, learn, run_seed: int, **extra) -> float:
        """One run with new inputs and state; returns the wall time of the run itself."""
        learn = np.atleast_1d(np.asarray(learn, dtype=float))
        args = self.circuit.run_args(
            weights, samples=x, labels=y, learn=learn, rate_means=rate_means, **extra
        )
        args[self.seed_group.run_seed] = run_seed
        start = time.perf_counter()
        self.sim.run(run_args=args)
        return time.perf_counter() - start

    def close(self) -> None:
        self._stack.close()


class CompiledEpochTrainer(_CircuitTrainer):
    """Each epoch — training samples (learning on) followed by test samples (learning off) —
    is ONE simulation run; all learning happens in Brian2 equations: the readout's delta rule
    online (``eta_online = readout_eta``) and the hidden layers' IB rule.
    ``xi_source="reservoir"``: ξ comes from ``xi_modulators`` (one trained
    :class:`~plastix.reservoirs.xi_modulator.XiModulator` per hidden layer) simulated inside
    the run (:class:`ReservoirXi`), and each sample's update ``W <- clip(W - eta xi E)`` is
    applied at its end, as the exact-ξ mode does in Python. ``xi_source="none"``: the hidden
    weights stay fixed — the readout-only baseline, and the workload for timing compiled
    epochs and plastic against static synapses.

    The first ``warmup`` samples of the first epoch are shown without learning (as in
    :class:`ExactXiTrainer`). Standalone backends build once (``n_train + n_test`` slots) and
    re-run per epoch with ``run_args``; runtime backends build and run a fresh circuit per
    epoch. ``codegen_only`` (standalone only) generates the project without compiling or
    running it. Unlike the per-sample modes, state carries over from sample to sample.
    """

    def __init__(
        self,
        spec: IBCircuitSpec,
        weights: CircuitWeights,
        n_train: int,
        n_test: int,
        *,
        xi_source: str = "none",
        backend: str = "runtime",
        directory=None,
        cache_root=None,
        project_cache=None,
        seed: int = 0,
        raster_samples: int = 3,
        codegen_only: bool = False,
        warmup: int | None = None,
        xi_modulators: list | None = None,
    ):
        weights.check(spec)
        if xi_source not in ("none", "reservoir"):
            raise ValueError(f"xi_source: {xi_source!r} is not one of 'none', 'reservoir'")
        if (xi_source == "reservoir") != (xi_modulators is not None):
            raise ValueError(
                "xi_modulators: give one trained XiModulator per hidden layer exactly when "
                f"xi_source='reservoir' (got xi_source={xi_source!r})"
            )
        if xi_modulators is not None:
            if len(xi_modulators) != len(spec.hidden):
                raise ValueError(
                    f"xi_modulators: {len(xi_modulators)} for {len(spec.hidden)} hidden layers"
                )
            for mod, n in zip(xi_modulators, spec.hidden, strict=True):
                _check_modulator(mod, n, spec.n_classes, spec.n_input)
        n_train, n_test = _positive_int(n_train, "n_train"), int(n_test)
        if n_test < 0:
            raise ValueError(f"n_test: must be >= 0, got {n_test!r}")
        super().__init__(
            spec,
            weights,
            backend=backend,
            directory=directory,
            cache_root=cache_root,
            project_cache=project_cache,
            seed=seed,
            raster_samples=raster_samples,
            warmup=warmup,
        )
        self.xi_modulators = xi_modulators
        self.n_train, self.n_test = n_train, n_test
        self.codegen_only = codegen_only
        self.last_run_s = 0.0

    def skip_warmup(self) -> None:
        """Learn from the first sample on (e.g. when resuming with settled rate means)."""
        self.warmup = 0

    def build(self) -> None:
        """Generate (and, unless ``codegen_only``, compile) the standalone project now."""
        from .backend import is_standalone

        if is_standalone(self.backend) and self._standalone is None:
            self._standalone = _StandaloneCircuit(
                self.spec,
                self.weights,
                self.backend,
                **self.build_folders,
                n_slots=self.n_train + self.n_test,
                codegen_only=self.codegen_only,
                xi_modulators=self.xi_modulators,
            )

    def run_epoch(
        self, x_train, y_train, x_test=None, y_test=None
    ) -> tuple[PassResult, PassResult | None]:
        """Train on ``x_train`` and then test on ``x_test`` in one run; returns both passes
        (train predictions are online, made while learning)."""
        from .backend import is_standalone

        x_test = np.zeros((0, self.spec.n_input)) if x_test is None else np.asarray(x_test, float)
        y_test = np.zeros(0, dtype=int) if y_test is None else np.asarray(y_test)
        x = np.concatenate([np.asarray(x_train, float), x_test])
        y = np.concatenate([np.asarray(y_train), y_test]).astype(int)
        if len(x_train) != self.n_train or len(x_test) != self.n_test:
            raise ValueError(
                f"x_train, x_test: {len(x_train)} + {len(x_test)} samples; this trainer was "
                f"built for {self.n_train} + {self.n_test}"
            )
        learn = np.r_[np.ones(self.n_train), np.zeros(self.n_test)]
        if self._runs == 0:
            learn[: min(self.warmup, self.n_train)] = 0.0
        run_seed = self._next_seed()
        start = time.perf_counter()
        if is_standalone(self.backend):
            if self.codegen_only:
                raise RuntimeError("run_epoch: codegen_only=True builds but cannot run")
            self.build()
            runner = self._standalone
            self.last_run_s = runner.run(
                self.weights, self.rate_means, x, y, learn, run_seed,
                eta_online=self.spec.readout_eta,
            )  # fmt: skip
            circuit = runner.circuit
            records, spikes = self._collect(circuit)
        else:
            records, spikes = self._runtime_epoch(x, y, learn, run_seed)
        wall = time.perf_counter() - start
        train = _pass_result(self.spec, records[: self.n_train], y[: self.n_train], wall, {})
        test = None
        if self.n_test:
            test = _pass_result(self.spec, records[self.n_train :], y[self.n_train :], wall, spikes)
        else:
            train.spikes = spikes
        return train, test

    def _collect(self, circuit: IBCircuit):
        """Records, final weights and state; spikes of the first ``raster_samples`` test
        samples (training samples when there is no test part), times from their onset."""
        records = circuit.records(0)
        self.weights = circuit.get_weights()
        self.rate_means = circuit.get_rate_means()
        slot = float(self.spec.timing.slot)
        first = self.n_train if self.n_test else 0
        begin, end = first * slot, (first + self.raster_samples) * slot
        spikes = {}
        for key, monitor in circuit.spike_monitors.items():
            t = np.asarray(monitor.t_[:], dtype=float)
            keep = (t >= begin) & (t < end)
            spikes[key] = (np.asarray(monitor.i[:])[keep], t[keep] - begin)
        return records, spikes

    def _runtime_epoch(self, x, y, learn, run_seed: int):
        from brian2 import seed as brian_seed

        from .backend import activate_backend

        with activate_backend(self.backend) as sim:
            brian_seed(run_seed)
            circuit = IBCircuit(
                self.spec, x, y, learn, self.weights, xi_modulators=self.xi_modulators
            )
            circuit.set_rate_means(self.rate_means)
            circuit.readout.group.eta_online = self.spec.readout_eta
            start = time.perf_counter()
            gc.freeze()
            try:
                sim.run_network(circuit.network, circuit.run_duration(len(x)), namespace={})
            finally:
                gc.unfreeze()
            self.last_run_s = time.perf_counter() - start
            return self._collect(circuit)
