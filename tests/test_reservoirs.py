"""Tests of plastix.reservoirs: ESN, readouts, memory capacity, Brian2 form, xi-modulator."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from plastix.reservoirs.esn import (
    EchoStateNetwork,
    ESNConfig,
    ESNWeights,
    init_esn_weights,
    orthogonal_recurrent_weights,
    run_esn,
    sparse_recurrent_weights,
    spectral_radius,
)
from plastix.reservoirs.memory import memory_capacity, memory_curve
from plastix.reservoirs.readouts import LMSReadout, RidgeReadout, RLSReadout, ridge_regression


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- echo-state network -------------------------------------------------------------------


@pytest.mark.parametrize("n_units", [60, 700])  # dense eigvals and ARPACK paths
def test_sparse_weights_have_requested_spectral_radius(n_units):
    w = sparse_recurrent_weights(n_units, 0.1, 0.85, _gen(1))
    assert abs(float(np.abs(np.linalg.eigvals(w.numpy())).max()) - 0.85) < 1e-6
    density = float((w != 0).double().mean())
    assert 0.08 < density < 0.12


@pytest.mark.parametrize("seed", range(4))
def test_arpack_spectral_radius_is_the_largest_of_clustered_edge_eigenvalues(seed):
    """Random matrices have several eigenvalues near the edge of the spectrum; one-eigenvalue
    ARPACK runs settled on a smaller one (relative errors up to 3 % at 800-1200 units)."""
    w = sparse_recurrent_weights(800, 0.1, 0.99, _gen(seed))
    assert abs(float(np.abs(np.linalg.eigvals(w.numpy())).max()) - 0.99) < 1e-8


def test_run_esn_leaves_the_initial_state_it_was_given_untouched():
    """Continuing a batched run from its last state (a view into the returned states) must not
    overwrite that state in place."""
    cfg = ESNConfig(n_inputs=1, n_units=20, leak=0.3, connectivity=0.5)
    weights = init_esn_weights(cfg, seed=0)
    u = torch.rand(3, 10, 1, generator=_gen(0), dtype=torch.float64)
    states, _ = run_esn(weights, u)
    last = states[:, -1]
    kept = last.clone()
    run_esn(weights, u, initial_state=last)
    torch.testing.assert_close(last, kept, rtol=0, atol=0)


@pytest.mark.parametrize("readout_class", [RidgeReadout, LMSReadout, RLSReadout])
def test_readouts_predict_features_of_another_dtype_in_their_own(readout_class):
    readout = readout_class(3, 2, dtype=torch.float64)
    prediction = readout.predict(torch.ones(4, 3, dtype=torch.float32))
    assert prediction.shape == (4, 2) and prediction.dtype == torch.float64


def test_orthogonal_weights_have_all_eigenvalues_on_the_circle():
    w = orthogonal_recurrent_weights(40, 0.7, _gen(2))
    moduli = np.abs(np.linalg.eigvals(w.numpy()))
    np.testing.assert_allclose(moduli, 0.7, atol=1e-10)
    assert abs(spectral_radius(w) - 0.7) < 1e-10


def test_echo_state_property_forgets_initial_condition():
    cfg = ESNConfig(n_inputs=2, n_units=100, spectral_radius=0.9, leak=0.5, bias_scaling=0.2)
    weights = init_esn_weights(cfg, seed=3)
    u = torch.randn(300, 2, generator=_gen(4), dtype=torch.float64)
    starts = torch.randn(2, 100, generator=_gen(5), dtype=torch.float64) * 3.0
    states, _ = run_esn(weights, u.expand(2, 300, 2), initial_state=starts)
    gap = (states[0] - states[1]).norm(dim=-1)
    assert gap[0] > 1.0
    assert gap[-1] < 1e-6 * gap[0]


def test_seeded_weights_reproduce_and_differ_across_seeds():
    cfg = ESNConfig(n_inputs=3, n_units=50)
    a, b, c = (init_esn_weights(cfg, seed=s) for s in (7, 7, 8))
    assert torch.equal(a.recurrent, b.recurrent) and torch.equal(a.input, b.input)
    assert not torch.equal(a.recurrent, c.recurrent)


def test_float32_matches_float64_and_batch_matches_single_runs():
    cfg = ESNConfig(n_inputs=3, n_units=80, leak=0.3, bias_scaling=0.1)
    w64 = init_esn_weights(cfg, seed=0)
    u = torch.randn(4, 50, 3, generator=_gen(1), dtype=torch.float64)
    batched, _ = run_esn(w64, u)
    single, _ = run_esn(w64, u[2])
    torch.testing.assert_close(batched[2], single)
    s32, _ = run_esn(w64.to(torch.float32), u.float())
    assert s32.dtype == torch.float32
    assert (s32.double() - batched).abs().max() < 1e-4


def test_sparse_recurrent_product_equals_the_dense_one():
    cfg = ESNConfig(n_inputs=2, n_units=300, connectivity=0.05, leak=0.7)
    weights = init_esn_weights(cfg, seed=5)
    u = torch.randn(3, 40, 2, generator=_gen(6), dtype=torch.float64)
    states, _ = run_esn(weights, u)
    assert weights.sparse_recurrent() is not None  # the CSR path is the one taken
    x = torch.zeros(3, 300, dtype=torch.float64)
    for t in range(40):
        pre = x @ weights.recurrent.T + u[:, t] @ weights.input.T + weights.bias
        x = 0.3 * x + 0.7 * torch.tanh(pre)
    torch.testing.assert_close(states[:, -1], x)


def test_noise_needs_a_generator_and_module_draws_its_own():
    cfg = ESNConfig(n_inputs=1, n_units=20, noise=0.01)
    weights = init_esn_weights(cfg)
    u = torch.zeros(10, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="generator"):
        run_esn(weights, u)
    esn_a, esn_b = (EchoStateNetwork(weights, seed=s) for s in (1, 1))
    sa, _ = esn_a(u)
    sb, _ = esn_b(u)
    torch.testing.assert_close(sa, sb)
    assert sa.abs().max() > 0


def _noise_only_weights(n: int, noise: float) -> ESNWeights:
    """``n`` identity units with no weights or bias and leak 1: each state is fresh noise."""
    zeros = functools.partial(torch.zeros, dtype=torch.float64)
    return ESNWeights(
        zeros(n, n),
        zeros(n, 1),
        zeros(n, 0),
        zeros(n),
        leak=1.0,
        noise=noise,
        activation="identity",
    )


def test_state_noise_has_the_configured_standard_deviation():
    n, noise = 400, 0.05
    weights = _noise_only_weights(n, noise)
    states, _ = run_esn(weights, torch.zeros(5, 1, dtype=torch.float64), generator=_gen(7))
    # zero weights and leak 1: every state is one fresh draw; 2000 draws, std within 10 %
    assert abs(float(states.std()) - noise) < 0.005


@pytest.mark.parametrize("fraction", [0.2, 0.6, 1.0])
def test_input_connectivity_is_the_fraction_of_nonzero_input_weights(fraction):
    cfg = ESNConfig(n_inputs=5, n_units=400, input_connectivity=fraction)
    nonzero = float((init_esn_weights(cfg, seed=3).input != 0).double().mean())
    assert abs(nonzero - fraction) < 0.05  # 2000 entries: 5 binomial s.d. at most 0.056


def test_feedback_teacher_forcing_equals_closed_loop_with_the_same_signal():
    cfg = ESNConfig(n_inputs=2, n_units=40, n_feedback=1, feedback_scaling=0.5)
    weights = init_esn_weights(cfg, seed=2)
    u = torch.randn(30, 2, generator=_gen(3), dtype=torch.float64)
    w_out = torch.randn(1, 40, generator=_gen(4), dtype=torch.float64) * 0.1
    closed, outputs = run_esn(weights, u, readout=lambda x: x @ w_out.T)
    teacher = torch.cat([torch.zeros(1, 1, dtype=torch.float64), outputs[:-1]])
    forced, _ = run_esn(weights, u, feedback=teacher)
    torch.testing.assert_close(closed, forced)


def test_config_and_weights_reject_bad_values():
    with pytest.raises(ValueError, match="leak"):
        ESNConfig(n_inputs=1, leak=1.5)
    with pytest.raises(ValueError, match="connectivity"):
        ESNConfig(n_inputs=1, connectivity=0.0)
    with pytest.raises(TypeError, match="n_units"):
        ESNConfig(n_inputs=1, n_units=2.5)
    with pytest.raises(ValueError, match="recurrent"):
        ESNWeights(torch.zeros(3, 4), torch.zeros(3, 1), torch.zeros(3, 0), torch.zeros(3))
    weights = init_esn_weights(ESNConfig(n_inputs=2, n_units=10))
    with pytest.raises(ValueError, match="inputs"):
        run_esn(weights, torch.zeros(5, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtype"):
        run_esn(weights, torch.zeros(5, 2, dtype=torch.float32))


def test_config_and_weight_builders_refuse_a_negative_spectral_radius():
    with pytest.raises(ValueError, match="spectral_radius"):
        ESNConfig(n_inputs=1, spectral_radius=-0.5)
    with pytest.raises(ValueError, match="radius"):
        sparse_recurrent_weights(10, 0.5, -0.5, _gen(0))


def test_sparse_weights_refuse_to_rescale_a_nilpotent_matrix():
    """With (almost) no entries kept, W has spectral radius 0 and cannot reach a radius > 0;
    radius 0 is asked for and returned as it is."""
    with pytest.raises(ValueError, match="nilpotent"):
        sparse_recurrent_weights(4, 1e-12, 0.9, _gen(0))
    w = sparse_recurrent_weights(4, 1e-12, 0.0, _gen(0))
    assert torch.equal(w, torch.zeros(4, 4, dtype=torch.float64))


def test_orthogonal_weights_are_the_positive_diagonal_qr_factor_of_the_seeded_gaussian():
    """Mezzadri's sign fix: W / radius = Q with G = Q R and diag(R) > 0, where G is the
    Gaussian matrix drawn from the same generator (the unique QR that makes Q Haar)."""
    n, radius = 12, 0.7
    gauss = torch.randn(n, n, generator=_gen(3), dtype=torch.float64)
    q = orthogonal_recurrent_weights(n, radius, _gen(3)) / radius
    torch.testing.assert_close(q.T @ q, torch.eye(n, dtype=torch.float64))
    r = q.T @ gauss
    torch.testing.assert_close(torch.tril(r, -1), torch.zeros(n, n, dtype=torch.float64))
    assert bool((torch.diagonal(r) > 0).all())


def test_input_feedback_and_bias_weights_are_uniform_in_their_own_scales():
    """W_in, W_fb and b are U[-scale, scale] with their own scale: symmetric, bounded by the
    scale, reaching close to it, std = scale / sqrt(3) (uniform distribution)."""
    cfg = ESNConfig(
        n_inputs=5,
        n_units=400,
        n_feedback=3,
        input_scaling=0.5,
        feedback_scaling=2.0,
        bias_scaling=0.1,
    )
    weights = init_esn_weights(cfg, seed=4)
    for values, scale in (
        (weights.input, 0.5),
        (weights.feedback, 2.0),
        (weights.bias, 0.1),
    ):
        assert float(values.abs().max()) <= scale
        assert float(values.max()) > 0.95 * scale and float(values.min()) < -0.95 * scale
        assert abs(float(values.mean())) < 0.1 * scale
        assert abs(float(values.std()) - scale / 3**0.5) < 0.1 * scale / 3**0.5


def test_dense_or_small_recurrent_weights_are_not_converted_to_csr():
    """The CSR copy is made only for N >= 128 units with at most 25 % non-zero weights."""
    sparse = init_esn_weights(ESNConfig(n_inputs=1, n_units=200, connectivity=0.05))
    dense = init_esn_weights(ESNConfig(n_inputs=1, n_units=200, connectivity=0.5))
    small = init_esn_weights(ESNConfig(n_inputs=1, n_units=100, connectivity=0.05))
    assert sparse.sparse_recurrent() is not None
    assert dense.sparse_recurrent() is None
    assert small.sparse_recurrent() is None


@pytest.mark.parametrize("n_feedback", [0, 1])
def test_module_step_is_one_leaky_esn_step_with_bias_and_feedback(n_feedback):
    """EchoStateNetwork.step(x, u, y) = (1 - a) x + a tanh(W x + W_in u + W_fb y + b), the
    first state run_esn returns from initial state x."""
    cfg = ESNConfig(
        n_inputs=2, n_units=15, connectivity=0.5, leak=0.4, bias_scaling=0.5, n_feedback=n_feedback
    )
    esn = EchoStateNetwork.from_config(cfg, seed=1)
    w = esn.weights
    g = _gen(2)
    x0 = torch.randn(3, 15, generator=g, dtype=torch.float64)
    u = torch.randn(3, 2, generator=g, dtype=torch.float64)
    y = torch.randn(3, n_feedback, generator=g, dtype=torch.float64) if n_feedback else None
    pre = x0 @ w.recurrent.T + u @ w.input.T + w.bias
    if n_feedback:
        pre = pre + y @ w.feedback.T
    expected = 0.6 * x0 + 0.4 * torch.tanh(pre)
    torch.testing.assert_close(esn.step(x0, u, y), expected)
    fb = y[:, None] if n_feedback else None
    states, _ = run_esn(w, u[:, None], initial_state=x0, feedback=fb)
    torch.testing.assert_close(states[:, 0], expected)


def test_module_noise_generators_differ_across_seeds():
    """Each module draws its noise from a generator seeded by its own seed."""
    weights = init_esn_weights(ESNConfig(n_inputs=1, n_units=20, noise=0.01))
    u = torch.zeros(10, 1, dtype=torch.float64)
    first, _ = EchoStateNetwork(weights, seed=1)(u)
    again, _ = EchoStateNetwork(weights, seed=1)(u)
    other, _ = EchoStateNetwork(weights, seed=2)(u)
    torch.testing.assert_close(first, again)
    assert (first - other).abs().max() > 1e-3


# --- readouts ---------------------------------------------------------------------------


def test_ridge_recovers_a_linear_map_and_accumulation_equals_one_fit():
    g = _gen(0)
    features = torch.randn(2000, 12, generator=g, dtype=torch.float64)
    true_w = torch.randn(3, 12, generator=g, dtype=torch.float64)
    true_b = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    targets = features @ true_w.T + true_b + 1e-3 * torch.randn(2000, 3, generator=g)
    w, b = ridge_regression(features, targets, ridge=1e-8)
    assert (w - true_w).abs().max() < 1e-3
    assert (b - true_b).abs().max() < 1e-3
    chunked = RidgeReadout(12, 3, ridge=1e-8)
    for part in range(4):
        sl = slice(500 * part, 500 * (part + 1))
        chunked.accumulate(features[sl], targets[sl])
    chunked.solve()
    torch.testing.assert_close(chunked.weight, w)
    torch.testing.assert_close(chunked.bias, b)


def test_ridge_penalty_shrinks_weights():
    g = _gen(1)
    features = torch.randn(200, 5, generator=g, dtype=torch.float64)
    targets = features @ torch.ones(5, 1, dtype=torch.float64)
    small = RidgeReadout(5, 1, ridge=1e-6).fit(features, targets)
    large = RidgeReadout(5, 1, ridge=1e3).fit(features, targets)
    assert large.weight.norm() < 0.5 * small.weight.norm()


def test_ridge_solves_the_penalised_least_squares_problem():
    """W = Yc^T Fc (Fc^T Fc + lambda I)^-1 on centred data, b = mean(y) - W mean(r)."""
    g = _gen(8)
    features = torch.randn(60, 5, generator=g, dtype=torch.float64) + 1.0
    targets = features @ torch.randn(5, 2, generator=g, dtype=torch.float64) + torch.randn(
        60, 2, generator=g, dtype=torch.float64
    )
    fc, yc = features - features.mean(0), targets - targets.mean(0)
    expected = torch.linalg.solve(fc.T @ fc + 5.0 * torch.eye(5, dtype=torch.float64), fc.T @ yc).T
    fitted = RidgeReadout(5, 2, ridge=5.0).fit(features, targets)
    torch.testing.assert_close(fitted.weight, expected)
    torch.testing.assert_close(fitted.bias, targets.mean(0) - expected @ features.mean(0))


def test_rls_converges_to_the_generating_weights():
    g = _gen(2)
    true_w = torch.randn(2, 8, generator=g, dtype=torch.float64)
    features = torch.randn(400, 8, generator=g, dtype=torch.float64)
    targets = features @ true_w.T + 0.3
    rls = RLSReadout(8, 2, alpha=1e-4)
    errors = rls.step(features, targets)
    assert (rls.weight - true_w).abs().max() < 1e-4
    assert (rls.bias - 0.3).abs().max() < 1e-4
    assert errors[-50:].abs().max() < 1e-4 < errors[:5].abs().max()


def test_rls_with_forgetting_tracks_a_changed_target():
    g = _gen(3)
    features = torch.randn(600, 4, generator=g, dtype=torch.float64)
    w1, w2 = torch.randn(2, 1, 4, generator=g, dtype=torch.float64)
    targets = torch.cat([features[:300] @ w1.T, features[300:] @ w2.T])
    forgetful = RLSReadout(4, 1, alpha=1e-2, forgetting=0.95, fit_bias=False)
    forgetful.step(features, targets)
    assert (forgetful.weight - w2).abs().max() < 1e-4
    plain = RLSReadout(4, 1, alpha=1e-2, forgetting=1.0, fit_bias=False)
    plain.step(features, targets)
    assert (plain.weight - w2).abs().max() > 0.1  # without forgetting it averages both maps


def test_rls_with_forgetting_is_exponentially_weighted_least_squares():
    """After n samples W = (sum_i lam^(n-i) y_i r_i^T) (sum_i lam^(n-i) r_i r_i^T + lam^n alpha
    I)^-1 (Haykin 2002, ch. 9): the initial P(0) = I/alpha acts as a ridge prior that fades as
    lam^n. Few noisy samples, so the prior and the weighting both show."""
    g = _gen(9)
    lam, alpha, n = 0.8, 100.0, 10
    features = torch.randn(n, 4, generator=g, dtype=torch.float64)
    targets = torch.randn(n, 2, generator=g, dtype=torch.float64)
    rls = RLSReadout(4, 2, alpha=alpha, forgetting=lam, fit_bias=False)
    rls.step(features, targets)
    decay = lam ** torch.arange(n - 1, -1, -1, dtype=torch.float64)
    rr = (features * decay[:, None]).T @ features + lam**n * alpha * torch.eye(
        4, dtype=torch.float64
    )
    ry = (features * decay[:, None]).T @ targets
    torch.testing.assert_close(rls.weight, torch.linalg.solve(rr, ry).T, rtol=1e-6, atol=1e-9)


def test_lms_decreases_the_error():
    g = _gen(4)
    true_w = torch.randn(1, 6, generator=g, dtype=torch.float64)
    features = torch.randn(3000, 6, generator=g, dtype=torch.float64)
    targets = features @ true_w.T
    lms = LMSReadout(6, 1, lr=0.02)
    errors = torch.cat(
        [lms.step(features[t : t + 10], targets[t : t + 10]) for t in range(0, 3000, 10)]
    )
    early = errors[:100].pow(2).mean()
    late = errors[-100:].pow(2).mean()
    assert late < 1e-3 * early
    nlms = LMSReadout(6, 1, lr=0.5, normalized=True)
    errors = torch.cat([nlms.step(features[t], targets[t]) for t in range(600)])
    assert errors[-100:].pow(2).mean() < 1e-3 * errors[:100].pow(2).mean()


def test_readouts_reject_bad_shapes_and_values():
    with pytest.raises(ValueError, match="ridge"):
        RidgeReadout(3, 1, ridge=-1.0)
    with pytest.raises(ValueError, match="forgetting"):
        RLSReadout(3, 1, forgetting=1.5)
    with pytest.raises(ValueError, match="features"):
        RidgeReadout(3, 1).fit(torch.zeros(10, 4, dtype=torch.float64), torch.zeros(10, 1))
    with pytest.raises(ValueError, match="accumulate"):
        RidgeReadout(3, 1).solve()


def test_ridge_without_bias_solves_the_uncentred_problem():
    """fit_bias=False: W = Y^T F (F^T F + lambda I)^-1 on raw (uncentred) data, b = 0."""
    g = _gen(10)
    features = torch.randn(50, 4, generator=g, dtype=torch.float64) + 2.0
    targets = torch.randn(50, 2, generator=g, dtype=torch.float64) + 1.0
    eye = torch.eye(4, dtype=torch.float64)
    expected = torch.linalg.solve(features.T @ features + 3.0 * eye, features.T @ targets).T
    fitted = RidgeReadout(4, 2, ridge=3.0, fit_bias=False).fit(features, targets)
    torch.testing.assert_close(fitted.weight, expected)
    torch.testing.assert_close(fitted.bias, torch.zeros(2, dtype=torch.float64))


def test_ridge_fit_forgets_earlier_samples_and_predict_adds_the_bias():
    """fit() starts from fresh statistics; predict() is W r + b."""
    g = _gen(11)
    old_f, new_f = torch.randn(2, 40, 3, generator=g, dtype=torch.float64)
    old_y, new_y = torch.randn(2, 40, 2, generator=g, dtype=torch.float64) + 5.0
    refit = RidgeReadout(3, 2, ridge=0.1).fit(old_f, old_y).fit(new_f, new_y)
    fresh = RidgeReadout(3, 2, ridge=0.1).fit(new_f, new_y)
    assert refit.count == 40
    torch.testing.assert_close(refit.weight, fresh.weight)
    torch.testing.assert_close(refit.bias, fresh.bias)
    assert fresh.bias.abs().min() > 1.0  # the targets' offset lands in the bias
    torch.testing.assert_close(fresh.predict(new_f), new_f @ fresh.weight.T + fresh.bias)


@pytest.mark.parametrize("normalized", [False, True])
@pytest.mark.parametrize("fit_bias", [False, True])
def test_lms_step_is_the_mean_widrow_hoff_update_of_the_batch(normalized, fit_bias):
    """From W0, b0: e_i = y_i - W0 r_i - b0, step_i = lr (NLMS: lr / (1e-8 + |r_i|^2 + 1 if
    fit_bias else 0)), W += mean_i step_i e_i r_i^T, b += mean_i step_i e_i (fit_bias only);
    predict() is W r + b."""
    g = _gen(12)
    w0 = torch.randn(2, 3, generator=g, dtype=torch.float64)
    b0 = torch.randn(2, generator=g, dtype=torch.float64) if fit_bias else torch.zeros(2)
    r = torch.randn(4, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 2, generator=g, dtype=torch.float64)
    lms = LMSReadout(3, 2, lr=0.3, normalized=normalized, fit_bias=fit_bias)
    lms.weight, lms.bias = w0.clone(), b0.clone().double()
    errors = lms.step(r, y)
    expected_w, expected_b = w0.clone(), b0.clone().double()
    for i in range(4):
        e = y[i] - w0 @ r[i] - b0
        torch.testing.assert_close(errors[i], e)
        step = 0.3
        if normalized:
            step = 0.3 / (1e-8 + float(r[i] @ r[i]) + (1.0 if fit_bias else 0.0))
        expected_w += step * torch.outer(e, r[i]) / 4
        if fit_bias:
            expected_b += step * e / 4
    torch.testing.assert_close(lms.weight, expected_w)
    torch.testing.assert_close(lms.bias, expected_b)
    torch.testing.assert_close(lms.predict(r), r @ expected_w.T + expected_b)


def test_online_readouts_refuse_a_zero_step_size_prior_or_forgetting_factor():
    with pytest.raises(ValueError, match="lr"):
        LMSReadout(3, 1, lr=0.0)
    with pytest.raises(ValueError, match="alpha"):
        RLSReadout(3, 1, alpha=0.0)
    with pytest.raises(ValueError, match="forgetting"):
        RLSReadout(3, 1, forgetting=0.0)
    assert RidgeReadout(3, 1, ridge=0.0).ridge == 0.0  # an unpenalised ridge is allowed


# --- memory capacity --------------------------------------------------------------------


def test_linear_orthogonal_reservoir_has_memory_capacity_near_n():
    n = 20
    cfg = ESNConfig(
        n_inputs=1,
        n_units=n,
        spectral_radius=0.9,
        activation="identity",
        recurrent_init="orthogonal",
    )
    curve = memory_capacity(init_esn_weights(cfg, seed=1), n_steps=6000, max_delay=150)
    assert 0.9 * n <= curve.capacity <= n
    assert curve.r2[0] > 0.95 and curve.r2[-1] < 0.01
    with_now = memory_capacity(init_esn_weights(cfg, seed=1), n_steps=6000, delays=range(0, 151))
    assert with_now.capacity <= n + 0.05
    assert with_now.capacity > curve.capacity


def test_tanh_reservoir_capacity_is_bounded_and_below_the_linear_one():
    n = 30
    common = dict(n_inputs=1, n_units=n, spectral_radius=0.9, connectivity=0.2)
    tanh_w = init_esn_weights(ESNConfig(**common, input_scaling=1.0), seed=2)
    lin_w = init_esn_weights(ESNConfig(**common, activation="identity"), seed=2)
    tanh_mc = memory_capacity(tanh_w, n_steps=5000, max_delay=90).capacity
    lin_mc = memory_capacity(lin_w, n_steps=5000, max_delay=90).capacity
    assert 1.0 < tanh_mc < lin_mc <= n


def test_memory_curve_of_a_delay_line_is_exact():
    # states that literally hold u_{t-1}, u_{t-2}, u_{t-3}: r^2 = 1 at those delays, ~0 else
    u = torch.rand(3000, generator=_gen(5), dtype=torch.float64)
    states = torch.stack([torch.roll(u, k) for k in (1, 2, 3)], 1)
    curve = memory_curve(states, u, max_delay=6, washout=10)
    np.testing.assert_allclose(curve.r2[:3], 1.0, atol=1e-9)
    assert curve.r2[3:].max() < 0.01
    # the washout steps are left out of the fit: a start-up transient there changes nothing
    transient = states.clone()
    transient[:100] = torch.randn(100, 3, generator=_gen(6), dtype=torch.float64) * 1e3
    washed = memory_curve(transient, u, max_delay=6, washout=100)
    np.testing.assert_allclose(washed.r2[:3], 1.0, atol=1e-9)


def test_memory_capacity_rejects_bad_arguments():
    w2 = init_esn_weights(ESNConfig(n_inputs=2, n_units=10))
    with pytest.raises(ValueError, match="one-input"):
        memory_capacity(w2)
    w1 = init_esn_weights(ESNConfig(n_inputs=1, n_units=10))
    with pytest.raises(ValueError, match="delays"):
        memory_capacity(w1, delays=[-1, 2])
    with pytest.raises(ValueError, match="too few"):
        memory_capacity(w1, n_steps=50, max_delay=5)
    for bad in (0, -1.0, float("inf"), float("nan"), True, "1"):
        with pytest.raises(ValueError, match="input_range: expected a finite number > 0"):
            memory_capacity(w1, input_range=bad)
    for bad in (True, 1.5, "0", None):
        with pytest.raises(TypeError, match="seed: expected an int"):
            memory_capacity(w1, seed=bad)


def test_memory_capacity_defaults_to_delays_one_to_twice_the_units():
    """Without ``delays`` or ``max_delay`` the curve covers delays ``1 .. 2N``."""
    cfg = ESNConfig(n_inputs=1, n_units=7, activation="identity", recurrent_init="orthogonal")
    w = init_esn_weights(cfg, seed=0)
    curve = memory_capacity(w, n_steps=1000)
    np.testing.assert_array_equal(curve.delays, np.arange(1, 15))
    assert curve.r2.shape == (14,)


def test_memory_capacity_draws_its_input_from_the_seed():
    """The same seed reproduces the curve; another seed draws another input sequence."""
    cfg = ESNConfig(n_inputs=1, n_units=8, activation="identity", recurrent_init="orthogonal")
    w = init_esn_weights(cfg, seed=0)
    first = memory_capacity(w, n_steps=800, max_delay=10, seed=1)
    again = memory_capacity(w, n_steps=800, max_delay=10, seed=1)
    other = memory_capacity(w, n_steps=800, max_delay=10, seed=2)
    np.testing.assert_array_equal(first.r2, again.r2)
    assert np.abs(first.r2 - other.r2).max() > 1e-6


def test_memory_capacity_input_range_sets_how_far_tanh_units_saturate():
    """A tanh reservoir driven by tiny inputs is almost linear (capacity of the identity
    reservoir with the same weights, ridge scaled with the squared input); driven by unit
    inputs it saturates and forgets."""
    common = dict(n_inputs=1, n_units=20, input_scaling=1.0, recurrent_init="orthogonal")
    lin_w = init_esn_weights(ESNConfig(**common, activation="identity"), seed=3)
    tanh_w = init_esn_weights(ESNConfig(**common), seed=3)
    lin = memory_capacity(lin_w, n_steps=3000, max_delay=40).capacity
    small = memory_capacity(
        tanh_w, n_steps=3000, max_delay=40, input_range=0.01, ridge=1e-13
    ).capacity
    unit = memory_capacity(tanh_w, n_steps=3000, max_delay=40, input_range=1.0).capacity
    assert small == pytest.approx(lin, abs=0.01)
    assert unit < lin - 5.0


def test_memory_capacity_passes_washout_and_ridge_to_the_curve():
    """``washout`` removes steps before the fit (too many leave too few to fit) and
    ``ridge`` is the readout's penalty (a negative one is refused, a huge one lowers MC)."""
    cfg = ESNConfig(n_inputs=1, n_units=10, activation="identity", recurrent_init="orthogonal")
    w = init_esn_weights(cfg, seed=0)
    memory_capacity(w, n_steps=300, max_delay=5, washout=100)  # 200 steps: enough
    with pytest.raises(ValueError, match="too few"):  # 20 steps left: 10 to fit 10 units
        memory_capacity(w, n_steps=300, max_delay=5, washout=280)
    with pytest.raises(ValueError, match="ridge"):
        memory_capacity(w, n_steps=300, max_delay=5, ridge=-1.0)
    plain = memory_capacity(w, n_steps=1000, max_delay=10).capacity
    shrunk = memory_capacity(w, n_steps=1000, max_delay=10, ridge=1e8).capacity
    assert shrunk < plain - 0.5


def test_memory_curve_readout_fits_a_bias_so_constant_state_offsets_do_not_matter():
    """States ``[u_{t-1} + 10, v + 10]`` with independent noise ``v``: with a fitted bias
    the readout ignores ``v`` and recovers ``u_{t-1}`` exactly (r^2 = 1); without one it
    would have to cancel the offsets with ``v`` and score below 1."""
    u = torch.rand(2000, generator=_gen(7), dtype=torch.float64)
    v = torch.rand(2000, generator=_gen(8), dtype=torch.float64)
    states = torch.stack([torch.roll(u, 1) + 10.0, v + 10.0], 1)
    curve = memory_curve(states, u, delays=[1], washout=10)
    np.testing.assert_allclose(curve.r2, [1.0], atol=1e-9)


# --- Brian2 form ------------------------------------------------------------------------


def test_brian2_reservoir_matches_torch_closed_loop():
    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    cfg = ESNConfig(
        n_inputs=3,
        n_units=40,
        n_feedback=2,
        feedback_scaling=0.3,
        leak=0.3,
        bias_scaling=0.2,
        spectral_radius=1.1,
    )
    weights = init_esn_weights(cfg, seed=2)
    g = _gen(0)
    u = torch.randn(120, 3, generator=g, dtype=torch.float64)
    w_out = torch.randn(2, 40, generator=g, dtype=torch.float64) * 0.1
    b_out = torch.randn(2, generator=g, dtype=torch.float64) * 0.1
    states, outputs = run_esn(weights, u, readout=lambda x: x @ w_out.T + b_out)
    b2_states, b2_outputs = simulate_brian2_esn(weights, u.numpy(), readout=(w_out, b_out))
    assert np.abs(states.numpy() - b2_states).max() < 1e-5
    # Brian2's readout at step t reads the state before the step (run_esn's outputs[t - 1])
    previous = torch.cat([torch.zeros(1, 2, dtype=torch.float64) + b_out, outputs[:-1]])
    assert np.abs(previous.numpy() - b2_outputs).max() < 1e-5


def test_brian2_reservoir_matches_torch_teacher_forced_and_linear():
    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    cfg = ESNConfig(
        n_inputs=2, n_units=30, n_feedback=1, activation="identity", spectral_radius=0.8
    )
    weights = init_esn_weights(cfg, seed=4)
    g = _gen(1)
    u = torch.randn(80, 2, generator=g, dtype=torch.float64)
    teacher = torch.randn(80, 1, generator=g, dtype=torch.float64)
    x0 = torch.randn(30, generator=g, dtype=torch.float64)
    states, _ = run_esn(weights, u, initial_state=x0, feedback=teacher)
    b2_states, _ = simulate_brian2_esn(
        weights, u.numpy(), teacher_feedback=teacher.numpy(), initial_state=x0.numpy()
    )
    assert np.abs(states.numpy() - b2_states).max() < 1e-5


def test_brian2_noise_has_the_torch_per_step_variance():
    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    n = 400
    zeros = torch.zeros(n, n, dtype=torch.float64)
    weights = ESNWeights(
        zeros,
        torch.zeros(n, 1, dtype=torch.float64),
        torch.zeros(n, 0, dtype=torch.float64),
        torch.zeros(n, dtype=torch.float64),
        leak=1.0,
        noise=0.05,
        activation="identity",
    )
    states, _ = simulate_brian2_esn(weights, np.zeros((5, 1)))
    # with zero weights and leak 1, every state is one fresh noise draw: std = noise
    assert abs(states.std() - 0.05) < 0.005


def test_brian2_builder_rejects_bad_inputs():
    from brian2 import ms

    from plastix.reservoirs.brian2_esn import build_brian2_esn

    weights = init_esn_weights(ESNConfig(n_inputs=2, n_units=10, n_feedback=1))
    with pytest.raises(ValueError, match="inputs"):
        build_brian2_esn(weights, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="readout"):
        build_brian2_esn(weights, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="dt"):
        build_brian2_esn(weights, np.zeros((5, 2)), dt=-1 * ms, teacher_feedback=np.zeros((5, 1)))


@pytest.mark.parametrize("dt_ms", [0.25, 2.0])
def test_brian2_reservoir_is_the_same_leaky_esn_step_at_any_clock_dt(dt_ms):
    """``tau = dt / leak`` follows the clock: one forward-Euler step of any ``dt`` is one
    ``run_esn`` step (float64 throughout, so the two agree to rounding)."""
    from brian2 import ms

    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    cfg = ESNConfig(n_inputs=2, n_units=20, leak=0.3, bias_scaling=0.2, connectivity=0.5)
    weights = init_esn_weights(cfg, seed=5)
    g = _gen(6)
    u = torch.randn(25, 2, generator=g, dtype=torch.float64)
    x0 = torch.randn(20, generator=g, dtype=torch.float64)
    states, _ = run_esn(weights, u, initial_state=x0)
    b2_states, outputs = simulate_brian2_esn(weights, u, dt=dt_ms * ms, initial_state=x0)
    assert outputs is None
    np.testing.assert_allclose(b2_states, states.numpy(), rtol=0, atol=1e-12)


def test_brian2_reservoir_objects_all_run_on_the_step_dt():
    """Groups and synapses share the clock step ``dt``: synapses left on Brian2's default
    0.1 ms clock would check the 0.25 ms stimulus against a grid it is not aligned with."""
    from brian2 import Network, ms

    from plastix.reservoirs.brian2_esn import build_brian2_esn

    weights = init_esn_weights(ESNConfig(n_inputs=2, n_units=10, n_feedback=1), seed=0)
    readout = (np.ones((1, 10)), np.zeros(1))
    for teacher in (np.zeros((5, 1)), None):
        esn = build_brian2_esn(
            weights, np.zeros((5, 2)), dt=0.25 * ms, readout=readout, teacher_feedback=teacher
        )
        assert len(esn.objects) == (8 if teacher is not None else 7)
        assert all(obj.clock.dt == 0.25 * ms for obj in esn.objects)
        Network(esn.objects).run(5 * 0.25 * ms)


def test_brian2_reservoir_with_single_weight_connections_by_hand():
    """Weight matrices with one non-zero entry each still connect it. Two identity units,
    leak 1: ``x1_t = u_t``, ``x2_t = 0.5 x1_{t-1}``; the readout ``y = 2 x2 + 0.1`` reads the
    state before the step, so ``y_t = u_{t-2} + 0.1`` (0.1 for t < 2)."""
    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    weights = ESNWeights(
        torch.tensor([[0.0, 0.0], [0.5, 0.0]], dtype=torch.float64),
        torch.tensor([[1.0], [0.0]], dtype=torch.float64),
        torch.zeros(2, 0, dtype=torch.float64),
        torch.zeros(2, dtype=torch.float64),
        leak=1.0,
        activation="identity",
    )
    u = np.array([[1.0], [2.0], [-3.0], [4.0], [0.5]])
    readout = (np.array([[0.0, 2.0]]), np.array([0.1]))
    states, outputs = simulate_brian2_esn(weights, u, readout=readout)
    expected_x2 = np.concatenate([[0.0], 0.5 * u[:-1, 0]])
    np.testing.assert_allclose(states, np.stack([u[:, 0], expected_x2], 1), atol=1e-14)
    expected_y = np.concatenate([[0.0, 0.0], u[:-2, 0]]) + 0.1
    np.testing.assert_allclose(outputs[:, 0], expected_y, atol=1e-14)


def test_brian2_noise_standard_deviation_does_not_depend_on_the_clock_dt():
    """``noise_sd = noise / sqrt(dt)`` makes the per-step noise ``noise`` at any ``dt``."""
    from brian2 import ms

    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    n = 400
    weights = _noise_only_weights(n, 0.05)
    states, _ = simulate_brian2_esn(weights, np.zeros((5, 1)), dt=0.1 * ms)
    # zero weights and leak 1: every state is one fresh draw; 2000 draws, std within 10 %
    assert abs(states.std() - 0.05) < 0.005


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inputs": np.zeros((5, 2, 1))}, "inputs: expected a 2-D array"),
        ({"inputs": np.full((5, 2), np.nan)}, "inputs: contains NaN"),
        ({"inputs": np.zeros((0, 2)), "teacher_feedback": np.zeros((0, 1))}, "inputs: shape"),
        ({"teacher_feedback": np.zeros((4, 1))}, r"teacher_feedback: shape \(4, 1\)"),
        ({"initial_state": np.zeros(9)}, r"initial_state: shape \(9,\)"),
        ({"teacher_feedback": None, "readout": (np.ones((1, 10)),)}, "readout: expected a pair"),
        (
            {"teacher_feedback": None, "readout": (np.ones((1, 9)), np.zeros(1))},
            r"readout: W_out \(1, 9\)",
        ),
        ({"teacher_feedback": None, "readout": (np.ones((1, 10)), np.zeros(2))}, r"b_out \(2,\)"),
        ({"teacher_feedback": None, "readout": (np.ones((2, 10)), np.zeros(2))}, "1 feedback"),
    ],
)
def test_brian2_builder_names_the_malformed_argument(changes, message):
    """Each malformed argument of a 10-unit, 2-input, 1-feedback reservoir is refused with a
    message naming it (T = 5 steps, teacher-forced unless a readout closes the loop)."""
    from plastix.reservoirs.brian2_esn import build_brian2_esn

    weights = init_esn_weights(ESNConfig(n_inputs=2, n_units=10, n_feedback=1), seed=0)
    args = {"inputs": np.zeros((5, 2)), "teacher_feedback": np.zeros((5, 1)), **changes}
    with pytest.raises(ValueError, match=message):
        build_brian2_esn(weights, **args)


def test_brian2_builder_refuses_a_zero_or_non_time_dt():
    from brian2 import ms, volt

    from plastix.reservoirs.brian2_esn import build_brian2_esn

    weights = init_esn_weights(ESNConfig(n_inputs=1, n_units=10), seed=0)
    for dt in (0 * ms, 1 * volt):
        with pytest.raises(ValueError, match="dt: expected a positive time"):
            build_brian2_esn(weights, np.zeros((5, 1)), dt=dt)


def test_brian2_builder_refuses_teacher_feedback_without_feedback_weights():
    from plastix.reservoirs.brian2_esn import build_brian2_esn

    weights = init_esn_weights(ESNConfig(n_inputs=2, n_units=10), seed=0)
    with pytest.raises(ValueError, match="teacher_feedback: the reservoir has no feedback"):
        build_brian2_esn(weights, np.zeros((5, 2)), teacher_feedback=np.zeros((5, 1)))


# --- xi-modulator -----------------------------------------------------------------------


def _small_modulator_config(**changes):
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    base = dict(
        n_neurons=12,
        n_classes=4,
        window=4,
        n_units=60,
        n_streams=4,
        stream_length=160,
        n_chunks=2,
        train_neurons=8,
        seed=3,
    )
    base.update(changes)
    return XiModulatorConfig(**base)


def _held_out_streams(cfg, seed=123):
    from plastix.reservoirs.xi_modulator import synthetic_streams

    gen = _gen(seed)
    return synthetic_streams(
        2, 200, cfg.n_classes, cfg.n_neurons, cfg.x_projection, cfg.sigmas[0], gen
    )


@pytest.mark.parametrize("architecture", ["factorised", "global"])
def test_xi_modulator_beats_memoryless_and_zero_predictors(architecture):
    from plastix.reservoirs.xi_modulator import fit_xi_modulator, xi_agreement, xi_targets

    if architecture == "factorised":
        cfg = _small_modulator_config()
    else:  # one reservoir for all neurons: more units and data, stronger ridge
        cfg = _small_modulator_config(
            architecture="global",
            window_products=False,
            activation="tanh",
            input_scaling=0.3,
            n_units=150,
            ridge=1.0,
            n_chunks=4,
            n_streams=8,
        )
    x, y, z = _held_out_streams(cfg)
    exact = xi_targets(x, y, z, cfg)
    b = cfg.window
    zc = z[:, b - 1 :]
    full = fit_xi_modulator(cfg)
    agree = xi_agreement(full.predict(x, y, z)[:, b - 1 :], exact, zc)
    memoryless = fit_xi_modulator(
        _small_modulator_config(**{**cfg.__dict__, "spectral_radius": 0.0})
    )
    base = xi_agreement(memoryless.predict(x, y, z)[:, b - 1 :], exact, zc)
    # predicting zero has NRMSE >= 1 (||exact|| / ||exact - mean||)
    assert agree.nrmse < 0.95
    assert agree.nrmse < base.nrmse - 0.02
    assert agree.effective_cosine > base.effective_cosine + 0.05
    if architecture == "factorised":
        assert agree.effective_cosine > 0.6


def test_window_statistics_are_the_exact_window_sums():
    from plastix.reservoirs.xi_modulator import _window_statistics

    g = _gen(8)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 12), generator=g), 3).double()
    z = torch.randn(2, 12, 4, generator=g, dtype=torch.float64)
    stats = _window_statistics(y, z, 5)  # (2, 8, 4, 7)
    s, t, i = 1, 6, 2  # the window ending at sample t + 4
    yw, zw = y[s, t : t + 5], z[s, t : t + 5, i]
    torch.testing.assert_close(stats[s, t, i, :3], yw.sum(0))
    torch.testing.assert_close(stats[s, t, i, 3], zw.sum())
    torch.testing.assert_close(stats[s, t, i, 4:], yw.T @ zw)


def test_xi_modulator_online_steps_equal_offline_prediction():
    from plastix.reservoirs.xi_modulator import fit_xi_modulator

    cfg = _small_modulator_config(n_chunks=1)
    modulator = fit_xi_modulator(cfg)
    x, y, z = _held_out_streams(cfg)
    offline = modulator.predict(x[:, :30], y[:, :30], z[:, :30])
    modulator.reset(2)
    online = torch.stack([modulator.step(x[:, t], y[:, t], z[:, t]) for t in range(30)], 1)
    torch.testing.assert_close(online, offline)


def test_xi_agreement_and_layer_norm_projection():
    from plastix.bridges.rate_networks import layer_norm_vjp
    from plastix.reservoirs.xi_modulator import layer_norm_projection, xi_agreement

    g = _gen(9)
    h = torch.relu(torch.randn(50, 16, generator=g, dtype=torch.float64))
    n = (h - h.mean(-1, keepdim=True)) / h.std(-1, unbiased=False, keepdim=True)
    xi = torch.randn(50, 16, generator=g, dtype=torch.float64)
    same = xi_agreement(xi, xi, n)
    assert same.cosine == pytest.approx(1.0) and same.nrmse == pytest.approx(0.0)
    # adding components the LayerNorm VJP removes (constant, along n) leaves the effective
    # cosine at 1 but lowers the plain cosine
    shifted = xi + 3.0 + 2.0 * n
    moved = xi_agreement(shifted, xi, n)
    assert moved.effective_cosine == pytest.approx(1.0)
    assert moved.cosine < 0.9
    vjp = layer_norm_vjp(n, torch.ones(50, 1, dtype=torch.float64), xi)
    torch.testing.assert_close(layer_norm_projection(xi, n), vjp)


def test_xi_modulator_rejects_bad_configs_and_inputs():
    from plastix.reservoirs.xi_modulator import XiModulatorConfig, fit_xi_modulator

    with pytest.raises(ValueError, match="architecture"):
        XiModulatorConfig(architecture="ring")
    with pytest.raises(ValueError, match="stream_length"):
        XiModulatorConfig(window=16, stream_length=10)
    with pytest.raises(ValueError, match="leak"):
        XiModulatorConfig(leak=0.0)
    for bad in (float("nan"), float("inf"), True, 0.0):  # whatever the architecture
        with pytest.raises(ValueError, match="memory_ratio"):
            XiModulatorConfig(memory_ratio=bad)
    for bad in (float("nan"), float("inf"), True, -1.0):
        with pytest.raises(ValueError, match="memory_ridge"):
            XiModulatorConfig(memory_ridge=bad)
    modulator = fit_xi_modulator(_small_modulator_config(n_chunks=1))
    x, y, z = _held_out_streams(modulator.config)
    with pytest.raises(ValueError, match="n_neurons"):
        modulator.predict(x, y, z[..., :5])
    with pytest.raises(RuntimeError, match="reset"):
        modulator.step(x[:, 0], y[:, 0], z[:, 0])


def test_xi_scale_is_two_over_window_minus_one_squared_times_s_z_squared():
    """``xi_scale = 2 / ((B - 1)^2 s_z^2)`` with ``s_z^2 = sigma_z^2 dz``."""
    cfg = _small_modulator_config(window=4, sigmas=(0.5, 0.1, 2.0))  # dz = 12
    assert cfg.xi_scale == pytest.approx(2.0 / (3**2 * 2.0**2 * 12))


def test_xi_agreement_nrmse_is_relative_to_the_spread_of_the_exact_xi():
    """Worked example: exact rows (1, 0), (3, 0) have mean (2, 0), spread sqrt(2); the
    prediction (2, 0), (3, 1) is off by sqrt(2): NRMSE 1; cosines 1 and 3 / sqrt(10)."""
    from plastix.reservoirs.xi_modulator import xi_agreement

    exact = torch.tensor([[1.0, 0.0], [3.0, 0.0]], dtype=torch.float64)
    pred = torch.tensor([[2.0, 0.0], [3.0, 1.0]], dtype=torch.float64)
    agree = xi_agreement(pred, exact)
    assert agree.nrmse == pytest.approx(1.0)
    assert agree.cosine == pytest.approx((1.0 + 3.0 / 10**0.5) / 2)
    assert agree.n_samples == 2 and np.isnan(agree.effective_cosine)
    # predicting zero: ||exact|| / ||exact - mean|| = sqrt(10) / sqrt(2)
    assert xi_agreement(torch.zeros_like(exact), exact).nrmse == pytest.approx(5**0.5)
    with pytest.raises(ValueError, match="z_current"):
        xi_agreement(pred, exact, torch.zeros(2, 3, dtype=torch.float64))


def test_window_products_are_the_counts_times_the_decoded_sums():
    """With a statistics readout that decodes ``[n_1, n_2, S, M_1, M_2]`` as the features
    themselves, :meth:`XiModulator.expand` appends ``n_k S``, ``n_k M_k`` and ``||n||^2 S``."""
    from plastix.reservoirs.xi_modulator import XiModulator

    cfg = _small_modulator_config(n_classes=2)
    statistics = RidgeReadout(5, 5)
    statistics.weight = torch.eye(5, dtype=torch.float64)
    modulator = XiModulator(cfg, None, [], statistics)
    feats = torch.tensor([[1.0, 3.0, 2.0, 5.0, 7.0]], dtype=torch.float64)
    expected = torch.tensor(
        [[1.0, 3.0, 2.0, 5.0, 7.0, 2.0, 6.0, 5.0, 21.0, 20.0]], dtype=torch.float64
    )
    torch.testing.assert_close(modulator.expand(feats), expected)


def test_xi_modulator_refuses_streams_of_another_label_count_or_length():
    """``predict`` checks the label count and that x, y and z cover the same samples."""
    from plastix.reservoirs.xi_modulator import XiModulator

    cfg = _small_modulator_config(n_chunks=1)
    modulator = XiModulator(cfg, init_esn_weights(cfg.esn_config(), seed=0), [])
    x, y, z = _held_out_streams(cfg)
    with pytest.raises(ValueError, match="n_classes=4"):
        modulator.predict(x, y[..., :3], z)
    with pytest.raises(ValueError, match="leading shapes"):
        modulator.predict(x[:, :-1], y, z)
    with pytest.raises(ValueError, match="leading shapes"):
        modulator.predict(x, y[:, :-1], z)


def test_xi_modulator_config_bounds_on_window_stream_length_and_products():
    """The window holds at least 2 samples, a stream at least one full window plus one
    sample, and ``window_products`` exists for the factorised architecture only."""
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    assert XiModulatorConfig(window=4, stream_length=5).stream_length == 5
    with pytest.raises(ValueError, match="stream_length"):
        XiModulatorConfig(window=4, stream_length=4)
    with pytest.raises(ValueError, match="window"):
        XiModulatorConfig(window=1, stream_length=8)
    with pytest.raises(ValueError, match="window_products"):
        XiModulatorConfig(architecture="global", window_products=True)


def test_gated_global_readouts_are_fitted_on_the_samples_of_their_current_label():
    """Readout ``c`` of a gated global modulator sees exactly the full-window training
    samples whose *current* (last) label is ``c``, on the documented synthetic streams
    (``n_chunks`` draws of :func:`training_streams` from seed ``seed + 1``)."""
    from plastix.reservoirs.xi_modulator import fit_xi_modulator, training_streams

    cfg = _small_modulator_config(
        architecture="global", window_products=False, n_units=20, n_chunks=2
    )
    modulator = fit_xi_modulator(cfg)
    gen = _gen(cfg.seed + 1)
    counts = torch.zeros(cfg.n_classes, dtype=torch.int64)
    for _ in range(cfg.n_chunks):
        _, y, _ = training_streams(cfg, gen)
        labels = y[:, cfg.window - 1 :].argmax(-1)
        counts += torch.bincount(labels.flatten(), minlength=cfg.n_classes)
    assert [r.count for r in modulator.readouts] == counts.tolist()


def test_xi_modulator_fit_draws_streams_with_the_configured_class_strength():
    """``class_strength`` reaches the synthetic streams: readouts fitted on class-free
    activity (0) differ from those fitted with the default (1.5)."""
    from plastix.reservoirs.xi_modulator import fit_xi_modulator

    common = dict(architecture="global", window_products=False, n_units=20, n_chunks=1)
    default = fit_xi_modulator(_small_modulator_config(**common))
    flat = fit_xi_modulator(_small_modulator_config(**common, class_strength=0.0))
    gap = (default.readouts[0].weight - flat.readouts[0].weight).abs().max()
    assert float(gap) > 1e-3


# --- reservoir in the loop ----------------------------------------------------------------


def _tiny_task():
    g = _gen(11)
    x = torch.rand(60, 6, generator=g)
    y = torch.randint(0, 3, (60,), generator=g)
    return x, y


def test_reservoir_in_the_loop_updates_hidden_layers_and_zero_control_does_not():
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer, fit_layer_modulators
    from plastix.bridges.ib_training import AdamWSettings, IBRule
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    x, y = _tiny_task()
    rule = IBRule(window=4)
    torch.manual_seed(0)
    net = RateMLP(6, (8,), 3)
    start = net.blocks[0].linear.weight.detach().clone()
    base = XiModulatorConfig(n_units=30, n_streams=2, stream_length=80, n_chunks=1)
    modulators = fit_layer_modulators(net, rule, base)
    assert [m.config.n_neurons for m in modulators] == [8]
    trainer = ReservoirIBTrainer(net, modulators, rule, AdamWSettings(lr=1e-2))
    trainer.track_agreement = True
    trainer.train_epoch(x, y, _gen(1))
    assert (net.blocks[0].linear.weight - start).abs().max() > 1e-3
    (layer,) = trainer.agreement()
    assert -1.0 <= layer["effective_cosine"] <= 1.0

    torch.manual_seed(0)
    frozen = RateMLP(6, (8,), 3)
    readout_start = frozen.readout.weight.detach().clone()
    control = ReservoirIBTrainer(frozen, None, rule, AdamWSettings(lr=1e-2), xi_source="zero")
    control.train_epoch(x, y, _gen(1))
    assert torch.equal(frozen.blocks[0].linear.weight, start)
    assert (frozen.readout.weight - readout_start).abs().max() > 1e-3


def test_label_only_xi_is_the_count_formula_of_the_modulator_doc():
    from plastix.bridges.ib_reservoir import label_only_xi

    g = _gen(12)
    b, c, gamma = 8, 5, 2.0
    y = torch.nn.functional.one_hot(torch.randint(0, c, (b,), generator=g), c).double()
    z = torch.randn(b, 6, generator=g, dtype=torch.float64)
    xi = label_only_xi(y, z, gamma, (0.5, 0.1, 1.0))
    n, total, per_class, cur = y.sum(0), z.sum(0), y.T @ z, int(y[-1].argmax())
    label_part = -gamma * (
        per_class[cur]
        - n[cur] / b * total
        - (n[:, None] * per_class).sum(0) / b
        + (n @ n) / b**2 * total
    )
    scale = 2.0 / ((b - 1) ** 2 * 1.0 * 6)  # 2 / ((B - 1)^2 s_z^2), s_z^2 = sigma_z^2 dz
    torch.testing.assert_close(xi, scale * label_part)


def test_label_only_xi_with_inputs_is_the_wide_sigma_z_limit_of_the_exact_xi():
    from plastix.bridges.ib_reservoir import label_only_xi
    from plastix.plasticity.hsic import modulatory_signal

    g = _gen(13)
    y = torch.nn.functional.one_hot(torch.randint(0, 4, (6,), generator=g), 4).double()
    x = torch.rand(6, 10, generator=g, dtype=torch.float64)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    sigmas = (0.5, 0.1, 1e4)  # K_Z -> 1
    exact = modulatory_signal(x, y, z, 2.0, sigmas)
    torch.testing.assert_close(label_only_xi(y, z, 2.0, sigmas, x), exact, rtol=1e-6, atol=0)
    assert not torch.allclose(label_only_xi(y, z, 2.0, sigmas), exact, rtol=1e-3, atol=0)


def test_reservoir_trainer_rejects_mismatched_modulators():
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer, fit_layer_modulators
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    base = XiModulatorConfig(n_units=20, n_streams=2, stream_length=40, n_chunks=1)
    net = RateMLP(6, (8,), 3)
    modulators = fit_layer_modulators(net, IBRule(window=4), base)
    with pytest.raises(ValueError, match="window"):
        ReservoirIBTrainer(net, modulators, IBRule(window=6))
    with pytest.raises(ValueError, match="modulators"):
        ReservoirIBTrainer(RateMLP(6, (8, 5), 3), modulators, IBRule(window=4))
    with pytest.raises(ValueError, match="xi_source"):
        ReservoirIBTrainer(net, modulators, IBRule(window=4), xi_source="oracle")
    with pytest.raises(ValueError, match="modulators"):
        ReservoirIBTrainer(net, modulators, IBRule(window=4), xi_source="zero")


class _RecordingModulator:
    """Stands in for a fitted xi-modulator: records what the trainer feeds it and returns a
    different, known xi at every step."""

    def __init__(self, config, seed):
        self.config = config
        self.generator = _gen(seed)
        self.resets, self.inputs, self.outputs = [], [], []

    def reset(self, n_streams=1):
        self.resets.append(n_streams)

    def step(self, x, y_onehot, z):
        self.inputs.append((x.clone(), y_onehot.clone(), z.clone()))
        xi = torch.randn(z.shape, generator=self.generator, dtype=torch.float64)
        self.outputs.append(xi[0])
        return xi


def _captured_grads(trainer):
    """Replace the optimiser step by a recorder: the weights stay as they are."""
    captured = []
    trainer._apply = lambda grads: captured.append(list(grads))
    return captured


def _expected_step_grads(net, x_window, y_window, xis):
    """Per step: ``dW = (xi * f'(a_B)) outer p_B`` of every hidden block at the LayerNorm
    site, then the readout's cross-entropy gradient over the window (by autograd)."""
    from plastix.bridges.rate_networks import layer_norm_vjp

    with torch.no_grad():
        traces, _ = net.trace(x_window)
    grads = []
    for trace, xi in zip(traces, xis, strict=True):
        g = layer_norm_vjp(trace.n[-1], trace.std[-1], xi) * (trace.a[-1] > 0)
        grads += [torch.outer(g, trace.p[-1]), g]
    features = traces[-1].n
    readout = net.readout
    readout.zero_grad()
    torch.nn.functional.cross_entropy(readout(features), y_window).backward()
    grads += [readout.weight.grad.clone(), readout.bias.grad.clone()]
    readout.zero_grad()
    return grads


@pytest.mark.usefixtures("one_torch_thread")
def test_reservoir_loop_feeds_every_stream_sample_once_in_order_and_applies_its_xi():
    """The modulators are reset once, then see the stream ``order`` (``stream_order`` of the
    same generator) one sample at a time: the ``B - 1`` warm-up samples, then the current (last)
    sample of each window, as flat float64 inputs, one-hot labels and the layer's LayerNorm
    output. Step ``t`` updates each hidden layer with the xi its modulator returned for the
    current sample, the readout by cross-entropy; the epoch loss is the window mean of the
    cross-entropy, which with fixed weights is the mean over the samples."""
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer
    from plastix.bridges.ib_training import IBRule, stream_order
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    x, y = _tiny_task()
    x = x.double()
    rule = IBRule(window=4)
    torch.manual_seed(0)
    net = RateMLP(6, (8, 5), 3).double()
    modulators = [
        _RecordingModulator(XiModulatorConfig(n_neurons=width, n_classes=3, window=4), seed)
        for seed, width in enumerate((8, 5))
    ]
    trainer = ReservoirIBTrainer(net, modulators, rule)
    captured = _captured_grads(trainer)
    stats = trainer.train_epoch(x, y, _gen(1))
    order = stream_order(60, 4, _gen(1))
    assert len(order) == 63 and len(captured) == 60
    onehot = torch.nn.functional.one_hot(y, 3).double()
    with torch.no_grad():
        single, _ = net.trace(x[order])  # LayerNorm is per sample: same z as in any window
    for layer, mod in enumerate(modulators):
        assert mod.resets == [1]
        assert len(mod.inputs) == 63
        for k, (xk, yk, zk) in enumerate(mod.inputs):
            torch.testing.assert_close(xk, x[order[k : k + 1]], rtol=0, atol=0)
            torch.testing.assert_close(yk, onehot[order[k : k + 1]], rtol=0, atol=0)
            torch.testing.assert_close(zk, single[layer].n[k : k + 1])
    for t in (0, 1, 30, 59):
        idx = order[t : t + 4]
        xis = [mod.outputs[t + 3] for mod in modulators]
        expected = _expected_step_grads(net, x[idx], y[idx], xis)
        for got, want in zip(captured[t], expected, strict=True):
            torch.testing.assert_close(got, want)
    with torch.no_grad():
        mean_loss = float(torch.nn.functional.cross_entropy(net(x), y))
    assert stats.steps == 60
    assert stats.loss == pytest.approx(mean_loss, rel=1e-12)


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("source", ["labels", "no-kz"])
def test_label_controls_update_hidden_layers_with_the_label_only_xi(source):
    """``labels``: xi of :func:`label_only_xi` from the window's labels and the layer's
    LayerNorm output; ``no-kz`` also keeps the input kernel of the window's inputs."""
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer, label_only_xi
    from plastix.bridges.ib_training import IBRule, stream_order
    from plastix.bridges.rate_networks import RateMLP

    x, y = _tiny_task()
    x = x.double()
    rule = IBRule(window=5, gamma=1.5, sigmas=(0.7, 0.3, 2.0))
    torch.manual_seed(1)
    net = RateMLP(6, (7, 4), 3).double()
    trainer = ReservoirIBTrainer(net, None, rule, xi_source=source)
    captured = _captured_grads(trainer)
    trainer.train_epoch(x, y, _gen(2))
    order = stream_order(60, 5, _gen(2))
    onehot = torch.nn.functional.one_hot(y, 3).double()
    for t in (0, 17, 59):
        idx = order[t : t + 5]
        with torch.no_grad():
            traces, _ = net.trace(x[idx])
        inputs = x[idx] if source == "no-kz" else None
        xis = [label_only_xi(onehot[idx], tr.n, 1.5, (0.7, 0.3, 2.0), inputs) for tr in traces]
        expected = _expected_step_grads(net, x[idx], y[idx], xis)
        for got, want in zip(captured[t], expected, strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.usefixtures("one_torch_thread")
def test_each_epoch_resets_the_modulators_and_restarts_the_agreement_record():
    """A second epoch starts the reservoirs from rest again and ``agreement()`` covers only
    its own steps (one row per step of the last epoch)."""
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    x, y = _tiny_task()
    config = XiModulatorConfig(n_neurons=8, n_classes=3, window=4)
    modulator = _RecordingModulator(config, 0)
    trainer = ReservoirIBTrainer(RateMLP(6, (8,), 3), [modulator], IBRule(window=4))
    trainer.track_agreement = True
    trainer.train_epoch(x[:10], y[:10], _gen(1))
    trainer.train_epoch(x[10:22], y[10:22], _gen(2))
    assert modulator.resets == [1, 1]
    assert len(modulator.inputs) == (10 + 3) + (12 + 3)
    assert [len(rows) for rows in trainer._agreement] == [12]


def test_fit_layer_modulators_configures_each_layer_from_net_and_rule(monkeypatch):
    """Layer ``l``'s modulator config is ``base`` with the layer's width, the readout's class
    count, the rule's window, gamma and sigmas, and seed ``base.seed + l``."""
    from dataclasses import replace

    import plastix.bridges.ib_reservoir as ib_reservoir
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    monkeypatch.setattr(ib_reservoir, "fit_xi_modulator", lambda cfg: cfg)
    rule = IBRule(window=5, gamma=1.5, sigmas=(0.4, 0.2, 2.0))
    base = XiModulatorConfig(n_units=30, seed=7)
    configs = ib_reservoir.fit_layer_modulators(RateMLP(6, (8, 5), 3), rule, base)
    common = dict(n_classes=3, window=5, gamma=1.5, sigmas=(0.4, 0.2, 2.0))
    assert configs == [
        replace(base, n_neurons=8, seed=7, **common),
        replace(base, n_neurons=5, seed=8, **common),
    ]


def test_fit_layer_modulators_refuses_other_rules_networks_and_configs():
    from plastix.bridges.ib_reservoir import fit_layer_modulators
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import RateCNN, RateMLP

    net = RateMLP(6, (8,), 3)
    with pytest.raises(ValueError, match="xi_method"):
        fit_layer_modulators(net, IBRule(window=4, xi_method="row-centred"))
    with pytest.raises(TypeError, match="base: expected XiModulatorConfig"):
        fit_layer_modulators(net, IBRule(window=4), {"n_units": 20})
    with pytest.raises(TypeError, match="not a dense block"):
        fit_layer_modulators(RateCNN((1, 4, 4), (2,), 3), IBRule(window=4))


def test_reservoir_trainer_refuses_leaky_nets_unknown_sources_and_other_kernels():
    """A modulator fitted for another gamma or other sigmas is refused like one for another
    window; LeakyRateMLP networks and unknown xi sources are refused even without modulators."""
    from dataclasses import replace
    from types import SimpleNamespace

    from plastix.bridges.ib_reservoir import ReservoirIBTrainer
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import LeakyRateMLP, RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    net = RateMLP(6, (8,), 3)
    rule = IBRule(window=4)
    fitted = XiModulatorConfig(n_neurons=8, n_classes=3, window=4)
    ReservoirIBTrainer(net, [SimpleNamespace(config=fitted)], rule)  # matches: accepted
    for changes in ({"gamma": 1.0}, {"sigmas": (0.5, 0.2, 1.0)}):
        other = SimpleNamespace(config=replace(fitted, **changes))
        with pytest.raises(ValueError, match=r"modulators\[0\]"):
            ReservoirIBTrainer(net, [other], rule)
    with pytest.raises(TypeError, match="LeakyRateMLP"):
        ReservoirIBTrainer(LeakyRateMLP(6, (8,), 3), None, rule, xi_source="zero")
    with pytest.raises(ValueError, match="xi_source"):
        ReservoirIBTrainer(net, None, rule, xi_source="oracle")


def test_agreement_is_the_nan_skipping_mean_of_each_layers_steps():
    """Per layer, the mean over the recorded steps of (cosine, effective cosine, update
    cosine); steps whose update cosine is undefined (a zero update) are left out of it."""
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer
    from plastix.bridges.ib_training import IBRule
    from plastix.bridges.rate_networks import RateMLP

    trainer = ReservoirIBTrainer(RateMLP(6, (8,), 3), None, IBRule(window=4), xi_source="zero")
    nan = float("nan")
    trainer._agreement = [[(0.1, 0.2, 0.3), (0.3, 0.6, nan)], [(-0.5, 0.25, 1.0)]]
    assert trainer.agreement() == [
        {
            "cosine": pytest.approx(0.2),
            "effective_cosine": pytest.approx(0.4),
            "update_cosine": pytest.approx(0.3),
        },
        {"cosine": -0.5, "effective_cosine": 0.25, "update_cosine": 1.0},
    ]


# --- experiment --------------------------------------------------------------------------


def test_reservoir_wm_experiment_writes_every_part(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    out = run_experiment(
        "reservoir-wm",
        overrides={
            "capacity_units": (10,),
            "capacity_steps": 600,
            "xi_windows": (4,),
            "xi_units": (20, 40),
            "xi_neurons": 8,
            "xi_samples": 60,
            "modulator_chunks": 1,
            "dataset": "digits",
            "hidden": (8,),
            "window": 4,
            "n_units": 20,
            "epochs": 1,
            "n_train": 40,
            "n_test": 20,
            "lr": 1e-3,
        },
        out=tmp_path / "r.h5",
        seed=0,
    )
    res = read_result(out)
    assert res.status == "complete"
    assert res.arrays["xi_effective_cosine"].shape == (1, 2)
    assert np.isfinite(res.arrays["xi_memoryless_nrmse"]).all()
    assert 0 < res.summary["memory_capacity_linear_n10"] <= 10
    for source in ("exact", "reservoir", "zero"):
        assert np.isfinite(res.metrics[f"test_accuracy_{source}"]).any()
    assert "accuracy_gap_points" in res.summary
    assert np.isfinite(res.metrics["xi_effective_cosine_layer0"]).any()

    from plastix.sims.plots_reservoir import reservoir_wm_figures

    names = [name for name, _ in reservoir_wm_figures(res)]
    assert {"memory_function", "xi_effective_cosine_by_window_and_size", "loop_accuracy"} <= set(
        names
    )


_STANDALONE_SCRIPT = """
import sys
import numpy as np
import torch
from brian2 import Network, StateMonitor, ms, set_device
from plastix.reservoirs.brian2_esn import build_brian2_esn
from plastix.reservoirs.esn import ESNConfig, init_esn_weights, run_esn

set_device("cpp_standalone", directory=sys.argv[1], build_on_run=True)
cfg = ESNConfig(n_inputs=2, n_units=30, n_feedback=1, leak=0.5, bias_scaling=0.1)
weights = init_esn_weights(cfg, seed=1)
u = torch.randn(60, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
w_out = torch.full((1, 30), 0.05, dtype=torch.float64)
b_out = torch.zeros(1, dtype=torch.float64)
states, _ = run_esn(weights, u, readout=lambda x: x @ w_out.T + b_out)
esn = build_brian2_esn(weights, u.numpy(), readout=(w_out, b_out))
mon = StateMonitor(esn.reservoir, "x", record=True, when="end")
Network(*esn.objects, mon).run(60 * ms)
print(float(np.abs(np.asarray(mon.x).T - states.numpy()).max()))
"""


@pytest.mark.slow
def test_brian2_reservoir_builds_in_cpp_standalone_and_matches_torch(tmp_path):
    import shutil
    import subprocess
    import sys

    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler for cpp_standalone")
    done = subprocess.run(
        [sys.executable, "-c", _STANDALONE_SCRIPT, str(tmp_path / "build")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5


# --- kernel-memory modulator ----------------------------------------------------------------


def _kernel_memory_config(**changes):
    kernel_memory = dict(
        architecture="kernel-memory", gated=False, window_products=False, x_projection=8
    )
    return _small_modulator_config(**{**kernel_memory, **changes})


def _raw_stream(seed=5, length=40, x_dim=6, n_classes=4, n_neurons=12):
    g = _gen(seed)
    x = torch.rand(1, length, x_dim, generator=g, dtype=torch.float64)
    labels = torch.randint(0, n_classes, (1, length), generator=g)
    y = torch.nn.functional.one_hot(labels, n_classes).double()
    z = torch.randn(1, length, n_neurons, generator=g, dtype=torch.float64)
    return x, y, z


def _hsic_xi(x, y, z, cfg):
    from plastix.plasticity.hsic import modulatory_signal, sliding_windows

    b = cfg.window
    windows = [sliding_windows(a[0], b) for a in (x, y, z)]
    return modulatory_signal(*windows, cfg.gamma, cfg.sigmas, cfg.xi_method)


@pytest.mark.parametrize("method", ["row-centred", "exact", "diagonal"])
def test_kernel_memory_with_a_delay_line_computes_the_hsic_xi(method):
    from plastix.reservoirs.xi_modulator import KernelMemoryModulator, fit_xi_modulator

    cfg = _kernel_memory_config(xi_method=method, n_chunks=1)
    modulator = fit_xi_modulator(cfg)
    assert isinstance(modulator, KernelMemoryModulator)
    assert modulator.weights.n_units == (cfg.window - 1) * (8 + 4 + 12)
    x, y, z = _raw_stream()  # dim x = 6 <= k = 8: P is an isometry, so K_X is exact
    b = cfg.window
    pred = modulator.predict(x, y, z)[0, b - 1 :]
    exact = _hsic_xi(x, y, z, cfg)
    torch.testing.assert_close(pred, exact, rtol=1e-5, atol=1e-7 * exact.abs().max())
    modulator.reset(1)
    online = torch.stack([modulator.step(x[:, t], y[:, t], z[:, t])[0] for t in range(40)])
    torch.testing.assert_close(online[b - 1 :], pred)


def test_kernel_memory_orthogonal_reservoir_approaches_the_delay_line_with_size():
    from plastix.reservoirs.xi_modulator import fit_xi_modulator, xi_agreement

    x, y, z = _raw_stream(length=120)
    cosines = []
    for ratio in (0.5, 3.0):
        cfg = _kernel_memory_config(
            memory_topology="orthogonal",
            memory_ratio=ratio,
            spectral_radius=0.5,
            memory_ridge=1e-6,
            xi_method="row-centred",
            n_chunks=1,
        )
        pred = fit_xi_modulator(cfg).predict(x, y, z)[0, cfg.window - 1 :]
        cosines.append(xi_agreement(pred, _hsic_xi(x, y, z, cfg)).cosine)
    assert cosines[0] < 0.95  # half the units it needs: the memory cannot hold B - 1 codes
    assert cosines[1] > 0.99
    assert cosines[1] > cosines[0] + 0.05


def test_distance_preserving_projection_is_an_isometry_or_keeps_mean_distances():
    from plastix.reservoirs.xi_modulator import distance_preserving_projection

    v = torch.randn(200, 30, generator=_gen(4), dtype=torch.float64)
    iso = distance_preserving_projection(40, 30, _gen(1))
    torch.testing.assert_close((v @ iso.T).norm(dim=1), v.norm(dim=1))
    jl = distance_preserving_projection(64, 3000, _gen(1))
    w = torch.randn(200, 3000, generator=_gen(5), dtype=torch.float64)
    ratio = (w @ jl.T).norm(dim=1) ** 2 / w.norm(dim=1) ** 2
    assert abs(float(ratio.mean()) - 1.0) < 0.05
    assert 0.1 < float(ratio.std()) < 0.3  # sqrt(2 / k) = 0.18


def test_kernel_memory_step_refuses_a_stream_count_other_than_reset():
    """``step`` after ``reset(2)`` refuses three streams."""
    from plastix.reservoirs.xi_modulator import (
        KernelMemoryModulator,
        delay_line_weights,
    )

    cfg = _kernel_memory_config(n_chunks=1)
    weights = delay_line_weights(cfg.n_inputs, cfg.window - 1)
    memory = RidgeReadout(weights.n_units, weights.n_units)
    modulator = KernelMemoryModulator(cfg, weights, memory)
    modulator.reset(2)
    x, y, z = _raw_stream()
    three = [a[0, :3] for a in (x, y, z)]
    with pytest.raises(ValueError, match="reset"):
        modulator.step(*three)


def test_kernel_memory_label_kernel_uses_the_bandwidth_sigma_y_sqrt_c():
    """With a wide label bandwidth (``K_Y`` between classes ``exp(-1 / (sigma_y^2 C))``, not
    ~0 as at sigma_y = 0.1) the delay-line kernel-memory xi still equals the HSIC xi."""
    from plastix.reservoirs.xi_modulator import fit_xi_modulator

    cfg = _kernel_memory_config(sigmas=(0.5, 0.4, 1.0), xi_method="exact", n_chunks=1)
    x, y, z = _raw_stream()
    pred = fit_xi_modulator(cfg).predict(x, y, z)[0, cfg.window - 1 :]
    exact = _hsic_xi(x, y, z, cfg)
    torch.testing.assert_close(pred, exact, rtol=1e-5, atol=1e-7 * exact.abs().max())


def test_distance_preserving_projection_of_equal_dimensions_is_orthogonal():
    """``k = x_dim`` is the isometry case: ``P^T P = I``."""
    from plastix.reservoirs.xi_modulator import distance_preserving_projection

    p = distance_preserving_projection(6, 6, _gen(2))
    torch.testing.assert_close(p.T @ p, torch.eye(6, dtype=torch.float64))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"gated": True}, "gated"),
        ({"memory_ratio": 2.0}, "memory_ratio"),
        ({"memory_topology": "ring"}, "memory_topology"),
        ({"activation": "tanh"}, "activation"),
        ({"xi_method": "rows"}, "xi_method"),
        ({"architecture": "factorised", "xi_method": "row-centred"}, "xi_method"),
    ],
)
def test_kernel_memory_rejects_bad_configs(changes, named):
    with pytest.raises(ValueError, match=named):
        _kernel_memory_config(**changes)


def test_kernel_memory_in_the_loop_gives_the_exact_xi():
    from plastix.bridges.ib_reservoir import ReservoirIBTrainer, fit_layer_modulators
    from plastix.bridges.ib_training import AdamWSettings, IBRule
    from plastix.bridges.rate_networks import RateMLP
    from plastix.reservoirs.xi_modulator import XiModulatorConfig

    x, y = _tiny_task()
    rule = IBRule(window=4)
    torch.manual_seed(0)
    net = RateMLP(6, (8, 5), 3)
    start = net.blocks[0].linear.weight.detach().clone()
    base = XiModulatorConfig(
        architecture="kernel-memory",
        gated=False,
        window_products=False,
        xi_method="exact",
        n_streams=2,
        stream_length=80,
        n_chunks=1,
    )
    modulators = fit_layer_modulators(net, rule, base)
    # a tiny learning rate: the memory holds each sample's activity from when it was current,
    # the exact rule recomputes it with the current weights; they agree while weights stand
    trainer = ReservoirIBTrainer(net, modulators, rule, AdamWSettings(lr=1e-7))
    trainer.track_agreement = True
    trainer.train_epoch(x, y, _gen(1))
    assert (net.blocks[0].linear.weight - start).abs().max() > 1e-7
    for layer in trainer.agreement():  # dim x = 6 <= k = 16: exact memory, exact kernels
        assert layer["cosine"] > 0.9999
        assert layer["update_cosine"] > 0.9999


def test_reservoir_wm_experiment_with_the_kernel_memory_modulator(tmp_path):
    from plastix.sims.experiments import run_experiment
    from plastix.sims.results import read_result

    overrides = {
        "parts": ("xi", "loop"),
        "architecture": "kernel-memory",
        "gated": False,
        "window_products": False,
        "memory_topology": "orthogonal",
        "spectral_radius": 0.5,
        "xi_windows": (3,),
        "xi_units": (30, 120),
        "xi_neurons": 6,
        "xi_samples": 60,
        "modulator_chunks": 1,
        "x_projection": 4,
        "hidden": (6,),
        "window": 3,
        "memory_ratio": 2.0,
        "sources": ("exact-row-centred", "reservoir"),
        "epochs": 1,
        "n_train": 30,
        "n_test": 20,
    }
    out = run_experiment("reservoir-wm", overrides=overrides, out=tmp_path / "r.h5", seed=0)
    res = read_result(out)
    assert res.status == "complete"
    cos = res.arrays["xi_cosine"]  # memory of 30 vs 120 units, (B - 1) dim(u) = 40
    assert cos.shape == (1, 2) and cos[0, 1] > cos[0, 0]
    assert np.isfinite(res.metrics["test_accuracy_exact-row-centred"]).any()
    assert np.isfinite(res.metrics["xi_cosine_layer0"]).any()
    with pytest.raises(ValueError, match="gated"):
        run_experiment(
            "reservoir-wm", overrides={**overrides, "gated": True}, out=tmp_path / "b.h5", seed=0
        )


def test_reservoir_wm_figures_label_capacities_and_scales_from_the_result():
    """Memory curves are labelled by reservoir (the r2_ prefix dropped) with their capacity,
    the sum of r^2 over the delays that have one; the NRMSE map runs from 0 to 1.5, the
    cosine maps from 0 to 1; learning curves count epochs from 1, in %, leaving out epochs
    with no accuracy."""
    from pathlib import Path

    from plastix.sims.plots import pyplot
    from plastix.sims.plots_reservoir import reservoir_wm_figures
    from plastix.sims.results import Result

    nan = np.nan
    metrics = {
        "delay": np.array([1.0, 2.0, 3.0]),
        "r2_linear": np.array([0.9, 0.5, nan]),
        "epoch": np.array([0.0, 1.0]),
        "test_accuracy_exact": np.array([0.5, 0.6]),
        "test_accuracy_zero": np.array([nan, 0.4]),
    }
    arrays = {
        "xi_windows": np.array([2, 4]),
        "xi_units": np.array([10]),
        "xi_cosine": np.array([[0.5], [0.7]]),
        "xi_nrmse": np.array([[0.3], [1.2]]),
    }
    res = Result(
        Path("/x/r.h5"), {"experiment": "reservoir-wm"}, {}, {}, metrics, {}, arrays, {}, {}
    )
    figures = dict(reservoir_wm_figures(res))
    assert list(figures) == [
        "memory_function",
        "xi_cosine_by_window_and_size",
        "xi_nrmse_by_window_and_size",
        "loop_accuracy",
    ]
    [memory] = figures["memory_function"].axes[0].lines
    assert memory.get_label() == "linear (MC 1.4)"
    assert figures["xi_cosine_by_window_and_size"].axes[0].images[0].get_clim() == (0.0, 1.0)
    assert figures["xi_nrmse_by_window_and_size"].axes[0].images[0].get_clim() == (0.0, 1.5)
    loop = {ln.get_label(): ln for ln in figures["loop_accuracy"].axes[0].lines}
    np.testing.assert_allclose(loop["xi: exact"].get_xdata(), [1.0, 2.0])
    np.testing.assert_allclose(loop["xi: exact"].get_ydata(), [50.0, 60.0])
    np.testing.assert_allclose(loop["xi: zero"].get_xdata(), [2.0])
    np.testing.assert_allclose(loop["xi: zero"].get_ydata(), [40.0])
    for fig in figures.values():
        pyplot().close(fig)
