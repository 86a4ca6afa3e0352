"""The kernel-memory ξ-modulator inside the spiking circuit (plastix.circuits.kernel_memory)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brian2 import Hz, StateMonitor, ms, second

from plastix.circuits.backend import activate_backend
from plastix.circuits.ib_network import (
    _ORDER_UPDATE,
    CompiledEpochTrainer,
    IBCircuit,
    IBCircuitSpec,
    init_weights,
)
from plastix.circuits.layers import SampleTiming
from plastix.plasticity.ib_rule import IBThreeFactor
from plastix.reservoirs.esn import ESNWeights
from plastix.reservoirs.xi_modulator import (
    KernelMemoryModulator,
    XiModulatorConfig,
    fit_kernel_memory_modulator,
)
from plastix.sims.datasets import load_dataset


def _digits(n_train: int, n_test: int):
    ds = load_dataset("digits", n_train=n_train, n_test=n_test, seed=0).flat()
    return ds.x_train.astype(float), ds.y_train, ds.x_test.astype(float), ds.y_test


def _spec(hidden: int) -> IBCircuitSpec:
    return IBCircuitSpec(
        n_input=64,
        hidden=(hidden,),
        timing=SampleTiming(presentation=40 * ms, settle=6 * ms, dt=1 * ms),
        rule=IBThreeFactor(eta=300 * Hz),
        input_rate=300 * Hz,
        rate_mean_tau=0.3 * second,
    )


def _modulator(n_neurons: int, topology: str = "delay-line", **kw):
    cfg = dict(
        architecture="kernel-memory",
        n_neurons=n_neurons,
        window=4,
        x_projection=16,
        xi_method="row-centred",
        gated=False,
        window_products=False,
        memory_topology=topology,
        memory_ratio=1.0 if topology == "delay-line" else 1.5,
        activation="identity",
        leak=1.0,
        n_chunks=1,
        stream_length=64,
    )
    cfg.update(kw)
    return fit_kernel_memory_modulator(XiModulatorConfig(**cfg))


def _with_biases(modulator: KernelMemoryModulator) -> KernelMemoryModulator:
    """The same modulator with a memory bias b ~ 0.2 N(0, 1) and its decoder's intercept
    moved by 0.3 N(0, 1)."""
    w, memory = modulator.weights, modulator.memory
    draw = torch.Generator().manual_seed(1)
    bias = 0.2 * torch.randn(w.n_units, generator=draw, dtype=w.dtype)
    weights = ESNWeights(w.recurrent, w.input, w.feedback, bias, activation=w.activation)
    memory.bias = memory.bias + 0.3 * torch.randn(
        memory.bias.shape, generator=draw, dtype=memory.bias.dtype
    )
    return KernelMemoryModulator(modulator.config, weights, memory)


@pytest.mark.parametrize(
    ("topology", "options"),
    [
        ("delay-line", {}),
        ("orthogonal", {}),
        # a leaky tanh memory: r <- (1 - a) r + a tanh(W r + W_in u + b)
        ("orthogonal", {"activation": "tanh", "leak": 0.6}),
        # the fit leaves the memory bias b at zero: set b and the decoder intercept c by hand
        ("orthogonal", {"biased": True}),
    ],
    ids=["delay-line", "orthogonal", "orthogonal-tanh-leaky", "orthogonal-biased"],
)
def test_kernel_memory_xi_matches_torch_modulator(topology, options):
    """Codes, memory reservoir (bias included: r <- f(W r + W_in u + b)), decoding readout
    (intercept included: d = D r + c), kernel units, row-centred weights and the LayerNorm VJP
    in Brian2 reproduce the torch KernelMemoryModulator stepped on the same inputs, labels and
    window rates."""
    n_samples, n_hidden = 10, 12
    x, y, _, _ = _digits(n_samples, 1)
    spec = _spec(n_hidden)
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    options = dict(options)
    biased = options.pop("biased", False)
    modulator = _modulator(n_hidden, topology, **options)
    if biased:
        modulator = _with_biases(modulator)
    slot = spec.timing.slot
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, x, y, np.ones(n_samples), w0, xi_modulators=[modulator])
        layer = circuit.layers[0].group
        monitor = StateMonitor(
            layer, ["res_xi", "z_last"], record=True, dt=slot, when="groups",
            order=_ORDER_UPDATE - 1,
        )  # fmt: skip
        circuit.network.add(monitor)
        circuit.network.run(n_samples * slot, namespace={})
        xi_brian = np.asarray(monitor.res_xi[:]).T
        z = np.asarray(monitor.z_last[:]).T
    # boundary k processes the sample that ended there; boundary 0 (t = 0) sees the first
    # sample's input and label with the layer still silent, and writes that into the memory.
    modulator.reset(1)
    expected = []
    for k in range(n_samples):
        zk = torch.tensor(z[k])
        std = torch.sqrt(zk.var(unbiased=False) + 1e-5)
        n = (zk - zk.mean()) / std
        sample = max(k - 1, 0)
        label = torch.nn.functional.one_hot(torch.tensor([int(y[sample])]), 10).double()
        g = modulator.step(torch.tensor(x[sample : sample + 1]), label, n[None])[0]
        expected.append(((g - g.mean() - n * (g * n).mean()) / std).numpy())
    # Brian2 leaves out decoder entries below DECODER_CUTOFF of the largest: errors ~1e-9 of
    # the scale of xi
    scale = np.abs(expected).max()
    assert scale > 1e-3
    np.testing.assert_allclose(xi_brian, np.array(expected), rtol=1e-6, atol=1e-7 * scale)


def test_kernel_memory_without_brian2_form_is_refused():
    spec = _spec(12)
    w0 = init_weights(spec, np.random.default_rng(0))
    exact = _modulator(12, xi_method="exact")
    with pytest.raises(ValueError, match="xi_method: 'exact'.*row-centred"):
        CompiledEpochTrainer(spec, w0, 4, 0, xi_source="reservoir", xi_modulators=[exact])
    with pytest.raises(ValueError, match="n_neurons=12"):
        CompiledEpochTrainer(spec, w0, 4, 0, xi_source="reservoir", xi_modulators=[_modulator(10)])


def test_modulator_fitted_for_another_label_count_or_with_feedback_is_refused():
    """``check_fits_layer`` compares both the neuron and the class count with the layer's, and
    refuses reservoirs with output feedback (nothing feeds a Brian2 readout back)."""
    from types import SimpleNamespace

    from plastix.circuits.kernel_memory import check_fits_layer

    def fake(n_neurons=12, n_classes=10, n_feedback=0):
        return SimpleNamespace(
            config=SimpleNamespace(n_neurons=n_neurons, n_classes=n_classes),
            weights=SimpleNamespace(n_feedback=n_feedback),
        )

    check_fits_layer(fake(), 12, 10)  # fits
    with pytest.raises(ValueError, match="12 neurons / 10 classes.*12 / 4"):
        check_fits_layer(fake(), 12, 4)
    with pytest.raises(ValueError, match="12 neurons / 10 classes.*8 / 10"):
        check_fits_layer(fake(), 8, 10)
    with pytest.raises(ValueError, match="output feedback"):
        check_fits_layer(fake(n_feedback=1), 12, 10)
