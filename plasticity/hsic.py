"""HSIC maths for the information-bottleneck (IB) Hebbian rule: kernels, HSIC, the layer
objective and the modulatory signal xi.

Sources: the HSIC bottleneck of Ma, Lewis & Kleijn (AAAI 2020) and its three-factor form by
Daruwalla & Lipasti (Front. Comput. Neurosci. 2024, arXiv 2111.13187); see
``shared/reference/ib_hebbian.md`` sections 1.1-1.3.

All functions are pure and torch-first: they take and return ``torch.Tensor``. NumPy arrays
are accepted and converted with ``torch.as_tensor`` (the result is still a tensor). Inputs are
windows of ``B`` samples shaped ``(B, d)``, or a leading batch of windows ``(..., B, d)``; the
current sample is the last one, ``b = B``. Labels enter as one-hot (or any float) vectors.
Flatten images to ``(B, d)`` before calling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from plastix.scalars import is_integer, is_real

XiMethod = Literal["exact", "row-centred", "diagonal"]
XI_METHODS: tuple[str, ...] = ("exact", "row-centred", "diagonal")

__all__ = [
    "XI_METHODS",
    "centering_matrix",
    "cosine_kernel",
    "gaussian_kernel",
    "hsic",
    "layer_objective",
    "modulatory_signal",
    "modulatory_weights",
    "plausible_hsic",
    "sliding_windows",
    "xi_from_weights",
]


def _as_float_tensor(a: Tensor | np.ndarray, name: str) -> Tensor:
    if isinstance(a, np.ndarray):
        a = torch.as_tensor(a)
    if not isinstance(a, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(a).__name__}")
    if not a.is_floating_point():
        raise TypeError(
            f"{name}: dtype {a.dtype} is not floating point; convert it (e.g. labels with "
            "torch.nn.functional.one_hot(y, n).float())"
        )
    return a


def _check_samples(a: Tensor) -> None:
    """Samples ``(..., B, d)`` for a kernel: at least one feature, every value finite."""
    if a.ndim < 2 or a.shape[-1] < 1:
        raise ValueError(f"a: shape {tuple(a.shape)}; expected (B, d >= 1) or (..., B, d)")
    if not bool(torch.isfinite(a).all()):
        raise ValueError("a: contains NaN or inf; the kernel would be NaN")


def _check_window(a: Tensor, name: str) -> int:
    if a.ndim < 2:
        raise ValueError(
            f"{name}: shape {tuple(a.shape)} has ndim {a.ndim}; expected (B, d) or (..., B, d)"
        )
    window = a.shape[-2]
    if window < 2:
        raise ValueError(
            f"{name}: window size B = {window}; HSIC needs B >= 2 samples in the window "
            "(the current sample plus at least one held in memory)"
        )
    return window


def _check_sigma(sigma: float, name: str) -> float:
    if not is_real(sigma):
        raise TypeError(f"{name}: expected a positive number, got {sigma!r}")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"{name}: must be finite and > 0, got {sigma!r}")
    return float(sigma)


def check_gamma(gamma: float) -> float:
    """``gamma`` as a float; a bool, non-number or non-finite value is refused."""
    if not is_real(gamma):
        raise TypeError(f"gamma: expected a number, got {gamma!r}")
    if not math.isfinite(gamma):
        raise ValueError(f"gamma: must be finite, got {gamma!r}")
    return float(gamma)


def check_sigmas(sigmas: Sequence[float]) -> tuple[float, float, float]:
    """``(sigma_x, sigma_y, sigma_z)`` as floats; each must be finite and > 0."""
    if isinstance(sigmas, str) or not isinstance(sigmas, Sequence) or len(sigmas) != 3:
        raise ValueError(
            f"sigmas: expected three bandwidths (sigma_x, sigma_y, sigma_z), got {sigmas!r}"
        )
    sx, sy, sz = (_check_sigma(s, f"sigmas[{i}]") for i, s in enumerate(sigmas))
    return sx, sy, sz


def _check_triplet(x, y, z) -> tuple[Tensor, Tensor, Tensor]:
    x = _as_float_tensor(x, "x")
    y = _as_float_tensor(y, "y")
    z = _as_float_tensor(z, "z")
    for name, a in (("x", x), ("y", y), ("z", z)):
        _check_window(a, name)
    lead = z.shape[:-1]
    for name, a in (("x", x), ("y", y)):
        if a.shape[:-1] != lead:
            raise ValueError(
                f"{name}: leading shape {tuple(a.shape[:-1])} (windows..., B) does not match "
                f"z's {tuple(lead)}; x, y and z must hold the same samples"
            )
    return x.to(z.dtype), y.to(z.dtype), z


def _bandwidth(sigma: float, dim: int) -> float:
    """s = sigma * sqrt(dim): the bandwidth scaling of Ma et al. (2020) and Daruwalla (2024)."""
    return sigma * math.sqrt(dim)


def _squared_distances(a: Tensor) -> Tensor:
    sq = (a * a).sum(-1)
    d2 = sq[..., :, None] + sq[..., None, :] - 2.0 * (a @ a.transpose(-1, -2))
    return d2.clamp_min(0.0)


def gaussian_kernel(a: Tensor | np.ndarray, sigma: float, scale_by_dim: bool = True) -> Tensor:
    """Gaussian kernel matrix over the samples of a window.

    ``K[i, j] = exp(-||a_i - a_j||^2 / (2 s^2))`` with ``s = sigma * sqrt(d)`` (Ma et al.
    2020, ``kernelmat``; Daruwalla & Lipasti 2024, ``_kernel_matrix``), or ``s = sigma`` when
    ``scale_by_dim`` is False (Pogodin & Latham 2020).

    a: ``(B, d)`` or ``(..., B, d)``. Returns ``(..., B, B)``.
    """
    a = _as_float_tensor(a, "a")
    sigma = _check_sigma(sigma, "sigma")
    _check_samples(a)
    s = _bandwidth(sigma, a.shape[-1]) if scale_by_dim else sigma
    return torch.exp(_squared_distances(a) / (-2.0 * s * s))


def cosine_kernel(a: Tensor | np.ndarray, eps: float = 1e-6) -> Tensor:
    """Cosine-similarity kernel ``K[i, j] = a_i . a_j / (||a_i|| ||a_j||)`` (a zero vector
    gives a zero row); Pogodin & Latham (2020) use it on centred one-hot labels."""
    a = _as_float_tensor(a, "a")
    _check_samples(a)
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: must be finite and > 0, got {eps!r}")
    norm = a.norm(dim=-1, keepdim=True)
    unit = a / (norm + eps * (norm <= 0))
    return unit @ unit.transpose(-1, -2)


def centering_matrix(
    window: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """``H = I_B - 1 1^T / B``, the centring matrix of a window of ``B`` samples."""
    if not is_integer(window):
        raise TypeError(f"window: expected an int >= 2, got {window!r}")
    if window < 2:
        raise ValueError(f"window: B = {window}; need B >= 2")
    window = int(window)
    eye = torch.eye(window, dtype=dtype, device=device)
    return eye - torch.full_like(eye, 1.0 / window)


def _double_centre(k: Tensor) -> Tensor:
    """``H K H`` without forming ``H`` (row, column and grand means)."""
    return k - k.mean(-1, keepdim=True) - k.mean(-2, keepdim=True) + k.mean((-2, -1), keepdim=True)


def hsic(ka: Tensor | np.ndarray, kb: Tensor | np.ndarray) -> Tensor:
    """Biased empirical HSIC: ``tr(K_A H K_B H) / (B - 1)^2`` (Gretton et al. 2005; the
    normalisation used by Ma et al. 2020 and Daruwalla & Lipasti 2024).

    ka, kb: kernel matrices ``(..., B, B)``. Returns a tensor of shape ``(...)``.
    """
    ka = _as_float_tensor(ka, "ka")
    kb = _as_float_tensor(kb, "kb")
    for name, k in (("ka", ka), ("kb", kb)):
        if k.ndim < 2 or k.shape[-1] != k.shape[-2]:
            raise ValueError(f"{name}: shape {tuple(k.shape)} is not (..., B, B)")
        _check_window(k, name)
    if ka.shape[-1] != kb.shape[-1]:
        raise ValueError(f"ka, kb: window sizes differ ({ka.shape[-1]} vs {kb.shape[-1]})")
    window = ka.shape[-1]
    kb = kb.to(ka.dtype)
    # tr(K_A H K_B H) = sum_ij K_A[i, j] (H K_B H)[j, i]; H K_B H is symmetric when K_B is.
    return (ka * _double_centre(kb).transpose(-1, -2)).sum((-2, -1)) / (window - 1) ** 2


def plausible_hsic(ka: Tensor | np.ndarray, kb: Tensor | np.ndarray) -> Tensor:
    """pHSIC, the "plausible" estimator of Pogodin & Latham (NeurIPS 2020,
    ``kernels.py::estimate_hsic``): ``mean((K_A - mean(K_A)) * K_B)`` over the window;
    ka, kb ``(..., B, B)`` -> ``(...)``."""
    ka = _as_float_tensor(ka, "ka")
    kb = _as_float_tensor(kb, "kb")
    if ka.ndim < 2 or ka.shape[-2:] != kb.shape[-2:] or ka.shape[-1] != ka.shape[-2]:
        raise ValueError(
            f"ka, kb: shapes {tuple(ka.shape)} and {tuple(kb.shape)} are not matching (..., B, B)"
        )
    _check_window(ka, "ka")
    centred = ka - ka.mean((-2, -1), keepdim=True)
    return (centred * kb.to(ka.dtype)).mean((-2, -1))


def layer_objective(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    z: Tensor | np.ndarray,
    gamma: float,
    sigmas: Sequence[float],
) -> Tensor:
    """IB layer objective ``L = HSIC(X, Z) - gamma * HSIC(Y, Z)`` (minimised per layer;
    Ma et al. 2020 eq. 3; Daruwalla & Lipasti 2024, ``hsic_bottleneck``).

    x: network inputs ``(..., B, dx)``; y: one-hot labels ``(..., B, dy)``; z: the layer's
    outputs ``(..., B, dz)``. ``sigmas = (sigma_x, sigma_y, sigma_z)``. Returns ``(...)``.
    """
    x, y, z = _check_triplet(x, y, z)
    gamma = check_gamma(gamma)
    sx, sy, sz = check_sigmas(sigmas)
    kz = gaussian_kernel(z, sz)
    return hsic(gaussian_kernel(x, sx), kz) - gamma * hsic(gaussian_kernel(y, sy), kz)


def modulatory_signal(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    z: Tensor | np.ndarray,
    gamma: float,
    sigmas: Sequence[float],
    method: XiMethod = "exact",
) -> Tensor:
    """The global modulatory signal xi for the current (last) sample of each window.

    With ``A = K_X - gamma K_Y`` and ``alpha_j = -(2 / s_z^2) K_Z[B, j] (z_B - z_j)``,
    ``xi = sum_j w_j alpha_j / (B - 1)^2`` where the weights ``w`` depend on ``method``:

    - ``"exact"``: ``w_j = (H A H)[B, j]``, so ``xi = dL/dz_B`` (reference 1.2); it equals the
      autograd gradient of :func:`layer_objective` with respect to ``z_B``.
    - ``"row-centred"``: the arXiv-era Julia form (``globalerror.jl``, reference 1.3a), row B
      of ``A`` centred once: ``w_j = A[B, j] - mean_k A[B, k]``. (The Julia code also centres
      ``alpha`` over ``j``; since ``sum_j w_j = 0`` that leaves ``xi`` unchanged.)
    - ``"diagonal"``: the Frontiers JAX form (``global_error``, reference 1.3b) after the
      Oct 2024 fix. With ``M[j, j] = A[j, j] - mean_k A[j, k]`` and its ``alpha' = -alpha``,
      ``xi = (sum_{j<B} M[j, j] alpha'_j / B + M[B, B] sum_{j<B} alpha'_j / B) / (B - 1)^2``,
      i.e. ``w_j = -(M[j, j] + M[B, B]) / B``.

    Shapes: x ``(..., B, dx)``, y ``(..., B, dy)``, z ``(..., B, dz)``; returns ``(..., dz)``.
    Cost O(B^2 (dx + dy) + B dz) per window. The two halves are public for reuse across
    layers: :func:`modulatory_weights` (inputs and labels only) and :func:`xi_from_weights`.
    """
    if method not in XI_METHODS:
        raise ValueError(f"method: {method!r} is not one of {XI_METHODS}")
    x, y, z = _check_triplet(x, y, z)
    gamma = check_gamma(gamma)
    sx, sy, sz = check_sigmas(sigmas)
    weights = modulatory_weights(gaussian_kernel(x, sx), gaussian_kernel(y, sy), gamma, method)
    return xi_from_weights(weights, z, sz)


def modulatory_weights(kx: Tensor, ky: Tensor, gamma: float, method: XiMethod = "exact") -> Tensor:
    """Per-sample weights ``w_j`` of xi (see :func:`modulatory_signal`) from the input and
    label kernel matrices ``(..., B, B)``; returns ``(..., B)``. They do not depend on the
    layer, so one set serves every layer of a network."""
    if method not in XI_METHODS:
        raise ValueError(f"method: {method!r} is not one of {XI_METHODS}")
    gamma = check_gamma(gamma)
    kx = _as_float_tensor(kx, "kx")
    ky = _as_float_tensor(ky, "ky")
    for name, k in (("kx", kx), ("ky", ky)):
        if k.ndim < 2 or k.shape[-1] != k.shape[-2]:
            raise ValueError(f"{name}: shape {tuple(k.shape)} is not (..., B, B)")
        _check_window(k, name)
    if kx.shape != ky.shape:
        raise ValueError(f"kx, ky: shapes {tuple(kx.shape)} and {tuple(ky.shape)} differ")
    a = kx - gamma * ky.to(kx.dtype)
    if method == "exact":
        return _double_centre(a)[..., -1, :]
    if method == "row-centred":
        row = a[..., -1, :]
        return row - row.mean(-1, keepdim=True)
    # diagonal: the sums run over j < B; the j = B term vanishes anyway since alpha_B = 0.
    diag = a.diagonal(dim1=-2, dim2=-1) - a.mean(-1)
    return -(diag + diag[..., -1:]) / a.shape[-1]


def xi_from_weights(weights: Tensor, z: Tensor, sigma_z: float) -> Tensor:
    """``xi = -(2 / s_z^2) sum_j w_j K_Z[B, j] (z_B - z_j) / (B - 1)^2`` with
    ``s_z = sigma_z sqrt(dz)``; weights ``(..., B)``, z ``(..., B, dz)`` -> ``(..., dz)``.
    Needs only row B of ``K_Z``: O(B dz)."""
    weights, z = _as_float_tensor(weights, "weights"), _as_float_tensor(z, "z")
    if weights.dtype != z.dtype:
        raise TypeError(f"weights, z: dtypes {weights.dtype} and {z.dtype} differ; convert one")
    if z.ndim < 2 or weights.shape != z.shape[:-1] or z.shape[-2] < 2:
        raise ValueError(
            f"weights, z: shapes {tuple(weights.shape)} and {tuple(z.shape)} do not hold the "
            "same window of B >= 2 samples ((..., B) and (..., B, dz))"
        )
    window = z.shape[-2]
    s_z = _bandwidth(_check_sigma(sigma_z, "sigma_z"), z.shape[-1])
    z_last = z[..., -1:, :]
    kz_row = torch.exp(((z - z_last) ** 2).sum(-1) / (-2.0 * s_z * s_z))
    w = weights * kz_row
    # sum_j w_j (z_B - z_j) = z_B sum_j w_j - sum_j w_j z_j
    weighted = z_last.squeeze(-2) * w.sum(-1, keepdim=True) - (w.unsqueeze(-2) @ z).squeeze(-2)
    return weighted * (-2.0 / (s_z * s_z * (window - 1) ** 2))


def sliding_windows(stream: Tensor | np.ndarray, window: int) -> Tensor:
    """All windows of ``B = window`` consecutive samples of a stream, as a view.

    stream: ``(N, ...)``. Returns ``(N - B + 1, B, ...)`` where window ``t`` holds samples
    ``t .. t + B - 1`` and its current (last) sample is ``t + B - 1`` (the ``window_shift=1``
    batching of Daruwalla & Lipasti 2024).
    """
    if isinstance(stream, np.ndarray):
        stream = torch.as_tensor(stream)
    if not isinstance(stream, Tensor):
        raise TypeError(f"stream: expected a torch.Tensor or numpy array, got {type(stream)}")
    if not is_integer(window) or window < 2:
        raise ValueError(f"window: B = {window!r}; need an int >= 2")
    window = int(window)
    if stream.ndim < 1 or stream.shape[0] < window:
        raise ValueError(
            f"stream: {tuple(stream.shape)} holds fewer than window = {window} samples"
        )
    return stream.unfold(0, window, 1).movedim(-1, 1)
