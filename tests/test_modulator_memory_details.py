"""Details of the xi-modulators (plastix.reservoirs.xi_modulator) and of the Brian2
kernel-memory circuit (plastix.circuits.kernel_memory) that the other tests leave open."""

from __future__ import annotations

import math

import pytest
import torch
from modulator_parts import generator, kernel_memory_config, random_streams, recording_run_esn

from plastix.plasticity.hsic import modulatory_signal, sliding_windows
from plastix.reservoirs.xi_modulator import (
    KernelMemoryModulator,
    XiModulator,
    XiModulatorConfig,
    fit_kernel_memory_modulator,
    kernel_stage_xi,
    synthetic_streams,
    xi_targets,
)


@pytest.fixture
def esn_inputs(monkeypatch) -> list[torch.Tensor]:
    """The input streams of every ``run_esn`` call the xi-modulator fits make, in order."""
    import plastix.reservoirs.xi_modulator as xm

    return recording_run_esn(monkeypatch, xm)


def _decoded_after(modulator: KernelMemoryModulator, x, y, z) -> torch.Tensor:
    """The memory readout's codes after stepping the modulator through stream 0."""
    modulator.reset(1)
    for t in range(x.shape[1]):
        modulator.step(x[:, t], y[:, t], z[:, t])
    return modulator.decode(modulator._state)[0]


# --- config -------------------------------------------------------------------------------


def test_config_refuses_a_zero_kernel_bandwidth():
    """Every kernel divides by its bandwidth: sigma_x, sigma_y and sigma_z must be > 0."""
    for i in range(3):
        sigmas = [0.5, 0.1, 1.0]
        sigmas[i] = 0.0
        with pytest.raises(ValueError, match=rf"sigmas\[{i}\]"):
            XiModulatorConfig(sigmas=tuple(sigmas))


def test_delay_line_memory_refuses_a_leak():
    """A delay line copies codes unchanged: a leak below 1 (even with identity units) would
    blur them, so the config refuses it and names the fix."""
    with pytest.raises(ValueError, match="leak=1.0"):
        kernel_memory_config(leak=0.5)
    assert kernel_memory_config(memory_topology="orthogonal", leak=0.5).leak == 0.5


def test_orthogonal_memory_size_is_the_nearest_integer_and_at_least_one_unit():
    """``N = memory_ratio (B - 1) dim(u)`` rounded to the nearest integer, never 0."""
    dim = 5 + 3 + 6  # x_projection + n_classes + n_neurons
    cfg = kernel_memory_config(memory_topology="orthogonal", memory_ratio=0.6)
    assert cfg.memory_units == 25  # 0.6 * 3 * 14 = 25.2
    cfg = kernel_memory_config(memory_topology="orthogonal", memory_ratio=0.65)
    assert cfg.memory_units == 27  # 27.3
    cfg = kernel_memory_config(memory_topology="orthogonal", memory_ratio=0.69)
    assert cfg.memory_units == round(0.69 * 3 * dim) == 29  # 28.98
    tiny = kernel_memory_config(memory_topology="orthogonal", memory_ratio=1e-3)
    assert tiny.memory_units == 1
    assert tiny.esn_config().n_units == 1


def test_orthogonal_memory_reservoir_is_orthogonal_at_the_spectral_radius():
    """``memory_topology="orthogonal"``: ``W`` is a random orthogonal matrix scaled to
    ``spectral_radius``, so ``W W^T = rho^2 I`` (no state direction decays faster than
    another, which the decoding of ``B - 1`` codes relies on)."""
    cfg = kernel_memory_config(memory_topology="orthogonal", memory_ratio=0.5, spectral_radius=0.7)
    w = fit_kernel_memory_modulator(cfg).weights.recurrent
    w = w.to_dense() if w.is_sparse else w
    n = cfg.memory_units
    torch.testing.assert_close(w @ w.T, 0.49 * torch.eye(n, dtype=w.dtype))


def test_kernel_memory_with_the_smallest_window_is_the_hsic_xi():
    """``B = 2`` (one remembered sample) is a valid window: the delay line holds one code and
    the kernel-memory xi equals the HSIC xi of each pair of consecutive samples."""
    cfg = kernel_memory_config(window=2, xi_method="exact")
    modulator = fit_kernel_memory_modulator(cfg)
    assert modulator.weights.n_units == cfg.n_inputs
    x, y, z = random_streams(cfg.n_classes, cfg.n_neurons)
    pred = modulator.predict(x, y, z)[0, 1:]
    windows = [sliding_windows(a[0], 2) for a in (x, y, z)]
    exact = modulatory_signal(*windows, cfg.gamma, cfg.sigmas, "exact")
    torch.testing.assert_close(pred, exact, rtol=1e-5, atol=1e-7 * float(exact.abs().max()))


# --- training data and targets --------------------------------------------------------------


def test_synthetic_streams_have_the_documented_class_structure():
    """``x = s_x (a m_y + b e) / sqrt(x_dim)`` with ``a ~ U(0, 0.7)``, ``b ~ U(0.3, 0.8)`` and
    ``z = LayerNorm(ReLU(c M_y + E))`` with ``c ~ U(0, class_strength)``: estimated per
    stream, ``b`` (within-class spread of x) lies in [0.3, 0.8], ``a`` (spread of the class
    means, corrected for their sampling noise) stays below 0.7, z rows are normalised and
    share their minimum (the ReLU zeros), and the class-driven share of z's variance ranges
    from unrelated to strongly class-driven across streams."""
    s, t, c, dz, dx, sigma_x = 32, 400, 8, 12, 64, 0.5
    x, y, z = synthetic_streams(s, t, c, dz, dx, sigma_x, generator(0))
    labels = y.argmax(-1)
    counts = y.sum(1)  # (S, C)
    means = torch.einsum("stc,std->scd", y, x) / counts[..., None]
    resid = x - torch.gather(means, 1, labels[..., None].expand(s, t, dx))
    b = resid.square().mean((1, 2)).sqrt() / sigma_x * math.sqrt(t / (t - c))
    assert float(b.min()) > 0.28 and float(b.max()) < 0.82
    noise = (b * sigma_x).square()[:, None] / counts  # variance of a class-mean entry
    a = (means.square().mean(-1) - noise).mean(-1).clamp_min(0).sqrt() / sigma_x
    assert float(a.max()) < 0.7 * 1.1
    # z: LayerNorm rows (mean 0, variance 1 up to the eps), ReLU zeros tie at the minimum
    torch.testing.assert_close(z.mean(-1), torch.zeros(s, t, dtype=z.dtype))
    assert float(z.var(-1, unbiased=False).max()) <= 1.0 + 1e-9
    ties = ((z - z.min(-1, keepdim=True).values).abs() < 1e-12).sum(-1)
    assert float((ties >= 2).double().mean()) > 0.95
    # class-explained variance of z per stream: from ~0 (c ~ 0) to most of it (c ~ 1.5)
    zm = torch.einsum("stc,stn->scn", y, z) / counts[..., None]
    between = torch.gather(zm, 1, labels[..., None].expand(s, t, dz)).var(1).sum(-1)
    share = between / z.var(1).sum(-1)
    assert float(share.min()) < 0.1 and float(share.max()) > 0.5


def test_xi_targets_entry_t_is_the_hsic_xi_of_the_window_ending_at_t_plus_b_minus_1():
    """``xi_targets`` entry ``t`` is :func:`modulatory_signal` of samples ``t .. t + B - 1``
    (current sample last), stream by stream."""
    cfg = XiModulatorConfig(n_neurons=5, n_classes=3, window=4, stream_length=10)
    x, y, z = synthetic_streams(2, 10, 3, 5, 6, cfg.sigmas[0], generator(3))
    targets = xi_targets(x, y, z, cfg)
    assert targets.shape == (2, 7, 5)
    for s, t in [(0, 0), (1, 3), (1, 6)]:
        window = [a[s, t : t + 4] for a in (x, y, z)]
        expected = modulatory_signal(*window, cfg.gamma, cfg.sigmas)
        torch.testing.assert_close(targets[s, t], expected)


def test_global_projection_keeps_distances_over_s_x_on_average():
    """``XiModulator.projection``: ``||P (x - x')||^2 ~ ||x - x'||^2 / s_x^2`` with
    ``s_x = sigma_x sqrt(dim x)`` (entries ``N(0, 1 / k)``)."""
    cfg = XiModulatorConfig(
        architecture="global", window_products=False, x_projection=64, sigmas=(0.5, 0.1, 1.0)
    )
    modulator = XiModulator(cfg, None, [])
    p = modulator.projection(300)
    assert p.shape == (64, 300)
    v = torch.randn(400, 300, generator=generator(1), dtype=torch.float64)
    ratio = (v @ p.T).square().sum(-1) / (v.square().sum(-1) / (0.5**2 * 300))
    assert float(ratio.mean()) == pytest.approx(1.0, abs=0.05)


# --- kernel-memory modulator ----------------------------------------------------------------


def test_kernel_memory_decodes_the_last_b_minus_1_codes_oldest_first():
    """The memory readout returns ``u_{t-B+1} .. u_{t-1}`` (oldest first) from the state that
    has taken them; the xi itself would not show a wrong order (it sums over the window)."""
    cfg = kernel_memory_config()
    modulator = fit_kernel_memory_modulator(cfg)
    x, y, z = random_streams(cfg.n_classes, cfg.n_neurons, length=6)
    codes = modulator.encode(x[0], y[0], z[0])  # (6, dim u)
    decoded = _decoded_after(modulator, x, y, z)  # (B - 1, dim u)
    torch.testing.assert_close(decoded, codes[3:], rtol=1e-6, atol=1e-6)


def test_kernel_memory_readout_uses_the_configured_memory_ridge():
    """``memory_ridge`` is the memory readout's ridge: a huge one shrinks the decoded codes
    towards their training mean, so the decoding is far from the codes it should hold."""
    cfg = kernel_memory_config()
    x, y, z = random_streams(cfg.n_classes, cfg.n_neurons, length=6)
    errors = []
    for ridge in (1e-8, 1e8):
        modulator = fit_kernel_memory_modulator(kernel_memory_config(memory_ridge=ridge))
        codes = modulator.encode(x[0], y[0], z[0])
        decoded = _decoded_after(modulator, x, y, z)
        errors.append(float((decoded - codes[3:]).norm() / codes[3:].norm()))
    assert errors[0] < 1e-5
    assert errors[1] > 0.5


def test_kernel_stage_xi_refuses_codes_that_do_not_split_into_the_blocks():
    """The code width must be ``k + C + dz``; a mismatch is a ValueError naming block_sizes."""
    codes = torch.zeros(4, 3 + 2 + 5, dtype=torch.float64)
    with pytest.raises(ValueError, match="block_sizes"):
        kernel_stage_xi(codes, (3, 2, 4), 2.0, 1.0)
    with pytest.raises(ValueError, match="block_sizes"):
        kernel_stage_xi(codes, (3, 2, 6), 2.0, 1.0)


def test_kernel_memory_modulator_refuses_another_architecture():
    """KernelMemoryModulator is only built for ``architecture="kernel-memory"``."""
    cfg = XiModulatorConfig()
    with pytest.raises(ValueError, match="kernel-memory"):
        KernelMemoryModulator(cfg, None, None)


# --- Brian2 circuit -----------------------------------------------------------------------


def test_circuit_refuses_the_diagonal_xi_and_modulators_of_other_kinds():
    """Only the row-centred xi has a Brian2 form (``diagonal`` needs the kernels among
    remembered samples, like ``exact``); a factorised/global XiModulator is not a
    kernel-memory modulator (TypeError)."""
    from plastix.circuits.kernel_memory import check_kernel_memory_modulator

    cfg = kernel_memory_config(xi_method="diagonal")
    diagonal = fit_kernel_memory_modulator(cfg)
    with pytest.raises(ValueError, match="xi_method: 'diagonal'.*row-centred"):
        check_kernel_memory_modulator(diagonal, cfg.n_neurons, cfg.n_classes, 4)
    row = fit_kernel_memory_modulator(kernel_memory_config())
    assert check_kernel_memory_modulator(row, 6, 3, 4) is row.config
    other = XiModulator(XiModulatorConfig(n_neurons=6, n_classes=3), None, [])
    with pytest.raises(TypeError, match="KernelMemoryModulator"):
        check_kernel_memory_modulator(other, 6, 3, 4)


# --- gated readouts -----------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["factorised", "global"])
def test_gated_readout_of_the_current_label_gives_xi_with_its_bias(architecture):
    """Gated readouts by hand: readout ``c`` maps the last feature block (the activity ``z``)
    to ``10 (c + 1) z_i`` plus bias ``c + 1``; ``predict`` returns that readout's output for
    the current label ``c``, in units of xi (times ``xi_scale``)."""
    from plastix.reservoirs.esn import init_esn_weights
    from plastix.reservoirs.readouts import RidgeReadout

    cfg = XiModulatorConfig(
        architecture=architecture,
        window_products=False,
        n_neurons=4,
        n_classes=3,
        n_units=5,
        connectivity=0.5,
        x_projection=2,
    )
    weights = init_esn_weights(cfg.esn_config(), seed=0, dtype=torch.float64)
    factorised = architecture == "factorised"
    n_features = cfg.n_units + cfg.n_inputs
    n_out = 1 if factorised else cfg.n_neurons
    readouts = []
    for c in range(cfg.n_classes):
        r = RidgeReadout(n_features, n_out)
        for o in range(n_out):
            r.weight[o, n_features - n_out + o] = 10.0 * (c + 1)  # the z_i input(s)
        r.bias[:] = c + 1.0
        readouts.append(r)
    modulator = XiModulator(cfg, weights, readouts)
    g = generator(4)
    labels = torch.randint(0, 3, (1, 9), generator=g)
    y = torch.nn.functional.one_hot(labels, 3).double()
    x = torch.rand(1, 9, 3, generator=g, dtype=torch.float64)
    z = torch.randn(1, 9, 4, generator=g, dtype=torch.float64)
    gain = (labels + 1.0).unsqueeze(-1)
    expected = gain * (10.0 * z + 1.0) * cfg.xi_scale
    torch.testing.assert_close(modulator.predict(x, y, z), expected)


def test_statistics_readout_decodes_each_neurons_own_window_statistics():
    """With ``window_products`` the statistics readout decodes, from neuron ``i``'s features,
    the exact ``[n, S_i, M_i]`` of the window (linear in a linear reservoir's memory): on
    held-out streams it explains most of their variance, neuron by neuron."""
    from plastix.reservoirs.esn import run_esn
    from plastix.reservoirs.xi_modulator import _window_statistics, fit_xi_modulator

    cfg = XiModulatorConfig(
        n_neurons=6, n_classes=3, window=4, n_units=40, n_streams=4, stream_length=120,
        n_chunks=1, train_neurons=6, seed=1,
    )  # fmt: skip
    modulator = fit_xi_modulator(cfg)
    x, y, z = synthetic_streams(2, 60, 3, 6, cfg.x_projection, cfg.sigmas[0], generator(9))
    e = modulator.encode(x, y, z)  # (S, T, dz, 2C + 1)
    s, t, dz, n_in = e.shape
    flat = e.permute(0, 2, 1, 3).reshape(s * dz, t, n_in)
    states, _ = run_esn(modulator.weights, flat)
    feats = torch.cat([states, flat], -1).reshape(s, dz, t, -1).permute(0, 2, 1, 3)
    decoded = modulator.statistics.predict(feats[:, cfg.window - 1 :])
    exact = _window_statistics(y, z, cfg.window)
    error = (decoded - exact).square().sum() / (exact - exact.mean((0, 1, 2))).square().sum()
    assert float(error) < 0.05


def test_gated_fit_with_a_label_never_current_names_the_fix():
    """Gated readouts need samples of every current label: one short stream leaves most of 10
    labels unseen, and the fit says to raise n_chunks or stream_length."""
    from plastix.reservoirs.xi_modulator import fit_xi_modulator

    cfg = XiModulatorConfig(
        architecture="global", window_products=False, n_classes=10, n_neurons=4, window=4,
        n_units=10, connectivity=0.5, n_streams=1, stream_length=5, n_chunks=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="raise n_chunks or stream_length"):
        fit_xi_modulator(cfg)


def test_global_fit_codes_synthetic_x_in_kernel_normalised_coordinates(esn_inputs):
    """The synthetic x of the fit already lives in the ``k`` projected dimensions, so the
    global reservoir is driven by ``x / s_x`` with ``s_x = sigma_x sqrt(k)`` (the same scale
    as ``P x / s_x`` of real inputs in :meth:`XiModulator.predict`), then ``y`` and ``z``."""
    from plastix.reservoirs.xi_modulator import fit_xi_modulator, training_streams

    cfg = XiModulatorConfig(
        architecture="global", window_products=False, gated=False, n_neurons=4, n_classes=3,
        n_units=10, connectivity=0.5, x_projection=9, sigmas=(0.5, 0.1, 1.0), n_streams=2,
        stream_length=20,
        n_chunks=1, seed=4,
    )  # fmt: skip
    fit_xi_modulator(cfg)
    x, y, z = training_streams(cfg, generator(cfg.seed + 1))
    expected = torch.cat([x / (0.5 * math.sqrt(9)), y, z], -1)
    torch.testing.assert_close(esn_inputs[0], expected)


def test_kernel_memory_fit_drives_the_memory_with_jittered_codes_of_real_scale(esn_inputs):
    """The memory readout is fitted on codes coded like real samples (synthetic x over
    ``s_x = sigma_x sqrt(k)``, y over ``s_y``, z over ``s_z``) plus a jitter of
    ``MEMORY_JITTER`` times each block's RMS: each block's RMS is ``sqrt(1 + 0.1^2)`` times
    that of the clean codes."""
    from plastix.reservoirs.xi_modulator import training_streams

    cfg = kernel_memory_config(x_projection=9, stream_length=60)
    fit_kernel_memory_modulator(cfg)
    x, y, z = training_streams(cfg, generator(cfg.seed + 1))
    s_y, s_z = 0.1 * math.sqrt(3), 1.0 * math.sqrt(6)
    clean = [x / (0.5 * math.sqrt(9)), y / s_y, z / s_z]
    for block, reference in zip(esn_inputs[0].split([9, 3, 6], -1), clean, strict=True):
        ratio = block.square().mean().sqrt() / reference.square().mean().sqrt()
        assert float(ratio) == pytest.approx(math.sqrt(1.01), abs=0.03)


def test_config_takes_any_finite_gamma_like_the_hsic_rule():
    """``gamma`` weighs the label term against the input term; like
    :func:`~plastix.plasticity.hsic.check_gamma` the config takes any finite value (0 and
    negative included) and refuses a non-finite one."""
    for gamma in (0.0, -1.5, 3.0):
        assert XiModulatorConfig(gamma=gamma).gamma == gamma
    with pytest.raises(ValueError, match="gamma"):
        XiModulatorConfig(gamma=float("inf"))


def test_xi_agreement_refuses_predictions_of_another_shape():
    """Predicted and exact xi must have the same shape, even with as many entries."""
    from plastix.reservoirs.xi_modulator import xi_agreement

    a = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="predicted, exact"):
        xi_agreement(a, a.reshape(3, 2))
