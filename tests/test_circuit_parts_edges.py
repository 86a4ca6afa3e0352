"""Edges of the circuit parts: input checks of the encoder, the sample timing and the
feed-forward description at the boundaries a user hits, and worked examples of the LIF layer
and the rate readout (fast: tiny groups, Brian2 runtime with the numpy target)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from brian2 import EventMonitor, Network, SpikeGeneratorGroup, StateMonitor, TimedArray, ms, mV

from plastix.circuits.backend import activate_backend
from plastix.circuits.encoders import PoissonEncoder, make_schedule, schedule_table
from plastix.circuits.feedforward import (
    FeedForwardSpec,
    LayerSpec,
    NeuronParams,
    build_brian2,
    run_raster,
)
from plastix.circuits.layers import LIFLayer, RateReadout, SampleTiming, learn_schedule
from plastix.circuits.neurons import LIFParams, lif_rate

DT = 1 * ms

# ------------------------------------------------------------------------------ encoders


def test_poisson_encoder_refuses_values_just_above_one_and_accepts_one():
    """The encoder maps [0, 1] onto [rate_min, rate_max]: a value of 1.2 would ask for 20 %
    more than rate_max and is refused (not only pixel values such as 255); 1 itself is the
    top of the range and accepted."""
    over = make_schedule(np.array([[1.2, 0.5]]), 5 * ms, name="over_stim")
    with pytest.raises(ValueError, match=r"schedule: values span \[0.5, 1.2\]"):
        PoissonEncoder(over, 2)
    top = make_schedule(np.array([[1.0, 0.0]]), 5 * ms, name="top_stim")
    assert len(PoissonEncoder(top, 2, name="top_enc").group) == 2


@pytest.mark.parametrize("n_channels", [2, 4])
def test_poisson_encoder_refuses_a_channel_count_other_than_the_schedules(n_channels):
    """A schedule of 3 channels drives exactly 3 encoder neurons: fewer would drop the last
    channel of every sample, more would read past the table (either way refused by name)."""
    schedule = make_schedule(np.zeros((2, 3)), 5 * ms, name=f"width_stim{n_channels}")
    with pytest.raises(ValueError, match=f"n_channels: {n_channels} does not match .* 3 ch"):
        PoissonEncoder(schedule, n_channels)


def test_schedule_times_a_microsecond_off_the_step_grid_are_refused():
    """Only rounding-level deviations count as whole steps: 10.001 ms at dt = 1 ms is 1 us
    off the grid (relative 1e-4), and would shift every later onset; it is refused for the
    presentation and the gap alike."""
    samples = np.array([[0.5]])
    with pytest.raises(ValueError, match="presentation: 10.001 ms is not a whole number"):
        schedule_table(samples, 10.001 * ms, 0 * ms, 1 * ms)
    with pytest.raises(ValueError, match="gap: 2.001 ms is not a whole number"):
        schedule_table(samples, 10 * ms, 2.001 * ms, 1 * ms)


def test_schedule_refuses_a_zero_presentation():
    """A sample shown for 0 ms would leave a table of zeros (every sample silent) without an
    error; the presentation must be > 0 (only the gap may be 0)."""
    with pytest.raises(ValueError, match="presentation: must be finite and > 0"):
        schedule_table(np.array([[0.5]]), 0 * ms, 10 * ms, 1 * ms)
    table, step = schedule_table(np.array([[0.5]]), 10 * ms, 0 * ms, 1 * ms)
    np.testing.assert_array_equal(table, [[0.5]])
    assert float(step) == pytest.approx(10e-3, rel=1e-12)


# ------------------------------------------------------------------------------ LIF layer


def test_sample_timing_refuses_times_a_microsecond_off_the_step_grid():
    """``SampleTiming`` counts slots in whole steps: a presentation 1 us longer than 40 steps
    of 0.5 ms is refused rather than rounded to 40 steps."""
    with pytest.raises(ValueError, match="presentation: 20.001 ms is not a multiple"):
        SampleTiming(presentation=20.001 * ms, settle=5 * ms, dt=0.5 * ms)
    with pytest.raises(ValueError, match="settle: 5.001 ms is not a multiple"):
        SampleTiming(presentation=20 * ms, settle=5.001 * ms, dt=0.5 * ms)
    assert SampleTiming(presentation=20 * ms, settle=5 * ms, dt=0.5 * ms).on_steps == 40


def test_sample_timing_refuses_a_zero_time_step_by_name():
    """``dt = 0`` cannot count steps (every duration would divide by it): it is refused as a
    ``ValueError`` naming ``dt``, not by a ``ZeroDivisionError`` from the step counting."""
    with pytest.raises(ValueError, match="dt: must be > 0"):
        SampleTiming(presentation=20 * ms, settle=5 * ms, dt=0 * ms)


def test_lif_rate_at_the_rheobase_is_zero_without_a_division_warning():
    """``v_rest + I = v_th`` exactly (0 + 10 mV = 10 mV): the membrane only approaches the
    threshold, so the rate is 0 ("else 0" in the docstring), computed without dividing by
    ``v_rest + I - v_th = 0``; just above it the rate is positive."""
    params = LIFParams(v_rest=0 * mV, v_reset=0 * mV, v_th=10 * mV)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rates = lif_rate(np.array([10e-3, 5e-3, 20e-3]), params)
    assert rates[0] == 0.0 and rates[1] == 0.0
    # 20 mV: ISI = t_ref + tau_m ln(20 / 10) = 2 ms + 10 ms ln 2
    assert rates[2] == pytest.approx(1.0 / (2e-3 + 10e-3 * np.log(2.0)), rel=1e-12)


def test_lif_rate_of_a_scalar_drive_is_a_plain_number():
    """A scalar drive gives a NumPy float (a ``float``), not a 0-d array, so it can be
    formatted and written to JSON like any number; an array drive gives an array."""
    params = LIFParams()
    rate = lif_rate(20e-3, params)
    assert isinstance(rate, float)
    assert json.loads(json.dumps({"rate": rate}))["rate"] == pytest.approx(float(rate))
    assert lif_rate(np.array([20e-3]), params).shape == (1,)


def test_lif_membrane_follows_the_exact_two_time_constant_solution():
    """Module equations ``tau_m dv/dt = v_rest - v + I_syn + I_ext``, ``tau_syn dI_syn/dt =
    -I_syn`` from ``v = v_rest``, ``I_syn(0) = I_0``: ``v - v_rest = I_ext (1 - e^(-t/tau_m))
    + I_0 tau_syn / (tau_syn - tau_m) (e^(-t/tau_syn) - e^(-t/tau_m))``. Worked for I_0 = 10
    mV, I_ext = 4 mV (peak below 5 mV, threshold 45 mV above rest: no spike), and the two
    drives alone."""
    params = LIFParams(v_th=-20 * mV)  # tau_m 10 ms, tau_syn 5 ms, v_rest -65 mV
    timing = SampleTiming(presentation=30 * ms, settle=0 * ms, dt=0.1 * ms)
    i_0 = np.array([10.0, 10.0, 0.0])  # mV
    i_ext = np.array([4.0, 0.0, 4.0])
    with activate_backend("numpy"):
        layer = LIFLayer(3, params, timing, learn_schedule([0], timing), name="two_tau")
        layer.group.I_syn = i_0 * mV
        layer.group.I_ext = i_ext * mV
        monitor = StateMonitor(layer.group, "v", record=True, when="end")
        Network(layer.group, monitor).run(25 * ms, namespace={})
        v = (np.array(monitor.v_) + 65e-3) * 1e3  # mV above rest, (neurons, steps)
    t = (np.arange(v.shape[1]) + 1) * 0.1  # ms; recorded after each step's update
    tau_m, tau_s = 10.0, 5.0
    hand = i_ext[:, None] * (1 - np.exp(-t / tau_m)) + i_0[:, None] * tau_s / (tau_s - tau_m) * (
        np.exp(-t / tau_s) - np.exp(-t / tau_m)
    )
    np.testing.assert_allclose(v, hand, rtol=0, atol=1e-9)
    assert v[0].max() > 4.5  # the synaptic kick shows: I_ext alone stays below 4 mV


def test_readout_softmax_stays_finite_for_logits_beyond_the_exponentials_range():
    """``p = softmax(a + b)`` with a bias of +-800 (exp(800) overflows a float64): the logits
    are clipped to [-50, 50], so ``p`` is a proper distribution (one-hot on unit 0 to within
    e^-50) and the delta-rule accumulator of a learned sample is ``window (onehot(y) - p)``,
    finite, rather than NaN."""
    timing = SampleTiming(presentation=10 * ms, settle=0 * ms, dt=0.5 * ms)
    b = np.array([800.0, 0.0, -800.0])
    with activate_backend("numpy"):
        learn = learn_schedule([1], timing, name="big_learn")
        label = TimedArray(np.eye(3)[[1]], dt=timing.slot, name="big_label")
        readout = RateReadout(3, timing, learn, label, name="big_ro")
        readout.group.b = b
        monitor = EventMonitor(
            readout.group, "sample_end", ["bias_acc"], when="after_resets", order=-1
        )
        probe = StateMonitor(readout.group, "p", record=True, when="end")
        Network(*readout.objects, monitor, probe).run(timing.slot, namespace={})
        order = np.argsort(np.asarray(monitor.i[:]))
        bias_acc = np.asarray(monitor.bias_acc_[:])[order]
        p = np.array(probe.p[:])
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p[:, -1], [1.0, 0.0, 0.0], rtol=0, atol=1e-20)
    np.testing.assert_allclose(bias_acc, 0.010 * np.array([-1.0, 1.0, 0.0]), rtol=1e-9, atol=1e-15)


# ------------------------------------------------------------------------------ feed-forward


def test_layer_bias_must_be_a_flat_vector_one_value_per_output():
    """``bias (n_out,)``: a column ``(n_out, 1)`` or row ``(1, n_out)`` holds the right number
    of values but would broadcast against the neuron arrays in the build; refused by shape."""
    weight = np.ones((3, 2))
    for shape in ((3, 1), (1, 3)):
        with pytest.raises(ValueError, match=r"bias: expected 3 finite values"):
            LayerSpec(weight, bias=np.ones(shape))
    assert LayerSpec(weight, bias=np.ones(3)).bias.shape == (3,)


def test_an_input_group_larger_than_copies_times_n_in_is_refused():
    """An input group of 6 neurons for ``n_in = 5`` (e.g. an encoder built for other samples)
    would leave neuron 5 unconnected and its spikes silently lost; refused like a smaller one."""
    spec = FeedForwardSpec(5, (LayerSpec(np.ones((2, 5))),))
    larger = SpikeGeneratorGroup(6, [], [] * ms, name="ff_larger_input")
    with pytest.raises(ValueError, match=r"copies \* n_in = 5"):
        build_brian2(spec, larger, DT, name="ff_larger")


def test_neuron_params_refuse_per_neuron_arrays_of_two_different_lengths():
    """Every per-neuron array describes the same neurons: ``tau_mem`` for 2 and ``v_th`` for 3
    cannot both hold, and the layer size taken from them would depend on which is read
    first; refused by name. Arrays of one length (with scalars) are fine."""
    with pytest.raises(ValueError, match=r"different lengths \[2, 3\]"):
        NeuronParams("LIF", tau_mem=np.array([10.0, 20.0]) * ms, v_th=np.full(3, 10.0) * mV)
    both = NeuronParams("LIF", tau_mem=np.array([10.0, 20.0]) * ms, v_th=np.full(2, 10.0) * mV)
    assert both.size == 2


def test_neuron_params_refuse_a_matrix_of_values():
    """A parameter is a scalar or one value per neuron: a ``(2, 2)`` array has no place in a
    layer's 1-D neuron arrays and is refused by name."""
    with pytest.raises(ValueError, match=r"tau_mem: expected a scalar or a 1-D array"):
        NeuronParams("LIF", tau_mem=np.full((2, 2), 10.0) * ms)


def test_with_weights_refuses_a_weight_list_of_another_length():
    """``with_weights`` takes one matrix per layer: two for a three-layer network is refused
    with the counts named, not by a bare ``zip`` error."""
    spec = FeedForwardSpec(
        2,
        (
            LayerSpec(np.ones((3, 2))),
            LayerSpec(np.ones((3, 3))),
            LayerSpec(np.ones((2, 3)), NeuronParams("LI")),
        ),
    )
    with pytest.raises(ValueError, match="weights: 2 matrices for 3 layers"):
        spec.with_weights([np.ones((3, 2)), np.ones((3, 3))])


def test_run_raster_asks_for_the_copy_axis_by_name():
    """``run_raster`` reads copies from axis 1, so a ``(T, n_in)`` raster would be taken for
    ``n_in`` copies of a one-channel input; it is refused with the shape it expects."""
    spec = FeedForwardSpec(3, (LayerSpec(np.ones((2, 3)), NeuronParams("LI")),))
    with pytest.raises(ValueError, match=r"raster: expected \(T, copies, n_in\), got shape"):
        run_raster(spec, np.zeros((4, 3), dtype=bool), DT, name="ff_flat_run")
