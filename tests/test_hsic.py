"""Property tests for plastix.plasticity.hsic (kernels, HSIC, layer objective, xi)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from brian2 import Hz
from hypothesis import given, settings
from hypothesis import strategies as st

from plastix.plasticity.hsic import (
    XI_METHODS,
    centering_matrix,
    check_sigmas,
    cosine_kernel,
    gaussian_kernel,
    hsic,
    layer_objective,
    modulatory_signal,
    modulatory_weights,
    plausible_hsic,
    sliding_windows,
    xi_from_weights,
)
from plastix.plasticity.ib_rule import IBThreeFactor, apply_eligibility_update

SETTINGS = settings(max_examples=40, deadline=None)


def _draw(seed: int, window: int, dx: int, dz: int, n_classes: int = 3, batch=()):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, window, dx, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, n_classes, (*batch, window), generator=gen)
    y = torch.nn.functional.one_hot(labels, n_classes).double()
    z = torch.randn(*batch, window, dz, generator=gen, dtype=torch.float64)
    return x, y, z


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


sigmas_st = st.tuples(st.floats(0.2, 2.0), st.floats(0.1, 2.0), st.floats(0.3, 3.0))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    window=st.integers(2, 64),
    dx=st.integers(1, 30),
    dz=st.integers(1, 20),
    gamma=st.floats(0.0, 50.0),
    sigmas=sigmas_st,
)
def test_exact_xi_is_gradient_of_layer_objective(seed, window, dx, dz, gamma, sigmas):
    x, y, z = _draw(seed, window, dx, dz)
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(layer_objective(x, y, z, gamma, sigmas), z)
    xi = modulatory_signal(x, y, z.detach(), gamma, sigmas, method="exact")
    assert xi.shape == (dz,)
    if grad[-1].norm() > 1e-12:
        assert _cosine(xi, grad[-1]) > 0.999
    torch.testing.assert_close(xi, grad[-1], rtol=1e-7, atol=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), window=st.integers(2, 20), n_windows=st.integers(1, 5))
def test_batched_windows_match_one_by_one(seed, window, n_windows):
    x, y, z = _draw(seed, window, 7, 5, batch=(n_windows,))
    for method in XI_METHODS:
        batched = modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0), method=method)
        singles = torch.stack(
            [
                modulatory_signal(x[w], y[w], z[w], 2.0, (0.5, 0.1, 1.0), method)
                for w in range(n_windows)
            ]
        )
        torch.testing.assert_close(batched, singles)
    objective = layer_objective(x, y, z, 2.0, (0.5, 0.1, 1.0))
    assert objective.shape == (n_windows,)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), window=st.integers(2, 40), sigma=st.floats(0.05, 5.0))
def test_gaussian_kernel_symmetric_psd_unit_diagonal(seed, window, sigma):
    x, _, _ = _draw(seed, window, 6, 2)
    k = gaussian_kernel(x, sigma)
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(k.diagonal(), torch.ones(window, dtype=k.dtype))
    assert torch.all(k >= 0) and torch.all(k <= 1)
    assert torch.linalg.eigvalsh(k).min() > -1e-9


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    window=st.integers(2, 40),
    shift=st.floats(-100.0, 100.0),
    sigma=st.floats(0.1, 3.0),
)
def test_gaussian_kernel_translation_invariant(seed, window, shift, sigma):
    x, _, _ = _draw(seed, window, 4, 2)
    torch.testing.assert_close(gaussian_kernel(x + shift, sigma), gaussian_kernel(x, sigma))


def test_gaussian_kernel_bandwidth_scales_with_sqrt_dim():
    dim, sigma = 9, 0.5
    a = torch.zeros(2, dim, dtype=torch.float64)
    a[1, 0] = 1.5
    expected = math.exp(-(1.5**2) / (2 * (sigma * math.sqrt(dim)) ** 2))
    assert gaussian_kernel(a, sigma)[0, 1].item() == pytest.approx(expected, rel=1e-12)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), window=st.integers(2, 40), sigmas=sigmas_st)
def test_hsic_nonnegative_and_equals_trace_formula(seed, window, sigmas):
    x, y, z = _draw(seed, window, 5, 4)
    kx, ky, kz = (gaussian_kernel(a, s) for a, s in zip((x, y, z), sigmas, strict=True))
    h = centering_matrix(window, dtype=torch.float64)
    for ka, kb in ((kx, kz), (ky, kz), (kx, ky)):
        value = hsic(ka, kb)
        assert value >= -1e-12
        torch.testing.assert_close(value, torch.trace(ka @ h @ kb @ h) / (window - 1) ** 2)
        torch.testing.assert_close(value, hsic(kb, ka))


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), window=st.integers(2, 40))
def test_objective_invariant_to_permuting_the_window(seed, window):
    x, y, z = _draw(seed, window, 5, 4)
    perm = torch.randperm(window, generator=torch.Generator().manual_seed(seed))
    sig = (0.5, 0.3, 1.0)
    torch.testing.assert_close(
        layer_objective(x[perm], y[perm], z[perm], 3.0, sig), layer_objective(x, y, z, 3.0, sig)
    )


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), window=st.integers(3, 40))
def test_xi_invariant_to_order_of_samples_in_memory(seed, window):
    x, y, z = _draw(seed, window, 5, 4)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.cat([torch.randperm(window - 1, generator=gen), torch.tensor([window - 1])])
    for method in XI_METHODS:
        torch.testing.assert_close(
            modulatory_signal(x[perm], y[perm], z[perm], 2.0, (0.5, 0.1, 1.0), method),
            modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0), method),
        )


def test_hsic_independent_kernels_small_dependent_large():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    noise = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    kx = gaussian_kernel(x, 0.5)
    assert hsic(kx, gaussian_kernel(x + 0.1 * noise, 0.5)) > 5 * hsic(
        kx, gaussian_kernel(noise, 0.5)
    )


def test_approximations_correlate_positively_with_exact():
    """The published approximations point the same way as dL/dz_B on average.

    Measured here (200 draws, B = 4..32; printed with -s): row-centred mean cosine about
    0.96-0.99, diagonal about 0.1-0.6. Only the sign is asserted: the published figures are
    unverified.
    """
    for window in (4, 8, 16, 32):
        x, y, z = _draw(window, window, 20, 10, n_classes=4, batch=(200,))
        exact = modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0), "exact")
        for method in ("row-centred", "diagonal"):
            approx = modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0), method)
            mean_cos = _cosine(approx, exact).mean().item()
            print(f"B={window} {method}: mean cosine {mean_cos:.3f}")
            assert mean_cos > (0.9 if method == "row-centred" else 0.0)


def _published_xi(x, y, z, gamma, sigmas, method):
    """xi written out term by term as the authors' two codes compute it (reference 1.3):
    ``globalerror.jl`` (row-centred) and ``global_error`` in ``hsic.py`` after the Oct 2024 fix
    (diagonal)."""
    sx, sy, sz = sigmas
    kx, ky = (gaussian_kernel(a, s).numpy() for a, s in ((x, sx), (y, sy)))
    kz = gaussian_kernel(z, sz).numpy()
    z = z.numpy()
    window, last, s_z2 = len(z), len(z) - 1, sz**2 * z.shape[1]
    if method == "row-centred":
        a = [
            (kx[last, j] - kx[last].mean()) - gamma * (ky[last, j] - ky[last].mean())
            for j in range(window)
        ]
        alpha = [-(2 / s_z2) * kz[last, j] * (z[last] - z[j]) for j in range(window)]
        mean_alpha = sum(alpha) / window
        total = sum(a[j] * (alpha[j] - mean_alpha) for j in range(window))
    else:
        m = [(kx[j, j] - kx[j].mean()) - gamma * (ky[j, j] - ky[j].mean()) for j in range(window)]
        alpha = [(2 / s_z2) * kz[last, j] * (z[last] - z[j]) for j in range(window)]
        alpha_bar = sum(alpha[:last]) / window
        total = sum(m[j] * alpha[j] / window for j in range(last)) + m[last] * alpha_bar
    return total / (window - 1) ** 2


@pytest.mark.parametrize("method", ["row-centred", "diagonal"])
@pytest.mark.parametrize("window", [3, 6, 11])
def test_approximations_follow_the_published_formulas(method, window):
    x, y, z = _draw(window + 7, window, 7, 4)
    sigmas = (0.5, 0.1, 1.0)
    xi = modulatory_signal(x, y, z, 2.0, sigmas, method)
    np.testing.assert_allclose(xi.numpy(), _published_xi(x, y, z, 2.0, sigmas, method), rtol=1e-10)


def test_all_methods_agree_in_direction_for_two_samples():
    x, y, z = _draw(1, 2, 5, 3)
    exact = modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0), "exact")
    for method in ("row-centred", "diagonal"):
        approx = modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0), method)
        assert abs(_cosine(approx, exact).item()) == pytest.approx(1.0)


def test_numpy_and_float32_inputs():
    x, y, z = (a.numpy().astype(np.float32) for a in _draw(3, 6, 4, 3))
    xi = modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0))
    assert isinstance(xi, torch.Tensor) and xi.dtype == torch.float32
    ref = modulatory_signal(*(torch.as_tensor(a).double() for a in (x, y, z)), 2.0, (0.5, 0.1, 1.0))
    torch.testing.assert_close(xi.double(), ref, rtol=1e-4, atol=1e-7)


def test_sliding_windows_current_sample_is_last():
    stream = torch.arange(10.0).reshape(5, 2)
    windows = sliding_windows(stream, 3)
    assert windows.shape == (3, 3, 2)
    torch.testing.assert_close(windows[1], stream[1:4])
    torch.testing.assert_close(windows[:, -1], stream[2:])


def test_window_of_one_is_refused():
    x, y, z = _draw(0, 1, 3, 2)
    with pytest.raises(ValueError, match="B >= 2"):
        modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0))
    with pytest.raises(ValueError, match="B >= 2"):
        layer_objective(x, y, z, 2.0, (0.5, 0.1, 1.0))
    with pytest.raises(ValueError, match="need B >= 2"):
        centering_matrix(1)
    with pytest.raises(ValueError, match="window"):
        sliding_windows(torch.zeros(5, 2), 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"gamma": float("nan")}, ValueError, "gamma"),
        ({"sigmas": (0.5, 0.0, 1.0)}, ValueError, r"sigmas\[1\]"),
        ({"sigmas": (0.5, 1.0)}, ValueError, "three bandwidths"),
        ({"method": "fast"}, ValueError, "method"),
    ],
)
def test_bad_parameters_are_refused(kwargs, error, match):
    x, y, z = _draw(0, 4, 3, 2)
    args = {"gamma": 2.0, "sigmas": (0.5, 0.1, 1.0), "method": "exact"} | kwargs
    with pytest.raises(error, match=match):
        modulatory_signal(x, y, z, **args)


def test_bad_shapes_and_dtypes_are_refused():
    x, y, z = _draw(0, 4, 3, 2)
    with pytest.raises(ValueError, match="y: leading shape"):
        modulatory_signal(x, y[:3], z, 2.0, (0.5, 0.1, 1.0))
    with pytest.raises(ValueError, match="ndim"):
        modulatory_signal(x[0], y, z, 2.0, (0.5, 0.1, 1.0))
    with pytest.raises(TypeError, match="one_hot"):
        modulatory_signal(x, torch.zeros(4, 3, dtype=torch.int64), z, 2.0, (0.5, 0.1, 1.0))
    with pytest.raises(TypeError, match="z"):
        modulatory_signal(x, y, [[0.0]], 2.0, (0.5, 0.1, 1.0))
    with pytest.raises(ValueError, match="not \\(..., B, B\\)"):
        hsic(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(x, -1.0)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), window=st.integers(2, 30))
def test_plausible_hsic_matches_its_trace_form(seed, window):
    """pHSIC = tr((K_A - mean K_A) K_B) / B^2 (Pogodin & Latham 2020) for symmetric kernels."""
    x, y, z = _draw(seed, window, 5, 4)
    ka, kb = gaussian_kernel(z, 5.0, scale_by_dim=False), cosine_kernel(y - y.mean(-1, True))
    expected = torch.trace((ka - ka.mean()) @ kb) / window**2
    torch.testing.assert_close(plausible_hsic(ka, kb), expected)


def test_cosine_kernel_and_unscaled_gaussian():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [3.0, 3.0]], dtype=torch.float64)
    k = cosine_kernel(a)
    torch.testing.assert_close(k.diagonal(), torch.tensor([1.0, 1.0, 0.0, 1.0]).double())
    assert k[0, 1].item() == pytest.approx(0.0)
    assert k[0, 3].item() == pytest.approx(1 / math.sqrt(2))
    g = gaussian_kernel(a, 2.0, scale_by_dim=False)
    assert g[0, 1].item() == pytest.approx(math.exp(-5.0 / 8.0))


def test_weights_and_xi_halves_compose_to_modulatory_signal():
    x, y, z = _draw(5, 9, 6, 4, batch=(3,))
    for method in XI_METHODS:
        w = modulatory_weights(gaussian_kernel(x, 0.5), gaussian_kernel(y, 0.1), 2.0, method)
        torch.testing.assert_close(
            xi_from_weights(w, z, 1.0), modulatory_signal(x, y, z, 2.0, (0.5, 0.1, 1.0), method)
        )
    with pytest.raises(ValueError, match="same window"):
        xi_from_weights(w[..., :-1], z, 1.0)
    with pytest.raises(ValueError, match="differ"):
        modulatory_weights(gaussian_kernel(x, 0.5), gaussian_kernel(y[:, :5], 0.1), 2.0)


# --- details: mixed dtypes, the general trace formula, boundary windows, stream layouts and
# the refusals of the public halves of xi (second mutation audit)

SIGMAS = (0.5, 0.1, 1.0)


def test_hsic_is_the_trace_formula_for_matrices_that_are_not_symmetric():
    """The docstring's ``tr(K_A H K_B H) / (B - 1)^2`` holds for any square matrices, not
    only symmetric kernels (the transpose in the implementation is what makes it general)."""
    gen = torch.Generator().manual_seed(4)
    ka = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    kb = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    h = centering_matrix(5, dtype=torch.float64)
    expected = torch.trace(ka @ h @ kb @ h) / 16
    torch.testing.assert_close(hsic(ka, kb), expected)


def test_hsic_and_phsic_refuse_kernels_of_different_window_sizes():
    """Kernels over windows of 3 and 4 samples do not describe the same samples: a
    ValueError naming the mismatch, not a broadcasting error from torch."""
    k3, k4 = torch.eye(3, dtype=torch.float64), torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="window sizes differ"):
        hsic(k3, k4)
    with pytest.raises(ValueError, match="not matching"):
        plausible_hsic(k3, k4)


def test_xi_and_objective_accept_float64_inputs_with_float32_labels_and_outputs():
    """Inputs from numpy (float64), labels from ``one_hot(...).float()`` and a float32 layer
    output: the inputs are cast to z's dtype, and the result matches the all-float64 one."""
    x, y, z = _draw(2, 6, 5, 3)
    xi = modulatory_signal(x, y.float(), z.float(), 2.0, SIGMAS)
    assert xi.dtype == torch.float32
    torch.testing.assert_close(
        xi.double(), modulatory_signal(x, y, z, 2.0, SIGMAS), rtol=1e-4, atol=1e-7
    )
    objective = layer_objective(x, y.float(), z.float(), 2.0, SIGMAS)
    assert objective.dtype == torch.float32
    assert objective.item() == pytest.approx(layer_objective(x, y, z, 2.0, SIGMAS).item(), rel=1e-5)


def test_layer_objective_refuses_inputs_with_an_extra_batch_of_windows():
    """x holding two windows while y and z hold one would broadcast to two objectives of
    unrelated samples; x, y and z must hold the same samples."""
    x, y, z = _draw(0, 4, 5, 3, batch=(2,))
    with pytest.raises(ValueError, match="x: leading shape"):
        layer_objective(x, y[0], z[0], 2.0, SIGMAS)


def test_modulatory_weights_refuses_what_modulatory_signal_refuses():
    """The public half ``modulatory_weights`` checks its own arguments: an unknown method,
    a non-finite gamma, non-square kernels and kernels of different batch shapes."""
    x, y, _ = _draw(1, 4, 5, 3, batch=(2,))
    kx, ky = gaussian_kernel(x, 0.5), gaussian_kernel(y, 0.1)
    with pytest.raises(ValueError, match="method"):
        modulatory_weights(kx, ky, 2.0, "fast")
    with pytest.raises(ValueError, match="gamma"):
        modulatory_weights(kx, ky, float("nan"))
    with pytest.raises(ValueError, match=r"not \(\.\.\., B, B\)"):
        modulatory_weights(kx[..., :3], ky[..., :3], 2.0)
    with pytest.raises(ValueError, match="differ"):
        modulatory_weights(kx, ky[0], 2.0)


def test_xi_from_weights_refuses_mixed_dtypes_and_a_window_of_one():
    """float32 weights with float64 outputs are refused with the fix named; a single sample
    (B = 1) has no memory to compare with and would divide by (B - 1)^2 = 0."""
    z = torch.rand(4, 3, dtype=torch.float64)
    with pytest.raises(TypeError, match="dtypes"):
        xi_from_weights(torch.ones(4), z, 1.0)
    with pytest.raises(ValueError, match="B >= 2"):
        xi_from_weights(torch.ones(1, dtype=torch.float64), z[:1], 1.0)


def test_sliding_windows_keep_the_sample_layout_of_image_streams():
    """A stream of (C, H) samples gives windows (N - B + 1, B, C, H) whose entries are the
    samples themselves, in order (not transposed)."""
    stream = torch.arange(5 * 2 * 3.0).reshape(5, 2, 3)
    windows = sliding_windows(stream, 3)
    assert windows.shape == (3, 3, 2, 3)
    for t in range(3):
        torch.testing.assert_close(windows[t], stream[t : t + 3])


def test_sliding_windows_of_a_stream_exactly_one_window_long():
    """N = B samples make exactly one window, the stream itself."""
    stream = torch.arange(8.0).reshape(4, 2)
    windows = sliding_windows(stream, 4)
    assert windows.shape == (1, 4, 2)
    torch.testing.assert_close(windows[0], stream)


def test_centering_matrix_refuses_non_integer_windows_and_honours_the_device():
    """A window of 2.5 samples is refused rather than truncated; the device argument is
    used (the meta device needs no accelerator)."""
    with pytest.raises(TypeError, match="window"):
        centering_matrix(2.5)
    h = centering_matrix(3, dtype=torch.float64, device="meta")
    assert h.device.type == "meta" and h.dtype == torch.float64


def test_bandwidths_refuse_a_string_and_infinity():
    """``"abc"`` has three items but is not three bandwidths; an infinite bandwidth makes a
    constant kernel and a zero xi."""
    with pytest.raises(ValueError, match="three bandwidths"):
        check_sigmas("abc")
    with pytest.raises(ValueError, match=r"sigmas\[2\]"):
        check_sigmas((0.5, 0.1, math.inf))
    with pytest.raises(ValueError, match="sigma"):
        gaussian_kernel(np.zeros((3, 2)), math.inf)


def test_rate_update_worked_by_hand_with_its_own_rate_norm_and_no_modulator():
    """``dW = -eta * xi * f' * r_pre / rate_norm`` with rate_norm = 50 Hz (not the default),
    ``modulator=None`` counting as xi = 1 and ``post_term`` used as given, sign included."""
    rule = IBThreeFactor(eta=2 * Hz, rate_norm=50 * Hz)
    pre = torch.tensor([[20.0, 40.0]])
    post = torch.tensor([[1.0, 1.0]])
    post_term = torch.tensor([[0.5, -1.0]])
    dw = rule.rate_update(pre, post, torch.zeros(2, 2), post_term=post_term)
    # -2 / 50 * [[0.5 * 20, 0.5 * 40], [-20, -40]]
    expected = torch.tensor([[-0.4, -0.8], [0.8, 1.6]])
    torch.testing.assert_close(dw, expected)


def test_eligibility_update_refuses_a_column_of_xi():
    """xi shaped (n_post, 1) would broadcast against E into an (n_post, n_post, n_pre)
    array; only one value per post neuron, shape (n_post,), is accepted."""
    rule = IBThreeFactor()
    with pytest.raises(ValueError, match="one per post"):
        apply_eligibility_update(np.zeros((2, 3)), np.ones((2, 3)), np.ones((2, 1)), rule)
