"""Edges of the xi-modulators (plastix.reservoirs.xi_modulator) and of Jaeger's memory
capacity (plastix.reservoirs.memory) that the other tests leave open: option interactions,
stream counts, the fit's training data and the error paths a user hits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from modulator_parts import generator, kernel_memory_config, random_streams, recording_run_esn

from plastix.reservoirs.esn import ESNConfig, ESNWeights, init_esn_weights
from plastix.reservoirs.memory import memory_capacity, memory_curve, squared_correlation
from plastix.reservoirs.readouts import RidgeReadout
from plastix.reservoirs.xi_modulator import (
    MEMORY_JITTER,
    KernelMemoryModulator,
    XiModulator,
    XiModulatorConfig,
    fit_kernel_memory_modulator,
    fit_xi_modulator,
    training_streams,
)

# --- config -------------------------------------------------------------------------------


def test_config_needs_at_least_two_labels_and_a_non_negative_class_strength():
    """One label makes ``K_Y`` constant, so the label term of xi vanishes after centring:
    ``n_classes`` must be >= 2 (2 itself is fine). ``class_strength`` bounds ``c ~ U(0,
    class_strength)`` of the synthetic activity, so a negative one is refused."""
    assert XiModulatorConfig(n_classes=2).n_classes == 2
    with pytest.raises(ValueError, match="n_classes: expected an int >= 2"):
        XiModulatorConfig(n_classes=1)
    assert XiModulatorConfig(class_strength=0.0).class_strength == 0.0
    with pytest.raises(ValueError, match="class_strength"):
        XiModulatorConfig(class_strength=-0.5)


# --- encoding and online stepping ---------------------------------------------------------


def test_factorised_encoding_is_label_label_times_activity_then_activity():
    """Factorised reservoir input of neuron ``i`` (module doc): ``[y, y z_i, z_i]``, the
    one-hot label, the label-conjunctive activity and the activity, in that order."""
    cfg = XiModulatorConfig(
        n_neurons=2, n_classes=3, window=2, stream_length=3, n_units=4, connectivity=1.0
    )
    modulator = XiModulator(cfg, init_esn_weights(cfg.esn_config(), seed=0), [])
    y = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    z = torch.tensor([[2.0, -3.0]], dtype=torch.float64)
    e = modulator.encode(torch.zeros(1, 4, dtype=torch.float64), y, z)
    expected = torch.tensor(
        [[[0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 2.0], [0.0, 1.0, 0.0, 0.0, -3.0, 0.0, -3.0]]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(e, expected)


def test_global_modulator_steps_equal_its_prediction_with_a_biased_reservoir():
    """``step`` drives the reservoir like ``run_esn`` in ``predict``, bias included: with a
    reservoir of non-zero bias the online xi still equals the offline one."""
    cfg = XiModulatorConfig(
        architecture="global", window_products=False, gated=False, n_neurons=3, n_classes=2,
        window=3, n_units=7, connectivity=0.5, x_projection=4, stream_length=4,
    )  # fmt: skip
    esn = ESNConfig(
        n_inputs=cfg.n_inputs, n_units=7, connectivity=0.5, activation="identity",
        bias_scaling=1.0,
    )  # fmt: skip
    weights = init_esn_weights(esn, seed=1, dtype=torch.float64)
    assert float(weights.bias.abs().min()) > 0
    readout = RidgeReadout(7 + cfg.n_inputs, 3)
    readout.weight = torch.randn(3, 7 + cfg.n_inputs, generator=generator(2), dtype=torch.float64)
    modulator = XiModulator(cfg, weights, [readout])
    x, y, z = random_streams(2, 3, length=8, n_streams=2)
    offline = modulator.predict(x, y, z)
    modulator.reset(2)
    online = torch.stack([modulator.step(x[:, t], y[:, t], z[:, t]) for t in range(8)], 1)
    torch.testing.assert_close(online, offline)


def test_kernel_memory_steps_equal_its_prediction_with_a_biased_memory():
    """KernelMemoryModulator: ``step`` writes each code into the memory as ``run_esn`` does
    in ``predict``, bias included (an orthogonal memory given a non-zero bias)."""
    cfg = kernel_memory_config(memory_topology="orthogonal", memory_ratio=0.5)
    fitted = fit_kernel_memory_modulator(cfg)
    w = fitted.weights
    bias = 0.3 * torch.randn(w.n_units, generator=generator(3), dtype=w.dtype)
    weights = ESNWeights(
        w.recurrent, w.input, w.feedback, bias, leak=w.leak, activation=w.activation
    )
    modulator = KernelMemoryModulator(cfg, weights, fitted.memory)
    x, y, z = random_streams(cfg.n_classes, cfg.n_neurons, n_streams=2, length=10)
    offline = modulator.predict(x, y, z)
    modulator.reset(2)
    online = torch.stack([modulator.step(x[:, t], y[:, t], z[:, t]) for t in range(10)], 1)
    torch.testing.assert_close(online, offline)


def test_reset_needs_a_stream_and_step_refuses_fewer_streams_than_reset():
    """``reset(0)`` is refused (no stream to hold); after ``reset(2)`` a step with one
    stream is refused, naming reset (as a step with three is)."""
    cfg = kernel_memory_config()
    modulator = fit_kernel_memory_modulator(cfg)
    with pytest.raises(ValueError, match="n_streams"):
        modulator.reset(0)
    modulator.reset(2)
    x, y, z = random_streams(cfg.n_classes, cfg.n_neurons, n_streams=2, length=10)
    with pytest.raises(ValueError, match="reset"):
        modulator.step(x[:1, 0], y[:1, 0], z[:1, 0])


def test_streams_must_be_floating_point_tensors():
    """Integer one-hot labels (a common slip: ``one_hot`` returns int64) are refused with a
    TypeError naming the argument, in ``predict`` and ``step`` alike."""
    cfg = kernel_memory_config()
    modulator = fit_kernel_memory_modulator(cfg)
    x, y, z = random_streams(cfg.n_classes, cfg.n_neurons, n_streams=2, length=10)
    with pytest.raises(TypeError, match="y_onehot: expected a float"):
        modulator.predict(x, y.long(), z)
    modulator.reset(2)
    with pytest.raises(TypeError, match="z: expected a float"):
        modulator.step(x[:, 0], y[:, 0], z[:, 0].long())


# --- fits -----------------------------------------------------------------------------------


def test_factorised_gated_readouts_see_train_neurons_samples_of_their_current_label():
    """Factorised, gated, no window products: each stream simulates ``train_neurons`` of the
    ``n_neurons`` neurons, so readout ``c`` is fitted on ``train_neurons`` times the number of
    full-window samples whose current (last) label is ``c`` (``training_streams`` and one
    neuron draw per chunk, from seed ``seed + 1``)."""
    cfg = XiModulatorConfig(
        n_neurons=5, n_classes=3, window=3, n_units=6, connectivity=0.5, n_streams=2,
        stream_length=25, n_chunks=2, train_neurons=2, window_products=False, seed=4,
    )  # fmt: skip
    modulator = fit_xi_modulator(cfg)
    gen = generator(cfg.seed + 1)
    counts = torch.zeros(cfg.n_classes, dtype=torch.int64)
    for _ in range(cfg.n_chunks):
        _, y, _ = training_streams(cfg, gen)
        torch.randperm(cfg.n_neurons, generator=gen)  # the neurons of this chunk
        labels = y[:, cfg.window - 1 :].argmax(-1)
        counts += torch.bincount(labels.flatten(), minlength=cfg.n_classes)
    assert [r.count for r in modulator.readouts] == (cfg.train_neurons * counts).tolist()


def test_kernel_memory_fit_jitters_each_block_by_a_tenth_of_its_rms(monkeypatch):
    """The memory readout's training codes are the clean codes of the seed ``seed + 1``
    streams plus ``N(0, (MEMORY_JITTER rms)^2)`` noise per block (x, y and z codes): the
    difference to the clean codes has, block by block, a standard deviation of 0.1 times the
    block's RMS (one-hot y codes included, whose RMS is not their mean magnitude)."""
    import plastix.reservoirs.xi_modulator as xm

    seen = recording_run_esn(monkeypatch, xm)
    cfg = kernel_memory_config(x_projection=9, n_streams=4, stream_length=100)
    fit_kernel_memory_modulator(cfg)
    x, y, z = training_streams(cfg, generator(cfg.seed + 1))
    s_y, s_z = 0.1 * math.sqrt(3), 1.0 * math.sqrt(6)
    clean = [x / (0.5 * math.sqrt(9)), y / s_y, z / s_z]
    jitter = seen[0] - torch.cat(clean, -1)
    assert MEMORY_JITTER == 0.1
    for noise, block in zip(jitter.split([9, 3, 6], -1), clean, strict=True):
        rms = float(block.square().mean().sqrt())
        assert float(noise.std()) == pytest.approx(0.1 * rms, rel=0.1)
        assert abs(float(noise.mean())) < 0.02 * rms


# --- projection ---------------------------------------------------------------------------


def test_global_projection_is_seeded_by_the_config_seed():
    """``XiModulator.projection`` is drawn from ``config.seed`` and ``x_dim``: the same seed
    gives the same matrix in another modulator, another seed another matrix."""
    common = dict(architecture="global", window_products=False, x_projection=4)
    first = XiModulator(XiModulatorConfig(**common, seed=0), None, []).projection(6)
    again = XiModulator(XiModulatorConfig(**common, seed=0), None, []).projection(6)
    other = XiModulator(XiModulatorConfig(**common, seed=1), None, []).projection(6)
    torch.testing.assert_close(first, again)
    assert float((first - other).abs().max()) > 1e-3


# --- memory capacity ----------------------------------------------------------------------


def _delay_line_states(steps: int = 400, seed: int = 5):
    u = torch.rand(steps, generator=generator(seed), dtype=torch.float64)
    return torch.stack([torch.roll(u, k) for k in (1, 2, 3)], 1), u


def test_memory_curve_refuses_malformed_delays_washout_lengths_and_fractions():
    """The error paths a user hits, each naming the argument: empty or non-integer delays, a
    negative washout, states and inputs of different lengths, a train fraction outside
    (0, 1); ``squared_correlation`` takes (T, K) tensors only."""
    states, u = _delay_line_states()
    for delays in (np.array([], dtype=int), [1.5, 2.0]):
        with pytest.raises(ValueError, match="delays"):
            memory_curve(states, u, delays=delays)
    with pytest.raises(ValueError, match="washout"):
        memory_curve(states, u, max_delay=3, washout=-1)
    with pytest.raises(ValueError, match="states, inputs"):
        memory_curve(states, u[:-1], max_delay=3)
    for fraction in (0.0, 1.0):
        with pytest.raises(ValueError, match="train_fraction"):
            memory_curve(states, u, max_delay=3, train_fraction=fraction)
    with pytest.raises(ValueError, match="prediction, target"):
        squared_correlation(u, u)


def test_memory_curve_needs_ten_held_out_steps_to_score():
    """After washout, ``train_fraction`` of the steps fit the readout and the rest score it;
    fewer than 10 scoring steps are refused ("too few"), 10 are enough."""
    states, u = _delay_line_states(steps=400)
    # washout 10, 30 usable steps: 20 fit (>= 3 units + 2) and 10 score
    curve = memory_curve(states[:40], u[:40], max_delay=3, washout=10, train_fraction=0.67)
    np.testing.assert_allclose(curve.r2, 1.0, atol=1e-9)
    with pytest.raises(ValueError, match="too few"):  # 29 usable: 20 fit, 9 score
        memory_curve(states[:39], u[:39], max_delay=3, washout=10, train_fraction=0.69)


def test_memory_capacity_refuses_feedback_and_drives_with_symmetric_uniform_inputs(
    monkeypatch,
):
    """Jaeger's capacity is defined without output feedback (refused); the input is
    ``u_t ~ U(-input_range, input_range)``: within the range, mean ~0, both signs."""
    import plastix.reservoirs.memory as mem

    feedback_config = ESNConfig(n_inputs=1, n_units=6, connectivity=1.0, n_feedback=1)
    with_feedback = init_esn_weights(feedback_config, seed=0)
    with pytest.raises(ValueError, match="feedback"):
        memory_capacity(with_feedback, n_steps=400, max_delay=3)
    seen = recording_run_esn(monkeypatch, mem)
    weights = init_esn_weights(ESNConfig(n_inputs=1, n_units=6, connectivity=1.0), seed=0)
    memory_capacity(weights, n_steps=4000, max_delay=3, input_range=2.5)
    u = seen[0][:, 0]
    assert float(u.abs().max()) <= 2.5
    assert float(u.min()) < -2.4 and float(u.max()) > 2.4
    assert abs(float(u.mean())) < 0.1
    assert float(u.var()) == pytest.approx(2.5**2 / 3, rel=0.05)
