"""Details of the input encoders, the LIF parameters, the Brian2 echo-state reservoir and the
reservoir-in-the-loop IB trainer: boundaries of their checks, and behaviour the default
settings hide (v_reset equal to v_rest, one-hidden-layer nets).

Runtime Brian2 tests use the numpy code generation target (set by ``conftest.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brian2 import Hz, Network, SpikeMonitor, StateMonitor, ms, mV

from plastix.circuits.backend import activate_backend
from plastix.circuits.encoders import PoissonEncoder, make_schedule, schedule_table
from plastix.reservoirs.esn import ESNConfig, ESNWeights, init_esn_weights

# ------------------------------------------------------------------------------ encoders


def test_schedule_times_that_are_whole_steps_up_to_rounding_are_accepted():
    """0.3 ms / 0.1 ms is 2.9999999999999996 in floating point: it is still 3 steps (neither
    refused nor truncated to 2). 0.3 ms on and 0.6 ms off share a 0.3 ms table step, so each
    sample fills one row followed by two zero rows."""
    samples = np.array([[0.5, 1.0], [0.25, 0.0]])
    table, step = schedule_table(samples, 0.3 * ms, 0.6 * ms, 0.1 * ms)
    assert float(step) == pytest.approx(0.3e-3, rel=1e-12)
    zero = [0.0, 0.0]
    np.testing.assert_array_equal(table, [samples[0], zero, zero, samples[1], zero, zero])
    table, step = schedule_table(samples, 0.6 * ms, 0 * ms, 0.2 * ms)  # 0.6 / 0.2 = 2.99...
    assert float(step) == pytest.approx(0.6e-3, rel=1e-12)
    np.testing.assert_array_equal(table, samples)


@pytest.mark.parametrize("bad", [np.inf, np.nan])
def test_schedule_table_refuses_non_finite_times_by_name(bad):
    """An infinite or NaN presentation or gap is refused as such (not by an overflow or a
    float-to-int error further down)."""
    samples = np.array([[0.5]])
    with pytest.raises(ValueError, match="presentation: must be finite and > 0"):
        schedule_table(samples, bad * ms, 0 * ms, 0.5 * ms)
    with pytest.raises(ValueError, match="gap: must be finite and >= 0"):
        schedule_table(samples, 1 * ms, bad * ms, 0.5 * ms)
    with pytest.raises(ValueError, match="dt: must be finite and > 0"):
        schedule_table(samples, 1 * ms, 0 * ms, bad * ms)


def test_schedule_table_refuses_empty_and_non_finite_samples():
    """No samples (an empty table, a zero-length run) or NaN / infinite values (NaN rates
    would never spike and pass the encoder's [0, 1] check) are refused."""
    with pytest.raises(ValueError, match=r"samples: shape \(0, 3\)"):
        schedule_table(np.zeros((0, 3)), 1 * ms, 0 * ms, 0.5 * ms)
    for bad in (np.nan, np.inf):
        with pytest.raises(ValueError, match="samples: contains NaN or infinite"):
            schedule_table(np.array([[0.5, bad]]), 1 * ms, 0 * ms, 0.5 * ms)
        with pytest.raises(ValueError, match="samples: contains NaN or infinite"):
            make_schedule(np.array([[bad, 0.5]]), 1 * ms, name="nan_stim")


def test_poisson_encoder_refuses_nan_rates():
    """A NaN rate passes every ordering comparison (``<``, ``>``) unnoticed; it is refused by
    name."""
    schedule = make_schedule(np.array([[0.5, 0.2]]), 5 * ms, name="nan_rate_stim")
    with pytest.raises(ValueError, match="rate_max: must be >= 0"):
        PoissonEncoder(schedule, 2, rate_max=np.nan * Hz)
    with pytest.raises(ValueError, match="rate_min: must be >= 0"):
        PoissonEncoder(schedule, 2, rate_min=np.nan * Hz)


def test_poisson_encoder_refuses_zero_channels_even_for_a_channel_free_schedule():
    """A schedule of samples with no channels builds (Brian2 accepts an empty group too), so
    ``n_channels = 0`` would otherwise match its width: the encoder refuses it by name."""
    schedule = make_schedule(np.zeros((2, 0)), 5 * ms, name="no_channel_stim")
    with pytest.raises(ValueError, match="n_channels: expected an int >= 1"):
        PoissonEncoder(schedule, 0)


def test_poisson_encoder_with_equal_rates_is_a_constant_rate_source():
    """``rate_min == rate_max`` is allowed (only ``rate_max < rate_min`` is refused): every
    channel fires at that rate whatever the schedule, gaps included."""
    samples = np.array([[0.0, 0.5, 1.0]])
    with activate_backend("numpy"):
        schedule = make_schedule(samples, 5 * ms, 5 * ms, dt=0.5 * ms, name="flat_stim")
        encoder = PoissonEncoder(schedule, 3, rate_max=40 * Hz, rate_min=40 * Hz, name="flat")
        first = np.array(encoder.group.rate_[:])
        Network(encoder.group).run(7 * ms, namespace={})  # inside the gap
        in_gap = np.array(encoder.group.rate_[:])
    np.testing.assert_array_equal(first, [40.0, 40.0, 40.0])
    np.testing.assert_array_equal(in_gap, [40.0, 40.0, 40.0])
    np.testing.assert_allclose(encoder.expected_counts(samples), [[0.2, 0.2, 0.2]])


def test_poisson_encoder_at_exactly_one_spike_per_step_fires_on_every_step():
    """``rate_max * dt = 1`` is the limit, not saturation (refused only above 1): a channel at
    value 1 then spikes on every step of its presentation (``rand() < 1`` always holds), a
    channel at 0 never, and nothing fires in the gap."""
    with activate_backend("numpy"):
        schedule = make_schedule(np.array([[1.0, 0.0]]), 5 * ms, 2 * ms, 0.5 * ms, "one_stim")
        encoder = PoissonEncoder(schedule, 2, rate_max=2000 * Hz, name="one_per_step")
        monitor = SpikeMonitor(encoder.group)
        Network(encoder.group, monitor).run(schedule.duration, namespace={})
        i, t = np.array(monitor.i[:]), np.array(monitor.t_[:])
    assert np.all(i == 0)
    np.testing.assert_array_equal(np.round(t / 0.5e-3).astype(int), np.arange(10))


# ------------------------------------------------------------------------------ neurons


def _lif_layer(n, params, name, presentation=200 * ms):
    from plastix.circuits.layers import LIFLayer, SampleTiming, learn_schedule

    timing = SampleTiming(presentation=presentation, settle=0 * ms, dt=0.1 * ms)
    return LIFLayer(n, params, timing, learn_schedule([0], timing), name=name)


def test_lif_params_refuse_non_finite_quantities_and_threshold_at_rest():
    """Infinite or NaN time constants and voltages are refused by name (a NaN voltage would
    pass every ordering check), and so is ``v_th == v_rest``: the voltage scale ``v_th -
    v_rest`` of the surrogate derivative would be zero."""
    from plastix.circuits.neurons import LIFParams

    for name, bad in (("tau_m", np.inf * ms), ("t_ref", np.inf * ms), ("v_th", np.nan * mV)):
        with pytest.raises(ValueError, match=f"{name}: must be finite"):
            LIFParams(**{name: bad})
    with pytest.raises(ValueError, match="v_th: .* must lie above v_rest"):
        LIFParams(v_rest=-65 * mV, v_th=-65 * mV, v_reset=-70 * mV)


def test_surrogate_scale_is_threshold_minus_rest_even_with_a_lower_reset():
    """``psi = 1 / (1 + beta |v - v_th| / (v_th - v_rest))^2``: the scale is the distance from
    rest to threshold (15 mV here), not from reset (25 mV), in the Brian2 layer and its NumPy
    twin alike."""
    from plastix.circuits.neurons import LIFParams, surrogate_derivative

    params = LIFParams(v_reset=-75 * mV, surrogate_beta=3.0)
    assert float(params.v_span) == pytest.approx(15e-3, rel=1e-12)
    v_mv = np.array([-75.0, -65.0, -56.0, -50.0, -44.0])
    hand = 1.0 / (1.0 + 3.0 * np.abs(v_mv + 50.0) / 15.0) ** 2
    np.testing.assert_allclose(surrogate_derivative(v_mv * 1e-3, params), hand, rtol=1e-12)
    with activate_backend("numpy"):
        layer = _lif_layer(len(v_mv), params, "psi_reset")
        layer.group.v = v_mv * mV
        psi = np.array(layer.group.psi[:])
    np.testing.assert_allclose(psi, hand, rtol=1e-12)


def test_lif_layer_resets_to_v_reset_and_relaxes_to_v_rest_plus_drive():
    """With ``v_reset`` (-75 mV) below ``v_rest`` (-65 mV): a neuron driven above threshold
    (20 mV) is held at exactly ``v_reset`` for ``t_ref`` after each spike; a subthreshold one
    (10 mV) settles at ``v_rest + I_ext = -55 mV`` (100 ms = 10 tau_m: within 1e-3 mV); the
    synaptic current decays with ``tau_syn`` (5 ms), ``I_syn(t) = I_0 exp(-t / tau_syn)``."""
    from plastix.circuits.neurons import LIFParams

    params = LIFParams(v_reset=-75 * mV)  # v_rest -65, v_th -50, tau_m 10, tau_syn 5, t_ref 2
    with activate_backend("numpy"):
        layer = _lif_layer(3, params, "reset_layer", presentation=100 * ms)
        layer.group.I_ext = np.array([20.0, 10.0, 0.0]) * mV
        layer.group.I_syn = np.array([0.0, 0.0, 8.0]) * mV
        spikes = SpikeMonitor(layer.group)
        states = StateMonitor(layer.group, ("v", "I_syn"), record=True)
        Network(layer.group, spikes, states).run(100 * ms, namespace={})
        v = np.array(states.v_) * 1e3  # mV, (neurons, steps); step k is time k * 0.1 ms
        i_syn = np.array(states.I_syn_)[2] * 1e3
        spike_i, spike_t = np.array(spikes.i[:]), np.array(spikes.t_[:])
    steps = np.round(spike_t[spike_i == 0] / 0.1e-3).astype(int)
    assert len(steps) >= 4 and np.all(spike_i != 1)
    for step in steps[:-1]:  # the 20 steps after the spike's own: refractory at v_reset
        np.testing.assert_allclose(v[0, step + 1 : step + 20], -75.0, rtol=0, atol=1e-9)
    assert v[1, -1] == pytest.approx(-55.0, abs=1e-3)
    t = np.arange(i_syn.size) * 0.1
    np.testing.assert_allclose(i_syn, 8.0 * np.exp(-t / 5.0), rtol=1e-9)


# ------------------------------------------------------------------------------ Brian2 ESN


def _zero_weights(n, leak, noise):
    zeros = [torch.zeros(shape, dtype=torch.float64) for shape in ((n, n), (n, 1), (n, 0), (n,))]
    return ESNWeights(*zeros, leak=leak, noise=noise, activation="identity")


def test_brian2_noise_per_step_is_noise_at_any_leak_and_amplitude():
    """``esn_step`` adds ``noise * eps`` after the leaky update, whatever the leak: with zero
    weights ``x_t - (1 - leak) x_{t-1}`` is one fresh draw of std ``noise`` (leak 0.3 and a
    small amplitude 0.004; 4000 draws, std within 10 %)."""
    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    weights = _zero_weights(1000, leak=0.3, noise=0.004)
    states, _ = simulate_brian2_esn(weights, np.zeros((4, 1)))
    previous = np.concatenate([np.zeros((1, 1000)), states[:-1]])
    draws = states - 0.7 * previous
    assert abs(draws.std() - 0.004) < 0.0004
    assert abs(draws.mean()) < 0.0004


def test_brian2_builder_refuses_other_weight_types_and_takes_a_list_readout():
    """Weights must be :class:`ESNWeights` (a bare tensor is refused by name); the readout
    pair may be a list as well as a tuple and gives the same outputs."""
    from plastix.reservoirs.brian2_esn import build_brian2_esn, simulate_brian2_esn

    weights = init_esn_weights(ESNConfig(n_inputs=1, n_units=6, connectivity=0.5), seed=0)
    with pytest.raises(TypeError, match="weights: expected ESNWeights"):
        build_brian2_esn(weights.recurrent, np.zeros((3, 1)))
    w_out, b_out = np.full((1, 6), 0.5), np.array([0.2])
    u = np.array([[1.0], [-0.5], [0.25]])
    _, as_tuple = simulate_brian2_esn(weights, u, readout=(w_out, b_out))
    _, as_list = simulate_brian2_esn(weights, u, readout=[w_out, b_out])
    np.testing.assert_array_equal(as_list, as_tuple)


# ------------------------------------------------------------------------------ IB reservoir


def test_reservoir_trainer_refuses_modulators_for_another_width_or_class_count():
    """A modulator fitted for a layer of another width, or for another number of classes,
    is refused like one for another window (it would see activities of the wrong size)."""
    from dataclasses import replace
    from types import SimpleNamespace

    from plastix.bridges.ib_reservoir import ReservoirIBTrainer
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    net, rule = RateMLP(6, (8,), 3), IBRule(window=4)
    fitted = XiModulatorConfig(n_neurons=8, n_classes=3, window=4)
    for changes in ({"n_neurons": 5}, {"n_classes": 4}):
        other = SimpleNamespace(config=replace(fitted, **changes))
        with pytest.raises(ValueError, match=r"modulators\[0\]"):
            ReservoirIBTrainer(net, [other], rule)


class _ExactPlusDiscarded:
    """Stand-in modulator: keeps the samples it was fed and returns the exact xi of the last
    ``B`` plus ``scale (c + d n_B)``, a constant and a multiple of the current LayerNorm
    output: the two directions a LayerNorm's pullback discards (zero during warm-up)."""

    def __init__(self, config, c, d):
        self.config, self.c, self.d = config, c, d
        self.window = []

    def reset(self, n_streams=1):
        self.window = []

    def step(self, x, y_onehot, z):
        from plastix.plasticity.hsic import modulatory_signal

        self.window = [*self.window, (x, y_onehot, z)][-self.config.window :]
        if len(self.window) < self.config.window:
            return torch.zeros_like(z)
        xs, ys, zs = (torch.cat(parts) for parts in zip(*self.window, strict=True))
        exact = modulatory_signal(xs, ys, zs, self.config.gamma, self.config.sigmas)
        scale = exact.norm() / zs.shape[-1] ** 0.5
        return (exact + scale * (self.c + self.d * z[0]))[None]


@pytest.mark.usefixtures("one_torch_thread")
def test_agreement_ignores_exactly_the_xi_components_layer_norm_discards():
    """A modulator whose xi is the exact one plus a constant and a multiple of the current
    sample's LayerNorm output has a plain cosine well below 1, but an effective cosine (after
    the LayerNorm projection with the current output) and an update cosine of 1 at every step.
    The weights are held fixed so that the stand-in's stored activities stay exact."""
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    g = torch.Generator().manual_seed(11)
    x = torch.rand(12, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    sigmas = (0.7, 0.3, 2.0)
    rule = IBRule(window=4, gamma=1.5, sigmas=sigmas)
    torch.manual_seed(0)
    net = RateMLP(6, (8,), 3).double()
    config = XiModulatorConfig(n_neurons=8, n_classes=3, window=4, gamma=1.5, sigmas=sigmas)
    trainer = ReservoirIBTrainer(net, [_ExactPlusDiscarded(config, 0.8, -0.6)], rule)
    trainer._apply = lambda grads: None
    trainer.track_agreement = True
    trainer.train_epoch(x, y, torch.Generator().manual_seed(1))
    (rows,) = trainer._agreement
    assert len(rows) == 12
    cosine, effective, update = np.array(rows).T
    assert np.all(cosine < 0.9)
    np.testing.assert_allclose(effective, 1.0, rtol=0, atol=1e-6)
    np.testing.assert_allclose(update, 1.0, rtol=0, atol=1e-6)
