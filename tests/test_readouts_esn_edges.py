"""Edges of the reservoir readouts, the torch echo-state network and its Brian2 form that a
user relies on: argument checks, dtypes, shapes of returned errors, the unregularised ridge
with a constant feature, and the teacher-forced Brian2 loop with a readout (tiny sizes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from plastix.reservoirs.esn import EchoStateNetwork, ESNConfig, ESNWeights, run_esn
from plastix.reservoirs.readouts import LMSReadout, RidgeReadout, RLSReadout, ridge_regression

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- readouts -------------------------------------------------------------------------------


@pytest.mark.parametrize("readout_class", [RidgeReadout, LMSReadout, RLSReadout])
def test_readouts_refuse_targets_whose_samples_are_laid_out_differently(readout_class):
    """Features ``(2, 5, F)`` and targets ``(5, 2, O)`` hold as many samples but pair them
    differently; flattening both would silently fit the wrong pairs, so they are refused."""
    readout = readout_class(3, 1)
    features = torch.zeros(2, 5, 3, dtype=F64)
    targets = torch.zeros(5, 2, 1, dtype=F64)
    call = readout.accumulate if readout_class is RidgeReadout else readout.step
    with pytest.raises(ValueError, match="leading shapes"):
        call(features, targets)


@pytest.mark.parametrize("readout_class", [RidgeReadout, LMSReadout, RLSReadout])
def test_readouts_refuse_nan_targets_as_well_as_nan_features(readout_class):
    """A NaN target (e.g. from a diverged teacher) would poison every weight; it is refused by
    name like a NaN feature."""
    readout = readout_class(3, 1)
    targets = torch.zeros(4, 1, dtype=F64)
    targets[2, 0] = float("inf")
    call = readout.accumulate if readout_class is RidgeReadout else readout.step
    with pytest.raises(ValueError, match="targets: contain NaN or inf"):
        call(torch.zeros(4, 3, dtype=F64), targets)


def test_readouts_refuse_non_finite_penalties_and_rates_and_zero_sizes():
    """Penalties, step sizes and priors must be finite; sizes at least 1."""
    with pytest.raises(ValueError, match="ridge"):
        RidgeReadout(3, 1, ridge=float("inf"))
    with pytest.raises(ValueError, match="lr"):
        LMSReadout(3, 1, lr=float("nan"))
    with pytest.raises(ValueError, match="alpha"):
        RLSReadout(3, 1, alpha=float("inf"))
    with pytest.raises(ValueError, match="n_features"):
        RidgeReadout(0, 1)
    with pytest.raises(ValueError, match="n_outputs"):
        RLSReadout(3, 0)


@pytest.mark.parametrize("constant", [0.3, 1.0])
def test_unregularised_ridge_gives_a_constant_feature_no_weight_when_a_bias_is_fitted(constant):
    """A constant feature column (a common 'bias unit' appended to reservoir states) is zero
    after centring, so with ``ridge=0`` the Gram matrix is singular; the minimum-norm
    solution puts all of the offset in the bias and none on that column. Centring leaves the
    column at rounding level, where Cholesky can succeed with a tiny pivot and give it a large
    noisy weight instead."""
    g = _gen(4)
    r = torch.randn(1000, 2, generator=g, dtype=F64)
    features = torch.cat([r, torch.full((1000, 1), constant, dtype=F64)], -1)
    targets = r @ torch.tensor([[2.0], [-1.0]], dtype=F64) + 0.7
    readout = RidgeReadout(3, 1, ridge=0.0).fit(features, targets)
    expected = torch.tensor([[2.0, -1.0, 0.0]], dtype=F64)
    torch.testing.assert_close(readout.weight, expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(readout.bias, torch.tensor([0.7], dtype=F64), rtol=0, atol=1e-9)


def test_float32_ridge_readout_accumulates_in_float64_and_returns_float32_weights():
    """Statistics are kept in float64 whatever the readout dtype: float32 features near 4096
    whose squares are not float32 numbers still give the exact line y = 2 r - 8192 (float32
    products would lose the small spread under the offset); weights, bias and predictions
    come back in float32."""
    r = (4096.0 + torch.arange(64, dtype=F64) % 16).reshape(-1, 1)
    features, targets = r.float(), (2 * r - 8192).float()  # both exact in float32
    readout = RidgeReadout(1, 1, ridge=0.0, dtype=torch.float32)
    for f, y in zip(features.split(16), targets.split(16), strict=True):
        readout.accumulate(f, y)
    readout.solve()
    assert readout.weight.dtype == torch.float32 and readout.bias.dtype == torch.float32
    assert float(readout.weight) == pytest.approx(2.0, abs=1e-5)
    assert float(readout.bias) == pytest.approx(-8192.0, abs=0.05)
    prediction = readout.predict(features)
    assert prediction.dtype == torch.float32


def test_ridge_regression_returns_weights_in_the_features_dtype():
    """``ridge_regression`` on float32 data gives float32 ``W`` and ``b``."""
    g = _gen(5)
    features = torch.randn(30, 3, generator=g)
    targets = features @ torch.tensor([[1.0], [0.5], [-2.0]]) + 1.0
    weight, bias = ridge_regression(features, targets, ridge=1e-6)
    assert weight.dtype == torch.float32 and bias.dtype == torch.float32
    torch.testing.assert_close(weight, torch.tensor([[1.0, 0.5, -2.0]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(bias, torch.tensor([1.0]), atol=1e-4, rtol=0)


@pytest.mark.parametrize("readout_class", [LMSReadout, RLSReadout])
def test_online_readouts_return_errors_shaped_like_their_targets(readout_class):
    """The a-priori errors come back shaped like the targets: ``(O,)`` for one sample,
    ``(batch, T, O)`` for a batch of sequences."""
    readout = readout_class(3, 2)
    assert readout.step(torch.ones(3, dtype=F64), torch.ones(2, dtype=F64)).shape == (2,)
    errors = readout.step(torch.ones(2, 4, 3, dtype=F64), torch.ones(2, 4, 2, dtype=F64))
    assert errors.shape == (2, 4, 2)


def test_rls_first_step_is_the_prior_weighted_solution_and_reports_w_r_minus_y():
    """From zero weights and ``P(0) = I / alpha`` (no bias), one sample gives the a-priori
    error ``W r - y = -y`` (RLS's sign, opposite to LMS's) and
    ``W = y r^T / (alpha + |r|^2)``. r = (1, 2), y = 3, alpha = 5: W = (0.3, 0.6)."""
    rls = RLSReadout(2, 1, alpha=5.0, fit_bias=False)
    error = rls.step(torch.tensor([[1.0, 2.0]], dtype=F64), torch.tensor([[3.0]], dtype=F64))
    torch.testing.assert_close(error, torch.tensor([[-3.0]], dtype=F64))
    torch.testing.assert_close(rls.weight, torch.tensor([[0.3, 0.6]], dtype=F64))
    torch.testing.assert_close(rls.bias, torch.zeros(1, dtype=F64))


# -- echo-state network ---------------------------------------------------------------------


def _weights(n: int = 3, **changes) -> ESNWeights:
    """A small float64 reservoir: ``W = 0.5 I``, unit input weights, no feedback, no bias."""
    args = dict(
        recurrent=0.5 * torch.eye(n, dtype=F64),
        input=torch.ones(n, 1, dtype=F64),
        feedback=torch.zeros(n, 0, dtype=F64),
        bias=torch.zeros(n, dtype=F64),
    )
    return ESNWeights(**{**args, **changes})


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"bias": torch.zeros(1, dtype=F64)}, ValueError, "bias: shape"),
        ({"input": torch.ones(2, 1, dtype=F64)}, ValueError, "input: shape"),
        ({"input": torch.ones(3, 1, dtype=torch.float32)}, TypeError, "mixed dtypes"),
        ({"leak": 1.5}, ValueError, "leak"),
        ({"noise": -0.1}, ValueError, "noise"),
    ],
)
def test_weights_refuse_what_would_broadcast_or_mix_silently(changes, error, message):
    """A one-element bias would broadcast to every unit, a float32 input matrix would mix
    precisions, a leak above 1 overshoots and a negative noise amplitude is meaningless: all
    refused by name when the weights are made."""
    with pytest.raises(error, match=message):
        _weights(**changes)


def test_run_esn_refuses_teacher_feedback_and_a_readout_together_or_neither():
    """A reservoir with feedback weights needs exactly one source of ``y_{t-1}``."""
    weights = _weights(feedback=torch.ones(3, 1, dtype=F64))
    u = torch.zeros(4, 1, dtype=F64)
    with pytest.raises(ValueError, match="not both"):
        run_esn(weights, u, feedback=torch.zeros(4, 1, dtype=F64), readout=lambda x: x[..., :1])
    with pytest.raises(ValueError, match="feedback: the reservoir has 1 feedback"):
        run_esn(weights, u)


def test_run_esn_refuses_teacher_feedback_of_another_batch_size():
    """Teacher feedback must hold one sequence per input sequence: a batch of 1 is not
    broadcast to a batch of 2."""
    weights = _weights(feedback=torch.ones(3, 1, dtype=F64))
    with pytest.raises(ValueError, match="feedback: shape"):
        run_esn(weights, torch.zeros(2, 4, 1, dtype=F64), feedback=torch.zeros(1, 4, 1, dtype=F64))


def test_run_esn_converts_an_initial_state_of_another_dtype():
    """A float32 initial state for a float64 reservoir is taken in the reservoir's dtype: with
    identity units ``x_1 = 0.5 x_0 + u_0``."""
    weights = _weights(activation="identity")
    x0 = torch.tensor([1.0, 2.0, -4.0], dtype=torch.float32)
    states, _ = run_esn(weights, torch.ones(1, 1, dtype=F64), initial_state=x0)
    assert states.dtype == F64
    torch.testing.assert_close(states[0], torch.tensor([1.5, 2.0, -1.0], dtype=F64))


def test_unbatched_leaky_run_leaves_its_initial_state_untouched():
    """One sequence with ``leak < 1`` (updated in place inside the loop) must not write into
    the caller's initial state."""
    weights = _weights(leak=0.5)
    x0 = torch.tensor([1.0, 2.0, 3.0], dtype=F64)
    kept = x0.clone()
    run_esn(weights, torch.ones(5, 1, dtype=F64), initial_state=x0)
    torch.testing.assert_close(x0, kept, rtol=0, atol=0)


def test_module_step_adds_noise_drawn_from_its_own_generator():
    """``EchoStateNetwork.step`` adds ``noise * eps`` like ``run_esn``: from the same seed,
    one step equals the first state of ``run_esn`` with a generator of that seed."""
    weights = _weights(noise=0.2)
    x0 = torch.randn(2, 3, generator=_gen(1), dtype=F64)
    u = torch.randn(2, 1, generator=_gen(2), dtype=F64)
    stepped = EchoStateNetwork(weights, seed=5).step(x0, u)
    states, _ = run_esn(weights, u[:, None], initial_state=x0, generator=_gen(5))
    torch.testing.assert_close(stepped, states[:, 0])
    quiet = EchoStateNetwork(_weights(), seed=5).step(x0, u)
    assert (stepped - quiet).abs().max() > 1e-3


def test_module_from_config_draws_weights_from_its_seed_in_its_dtype():
    """``from_config(config, seed, dtype)`` wraps ``init_esn_weights(config, seed, dtype)``."""
    from plastix.reservoirs.esn import init_esn_weights

    cfg = ESNConfig(n_inputs=2, n_units=8, connectivity=0.5)
    esn = EchoStateNetwork.from_config(cfg, seed=3, dtype=torch.float32)
    expected = init_esn_weights(cfg, seed=3, dtype=torch.float32)
    assert esn.recurrent.dtype == torch.float32
    torch.testing.assert_close(esn.recurrent, expected.recurrent)
    torch.testing.assert_close(esn.input_weights, expected.input)


def test_unbatched_closed_loop_outputs_have_no_batch_dim():
    """For inputs ``(T, n_in)`` the readout outputs come back as ``(T, n_out)``."""
    weights = _weights(feedback=torch.ones(3, 1, dtype=F64))
    states, outputs = run_esn(
        weights, torch.zeros(4, 1, dtype=F64), readout=lambda x: x.sum(-1, keepdim=True)
    )
    assert states.shape == (4, 3) and outputs.shape == (4, 1)


# -- Brian2 form ----------------------------------------------------------------------------


def test_brian2_teacher_forcing_wins_over_a_readout_that_is_only_recorded():
    """With ``teacher_feedback`` and a readout, the teacher is what is fed back (the readout
    is only computed); closing the loop through the readout would ignore the teacher. One
    identity unit, leak 1, no recurrence: ``x_t = y_teacher[t]``, readout ``y = 2 x``."""
    from plastix.reservoirs.brian2_esn import simulate_brian2_esn

    zero = torch.zeros(1, 1, dtype=F64)
    weights = ESNWeights(
        zero,
        zero.clone(),
        torch.ones(1, 1, dtype=F64),
        torch.zeros(1, dtype=F64),
        activation="identity",
    )
    teacher = np.array([[1.0], [-2.0], [0.5]])
    states, outputs = simulate_brian2_esn(
        weights,
        np.zeros((3, 1)),
        readout=(np.array([[2.0]]), np.zeros(1)),
        teacher_feedback=teacher,
    )
    np.testing.assert_allclose(states[:, 0], teacher[:, 0], atol=1e-14)
    np.testing.assert_allclose(outputs[:, 0], [0.0, 2.0, -4.0], atol=1e-14)


def test_brian2_builder_refuses_non_finite_weights_by_name():
    from plastix.reservoirs.brian2_esn import build_brian2_esn

    weights = _weights(recurrent=torch.full((3, 3), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="weights.recurrent: contains NaN"):
        build_brian2_esn(weights, np.zeros((3, 1)))
    with pytest.raises(ValueError, match="initial_state: shape"):
        build_brian2_esn(_weights(), np.zeros((3, 1)), initial_state=np.zeros(4))
