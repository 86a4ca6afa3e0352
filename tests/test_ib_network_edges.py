"""Edges of the spiking IB circuit and its trainers: argument checks a user meets (sizes of
zero, wrong sample widths, empty passes, unknown modes, modulators without a Brian2 form),
``CircuitWeights`` copies and checks, the static-synapse circuit against the plastic one,
run seeds of neighbouring trainers, and the labels and seeds of compiled epochs.

Simulations run on Brian2's runtime device with numpy code generation and tiny circuits.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from brian2 import Hz, ms, mV, second, seed

from plastix.circuits.backend import activate_backend
from plastix.circuits.ib_network import (
    CircuitWeights,
    CompiledEpochTrainer,
    ExactXiTrainer,
    IBCircuit,
    IBCircuitSpec,
    XiSettings,
    init_weights,
)
from plastix.circuits.layers import SampleTiming
from plastix.plasticity.ib_rule import IBThreeFactor
from plastix.reservoirs.xi_modulator import XiModulator, XiModulatorConfig


def _spec(**kw) -> IBCircuitSpec:
    """A small circuit: 8 inputs, 1 ms steps, 16 ms on, 4 ms settle, 2 ms gap."""
    defaults = dict(
        n_input=8,
        hidden=(5,),
        n_classes=3,
        timing=SampleTiming(presentation=16 * ms, gap=2 * ms, settle=4 * ms, dt=1 * ms),
        rule=IBThreeFactor(eta=300 * Hz),
        input_rate=300 * Hz,
        rate_mean_tau=0.3 * second,
    )
    defaults.update(kw)
    return IBCircuitSpec(**defaults)


def _weights(spec: IBCircuitSpec, seed: int = 0) -> CircuitWeights:
    return init_weights(spec, np.random.default_rng(seed), mean=0.7, spread=0.7)


def _fake_modulator(architecture: str = "factorised", n_neurons: int = 5, **kw) -> XiModulator:
    """An (untrained) XiModulator whose config and feedback count are all the checks read."""
    config = XiModulatorConfig(
        n_neurons=n_neurons, n_classes=3, architecture=architecture, window_products=False, **kw
    )
    return XiModulator(config, SimpleNamespace(n_feedback=0), [])


# ------------------------------------------------------------------------------ spec, weights


def test_spec_refuses_no_hidden_layer_and_layers_of_size_zero():
    """An empty ``hidden`` would wire the readout to the input encoder; a layer or input of
    size 0 has nothing to simulate. Each is refused naming the field."""
    with pytest.raises(ValueError, match="hidden: expected a non-empty tuple"):
        IBCircuitSpec(hidden=())
    with pytest.raises(ValueError, match=r"hidden\[1\]: expected an int >= 1, got 0"):
        IBCircuitSpec(hidden=(4, 0))
    with pytest.raises(ValueError, match="n_input: expected an int >= 1, got 0"):
        IBCircuitSpec(n_input=0)
    assert IBCircuitSpec(n_input=1, hidden=(1,), n_classes=2).layer_sizes == (1, 1, 2)


@pytest.mark.parametrize(
    "field", ["readout_tau_pre", "readout_rate_norm", "rate_mean_tau", "input_rate"]
)
def test_spec_refuses_zero_time_constants_and_rates(field):
    """Only ``readout_eta`` may be 0 (a frozen readout): the others divide (trace and mean time
    constants, the rate norm) or would leave the input silent."""
    unit = {"readout_tau_pre": ms, "rate_mean_tau": second}.get(field, Hz)
    with pytest.raises(ValueError, match=f"{field}: must be positive"):
        IBCircuitSpec(**{field: 0 * unit})


def test_circuit_weights_copy_shares_no_array_with_the_original():
    """A copy can be changed in place (as trainers and users do) without touching the
    original's hidden matrices, readout or bias."""
    spec = _spec(hidden=(5, 4))
    original = _weights(spec)
    before = [w.copy() for w in original.hidden], original.readout.copy(), original.bias.copy()
    copy = original.copy()
    for w in copy.hidden:
        w += 1.0
    copy.readout += 1.0
    copy.bias += 1.0
    copy.hidden.append(np.zeros(1))
    assert len(original.hidden) == 2
    for got, want in zip(original.hidden, before[0], strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(original.readout, before[1])
    np.testing.assert_array_equal(original.bias, before[2])


def test_circuit_weights_check_refuses_non_finite_bias_and_readout_and_wrong_shapes():
    """Every array is checked for NaN / inf (the bias too), the readout's fan-in must be the
    last hidden layer's size and the bias must be a flat vector of n_classes."""
    spec = _spec(hidden=(5, 4))
    w = _weights(spec)
    w.check(spec)
    bad_bias = CircuitWeights(w.hidden, w.readout, np.array([0.0, np.inf, 0.0]))
    with pytest.raises(ValueError, match="weights.bias: contains NaN or inf"):
        bad_bias.check(spec)
    bad_readout = w.copy()
    bad_readout.readout[1, 2] = np.nan
    with pytest.raises(ValueError, match="weights.readout: contains NaN or inf"):
        bad_readout.check(spec)
    wide = CircuitWeights(w.hidden, np.zeros((3, 5)), w.bias)  # first hidden layer's size
    with pytest.raises(ValueError, match=r"weights.readout: shape \(3, 5\), expected \(3, 4\)"):
        wide.check(spec)
    column = CircuitWeights(w.hidden, w.readout, np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"weights.bias: shape \(3, 1\), expected \(3,\)"):
        column.check(spec)


def test_init_weights_clip_to_the_lower_bound_too():
    """A strongly negative mean with spread 0 puts every hidden weight at the rule's w_min."""
    spec = _spec(rule=IBThreeFactor(eta=300 * Hz, w_min=-2.0, w_max=3.0))
    w = init_weights(spec, np.random.default_rng(0), mean=-10.0, spread=0.0)
    np.testing.assert_array_equal(w.hidden[0], -2.0)


# ------------------------------------------------------------------------------ circuit


def test_circuit_refuses_samples_of_the_wrong_width_and_labels_of_the_wrong_length():
    spec = _spec()
    w = _weights(spec)
    with activate_backend("numpy"):
        with pytest.raises(ValueError, match=r"samples: shape \(2, 9\); expected \(n, 8\)"):
            IBCircuit(spec, np.zeros((2, 9)), [0, 1], np.ones(2), w)
        with pytest.raises(ValueError, match=r"labels: shape \(1,\); expected \(2,\)"):
            IBCircuit(spec, np.zeros((2, 8)), [0], np.ones(2), w)
        circuit = IBCircuit(spec, np.zeros((2, 8)), [0, 1], np.ones(2), w)
        bad = w.copy()
        bad.readout[0, 0] = np.nan
        with pytest.raises(ValueError, match="weights.readout: contains NaN or inf"):
            circuit.run_args(weights=bad)


def _run_records(spec: IBCircuitSpec, w: CircuitWeights, samples, labels):
    """Records and final weights of one run of ``samples`` with learning off, seeded."""
    with activate_backend("numpy"):
        seed(7)
        circuit = IBCircuit(spec, samples, labels, np.zeros(len(labels)), w, record_spikes=False)
        assert circuit.spike_monitors == {}
        circuit.network.run(len(labels) * spec.timing.slot, namespace={})
        records = circuit.records(0)
        means = circuit.get_rate_means()
        circuit.reset_state()  # a static circuit has no eligibility to clear, and must not fail
        after_reset = circuit.get_weights(), circuit.get_rate_means()
    return records, means, after_reset


def test_static_circuit_is_the_plastic_circuit_without_learning():
    """``plastic=False`` builds "the same circuit with static synapses": with learning off and
    the same seed it spikes, counts and reads out exactly as the plastic one (same input drive
    ``w * w_unit``, same centred readout ``W (rtrace / (tau_pre rate_norm) - rate_mean)``,
    nonzero rate means), and its ``reset_state`` keeps weights and rate means."""
    spec = _spec(w_unit=1.5 * mV)  # off its default of 1 mV
    w = _weights(spec, seed=1)
    w.readout = np.random.default_rng(2).normal(0.0, 1.5, size=w.readout.shape)
    w.bias = np.array([0.2, -0.1, 0.3])
    samples = 0.5 + 0.5 * np.random.default_rng(3).random((2, spec.n_input))
    labels = np.array([2, 0])
    plastic, plastic_means, _ = _run_records(spec, w, samples, labels)
    static, static_means, (w_after, means_after) = _run_records(spec.static(), w, samples, labels)
    assert len(static) == len(plastic) == 2
    assert sum(r.counts[0].sum() for r in plastic) > 5
    assert np.abs(plastic_means[0]).min() > 0  # so the centring term matters
    for p, s in zip(plastic, static, strict=True):
        for cp, cs in zip(p.counts, s.counts, strict=True):
            np.testing.assert_array_equal(cs, cp)
        np.testing.assert_allclose(s.logits, p.logits, rtol=1e-12, atol=1e-12)
    for mp, ms_ in zip(plastic_means, static_means, strict=True):
        np.testing.assert_allclose(ms_, mp, rtol=1e-12)
    np.testing.assert_array_equal(w_after.readout, w.readout)
    np.testing.assert_array_equal(w_after.bias, w.bias)
    for got, want in zip(means_after, static_means, strict=True):
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------ trainers


def test_run_seeds_of_neighbouring_trainer_seeds_never_repeat():
    """Each run draws its own seed from ``seed``; trainers seeded 0..4 (as sweeps do) must not
    share a run seed, or their spike trains would repeat one another run-shifted."""
    spec = _spec()
    w = _weights(spec)
    seen = []
    for trainer_seed in range(5):
        trainer = ExactXiTrainer(spec, w, XiSettings(), backend="numpy", seed=trainer_seed)
        seen += [trainer._next_seed() for _ in range(6)]
    assert len(set(seen)) == len(seen)


def test_exact_xi_trainer_refuses_static_specs_bad_weights_and_empty_passes():
    """Refused at construction: a static circuit (no eligibility) and non-finite weights; and
    a pass of zero samples (nothing to simulate or learn), before any simulation."""
    spec = _spec()
    w = _weights(spec)
    with pytest.raises(ValueError, match="plastic=False has no eligibility"):
        ExactXiTrainer(spec.static(), w, XiSettings())
    bad = w.copy()
    bad.bias[0] = np.nan
    with pytest.raises(ValueError, match="weights.bias: contains NaN or inf"):
        ExactXiTrainer(spec, bad, XiSettings())
    trainer = ExactXiTrainer(spec, w, XiSettings(), backend="numpy")
    empty = np.zeros((0, spec.n_input))
    with pytest.raises(ValueError, match=r"expected \(n >= 1, 8\)"):
        trainer.evaluate(empty, np.zeros(0, int))
    with pytest.raises(ValueError, match=r"expected \(n >= 1, 8\)"):
        trainer.train_epoch(empty, np.zeros(0, int))
    assert trainer._runs == 0  # nothing ran


def test_compiled_epoch_trainer_refuses_unknown_modes_and_impossible_sample_counts():
    spec = _spec()
    w = _weights(spec)
    with pytest.raises(ValueError, match="xi_source: 'exact' is not one of 'none', 'reservoir'"):
        CompiledEpochTrainer(spec, w, 2, 0, xi_source="exact")
    with pytest.raises(ValueError, match="n_test: must be >= 0, got -1"):
        CompiledEpochTrainer(spec, w, 2, -1)
    with pytest.raises(ValueError, match="n_train: expected an int >= 1, got 0"):
        CompiledEpochTrainer(spec, w, 0, 2)
    bad = w.copy()
    bad.hidden[0][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"weights.hidden\[0\]: contains NaN or inf"):
        CompiledEpochTrainer(spec, bad, 2, 0)


def test_modulators_without_a_brian2_form_or_of_the_wrong_count_are_refused():
    """Only factorised XiModulators without window products (and kernel-memory ones) have a
    Brian2 form; anything else is refused up front, as is one modulator per layer too many."""
    spec = _spec()
    w = _weights(spec)

    def build(modulators):
        return CompiledEpochTrainer(spec, w, 2, 0, xi_source="reservoir", xi_modulators=modulators)

    with pytest.raises(ValueError, match="architecture 'global'.*has no Brian2 form"):
        build([_fake_modulator("global")])
    with pytest.raises(TypeError, match="expected XiModulator or KernelMemoryModulator, got"):
        build([object()])
    with pytest.raises(ValueError, match="xi_modulators: 2 for 1 hidden layers"):
        build([_fake_modulator(), _fake_modulator()])
    build([_fake_modulator()])  # the right form and count is accepted


def test_compiled_epoch_passes_keep_their_labels_and_runs_their_own_seeds():
    """A compiled epoch's train and test passes report their own labels; successive epochs
    of one trainer draw new input spikes, and a new trainer with the same seed repeats the
    first epoch's spikes exactly."""
    spec = _spec()
    w = _weights(spec)
    x_train, y_train = np.full((2, spec.n_input), 0.5), np.array([2, 0])
    x_test, y_test = np.full((1, spec.n_input), 0.5), np.array([1])

    def epochs(n: int):
        with CompiledEpochTrainer(
            spec, w, 2, 1, backend="numpy", seed=4, warmup=0, raster_samples=1
        ) as trainer:
            return [trainer.run_epoch(x_train, y_train, x_test, y_test) for _ in range(n)]

    (train, test), (_, second) = epochs(2)
    [(_, again)] = epochs(1)
    assert train.labels.tolist() == [2, 0] and test.labels.tolist() == [1]
    assert len(train.predictions) == 2 and len(test.predictions) == 1
    first_t = test.spikes["input"][1]
    assert len(first_t) > 10
    np.testing.assert_array_equal(again.spikes["input"][1], first_t)
    np.testing.assert_array_equal(again.spikes["input"][0], test.spikes["input"][0])
    second_t = second.spikes["input"][1]
    assert len(second_t) != len(first_t) or not np.array_equal(second_t, first_t)
