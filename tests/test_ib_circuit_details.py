"""Details of the spiking IB circuit's per-sample bookkeeping: what the readout reads at which
step, its accumulators and their resets, the in-simulation learn gate, ``reset_state``,
``run_args``, the options the spec hands on to the layers, and the argument checks of
:mod:`plastix.circuits.layers` and :mod:`plastix.circuits.ib_network`.

All runs use Brian2's runtime device with numpy code generation (no compiler).
"""

from __future__ import annotations

import numpy as np
import pytest
from brian2 import Hz, StateMonitor, TimedArray, ms, mV, second, seed

from plastix.circuits.backend import activate_backend
from plastix.circuits.ib_network import (
    CircuitWeights,
    IBCircuit,
    IBCircuitSpec,
    init_weights,
)
from plastix.circuits.layers import LIFLayer, RateReadout, SampleTiming, learn_schedule
from plastix.circuits.neurons import LIFParams
from plastix.plasticity.ib_rule import IBThreeFactor


def _spec(**kw) -> IBCircuitSpec:
    """A small, fast circuit: 1 ms steps, 20 ms on, 4 ms gap, 4 ms settle."""
    defaults = dict(
        hidden=(6,),
        n_classes=3,
        timing=SampleTiming(presentation=20 * ms, gap=4 * ms, settle=4 * ms, dt=1 * ms),
        rule=IBThreeFactor(eta=300 * Hz),
        input_rate=300 * Hz,
        rate_mean_tau=0.3 * second,
    )
    defaults.update(kw)
    return IBCircuitSpec(**defaults)


def _softmax_rows(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _small_modulator(n_neurons: int):
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    config = XiModulatorConfig(
        n_neurons=n_neurons,
        n_classes=3,
        n_units=30,
        n_chunks=1,
        window_products=False,
        stream_length=64,
    )
    return fit_xi_modulator(config)


def test_readout_logits_window_average_and_bias_accumulator_step_by_step():
    """Two driven samples (settle 4, gap 4 steps), bias nonzero, ``eta_online = 0``. Recorded
    every step: the logit input ``a`` at step n is ``W (rtrace / (tau_pre rate_norm) -
    rate_mean)`` of the hidden state left by step n - 1; per sample, ``abar`` is the sum of
    ``a + b`` over the learning window times ``dt / window`` (settle and gap left out) and
    ``bias_acc`` is ``dt`` times the window sum of ``onehot(y) - softmax(a + b)`` with the
    same step's ``a`` (the normaliser Z is summed before the readout integrates)."""
    spec = _spec()
    timing = spec.timing
    rng = np.random.default_rng(1)
    w0 = init_weights(spec, rng, mean=0.7, spread=0.7)
    w0.readout = rng.normal(0.0, 1.5, size=w0.readout.shape)
    w0.bias = np.array([0.3, -0.2, 0.1])
    labels = np.array([2, 0])
    samples = np.ones((2, spec.n_input))
    with activate_backend("numpy"):
        seed(3)
        circuit = IBCircuit(spec, samples, labels, np.ones(2), w0, record_spikes=False)
        a_mon = StateMonitor(circuit.readout.group, "a", record=True, when="thresholds")
        hidden_mon = StateMonitor(
            circuit.layers[0].group, ["rtrace", "rate_mean"], record=True, when="end"
        )
        circuit.network.add(a_mon, hidden_mon)
        circuit.network.run(2 * timing.slot, namespace={})
        a = np.array(a_mon.a[:]).T  # (steps, n_classes)
        rtrace = np.array(hidden_mon.rtrace[:]).T  # (steps, n_hidden)
        rate_mean = np.array(hidden_mon.rate_mean[:]).T
        records = circuit.records(0)
    steps = 2 * timing.slot_steps
    assert a.shape == (steps, 3)
    rates = rtrace / (float(spec.readout_tau_pre) * float(spec.readout_rate_norm)) - rate_mean
    expected_a = np.vstack([np.zeros((1, 3)), rates[:-1] @ w0.readout.T])
    np.testing.assert_allclose(a, expected_a, rtol=1e-9, atol=1e-12)
    assert np.ptp(a[:, 0]) > 0.1  # the logits move, so a stale normaliser would show
    slot_step = np.arange(steps) % timing.slot_steps
    in_window = (slot_step >= timing.settle_steps) & (slot_step < timing.on_steps)
    logits = a + w0.bias
    p = _softmax_rows(logits)
    dt, window = float(timing.dt), float(timing.window)
    assert len(records) == 2
    for s, record in enumerate(records):
        mine = in_window & (np.arange(steps) // timing.slot_steps == s)
        np.testing.assert_allclose(
            record.logits, logits[mine].sum(0) * dt / window, rtol=1e-9, atol=1e-12
        )
        onehot = np.eye(3)[labels[s]]
        np.testing.assert_allclose(
            record.bias_acc, dt * (onehot - p[mine]).sum(0), rtol=1e-9, atol=1e-12
        )


def test_readout_accumulator_is_the_last_samples_centred_delta_rule_sum():
    """Two driven, learned samples: ``readout_accumulator()`` is sample 2's sum alone (the
    accumulator is cleared at sample 1's end) of ``(y_k - p_k) / rate_norm`` over hidden
    spikes j inside the window, with ``p`` the readout's softmax at the spike's step, minus
    ``rate_mean_j`` at the last step times the sample's ``bias_acc_k`` (the centring)."""
    spec = _spec()
    timing = spec.timing
    rng = np.random.default_rng(2)
    w0 = init_weights(spec, rng, mean=0.7, spread=0.7)
    w0.readout = rng.normal(0.0, 1.5, size=w0.readout.shape)
    labels = np.array([1, 2])
    with activate_backend("numpy"):
        seed(3)
        circuit = IBCircuit(spec, np.ones((2, spec.n_input)), labels, np.ones(2), w0)
        p_mon = StateMonitor(circuit.readout.group, "p", record=True, when="thresholds")
        mean_mon = StateMonitor(
            circuit.layers[0].group, "rate_mean", record=True, when="thresholds"
        )
        circuit.network.add(p_mon, mean_mon)
        circuit.network.run(2 * timing.slot, namespace={})
        p = np.array(p_mon.p[:]).T  # (steps, n_classes)
        rate_mean_last = np.array(mean_mon.rate_mean[:])[:, -1]
        spikes = circuit.spike_monitors["hidden0"]
        i = np.array(spikes.i[:])
        step = np.round(np.asarray(spikes.t_[:]) / float(timing.dt)).astype(int)
        acc = circuit.readout_accumulator()
        bias_acc = circuit.records(1)[0].bias_acc
    slot_step = step % timing.slot_steps
    in_window = (slot_step >= timing.settle_steps) & (slot_step < timing.on_steps)
    assert np.sum(in_window & (step < timing.slot_steps)) > 0  # sample 1 had window spikes
    mine = in_window & (step // timing.slot_steps == 1)
    assert np.sum(mine) > 5
    y = np.eye(3)[labels[1]]
    norm = float(spec.readout_rate_norm)
    expected = np.zeros((3, spec.hidden[0]))
    for j, n in zip(i[mine], step[mine], strict=True):
        expected[:, j] += (y - p[n]) / norm
    expected -= bias_acc[:, None] * rate_mean_last[None, :]
    assert np.abs(rate_mean_last).min() > 0 and np.abs(bias_acc).min() > 1e-4
    np.testing.assert_allclose(acc, expected, rtol=1e-9, atol=1e-12)


def test_readout_accumulator_of_a_sample_not_learned_from_is_zero():
    """``learn = 0``: the readout's gate is closed all sample long, so its delta-rule sum
    (and the bias accumulator) stay 0 although the hidden layer spikes in the window."""
    spec = _spec()
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    with activate_backend("numpy"):
        seed(3)
        circuit = IBCircuit(spec, np.ones((1, spec.n_input)), [1], [0.0], w0)
        circuit.network.run(spec.timing.slot, namespace={})
        acc = circuit.readout_accumulator()
        record = circuit.records(0)[0]
    assert record.counts[0].sum() > 0
    np.testing.assert_array_equal(acc, 0.0)
    np.testing.assert_array_equal(record.bias_acc, 0.0)


@pytest.mark.parametrize("update", ["per_sample", "continuous"])
def test_reset_state_clears_every_per_sample_accumulator_and_keeps_weights_and_rate_means(
    update,
):
    """Stopped in the middle of a learning window (1.5 slots), every per-sample quantity is
    nonzero; ``reset_state`` puts the membranes at rest and clears ``I_syn``, ``n_spikes``,
    ``rtrace``, ``abar``, ``bias_acc``, the hidden eligibility (and the continuous rule's
    traces) and the readout's ``acc`` / ``acc_last``, and leaves weights, bias and the
    long-run ``rate_mean`` alone."""
    spec = _spec(rule=IBThreeFactor(eta=300 * Hz, update=update))
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    w0.bias = np.array([0.2, -0.1, 0.4])
    with activate_backend("numpy"):
        seed(3)
        circuit = IBCircuit(spec, np.ones((2, spec.n_input)), [0, 1], np.ones(2), w0)
        circuit.network.run(1.5 * spec.timing.slot, namespace={})
        layer, readout = circuit.layers[0].group, circuit.readout.group
        syn, out = circuit.projections[0].synapses, circuit.readout_projection.synapses

        def per_sample_state() -> dict[str, np.ndarray]:
            return {
                "I_syn": np.array(layer.I_syn_[:]),
                "n_spikes": np.array(layer.n_spikes[:]),
                "rtrace": np.array(layer.rtrace[:]),
                "abar": np.array(readout.abar[:]),
                "bias_acc": np.array(readout.bias_acc_[:]),
                "elig_sum": np.array(syn.elig_sum_[:]),
                "acc": np.array(out.acc_[:]),
                "acc_last": np.array(out.acc_last_[:]),
            }

        before = per_sample_state()
        weights = circuit.get_weights()
        means = circuit.get_rate_means()
        circuit.reset_state()
        after = per_sample_state()
        v = np.array(layer.v_[:])
        traces = (
            [np.array(syn.pre_trace_[:]), np.array(syn.elig_[:])] if update == "continuous" else []
        )
        weights_after = circuit.get_weights()
        means_after = circuit.get_rate_means()
    for name, value in before.items():
        assert np.abs(value).max() > 0, name  # the reset has something to clear
        np.testing.assert_array_equal(after[name], 0.0, err_msg=name)
    np.testing.assert_array_equal(v, float(spec.lif.v_rest))
    for trace in traces:
        np.testing.assert_array_equal(trace, 0.0)
    for a, b in zip(weights_after.hidden, weights.hidden, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(weights_after.readout, weights.readout)
    np.testing.assert_array_equal(weights_after.bias, w0.bias)
    assert np.abs(means[0]).max() > 0
    np.testing.assert_array_equal(means_after[0], means[0])


def test_in_simulation_hidden_update_follows_the_learn_flag_of_the_sample_that_ended():
    """Reservoir ξ, learn = (1, 0): the update at the first slot boundary belongs to sample 0
    (learned), so the hidden weights move there although the sample now starting is not
    learned from; sample 1's update at the end of the run leaves them as they were."""
    from plastix.circuits.ib_network import _ORDER_UPDATE

    spec = _spec(hidden=(12,))
    slot = spec.timing.slot
    w0 = init_weights(spec, np.random.default_rng(0), mean=0.7, spread=0.7)
    with activate_backend("numpy"):
        seed(3)
        circuit = IBCircuit(
            spec,
            np.ones((2, spec.n_input)),
            [0, 1],
            [1.0, 0.0],
            w0,
            xi_modulators=[_small_modulator(12)],
            record_spikes=False,
        )
        syn = circuit.projections[0].synapses
        after = StateMonitor(syn, "w", record=True, dt=slot, when="groups", order=_ORDER_UPDATE + 1)
        circuit.network.add(after)
        circuit.network.run(circuit.run_duration(2), namespace={})
        w = np.array(after.w[:])  # (n_synapses, boundaries 0, slot, 2 slot)
    flat0 = circuit.projections[0].to_flat(w0.hidden[0])
    np.testing.assert_array_equal(w[:, 0], flat0)
    assert np.abs(w[:, 1] - flat0).max() > 0
    np.testing.assert_array_equal(w[:, 2], w[:, 1])


def test_circuit_hands_its_spec_options_on_to_the_hidden_layers():
    """The hidden layers' ``rate_mean`` jump is ``1 / (rate_mean_tau readout_rate_norm)``,
    ``z_last``'s scale ``1 / (window rule.rate_norm)`` and the rate trace's time constant
    ``readout_tau_pre``, with every option away from its default."""
    spec = _spec(
        rate_mean_tau=0.25 * second,
        readout_rate_norm=40 * Hz,
        readout_tau_pre=7 * ms,
        rule=IBThreeFactor(eta=300 * Hz, rate_norm=80 * Hz),
    )
    w0 = init_weights(spec, np.random.default_rng(0))
    with activate_backend("numpy"):
        seed(3)
        circuit = IBCircuit(spec, np.zeros((1, spec.n_input)), [0], [1.0], w0)
    ns = circuit.layers[0].namespace
    assert ns["mean_jump"] == pytest.approx(1.0 / (0.25 * 40.0), rel=1e-12)
    assert float(ns["tau_mean"]) == pytest.approx(0.25, rel=1e-12)
    assert ns["z_scale"] == pytest.approx(1.0 / (0.016 * 80.0), rel=1e-12)
    assert float(ns["tau_trace"]) == pytest.approx(0.007, rel=1e-12)


def _arg(args: dict, key):
    """The value ``args`` holds for a TimedArray or a ``group.var`` view (matched by the
    underlying Brian2 object: each attribute access makes a new view)."""
    target = getattr(key, "variable", key)
    [value] = [v for k, v in args.items() if getattr(k, "variable", k) is target]
    return value


def test_run_args_map_each_given_table_and_leave_out_the_rest():
    """``run_args`` (no run needed) holds entries only for what is given: weights in synapse
    order plus the bias, the one-hot label table, the learn flags, ``eta_online`` and the
    rate means; the label index table only when the circuit has in-simulation ξ."""
    spec = _spec(hidden=(12,))
    rng = np.random.default_rng(0)
    w0 = init_weights(spec, rng)
    with activate_backend("numpy"):
        seed(3)
        circuit = IBCircuit(spec, np.zeros((2, spec.n_input)), [0, 1], np.ones(2), w0)
        assert circuit.run_args() == {}
        w1 = init_weights(spec, rng)
        w1.bias = np.array([1.0, 2.0, 3.0])
        args = circuit.run_args(
            weights=w1, labels=[2, 0], learn=[0, 1], eta_online=3 * Hz, rate_means=[np.ones(12)]
        )
        syn_w = circuit.projections[0].synapses.w
        out_w = circuit.readout_projection.synapses.w
        assert len(args) == 7
        np.testing.assert_array_equal(
            _arg(args, syn_w), circuit.projections[0].to_flat(w1.hidden[0])
        )
        np.testing.assert_array_equal(
            _arg(args, out_w), circuit.readout_projection.to_flat(w1.readout)
        )
        np.testing.assert_array_equal(_arg(args, circuit.readout.group.b), [1.0, 2.0, 3.0])
        np.testing.assert_array_equal(_arg(args, circuit.label), np.eye(3)[[2, 0]])
        np.testing.assert_array_equal(_arg(args, circuit.learn), [0.0, 1.0])
        assert _arg(args, circuit.readout.group.eta_online) == 3 * Hz
        np.testing.assert_array_equal(_arg(args, circuit.layers[0].group.rate_mean), np.ones(12))
        with pytest.raises(ValueError, match=r"learn: \(3,\) values for 2 slots"):
            circuit.run_args(learn=[1, 1, 1])
        with pytest.raises(ValueError, match="labels: 1 values for 2 slots"):
            circuit.run_args(labels=[0])
        with pytest.raises(ValueError, match="labels: values must lie"):
            circuit.run_args(labels=[0, 3])
        modulated = IBCircuit(
            spec,
            np.zeros((2, spec.n_input)),
            [0, 1],
            np.ones(2),
            w0,
            xi_modulators=[_small_modulator(12)],
            name="mod",
        )
        labelled = modulated.run_args(labels=[2, 1])
    assert len(labelled) == 2
    np.testing.assert_array_equal(_arg(labelled, modulated.label_index), [2.0, 1.0])
    np.testing.assert_array_equal(_arg(labelled, modulated.label), np.eye(3)[[2, 1]])


def test_init_weights_scale_with_the_fan_in_and_clip_to_the_rule_bounds():
    """Hidden ``N(mean 64 / n_pre, (spread sqrt(64 / n_pre))^2)`` clipped to [w_min, w_max];
    readout ``N(0, 1 / n_pre)``; bias 0. With spread 0 the hidden weights are exactly the
    (clipped) mean; the spreads are checked on 256- and 400-wide layers."""
    spec = IBCircuitSpec(n_input=256, hidden=(400, 16), n_classes=3)
    flat = init_weights(spec, np.random.default_rng(0), mean=2.0, spread=0.0)
    np.testing.assert_array_equal(flat.hidden[0], 0.5)  # 2 * 64 / 256
    np.testing.assert_array_equal(flat.hidden[1], 0.32)  # 2 * 64 / 400
    np.testing.assert_array_equal(flat.bias, np.zeros(3))
    clipped = init_weights(
        IBCircuitSpec(n_input=8, hidden=(4,)), np.random.default_rng(0), spread=0.0
    )
    np.testing.assert_array_equal(clipped.hidden[0], 5.0)  # 64 / 8 = 8, clipped to w_max
    spread = init_weights(spec, np.random.default_rng(1), mean=0.0, spread=2.0)
    assert np.std(spread.hidden[0]) == pytest.approx(1.0, rel=0.02)  # 2 sqrt(64 / 256)
    assert np.std(spread.hidden[1]) == pytest.approx(0.8, rel=0.05)  # 2 sqrt(64 / 400)
    big = init_weights(
        IBCircuitSpec(n_input=4, hidden=(400,), n_classes=50), np.random.default_rng(2)
    )
    assert np.std(big.readout) == pytest.approx(0.05, rel=0.05)  # 1 / sqrt(400)
    assert abs(np.mean(big.readout)) < 0.01


def test_sample_timing_refuses_gaps_and_settles_off_the_step_grid_or_negative():
    with pytest.raises(ValueError, match="gap: 0.3 ms is not a multiple of dt = 0.5 ms"):
        SampleTiming(presentation=20 * ms, gap=0.3 * ms, settle=5 * ms, dt=0.5 * ms)
    with pytest.raises(ValueError, match="settle: 5.25 ms is not a multiple"):
        SampleTiming(presentation=20 * ms, settle=5.25 * ms, dt=0.5 * ms)
    with pytest.raises(ValueError, match="gap / settle: must be >= 0"):
        SampleTiming(presentation=20 * ms, settle=-5 * ms, dt=0.5 * ms)
    edge = SampleTiming(presentation=20 * ms, settle=19.5 * ms, dt=0.5 * ms)
    assert edge.on_steps - edge.settle_steps == 1  # one-step window is allowed


def test_layers_refuse_too_few_neurons_and_readouts_of_one_class():
    timing = SampleTiming()
    with activate_backend("numpy"):
        learn = learn_schedule([1], timing, name="few_learn")
        with pytest.raises(ValueError, match="n: layer size must be an int >= 1, got 0"):
            LIFLayer(0, LIFParams(), timing, learn, name="few_layer")
        label = TimedArray(np.zeros((1, 1)), dt=timing.slot, name="few_label")
        with pytest.raises(ValueError, match="a readout needs an int >= 2 classes, got 1"):
            RateReadout(1, timing, learn, label, name="few_readout")


def test_circuit_spec_and_weights_refuse_one_class_zero_quantities_and_a_wrong_bias():
    with pytest.raises(ValueError, match="n_classes: need >= 2, got 1"):
        IBCircuitSpec(n_classes=1)
    assert float(IBCircuitSpec(readout_eta=0 * Hz).readout_eta) == 0.0  # a frozen readout
    for name, zero in (("w_unit", 0 * mV), ("input_rate", 0 * Hz)):
        with pytest.raises(ValueError, match=f"{name}: must be positive"):
            IBCircuitSpec(**{name: zero})
    with pytest.raises(ValueError, match="readout_eta: must be positive"):
        IBCircuitSpec(readout_eta=-1 * Hz)
    spec = IBCircuitSpec(n_input=4, hidden=(3,), n_classes=2)
    w = init_weights(spec, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"weights.bias: shape \(3,\), expected \(2,\)"):
        CircuitWeights(w.hidden, w.readout, np.zeros(3)).check(spec)
    with pytest.raises(ValueError, match=r"weights.readout: shape \(3, 2\), expected \(2, 3\)"):
        CircuitWeights(w.hidden, w.readout.T, w.bias).check(spec)


@pytest.mark.parametrize("label", [-1, 2])
def test_circuit_refuses_labels_outside_the_classes_at_both_ends(label):
    """-1 would silently pick the last one-hot column and 2 (= n_classes) is one past it;
    both are refused with the valid range."""
    spec = IBCircuitSpec(n_input=4, hidden=(3,), n_classes=2)
    w = init_weights(spec, np.random.default_rng(0))
    with activate_backend("numpy"):
        with pytest.raises(ValueError, match=r"labels: values must lie in \[0, 2\)"):
            IBCircuit(spec, np.zeros((2, 4)), np.array([0, label]), np.ones(2), w)


def test_static_circuit_refuses_xi_modulators_and_modulator_counts_must_match_layers():
    spec = _spec(hidden=(12,))
    w = init_weights(spec, np.random.default_rng(0))
    modulator = _small_modulator(12)
    with activate_backend("numpy"):
        with pytest.raises(ValueError, match="plastic=False.*nothing to modulate"):
            IBCircuit(spec.static(), np.zeros((1, 64)), [0], [1.0], w, xi_modulators=[modulator])
        with pytest.raises(ValueError, match="xi_modulators: 2 modulators for 1 layers"):
            IBCircuit(spec, np.zeros((1, 64)), [0], [1.0], w, xi_modulators=[modulator] * 2)
