"""Tests of the spiking IB circuit: encoder, LIF neurons, the IB rule's Brian2 form against its
torch rate form, exact-ξ learning, runtime vs cpp_standalone, and the ``ib-spiking`` result file.

Runtime tests use the numpy code generation target (no compilation). Standalone builds go to
the shared ``brian_build_cache`` fixture so that an unchanged circuit is compiled only once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brian2 import Hz, Network, SpikeMonitor, ms, mV, second

from plastix.circuits.backend import activate_backend
from plastix.circuits.encoders import PoissonEncoder, make_schedule, schedule_table
from plastix.circuits.ib_network import (
    CircuitWeights,
    CompiledEpochTrainer,
    ExactXiTrainer,
    IBCircuit,
    IBCircuitSpec,
    XiSettings,
    init_weights,
    layer_xi,
)
from plastix.circuits.layers import DenseProjection, LIFLayer, SampleTiming, learn_schedule
from plastix.circuits.neurons import LIFParams, lif_rate, surrogate_derivative
from plastix.plasticity.ib_rule import IBThreeFactor, apply_eligibility_update


def _digits(n_train: int, n_test: int):
    from plastix.sims.datasets import load_dataset

    ds = load_dataset("digits").flat()
    return (
        np.asarray(ds.x_train[:n_train], float),
        np.asarray(ds.y_train[:n_train]),
        np.asarray(ds.x_test[:n_test], float),
        np.asarray(ds.y_test[:n_test]),
    )


# ------------------------------------------------------------------------------ encoder


def test_schedule_table_layout_and_validation():
    samples = np.array([[0.2, 1.0], [0.5, 0.0]])
    table, step = schedule_table(samples, 30 * ms, 10 * ms, 0.5 * ms)
    assert float(step) == pytest.approx(0.010)  # gcd(30, 10) ms
    assert table.shape == (8, 2)  # 4 rows per sample: 3 on, 1 gap
    np.testing.assert_array_equal(table[:3], np.repeat(samples[:1], 3, axis=0))
    np.testing.assert_array_equal(table[3], 0.0)
    np.testing.assert_array_equal(table[4:7], np.repeat(samples[1:], 3, axis=0))
    with pytest.raises(ValueError, match="presentation"):
        schedule_table(samples, 30.25 * ms, 0 * ms, 0.5 * ms)
    with pytest.raises(TypeError, match="gap"):
        schedule_table(samples, 30 * ms, 10, 0.5 * ms)
    with pytest.raises(ValueError, match="samples"):
        schedule_table(np.zeros(3), 30 * ms, 0 * ms, 0.5 * ms)


def test_poisson_encoder_rates_follow_schedule():
    """Spike counts per sample window match rate_max * value (Poisson, 5 sigma); gaps are
    silent."""
    values = np.array([0.0, 0.25, 0.5, 1.0])
    n_per_value = 60
    samples = np.stack([np.repeat(values, n_per_value), np.repeat(values[::-1], n_per_value)])
    presentation, gap, rate_max = 200 * ms, 40 * ms, 150 * Hz
    with activate_backend("numpy"):
        schedule = make_schedule(samples, presentation, gap, dt=0.5 * ms, name="enc_test")
        encoder = PoissonEncoder(schedule, samples.shape[1], rate_max=rate_max, name="enc")
        monitor = SpikeMonitor(encoder.group)
        net = Network(encoder.group, monitor)
        net.run(schedule.duration, namespace={})
        i, t = np.array(monitor.i[:]), np.array(monitor.t_[:])
    slot = float(schedule.slot)
    step = np.round(t / 0.5e-3).astype(int)  # time steps: exact integers
    slot_steps, on_steps = round(slot / 0.5e-3), round(float(presentation) / 0.5e-3)
    assert np.all(step % slot_steps < on_steps), "spikes during a gap"
    expected = encoder.expected_counts(samples)  # (n_samples, n_channels)
    for s in range(len(samples)):
        in_slot = step // slot_steps == s
        counts = np.bincount(i[in_slot], minlength=samples.shape[1])
        for v in values:
            cols = samples[s] == v
            mean_expected = expected[s, cols].mean()
            sd = np.sqrt(mean_expected / cols.sum())  # Poisson: variance = mean
            assert abs(counts[cols].mean() - mean_expected) <= 5 * sd + 1e-9


def test_schedule_table_refuses_a_negative_gap():
    """A gap below zero would shorten each slot (rows = (on + off) / unit) and overlap the
    samples; it is refused like any other negative time."""
    with pytest.raises(ValueError, match="gap"):
        schedule_table(np.array([[0.5]]), 30 * ms, -10 * ms, 0.5 * ms)


def test_schedule_table_for_new_samples_matches_schedule_table_and_checks_the_count():
    """``Schedule.table`` (the run_args table of a standalone rerun) lays new samples out as
    ``schedule_table`` with the schedule's own presentation / gap / dt, and refuses a sample
    count other than the one the schedule was built for (too few or too many)."""
    old = np.array([[0.1, 0.2], [0.3, 0.4]])
    new = np.array([[1.0, 0.0], [0.5, 0.25]])
    schedule = make_schedule(old, 30 * ms, 10 * ms, dt=0.5 * ms, name="table_test")
    table = schedule.table(new)
    # 10 ms rows: 3 on, 1 gap per sample
    expected = np.array([new[0]] * 3 + [[0.0, 0.0]] + [new[1]] * 3 + [[0.0, 0.0]])
    np.testing.assert_array_equal(table, expected)
    for wrong in (new[:1], np.concatenate([new, new[:1]])):
        with pytest.raises(ValueError, match="samples"):
            schedule.table(wrong)


def test_poisson_encoder_rate_maps_the_unit_interval_onto_rate_min_rate_max():
    """``rate = rate_min + (rate_max - rate_min) * schedule(t, i)``, read off the group at the
    start of the run and inside the second sample (deterministic, no spikes drawn), and
    ``expected_counts`` is that rate times the presentation."""
    samples = np.array([[0.0, 0.5, 1.0], [1.0, 0.25, 0.0]])
    with activate_backend("numpy"):
        schedule = make_schedule(samples, 20 * ms, 10 * ms, dt=0.5 * ms, name="rmin_stim")
        encoder = PoissonEncoder(schedule, 3, rate_max=120 * Hz, rate_min=20 * Hz, name="rmin")
        first = np.array(encoder.group.rate_[:])
        net = Network(encoder.group)
        net.run(35 * ms, namespace={})  # 5 ms into the second sample's presentation
        second = np.array(encoder.group.rate_[:])
    hand = 20.0 + 100.0 * samples  # Hz
    np.testing.assert_allclose(first, hand[0], rtol=1e-12)
    np.testing.assert_allclose(second, hand[1], rtol=1e-12)
    np.testing.assert_allclose(encoder.expected_counts(samples), hand * 0.020, rtol=1e-12)


def test_poisson_encoder_refuses_rate_max_below_rate_min_and_negative_values():
    schedule = make_schedule(np.array([[0.5, 0.2]]), 5 * ms, name="refuse_stim")
    with pytest.raises(ValueError, match="rate_max.*below rate_min"):
        PoissonEncoder(schedule, 2, rate_max=10 * Hz, rate_min=20 * Hz)
    negative = make_schedule(np.array([[-0.1, 0.5]]), 5 * ms, name="negative_stim")
    with pytest.raises(ValueError, match="schedule: values span"):
        PoissonEncoder(negative, 2)


# ------------------------------------------------------------------------------ neurons


def test_lif_f_i_curve_matches_theory():
    """Constant drive: zero rate below rheobase, the analytic LIF rate above it (to within
    the dt discretisation of spike times), increasing with drive."""
    params = LIFParams()
    timing = SampleTiming(presentation=1000 * ms, settle=0 * ms, dt=0.1 * ms)
    drives = np.array([5.0, 14.0, 16.0, 20.0, 30.0, 50.0, 80.0]) * 1e-3  # volts
    with activate_backend("numpy"):
        layer = LIFLayer(len(drives), params, timing, learn_schedule([0], timing), name="fi")
        layer.group.I_ext = drives * 1e3 * mV
        monitor = SpikeMonitor(layer.group)
        Network(layer.group, monitor).run(1 * second, namespace={})
        counts = np.bincount(np.asarray(monitor.i[:]), minlength=len(drives))
    theory = lif_rate(drives, params)
    assert np.all(counts[theory == 0] == 0)
    above = theory > 0
    isi = 1.0 / theory[above]
    tolerance = theory[above] * (0.1e-3 / isi) + 1.0  # spike times fall on the dt grid
    np.testing.assert_array_less(np.abs(counts[above] - theory[above]), tolerance)
    assert np.all(np.diff(counts) >= 0)


def test_lif_params_refuse_zero_time_constants_negative_refractory_and_reset_at_threshold():
    """Boundaries of the LIFParams checks: tau_m / tau_syn must be > 0 (0 is refused), t_ref
    >= 0 (0 is fine, below is refused) and v_reset strictly below v_th."""
    with pytest.raises(ValueError, match="tau_m"):
        LIFParams(tau_m=0 * ms)
    with pytest.raises(ValueError, match="tau_syn"):
        LIFParams(tau_syn=0 * ms)
    with pytest.raises(ValueError, match="t_ref"):
        LIFParams(t_ref=-1 * ms)
    assert float(LIFParams(t_ref=0 * ms).t_ref) == 0.0
    with pytest.raises(ValueError, match="v_reset"):
        LIFParams(v_reset=-50 * mV)  # at v_th


def test_lif_rate_resets_to_v_reset_not_v_rest():
    """With v_reset below v_rest the interspike interval is ``t_ref + tau_m ln((v_rest + I -
    v_reset) / (v_rest + I - v_th))``: computed by hand for I = 20 mV, v_reset = -75 mV."""
    params = LIFParams(v_reset=-75 * mV)  # v_rest -65, v_th -50, tau_m 10 ms, t_ref 2 ms
    # v_rest + I = -45 mV: ln((-45 + 75) / (-45 + 50)) = ln(6)
    expected = 1.0 / (2e-3 + 10e-3 * np.log(6.0))
    assert float(lif_rate(20e-3, params)) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(lif_rate(np.array([10e-3, 20e-3]), params), [0.0, expected])


def test_brian2_psi_is_the_surrogate_derivative_on_both_sides_of_threshold():
    """The layer's ``psi`` subexpression equals ``1 / (1 + beta |v - v_th| / (v_th -
    v_rest))^2`` (and :func:`surrogate_derivative`) below, at and above threshold: the
    fast sigmoid is symmetric about v_th."""
    params = LIFParams(surrogate_beta=4.0)
    timing = SampleTiming(presentation=20 * ms, settle=0 * ms, dt=0.5 * ms)
    v_rel = np.array([0.0, 9.0, 15.0, 21.0, 30.0])  # mV above rest; threshold at 15
    with activate_backend("numpy"):
        layer = LIFLayer(len(v_rel), params, timing, learn_schedule([0], timing), name="psi")
        layer.group.v = params.v_rest + v_rel * mV
        psi = np.array(layer.group.psi[:])
    hand = 1.0 / (1.0 + 4.0 * np.abs(v_rel - 15.0) / 15.0) ** 2
    np.testing.assert_allclose(psi, hand, rtol=1e-12)
    np.testing.assert_allclose(psi[[1, 3]], [1.0 / 2.6**2] * 2, rtol=1e-12)  # 6 mV either side
    v = float(params.v_rest) + v_rel * 1e-3
    np.testing.assert_allclose(surrogate_derivative(v, params), hand, rtol=1e-12)


def test_every_sample_starts_from_the_same_state_refractory_state_included():
    """The second sample of a run starts as a fresh one-sample run (as standalone runs do):
    neurons that spiked in the last t_ref of the first sample are not still refractory."""
    from brian2 import StateMonitor

    timing = SampleTiming(presentation=20 * ms, settle=5 * ms, dt=0.5 * ms)
    drive = np.linspace(16, 40, 50) * mV

    def membranes(n_samples, name):
        with activate_backend("numpy"):
            layer = LIFLayer(
                50, LIFParams(), timing, learn_schedule([1] * n_samples, timing), name=name
            )
            layer.group.I_ext = drive
            monitor = StateMonitor(layer.group, "v", record=True)
            Network(layer.group, monitor).run(n_samples * timing.slot)
            return np.array(monitor.v_)  # a copy: the monitor frees its memory with it

    second_sample = membranes(2, "two")[:, timing.slot_steps :]
    fresh = membranes(1, "one")
    np.testing.assert_allclose(second_sample, fresh, rtol=0, atol=1e-12)


def test_lif_params_validation():
    with pytest.raises(ValueError, match="v_th"):
        LIFParams(v_th=-70 * mV)
    with pytest.raises(TypeError, match="tau_m"):
        LIFParams(tau_m=10)
    with pytest.raises(ValueError, match="settle"):
        SampleTiming(presentation=20 * ms, settle=20 * ms)
    with pytest.raises(ValueError, match="not a multiple"):
        SampleTiming(presentation=20.3 * ms, dt=0.5 * ms)


# ------------------------------------------------------------------------------ IB rule


@pytest.mark.parametrize("update", ["per_sample", "continuous"])
def test_brian2_ib_rule_matches_torch_rate_form(update):
    """Controlled inputs: Poisson presynaptic trains of fixed rates, postsynaptic membranes
    held at fixed subthreshold voltages (so psi is known exactly), a constant ξ per neuron.
    The mean weight change of the Brian2 form — per_sample: the end-of-sample step
    ``W - eta xi E`` with the eligibility E it accumulated; continuous: the weights it
    integrated, which must equal that same step — equals the torch rate form times the
    learning time, within Poisson error."""
    rates = np.array([20.0, 50.0, 100.0, 200.0])
    n_rep = 50
    v_rel = np.array([5.0, 11.0, 14.0])  # mV above rest, below threshold (15 mV)
    xi = np.array([1.0, -0.5, 2.0])
    duration = 2.0
    rule = IBThreeFactor(eta=20 * Hz, w_min=-100.0, w_max=100.0, update=update)
    params = LIFParams()
    timing = SampleTiming(presentation=duration * 1000 * ms, settle=0 * ms, dt=0.5 * ms)
    pre_rates = np.repeat(rates, n_rep)
    with activate_backend("numpy"):
        learn = learn_schedule([1], timing)
        post = LIFLayer(len(v_rel), params, timing, learn, name="post")
        post.group.I_ext = v_rel * mV
        post.group.v = params.v_rest + v_rel * mV
        post.group.modulation = xi
        schedule = make_schedule(pre_rates[None, :] / 200.0, timing.presentation, dt=timing.dt)
        pre = PoissonEncoder(schedule, len(pre_rates), rate_max=200 * Hz, name="pre")
        kwargs = rule.brian2_form().synapses_kwargs()  # no transmission: membranes stay put
        namespace = {**post.namespace, **kwargs["namespace"]}
        proj = DenseProjection(
            pre.group, post.group, kwargs["model"], kwargs["on_pre"], namespace, "plastic",
            kwargs.get("method"),
        )  # fmt: skip
        proj.synapses.w = 0.0
        Network(pre.group, post.group, proj.synapses).run(timing.slot, namespace={})
        in_sim = proj.to_matrix(proj.synapses.w[:])
        elig = proj.to_matrix(proj.synapses.elig_sum[:])
    weights = apply_eligibility_update(np.zeros_like(elig), elig, xi, rule)
    if update == "continuous":
        np.testing.assert_allclose(in_sim, weights, rtol=1e-6, atol=1e-9)
    else:
        np.testing.assert_array_equal(in_sim, 0.0)  # per_sample: W moves only when ξ is applied
    window = float(timing.window)  # every step of the 2 s slot but the last
    psi = surrogate_derivative(float(params.v_rest) + v_rel * 1e-3, params)
    rate_form = rule.rate_update(
        torch.tensor(pre_rates), torch.ones(3), torch.zeros(3, len(pre_rates)),
        modulator=torch.tensor(xi), post_term=torch.tensor(psi),
    ).numpy()  # fmt: skip
    expected_groups = (rate_form * window).reshape(3, len(rates), n_rep).mean(-1)
    groups = weights.reshape(3, len(rates), n_rep).mean(-1)
    # each presynaptic spike adds about 1/rate_norm of rate-time to E: Poisson error
    per_spike = float(rule.eta) * np.abs(xi)[:, None] * psi[:, None] / float(rule.rate_norm)
    sd = per_spike * np.sqrt(rates[None, :] * duration / n_rep)
    np.testing.assert_array_less(
        np.abs(groups - expected_groups), 5 * sd + 0.02 * np.abs(expected_groups)
    )
    assert np.all(np.sign(groups) == -np.sign(xi)[:, None])  # dW = -eta xi ...


def test_rate_form_default_post_term_and_validation():
    rule = IBThreeFactor(eta=2 * Hz, rate_norm=100 * Hz)
    pre = torch.tensor([[50.0, 100.0]])
    post = torch.tensor([[0.0, 30.0, 5.0]])
    dw = rule.rate_update(pre, post, torch.zeros(3, 2), modulator=torch.tensor([1.0, 1.0, -2.0]))
    expected = -2.0 / 100.0 * np.array([[0, 0], [50, 100], [-100, -200]])
    np.testing.assert_allclose(dw.numpy(), expected)
    with pytest.raises(ValueError, match="weight"):
        rule.rate_update(pre, post, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="post_term"):
        rule.rate_update(pre, post, torch.zeros(3, 2), post_term=torch.ones(2))
    with pytest.raises(ValueError, match="eta"):
        IBThreeFactor(eta=-1 * Hz)
    with pytest.raises(ValueError, match="xi"):
        apply_eligibility_update(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(2), rule)


def test_layer_xi_norm_site_is_the_layer_norm_chain_rule():
    """ξ at the 'norm' site equals the autograd gradient of the layer objective taken at
    LayerNorm(z) and pulled back to z."""
    from plastix.plasticity.hsic import layer_objective

    rng = np.random.default_rng(0)
    x, z = rng.random((6, 5)), rng.random((6, 7))
    y = np.eye(3)[rng.integers(0, 3, 6)]
    settings = XiSettings(gamma=2.0, sigmas=(0.5, 0.1, 1.0), window=6, site="norm")
    zt = torch.tensor(z, requires_grad=True)
    n = (zt - zt.mean(-1, keepdim=True)) / torch.sqrt(
        zt.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    layer_objective(torch.tensor(x), torch.tensor(y), n, 2.0, (0.5, 0.1, 1.0)).backward()
    np.testing.assert_allclose(
        layer_xi(x, y, z, settings), zt.grad[-1].numpy(), rtol=1e-6, atol=1e-9
    )


# ------------------------------------------------------------------------------ training


def _small_spec(**kw) -> IBCircuitSpec:
    timing = SampleTiming(presentation=40 * ms, settle=6 * ms, dt=1 * ms)
    defaults = dict(
        hidden=(40,),
        timing=timing,
        rule=IBThreeFactor(eta=300 * Hz),
        input_rate=300 * Hz,
        rate_mean_tau=0.3 * second,
    )
    defaults.update(kw)
    return IBCircuitSpec(**defaults)


def test_exact_xi_learns_digits_subset_above_chance():
    """Digits 0-3 (chance 0.25): two passes over 120 samples with exact ξ on runtime."""
    x_tr, y_tr, x_te, y_te = _digits(400, 200)
    keep_tr, keep_te = y_tr < 4, y_te < 4
    x_tr, y_tr = x_tr[keep_tr][:120], y_tr[keep_tr][:120]
    x_te, y_te = x_te[keep_te][:60], y_te[keep_te][:60]
    spec = _small_spec(n_classes=4)
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    with ExactXiTrainer(spec, w0, XiSettings(), backend="numpy", seed=1, warmup=10) as trainer:
        for _ in range(2):
            trainer.train_epoch(x_tr, y_tr)
        result = trainer.evaluate(x_te, y_te)
        final = trainer.weights
    assert result.accuracy > 0.5  # chance: 0.25
    assert np.abs(final.hidden[0] - w0.hidden[0]).mean() > 1e-4  # the IB rule moved W
    assert set(result.spikes) == {"input", "hidden0"}
    assert result.spikes["hidden0"][1].max() < 3 * float(spec.timing.slot)


def test_exact_xi_waits_for_a_full_window_and_warmup_fills_it():
    """Hidden weights move only once the working memory holds B samples; warm-up samples
    enter the memory, evaluation samples do not."""
    x, y, xt, yt = _digits(12, 4)
    spec = _small_spec(hidden=(10,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    settings = XiSettings(window=4)
    with ExactXiTrainer(spec, w0, settings, backend="numpy", seed=0, warmup=0) as trainer:
        trainer.train_epoch(x[:3], y[:3])
        np.testing.assert_array_equal(trainer.weights.hidden[0], w0.hidden[0])
        assert not np.array_equal(trainer.weights.readout, w0.readout)
        trainer.evaluate(xt, yt)
        assert len(trainer.memory.items) == 3
        trainer.train_epoch(x[3:5], y[3:5])
        assert not np.array_equal(trainer.weights.hidden[0], w0.hidden[0])
    with ExactXiTrainer(spec, w0, settings, backend="numpy", seed=0, warmup=5) as trainer:
        trainer.train_epoch(x[:5], y[:5])
        np.testing.assert_array_equal(trainer.weights.hidden[0], w0.hidden[0])
        assert len(trainer.memory.items) == 4  # warm-up filled the window
        trainer.train_epoch(x[5:6], y[5:6])
        assert not np.array_equal(trainer.weights.hidden[0], w0.hidden[0])


def _reservoir_xi_circuit_inputs(n_samples: int, n_hidden: int):
    """Digits, a one-hidden-layer spec, initial weights and a small fitted ξ-modulator for an
    IBCircuit with reservoir ξ inside the simulation."""
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    x, y, _, _ = _digits(n_samples, 0)
    spec = _small_spec(hidden=(n_hidden,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    config = XiModulatorConfig(
        n_neurons=n_hidden, n_units=30, n_chunks=1, window_products=False, stream_length=64
    )
    return x, y, spec, w0, fit_xi_modulator(config)


def test_reservoir_xi_matches_torch_modulator():
    """The Brian2 ξ-modulator (per-neuron reservoirs stepped at each sample boundary, gated
    readout, LayerNorm VJP) reproduces the torch XiModulator stepped on the same labels and
    window rates, to float precision."""
    from brian2 import StateMonitor

    from plastix.circuits.ib_network import _ORDER_UPDATE

    n_samples, n_hidden = 10, 12
    x, y, spec, w0, modulator = _reservoir_xi_circuit_inputs(n_samples, n_hidden)
    slot = spec.timing.slot
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, x, y, np.ones(n_samples), w0, xi_modulators=[modulator])
        layer = circuit.layers[0].group
        monitor = StateMonitor(
            layer,
            ["res_xi", "z_last"],
            record=True,
            dt=slot,
            when="groups",
            order=_ORDER_UPDATE - 1,
        )
        circuit.network.add(monitor)
        circuit.network.run(n_samples * slot, namespace={})
        xi_brian = np.array(monitor.res_xi[:]).T[1:]  # row k: the sample ending at (k+1) slot
        z = np.array(monitor.z_last[:]).T[1:]
    modulator.reset(1)
    for k in range(n_samples - 1):
        zk = torch.tensor(z[k])
        std = torch.sqrt(zk.var(unbiased=False) + 1e-5)
        n = (zk - zk.mean()) / std
        label = torch.nn.functional.one_hot(torch.tensor([int(y[k])]), 10).double()
        g = modulator.step(torch.zeros(1, 1, dtype=torch.float64), label, n[None])[0]
        xi = (g - g.mean() - n * (g * n).mean()) / std
        np.testing.assert_allclose(xi_brian[k], xi.numpy(), rtol=1e-9, atol=1e-12)
    assert np.abs(xi_brian).max() > 0


def test_compiled_epoch_learns_inside_the_simulation_only_where_told():
    """Reservoir ξ in one run: hidden and readout weights move during the training samples;
    with every learn flag 0 nothing moves."""
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    x, y, xt, yt = _digits(24, 8)
    spec = _small_spec(hidden=(12,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    mods = [
        fit_xi_modulator(
            XiModulatorConfig(
                n_neurons=12, n_units=30, n_chunks=1, window_products=False, stream_length=64
            )
        )
    ]
    with CompiledEpochTrainer(
        spec, w0, len(x), len(xt), xi_source="reservoir", xi_modulators=mods,
        backend="numpy", warmup=4,
    ) as trainer:  # fmt: skip
        train, test = trainer.run_epoch(x, y, xt, yt)
        learned = trainer.weights
    assert len(train.predictions) == len(x) and len(test.predictions) == len(xt)
    assert np.abs(learned.hidden[0] - w0.hidden[0]).max() > 0
    assert np.abs(learned.readout - w0.readout).max() > 0
    assert set(test.spikes) == {"input", "hidden0"}
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, x, y, np.zeros(len(x)), w0, xi_modulators=mods)
        circuit.readout.group.eta_online = spec.readout_eta
        circuit.network.run(len(x) * spec.timing.slot, namespace={})
        frozen = circuit.get_weights()
    np.testing.assert_array_equal(frozen.hidden[0], w0.hidden[0])
    np.testing.assert_array_equal(frozen.readout, w0.readout)
    with pytest.raises(ValueError, match="xi_modulators"):
        CompiledEpochTrainer(spec, w0, 4, 0, xi_source="reservoir")


def test_compiled_epoch_applies_the_last_samples_hidden_update():
    """A sample's hidden update runs at the next slot boundary; for the last sample of a run
    that boundary is the end of the run, which the run must reach (it stopped one step short:
    a one-sample epoch left W unchanged and its eligibility unused)."""
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    x, y, _, _ = _digits(1, 1)
    spec = _small_spec(hidden=(12,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    config = XiModulatorConfig(
        n_neurons=12, n_units=30, n_chunks=1, window_products=False, stream_length=64
    )
    with CompiledEpochTrainer(
        spec, w0, 1, 0, xi_source="reservoir", xi_modulators=[fit_xi_modulator(config)],
        backend="numpy", warmup=0,
    ) as trainer:  # fmt: skip
        trainer.run_epoch(x[:1], y[:1])
        learned = trainer.weights
    assert np.abs(learned.hidden[0] - w0.hidden[0]).max() > 0


@pytest.mark.slow
def test_runtime_and_cpp_standalone_agree(brian_build_cache):
    """One training pass from the same weights on runtime (numpy) and cpp_standalone
    (one build, re-run per sample). The two backends draw their Poisson spikes from different
    random number generators (numpy's vs the C++ standard library's), so spike trains — and
    hence weights — cannot agree exactly; everything else is deterministic. We check that
    rates, weight changes and accuracy agree within sampling error."""
    x, y, _, _ = _digits(40, 0)
    spec = _small_spec()
    w0 = init_weights(spec, np.random.default_rng(3), mean=0.7, spread=0.7)
    results, weights = {}, {}
    for backend in ("numpy", "cpp_standalone"):
        with ExactXiTrainer(
            spec, w0, XiSettings(), backend=backend, seed=5, cache_root=brian_build_cache
        ) as trainer:
            results[backend] = trainer.train_epoch(x, y)
            weights[backend] = trainer.weights
    r_rt, r_sa = results["numpy"].mean_rates[0], results["cpp_standalone"].mean_rates[0]
    # mean rate per neuron over 40 samples x 34 ms windows: Poisson sd ~ sqrt(r / (40 x 34 ms))
    sd = np.sqrt(np.maximum(r_rt, 1.0) / (len(x) * float(spec.timing.window)))
    assert np.mean(np.abs(r_rt - r_sa) < 5 * sd) > 0.95
    assert abs(r_rt.mean() - r_sa.mean()) < 0.05 * r_rt.mean() + 1.0
    d_rt = weights["numpy"].hidden[0] - w0.hidden[0]
    d_sa = weights["cpp_standalone"].hidden[0] - w0.hidden[0]
    assert np.corrcoef(d_rt.ravel(), d_sa.ravel())[0, 1] > 0.5
    assert 0.5 < np.abs(d_sa).mean() / np.abs(d_rt).mean() < 2.0


def _train_small(trainer_kind: str, backend: str):
    """Initial weights, trained weights and an evaluation after a few training samples."""
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    x, y, xt, yt = _digits(8, 3)
    spec = _small_spec(hidden=(10,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    if trainer_kind == "exact":
        with ExactXiTrainer(
            spec, w0, XiSettings(window=3), backend=backend, seed=0, warmup=0
        ) as trainer:
            trainer.train_epoch(x, y)
            return w0, trainer.weights, trainer.evaluate(xt, yt)
    config = XiModulatorConfig(
        n_neurons=10, n_units=30, n_chunks=1, window_products=False, stream_length=64
    )
    with CompiledEpochTrainer(
        spec, w0, len(x), len(xt), xi_source="reservoir",
        xi_modulators=[fit_xi_modulator(config)], backend=backend, warmup=2, seed=0,
    ) as trainer:  # fmt: skip
        _, test = trainer.run_epoch(x, y, xt, yt)
        return w0, trainer.weights, test


@pytest.mark.parametrize("trainer_kind", ["exact", "compiled-epoch"])
def test_cython_runtime_trains_like_numpy(trainer_kind, brian_build_cache, monkeypatch):
    """Brian2's default runtime target (Cython, which the other runtime tests replace by numpy
    to skip compiling) generates code that trains exactly as numpy's does: the same spikes
    (both targets draw from numpy's generator) and the same weights up to rounding. Compiled
    without optimisation or debug information (-O0 -g0), which more than halves the compile
    time, into the test build cache: Brian2's Cython cache key leaves the flags out, so these
    extensions must not land in the user's ~/.cython."""
    from brian2 import prefs

    from plastix.circuits.backend import backend_problems

    if backend_problems("cython"):
        pytest.skip("no Cython + C++ compiler here")
    monkeypatch.setitem(prefs, "codegen.cpp.extra_compile_args_gcc", ["-w", "-O0", "-g0"])
    monkeypatch.setitem(
        prefs, "codegen.runtime.cython.cache_dir", str(brian_build_cache / "cython-O0")
    )
    _, w_cython, test_cython = _train_small(trainer_kind, "cython")
    w0, w_numpy, test_numpy = _train_small(trainer_kind, "numpy")
    assert np.abs(w_numpy.hidden[0] - w0.hidden[0]).max() > 0  # the rule acted
    np.testing.assert_allclose(w_cython.hidden[0], w_numpy.hidden[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(w_cython.readout, w_numpy.readout, rtol=1e-9, atol=1e-12)
    for group in ("input", "hidden0"):
        (i_c, t_c), (i_n, t_n) = test_cython.spikes[group], test_numpy.spikes[group]
        assert len(t_n) > 0
        np.testing.assert_array_equal(i_c, i_n)
        np.testing.assert_allclose(t_c, t_n)
    assert test_cython.predictions.tolist() == test_numpy.predictions.tolist()


def test_standalone_code_generation(tmp_path):
    """The exact-ξ circuit that is built once and re-run per sample generates cpp_standalone code
    without a NetworkOperation, with the per-run reseeding inserted after the run_args."""
    from plastix.circuits.ib_network import _StandaloneCircuit

    spec = _small_spec()
    w0 = init_weights(spec, np.random.default_rng(0))
    built = _StandaloneCircuit(
        spec, w0, "cpp_standalone", directory=tmp_path, cache_root=None, codegen_only=True
    )
    built.close()
    main = (tmp_path / "main.cpp").read_text()
    assert "ib_w0" in main and "ib_readout" in main
    body = main[main.index("int main(") :]
    applied = body.index("set_from_command_line(args);")
    reseeded = body.index("_random_generators[_i].seed(")
    assert "run_seed_holder_run_seed[0] * 7919UL" in body[reseeded:]
    assert applied < reseeded < body.index("network.run(")


def test_cuda_standalone_code_generation(tmp_path):
    """Code generation (no compilation, no GPU) of a compiled reservoir-ξ epoch for
    cuda_standalone, where brian2cuda is importable."""
    pytest.importorskip("brian2cuda")
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    spec = _small_spec(hidden=(8,))
    w0 = init_weights(spec, np.random.default_rng(0))
    mods = [
        fit_xi_modulator(
            XiModulatorConfig(
                n_neurons=8, n_units=10, n_chunks=1, window_products=False, stream_length=32
            )
        )
    ]
    with CompiledEpochTrainer(
        spec, w0, 3, 2, xi_source="reservoir", xi_modulators=mods,
        backend="cuda_standalone", directory=tmp_path, codegen_only=True,
    ) as trainer:  # fmt: skip
        trainer.build()
    assert (tmp_path / "main.cu").exists() or any(tmp_path.rglob("*.cu"))


def test_circuit_weight_layout_round_trip():
    spec = _small_spec(hidden=(7, 5), n_classes=3)
    rng = np.random.default_rng(0)
    weights = CircuitWeights(
        [rng.normal(size=(7, 64)), rng.normal(size=(5, 7))], rng.normal(size=(3, 5)), np.arange(3.0)
    )
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, np.zeros((1, 64)), [0], [0.0], weights)
        back = circuit.get_weights()
        means = circuit.get_rate_means()
        syn = circuit.projections[1].synapses
        i, j, w = np.array(syn.i[:]), np.array(syn.j[:]), np.array(syn.w[:])
        # what get_* returned are snapshots: later changes to the circuit leave them alone
        first_means = [m.copy() for m in means]
        circuit.set_rate_means([m + 1 for m in means])
        circuit.set_weights(CircuitWeights(back.hidden, back.readout, np.full(3, 7.0)))
    for a, b in zip(back.hidden, weights.hidden, strict=True):
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(back.readout, weights.readout)
    np.testing.assert_array_equal(back.bias, weights.bias)
    for m, first in zip(means, first_means, strict=True):
        np.testing.assert_array_equal(m, first)
    np.testing.assert_allclose(w, weights.hidden[1][j, i])  # W[post, pre]
    with pytest.raises(ValueError, match="hidden"):
        CircuitWeights([np.zeros((7, 64))], np.zeros((3, 5)), np.zeros(3)).check(spec)


# ------------------------------------------------------------------------------ experiment


def _run_small_experiment(tmp_path, device="runtime", name="r.h5", **overrides):
    """ib-spiking on a few digits with a small, fast circuit (runtime backend by default)."""
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    settings = {
        "n_train": 30,
        "n_test": 20,
        "epochs": 2,
        "hidden": [20],
        "presentation_ms": 20.0,
        "settle_ms": 4.0,
        "dt_ms": 1.0,
    }
    settings.update(overrides)
    out = run_experiment(
        "ib-spiking", overrides=settings, device=device, out=tmp_path / name, seed=0
    )
    return read_result(out)


def test_dense_projection_is_pre_major_and_refuses_a_transposed_matrix():
    """Synapse ``s = j_pre * n_post + i_post``: ``to_flat`` puts ``M[i, j]`` there and
    ``to_matrix`` inverts it; a ``(n_pre, n_post)`` matrix (same size, transposed) is refused
    instead of being scrambled into the synapses."""
    from brian2 import NeuronGroup

    with activate_backend("numpy"):
        pre = NeuronGroup(3, "v : 1", threshold="False", name="dense_pre")
        post = NeuronGroup(2, "v : 1", name="dense_post")
        proj = DenseProjection(pre, post, "w : 1", "v_post += w", {}, "dense", None)
        i, j = np.array(proj.synapses.i[:]), np.array(proj.synapses.j[:])
    np.testing.assert_array_equal(i, [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(j, [0, 1, 0, 1, 0, 1])
    matrix = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])  # (n_post, n_pre)
    flat = proj.to_flat(matrix)
    np.testing.assert_array_equal(flat, matrix[j, i])
    np.testing.assert_array_equal(proj.to_matrix(flat), matrix)
    with pytest.raises(ValueError, match=r"expected \(n_post, n_pre\) = \(2, 3\)"):
        proj.to_flat(matrix.T)


def test_cpp_standalone_runs_reuse_the_compiled_circuit(tmp_path, monkeypatch):
    """A second ib-spiking run of the same circuit starts from the first run's compiled
    project ($PLASTIX_BUILD_CACHE) and gives the same result."""
    from plastix.circuits.backend import backend_problems

    if backend_problems("cpp_standalone"):
        pytest.skip("no working C++ compiler + make here")
    cache = tmp_path / "compiled"
    monkeypatch.setenv("PLASTIX_BUILD_CACHE", str(cache))
    small = dict(n_train=6, n_test=4, epochs=1, hidden=[8], warmup_samples=2)
    first = _run_small_experiment(tmp_path, "cpp_standalone", "first.h5", **small)
    [circuit] = list(cache.iterdir())
    [project] = list(circuit.iterdir())
    assert (project / "main").is_file()
    second = _run_small_experiment(tmp_path, "cpp_standalone", "second.h5", **small)
    assert first.status == second.status == "complete"
    assert not (tmp_path / "second.h5.work").exists()  # the private build folder is gone
    assert list(cache.iterdir()) == [circuit]  # the same circuit, so the same cache entry
    np.testing.assert_array_equal(first.weights["w0_epoch0"], second.weights["w0_epoch0"])
    assert first.summary["test_accuracy"] == second.summary["test_accuracy"]


def test_experiment_writes_hdf5_contract(tmp_path):
    result = _run_small_experiment(tmp_path, raster_samples=2)
    assert result.status == "complete"
    assert {"test_accuracy", "train_accuracy", "samples_per_s", "wall_s"} <= set(result.summary)
    np.testing.assert_array_equal(result.metrics["epoch"], [0, 1])
    assert len(result.metrics["test_accuracy"]) == 2
    assert 0.0 <= result.summary["test_accuracy"] <= 1.0
    assert (result.summary["w_init_mean"], result.summary["readout_eta"]) == (0.7, 2.5)
    assert {"input", "hidden0"} <= set(result.spikes)
    i, t = result.spikes["hidden0"]
    assert len(i) == len(t) and (len(t) == 0 or t.max() < 2 * 0.020 + 1e-9)
    assert result.weights["w0_epoch1"].shape == (20, 64)
    assert result.weights["readout_epoch1"].shape == (10, 20)
    assert not np.allclose(result.weights["w0_epoch1"], result.weights["w0_init"])


@pytest.mark.parametrize("modulator", ["kernel-memory", "factorised"])
def test_experiment_reservoir_xi_with_each_modulator(tmp_path, modulator):
    result = _run_small_experiment(
        tmp_path,
        n_train=24,
        n_test=8,
        epochs=1,
        hidden=[12],
        xi_source="reservoir",
        modulator=modulator,
        modulator_units=20,
        modulator_chunks=1,
        warmup_samples=4,
    )
    assert result.status == "complete"
    assert result.summary["modulator_fit_s"] > 0
    assert not np.allclose(result.weights["w0_epoch0"], result.weights["w0_init"])


@pytest.mark.parametrize(("n_input", "kept"), [(64, 64), (784, 256)])
def test_kernel_memory_modulator_keeps_every_input_coordinate_up_to_256(n_input, kept):
    """By default the kernel-memory modulator sees all of a small input and a 256-dimensional
    random projection of a large one; an explicit ``modulator_x_projection`` wins."""
    from plastix.sims.exp_ib_spiking import IBSpikingConfig, fit_modulator

    cfg = IBSpikingConfig(window=3, modulator_chunks=1)
    assert fit_modulator(cfg, 5, 3, n_input, seed=0).config.x_projection == kept
    cfg = IBSpikingConfig(window=3, modulator_chunks=1, modulator_x_projection=8)
    assert fit_modulator(cfg, 5, 3, n_input, seed=0).config.x_projection == 8


def test_dataset_defaults_fill_only_the_keys_left_unset():
    """w_init_mean and readout_eta left at None take the dataset's values (digits 0.7 mV and
    2.5/s, Fashion-MNIST 1.4 mV and 1/s) in the circuit and the initial weights; a value the
    user sets wins; the config round-trips through the CLI's string form."""
    from plastix.sims.config import build_config
    from plastix.sims.exp_ib_spiking import IBSpikingConfig, circuit_spec

    digits = IBSpikingConfig().resolved()
    assert (digits.w_init_mean, digits.readout_eta) == (0.7, 2.5)
    fashion = IBSpikingConfig(dataset="fashion-mnist").resolved()
    assert (fashion.w_init_mean, fashion.readout_eta) == (1.4, 1.0)
    assert circuit_spec(IBSpikingConfig(dataset="fashion-mnist"), 784, 10).readout_eta == 1 * Hz
    assert circuit_spec(IBSpikingConfig(), 64, 10).readout_eta == 2.5 * Hz
    mixed = IBSpikingConfig(dataset="fashion-mnist", readout_eta=3.0).resolved()
    assert (mixed.w_init_mean, mixed.readout_eta) == (1.4, 3.0)
    cfg = build_config(IBSpikingConfig, {"dataset": "fashion-mnist", "w_init_mean": "2.0"})
    assert cfg.resolved().w_init_mean == 2.0 and cfg.resolved().readout_eta == 1.0


# ------------------------------------------------------------------------------ per-sample state


def _tonic_layer_traces(variable: str, tau_name: str, tau, n_slots: int):
    """Three LIF neurons under constant drive above rheobase (15 mV): ``variable`` recorded
    after every step's resets (``when="end"``), and the time step of every spike. The monitor
    values are copied: Brian2 2.11's arrays do not keep the monitor's memory alive."""
    from brian2 import StateMonitor

    timing = SampleTiming(presentation=100 * ms, settle=10 * ms, dt=0.5 * ms)
    drive = np.array([18.0, 25.0, 40.0]) * mV
    with activate_backend("numpy"):
        layer = LIFLayer(
            len(drive),
            LIFParams(),
            timing,
            learn_schedule([1] * n_slots, timing),
            name=f"tonic_{variable}",
            rate_norm=100 * Hz,
            **{tau_name: tau},
        )
        layer.group.I_ext = drive
        trace = StateMonitor(layer.group, variable, record=True, when="end")
        spikes = SpikeMonitor(layer.group)
        Network(layer.group, trace, spikes).run(n_slots * timing.slot, namespace={})
        values = np.array(getattr(trace, variable)[:], dtype=float)  # (n_neurons, n_steps)
        spike_i = np.array(spikes.i[:])
        spike_step = np.round(np.asarray(spikes.t_[:]) / float(timing.dt)).astype(int)
    return timing, values, spike_i, spike_step


def test_rate_mean_is_a_spike_filter_with_tau_mean_and_jump_one_over_tau_mean_rate_norm():
    """``rate_mean`` after step n equals ``sum_{spikes s <= n} exp(-(n - s) dt / tau_mean) /
    (tau_mean rate_norm)`` (it starts at 0 and carries over sample ends), whose mean is
    ``rate / rate_norm``; a wrong time constant breaks the match from the first spike on."""
    tau_mean = 50 * ms
    timing, values, spike_i, spike_step = _tonic_layer_traces("rate_mean", "tau_mean", tau_mean, 5)
    dt, tau = float(timing.dt), float(tau_mean)
    steps = np.arange(values.shape[1])
    jump = 1.0 / (tau * 100.0)  # 1 / (tau_mean rate_norm)
    for neuron in range(values.shape[0]):
        s = spike_step[spike_i == neuron]
        assert len(s) > 20  # tonic firing over the 10 tau_mean of the run
        lag = steps[:, None] - s[None, :]
        expected = jump * np.where(lag >= 0, np.exp(-np.maximum(lag, 0) * dt / tau), 0.0).sum(1)
        np.testing.assert_allclose(values[neuron], expected, rtol=1e-9, atol=1e-12)
    # after 10 tau_mean the filter has forgotten its start: over the last 2 tau_mean its mean
    # is the spike rate / rate_norm up to the count's +-1 spike edge effect per window
    tail = steps >= values.shape[1] - round(2 * tau / dt)
    for neuron in range(values.shape[0]):
        s = spike_step[spike_i == neuron]
        rate = np.sum(s >= steps[tail][0]) / (tail.sum() * dt)
        edge = 1.0 / (tail.sum() * dt) / 100.0 + 0.05 * rate / 100.0
        assert abs(values[neuron, tail].mean() - rate / 100.0) < edge


def test_rtrace_sums_the_samples_spikes_decaying_with_tau_trace():
    """``rtrace`` after step n equals ``sum_{spikes s <= n of this sample} exp(-(n - s) dt /
    tau_trace)`` (+1 at the spike's own step), and is 0 after each sample's last step."""
    tau_trace = 20 * ms
    n_slots = 2
    timing, values, spike_i, spike_step = _tonic_layer_traces(
        "rtrace", "tau_trace", tau_trace, n_slots
    )
    dt, tau = float(timing.dt), float(tau_trace)
    steps = np.arange(values.shape[1])
    slot_of = steps // timing.slot_steps
    last_step = steps % timing.slot_steps == timing.slot_steps - 1
    for neuron in range(values.shape[0]):
        s = spike_step[spike_i == neuron]
        assert len(s) > 5
        lag = steps[:, None] - s[None, :]
        same_sample = slot_of[:, None] == (s // timing.slot_steps)[None, :]
        kernel = np.where((lag >= 0) & same_sample, np.exp(-np.maximum(lag, 0) * dt / tau), 0.0)
        expected = np.where(last_step, 0.0, kernel.sum(1))
        np.testing.assert_allclose(values[neuron], expected, rtol=1e-9, atol=1e-12)


def test_z_last_is_the_window_spike_count_over_window_times_z_rate():
    """At each sample's end ``z_last`` becomes that sample's window spike count divided by
    ``window z_rate`` (window = presentation - settle = 90 ms here, not the presentation)."""
    z_rate = 50 * Hz
    n_slots = 2
    timing, values, spike_i, spike_step = _tonic_layer_traces("z_last", "z_rate", z_rate, n_slots)
    slot_step = spike_step % timing.slot_steps
    in_window = (slot_step >= timing.settle_steps) & (slot_step < timing.on_steps)
    scale = float(timing.window) * 50.0
    assert float(timing.window) == pytest.approx(0.090)
    for k in range(n_slots):
        mine = in_window & (spike_step // timing.slot_steps == k)
        counts = np.bincount(spike_i[mine], minlength=values.shape[0])
        assert np.all(counts >= 5)  # tonic firing: every neuron spikes in the window
        last = (k + 1) * timing.slot_steps - 1
        np.testing.assert_allclose(values[:, last], counts / scale, rtol=1e-12)


def test_sample_timing_and_learn_schedule_refuse_negative_gaps_and_non_binary_masks():
    with pytest.raises(ValueError, match="gap"):
        SampleTiming(presentation=20 * ms, gap=-5 * ms, settle=5 * ms)
    timing = SampleTiming()
    with pytest.raises(ValueError, match="mask"):
        learn_schedule([1, 0.5, 0], timing)
    with pytest.raises(ValueError, match="mask"):
        learn_schedule([], timing)


def test_readout_window_logit_and_bias_accumulator_on_a_silent_input():
    """RateReadout alone with ``a = 0`` (logits = b), settle 0: over each sample ``abar`` is
    the window average of the logits, ``b``, whether or not the sample is learned from;
    ``bias_acc`` is ``window (onehot(y) - softmax(b))`` for a learned sample (softmax
    normalised from the first step on) and 0 for one that is not."""
    from brian2 import EventMonitor, TimedArray

    from plastix.circuits.layers import RateReadout

    timing = SampleTiming(presentation=20 * ms, settle=0 * ms, dt=0.5 * ms)
    b = np.array([0.4, -0.3, 1.1])
    labels = [2, 0]
    with activate_backend("numpy"):
        learn = learn_schedule([1, 0], timing, name="ro_learn")
        label = TimedArray(np.eye(3)[labels], dt=timing.slot, name="ro_label")
        readout = RateReadout(3, timing, learn, label, name="ro")
        readout.group.b = b
        monitor = EventMonitor(
            readout.group, "sample_end", ["abar", "bias_acc"], when="after_resets", order=-1
        )
        Network(*readout.objects, monitor).run(2 * timing.slot, namespace={})
        order = np.lexsort((np.asarray(monitor.i[:]), np.asarray(monitor.t_[:])))
        abar = np.asarray(monitor.abar[:])[order].reshape(2, 3)
        bias_acc = np.asarray(monitor.bias_acc_[:])[order].reshape(2, 3)
    np.testing.assert_allclose(abar, [b, b], rtol=1e-12)
    softmax = np.exp(b) / np.exp(b).sum()
    np.testing.assert_allclose(bias_acc[0], 0.020 * (np.eye(3)[2] - softmax), rtol=1e-9)
    np.testing.assert_array_equal(bias_acc[1], 0.0)


def test_learning_window_starts_exactly_at_settle_steps():
    """One slot (20 ms on, 5 ms gap, settle 5 ms, dt 0.5 ms): ``in_window`` is 1 exactly on
    steps 10 to 39 (``settle_steps <= slot_step < on_steps``), 30 steps, 0 elsewhere."""
    from brian2 import StateMonitor

    timing = SampleTiming(presentation=20 * ms, gap=5 * ms, settle=5 * ms, dt=0.5 * ms)
    with activate_backend("numpy"):
        layer = LIFLayer(1, LIFParams(), timing, learn_schedule([1], timing), name="window")
        monitor = StateMonitor(layer.group, "in_window", record=0)
        Network(layer.group, monitor).run(timing.slot, namespace={})
        in_window = np.array(monitor.in_window[0], dtype=float)
    expected = np.zeros(50)  # 25 ms / 0.5 ms
    expected[10:40] = 1.0  # settle 5 ms = 10 steps, presentation 20 ms = 40 steps
    np.testing.assert_array_equal(in_window, expected)
    assert in_window.sum() == timing.on_steps - timing.settle_steps == 30
    assert np.flatnonzero(in_window)[0] == timing.settle_steps == 10


@pytest.mark.parametrize("gap", [0 * ms, 2 * ms])
def test_window_spike_counts_leave_out_settle_period_spikes(gap):
    """``records(k).counts`` (the sample_end copy of ``n_spikes``) equal the SpikeMonitor's
    spikes of sample k on steps ``settle_steps <= step < on_steps``; the hidden neurons also
    spike during the settle period, and those must not be counted. Without a gap the window's
    last step is the sample_end step, whose spikes count too (read after that step's resets).
    Samples not learned from (learn = 0, 1, 0) are counted alike: the flag gates learning, not
    the rates."""
    x, y, _, _ = _digits(3, 0)
    timing = SampleTiming(presentation=40 * ms, gap=gap, settle=12 * ms, dt=1 * ms)
    spec = _small_spec(hidden=(10,), timing=timing)
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, np.ones_like(x), y, np.array([0.0, 1.0, 0.0]), w0)
        circuit.network.run(len(x) * timing.slot, namespace={})
        records = circuit.records(0)
        monitor = circuit.spike_monitors["hidden0"]
        i = np.array(monitor.i[:])
        step = np.round(np.asarray(monitor.t_[:]) / float(timing.dt)).astype(int)
    slot_step = step % timing.slot_steps
    in_window = (slot_step >= timing.settle_steps) & (slot_step < timing.on_steps)
    assert np.sum(~in_window) > 0  # settle-period spikes exist, so the test can tell
    last_window_step = slot_step == timing.on_steps - 1
    assert np.sum(last_window_step) > 0  # and spikes on the window's last step
    assert len(records) == len(x)
    for k, record in enumerate(records):
        mine = (step // timing.slot_steps == k) & in_window
        expected = np.bincount(i[mine], minlength=10)
        assert expected.sum() > 0
        np.testing.assert_array_equal(record.counts[0], expected)


def test_synaptic_current_does_not_carry_into_the_next_sample():
    """Strong input up to the last step of sample 1, silence in sample 2, in one IBCircuit run
    (no Python reset between samples, as in a compiled epoch): ``I_syn`` is large at sample
    1's end, yet sample 2 runs as a fresh run of a silent sample does: ``I_syn = 0`` and the
    membrane at v_rest on every step (nothing drives it)."""
    from brian2 import StateMonitor

    spec = _small_spec(hidden=(10,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    steps = spec.timing.slot_steps
    samples = np.stack([np.ones(spec.n_input), np.zeros(spec.n_input)])
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, samples, np.zeros(2, int), np.zeros(2), w0)
        monitor = StateMonitor(circuit.layers[0].group, ["v", "I_syn"], record=True)
        circuit.network.add(monitor)
        circuit.network.run(2 * spec.timing.slot, namespace={})
        v, i_syn = np.array(monitor.v_[:]), np.array(monitor.I_syn_[:])
    assert v.shape[1] == 2 * steps
    assert np.all(i_syn[:, steps - 1] > 5e-3)  # > 5 mV of synaptic drive at sample 1's end
    np.testing.assert_array_equal(i_syn[:, steps:], 0.0)
    np.testing.assert_array_equal(v[:, steps:], float(spec.lif.v_rest))


# ------------------------------------------------------------------------------ sample updates


def test_in_simulation_hidden_update_is_w_minus_eta_xi_eligibility():
    """Reservoir ξ inside the run: at every slot boundary each hidden synapse goes from ``w``
    to ``clip(w - eta * xi[post] * E, w_min, w_max)`` with the ξ and the eligibility ``E``
    present just before the update (recorded on the slot clock around the update's order);
    the update then clears ``E`` for the next sample."""
    from brian2 import StateMonitor

    from plastix.circuits.ib_network import _ORDER_UPDATE

    n_samples, n_hidden = 4, 12
    x, y, spec, w0, modulator = _reservoir_xi_circuit_inputs(n_samples, n_hidden)
    slot = spec.timing.slot
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, x, y, np.ones(n_samples), w0, xi_modulators=[modulator])
        syn = circuit.projections[0].synapses
        at = dict(dt=slot, when="groups")
        before = StateMonitor(syn, ["w", "elig_sum"], record=True, order=_ORDER_UPDATE - 1, **at)
        after = StateMonitor(syn, ["w", "elig_sum"], record=True, order=_ORDER_UPDATE + 1, **at)
        xi_mon = StateMonitor(
            circuit.layers[0].group, "res_xi", record=True, order=_ORDER_UPDATE - 1, **at
        )
        circuit.network.add(before, after, xi_mon)
        circuit.network.run(circuit.run_duration(n_samples), namespace={})
        post = np.array(syn.j[:])
        w_before, elig = np.array(before.w[:]), np.array(before.elig_sum_[:])
        w_after, xi = np.array(after.w[:]), np.array(xi_mon.res_xi[:])
        elig_after = np.array(after.elig_sum_[:])
    rule = spec.rule
    assert w_before.shape[1] == n_samples + 1  # boundaries 0, slot, ..., n_samples * slot
    expected = np.clip(
        w_before - float(rule.eta) * xi[post] * elig, rule.w_min, rule.w_max
    )  # xi[post]: (n_synapses, n_boundaries)
    np.testing.assert_allclose(w_after, expected, rtol=1e-9, atol=1e-12)
    assert np.abs(w_after - w_before)[:, 1:].max() > 1e-3  # the update acted
    assert np.all(np.abs(xi[:, 1:]).max(0) > 0) and np.abs(elig[:, 1:]).max() > 0
    np.testing.assert_array_equal(elig_after, 0.0)


def test_eligibility_counts_only_spikes_inside_the_learning_window_of_learned_samples():
    """``elig_sum += gate_post * psi_post / rate_norm`` on each presynaptic spike: it stays put
    through each sample's settle period and gap and through a sample not learned from, and
    grows inside the learning windows of the learned ones (recorded every step with the
    layer's ``gate`` of the same step)."""
    from brian2 import StateMonitor

    n_samples = 3
    x, y, _, _ = _digits(n_samples, 0)
    spec = _small_spec(
        hidden=(8,), timing=SampleTiming(20 * ms, gap=4 * ms, settle=6 * ms, dt=1 * ms)
    )
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, x, y, np.array([1.0, 0.0, 1.0]), w0)
        syn = circuit.projections[0].synapses
        elig_mon = StateMonitor(syn, "elig_sum", record=True)
        gate_mon = StateMonitor(circuit.layers[0].group, "gate", record=[0])
        circuit.network.add(elig_mon, gate_mon)
        circuit.network.run(circuit.run_duration(n_samples), namespace={})
        elig, gate = np.array(elig_mon.elig_sum_[:]), np.array(gate_mon.gate[0])
    steps_changed = np.flatnonzero(np.any(np.diff(elig, axis=1) != 0, axis=0))
    assert len(steps_changed) > 20
    assert np.all(gate[steps_changed] == 1)
    # 1 ms steps, slots of 24: windows at steps 6..19 of samples 0 and 2
    assert np.flatnonzero(gate).tolist() == [24 * k + s for k in (0, 2) for s in range(6, 20)]


def _softmax(b: np.ndarray) -> np.ndarray:
    e = np.exp(b - b.max())
    return e / e.sum()


def _silent_bias_path(b0: np.ndarray, labels, eta: float, window: float) -> np.ndarray:
    """The readout bias after a sequence of learned samples with a silent hidden layer: the
    logits are the bias alone, so ``p = softmax(b)`` all sample long and each sample adds
    ``eta * integral gate (y - p) dt = eta * window * (onehot(y) - softmax(b))``."""
    b = np.asarray(b0, dtype=float).copy()
    for label in labels:
        b = b + eta * window * (np.eye(len(b))[label] - _softmax(b))
    return b


def test_in_simulation_readout_bias_follows_the_delta_rule():
    """IBCircuit with ``eta_online > 0``, three silent samples then three digits in one run:
    after the silent ones (``p = softmax(b)`` exactly) the bias is the hand-iterated delta
    rule; at the end it is that plus ``eta_online`` times the recorded ``bias_acc`` of each
    digit sample."""
    from brian2 import StateMonitor

    spec = _small_spec(hidden=(10,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    w0.bias = np.linspace(-0.4, 0.5, spec.n_classes)
    x, y, _, _ = _digits(3, 0)
    labels = np.array([3, 1, 3])
    samples = np.concatenate([np.zeros((3, spec.n_input)), x])
    eta, slot = 2.0, spec.timing.slot
    with activate_backend("numpy"):
        circuit = IBCircuit(spec, samples, np.r_[labels, y], np.ones(6), w0)
        circuit.readout.group.eta_online = eta * Hz
        monitor = StateMonitor(circuit.readout.group, "b", record=True, dt=slot)
        circuit.network.add(monitor)
        circuit.network.run(6 * slot, namespace={})
        b_at_onset = np.array(monitor.b[:]).T  # row k: before sample k
        final = circuit.get_weights().bias
        digit_acc = np.array([r.bias_acc for r in circuit.records(3)])
    expected = _silent_bias_path(w0.bias, labels, eta, float(spec.timing.window))
    np.testing.assert_allclose(b_at_onset[3], expected, rtol=1e-9, atol=1e-12)
    assert np.abs(digit_acc).max() > 1e-3
    np.testing.assert_allclose(final, expected + eta * digit_acc.sum(0), rtol=1e-9, atol=1e-12)


def test_exact_xi_readout_bias_follows_the_delta_rule():
    """ExactXiTrainer, silent input (logits = bias, so ``p = softmax(b)``), learning from the
    first sample, a ξ window longer than the pass (no hidden update): the bias after the
    epoch is the hand-iterated ``b += readout_eta * window * (onehot(y) - softmax(b))``."""
    spec = _small_spec(hidden=(10,))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    w0.bias = np.linspace(0.3, -0.6, spec.n_classes)
    labels = np.array([2, 7, 2, 0])
    with ExactXiTrainer(
        spec, w0, XiSettings(window=8), backend="numpy", seed=0, warmup=0
    ) as trainer:
        trainer.train_epoch(np.zeros((len(labels), spec.n_input)), labels)
        learned = trainer.weights
    expected = _silent_bias_path(
        w0.bias, labels, float(spec.readout_eta), float(spec.timing.window)
    )
    np.testing.assert_allclose(learned.bias, expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(learned.hidden[0], w0.hidden[0])


def test_exact_xi_working_memory_pairs_each_samples_input_label_and_rates():
    """After a pass over 4 digits with a 4-sample window, memory item k holds x[k],
    onehot(y[k]) and sample k's hidden window spike counts (from the SpikeMonitor) divided by
    ``window * rate_norm``."""
    x, y, _, _ = _digits(4, 0)
    timing = SampleTiming(presentation=40 * ms, settle=6 * ms, dt=1 * ms)
    spec = _small_spec(hidden=(10,), timing=timing)
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    with ExactXiTrainer(
        spec, w0, XiSettings(window=4), backend="numpy", seed=0, warmup=0, raster_samples=4
    ) as trainer:
        result = trainer.train_epoch(x, y)
        items = list(trainer.memory.items)
    assert np.all(y[1:] != y[:-1])  # neighbours differ, so a shifted pairing shows
    i, t = result.spikes["hidden0"]
    step = np.round(t / float(timing.dt)).astype(int)
    slot_step = step % timing.slot_steps
    in_window = (slot_step >= timing.settle_steps) & (slot_step < timing.on_steps)
    scale = float(timing.window) * float(spec.rule.rate_norm)
    assert len(items) == 4
    for k, (xk, yk, rates) in enumerate(items):
        np.testing.assert_array_equal(xk, x[k])
        np.testing.assert_array_equal(yk, np.eye(spec.n_classes)[y[k]])
        counts = np.bincount(i[in_window & (step // timing.slot_steps == k)], minlength=10)
        np.testing.assert_allclose(rates[0], counts / scale, rtol=1e-12)
    assert len(set(np.sum(x, 1).tolist())) == 4  # the inputs differ
