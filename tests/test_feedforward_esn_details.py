"""Details of the feed-forward Brian2 description, the torch echo-state network and its
readouts that a user relies on (fast: tiny networks, Brian2 runtime with the numpy target)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from brian2 import SpikeGeneratorGroup, ms

from plastix.circuits.feedforward import (
    FeedForwardSpec,
    LayerSpec,
    NeuronParams,
    build_brian2,
    raster_to_spike_times,
    run_raster,
)
from plastix.reservoirs.esn import EchoStateNetwork, ESNConfig, ESNWeights, run_esn
from plastix.reservoirs.readouts import RidgeReadout

DT = 1 * ms


# -- feed-forward description ---------------------------------------------------------------


def test_same_as_applies_its_relative_tolerance_to_the_neuron_parameters_too():
    """``rtol`` loosens every comparison, the per-neuron parameters included: a time constant
    off by 1e-9 (relative) is the same neuron at rtol=1e-6 but not at rtol=0."""
    weight = np.ones((2, 3))
    a = LayerSpec(weight, NeuronParams("LIF", tau_mem=10 * ms))
    b = LayerSpec(weight, NeuronParams("LIF", tau_mem=10 * (1 + 1e-9) * ms))
    assert a.same_as(b, rtol=1e-6)
    assert not a.same_as(b)
    assert FeedForwardSpec(3, (a,)).same_as(FeedForwardSpec(3, (b,)), rtol=1e-6)
    assert not FeedForwardSpec(3, (a,)).same_as(FeedForwardSpec(3, (b,)))


def test_raster_of_spike_counts_is_refused_rather_than_read_as_single_spikes():
    """A raster holds at most one spike per step and channel: a count of 2 would silently
    lose a spike, so it is refused; 0/1 integers are accepted like booleans."""
    counts = np.array([[0, 2], [1, 0]])
    with pytest.raises(ValueError, match="one spike at most per step"):
        raster_to_spike_times(counts, DT)
    idx, times = raster_to_spike_times(np.array([[0, 1], [1, 0]]), DT)
    np.testing.assert_array_equal(idx, [1, 0])
    np.testing.assert_allclose(np.asarray(times / ms), [0.0, 1.0])


def test_a_two_dimensional_raster_drives_only_a_single_copy():
    """A ``(T, n_in)`` raster has no copy axis; with ``copies=2`` it would feed copy 0 only and
    leave copy 1 silent, so it is refused; ``(T, 2, n_in)`` is accepted."""
    spec = FeedForwardSpec(3, (LayerSpec(np.ones((2, 3))),))
    flat = np.zeros((4, 3), dtype=bool)
    with pytest.raises(ValueError, match="inputs: raster shape"):
        build_brian2(spec, flat, DT, copies=2, name="ff_flat2")
    raster = np.zeros((4, 2, 3), dtype=bool)
    raster[0, 1, 0] = True  # copy 1 only
    circuit = build_brian2(spec, raster, DT, copies=2, record_membrane=True, name="ff_ok2")
    circuit.network.run(3 * DT, namespace={})
    v = circuit.membrane("layer0")
    assert len(circuit.input_group) == 6 and v.shape == (3, 2, 2)
    assert np.all(v[:, 0] == 0) and np.all(v[1:, 1] > 0)


def test_zero_extra_steps_simulates_exactly_the_raster_steps():
    """``extra_steps=0`` is allowed (the caller does not wait for the spike transit): the run
    lasts the raster's T steps; the default adds one step per layer."""
    spec = FeedForwardSpec(2, (LayerSpec(np.ones((1, 2)), NeuronParams("LI")),))
    raster = np.zeros((3, 1, 2), dtype=bool)
    _, exact = run_raster(spec, raster, DT, extra_steps=0, record_membrane=True, name="ff_x0")
    _, default = run_raster(spec, raster, DT, record_membrane=True, name="ff_x1")
    assert exact["layer0"].shape == (3, 1, 1)
    assert default["layer0"].shape == (4, 1, 1)


def test_an_input_group_must_hold_one_channel_per_copy_and_input():
    """With ``copies=2`` a Brian2 input group needs ``2 * n_in`` neurons: one of only ``n_in``
    would leave the synapses of copy 1 without presynaptic neurons, so it is refused."""
    spec = FeedForwardSpec(3, (LayerSpec(np.ones((2, 3))),))
    single = SpikeGeneratorGroup(3, [], [] * ms, name="ff_in3")
    with pytest.raises(ValueError, match="copies \\* n_in = 6"):
        build_brian2(spec, single, DT, copies=2, name="ff_g3")
    both = SpikeGeneratorGroup(6, [5], [0] * ms, name="ff_in6")
    circuit = build_brian2(spec, both, DT, copies=2, record_membrane=True, name="ff_g6")
    circuit.network.run(2 * DT, namespace={})
    v = circuit.membrane("layer0")
    assert np.all(v[:, 0] == 0) and np.all(v[1, 1] > 0)


# -- echo-state network ---------------------------------------------------------------------


def _scalar_reservoir(feedback: float = 1.0, leak: float = 1.0) -> ESNWeights:
    """One linear unit without recurrence or input: ``x_t = (1 - a) x + a fb * y_{t-1}``."""
    zero = torch.zeros(1, 1, dtype=torch.float64)
    return ESNWeights(
        recurrent=zero,
        input=zero.clone(),
        feedback=torch.full((1, 1), feedback, dtype=torch.float64),
        bias=torch.zeros(1, dtype=torch.float64),
        leak=leak,
        activation="identity",
    )


def test_closed_loop_feedback_starts_from_the_readout_of_the_initial_state():
    """Closed loop: ``y_0 = readout(x_0)`` of the given initial state, not of zeros. With
    ``x_0 = 0.5`` and ``readout(x) = 2 x + 1``: ``x_1 = y_0 = 2``, ``y_1 = 5``, ``x_2 = 5``."""
    weights = _scalar_reservoir()
    states, outputs = run_esn(
        weights,
        torch.zeros(2, 1, dtype=torch.float64),
        initial_state=torch.tensor([0.5], dtype=torch.float64),
        readout=lambda x: 2 * x + 1,
    )
    torch.testing.assert_close(states[:, 0], torch.tensor([2.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(outputs[:, 0], torch.tensor([5.0, 11.0], dtype=torch.float64))


def test_a_readout_without_feedback_weights_still_returns_its_outputs():
    """``outputs`` holds ``readout(x_t)`` for every step whenever a readout is given, also for
    a reservoir without feedback weights (where the readout does not act on the states)."""
    zero = torch.zeros(2, 1, dtype=torch.float64)
    weights = ESNWeights(
        recurrent=0.5 * torch.eye(2, dtype=torch.float64),
        input=torch.ones(2, 1, dtype=torch.float64),
        feedback=torch.zeros(2, 0, dtype=torch.float64),
        bias=zero[:, 0],
        activation="identity",
    )
    u = torch.tensor([[1.0], [0.0], [2.0]], dtype=torch.float64)
    states, outputs = run_esn(weights, u, readout=lambda x: x.sum(-1, keepdim=True))
    # x_1 = 1, x_2 = 0.5, x_3 = 0.25 + 2 in both units
    expected = torch.tensor([[1.0], [0.5], [2.25]], dtype=torch.float64)
    torch.testing.assert_close(states, expected.expand(3, 2))
    assert outputs is not None
    torch.testing.assert_close(outputs, 2 * expected)


def test_module_step_refuses_to_drop_the_feedback_of_a_reservoir_that_has_some():
    """A step of a reservoir with feedback weights needs ``y_{t-1}``: leaving it out would
    silently run the open-loop equation, so it is refused (and passing it to a reservoir
    without feedback weights too)."""
    esn = EchoStateNetwork(_scalar_reservoir())
    x = torch.zeros(1, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="feedback"):
        esn.step(x, torch.zeros(1, 1, dtype=torch.float64))
    y = torch.full((1, 1), 3.0, dtype=torch.float64)
    torch.testing.assert_close(esn.step(x, torch.zeros(1, 1, dtype=torch.float64), y), y)


def test_state_noise_is_drawn_independently_for_each_sequence_of_a_batch():
    """``eps_t ~ N(0, I)`` per sequence: two sequences with the same input and start differ by
    their noise alone, and the difference has the variance of two independent draws."""
    zero = torch.zeros(1, 1, dtype=torch.float64)
    weights = ESNWeights(
        recurrent=zero,
        input=zero.clone(),
        feedback=torch.zeros(1, 0, dtype=torch.float64),
        bias=torch.zeros(1, dtype=torch.float64),
        noise=1.0,
        activation="identity",
    )
    gen = torch.Generator().manual_seed(0)
    states, _ = run_esn(weights, torch.zeros(2, 2000, 1, dtype=torch.float64), generator=gen)
    # with W = 0 and no drive, x_t = eps_t: the two rows are independent N(0, 1) draws
    diff = states[0, :, 0] - states[1, :, 0]
    assert float(diff.var()) == pytest.approx(2.0, rel=0.1)


def test_config_refuses_an_input_connectivity_of_zero():
    """``input_connectivity`` is a probability in (0, 1]: at 0 no input would reach the
    reservoir, so it is refused like ``connectivity = 0``."""
    with pytest.raises(ValueError, match="input_connectivity"):
        ESNConfig(n_inputs=2, n_units=5, input_connectivity=0.0)
    with pytest.raises(ValueError, match="connectivity"):
        ESNConfig(n_inputs=2, n_units=5, connectivity=0.0)


# -- readouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("n_samples", [40, 1000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unregularised_ridge_with_duplicated_features_gives_the_minimum_norm_solution(
    seed, n_samples
):
    """``ridge=0`` with a repeated feature column makes ``R^T R`` singular; the readout
    returns the minimum-norm least-squares weights (the repeated column's weight split
    equally), which reproduce an exactly linear target. Cholesky alone "succeeds" on such a
    matrix with a pivot at rounding level, and its weights then depend on that noise (on
    one LAPACK 2.9 off on every sample)."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n_samples, 2, generator=g, dtype=torch.float64)
    features = torch.cat([r, r[:, :1]], -1)  # column 2 repeats column 0
    targets = 3 * r[:, :1] - r[:, 1:] + 0.5
    readout = RidgeReadout(3, 1, ridge=0.0).fit(features, targets)
    expected = torch.tensor([[1.5, -1.0, 1.5]], dtype=torch.float64)
    torch.testing.assert_close(readout.weight, expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(readout.bias, torch.tensor([0.5], dtype=torch.float64))
    torch.testing.assert_close(readout.predict(features), targets)


def test_unregularised_ridge_with_a_column_that_sums_two_others_matches_lstsq_on_the_data():
    """A dependence other than a copy: the weights equal the minimum-norm least-squares
    solution computed from the centred data matrix itself (SVD, no Gram matrix)."""
    g = torch.Generator().manual_seed(3)
    r = torch.randn(200, 3, generator=g, dtype=torch.float64)
    features = torch.cat([r, r[:, :1] + 2 * r[:, 1:2]], -1)
    targets = torch.randn(200, 2, generator=g, dtype=torch.float64)
    readout = RidgeReadout(4, 2, ridge=0.0).fit(features, targets)
    centred = features - features.mean(0)
    expected = torch.linalg.lstsq(centred, targets - targets.mean(0), driver="gelsd").solution
    torch.testing.assert_close(readout.weight, expected.T, rtol=0, atol=1e-9)


def test_ridge_regression_without_bias_fits_a_line_through_the_origin():
    """``fit_bias=False``: ``W = sum(r y) / sum(r^2)`` and a zero bias. For r = 1, 2, 3 and
    y = 2 r + 1: W = 34 / 14 (with a bias the fit would be exactly W = 2, b = 1)."""
    from plastix.reservoirs.readouts import ridge_regression

    r = torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)
    weight, bias = ridge_regression(r, 2 * r + 1, ridge=0.0, fit_bias=False)
    torch.testing.assert_close(weight, torch.tensor([[34 / 14]], dtype=torch.float64))
    assert float(bias.abs().max()) == 0.0
    weight, bias = ridge_regression(r, 2 * r + 1, ridge=0.0)
    torch.testing.assert_close(weight, torch.tensor([[2.0]], dtype=torch.float64))
    torch.testing.assert_close(bias.double(), torch.tensor([1.0], dtype=torch.float64))


def test_module_noise_comes_from_a_generator_seeded_with_its_seed():
    """``EchoStateNetwork(weights, seed)`` draws its noise from ``manual_seed(seed)``: its
    forward equals :func:`run_esn` with that generator, and two seeds differ."""
    weights = ESNWeights(
        recurrent=0.5 * torch.eye(3, dtype=torch.float64),
        input=torch.ones(3, 1, dtype=torch.float64),
        feedback=torch.zeros(3, 0, dtype=torch.float64),
        bias=torch.zeros(3, dtype=torch.float64),
        noise=0.1,
    )
    u = torch.ones(5, 1, dtype=torch.float64)
    states = EchoStateNetwork(weights, seed=3)(u)[0]
    expected, _ = run_esn(weights, u, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(states, expected, rtol=0, atol=0)
    assert not torch.equal(EchoStateNetwork(weights, seed=4)(u)[0], states)
